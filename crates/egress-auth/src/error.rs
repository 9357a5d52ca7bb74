//! Error types. No variant ever carries secret material: file errors keep the path and a line
//! number or I/O kind, never the offending text, because these errors end up in logs.

use std::io;
use std::path::PathBuf;

/// Errors while loading credentials or minting tokens.
///
/// Messages name the environment variable, file and line involved, but never contain an API
/// secret or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A required environment variable is unset, empty or not valid UTF-8.
    #[error("environment variable {name} is not set (or is empty or not valid UTF-8)")]
    MissingEnv {
        /// The variable's name, e.g. `LIVEKIT_API_SECRET`.
        name: &'static str,
    },

    /// The secret file could not be read.
    #[error("cannot read secret file {}: {kind}", path.display())]
    SecretFileRead {
        /// The file that was read.
        path: PathBuf,
        /// What went wrong; `InvalidData` when the file is not UTF-8.
        kind: io::ErrorKind,
    },

    /// The secret file has a line that is not `KEY: SECRET` or a bare secret, or has more than
    /// one of them.
    #[error("bad secret file {} at line {line}: {reason}", path.display())]
    SecretFileFormat {
        /// The file that was parsed.
        path: PathBuf,
        /// 1-based line number of the offending line.
        line: usize,
        /// What is wrong with the line (never its content).
        reason: &'static str,
    },

    /// The secret file holds no secret at all (only blank lines and comments).
    #[error("secret file {} contains no secret", path.display())]
    SecretFileEmpty {
        /// The file that was parsed.
        path: PathBuf,
    },

    /// The secret file holds a bare secret but no API key was configured to go with it.
    #[error("secret file {} holds only a secret; an API key must be configured as well", path.display())]
    MissingApiKey {
        /// The file that was parsed.
        path: PathBuf,
    },

    /// The secret file is in `KEY: SECRET` form, but for another key than the configured one.
    #[error("secret file {} is not for the configured API key {expected}", path.display())]
    ApiKeyMismatch {
        /// The file that was parsed.
        path: PathBuf,
        /// The configured API key.
        expected: String,
    },

    /// The system clock reads earlier than the Unix epoch, so `nbf`/`exp` cannot be computed.
    #[error("system clock is before the Unix epoch")]
    ClockBeforeEpoch,

    /// Building or signing the JWT failed.
    #[error("cannot sign access token: {0}")]
    Signing(String),
}

/// Why [`verify`](crate::verify) rejected a token.
///
/// The variants follow the checks a LiveKit server makes, in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a well-formed HS256 JWT with the claims LiveKit needs (`iss`, `exp`, ...).
    #[error("malformed token: {reason}")]
    Malformed {
        /// Human-readable reason.
        reason: String,
    },

    /// The token's `iss` (API key) is not known to the verifier.
    // Debug formatting so a hostile `iss` cannot inject newlines into log lines.
    #[error("unknown API key {key:?}")]
    UnknownKey {
        /// The `iss` claim as found in the token.
        key: String,
    },

    /// The signature does not match the secret registered for the token's API key.
    #[error("invalid token signature")]
    BadSignature,

    /// `exp` lies further in the past than the allowed leeway.
    #[error("token has expired")]
    Expired,

    /// `nbf` lies further in the future than the allowed leeway.
    #[error("token is not valid yet")]
    NotYetValid,
}
