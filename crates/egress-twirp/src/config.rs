//! How a [`TwirpClient`](crate::TwirpClient) is set up. Its own module, so that the client
//! and the HTTP transport both read it without importing each other.

use std::time::Duration;

use crate::url::BaseUrl;

/// The default `User-Agent`: `livekit-egress-gateway/<version>`.
pub const USER_AGENT: &str = concat!("livekit-egress-gateway/", env!("CARGO_PKG_VERSION"));

/// Configuration of a [`TwirpClient`](crate::TwirpClient).
///
/// ```
/// use std::time::Duration;
/// use egress_twirp::{BaseUrl, ClientConfig};
///
/// let config = ClientConfig {
///     default_timeout: Duration::from_secs(60),
///     ..ClientConfig::new(BaseUrl::parse("ws://localhost:7880").unwrap(), "livekit.Egress")
/// };
/// assert_eq!(config.connect_timeout, Duration::from_secs(5));
/// assert_eq!(config.service, "livekit.Egress");
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The LiveKit server.
    pub base_url: BaseUrl,
    /// The Twirp service every call goes to (`livekit.Egress` for LiveKit's egress API: the
    /// name is the schema's, so callers take it from there, e.g. `egress_core::Rpc::SERVICE`).
    pub service: String,
    /// Time allowed to establish a connection, TLS included (default 5 s). Expiry is
    /// [`Error::Connect`](crate::Error::Connect).
    pub connect_timeout: Duration,
    /// Time budget of calls that have no deadline of their own (default 30 s: LiveKit's start
    /// calls can take 20 s and more). Expiry is [`Error::Timeout`](crate::Error::Timeout).
    pub default_timeout: Duration,
    /// How long an idle pooled connection is kept (default 30 s; `None` keeps it forever).
    ///
    /// After a burst, every connection it opened sits idle in the pool (up to
    /// [`pool_max_idle_per_host`](Self::pool_max_idle_per_host), which the proxy sets to its
    /// concurrency limit): this bound is what closes them. The pool looks once per timeout,
    /// so an idle connection is closed between one and two timeouts after its last use. With
    /// [`http2_only`](Self::http2_only), a connection with a call in flight is never idle.
    pub pool_idle_timeout: Option<Duration>,
    /// Most idle connections kept per host (default 32).
    pub pool_max_idle_per_host: usize,
    /// TCP keep-alive of pooled connections (default 30 s; `None` disables it).
    pub tcp_keepalive: Option<Duration>,
    /// The `User-Agent` header (default [`USER_AGENT`]).
    pub user_agent: String,
    /// Most bytes of a successful answer (default 16 MiB); a larger one is [`Error::TooLarge`](crate::Error::TooLarge).
    pub max_response_bytes: usize,
    /// Honour the `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` environment variables (default `true`).
    pub proxy_from_env: bool,
    /// Extra trusted root certificates, as a PEM bundle, on top of the platform's (default
    /// none): for a LiveKit server behind a private CA.
    pub extra_root_certs_pem: Option<Vec<u8>>,
    /// Speak HTTP/2 only: with prior knowledge on `http://` (h2c), by ALPN on `https://`
    /// (default `false`: HTTP/2 when ALPN offers it, HTTP/1.1 otherwise). Calls then share
    /// [`http2_connections`](Self::http2_connections) multiplexed connections, each call no
    /// more than its HTTP/2 stream; a server that picks HTTP/1.1 by ALPN is a
    /// [`Error::Connect`](crate::Error::Connect).
    pub http2_only: bool,
    /// With [`http2_only`](Self::http2_only): HTTP/2 connections the calls spread over
    /// (default 1), in turn. A server limits the streams of one connection (Go's default 250,
    /// hyper's 200); calls beyond that wait in `h2` for a stream, so more calls in flight
    /// than that want more connections.
    pub http2_connections: usize,
    /// Most calls on the wire at once (default `None`: unbounded). Over HTTP/1.1 each needs
    /// its own connection, so this bounds upstream connections and descriptors; calls beyond
    /// it wait for a place within their own deadline.
    pub max_connections: Option<usize>,
}

impl ClientConfig {
    /// A configuration for `service` at `base_url`, with the defaults documented on each
    /// field.
    pub fn new(base_url: BaseUrl, service: impl Into<String>) -> Self {
        Self {
            base_url,
            service: service.into(),
            connect_timeout: Duration::from_secs(5),
            default_timeout: Duration::from_secs(30),
            pool_idle_timeout: Some(Duration::from_secs(30)),
            pool_max_idle_per_host: 32,
            tcp_keepalive: Some(Duration::from_secs(30)),
            user_agent: USER_AGENT.to_owned(),
            max_response_bytes: 16 * 1024 * 1024,
            proxy_from_env: true,
            extra_root_certs_pem: None,
            http2_only: false,
            http2_connections: 1,
            max_connections: None,
        }
    }
}
