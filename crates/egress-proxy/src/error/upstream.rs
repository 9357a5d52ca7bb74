//! What LiveKit (or something in front of it) answered, as a gRPC status: the Twirp→gRPC
//! table, the message, `ErrorInfo` and bounded trailers.
//!
//! `egress-twirp` classifies an answer (a Twirp error, an intermediary's HTTP answer, a
//! transport failure); this module is the gRPC side of it, kept at the gRPC edge so the Twirp
//! client (and the Rust client built on it) never compile tonic.
//!
//! # The table
//!
//! [`to_status`] uses this one table; the code alone is [`grpc_code`].
//!
//! | `egress_twirp::Error` variant | Twirp code | gRPC code |
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
//! | `TooLarge` (a successful answer over `ClientConfig::max_response_bytes`) | — | `RESOURCE_EXHAUSTED` |
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
//! error (without its `meta`), not an intermediary answer (see `egress_twirp::classify_response_prefix`).
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
//! No message, metadata or detail ever contains the `Authorization` header or any secret:
//! the Twirp client never puts them in an error.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use bytes::Bytes;
use egress_twirp::{Error, TwirpCode};
use prost::Message as _;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

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

/// The gRPC code of a Twirp code (see the [table](self#the-table)).
pub const fn code_of(code: TwirpCode) -> Code {
    match code {
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

/// The `ErrorInfo.reason` of a Twirp code: the code uppercased (`NOT_FOUND`, `DATALOSS`).
fn reason(code: TwirpCode) -> String {
    code.as_str().to_ascii_uppercase()
}

/// The gRPC code an upstream failure maps to (see the [table](self#the-table)).
///
/// ```
/// use egress_proxy::error::upstream::grpc_code;
/// use egress_twirp::Error;
/// use tonic::Code;
///
/// let err = Error::Intermediary {
///     status: 401,
///     content_type: Some("text/plain".into()),
///     body_excerpt: "invalid authorization token".into(),
///     location: None,
/// };
/// assert_eq!(grpc_code(&err), Code::Unauthenticated);
/// assert_eq!(grpc_code(&Error::Connect("refused".into())), Code::Unavailable);
/// ```
pub fn grpc_code(error: &Error) -> Code {
    match error {
        Error::Twirp(e) => code_of(e.code),
        Error::Intermediary { status, .. } => code_of(TwirpCode::from_intermediary_status(*status)),
        Error::Connect(_) | Error::Reset(_) | Error::Tls(_) | Error::Body(_) => Code::Unavailable,
        Error::TooLarge { .. } => Code::ResourceExhausted,
        Error::Timeout(_) => Code::DeadlineExceeded,
        Error::Decode(_) | Error::Auth(_) | Error::InvalidUrl(_) => Code::Internal,
        Error::Canceled => Code::Cancelled,
    }
}

/// The gRPC status message (see the [module docs](self)), cut to
/// [`MAX_GRPC_MESSAGE_LEN`] as sent (see [bounds](self#bounds)).
fn message(error: &Error) -> String {
    let full = match error {
        Error::Twirp(e) if e.msg.is_empty() => return e.code.as_str().to_owned(),
        Error::Twirp(e) => e.msg.clone(),
        other => other.to_string(),
    };
    bound_grpc_message(full, MAX_GRPC_MESSAGE_LEN)
}

/// The gRPC status of an upstream failure, with trailing metadata and details (see the
/// [module docs](self)).
///
/// ```
/// use egress_proxy::error::upstream::to_status;
/// use egress_twirp::{Error, TwirpCode, TwirpError};
/// use tonic_types::StatusExt;
///
/// let err = Error::Twirp(
///     TwirpError::new(TwirpCode::NotFound, "egress does not exist").with_meta("egress_id", "EG_1"),
/// );
/// let status = to_status(&err);
/// assert_eq!(status.code(), tonic::Code::NotFound);
/// assert_eq!(status.message(), "egress does not exist");
/// assert_eq!(status.metadata().get("twirp-code").unwrap(), "not_found");
/// assert_eq!(status.metadata().get("twirp-meta-egress_id").unwrap(), "EG_1");
/// let info = status.get_error_details().error_info().cloned().unwrap();
/// assert_eq!(info.reason, "NOT_FOUND");
/// assert_eq!(info.metadata["egress_id"], "EG_1");
/// ```
pub fn to_status(error: &Error) -> Status {
    let code = grpc_code(error);
    let message = message(error);
    match error.twirp_code() {
        Some(twirp_code) => twirp_status(code, message, twirp_code, &error.twirp_meta()),
        None => Status::with_error_details(
            code,
            message,
            ErrorDetails::with_error_info(
                gateway_reason(error),
                GATEWAY_ERROR_DOMAIN,
                HashMap::new(),
            ),
        ),
    }
}

/// The `ErrorInfo.reason` of a failure of the gateway's own upstream call.
fn gateway_reason(error: &Error) -> &'static str {
    match error {
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

fn twirp_status(
    code: Code,
    message: String,
    twirp_code: TwirpCode,
    meta: &BTreeMap<String, String>,
) -> Status {
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
        Some(details) => Status::with_details_and_metadata(code, message, details, metadata),
        None => {
            let info_meta = bounded_info_meta(code, &message, twirp_code, meta);
            Status::with_error_details_and_metadata(
                code,
                message,
                ErrorDetails::with_error_info(reason(twirp_code), TWIRP_ERROR_DOMAIN, info_meta),
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
    let base = Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason(twirp_code), TWIRP_ERROR_DOMAIN, HashMap::new()),
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

/// The trailing-metadata key of a Twirp `meta` key: `twirp-meta-<key>`, lowercased, with every
/// character outside `a-z 0-9 - _ .` replaced by `-`, and a `-bin` suffix turned into `_bin`
/// (`-bin` keys are binary in gRPC).
///
/// ```
/// use egress_proxy::error::upstream::meta_metadata_key;
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use egress_twirp::{TwirpError, classify_response};
    use http::StatusCode;
    use std::time::Duration;
    use tonic_types::StatusExt;

    fn intermediary(status: u16) -> Error {
        classify_response(
            StatusCode::from_u16(status).unwrap(),
            Some("text/plain"),
            b"nope",
        )
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
            assert_eq!(grpc_code(&err), grpc, "{code}");
            let status = to_status(&err);
            assert_eq!(status.code(), grpc, "{code}");
            assert_eq!(status.message(), "m");
            assert_eq!(status.metadata().get("twirp-code").unwrap(), code.as_str());
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.reason, code.as_str().to_ascii_uppercase());
            assert_eq!(info.domain, TWIRP_ERROR_DOMAIN);
        }
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
            assert_eq!(grpc_code(&err), grpc, "{status}");
            let st = to_status(&err);
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
            assert_eq!(info.reason, reason(twirp));
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
            assert_eq!(grpc_code(&err), grpc, "{err:?}");
            assert_eq!(err.twirp_code(), None);
            let display = err.to_string();
            let status = to_status(&err);
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
        let status = to_status(&err);
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
        let status = to_status(&Error::Twirp(TwirpError::new(TwirpCode::Internal, "")));
        assert_eq!(status.message(), "internal");
    }

    fn sample_rpc_status() -> Vec<u8> {
        let inner = Status::with_error_details(
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
        let status = to_status(&err);
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
            let status = to_status(&err);
            assert_eq!(
                status.metadata().get("twirp-meta-error_details").unwrap(),
                bad
            );
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.metadata["error_details"], bad);
        }
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
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use egress_twirp::TwirpError;

    /// Reads like the call sites it checks: `error.to_status()`.
    trait ToStatus {
        fn to_status(&self) -> Status;
    }

    impl ToStatus for Error {
        fn to_status(&self) -> Status {
            to_status(self)
        }
    }
    use base64::engine::general_purpose::STANDARD;
    use tonic_types::StatusExt;

    /// Size of the response metadata as grpc-core counts it against its 8 KiB limit: each
    /// entry's name and value plus 32 bytes (the HPACK entry overhead).
    fn metadata_block_size(status: &Status) -> usize {
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
            let status = to_status(&err);
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
        let status = Status::new(Code::Internal, msg);
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
        let inner = Status::new(Code::FailedPrecondition, "x".repeat(MAX_DETAILS_LEN));
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
        let base = Status::with_error_details(
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
}
