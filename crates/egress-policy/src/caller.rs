//! Who may call: the authentication mode and the callers of a policy file. Apart from
//! [`Policy`](crate::Policy) so that the file parser and the policy both use these types
//! without importing each other.

use std::fmt;
use std::sync::Arc;

use egress_auth::ApiSecret;
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

egress_core::display_as_str!(AuthMode);

/// A caller's own LiveKit-style API key (`api_key` in the file) and its secret (read from
/// `api_secret_file` or `api_secret_env`): its SDK signs access tokens with them.
#[derive(Clone, Debug)]
pub struct CallerKey {
    /// The key: the `iss` of the caller's tokens.
    pub api_key: String,
    /// The secret its tokens are signed with.
    pub api_secret: ApiSecret,
    /// The file the secret was read from (`api_secret_file`), if it came from one: a
    /// change to it is a reason to reload the policy.
    pub secret_file: Option<std::path::PathBuf>,
    /// Where `api_key` is in the file (1-based line, column), for later refusals.
    pub(crate) at: (usize, usize),
}

/// How a `[[callers]]` entry proves who it is; any of them may be absent.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) token_sha256: Option<[u8; 32]>,
    pub(crate) identity: Option<String>,
    pub(crate) key: Option<CallerKey>,
}

/// One authenticated caller (a `[[callers]]` entry).
///
/// `Debug` shows whether a token hash is set, not the hash, and the API key but never its
/// secret.
#[derive(Clone)]
pub struct Caller {
    /// The caller's `name`, for logs, metrics and denial messages.
    pub name: String,
    /// What the caller may do.
    pub policy: Arc<CallerPolicy>,
    pub(crate) token_sha256: Option<[u8; 32]>,
    identity: Option<String>,
    key: Option<CallerKey>,
}

impl Caller {
    pub(crate) fn new(name: String, rules: Arc<Rules>, credentials: Credentials) -> Self {
        Self {
            policy: Arc::new(CallerPolicy::new(name.clone(), rules)),
            name,
            token_sha256: credentials.token_sha256,
            identity: credentials.identity,
            key: credentials.key,
        }
    }

    /// The certificate identity (`identity` in the file), if any.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The caller's own API key and secret (`api_key` in the file), if any.
    pub fn key(&self) -> Option<&CallerKey> {
        self.key.as_ref()
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("policy", &self.policy.policy_name())
            .field("has_token_sha256", &self.token_sha256.is_some())
            .field("identity", &self.identity)
            .field("api_key", &self.key.as_ref().map(|k| &k.api_key))
            .finish()
    }
}
