//! `egress-policy`: small helpers for operators writing policy files.
//!
//! ```text
//! egress-policy hash-token      read a token on stdin, print its token_sha256
//! egress-policy check FILE      validate a policy file
//! ```

use std::io::{self, Read, Write};
use std::process::ExitCode;

use egress_policy::{Policy, hash_token};

const USAGE: &str = "\
usage: egress-policy hash-token     read a bearer token on stdin, print its SHA-256 (token_sha256)
       egress-policy check FILE     validate a policy file and summarise it";

/// Tokens are short; anything bigger is a mistake (a file piped in).
const MAX_TOKEN_BYTES: u64 = 16 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["hash-token"] => hash_token_command(),
        ["check", file] => check_command(file),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn hash_token_command() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = io::stdin()
        .take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut input)
    {
        eprintln!("egress-policy: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    if input.len() as u64 > MAX_TOKEN_BYTES {
        eprintln!(
            "egress-policy: stdin is larger than {MAX_TOKEN_BYTES} bytes; expected one token"
        );
        return ExitCode::FAILURE;
    }
    let Ok(text) = String::from_utf8(input) else {
        eprintln!("egress-policy: the token is not UTF-8");
        return ExitCode::FAILURE;
    };
    // `echo "$TOKEN" |` adds a newline the header will not carry.
    let token = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if token.is_empty() {
        eprintln!("egress-policy: empty token on stdin");
        return ExitCode::FAILURE;
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        // Never echo the token itself.
        eprintln!(
            "egress-policy: the token contains whitespace or control characters, \
             which cannot be sent in an authorization header"
        );
        return ExitCode::FAILURE;
    }
    let mut stdout = io::stdout().lock();
    if writeln!(stdout, "{}", hash_token(token)).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn check_command(file: &str) -> ExitCode {
    match Policy::load(file) {
        Ok(policy) => {
            println!(
                "{file}: ok (auth mode {}, {} callers, {} policies, fingerprint {})",
                policy.auth_mode(),
                policy.callers().len(),
                policy.policy_count(),
                &policy.fingerprint()[..12]
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
