//! The admin endpoint of the real binary: metrics that reflect real calls, liveness and
//! readiness that follow the upstream.

use std::time::{Duration, Instant};

use egress_e2e::{
    API_SECRET, ConnectProxy, Gateway, Proxy, ProxyOptions, RawBehaviour, RawUpstream, admin_get,
    closed_port, sim_on,
};
use egress_proto::livekit::{ListEgressRequest, StopEgressRequest};
use egress_sim::Fault;

fn metric_value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn wait_for(mut check: impl AsyncFnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_count_calls_by_rpc_and_code() {
    let sim = sim_on("127.0.0.1:0");
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = proxy.client().await;
    for _ in 0..3 {
        client
            .list_egress(ListEgressRequest::default())
            .await
            .expect("ListEgress");
    }
    let err = client
        .stop_egress(StopEgressRequest {
            egress_id: "EG_missing".into(),
        })
        .await
        .expect_err("not found");
    assert_eq!(err.code(), tonic::Code::NotFound);

    let (status, metrics) = admin_get(proxy.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric_value(
            &metrics,
            r#"egress_proxy_calls_total{door="grpc",rpc="ListEgress",code="OK"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"egress_proxy_calls_total{door="grpc",rpc="StopEgress",code="NOT_FOUND"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "egress_proxy_in_flight_calls"),
        Some(0.0)
    );
    assert!(
        metric_value(&metrics, "egress_proxy_token_refreshes_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"egress_proxy_upstream_errors_total{kind="twirp"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("egress_proxy_upstream_duration_seconds_bucket"));
    assert!(!metrics.contains(API_SECRET));
}

#[tokio::test]
async fn the_binary_reports_its_allocators_heap() {
    // The binary runs on jemalloc and says what it holds apart from what the allocator
    // keeps; an in-process gateway (the test's allocator) leaves both series out.
    let sim = sim_on("127.0.0.1:0");
    let proxy = Proxy::start(&sim.url(), ProxyOptions::default());
    let mut client = proxy.client().await;
    client
        .list_egress(ListEgressRequest::default())
        .await
        .expect("ListEgress");
    let (_, metrics) = admin_get(proxy.admin, "/metrics").await;
    let allocated = metric_value(&metrics, "egress_proxy_heap_allocated_bytes ").expect(&metrics);
    let resident = metric_value(&metrics, "egress_proxy_heap_resident_bytes ").expect(&metrics);
    assert!(allocated > 100_000.0, "{metrics}");
    assert!(resident >= allocated, "{metrics}");
    assert!(
        metrics.contains("# TYPE egress_proxy_heap_allocated_bytes gauge"),
        "{metrics}"
    );

    let in_process = Gateway::start(&sim.url(), ProxyOptions::default());
    let (_, metrics) = admin_get(in_process.admin, "/metrics").await;
    assert!(!metrics.contains("egress_proxy_heap_"), "{metrics}");
}

#[tokio::test]
async fn in_flight_gauge_returns_to_zero_after_cancelled_calls() {
    let sim = sim_on("127.0.0.1:0");
    sim.faults()
        .push(Fault::latency(Duration::from_secs(5)).method("ListEgress"));
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut calls = Vec::new();
    for _ in 0..5 {
        let mut client = proxy.client().await;
        calls.push(tokio::spawn(async move {
            client.list_egress(ListEgressRequest::default()).await
        }));
    }
    wait_for(
        async || {
            let (_, m) = admin_get(proxy.admin, "/metrics").await;
            metric_value(&m, "egress_proxy_in_flight_calls") == Some(5.0)
        },
        "5 calls in flight",
    )
    .await;
    for call in calls {
        call.abort();
    }
    wait_for(
        async || {
            let (_, m) = admin_get(proxy.admin, "/metrics").await;
            metric_value(&m, "egress_proxy_in_flight_calls") == Some(0.0)
        },
        "in-flight back to 0",
    )
    .await;
    let (_, m) = admin_get(proxy.admin, "/metrics").await;
    assert_eq!(
        metric_value(
            &m,
            r#"egress_proxy_calls_total{door="grpc",rpc="ListEgress",code="CANCELLED"}"#
        ),
        Some(5.0),
        "{m}"
    );
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_upstream() {
    let port = closed_port();
    let proxy = Gateway::start(
        &format!("http://127.0.0.1:{port}"),
        ProxyOptions::default().arg("--probe-interval").arg("100ms"),
    );
    assert_eq!(admin_get(proxy.admin, "/healthz").await.0, 200);
    wait_for(
        async || admin_get(proxy.admin, "/readyz").await.0 == 503,
        "not ready while LiveKit is unreachable",
    )
    .await;
    let _sim = sim_on(&format!("127.0.0.1:{port}"));
    wait_for(
        async || admin_get(proxy.admin, "/readyz").await == (200, "ready".to_owned()),
        "ready once LiveKit answers",
    )
    .await;
}

/// Clusters that only reach the outside through an HTTP proxy set `HTTPS_PROXY`/`HTTP_PROXY`:
/// the gateway tunnels to LiveKit through it, with the proxy's credentials, unless
/// `NO_PROXY` exempts LiveKit's host.
#[tokio::test]
async fn upstream_is_reached_through_the_environment_proxy() {
    let sim = sim_on("127.0.0.1:0");
    let mut forward = ConnectProxy::start().await;
    let proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default()
            .env("HTTP_PROXY", format!("http://gw:s3cret@{}", forward.addr))
            .env("NO_PROXY", "example.invalid"),
    );
    let answer = proxy
        .client()
        .await
        .list_egress(ListEgressRequest::default())
        .await
        .expect("ListEgress through the CONNECT proxy");
    assert!(answer.into_inner().items.is_empty());
    let head = tokio::time::timeout(Duration::from_secs(5), forward.heads.recv())
        .await
        .expect("the gateway used the proxy")
        .unwrap();
    let sim_authority = sim.url().trim_start_matches("http://").to_owned();
    assert!(
        head.starts_with(&format!("CONNECT {sim_authority} HTTP/1.1\r\n")),
        "{head}"
    );
    // base64("gw:s3cret")
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authorization: basic z3c6cznjcmv0\r\n"),
        "{head}"
    );
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.rpc.as_deref() == Some("ListEgress")),
        "the call reached LiveKit"
    );

    // NO_PROXY naming LiveKit's host bypasses the proxy.
    let mut unused = ConnectProxy::start().await;
    let direct = Proxy::start(
        &sim.url(),
        ProxyOptions::default()
            .env("HTTP_PROXY", format!("http://{}", unused.addr))
            .env("NO_PROXY", "127.0.0.1"),
    );
    direct
        .client()
        .await
        .list_egress(ListEgressRequest::default())
        .await
        .expect("ListEgress straight to LiveKit");
    assert!(unused.heads.try_recv().is_err(), "NO_PROXY was ignored");
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each call's span reaches the collector over
/// OTLP/HTTP, in the caller's trace, carrying the request id.
#[tokio::test]
async fn call_spans_are_exported_over_otlp_in_the_callers_trace() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT_ID: &str = "00f067aa0ba902b7";
    let sim = sim_on("127.0.0.1:0");
    let mut collector = RawUpstream::start(RawBehaviour::Answer {
        content_type: "application/x-protobuf",
        body: Vec::new(),
    })
    .await;
    let proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url())
            .env("OTEL_SERVICE_NAME", "egress-gateway-e2e")
            // Export within 100 ms instead of the default 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    );
    let mut request = tonic::Request::new(ListEgressRequest::default());
    let metadata = request.metadata_mut();
    metadata.insert("x-request-id", "otlp-e2e-1".parse().unwrap());
    metadata.insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().unwrap(),
    );
    proxy.client().await.list_egress(request).await.unwrap();

    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = tokio::time::timeout_at(deadline.into(), collector.bodies.recv())
            .await
            .expect("no span of the call reached the collector")
            .unwrap();
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource_spans in &export.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                let request_id = span
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "request_id")
                    .and_then(|kv| kv.value.as_ref()?.value.clone());
                if span.name == "call"
                    && request_id == Some(Value::StringValue("otlp-e2e-1".into()))
                {
                    assert_eq!(hex(&span.trace_id), TRACE_ID, "the caller's trace");
                    assert_eq!(hex(&span.parent_span_id), PARENT_ID, "the caller's span");
                    assert_eq!(
                        service,
                        Some(Value::StringValue("egress-gateway-e2e".into()))
                    );
                    return;
                }
            }
        }
    }
}
