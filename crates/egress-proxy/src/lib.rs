//! `egress-proxy`: a gRPC server for LiveKit's `livekit.Egress` service that forwards every
//! call to LiveKit over Twirp, minting the LiveKit access token itself so callers never
//! hold the API secret.
//!
//! One call, top to bottom, as the modules name it:
//!
//! ```text
//! app          App::build(Config) binds and loads; App::serve(shutdown) runs and drains
//! listen       accept loop bounds: connection cap, header-read and idle timeouts,
//!              each stream's task dropped once past its deadline
//! server       HTTP/2 (hyper), TLS/mTLS peer identity; request id + call span, metrics;
//!              routes: livekit.Egress → door, anything else → health/reflection (tonic)
//! door::grpc   content type, RPC, budget → Call; one message (gzip/zstd) → Answer
//! call         Stages::admit:  auth (who) → admit (slots)        before the body is read
//!              Stages::run:    view → policy → forward, audited  after
//! error        CallError, and the one table from it to a gRPC status
//! ```
//!
//! The binary (`main.rs`) parses flags into a [`config::Config`], sets up logging and runs
//! an [`app::App`]; tests run the same `App` in-process.

pub mod app;
pub mod call;
pub mod codec;
pub mod config;
pub mod deadline;
pub mod door;
pub mod drain;
pub mod error;
pub mod listen;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod reload;
pub mod request_id;
pub mod server;
pub mod tls;
