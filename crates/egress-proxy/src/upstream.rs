//! The last step of a call: the message bytes go to LiveKit over Twirp.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use egress_core::Rpc;
use egress_core::view::check_response;
use egress_telemetry::Metrics;
use egress_twirp::{CallOptions, TwirpClient};
use futures_util::future::BoxFuture;
use tonic::{Request, Response, Status};

use crate::audit::AnsweredEgressId;
use crate::deadline::CallDeadline;
use crate::request_id::REQUEST_ID;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Forwards each call to LiveKit with a [`TwirpClient`].
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: TwirpClient,
    default_timeout: Duration,
    metrics: Metrics,
}

impl Upstream {
    /// Calls without a `grpc-timeout` get `default_timeout` (LiveKit's slow starts need a
    /// generous one).
    pub fn new(client: TwirpClient, default_timeout: Duration, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                default_timeout,
                metrics,
            }),
        }
    }
}

impl tower::Service<Request<Bytes>> for Upstream {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { forward(&inner, request).await })
    }
}

async fn forward(inner: &Inner, request: Request<Bytes>) -> Result<Response<Bytes>, Status> {
    let rpc = *request
        .extensions()
        .get::<Rpc>()
        .ok_or_else(|| Status::internal("call reached the upstream without its RPC"))?;
    // The door set the call's deadline; a call that reaches us some other way (a test
    // driving this service directly) gets the default budget.
    let deadline = request.extensions().get::<CallDeadline>().map_or_else(
        || tokio::time::Instant::now() + inner.default_timeout,
        |d| d.0,
    );
    let (metadata, _extensions, body) = request.into_parts();
    let headers = metadata.into_headers();

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
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout_at(deadline, inner.client.call(method, body, &opts)).await;
    inner.metrics.observe_upstream(method, started.elapsed());
    let error = match outcome {
        Ok(Ok(answer)) => match check_response(rpc, &answer.body) {
            Ok(egress_id) => {
                let mut response = Response::new(answer.body);
                if let Some(id) = egress_id {
                    response.extensions_mut().insert(AnsweredEgressId(id));
                }
                return Ok(response);
            }
            Err(err) => egress_twirp::Error::from(err),
        },
        Ok(Err(err)) => err,
        Err(_elapsed) => {
            inner.metrics.upstream_error("timeout");
            return Err(Status::deadline_exceeded(format!(
                "{method}: deadline exceeded before LiveKit answered"
            )));
        }
    };
    inner.metrics.upstream_error(error.kind());
    tracing::debug!(method, kind = error.kind(), "upstream call failed");
    Err(Status::from(error))
}
