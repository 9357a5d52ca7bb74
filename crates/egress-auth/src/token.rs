//! Minting and verifying HS256 tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::Deserialize;

use crate::{ApiSecret, AuthError, Claims, Credentials, VerifyError, VideoGrants};

/// Clock skew a LiveKit server tolerates on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// base64url of `{"alg":"HS256","typ":"JWT"}`.
///
/// Precomputed rather than serialized per token: jsonwebtoken's `Header` serializes as
/// `{"typ":..,"alg":..}`, while LiveKit's tooling emits `alg` first. Using LiveKit's exact bytes
/// keeps our tokens indistinguishable from theirs, and saves work on every mint.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

pub(crate) fn unix_secs(t: SystemTime) -> Result<u64, AuthError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| AuthError::ClockBeforeEpoch)
}

/// Mints a LiveKit access token: an HS256 JWT with `iss` = the API key, `nbf` = `now` and
/// `exp` = `now + ttl`, both in whole seconds (sub-second parts are dropped), and no `sub`.
///
/// The payload carries only non-default grants, e.g.
/// `{"exp":..,"iss":"APIkey","nbf":..,"video":{"roomRecord":true}}`.
///
/// Most callers want a [`TokenCache`](crate::TokenCache) instead, which reuses a token until it
/// nears expiry.
///
/// # Errors
///
/// [`AuthError::ClockBeforeEpoch`] if `now` is before 1970, [`AuthError::Signing`] if the
/// secret is empty or signing fails.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use egress_auth::{mint, verify, Credentials, VideoGrants};
///
/// let creds = Credentials::new("APIkey", "my-secret");
/// let jwt = mint(&creds, &VideoGrants::room_record(), Duration::from_secs(600), SystemTime::now())?;
///
/// let claims = verify(&jwt, |key| (key == "APIkey").then(|| creds.api_secret.clone())).unwrap();
/// assert_eq!(claims.iss, "APIkey");
/// assert_eq!(claims.exp - claims.nbf, 600);
/// assert!(claims.video.room_record);
/// # Ok::<(), egress_auth::AuthError>(())
/// ```
pub fn mint(
    credentials: &Credentials,
    grants: &VideoGrants,
    ttl: Duration,
    now: SystemTime,
) -> Result<String, AuthError> {
    let nbf = unix_secs(now)?;
    let claims = Claims {
        exp: nbf.saturating_add(ttl.as_secs()),
        iss: credentials.api_key.clone(),
        nbf,
        sub: None,
        sha256: None,
        video: grants.clone(),
    };
    sign_claims(&credentials.api_secret, &claims)
}

/// Signs arbitrary [`Claims`] as an HS256 JWT with LiveKit's header.
///
/// Unlike [`mint`], nothing is derived from the clock or the credentials: useful to build tokens
/// with a `sub`, a foreign `iss` or odd times, e.g. in a simulator's tests.
///
/// # Errors
///
/// [`AuthError::Signing`] if the secret is empty or signing fails.
pub fn sign_claims(secret: &ApiSecret, claims: &Claims) -> Result<String, AuthError> {
    // An empty HMAC key is technically valid, but only ever the result of a misconfiguration,
    // and LiveKit would reject the token anyway; failing here points at the real cause.
    if secret.is_empty() {
        return Err(AuthError::Signing("API secret is empty".to_owned()));
    }
    let payload =
        serde_json::to_vec(claims).map_err(|e| AuthError::Signing(format!("claims: {e}")))?;

    let mut token = String::with_capacity(HEADER_B64.len() + 1 + payload.len() * 4 / 3 + 48);
    token.push_str(HEADER_B64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);

    let key = EncodingKey::from_secret(secret.expose().as_bytes());
    // jsonwebtoken's errors describe the failure, never the key material.
    let signature = jsonwebtoken::crypto::sign(token.as_bytes(), &key, Algorithm::HS256)
        .map_err(|e| AuthError::Signing(e.to_string()))?;
    token.push('.');
    token.push_str(&signature);
    Ok(token)
}

/// Verifies a token the way a LiveKit server does, against the current time.
///
/// 1. Decode the payload *without* checking the signature, only to read `iss` (the API key).
/// 2. Look up that key's secret with `lookup`; `None` means the key is unknown.
/// 3. Check the HS256 signature (other algorithms are rejected as malformed).
/// 4. Require `exp`, and check `exp` and `nbf` with [`LEEWAY_SECS`] (60 s) of leeway.
///
/// Grants are not checked; that is the caller's business (LiveKit answers `permissions denied`
/// when `roomRecord` is missing).
///
/// # Errors
///
/// [`VerifyError::Malformed`], [`VerifyError::UnknownKey`], [`VerifyError::BadSignature`],
/// [`VerifyError::Expired`] or [`VerifyError::NotYetValid`], in that order of checking.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use egress_auth::{mint, verify, ApiSecret, Credentials, VerifyError, VideoGrants};
///
/// let creds = Credentials::new("APIkey", "my-secret");
/// let jwt = mint(&creds, &VideoGrants::room_record(), Duration::from_secs(60), SystemTime::now())?;
/// let err = verify(&jwt, |_| Some(ApiSecret::new("another-secret"))).unwrap_err();
/// assert_eq!(err, VerifyError::BadSignature);
/// # Ok::<(), egress_auth::AuthError>(())
/// ```
pub fn verify(
    token: &str,
    lookup: impl Fn(&str) -> Option<ApiSecret>,
) -> Result<Claims, VerifyError> {
    verify_at(token, lookup, SystemTime::now())
}

