//! Label values: gRPC status codes by canonical name, and the `rpc` label of a request path.
//!
//! Every value here is a `&'static str`, so recording a call never allocates.

use egress_core::Rpc;
use http::{HeaderMap, HeaderValue, StatusCode};

/// `rpc` label of the standard health service (`grpc.health.v1.Health`).
pub const RPC_HEALTH: &str = "health";
/// `rpc` label of the reflection services (`grpc.reflection.v1` and `v1alpha`).
pub const RPC_REFLECTION: &str = "reflection";
/// `rpc` label of every other path: unknown methods of `livekit.Egress`, unknown
/// services, non-gRPC requests.
pub const RPC_OTHER: &str = "other";

/// The front door a call came through: the `door` label of the call metrics, a field of
/// the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// gRPC (`/livekit.Egress/<Method>`; health and reflection too).
    Grpc,
    /// LiveKit's Twirp API (`/twirp/livekit.Egress/<Method>`), for LiveKit's SDKs.
    Twirp,
    /// gRPC-Web, translated to gRPC in front of the gRPC door (browser tools).
    GrpcWeb,
}

impl Door {
    /// Every door, in the order of their discriminants.
    pub(crate) const ALL: [Door; 3] = [Door::Grpc, Door::Twirp, Door::GrpcWeb];

    /// The label: `grpc`, `twirp` or `grpc-web`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Door::Grpc => "grpc",
            Door::Twirp => "twirp",
            Door::GrpcWeb => "grpc-web",
        }
    }

    /// The door of a request: [`GrpcWeb`](Door::GrpcWeb) when marked [`GrpcWeb`], else
    /// [`Twirp`](Door::Twirp) under `/twirp/`, else [`Grpc`](Door::Grpc).
    ///
    /// ```
    /// use egress_telemetry::{Door, GrpcWeb};
    ///
    /// let request = |path| http::Request::post(path).body(()).unwrap();
    /// assert_eq!(Door::of(&request("/twirp/livekit.Egress/ListEgress")), Door::Twirp);
    /// assert_eq!(Door::of(&request("/livekit.Egress/ListEgress")), Door::Grpc);
    /// let mut web = request("/livekit.Egress/ListEgress");
    /// web.extensions_mut().insert(GrpcWeb);
    /// assert_eq!(Door::of(&web).as_str(), "grpc-web");
    /// ```
    pub fn of<B>(request: &http::Request<B>) -> Door {
        if request.extensions().get::<GrpcWeb>().is_some() {
            Door::GrpcWeb
        } else if request.uri().path().starts_with(TWIRP_PREFIX) {
            Door::Twirp
        } else {
            Door::Grpc
        }
    }
}

/// Request extension marking a call that arrived as gRPC-Web and was translated to gRPC:
/// its path and content type then read as gRPC's, so the translation says so here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcWeb;

const TWIRP_PREFIX: &str = "/twirp/";

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
const REFLECTION_PREFIXES: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The `rpc` label for a request path, gRPC (`/livekit.Egress/X`) or Twirp
/// (`/twirp/livekit.Egress/X`).
///
/// One of the ten `livekit.Egress` method names, [`RPC_HEALTH`], [`RPC_REFLECTION`] or
/// [`RPC_OTHER`]; the set is closed, so the label's cardinality is bounded whatever
/// callers send.
///
/// ```
/// use egress_telemetry::rpc_label;
///
/// assert_eq!(rpc_label("/livekit.Egress/StopEgress"), "StopEgress");
/// assert_eq!(rpc_label("/twirp/livekit.Egress/StopEgress"), "StopEgress");
/// assert_eq!(rpc_label("/grpc.health.v1.Health/Check"), "health");
/// assert_eq!(rpc_label("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), "reflection");
/// assert_eq!(rpc_label("/livekit.Egress/NoSuchMethod"), "other");
/// assert_eq!(rpc_label("/"), "other");
/// ```
pub fn rpc_label(path: &str) -> &'static str {
    if let Some(rpc) = Rpc::from_path(path) {
        return rpc.as_str();
    }
    if path.starts_with(HEALTH_PREFIX) {
        RPC_HEALTH
    } else if REFLECTION_PREFIXES.iter().any(|p| path.starts_with(p)) {
        RPC_REFLECTION
    } else {
        RPC_OTHER
    }
}

/// Canonical names of the gRPC status codes, indexed by code.
pub(crate) const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

pub(crate) const CANCELLED: &str = CODE_NAMES[1];
pub(crate) const UNKNOWN: &str = CODE_NAMES[2];
pub(crate) const INTERNAL: &str = CODE_NAMES[13];

/// The canonical name of a numeric gRPC status code (`5` → `NOT_FOUND`).
///
/// Numbers outside the defined range are `UNKNOWN`, which is how gRPC clients treat them.
///
/// ```
/// use egress_telemetry::code_name;
///
/// assert_eq!(code_name(0), "OK");
/// assert_eq!(code_name(5), "NOT_FOUND");
/// assert_eq!(code_name(16), "UNAUTHENTICATED");
/// assert_eq!(code_name(99), "UNKNOWN");
/// ```
pub fn code_name(code: u32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODE_NAMES.get(i))
        .copied()
        .unwrap_or(UNKNOWN)
}

