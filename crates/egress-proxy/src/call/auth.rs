//! Caller authentication: who is calling, before anything else looks at the call.
//!
//! The mode comes from the policy file (`[auth] mode`): `none`, `bearer` (an
//! `authorization: Bearer <token>` whose SHA-256 is listed for a caller) or `mtls` (the
//! verified client certificate's names). In every mode, a caller with its own API key
//! (`api_key` in the file) authenticates with a LiveKit access token its SDK signed with
//! that key: `iss` names the key, the HS256 signature, `exp` and `nbf` are checked as
//! LiveKit checks them (one minute of leeway), and the `roomRecord` grant is required. Without a policy file every caller is anonymous and
//! may do anything; configuration allows that only on a loopback listener unless the
//! operator says `--allow-unauthenticated`.
//!
//! Only egress calls are authenticated: health and reflection stay open for probes and
//! tooling. The caller's `authorization` never travels further: a [`Call`](super::Call)
//! does not carry it.

use std::sync::Arc;

use std::cell::Cell;

use egress_auth::VerifyError;
use egress_policy::{AuthMode, Caller, Policy, PolicyStore};
use http::HeaderValue;

use super::CallerInfo;
use crate::error::AuthFailure;
use crate::tls::Peer;

/// Identifies callers against the current policy.
#[derive(Debug, Clone)]
pub struct Authenticator {
    policies: Option<Arc<PolicyStore>>,
    anonymous: CallerInfo,
}

impl Authenticator {
    /// Authenticates against the current policy of `policies`; without one, everyone is
    /// anonymous and unrestricted.
    pub fn new(policies: Option<Arc<PolicyStore>>) -> Self {
        Self {
            policies,
            anonymous: CallerInfo {
                name: Arc::from("anonymous"),
                policy: None,
            },
        }
    }

    /// The caller presenting `authorization` (every value of the header) from `peer`.
    ///
    /// # Errors
    ///
    /// Why the caller is not known. Two `authorization` values are refused in every mode:
    /// which one a component reads first is an accident of its code.
    pub fn authenticate<'h>(
        &self,
        mut authorization: impl Iterator<Item = &'h HeaderValue>,
        peer: &Peer,
    ) -> Result<CallerInfo, AuthFailure> {
        let presented = authorization.next();
        if authorization.next().is_some() {
            return Err(AuthFailure::AmbiguousToken);
        }
        let Some(store) = &self.policies else {
            return Ok(self.anonymous.clone());
        };
        let policy = store.current();
        let token = presented
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        if let Some(token) = token {
            let known = match policy.authenticate_bearer(token) {
                Some(caller) => Some(caller),
                None => by_caller_key(&policy, token)?,
            };
            if let Some(caller) = known {
                return Ok(Self::info(caller));
            }
        }
        let caller = match policy.auth_mode() {
            AuthMode::None => policy.anonymous_caller(),
            AuthMode::Bearer => {
                presented.ok_or(AuthFailure::MissingToken)?;
                token.ok_or(AuthFailure::MalformedToken)?;
                return Err(AuthFailure::UnknownToken);
            }
            AuthMode::Mtls => {
                if peer.identities.is_empty() {
                    return Err(AuthFailure::MissingCertificate);
                }
                Some(
                    policy
                        .authenticate_identity(&peer.identities)
                        .ok_or(AuthFailure::UnknownCertificate)?,
                )
            }
        };
        caller.map(Self::info).ok_or(AuthFailure::NoCaller)
    }

    fn info(caller: &Caller) -> CallerInfo {
        CallerInfo {
            name: Arc::from(caller.name.as_str()),
            policy: Some(Arc::clone(&caller.policy)),
        }
    }
}