/// [`verify`] against the given time instead of the system clock, for tests and simulators
/// with a virtual clock. A `now` before the Unix epoch counts as the epoch.
///
/// # Errors
///
/// As for [`verify`].
pub fn verify_at(
    token: &str,
    lookup: impl Fn(&str) -> Option<ApiSecret>,
    now: SystemTime,
) -> Result<Claims, VerifyError> {
    #[derive(Deserialize)]
    struct Issuer {
        #[serde(default)]
        iss: Option<String>,
    }

    let unverified = jsonwebtoken::dangerous::insecure_decode::<Issuer>(token)
        .map_err(|e| malformed(e.to_string()))?;
    let iss = unverified
        .claims
        .iss
        .filter(|iss| !iss.is_empty())
        .ok_or_else(|| malformed("missing iss (API key)"))?;
    let secret = lookup(&iss).ok_or(VerifyError::UnknownKey { key: iss })?;

    let mut validation = Validation::new(Algorithm::HS256);
    // Time checks are done below against `now`; jsonwebtoken would only use the system clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);

    let key = DecodingKey::from_secret(secret.expose().as_bytes());
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => VerifyError::BadSignature,
            ErrorKind::InvalidAlgorithm => malformed("unsupported algorithm (only HS256)"),
            _ => malformed(e.to_string()),
        })?
        .claims;

    let now = unix_secs(now).unwrap_or(0);
    if claims.exp.saturating_add(LEEWAY_SECS) < now {
        return Err(VerifyError::Expired);
    }
    if claims.nbf > now.saturating_add(LEEWAY_SECS) {
        return Err(VerifyError::NotYetValid);
    }
    Ok(claims)
}

