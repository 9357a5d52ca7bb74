//! Twirp client for LiveKit's Egress API, as used by the gRPC → Twirp egress gateway.
//!
//! The crate has four parts:
//!
//! * [`error`]: the Twirp error codes ([`TwirpCode`]), the Twirp JSON error body ([`TwirpError`]),
//!   the crate's one error type ([`Error`]), the classification of non-success HTTP responses
//!   ([`classify_response`]). What an [`Error`] becomes for a gRPC caller is the gateway's
//!   gRPC edge (`egress-proxy`); this crate does not depend on tonic.
//! * [`url`]: [`BaseUrl`], the normalised LiveKit server URL (`ws://` → `http://`,
//!   `wss://` → `https://`, path prefixes kept).
//! * [`authorizer`]: the [`Authorizer`] trait that supplies the `Authorization` header of each call.
//! * [`client`]: [`TwirpClient`], a pooled HTTP/1.1 + HTTP/2 client (hyper + rustls) that
//!   posts Twirp requests, enforces deadlines and classifies every failure.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use egress_twirp::{BaseUrl, CallOptions, ClientConfig, StaticAuthorization, TwirpClient};
//!
//! # async fn run() -> Result<(), egress_twirp::Error> {
//! let config = ClientConfig::new(BaseUrl::parse("wss://my-project.livekit.cloud")?, "livekit.Egress");
//! let auth = StaticAuthorization::bearer("eyJhbGciOi...").expect("valid header value");
//! let client = TwirpClient::new(config, auth)?;
//!
//! let opts = CallOptions::new().with_timeout(Duration::from_secs(10));
//! match client.call("ListEgress", Bytes::new(), &opts).await {
//!     Ok(response) => println!("{} bytes of ListEgressResponse", response.body.len()),
//!     // A Twirp error keeps LiveKit's code; anything else says what failed on the way.
//!     Err(err) => eprintln!("{} ({:?}): {err}", err.kind(), err.twirp_code()),
//! }
//! # Ok(())
//! # }
//! ```

pub mod authorizer;
pub mod client;
pub mod config;
pub mod error;
mod transport;
pub mod url;

pub use crate::authorizer::{AuthFailure, Authorizer, StaticAuthorization};
pub use crate::client::{CallOptions, Response, TwirpClient, WireFormat};
pub use crate::config::{ClientConfig, USER_AGENT};
pub use crate::error::{
    Error, TwirpCode, TwirpError, UnknownTwirpCode, classify_response, classify_response_prefix,
};
pub use crate::url::BaseUrl;
