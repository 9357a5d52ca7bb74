//! [`Policy`]: a parsed, validated policy file, and caller authentication.

use std::path::Path;

use crate::caller::{AuthMode, Caller};
use crate::error::PolicyError;
use crate::file;
use crate::token::{find_constant_time, hash_token, sha256};

/// A parsed and validated policy file. Immutable; swap whole policies with
/// [`PolicyStore`](crate::PolicyStore) to reload.
///
/// # Example
///
/// ```
/// use egress_policy::{AuthMode, Policy, hash_token};
///
/// let text = format!(r#"
/// [auth]
/// mode = "bearer"
///
/// [[callers]]
/// name = "recorder-service"
/// token_sha256 = "{}"
/// policy = "recording"
///
/// [policies.recording]
/// rpcs = ["StartRoomCompositeEgress", "StopEgress", "ListEgress"]
/// rooms = ["team-*", "standup"]
/// "#, hash_token("s3cret-token"));
///
/// let policy = Policy::from_toml_str(&text, "policy.toml")?;
/// assert_eq!(policy.auth_mode(), AuthMode::Bearer);
/// let caller = policy.authenticate_bearer("s3cret-token").unwrap();
/// assert_eq!(caller.name, "recorder-service");
/// assert!(policy.authenticate_bearer("wrong").is_none());
/// # Ok::<(), egress_policy::PolicyError>(())
/// ```
#[derive(Debug)]
pub struct Policy {
    source_name: String,
    fingerprint: String,
    auth_mode: AuthMode,
    callers: Vec<Caller>,
    policy_count: usize,
}

impl Policy {
    /// Parses and validates a policy from TOML text. `source_name` (usually
    /// the file's path) prefixes error messages: `policy.toml:12:5: …`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Invalid`] naming the line and column of the first
    /// problem in the file.
    pub fn from_toml_str(text: &str, source_name: impl AsRef<str>) -> Result<Self, PolicyError> {
        let source_name = source_name.as_ref();
        let parsed = file::parse(text, source_name)?;
        Ok(Self {
            source_name: source_name.to_owned(),
            fingerprint: fingerprint(text, &parsed.callers),
            auth_mode: parsed.auth_mode,
            callers: parsed.callers,
            policy_count: parsed.policy_count,
        })
    }