/// The caller whose own API key signed `token`, if the token names one (`iss`).
///
/// # Errors
///
/// A token naming a caller's key that does not verify, or lacks the `roomRecord` grant:
/// refused, with LiveKit's reasons, rather than tried as anything else.
fn by_caller_key<'p>(policy: &'p Policy, token: &str) -> Result<Option<&'p Caller>, AuthFailure> {
    if !policy.has_caller_keys() {
        return Ok(None);
    }
    let named = Cell::new(None);
    let lookup = |api_key: &str| {
        let caller = policy.caller_by_api_key(api_key)?;
        named.set(Some(caller));
        caller.key().map(|key| key.api_secret.clone())
    };
    let verified = egress_auth::verify(token, lookup);
    let Some(caller) = named.get() else {
        return Ok(None);
    };
    match verified {
        Ok(claims) if claims.video.room_record => Ok(Some(caller)),
        Ok(_) => Err(AuthFailure::MissingGrant),
        Err(VerifyError::BadSignature) => Err(AuthFailure::CallerTokenSignature),
        Err(VerifyError::Expired) => Err(AuthFailure::CallerTokenExpired),
        Err(VerifyError::NotYetValid) => Err(AuthFailure::CallerTokenNotYetValid),
        Err(VerifyError::Malformed { .. } | VerifyError::UnknownKey { .. }) => {
            Err(AuthFailure::CallerTokenMalformed)
        }
    }
}

