//! gRPC-Web, as browser tools speak it: tonic-web's client layer over a plain HTTP/1.1
//! client, against the gateway in-process. The calls go through the same doors and stages.

use std::time::Duration;

use egress_e2e::events::{deliver, egress_webhook};
use egress_e2e::{Gateway, ProxyOptions, sim};
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
