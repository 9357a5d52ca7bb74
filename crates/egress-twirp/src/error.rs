//! Twirp errors, failure classification and the mapping to gRPC statuses.
//!
//! # Classifying an HTTP answer
//!
//! A call succeeds only on HTTP `200` whose `Content-Type` is the request's encoding
//! (`application/protobuf` or `application/json`, parameters ignored). Anything else goes through
//! [`classify_response`]:
//!
//! 1. A non-2xx answer whose body is a JSON object with a valid Twirp `code` (and a string `msg`,
//!    and `meta` values that are all strings, if present) is a Twirp error, [`Error::Twirp`],
//!    whatever its `Content-Type`.
//! 2. Anything else came from an intermediary (load balancer, proxy, auth middleware, a web
//!    server at the wrong URL): [`Error::Intermediary`], classified by HTTP status as the Twirp
//!    spec says — 3xx and 400 `internal`, 401 `unauthenticated`, 403 `permission_denied`,
//!    404 `bad_route`, 429 `resource_exhausted`, 502/503/504 `unavailable`, anything else
//!    `unknown` — with meta `http_error_from_intermediary=true`, `status_code`, `body` (a bounded
//!    excerpt, see [`body_excerpt`]) and, for redirects, `location`.
//!
//!    A `200` with the wrong content type (say `text/html` from a URL that points at a web page,
//!    or a `200` JSON error body) is an intermediary answer too. Its status falls in the spec's
//!    "anything else" class, so it is `unknown` (gRPC `UNKNOWN`): we cannot tell what produced
//!    it, and the message and meta carry the status, content type and excerpt that explain it.
//!    A 2xx is never read as a Twirp error, since a Twirp server never sends one with a 2xx.
//!
//! # Mapping to gRPC
//!
//! `impl From<Error> for tonic::Status` (also [`Error::to_status`]) uses this one table; the code
//! alone is [`Error::grpc_code`].
//!
//! | [`Error`] variant | Twirp code | gRPC code |
//! |---|---|---|
//! | `Twirp` | `canceled` | `CANCELLED` |
//! | `Twirp` | `unknown` | `UNKNOWN` |
//! | `Twirp` | `invalid_argument` | `INVALID_ARGUMENT` |
//! | `Twirp` | `malformed` | `INVALID_ARGUMENT` |
//! | `Twirp` | `deadline_exceeded` | `DEADLINE_EXCEEDED` |
//! | `Twirp` | `not_found` | `NOT_FOUND` |
//! | `Twirp` | `bad_route` | `UNIMPLEMENTED` |
//! | `Twirp` | `already_exists` | `ALREADY_EXISTS` |
//! | `Twirp` | `permission_denied` | `PERMISSION_DENIED` |
//! | `Twirp` | `unauthenticated` | `UNAUTHENTICATED` |
//! | `Twirp` | `resource_exhausted` | `RESOURCE_EXHAUSTED` |
//! | `Twirp` | `failed_precondition` | `FAILED_PRECONDITION` |
//! | `Twirp` | `aborted` | `ABORTED` |
//! | `Twirp` | `out_of_range` | `OUT_OF_RANGE` |
//! | `Twirp` | `unimplemented` | `UNIMPLEMENTED` |
//! | `Twirp` | `internal` | `INTERNAL` |
//! | `Twirp` | `unavailable` | `UNAVAILABLE` |
//! | `Twirp` | `dataloss` | `DATA_LOSS` |
//! | `Intermediary` 3xx, 400 | `internal` | `INTERNAL` |
//! | `Intermediary` 401 | `unauthenticated` | `UNAUTHENTICATED` |
//! | `Intermediary` 403 | `permission_denied` | `PERMISSION_DENIED` |
//! | `Intermediary` 404 | `bad_route` | `UNIMPLEMENTED` |
//! | `Intermediary` 429 | `resource_exhausted` | `RESOURCE_EXHAUSTED` |
//! | `Intermediary` 502, 503, 504 | `unavailable` | `UNAVAILABLE` |
//! | `Intermediary` any other status (incl. 200 with a wrong content type) | `unknown` | `UNKNOWN` |
//! | `Connect` (refused, DNS, unreachable, connect timeout) | — | `UNAVAILABLE` |
//! | `Reset` (connection reset or closed before the answer) | — | `UNAVAILABLE` |
//! | `Timeout` (the call's deadline passed) | — | `DEADLINE_EXCEEDED` |
//! | `Tls` (handshake or certificate failure) | — | `UNAVAILABLE` |
//! | `Body` (answer truncated, unreadable or too large) | — | `UNAVAILABLE` |
//! | `Decode` (a typed answer was not valid protobuf) | — | `INTERNAL` |
//! | `Auth` (the token could not be minted) | — | `INTERNAL` |
//! | `InvalidUrl` | — | `INTERNAL` |
//! | `Canceled` | — | `CANCELLED` |
//!
//! `Body` is `UNAVAILABLE` because a response that breaks off or cannot be read is a transport
//! failure, like a reset: the server may well have done the work, but nothing about the answer is
//! known, and gRPC clients treat `UNAVAILABLE` as "transient, about the connection".
//!
//! The gRPC message is the Twirp `msg` (the code's name if `msg` is empty); for intermediaries it
//! reads like `upstream returned HTTP 502 Bad Gateway (text/html): <excerpt>`; for the other
//! variants it is the error's `Display`.
//!
//! Twirp and intermediary errors also carry:
//!
//! * trailing metadata `twirp-code: <code>`;
//! * one trailing metadata entry per `meta` entry, keyed `twirp-meta-<key>` (lowercased; characters
//!   other than `a-z 0-9 - _ .` become `-`; a key ending in `-bin` ends in `_bin` instead), skipping
//!   values that are not printable ASCII or longer than [`MAX_META_VALUE_LEN`] bytes;
//! * `grpc-status-details-bin`: a `google.rpc.Status` holding one `google.rpc.ErrorInfo` with
//!   `reason` = the Twirp code uppercased (`NOT_FOUND`), `domain` = [`TWIRP_ERROR_DOMAIN`] and
//!   `metadata` = the whole `meta`.
//!
//!   Exception: when `meta` has an `error_details` entry holding a standard-base64
//!   `google.rpc.Status` (as LiveKit sends), those decoded bytes are the status details verbatim,
//!   no `ErrorInfo` is added, and `error_details` is not repeated as `twirp-meta-error_details`.
//!   An `error_details` value that is not valid base64 protobuf is treated as ordinary meta.
//!
//! The other variants carry an `ErrorInfo` with domain [`GATEWAY_ERROR_DOMAIN`] and a reason
//! naming the failure (`UPSTREAM_CONNECT`, `UPSTREAM_RESET`, `UPSTREAM_TIMEOUT`, `UPSTREAM_TLS`,
//! `UPSTREAM_BODY`, `UPSTREAM_DECODE`, `UPSTREAM_AUTH`, `UPSTREAM_URL`, `CANCELED`).
//!
//! No message, metadata or detail ever contains the `Authorization` header or any secret: the
//! client never puts them in an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use prost::Message as _;
use serde::Deserialize;
use tonic::Code;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic_types::{ErrorDetails, StatusExt as _};

