//! Supplying the `Authorization` header of each Twirp call.
//!
//! [`TwirpClient`](crate::TwirpClient) asks its [`Authorizer`] for a header value on every call,
//! so implementations should cache (LiveKit's access tokens are JWTs that stay valid for a while).
//! The header value is marked sensitive before it is attached to a request and never appears in
//! an [`Error`](crate::Error) message.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

/// Why an [`Authorizer`] could not produce an `Authorization` header value.
///
/// It carries a human-readable message only, which must not contain secrets. It becomes
/// [`Error::Auth`](crate::Error::Auth) (gRPC `INTERNAL`) when a call fails because of it.
///
/// ```
/// use egress_twirp::AuthFailure;
///
/// let failure = AuthFailure::new("API secret is not configured");
/// assert_eq!(failure.to_string(), "API secret is not configured");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthFailure(String);

impl AuthFailure {
    /// Creates a failure with the given message (which must not contain secrets).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The failure's message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Produces the `Authorization` header value (normally `Bearer <jwt>`) of a Twirp call.
///
/// It is called once per call, on the hot path: implementations should return a cached value
/// and only mint a new token when the cached one is about to expire.
///
/// ```
/// use egress_twirp::{AuthFailure, Authorizer};
/// use http::HeaderValue;
///
/// struct FixedToken;
///
/// impl Authorizer for FixedToken {
///     fn authorization(&self) -> Result<HeaderValue, AuthFailure> {
///         HeaderValue::from_str("Bearer abc").map_err(|_| AuthFailure::new("bad token"))
///     }
/// }
///
/// assert_eq!(FixedToken.authorization().unwrap(), "Bearer abc");
/// ```
pub trait Authorizer: Send + Sync + 'static {
    /// Returns the value of the `Authorization` header for the next request.
    fn authorization(&self) -> Result<HeaderValue, AuthFailure>;
}

impl<T: Authorizer + ?Sized> Authorizer for Arc<T> {
    fn authorization(&self) -> Result<HeaderValue, AuthFailure> {
        (**self).authorization()
    }
}

impl<T: Authorizer + ?Sized> Authorizer for Box<T> {
    fn authorization(&self) -> Result<HeaderValue, AuthFailure> {
        (**self).authorization()
    }
}

/// An [`Authorizer`] that always returns the same header value (tests, pre-minted tokens).
///
/// Its `Debug` output never shows the value.
///
/// ```
/// use egress_twirp::{Authorizer, StaticAuthorization};
///
/// let auth = StaticAuthorization::bearer("token").unwrap();
/// assert_eq!(auth.authorization().unwrap(), "Bearer token");
/// assert!(!format!("{auth:?}").contains("token"));
/// ```
#[derive(Clone)]
pub struct StaticAuthorization(HeaderValue);

impl StaticAuthorization {
    /// Uses `value` verbatim as the `Authorization` header.
    pub fn new(mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        Self(value)
    }

    /// Builds `Bearer <token>`; fails if the token is not a valid header value.
    pub fn bearer(token: &str) -> Result<Self, AuthFailure> {
        HeaderValue::try_from(format!("Bearer {token}"))
            .map(Self::new)
            .map_err(|_| AuthFailure::new("the bearer token is not a valid header value"))
    }
}

impl fmt::Debug for StaticAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticAuthorization(<redacted>)")
    }
}

impl Authorizer for StaticAuthorization {
    fn authorization(&self) -> Result<HeaderValue, AuthFailure> {
        Ok(self.0.clone())
    }
}

impl From<egress_auth::AuthError> for AuthFailure {
    fn from(err: egress_auth::AuthError) -> Self {
        // `AuthError` messages never contain secrets or tokens.
        AuthFailure::new(err.to_string())
    }
}

/// LiveKit's cached access tokens are the gateway's normal authorizer.
///
/// ```
/// use egress_auth::{Credentials, TokenCache, TokenCacheConfig, VideoGrants};
/// use egress_twirp::Authorizer;
///
/// let cache = TokenCache::new(
///     Credentials::new("APIkey", "my-secret"),
///     VideoGrants::room_record(),
///     TokenCacheConfig::default(),
/// );
/// let value = Authorizer::authorization(&cache).unwrap();
/// assert!(value.to_str().unwrap().starts_with("Bearer "));
/// ```
impl Authorizer for egress_auth::TokenCache {
    fn authorization(&self) -> Result<HeaderValue, AuthFailure> {
        egress_auth::TokenCache::authorization(self).map_err(AuthFailure::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_auth::{Credentials, TokenCache, TokenCacheConfig, VideoGrants};

    #[test]
    fn token_cache_is_an_authorizer() {
        let cache = Arc::new(TokenCache::new(
            Credentials::new("APIkey", "my-secret"),
            VideoGrants::room_record(),
            TokenCacheConfig::default(),
        ));
        let shared: Arc<dyn Authorizer> = cache.clone();
        let value = shared.authorization().unwrap();
        assert!(value.is_sensitive());
        assert!(value.to_str().unwrap().starts_with("Bearer ey"));
        // Cached: the same value comes back.
        assert_eq!(shared.authorization().unwrap(), value);
    }

    #[test]
    fn token_cache_failures_become_auth_failures() {
        let cache = TokenCache::new(
            Credentials::new("APIkey", ""),
            VideoGrants::room_record(),
            TokenCacheConfig::default(),
        );
        let failure = Authorizer::authorization(&cache).unwrap_err();
        assert!(!failure.message().is_empty());
        let err = crate::Error::from(failure);
        assert!(matches!(err, crate::Error::Auth(_)));
        assert_eq!(err.kind(), "auth");
    }

    #[test]
    fn static_authorization_is_sensitive_and_redacted() {
        let auth = StaticAuthorization::bearer("s3cret").unwrap();
        assert!(auth.authorization().unwrap().is_sensitive());
        assert_eq!(format!("{auth:?}"), "StaticAuthorization(<redacted>)");
        assert_eq!(
            auth.authorization().unwrap().to_str().unwrap(),
            "Bearer s3cret"
        );
        assert!(StaticAuthorization::bearer("bad\ntoken").is_err());
        assert!(StaticAuthorization::bearer("bad\u{7f}").is_err());
    }
}
