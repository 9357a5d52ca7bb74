//! API key and secret, and the ways the gateway loads them.

use std::fmt;
use std::path::Path;

use crate::AuthError;

/// Environment variable holding the API key, as used by LiveKit tooling.
pub const ENV_API_KEY: &str = "LIVEKIT_API_KEY";
/// Environment variable holding the API secret, as used by LiveKit tooling.
pub const ENV_API_SECRET: &str = "LIVEKIT_API_SECRET";

/// A LiveKit API secret.
///
/// `Debug` prints `ApiSecret(<redacted>)` and `Display` prints `<redacted>`, so the secret
/// cannot leak through logging or error formatting by accident. [`ApiSecret::expose`] is the
/// only way to read the value.
///
/// There is deliberately no `PartialEq`: comparing secrets with `==` is not constant-time, and
/// nothing in the gateway needs to compare them.
#[derive(Clone)]
pub struct ApiSecret(String);

impl ApiSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret in [`ENV_API_SECRET`] (`LIVEKIT_API_SECRET`), if set: trimmed, and `None`
    /// when unset, empty or not UTF-8 (an exported-but-empty variable means "not set", as it
    /// does for LiveKit's tools).
    pub fn from_env() -> Option<Self> {
        Self::from_env_value(std::env::var(ENV_API_SECRET).ok())
    }

    fn from_env_value(value: Option<String>) -> Option<Self> {
        value
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(Self)
    }

    /// Returns the secret itself.
    ///
    /// This is the only way to read the value; call it only where the bytes are needed (signing
    /// or verifying), never to log or display.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiSecret(<redacted>)")
    }
}

impl fmt::Display for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for ApiSecret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for ApiSecret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

/// An API key and its secret: what the gateway signs tokens with.
///
/// The derived `Debug` shows the key (which LiveKit puts in every token's `iss` anyway) and the
/// redacted secret.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The API key; becomes the token's `iss` claim.
    pub api_key: String,
    /// The API secret the token is signed with.
    pub api_secret: ApiSecret,
}

impl Credentials {
    /// Builds credentials from a key and a secret (a `&str`, `String` or [`ApiSecret`]).
    ///
    /// ```
    /// use egress_auth::Credentials;
    ///
    /// let creds = Credentials::new("APIkey", "secret");
    /// assert_eq!(creds.api_key, "APIkey");
    /// assert_eq!(
    ///     format!("{creds:?}"),
    ///     r#"Credentials { api_key: "APIkey", api_secret: ApiSecret(<redacted>) }"#
    /// );
    /// ```
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<ApiSecret>) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
        }
    }

    /// Reads [`ENV_API_KEY`] (`LIVEKIT_API_KEY`) and [`ENV_API_SECRET`] (`LIVEKIT_API_SECRET`).
    ///
    /// # Errors
    ///
    /// [`AuthError::MissingEnv`] naming the first variable that is unset, empty or not UTF-8.
    pub fn from_env() -> Result<Self, AuthError> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    // Separate from `from_env` so tests need not mutate the process environment, which is
    // `unsafe` in edition 2024 and racy across test threads.
    fn from_env_with(get: impl Fn(&str) -> Option<String>) -> Result<Self, AuthError> {
        let read = |name: &'static str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(AuthError::MissingEnv { name })
        };
        let api_key = read(ENV_API_KEY)?;
        let api_secret = read(ENV_API_SECRET)?;
        Ok(Self::new(api_key, api_secret))
    }

    /// Loads credentials from a secret file, e.g. a mounted Kubernetes secret.
    ///
    /// Two layouts are accepted; in both, blank lines and lines starting with `#` are ignored:
    ///
    /// * only the secret, e.g. `s3cr3t`. Surrounding whitespace is trimmed, and `api_key` must be
    ///   `Some` since the file does not name the key.
    /// * a single `KEY: SECRET` line, the format of LiveKit's `keys.yaml`. If `api_key` is `Some`
    ///   it must equal `KEY`, which catches mounting the wrong file.
    ///
    /// The value may be wrapped in matching single or double quotes (as YAML allows). A secret
    /// containing whitespace is rejected, because it almost always means a trailing comment or a
    /// mangled line, and LiveKit secrets never contain whitespace. A bare secret cannot contain
    /// `:`; use the `KEY: SECRET` form for such a secret.
    ///
    /// # Errors
    ///
    /// [`AuthError::SecretFileRead`] if the file cannot be read (or is not UTF-8),
    /// [`AuthError::SecretFileFormat`] with the line number for a malformed or second entry,
    /// [`AuthError::SecretFileEmpty`], [`AuthError::MissingApiKey`] or
    /// [`AuthError::ApiKeyMismatch`]. None of them includes the file's content.
    pub fn from_secret_file(
        path: impl AsRef<Path>,
        api_key: Option<&str>,
    ) -> Result<Self, AuthError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::SecretFileRead {
            path: path.to_owned(),
            kind: e.kind(),
        })?;
        parse_secret_file(&text, path, api_key)
    }
}

