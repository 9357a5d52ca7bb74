//! Retries, conservatively: the same `X-Livekit-Request-Id` on every attempt, only where a
//! retry is safe, only within the caller's deadline. Driven by the simulator's faults.

use std::time::Duration;

use egress_e2e::{Gateway, ProxyOptions, sim};
use egress_proto::livekit::{self as lk};
use egress_sim::Fault;
use tonic::Code;

fn start_request() -> lk::RoomCompositeEgressRequest {
    lk::RoomCompositeEgressRequest {
        room_name: "retry-room".into(),
        file_outputs: vec![lk::EncodedFileOutput {
            filepath: "r.mp4".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn keys_of(sim: &egress_sim::SimHandle, rpc: &str) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.rpc.as_deref() == Some(rpc))
        .map(|r| r.headers["x-livekit-request-id"].clone())
        .collect()
}

/// The idempotency key the gateway says it used.
fn returned_key<T>(answer: &tonic::Response<T>) -> String {
    answer
        .metadata()
        .get("x-livekit-request-id")
        .expect("the key comes back")
        .to_str()
        .unwrap()
        .to_owned()
}

fn no_workers_twice(rpc: &str) -> Fault {
    Fault::twirp_error("unavailable", "no response from servers")
        .method(rpc)
        .times(2)
}

#[tokio::test]
async fn opted_in_writes_are_retried_with_one_key_and_start_one_egress() {
    let sim = sim();
    sim.faults()
        .push(no_workers_twice("StartRoomCompositeEgress"));
    let gateway = Gateway::start(&sim.url(), ProxyOptions::default().arg("--retry-writes"));
    let mut client = gateway.client().await;
    let answer = client
        .start_room_composite_egress(start_request())
        .await
        .unwrap();
    let key = returned_key(&answer);

    let keys = keys_of(&sim, "StartRoomCompositeEgress");
    assert_eq!(
        keys,
        vec![key.clone(), key.clone(), key],
        "three attempts, one key"
    );
    assert_eq!(sim.egresses().len(), 1, "one egress");
    let text = egress_e2e::admin_get(gateway.admin, "/metrics").await.1;
    assert!(
        text.contains(r#"egress_proxy_upstream_retries_total{rpc="StartRoomCompositeEgress"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn writes_are_not_retried_on_a_self_hosted_server_by_default() {
    let sim = sim();
    sim.faults()
        .push(no_workers_twice("StartRoomCompositeEgress"));
    let gateway = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = gateway.client().await;
    let status = client
        .start_room_composite_egress(start_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "no response from servers");
    assert_eq!(keys_of(&sim, "StartRoomCompositeEgress").len(), 1);
}

#[tokio::test]
async fn reads_are_retried_on_gateway_errors_and_definite_answers_never() {
    let sim = sim();
    sim.faults().push(
        Fault::http(502, "text/html", "<h1>Bad Gateway</h1>")
            .method("ListEgress")
            .times(1),
    );
    let gateway = Gateway::start(&sim.url(), ProxyOptions::default().arg("--retry-writes"));
    let mut client = gateway.client().await;
    client
        .list_egress(lk::ListEgressRequest::default())
        .await
        .unwrap();
    let keys = keys_of(&sim, "ListEgress");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);

    // A definite answer (not_found) is never retried, writes allowed or not.
    let status = client
        .stop_egress(lk::StopEgressRequest {
            egress_id: "EG_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(keys_of(&sim, "StopEgress").len(), 1);
}

#[tokio::test]
async fn a_deadline_too_short_for_another_attempt_ends_with_the_real_error() {
    let sim = sim();
    sim.faults().push(no_workers_twice("ListEgress"));
    let gateway = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = gateway.client().await;
    let mut request = tonic::Request::new(lk::ListEgressRequest::default());
    request.set_timeout(Duration::from_millis(300));
    let status = client.list_egress(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(keys_of(&sim, "ListEgress").len(), 1);
}

#[tokio::test]
async fn a_request_that_never_left_is_retried_for_every_rpc() {
    // Nothing listens: every attempt is refused before a byte is sent.
    let port = egress_e2e::closed_port();
    let gateway = Gateway::start(&format!("http://127.0.0.1:{port}"), ProxyOptions::default());
    let mut client = gateway.client().await;
    let status = client
        .stop_egress(lk::StopEgressRequest {
            egress_id: "EG_1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let text = egress_e2e::admin_get(gateway.admin, "/metrics").await.1;
    assert!(
        text.contains(r#"egress_proxy_upstream_retries_total{rpc="StopEgress"} 2"#),
        "{text}"
    );
}

fn spawn(builder: egress_sim::SimulatorBuilder) -> egress_sim::SimHandle {
    builder
        .credentials(egress_auth::Credentials::new(
            egress_e2e::API_KEY,
            egress_e2e::API_SECRET,
        ))
        .build()
        .spawn("127.0.0.1:0".parse().unwrap())
        .unwrap()
}

#[tokio::test]
async fn on_livekit_cloud_a_retry_fails_over_to_another_region() {
    let other = spawn(egress_sim::Simulator::builder());
    let primary = spawn(egress_sim::Simulator::builder().region(other.url()));
    primary.faults().push(
        Fault::twirp_error("unavailable", "no response from servers")
            .method("StartRoomCompositeEgress")
            .times(5),
    );
    let gateway = Gateway::start(
        &primary.url(),
        ProxyOptions::default()
            .arg("--upstream-flavor")
            .arg("cloud"),
    );
    let mut client = gateway.client().await;
    let answer = client
        .start_room_composite_egress(start_request())
        .await
        .unwrap();
    let key = returned_key(&answer);
    assert_eq!(
        keys_of(&primary, "StartRoomCompositeEgress"),
        vec![key.clone()]
    );
    assert_eq!(keys_of(&other, "StartRoomCompositeEgress"), vec![key]);
    assert!(primary.egresses().is_empty());
    assert_eq!(other.egresses().len(), 1, "one egress, in the other region");
}

#[tokio::test]
async fn when_region_discovery_fails_the_primary_is_retried() {
    // No /settings/regions on this server (a 404).
    let primary = spawn(egress_sim::Simulator::builder());
    primary
        .faults()
        .push(no_workers_twice("StartRoomCompositeEgress"));
    let gateway = Gateway::start(
        &primary.url(),
        ProxyOptions::default()
            .arg("--upstream-flavor")
            .arg("cloud"),
    );
    let mut client = gateway.client().await;
    client
        .start_room_composite_egress(start_request())
        .await
        .unwrap();
    assert_eq!(keys_of(&primary, "StartRoomCompositeEgress").len(), 3);
    assert_eq!(primary.egresses().len(), 1);
}
