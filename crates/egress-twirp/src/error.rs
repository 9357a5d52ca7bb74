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
//! | `Body` (answer truncated or unreadable, error answers included) | — | `UNAVAILABLE` |
//! | `TooLarge` (a successful answer over [`ClientConfig::max_response_bytes`](crate::ClientConfig::max_response_bytes)) | — | `RESOURCE_EXHAUSTED` |
//! | `Decode` (a typed answer was not valid protobuf) | — | `INTERNAL` |
//! | `Auth` (the token could not be minted) | — | `INTERNAL` |
//! | `InvalidUrl` | — | `INTERNAL` |
//! | `Canceled` | — | `CANCELLED` |
//!
//! `Body` is `UNAVAILABLE` because a response that breaks off or cannot be read is a transport
//! failure, like a reset: the server may well have done the work, but nothing about the answer is
//! known, and gRPC clients treat `UNAVAILABLE` as "transient, about the connection". That holds
//! for a Twirp *error* body cut short too: a `404` whose JSON breaks off is not read as a
//! `bad_route` from an intermediary.
//!
//! `TooLarge` is not `UNAVAILABLE`: the same call will get the same oversized answer again, and
//! clients retry `UNAVAILABLE` forever. `RESOURCE_EXHAUSTED` is what gRPC itself reports for a
//! message over the receive limit.
//!
//! An error body larger than the client reads (64 KiB) is cut at that bound; when the Twirp
//! `code` (and `msg`) can still be read from the part that arrived, the answer is that Twirp
//! error (without its `meta`), not an intermediary answer (see [`classify_response_prefix`]).
//!
//! The gRPC message is the Twirp `msg` (the code's name if `msg` is empty); for intermediaries it
//! reads like `upstream returned HTTP 502 Bad Gateway (text/html): <excerpt>`; for the other
//! variants it is the error's `Display`.
//!
//! # Bounds
//!
//! Everything below goes into HTTP/2 trailers, and grpc-core clients (Python grpcio, C++, Ruby…)
//! refuse response metadata over 8 KiB: they then report `RESOURCE_EXHAUSTED` and the real code
//! is lost. LiveKit's `msg` and `meta` are not bounded, so the status is:
//!
//! * the message: at most [`MAX_GRPC_MESSAGE_LEN`] bytes *as sent* (percent-encoded, so a
//!   non-ASCII byte counts 3), cut on a character boundary and ending in [`TRUNCATED_MARKER`];
//! * trailing `twirp-meta-*` entries: at most [`MAX_META_TRAILERS`], whose names and values
//!   together take at most [`MAX_META_TRAILER_BYTES`]; entries that do not fit are skipped in key
//!   order, and `twirp-omitted-meta: <n>` ([`META_OMITTED_METADATA_KEY`], outside the `twirp-meta-` names so
//!   no `meta` key can collide with it) counts them;
//! * `grpc-status-details-bin`: at most [`MAX_DETAILS_LEN`] bytes before base64; `ErrorInfo`
//!   metadata entries that would go over are left out (in key order), and an `error_details`
//!   status longer than that is not used verbatim.
//!
//! So the whole trailer block stays under about 6 KiB, whatever the upstream sent.
//!
//! Twirp and intermediary errors also carry:
//!
//! * trailing metadata `twirp-code: <code>`;
//! * one trailing metadata entry per `meta` entry, keyed `twirp-meta-<key>` (lowercased; characters
//!   other than `a-z 0-9 - _ .` become `-`; a key ending in `-bin` ends in `_bin` instead), skipping
//!   values that are not printable ASCII or longer than [`MAX_META_VALUE_LEN`] bytes, keys
//!   longer than [`MAX_META_KEY_LEN`] bytes, and what goes over the bounds above;
//! * `grpc-status-details-bin`: a `google.rpc.Status` holding one `google.rpc.ErrorInfo` with
//!   `reason` = the Twirp code uppercased (`NOT_FOUND`), `domain` = [`TWIRP_ERROR_DOMAIN`] and
//!   `metadata` = the `meta` (as much of it as fits in [`MAX_DETAILS_LEN`]).
//!
//!   Exception: when `meta` has an `error_details` entry holding a standard-base64
//!   `google.rpc.Status` (as LiveKit sends), those decoded bytes are the status details verbatim,
//!   no `ErrorInfo` is added, and `error_details` is not repeated as `twirp-meta-error_details`.
//!   An `error_details` value that is not valid base64 protobuf, or decodes to more than
//!   [`MAX_DETAILS_LEN`] bytes, is treated as ordinary meta.
//!
//! The other variants carry an `ErrorInfo` with domain [`GATEWAY_ERROR_DOMAIN`] and a reason
//! naming the failure (`UPSTREAM_CONNECT`, `UPSTREAM_RESET`, `UPSTREAM_TIMEOUT`, `UPSTREAM_TLS`,
//! `UPSTREAM_BODY`, `UPSTREAM_TOO_LARGE`, `UPSTREAM_DECODE`, `UPSTREAM_AUTH`, `UPSTREAM_URL`,
//! `CANCELED`).
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

