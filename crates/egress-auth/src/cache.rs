//! The per-request hot path: a cached `Authorization` header value.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use crate::{AuthError, Credentials, VideoGrants, mint};

/// Lifetimes for [`TokenCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCacheConfig {
    /// Lifetime of each minted token (`exp - nbf`), in whole seconds. Default: 10 minutes.
    pub ttl: Duration,
    /// How long before `exp` a fresh token is minted. Default: 2 minutes.
    ///
    /// Must be shorter than `ttl`; otherwise it is treated as `ttl / 2` (a value `>= ttl` would
    /// make every request mint a new token).
    pub refresh_before: Duration,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10 * 60),
            refresh_before: Duration::from_secs(2 * 60),
        }
    }
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

struct Cached {
    header: HeaderValue,
    refresh_at: SystemTime,
    expires_at: SystemTime,
}

struct State {
    credentials: Credentials,
    token: Option<Cached>,
}

/// Caches a LiveKit access token as a ready-made `Authorization: Bearer <jwt>` header value.
///
/// [`authorization`](Self::authorization) is meant to be called on every outgoing request: while
/// the token is fresh it costs a read lock and a `HeaderValue` clone (a reference-count bump), no
/// signing. Once the token is within `refresh_before` of its expiry, one caller mints a new one
/// while concurrent callers keep getting the old, still valid token; only when the token has
/// actually expired (or after [`rotate`](Self::rotate)) do callers wait for the new one, and
/// even then just one of them signs.
///
/// The cache is `Send + Sync`; share it behind an `Arc`. Its `Debug` output shows the API key,
/// configuration and counters, never the secret or the token.
///
/// Time comes from the system clock, or from any function given to
/// [`with_clock`](Self::with_clock), which makes refresh behaviour testable without sleeping.
///
/// # Examples
///
/// ```
/// use egress_auth::{Credentials, TokenCache, TokenCacheConfig, VideoGrants};
///
/// let cache = TokenCache::new(
///     Credentials::new("APIkey", "my-secret"),
///     VideoGrants::room_record(),
///     TokenCacheConfig::default(),
/// );
///
/// let first = cache.authorization()?;
/// assert!(first.to_str().unwrap().starts_with("Bearer ey"));
/// assert!(first.is_sensitive());
///
/// // Served from the cache: same token, still a single mint.
/// assert_eq!(cache.authorization()?, first);
/// assert_eq!(cache.refreshes(), 1);
///
/// // After a secret-file reload: the next call mints with the new key.
/// cache.rotate(Credentials::new("APIkey2", "new-secret"));
/// assert_ne!(cache.authorization()?, first);
/// assert_eq!(cache.refreshes(), 2);
/// # Ok::<(), egress_auth::AuthError>(())
/// ```
pub struct TokenCache {
    grants: VideoGrants,
    config: TokenCacheConfig,
    clock: Clock,
    state: RwLock<State>,
    refreshes: AtomicU64,
}

impl TokenCache {
    /// Creates an empty cache using the system clock; the first
    /// [`authorization`](Self::authorization) call mints.
    pub fn new(credentials: Credentials, grants: VideoGrants, config: TokenCacheConfig) -> Self {
        Self::with_clock(credentials, grants, config, SystemTime::now)
    }

    /// Like [`new`](Self::new), with `clock` as the source of the current time.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::{Duration, SystemTime};
    /// use egress_auth::{Credentials, TokenCache, TokenCacheConfig, VideoGrants};
    ///
    /// let now = Arc::new(Mutex::new(SystemTime::now()));
    /// let clock = Arc::clone(&now);
    /// let cache = TokenCache::with_clock(
    ///     Credentials::new("APIkey", "my-secret"),
    ///     VideoGrants::room_record(),
    ///     TokenCacheConfig::default(),
    ///     move || *clock.lock().unwrap(),
    /// );
    /// cache.authorization()?;
    /// *now.lock().unwrap() += Duration::from_secs(9 * 60); // inside the 2-minute refresh window
    /// cache.authorization()?;
    /// assert_eq!(cache.refreshes(), 2);
    /// # Ok::<(), egress_auth::AuthError>(())
    /// ```
    pub fn with_clock(
        credentials: Credentials,
        grants: VideoGrants,
        mut config: TokenCacheConfig,
        clock: impl Fn() -> SystemTime + Send + Sync + 'static,
    ) -> Self {
        if config.refresh_before >= config.ttl {
            config.refresh_before = config.ttl / 2;
        }
        Self {
            grants,
            config,
            clock: Arc::new(clock),
            state: RwLock::new(State {
                credentials,
                token: None,
            }),
            refreshes: AtomicU64::new(0),
        }
    }

