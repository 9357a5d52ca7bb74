//! Caller authentication: who is calling, before anything else looks at the call.
//!
//! The mode comes from the policy file (`[auth] mode`): `none`, `bearer` (an
//! `authorization: Bearer <token>` whose SHA-256 is listed for a caller) or `mtls` (the
//! verified client certificate's names). Without a policy file every caller is anonymous and
//! may do anything; configuration allows that only on a loopback listener unless the
//! operator says `--allow-unauthenticated`.
//!
//! Only `livekit.Egress` calls are authenticated (the server wraps that route alone in this
//! layer): health and reflection stay open for probes and tooling. The caller's
//! `authorization` header is removed here, so nothing downstream can forward it.

use std::sync::Arc;
use std::task::{Context, Poll};

use egress_policy::{AuthMode, CallerPolicy, PolicyStore};
use futures_util::future::{Either, Ready, ready};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::tls::Peer;

/// Who a call is from, as established by [`CallerAuth`]; in the request's extensions.
#[derive(Debug, Clone)]
pub struct CallerInfo {
    /// Caller name for logs and metrics (`anonymous` without a policy file).
    pub name: Arc<str>,
    /// What the caller may do; `None` means unrestricted (no policy file).
    pub policy: Option<Arc<CallerPolicy>>,
}

/// Layer for [`CallerAuth`].
#[derive(Debug, Clone)]
pub struct CallerAuthLayer {
    policies: Option<Arc<PolicyStore>>,
    anonymous: CallerInfo,
}

impl CallerAuthLayer {
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
}

impl<S> Layer<S> for CallerAuthLayer {
    type Service = CallerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// Establishes a [`CallerInfo`] or answers UNAUTHENTICATED.
#[derive(Debug, Clone)]
pub struct CallerAuth<S> {
    inner: S,
    layer: CallerAuthLayer,
}

impl<S, B> Service<http::Request<B>> for CallerAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // Two credentials are ambiguous: which one a component reads first is an accident
        // of its code, so refuse rather than pick one.
        let presented = match req
            .headers()
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .count()
        {
            0 | 1 => Ok(req.headers_mut().remove(http::header::AUTHORIZATION)),
            _ => Err(Status::unauthenticated(
                "more than one authorization header; send exactly one",
            )),
        };
        let identified = presented.and_then(|presented| {
            self.layer
                .identify(presented.as_ref(), req.extensions().get::<Peer>())
        });
        match identified {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Either::Left(self.inner.call(req))
            }
            Err(status) => Either::Right(ready(Ok(status.into_http()))),
        }
    }
}

