//! The listener: HTTP/2 connections, the gRPC routes, health, reflection and draining.
//!
//! We drive hyper ourselves instead of `tonic::transport::Server`: tonic's server always
//! installs its own `grpc-timeout` layer, which answers CANCELLED before our handler can
//! answer DEADLINE_EXCEEDED, and owning the accept loop gives one obvious place for
//! connection settings and for draining on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use egress_policy::PolicyStore;
use egress_telemetry::{AdminState, Metrics};
use egress_twirp::TwirpClient;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::service::Routes;
use tonic_health::ServingStatus as Serving;
use tonic_health::server::HealthReporter;
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::call::{Authenticator, ConnectionSlots, Forwarder, Limits, PolicyStage, Stages};
use crate::deadline::Deadlines;
use crate::door::grpc::{DoorSettings, GrpcDoor, refuse_non_grpc};
use crate::drain::DrainSignal;
use crate::listen::{ConnectionState, StreamExecutor};
use crate::request_id::RequestIdLayer;
use crate::tls::{self, Peer};

/// What the listener needs besides the upstream client.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// How each call's deadline is chosen (`--upstream-timeout`, `--max-call-timeout`).
    pub deadlines: Deadlines,
    /// Largest request and response message, in bytes.
    pub max_message_size: usize,
    pub max_concurrency: usize,
    pub max_concurrency_per_connection: usize,
    /// Client connections served at once; further ones wait in the accept backlog.
    pub max_connections: usize,
    /// Time a new connection has to send its first request's headers.
    pub header_read_timeout: Duration,
    /// Time a connection may go without any open stream.
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub probe_interval: Duration,
    /// Caller authentication and policy; `None` lets every caller do everything.
    pub policies: Option<Arc<PolicyStore>>,
    /// Metrics shared with the admin endpoint.
    pub metrics: Metrics,
    /// Readiness and metrics for the admin endpoint.
    pub admin: AdminState,
    /// TLS for the listener (with client verification for mTLS); plaintext when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Largest HTTP/2 send buffer per stream: an answer beyond it waits in its call (which
/// holds a slot, bounded by the deadline) rather than in h2's queue.
const MAX_SEND_BUF: usize = 64 * 1024;

/// Time a connection's calls get to write their UNAVAILABLE answers once the drain timeout
/// has passed, before the connection is dropped.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The connection's service, with every request tagged with who is on the other end and
/// the connection's call slots.
fn with_peer<S>(
    routes: S,
    peer: Peer,
    slots: ConnectionSlots,
) -> TowerToHyperService<
    impl tower::Service<
        http::Request<hyper::body::Incoming>,
        Response = S::Response,
        Error = S::Error,
        Future = S::Future,
    > + Clone,
>
where
    S: tower::Service<http::Request<hyper::body::Incoming>> + Clone,
{
    TowerToHyperService::new(routes.map_request(
        move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            req.extensions_mut().insert(slots.clone());
            req
        },
    ))
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Runs the TLS handshake when TLS is on; returns the stream to serve and the names a
/// verified client certificate carries (none for plaintext or server-only TLS).
///
/// The handshake runs in the connection's task, bounded by the header-read timeout (the
/// first request's headers come after it), so a slow or silent client cannot stall the
/// accept loop or keep a descriptor.
async fn secure(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    within: Duration,
) -> Option<(Box<dyn Io>, Arc<[String]>)> {
    let Some(acceptor) = acceptor else {
        return Some((Box::new(stream), Arc::from([])));
    };
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let identities = tls::identities(tls.get_ref().1.peer_certificates());
            Some((Box::new(tls), identities.into()))
        }
        Ok(Err(err)) => {
            tracing::debug!(%addr, error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            None
        }
    }
}

/// Health status name of the Egress service (the empty name stands for the whole server).
const SERVICE_NAMES: [&str; 2] = ["", egress_proto::EGRESS_SERVICE];

