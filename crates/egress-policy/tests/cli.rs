//! The `egress-policy` binary.

use std::io::Write;
use std::process::{Command, Stdio};

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