    /// Reads and parses the policy file at `path`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Read`] when the file cannot be read (or is not
    /// UTF-8), otherwise as [`from_toml_str`](Self::from_toml_str).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| PolicyError::Read {
            source_name: source_name.clone(),
            error,
        })?;
        Self::from_toml_str(&text, source_name)
    }

    /// How callers authenticate.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth_mode
    }

    /// The name the policy was loaded under (its path, for files).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Hex SHA-256 of the file's text (and of the callers' API secrets it names, so that a
    /// rotated secret is a new policy): tells reloads apart in logs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Every caller, in file order.
    pub fn callers(&self) -> &[Caller] {
        &self.callers
    }

    /// The caller named `name`.
    pub fn caller(&self, name: &str) -> Option<&Caller> {
        self.callers.iter().find(|c| c.name == name)
    }

    /// How many `[policies.*]` tables the file defines.
    pub fn policy_count(&self) -> usize {
        self.policy_count
    }

    /// The caller whose `token_sha256` is the SHA-256 of `token` (the
    /// bearer token exactly as presented, without the `Bearer ` prefix).
    ///
    /// The presented token's hash is compared with every caller's hash in
    /// constant time ([`subtle::ConstantTimeEq`]), without stopping at the
    /// first match or mismatch. The token is neither stored nor logged.
    ///
    /// Returns `None` for unknown tokens and whenever the auth mode is not
    /// [`AuthMode::Bearer`].
    pub fn authenticate_bearer(&self, token: &str) -> Option<&Caller> {
        if self.auth_mode != AuthMode::Bearer {
            return None;
        }
        let digest = sha256(token);
        let hashes = self.callers.iter().map(|c| c.token_sha256.as_ref());
        find_constant_time(hashes, &digest).and_then(|i| self.callers.get(i))
    }

    /// The caller whose `identity` is one of `identities` (the client
    /// certificate's subject alternative names and common name, as the
    /// proxy extracted them). Comparison is exact and case-sensitive.
    ///
    /// Returns `None` when no caller matches, when the certificate matches
    /// more than one caller (ambiguous, so refused), and whenever the auth
    /// mode is not [`AuthMode::Mtls`].
    ///
    /// ```
    /// use egress_policy::Policy;
    ///
    /// let policy = Policy::from_toml_str(r#"
    ///     [auth]
    ///     mode = "mtls"
    ///     [[callers]]
    ///     name = "recorder"
    ///     identity = "recorder.prod.svc"
    ///     policy = "p"
    ///     [policies.p]
    ///     rpcs = ["*"]
    /// "#, "policy.toml")?;
    /// let sans = vec!["pod-7.prod.svc".to_owned(), "recorder.prod.svc".to_owned()];
    /// assert_eq!(policy.authenticate_identity(&sans).unwrap().name, "recorder");
    /// assert!(policy.authenticate_identity(&["other.svc".to_owned()]).is_none());
    /// # Ok::<(), egress_policy::PolicyError>(())
    /// ```
    pub fn authenticate_identity(&self, identities: &[String]) -> Option<&Caller> {
        if self.auth_mode != AuthMode::Mtls {
            return None;
        }
        let mut matches = self.callers.iter().filter(|c| {
            c.identity()
                .is_some_and(|id| identities.iter().any(|presented| presented == id))
        });
        let first = matches.next()?;
        if let Some(second) = matches.next() {
            tracing::warn!(
                first = %first.name,
                second = %second.name,
                "client certificate matches several callers; refusing it"
            );
            return None;
        }
        Some(first)
    }

    /// The caller every request without a caller key is treated as when the auth mode is
    /// [`AuthMode::None`] (the file's only caller without an `api_key`); `None` in other
    /// modes.
    pub fn anonymous_caller(&self) -> Option<&Caller> {
        match self.auth_mode {
            AuthMode::None => self.callers.iter().find(|c| c.key().is_none()),
            AuthMode::Bearer | AuthMode::Mtls => None,
        }
    }

    /// Whether any caller has its own API key (`api_key`).
    pub fn has_caller_keys(&self) -> bool {
        self.callers.iter().any(|c| c.key().is_some())
    }

    /// The caller whose `api_key` is `api_key` (a token's `iss`), in any auth mode.
    ///
    /// ```
    /// use egress_policy::Policy;
    ///
    /// let dir = std::env::temp_dir().join(format!("egress-policy-key-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let secret = dir.join("recorder.secret");
    /// std::fs::write(&secret, "recorder-secret\n").unwrap();
    /// let policy = Policy::from_toml_str(&format!(r#"
    ///     [auth]
    ///     mode = "bearer"
    ///     [[callers]]
    ///     name = "recorder"
    ///     api_key = "APIrecorder"
    ///     api_secret_file = "{}"
    ///     policy = "p"
    ///     [policies.p]
    ///     rpcs = ["ListEgress"]
    /// "#, secret.display()), "policy.toml")?;
    /// let caller = policy.caller_by_api_key("APIrecorder").unwrap();
    /// assert_eq!(caller.name, "recorder");
    /// assert_eq!(caller.key().unwrap().api_secret.expose(), "recorder-secret");
    /// assert!(policy.caller_by_api_key("APIother").is_none());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), egress_policy::PolicyError>(())
    /// ```
    pub fn caller_by_api_key(&self, api_key: &str) -> Option<&Caller> {
        self.callers
            .iter()
            .find(|c| c.key().is_some_and(|k| k.api_key == api_key))
    }

    /// Refuses the policy if a caller's `api_key` is `reserved` (the gateway's own LiveKit
    /// API key: a caller holding it could talk to LiveKit directly, and its tokens would
    /// not tell the two apart).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Invalid`] pointing at that `api_key`.
    pub fn refuse_api_key(&self, reserved: &str) -> Result<(), PolicyError> {
        let Some(caller) = self.caller_by_api_key(reserved) else {
            return Ok(());
        };
        let (line, column) = caller.key().map_or((1, 1), |k| k.at);
        Err(PolicyError::Invalid {
            source_name: self.source_name.clone(),
            line,
            column,
            message: format!(
                "the api_key of caller \"{}\" is the gateway's own LiveKit API key; give the \
                 caller a key of its own",
                caller.name
            ),
        })
    }
}

/// The fingerprint of a policy read from `text` whose callers are `callers`: the text's
/// hash, and with caller keys, a hash over it and every key's secret hash too.
fn fingerprint(text: &str, callers: &[Caller]) -> String {
    let keys: Vec<String> = callers
        .iter()
        .filter_map(Caller::key)
        .map(|k| format!("{}={}", k.api_key, hash_token(k.api_secret.expose())))
        .collect();
    if keys.is_empty() {
        hash_token(text)
    } else {
        hash_token(&format!("{}\n{}", hash_token(text), keys.join("\n")))
    }
}
