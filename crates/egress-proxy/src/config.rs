//! Command line and environment, parsed into one typed [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use egress_auth::{ApiSecret, Credentials};

/// gRPC gateway for LiveKit's Egress API: callers speak gRPC, LiveKit hears Twirp, and only
/// the gateway holds the API secret.
#[derive(Debug, Parser)]
#[command(name = "egress-proxy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run only the built-in LiveKit egress simulator (keys from LIVEKIT_API_KEY/SECRET).
    Simulate {
        /// Address the simulator listens on.
        #[arg(long, default_value = "127.0.0.1:7880")]
        listen: SocketAddr,
    },
}

/// Options of the gateway itself.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the gRPC listener.
    #[arg(long, env = "EGRESS_PROXY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Address of the admin HTTP listener: /metrics, /healthz, /readyz.
    #[arg(
        long,
        env = "EGRESS_PROXY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,

    /// LiveKit server URL (http, https, ws or wss; a path prefix is kept).
    #[arg(long, env = "LIVEKIT_URL")]
    pub livekit_url: Option<String>,

    /// LiveKit API key (the `iss` of the tokens the gateway mints).
    #[arg(long, env = "LIVEKIT_API_KEY")]
    pub api_key: Option<String>,

    /// File holding the API secret, or one `KEY: SECRET` line. Preferred over
    /// LIVEKIT_API_SECRET, which is read from the environment only (never a flag, so it
    /// doesn't show in the process list).
    #[arg(long, env = "LIVEKIT_API_SECRET_FILE")]
    pub api_secret_file: Option<PathBuf>,

    /// Start the built-in LiveKit egress simulator on a loopback port and forward to it.
    #[arg(long)]
    pub dev: bool,

    /// Policy file (TOML): caller authentication mode, callers and what each may do.
    /// Reloaded on SIGHUP and when it changes.
    #[arg(long, env = "EGRESS_PROXY_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// Accept calls without authentication on a non-loopback listener. Without a policy
    /// file (or with `mode = "none"`) anyone who reaches the port can start recordings.
    #[arg(long, env = "EGRESS_PROXY_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// PEM certificate chain for TLS on the gRPC listener (with --tls-key).
    #[arg(long, env = "EGRESS_PROXY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS on the gRPC listener (with --tls-cert).
    #[arg(long, env = "EGRESS_PROXY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: require client certificates signed by these CAs (mTLS).
    #[arg(long, env = "EGRESS_PROXY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Browser origins allowed to call the listener cross-origin (gRPC-Web and Twirp), e.g.
    /// `https://dash.example.com`; repeatable or comma-separated, `*` for any. Off by default:
    /// browsers then allow only pages served from the gateway's own origin.
    #[arg(
        long = "cors-allow-origin",
        env = "EGRESS_PROXY_CORS_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allow_origins: Vec<String>,

    /// Log format.
    #[arg(long, env = "EGRESS_PROXY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address of the webhook receiver: point LiveKit's `webhook.urls` at
    /// http://ADDR/webhook. Without it, reconciliation alone feeds the event stream (one
    /// --reconcile-interval behind). With --dev: a loopback port the simulator posts to.
    #[arg(long, env = "EGRESS_PROXY_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<SocketAddr>,

    /// Redis for events across replicas (redis://[user:password@]host:port[/db]). Without
    /// it, events reach the watchers of the replica that received them.
    #[arg(long, env = "EGRESS_PROXY_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub upstream_settings: UpstreamSettings,

    #[command(flatten)]
    pub events: EventSettings,
}

/// Bounds on callers: message size, calls and connections at once, and how long a call or
/// a connection may take.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Limits")]
pub struct Limits {
    /// Largest request or response message in bytes (LiveKit itself accepts up to 10 MiB).
    #[arg(long, env = "EGRESS_PROXY_MAX_MESSAGE_SIZE", default_value_t = 4 * 1024 * 1024)]
    pub max_message_size: usize,

    /// Calls in flight before new ones are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "EGRESS_PROXY_MAX_CONCURRENCY", default_value_t = 1024)]
    pub max_concurrency: usize,

    /// Upper bound on any call's budget, the caller's own deadline included. Off by
    /// default: the caller's deadline governs.
    #[arg(long, env = "EGRESS_PROXY_MAX_CALL_TIMEOUT", value_parser = parse_duration)]
    pub max_call_timeout: Option<Duration>,

    /// Calls in flight on one client connection before new ones on it are refused with
    /// RESOURCE_EXHAUSTED (one connection cannot take every slot).
    #[arg(
        long,
        env = "EGRESS_PROXY_MAX_CONCURRENCY_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_concurrency_per_connection: usize,

    /// Client connections served at once; more wait in the accept backlog. Default: half
    /// the open-files limit (raised to its hard limit at start-up).
    #[arg(long, env = "EGRESS_PROXY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Time a new connection has to send its first request's headers (TLS handshake
    /// included) before it is closed.
    #[arg(long, env = "EGRESS_PROXY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time a connection may stay without any open stream before it gets GOAWAY (health
    /// Watch streams count as open).
    #[arg(long, env = "EGRESS_PROXY_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long in-flight calls may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "EGRESS_PROXY_DRAIN_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// How often the upstream is probed for the health service.
    #[arg(long, env = "EGRESS_PROXY_PROBE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub probe_interval: Duration,

