//! Parsing: the happy path, and every validation error with its exact
//! line:column.

use egress_core::Rpc;
use egress_policy::{AuthMode, Policy, PolicyError, hash_token};

/// Joins lines with `\n`, so line numbers in the tests are indices + 1.
fn lines(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

fn error(text: &str) -> String {
    Policy::from_toml_str(text, "policy.toml")
        .expect_err("the policy should be rejected")
        .to_string()
}

const HASH_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"

/// The complete example from the README.
const FULL: &str = r#"
[auth]
mode = "bearer"

[[callers]]
name = "recorder-service"
token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
policy = "recording"

[[callers]]
name = "ops"
token_sha256 = "60303AE22B998861BCE3B28F33EEC1BE758A213C86C93C076DBE9F558C11C752"
identity = "ops.prod.svc"
policy = "admin"

[policies.recording]
rpcs = ["StartRoomCompositeEgress", "StopEgress", "ListEgress"]
rooms = ["team-*", "standup"]
stream_urls = ["rtmps://*.live.example.com/*"]
file_buckets = ["recordings-prod"]
file_prefixes = ["recordings/"]
storage_providers = ["s3", "gcp"]
storage_endpoints = ["https://minio.internal.example.com"]
webhook_urls = ["https://hooks.example.com/*"]
web_urls = ["https://*.example.com/*"]

[policies.admin]
rpcs = ["*"]
"#;

#[test]
fn parses_the_full_example() {
    let policy = Policy::from_toml_str(FULL, "policy.toml").unwrap();
    assert_eq!(policy.auth_mode(), AuthMode::Bearer);
    assert_eq!(policy.source_name(), "policy.toml");
    assert_eq!(policy.policy_count(), 2);
    assert_eq!(policy.fingerprint(), hash_token(FULL));
    let names: Vec<&str> = policy.callers().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["recorder-service", "ops"]);

    let recorder = policy.caller("recorder-service").unwrap();
    assert_eq!(recorder.policy.policy_name(), "recording");
    assert_eq!(recorder.policy.caller_name(), "recorder-service");
    assert!(recorder.policy.allows_rpc(Rpc::StopEgress));
    assert!(!recorder.policy.allows_rpc(Rpc::StartWebEgress));
    assert!(recorder.policy.allows_room("team-blue"));
    assert!(recorder.policy.allows_room("standup"));
    assert!(!recorder.policy.allows_room("standup-2"));
    assert!(!recorder.policy.all_rooms());
    assert_eq!(recorder.identity(), None);

    let ops = policy.caller("ops").unwrap();
    assert!(Rpc::ALL.iter().all(|rpc| ops.policy.allows_rpc(*rpc)));
    // `rooms` left out: every room.
    assert!(ops.policy.all_rooms());
    assert!(ops.policy.allows_room("anything/at all"));
    assert_eq!(ops.identity(), Some("ops.prod.svc"));
    // Upper-case hex is accepted.
    assert_eq!(policy.authenticate_bearer("test2").unwrap().name, "ops");
}

#[test]
fn minimal_files() {
    let none = lines(&[
        "[auth]",
        "mode = \"none\"",
        "[[callers]]",
        "name = \"everyone\"",
        "policy = \"read-only\"",
        "[policies.read-only]",
        "rpcs = [\"ListEgress\"]",
    ]);
    let policy = Policy::from_toml_str(&none, "p").unwrap();
    assert_eq!(policy.anonymous_caller().unwrap().name, "everyone");

    // No callers at all: a valid lock-down file.
    let locked = lines(&["[auth]", "mode = \"bearer\""]);
    let policy = Policy::from_toml_str(&locked, "p").unwrap();
    assert!(policy.callers().is_empty());
    assert!(policy.authenticate_bearer("").is_none());
    assert!(policy.anonymous_caller().is_none());

    // Empty lists are allowed (and allow nothing).
    let empty = lines(&[
        "[auth]",
        "mode = \"mtls\"",
        "[[callers]]",
        "name = \"c\"",
        "identity = \"c.svc\"",
        "policy = \"p\"",
        "[policies.p]",
        "rpcs = []",
        "rooms = []",
        "stream_urls = []",
    ]);
    let policy = Policy::from_toml_str(&empty, "p").unwrap();
    let caller = policy.caller("c").unwrap();
    assert!(Rpc::ALL.iter().all(|rpc| !caller.policy.allows_rpc(*rpc)));
    assert!(!caller.policy.allows_room(""));
}

