//! The `egress-policy` binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_egress-policy"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const TEST_SHA256: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn hash_token_reads_stdin() {
    for input in ["test", "test\n", "test\r\n"] {
        let (code, out, err) = run(&["hash-token"], input);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, &*format!("{TEST_SHA256}\n"), "")
        );
    }
    let (code, _, err) = run(&["hash-token"], "");
    assert_eq!(code, 1);
    assert!(err.contains("empty token"));
    let (code, out, err) = run(&["hash-token"], "two words\n");
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        !err.contains("two words"),
        "the token must not be echoed: {err}"
    );
}

#[test]
fn check_validates_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[auth]\nmode = \"bearer\"\n").unwrap();
    let (code, out, _) = run(&["check", good.to_str().unwrap()], "");
    assert_eq!(code, 0);
    assert!(
        out.contains("ok (auth mode bearer, 0 callers, 0 policies"),
        "{out}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[auth]\nmode = \"tls\"\n").unwrap();
    let (code, _, err) = run(&["check", bad.to_str().unwrap()], "");
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("{}:2:8: unknown variant `tls`", bad.display())),
        "{err}"
    );

    let (code, _, err) = run(&["frobnicate"], "");
    assert_eq!(code, 2);
    assert!(err.starts_with("usage:"));
}

/// `MAX_TOKEN_BYTES` of the tool: the most bytes of stdin `hash-token` accepts.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

fn run_bytes(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_egress-policy"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn egress-policy");
    // The tool may stop reading early (that is the bound under test): ignore a broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_usage() {
    for flag in ["-h", "--help", "help"] {
        let out = run_bytes(&[flag], b"");
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(
            text(&out.stdout).starts_with("usage: egress-policy hash-token"),
            "{flag}"
        );
    }
    for args in [&[][..], &["nope"], &["check"], &["hash-token", "extra"]] {
        let out = run_bytes(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).starts_with("usage: egress-policy"),
            "{args:?}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn hash_token_reads_at_most_the_bound() {
    // Exactly the bound: still one token.
    let at = "t".repeat(MAX_TOKEN_BYTES);
    let out = run_bytes(&["hash-token"], at.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), egress_policy::hash_token(&at));

    // One byte more (or a whole file): refused, never hashed as a shortened token.
    for len in [MAX_TOKEN_BYTES + 1, 10 * MAX_TOKEN_BYTES] {
        let over = "t".repeat(len);
        let out = run_bytes(&["hash-token"], over.as_bytes());
        assert_eq!(out.status.code(), Some(1), "{len}");
        assert!(out.stdout.is_empty(), "{len}");
        assert_eq!(
            text(&out.stderr),
            "egress-policy: stdin is larger than 16384 bytes; expected one token\n"
        );
    }
}

#[test]
fn hash_token_refuses_what_cannot_be_a_bearer_token_without_echoing_it() {
    for (stdin, message) in [
        (&b""[..], "empty token on stdin"),
        (b"\n", "empty token on stdin"),
        (b"\xff\xfe", "the token is not UTF-8"),
        (b"sec ret", "whitespace or control characters"),
        (b"sec\x07ret\n", "whitespace or control characters"),
    ] {
        let out = run_bytes(&["hash-token"], stdin);
        assert_eq!(out.status.code(), Some(1), "{stdin:?}");
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        assert!(stderr.contains(message), "{stdin:?}: {stderr}");
        assert!(!stderr.contains("sec"), "{stderr}");
    }
}

#[test]
fn check_summary_counts_and_cuts_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        r#"[auth]
mode = "bearer"

[[callers]]
name = "recorder"
token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
policy = "recording"

[policies.recording]
rpcs = ["ListEgress"]
"#,
    )
    .unwrap();
    let out = run_bytes(&["check", good.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "{}: ok (auth mode bearer, 1 callers, 1 policies, fingerprint ",
            good.display()
        )),
        "{stdout}"
    );
    // The fingerprint is cut to 12 hex digits.
    let fingerprint = stdout
        .trim_end()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap();
    assert_eq!(fingerprint.len(), 12, "{stdout}");
    assert!(
        fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "{stdout}"
    );
}
