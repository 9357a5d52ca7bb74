//! LiveKit's egress schema as Rust types: prost messages, plus (with the `grpc` feature) the
//! tonic client and server for `livekit.Egress`, generated from the repository's `proto/`
//! directory.
//!
//! Nothing but generated code lives here; logic on these types belongs in `egress-core`.
//!
//! ```
//! use egress_proto::livekit::{ListEgressRequest, StopEgressRequest};
//! use prost::Message;
//!
//! let request = StopEgressRequest { egress_id: "EG_abc".into() };
//! let bytes = request.encode_to_vec();
//! assert_eq!(StopEgressRequest::decode(&bytes[..]).unwrap(), request);
//! # let _ = ListEgressRequest::default();
//! ```

#![allow(
    clippy::all,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms
)]

/// Messages, enums and the `Egress` service of the `livekit` package.
pub mod livekit {
    include!(concat!(env!("OUT_DIR"), "/livekit.rs"));
}

/// The gateway's own protos, apart from LiveKit's pinned schema.
pub mod egress_gateway {
    /// Version 1 of the gateway's event service: `EgressEvents/Watch`.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/egress_gateway.v1.rs"));
    }
}

/// The `logger` package: LiveKit's field sensitivity annotations.
pub mod logger {
    include!(concat!(env!("OUT_DIR"), "/logger.rs"));
}

/// The encoded `google.protobuf.FileDescriptorSet` of `livekit_egress.proto`,
/// `egress_gateway/v1/events.proto` and their imports, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// The fully-qualified name of the gateway's own event service.
pub const EVENTS_SERVICE: &str = "egress_gateway.v1.EgressEvents";

/// The fully-qualified gRPC service name, as it appears in request paths.
pub const EGRESS_SERVICE: &str = "livekit.Egress";
