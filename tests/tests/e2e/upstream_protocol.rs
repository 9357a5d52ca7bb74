//! How the gateway talks to LiveKit: HTTP/2 with prior knowledge (`--upstream-http2`),
//! multiplexed over one connection; over HTTP/1.1, at most `--max-upstream-connections`
//! calls on the wire, the rest waiting within their deadlines. Real upstreams on loopback:
//! an `h2` server that speaks nothing but HTTP/2, and a raw HTTP/1.1 one that counts its
//! connections; and the simulator over TLS, where ALPN picks HTTP/2.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use egress_e2e::certs::{TestCa, temp_dir};
use egress_e2e::{Gateway, ProxyOptions, read_request_head, sim_builder, spawn_sim};
use egress_proto::livekit::{self as lk};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Answers every request with an empty `ListEgressResponse`, over HTTP/2 only; counts the
/// TCP connections it accepted.
async fn h2_only_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // A client that does not open with the HTTP/2 preface fails here.
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/protobuf")
                            .body(())
                            .unwrap();
                        if let Ok(mut send) = respond.send_response(response, false) {
                            let _ = send.send_data(Bytes::new(), true);
                        }
                    });
                }
            });
        }
    });
    (format!("http://{addr}"), connections)
}

/// Fifty ListEgress calls at once through `gateway`, each answered.
async fn fifty_calls(gateway: &Gateway) {
    let channel = gateway.channel().await;
    let calls = (0..50).map(|_| {
        let mut client = lk::egress_client::EgressClient::new(channel.clone());
        async move { client.list_egress(lk::ListEgressRequest::default()).await }
    });
    for answer in futures_util::future::join_all(calls).await {
        answer.expect("answered over HTTP/2");
    }
}

/// Connections an h2-only upstream saw for fifty calls through a gateway that spreads its
/// calls over `pools` HTTP/2 connections.
async fn connections_for_fifty_calls(pools: usize) -> usize {
    let (url, connections) = h2_only_upstream().await;
    let gateway = Gateway::start(
        &url,
        ProxyOptions::default()
            .arg("--upstream-http2")
            .arg("--upstream-http2-connections")
            .arg(pools.to_string()),
    );
    fifty_calls(&gateway).await;
    connections.load(Ordering::SeqCst)
}

#[tokio::test]
async fn prior_knowledge_http2_multiplexes_calls_over_one_connection() {
    // The health probe and the calls share what the pool opened: one connection, maybe two
    // when the first ones raced.
    let opened = connections_for_fifty_calls(1).await;
    assert!(
        (1..=2).contains(&opened),
        "{opened} connections for 50 calls"
    );
}

#[tokio::test]
async fn calls_spread_over_the_configured_http2_connections() {
    let opened = connections_for_fifty_calls(4).await;
    assert!(
        (4..=8).contains(&opened),
        "{opened} connections for 50 calls over 4 pools"
    );
}

#[tokio::test]
async fn without_the_flag_a_plain_http_upstream_gets_http1() {
    let (url, _) = h2_only_upstream().await;
    let gateway = Gateway::start(&url, ProxyOptions::default());
    let mut client = gateway.client().await;
    let status = client
        .list_egress(lk::ListEgressRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn http1_calls_beyond_the_cap_wait_instead_of_opening_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (open2, most2) = (Arc::clone(&open), Arc::clone(&most));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let now = open2.fetch_add(1, Ordering::SeqCst) + 1;
            most2.fetch_max(now, Ordering::SeqCst);
            let open3 = Arc::clone(&open2);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((head_end, length)) = read_request_head(&mut stream, &mut buf).await
                {
                    if !egress_e2e::read_at_least(&mut stream, &mut buf, head_end + length).await {
                        break;
                    }
                    buf.drain(..head_end + length);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
                open3.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    let gateway = Gateway::start(
        &format!("http://{addr}"),
        ProxyOptions::default()
            .arg("--max-upstream-connections")
            .arg("2"),
    );
    let channel = gateway.channel().await;
    let calls = (0..6).map(|_| {
        let mut client = lk::egress_client::EgressClient::new(channel.clone());
        async move { client.list_egress(lk::ListEgressRequest::default()).await }
    });
    for answer in futures_util::future::join_all(calls).await {
        answer.expect("every call is answered in turn");
    }
    // Two calls on the wire at a time, plus the health probe's own connection.
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 3, "{most} connections open at once");
}

/// The simulator over TLS with a certificate from a fresh test CA, as LiveKit Cloud serves
/// (ALPN `h2`, `http/1.1`); returns it and the CA file the gateway may trust.
fn tls_sim() -> (egress_sim::SimHandle, std::path::PathBuf) {
    let dir = temp_dir("tls-upstream");
    let ca = TestCa::new("upstream CA");
    let leaf = ca.server(&dir, "sim");
    let tls = egress_sim::SimTls::from_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .expect("the test certificate serves");
    let sim = spawn_sim(sim_builder().tls(tls));
    (sim, ca.write(&dir, "ca.pem"))
}

fn trusting(ca: &std::path::Path) -> ProxyOptions {
    ProxyOptions::default()
        .arg("--upstream-ca-file")
        .arg(ca.display().to_string())
}

/// Fifty calls through `gateway`; each must have reached `sim` over HTTP/2.
async fn fifty_calls_over_http2(gateway: &Gateway, sim: &egress_sim::SimHandle) {
    fifty_calls(gateway).await;
    let versions: Vec<String> = sim.requests().into_iter().map(|r| r.version).collect();
    assert_eq!(versions.len(), 50);
    assert!(versions.iter().all(|v| v == "HTTP/2.0"), "{versions:?}");
}

#[tokio::test]
async fn an_https_upstream_gets_http2_by_alpn() {
    let (sim, ca) = tls_sim();
    assert!(sim.url().starts_with("https://"), "{}", sim.url());
    let gateway = Gateway::start(&sim.url(), trusting(&ca));
    fifty_calls_over_http2(&gateway, &sim).await;
}

#[tokio::test]
async fn with_upstream_http2_an_https_upstream_multiplexes_over_tls() {
    let (sim, ca) = tls_sim();
    let gateway = Gateway::start(
        &sim.url(),
        trusting(&ca)
            .arg("--upstream-http2")
            .arg("--upstream-http2-connections")
            .arg("2"),
    );
    fifty_calls_over_http2(&gateway, &sim).await;
}

#[tokio::test]
async fn an_upstream_certificate_from_an_untrusted_ca_is_refused() {
    let (sim, _ca) = tls_sim();
    let gateway = Gateway::start(&sim.url(), ProxyOptions::default());
    let status = gateway
        .client()
        .await
        .list_egress(lk::ListEgressRequest::default())
        .await
        .expect_err("the simulator's certificate is not trusted");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().to_lowercase().contains("certificate"),
        "{status:?}"
    );
    assert!(sim.requests().is_empty(), "nothing reached LiveKit");
}
