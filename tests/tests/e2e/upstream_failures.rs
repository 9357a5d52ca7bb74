//! The proxy binary in front of an upstream that misbehaves on demand: every failure must
//! reach the caller as the right gRPC status, with LiveKit's message and meta intact.

use std::time::{Duration, Instant};

use bytes::Bytes;
use egress_e2e::{
    Gateway, Proxy, ProxyOptions, RawBehaviour, RawUpstream, closed_port, raw_grpc_call, sim,
};
use egress_proto::livekit::{
    EgressInfo, EncodedFileOutput, ListEgressRequest, RoomCompositeEgressRequest, StopEgressRequest,
};
use egress_proxy::codec::BytesCodec;
use egress_sim::Fault;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

fn start_request() -> RoomCompositeEgressRequest {
    RoomCompositeEgressRequest {
        room_name: "room".into(),
        file_outputs: vec![EncodedFileOutput {
            filepath: "out.mp4".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn stop(proxy: &Gateway, egress_id: &str) -> Result<EgressInfo, tonic::Status> {
    proxy
        .client()
        .await
        .stop_egress(StopEgressRequest {
            egress_id: egress_id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Sends raw bytes as a `livekit.Egress` call and returns the raw answer.
async fn raw_call(proxy: &Gateway, method: &str, body: Vec<u8>) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(proxy.channel().await);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(Bytes::from(body)),
        format!("/livekit.Egress/{method}").parse().unwrap(),
        BytesCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn every_twirp_code_maps_to_its_grpc_code() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let table = [
        ("canceled", Code::Cancelled),
        ("unknown", Code::Unknown),
        ("invalid_argument", Code::InvalidArgument),
        ("malformed", Code::InvalidArgument),
        ("deadline_exceeded", Code::DeadlineExceeded),
        ("not_found", Code::NotFound),
        ("bad_route", Code::Unimplemented),
        ("already_exists", Code::AlreadyExists),
        ("permission_denied", Code::PermissionDenied),
        ("unauthenticated", Code::Unauthenticated),
        ("resource_exhausted", Code::ResourceExhausted),
        ("failed_precondition", Code::FailedPrecondition),
        ("aborted", Code::Aborted),
        ("out_of_range", Code::OutOfRange),
        ("unimplemented", Code::Unimplemented),
        ("internal", Code::Internal),
        ("unavailable", Code::Unavailable),
        ("dataloss", Code::DataLoss),
    ];
    for (twirp, grpc) in table {
        sim.faults().push(
            Fault::twirp_error(twirp, format!("injected {twirp}"))
                .method("StopEgress")
                .times(1),
        );
        let status = stop(&proxy, "EG_any").await.expect_err(twirp);
        assert_eq!(status.code(), grpc, "twirp {twirp}");
        assert_eq!(status.message(), format!("injected {twirp}"));
        assert_eq!(status.metadata().get("twirp-code").unwrap(), twirp);
    }
}

#[tokio::test]
async fn twirp_meta_reaches_trailers_and_error_info() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    sim.faults().push(
        Fault::twirp_error("unavailable", "no response from servers")
            .meta("region", "eu-west")
            .method("StartRoomCompositeEgress")
            .times(1),
    );
    let status = proxy
        .client()
        .await
        .start_room_composite_egress(start_request())
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "no response from servers");
    assert_eq!(
        status.metadata().get("twirp-meta-region").unwrap(),
        "eu-west"
    );
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo detail");
    assert_eq!(
        info.metadata.get("region").map(String::as_str),
        Some("eu-west")
    );
}

#[tokio::test]
async fn livekit_error_details_become_the_status_details_verbatim() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let rich = egress_sim::rpc_status(
        9,
        "egress with status EGRESS_COMPLETE cannot be stopped",
        vec![],
    );
    sim.faults().push(
        Fault::twirp_error(
            "failed_precondition",
            "egress with status EGRESS_COMPLETE cannot be stopped",
        )
        .error_details(&rich)
        .method("StopEgress")
        .times(1),
    );
    let status = stop(&proxy, "EG_done").await.expect_err("precondition");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.details(), &rich[..]);
}

#[tokio::test]
async fn intermediary_and_transport_failures() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());

    sim.faults().push(
        Fault::http(
            502,
            "text/html",
            "<html><body>502 Bad Gateway</body></html>",
        )
        .method("StopEgress")
        .times(1),
    );
    let status = stop(&proxy, "EG_x").await.expect_err("html 502");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("502"), "{}", status.message());

    sim.faults()
        .push(Fault::html_200().method("StopEgress").times(1));
    let status = stop(&proxy, "EG_x").await.expect_err("html 200");
    assert_eq!(status.code(), Code::Unknown, "{status:?}");

    sim.faults()
        .push(Fault::drop_connection().method("StopEgress").times(1));
    let status = stop(&proxy, "EG_x").await.expect_err("dropped");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    sim.faults().push(
        Fault::truncated()
            .method("StartRoomCompositeEgress")
            .times(1),
    );
    let status = proxy
        .client()
        .await
        .start_room_composite_egress(start_request())
        .await
        .expect_err("truncated");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    sim.faults().push(
        Fault::http(429, "text/plain", "slow down")
            .method("StopEgress")
            .times(1),
    );
    let status = stop(&proxy, "EG_x").await.expect_err("429");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // After all that, a normal call still works on the same proxy.
    let started = proxy
        .client()
        .await
        .start_room_composite_egress(start_request())
        .await
        .expect("healthy again");
    assert!(started.into_inner().egress_id.starts_with("EG_"));
}

