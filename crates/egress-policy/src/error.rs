//! [`PolicyError`]: why a policy file was rejected, with its line and column.

use std::io;

/// A policy file that could not be read or is not a valid policy.
///
/// Every [`Invalid`](PolicyError::Invalid) error names the place in the file
/// (1-based line and column, columns counted in characters) where the problem
/// is, in the `file:line:column: message` form editors and terminals
/// understand.
///
/// # Example
///
/// ```
/// use egress_policy::{Policy, PolicyError};
///
/// let text = "[auth]\nmode = \"bearer\"\n\n[policies.ops]\nrpcs = [\"StartEgres\"]\n";
/// let err = Policy::from_toml_str(text, "policy.toml").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "policy.toml:5:9: unknown RPC \"StartEgres\" (did you mean StartEgress?)"
/// );
/// assert_eq!((err.line(), err.column()), (Some(5), Some(9)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{source_name}: cannot read policy file: {error}")]
    Read {
        /// The file, as given to [`Policy::load`](crate::Policy::load).
        source_name: String,
        /// What the operating system said.
        #[source]
        error: io::Error,
    },
    /// The file is not valid TOML, does not have the policy file's shape, or
    /// breaks one of the semantic rules (unknown RPC, undefined policy,
    /// duplicate caller, bad hash, invalid glob, …).
    #[error("{source_name}:{line}:{column}: {message}")]
    Invalid {
        /// The file name used in messages.
        source_name: String,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// What is wrong, without the location.
        message: String,
    },
}

impl PolicyError {
    /// The 1-based line the error points at (`None` for read errors).
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Invalid { line, .. } => Some(*line),
            PolicyError::Read { .. } => None,
        }
    }

    /// The 1-based column the error points at (`None` for read errors).
    pub fn column(&self) -> Option<usize> {
        match self {
            PolicyError::Invalid { column, .. } => Some(*column),
            PolicyError::Read { .. } => None,
        }
    }

    /// The message without the `file:line:column: ` prefix.
    pub fn message(&self) -> String {
        match self {
            PolicyError::Invalid { message, .. } => message.clone(),
            PolicyError::Read { error, .. } => format!("cannot read policy file: {error}"),
        }
    }

    /// Builds an [`Invalid`](PolicyError::Invalid) error pointing at byte
    /// `offset` of `text`.
    pub(crate) fn at(text: &str, source_name: &str, offset: usize, message: String) -> Self {
        let (line, column) = line_column(text, offset);
        PolicyError::Invalid {
            source_name: source_name.to_owned(),
            line,
            column,
            message,
        }
    }
}

/// 1-based line and character column of byte `offset` in `text`. Offsets
/// past the end or inside a multi-byte character are clamped.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The closest of `candidates` to `word`, if it is close enough to be a
/// plausible typo (case-insensitive equality or a small edit distance).
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 3.min(c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        // 'é' is two bytes; the offset after it is column 4.
        assert_eq!(line_column(text, 7), (2, 4));
        // Inside 'é': clamped back to its start.
        assert_eq!(line_column(text, 6), (2, 3));
        assert_eq!(line_column(text, 999), (3, 2));
    }

    #[test]
    fn suggestions() {
        let rpcs = ["StartEgress", "StopEgress", "ListEgress"];
        assert_eq!(did_you_mean("StartEgres", rpcs), Some("StartEgress"));
        assert_eq!(did_you_mean("stopegress", rpcs), Some("StopEgress"));
        assert_eq!(did_you_mean("Frobnicate", rpcs), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        // Insertions, deletions and substitutions each cost one.
        assert_eq!(edit_distance("abc", "c"), 2);
        assert_eq!(edit_distance("xab", "ab"), 1);
        assert_eq!(edit_distance("ab", "xab"), 1);
        assert_eq!(edit_distance("abc", "axc"), 1);
    }

    #[test]
    fn suggestion_distance_grows_with_the_candidate() {
        // A six-letter name tolerates two edits (a third of its length), not three.
        let names = ["abcdef"];
        assert_eq!(did_you_mean("abcdxx", names), Some("abcdef"));
        assert_eq!(did_you_mean("abcxxx", names), None);
        // Short names still tolerate one edit; long ones never more than three.
        assert_eq!(did_you_mean("ax", ["ab"]), Some("ab"));
        assert_eq!(did_you_mean("xy", ["ab"]), None);
        let long = "abcdefghijklmnop";
        assert_eq!(did_you_mean("abcdefghijklmxyz", [long]), Some(long));
        assert_eq!(did_you_mean("abcdefghijklwxyz", [long]), None);
    }

    #[test]
    fn message_is_the_text_without_the_location() {
        let err = PolicyError::at("a\nbc", "policy.toml", 4, "no such rpc".into());
        assert_eq!(err.message(), "no such rpc");
        assert_eq!((err.line(), err.column()), (Some(2), Some(3)));
        assert_eq!(err.to_string(), "policy.toml:2:3: no such rpc");
        let err = PolicyError::Read {
            source_name: "missing.toml".into(),
            error: io::Error::new(io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(err.message(), "cannot read policy file: gone");
        assert_eq!((err.line(), err.column()), (None, None));
    }
}
