//! The gateway's routes (`livekit.Egress` to the gRPC door, `/twirp/…` to the Twirp door,
//! anything else to health and reflection), the upstream health probe, and the order of a drain. The connections
//! themselves are [`crate::listen`]'s.
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
use egress_telemetry::{AdminState, GrpcWeb, Metrics};
use egress_twirp::TwirpClient;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus as Serving;
use tonic_health::server::HealthReporter;
use tower::{Layer, ServiceBuilder};

use crate::call::{Authenticator, Forwarder, Limits, PolicyStage, Stages};
use crate::deadline::Deadlines;
use crate::door::DoorSettings;
use crate::door::events::EventsDoor;
use crate::door::grpc::{GrpcDoor, refuse_non_grpc};
use crate::door::twirp::TwirpDoor;
use crate::drain::DrainSignal;
use crate::listen::{ConnectionSettings, Connections};
use crate::request_id::RequestIdLayer;

/// What the listener needs besides the upstream client.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// When upstream attempts are retried (see `call::retry`).
    pub retry: crate::call::retry::RetryPolicy,
    /// The egress event hub `EgressEvents/Watch` streams read.
    pub hub: Arc<crate::events::Hub>,
    /// How each call's deadline is chosen (`--upstream-timeout`, `--max-call-timeout`).
    pub deadlines: Deadlines,
    /// Largest request and response message, in bytes.
    pub max_message_size: usize,
    /// Single-threaded runtimes client connections are spread over; 0: the main runtime.
    pub io_threads: usize,
    /// Origins allowed to call cross-origin from a browser (off by default).
    pub cors: crate::cors::CorsOrigins,
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

/// Time a connection's calls get to write their UNAVAILABLE answers once the drain timeout
/// has passed, before the connection is dropped.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Health status name of the Egress service (the empty name stands for the whole server).
const SERVICE_NAMES: [&str; 2] = ["", egress_proto::EGRESS_SERVICE];

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
    let authenticator = Authenticator::new(settings.policies.clone());
    let stages = Arc::new(Stages {
        authenticator: authenticator.clone(),
        limits: Limits::new(
            settings.max_concurrency,
            settings.max_concurrency_per_connection,
            settings.metrics.clone(),
        ),
        policy: PolicyStage::new(client.clone()),
        forwarder: Forwarder::new(client.clone(), settings.metrics.clone(), settings.retry),
    });
    let door_settings = DoorSettings {
        max_message_size: settings.max_message_size,
        deadlines: settings.deadlines,
        stopping,
    };
    let twirp = TwirpDoor::new(Arc::clone(&stages), door_settings.clone());
    let egress = GrpcDoor::new(stages, door_settings);
    let (drain_signal, drain_watches) = DrainSignal::new();
    let events = EventsDoor::new(
        authenticator,
        Arc::clone(&settings.hub),
        client.clone(),
        drain_signal.watch(),
    );
    // Health and reflection go through tonic's router; `livekit.Egress` calls, nearly all
    // the traffic, skip it.
    let routes = Dispatch {
        egress,
        twirp,
        other: drain_watches.layer(
            Routes::new(health_service)
                .add_service(events)
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
    // Metrics sit outside the routes so that shed, refused and unimplemented calls are
    // counted too; CORS outside them, since a preflight is not a call; gRPC-Web is
    // translated outside all of it, so that its calls read as any gRPC call's.
    let routes = ServiceBuilder::new()
        .option_layer(settings.cors.layer())
        .layer(RequestIdLayer)
        .layer(settings.metrics.layer())
        .service(routes);
    let routes = WithGrpcWeb::new(routes);

    let connections = Connections::new(
        settings.max_connections,
        settings.tls.clone(),
        ConnectionSettings {
            per_connection: settings.max_concurrency_per_connection,
            header_read_timeout: settings.header_read_timeout,
            idle_timeout: settings.idle_timeout,
            metrics: settings.metrics.clone(),
        },
    );
    let runtimes = match settings.io_threads {
        0 => None,
        threads => Some(crate::runtimes::IoRuntimes::start(threads)?),
    };
    let connections = connections.on_runtimes(runtimes);
    connections.accept(&listener, routes, shutdown).await;

    probe.abort();
    settings.admin.set_draining();
    for name in SERVICE_NAMES {
        health.set_service_status(name, Serving::NotServing).await;
    }
    drop(listener);
    // After NOT_SERVING went out: health watchers learn it, then their streams end.
    drain_signal.drain();
    connections.goaway();
    tracing::info!(drain_timeout = ?settings.drain_timeout, "draining in-flight calls");
    if connections.drained(settings.drain_timeout).await {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!("drain timeout passed; answering the calls still running UNAVAILABLE");
        stop_calls.send_replace(true);
        if !connections.drained(STOP_GRACE).await {
            tracing::warn!("dropping the connections still open");
        }
    }
    Ok(())
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

/// Reflection over our schema and the health service's, for either protocol version, plus
/// `google/rpc/error_details.proto`: every error the gateway sends carries an `ErrorInfo`,
/// which grpcurl can print only when reflection describes it.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(egress_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// Sends `livekit.Egress` gRPC calls to `egress`, Twirp calls (`/twirp/…`) to `twirp`
/// and every other path to `other`.
#[derive(Debug, Clone)]
struct Dispatch<E, T, R> {
    egress: E,
    twirp: T,
    other: R,
}

impl<E, T, R, B> tower::Service<http::Request<B>> for Dispatch<E, T, R>
where
    E: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    T: tower::Service<http::Request<B>, Response = E::Response, Error = E::Error>,
    R: tower::Service<http::Request<B>, Response = E::Response, Error = E::Error>,
{
    type Response = E::Response;
    type Error = E::Error;
    type Future = futures_util::future::Either<
        futures_util::future::Either<E::Future, T::Future>,
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
        std::task::ready!(self.twirp.poll_ready(cx))?;
        self.other.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures_util::future::Either;
        if TwirpDoor::serves(req.uri().path()) {
            return Either::Left(Either::Right(self.twirp.call(req)));
        }
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
            Either::Left(Either::Left(self.egress.call(req)))
        } else {
            Either::Right(Either::Right(self.other.call(req)))
        }
    }
}

