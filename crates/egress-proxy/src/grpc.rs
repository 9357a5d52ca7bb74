//! The `livekit.Egress` gRPC endpoint: HTTP/2 requests in, message-level calls out.
//!
//! This is a hand-written service rather than the tonic-generated `EgressServer`, because
//! the generated server decodes each request into our pinned types. We only frame and
//! unframe gRPC (tonic's `Grpc` with [`BytesCodec`]) and hand the message bytes to an inner
//! message-level service (policy → audit → upstream), so nothing the pinned schema doesn't
//! know is lost. The [`Rpc`] and the [`CallDeadline`] travel in the request's extensions.
//!
//! What this door decides, before any message is read:
//! - only gRPC is served as gRPC ([`refuse_non_grpc`]): anything but `POST` with
//!   `application/grpc` or `application/grpc+proto` is answered over plain HTTP, so a
//!   browser form post cannot drive the gateway with a client certificate;
//! - the call's deadline (the caller's, else the default; see [`Deadlines`]) covers reading
//!   the request body too, so a caller that never finishes its body cannot hold a slot;
//! - a unary call carries exactly one message;
//! - `gzip` and `zstd` requests are decompressed here (LiveKit receives plain protobuf),
//!   bounded by the message size limit after decompression.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use egress_core::Rpc;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codec::{CompressionEncoding, Streaming};
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};

use crate::codec::BytesCodec;
use crate::deadline::{CallDeadline, Deadlines};
use crate::listen::bound_this_stream;

/// Longest piece of an unknown method's path echoed back in the error.
const MAX_ECHOED_PATH: usize = 200;

/// What the door needs besides the message-level service.
#[derive(Debug, Clone)]
pub struct DoorSettings {
    /// Largest request and response message (after decompression), in bytes.
    pub max_message_size: usize,
    pub deadlines: Deadlines,
    /// Turns `true` when the drain timeout has passed: calls still running are answered
    /// UNAVAILABLE instead of being dropped with their connection.
    pub stopping: watch::Receiver<bool>,
}

/// The `livekit.Egress` endpoint around a message-level service `S`.
#[derive(Debug, Clone)]
pub struct EgressService<S> {
    inner: S,
    settings: Arc<DoorSettings>,
}

impl<S> EgressService<S> {
    /// Serves `livekit.Egress` with `inner` handling each decoded call.
    pub fn new(inner: S, settings: DoorSettings) -> Self {
        Self {
            inner,
            settings: Arc::new(settings),
        }
    }
}

impl<S> NamedService for EgressService<S> {
    const NAME: &'static str = egress_proto::EGRESS_SERVICE;
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
        Some(subtype) if subtype.starts_with('+') => Some(
            Status::unimplemented(format!(
                "content-type {} is not supported: this gateway speaks protobuf \
                 (application/grpc or application/grpc+proto)",
                truncated(&media_type, MAX_ECHOED_PATH)
            ))
            .into_http(),
        ),
        _ => Some(plain(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this is a gRPC endpoint: send content-type application/grpc\n",
        )),
    }
}

fn plain(status: http::StatusCode, text: &'static str) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(
        Bytes::from_static(text.as_bytes()),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl<S, B> tower::Service<http::Request<B>> for EgressService<S>
where
    S: tower::Service<Request<Bytes>, Response = Response<Bytes>, Error = Status>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // Anything under the service path that is not one of the pinned RPCs is answered
        // here: LiveKit would only say `bad_route`, and an unknown method has no contract.
        let Some(rpc) = Rpc::from_path(req.uri().path()) else {
            let path = req.uri().path();
            let more = if path.len() > MAX_ECHOED_PATH {
                "…"
            } else {
                ""
            };
            let status = Status::unimplemented(format!(
                "unknown method {}{more} (this gateway serves livekit.Egress: {})",
                truncated(path, MAX_ECHOED_PATH),
                Rpc::ALL.map(Rpc::as_str).join(", ")
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let settings = Arc::clone(&self.settings);
        let budget = match settings.deadlines.budget(req.headers()) {
            Ok(budget) => budget,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        let deadline = tokio::time::Instant::now() + budget;
        // The stream itself, answer flushing included, may not outlive the call.
        bound_this_stream(deadline);
        req.extensions_mut().insert(CallDeadline(deadline));
        let inner = self.inner.clone();
        Box::pin(async move {
            let max = settings.max_message_size;
            let mut grpc = tonic::server::Grpc::new(BytesCodec)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd);
            // Only ListEgress answers grow with use (one entry per egress); the others are
            // a few hundred bytes, where compressing costs more CPU than it saves.
            if rpc == Rpc::ListEgress {
                grpc = grpc.send_compressed(CompressionEncoding::Gzip);
            }
            let call = grpc.client_streaming(OneMessage { inner, rpc }, req);
            let mut stopping = settings.stopping.clone();
            let response = tokio::select! {
                answered = tokio::time::timeout_at(deadline, call) => match answered {
                    Ok(response) => response,
                    Err(_elapsed) => Status::deadline_exceeded(format!(
                        "{rpc}: deadline of {budget:?} exceeded before the call completed"
                    ))
                    .into_http(),
                },
                _ = stopping.wait_for(|stopping| *stopping) => Status::unavailable(
                    "gateway shutting down: the drain timeout passed before this call finished; \
                     retry on another replica",
                )
                .into_http(),
            };
            Ok(response)
        })
    }
}

/// Reads a unary call's one message from tonic's request stream and hands it to the inner
/// service. tonic's own `unary` would drop any further messages without a word.
#[derive(Clone)]
struct OneMessage<S> {
    inner: S,
    rpc: Rpc,
}

impl<S> tower::Service<Request<Streaming<Bytes>>> for OneMessage<S>
where
    S: tower::Service<Request<Bytes>, Response = Response<Bytes>, Error = Status>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let (metadata, mut extensions, mut messages) = request.into_parts();
        extensions.insert(self.rpc);
        let rpc = self.rpc;
        // The message-level services are always ready (they shed load at the HTTP level),
        // so a clone per call is all this needs.
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let message = messages
                .message()
                .await
                .map_err(request_error)?
                .ok_or_else(|| Status::invalid_argument(format!("{rpc}: no request message")))?;
            if messages.message().await.map_err(request_error)?.is_some() {
                return Err(Status::invalid_argument(format!(
                    "{rpc} is a unary call and takes exactly one request message; this request \
                     carried more"
                )));
            }
            inner
                .call(Request::from_parts(metadata, extensions, message))
                .await
        })
    }
}

/// tonic refuses an oversized message with OUT_OF_RANGE; the gRPC spec says a server
/// answers RESOURCE_EXHAUSTED for that, and callers retry on it differently.
fn request_error(status: Status) -> Status {
    if status.code() == Code::OutOfRange {
        Status::resource_exhausted(format!(
            "request message larger than the gateway's limit: {}",
            status.message()
        ))
    } else {
        status
    }
}
