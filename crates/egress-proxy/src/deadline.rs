//! The caller's deadline, from the `grpc-timeout` header (gRPC) or `X-Twirp-Timeout-Ms`
//! (Twirp).
//!
//! We read the header ourselves rather than using tonic's timeout layer: that layer answers
//! CANCELLED when time runs out, while gRPC callers expect DEADLINE_EXCEEDED, and the
//! remaining budget must also be passed on to LiveKit as `X-Twirp-Timeout-Ms`.

use std::time::Duration;

use crate::error::CallError;

/// The header gRPC clients put their deadline in.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The header Twirp clients (and LiveKit's server) put their deadline in: integer
/// milliseconds.
pub const TWIRP_TIMEOUT: &str = "x-twirp-timeout-ms";

/// How a call's deadline is chosen.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For calls that carry no `grpc-timeout` (`--upstream-timeout`).
    pub default: Duration,
    /// Upper bound on any call's budget, the caller's included (`--max-call-timeout`).
    pub max: Option<Duration>,
}

impl Deadlines {
    /// The deadline of a call received now with these headers: the caller's own when it
    /// sent one (the caller's deadline governs, capped only by `max`), else `default`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use egress_proxy::deadline::Deadlines;
    /// let deadlines = Deadlines { default: Duration::from_secs(2), max: None };
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("grpc-timeout", "10S".parse().unwrap());
    /// assert_eq!(deadlines.budget(&headers).unwrap(), Duration::from_secs(10));
    /// let capped = Deadlines { max: Some(Duration::from_secs(3)), ..deadlines };
    /// assert_eq!(capped.budget(&headers).unwrap(), Duration::from_secs(3));
    /// assert_eq!(deadlines.budget(&http::HeaderMap::new()).unwrap(), Duration::from_secs(2));
    /// ```
    ///
    /// # Errors
    ///
    /// [`CallError::MalformedTimeout`] when `grpc-timeout` is malformed.
    pub fn budget(&self, headers: &http::HeaderMap) -> Result<Duration, CallError> {
        self.budget_in(headers, GRPC_TIMEOUT, parse_grpc_timeout)
    }

    /// As [`budget`](Self::budget), for a Twirp call: its `X-Twirp-Timeout-Ms`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use egress_proxy::deadline::Deadlines;
    /// let deadlines = Deadlines { default: Duration::from_secs(2), max: None };
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-twirp-timeout-ms", "1500".parse().unwrap());
    /// assert_eq!(deadlines.twirp_budget(&headers).unwrap(), Duration::from_millis(1500));
    /// headers.insert("x-twirp-timeout-ms", "1.5".parse().unwrap());
    /// assert!(deadlines.twirp_budget(&headers).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`CallError::MalformedTimeout`] when the header is not an integer.
    pub fn twirp_budget(&self, headers: &http::HeaderMap) -> Result<Duration, CallError> {
        self.budget_in(headers, TWIRP_TIMEOUT, parse_twirp_timeout)
    }

    fn budget_in(
        &self,
        headers: &http::HeaderMap,
        header: &'static str,
        parse: fn(&str) -> Option<Duration>,
    ) -> Result<Duration, CallError> {
        let budget = match headers.get(header) {
            None => self.default,
            Some(raw) => raw
                .to_str()
                .ok()
                .and_then(parse)
                .ok_or(CallError::MalformedTimeout { header })?,
        };
        Ok(self.max.map_or(budget, |max| budget.min(max)))
    }
}

/// Parses an `X-Twirp-Timeout-Ms` value: 1 to 18 ASCII digits of milliseconds.
pub fn parse_twirp_timeout(value: &str) -> Option<Duration> {
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().map(Duration::from_millis)
}

/// Parses a `grpc-timeout` value: at most 8 ASCII digits followed by one unit letter
/// (`H`ours, `M`inutes, `S`econds, `m`illis, `u`micros, `n`anos).
///
/// ```
/// # use std::time::Duration;
/// # use egress_proxy::deadline::parse_grpc_timeout;
/// assert_eq!(parse_grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
/// assert_eq!(parse_grpc_timeout("123456789S"), None); // nine digits
/// ```
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("4m"), Some(Duration::from_millis(4)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("6n"), Some(Duration::from_nanos(6)));
        assert_eq!(
            parse_grpc_timeout("99999999S"),
            Some(Duration::from_secs(99_999_999))
        );
    }

    #[test]
    fn twirp_timeouts_are_integer_milliseconds() {
        assert_eq!(parse_twirp_timeout("0"), Some(Duration::ZERO));
        assert_eq!(parse_twirp_timeout("250"), Some(Duration::from_millis(250)));
        for bad in ["", "-1", "1.5", "1S", " 1", "1234567890123456789"] {
            assert_eq!(parse_twirp_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "S",
            "10",
            "10x",
            "-1S",
            "1.5S",
            "123456789m",
            " 1S",
            "1 S",
            "١S",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
