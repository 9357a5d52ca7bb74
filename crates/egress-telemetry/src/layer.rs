//! [`MetricsLayer`]: per-call metrics for the gRPC HTTP service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::labels::{self, RPC_HEALTH, RPC_REFLECTION};
use crate::metrics::Metrics;

/// Tower layer recording `egress_proxy_calls_total`, `egress_proxy_call_duration_seconds`
/// and `egress_proxy_in_flight_calls` for an `http::Request` → `http::Response` service
/// (the gRPC routes).
///
/// A call is recorded exactly once, when its gRPC status is known:
///
/// * **trailers-only answers** (`grpc-status` in the response head, how every error of
///   the proxy is sent): when the response head is ready;
/// * **normal answers**: when the body yields its trailers frame (its `grpc-status`), or
///   ends without one (`UNKNOWN`), or fails (`INTERNAL`: the stream is reset);
/// * **non-gRPC answers** (no `grpc-status`, HTTP status other than 200): when the head is
///   ready, with the code a gRPC client derives from the HTTP status;
/// * **abandoned calls**: when the response future or the body is dropped before the
///   status was sent (client went away, connection closed, server shutting down):
///   `CANCELLED`.
///
/// * **Twirp answers**: the door puts the gRPC code of its outcome in the response's
///   extensions ([`CallCode`]), recorded when the head is ready.
///
/// A service error (`Err` from the inner service; hyper resets the stream) is `UNKNOWN`.
/// Every call is labelled with its front door ([`Door::of`](crate::Door::of)).
///
/// Health and reflection calls are counted in `egress_proxy_calls_total` but stay out of
/// `egress_proxy_in_flight_calls` and `egress_proxy_call_duration_seconds`: `Health/Watch`
/// and reflection are streams a client may hold open for hours, which would turn the
/// gauge into a count of idle watchers and fill the histogram's `+Inf` bucket.
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use egress_telemetry::{Metrics, MetricsLayer};
/// use http_body_util::Empty;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let metrics = Metrics::new();
/// let service = ServiceBuilder::new()
///     .layer(MetricsLayer::new(metrics.clone()))
///     .service_fn(|_req: http::Request<Empty<bytes::Bytes>>| async {
///         // A trailers-only error answer, as tonic's `Status::into_http` builds it.
///         let response = http::Response::builder()
///             .header("content-type", "application/grpc")
///             .header("grpc-status", "5")
///             .body(Empty::<bytes::Bytes>::new())
///             .unwrap();
///         Ok::<_, Infallible>(response)
///     });
///
/// let request = http::Request::post("/livekit.Egress/StopEgress")
///     .body(Empty::new())
///     .unwrap();
/// let _response = service.oneshot(request).await.unwrap();
///
/// assert_eq!(metrics.in_flight(), 0);
/// assert!(metrics
///     .encode()
///     .contains(r#"egress_proxy_calls_total{door="grpc",rpc="StopEgress",code="NOT_FOUND"} 1"#));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

/// The gRPC code (as a number) a door that does not speak gRPC answered a call with, for
/// `egress_proxy_calls_total`: set in the response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCode(pub u32);

// Here rather than in `metrics`, so that `metrics` does not import this module back.
impl Metrics {
    /// A [`MetricsLayer`] recording into these metrics.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer::new(self.clone())
    }
}

impl MetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`MetricsLayer`] produces.
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MetricsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Body,
{
    type Response = http::Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        let guard = CallGuard::start(
            &self.metrics,
            labels::Door::of(&req),
            labels::rpc_label(path),
        );
        ResponseFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

pin_project! {
    /// Response future of [`MetricsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<CallGuard>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("call", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<http::Response<MetricsBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut guard = this
            .guard
            .take()
            .expect("ResponseFuture polled after completion");
        match result {
            Ok(response) => {
                let door_code = response
                    .extensions()
                    .get::<CallCode>()
                    .map(|code| labels::code_name(code.0));
                let head_code = door_code
                    .or_else(|| labels::status_in(response.headers()))
                    .or_else(|| {
                        (response.status() != http::StatusCode::OK)
                            .then(|| labels::code_for_http_status(response.status()))
                    });
                let guard = match head_code {
                    Some(code) => {
                        guard.finish(code);
                        None
                    }
                    None if response.body().is_end_stream() => {
                        // 200 with neither a status in the head nor trailers to come.
                        guard.finish(labels::UNKNOWN);
                        None
                    }
                    None => Some(guard),
                };
                Poll::Ready(Ok(response.map(|inner| MetricsBody { inner, guard })))
            }
            Err(err) => {
                guard.finish(labels::UNKNOWN);
                Poll::Ready(Err(err))
            }
        }
    }
}

pin_project! {
    /// Response body of [`MetricsService`]: the inner body, watched for its trailers.
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        guard: Option<CallGuard>,
    }
}

impl<B> MetricsBody<B> {
    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

/// An empty answer that no call is waiting on (a CORS preflight answered in front of the
/// metrics layer): nothing to count.
impl<B: Default> Default for MetricsBody<B> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            guard: None,
        }
    }
}

impl<B> fmt::Debug for MetricsBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsBody")
            .field("call", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let frame = ready!(inner.as_mut().poll_frame(cx));
        if let Some(guard) = this.guard {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        guard.finish(labels::status_in(trailers).unwrap_or(labels::UNKNOWN));
                    } else if inner.is_end_stream() {
                        // hyper stops polling here, so no trailers will be sent.
                        guard.finish(labels::UNKNOWN);
                    }
                }
                Some(Err(_)) => guard.finish(labels::INTERNAL),
                None => guard.finish(labels::UNKNOWN),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One call being measured. Records the call when finished; dropped unfinished, it
/// records `CANCELLED`. Either way the in-flight gauge is decremented exactly once.
pub(crate) struct CallGuard {
    metrics: Metrics,
    door: labels::Door,
    rpc: &'static str,
    start: Instant,
    /// Whether the call is in the in-flight gauge and the duration histogram.
    timed: bool,
    finished: bool,
}

impl CallGuard {
    fn start(metrics: &Metrics, door: labels::Door, rpc: &'static str) -> Self {
        let timed = !matches!(rpc, RPC_HEALTH | RPC_REFLECTION);
        if timed {
            metrics.call_started();
        }
        Self {
            metrics: metrics.clone(),
            door,
            rpc,
            start: Instant::now(),
            timed,
            finished: false,
        }
    }

    fn finish(&mut self, code: &'static str) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.timed.then(|| self.start.elapsed());
        self.metrics.record_call(self.door, self.rpc, code, elapsed);
        if self.timed {
            self.metrics.call_ended();
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.finish(labels::CANCELLED);
    }
}

impl fmt::Debug for CallGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard")
            .field("rpc", &self.rpc)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