#[test]
fn toml_syntax_error() {
    let text = lines(&["[auth]", "mode = \"bearer"]);
    let err = Policy::from_toml_str(&text, "policy.toml").unwrap_err();
    assert!(matches!(err, PolicyError::Invalid { .. }));
    assert_eq!(err.line(), Some(2));
    assert_eq!(err.column(), Some(15));
    assert_eq!(
        err.to_string(),
        "policy.toml:2:15: invalid basic string, expected `\"`"
    );
}

#[test]
fn missing_auth_table() {
    assert_eq!(
        error(&lines(&["[policies.p]", "rpcs = []"])),
        "policy.toml:1:1: missing field `auth`"
    );
}

#[test]
fn unknown_keys() {
    let text = lines(&[
        "[auth]",
        "mode = \"bearer\"",
        "",
        "[policies.p]",
        "rpcs = []",
        "room = [\"a\"]",
    ]);
    assert_eq!(
        error(&text),
        "policy.toml:6:1: unknown field `room`, expected one of `rpcs`, `rooms`, `stream_urls`, \
         `file_buckets`, `file_prefixes`, `storage_providers`, `storage_endpoints`, \
         `webhook_urls`, `web_urls`"
    );
    let text = lines(&["[auth]", "mode = \"bearer\"", "[other]"]);
    assert_eq!(
        error(&text),
        "policy.toml:3:2: unknown field `other`, expected one of `auth`, `callers`, `policies`"
    );
    let text = lines(&[
        "[auth]",
        "mode = \"bearer\"",
        "[[callers]]",
        "name = \"a\"",
        "token = \"x\"",
        "policy = \"p\"",
    ]);
    assert_eq!(
        error(&text),
        "policy.toml:5:1: unknown field `token`, expected one of `name`, `token_sha256`, `identity`, `api_key`, `api_secret_file`, `api_secret_env`, `policy`"
    );
}

#[test]
fn unknown_auth_mode() {
    let text = lines(&["[auth]", "mode = \"oauth\""]);
    assert_eq!(
        error(&text),
        "policy.toml:2:8: unknown variant `oauth`, expected one of `none`, `bearer`, `mtls`"
    );
}

#[test]
fn missing_rpcs() {
    let text = lines(&[
        "[auth]",
        "mode = \"bearer\"",
        "",
        "[policies.p]",
        "rooms = [\"a\"]",
    ]);
    assert_eq!(error(&text), "policy.toml:4:1: missing field `rpcs`");
}

#[test]
fn unknown_rpc() {
    let text = lines(&[
        "[auth]",
        "mode = \"bearer\"",
        "[policies.recording]",
        "rpcs = [\"StopEgress\", \"StartEgres\"]",
    ]);
    assert_eq!(
        error(&text),
        "policy.toml:4:23: unknown RPC \"StartEgres\" (did you mean StartEgress?)"
    );
    let text = lines(&[
        "[auth]",
        "mode = \"bearer\"",
        "[policies.p]",
        "rpcs = [\"Delete\"]",
    ]);
    assert_eq!(error(&text), "policy.toml:4:9: unknown RPC \"Delete\"");
}

#[test]
fn undefined_policy() {
    let text = lines(&[
        "[auth]",
        "mode = \"bearer\"",
        "[[callers]]",
        "name = \"rec\"",
        &format!("token_sha256 = \"{HASH_A}\""),
        "policy = \"recordng\"",
        "[policies.recording]",
        "rpcs = [\"*\"]",
    ]);
    assert_eq!(
        error(&text),
        "policy.toml:6:10: caller \"rec\" refers to undefined policy \"recordng\" — add a \
         [policies.recordng] table (did you mean recording?)"
    );
}

fn two_callers(first: &[&str], second: &[&str]) -> String {
    let mut all = vec![
        "[auth]",
        "mode = \"bearer\"",
        "[policies.p]",
        "rpcs = [\"*\"]",
        "[[callers]]",
    ];
    all.extend_from_slice(first);
    all.push("policy = \"p\"");
    all.push("[[callers]]");
    all.extend_from_slice(second);
    all.push("policy = \"p\"");
    lines(&all)
}