/// Parses a `grpc-status` value (decimal ASCII) without allocating.
fn parse_status(value: &HeaderValue) -> &'static str {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 3 || !bytes.iter().all(u8::is_ascii_digit) {
        return UNKNOWN;
    }
    let n = bytes
        .iter()
        .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
    code_name(n)
}

/// The code in a `grpc-status` header, if the map has one.
pub(crate) fn status_in(headers: &HeaderMap) -> Option<&'static str> {
    headers.get("grpc-status").map(parse_status)
}

/// The code a gRPC client derives from an HTTP status when the answer carries no
/// `grpc-status` (the gRPC spec's HTTP-to-gRPC mapping).
pub(crate) fn code_for_http_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => INTERNAL,
        401 => CODE_NAMES[16],
        403 => CODE_NAMES[7],
        404 => CODE_NAMES[12],
        429 | 502..=504 => CODE_NAMES[14],
        _ => UNKNOWN,
    }
}

/// Every `rpc` label [`rpc_label`] can give, in a fixed order.
pub(crate) const RPC_LABELS: [&str; Rpc::ALL.len() + 3] = {
    let mut labels = [RPC_OTHER; Rpc::ALL.len() + 3];
    let mut i = 0;
    while i < Rpc::ALL.len() {
        labels[i] = Rpc::ALL[i].as_str();
        i += 1;
    }
    labels[i] = RPC_HEALTH;
    labels[i + 1] = RPC_REFLECTION;
    labels
};

/// Where `label` stands in `labels`, if it does.
pub(crate) fn index_of(labels: &[&str], label: &str) -> Option<usize> {
    labels.iter().position(|l| *l == label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_labels_cover_every_label_of_a_path() {
        let paths = Rpc::ALL
            .map(|rpc| format!("/livekit.Egress/{}", rpc.as_str()))
            .into_iter()
            .chain(["/grpc.health.v1.Health/Check".to_owned(), "/x".to_owned()])
            .chain(["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".to_owned()]);
        for path in paths {
            assert!(index_of(&RPC_LABELS, rpc_label(&path)).is_some(), "{path}");
        }
        assert_eq!(index_of(&RPC_LABELS, "custom"), None);
    }

    #[test]
    fn parses_status_values() {
        let parse = |s: &'static str| parse_status(&HeaderValue::from_static(s));
        assert_eq!(parse("0"), "OK");
        assert_eq!(parse("1"), "CANCELLED");
        assert_eq!(parse("4"), "DEADLINE_EXCEEDED");
        assert_eq!(parse("13"), "INTERNAL");
        assert_eq!(parse("14"), "UNAVAILABLE");
        assert_eq!(parse("17"), "UNKNOWN");
        assert_eq!(parse(""), "UNKNOWN");
        assert_eq!(parse("-1"), "UNKNOWN");
        assert_eq!(parse(" 0"), "UNKNOWN");
        assert_eq!(parse("00000000000005"), "UNKNOWN");
        assert_eq!(parse("999"), "UNKNOWN");
    }

    #[test]
    fn every_code_has_a_name() {
        for (i, name) in CODE_NAMES.iter().enumerate() {
            assert_eq!(code_name(i as u32), *name);
            assert!(name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        }
    }

    #[test]
    fn http_status_mapping() {
        assert_eq!(code_for_http_status(StatusCode::BAD_REQUEST), "INTERNAL");
        assert_eq!(
            code_for_http_status(StatusCode::UNAUTHORIZED),
            "UNAUTHENTICATED"
        );
        assert_eq!(
            code_for_http_status(StatusCode::FORBIDDEN),
            "PERMISSION_DENIED"
        );
        assert_eq!(code_for_http_status(StatusCode::NOT_FOUND), "UNIMPLEMENTED");
        assert_eq!(
            code_for_http_status(StatusCode::TOO_MANY_REQUESTS),
            "UNAVAILABLE"
        );
        assert_eq!(
            code_for_http_status(StatusCode::SERVICE_UNAVAILABLE),
            "UNAVAILABLE"
        );
        assert_eq!(
            code_for_http_status(StatusCode::INTERNAL_SERVER_ERROR),
            "UNKNOWN"
        );
    }

    #[test]
    fn rpc_labels() {
        for rpc in Rpc::ALL {
            let path = format!("/livekit.Egress/{}", rpc.as_str());
            assert_eq!(rpc_label(&path), rpc.as_str());
            assert_eq!(rpc_label(&format!("/twirp{path}")), rpc.as_str());
            let request = |path: &str| http::Request::post(path).body(()).unwrap();
            assert_eq!(Door::of(&request(&format!("/twirp{path}"))), Door::Twirp);
            assert_eq!(Door::of(&request(&path)), Door::Grpc);
        }
        assert_eq!(rpc_label("/grpc.health.v1.Health/Watch"), RPC_HEALTH);
        assert_eq!(
            rpc_label("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            RPC_REFLECTION
        );
        assert_eq!(rpc_label("/livekit.Egress/stopegress"), RPC_OTHER);
        assert_eq!(rpc_label("/livekit.Room/CreateRoom"), RPC_OTHER);
        assert_eq!(rpc_label("/metrics"), RPC_OTHER);
        assert_eq!(rpc_label(""), RPC_OTHER);
    }
}
