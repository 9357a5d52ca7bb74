//! `egress-proxy`: a gRPC server for LiveKit's `livekit.Egress` service that forwards every
//! call to LiveKit over Twirp, minting the LiveKit access token itself so callers never
//! hold the API secret.
//!
//! The data path of one call:
//!
//! ```text
//! caller ──gRPC/HTTP2──▶ server (hyper) ─▶ ShedLimit ─▶ EgressForwarder ─▶ TwirpClient ──HTTP──▶ LiveKit
//!                                                      (raw bytes, deadline,        (token cache,
//!                                                       request id, trace context)   error table)
//! ```
//!
//! The binary lives in `main.rs`; this library holds the pieces so each can be read and
//! tested on its own.

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