    /// Serve client connections on this many single-threaded runtimes, each connection on
    /// one for its whole life (no work stealing between threads); 0: the one shared
    /// multi-threaded runtime (its worker count from TOKIO_WORKER_THREADS, else the CPUs).
    #[arg(long, env = "EGRESS_PROXY_IO_THREADS", default_value_t = 0)]
    pub io_threads: usize,
}

/// How the gateway talks to LiveKit.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Upstream")]
pub struct UpstreamSettings {
    /// Upstream budget for calls that carry no gRPC deadline. Starting an egress can take
    /// 20-30 s on a busy LiveKit, so keep this generous.
    #[arg(long, env = "EGRESS_PROXY_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// TCP/TLS connect timeout towards LiveKit.
    #[arg(long, env = "EGRESS_PROXY_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// What the upstream is: `cloud` (retries writes, fails over across regions from
    /// /settings/regions), `oss`, or `auto` (cloud for *.livekit.cloud and *.livekit.run).
    #[arg(long, env = "EGRESS_PROXY_UPSTREAM_FLAVOR", value_enum, default_value_t = UpstreamFlavor::Auto)]
    pub upstream_flavor: UpstreamFlavor,

    /// Retry Start/Stop/Update on 5xx and transport errors (with the same
    /// X-Livekit-Request-Id). Safe only where LiveKit deduplicates by that id: LiveKit Cloud
    /// does (and gets these retries anyway); the open-source server does not for egress, so
    /// a retried Start there can start a second recording.
    #[arg(long, env = "EGRESS_PROXY_RETRY_WRITES")]
    pub retry_writes: bool,

    /// Speak only HTTP/2 to LiveKit: prior knowledge (h2c) on http://, ALPN on https://.
    /// Without it, https:// upstreams get HTTP/2 when they offer it, http:// get HTTP/1.1.
    #[arg(long, env = "EGRESS_PROXY_UPSTREAM_HTTP2")]
    pub upstream_http2: bool,

    /// With --upstream-http2: connections the calls spread over. LiveKit (Go) lets one
    /// connection carry 250 calls at once, so this times 250 is how many can be in flight.
    #[arg(
        long,
        env = "EGRESS_PROXY_UPSTREAM_HTTP2_CONNECTIONS",
        default_value_t = 8
    )]
    pub upstream_http2_connections: usize,

    /// Upstream calls on the wire at once: over HTTP/1.1 each holds a connection, so this
    /// bounds connections to LiveKit (and descriptors). Calls beyond it wait within their
    /// deadline.
    #[arg(
        long,
        env = "EGRESS_PROXY_MAX_UPSTREAM_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_upstream_connections: usize,

    /// PEM CA bundle trusted for an `https://` LiveKit URL besides the system's roots (a
    /// TLS-terminating proxy with a private CA in front of LiveKit).
    #[arg(long, env = "EGRESS_PROXY_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,
}

/// The event stream (`EgressEvents/Watch`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Events")]
pub struct EventSettings {
    /// While anyone watches events, how often LiveKit's active egresses are polled to catch
    /// what webhooks missed (jittered by ±20 %).
    #[arg(long, env = "EGRESS_PROXY_RECONCILE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,

    /// Events a watcher may fall behind before it is ended with RESOURCE_EXHAUSTED.
    #[arg(long, env = "EGRESS_PROXY_WATCH_QUEUE", default_value_t = 1024)]
    pub watch_queue: usize,

    /// Event streams (EgressEvents/Watch) served at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "EGRESS_PROXY_MAX_WATCHERS", default_value_t = 20_000)]
    pub max_watchers: usize,
}

/// What kind of LiveKit the upstream is (`--upstream-flavor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpstreamFlavor {
    /// LiveKit Cloud when the URL's host is `*.livekit.cloud` or `*.livekit.run`.
    Auto,
    /// LiveKit Cloud: deduplicates by request id, has regions.
    Cloud,
    /// A self-hosted (open-source) server.
    Oss,
}

/// A Redis URL; it may carry a password, so it never prints.
#[derive(Clone)]
pub struct RedisUrl(pub String);

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisUrl(<redacted>)")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where calls go.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// A LiveKit server (or LiveKit Cloud) at this URL.
    LiveKit(String),
    /// The built-in simulator, started on a loopback port.
    DevSimulator,
}

/// The gateway's whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub upstream: Upstream,
    pub credentials: Credentials,
    pub log_format: LogFormat,
    pub tls: Option<crate::tls::TlsFiles>,
    pub policy_file: Option<PathBuf>,
    pub allow_unauthenticated: bool,
    /// The secret file, when the secret came from one (reloaded for key rotation).
    pub api_secret_file: Option<PathBuf>,
    /// The API key given explicitly, if any (checked against a `KEY: SECRET` file on reload).
    pub api_key: Option<String>,
    /// `None`: no webhook receiver (with --dev, a loopback port is picked).
    pub webhook_listen: Option<SocketAddr>,
    pub redis_url: Option<RedisUrl>,
    pub cors: crate::cors::CorsOrigins,
    pub limits: Limits,
    pub upstream_settings: UpstreamSettings,
    pub events: EventSettings,
}

