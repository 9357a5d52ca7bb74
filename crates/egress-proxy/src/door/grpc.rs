//! The gRPC door: `livekit.Egress` over HTTP/2.
//!
//! This is a hand-written service rather than the tonic-generated `EgressServer`, because
//! the generated server decodes each request into our pinned types. We only frame and
//! unframe gRPC (tonic's `Grpc` with [`BytesCodec`]), so nothing the pinned schema doesn't
//! know is lost: the caller's message bytes are what LiveKit receives.
//!
//! What this door decides, in order:
//! 1. only gRPC is served as gRPC ([`refuse_non_grpc`], run by the router before anything
//!    else): anything but `POST` with `application/grpc` or `application/grpc+proto` is
//!    answered in plain HTTP, so a browser form post cannot drive the gateway with a
//!    client certificate;
//! 2. the RPC, from the path; the call's budget (the caller's `grpc-timeout`, see
//!    [`Deadlines`](crate::deadline::Deadlines)), which covers reading the request body
//!    too, so a caller that never finishes its body cannot hold a slot;
//! 3. the head stages ([`Stages::admit`]: authenticate, take slots), before the body is read;
//! 4. exactly one message, decompressed (`gzip`, `zstd`) and bounded by the message size
//!    limit after decompression; then [`Stages::run`];
//! 5. the answer, or [`CallError::to_status`] (the one table), in gRPC's framing. `ListEgress`
//!    answers are gzip-compressed when the caller accepts it (they grow with the number of
//!    egresses; every other answer is a few hundred bytes, where compressing costs more
//!    CPU than it saves).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use egress_core::Rpc;
use futures_util::TryFutureExt as _;
use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::codec::{CompressionEncoding, Streaming};
use tonic::{Code, Request, Response, Status};

pub use super::DoorSettings;
use super::{FrontDoor, Protocol, admit_head, held, plain};
use crate::call::{Call, Door, Slots, Stages};
use crate::codec::BytesCodec;
use crate::error::CallError;

/// The `livekit.Egress` gRPC endpoint.
pub type GrpcDoor = FrontDoor<Grpc>;

/// The gRPC protocol of `livekit.Egress`, served by [`GrpcDoor`].
#[derive(Debug)]
pub struct Grpc {
    stages: Arc<Stages>,
    settings: DoorSettings,
}

impl GrpcDoor {
    /// Serves `livekit.Egress` through `stages`.
    pub fn new(stages: Arc<Stages>, settings: DoorSettings) -> Self {
        Self::serving(Grpc { stages, settings })
    }
}

/// The plain-HTTP answer to a request that is not gRPC, or `None` for a gRPC request.
///
/// gRPC's HTTP/2 protocol says a server should answer 415 to a content type that is not
/// `application/grpc…`. A gRPC content subtype other than protobuf (`application/grpc+json`)
/// is a gRPC client we cannot serve: it gets UNIMPLEMENTED, in gRPC, so it can say why.
pub fn refuse_non_grpc<B>(req: &http::Request<B>) -> Option<http::Response<Body>> {
    if req.method() != http::Method::POST {
        return Some(plain(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "gRPC calls are HTTP/2 POST requests\n",
        ));
    }
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.strip_prefix("application/grpc") {
        Some("" | "+proto") => None,
        Some(subtype) if subtype.starts_with('+') => {
            Some(answer_error(&CallError::UnsupportedCodec {
                content_type: media_type,
            }))
        }
        _ => Some(plain(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this is a gRPC endpoint: send content-type application/grpc\n",
        )),
    }
}

/// A gRPC trailers-only answer for `error`.
pub(crate) fn answer_error(error: &CallError) -> http::Response<Body> {
    error.to_status().into_http()
}

