//! The admin HTTP endpoint: `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1.
//!
//! Nothing served here contains secrets: metric labels are method names, status codes,
//! error kinds and the version; the probe answers are fixed words.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::metrics::{METRICS_CONTENT_TYPE, Metrics};

/// How long a slow client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open admin connections get to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Whether the gateway should receive traffic.
///
/// Starts *not ready*: the upstream is unknown until the first probe succeeds.
///
/// ```
/// use egress_telemetry::{NotReady, Readiness};
///
/// let readiness = Readiness::new();
/// assert_eq!(readiness.check(), Err(NotReady::UpstreamUnreachable));
/// readiness.set_upstream_reachable(true);
/// assert!(readiness.ready());
/// readiness.set_draining();
/// assert_eq!(readiness.check(), Err(NotReady::Draining));
/// ```
#[derive(Debug, Default)]
pub struct Readiness {
    upstream_reachable: AtomicBool,
    draining: AtomicBool,
    /// Redis fan-out of events: 0 not configured, 1 connected, 2 reconnecting.
    redis: AtomicU8,
}

/// Why the gateway is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Shutting down: finishing in-flight calls, taking no new ones.
    Draining,
    /// The last probe of LiveKit failed (or none has succeeded yet).
    UpstreamUnreachable,
}

impl NotReady {
    /// The short reason `/readyz` answers with.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::UpstreamUnreachable => "upstream unreachable",
        }
    }
}

egress_core::display_as_str!(NotReady);

impl Readiness {
    /// Not draining, upstream not (yet) known to be reachable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the outcome of the latest upstream probe.
    pub fn set_upstream_reachable(&self, reachable: bool) {
        self.upstream_reachable.store(reachable, Ordering::Relaxed);
    }

    /// Marks the gateway as draining; it stays not ready from then on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Records whether the Redis fan-out of events is connected. Redis never makes the
    /// gateway unready (no `livekit.Egress` call needs it); `/readyz` says it in its text.
    pub fn set_redis_connected(&self, connected: bool) {
        self.redis
            .store(if connected { 1 } else { 2 }, Ordering::Relaxed);
    }

    /// The `/readyz` text when ready: `ready`, with what is degraded.
    pub fn detail(&self) -> &'static str {
        match self.redis.load(Ordering::Relaxed) {
            2 => "ready; redis unreachable: events from other replicas are not received",
            _ => "ready",
        }
    }

    /// Whether the latest upstream probe succeeded.
    pub fn upstream_reachable(&self) -> bool {
        self.upstream_reachable.load(Ordering::Relaxed)
    }

    /// Whether [`set_draining`](Self::set_draining) was called.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// `Ok` when ready, otherwise the reason (draining wins over an unreachable upstream).
    pub fn check(&self) -> Result<(), NotReady> {
        if self.draining() {
            Err(NotReady::Draining)
        } else if !self.upstream_reachable() {
            Err(NotReady::UpstreamUnreachable)
        } else {
            Ok(())
        }
    }

    /// Whether the gateway should receive traffic.
    pub fn ready(&self) -> bool {
        self.check().is_ok()
    }
}

/// What the admin endpoint serves: the metrics and the readiness flags.
///
/// Cheap to clone; clones share the same flags, so the upstream probe and the shutdown
/// path can each hold one.
#[derive(Debug, Clone)]
pub struct AdminState {
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl AdminState {
    /// State serving `metrics`, with fresh (not ready) readiness flags.
    pub fn new(metrics: Metrics) -> Self {
        Self::with_readiness(metrics, Arc::new(Readiness::new()))
    }

    /// State serving `metrics` and sharing existing readiness flags.
    pub fn with_readiness(metrics: Metrics, readiness: Arc<Readiness>) -> Self {
        Self { metrics, readiness }
    }

    /// The metrics served on `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The readiness flags behind `/readyz`.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// See [`Readiness::set_upstream_reachable`].
    pub fn set_upstream_reachable(&self, reachable: bool) {
        self.readiness.set_upstream_reachable(reachable);
    }

    /// See [`Readiness::set_draining`].
    pub fn set_draining(&self) {
        self.readiness.set_draining();
    }

    /// See [`Readiness::ready`].
    pub fn ready(&self) -> bool {
        self.readiness.ready()
    }
}

/// Serves the admin endpoint on `listener` until `shutdown` resolves.
///
/// Routes (`GET`, or `HEAD`):
///
/// * `/metrics`: [`Metrics::encode`], as [`METRICS_CONTENT_TYPE`];
/// * `/healthz`: `200 ok` while the process runs;
/// * `/readyz`: `200 ready`, or `503` with the [`NotReady`] reason;
/// * other methods on these paths: `405`; any other path: `404`.
///
/// After `shutdown` the listener closes and open connections get a few seconds to finish.
/// To let `/readyz` report `draining` while gRPC calls drain, call
/// [`AdminState::set_draining`] first and resolve `shutdown` only once the gRPC server
/// has finished.
///
/// # Example
///
/// ```no_run
/// use egress_telemetry::{AdminState, Metrics, serve_admin};
///
/// # async fn run() -> std::io::Result<()> {
/// let metrics = Metrics::new();
/// let state = AdminState::new(metrics.clone());
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:9090").await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let admin = tokio::spawn(serve_admin(listener, state.clone(), async {
///     let _ = stopped.await;
/// }));
/// // ... serve gRPC; on shutdown:
/// state.set_draining();
/// // ... drain gRPC, then:
/// let _ = stop.send(());
/// admin.await.expect("admin task")?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(ok) => ok,
                    Err(err) => {
                        // Out of file descriptors and the like: back off, don't spin.
                        tracing::warn!(error = %err, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let response = route(&state, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let conn = http.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(%peer, error = %err, "admin connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("admin connections still open after the grace period; dropping them");
    }
    Ok(())
}

/// Answers one admin request.
fn route<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            no_store(response)
        }
        "/healthz" => text(StatusCode::OK, "ok"),
        _ => match state.readiness.check() {
            Ok(()) => text(StatusCode::OK, state.readiness.detail()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, reason.as_str()),
        },
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    no_store(response)
}

fn no_store<B>(mut response: Response<B>) -> Response<B> {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn routes() {
        let state = AdminState::new(Metrics::new());
        assert_eq!(route(&state, &get("/healthz")).status(), StatusCode::OK);
        assert_eq!(
            route(&state, &get("/readyz")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(route(&state, &get("/nope")).status(), StatusCode::NOT_FOUND);
        assert_eq!(
            route(&state, &get("/metrics/")).status(),
            StatusCode::NOT_FOUND
        );
        let post = Request::post("/metrics").body(()).unwrap();
        let response = route(&state, &post);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
        let head = Request::head("/healthz").body(()).unwrap();
        assert_eq!(route(&state, &head).status(), StatusCode::OK);
    }

    #[test]
    fn readiness_flags() {
        let state = AdminState::new(Metrics::new());
        assert!(!state.ready());
        state.set_upstream_reachable(true);
        assert!(state.ready());
        state.set_upstream_reachable(false);
        assert_eq!(
            state.readiness().check(),
            Err(NotReady::UpstreamUnreachable)
        );
        state.set_upstream_reachable(true);
        state.set_draining();
        assert_eq!(state.readiness().check(), Err(NotReady::Draining));
        assert!(state.readiness().draining());
        assert!(state.readiness().upstream_reachable());
    }
}
