//! `egress_gateway.v1.EgressEvents/Watch`: webhooks in, events out, through the gateway
//! in-process, with real tonic watchers, LiveKit-signed webhooks over HTTP/1.1, the simulator
//! for the reconcile poll and snapshots, and a real `redis-server` between two replicas.

use std::time::Duration;

use egress_e2e::events::{
    RedisServer, deliver, egress_webhook, next_event, post_webhook, sign, watch,
};
use egress_e2e::{Gateway, ProxyOptions, sim};
use egress_proto::egress_gateway::v1::WatchEgressRequest;
use egress_proto::livekit::{self as lk, EgressStatus};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(5);

fn webhook_gateway(upstream: &str, extra: &[&str]) -> Gateway {
    let mut options = ProxyOptions::default()
        .arg("--webhook-listen")
        .arg("127.0.0.1:0");
    for arg in extra {
        options = options.arg(*arg);
    }
    Gateway::start(upstream, options)
}

fn all() -> WatchEgressRequest {
    WatchEgressRequest::default()
}

async fn metrics(gateway: &Gateway) -> String {
    egress_e2e::admin_get(gateway.admin, "/metrics").await.1
}

#[tokio::test]
async fn a_webhook_reaches_the_watcher_once() {
    let sim = sim();
    let gateway = webhook_gateway(&sim.url(), &[]);
    let hook = gateway.webhook.expect("webhook listener");
    let mut events = watch(gateway.channel().await, all(), None).await.unwrap();

    let body = egress_webhook(
        "egress_started",
        "EV_1",
        "EG_1",
        "team-a",
        "EGRESS_STARTING",
    );
    deliver(hook, &body).await;
    // LiveKit retries a webhook it thinks failed: the same id again is not delivered.
    deliver(hook, &body).await;
    deliver(
        hook,
        &egress_webhook("egress_ended", "EV_2", "EG_1", "team-a", "EGRESS_COMPLETE"),
    )
    .await;

    let first = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(first.event, "egress_started");
    assert_eq!(first.id, "EV_1");
    assert_eq!(first.created_at, 1_700_000_000);
    assert_eq!(first.source, "webhook");
    let info = first.egress_info.unwrap();
    assert_eq!(info.egress_id, "EG_1");
    assert_eq!(info.room_name, "team-a");
    assert_eq!(info.status, EgressStatus::EgressStarting as i32);
    let second = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(
        (second.event.as_str(), second.id.as_str()),
        ("egress_ended", "EV_2")
    );

    let text = metrics(&gateway).await;
    assert!(
        text.contains(r#"egress_proxy_events_received_total{source="webhook"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"egress_proxy_events_ignored_total{reason="duplicate"} 1"#),
        "{text}"
    );
    assert!(text.contains("egress_proxy_event_watchers 1"), "{text}");
}

#[tokio::test]
async fn bad_webhooks_are_refused_and_never_delivered() {
    let sim = sim();
    let gateway = webhook_gateway(&sim.url(), &[]);
    let hook = gateway.webhook.unwrap();
    let mut events = watch(gateway.channel().await, all(), None).await.unwrap();

    let body = egress_webhook("egress_updated", "EV_X", "EG_X", "r", "EGRESS_ACTIVE");
    let wrong_secret = egress_auth::sign_webhook(
        &egress_auth::Credentials::new(egress_e2e::API_KEY, "not-the-secret"),
        body.as_bytes(),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let stale = egress_auth::sign_webhook(
        &egress_auth::Credentials::new(egress_e2e::API_KEY, egress_e2e::API_SECRET),
        body.as_bytes(),
        std::time::SystemTime::now() - Duration::from_secs(3600),
    )
    .unwrap();
    let tampered = body.replace("EGRESS_ACTIVE", "EGRESS_FAILED");
    let cases: [(&str, Option<String>, u16); 6] = [
        (&body, None, 401),
        (&body, Some(wrong_secret), 401),
        (&body, Some(stale), 401),
        (&tampered, Some(sign(&body)), 401),
        ("not json", Some(sign("not json")), 400),
        (
            r#"{"event":"egress_updated","id":"EV_Y","egressInfo":{"roomName":"r"}}"#,
            Some(sign(
                r#"{"event":"egress_updated","id":"EV_Y","egressInfo":{"roomName":"r"}}"#,
            )),
            400,
        ),
    ];
    for (body, token, expected) in &cases {
        let status = post_webhook(hook, body, token.as_deref()).await;
        assert_eq!(status, *expected, "{body} with {token:?}");
    }
    // A signed event that is not about egress is acknowledged and ignored.
    let room = r#"{"event":"room_started","room":{"name":"r"},"id":"EV_R"}"#;
    assert_eq!(post_webhook(hook, room, Some(&sign(room))).await, 200);
    // With "Bearer " as some senders add it.
    let ok = egress_webhook("egress_updated", "EV_OK", "EG_OK", "r", "EGRESS_ACTIVE");
    let bearer = format!("Bearer {}", sign(&ok));
    assert_eq!(post_webhook(hook, &ok, Some(&bearer)).await, 200);

    let only = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(only.id, "EV_OK", "nothing refused was delivered before it");
    let text = metrics(&gateway).await;
    for reason in [
        "missing_token",
        "bad_signature",
        "expired",
        "hash_mismatch",
        "invalid_body",
    ] {
        assert!(
            text.contains(&format!(
                r#"egress_proxy_webhooks_rejected_total{{reason="{reason}"}}"#
            )),
            "{reason}: {text}"
        );
    }
    assert!(text.contains(r#"egress_proxy_events_ignored_total{reason="not_egress"} 1"#));
    assert!(!text.contains(egress_e2e::API_SECRET));
}

#[tokio::test]
async fn watchers_see_only_what_their_policy_allows() {
    let policy = std::env::temp_dir().join(format!(
        "egress-e2e-watch-policy-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &policy,
        format!(
            r#"
            [auth]
            mode = "bearer"
            [[callers]]
            name = "team-watcher"
            token_sha256 = "{team}"
            policy = "team"
            [[callers]]
            name = "lister"
            token_sha256 = "{list}"
            policy = "list-only"
            [policies.team]
            rpcs = ["ListEgress", "Watch"]
            rooms = ["team-*"]
            [policies.list-only]
            rpcs = ["ListEgress"]
            "#,
            team = egress_policy::hash_token("team-token"),
            list = egress_policy::hash_token("list-token"),
        ),
    )
    .unwrap();
    let sim = sim();
    let gateway = webhook_gateway(&sim.url(), &["--policy-file", policy.to_str().unwrap()]);
    let hook = gateway.webhook.unwrap();
    let channel = gateway.channel().await;

    let denied = |r: Result<_, tonic::Status>| r.map(|_| ()).unwrap_err().code();
    assert_eq!(
        denied(watch(channel.clone(), all(), None).await),
        Code::Unauthenticated
    );
    assert_eq!(
        denied(watch(channel.clone(), all(), Some("list-token")).await),
        Code::PermissionDenied,
        "Watch is not in its rpcs"
    );
    assert_eq!(
        denied(watch(channel.clone(), all(), Some("team-token")).await),
        Code::PermissionDenied,
        "no filter needs every room"
    );
    let board = WatchEgressRequest {
        room_name: "board".into(),
        ..Default::default()
    };
    assert_eq!(
        denied(watch(channel.clone(), board, Some("team-token")).await),
        Code::PermissionDenied
    );

    // Filtered by one egress id: only the rooms the policy allows come through.
    let by_id = WatchEgressRequest {
        egress_id: "EG_1".into(),
        ..Default::default()
    };
    let mut events = watch(channel.clone(), by_id, Some("team-token"))
        .await
        .unwrap();
    deliver(
        hook,
        &egress_webhook("egress_updated", "EV_1", "EG_1", "board", "EGRESS_ACTIVE"),
    )
    .await;
    deliver(
        hook,
        &egress_webhook("egress_updated", "EV_2", "EG_2", "team-a", "EGRESS_ACTIVE"),
    )
    .await;
    deliver(
        hook,
        &egress_webhook("egress_ended", "EV_3", "EG_1", "team-a", "EGRESS_COMPLETE"),
    )
    .await;
    let seen = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(
        seen.id, "EV_3",
        "EV_1 is another room's, EV_2 another egress's"
    );
}

#[tokio::test]
async fn reconciliation_delivers_what_webhooks_missed() {
    let sim = egress_e2e::sim_activating_after(Duration::from_millis(100));
    // No webhook listener at all: the poll alone drives the stream.
    let gateway = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--reconcile-interval")
            .arg("200ms"),
    );
    let channel = gateway.channel().await;
    let mut events = watch(channel.clone(), all(), None).await.unwrap();
    // Let the first poll learn the (empty) state.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut client = gateway.client().await;
    let started = client
        .start_web_egress(lk::WebEgressRequest {
            url: "https://example.com".into(),
            file_outputs: vec![lk::EncodedFileOutput {
                filepath: "out.mp4".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let update = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(update.event, "egress_updated");
    assert_eq!(update.source, "reconcile");
    assert!(update.id.starts_with("reconcile-"), "{}", update.id);
    assert_eq!(update.egress_info.unwrap().egress_id, started.egress_id);

    client
        .stop_egress(lk::StopEgressRequest {
            egress_id: started.egress_id.clone(),
        })
        .await
        .unwrap();
    let ended = loop {
        let event = next_event(&mut events, WAIT).await.unwrap().unwrap();
        if event.event == "egress_ended" {
            break event;
        }
    };
    assert_eq!(ended.source, "reconcile");
    let info = ended.egress_info.unwrap();
    assert_eq!(info.egress_id, started.egress_id);
    assert!(
        [
            EgressStatus::EgressComplete,
            EgressStatus::EgressFailed,
            EgressStatus::EgressAborted
        ]
        .contains(&info.status()),
        "{info:?}"
    );
}

#[tokio::test]
async fn a_snapshot_comes_first() {
    let sim = sim();
    let gateway = webhook_gateway(&sim.url(), &[]);
    let mut client = gateway.client().await;
    let started = client
        .start_room_composite_egress(lk::RoomCompositeEgressRequest {
            room_name: "snap-room".into(),
            file_outputs: vec![lk::EncodedFileOutput {
                filepath: "out.mp4".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let request = WatchEgressRequest {
        room_name: "snap-room".into(),
        snapshot: true,
        ..Default::default()
    };
    let mut events = watch(gateway.channel().await, request, None).await.unwrap();
    let first = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.source, "snapshot");
    assert_eq!(first.egress_info.unwrap().egress_id, started.egress_id);
    // Live events follow.
    let hook = gateway.webhook.unwrap();
    deliver(
        hook,
        &egress_webhook(
            "egress_updated",
            "EV_S",
            &started.egress_id,
            "snap-room",
            "EGRESS_ACTIVE",
        ),
    )
    .await;
    assert_eq!(
        next_event(&mut events, WAIT).await.unwrap().unwrap().id,
        "EV_S"
    );
}

#[tokio::test]
async fn watches_end_unavailable_when_the_gateway_drains() {
    let sim = sim();
    let gateway = webhook_gateway(&sim.url(), &[]);
    let mut events = watch(gateway.channel().await, all(), None).await.unwrap();
    let stopping = std::thread::spawn(move || drop(gateway));
    let end = next_event(&mut events, Duration::from_secs(10)).await;
    match end {
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    stopping.join().unwrap();
}

#[tokio::test]
async fn events_cross_replicas_through_redis() {
    let redis = RedisServer::start();
    let sim = sim();
    let a = webhook_gateway(&sim.url(), &["--redis-url", &redis.url()]);
    let b = webhook_gateway(&sim.url(), &["--redis-url", &redis.url()]);
    // Both subscribed before anything is posted.
    for gateway in [&a, &b] {
        wait_for_metric(gateway, "egress_proxy_redis_up 1").await;
    }
    let mut on_b = watch(b.channel().await, all(), None).await.unwrap();
    let mut on_a = watch(a.channel().await, all(), None).await.unwrap();

    deliver(
        a.webhook.unwrap(),
        &egress_webhook("egress_started", "EV_R1", "EG_R", "r", "EGRESS_STARTING"),
    )
    .await;
    let got = next_event(&mut on_b, WAIT).await.unwrap().unwrap();
    assert_eq!(got.id, "EV_R1");
    let local = next_event(&mut on_a, WAIT).await.unwrap().unwrap();
    assert_eq!(local.id, "EV_R1");
    // LiveKit's retry reaching the other replica is still one event.
    deliver(
        b.webhook.unwrap(),
        &egress_webhook("egress_started", "EV_R1", "EG_R", "r", "EGRESS_STARTING"),
    )
    .await;
    deliver(
        b.webhook.unwrap(),
        &egress_webhook("egress_ended", "EV_R2", "EG_R", "r", "EGRESS_COMPLETE"),
    )
    .await;
    assert_eq!(
        next_event(&mut on_a, WAIT).await.unwrap().unwrap().id,
        "EV_R2"
    );
    assert_eq!(
        next_event(&mut on_b, WAIT).await.unwrap().unwrap().id,
        "EV_R2"
    );

    // A message on the channel that is not ours is dropped and counted, never delivered.
    let published = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "PUBLISH",
            "egress-gateway:events:v1",
            "junk",
        ])
        .output()
        .expect("redis-cli (Debian redis-tools, installed with redis-server)");
    assert!(published.status.success());
    for gateway in [&a, &b] {
        wait_for_metric(
            gateway,
            r#"egress_proxy_events_ignored_total{reason="undecodable"} 1"#,
        )
        .await;
    }
    assert!(
        next_event(&mut on_b, Duration::from_millis(200))
            .await
            .is_none()
    );

    // Redis gone: each replica still serves its own events, and says so.
    let port = redis.port;
    drop(redis);
    wait_for_metric(&a, "egress_proxy_redis_up 0").await;
    let (status, ready) = egress_e2e::admin_get(a.admin, "/readyz").await;
    assert_eq!(status, 200, "calls do not need redis");
    assert!(ready.contains("redis unreachable"), "{ready}");
    deliver(
        a.webhook.unwrap(),
        &egress_webhook("egress_updated", "EV_R3", "EG_Q", "r", "EGRESS_ACTIVE"),
    )
    .await;
    assert_eq!(
        next_event(&mut on_a, WAIT).await.unwrap().unwrap().id,
        "EV_R3"
    );
    assert!(
        next_event(&mut on_b, Duration::from_millis(300))
            .await
            .is_none()
    );

    // Back: the replicas reconnect on their own.
    let _redis = RedisServer::start_on(port);
    for gateway in [&a, &b] {
        wait_for_metric(gateway, "egress_proxy_redis_up 1").await;
    }
    deliver(
        b.webhook.unwrap(),
        &egress_webhook("egress_updated", "EV_R4", "EG_Q", "r", "EGRESS_ENDING"),
    )
    .await;
    assert_eq!(
        next_event(&mut on_a, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap()
            .id,
        "EV_R4"
    );
}

async fn wait_for_metric(gateway: &Gateway, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics(gateway).await;
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw {line:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A watcher whose HTTP/2 window stays (nearly) shut cannot make the gateway buffer for
/// it: once it is a whole `--watch-queue` behind, it is ended with RESOURCE_EXHAUSTED.
#[tokio::test]
async fn a_watcher_that_stops_reading_is_ended_not_buffered() {
    let sim = sim();
    let gateway = webhook_gateway(&sim.url(), &["--watch-queue", "4"]);
    let hook = gateway.webhook.unwrap();

    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(1);
    let (send, connection) = builder.handshake::<_, bytes::Bytes>(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send.ready().await.unwrap();
    let head = http::Request::post(format!(
        "http://{}/egress_gateway.v1.EgressEvents/Watch",
        gateway.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, mut request_body) = send.send_request(head, false).unwrap();
    // An empty WatchEgressRequest, gRPC-framed.
    request_body
        .send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    wait_for_metric(&gateway, "egress_proxy_event_watchers 1").await;

    for i in 0..20 {
        let body = egress_webhook(
            "egress_updated",
            &format!("EV_{i}"),
            "EG_1",
            "r",
            "EGRESS_ACTIVE",
        );
        deliver(hook, &body).await;
    }
    // Now read, a window's worth at a time: what was written before the watcher fell behind,
    // then the end.
    let mut body = response.into_body();
    let reading = async {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
        }
        body.trailers().await.unwrap().expect("trailers")
    };
    let trailers = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the watch ends");
    assert_eq!(trailers["grpc-status"], "8", "{trailers:?}");
    let message = trailers["grpc-message"].to_str().unwrap();
    assert!(message.contains("fell%20behind"), "{message}");
    let text = metrics(&gateway).await;
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("egress_proxy_events_dropped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(dropped > 0, "{text}");
    wait_for_metric(&gateway, "egress_proxy_event_watchers 0").await;
}