fn malformed(reason: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "secret-that-must-not-leak";
    // A whole second, so `nbf` equals `now` exactly.
    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn creds() -> Credentials {
        Credentials::new("APIkey", SECRET)
    }

    fn lookup(key: &str) -> Option<ApiSecret> {
        (key == "APIkey").then(|| ApiSecret::new(SECRET))
    }

    fn part(token: &str, index: usize) -> String {
        let segment = token.split('.').nth(index).unwrap();
        String::from_utf8(URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    fn token(ttl: u64, now: u64) -> String {
        mint(
            &creds(),
            &VideoGrants::room_record(),
            Duration::from_secs(ttl),
            at(now),
        )
        .unwrap()
    }

    #[test]
    fn header_and_payload_have_livekit_shape() {
        let jwt = token(600, T0);
        assert_eq!(jwt.split('.').count(), 3);
        assert_eq!(part(&jwt, 0), r#"{"alg":"HS256","typ":"JWT"}"#);
        assert_eq!(
            part(&jwt, 1),
            format!(
                r#"{{"exp":{},"iss":"APIkey","nbf":{T0},"video":{{"roomRecord":true}}}}"#,
                T0 + 600
            )
        );
        assert!(!jwt.contains(SECRET));
    }

    #[test]
    fn sub_second_parts_are_dropped() {
        let now = at(T0) + Duration::from_millis(999);
        let jwt = mint(
            &creds(),
            &VideoGrants::room_record(),
            Duration::from_millis(1500),
            now,
        )
        .unwrap();
        let claims = verify_at(&jwt, lookup, now).unwrap();
        assert_eq!((claims.nbf, claims.exp), (T0, T0 + 1));
    }

    #[test]
    fn signature_is_standard_hs256() {
        // Cross-check against jsonwebtoken's own decoder with default (strict) validation.
        let jwt = mint(
            &creds(),
            &VideoGrants::room_record(),
            Duration::from_secs(600),
            SystemTime::now(),
        )
        .unwrap();
        let data = jsonwebtoken::decode::<Claims>(
            &jwt,
            &DecodingKey::from_secret(SECRET.as_bytes()),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        assert_eq!(data.claims.iss, "APIkey");
    }

    #[test]
    fn verify_accepts_minted_token() {
        let jwt = token(600, T0);
        let claims = verify_at(&jwt, lookup, at(T0 + 1)).unwrap();
        assert_eq!(
            claims,
            Claims {
                exp: T0 + 600,
                iss: "APIkey".into(),
                nbf: T0,
                sub: None,
                sha256: None,
                video: VideoGrants::room_record(),
            }
        );
        // And against the real clock.
        let fresh = mint(
            &creds(),
            &VideoGrants::room_record(),
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap();
        assert!(verify(&fresh, lookup).is_ok());
    }

    #[test]
    fn verify_rejects_wrong_secret() {
        let jwt = token(600, T0);
        let err = verify_at(&jwt, |_| Some(ApiSecret::new("other")), at(T0)).unwrap_err();
        assert_eq!(err, VerifyError::BadSignature);

        // Tampering with the payload breaks the signature too.
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"exp":{},"iss":"APIkey","nbf":{T0},"video":{{"roomRecord":true,"roomAdmin":true}}}}"#,
            T0 + 600
        ));
        let err = verify_at(&parts.join("."), lookup, at(T0)).unwrap_err();
        assert_eq!(err, VerifyError::BadSignature);
    }

    #[test]
    fn verify_rejects_unknown_key() {
        let other = Credentials::new("APIother", SECRET);
        let jwt = mint(
            &other,
            &VideoGrants::room_record(),
            Duration::from_secs(600),
            at(T0),
        )
        .unwrap();
        let err = verify_at(&jwt, lookup, at(T0)).unwrap_err();
        assert_eq!(
            err,
            VerifyError::UnknownKey {
                key: "APIother".into()
            }
        );
        assert_eq!(err.to_string(), r#"unknown API key "APIother""#);
    }

    #[test]
    fn expiry_and_not_before_use_sixty_seconds_of_leeway() {
        let jwt = token(600, T0);
        let exp = T0 + 600;
        assert!(verify_at(&jwt, lookup, at(exp)).is_ok());
        assert!(verify_at(&jwt, lookup, at(exp + 30)).is_ok());
        assert!(verify_at(&jwt, lookup, at(exp + LEEWAY_SECS)).is_ok());
        assert_eq!(
            verify_at(&jwt, lookup, at(exp + LEEWAY_SECS + 1)).unwrap_err(),
            VerifyError::Expired
        );
        assert_eq!(
            verify_at(&jwt, lookup, at(exp + 3600)).unwrap_err(),
            VerifyError::Expired
        );

        assert!(verify_at(&jwt, lookup, at(T0 - 30)).is_ok());
        assert!(verify_at(&jwt, lookup, at(T0 - LEEWAY_SECS)).is_ok());
        assert_eq!(
            verify_at(&jwt, lookup, at(T0 - LEEWAY_SECS - 1)).unwrap_err(),
            VerifyError::NotYetValid
        );
    }

    #[test]
    fn verify_rejects_malformed_tokens() {
        let secret = ApiSecret::new(SECRET);
        let no_exp = format!(
            "{HEADER_B64}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"iss":"APIkey","nbf":1}"#)
        );
        let sig = jsonwebtoken::crypto::sign(
            no_exp.as_bytes(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        let no_exp = format!("{no_exp}.{sig}");

        let no_iss = sign_claims(
            &secret,
            &Claims {
                exp: T0 + 600,
                ..Claims::default()
            },
        )
        .unwrap();

        let hs512 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS512),
            &Claims {
                exp: T0 + 600,
                iss: "APIkey".into(),
                ..Claims::default()
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();

        for bad in [
            "",
            "abc",
            "a.b.c",
            "not.a.jwt.at.all",
            &no_exp,
            &no_iss,
            &hs512,
        ] {
            let err = verify_at(bad, lookup, at(T0)).unwrap_err();
            assert!(
                matches!(err, VerifyError::Malformed { .. }),
                "{bad:?}: {err:?}"
            );
        }
        // A foreign algorithm says so, rather than echoing jsonwebtoken's own wording.
        assert_eq!(
            verify_at(&hs512, lookup, at(T0)).unwrap_err(),
            VerifyError::Malformed {
                reason: "unsupported algorithm (only HS256)".into()
            }
        );
    }

    #[test]
    fn sub_round_trips() {
        let claims = Claims {
            exp: T0 + 10,
            iss: "APIkey".into(),
            nbf: T0,
            sub: Some("egress-gateway".into()),
            sha256: None,
            video: VideoGrants::default(),
        };
        let jwt = sign_claims(&ApiSecret::new(SECRET), &claims).unwrap();
        assert_eq!(verify_at(&jwt, lookup, at(T0)).unwrap(), claims);
    }

    #[test]
    fn errors_never_leak_the_secret() {
        let err = mint(
            &Credentials::new("APIkey", ""),
            &VideoGrants::room_record(),
            Duration::from_secs(1),
            at(T0),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Signing(_)), "{err:?}");

        let err = mint(
            &creds(),
            &VideoGrants::room_record(),
            Duration::from_secs(1),
            UNIX_EPOCH - Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(err, AuthError::ClockBeforeEpoch);
        assert!(!format!("{err} {err:?}").contains(SECRET));
    }
}