/// Longest `meta` key copied into trailing metadata.
pub const MAX_META_KEY_LEN: usize = 128;

/// Most `twirp-meta-*` trailing metadata entries (see the [module docs](self#bounds)).
pub const MAX_META_TRAILERS: usize = 16;

/// Most bytes of `twirp-meta-*` names and values together (see the [module docs](self#bounds)).
pub const MAX_META_TRAILER_BYTES: usize = 1536;

/// Most bytes of the gRPC message as sent, percent-encoded (see the [module docs](self#bounds)).
pub const MAX_GRPC_MESSAGE_LEN: usize = 1024;

/// Most bytes of `grpc-status-details-bin` before base64 (see the [module docs](self#bounds)).
pub const MAX_DETAILS_LEN: usize = 2048;

/// The end of a gRPC message that was cut to [`MAX_GRPC_MESSAGE_LEN`].
pub const TRUNCATED_MARKER: &str = "… [truncated]";

/// Trailing metadata key counting the `meta` entries left out of the trailers.
pub const META_OMITTED_METADATA_KEY: &str = "twirp-omitted-meta";

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

    /// The answer's body could not be read: truncated or broken off (error answers included).
    #[error("reading upstream response failed: {0}")]
    Body(String),

    /// A successful answer was larger than the client accepts
    /// ([`ClientConfig::max_response_bytes`](crate::ClientConfig::max_response_bytes)).
    #[error("{}", too_large_message(*.limit, *.size))]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// The answer's size when known up front (its `Content-Length`).
        size: Option<u64>,
    },

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

impl From<crate::authorizer::AuthFailure> for Error {
    fn from(err: crate::authorizer::AuthFailure) -> Self {
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
            Error::TooLarge { .. } => Code::ResourceExhausted,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Decode(_) | Error::Auth(_) | Error::InvalidUrl(_) => Code::Internal,
            Error::Canceled => Code::Cancelled,
        }
    }

    /// A short, stable name of the variant (`"twirp"`, `"intermediary"`, `"connect"`, `"reset"`,
    /// `"timeout"`, `"tls"`, `"body"`, `"too_large"`, `"decode"`, `"auth"`, `"invalid_url"`,
    /// `"canceled"`), for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Twirp(_) => "twirp",
            Error::Intermediary { .. } => "intermediary",
            Error::Connect(_) => "connect",
            Error::Reset(_) => "reset",
            Error::Timeout(_) => "timeout",
            Error::Tls(_) => "tls",
            Error::Body(_) => "body",
            Error::TooLarge { .. } => "too_large",
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

    /// The gRPC status message (see the [module docs](self)), cut to
    /// [`MAX_GRPC_MESSAGE_LEN`] as sent (see the [module docs](self#bounds)).
    pub fn grpc_message(&self) -> String {
        let full = match self {
            Error::Twirp(e) if e.msg.is_empty() => return e.code.as_str().to_owned(),
            Error::Twirp(e) => e.msg.clone(),
            other => other.to_string(),
        };
        bound_grpc_message(full, MAX_GRPC_MESSAGE_LEN)
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
            Error::TooLarge { .. } => "UPSTREAM_TOO_LARGE",
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
    // Trailers are bounded by count and bytes (see the module docs): a grpc-core client drops
    // the whole status, code included, when the metadata goes over its 8 KiB limit.
    let mut kept = 0usize;
    let mut kept_bytes = 0usize;
    let mut omitted = 0usize;
    for (key, value) in meta {
        if key == ERROR_DETAILS_META_KEY && verbatim_details.is_some() {
            continue;
        }
        let Some((key, value)) = meta_trailer(key, value) else {
            omitted += 1;
            continue;
        };
        let size = key.as_str().len() + value.len();
        if kept >= MAX_META_TRAILERS || kept_bytes + size > MAX_META_TRAILER_BYTES {
            omitted += 1;
            continue;
        }
        kept += 1;
        kept_bytes += size;
        metadata.append(key, value);
    }
    if omitted > 0
        && let Ok(count) = AsciiMetadataValue::try_from(omitted.to_string())
    {
        metadata.insert(META_OMITTED_METADATA_KEY, count);
    }

    match verbatim_details {
        Some(details) => tonic::Status::with_details_and_metadata(code, message, details, metadata),
        None => {
            let info_meta = bounded_info_meta(code, &message, twirp_code, meta);
            tonic::Status::with_error_details_and_metadata(
                code,
                message,
                ErrorDetails::with_error_info(twirp_code.reason(), TWIRP_ERROR_DOMAIN, info_meta),
                metadata,
            )
        }
    }
}

/// The trailing metadata entry of one `meta` entry, or `None` when it is not copied: a key
/// longer than [`MAX_META_KEY_LEN`], a value longer than [`MAX_META_VALUE_LEN`] or not
/// printable ASCII.
fn meta_trailer(key: &str, value: &str) -> Option<(AsciiMetadataKey, AsciiMetadataValue)> {
    if key.len() > MAX_META_KEY_LEN
        || value.len() > MAX_META_VALUE_LEN
        || !value.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return None;
    }
    let value = AsciiMetadataValue::try_from(value).ok()?;
    let key = AsciiMetadataKey::from_bytes(meta_metadata_key(key).as_bytes()).ok()?;
    Some((key, value))
}