/// Most bytes of a body excerpt (see [`body_excerpt`]).
pub const BODY_EXCERPT_MAX: usize = 256;

/// Longest `meta` value copied into trailing metadata; longer values are only in the
/// `ErrorInfo` (keeps trailers well under common header-list limits).
pub const MAX_META_VALUE_LEN: usize = 1024;

/// `ErrorInfo.domain` for errors that came from the Twirp upstream (or an intermediary).
pub const TWIRP_ERROR_DOMAIN: &str = "livekit.io";

/// `ErrorInfo.domain` for failures of the gateway's own upstream call (transport, auth, …).
pub const GATEWAY_ERROR_DOMAIN: &str = "egress-gateway.livekit.io";

/// Trailing metadata key holding the original Twirp code.
pub const TWIRP_CODE_METADATA_KEY: &str = "twirp-code";

/// Prefix of the trailing metadata keys that carry Twirp `meta` entries.
pub const TWIRP_META_METADATA_PREFIX: &str = "twirp-meta-";

/// The Twirp `meta` key that may carry a standard-base64 `google.rpc.Status`.
pub const ERROR_DETAILS_META_KEY: &str = "error_details";

/// The 18 error codes of the Twirp v7 specification.
///
/// ```
/// use egress_twirp::TwirpCode;
///
/// let code: TwirpCode = "not_found".parse().unwrap();
/// assert_eq!(code, TwirpCode::NotFound);
/// assert_eq!(code.as_str(), "not_found");
/// assert_eq!(code.http_status().as_u16(), 404);
/// assert_eq!(code.grpc_code(), tonic::Code::NotFound);
/// assert!(TwirpCode::parse("teapot").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TwirpCode {
    /// `canceled` (HTTP 408).
    Canceled,
    /// `unknown` (HTTP 500).
    Unknown,
    /// `invalid_argument` (HTTP 400).
    InvalidArgument,
    /// `malformed` (HTTP 400).
    Malformed,
    /// `deadline_exceeded` (HTTP 408).
    DeadlineExceeded,
    /// `not_found` (HTTP 404).
    NotFound,
    /// `bad_route` (HTTP 404).
    BadRoute,
    /// `already_exists` (HTTP 409).
    AlreadyExists,
    /// `permission_denied` (HTTP 403).
    PermissionDenied,
    /// `unauthenticated` (HTTP 401).
    Unauthenticated,
    /// `resource_exhausted` (HTTP 429).
    ResourceExhausted,
    /// `failed_precondition` (HTTP 412).
    FailedPrecondition,
    /// `aborted` (HTTP 409).
    Aborted,
    /// `out_of_range` (HTTP 400).
    OutOfRange,
    /// `unimplemented` (HTTP 501).
    Unimplemented,
    /// `internal` (HTTP 500).
    Internal,
    /// `unavailable` (HTTP 503).
    Unavailable,
    /// `dataloss` (HTTP 500).
    DataLoss,
}

impl TwirpCode {
    /// Every code, in the specification's order.
    pub const ALL: [TwirpCode; 18] = [
        TwirpCode::Canceled,
        TwirpCode::Unknown,
        TwirpCode::InvalidArgument,
        TwirpCode::Malformed,
        TwirpCode::DeadlineExceeded,
        TwirpCode::NotFound,
        TwirpCode::BadRoute,
        TwirpCode::AlreadyExists,
        TwirpCode::PermissionDenied,
        TwirpCode::Unauthenticated,
        TwirpCode::ResourceExhausted,
        TwirpCode::FailedPrecondition,
        TwirpCode::Aborted,
        TwirpCode::OutOfRange,
        TwirpCode::Unimplemented,
        TwirpCode::Internal,
        TwirpCode::Unavailable,
        TwirpCode::DataLoss,
    ];

