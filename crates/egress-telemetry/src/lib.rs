//! Metrics and the admin HTTP endpoint of the LiveKit egress gateway.
//!
//! * [`Metrics`]: the Prometheus metrics (on [`prometheus_client`]), with
//!   [`Metrics::observe_upstream`] and [`Metrics::upstream_error`] for the forwarder and
//!   [`Metrics::register_token_refreshes`] for the token cache's mint count;
//! * [`MetricsLayer`]: a tower layer for the gRPC HTTP service that counts calls by method
//!   and gRPC status, times them and tracks the calls in flight;
//! * [`serve_admin`]: a small HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz`,
//!   fed by an [`AdminState`].
//!
//! The crate's README lists every metric with its labels.
//!
//! # Wiring
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Instant;
//! use egress_telemetry::{AdminState, Metrics, serve_admin};
//!
//! # async fn run(grpc_routes: tower::util::BoxCloneService<http::Request<()>, http::Response<String>, std::convert::Infallible>) -> std::io::Result<()> {
//! let metrics = Metrics::new();
//! let state = AdminState::new(metrics.clone());
//!
//! // The token cache counts its mints; the metric reads the count at scrape time.
//! # let refreshes = || 0u64;
//! metrics.register_token_refreshes(Arc::new(move || refreshes()));
//!
//! // Around the gRPC routes (outside the routing, so every path is seen):
//! let service = tower::ServiceBuilder::new()
//!     .layer(metrics.layer())
//!     .service(grpc_routes);
//!
//! // In the forwarder, around each Twirp call:
//! let started = Instant::now();
//! // let result = client.call(method, body, &opts).await;
//! metrics.observe_upstream("StopEgress", started.elapsed());
//! // on Err(err): metrics.upstream_error(err.kind());
//!
//! // The upstream probe: state.set_upstream_reachable(ok);
//! // On shutdown: state.set_draining() before draining gRPC.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! tokio::spawn(serve_admin(listener, state.clone(), std::future::pending()));
//! # drop(service);
//! # Ok(())
//! # }
//! ```

mod admin;
mod labels;
mod layer;
mod metrics;

pub use admin::{AdminState, NotReady, Readiness, serve_admin};
pub use labels::{Door, GrpcWeb, RPC_HEALTH, RPC_OTHER, RPC_REFLECTION, code_name, rpc_label};
pub use layer::CallCode;
pub use layer::{MetricsBody, MetricsLayer, MetricsService, ResponseFuture};
pub use metrics::{
    DURATION_BUCKETS, HeapSource, HeapStats, METRICS_CONTENT_TYPE, Metrics, TokenRefreshSource,
};