/// HTTP/2 settings of every client connection, with `streams` spawning its streams.
fn http2_builder(streams: StreamExecutor) -> hyper::server::conn::http2::Builder<StreamExecutor> {
    let mut http2 = hyper::server::conn::http2::Builder::new(streams);
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(Some(1024))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(64 * 1024)
        .max_send_buf_size(MAX_SEND_BUF);
    http2
}

/// Serves gRPC on `listener` until `shutdown` resolves, then drains.
///
/// Draining: health turns NOT_SERVING, the listener closes, every connection gets GOAWAY,
/// and in-flight calls get up to `drain_timeout` to finish. Calls still running then are
/// answered UNAVAILABLE ("gateway shutting down") before their connections are dropped.
pub async fn serve(
    listener: TcpListener,
    client: TwirpClient,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES {
        health.set_service_status(name, Serving::NotServing).await;
    }
    let probe = tokio::spawn(probe_upstream(
        client.clone(),
        health.clone(),
        settings.admin.clone(),
        settings.probe_interval,
    ));

    // Flipped once the drain timeout has passed: calls still running answer UNAVAILABLE.
    let (stop_calls, stopping) = tokio::sync::watch::channel(false);
    // Every egress call, whatever its door, goes through these stages (see `call`).
    let stages = Arc::new(Stages {
        authenticator: Authenticator::new(settings.policies.clone()),
        limits: Limits::new(
            settings.max_concurrency,
            settings.max_concurrency_per_connection,
            settings.metrics.clone(),
        ),
        policy: PolicyStage::new(client.clone()),
        forwarder: Forwarder::new(client.clone(), settings.metrics.clone()),
    });
    let egress = GrpcDoor::new(
        stages,
        DoorSettings {
            max_message_size: settings.max_message_size,
            deadlines: settings.deadlines,
            stopping,
        },
    );
    let (drain_signal, drain_watches) = DrainSignal::new();
    // Health and reflection go through tonic's router; `livekit.Egress` calls, nearly all
    // the traffic, skip it.
    let routes = Dispatch {
        egress,
        other: drain_watches.layer(
            Routes::new(health_service)
                // Both versions: grpcurl falls back to v1alpha only on UNIMPLEMENTED.
                .add_service(
                    reflection()
                        .build_v1()
                        .expect("the embedded descriptor sets are valid"),
                )
                .add_service(
                    reflection()
                        .build_v1alpha()
                        .expect("the embedded descriptor sets are valid"),
                )
                .prepare(),
        ),
    };
    // Metrics sit outside everything else so that shed, refused and unimplemented calls
    // are counted too.
    let routes = ServiceBuilder::new()
        .layer(RequestIdLayer)
        .layer(settings.metrics.layer())
        .service(routes);

    let acceptor = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let (goaway, goaway_rx) = tokio::sync::watch::channel(false);

    tokio::pin!(shutdown);
    loop {
        // A slot first, then accept: at the cap, new clients wait in the kernel's
        // backlog and take no descriptor of ours.
        let slot = tokio::select! {
            slot = Arc::clone(&connections).acquire_owned() => slot.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(ok) => ok,
                Err(err) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            addr,
            routes.clone(),
            acceptor.clone(),
            ConnectionSettings {
                per_connection: settings.max_concurrency_per_connection,
                header_read_timeout: settings.header_read_timeout,
                idle_timeout: settings.idle_timeout,
                metrics: settings.metrics.clone(),
            },
            goaway_rx.clone(),
            slot,
        ));
    }

    probe.abort();
    settings.admin.set_draining();
    for name in SERVICE_NAMES {
        health.set_service_status(name, Serving::NotServing).await;
    }
    drop(listener);
    // After NOT_SERVING went out: health watchers learn it, then their streams end.
    drain_signal.drain();
    goaway.send_replace(true);
    tracing::info!(drain_timeout = ?settings.drain_timeout, "draining in-flight calls");
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let drained = |within| {
        let connections = Arc::clone(&connections);
        async move {
            tokio::time::timeout(within, connections.acquire_many_owned(all))
                .await
                .is_ok()
        }
    };
    if drained(settings.drain_timeout).await {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!("drain timeout passed; answering the calls still running UNAVAILABLE");
        stop_calls.send_replace(true);
        if !drained(STOP_GRACE).await {
            tracing::warn!("dropping the connections still open");
        }
    }
    Ok(())
}

