//! LiveKit's idempotency key: every upstream call carries `X-Livekit-Request-Id`, the
//! caller's own or a fresh UUID, and the caller gets the key in use back.

use egress_e2e::{Gateway, ProxyOptions, sim};
use egress_proto::livekit::{self as lk};
use tonic::Code;

fn stop(id: &str) -> lk::StopEgressRequest {
    lk::StopEgressRequest {
        egress_id: id.into(),
    }
}

fn list() -> lk::ListEgressRequest {
    lk::ListEgressRequest::default()
}

#[tokio::test]
async fn every_call_carries_a_key_and_the_caller_learns_it() {
    let sim = sim();
    let gateway = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = gateway.client().await;

    let answer = client.list_egress(list()).await.unwrap();
    let returned = answer
        .metadata()
        .get("x-livekit-request-id")
        .expect("the key comes back")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(returned.len(), 36, "a UUID: {returned}");
    let sent = sim.requests().pop().unwrap();
    assert_eq!(sent.headers["x-livekit-request-id"], returned);

    // Two calls, two keys.
    client.list_egress(list()).await.unwrap();
    let again = sim.requests().pop().unwrap();
    assert_ne!(again.headers["x-livekit-request-id"], returned);

    // An error answer carries it too.
    let status = client.stop_egress(stop("EG_nope")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let key = status.metadata().get("x-livekit-request-id").unwrap();
    assert_eq!(
        sim.requests().pop().unwrap().headers["x-livekit-request-id"],
        key.to_str().unwrap()
    );
}

#[tokio::test]
async fn the_callers_own_key_is_used_as_it_is() {
    let sim = sim();
    let gateway = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = gateway.client().await;
    for header in ["x-livekit-request-id", "idempotency-key"] {
        let key = format!("retry-me:{header}");
        let mut request = tonic::Request::new(list());
        request.metadata_mut().insert(header, key.parse().unwrap());
        let answer = client.list_egress(request).await.unwrap();
        assert_eq!(
            answer.metadata().get("x-livekit-request-id").unwrap(),
            key.as_str()
        );
        assert_eq!(
            sim.requests().pop().unwrap().headers["x-livekit-request-id"],
            key
        );
    }
}

#[tokio::test]
async fn a_key_that_cannot_be_forwarded_is_refused_not_replaced() {
    let sim = sim();
    let gateway = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = gateway.client().await;
    for bad in ["has space", "x".repeat(129).as_str(), "semi;colon"] {
        let mut request = tonic::Request::new(list());
        request
            .metadata_mut()
            .insert("x-livekit-request-id", bad.parse().unwrap());
        let status = client.list_egress(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}");
        assert!(
            status.message().contains("x-livekit-request-id"),
            "{}",
            status.message()
        );
    }
    assert!(sim.requests().is_empty(), "nothing was forwarded");
}
