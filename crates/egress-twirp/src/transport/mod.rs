//! The HTTP transport under [`TwirpClient`](crate::TwirpClient): hyper's pooled client over
//! rustls, with the connect bound and the environment's proxy applied where connections are
//! made.
//!
//! This is hyper directly rather than reqwest: the gateway posts to one server at a handful of
//! fixed paths, so the request URIs are built once, and reqwest's per-request URL parsing,
//! redirect and retry layers were a fifth of the gateway's CPU per call (callgrind).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Uri;
use http_body_util::Full;
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

/// Request bodies: the caller's bytes, sent as one frame without copying.
pub(crate) type RequestBody = Full<Bytes>;

/// The pooled HTTP/1.1 + HTTP/2 client.
pub(crate) type HttpClient = Client<Connector, RequestBody>;

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

/// Builds `pools` pooled clients for `config` (more than one only for HTTP/2, where a pool
/// keeps one connection per host). They share one connector, so the TLS configuration (the
/// platform verifier and its roots) and the proxy decision are made once.
///
/// TLS verifies with the platform's trust store (plus [`ClientConfig::extra_root_certs_pem`])
/// and offers HTTP/2 and HTTP/1.1 through ALPN. When [`ClientConfig::proxy_from_env`] is set
/// and `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (minus `NO_PROXY`) apply to the LiveKit URL,
/// every connection is a `CONNECT` tunnel through that proxy.
pub(crate) fn build(
    config: &ClientConfig,
    base: &Uri,
    pools: usize,
) -> Result<Vec<HttpClient>, Error> {
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
    let connector = Connector {
        route,
        timeout: config.connect_timeout,
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .http2_adaptive_window(true)
        .http2_only(config.http2_only);
    Ok((0..pools.max(1))
        .map(|_| builder.build(connector.clone()))
        .collect())
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