/// What each connection task needs.
struct ConnectionSettings {
    per_connection: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    metrics: Metrics,
}

/// Serves one client connection until it ends, is closed for a timeout, or the server
/// drains. `_slot` is its place under `--max-connections`.
async fn serve_connection<S, B>(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    routes: S,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    settings: ConnectionSettings,
    mut goaway: tokio::sync::watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let metrics = settings.metrics;
    metrics.connections_add(1);
    let _counted = scopeguard(|| metrics.connections_add(-1));
    let state = ConnectionState::new();
    let Some((io, identities)) = secure(stream, addr, acceptor, settings.header_read_timeout).await
    else {
        return;
    };
    let peer = Peer { addr, identities };
    let slots = ConnectionSlots::new(settings.per_connection);
    let conn = http2_builder(StreamExecutor::new(Arc::clone(&state)))
        .serve_connection(TokioIo::new(io), with_peer(routes, peer, slots));
    tokio::pin!(conn);
    let expired = state.expired(settings.header_read_timeout, settings.idle_timeout);
    tokio::pin!(expired);
    let mut closing = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%addr, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = goaway.wait_for(|goaway| *goaway), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            reason = &mut expired, if !closing => {
                metrics.connection_closed(reason);
                tracing::debug!(%addr, reason, "closing connection");
                if reason == "header_timeout" {
                    // Nothing was asked of us: no stream to finish, no GOAWAY owed.
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Keeps the health service in step with whether LiveKit answers at all.
async fn probe_upstream(
    client: TwirpClient,
    health: HealthReporter,
    admin: AdminState,
    every: Duration,
) {
    let mut last = None;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let reachable = match client.probe().await {
            Ok(()) => true,
            Err(err) => {
                if last != Some(false) {
                    tracing::warn!(error = %err, "LiveKit is unreachable; health is NOT_SERVING");
                }
                false
            }
        };
        admin.set_upstream_reachable(reachable);
        if last != Some(reachable) {
            if reachable {
                tracing::info!("LiveKit is reachable; health is SERVING");
            }
            let status = if reachable {
                Serving::Serving
            } else {
                Serving::NotServing
            };
            for name in SERVICE_NAMES {
                health.set_service_status(name, status).await;
            }
            last = Some(reachable);
        }
    }
}

/// Reflection over our schema and the health service's, for either protocol version.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(egress_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Sends `livekit.Egress` calls to `egress` and every other path to `other`.
#[derive(Debug, Clone)]
struct Dispatch<E, R> {
    egress: E,
    other: R,
}

impl<E, R, B> tower::Service<http::Request<B>> for Dispatch<E, R>
where
    E: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    R: tower::Service<http::Request<B>, Response = E::Response, Error = E::Error>,
{
    type Response = E::Response;
    type Error = E::Error;
    type Future = futures_util::future::Either<
        E::Future,
        futures_util::future::Either<
            futures_util::future::Ready<Result<E::Response, E::Error>>,
            R::Future,
        >,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::ready!(self.egress.poll_ready(cx))?;
        self.other.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures_util::future::Either;
        let egress = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(egress_proto::EGRESS_SERVICE))
            .is_some_and(|p| p.starts_with('/'));
        if egress {
            // Framing first: a request that is not gRPC is answered before authentication,
            // so a form post gets 415, not a gRPC status.
            if let Some(refusal) = refuse_non_grpc(&req) {
                return Either::Right(Either::Left(futures_util::future::ready(Ok(refusal))));
            }
            Either::Left(self.egress.call(req))
        } else {
            Either::Right(Either::Right(self.other.call(req)))
        }
    }
}

/// Binds the gRPC listener, with a message that says which address failed.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| std::io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
