//! HTTPS loopback tests: HTTP/2 through ALPN, HTTP/1.1 fallback, certificate failures.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use egress_twirp::{
    BaseUrl, CallOptions, ClientConfig, Error, StaticAuthorization, TwirpClient, TwirpCode,
};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

const TEST_LIMIT: Duration = Duration::from_secs(5);

struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn make_pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "egress-twirp test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

#[derive(Default)]
struct State {
    connections: AtomicUsize,
    versions: Mutex<Vec<http::Version>>,
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    state.versions.lock().unwrap().push(req.version());
    let path = req.uri().path().to_owned();
    let ct = req.headers()["content-type"].clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let response = if path.ends_with("/NotFound") {
        hyper::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"code":"not_found","msg":"egress does not exist"}"#,
            )))
    } else {
        hyper::Response::builder()
            .status(200)
            .header("content-type", ct)
            .body(Full::new(body))
    };
    Ok(response.unwrap())
}

async fn tls_server(pki: &Pki, alpn: &[&[u8]]) -> (SocketAddr, Arc<State>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State::default());
    let server_state = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            server_state.connections.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let state = server_state.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |req| handle(state.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, state)
}

fn client(addr: SocketAddr, ca_pem: Option<&str>) -> TwirpClient {
    let mut config = ClientConfig::new(
        BaseUrl::parse(&format!("wss://{addr}")).unwrap(),
        "livekit.Egress",
    );
    config.proxy_from_env = false;
    config.extra_root_certs_pem = ca_pem.map(|p| p.as_bytes().to_vec());
    TwirpClient::new(config, StaticAuthorization::bearer("t").unwrap()).unwrap()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test exceeded its time limit")
}

#[tokio::test]
async fn http2_is_negotiated_through_alpn_and_multiplexed() {
    bounded(async {
        let pki = make_pki();
        let (addr, state) = tls_server(&pki, &[b"h2", b"http/1.1"]).await;
        let client = client(addr, Some(&pki.ca_pem));
        let resp = client
            .call("Echo", Bytes::from_static(b"abc"), &CallOptions::new())
            .await
            .unwrap();
        assert_eq!(resp.version, http::Version::HTTP_2);
        assert_eq!(&resp.body[..], b"abc");

        // Concurrent calls share the one HTTP/2 connection.
        let calls = (0..8).map(|i| {
            let client = client.clone();
            async move {
                client
                    .call("Echo", Bytes::from(vec![i; 10]), &CallOptions::new())
                    .await
            }
        });
        for (i, result) in join_all_spawned(calls).await.into_iter().enumerate() {
            assert_eq!(result.unwrap().body, vec![i as u8; 10]);
        }
        let err = client
            .call("NotFound", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Twirp(e) if e.code == TwirpCode::NotFound));
        assert_eq!(state.connections.load(Ordering::SeqCst), 1);
        assert!(
            state
                .versions
                .lock()
                .unwrap()
                .iter()
                .all(|v| *v == http::Version::HTTP_2)
        );
    })
    .await;
}

/// Runs the futures concurrently as tasks and collects their outputs in order.
async fn join_all_spawned<I, F>(futures: I) -> Vec<F::Output>
where
    I: IntoIterator<Item = F>,
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn http1_when_the_server_offers_only_http1() {
    bounded(async {
        let pki = make_pki();
        let (addr, state) = tls_server(&pki, &[b"http/1.1"]).await;
        let client = client(addr, Some(&pki.ca_pem));
        for _ in 0..3 {
            let resp = client
                .call("Echo", Bytes::from_static(b"abc"), &CallOptions::new())
                .await
                .unwrap();
            assert_eq!(resp.version, http::Version::HTTP_11);
        }
        // Keep-alive: one connection for sequential calls.
        assert_eq!(state.connections.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn untrusted_certificate_is_tls_error() {
    bounded(async {
        let pki = make_pki();
        let (addr, _) = tls_server(&pki, &[b"h2", b"http/1.1"]).await;
        let err = client(addr, None)
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err:?}");

        // Trusting another CA does not help either.
        let other = make_pki();
        let err = client(addr, Some(&other.ca_pem))
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
    })
    .await;
}

#[test]
fn bad_extra_root_pem_is_rejected_at_build() {
    let mut config = ClientConfig::new(
        BaseUrl::parse("https://example.invalid").unwrap(),
        "livekit.Egress",
    );
    config.extra_root_certs_pem = Some(b"not a certificate".to_vec());
    let err = TwirpClient::new(config, StaticAuthorization::bearer("t").unwrap()).unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}
