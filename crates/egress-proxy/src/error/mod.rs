//! Every way an egress call can fail at the gateway, and the one table that codes a failure
//! ([`CallError::twirp_code`]).
//!
//! Stages return [`CallError`]; only a door turns it into its protocol's answer. For gRPC
//! that is [`CallError::to_status`], whose code is the table's through LiveKit's own
//! Twirp-to-gRPC table (the README's status table for what the gateway itself decides);
//! for Twirp it is [`twirp::TwirpAnswer`], in [`twirp`]. What LiveKit (or something in
//! front of it) answered keeps LiveKit's own table, in [`upstream`], with its message,
//! `ErrorInfo` and bounded trailers.

pub mod twirp;
pub mod upstream;

use std::time::Duration;

use egress_core::Rpc;
use egress_core::unknown::UnknownField;
use egress_policy::Denial;
use egress_twirp::TwirpCode;
use tonic::{Code, Status};

/// Longest idempotency key accepted (`x-livekit-request-id`, `idempotency-key`).
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Longest piece of a caller-supplied path or content type echoed back in a message.
pub const MAX_ECHO: usize = 200;

/// Why an egress call did not get LiveKit's answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A path under `livekit.Egress` that names no RPC of the pinned schema.
    #[error(
        "unknown method {} (this gateway serves livekit.Egress: {})",
        echo(path),
        Rpc::ALL.map(Rpc::as_str).join(", ")
    )]
    UnknownMethod { path: String },

    /// A path under `egress_gateway.v1.EgressEvents` other than `Watch`.
    #[error(
        "unknown method {} (egress_gateway.v1.EgressEvents serves Watch)",
        echo(path)
    )]
    UnknownEventsMethod { path: String },

    /// `--max-watchers` event streams are open already.
    #[error(
        "{max} event watchers already connected to this replica (--max-watchers); retry with backoff or on another replica"
    )]
    TooManyWatchers { max: usize },

    /// An event watcher fell a whole queue behind; it must start over from a snapshot.
    #[error("watcher fell behind ({missed} events missed); re-watch with snapshot")]
    WatcherBehind { missed: u64 },

    /// A `Watch` request that is not a `WatchEgressRequest`.
    #[error("not a WatchEgressRequest: {0}")]
    MalformedWatchRequest(#[source] prost::DecodeError),

    /// A gRPC content subtype other than protobuf (`application/grpc+json`).
    #[error(
        "content-type {} is not supported: this gateway speaks protobuf (application/grpc or \
         application/grpc+proto)",
        echo(content_type)
    )]
    UnsupportedCodec { content_type: String },

    /// A deadline header (`grpc-timeout`, `X-Twirp-Timeout-Ms`) that does not parse.
    #[error("malformed {header} header")]
    MalformedTimeout { header: &'static str },

    /// A Twirp request that is not `POST`.
    #[error("unsupported method {} (only POST is allowed)", echo(method))]
    MethodNotAllowed { method: String },

    /// A Twirp request whose content type is neither protobuf nor JSON.
    #[error(
        "unexpected Content-Type: {} (LiveKit's Twirp API takes application/protobuf or \
         application/json)",
        echo(content_type)
    )]
    TwirpContentType { content_type: String },

    /// A request body over `--max-message-size`.
    #[error("request body larger than the gateway's limit of {max} bytes (--max-message-size)")]
    BodyTooLarge { max: usize },

    /// The request body could not be read (the caller broke it off).
    #[error("reading the request body failed: {reason}")]
    RequestBody { reason: String },

    /// A JSON request body that is not protobuf-JSON of the RPC's request message.
    #[error("{rpc}: the json request could not be decoded: {reason}")]
    MalformedJson { rpc: Rpc, reason: String },

    /// The caller's idempotency key cannot be forwarded as it is (and replacing it would
    /// defeat its purpose).
    #[error(
        "{header} must be 1-{max} characters of A-Z a-z 0-9 . _ : - (a UUID, say)",
        max = MAX_IDEMPOTENCY_KEY
    )]
    MalformedIdempotencyKey { header: &'static str },

    /// The caller could not be identified.
    #[error(transparent)]
    Unauthenticated(#[from] AuthFailure),

    /// A concurrency limit was reached.
    #[error(transparent)]
    Shed(#[from] Shed),

    /// The caller's policy refuses the call.
    #[error(transparent)]
    Denied(#[from] Denial),

    /// The caller's policy reads requests, and this one carries a field our schema does not
    /// know (fail closed).
    #[error(
        "{rpc} request carries {field}, which the gateway's LiveKit schema does not know (the \
         caller's schema is newer than the gateway's); refused because the policy of caller \
         {caller} restricts what requests may carry"
    )]
    UnknownField {
        rpc: Rpc,
        field: UnknownField,
        caller: String,
    },

    /// The request message is not valid protobuf for its RPC.
    #[error("{rpc} request is not valid protobuf: {source}")]
    MalformedRequest {
        rpc: Rpc,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("{rpc}: no request message")]
    NoMessage { rpc: Rpc },

    /// A unary call whose body carried a second message (tonic's `unary` would drop it).
    #[error(
        "{rpc} is a unary call and takes exactly one request message; this request carried more"
    )]
    ExtraMessage { rpc: Rpc },

    /// The request message is over `--max-message-size` (after decompression).
    #[error("request message larger than the gateway's limit: {}", .0.message())]
    RequestTooLarge(#[source] Status),

    /// gRPC framing of the request failed (unsupported compression, a bad frame, a body
    /// cut off): tonic's own status says which.
    #[error("{}", .0.message())]
    Framing(#[source] Status),

    /// Looking up which room an egress belongs to (for a policy with room rules) failed.
    #[error("checking which room the egress belongs to: {0}")]
    RoomLookup(#[source] egress_twirp::Error),

    #[error("egress does not exist")]
    EgressNotFound,

    /// LiveKit, or something in front of it, did not give a usable answer.
    #[error(transparent)]
    Upstream(#[from] egress_twirp::Error),

    /// The call's deadline passed: the caller's `grpc-timeout`, else `--upstream-timeout`.
    #[error("{rpc}: deadline of {budget:?} exceeded before the call completed")]
    DeadlineExceeded { rpc: Rpc, budget: Duration },

    /// The gateway is draining: a health `Watch` stream ends with this.
    #[error("server is draining; watch another replica")]
    Draining,

    /// The drain timeout passed while the call was still running.
    #[error(
        "gateway shutting down: the drain timeout passed before this call finished; retry on \
         another replica"
    )]
    ShuttingDown,
}

/// Why a caller could not be identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("missing credentials: send authorization: Bearer <token>")]
    MissingToken,
    #[error("more than one authorization header; send exactly one")]
    AmbiguousToken,
    #[error("malformed authorization header: expected Bearer <token>")]
    MalformedToken,
    #[error("invalid bearer token")]
    UnknownToken,
    #[error("missing credentials: a client certificate is required")]
    MissingCertificate,
    #[error("client certificate names no known caller")]
    UnknownCertificate,
    #[error("no caller is configured")]
    NoCaller,
    /// A token naming a caller's `api_key` that is not a valid HS256 JWT.
    #[error("invalid authorization token")]
    CallerTokenMalformed,
    #[error("invalid token, error: invalid token signature")]
    CallerTokenSignature,
    #[error("invalid token, error: token has expired")]
    CallerTokenExpired,
    #[error("invalid token, error: token is not valid yet")]
    CallerTokenNotYetValid,
    /// A valid caller token without the `roomRecord` grant (LiveKit's own words).
    #[error("permissions denied")]
    MissingGrant,
}