    /// The code as it appears in a Twirp error body (`"not_found"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TwirpCode::Canceled => "canceled",
            TwirpCode::Unknown => "unknown",
            TwirpCode::InvalidArgument => "invalid_argument",
            TwirpCode::Malformed => "malformed",
            TwirpCode::DeadlineExceeded => "deadline_exceeded",
            TwirpCode::NotFound => "not_found",
            TwirpCode::BadRoute => "bad_route",
            TwirpCode::AlreadyExists => "already_exists",
            TwirpCode::PermissionDenied => "permission_denied",
            TwirpCode::Unauthenticated => "unauthenticated",
            TwirpCode::ResourceExhausted => "resource_exhausted",
            TwirpCode::FailedPrecondition => "failed_precondition",
            TwirpCode::Aborted => "aborted",
            TwirpCode::OutOfRange => "out_of_range",
            TwirpCode::Unimplemented => "unimplemented",
            TwirpCode::Internal => "internal",
            TwirpCode::Unavailable => "unavailable",
            TwirpCode::DataLoss => "dataloss",
        }
    }

    /// Parses an exact (case-sensitive) Twirp code; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == s)
    }

    /// The HTTP status a Twirp server answers with for this code.
    pub const fn http_status(self) -> StatusCode {
        match self {
            TwirpCode::Canceled | TwirpCode::DeadlineExceeded => StatusCode::REQUEST_TIMEOUT,
            TwirpCode::Unknown | TwirpCode::Internal | TwirpCode::DataLoss => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            TwirpCode::InvalidArgument | TwirpCode::Malformed | TwirpCode::OutOfRange => {
                StatusCode::BAD_REQUEST
            }
            TwirpCode::NotFound | TwirpCode::BadRoute => StatusCode::NOT_FOUND,
            TwirpCode::AlreadyExists | TwirpCode::Aborted => StatusCode::CONFLICT,
            TwirpCode::PermissionDenied => StatusCode::FORBIDDEN,
            TwirpCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            TwirpCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            TwirpCode::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            TwirpCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            TwirpCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC code of this Twirp code (see the [module table](self)).
    pub const fn grpc_code(self) -> Code {
        match self {
            TwirpCode::Canceled => Code::Cancelled,
            TwirpCode::Unknown => Code::Unknown,
            TwirpCode::InvalidArgument | TwirpCode::Malformed => Code::InvalidArgument,
            TwirpCode::DeadlineExceeded => Code::DeadlineExceeded,
            TwirpCode::NotFound => Code::NotFound,
            TwirpCode::BadRoute | TwirpCode::Unimplemented => Code::Unimplemented,
            TwirpCode::AlreadyExists => Code::AlreadyExists,
            TwirpCode::PermissionDenied => Code::PermissionDenied,
            TwirpCode::Unauthenticated => Code::Unauthenticated,
            TwirpCode::ResourceExhausted => Code::ResourceExhausted,
            TwirpCode::FailedPrecondition => Code::FailedPrecondition,
            TwirpCode::Aborted => Code::Aborted,
            TwirpCode::OutOfRange => Code::OutOfRange,
            TwirpCode::Internal => Code::Internal,
            TwirpCode::Unavailable => Code::Unavailable,
            TwirpCode::DataLoss => Code::DataLoss,
        }
    }

    /// The Twirp code of a non-Twirp (intermediary) answer with this HTTP status.
    ///
    /// ```
    /// use egress_twirp::TwirpCode;
    ///
    /// assert_eq!(TwirpCode::from_intermediary_status(502), TwirpCode::Unavailable);
    /// assert_eq!(TwirpCode::from_intermediary_status(302), TwirpCode::Internal);
    /// assert_eq!(TwirpCode::from_intermediary_status(418), TwirpCode::Unknown);
    /// ```
    pub const fn from_intermediary_status(status: u16) -> Self {
        match status {
            300..=400 => TwirpCode::Internal,
            401 => TwirpCode::Unauthenticated,
            403 => TwirpCode::PermissionDenied,
            404 => TwirpCode::BadRoute,
            429 => TwirpCode::ResourceExhausted,
            502..=504 => TwirpCode::Unavailable,
            _ => TwirpCode::Unknown,
        }
    }

    /// The `ErrorInfo.reason` of this code: the code uppercased (`NOT_FOUND`, `DATALOSS`).
    pub fn reason(self) -> String {
        self.as_str().to_ascii_uppercase()
    }
}

impl fmt::Display for TwirpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string was not one of the 18 Twirp codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Twirp error code: {0:?}")]
pub struct UnknownTwirpCode(pub String);

impl FromStr for TwirpCode {
    type Err = UnknownTwirpCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownTwirpCode(s.to_owned()))
    }
}

/// A Twirp error as sent by the server: `{"code":"not_found","msg":"…","meta":{"k":"v"}}`.
///
/// ```
/// use egress_twirp::{TwirpCode, TwirpError};
///
/// let body = br#"{"code":"not_found","msg":"egress does not exist","meta":{"egress_id":"EG_1"}}"#;
/// let err = TwirpError::from_json(body, 404).unwrap();
/// assert_eq!(err.code, TwirpCode::NotFound);
/// assert_eq!(err.meta["egress_id"], "EG_1");
/// assert_eq!(err.to_string(), "not_found: egress does not exist");
///
/// // Round trip through the wire form (handy for fake servers).
/// assert_eq!(TwirpError::from_json(&err.to_json(), 404).unwrap(), err);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpError {
    /// The error code.
    pub code: TwirpCode,
    /// The human-readable message.
    pub msg: String,
    /// Extra string key/values.
    pub meta: BTreeMap<String, String>,
    /// The HTTP status the error came with.
    pub http_status: u16,
}

#[derive(Deserialize)]
struct WireError {
    code: String,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

impl TwirpError {
    /// An error with the given code and message, no meta, and the code's own HTTP status.
    pub fn new(code: TwirpCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            meta: BTreeMap::new(),
            http_status: code.http_status().as_u16(),
        }
    }

    /// Adds one `meta` entry.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Parses a Twirp JSON error body; `None` if it is not one (not JSON, not an object, no
    /// valid `code`, a non-string `msg`, or a `meta` value that is not a string).
    pub fn from_json(body: &[u8], http_status: u16) -> Option<Self> {
        let wire: WireError = serde_json::from_slice(body).ok()?;
        let code = TwirpCode::parse(&wire.code)?;
        Some(Self {
            code,
            msg: wire.msg.unwrap_or_default(),
            meta: wire.meta.unwrap_or_default(),
            http_status,
        })
    }

    /// The JSON wire form of this error (`meta` omitted when empty).
    pub fn to_json(&self) -> Vec<u8> {
        let mut obj = serde_json::Map::new();
        obj.insert("code".into(), self.code.as_str().into());
        obj.insert("msg".into(), self.msg.clone().into());
        if !self.meta.is_empty() {
            let meta = self
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            obj.insert("meta".into(), serde_json::Value::Object(meta));
        }
        serde_json::to_vec(&serde_json::Value::Object(obj)).unwrap_or_default()
    }
}

impl fmt::Display for TwirpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.msg)
    }
}

impl std::error::Error for TwirpError {}

/// Everything that can go wrong calling the Twirp upstream.
///
/// Messages (`Display`) never contain the `Authorization` header or other secrets. Convert to a
/// gRPC status with `tonic::Status::from(err)`; see the [module docs](self) for the table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a Twirp error.
    #[error("{0}")]
    Twirp(TwirpError),

    /// Something other than the Twirp server answered (or the answer was not Twirp).
    #[error("{}", intermediary_message(*.status, .content_type.as_deref(), .location.as_deref(), .body_excerpt))]
    Intermediary {
        /// The HTTP status.
        status: u16,
        /// The `Content-Type` header, if any.
        content_type: Option<String>,
        /// A bounded, sanitised excerpt of the body (see [`body_excerpt`]).
        body_excerpt: String,
        /// The `Location` header of a redirect, if any.
        location: Option<String>,
    },

    /// No connection could be made: refused, DNS failure, unreachable, connect timeout.
    #[error("cannot connect to upstream: {0}")]
    Connect(String),

    /// The connection was reset or closed before the answer arrived.
    #[error("upstream connection lost: {0}")]
    Reset(String),

    /// The call's deadline passed; the value is the time budget the call had.
    #[error("upstream did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),

    /// The TLS handshake failed (bad certificate, protocol error, not a TLS server).
    #[error("upstream TLS error: {0}")]
    Tls(String),

    /// The answer's body could not be read: truncated, broken off, or over the size limit.
    #[error("reading upstream response failed: {0}")]
    Body(String),

    /// A successful answer did not decode as the expected protobuf message.
    #[error("cannot decode upstream response: {0}")]
    Decode(String),

    /// The `Authorization` header could not be produced.
    #[error("cannot authorize upstream request: {0}")]
    Auth(String),

    /// The upstream URL (or the method name) is not valid.
    #[error("invalid upstream URL: {0}")]
    InvalidUrl(String),

    /// The call was canceled before it completed.
    #[error("upstream call canceled")]
    Canceled,
}

