//! Hot reload of the policy file and the API secret file, on SIGHUP and when a file changes.
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

impl Reloader {
    /// Runs until the task is dropped.
    pub async fn run(self) {
        if self.policy.is_none() && self.secret.is_none() {
            return;
        }
        let mut hangup = hangup_signal();
        let mut policy_stamp = self.policy.as_ref().and_then(|(p, _)| stamp(p));
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
                let now = stamp(path);
                if forced || now != policy_stamp {
                    policy_stamp = now;
                    match store.reload_from(path) {
                        Ok(outcome) => {
                            tracing::info!(path = %path.display(), ?outcome, "policy reloaded")
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "policy reload failed; keeping the policy in force")
                        }
                    }
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
