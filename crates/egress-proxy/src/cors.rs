//! Cross-origin calls from browser pages (gRPC-Web dashboards, a page calling the Twirp
//! door), off unless the operator names the origins allowed.
//!
//! A browser sends a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-*`)
//! before a cross-origin gRPC-Web or Twirp call, since both carry non-simple headers and
//! content types. tower-http's [`CorsLayer`] answers it for an allowed origin and adds the
//! `Access-Control-*` headers to the answers of the calls themselves. Nothing is allowed by
//! default: without an allowed origin a browser refuses to hand the answer to the page, so
//! a page on another site cannot spend a caller's credentials or read its egresses.
//! Credentials mode (cookies) stays off: callers authenticate with an explicit
//! `Authorization` header, which a page must set itself.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a gRPC-Web or Twirp call from a browser may carry.
const ALLOWED_HEADERS: [&str; 10] = [
    "content-type",
    "authorization",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "x-twirp-timeout-ms",
    "x-request-id",
    "x-livekit-request-id",
    "idempotency-key",
    "grpc-accept-encoding",
];

/// Response headers a page may read: gRPC-Web carries a unary call's status in headers
/// when it answers trailers-only, and the ids join a page's log with ours.
const EXPOSED_HEADERS: [&str; 5] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-request-id",
    "x-livekit-request-id",
];

/// How long a browser may cache a preflight answer.
const MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// Browser origins allowed to call the listener cross-origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers: browsers allow only same-origin pages.
    #[default]
    Off,
    /// Any origin (`*`): for gateways whose every caller must present its own credentials.
    Any,
    /// These origins exactly (`scheme://host[:port]`, as browsers send them).
    List(Vec<HeaderValue>),
}

/// An origin that cannot be one a browser sends.
#[derive(Debug, thiserror::Error)]
#[error(
    "CORS origin {0:?} is not an origin: give scheme://host[:port] without a path, or * for any"
)]
pub struct BadOrigin(String);

impl CorsOrigins {
    /// Reads the operator's list: empty is [`Off`](Self::Off), `*` (alone) is
    /// [`Any`](Self::Any), anything else must be an origin.
    ///
    /// ```
    /// use egress_proxy::cors::CorsOrigins;
    ///
    /// assert_eq!(CorsOrigins::parse(&[]).unwrap(), CorsOrigins::Off);
    /// assert_eq!(CorsOrigins::parse(&["*".into()]).unwrap(), CorsOrigins::Any);
    /// assert!(CorsOrigins::parse(&["https://dash.example.com".into()]).is_ok());
    /// assert!(CorsOrigins::parse(&["https://dash.example.com/app".into()]).is_err());
    /// assert!(CorsOrigins::parse(&["dash.example.com".into()]).is_err());
    /// ```
    pub fn parse(origins: &[String]) -> Result<Self, BadOrigin> {
        if origins.is_empty() {
            return Ok(Self::Off);
        }
        if origins.iter().any(|origin| origin == "*") {
            return match origins {
                [_] => Ok(Self::Any),
                _ => Err(BadOrigin("* together with other origins".into())),
            };
        }
        origins
            .iter()
            .map(|origin| {
                let bad = || BadOrigin(origin.clone());
                let uri: http::Uri = origin.parse().map_err(|_| bad())?;
                let is_origin = matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
                    && !origin.ends_with('/');
                if !is_origin {
                    return Err(bad());
                }
                HeaderValue::from_str(origin).map_err(|_| bad())
            })
            .collect::<Result<_, _>>()
            .map(Self::List)
    }

    /// The layer answering preflights and marking answers, or `None` when off.
    pub fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            Self::Off => return None,
            Self::Any => AllowOrigin::any(),
            Self::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::POST])
                .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
                .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
                .max_age(MAX_AGE),
        )
    }
}