/// The token of an `authorization: Bearer <token>` value. The scheme name is
/// case-insensitive (RFC 9110, section 11.1), so `bearer` and `BEARER` are accepted.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use egress_policy::Policy;

    use super::*;

    /// sha256("test").
    const TEST_TOKEN_SHA256: &str =
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn authenticator(auth: &str, caller: &str) -> Authenticator {
        let text = format!(
            "[auth]\nmode = \"{auth}\"\n[[callers]]\nname = \"svc\"\n{caller}\npolicy = \"p\"\n\
             [policies.p]\nrpcs = [\"*\"]\n"
        );
        let policy = Policy::from_toml_str(&text, "policy.toml").expect("valid policy");
        Authenticator::new(Some(Arc::new(PolicyStore::new(policy))))
    }

    fn bearer() -> Authenticator {
        authenticator("bearer", &format!("token_sha256 = \"{TEST_TOKEN_SHA256}\""))
    }

    fn peer(identities: &[&str]) -> Peer {
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
            identities: identities.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn authenticate(
        authenticator: &Authenticator,
        authorization: &[&str],
        peer: &Peer,
    ) -> Result<CallerInfo, AuthFailure> {
        let values: Vec<HeaderValue> = authorization.iter().map(|v| v.parse().unwrap()).collect();
        authenticator.authenticate(values.iter(), peer)
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for value in ["Bearer tok", "bearer tok", "BEARER tok", "bEaReR  tok "] {
            assert_eq!(bearer_token(value), Some("tok"), "{value:?}");
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_refused() {
        for value in [
            "Basic tok",
            "Bearer",
            "Bearer ",
            "Bearertok",
            "tok",
            "",
            "Bearer   ",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn without_a_policy_file_everyone_is_anonymous_and_unrestricted() {
        let caller = authenticate(&Authenticator::new(None), &[], &peer(&[])).unwrap();
        assert_eq!(&*caller.name, "anonymous");
        assert!(caller.policy.is_none());
    }

    #[test]
    fn bearer_callers_are_named() {
        for value in ["Bearer test", "bearer test", "BEARER test"] {
            let caller = authenticate(&bearer(), &[value], &peer(&[])).unwrap();
            assert_eq!(&*caller.name, "svc");
            assert_eq!(caller.policy.as_ref().unwrap().caller_name(), "svc");
        }
    }

    #[test]
    fn bearer_refusals_say_why() {
        for (headers, expected) in [
            (&[][..], AuthFailure::MissingToken),
            (&["Basic dGVzdA=="][..], AuthFailure::MalformedToken),
            (&["Bearer nope"][..], AuthFailure::UnknownToken),
            (
                &["Bearer test", "Bearer test"][..],
                AuthFailure::AmbiguousToken,
            ),
            (
                &["Bearer nope", "Bearer test"][..],
                AuthFailure::AmbiguousToken,
            ),
        ] {
            let refused = authenticate(&bearer(), headers, &peer(&[])).unwrap_err();
            assert_eq!(refused, expected, "{headers:?}");
        }
        // Ambiguity is refused without a policy file too.
        let refused = authenticate(&Authenticator::new(None), &["a", "b"], &peer(&[])).unwrap_err();
        assert_eq!(refused, AuthFailure::AmbiguousToken);
    }

    #[test]
    fn mtls_callers_are_found_by_certificate_name() {
        let mtls = authenticator("mtls", "identity = \"recorder.prod.svc\"");
        let caller = authenticate(&mtls, &[], &peer(&["other", "recorder.prod.svc"])).unwrap();
        assert_eq!(&*caller.name, "svc");
        assert_eq!(
            authenticate(&mtls, &[], &peer(&["stranger"])).unwrap_err(),
            AuthFailure::UnknownCertificate
        );
        assert_eq!(
            authenticate(&mtls, &[], &peer(&[])).unwrap_err(),
            AuthFailure::MissingCertificate
        );
    }

    /// A policy in `mode` whose caller "sdk" has its own key, besides the mode's usual caller.
    fn keyed(mode: &str) -> Authenticator {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let secret =
            std::env::temp_dir().join(format!("egress-auth-test-{}-{n}", std::process::id()));
        std::fs::write(&secret, "sdk-secret").unwrap();
        let usual = match mode {
            "bearer" => format!("token_sha256 = \"{TEST_TOKEN_SHA256}\""),
            "mtls" => "identity = \"svc.prod\"".to_owned(),
            _ => String::new(),
        };
        let text = format!(
            "[auth]\nmode = \"{mode}\"\n[[callers]]\nname = \"usual\"\n{usual}\npolicy = \"p\"\n\
             [[callers]]\nname = \"sdk\"\napi_key = \"APIsdk\"\napi_secret_file = \"{}\"\n\
             policy = \"p\"\n[policies.p]\nrpcs = [\"*\"]\n",
            secret.display()
        );
        let policy = Policy::from_toml_str(&text, "policy.toml").expect("valid policy");
        let _ = std::fs::remove_file(&secret);
        Authenticator::new(Some(Arc::new(PolicyStore::new(policy))))
    }

    fn sdk_token(secret: &str, exp_from_now: i64, grants: egress_auth::VideoGrants) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = egress_auth::Claims {
            exp: now.saturating_add_signed(exp_from_now),
            iss: "APIsdk".into(),
            nbf: now - 10,
            video: grants,
            ..Default::default()
        };
        let token = egress_auth::sign_claims(&egress_auth::ApiSecret::new(secret), &claims);
        format!("Bearer {}", token.unwrap())
    }

    #[test]
    fn caller_keys_authenticate_in_every_mode() {
        let good = sdk_token("sdk-secret", 600, egress_auth::VideoGrants::room_record());
        for mode in ["bearer", "mtls", "none"] {
            let caller = authenticate(&keyed(mode), &[&good], &peer(&[])).expect(mode);
            assert_eq!(&*caller.name, "sdk", "{mode}");
            assert_eq!(caller.policy.unwrap().caller_name(), "sdk");
        }
        // The mode's usual callers are still who they were.
        let usual = authenticate(&keyed("bearer"), &["Bearer test"], &peer(&[])).unwrap();
        assert_eq!(&*usual.name, "usual");
        let usual = authenticate(&keyed("mtls"), &[], &peer(&["svc.prod"])).unwrap();
        assert_eq!(&*usual.name, "usual");
        let usual = authenticate(&keyed("none"), &[], &peer(&[])).unwrap();
        assert_eq!(&*usual.name, "usual");
    }

    #[test]
    fn caller_key_refusals_say_why() {
        let record = egress_auth::VideoGrants::room_record;
        for (token, expected) in [
            (
                sdk_token("wrong", 600, record()),
                AuthFailure::CallerTokenSignature,
            ),
            // LiveKit's minute of leeway, and a bit.
            (
                sdk_token("sdk-secret", -90, record()),
                AuthFailure::CallerTokenExpired,
            ),
            (
                sdk_token("sdk-secret", 600, egress_auth::VideoGrants::default()),
                AuthFailure::MissingGrant,
            ),
        ] {
            for mode in ["bearer", "mtls", "none"] {
                let refused = authenticate(&keyed(mode), &[&token], &peer(&[])).unwrap_err();
                assert_eq!(refused, expected, "{mode}");
            }
        }
        // Within the leeway, still good.
        let late = sdk_token("sdk-secret", -30, record());
        assert!(authenticate(&keyed("bearer"), &[&late], &peer(&[])).is_ok());
    }

    #[test]
    fn mode_none_uses_the_anonymous_caller_of_the_file() {
        let none = authenticator("none", "");
        let caller = authenticate(&none, &[], &peer(&[])).unwrap();
        assert_eq!(&*caller.name, "svc");
        assert!(caller.policy.is_some());
    }
}
