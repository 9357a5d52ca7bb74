//! The HTTP transport under [`TwirpClient`](crate::TwirpClient): how connections to LiveKit
//! are opened (TCP, the environment's proxy, rustls, all within the connect bound), and the
//! two ways calls go over them:
//!
//! * by default, hyper's pooled client: HTTP/1.1 keep-alive, or HTTP/2 where ALPN offers it;
//! * with [`ClientConfig::http2_only`], a few multiplexed HTTP/2 connections of our own
//!   ([`h2`](self::h2)), where a call costs its stream and nothing else.
//!
//! This is hyper directly rather than reqwest: the gateway posts to one server at a handful of
//! fixed paths, so the request URIs are built once, and reqwest's per-request URL parsing,
//! redirect and retry layers were a fifth of the gateway's CPU per call (callgrind).

mod h2;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Either};
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;

use crate::config::ClientConfig;
use crate::error::Error;

/// hyper's pooled HTTP/1.1 + HTTP/2 client; request bodies are the caller's bytes, sent as
/// one frame without copying.
type HttpClient = Client<Connector, Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection to LiveKit, TLS or not, straight or through a proxy's tunnel.
pub(crate) type Connection = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Opens connections to LiveKit: TCP (optionally through an HTTP proxy's `CONNECT` tunnel),
/// then TLS for `https`, all within the connect timeout.
#[derive(Clone)]
pub(crate) struct Connector {
    route: Route,
    timeout: Duration,
}

#[derive(Clone)]
enum Route {
    Direct(HttpsConnector<HttpConnector>),
    Tunnel(HttpsConnector<Tunnel<HttpConnector>>),
}

impl tower::Service<Uri> for Connector {
    type Response = Connection;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Connection, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Both routes are ready once built; each connect runs on its own clone below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        use tower::ServiceExt;
        let timeout = self.timeout;
        let route = self.route.clone();
        Box::pin(async move {
            let connect = async {
                match route {
                    Route::Direct(c) => c.oneshot(dst).await,
                    Route::Tunnel(c) => c.oneshot(dst).await,
                }
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connection not established within {timeout:?}"),
                )) as BoxError),
            }
        })
    }
}

/// How calls reach LiveKit: one of the two ways in the module's documentation.
pub(crate) enum Transport {
    // Boxed: hyper's client is a few hundred bytes, the pool a pointer.
    Pooled(Box<HttpClient>),
    Http2(h2::Pool),
}

impl Transport {
    /// The transport for `config`: its connector (TLS configuration, the platform verifier
    /// and its roots, and the proxy decision are made once), and hyper's pool over it or,
    /// with [`ClientConfig::http2_only`], [`ClientConfig::http2_connections`] HTTP/2
    /// connections.
    ///
    /// TLS verifies with the platform's trust store (plus
    /// [`ClientConfig::extra_root_certs_pem`]) and offers HTTP/2 and HTTP/1.1 through ALPN.
    /// When [`ClientConfig::proxy_from_env`] is set and `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`
    /// (minus `NO_PROXY`) apply to the LiveKit URL, every connection is a `CONNECT` tunnel
    /// through that proxy.
    pub(crate) fn build(config: &ClientConfig, base: &Uri) -> Result<Self, Error> {
        let connector = connector(config, base)?;
        if config.http2_only {
            return Ok(Transport::Http2(h2::Pool::new(
                connector,
                config,
                base.clone(),
            )));
        }
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .http2_adaptive_window(true);
        Ok(Transport::Pooled(Box::new(builder.build(connector))))
    }

    /// Sends `request`; a failure to get an answer head is classified.
    ///
    /// Not an `async fn`: that would keep `request` in its state beside the transport's
    /// future, which holds the request too, for every call in flight.
    pub(crate) fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> impl Future<Output = Result<http::Response<UpstreamBody>, Error>> + Send + use<'_> {
        match self {
            Transport::Pooled(client) => Either::Left(client.request(request.map(Full::new)).map(
                |sent| match sent {
                    Ok(response) => Ok(response.map(UpstreamBody::Pooled)),
                    Err(e) => Err(classify(&e, Phase::Send)),
                },
            )),
            Transport::Http2(pool) => Either::Right(
                pool.send(request)
                    .map(|sent| sent.map(|response| response.map(UpstreamBody::Http2))),
            ),
        }
    }
}

/// An answer's body, from either transport; its errors are already classified
/// ([`Error::Body`], [`Error::Tls`]).
pub(crate) enum UpstreamBody {
    Pooled(Incoming),
    Http2(h2::RecvBody),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.get_mut() {
            UpstreamBody::Pooled(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| classify(&e, Phase::Body)),
            UpstreamBody::Http2(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| classify(&e, Phase::Body)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Pooled(body) => body.is_end_stream(),
            UpstreamBody::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Pooled(body) => body.size_hint(),
            UpstreamBody::Http2(body) => body.size_hint(),
        }
    }
}