#[test]
fn duplicate_caller_names() {
    let hash_b = hash_token("other");
    let text = two_callers(
        &["name = \"rec\"", &format!("token_sha256 = \"{HASH_A}\"")],
        &["name = \"rec\"", &format!("token_sha256 = \"{hash_b}\"")],
    );
    assert_eq!(
        error(&text),
        "policy.toml:10:8: duplicate caller name \"rec\" (first defined on line 6)"
    );
}

#[test]
fn duplicate_token_hashes() {
    let upper = HASH_A.to_ascii_uppercase();
    let text = two_callers(
        &["name = \"a\"", &format!("token_sha256 = \"{HASH_A}\"")],
        &["name = \"b\"", &format!("token_sha256 = \"{upper}\"")],
    );
    assert_eq!(
        error(&text),
        "policy.toml:11:16: caller \"b\" has the same token_sha256 as caller \"a\" (line 7); \
         every caller needs its own token"
    );
}

#[test]
fn bad_token_hashes() {
    let text = two_callers(
        &["name = \"a\"", &format!("token_sha256 = \"{HASH_A}\"")],
        &["name = \"b\"", "token_sha256 = \"9f86d0\""],
    );
    assert_eq!(
        error(&text),
        "policy.toml:11:16: token_sha256 must be 64 hex digits (a SHA-256 of the token), got 6 \
         characters; generate it with `printf %s \"$TOKEN\" | sha256sum`"
    );
    let not_hex = "z".repeat(64);
    let text = two_callers(
        &["name = \"a\"", &format!("token_sha256 = \"{not_hex}\"")],
        &["name = \"b\"", &format!("token_sha256 = \"{HASH_A}\"")],
    );
    assert_eq!(
        error(&text),
        "policy.toml:7:16: token_sha256 must contain only hex digits (0-9, a-f)"
    );
    let empty = hash_token("");
    let text = two_callers(
        &["name = \"a\"", &format!("token_sha256 = \"{HASH_A}\"")],
        &["name = \"b\"", &format!("token_sha256 = \"{empty}\"")],
    );
    assert_eq!(
        error(&text),
        "policy.toml:11:16: token_sha256 of caller \"b\" is the hash of an empty token"
    );
}

#[test]
fn bearer_caller_without_token() {
    let text = two_callers(
        &["name = \"a\"", &format!("token_sha256 = \"{HASH_A}\"")],
        &["name = \"b\"", "identity = \"b.svc\""],
    );
    assert_eq!(
        error(&text),
        "policy.toml:9:1: caller \"b\" has no token_sha256 or api_key (required by auth mode \"bearer\")"
    );
}

#[test]
fn mtls_caller_without_identity() {
    let text = lines(&[
        "[auth]",
        "mode = \"mtls\"",
        "",
        "[[callers]]",
        "name = \"recorder\"",
        &format!("token_sha256 = \"{HASH_A}\""),
        "policy = \"p\"",
        "",
        "[policies.p]",
        "rpcs = [\"*\"]",
    ]);
    assert_eq!(
        error(&text),
        "policy.toml:4:1: caller \"recorder\" has no identity or api_key (required by auth mode \"mtls\")"
    );
}

#[test]
fn duplicate_identities() {
    let text = lines(&[
        "[auth]",
        "mode = \"mtls\"",
        "[[callers]]",
        "name = \"a\"",
        "identity = \"svc\"",
        "policy = \"p\"",
        "[[callers]]",
        "name = \"b\"",
        "identity = \"svc\"",
        "policy = \"p\"",
        "[policies.p]",
        "rpcs = [\"*\"]",
    ]);
    assert_eq!(
        error(&text),
        "policy.toml:9:12: caller \"b\" has the same identity as caller \"a\" (line 5)"
    );
}

#[test]
fn mode_none_rules() {
    let text = lines(&[
        "[auth]",
        "mode = \"none\"",
        "[[callers]]",
        "name = \"all\"",
        &format!("token_sha256 = \"{HASH_A}\""),
        "policy = \"p\"",
        "[policies.p]",
        "rpcs = [\"*\"]",
    ]);
    assert_eq!(
        error(&text),
        "policy.toml:5:16: caller \"all\" has a token_sha256, but auth mode \"none\" checks no \
         credentials; use mode \"bearer\" or \"mtls\", or remove it"
    );
    let text = lines(&["[auth]", "mode = \"none\""]);
    assert_eq!(
        error(&text),
        "policy.toml:2:8: auth mode \"none\" needs exactly one [[callers]] entry (whose policy \
         applies to every request); found 0"
    );
}

