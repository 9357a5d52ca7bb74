//! Who may call what on the egress gateway.
//!
//! The gateway holds the LiveKit API secret, so anyone who reaches it can
//! start recordings and stream rooms anywhere. This crate reads a TOML
//! policy file (format: see the crate's `README.md`) that says
//!
//! * how callers authenticate ([`AuthMode`]: none, bearer token, mTLS), and
//!   which [`Caller`] a token or certificate belongs to;
//! * what each caller may do ([`CallerPolicy`]): which RPCs, for which rooms,
//!   streaming to which URLs, storing to which buckets and paths, sending
//!   webhooks where, and recording which web pages.
//!
//! Everything here is pure, synchronous logic: checks run on an
//! [`egress_core::RequestView`] the proxy decoded from the request (the
//! original bytes are still what gets forwarded). Hot reload is a
//! [`PolicyStore`] swap; the proxy owns signals and file watching.
//!
//! # Example
//!
//! ```
//! use egress_core::{RequestView, Rpc, proto};
//! use egress_policy::{Policy, Rule, hash_token};
//!
//! let text = format!(r#"
//! [auth]
//! mode = "bearer"
//!
//! [[callers]]
//! name = "recorder-service"
//! token_sha256 = "{}"
//! policy = "recording"
//!
//! [policies.recording]
//! rpcs = ["StartRoomCompositeEgress", "StopEgress", "ListEgress"]
//! rooms = ["team-*", "standup"]
//! stream_urls = ["rtmps://*.live.example.com/*"]
//! "#, hash_token("token-from-the-authorization-header"));
//! let policy = Policy::from_toml_str(&text, "policy.toml")?;
//!
//! // 1. Authenticate.
//! let caller = policy
//!     .authenticate_bearer("token-from-the-authorization-header")
//!     .expect("known caller");
//!
//! // 2. Check the request.
//! let request = proto::RoomCompositeEgressRequest {
//!     room_name: "team-a".into(),
//!     stream_outputs: vec![proto::StreamOutput {
//!         urls: vec!["rtmp://attacker.example.net/live/STREAMKEY".into()],
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! let denial = caller.policy.check(&RequestView::from(&request)).unwrap_err();
//! assert_eq!(denial.rule(), Rule::StreamUrls);
//! // The stream key never appears in the message.
//! assert_eq!(
//!     denial.to_string(),
//!     "caller \"recorder-service\" may not stream to \"rtmp://attacker.example.net\" \
//!      (rule policies.recording.stream_urls)"
//! );
//! # Ok::<(), egress_policy::PolicyError>(())
//! ```

mod caller;
mod check;
mod error;
mod file;
mod pattern;
mod policy;
mod restricts;
mod store;
mod token;

pub use caller::{AuthMode, Caller, CallerKey};
pub use check::{CallerPolicy, DEFAULT_STORAGE_BUCKET, Denial, Rule, WATCH};
pub use error::PolicyError;
pub use policy::Policy;
pub use store::{PolicyStore, ReloadOutcome};
pub use token::hash_token;

// Compiles and runs the README's examples as doctests so they cannot go
// stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
