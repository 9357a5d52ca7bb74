//! Hot reload of the policy file (with the caller secret files it names) and the API secret
//! file, on SIGHUP and when a file changes.
//!
//! A reload that fails keeps what is in force and logs why: a typo in a policy edit must not
//! take the gateway down or open it up. In-flight calls keep the policy they started with
//! (the store swaps an `Arc`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use egress_auth::{Credentials, TokenCache};
use egress_policy::PolicyStore;

/// How often watched files are checked for changes (cheap: one `stat` each).
const POLL: Duration = Duration::from_secs(2);

/// What to reload.
#[derive(Debug, Default)]
pub struct Reloader {
    /// The policy file and the store serving it.
    pub policy: Option<(PathBuf, Arc<PolicyStore>)>,
    /// The secret file, the API key given on the command line (if any), and the token
    /// cache to rotate.
    pub secret: Option<(PathBuf, Option<String>, Arc<TokenCache>)>,
}

/// A file's identity for change detection: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// The stamps of a policy file and of the caller secret files its policy in force names:
/// a rotated caller secret reloads the policy as an edit of the file does.
fn policy_stamps(path: &PathBuf, store: &PolicyStore) -> Vec<Stamp> {
    let policy = store.current();
    let secrets = policy
        .callers()
        .iter()
        .filter_map(|caller| caller.key()?.secret_file.as_ref());
    std::iter::once(stamp(path))
        .chain(secrets.map(stamp))
        .collect()
}

impl Reloader {
    /// Runs until the task is dropped.
    pub async fn run(self) {
        if self.policy.is_none() && self.secret.is_none() {
            return;
        }
        let mut hangup = hangup_signal();
        let mut policy_stamp = self
            .policy
            .as_ref()
            .map(|(path, store)| policy_stamps(path, store));
        let mut secret_stamp = self.secret.as_ref().and_then(|(p, _, _)| stamp(p));
        loop {
            let forced = tokio::select! {
                () = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading policy and secret files");
                    true
                }
                () = tokio::time::sleep(POLL) => false,
            };
            if let Some((path, store)) = &self.policy {
                let now = Some(policy_stamps(path, store));
                if forced || now != policy_stamp {
                    match store.reload_from(path) {
                        Ok(outcome) => {
                            tracing::info!(path = %path.display(), ?outcome, "policy reloaded")
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "policy reload failed; keeping the policy in force")
                        }
                    }
                    // After the reload: the files the policy now in force names.
                    policy_stamp = Some(policy_stamps(path, store));
                }
            }
            if let Some((path, key, tokens)) = &self.secret {
                let now = stamp(path);
                if forced || now != secret_stamp {
                    secret_stamp = now;
                    match Credentials::from_secret_file(path, key.as_deref()) {
                        Ok(credentials) => {
                            tracing::info!(path = %path.display(), api_key = %credentials.api_key, "API secret reloaded");
                            tokens.rotate(credentials);
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "secret reload failed; keeping the secret in force")
                        }
                    }
                }
            }
        }
    }
}

/// SIGHUP as a stream of unit events; never fires where signals are unavailable.
struct Hangup(Option<tokio::signal::unix::Signal>);

impl Hangup {
    async fn recv(&mut self) {
        match &mut self.0 {
            Some(signal) => {
                if signal.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

fn hangup_signal() -> Hangup {
    Hangup(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok())
}
