//! Ids and the clock, as LiveKit makes them.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use rand::distr::Alphanumeric;

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// `prefix` followed by 12 random ASCII letters and digits, like LiveKit's ids.
pub(crate) fn random_id(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}