/// As much of `meta` as fits, in key order, in an `ErrorInfo` whose whole `google.rpc.Status`
/// stays within [`MAX_DETAILS_LEN`] bytes.
///
/// Sizes are protobuf's own: the status with an empty `ErrorInfo` is encoded once, and each
/// entry adds at most its map-entry size; `SLACK` covers the two enclosing length prefixes
/// (`Status.details[0]` and `Any.value`) growing by a byte each past 127 and 16383 bytes.
fn bounded_info_meta(
    code: Code,
    message: &str,
    twirp_code: TwirpCode,
    meta: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    const SLACK: usize = 4;
    let base = tonic::Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(twirp_code.reason(), TWIRP_ERROR_DOMAIN, HashMap::new()),
    )
    .details()
    .len();
    let mut used = base + SLACK;
    let mut kept = HashMap::new();
    for (key, value) in meta {
        let size = map_entry_len(key, value);
        if used + size > MAX_DETAILS_LEN {
            continue;
        }
        used += size;
        kept.insert(key.clone(), value.clone());
    }
    kept
}

/// The encoded size of one `map<string, string>` entry (field tag, length, key and value).
fn map_entry_len(key: &str, value: &str) -> usize {
    let field = |len: usize| 1 + prost::encoding::encoded_len_varint(len as u64) + len;
    let entry = field(key.len()) + field(value.len());
    field(entry)
}

/// Decodes a standard-base64 `google.rpc.Status`; `None` unless it is valid base64 of a valid
/// message of at most [`MAX_DETAILS_LEN`] bytes.
fn decode_error_details(value: &str) -> Option<Bytes> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    if bytes.len() > MAX_DETAILS_LEN {
        return None;
    }
    tonic_types::pb::Status::decode(bytes.as_slice()).ok()?;
    Some(Bytes::from(bytes))
}

/// Whether tonic percent-encodes this byte of a `grpc-message` (controls, non-ASCII and
/// ` "#%<>`?{}`): such a byte takes three bytes on the wire.
fn percent_encoded(b: u8) -> bool {
    !(0x20..0x7f).contains(&b) || b" \"#%<>`?{}".contains(&b)
}

/// The size of `s` as a percent-encoded `grpc-message`.
fn encoded_message_len(s: &str) -> usize {
    s.bytes()
        .map(|b| if percent_encoded(b) { 3 } else { 1 })
        .sum()
}

/// `msg` cut so that, percent-encoded as `grpc-message`, it takes at most `max` bytes: cut on a
/// character boundary and ending in [`TRUNCATED_MARKER`]; unchanged when it already fits.
fn bound_grpc_message(mut msg: String, max: usize) -> String {
    if encoded_message_len(&msg) <= max {
        return msg;
    }
    let budget = max.saturating_sub(encoded_message_len(TRUNCATED_MARKER));
    let mut used = 0;
    let mut end = 0;
    for (at, c) in msg.char_indices() {
        let next = at + c.len_utf8();
        used += encoded_message_len(&msg[at..next]);
        if used > budget {
            break;
        }
        end = next;
    }
    msg.truncate(end);
    msg.push_str(TRUNCATED_MARKER);
    msg
}

