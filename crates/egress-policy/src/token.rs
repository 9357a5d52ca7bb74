//! Token hashing and the constant-time lookup of a presented token.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// SHA-256 of the empty string: a `token_sha256` with this value would let
/// an empty bearer token in, so the file is rejected.
pub(crate) const EMPTY_TOKEN_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The lower-case hex SHA-256 of `token`: what goes into a caller's
/// `token_sha256`. Same result as `printf %s "$TOKEN" | sha256sum`.
///
/// # Example
///
/// ```
/// assert_eq!(
///     egress_policy::hash_token("test"),
///     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/// );
/// ```
pub fn hash_token(token: &str) -> String {
    hex::encode(sha256(token))
}

pub(crate) fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The index of the entry equal to `digest`, comparing in constant time.
///
/// Every entry is compared, whether or not an earlier one matched, and the
/// comparison itself ([`ConstantTimeEq`]) does not stop at the first
/// differing byte, so the time taken does not depend on which caller (if
/// any) the token belongs to. Entries without a hash (`None`) never match.
/// Only a match is turned into a branch, after the loop.
pub(crate) fn find_constant_time<'a>(
    hashes: impl IntoIterator<Item = Option<&'a [u8; 32]>>,
    digest: &[u8; 32],
) -> Option<usize> {
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, hash) in hashes.into_iter().enumerate() {
        // A caller without a hash is compared against a value no token can
        // produce a match for (`is_some` is ANDed in), keeping the loop
        // body uniform.
        let (present, stored) = match hash {
            Some(h) => (Choice::from(1), h),
            None => (Choice::from(0), digest),
        };
        let equal = stored.ct_eq(digest) & present;
        index.conditional_assign(&(i as u64), equal);
        found |= equal;
    }
    bool::from(found).then_some(index as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn empty_token_constant_is_the_empty_hash() {
        assert_eq!(sha256(""), EMPTY_TOKEN_SHA256);
    }

    #[test]
    fn finds_the_match_and_compares_every_entry() {
        let hashes = [sha256("a"), sha256("b"), sha256("c")];
        let visited = Cell::new(0);
        let entries = hashes.iter().map(|h| {
            visited.set(visited.get() + 1);
            Some(h)
        });
        // The first entry matches, yet all three are still compared.
        assert_eq!(find_constant_time(entries, &sha256("a")), Some(0));
        assert_eq!(visited.get(), 3);

        let entries = hashes.iter().map(Some);
        assert_eq!(find_constant_time(entries, &sha256("c")), Some(2));
        let entries = hashes.iter().map(Some);
        assert_eq!(find_constant_time(entries, &sha256("d")), None);
        // Entries without a hash never match, not even the digest itself.
        let d = sha256("x");
        assert_eq!(find_constant_time([None, Some(&d)], &d), Some(1));
        assert_eq!(find_constant_time([None], &d), None);
        assert_eq!(find_constant_time(std::iter::empty(), &d), None);
    }
}
