//! [`PolicyStore`]: the current policy, swappable at run time.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::error::PolicyError;
use crate::policy::Policy;

/// What a successful [`PolicyStore::reload_from`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// The file is byte-for-byte the one already in effect; nothing changed.
    Unchanged {
        /// Fingerprint of the policy in effect.
        fingerprint: String,
    },
    /// The new policy is now in effect for every request that calls
    /// [`PolicyStore::current`] from now on.
    Replaced {
        /// Fingerprint of the policy that was replaced.
        previous_fingerprint: String,
        /// Fingerprint of the policy now in effect.
        fingerprint: String,
        /// Number of callers in the new policy.
        callers: usize,
    },
}

impl fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadOutcome::Unchanged { fingerprint } => {
                write!(f, "policy unchanged ({})", short(fingerprint))
            }
            ReloadOutcome::Replaced {
                previous_fingerprint,
                fingerprint,
                callers,
            } => write!(
                f,
                "policy replaced ({} -> {}, {callers} callers)",
                short(previous_fingerprint),
                short(fingerprint)
            ),
        }
    }
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// Holds the policy in effect and swaps it atomically on reload.
///
/// Readers on the hot path call [`current`](Self::current) (lock-free) and
/// keep the returned `Arc` for the whole request, so a reload never changes
/// the rules in the middle of one. A failed reload keeps the old policy.
///
/// # Example
///
/// ```
/// use egress_policy::{Policy, PolicyStore, ReloadOutcome};
///
/// let dir = std::env::temp_dir().join(format!("egress-policy-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("policy.toml");
/// let good = "[auth]\nmode = \"none\"\n[[callers]]\nname = \"all\"\npolicy = \"p\"\n[policies.p]\nrpcs = [\"ListEgress\"]\n";
/// std::fs::write(&path, good).unwrap();
///
/// let store = PolicyStore::load(&path)?;
/// let before = store.current();
///
/// std::fs::write(&path, "[auth]\nmode = \"bogus\"\n").unwrap();
/// let err = store.reload_from(&path).unwrap_err();
/// assert!(err.to_string().contains(":2:8: unknown variant `bogus`"));
/// // The old policy is still in effect.
/// assert_eq!(store.current().fingerprint(), before.fingerprint());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), egress_policy::PolicyError>(())
/// ```
pub struct PolicyStore {
    current: ArcSwap<Policy>,
    /// An API key no caller may have (the gateway's own; see [`Policy::refuse_api_key`]).
    reserved_api_key: Option<String>,
}

impl PolicyStore {
    /// A store holding `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            current: ArcSwap::from_pointee(policy),
            reserved_api_key: None,
        }
    }

    /// Refuses, now and on every reload, a policy giving a caller the API key `key` (the
    /// gateway's own LiveKit key).
    ///
    /// # Errors
    ///
    /// As [`Policy::refuse_api_key`] for the policy in effect.
    pub fn reserving_api_key(mut self, key: impl Into<String>) -> Result<Self, PolicyError> {
        let key = key.into();
        self.current.load().refuse_api_key(&key)?;
        self.reserved_api_key = Some(key);
        Ok(self)
    }

    /// A store holding the policy loaded from `path`.
    ///
    /// # Errors
    ///
    /// As [`Policy::load`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        Policy::load(path).map(Self::new)
    }

    /// The policy in effect. Cheap and lock-free; hold the `Arc` for the
    /// duration of a request.
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Re-reads `path` and, if it is valid, makes it the policy in effect.
    ///
    /// # Errors
    ///
    /// As [`Policy::load`]; the policy in effect is left untouched.
    pub fn reload_from(&self, path: impl AsRef<Path>) -> Result<ReloadOutcome, PolicyError> {
        let policy = Policy::load(path)?;
        if let Some(key) = &self.reserved_api_key {
            policy.refuse_api_key(key)?;
        }
        Ok(self.replace(policy))
    }

    /// Makes `policy` the one in effect (unless it is identical to it).
    pub fn replace(&self, policy: Policy) -> ReloadOutcome {
        let previous = self.current.load();
        if previous.fingerprint() == policy.fingerprint()
            && previous.source_name() == policy.source_name()
        {
            return ReloadOutcome::Unchanged {
                fingerprint: policy.fingerprint().to_owned(),
            };
        }
        let outcome = ReloadOutcome::Replaced {
            previous_fingerprint: previous.fingerprint().to_owned(),
            fingerprint: policy.fingerprint().to_owned(),
            callers: policy.callers().len(),
        };
        self.current.store(Arc::new(policy));
        outcome
    }
}

impl fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("PolicyStore")
            .field("source_name", &current.source_name())
            .field("fingerprint", &current.fingerprint())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_show_fingerprints_cut_to_twelve_digits() {
        let unchanged = ReloadOutcome::Unchanged {
            fingerprint: "0123456789abcdef0123".into(),
        };
        assert_eq!(unchanged.to_string(), "policy unchanged (0123456789ab)");
        let replaced = ReloadOutcome::Replaced {
            previous_fingerprint: "0123456789abcdef".into(),
            fingerprint: "fedcba9876543210".into(),
            callers: 3,
        };
        assert_eq!(
            replaced.to_string(),
            "policy replaced (0123456789ab -> fedcba987654, 3 callers)"
        );
        // Shorter than twelve: shown whole.
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn debug_names_the_source_and_fingerprint_only() {
        let policy = Policy::from_toml_str("[auth]\nmode = \"bearer\"\n", "inline.toml").unwrap();
        let fingerprint = policy.fingerprint().to_owned();
        let store = PolicyStore::new(policy);
        assert_eq!(
            format!("{store:?}"),
            format!(
                r#"PolicyStore {{ source_name: "inline.toml", fingerprint: "{fingerprint}" }}"#
            )
        );
    }
}