#[tokio::test]
async fn wrong_secret_is_unauthenticated() {
    let sim = sim();
    // The binary: its secret comes from the environment.
    let proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default().env("LIVEKIT_API_SECRET", "not-the-secret"),
    );
    let status = proxy
        .client()
        .await
        .stop_egress(StopEgressRequest {
            egress_id: "EG_x".into(),
        })
        .await
        .expect_err("401");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn refused_upstream_is_unavailable() {
    let proxy = Gateway::start(
        &format!("http://127.0.0.1:{}", closed_port()),
        ProxyOptions::default(),
    );
    let status = stop(&proxy, "EG_x").await.expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn caller_deadline_bounds_the_call_and_goes_upstream() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    sim.faults()
        .push(Fault::latency(Duration::from_secs(3)).method("ListEgress"));
    let started = Instant::now();
    let answer = raw_grpc_call(
        proxy.addr,
        "/livekit.Egress/ListEgress",
        &[("grpc-timeout", "400m")],
        &ListEgressRequest::default().encode_to_vec(),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(answer.http_status, 200, "gRPC errors travel over HTTP 200");
    assert_eq!(
        answer.grpc_status(),
        Some(Code::DeadlineExceeded as i32),
        "{answer:?}"
    );
    assert!(
        (Duration::from_millis(350)..Duration::from_secs(2)).contains(&elapsed),
        "answered at the deadline, took {elapsed:?}"
    );
    let sent = sim.requests();
    let timeout_ms: u64 = sent
        .iter()
        .find(|r| r.rpc.as_deref() == Some("ListEgress"))
        .and_then(|r| r.headers.get("x-twirp-timeout-ms"))
        .expect("X-Twirp-Timeout-Ms sent upstream")
        .parse()
        .unwrap();
    assert!((1..=400).contains(&timeout_ms), "{timeout_ms}");
}

#[tokio::test]
async fn malformed_deadline_is_invalid_argument() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let answer = raw_grpc_call(
        proxy.addr,
        "/livekit.Egress/ListEgress",
        &[("grpc-timeout", "soon")],
        &ListEgressRequest::default().encode_to_vec(),
    )
    .await;
    assert_eq!(
        answer.grpc_status(),
        Some(Code::InvalidArgument as i32),
        "{answer:?}"
    );
}

#[tokio::test]
async fn upstream_timeout_applies_without_a_deadline() {
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--upstream-timeout")
            .arg("300ms"),
    );
    sim.faults()
        .push(Fault::latency(Duration::from_secs(3)).method("StopEgress"));
    let started = Instant::now();
    let status = stop(&proxy, "EG_x").await.expect_err("timeout");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn caller_going_away_aborts_the_upstream_request() {
    let mut upstream = RawUpstream::start(RawBehaviour::Hang).await;
    let proxy = Gateway::start(&upstream.url(), ProxyOptions::default());
    let mut client = proxy.client().await;
    let call = tokio::spawn(async move {
        client
            .stop_egress(StopEgressRequest {
                egress_id: "EG_x".into(),
            })
            .await
    });
    // Wait until the request is upstream, then cancel the caller.
    tokio::time::timeout(Duration::from_secs(5), upstream.bodies.recv())
        .await
        .expect("request reached upstream");
    call.abort();
    let closed = tokio::time::timeout(Duration::from_secs(5), upstream.closed_after.recv())
        .await
        .expect("the gateway closed the upstream request after the caller left")
        .unwrap();
    assert!(closed < Duration::from_secs(5), "{closed:?}");
}