impl From<TwirpError> for Error {
    fn from(err: TwirpError) -> Self {
        Error::Twirp(err)
    }
}

impl From<crate::auth::AuthFailure> for Error {
    fn from(err: crate::auth::AuthFailure) -> Self {
        Error::Auth(err.message().to_owned())
    }
}

impl From<prost::DecodeError> for Error {
    fn from(err: prost::DecodeError) -> Self {
        Error::Decode(err.to_string())
    }
}

impl Error {
    /// The Twirp code: the server's for [`Error::Twirp`], the classified one for
    /// [`Error::Intermediary`], `None` for the other variants.
    pub fn twirp_code(&self) -> Option<TwirpCode> {
        match self {
            Error::Twirp(e) => Some(e.code),
            Error::Intermediary { status, .. } => {
                Some(TwirpCode::from_intermediary_status(*status))
            }
            _ => None,
        }
    }

    /// The gRPC code this error maps to (see the [module table](self)).
    ///
    /// ```
    /// use egress_twirp::Error;
    /// use tonic::Code;
    ///
    /// let err = Error::Intermediary {
    ///     status: 401,
    ///     content_type: Some("text/plain".into()),
    ///     body_excerpt: "invalid authorization token".into(),
    ///     location: None,
    /// };
    /// assert_eq!(err.grpc_code(), Code::Unauthenticated);
    /// assert_eq!(Error::Connect("refused".into()).grpc_code(), Code::Unavailable);
    /// ```
    pub fn grpc_code(&self) -> Code {
        match self {
            Error::Twirp(e) => e.code.grpc_code(),
            Error::Intermediary { status, .. } => {
                TwirpCode::from_intermediary_status(*status).grpc_code()
            }
            Error::Connect(_) | Error::Reset(_) | Error::Tls(_) | Error::Body(_) => {
                Code::Unavailable
            }
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Decode(_) | Error::Auth(_) | Error::InvalidUrl(_) => Code::Internal,
            Error::Canceled => Code::Cancelled,
        }
    }

    /// A short, stable name of the variant (`"twirp"`, `"intermediary"`, `"connect"`, `"reset"`,
    /// `"timeout"`, `"tls"`, `"body"`, `"decode"`, `"auth"`, `"invalid_url"`, `"canceled"`), for
    /// logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Twirp(_) => "twirp",
            Error::Intermediary { .. } => "intermediary",
            Error::Connect(_) => "connect",
            Error::Reset(_) => "reset",
            Error::Timeout(_) => "timeout",
            Error::Tls(_) => "tls",
            Error::Body(_) => "body",
            Error::Decode(_) => "decode",
            Error::Auth(_) => "auth",
            Error::InvalidUrl(_) => "invalid_url",
            Error::Canceled => "canceled",
        }
    }

    /// The Twirp `meta` of this error: the server's for [`Error::Twirp`], the synthesised
    /// intermediary meta (`http_error_from_intermediary`, `status_code`, `body`, `location`) for
    /// [`Error::Intermediary`], empty otherwise.
    pub fn twirp_meta(&self) -> BTreeMap<String, String> {
        match self {
            Error::Twirp(e) => e.meta.clone(),
            Error::Intermediary {
                status,
                body_excerpt,
                location,
                ..
            } => {
                let mut meta = BTreeMap::new();
                meta.insert("http_error_from_intermediary".to_owned(), "true".to_owned());
                meta.insert("status_code".to_owned(), status.to_string());
                meta.insert("body".to_owned(), body_excerpt.clone());
                if let Some(location) = location {
                    meta.insert("location".to_owned(), location.clone());
                }
                meta
            }
            _ => BTreeMap::new(),
        }
    }

    /// The gRPC status message (see the [module docs](self)).
    pub fn grpc_message(&self) -> String {
        match self {
            Error::Twirp(e) if e.msg.is_empty() => e.code.as_str().to_owned(),
            Error::Twirp(e) => e.msg.clone(),
            other => other.to_string(),
        }
    }

    /// The gRPC status of this error, with trailing metadata and details (see the
    /// [module docs](self)).
    ///
    /// ```
    /// use egress_twirp::{Error, TwirpCode, TwirpError};
    /// use tonic_types::StatusExt;
    ///
    /// let err = Error::Twirp(
    ///     TwirpError::new(TwirpCode::NotFound, "egress does not exist").with_meta("egress_id", "EG_1"),
    /// );
    /// let status = err.to_status();
    /// assert_eq!(status.code(), tonic::Code::NotFound);
    /// assert_eq!(status.message(), "egress does not exist");
    /// assert_eq!(status.metadata().get("twirp-code").unwrap(), "not_found");
    /// assert_eq!(status.metadata().get("twirp-meta-egress_id").unwrap(), "EG_1");
    /// let info = status.get_error_details().error_info().cloned().unwrap();
    /// assert_eq!(info.reason, "NOT_FOUND");
    /// assert_eq!(info.metadata["egress_id"], "EG_1");
    /// ```
    pub fn to_status(&self) -> tonic::Status {
        let code = self.grpc_code();
        let message = self.grpc_message();
        match self.twirp_code() {
            Some(twirp_code) => twirp_status(code, message, twirp_code, &self.twirp_meta()),
            None => tonic::Status::with_error_details(
                code,
                message,
                ErrorDetails::with_error_info(
                    self.gateway_reason(),
                    GATEWAY_ERROR_DOMAIN,
                    HashMap::new(),
                ),
            ),
        }
    }

    fn gateway_reason(&self) -> &'static str {
        match self {
            Error::Twirp(_) | Error::Intermediary { .. } => "UPSTREAM_TWIRP",
            Error::Connect(_) => "UPSTREAM_CONNECT",
            Error::Reset(_) => "UPSTREAM_RESET",
            Error::Timeout(_) => "UPSTREAM_TIMEOUT",
            Error::Tls(_) => "UPSTREAM_TLS",
            Error::Body(_) => "UPSTREAM_BODY",
            Error::Decode(_) => "UPSTREAM_DECODE",
            Error::Auth(_) => "UPSTREAM_AUTH",
            Error::InvalidUrl(_) => "UPSTREAM_URL",
            Error::Canceled => "CANCELED",
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        err.to_status()
    }
}