/// gRPC-Web for browser tools: a request whose content type is `application/grpc-web…` is
/// translated to gRPC by tonic-web, marked [`GrpcWeb`] (its door's label), and answered by
/// the same routes, so it meets the same doors and stages; anything else goes straight to
/// them. (tonic-web's own pass-through would re-box every body and refuse HTTP/1.1, which
/// the Twirp door needs.) Cross-origin pages need `--cors-allow-origin` (see
/// [`crate::cors`]).
#[derive(Debug, Clone)]
struct WithGrpcWeb<S> {
    plain: S,
    web: tonic_web::GrpcWebService<S>,
}

impl<S: Clone> WithGrpcWeb<S> {
    fn new(routes: S) -> Self {
        Self {
            web: tonic_web::GrpcWebLayer::new().layer(routes.clone()),
            plain: routes,
        }
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for WithGrpcWeb<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>
        + tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<RB>,
            Error = <S as tower::Service<http::Request<B>>>::Error,
        >,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
{
    type Response = http::Response<http_body_util::Either<RB, tonic::body::Body>>;
    type Error = <S as tower::Service<http::Request<B>>>::Error;
    type Future = futures_util::future::Either<
        futures_util::future::MapOk<
            <S as tower::Service<http::Request<B>>>::Future,
            fn(http::Response<RB>) -> Self::Response,
        >,
        futures_util::future::MapOk<
            <tonic_web::GrpcWebService<S> as tower::Service<http::Request<B>>>::Future,
            fn(http::Response<tonic::body::Body>) -> Self::Response,
        >,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::ready!(tower::Service::<http::Request<B>>::poll_ready(
            &mut self.plain,
            cx
        ))?;
        tower::Service::<http::Request<B>>::poll_ready(&mut self.web, cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        use futures_util::future::Either;
        let web = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web"));
        if web {
            req.extensions_mut().insert(GrpcWeb);
            Either::Right(self.web.call(req).map_ok(
                (|r: http::Response<_>| r.map(http_body_util::Either::Right)) as fn(_) -> _,
            ))
        } else {
            Either::Left(
                self.plain.call(req).map_ok(
                    (|r: http::Response<_>| r.map(http_body_util::Either::Left)) as fn(_) -> _,
                ),
            )
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
