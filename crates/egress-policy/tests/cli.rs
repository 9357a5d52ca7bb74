//! The `egress-policy` operator tool, run as a process: what it prints, its exit codes, and the
//! bound on what it reads from stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_egress-policy");

/// `MAX_TOKEN_BYTES` of the tool: the most bytes of stdin `hash-token` accepts.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
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
        let out = run(&[flag], b"");
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(
            text(&out.stdout).starts_with("usage: egress-policy hash-token"),
            "{flag}"
        );
    }
    for args in [&[][..], &["nope"], &["check"], &["hash-token", "extra"]] {
        let out = run(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).starts_with("usage: egress-policy"),
            "{args:?}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn hash_token_prints_the_sha256_of_one_token() {
    let test_hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n";
    for stdin in [&b"test"[..], b"test\n", b"test\r\n"] {
        let out = run(&["hash-token"], stdin);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), test_hash);
    }
}

#[test]
fn hash_token_reads_at_most_the_bound() {
    // Exactly the bound: still one token.
    let at = "t".repeat(MAX_TOKEN_BYTES);
    let out = run(&["hash-token"], at.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), egress_policy::hash_token(&at));

    // One byte more (or a whole file): refused, never hashed as a shortened token.
    for len in [MAX_TOKEN_BYTES + 1, 10 * MAX_TOKEN_BYTES] {
        let over = "t".repeat(len);
        let out = run(&["hash-token"], over.as_bytes());
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
        let out = run(&["hash-token"], stdin);
        assert_eq!(out.status.code(), Some(1), "{stdin:?}");
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        assert!(stderr.contains(message), "{stdin:?}: {stderr}");
        assert!(!stderr.contains("sec"), "{stderr}");
    }
}

#[test]
fn check_summarises_or_points_at_the_problem() {
    let dir = std::env::temp_dir().join(format!("egress-policy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
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
    let out = run(&["check", good.to_str().unwrap()], b"");
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

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[auth]\nmode = \"sometimes\"\n").unwrap();
    let out = run(&["check", bad.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("bad.toml:2:"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