enum Entry<'a> {
    Bare(&'a str),
    Pair(&'a str, &'a str),
}

pub(crate) fn parse_secret_file(
    text: &str,
    path: &Path,
    api_key: Option<&str>,
) -> Result<Credentials, AuthError> {
    let format_error = |line: usize, reason: &'static str| AuthError::SecretFileFormat {
        path: path.to_owned(),
        line,
        reason,
    };

    // Editors on Windows like to prepend a BOM; it would otherwise end up in the secret.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let mut entry = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if entry.is_some() {
            return Err(format_error(
                line_no,
                "more than one entry; expected a single `KEY: SECRET` line or only the secret",
            ));
        }
        let parsed = match line.split_once(':') {
            Some((key, secret)) => {
                let key = unquote(key.trim());
                let secret = unquote(secret.trim());
                if key.is_empty() {
                    return Err(format_error(line_no, "missing API key before `:`"));
                }
                if key.contains(char::is_whitespace) {
                    return Err(format_error(line_no, "API key contains whitespace"));
                }
                if secret.is_empty() {
                    return Err(format_error(line_no, "missing secret after `:`"));
                }
                Entry::Pair(key, secret)
            }
            None => Entry::Bare(unquote(line)),
        };
        let secret = match parsed {
            Entry::Bare(s) | Entry::Pair(_, s) => s,
        };
        if secret.contains(char::is_whitespace) {
            return Err(format_error(line_no, "secret contains whitespace"));
        }
        if secret.is_empty() {
            return Err(format_error(line_no, "empty secret"));
        }
        entry = Some(parsed);
    }

    match (entry, api_key) {
        (None, _) => Err(AuthError::SecretFileEmpty {
            path: path.to_owned(),
        }),
        (Some(Entry::Bare(_)), None) => Err(AuthError::MissingApiKey {
            path: path.to_owned(),
        }),
        (Some(Entry::Bare(secret)), Some(key)) => Ok(Credentials::new(key, secret)),
        (Some(Entry::Pair(file_key, _)), Some(key)) if file_key != key => {
            Err(AuthError::ApiKeyMismatch {
                path: path.to_owned(),
                expected: key.to_owned(),
            })
        }
        (Some(Entry::Pair(file_key, secret)), _) => Ok(Credentials::new(file_key, secret)),
    }
}

