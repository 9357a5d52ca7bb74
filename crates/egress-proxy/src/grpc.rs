//! The `livekit.Egress` gRPC endpoint: HTTP/2 requests in, message-level calls out.
//!
//! This is a hand-written service rather than the tonic-generated `EgressServer`, because
//! the generated server decodes each request into our pinned types. We only frame and
//! unframe gRPC (tonic's `Grpc` with [`BytesCodec`]) and hand the message bytes to an inner
//! message-level service (policy → audit → upstream), so nothing the pinned schema doesn't
//! know is lost. The [`Rpc`] travels in the request's extensions.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use egress_core::Rpc;
use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::codec::BytesCodec;

/// The `livekit.Egress` endpoint around a message-level service `S`.
#[derive(Debug, Clone)]
pub struct EgressService<S> {
    inner: S,
    max_message_size: usize,
}

impl<S> EgressService<S> {
    /// Serves `livekit.Egress` with `inner` handling each decoded call; messages larger
    /// than `max_message_size` bytes are refused either way.
    pub fn new(inner: S, max_message_size: usize) -> Self {
        Self {
            inner,
            max_message_size,
        }
    }
}

impl<S> NamedService for EgressService<S> {
    const NAME: &'static str = egress_proto::EGRESS_SERVICE;
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

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Anything under the service path that is not one of the pinned RPCs is answered
        // here: LiveKit would only say `bad_route`, and an unknown method has no contract.
        let Some(rpc) = Rpc::from_path(req.uri().path()) else {
            let status = Status::unimplemented(format!(
                "unknown method {} (this gateway serves livekit.Egress: {})",
                req.uri().path(),
                Rpc::ALL.map(Rpc::as_str).join(", ")
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        // The message-level services are always ready (they shed load at the HTTP level),
        // so a clone per call is all tonic's `unary` needs.
        let inner = self.inner.clone();
        let max = self.max_message_size;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(BytesCodec)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
            let mut call = Decoded {
                inner,
                rpc,
                invoked: false,
            };
            let response = grpc.unary(&mut call, req).await;
            // tonic refuses an oversized message with OUT_OF_RANGE before our handler runs;
            // the gRPC spec says a server answers RESOURCE_EXHAUSTED for that, and callers
            // retry on it differently. Only rewrite what tonic said, never LiveKit's codes.
            if !call.invoked
                && response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|s| s == "11")
            {
                return Ok(Status::resource_exhausted(format!(
                    "request message larger than the gateway's limit of {max} bytes"
                ))
                .into_http());
            }
            Ok(response)
        })
    }
}

/// The inner service, seen by tonic once it has decoded the request message.
struct Decoded<S> {
    inner: S,
    rpc: Rpc,
    /// Whether tonic got as far as handing us a decoded message.
    invoked: bool,
}

impl<S> tower::Service<Request<Bytes>> for Decoded<S>
where
    S: tower::Service<Request<Bytes>, Response = Response<Bytes>, Error = Status>,
{
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Bytes>) -> Self::Future {
        self.invoked = true;
        request.extensions_mut().insert(self.rpc);
        self.inner.call(request)
    }
}