fn too_large_message(limit: usize, size: Option<u64>) -> String {
    match size {
        Some(size) => format!("upstream response of {size} bytes exceeds the {limit}-byte limit"),
        None => format!("upstream response exceeds the {limit}-byte limit"),
    }
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

/// Classifies an answer that is not a success when only the first bytes of its body were read
/// (the client reads at most 64 KiB of an error): like [`classify_response`], but a JSON object
/// that breaks off is still a Twirp error when its `code` (a valid Twirp code) is complete in
/// `prefix`; its `msg` is kept when complete too, and its `meta` is dropped.
///
/// A LiveKit error with a huge `meta` is still LiveKit's error: classifying it by HTTP status
/// would turn a `not_found` (404) into `bad_route`, i.e. `UNIMPLEMENTED`.
///
/// ```
/// use egress_twirp::{Error, TwirpCode, classify_response_prefix};
/// use http::StatusCode;
///
/// let cut = br#"{"code":"not_found","msg":"egress does not exist","meta":{"a":"xxxxx"#;
/// let err = classify_response_prefix(StatusCode::NOT_FOUND, Some("application/json"), cut);
/// assert!(matches!(&err, Error::Twirp(e) if e.code == TwirpCode::NotFound));
/// assert_eq!(err.to_string(), "not_found: egress does not exist");
/// ```
pub fn classify_response_prefix(
    status: StatusCode,
    content_type: Option<&str>,
    prefix: &[u8],
) -> Error {
    // A body that happens to end at the bound may well be whole: then it keeps its meta.
    if !status.is_success()
        && TwirpError::from_json(prefix, status.as_u16()).is_none()
        && let Some((code, msg)) = sniff_twirp_prefix(prefix)
    {
        return Error::Twirp(TwirpError {
            code,
            msg: msg.unwrap_or_default(),
            meta: BTreeMap::new(),
            http_status: status.as_u16(),
        });
    }
    classify_response(status, content_type, prefix)
}

/// The Twirp `code` (and `msg`, when complete) of a JSON object that may break off anywhere.
///
/// Walks the object's members one complete JSON value at a time and stops at the first one that
/// is incomplete; `None` when no valid `code` string was read, or when `code` or `msg` has the
/// wrong type (such a body is not a Twirp error whole either).
fn sniff_twirp_prefix(prefix: &[u8]) -> Option<(TwirpCode, Option<String>)> {
    /// One complete JSON value at the start of `input`, and how many bytes it took.
    fn value<T: serde::de::DeserializeOwned>(input: &[u8]) -> Option<(T, usize)> {
        let mut values = serde_json::Deserializer::from_slice(input).into_iter::<T>();
        let value = values.next()?.ok()?;
        Some((value, values.byte_offset()))
    }
    fn skip_ws(input: &[u8]) -> &[u8] {
        let start = input
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(input.len());
        &input[start..]
    }

    let mut rest = skip_ws(prefix).strip_prefix(b"{")?;
    let mut code = None;
    let mut msg = None;
    loop {
        rest = skip_ws(rest);
        let Some((key, used)) = value::<String>(rest) else {
            break;
        };
        let Some(after_colon) = skip_ws(&rest[used..]).strip_prefix(b":") else {
            break;
        };
        rest = skip_ws(after_colon);
        let used = match key.as_str() {
            "code" | "msg" => {
                // A complete value of the wrong type is not Twirp; an incomplete one ends the
                // walk.
                let Some((raw, used)) = value::<serde_json::Value>(rest) else {
                    break;
                };
                let serde_json::Value::String(text) = raw else {
                    return None;
                };
                if key == "code" {
                    code = Some(TwirpCode::parse(&text)?);
                } else {
                    msg = Some(text);
                }
                used
            }
            _ => match value::<serde::de::IgnoredAny>(rest) {
                Some((_, used)) => used,
                None => break,
            },
        };
        rest = skip_ws(&rest[used..]);
        match rest.strip_prefix(b",") {
            Some(next) => rest = next,
            None => break,
        }
    }
    code.map(|code| (code, msg))
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
                Error::TooLarge {
                    limit: 1000,
                    size: Some(4096),
                },
                Code::ResourceExhausted,
                "UPSTREAM_TOO_LARGE",
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
        assert_eq!(
            Error::TooLarge {
                limit: 1000,
                size: Some(4096)
            }
            .to_string(),
            "upstream response of 4096 bytes exceeds the 1000-byte limit"
        );
        assert_eq!(
            Error::TooLarge {
                limit: 1000,
                size: None
            }
            .to_string(),
            "upstream response exceeds the 1000-byte limit"
        );
    }

    /// `kind()` is a metric label: each variant has its own, fixed name.
    #[test]
    fn kinds_are_fixed_and_distinct() {
        let cases = [
            (
                Error::Twirp(TwirpError::new(TwirpCode::NotFound, "x")),
                "twirp",
            ),
            (intermediary(502), "intermediary"),
            (Error::Connect(String::new()), "connect"),
            (Error::Reset(String::new()), "reset"),
            (Error::Timeout(Duration::ZERO), "timeout"),
            (Error::Tls(String::new()), "tls"),
            (Error::Body(String::new()), "body"),
            (
                Error::TooLarge {
                    limit: 1,
                    size: None,
                },
                "too_large",
            ),
            (Error::Decode(String::new()), "decode"),
            (Error::Auth(String::new()), "auth"),
            (Error::InvalidUrl(String::new()), "invalid_url"),
            (Error::Canceled, "canceled"),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err:?}");
            assert!(seen.insert(kind));
        }
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
    fn excerpt_scans_a_bounded_prefix() {
        // The scan bound is 4 * 256 + 64 = 1088 bytes: text that ends exactly there is whole.
        let scan = BODY_EXCERPT_MAX * 4 + 64;
        let at_bound = format!("{}abc", " ".repeat(scan - 3));
        assert_eq!(body_excerpt(at_bound.as_bytes()), "abc");
        // One byte further, the body is cut inside the scan: what was seen, marked as cut.
        let past = format!("{}abc", " ".repeat(scan - 2));
        assert_eq!(body_excerpt(past.as_bytes()), "ab...");
        // A cut body that held nothing printable is empty, not a bare marker.
        assert_eq!(body_excerpt(" ".repeat(2 * scan).as_bytes()), "");
        // A character split by the scan bound is dropped, not turned into U+FFFD.
        let split = format!("{}€€€", " ".repeat(scan - 8));
        assert_eq!(body_excerpt(split.as_bytes()), "€€...");
        // Invalid bytes inside the scan are U+FFFD, in a body that is whole or cut.
        let mut bytes = " ".repeat(scan - 8).into_bytes();
        bytes.extend_from_slice(b"x\xffy");
        assert_eq!(body_excerpt(&bytes), "x\u{FFFD}y");
        bytes.extend_from_slice(&[b'z'; 20]);
        assert_eq!(body_excerpt(&bytes), "x\u{FFFD}yzzzzz...");
    }

    #[test]
    fn excerpt_whitespace_and_cut_points_are_exact() {
        assert_eq!(
            body_excerpt(b"  lead \t and\r\n  trail  "),
            "lead and trail"
        );
        assert_eq!(body_excerpt(b"\x00\x1bx"), "x");
        // Exactly full, then one character over (a space and a letter).
        let full = "x".repeat(BODY_EXCERPT_MAX);
        assert_eq!(body_excerpt(full.as_bytes()), full);
        let over = format!("{} y", "x".repeat(BODY_EXCERPT_MAX - 1));
        assert_eq!(
            body_excerpt(over.as_bytes()),
            format!("{}...", "x".repeat(BODY_EXCERPT_MAX - 3))
        );
        let long = "x".repeat(BODY_EXCERPT_MAX + 1);
        let cut = body_excerpt(long.as_bytes());
        assert_eq!(cut.len(), BODY_EXCERPT_MAX);
        assert_eq!(cut, format!("{}...", "x".repeat(BODY_EXCERPT_MAX - 3)));
        // The marker never follows a space.
        let spaced = format!("{} {}", "x".repeat(BODY_EXCERPT_MAX - 4), "y".repeat(10));
        assert_eq!(
            body_excerpt(spaced.as_bytes()),
            format!("{}...", "x".repeat(BODY_EXCERPT_MAX - 4))
        );
        // Other bounds go through the same cut (content type: 100 bytes, location: 200).
        assert_eq!(sanitize(b"abcdef", 5), "ab...");
        assert_eq!(sanitize(b"abcde", 5), "abcde");
        assert_eq!(sanitize("é".repeat(3).as_bytes(), 5), "é...");
        assert_eq!(sanitize("é".repeat(3).as_bytes(), 4), "...");
    }

    #[test]
    fn intermediary_message_bounds_content_type_and_location() {
        let err = Error::Intermediary {
            status: 302,
            content_type: Some("t".repeat(500)),
            body_excerpt: String::new(),
            location: Some("l".repeat(500)),
        };
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!(
                "upstream returned HTTP 302 Found ({}...) redirecting to {}...",
                "t".repeat(97),
                "l".repeat(197)
            )
        );
        // An unknown status has no reason phrase.
        let err = classify_response(StatusCode::from_u16(599).unwrap(), None, b"");
        assert_eq!(err.to_string(), "upstream returned HTTP 599");
    }

    #[test]
    fn bin_keys_never_end_in_dash_bin() {
        assert_eq!(meta_metadata_key("bin"), "twirp-meta-_bin");
        assert_eq!(meta_metadata_key("BIN"), "twirp-meta-_bin");
        assert_eq!(meta_metadata_key("a-bin"), "twirp-meta-a_bin");
        assert_eq!(meta_metadata_key("a bin"), "twirp-meta-a_bin");
        assert_eq!(meta_metadata_key("cabin"), "twirp-meta-cabin");
        assert_eq!(meta_metadata_key("binx"), "twirp-meta-binx");
        assert_eq!(meta_metadata_key(""), "twirp-meta-");
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

#[cfg(test)]
mod bound_tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use tonic_types::StatusExt;

    /// Size of the response metadata as grpc-core counts it against its 8 KiB limit: each
    /// entry's name and value plus 32 bytes (the HPACK entry overhead).
    fn metadata_block_size(status: &tonic::Status) -> usize {
        let response: http::Response<()> = status.clone().into_http();
        response
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum()
    }

    fn hostile(msg: String, keys: usize, value: &str) -> Error {
        let mut err = TwirpError::new(TwirpCode::NotFound, msg);
        for i in 0..keys {
            err = err.with_meta(format!("key_{i:04}"), value);
        }
        Error::Twirp(err)
    }

    #[test]
    fn huge_msg_and_meta_keep_the_code_under_the_limit() {
        let cases = [
            hostile("x".repeat(4096), 300, "some value"),
            hostile("é".repeat(4096), 300, &"v".repeat(MAX_META_VALUE_LEN)),
            hostile("{\"quoted\"}%".repeat(1000), 3000, "y"),
            hostile(String::new(), 1, &"z".repeat(60_000)),
            Error::Twirp(
                TwirpError::new(TwirpCode::NotFound, "m")
                    .with_meta("k".repeat(10_000), "v")
                    .with_meta("error_details", "A".repeat(60_000)),
            ),
        ];
        for err in cases {
            let status = err.to_status();
            assert_eq!(status.code(), Code::NotFound);
            assert_eq!(status.metadata().get("twirp-code").unwrap(), "not_found");
            let size = metadata_block_size(&status);
            assert!(size < 6 * 1024, "{size}");
            assert!(
                status.details().len() <= MAX_DETAILS_LEN,
                "{}",
                status.details().len()
            );
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.reason, "NOT_FOUND");
        }
    }

    #[test]
    fn message_is_cut_on_a_char_boundary_with_a_marker() {
        // Fits exactly: unchanged.
        let exact = "a".repeat(MAX_GRPC_MESSAGE_LEN);
        assert_eq!(
            bound_grpc_message(exact.clone(), MAX_GRPC_MESSAGE_LEN),
            exact
        );
        // One byte over: cut, marker, and the encoded form within the bound.
        let over = "a".repeat(MAX_GRPC_MESSAGE_LEN + 1);
        let cut = bound_grpc_message(over, MAX_GRPC_MESSAGE_LEN);
        assert!(cut.ends_with(TRUNCATED_MARKER));
        assert_eq!(
            encoded_message_len(&cut),
            MAX_GRPC_MESSAGE_LEN,
            "the budget is used to the byte"
        );
        for unit in ["é", "€", "😀", " ", "%", "a"] {
            let msg = unit.repeat(4096);
            let cut = bound_grpc_message(msg.clone(), MAX_GRPC_MESSAGE_LEN);
            let encoded = encoded_message_len(&cut);
            assert!(encoded <= MAX_GRPC_MESSAGE_LEN, "{unit}: {encoded}");
            // Close to the budget: at most one unit short.
            assert!(encoded + 12 > MAX_GRPC_MESSAGE_LEN, "{unit}: {encoded}");
            let kept = cut.strip_suffix(TRUNCATED_MARKER).unwrap();
            assert!(msg.starts_with(kept));
            assert!(!kept.is_empty());
        }
        // The status message is the bounded one; an empty msg is still the code name.
        let status =
            Error::Twirp(TwirpError::new(TwirpCode::NotFound, "x".repeat(5000))).to_status();
        assert!(status.message().len() <= MAX_GRPC_MESSAGE_LEN);
        assert!(status.message().ends_with(TRUNCATED_MARKER));
        assert!(status.message().starts_with("xxxx"));
        // Every variant's message is bounded, not only Twirp's.
        let status = Error::Reset("r".repeat(5000)).to_status();
        assert!(status.message().len() <= MAX_GRPC_MESSAGE_LEN);
        assert!(
            status
                .message()
                .starts_with("upstream connection lost: rrr")
        );
    }

    #[test]
    fn percent_encoded_bytes_are_tonics() {
        for b in 0u8..=255 {
            let expected = b.is_ascii_control() || !b.is_ascii() || b" \"#%<>`?{}".contains(&b);
            assert_eq!(percent_encoded(b), expected, "{b:#x}");
        }
        assert_eq!(encoded_message_len("a b"), 5);
        assert_eq!(encoded_message_len("é"), 6);
        assert_eq!(encoded_message_len(""), 0);
        // Agrees with what tonic sends.
        let msg = "a b%é{}<>?#`\"\u{7f}\n~";
        let status = tonic::Status::new(Code::Internal, msg);
        let response: http::Response<()> = status.into_http();
        let sent = response.headers().get("grpc-message").unwrap();
        assert_eq!(sent.len(), encoded_message_len(msg));
    }

    #[test]
    fn meta_trailers_are_capped_by_count_and_bytes() {
        // Count: small entries, more than MAX_META_TRAILERS.
        let status = hostile("m".into(), MAX_META_TRAILERS + 5, "v").to_status();
        let md = status.metadata();
        let kept = md
            .keys()
            .filter(|k| matches!(k, tonic::metadata::KeyRef::Ascii(k) if k.as_str().starts_with(TWIRP_META_METADATA_PREFIX)))
            .count();
        assert_eq!(kept, MAX_META_TRAILERS);
        assert_eq!(md.get(META_OMITTED_METADATA_KEY).unwrap(), "5");
        // Key order decides which are kept.
        assert!(md.get("twirp-meta-key_0000").is_some());
        assert!(
            md.get(format!("twirp-meta-key_{:04}", MAX_META_TRAILERS - 1).as_str())
                .is_some()
        );
        assert!(
            md.get(format!("twirp-meta-key_{:04}", MAX_META_TRAILERS).as_str())
                .is_none()
        );

        // Bytes: each entry is name (twirp-meta-key_0000 = 19) + value.
        let value = "v".repeat(500);
        let per_entry = 19 + value.len();
        let fit = MAX_META_TRAILER_BYTES / per_entry;
        let status = hostile("m".into(), fit + 2, &value).to_status();
        let md = status.metadata();
        for i in 0..fit {
            assert!(
                md.get(format!("twirp-meta-key_{i:04}").as_str()).is_some(),
                "{i}"
            );
        }
        assert!(
            md.get(format!("twirp-meta-key_{fit:04}").as_str())
                .is_none()
        );
        assert_eq!(md.get(META_OMITTED_METADATA_KEY).unwrap(), "2");

        // Exactly at the byte budget: kept.
        let exact = "v".repeat(MAX_META_TRAILER_BYTES - "twirp-meta-k".len());
        let status =
            Error::Twirp(TwirpError::new(TwirpCode::Internal, "m").with_meta("k", exact.as_str()))
                .to_status();
        // (Longer than a trailer value may be, so it is skipped for that reason alone.)
        assert!(exact.len() > MAX_META_VALUE_LEN);
        assert!(status.metadata().get("twirp-meta-k").is_none());
        let status = Error::Twirp(
            TwirpError::new(TwirpCode::Internal, "m")
                .with_meta("a", "x".repeat(MAX_META_VALUE_LEN))
                .with_meta(
                    "b",
                    "y".repeat(
                        MAX_META_TRAILER_BYTES - MAX_META_VALUE_LEN - 2 * "twirp-meta-a".len(),
                    ),
                )
                .with_meta("c", ""),
        )
        .to_status();
        let md = status.metadata();
        assert!(md.get("twirp-meta-a").is_some());
        assert!(md.get("twirp-meta-b").is_some(), "exactly at the budget");
        assert!(md.get("twirp-meta-c").is_none(), "one name over the budget");
        assert_eq!(md.get(META_OMITTED_METADATA_KEY).unwrap(), "1");

        // Nothing omitted: no counter.
        let status = hostile("m".into(), 3, "v").to_status();
        assert!(status.metadata().get(META_OMITTED_METADATA_KEY).is_none());
    }

    #[test]
    fn long_meta_keys_and_values_stay_out_of_trailers() {
        let at = "k".repeat(MAX_META_KEY_LEN);
        let over = "q".repeat(MAX_META_KEY_LEN + 1);
        let status = Error::Twirp(
            TwirpError::new(TwirpCode::Internal, "m")
                .with_meta(at.as_str(), "1")
                .with_meta(over.as_str(), "2")
                .with_meta("v_at", "x".repeat(MAX_META_VALUE_LEN - 700))
                .with_meta("v_over", "x".repeat(MAX_META_VALUE_LEN + 1))
                .with_meta("ctl", "a\u{7f}")
                .with_meta("low", "a\u{1f}")
                .with_meta("space", " ~"),
        )
        .to_status();
        let md = status.metadata();
        assert!(md.get(meta_metadata_key(&at).as_str()).is_some());
        assert!(md.get(meta_metadata_key(&over).as_str()).is_none());
        assert!(md.get("twirp-meta-v_at").is_some());
        assert!(md.get("twirp-meta-v_over").is_none());
        assert!(md.get("twirp-meta-ctl").is_none());
        assert!(md.get("twirp-meta-low").is_none());
        assert_eq!(md.get("twirp-meta-space").unwrap(), " ~");
        assert_eq!(md.get(META_OMITTED_METADATA_KEY).unwrap(), "4");
        let value_at = "x".repeat(MAX_META_VALUE_LEN);
        let status = Error::Twirp(
            TwirpError::new(TwirpCode::Internal, "m").with_meta("v", value_at.as_str()),
        )
        .to_status();
        assert_eq!(
            status.metadata().get("twirp-meta-v").unwrap(),
            value_at.as_str()
        );
    }

    #[test]
    fn error_info_meta_fills_the_details_budget() {
        // Many small entries: as many as fit, in key order, and the details within the bound.
        let status = hostile("m".into(), 500, "value").to_status();
        let details = status.details().len();
        assert!(details <= MAX_DETAILS_LEN, "{details}");
        let info = status.get_error_details().error_info().cloned().unwrap();
        let n = info.metadata.len();
        assert!(n > 50 && n < 500, "{n}");
        for i in 0..n {
            assert!(info.metadata.contains_key(&format!("key_{i:04}")), "{i}");
        }
        // The estimate is tight: one more entry would not have fit.
        let one_more = map_entry_len("key_0499", "value");
        assert!(details + one_more > MAX_DETAILS_LEN - 8, "{details}");

        // A huge entry is skipped, smaller ones after it still fit.
        let status = Error::Twirp(
            TwirpError::new(TwirpCode::Internal, "m")
                .with_meta("a", "x".repeat(MAX_DETAILS_LEN))
                .with_meta("b", "small"),
        )
        .to_status();
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert!(!info.metadata.contains_key("a"));
        assert_eq!(info.metadata["b"], "small");

        // Entry sizes are protobuf's.
        assert_eq!(map_entry_len("", ""), 6);
        assert_eq!(map_entry_len("k", "v"), 8);
        assert_eq!(
            map_entry_len("k", &"v".repeat(200)),
            1 + 2 + 3 + 1 + 2 + 200
        );
        let mut info = HashMap::new();
        info.insert("k".to_owned(), "v".repeat(200));
        let with = tonic_types::pb::ErrorInfo {
            reason: String::new(),
            domain: String::new(),
            metadata: info,
        };
        assert_eq!(with.encoded_len(), map_entry_len("k", &"v".repeat(200)));
    }

    #[test]
    fn oversized_error_details_are_not_verbatim() {
        let inner = tonic::Status::new(Code::FailedPrecondition, "x".repeat(MAX_DETAILS_LEN));
        let rpc = tonic_types::pb::Status {
            code: inner.code() as i32,
            message: inner.message().to_owned(),
            details: vec![],
        }
        .encode_to_vec();
        assert!(rpc.len() > MAX_DETAILS_LEN);
        let status = Error::Twirp(
            TwirpError::new(TwirpCode::FailedPrecondition, "m")
                .with_meta("error_details", STANDARD.encode(&rpc)),
        )
        .to_status();
        assert!(status.details().len() <= MAX_DETAILS_LEN);
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "FAILED_PRECONDITION");

        // At the bound it is still used verbatim.
        let mut small = tonic_types::pb::Status {
            code: 9,
            message: String::new(),
            details: vec![],
        };
        let overhead = small.encode_to_vec().len() + 3;
        small.message = "y".repeat(MAX_DETAILS_LEN - overhead);
        let raw = small.encode_to_vec();
        assert_eq!(raw.len(), MAX_DETAILS_LEN);
        let status = Error::Twirp(
            TwirpError::new(TwirpCode::FailedPrecondition, "m")
                .with_meta("error_details", STANDARD.encode(&raw)),
        )
        .to_status();
        assert_eq!(status.details(), raw.as_slice());
    }

    #[test]
    fn error_info_takes_an_entry_that_fills_the_budget_exactly() {
        let base = tonic::Status::with_error_details(
            Code::Internal,
            "m",
            ErrorDetails::with_error_info("INTERNAL", TWIRP_ERROR_DOMAIN, HashMap::new()),
        )
        .details()
        .len();
        // What bounded_info_meta may spend on entries: the budget less the empty status and
        // the slack for the enclosing length prefixes.
        let room = MAX_DETAILS_LEN - base - 4;
        let fits = (0..MAX_DETAILS_LEN)
            .rev()
            .find(|&len| map_entry_len("k", &"v".repeat(len)) <= room)
            .unwrap();
        assert_eq!(
            map_entry_len("k", &"v".repeat(fits)),
            room,
            "an exact fit exists"
        );
        for (len, kept) in [(fits, true), (fits + 1, false)] {
            let status = Error::Twirp(
                TwirpError::new(TwirpCode::Internal, "m").with_meta("k", "v".repeat(len)),
            )
            .to_status();
            assert!(status.details().len() <= MAX_DETAILS_LEN, "{len}");
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.metadata.contains_key("k"), kept, "{len}");
        }
    }

    #[test]
    fn prefix_of_a_twirp_error_keeps_its_code() {
        let body = format!(
            r#"{{"code":"not_found","msg":"egress does not exist","meta":{{"k":"{}"}}}}"#,
            "x".repeat(100_000)
        );
        let prefix = &body.as_bytes()[..64 * 1024];
        let err = classify_response_prefix(StatusCode::NOT_FOUND, Some("application/json"), prefix);
        let Error::Twirp(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.code, TwirpCode::NotFound);
        assert_eq!(e.msg, "egress does not exist");
        assert!(e.meta.is_empty());
        assert_eq!(e.http_status, 404);
        assert_eq!(err.grpc_code(), Code::NotFound);

        // Members in any order, whitespace, other members skipped whole.
        let err = classify_response_prefix(
            StatusCode::CONFLICT,
            None,
            br#" { "meta" : {"a":"b,c"} , "x":[1,{"code":"internal"}], "code" : "aborted" , "msg": "xx"#,
        );
        assert!(
            matches!(&err, Error::Twirp(e) if e.code == TwirpCode::Aborted && e.msg.is_empty()),
            "{err:?}"
        );

        // A complete body goes through the ordinary parser.
        let err = classify_response_prefix(
            StatusCode::NOT_FOUND,
            None,
            br#"{"code":"not_found","msg":"m","meta":{"a":"b"}}"#,
        );
        assert!(
            matches!(&err, Error::Twirp(e) if e.meta.len() == 1),
            "{err:?}"
        );

        // Not Twirp: no code before the cut, a cut code, a bad code, wrong types, 2xx, not an
        // object.
        for body in [
            &br#"{"msg":"egress does not exist","meta":{"k":"xxx"#[..],
            br#"{"code":"not_fo"#,
            br#"{"code":"teapot","msg":"x"#,
            br#"{"code":404,"msg":"x"#,
            br#"{"code":"not_found","msg":5,"#,
            br#"{"msg":5,"code":"not_found","#,
            br#"["code","not_found"#,
            br#"<html>"code":"not_found""#,
            b"",
            br#"{"code""#,
            br#"{"code" "not_found","#,
        ] {
            let err = classify_response_prefix(StatusCode::NOT_FOUND, None, body);
            assert!(
                matches!(err, Error::Intermediary { status: 404, .. }),
                "{:?}: {err:?}",
                String::from_utf8_lossy(body)
            );
        }
        let err =
            classify_response_prefix(StatusCode::OK, None, br#"{"code":"not_found","msg":"x"#);
        assert!(matches!(err, Error::Intermediary { status: 200, .. }));
        // The code alone is enough; a msg that breaks off is left out.
        let err = classify_response_prefix(
            StatusCode::NOT_FOUND,
            None,
            br#"{"code":"not_found","msg":"egress do"#,
        );
        assert!(
            matches!(&err, Error::Twirp(e) if e.code == TwirpCode::NotFound && e.msg.is_empty()),
            "{err:?}"
        );
        assert_eq!(err.to_status().message(), "not_found");
    }
}
