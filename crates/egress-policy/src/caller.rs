//! Who may call: the authentication mode and the callers of a policy file. Apart from
//! [`Policy`](crate::Policy) so that the file parser and the policy both use these types
//! without importing each other.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::check::{CallerPolicy, Rules};

/// How callers prove who they are (`[auth] mode` in the file).
///
/// The proxy implements the transport part (reading the `authorization`
/// header, terminating TLS with client certificates); this crate maps the
/// result to a [`Caller`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `"none"`: no authentication. The file has exactly one caller, whose
    /// policy applies to every request ([`Policy::anonymous_caller`]).
    None,
    /// `"bearer"`: `authorization: Bearer <token>`, matched against each
    /// caller's `token_sha256` ([`Policy::authenticate_bearer`]).
    Bearer,
    /// `"mtls"`: a client certificate, whose SANs/CN are matched against each
    /// caller's `identity` ([`Policy::authenticate_identity`]).
    Mtls,
}

impl AuthMode {
    /// The mode as written in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Bearer => "bearer",
            AuthMode::Mtls => "mtls",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One authenticated caller (a `[[callers]]` entry).
///
/// `Debug` shows whether a token hash is set, not the hash.
#[derive(Clone)]
pub struct Caller {
    /// The caller's `name`, for logs, metrics and denial messages.
    pub name: String,
    /// What the caller may do.
    pub policy: Arc<CallerPolicy>,
    pub(crate) token_sha256: Option<[u8; 32]>,
    identity: Option<String>,
}

impl Caller {
    pub(crate) fn new(
        name: String,
        rules: Arc<Rules>,
        token_sha256: Option<[u8; 32]>,
        identity: Option<String>,
    ) -> Self {
        Self {
            policy: Arc::new(CallerPolicy::new(name.clone(), rules)),
            name,
            token_sha256,
            identity,
        }
    }

    /// The certificate identity (`identity` in the file), if any.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("policy", &self.policy.policy_name())
            .field("has_token_sha256", &self.token_sha256.is_some())
            .field("identity", &self.identity)
            .finish()
    }
}
