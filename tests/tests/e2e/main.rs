//! End-to-end tests: the real `egress-proxy` binary on loopback, driven by real clients.
//!
//! One test binary with a module per area, rather than one binary per file: each binary
//! links the whole stack (tonic, hyper, rustls, the simulator), and linking them one by one
//! dominated a clean CI build.

mod access;
mod events;
mod grpc_web;
mod hostile;
mod hostile_upstream;
mod idempotency;
mod lifecycle;
mod operations;
mod packaging;
mod reliability;
mod retries;
mod rpcs;
mod schema;
mod sim_lifecycle;
mod sim_webhooks;
mod sim_wire;
mod tls;
mod twirp_door;
mod upstream_failures;
mod upstream_protocol;