impl<B> Protocol<B> for Grpc
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Admitted = (Call, Slots);

    fn admit(&self, req: &http::Request<B>) -> Result<(Call, Slots), http::Response<Body>> {
        self.recognise(req).map_err(|error| answer_error(&error))
    }

    // Not an `async fn`: its arguments would stay in the future for the whole call (the
    // `Call` and the request head, about 600 bytes), though both are moved into tonic's
    // future before the first await.
    fn answer(
        self: Arc<Self>,
        (call, slots): (Call, Slots),
        req: http::Request<B>,
    ) -> impl Future<Output = http::Response<Body>> + Send + 'static {
        let call_key = call.idempotency_key.clone();
        let (rpc, deadline) = (call.rpc, (call.deadline(), call.budget));
        let max = self.settings.max_message_size;
        let mut grpc = tonic::server::Grpc::new(BytesCodec)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        if rpc == Rpc::ListEgress {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        // Boxed: `within_deadline` keeps the future it was given and the one it awaits side
        // by side (rust-lang/rust#62958); boxed, that is two pointers instead of two copies
        // of tonic's request state. tonic's handler borrows `grpc`, so the box owns it.
        let one_message = OneMessage {
            stages: Arc::clone(&self.stages),
            call: Some(Box::new(call)),
        };
        let answered = Box::pin(async move { grpc.client_streaming(one_message, req).await });
        async move {
            let response = self
                .settings
                .within_deadline(rpc, deadline, answered)
                .await
                .unwrap_or_else(|error| answer_error(&error));
            held(response, slots, call_key)
        }
    }
}

impl Grpc {
    /// Builds the call from the request head and runs the head stages.
    fn recognise<B>(&self, req: &http::Request<B>) -> Result<(Call, Slots), CallError> {
        let path = req.uri().path();
        // Anything under the service path that is not one of the pinned RPCs is answered
        // here: LiveKit would only say `bad_route`, and an unknown method has no contract.
        let rpc = Rpc::from_path(path).ok_or_else(|| CallError::UnknownMethod {
            path: path.to_owned(),
        })?;
        let budget = self.settings.deadlines.budget(req.headers())?;
        admit_head(&self.stages, req, rpc, Door::of(req), budget)
    }
}

/// Reads a unary call's one message from tonic's request stream, then runs the call. tonic's
/// own `unary` would drop any further messages without a word.
struct OneMessage {
    stages: Arc<Stages>,
    /// Boxed: tonic keeps this service for the whole call, after the call moved out of it.
    call: Option<Box<Call>>,
}

impl tower::Service<Request<Streaming<Bytes>>> for OneMessage {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let stages = Arc::clone(&self.stages);
        let call = self.call.take();
        // Unwrapped here, not in the future: what the future captures, it keeps for the
        // whole call beside whatever it moved that into. And two futures chained, not one
        // async block: reading the message and running the call are the two states of one
        // enum, so tonic's request stream is gone (and its room reused) once the message is
        // read, instead of staying beside the call until LiveKit answers.
        let messages = request.into_inner();
        let read = read_one(
            messages,
            call.expect("tonic calls a client-streaming handler once"),
        );
        Box::pin(
            read.and_then(move |call| async move { stages.run(&call).await })
                .map_ok(|answer| Response::new(answer.message))
                .map_err(|error| error.to_status()),
        )
    }
}

/// The call with its one message from `messages`; none, or a second one, is an error.
async fn read_one(
    mut messages: Streaming<Bytes>,
    mut call: Box<Call>,
) -> Result<Box<Call>, CallError> {
    call.message = messages
        .message()
        .await
        .map_err(request_error)?
        .ok_or(CallError::NoMessage { rpc: call.rpc })?;
    if messages.message().await.map_err(request_error)?.is_some() {
        return Err(CallError::ExtraMessage { rpc: call.rpc });
    }
    Ok(call)
}

/// tonic refuses an oversized message with OUT_OF_RANGE; the gRPC spec says a server
/// answers RESOURCE_EXHAUSTED for that, and callers retry on it differently.
fn request_error(status: Status) -> CallError {
    if status.code() == Code::OutOfRange {
        CallError::RequestTooLarge(status)
    } else {
        CallError::Framing(status)
    }
}