fn connector(config: &ClientConfig, base: &Uri) -> Result<Connector, Error> {
    let tls = tls_config(config)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(config.tcp_keepalive);
    http.set_connect_timeout(Some(config.connect_timeout));

    let proxy = config
        .proxy_from_env
        .then(Matcher::from_env)
        .and_then(|matcher| matcher.intercept(base));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions();
    let route = match proxy {
        None => Route::Direct(https.wrap_connector(http)),
        Some(intercept) => {
            let mut tunnel = Tunnel::new(intercept.uri().clone(), http);
            if let Some(auth) = intercept.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            Route::Tunnel(https.wrap_connector(tunnel))
        }
    };
    Ok(Connector {
        route,
        timeout: config.connect_timeout,
    })
}

/// Installs rustls' `ring` provider as the process default unless one is already installed.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn tls_config(config: &ClientConfig) -> Result<rustls::ClientConfig, Error> {
    ensure_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = match &config.extra_root_certs_pem {
        None => rustls_platform_verifier::Verifier::new(Arc::clone(&provider)),
        Some(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Tls(format!("extra root certificates: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Tls(
                    "extra root certificates: the PEM bundle holds no certificate".into(),
                ));
            }
            rustls_platform_verifier::Verifier::new_with_extra_roots(certs, Arc::clone(&provider))
        }
    }
    .map_err(|e| Error::Tls(format!("platform certificate verifier: {e}")))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(format!("TLS protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Sending the request and waiting for the answer's head.
    Send,
    /// Reading the answer's body.
    Body,
}

/// Maps a transport error to the transport variants of [`Error`].
///
/// * a TLS error anywhere in the source chain → [`Error::Tls`];
/// * while reading the body → [`Error::Body`];
/// * connection not established (refused, DNS, unreachable, connect timeout) → [`Error::Connect`];
/// * anything else before the answer's head (reset, closed, incomplete message) →
///   [`Error::Reset`].
pub(crate) fn classify(err: &(dyn std::error::Error + 'static), phase: Phase) -> Error {
    let detail = describe(err);
    if any_in_chain(err, &mut |e| e.is::<rustls::Error>()) {
        return Error::Tls(detail);
    }
    if phase == Phase::Body {
        return Error::Body(detail);
    }
    let connecting = err
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(hyper_util::client::legacy::Error::is_connect);
    if connecting {
        return Error::Connect(detail);
    }
    Error::Reset(detail)
}

/// Calls `f` on every error of `err`'s source chain, including the errors wrapped inside
/// `io::Error`s (whose `source()` skips them). Stops when `f` returns `true`.
pub(crate) fn any_in_chain(
    err: &(dyn std::error::Error + 'static),
    f: &mut dyn FnMut(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut current = Some(err);
    let mut depth = 0;
    while let Some(e) = current {
        if f(e) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if depth < 16 && any_in_chain(inner, f) {
                return true;
            }
        }
        depth += 1;
        if depth > 32 {
            break;
        }
        current = e.source();
    }
    false
}

/// A one-line description of a transport error and its causes.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    any_in_chain(err, &mut |e| {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        false
    });
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    /// A test error: a message and an optional source.
    #[derive(Debug)]
    struct Msg(String, Option<Box<dyn std::error::Error + Send + Sync>>);

    impl fmt::Display for Msg {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Msg {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static))
        }
    }

    /// `Msg("link 0") -> … -> Msg("link {len - 1}")`, or, with `io_at`, a chain whose link at
    /// that position is an `io::Error` wrapping `Msg("marker")` (and ends there).
    fn chain(len: usize, io_at: Option<usize>) -> Msg {
        let end = io_at.unwrap_or(len);
        let mut tail: Option<Box<dyn std::error::Error + Send + Sync>> =
            io_at.map(|_| Box::new(std::io::Error::other(Msg("marker".into(), None))) as Box<_>);
        for i in (1..end).rev() {
            tail = Some(Box::new(Msg(format!("link {i}"), tail)));
        }
        Msg("link 0".into(), tail)
    }

    #[test]
    fn source_chains_are_walked_to_a_bound() {
        let mut seen = 0;
        any_in_chain(&chain(100, None), &mut |_| {
            seen += 1;
            false
        });
        assert_eq!(seen, 33, "the error and 32 sources");
        let mut seen = 0;
        any_in_chain(&chain(5, None), &mut |_| {
            seen += 1;
            false
        });
        assert_eq!(seen, 5);
        // Errors inside io::Errors (which `source()` skips) are looked at, up to position 15.
        // (By type: the io::Error itself displays as the error it wraps.)
        let is_marker = &mut |e: &(dyn std::error::Error + 'static)| {
            e.downcast_ref::<Msg>().is_some_and(|m| m.0 == "marker")
        };
        assert!(any_in_chain(&chain(0, Some(1)), is_marker));
        assert!(any_in_chain(&chain(0, Some(15)), is_marker));
        assert!(!any_in_chain(&chain(0, Some(16)), is_marker));
    }

    #[test]
    fn describe_joins_distinct_messages() {
        assert_eq!(describe(&chain(3, None)), "link 0: link 1: link 2");
        // A source already quoted by its parent, or with no text, adds nothing.
        let err = Msg(
            "error trying to connect: connection refused".into(),
            Some(Box::new(Msg(
                String::new(),
                Some(Box::new(Msg("connection refused".into(), None))),
            ))),
        );
        assert_eq!(
            describe(&err),
            "error trying to connect: connection refused"
        );
        assert_eq!(describe(&chain(0, Some(1))), "link 0: marker");
    }
}
