//! `EgressClient::new` reads `LIVEKIT_API_KEY` / `LIVEKIT_API_SECRET`.
//!
//! Changing the process environment is `unsafe` (and racy across test threads), so the test
//! re-runs itself as a child process with the environment it needs.

mod common;

use std::process::Command;

use common::*;
use egress_client::{ClientError, EgressClient, ListOptions};

const MODE: &str = "EGRESS_CLIENT_TEST_ENV_MODE";
const TEST_NAME: &str = "new_reads_credentials_from_the_environment";

fn run_child(mode: &str, configure: impl FnOnce(&mut Command)) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(MODE, mode);
    configure(&mut command);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "child {mode} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn new_reads_credentials_from_the_environment() {
    match std::env::var(MODE).ok().as_deref() {
        None => {
            run_child("set", |c| {
                c.env("LIVEKIT_API_KEY", KEY)
                    .env("LIVEKIT_API_SECRET", SECRET);
            });
            run_child("unset", |c| {
                c.env_remove("LIVEKIT_API_KEY")
                    .env_remove("LIVEKIT_API_SECRET");
            });
            run_child("no-secret", |c| {
                c.env("LIVEKIT_API_KEY", KEY)
                    .env("LIVEKIT_API_SECRET", "  ");
            });
        }
        Some("set") => {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let sim = spawn(builder());
                let client = EgressClient::new(&sim.url()).unwrap();
                client.list_egress(ListOptions::all()).await.unwrap();
                last(&sim, "ListEgress");
            });
        }
        Some("unset") => {
            let err = EgressClient::new("http://127.0.0.1:7880").unwrap_err();
            assert!(
                matches!(
                    err,
                    ClientError::Auth(egress_auth::AuthError::MissingEnv {
                        name: "LIVEKIT_API_KEY"
                    })
                ),
                "{err:?}"
            );
        }
        Some("no-secret") => {
            let err = EgressClient::new("http://127.0.0.1:7880").unwrap_err();
            assert!(
                matches!(
                    err,
                    ClientError::Auth(egress_auth::AuthError::MissingEnv {
                        name: "LIVEKIT_API_SECRET"
                    })
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains("LIVEKIT_API_SECRET"));
        }
        Some(other) => panic!("unknown mode {other}"),
    }
}
