//! A typed Rust client for LiveKit's Egress API over Twirp.
//!
//! [`EgressClient`] offers the surface of LiveKit's own Rust `EgressClient` (`livekit-api`
//! 0.10): the five `start_*` calls plus the unified [`start_egress`](EgressClient::start_egress),
//! [`update_layout`](EgressClient::update_layout),
//! [`update_stream`](EgressClient::update_stream), [`list_egress`](EgressClient::list_egress)
//! and [`stop_egress`](EgressClient::stop_egress). It is built on the gateway's own crates:
//!
//! * `egress-core` builds every request and **validates it before anything is sent**
//!   ([`ClientError::Validation`]);
//! * `egress-twirp` posts it (`application/protobuf`, pooled HTTP/1.1 and HTTP/2, deadlines,
//!   Twirp and intermediary error classification);
//! * `egress-auth` signs and caches the `roomRecord` access token.
//!
//! Differences from `livekit-api`:
//!
//! * constructors return `Result` (bad URL, missing or empty credentials are reported
//!   up front rather than on the first call);
//! * [`list_egress`](EgressClient::list_egress) returns an [`EgressPage`] that keeps
//!   `next_page_token` (LiveKit's client drops it), and
//!   [`list_all_egress`](EgressClient::list_all_egress) walks all pages;
//! * a path prefix in the URL (`https://host/lk`) is kept;
//! * there is no LiveKit Cloud region failover.
//!
//! **Wire compatibility.** For the same arguments, the request bodies are byte-identical to
//! `livekit-api`'s. In particular `livekit-api` always sends
//! `options: Advanced(EncodingOptions::default())` on the `start_*` calls when the caller
//! does not choose an encoding; the default [`Encoding::SdkDefault`] does exactly the same
//! (1920x1080, 24-bit, 30 fps, Opus 128 kbps at 44.1 kHz, H.264 Main 4500 kbps, everything
//! else unset). Use [`Encoding::ServerDefault`] to send no encoding options at all. The
//! crate's differential test checks this against `livekit-api` on every call.
//!
//! # Example
//!
//! ```no_run
//! use egress_client::{
//!     EgressClient, EgressOutput, ListOptions, RoomCompositeOptions, TrackEgressOutput, proto,
//! };
//!
//! # async fn run() -> Result<(), egress_client::ClientError> {
//! // Or EgressClient::new(url) with LIVEKIT_API_KEY / LIVEKIT_API_SECRET in the environment.
//! let client = EgressClient::with_api_key("wss://my-project.livekit.cloud", "APIkey", "secret")?;
//!
//! let recording = client
//!     .start_room_composite_egress(
//!         "standup",
//!         vec![EgressOutput::File(proto::EncodedFileOutput {
//!             filepath: "recordings/{room_name}-{time}.mp4".into(),
//!             ..Default::default()
//!         })],
//!         RoomCompositeOptions { layout: "grid".into(), ..Default::default() },
//!     )
//!     .await?;
//!
//! let transcription = client
//!     .start_track_egress(
//!         "standup",
//!         TrackEgressOutput::WebSocket("wss://stt.example.com/ingest".into()),
//!         "TR_audio",
//!     )
//!     .await?;
//!
//! for info in client.list_all_egress(ListOptions::room("standup").active(true)).await? {
//!     println!("{} {:?}", info.egress_id, info.status());
//! }
//!
//! client.stop_egress(&recording.egress_id).await?;
//! client.stop_egress(&transcription.egress_id).await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
mod options;

pub use client::{EgressClient, EgressClientBuilder, EgressPage, MAX_LIST_PAGES};
pub use error::{ClientError, PaginationAbort};
pub use options::{
    Encoding, ParticipantEgressOptions, RoomCompositeOptions, TrackCompositeOptions, WebOptions,
};

/// The LiveKit protobuf types (`livekit` package) the client sends and returns.
pub use egress_core::proto;

pub use egress_auth::Credentials;
pub use egress_core::{
    AudioMixing, EgressOutput, EncodingOptions, ListFilter, ListOptions, TrackEgressOutput,
    ValidationError,
};

// Compiles the README's example as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