fn twirp_status(
    code: Code,
    message: String,
    twirp_code: TwirpCode,
    meta: &BTreeMap<String, String>,
) -> tonic::Status {
    let verbatim_details = meta
        .get(ERROR_DETAILS_META_KEY)
        .and_then(|v| decode_error_details(v));

    let mut metadata = MetadataMap::new();
    metadata.insert(
        TWIRP_CODE_METADATA_KEY,
        AsciiMetadataValue::from_static(twirp_code.as_str()),
    );
    for (key, value) in meta {
        if key == ERROR_DETAILS_META_KEY && verbatim_details.is_some() {
            continue;
        }
        if value.len() > MAX_META_VALUE_LEN || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            continue;
        }
        let Ok(value) = AsciiMetadataValue::try_from(value.as_str()) else {
            continue;
        };
        if let Ok(key) = AsciiMetadataKey::from_bytes(meta_metadata_key(key).as_bytes()) {
            metadata.append(key, value);
        }
    }

    match verbatim_details {
        Some(details) => tonic::Status::with_details_and_metadata(code, message, details, metadata),
        None => {
            let info_meta: HashMap<String, String> =
                meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            tonic::Status::with_error_details_and_metadata(
                code,
                message,
                ErrorDetails::with_error_info(twirp_code.reason(), TWIRP_ERROR_DOMAIN, info_meta),
                metadata,
            )
        }
    }
}

/// Decodes a standard-base64 `google.rpc.Status`; `None` unless it is valid base64 of a valid
/// message.
fn decode_error_details(value: &str) -> Option<Bytes> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    tonic_types::pb::Status::decode(bytes.as_slice()).ok()?;
    Some(Bytes::from(bytes))
}

/// The trailing-metadata key of a Twirp `meta` key: `twirp-meta-<key>`, lowercased, with every
/// character outside `a-z 0-9 - _ .` replaced by `-`, and a `-bin` suffix turned into `_bin`
/// (`-bin` keys are binary in gRPC).
///
/// ```
/// use egress_twirp::error::meta_metadata_key;
///
/// assert_eq!(meta_metadata_key("egress_id"), "twirp-meta-egress_id");
/// assert_eq!(meta_metadata_key("Retry After!"), "twirp-meta-retry-after-");
/// assert_eq!(meta_metadata_key("payload-bin"), "twirp-meta-payload_bin");
/// assert_eq!(meta_metadata_key("bin"), "twirp-meta-_bin");
/// ```
pub fn meta_metadata_key(key: &str) -> String {
    let mut out = String::with_capacity(TWIRP_META_METADATA_PREFIX.len() + key.len() + 1);
    out.push_str(TWIRP_META_METADATA_PREFIX);
    let start = out.len();
    out.extend(key.chars().map(|c| {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.') {
            c
        } else {
            '-'
        }
    }));
    // Only the key's own characters are rewritten: a bare `bin` key would otherwise end the
    // name in the prefix's `-` plus `bin`, which gRPC reads as binary metadata.
    if &out[start..] == "bin" {
        out.insert(start, '_');
    } else if out.ends_with("-bin") {
        out.truncate(out.len() - 4);
        out.push_str("_bin");
    }
    out
}

/// A short, printable excerpt of a response body for messages and meta.
///
/// At most [`BODY_EXCERPT_MAX`] bytes, cut on a character boundary (ending in `...` when cut);
/// invalid UTF-8 becomes U+FFFD; control characters and whitespace runs become a single space;
/// leading and trailing whitespace is removed. Only the first few hundred bytes of `body` are
/// looked at.
///
/// ```
/// use egress_twirp::error::{BODY_EXCERPT_MAX, body_excerpt};
///
/// assert_eq!(body_excerpt(b"<html>\r\n  <h1>502 Bad Gateway</h1>\n</html>\n"),
///            "<html> <h1>502 Bad Gateway</h1> </html>");
/// let long = "é".repeat(1000);
/// let excerpt = body_excerpt(long.as_bytes());
/// assert!(excerpt.len() <= BODY_EXCERPT_MAX && excerpt.ends_with("..."));
/// ```
pub fn body_excerpt(body: &[u8]) -> String {
    // LiveKit's auth middleware echoes the rejected token in its plain-text 401
    // (`invalid token: <jwt>, error: ...`); an excerpt must never carry it on to callers
    // or logs, so tokens are blanked before the text is cut to size.
    let scanned = &body[..body
        .len()
        .min(BODY_EXCERPT_MAX.saturating_mul(4).saturating_add(64))];
    let text = String::from_utf8_lossy(scanned);
    match redact_tokens(&text) {
        Some(redacted) => sanitize(redacted.as_bytes(), BODY_EXCERPT_MAX),
        None => sanitize(body, BODY_EXCERPT_MAX),
    }
}

/// Replaces every JWT-shaped run (`eyJ…` with at least one `.`) with `<redacted>`;
/// `None` when there is none, so the common case costs one scan and no copy.
fn redact_tokens(text: &str) -> Option<String> {
    const MARK: &str = "eyJ";
    let first = text.find(MARK)?;
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut next = Some(first);
    while let Some(start) = next {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let len = candidate
            .find(|c: char| !is_token_char(c))
            .unwrap_or(candidate.len());
        if candidate[..len].contains('.') {
            out.push_str("<redacted>");
        } else {
            out.push_str(&candidate[..len]);
        }
        rest = &candidate[len..];
        next = rest.find(MARK);
    }
    out.push_str(rest);
    Some(out)
}