/// Configuration that cannot work; each message says what to set.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no upstream: set LIVEKIT_URL (or --livekit-url), or pass --dev to use the built-in simulator"
    )]
    MissingUrl,
    #[error("no API key: set LIVEKIT_API_KEY (or --api-key)")]
    MissingKey,
    #[error("no API secret: set LIVEKIT_API_SECRET or --api-secret-file")]
    MissingSecret,
    #[error("invalid API secret file: {0}")]
    SecretFile(#[source] egress_auth::AuthError),
    #[error(
        "callers would be unauthenticated on non-loopback address {0}: set --policy-file with an auth mode, listen on 127.0.0.1, or pass --allow-unauthenticated"
    )]
    UnauthenticatedExposed(SocketAddr),
    #[error(transparent)]
    Cors(#[from] crate::cors::BadOrigin),
    #[error(
        "policy file {path}: auth mode \"mtls\" needs --tls-cert, --tls-key and --tls-client-ca"
    )]
    MtlsWithoutClientCa { path: String },
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("--max-message-size must be at least 1 byte")]
    ZeroMessageSize,
    // The URL itself is not shown: it may carry the Redis password.
    #[error("--redis-url is not a Redis URL (redis://[user:password@]host:port[/db])")]
    RedisUrl,
}

impl RunArgs {
    /// Validates the arguments into a [`Config`], reading secrets from the environment or
    /// the secret file.
    pub fn into_config(mut self) -> Result<Config, ConfigError> {
        // An exported-but-empty variable means "not set", as it does for LiveKit's tools.
        self.api_key = self.api_key.filter(|k| !k.is_empty());
        self.livekit_url = self.livekit_url.filter(|u| !u.is_empty());
        for (flag, value) in [
            ("--max-concurrency", self.limits.max_concurrency),
            (
                "--max-concurrency-per-connection",
                self.limits.max_concurrency_per_connection,
            ),
            (
                "--max-connections",
                self.limits.max_connections.unwrap_or(1),
            ),
            ("--watch-queue", self.events.watch_queue),
            ("--max-watchers", self.events.max_watchers),
            (
                "--max-upstream-connections",
                self.upstream_settings.max_upstream_connections,
            ),
            (
                "--upstream-http2-connections",
                self.upstream_settings.upstream_http2_connections,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        if self.limits.max_message_size == 0 {
            return Err(ConfigError::ZeroMessageSize);
        }
        if self.events.reconcile_interval.is_zero() {
            return Err(ConfigError::Zero("--reconcile-interval"));
        }
        let redis_url = self.redis_url.filter(|u| !u.is_empty()).map(RedisUrl);
        if let Some(url) = &redis_url
            && redis::parse_redis_url(&url.0).is_none()
        {
            return Err(ConfigError::RedisUrl);
        }
        // Secrets are read only through egress-auth, which never displays them.
        let env_secret = ApiSecret::from_env();
        let credentials = match (&self.api_secret_file, env_secret) {
            (Some(path), _) => Credentials::from_secret_file(path, self.api_key.as_deref())
                .map_err(ConfigError::SecretFile)?,
            (None, Some(secret)) => {
                Credentials::new(self.api_key.clone().ok_or(ConfigError::MissingKey)?, secret)
            }
            // The simulator accepts whatever keys we give it, so a newcomer needs none.
            (None, None) if self.dev => Credentials::new(
                self.api_key.clone().unwrap_or_else(|| "devkey".into()),
                ApiSecret::new(random_secret()),
            ),
            (None, None) => {
                return Err(if self.api_key.is_none() {
                    ConfigError::MissingKey
                } else {
                    ConfigError::MissingSecret
                });
            }
        };
        let upstream = match (self.dev, self.livekit_url) {
            (true, _) => Upstream::DevSimulator,
            (false, Some(url)) if !url.is_empty() => Upstream::LiveKit(url),
            (false, _) => return Err(ConfigError::MissingUrl),
        };
        Ok(Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            upstream,
            credentials,
            log_format: self.log_format,
            policy_file: self.policy_file,
            allow_unauthenticated: self.allow_unauthenticated,
            api_secret_file: self.api_secret_file,
            api_key: self.api_key,
            webhook_listen: self.webhook_listen,
            redis_url,
            cors: crate::cors::CorsOrigins::parse(&self.cors_allow_origins)?,
            limits: self.limits,
            upstream_settings: self.upstream_settings,
            events: self.events,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| crate::tls::TlsFiles {
                    cert,
                    key,
                    client_ca: self.tls_client_ca,
                }),
        })
    }
}

fn random_secret() -> String {
    // Two v4 UUIDs: 244 random bits from the OS generator, no extra dependency.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Parses `500ms`, `30s`, `2m`, `1h` or plain seconds (`30`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 30s, 2m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "`{text}`: unknown unit `{unit}` (use ms, s, m or h)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("ms").is_err());
    }
}
