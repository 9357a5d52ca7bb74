//! When a failed attempt to reach LiveKit is tried again, and where.
//!
//! Every attempt of one call carries the same `X-Livekit-Request-Id`, so a server that
//! deduplicates can tell a retry from a new call. LiveKit Cloud does; the open-source server
//! does not for egress (it derives some resource ids from the key, not egress ids), so a
//! retried Start there can start a second recording. Hence, in order:
//!
//! 1. A request that provably never reached LiveKit (connection refused, DNS, connect
//!    timeout, TLS handshake failure) is retried for every RPC.
//! 2. `ListEgress` (read-only) is retried on transport failures (reset, broken body) and on
//!    502/503/504 or Twirp `unavailable`.
//! 3. Start/Stop/Update are retried on those only when writes may be: the upstream is LiveKit
//!    Cloud, or the operator said so (`--retry-writes`).
//!
//! Never on a 4xx or on a Twirp error with a definite code other than `unavailable`. At most
//! [`MAX_ATTEMPTS`] attempts, waiting 200 ms, 400 ms… (±50 % jitter) in between, and only
//! while the call's deadline leaves room for the wait and one more attempt: a deadline too
//! short ends with the last real error, not a timeout of our own making. On LiveKit Cloud a
//! retry goes to the next region from `/settings/regions` (as LiveKit's SDKs do) when at least
//! [`FAILOVER_MIN_LEFT`] is left.

use std::time::Duration;

use egress_core::Rpc;
use egress_twirp::{Error, TwirpCode};
use rand::Rng as _;

/// Most attempts of one call (LiveKit's SDKs make 3).
pub const MAX_ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubled for each one after.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Least time an attempt gets: a retry that cannot have this much after its wait is not made.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(250);
/// Least time left for a retry to go to another region (LiveKit's SDK rule).
pub const FAILOVER_MIN_LEFT: Duration = Duration::from_secs(5);

/// Whether the upstream is LiveKit Cloud (`--upstream-flavor`, or its host name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Start/Stop/Update may be retried: LiveKit Cloud, or `--retry-writes`.
    pub writes: bool,
    /// Retries may fail over to other regions (LiveKit Cloud only).
    pub failover: bool,
}

impl RetryPolicy {
    /// Whether `error`, from an attempt of `rpc`, may be tried again (deadline aside).
    pub fn may_retry(&self, rpc: Rpc, error: &Error) -> bool {
        match error {
            // Nothing was sent: always safe.
            Error::Connect(_) | Error::Tls(_) => true,
            _ if !transient(error) => false,
            _ => rpc == Rpc::ListEgress || self.writes,
        }
    }
}

/// A failure that says nothing definite about the request: the server (or the way to it)
/// was unavailable, or the answer was lost.
fn transient(error: &Error) -> bool {
    match error {
        Error::Reset(_) | Error::Body(_) => true,
        Error::Intermediary { status, .. } => matches!(status, 502..=504),
        Error::Twirp(twirp) => twirp.code == TwirpCode::Unavailable,
        _ => false,
    }
}

/// The wait before attempt `next` (2, 3, …): 200 ms, 400 ms, … with ±50 % jitter.
pub fn backoff(next: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.saturating_pow(next.saturating_sub(2));
    base.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// Whether `left` of the deadline allows waiting `wait` and then one more attempt.
pub fn time_allows(left: Duration, wait: Duration) -> bool {
    left > wait + MIN_ATTEMPT
}

/// Whether the host of `url` is LiveKit Cloud (`*.livekit.cloud`, `*.livekit.run`), as
/// LiveKit's SDKs decide it.
pub fn is_cloud_host(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':', '?'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    host.ends_with(".livekit.cloud") || host.ends_with(".livekit.run")
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_twirp::TwirpError;

    fn twirp(code: TwirpCode) -> Error {
        Error::Twirp(TwirpError::new(code, "m"))
    }

    fn intermediary(status: u16) -> Error {
        Error::Intermediary {
            status,
            content_type: None,
            body_excerpt: String::new(),
            location: None,
        }
    }

    #[test]
    fn what_is_retried_for_whom() {
        let oss = RetryPolicy {
            writes: false,
            failover: false,
        };
        let opted_in = RetryPolicy {
            writes: true,
            failover: false,
        };
        let start = Rpc::StartRoomCompositeEgress;
        let list = Rpc::ListEgress;
        // Never sent: every RPC, every policy.
        for error in [
            Error::Connect("refused".into()),
            Error::Tls("handshake".into()),
        ] {
            assert!(oss.may_retry(start, &error));
            assert!(oss.may_retry(list, &error));
        }
        // Unavailable and lost answers: reads always, writes when allowed.
        for error in [
            twirp(TwirpCode::Unavailable),
            intermediary(502),
            intermediary(503),
            intermediary(504),
            Error::Reset("reset".into()),
            Error::Body("cut".into()),
        ] {
            assert!(oss.may_retry(list, &error), "{error:?}");
            assert!(!oss.may_retry(start, &error), "{error:?}");
            assert!(opted_in.may_retry(start, &error), "{error:?}");
        }
        // Definite answers, client errors and our own failures: never.
        for error in [
            twirp(TwirpCode::NotFound),
            twirp(TwirpCode::Internal),
            twirp(TwirpCode::InvalidArgument),
            twirp(TwirpCode::DeadlineExceeded),
            intermediary(400),
            intermediary(401),
            intermediary(429),
            intermediary(500),
            Error::Timeout(Duration::from_secs(1)),
            Error::Decode("x".into()),
            Error::Auth("x".into()),
            Error::Canceled,
        ] {
            assert!(!opted_in.may_retry(list, &error), "{error:?}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_the_deadline_decides() {
        for _ in 0..100 {
            let second = backoff(2);
            assert!((100..=300).contains(&second.as_millis()), "{second:?}");
            let third = backoff(3);
            assert!((200..=600).contains(&third.as_millis()), "{third:?}");
        }
        assert!(time_allows(
            Duration::from_secs(1),
            Duration::from_millis(200)
        ));
        assert!(!time_allows(
            Duration::from_millis(400),
            Duration::from_millis(200)
        ));
    }

    #[test]
    fn cloud_hosts_as_livekit_sees_them() {
        assert!(is_cloud_host("https://my-project.livekit.cloud"));
        assert!(is_cloud_host("wss://my-project.livekit.cloud:443/lk"));
        assert!(is_cloud_host("https://x.livekit.run"));
        assert!(!is_cloud_host("https://livekit.cloud.example.com"));
        assert!(!is_cloud_host("http://127.0.0.1:7880"));
    }
}