fn sanitize(bytes: &[u8], max: usize) -> String {
    const ELLIPSIS: &str = "...";
    // Look at a bounded prefix only, cut on a character boundary.
    let scan_limit = max.saturating_mul(4).saturating_add(64);
    let cut = bytes.len() > scan_limit;
    let bytes = if cut {
        let prefix = &bytes[..scan_limit];
        match std::str::from_utf8(prefix) {
            Err(e) if e.error_len().is_none() => &prefix[..e.valid_up_to()],
            _ => prefix,
        }
    } else {
        bytes
    };
    let mut out = String::with_capacity(max.min(bytes.len()));
    let mut pending_space = false;
    let mut truncated = false;
    'outer: for chunk in bytes.utf8_chunks() {
        let replacement = (!chunk.invalid().is_empty()).then_some(char::REPLACEMENT_CHARACTER);
        for c in chunk.valid().chars().chain(replacement) {
            if c.is_control() || c.is_whitespace() {
                pending_space = !out.is_empty();
                continue;
            }
            let needed = c.len_utf8() + usize::from(pending_space);
            if out.len() + needed > max {
                truncated = true;
                break 'outer;
            }
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    if cut && !out.is_empty() {
        truncated = true;
    }
    if truncated {
        while out.len() + ELLIPSIS.len() > max {
            if out.pop().is_none() {
                break;
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push_str(ELLIPSIS);
    }
    out
}

fn intermediary_message(
    status: u16,
    content_type: Option<&str>,
    location: Option<&str>,
    excerpt: &str,
) -> String {
    use fmt::Write as _;
    let mut msg = format!("upstream returned HTTP {status}");
    if let Some(reason) = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        let _ = write!(msg, " {reason}");
    }
    if (200..300).contains(&status) {
        msg.push_str(" with a non-Twirp response");
    }
    if let Some(content_type) = content_type {
        let _ = write!(msg, " ({})", sanitize(content_type.as_bytes(), 100));
    }
    if let Some(location) = location {
        let _ = write!(
            msg,
            " redirecting to {}",
            sanitize(location.as_bytes(), 200)
        );
    }
    if !excerpt.is_empty() {
        let _ = write!(msg, ": {excerpt}");
    }
    msg
}

/// Classifies an answer that is not a success (see the [module docs](self)).
///
/// ```
/// use egress_twirp::{Error, TwirpCode, classify_response};
/// use http::StatusCode;
///
/// let err = classify_response(
///     StatusCode::NOT_FOUND,
///     Some("application/json"),
///     br#"{"code":"not_found","msg":"egress does not exist"}"#,
/// );
/// assert!(matches!(&err, Error::Twirp(e) if e.code == TwirpCode::NotFound));
///
/// let err = classify_response(StatusCode::BAD_GATEWAY, Some("text/html"), b"<h1>Bad Gateway</h1>");
/// assert!(matches!(err, Error::Intermediary { status: 502, .. }));
/// assert_eq!(err.grpc_code(), tonic::Code::Unavailable);
/// ```
pub fn classify_response(status: StatusCode, content_type: Option<&str>, body: &[u8]) -> Error {
    if !status.is_success()
        && let Some(err) = TwirpError::from_json(body, status.as_u16())
    {
        return Error::Twirp(err);
    }
    Error::Intermediary {
        status: status.as_u16(),
        content_type: content_type.map(str::to_owned),
        body_excerpt: body_excerpt(body),
        location: None,
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn tokens_in_bodies_are_redacted() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJrZXkifQ.c2lnbmF0dXJl";
        let body = format!("invalid token: {jwt}, error: signature is invalid");
        let excerpt = body_excerpt(body.as_bytes());
        assert_eq!(
            excerpt,
            "invalid token: <redacted>, error: signature is invalid"
        );
        assert_eq!(body_excerpt(b"eyJ alone stays"), "eyJ alone stays");
        assert_eq!(body_excerpt(b"no token here"), "no token here");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use tonic_types::StatusExt;

    #[test]
    fn codes_round_trip_and_http_statuses() {
        let expected: [(&str, u16); 18] = [
            ("canceled", 408),
            ("unknown", 500),
            ("invalid_argument", 400),
            ("malformed", 400),
            ("deadline_exceeded", 408),
            ("not_found", 404),
            ("bad_route", 404),
            ("already_exists", 409),
            ("permission_denied", 403),
            ("unauthenticated", 401),
            ("resource_exhausted", 429),
            ("failed_precondition", 412),
            ("aborted", 409),
            ("out_of_range", 400),
            ("unimplemented", 501),
            ("internal", 500),
            ("unavailable", 503),
            ("dataloss", 500),
        ];
        for (code, (name, http)) in TwirpCode::ALL.into_iter().zip(expected) {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.to_string(), name);
            assert_eq!(name.parse::<TwirpCode>().unwrap(), code);
            assert_eq!(TwirpCode::parse(name), Some(code));
            assert_eq!(code.http_status().as_u16(), http, "{name}");
        }
        assert!(TwirpCode::parse("NOT_FOUND").is_none());
        assert!(TwirpCode::parse("data_loss").is_none());
        assert!(TwirpCode::parse("").is_none());
        assert_eq!(
            "nope".parse::<TwirpCode>().unwrap_err(),
            UnknownTwirpCode("nope".into())
        );
    }

    #[test]
    fn every_twirp_code_maps_to_grpc() {
        use Code::*;
        let expected = [
            Cancelled,
            Unknown,
            InvalidArgument,
            InvalidArgument,
            DeadlineExceeded,
            NotFound,
            Unimplemented,
            AlreadyExists,
            PermissionDenied,
            Unauthenticated,
            ResourceExhausted,
            FailedPrecondition,
            Aborted,
            OutOfRange,
            Unimplemented,
            Internal,
            Unavailable,
            DataLoss,
        ];
        for (code, grpc) in TwirpCode::ALL.into_iter().zip(expected) {
            let err = Error::Twirp(TwirpError::new(code, "m"));
            assert_eq!(err.grpc_code(), grpc, "{code}");
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), grpc, "{code}");
            assert_eq!(status.message(), "m");
            assert_eq!(status.metadata().get("twirp-code").unwrap(), code.as_str());
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.reason, code.as_str().to_ascii_uppercase());
            assert_eq!(info.domain, TWIRP_ERROR_DOMAIN);
        }
    }

    fn intermediary(status: u16) -> Error {
        classify_response(
            StatusCode::from_u16(status).unwrap(),
            Some("text/plain"),
            b"nope",
        )
    }

    #[test]
    fn every_intermediary_class_maps_to_grpc() {
        let cases: &[(u16, TwirpCode, Code)] = &[
            (200, TwirpCode::Unknown, Code::Unknown),
            (204, TwirpCode::Unknown, Code::Unknown),
            (300, TwirpCode::Internal, Code::Internal),
            (301, TwirpCode::Internal, Code::Internal),
            (302, TwirpCode::Internal, Code::Internal),
            (307, TwirpCode::Internal, Code::Internal),
            (308, TwirpCode::Internal, Code::Internal),
            (400, TwirpCode::Internal, Code::Internal),
            (401, TwirpCode::Unauthenticated, Code::Unauthenticated),
            (403, TwirpCode::PermissionDenied, Code::PermissionDenied),
            (404, TwirpCode::BadRoute, Code::Unimplemented),
            (405, TwirpCode::Unknown, Code::Unknown),
            (413, TwirpCode::Unknown, Code::Unknown),
            (429, TwirpCode::ResourceExhausted, Code::ResourceExhausted),
            (500, TwirpCode::Unknown, Code::Unknown),
            (501, TwirpCode::Unknown, Code::Unknown),
            (502, TwirpCode::Unavailable, Code::Unavailable),
            (503, TwirpCode::Unavailable, Code::Unavailable),
            (504, TwirpCode::Unavailable, Code::Unavailable),
            (505, TwirpCode::Unknown, Code::Unknown),
        ];
        for &(status, twirp, grpc) in cases {
            let err = intermediary(status);
            assert!(
                matches!(err, Error::Intermediary { status: s, .. } if s == status),
                "{status}: {err:?}"
            );
            assert_eq!(err.twirp_code(), Some(twirp), "{status}");
            assert_eq!(err.grpc_code(), grpc, "{status}");
            let st = err.to_status();
            assert_eq!(st.code(), grpc, "{status}");
            assert_eq!(st.metadata().get("twirp-code").unwrap(), twirp.as_str());
            assert_eq!(
                st.metadata()
                    .get("twirp-meta-http_error_from_intermediary")
                    .unwrap(),
                "true"
            );
            assert_eq!(
                st.metadata().get("twirp-meta-status_code").unwrap(),
                status.to_string().as_str()
            );
            assert_eq!(st.metadata().get("twirp-meta-body").unwrap(), "nope");
            let info = st.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.reason, twirp.reason());
            assert_eq!(info.metadata["http_error_from_intermediary"], "true");
            assert_eq!(info.metadata["status_code"], status.to_string());
            assert_eq!(info.metadata["body"], "nope");
        }
    }

    #[test]
    fn transport_variants_map_to_grpc() {
        let cases = [
            (
                Error::Connect("refused".into()),
                Code::Unavailable,
                "UPSTREAM_CONNECT",
            ),
            (
                Error::Reset("reset".into()),
                Code::Unavailable,
                "UPSTREAM_RESET",
            ),
            (
                Error::Timeout(Duration::from_millis(1500)),
                Code::DeadlineExceeded,
                "UPSTREAM_TIMEOUT",
            ),
            (
                Error::Tls("bad cert".into()),
                Code::Unavailable,
                "UPSTREAM_TLS",
            ),
            (
                Error::Body("truncated".into()),
                Code::Unavailable,
                "UPSTREAM_BODY",
            ),
            (
                Error::Decode("bad wire".into()),
                Code::Internal,
                "UPSTREAM_DECODE",
            ),
            (
                Error::Auth("no secret".into()),
                Code::Internal,
                "UPSTREAM_AUTH",
            ),
            (
                Error::InvalidUrl("ftp://x".into()),
                Code::Internal,
                "UPSTREAM_URL",
            ),
            (Error::Canceled, Code::Cancelled, "CANCELED"),
        ];
        for (err, grpc, reason) in cases {
            assert_eq!(err.grpc_code(), grpc, "{err:?}");
            assert_eq!(err.twirp_code(), None);
            let display = err.to_string();
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), grpc);
            assert_eq!(status.message(), display);
            assert!(status.metadata().get("twirp-code").is_none());
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.reason, reason);
            assert_eq!(info.domain, GATEWAY_ERROR_DOMAIN);
        }
        assert_eq!(
            Error::Timeout(Duration::from_millis(1500)).to_string(),
            "upstream did not answer within 1500 ms"
        );
    }

    #[test]
    fn twirp_json_parsing() {
        let ok = TwirpError::from_json(
            br#"{"code":"failed_precondition","msg":"egress with status EGRESS_COMPLETE cannot be stopped","meta":{"a":"1"}}"#,
            412,
        )
        .unwrap();
        assert_eq!(ok.code, TwirpCode::FailedPrecondition);
        assert_eq!(ok.http_status, 412);
        assert_eq!(ok.meta.len(), 1);
        // Missing msg and null meta are tolerated.
        let bare = TwirpError::from_json(br#"{"code":"internal","meta":null}"#, 500).unwrap();
        assert_eq!(bare.msg, "");
        assert!(bare.meta.is_empty());
        // Not Twirp errors.
        for body in [
            &b""[..],
            b"invalid authorization token",
            b"<html></html>",
            b"[]",
            br#"{"msg":"x"}"#,
            br#"{"code":"teapot","msg":"x"}"#,
            br#"{"code":404,"msg":"x"}"#,
            br#"{"code":"not_found","msg":5}"#,
            br#"{"code":"not_found","msg":"x","meta":{"n":1}}"#,
            br#"{"code":"not_found","msg":"x","meta":"s"}"#,
            br#"{"code":"not_found","msg":"x""#,
        ] {
            assert!(TwirpError::from_json(body, 500).is_none(), "{body:?}");
            let err = classify_response(StatusCode::NOT_FOUND, Some("application/json"), body);
            assert!(matches!(err, Error::Intermediary { .. }), "{body:?}");
        }
    }

    #[test]
    fn twirp_error_wins_over_status_and_content_type() {
        // A Twirp body with an unexpected status and content type is still Twirp.
        let err = classify_response(
            StatusCode::BAD_GATEWAY,
            Some("text/plain"),
            br#"{"code":"not_found","msg":"egress does not exist"}"#,
        );
        let Error::Twirp(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.http_status, 502);
        assert_eq!(err.grpc_code(), Code::NotFound);
        assert_eq!(err.to_string(), "not_found: egress does not exist");
        // ... but never on a 2xx.
        let err = classify_response(
            StatusCode::OK,
            Some("application/json"),
            br#"{"code":"not_found","msg":"egress does not exist"}"#,
        );
        assert!(matches!(err, Error::Intermediary { status: 200, .. }));
        assert_eq!(err.grpc_code(), Code::Unknown);
    }

    #[test]
    fn intermediary_messages() {
        let err = classify_response(
            StatusCode::BAD_GATEWAY,
            Some("text/html"),
            b"<html>\n<body>bad gateway</body>\n</html>",
        );
        assert_eq!(
            err.to_string(),
            "upstream returned HTTP 502 Bad Gateway (text/html): <html> <body>bad gateway</body> </html>"
        );
        let err = classify_response(StatusCode::UNAUTHORIZED, None, b"");
        assert_eq!(err.to_string(), "upstream returned HTTP 401 Unauthorized");
        let err = classify_response(StatusCode::OK, Some("text/html"), b"<p>hi</p>");
        assert_eq!(
            err.to_string(),
            "upstream returned HTTP 200 OK with a non-Twirp response (text/html): <p>hi</p>"
        );
        let mut err = classify_response(StatusCode::MOVED_PERMANENTLY, None, b"");
        if let Error::Intermediary { location, .. } = &mut err {
            *location = Some("https://example.com/twirp".into());
        }
        assert_eq!(
            err.to_string(),
            "upstream returned HTTP 301 Moved Permanently redirecting to https://example.com/twirp"
        );
        assert_eq!(err.twirp_meta()["location"], "https://example.com/twirp");
        // The gRPC message is the Display.
        assert_eq!(err.to_status().message(), err.to_string());
    }

    #[test]
    fn meta_to_trailing_metadata_and_error_info() {
        let err = Error::Twirp(
            TwirpError::new(TwirpCode::Unavailable, "no response from servers")
                .with_meta("Egress_ID", "EG_123")
                .with_meta("retry after", "5")
                .with_meta("payload-bin", "x")
                .with_meta("unicode", "héllo")
                .with_meta("newline", "a\nb")
                .with_meta("huge", "x".repeat(MAX_META_VALUE_LEN + 1)),
        );
        let status = err.to_status();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "no response from servers");
        let md = status.metadata();
        assert_eq!(md.get("twirp-code").unwrap(), "unavailable");
        assert_eq!(md.get("twirp-meta-egress_id").unwrap(), "EG_123");
        assert_eq!(md.get("twirp-meta-retry-after").unwrap(), "5");
        assert_eq!(md.get("twirp-meta-payload_bin").unwrap(), "x");
        assert!(md.get("twirp-meta-unicode").is_none());
        assert!(md.get("twirp-meta-newline").is_none());
        assert!(md.get("twirp-meta-huge").is_none());

        // The full meta survives, untouched, in ErrorInfo.
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "UNAVAILABLE");
        assert_eq!(info.domain, TWIRP_ERROR_DOMAIN);
        assert_eq!(info.metadata.len(), 6);
        assert_eq!(info.metadata["Egress_ID"], "EG_123");
        assert_eq!(info.metadata["unicode"], "héllo");
        assert_eq!(info.metadata["newline"], "a\nb");

        // The details decode as a google.rpc.Status consistent with the status.
        let rpc = tonic_types::pb::Status::decode(status.details()).unwrap();
        assert_eq!(rpc.code, Code::Unavailable as i32);
        assert_eq!(rpc.message, "no response from servers");
        assert_eq!(rpc.details.len(), 1);
    }

    #[test]
    fn empty_msg_uses_code_name() {
        let status = Error::Twirp(TwirpError::new(TwirpCode::Internal, "")).to_status();
        assert_eq!(status.message(), "internal");
    }

    fn sample_rpc_status() -> Vec<u8> {
        let inner = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "egress with status EGRESS_COMPLETE cannot be stopped",
            ErrorDetails::with_precondition_failure_violation("STATE", "egress", "complete"),
        );
        inner.details().to_vec()
    }

    #[test]
    fn error_details_are_used_verbatim() {
        let raw = sample_rpc_status();
        let err = Error::Twirp(
            TwirpError::new(
                TwirpCode::FailedPrecondition,
                "egress with status EGRESS_COMPLETE cannot be stopped",
            )
            .with_meta("error_details", STANDARD.encode(&raw))
            .with_meta("egress_id", "EG_1"),
        );
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.details(), raw.as_slice());
        assert!(status.metadata().get("twirp-meta-error_details").is_none());
        assert_eq!(
            status.metadata().get("twirp-meta-egress_id").unwrap(),
            "EG_1"
        );
        assert_eq!(
            status.metadata().get("twirp-code").unwrap(),
            "failed_precondition"
        );
        let details = status.get_error_details();
        assert!(details.error_info().is_none());
        let pf = details.precondition_failure().unwrap();
        assert_eq!(pf.violations[0].r#type, "STATE");
    }

    #[test]
    fn invalid_error_details_are_ordinary_meta() {
        for bad in ["not base64!!", "AAAA////"] {
            let err = Error::Twirp(
                TwirpError::new(TwirpCode::Internal, "x").with_meta("error_details", bad),
            );
            let status = err.to_status();
            assert_eq!(
                status.metadata().get("twirp-meta-error_details").unwrap(),
                bad
            );
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.metadata["error_details"], bad);
        }
    }

    #[test]
    fn excerpt_is_bounded_and_utf8_safe() {
        assert_eq!(body_excerpt(b""), "");
        assert_eq!(body_excerpt(b"  \r\n\t "), "");
        assert_eq!(body_excerpt(b"a\x00b\x1b[31mc"), "a b [31mc");
        assert_eq!(body_excerpt(b"ok\xff\xfeyes"), "ok\u{FFFD}\u{FFFD}yes");
        let exact = "x".repeat(BODY_EXCERPT_MAX);
        assert_eq!(body_excerpt(exact.as_bytes()), exact);
        let trailing_ws = format!("{exact}\n\n   ");
        assert_eq!(body_excerpt(trailing_ws.as_bytes()), exact);

        for unit in ["x", "é", "€", "😀", "a b"] {
            for extra in 1..8 {
                let body = unit.repeat(BODY_EXCERPT_MAX + extra);
                let e = body_excerpt(body.as_bytes());
                assert!(e.len() <= BODY_EXCERPT_MAX, "{unit}: {}", e.len());
                assert!(e.ends_with("..."), "{unit}");
                assert!(e.len() > BODY_EXCERPT_MAX - 8, "{unit}: {}", e.len());
            }
        }
        // A body cut in the middle of a character at the end of a huge buffer.
        let mut body = "€".repeat(10_000).into_bytes();
        body.pop();
        let e = body_excerpt(&body);
        assert!(e.len() <= BODY_EXCERPT_MAX);
        assert!(!e.contains('\u{FFFD}'));
    }

    #[test]
    fn metadata_keys_are_sanitized() {
        assert_eq!(meta_metadata_key("a.b-c_d"), "twirp-meta-a.b-c_d");
        assert_eq!(meta_metadata_key("ÜBER"), "twirp-meta--ber");
        assert_eq!(meta_metadata_key("x-BIN"), "twirp-meta-x_bin");
        for key in ["a.b-c_d", "ÜBER", "x-BIN", "", " ", "grpc-status"] {
            assert!(AsciiMetadataKey::from_bytes(meta_metadata_key(key).as_bytes()).is_ok());
        }
    }

    #[test]
    fn twirp_json_round_trip() {
        let err = TwirpError::new(TwirpCode::DataLoss, "lost \"it\"").with_meta("k", "v");
        let json = err.to_json();
        assert_eq!(TwirpError::from_json(&json, 500).unwrap(), err);
        let no_meta = TwirpError::new(TwirpCode::Aborted, "a");
        assert_eq!(
            String::from_utf8(no_meta.to_json()).unwrap(),
            r#"{"code":"aborted","msg":"a"}"#
        );
    }
}