#[tokio::test]
async fn garbage_success_body_is_internal() {
    let upstream = RawUpstream::start(RawBehaviour::Answer {
        content_type: "application/protobuf",
        body: vec![0xff; 16],
    })
    .await;
    let proxy = Gateway::start(&upstream.url(), ProxyOptions::default());
    let status = stop(&proxy, "EG_x").await.expect_err("garbage");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
}

/// Field 999, length-delimited, value "new": what a newer LiveKit schema might add.
fn unknown_field() -> Vec<u8> {
    let mut extra = Vec::new();
    prost::encoding::encode_key(999, prost::encoding::WireType::LengthDelimited, &mut extra);
    prost::encoding::encode_varint(3, &mut extra);
    extra.extend_from_slice(b"new");
    extra
}

#[tokio::test]
async fn unknown_request_fields_reach_livekit_unchanged() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    // Both sides of the gateway's 512-byte receive buffer: a message smaller than it is
    // copied out of it, a larger one is split off it.
    for layout_bytes in [0, 4096] {
        let mut request = start_request();
        request.layout = "l".repeat(layout_bytes);
        let mut body = request.encode_to_vec();
        body.extend_from_slice(&unknown_field());
        let answer = raw_call(&proxy, "StartRoomCompositeEgress", body.clone())
            .await
            .expect("started");
        assert!(
            EgressInfo::decode(answer)
                .unwrap()
                .egress_id
                .starts_with("EG_")
        );
        let recorded = sim.requests();
        let sent = recorded
            .iter()
            .rfind(|r| r.rpc.as_deref() == Some("StartRoomCompositeEgress"))
            .expect("recorded");
        assert_eq!(
            sent.body,
            body,
            "the Twirp body is the gRPC message, byte for byte ({} bytes)",
            body.len()
        );
    }
}

#[tokio::test]
async fn unknown_response_fields_reach_the_caller_unchanged() {
    let mut answer = EgressInfo {
        egress_id: "EG_future".into(),
        room_name: "room".into(),
        ..Default::default()
    }
    .encode_to_vec();
    answer.extend_from_slice(&unknown_field());
    let upstream = RawUpstream::start(RawBehaviour::Answer {
        content_type: "application/protobuf",
        body: answer.clone(),
    })
    .await;
    let proxy = Gateway::start(&upstream.url(), ProxyOptions::default());
    let got = raw_call(
        &proxy,
        "StopEgress",
        StopEgressRequest {
            egress_id: "EG_future".into(),
        }
        .encode_to_vec(),
    )
    .await
    .expect("answer");
    assert_eq!(&got[..], &answer[..]);
}

#[tokio::test]
async fn oversized_requests_are_refused_before_forwarding() {
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--max-message-size")
            .arg("1024"),
    );
    let mut request = start_request();
    request.layout = "x".repeat(4096);
    let status = proxy
        .client()
        .await
        .start_room_composite_egress(request)
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        sim.requests().iter().all(|r| r.rpc.is_none()),
        "nothing was sent upstream"
    );
}

#[tokio::test]
async fn overload_is_resource_exhausted() {
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default().arg("--max-concurrency").arg("2"),
    );
    sim.faults()
        .push(Fault::latency(Duration::from_millis(800)).method("ListEgress"));
    let mut calls = Vec::new();
    for _ in 0..6 {
        let mut client = proxy.client().await;
        calls.push(tokio::spawn(async move {
            client.list_egress(ListEgressRequest::default()).await
        }));
    }
    let mut ok = 0;
    let mut shed = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) if status.code() == Code::ResourceExhausted => shed += 1,
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    assert_eq!(ok + shed, 6);
    assert!(ok >= 2 && shed >= 1, "ok {ok}, shed {shed}");
}
