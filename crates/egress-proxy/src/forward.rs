//! The `livekit.Egress` gRPC service: every call is forwarded to LiveKit over Twirp.
//!
//! This is a hand-written service rather than the tonic-generated `EgressServer`, because
//! the generated server decodes each request into our pinned types. We only frame and
//! unframe gRPC (tonic's `Grpc` with [`BytesCodec`]) and hand the message bytes on as the
//! Twirp body, so nothing the pinned schema doesn't know is lost.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use egress_twirp::{CallOptions, TwirpClient};
use futures_util::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use egress_core::Rpc;
use egress_core::view::check_response;

use crate::codec::BytesCodec;
use crate::deadline::{GRPC_TIMEOUT, parse_grpc_timeout};
use crate::request_id::REQUEST_ID;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Settings of the forwarding service.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Upstream budget for calls that carry no `grpc-timeout`.
    pub default_timeout: Duration,
    /// Largest request and response message, in bytes.
    pub max_message_size: usize,
}

/// The `livekit.Egress` service, forwarding to a [`TwirpClient`].
#[derive(Debug, Clone)]
pub struct EgressForwarder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: TwirpClient,
    config: ForwardConfig,
}

impl EgressForwarder {
    /// A forwarder that sends every call through `client`.
    pub fn new(client: TwirpClient, config: ForwardConfig) -> Self {
        Self {
            inner: Arc::new(Inner { client, config }),
        }
    }
}

impl NamedService for EgressForwarder {
    const NAME: &'static str = egress_proto::EGRESS_SERVICE;
}

impl<B> tower::Service<http::Request<B>> for EgressForwarder
where
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
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let max = inner.config.max_message_size;
            let mut grpc = tonic::server::Grpc::new(BytesCodec)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
            let mut forward = Forward {
                inner,
                rpc,
                invoked: false,
            };
            let response = grpc.unary(&mut forward, req).await;
            // tonic refuses an oversized message with OUT_OF_RANGE before our handler runs;
            // the gRPC spec says a server answers RESOURCE_EXHAUSTED for that, and callers
            // retry on it differently. Only rewrite what tonic said, never LiveKit's codes.
            if !forward.invoked
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

/// One forwarded call.
struct Forward {
    inner: Arc<Inner>,
    rpc: Rpc,
    /// Whether tonic got as far as handing us a decoded message.
    invoked: bool,
}

impl tower::Service<Request<Bytes>> for Forward {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        self.invoked = true;
        let inner = Arc::clone(&self.inner);
        let rpc = self.rpc;
        Box::pin(async move { forward(&inner, rpc, request).await })
    }
}

async fn forward(
    inner: &Inner,
    rpc: Rpc,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, Status> {
    let (metadata, _extensions, body) = request.into_parts();
    let headers = metadata.into_headers();

    let caller_timeout = match headers.get(GRPC_TIMEOUT) {
        None => None,
        Some(raw) => Some(
            raw.to_str()
                .ok()
                .and_then(parse_grpc_timeout)
                .ok_or_else(|| Status::invalid_argument("malformed grpc-timeout header"))?,
        ),
    };
    let deadline =
        tokio::time::Instant::now() + caller_timeout.unwrap_or(inner.config.default_timeout);

    let mut opts = CallOptions::new().with_deadline(deadline);
    // `RequestIdLayer` has made sure there is one.
    if let Some(id) = headers.get(REQUEST_ID) {
        opts = opts.with_request_id(id.clone());
    }
    if let Some(traceparent) = headers.get(TRACEPARENT) {
        opts = opts.with_trace_context(traceparent.clone(), headers.get(TRACESTATE).cloned());
    }

    // The client enforces the deadline itself; this outer bound makes sure that no call
    // outlives it whatever happens below (e.g. a stalled token refresh).
    let method = rpc.as_str();
    match tokio::time::timeout_at(deadline, inner.client.call(method, body, &opts)).await {
        Ok(Ok(answer)) => match check_response(rpc, &answer.body) {
            Ok(()) => Ok(Response::new(answer.body)),
            Err(err) => Err(Status::from(egress_twirp::Error::from(err))),
        },
        Ok(Err(err)) => {
            tracing::debug!(method, kind = err.kind(), "upstream call failed");
            Err(Status::from(err))
        }
        Err(_elapsed) => Err(Status::deadline_exceeded(format!(
            "{method}: deadline exceeded before LiveKit answered"
        ))),
    }
}
