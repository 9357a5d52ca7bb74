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
//! # Codes
//!
//! [`TwirpCode`] is the 18 codes of the Twirp v7 specification with their HTTP statuses;
//! [`Error::twirp_code`] is the code of an answer (the server's, or the one its HTTP status
//! classifies to) and [`Error::kind`] names the other failures. What they become for a gRPC
//! caller is the gRPC edge's business (`egress-proxy`'s `error::upstream`), so this crate, and
//! the Rust client built on it, know Twirp and HTTP only.
//!
//! No message, metadata or detail ever contains the `Authorization` header or any secret: the
//! client never puts them in an error.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

/// Most bytes of a body excerpt (see [`body_excerpt`]).
pub const BODY_EXCERPT_MAX: usize = 256;

/// The 18 error codes of the Twirp v7 specification.
///
/// ```
/// use egress_twirp::TwirpCode;
///
/// let code: TwirpCode = "not_found".parse().unwrap();
/// assert_eq!(code, TwirpCode::NotFound);
/// assert_eq!(code.as_str(), "not_found");
/// assert_eq!(code.http_status().as_u16(), 404);
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
/// gRPC status at the gRPC edge (`egress-proxy`'s `error::upstream`).
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
}

fn too_large_message(limit: usize, size: Option<u64>) -> String {
    match size {
        Some(size) => format!("upstream response of {size} bytes exceeds the {limit}-byte limit"),
        None => format!("upstream response exceeds the {limit}-byte limit"),
    }
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
/// assert_eq!(err.twirp_code(), Some(TwirpCode::Unavailable));
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

    fn intermediary(status: u16) -> Error {
        classify_response(
            StatusCode::from_u16(status).unwrap(),
            Some("text/plain"),
            b"nope",
        )
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
        assert_eq!(err.twirp_code(), Some(TwirpCode::NotFound));
        assert_eq!(err.to_string(), "not_found: egress does not exist");
        // ... but never on a 2xx.
        let err = classify_response(
            StatusCode::OK,
            Some("application/json"),
            br#"{"code":"not_found","msg":"egress does not exist"}"#,
        );
        assert!(matches!(err, Error::Intermediary { status: 200, .. }));
        assert_eq!(err.twirp_code(), Some(TwirpCode::Unknown));
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

    #[test]
    fn intermediary_answers_classify_by_status() {
        let cases: &[(u16, TwirpCode)] = &[
            (200, TwirpCode::Unknown),
            (204, TwirpCode::Unknown),
            (300, TwirpCode::Internal),
            (302, TwirpCode::Internal),
            (308, TwirpCode::Internal),
            (400, TwirpCode::Internal),
            (401, TwirpCode::Unauthenticated),
            (403, TwirpCode::PermissionDenied),
            (404, TwirpCode::BadRoute),
            (405, TwirpCode::Unknown),
            (429, TwirpCode::ResourceExhausted),
            (500, TwirpCode::Unknown),
            (502, TwirpCode::Unavailable),
            (503, TwirpCode::Unavailable),
            (504, TwirpCode::Unavailable),
            (505, TwirpCode::Unknown),
        ];
        for &(status, twirp) in cases {
            let err = intermediary(status);
            assert!(
                matches!(err, Error::Intermediary { status: s, .. } if s == status),
                "{status}: {err:?}"
            );
            assert_eq!(err.twirp_code(), Some(twirp), "{status}");
            let meta = err.twirp_meta();
            assert_eq!(meta["http_error_from_intermediary"], "true");
            assert_eq!(meta["status_code"], status.to_string());
            assert_eq!(meta["body"], "nope");
        }
    }

    #[test]
    fn transport_failures_have_no_twirp_code_and_say_what_happened() {
        for err in [
            Error::Connect("refused".into()),
            Error::Reset("reset".into()),
            Error::Timeout(Duration::from_millis(1500)),
            Error::Tls("bad cert".into()),
            Error::Body("truncated".into()),
            Error::Decode("bad wire".into()),
            Error::Auth("no secret".into()),
            Error::InvalidUrl("ftp://x".into()),
            Error::Canceled,
        ] {
            assert_eq!(err.twirp_code(), None, "{err:?}");
            assert!(err.twirp_meta().is_empty(), "{err:?}");
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
        assert_eq!(err.twirp_code(), Some(TwirpCode::NotFound));

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
        assert_eq!(err.to_string(), "not_found: ");
    }
}
