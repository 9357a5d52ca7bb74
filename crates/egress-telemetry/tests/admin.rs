//! The admin endpoint over real loopback HTTP/1.1, fetched with a plain hyper client.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::value;
use egress_telemetry::{AdminState, METRICS_CONTENT_TYPE, Metrics, MetricsLayer, serve_admin};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::{Layer, ServiceExt};

struct Admin {
    addr: SocketAddr,
    state: AdminState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(metrics: Metrics) -> Admin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AdminState::new(metrics);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_admin(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    Admin {
        addr,
        state,
        stop: Some(stop),
        task,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// One request on a fresh HTTP/1.1 connection.
async fn fetch(addr: SocketAddr, method: Method, path: &str) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    drop(sender);
    let _ = conn.await;
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    fetch(addr, Method::GET, path).await
}

#[tokio::test]
async fn healthz_and_readyz() {
    let admin = start(Metrics::new()).await;

    let health = get(admin.addr, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, "ok");
    assert_eq!(health.headers["content-type"], "text/plain; charset=utf-8");

    // Not ready until the upstream has been reached.
    let ready = get(admin.addr, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body, "upstream unreachable");

    admin.state.set_upstream_reachable(true);
    let ready = get(admin.addr, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body, "ready");

    admin.state.set_upstream_reachable(false);
    let ready = get(admin.addr, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body, "upstream unreachable");

    admin.state.set_upstream_reachable(true);
    admin.state.set_draining();
    let ready = get(admin.addr, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body, "draining");

    // Liveness is unaffected by readiness.
    assert_eq!(get(admin.addr, "/healthz").await.status, StatusCode::OK);

    stop(admin).await;
}

#[tokio::test]
async fn metrics_endpoint_serves_every_metric() {
    let metrics = Metrics::with_version("9.9.9-test");
    let mints = Arc::new(AtomicU64::new(2));
    let source = Arc::clone(&mints);
    metrics.register_token_refreshes(Arc::new(move || source.load(Ordering::Relaxed)));

    // One call through the layer, one upstream round trip, one upstream error.
    let svc = MetricsLayer::new(metrics.clone()).layer(tower::service_fn(
        |_req: Request<Empty<Bytes>>| async {
            let response = http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "4")
                .body(Empty::<Bytes>::new())
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        },
    ));
    let request = Request::post("/livekit.Egress/StartRoomCompositeEgress")
        .body(Empty::new())
        .unwrap();
    drop(svc.oneshot(request).await.unwrap());
    metrics.observe_upstream("StartRoomCompositeEgress", Duration::from_millis(7));
    metrics.upstream_error("timeout");
    metrics.upstream_error("timeout");
    metrics.upstream_error("connect");

    let admin = start(metrics.clone()).await;
    let answer = get(admin.addr, "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], METRICS_CONTENT_TYPE);
    assert_eq!(answer.headers["cache-control"], "no-store");
    let text = answer.body;
    assert!(text.ends_with("# EOF\n"), "{text}");

    let rpc = "StartRoomCompositeEgress";
    assert_eq!(
        value(
            &text,
            &format!(
                r#"egress_proxy_calls_total{{door="grpc",rpc="{rpc}",code="DEADLINE_EXCEEDED"}}"#
            )
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"egress_proxy_call_duration_seconds_count{{door="grpc",rpc="{rpc}"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"egress_proxy_upstream_duration_seconds_bucket{{le="0.005",rpc="{rpc}"}}"#)
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"egress_proxy_upstream_duration_seconds_bucket{{le="0.01",rpc="{rpc}"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"egress_proxy_upstream_duration_seconds_bucket{{le="0.0001",rpc="{rpc}"}}"#)
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"egress_proxy_upstream_duration_seconds_bucket{{le="60.0",rpc="{rpc}"}}"#)
        ),
        1.0
    );
    assert_eq!(value(&text, "egress_proxy_in_flight_calls"), 0.0);
    assert_eq!(
        value(
            &text,
            r#"egress_proxy_upstream_errors_total{kind="timeout"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"egress_proxy_upstream_errors_total{kind="connect"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "egress_proxy_token_refreshes_total"), 2.0);
    assert_eq!(
        value(&text, r#"egress_proxy_build_info{version="9.9.9-test"}"#),
        1.0
    );
    for family in [
        "egress_proxy_calls counter",
        "egress_proxy_call_duration_seconds histogram",
        "egress_proxy_upstream_duration_seconds histogram",
        "egress_proxy_in_flight_calls gauge",
        "egress_proxy_upstream_errors counter",
        "egress_proxy_token_refreshes counter",
        "egress_proxy_build_info gauge",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "missing {family}:\n{text}"
        );
    }

    // The refresh count is read at scrape time.
    mints.store(5, Ordering::Relaxed);
    let text = get(admin.addr, "/metrics").await.body;
    assert_eq!(value(&text, "egress_proxy_token_refreshes_total"), 5.0);

    stop(admin).await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let admin = start(Metrics::new()).await;
    for path in ["/", "/metrics/extra", "/health", "/readyz?x=1&y"] {
        let answer = get(admin.addr, path).await;
        let expected = if path.starts_with("/readyz") {
            // The query does not change the route.
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(answer.status, expected, "{path}");
    }
    let post = fetch(admin.addr, Method::POST, "/metrics").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers["allow"], "GET, HEAD");

    let head = fetch(admin.addr, Method::HEAD, "/healthz").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body, "");
    stop(admin).await;
}

#[tokio::test]
async fn keep_alive_connection_serves_several_requests_and_shutdown_ends_it() {
    let admin = start(Metrics::new()).await;
    let stream = tokio::net::TcpStream::connect(admin.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for path in ["/healthz", "/metrics", "/readyz"] {
        sender.ready().await.unwrap();
        let response = sender
            .send_request(Request::get(path).body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        response.into_body().collect().await.unwrap();
    }
    // The idle keep-alive connection does not hold shutdown up.
    let started = std::time::Instant::now();
    stop(admin).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("server closed the idle connection")
        .unwrap()
        .unwrap();
}

async fn stop(mut admin: Admin) {
    let addr = admin.addr;
    admin.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), admin.task)
        .await
        .expect("serve_admin returned after shutdown")
        .unwrap()
        .unwrap();
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
