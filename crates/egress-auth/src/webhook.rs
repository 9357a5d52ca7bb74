//! LiveKit's webhook signature: the `Authorization` header is an access token of the
//! webhook's API key whose `sha256` claim is the standard-base64 SHA-256 of the raw body.
//!
//! A receiver checks the token (key, signature, times, as [`verify`](crate::verify) does)
//! and then the body's hash, in constant time, *before* it parses anything.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiSecret, AuthError, Claims, Credentials, VerifyError, sign_claims, verify_at};

/// How long the tokens [`sign_webhook`] makes are valid, as LiveKit's (5 minutes).
pub const WEBHOOK_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookAuthError {
    /// No `Authorization` value.
    #[error("no authorization header")]
    MissingToken,
    /// The token itself failed: malformed, unknown key, bad signature, expired.
    #[error(transparent)]
    Token(#[from] VerifyError),
    /// A valid token that signs no body.
    #[error("token has no sha256 claim")]
    MissingHash,
    /// The body is not the one the token signs.
    #[error("body does not match the token's sha256 claim")]
    HashMismatch,
}

impl WebhookAuthError {
    /// A short, fixed label for metrics and logs: `missing_token`, `malformed`,
    /// `unknown_key`, `bad_signature`, `expired`, `not_yet_valid`, `missing_hash`,
    /// `hash_mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            WebhookAuthError::MissingToken => "missing_token",
            WebhookAuthError::Token(VerifyError::Malformed { .. }) => "malformed",
            WebhookAuthError::Token(VerifyError::UnknownKey { .. }) => "unknown_key",
            WebhookAuthError::Token(VerifyError::BadSignature) => "bad_signature",
            WebhookAuthError::Token(VerifyError::Expired) => "expired",
            WebhookAuthError::Token(VerifyError::NotYetValid) => "not_yet_valid",
            WebhookAuthError::MissingHash => "missing_hash",
            WebhookAuthError::HashMismatch => "hash_mismatch",
        }
    }
}

/// The `sha256` claim of `body`: standard base64 of its SHA-256.
pub fn body_hash(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

/// Verifies a webhook's `Authorization` value (the raw token, or `Bearer <token>`) against
/// `body`, at `now`; `lookup` gives the secret of an API key (`None`: unknown key).
///
/// # Errors
///
/// No token, a token [`verify_at`] refuses, no `sha256` claim, or a body whose hash differs.
///
/// ```
/// use std::time::SystemTime;
/// use egress_auth::{Credentials, sign_webhook, verify_webhook};
///
/// let creds = Credentials::new("APIkey", "my-secret");
/// let body = br#"{"event":"egress_ended","id":"EV_1"}"#;
/// let token = sign_webhook(&creds, body, SystemTime::now())?;
/// let lookup = |key: &str| (key == "APIkey").then(|| creds.api_secret.clone());
/// assert!(verify_webhook(Some(&token), body, lookup, SystemTime::now()).is_ok());
/// let err = verify_webhook(Some(&token), b"{}", lookup, SystemTime::now()).unwrap_err();
/// assert_eq!(err.reason(), "hash_mismatch");
/// # Ok::<(), egress_auth::AuthError>(())
/// ```
pub fn verify_webhook(
    authorization: Option<&str>,
    body: &[u8],
    lookup: impl Fn(&str) -> Option<ApiSecret>,
    now: SystemTime,
) -> Result<Claims, WebhookAuthError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(WebhookAuthError::MissingToken)?;
    // LiveKit sends the bare token; some proxies and SDKs add the scheme.
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => value,
    };
    let claims = verify_at(token, lookup, now)?;
    let claimed = claims
        .sha256
        .as_deref()
        .ok_or(WebhookAuthError::MissingHash)?;
    let actual = body_hash(body);
    if !bool::from(claimed.as_bytes().ct_eq(actual.as_bytes())) {
        return Err(WebhookAuthError::HashMismatch);
    }
    Ok(claims)
}

/// Signs `body` as LiveKit signs a webhook: a token of `credentials` valid for
/// [`WEBHOOK_TOKEN_TTL`] from `now`, with the body's [`body_hash`] as its `sha256` claim.
///
/// # Errors
///
/// As for [`sign_claims`], or a `now` before 1970.
pub fn sign_webhook(
    credentials: &Credentials,
    body: &[u8],
    now: SystemTime,
) -> Result<String, AuthError> {
    let nbf = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| AuthError::ClockBeforeEpoch)?
        .as_secs();
    let claims = Claims {
        exp: nbf + WEBHOOK_TOKEN_TTL.as_secs(),
        iss: credentials.api_key.clone(),
        nbf,
        sha256: Some(body_hash(body)),
        ..Claims::default()
    };
    sign_claims(&credentials.api_secret, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event":"egress_started","id":"EV_1"}"#;

    fn creds() -> Credentials {
        Credentials::new("APIkey", "webhook-secret")
    }

    fn lookup(key: &str) -> Option<ApiSecret> {
        (key == "APIkey").then(|| ApiSecret::new("webhook-secret"))
    }

    #[test]
    fn livekit_signed_webhooks_verify_with_or_without_bearer() {
        let now = SystemTime::now();
        let token = sign_webhook(&creds(), BODY, now).unwrap();
        let claims = verify_webhook(Some(&token), BODY, lookup, now).unwrap();
        assert_eq!(claims.iss, "APIkey");
        assert_eq!(claims.sha256.as_deref(), Some(body_hash(BODY).as_str()));
        let bearer = format!("Bearer {token}");
        assert!(verify_webhook(Some(&bearer), BODY, lookup, now).is_ok());
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let now = SystemTime::now();
        let token = sign_webhook(&creds(), BODY, now).unwrap();
        let other_key = sign_webhook(&Credentials::new("Other", "x"), BODY, now).unwrap();
        let wrong_secret = sign_webhook(&Credentials::new("APIkey", "nope"), BODY, now).unwrap();
        let old = sign_webhook(&creds(), BODY, now - Duration::from_secs(3600)).unwrap();
        let no_hash = crate::mint(
            &creds(),
            &crate::VideoGrants::default(),
            Duration::from_secs(60),
            now,
        )
        .unwrap();
        let cases: [(Option<&str>, &[u8], &str); 7] = [
            (None, BODY, "missing_token"),
            (Some("  "), BODY, "missing_token"),
            (Some("garbage"), BODY, "malformed"),
            (Some(&other_key), BODY, "unknown_key"),
            (Some(&wrong_secret), BODY, "bad_signature"),
            (Some(&old), BODY, "expired"),
            (Some(&no_hash), BODY, "missing_hash"),
        ];
        for (auth, body, reason) in cases {
            let err = verify_webhook(auth, body, lookup, now).unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
        }
        let err = verify_webhook(Some(&token), b"{}", lookup, now).unwrap_err();
        assert_eq!(err, WebhookAuthError::HashMismatch);
        // No error text carries the secret.
        assert!(!err.to_string().contains("webhook-secret"));
    }
}