/// Which concurrency limit a call hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    #[error("gateway overloaded: {max} calls already in flight; retry with backoff")]
    Global { max: usize },
    #[error(
        "this connection already has {max} calls in flight (--max-concurrency-per-connection); \
         open another connection or retry with backoff"
    )]
    Connection { max: usize },
}

impl Shed {
    /// The `limit` label of `egress_proxy_shed_calls_total`.
    pub fn limit(self) -> &'static str {
        match self {
            Shed::Global { .. } => "global",
            Shed::Connection { .. } => "connection",
        }
    }
}

impl CallError {
    /// The Twirp code of this failure: the one table. Twirp's codes are the finer ones
    /// (`bad_route`, `malformed`); the gRPC code follows from it ([`code`](Self::code)).
    pub fn twirp_code(&self) -> TwirpCode {
        match self {
            CallError::UnknownMethod { .. }
            | CallError::UnknownEventsMethod { .. }
            | CallError::UnsupportedCodec { .. }
            | CallError::MethodNotAllowed { .. }
            | CallError::TwirpContentType { .. } => TwirpCode::BadRoute,
            CallError::MalformedTimeout { .. } | CallError::MalformedIdempotencyKey { .. } => {
                TwirpCode::InvalidArgument
            }
            CallError::MalformedRequest { .. }
            | CallError::MalformedJson { .. }
            | CallError::NoMessage { .. }
            | CallError::ExtraMessage { .. }
            | CallError::MalformedWatchRequest(_)
            | CallError::RequestBody { .. }
            | CallError::Framing(_) => TwirpCode::Malformed,
            CallError::Unauthenticated(_) => TwirpCode::Unauthenticated,
            CallError::Shed(_)
            | CallError::RequestTooLarge(_)
            | CallError::BodyTooLarge { .. }
            | CallError::TooManyWatchers { .. }
            | CallError::WatcherBehind { .. } => TwirpCode::ResourceExhausted,
            CallError::Denied(_) | CallError::UnknownField { .. } => TwirpCode::PermissionDenied,
            CallError::RoomLookup(error) | CallError::Upstream(error) => {
                twirp::upstream_code(error)
            }
            CallError::EgressNotFound => TwirpCode::NotFound,
            CallError::DeadlineExceeded { .. } => TwirpCode::DeadlineExceeded,
            CallError::Draining | CallError::ShuttingDown => TwirpCode::Unavailable,
        }
    }