fn policy_with(rule: &str) -> String {
    lines(&[
        "[auth]",
        "mode = \"bearer\"",
        "[policies.p]",
        "rpcs = [\"*\"]",
        rule,
    ])
}

#[test]
fn invalid_globs_and_patterns() {
    assert_eq!(
        error(&policy_with("rooms = [\"team-*\", \"team-[\"]")),
        "policy.toml:5:20: invalid glob \"team-[\": unclosed character class; missing ']'"
    );
    assert_eq!(
        error(&policy_with("rooms = [\"\"]")),
        "policy.toml:5:10: empty room pattern"
    );
    assert_eq!(
        error(&policy_with("file_buckets = [\"a{b\"]")),
        "policy.toml:5:17: invalid glob \"a{b\": unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"
    );
    assert_eq!(
        error(&policy_with(
            "stream_urls = [\"rtmp://ok.example.com/*\", \"live.example.com/*\"]"
        )),
        "policy.toml:5:43: URL pattern \"live.example.com/*\" must look like scheme://host/path"
    );
    assert_eq!(
        error(&policy_with(
            "webhook_urls = [\"https://user:pw@hooks.example.com\"]"
        )),
        "policy.toml:5:17: URL pattern \"https://user:pw@hooks.example.com\" must not contain \
         user information (user@host)"
    );
    assert_eq!(
        error(&policy_with(
            "web_urls = [\"https://app.example.com:http/*\"]"
        )),
        "policy.toml:5:13: URL pattern \"https://app.example.com:http/*\" has an invalid host or \
         port \"app.example.com:http\""
    );
    assert_eq!(
        error(&policy_with("storage_endpoints = [\"https://minio/[\"]")),
        "policy.toml:5:22: invalid glob \"/[\": unclosed character class; missing ']'"
    );
    assert_eq!(
        error(&policy_with("file_prefixes = [\"\"]")),
        "policy.toml:5:18: empty file prefix (it would allow every path; leave file_prefixes out instead)"
    );
    assert_eq!(
        error(&policy_with("file_prefixes = [\"rec/../\"]")),
        "policy.toml:5:18: file prefix must not contain a \"..\" segment"
    );
    assert_eq!(
        error(&policy_with("storage_providers = [\"s3\", \"dropbox\"]")),
        "policy.toml:5:28: unknown variant `dropbox`, expected one of `s3`, `gcp`, `azure`, `alioss`"
    );
}

#[test]
fn reports_the_first_problem_in_the_file() {
    let text = lines(&[
        "[auth]",
        "mode = \"bearer\"",
        "[[callers]]",
        "name = \"a\"",
        "token_sha256 = \"abc\"",
        "policy = \"missing\"",
        "[policies.p]",
        "rpcs = [\"Nope\"]",
    ]);
    assert_eq!(
        error(&text),
        "policy.toml:5:16: token_sha256 must be 64 hex digits (a SHA-256 of the token), got 3 \
         characters; generate it with `printf %s \"$TOKEN\" | sha256sum`"
    );
}

#[test]
fn load_reports_read_errors_and_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = Policy::load(&missing).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }));
    assert_eq!(err.line(), None);
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read policy file: ", missing.display()))
    );

    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[auth]\nmode = 1\n").unwrap();
    let err = Policy::load(&path).unwrap_err();
    assert_eq!(
        err.to_string().split(": ").next().unwrap(),
        format!("{}:2:8", path.display())
    );

    std::fs::write(&path, FULL).unwrap();
    let policy = Policy::load(&path).unwrap();
    assert_eq!(policy.source_name(), path.display().to_string());
}

#[test]
fn the_readme_example_is_valid() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let policy = Policy::from_toml_str(&readme[start..end], "README.md").unwrap();
    assert_eq!(policy.callers().len(), 2);
    assert_eq!(
        policy.authenticate_bearer("test").unwrap().name,
        "recorder-service"
    );
    assert_eq!(policy.authenticate_bearer("test2").unwrap().name, "ops");
}