impl CallerAuthLayer {
    fn identify(
        &self,
        authorization: Option<&http::HeaderValue>,
        peer: Option<&Peer>,
    ) -> Result<CallerInfo, Status> {
        let Some(store) = &self.policies else {
            return Ok(self.anonymous.clone());
        };
        let policy = store.current();
        let caller = match policy.auth_mode() {
            AuthMode::None => policy.anonymous_caller(),
            AuthMode::Bearer => {
                let token = authorization
                    .ok_or_else(|| {
                        Status::unauthenticated(
                            "missing credentials: send authorization: Bearer <token>",
                        )
                    })?
                    .to_str()
                    .ok()
                    .and_then(bearer_token)
                    .ok_or_else(|| {
                        Status::unauthenticated(
                            "malformed authorization header: expected Bearer <token>",
                        )
                    })?;
                Some(
                    policy
                        .authenticate_bearer(token)
                        .ok_or_else(|| Status::unauthenticated("invalid bearer token"))?,
                )
            }
            AuthMode::Mtls => {
                let identities = peer.map(|p| &p.identities[..]).unwrap_or_default();
                if identities.is_empty() {
                    return Err(Status::unauthenticated(
                        "missing credentials: a client certificate is required",
                    ));
                }
                Some(policy.authenticate_identity(identities).ok_or_else(|| {
                    Status::unauthenticated("client certificate names no known caller")
                })?)
            }
        };
        let caller = caller.ok_or_else(|| Status::unauthenticated("no caller is configured"))?;
        Ok(CallerInfo {
            name: Arc::from(caller.name.as_str()),
            policy: Some(Arc::clone(&caller.policy)),
        })
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
    use std::sync::Arc;

    use egress_policy::{Policy, PolicyStore};
    use tower::{Layer, Service, ServiceExt};

    use super::{CallerAuthLayer, CallerInfo, bearer_token};
    use crate::tls::Peer;

    /// sha256("test").
    const TEST_TOKEN_SHA256: &str =
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn store(auth: &str, caller: &str) -> Option<Arc<PolicyStore>> {
        let text = format!(
            "[auth]\nmode = \"{auth}\"\n[[callers]]\nname = \"svc\"\n{caller}\npolicy = \"p\"\n\
             [policies.p]\nrpcs = [\"*\"]\n"
        );
        let policy = Policy::from_toml_str(&text, "policy.toml").expect("valid policy");
        Some(Arc::new(PolicyStore::new(policy)))
    }

    fn peer(identities: &[&str]) -> Peer {
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
            identities: identities.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Runs one request through the layer: the caller it established (and whether the
    /// inner service still saw an `authorization` header), or the refusal's gRPC message.
    async fn authenticate(
        layer: &CallerAuthLayer,
        authorization: &[&str],
        peer: Option<Peer>,
    ) -> Result<(CallerInfo, bool), String> {
        let inner = tower::service_fn(|req: http::Request<()>| async move {
            let caller = req.extensions().get::<CallerInfo>().cloned().unwrap();
            let forwarded = req.headers().contains_key(http::header::AUTHORIZATION);
            let mut response = http::Response::new(tonic::body::Body::empty());
            response.extensions_mut().insert((caller, forwarded));
            Ok::<_, std::convert::Infallible>(response)
        });
        let mut request = http::Request::new(());
        for value in authorization {
            request
                .headers_mut()
                .append(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        let response = layer
            .layer(inner)
            .ready()
            .await
            .unwrap()
            .call(request)
            .await
            .unwrap();
        match response.extensions().get::<(CallerInfo, bool)>() {
            Some(seen) => Ok(seen.clone()),
            None => {
                let status = tonic::Status::from_header_map(response.headers()).unwrap();
                assert_eq!(status.code(), tonic::Code::Unauthenticated);
                Err(status.message().to_owned())
            }
        }
    }

    #[tokio::test]
    async fn without_a_policy_file_everyone_is_anonymous_and_unrestricted() {
        let layer = CallerAuthLayer::new(None);
        let (caller, _) = authenticate(&layer, &[], None).await.unwrap();
        assert_eq!(&*caller.name, "anonymous");
        assert!(caller.policy.is_none());
    }

    #[tokio::test]
    async fn bearer_callers_are_named_and_their_token_is_not_forwarded() {
        let layer = CallerAuthLayer::new(store(
            "bearer",
            &format!("token_sha256 = \"{TEST_TOKEN_SHA256}\""),
        ));
        let (caller, forwarded) = authenticate(&layer, &["Bearer test"], None).await.unwrap();
        assert_eq!(&*caller.name, "svc");
        assert_eq!(caller.policy.as_ref().unwrap().caller_name(), "svc");
        assert!(
            !forwarded,
            "the caller's authorization must not travel further"
        );
    }

    #[tokio::test]
    async fn bearer_refusals_say_why() {
        let layer = CallerAuthLayer::new(store(
            "bearer",
            &format!("token_sha256 = \"{TEST_TOKEN_SHA256}\""),
        ));
        for (headers, expected) in [
            (&[][..], "missing credentials"),
            (&["Basic dGVzdA=="][..], "malformed authorization header"),
            (&["Bearer nope"][..], "invalid bearer token"),
            (
                &["Bearer test", "Bearer test"][..],
                "more than one authorization header",
            ),
            (
                &["Bearer nope", "Bearer test"][..],
                "more than one authorization header",
            ),
        ] {
            let message = authenticate(&layer, headers, None).await.unwrap_err();
            assert!(message.contains(expected), "{headers:?}: {message}");
        }
    }

    #[tokio::test]
    async fn mtls_callers_are_found_by_certificate_name() {
        let layer = CallerAuthLayer::new(store("mtls", "identity = \"recorder.prod.svc\""));
        let (caller, _) = authenticate(&layer, &[], Some(peer(&["other", "recorder.prod.svc"])))
            .await
            .unwrap();
        assert_eq!(&*caller.name, "svc");
        let message = authenticate(&layer, &[], Some(peer(&["stranger"])))
            .await
            .unwrap_err();
        assert!(message.contains("names no known caller"), "{message}");
        for missing in [None, Some(peer(&[]))] {
            let message = authenticate(&layer, &[], missing).await.unwrap_err();
            assert!(
                message.contains("client certificate is required"),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn mode_none_uses_the_anonymous_caller_of_the_file() {
        let layer = CallerAuthLayer::new(store("none", ""));
        let (caller, _) = authenticate(&layer, &[], None).await.unwrap();
        assert_eq!(&*caller.name, "svc");
        assert!(caller.policy.is_some());
        // Credentials sent anyway are still never forwarded.
        let (_, forwarded) = authenticate(&layer, &["Bearer x"], None).await.unwrap();
        assert!(!forwarded);
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
}
