//! gRPC-Web, as browser tools speak it: tonic-web's client layer over a plain HTTP/1.1
//! client, against the gateway in-process. The calls go through the same doors and stages.

use std::time::Duration;

use egress_e2e::events::{deliver, egress_webhook};
use egress_e2e::{Gateway, ProxyOptions, admin_get, sim};
use egress_proto::egress_gateway::v1::WatchEgressRequest;
use egress_proto::egress_gateway::v1::egress_events_client::EgressEventsClient;
use egress_proto::livekit::{self as lk, egress_client::EgressClient};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tonic_web::GrpcWebClientLayer;

fn web_origin(gateway: &Gateway) -> http::Uri {
    format!("http://{}", gateway.addr).parse().unwrap()
}

#[tokio::test]
async fn egress_calls_and_the_event_stream_work_over_grpc_web() {
    let sim = sim();
    let gateway = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--webhook-listen")
            .arg("127.0.0.1:0"),
    );
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let web = tower::ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .service(http1);

    let mut egress = EgressClient::with_origin(web.clone(), web_origin(&gateway));
    let started = egress
        .start_web_egress(lk::WebEgressRequest {
            url: "https://example.com".into(),
            file_outputs: vec![lk::EncodedFileOutput {
                filepath: "web.mp4".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("a unary call over gRPC-Web")
        .into_inner();
    assert!(started.egress_id.starts_with("EG_"));
    assert_eq!(sim.egresses().len(), 1, "it reached LiveKit");

    // A failure keeps its gRPC code.
    let status = egress
        .stop_egress(lk::StopEgressRequest {
            egress_id: "EG_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // Counted as gRPC calls are, by the code inside the gRPC-Web answer, under their own door.
    let (_, metrics) = admin_get(gateway.admin, "/metrics").await;
    for series in [
        r#"egress_proxy_calls_total{door="grpc-web",rpc="StartWebEgress",code="OK"} 1"#,
        r#"egress_proxy_calls_total{door="grpc-web",rpc="StopEgress",code="NOT_FOUND"} 1"#,
        r#"egress_proxy_call_duration_seconds_count{door="grpc-web",rpc="StopEgress"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }

    // Server streaming: the event stream.
    let mut events = EgressEventsClient::with_origin(web, web_origin(&gateway))
        .watch(WatchEgressRequest::default())
        .await
        .expect("a watch over gRPC-Web")
        .into_inner();
    let hook = gateway.webhook.unwrap();
    deliver(
        hook,
        &egress_webhook("egress_updated", "EV_WEB", "EG_WEB", "r", "EGRESS_ACTIVE"),
    )
    .await;
    let event = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("an event within 5 s")
        .expect("a good stream")
        .expect("an event");
    assert_eq!(event.id, "EV_WEB");
}

const DASHBOARD: &str = "https://dash.example.com";

/// A browser's preflight before a cross-origin gRPC-Web call.
async fn preflight(gateway: &Gateway, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/livekit.Egress/ListEgress", gateway.addr),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent,authorization",
        )
        .send()
        .await
        .expect("a preflight answer")
}

fn allowed_origin(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn cors_is_off_by_default_and_allows_exactly_the_configured_origins() {
    let sim = sim();

    // Off by default: no page on another origin gets an answer it may read.
    let closed = Gateway::start(&sim.url(), ProxyOptions::default());
    let answer = preflight(&closed, DASHBOARD).await;
    assert_eq!(allowed_origin(&answer), None, "{answer:?}");

    let open = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--cors-allow-origin")
            .arg(DASHBOARD),
    );
    let answer = preflight(&open, DASHBOARD).await;
    assert!(answer.status().is_success(), "{answer:?}");
    assert_eq!(allowed_origin(&answer), Some(DASHBOARD));
    let allowed_headers = answer.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for header in ["x-grpc-web", "authorization", "content-type"] {
        assert!(allowed_headers.contains(header), "{allowed_headers}");
    }
    // Another site's page is not let in.
    let answer = preflight(&open, "https://evil.example.com").await;
    assert_eq!(allowed_origin(&answer), None, "{answer:?}");

    // The call itself, from the dashboard's origin, over gRPC-Web: the page may read the
    // answer and its status headers.
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let web = tower::ServiceBuilder::new()
        .map_request(|mut request: http::Request<_>| {
            request
                .headers_mut()
                .insert("origin", http::HeaderValue::from_static(DASHBOARD));
            request
        })
        .layer(GrpcWebClientLayer::new())
        .service(http1);
    let answer = EgressClient::with_origin(web, web_origin(&open))
        .list_egress(lk::ListEgressRequest::default())
        .await
        .expect("a cross-origin gRPC-Web call");
    let headers = answer.metadata().clone().into_headers();
    assert_eq!(headers["access-control-allow-origin"], DASHBOARD);
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("grpc-status"), "{exposed}");

    // A preflight is not a call: only the one ListEgress is counted.
    let (_, metrics) = admin_get(open.admin, "/metrics").await;
    let calls: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("egress_proxy_calls_total{"))
        .collect();
    assert_eq!(
        calls,
        [r#"egress_proxy_calls_total{door="grpc-web",rpc="ListEgress",code="OK"} 1"#],
        "{metrics}"
    );
}
