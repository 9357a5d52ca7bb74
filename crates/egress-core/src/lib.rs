//! Pure, synchronous request logic for the LiveKit egress gateway.
//!
//! This crate knows what an egress request *means* but never sends one: there
//! is no I/O and no async here, so the gRPC proxy, the Twirp client, the
//! simulator and the tests can all share exactly one set of rules.
//!
//! * [`outputs`] — one enum for every output kind, splitting it into the
//!   per-kind repeated fields of the v1 requests, and converting it to the
//!   unified `StartEgress` [`Output`](proto::Output) message.
//! * [`presets`] — typed [`EncodingOptions`] with LiveKit's defaults and the
//!   eight transcoding presets, convertible both ways to
//!   [`EncodingOptionsPreset`](proto::EncodingOptionsPreset).
//! * [`requests`] — builders for every Start RPC that validate before
//!   returning the proto request.
//! * [`validate`] — the validation rules themselves, applied to decoded
//!   proto requests. The gateway does **not** apply them to the requests it
//!   proxies: it forwards the caller's bytes and LiveKit validates them.
//!   They are for code that builds requests (the builders, the Rust client)
//!   and for the simulator, which answers like LiveKit.
//! * [`rpc`] — the one table of the ten RPCs, from which [`Rpc`], the
//!   [`RpcRequest`] association and the per-RPC dispatch of the other
//!   modules are generated.
//! * [`storage`] — one trait over the schema's five copies of the upload
//!   target oneof, and the credential-free [`StorageTarget`](storage::StorageTarget).
//! * [`view`] — a flattened [`RequestView`] of any egress request, for
//!   policy checks and audit logs.
//! * [`unknown`] — fields of a request that the pinned schema does not
//!   declare, found on the wire (prost drops them when decoding).
//! * [`AudioMixing`] and [`ListOptions`] — small typed wrappers.
//!
//! # Example
//!
//! ```
//! use egress_core::proto;
//! use egress_core::requests::RoomCompositeRequest;
//! use egress_core::{AudioMixing, EgressOutput};
//!
//! let request = RoomCompositeRequest::new("standup")
//!     .layout("speaker")
//!     .preset(proto::EncodingOptionsPreset::H264720p30)
//!     .audio_mixing(AudioMixing::DualChannelAgent)
//!     .output(EgressOutput::Stream(proto::StreamOutput {
//!         protocol: proto::StreamProtocol::Rtmp as i32,
//!         urls: vec!["rtmp://live.example.com/app/key".into()],
//!         ..Default::default()
//!     }))
//!     .build()?;
//! assert_eq!(request.room_name, "standup");
//! assert_eq!(request.stream_outputs.len(), 1);
//!
//! // Without outputs the builder refuses, before anything is sent.
//! let err = RoomCompositeRequest::new("standup").build().unwrap_err();
//! assert_eq!(err.to_string(), "request has no outputs");
//! # Ok::<(), egress_core::ValidationError>(())
//! ```

pub mod audio;
pub mod codec;
mod error;
pub mod events;
pub mod list;
pub mod outputs;
pub mod presets;
pub mod requests;
pub mod rpc;
pub mod storage;
pub mod stream_url;
pub mod unknown;
pub mod validate;
pub mod view;

/// The generated LiveKit protobuf types (`livekit` package) this crate works
/// with, re-exported so callers and doc examples need only one import path.
pub use egress_proto::livekit as proto;

pub use audio::AudioMixing;
pub use error::ValidationError;
pub use list::{ListFilter, ListOptions};
pub use outputs::{EgressOutput, SplitOutputs, TrackEgressOutput, split_outputs};
pub use presets::{EncodingOptions, preset_for, preset_options};
pub use rpc::{Rpc, RpcKind, RpcRequest};
pub use validate::Validate;
pub use view::{RequestView, decode_view};

// Compiles and runs the README's example as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// `Display` for types whose text is their `as_str()` (the name they are written with on
/// the wire or in a file): the one impl, instead of one per type.
///
/// ```
/// #[derive(Clone, Copy)]
/// pub enum Mode {
///     On,
/// }
///
/// impl Mode {
///     pub const fn as_str(self) -> &'static str {
///         "on"
///     }
/// }
///
/// egress_core::display_as_str!(Mode);
/// assert_eq!(Mode::On.to_string(), "on");
/// ```
#[macro_export]
macro_rules! display_as_str {
    ($($ty:ty),* $(,)?) => {$(
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
