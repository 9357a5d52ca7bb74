//! LiveKit's API-key middleware, as the simulator reproduces it.
//!
//! LiveKit's `APIKeyAuthMiddleware` runs before Twirp routing:
//!
//! * an `Authorization` header that does not start with `Bearer ` → HTTP 401, plain text
//!   `invalid authorization header. Must start with Bearer `;
//! * a token that does not parse → 401 `invalid authorization token`;
//! * a token whose `iss` is not a known API key → 401 `invalid API key: <key>`;
//! * a bad signature or an expired / not-yet-valid token → 401
//!   `invalid token: <token>, error: <reason>`;
//! * **no token at all** (no header, no `access_token` query parameter) passes through without
//!   grants, so the Egress service itself answers Twirp `unauthenticated` `permissions denied`,
//!   exactly as for a valid token without the `roomRecord` grant.

use egress_auth::{ApiSecret, Claims, Credentials, VerifyError, verify};
use http::HeaderMap;

const BEARER: &str = "Bearer ";

/// The grants a request carries, or the plain-text 401 body to reject it with.
pub(crate) fn authenticate(
    credentials: &[Credentials],
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Claims>, String> {
    let token = match headers.get(http::header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().unwrap_or("");
            match value.strip_prefix(BEARER) {
                Some(token) => token.to_owned(),
                // An empty header value counts as absent, as Go's `Header.Get` returns "".
                None if value.is_empty() => query_token(query).unwrap_or_default(),
                None => {
                    return Err(format!(
                        "invalid authorization header. Must start with {BEARER}"
                    ));
                }
            }
        }
        None => query_token(query).unwrap_or_default(),
    };
    if token.is_empty() {
        return Ok(None);
    }
    let lookup = |key: &str| -> Option<ApiSecret> {
        credentials
            .iter()
            .find(|c| c.api_key == key)
            .map(|c| c.api_secret.clone())
    };
    match verify(&token, lookup) {
        Ok(claims) => Ok(Some(claims)),
        Err(VerifyError::Malformed { .. }) => Err("invalid authorization token".to_owned()),
        Err(VerifyError::UnknownKey { key }) => Err(format!("invalid API key: {key}")),
        Err(other) => Err(format!("invalid token: {token}, error: {other}")),
    }
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "access_token")
        .map(|(_, value)| value.to_owned())
}

/// Decodes a JWT's payload **without** checking anything, for the request log.
pub(crate) fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_auth::{VideoGrants, mint};
    use std::time::{Duration, SystemTime};

    fn creds() -> Vec<Credentials> {
        vec![Credentials::new("APIkey", "secret")]
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn token(key: &str, secret: &str, grants: VideoGrants, ttl: u64) -> String {
        mint(
            &Credentials::new(key, secret),
            &grants,
            Duration::from_secs(ttl),
            SystemTime::now(),
        )
        .unwrap()
    }

    #[test]
    fn no_token_passes_without_grants() {
        assert_eq!(authenticate(&creds(), &HeaderMap::new(), None), Ok(None));
        assert_eq!(authenticate(&creds(), &headers("Bearer "), None), Ok(None));
    }

    #[test]
    fn rejections_are_plain_text_messages() {
        assert_eq!(
            authenticate(&creds(), &headers("Basic abc"), None).unwrap_err(),
            "invalid authorization header. Must start with Bearer "
        );
        assert_eq!(
            authenticate(&creds(), &headers("Bearer garbage"), None).unwrap_err(),
            "invalid authorization token"
        );
        let other = token("Other", "secret", VideoGrants::room_record(), 60);
        assert_eq!(
            authenticate(&creds(), &headers(&format!("Bearer {other}")), None).unwrap_err(),
            "invalid API key: Other"
        );
        let wrong = token("APIkey", "wrong", VideoGrants::room_record(), 60);
        let msg = authenticate(&creds(), &headers(&format!("Bearer {wrong}")), None).unwrap_err();
        assert!(msg.starts_with("invalid token: "), "{msg}");
    }

    #[test]
    fn valid_token_from_header_or_query() {
        let good = token("APIkey", "secret", VideoGrants::room_record(), 60);
        let claims = authenticate(&creds(), &headers(&format!("Bearer {good}")), None)
            .unwrap()
            .unwrap();
        assert!(claims.video.room_record);
        let query = format!("x=1&access_token={good}");
        let claims = authenticate(&creds(), &HeaderMap::new(), Some(&query))
            .unwrap()
            .unwrap();
        assert_eq!(claims.iss, "APIkey");
        let decoded = unverified_claims(&good).unwrap();
        assert_eq!(decoded["video"]["roomRecord"], true);
        assert!(unverified_claims("nope").is_none());
    }
}
