//! LiveKit access tokens for the egress gateway.
//!
//! LiveKit's Twirp API authenticates every request with `Authorization: Bearer <jwt>`, an HS256
//! JWT whose `iss` is the API key and whose `video` grant must include `roomRecord` for the
//! Egress service. This crate
//!
//! * loads [`Credentials`] from the environment or a secret file, keeping the [`ApiSecret`] out
//!   of every `Debug`/`Display` output and error message;
//! * [`mint`]s tokens shaped exactly like LiveKit's own tooling does;
//! * caches the ready-made header value in a [`TokenCache`], so the per-request cost is a read
//!   lock and a clone;
//! * [`verify`]s tokens the way a LiveKit server does, for the simulator and tests.
//!
//! ```
//! use egress_auth::{Credentials, TokenCache, TokenCacheConfig, VideoGrants};
//!
//! let cache = TokenCache::new(
//!     Credentials::new("APIkey", "my-secret"),
//!     VideoGrants::room_record(),
//!     TokenCacheConfig::default(),
//! );
//! let mut request = http::Request::new(());
//! request.headers_mut().insert(http::header::AUTHORIZATION, cache.authorization()?);
//! # Ok::<(), egress_auth::AuthError>(())
//! ```
//!
//! With the `tracing` feature, minting and key rotation emit `debug` events (API key and `exp`
//! only).

#![warn(missing_docs)]

mod cache;
mod claims;
mod credentials;
mod error;
mod token;
mod webhook;

pub use cache::{TokenCache, TokenCacheConfig};
pub use claims::{Claims, VideoGrants};
pub use credentials::{ApiSecret, Credentials, ENV_API_KEY, ENV_API_SECRET};
pub use error::{AuthError, VerifyError};
pub use token::{LEEWAY_SECS, mint, sign_claims, verify, verify_at};
pub use webhook::{WEBHOOK_TOKEN_TTL, WebhookAuthError, body_hash, sign_webhook, verify_webhook};