fn unquote(s: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = s
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_from_the_environment_is_trimmed_and_empty_means_unset() {
        assert_eq!(
            ApiSecret::from_env_value(Some(" s3cr3t\n".into())).map(|s| s.0),
            Some("s3cr3t".to_owned())
        );
        assert!(ApiSecret::from_env_value(Some("  ".into())).is_none());
        assert!(ApiSecret::from_env_value(None).is_none());
    }

    use super::*;
    use std::path::PathBuf;

    const SECRET: &str = "Zm9vYmFyU2VjcmV0VmFsdWU";

    fn parse(text: &str, key: Option<&str>) -> Result<Credentials, AuthError> {
        parse_secret_file(text, Path::new("/run/secrets/livekit"), key)
    }

    fn assert_no_secret(err: &AuthError) {
        assert!(!err.to_string().contains(SECRET), "{err}");
        assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    }

    #[test]
    fn secret_debug_and_display_are_redacted() {
        let s = ApiSecret::new(SECRET);
        assert_eq!(format!("{s:?}"), "ApiSecret(<redacted>)");
        assert_eq!(s.to_string(), "<redacted>");
        assert_eq!(s.expose(), SECRET);

        let c = Credentials::new("APIkey", SECRET);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(SECRET), "{dbg}");
        assert!(dbg.contains("APIkey"), "{dbg}");
        assert!(!format!("{c:#?}").contains(SECRET));
    }

    #[test]
    fn env_reads_both_variables() {
        let c = Credentials::from_env_with(|name| match name {
            ENV_API_KEY => Some("APIkey".into()),
            ENV_API_SECRET => Some(format!(" {SECRET}\n")),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.api_key, "APIkey");
        assert_eq!(c.api_secret.expose(), SECRET);
    }

    #[test]
    fn env_error_names_the_missing_variable() {
        let err = Credentials::from_env_with(|_| None).unwrap_err();
        assert_eq!(err, AuthError::MissingEnv { name: ENV_API_KEY });
        assert!(err.to_string().contains("LIVEKIT_API_KEY"), "{err}");

        let err = Credentials::from_env_with(|name| (name == ENV_API_KEY).then(|| "k".into()))
            .unwrap_err();
        assert!(err.to_string().contains("LIVEKIT_API_SECRET"), "{err}");

        let err = Credentials::from_env_with(|name| {
            Some(if name == ENV_API_KEY { "k" } else { "  " }.into())
        })
        .unwrap_err();
        assert_eq!(
            err,
            AuthError::MissingEnv {
                name: ENV_API_SECRET
            }
        );
    }

    #[test]
    fn bare_secret_is_trimmed_and_needs_a_key() {
        let c = parse(&format!("\n  {SECRET}  \n\n"), Some("APIkey")).unwrap();
        assert_eq!(c.api_key, "APIkey");
        assert_eq!(c.api_secret.expose(), SECRET);

        let err = parse(SECRET, None).unwrap_err();
        assert!(matches!(err, AuthError::MissingApiKey { .. }), "{err:?}");
        assert_no_secret(&err);
    }

    #[test]
    fn key_line_with_comments_and_blank_lines() {
        let text =
            format!("# LiveKit keys\n\n   # indented comment\nAPIkey: {SECRET}\r\n\n# end\n");
        let c = parse(&text, None).unwrap();
        assert_eq!(c.api_key, "APIkey");
        assert_eq!(c.api_secret.expose(), SECRET);

        // A configured key must match the file's.
        let c = parse(&text, Some("APIkey")).unwrap();
        assert_eq!(c.api_key, "APIkey");
        let err = parse(&text, Some("OTHERkey")).unwrap_err();
        assert!(matches!(err, AuthError::ApiKeyMismatch { .. }), "{err:?}");
        assert_no_secret(&err);
    }

    #[test]
    fn quotes_bom_and_colons_in_secret() {
        let c = parse(&format!("\u{feff}APIkey: \"{SECRET}\"\n"), None).unwrap();
        assert_eq!(c.api_secret.expose(), SECRET);
        let c = parse(&format!("'{SECRET}'"), Some("k")).unwrap();
        assert_eq!(c.api_secret.expose(), SECRET);
        // Only the first colon separates key from secret.
        let c = parse("APIkey: a:b", None).unwrap();
        assert_eq!(c.api_secret.expose(), "a:b");
    }

    #[test]
    fn second_entry_is_an_error_with_its_line_number() {
        let text = format!("# keys\nAPIkey: {SECRET}\n\nAPIother: {SECRET}\n");
        let err = parse(&text, None).unwrap_err();
        match &err {
            AuthError::SecretFileFormat { line, path, .. } => {
                assert_eq!(*line, 4);
                assert_eq!(path, &PathBuf::from("/run/secrets/livekit"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("line 4"), "{err}");
        assert_no_secret(&err);
    }

    #[test]
    fn malformed_lines_report_line_numbers_without_content() {
        let cases: &[(String, usize)] = &[
            (format!("\n: {SECRET}"), 2),
            ("APIkey:   \n".to_owned(), 1),
            (format!("#c\n#c\nAPIkey: {SECRET} # trailing comment"), 3),
            (format!("API key: {SECRET}"), 1),
            (format!("{SECRET} {SECRET}"), 1),
            ("APIkey: \"\"".to_owned(), 1),
        ];
        for (text, want_line) in cases {
            let err = parse(text, Some("APIkey")).unwrap_err();
            match &err {
                AuthError::SecretFileFormat { line, .. } => {
                    assert_eq!(line, want_line, "{text:?}: {err}")
                }
                other => panic!("{text:?}: unexpected {other:?}"),
            }
            assert_no_secret(&err);
        }
    }

    #[test]
    fn empty_file_is_an_error() {
        for text in ["", "\n\n", "# only a comment\n   \n"] {
            let err = parse(text, Some("APIkey")).unwrap_err();
            assert!(matches!(err, AuthError::SecretFileEmpty { .. }), "{err:?}");
        }
    }

    #[test]
    fn reads_real_files_and_reports_io_errors() {
        let dir = std::env::temp_dir().join(format!("egress-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let keys = dir.join("keys.yaml");
        std::fs::write(&keys, format!("# generated\nAPIkey: {SECRET}\n")).unwrap();
        let c = Credentials::from_secret_file(&keys, None).unwrap();
        assert_eq!(c.api_key, "APIkey");
        assert_eq!(c.api_secret.expose(), SECRET);

        let bare = dir.join("secret");
        std::fs::write(&bare, format!("{SECRET}\n")).unwrap();
        let c = Credentials::from_secret_file(&bare, Some("APIkey")).unwrap();
        assert_eq!(c.api_secret.expose(), SECRET);

        let missing = dir.join("does-not-exist");
        let err = Credentials::from_secret_file(&missing, Some("APIkey")).unwrap_err();
        assert_eq!(
            err,
            AuthError::SecretFileRead {
                path: missing.clone(),
                kind: std::io::ErrorKind::NotFound,
            }
        );
        assert!(err.to_string().contains("does-not-exist"), "{err}");

        let binary = dir.join("binary");
        std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).unwrap();
        let err = Credentials::from_secret_file(&binary, Some("APIkey")).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::SecretFileRead {
                    kind: std::io::ErrorKind::InvalidData,
                    ..
                }
            ),
            "{err:?}"
        );

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