    /// The gRPC code of this failure: [`twirp_code`](Self::twirp_code) as LiveKit's table
    /// ([`upstream::code_of`]) turns it into gRPC, but for what gRPC itself already coded.
    pub fn code(&self) -> Code {
        match self {
            // tonic's own refusal of the framing keeps its code.
            CallError::Framing(status) => status.code(),
            CallError::RoomLookup(error) | CallError::Upstream(error) => upstream::grpc_code(error),
            other => upstream::code_of(other.twirp_code()),
        }
    }

    /// The gRPC status a caller gets: [`code`](Self::code) and the error's message;
    /// LiveKit's own answers keep their message, `ErrorInfo` and bounded trailers.
    pub fn to_status(&self) -> Status {
        match self {
            CallError::Upstream(error) => upstream::to_status(error),
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

/// At most [`MAX_ECHO`] bytes of `text`, cut on a character boundary, with `…` when cut.
pub fn echo(text: &str) -> String {
    if text.len() <= MAX_ECHO {
        return text.to_owned();
    }
    let mut end = MAX_ECHO;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_is_bounded_on_a_char_boundary() {
        assert_eq!(echo("short"), "short");
        // Three-byte characters: byte 200 falls inside one, so the cut steps back to 198.
        let long = "€".repeat(100);
        let echoed = echo(&long);
        assert!(echoed.ends_with('…'));
        assert_eq!(echoed.trim_end_matches('…'), "€".repeat(66));
        assert_eq!(echo(&"x".repeat(200)), "x".repeat(200));
        assert_eq!(echo(&"x".repeat(201)), format!("{}…", "x".repeat(200)));
    }

    #[test]
    fn every_gateway_failure_has_its_code() {
        let rpc = Rpc::StopEgress;
        let cases = [
            (
                CallError::UnknownMethod {
                    path: "/livekit.Egress/Nope".into(),
                },
                Code::Unimplemented,
            ),
            (
                CallError::UnsupportedCodec {
                    content_type: "application/grpc+json".into(),
                },
                Code::Unimplemented,
            ),
            (
                CallError::MalformedTimeout {
                    header: "grpc-timeout",
                },
                Code::InvalidArgument,
            ),
            (CallError::NoMessage { rpc }, Code::InvalidArgument),
            (CallError::ExtraMessage { rpc }, Code::InvalidArgument),
            (AuthFailure::AmbiguousToken.into(), Code::Unauthenticated),
            (Shed::Global { max: 1 }.into(), Code::ResourceExhausted),
            (Shed::Connection { max: 1 }.into(), Code::ResourceExhausted),
            (
                CallError::RequestTooLarge(Status::out_of_range("too big")),
                Code::ResourceExhausted,
            ),
            (
                CallError::Framing(Status::unimplemented("br")),
                Code::Unimplemented,
            ),
            (CallError::EgressNotFound, Code::NotFound),
            (
                CallError::DeadlineExceeded {
                    rpc,
                    budget: Duration::from_secs(1),
                },
                Code::DeadlineExceeded,
            ),
            (CallError::ShuttingDown, Code::Unavailable),
            (CallError::Draining, Code::Unavailable),
        ];
        for (error, code) in cases {
            let status = error.to_status();
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(status.code(), code, "{error:?}");
            assert_eq!(status.message(), error.to_string());
        }
    }

    #[test]
    fn shed_limits_name_their_label() {
        assert_eq!(Shed::Global { max: 1 }.limit(), "global");
        assert_eq!(Shed::Connection { max: 1 }.limit(), "connection");
    }

    #[test]
    fn unknown_method_echoes_at_most_200_characters() {
        let path = format!("/livekit.Egress/{}", "x".repeat(10_000));
        let message = CallError::UnknownMethod { path }
            .to_status()
            .message()
            .to_owned();
        assert!(message.len() < 600, "{}", message.len());
        assert!(message.contains("StartRoomCompositeEgress"));
    }
}