    /// Returns the `Authorization` header value, `Bearer <jwt>`, marked sensitive so HTTP
    /// libraries keep it out of their logs and HPACK tables.
    ///
    /// Mints a new token only when there is none yet, the key was rotated, or the current one is
    /// within `refresh_before` of expiry.
    ///
    /// # Errors
    ///
    /// Whatever [`mint`] fails with (an empty secret, or a clock before 1970).
    pub fn authorization(&self) -> Result<HeaderValue, AuthError> {
        let now = (self.clock)();
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = &state.token {
                if now < cached.refresh_at {
                    return Ok(cached.header.clone());
                }
                if now < cached.expires_at {
                    // Refresh window: the current token is still good, so whoever cannot get
                    // the write lock right away uses it instead of queueing behind the signer.
                    let current = cached.header.clone();
                    drop(state);
                    return match self.state.try_write() {
                        Ok(guard) => self.refresh(guard),
                        Err(TryLockError::Poisoned(poisoned)) => {
                            self.refresh(poisoned.into_inner())
                        }
                        Err(TryLockError::WouldBlock) => Ok(current),
                    };
                }
            }
        }
        let guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
        self.refresh(guard)
    }

    /// Holding the write lock: mints unless another caller already did while we waited.
    fn refresh(&self, mut state: RwLockWriteGuard<'_, State>) -> Result<HeaderValue, AuthError> {
        let now = (self.clock)();
        if let Some(cached) = &state.token
            && now < cached.refresh_at
        {
            return Ok(cached.header.clone());
        }

        let jwt = mint(&state.credentials, &self.grants, self.config.ttl, now)?;
        let mut header = HeaderValue::try_from(format!("Bearer {jwt}"))
            .map_err(|_| AuthError::Signing("token is not a valid header value".to_owned()))?;
        header.set_sensitive(true);

        // Derived from the same whole-second arithmetic as the token's `exp`, so the cache never
        // believes a token lives longer than it does.
        let exp = crate::token::unix_secs(now)?.saturating_add(self.config.ttl.as_secs());
        let expires_at = UNIX_EPOCH + Duration::from_secs(exp);
        let refresh_at = expires_at
            .checked_sub(self.config.refresh_before)
            .unwrap_or(UNIX_EPOCH);

        #[cfg(feature = "tracing")]
        tracing::debug!(
            api_key = %state.credentials.api_key,
            exp,
            "minted LiveKit access token"
        );

        state.token = Some(Cached {
            header: header.clone(),
            refresh_at,
            expires_at,
        });
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        Ok(header)
    }

    /// Replaces the credentials and drops the cached token, so the next
    /// [`authorization`](Self::authorization) mints with the new key. Used when the secret
    /// file is reloaded.
    pub fn rotate(&self, credentials: Credentials) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            old_api_key = %state.credentials.api_key,
            new_api_key = %credentials.api_key,
            "rotated LiveKit API credentials"
        );
        state.credentials = credentials;
        state.token = None;
    }

    /// The credentials in force now (after the last [`rotate`](Self::rotate)): the
    /// webhook receiver verifies LiveKit's signatures with the same, reloadable secret.
    pub fn credentials(&self) -> Credentials {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .credentials
            .clone()
    }

    /// Number of tokens minted so far, for metrics.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// The configuration in effect (after clamping `refresh_before`).
    pub fn config(&self) -> TokenCacheConfig {
        self.config
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("TokenCache");
        // `try_read`: a blocking read here could deadlock if Debug were ever invoked while this
        // thread holds the write lock.
        match self.state.try_read() {
            Ok(state) => s
                .field("api_key", &state.credentials.api_key)
                .field("cached", &state.token.is_some()),
            Err(_) => s.field("api_key", &format_args!("<locked>")),
        };
        s.field("grants", &self.grants)
            .field("config", &self.config)
            .field("refreshes", &self.refreshes())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiSecret, verify_at};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use std::sync::{Barrier, Mutex};

    const SECRET: &str = "cache-secret-must-not-leak";
    const T0: u64 = 1_700_000_000;

    struct ManualClock(Mutex<SystemTime>);

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self(Mutex::new(UNIX_EPOCH + Duration::from_secs(T0))))
        }
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    fn cache_with(clock: &Arc<ManualClock>, config: TokenCacheConfig) -> TokenCache {
        let clock = Arc::clone(clock);
        TokenCache::with_clock(
            Credentials::new("APIkey", SECRET),
            VideoGrants::room_record(),
            config,
            move || clock.now(),
        )
    }

    fn jwt(header: &HeaderValue) -> String {
        header
            .to_str()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap()
            .to_owned()
    }

    fn payload(header: &HeaderValue) -> serde_json::Value {
        let token = jwt(header);
        let segment = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenCache>();
    }

    #[test]
    fn header_is_a_sensitive_bearer_token_that_verifies() {
        let clock = ManualClock::new();
        let cache = cache_with(&clock, TokenCacheConfig::default());
        let header = cache.authorization().unwrap();
        assert!(header.is_sensitive());
        assert_eq!(format!("{header:?}"), "Sensitive");
        let claims = verify_at(
            &jwt(&header),
            |k| (k == "APIkey").then(|| ApiSecret::new(SECRET)),
            clock.now(),
        )
        .unwrap();
        assert_eq!((claims.nbf, claims.exp), (T0, T0 + 600));
        assert!(claims.video.room_record);
    }

    #[test]
    fn reuses_token_until_refresh_point() {
        let clock = ManualClock::new();
        let cache = cache_with(&clock, TokenCacheConfig::default());
        let first = cache.authorization().unwrap();
        for _ in 0..100 {
            assert_eq!(cache.authorization().unwrap(), first);
        }
        clock.advance(Duration::from_secs(8 * 60 - 1));
        assert_eq!(cache.authorization().unwrap(), first);
        assert_eq!(cache.refreshes(), 1);

        // Exactly at exp - refresh_before.
        clock.advance(Duration::from_secs(1));
        let second = cache.authorization().unwrap();
        assert_ne!(second, first);
        assert_eq!(cache.refreshes(), 2);
        assert_eq!(payload(&second)["nbf"], T0 + 8 * 60);
        assert_eq!(cache.authorization().unwrap(), second);

        // Long past expiry (e.g. an idle gateway): a fresh token, not the stale one.
        clock.advance(Duration::from_secs(3600));
        let third = cache.authorization().unwrap();
        assert_eq!(payload(&third)["nbf"], T0 + 8 * 60 + 3600);
        assert_eq!(cache.refreshes(), 3);
    }

    #[test]
    fn remints_with_real_clock_and_tiny_ttl() {
        let cache = TokenCache::new(
            Credentials::new("APIkey", SECRET),
            VideoGrants::room_record(),
            TokenCacheConfig {
                ttl: Duration::from_secs(2),
                refresh_before: Duration::from_secs(1),
            },
        );
        let first = cache.authorization().unwrap();
        assert_eq!(cache.authorization().unwrap(), first);
        // exp = floor(t0) + 2, refresh at floor(t0) + 1 <= t0 + 1: 1.1 s later is always past it.
        std::thread::sleep(Duration::from_millis(1100));
        let second = cache.authorization().unwrap();
        assert_ne!(second, first);
        assert_eq!(cache.refreshes(), 2);
    }

    #[test]
    fn refresh_before_is_clamped_below_ttl() {
        let clock = ManualClock::new();
        let cache = cache_with(
            &clock,
            TokenCacheConfig {
                ttl: Duration::from_secs(60),
                refresh_before: Duration::from_secs(60),
            },
        );
        assert_eq!(cache.config().refresh_before, Duration::from_secs(30));
        let first = cache.authorization().unwrap();
        clock.advance(Duration::from_secs(29));
        assert_eq!(cache.authorization().unwrap(), first);
        assert_eq!(cache.refreshes(), 1);
    }

    #[test]
    fn concurrent_callers_after_expiry_mint_once() {
        let clock = ManualClock::new();
        let cache = Arc::new(cache_with(&clock, TokenCacheConfig::default()));
        cache.authorization().unwrap();
        clock.advance(Duration::from_secs(3600));

        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    cache.authorization().unwrap()
                })
            })
            .collect();
        let tokens: Vec<HeaderValue> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(cache.refreshes(), 2);
        assert!(tokens.iter().all(|t| *t == tokens[0]));
    }

    /// Calls `authorization()` on another thread while this one holds a read lock on the
    /// cache's state, so the caller cannot get the write lock: what it returns within `wait`
    /// (`None` if it is still blocked), then what it returns once the lock is released.
    fn authorization_while_contended(
        cache: &Arc<TokenCache>,
        wait: Duration,
    ) -> (Option<HeaderValue>, HeaderValue) {
        let reader = cache.state.read().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let caller = Arc::clone(cache);
        let handle = std::thread::spawn(move || {
            let _ = tx.send(caller.authorization().unwrap());
        });
        let early = rx.recv_timeout(wait).ok();
        drop(reader);
        let late = match &early {
            Some(header) => header.clone(),
            None => rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        };
        handle.join().unwrap();
        (early, late)
    }

    #[test]
    fn contended_refresh_window_uses_the_current_token_without_waiting() {
        let clock = ManualClock::new();
        let cache = Arc::new(cache_with(&clock, TokenCacheConfig::default()));
        let old = cache.authorization().unwrap();
        // exp is at 10 min, the refresh point at 8 min: 9 min is inside the window.
        clock.advance(Duration::from_secs(9 * 60));
        let (early, _) = authorization_while_contended(&cache, Duration::from_secs(5));
        assert_eq!(early, Some(old.clone()), "must not queue behind the signer");
        assert_eq!(cache.refreshes(), 1);
        // The last second before expiry is still inside the window.
        clock.advance(Duration::from_secs(60 - 1));
        let (early, _) = authorization_while_contended(&cache, Duration::from_secs(5));
        assert_eq!(early, Some(old));
    }

    #[test]
    fn contended_callers_never_get_an_expired_token() {
        for past_expiry in [0, 1, 3600] {
            let clock = ManualClock::new();
            let cache = Arc::new(cache_with(&clock, TokenCacheConfig::default()));
            let old = cache.authorization().unwrap();
            clock.advance(Duration::from_secs(10 * 60 + past_expiry));
            let (early, late) = authorization_while_contended(&cache, Duration::from_millis(200));
            assert_eq!(early, None, "{past_expiry}: waited for the new token");
            assert_ne!(late, old, "{past_expiry}");
            assert_eq!(cache.refreshes(), 2);
        }
    }

    #[test]
    fn concurrent_callers_in_refresh_window_mint_once() {
        let clock = ManualClock::new();
        let cache = Arc::new(cache_with(&clock, TokenCacheConfig::default()));
        let old = cache.authorization().unwrap();
        clock.advance(Duration::from_secs(9 * 60));

        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    cache.authorization().unwrap()
                })
            })
            .collect();
        for handle in handles {
            // Each caller gets either the still-valid old token or the new one.
            handle.join().unwrap();
        }
        assert_eq!(cache.refreshes(), 2);
        assert_ne!(cache.authorization().unwrap(), old);
        assert_eq!(cache.refreshes(), 2);
    }

    #[test]
    fn rotate_changes_issuer_and_drops_cached_token() {
        let clock = ManualClock::new();
        let cache = cache_with(&clock, TokenCacheConfig::default());
        let before = cache.authorization().unwrap();
        assert_eq!(payload(&before)["iss"], "APIkey");

        cache.rotate(Credentials::new("APIrotated", "another-secret"));
        let after = cache.authorization().unwrap();
        assert_eq!(payload(&after)["iss"], "APIrotated");
        assert_eq!(cache.refreshes(), 2);
        assert!(
            verify_at(
                &jwt(&after),
                |k| (k == "APIrotated").then(|| ApiSecret::new("another-secret")),
                clock.now(),
            )
            .is_ok()
        );
    }

    #[test]
    fn debug_shows_neither_secret_nor_token() {
        let clock = ManualClock::new();
        let cache = cache_with(&clock, TokenCacheConfig::default());
        let token = jwt(&cache.authorization().unwrap());
        let dbg = format!("{cache:?} {cache:#?}");
        assert!(!dbg.contains(SECRET), "{dbg}");
        assert!(!dbg.contains(&token), "{dbg}");
        // Nor any of its segments (the signature would be the interesting one).
        for segment in token.split('.') {
            assert!(!dbg.contains(segment), "{dbg}");
        }
        assert!(dbg.contains("APIkey"), "{dbg}");
        assert!(dbg.contains("refreshes: 1"), "{dbg}");
    }

    #[test]
    fn mint_errors_propagate_and_are_retried() {
        let clock = ManualClock::new();
        let cache = TokenCache::with_clock(
            Credentials::new("APIkey", ""),
            VideoGrants::room_record(),
            TokenCacheConfig::default(),
            {
                let clock = Arc::clone(&clock);
                move || clock.now()
            },
        );
        let err = cache.authorization().unwrap_err();
        assert!(matches!(err, AuthError::Signing(_)), "{err:?}");
        assert_eq!(cache.refreshes(), 0);

        cache.rotate(Credentials::new("APIkey", SECRET));
        assert!(cache.authorization().is_ok());
        assert_eq!(cache.refreshes(), 1);
    }
}
