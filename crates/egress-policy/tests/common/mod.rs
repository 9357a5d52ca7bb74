//! The policy file the matrix and redaction tests share.

#![allow(dead_code)]

use egress_core::{RequestView, Rpc, decode_view};
use egress_policy::{Caller, Denial, Policy, hash_token};
use prost::Message;

/// Callers and their tokens.
pub const RECORDER: &str = "recorder-token";
pub const ADMIN: &str = "admin-token";
pub const LISTER: &str = "lister-token";
pub const BUCKETS_ONLY: &str = "buckets-only-token";

pub fn policy() -> Policy {
    let text = format!(
        r#"
[auth]
mode = "bearer"

[[callers]]
name = "recorder-service"
token_sha256 = "{recorder}"
policy = "recording"

[[callers]]
name = "admin"
token_sha256 = "{admin}"
policy = "everything"

[[callers]]
name = "lister"
token_sha256 = "{lister}"
policy = "list-only"

[[callers]]
name = "archiver"
token_sha256 = "{buckets}"
policy = "buckets-only"

[policies.recording]
rpcs = ["*"]
rooms = ["team-*", "standup"]
stream_urls = ["rtmps://*.live.example.com/*", "wss://transcribe.example.com/*"]
file_buckets = ["recordings-prod", "media-*", "@default"]
file_prefixes = ["recordings/"]
storage_providers = ["s3", "gcp", "azure"]
storage_endpoints = ["https://minio.example.com"]
webhook_urls = ["https://hooks.example.com/*"]
web_urls = ["https://*.example.com/*"]

[policies.everything]
rpcs = ["*"]

[policies.list-only]
rpcs = ["ListEgress"]

[policies.buckets-only]
rpcs = ["StartRoomCompositeEgress"]
file_buckets = ["recordings-prod"]
"#,
        recorder = hash_token(RECORDER),
        admin = hash_token(ADMIN),
        lister = hash_token(LISTER),
        buckets = hash_token(BUCKETS_ONLY),
    );
    Policy::from_toml_str(&text, "policy.toml").expect("the test policy is valid")
}

pub fn caller<'p>(policy: &'p Policy, token: &str) -> &'p Caller {
    policy.authenticate_bearer(token).expect("known token")
}

/// Encodes `message` and decodes it the way the proxy does.
pub fn view_of<M: Message>(rpc: Rpc, message: &M) -> RequestView {
    decode_view(rpc, &message.encode_to_vec()).expect("valid request")
}

/// The denial, asserting that the check failed.
pub fn denial(caller: &Caller, view: &RequestView) -> Denial {
    caller
        .policy
        .check(view)
        .expect_err("the request should be denied")
}
