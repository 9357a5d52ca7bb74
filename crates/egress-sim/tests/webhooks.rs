//! The simulator's LiveKit webhooks, caught by a loopback HTTP receiver: signed as LiveKit
//! signs them (checked with `egress_auth::verify_webhook`), readable by the gateway's parser
//! (`egress_core::events::parse_webhook`), in lifecycle order, retried, and dropped by the
//! `drop_webhook` fault exactly as asked.

mod common;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use egress_core::events::{Event, EventKind, Webhook, parse_webhook};
use egress_proto::livekit::{self as lk, EgressInfo, EgressStatus};
use egress_sim::{Fault, SimHandle, WebhookOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Verified with the simulator's key, then parsed as the gateway parses webhooks.
    fn event(&self) -> Event {
        let lookup = |key: &str| (key == KEY).then(|| credentials().api_secret.clone());
        egress_auth::verify_webhook(
            self.header("authorization"),
            &self.body,
            lookup,
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("webhook not verified: {e}"));
        match parse_webhook(&self.body).expect("an egress webhook") {
            Webhook::Egress(event) => *event,
            other => panic!("not an egress event: {other:?}"),
        }
    }
}

/// A loopback HTTP/1.1 server that records every request and answers with the next of
/// `answers` (200 once they run out).
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            answers: Arc::default(),
        };
        let this = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(this.clone().serve(stream));
            }
        });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    async fn serve(self, mut stream: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
            .to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        self.got.lock().unwrap().push(Received {
            path,
            headers,
            body,
        });
        let status = self.answers.lock().unwrap().pop_front().unwrap_or(200);
        let answer =
            format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests came (panics after 10 s).
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} webhooks came: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn with_hooks(receivers: &[&Receiver]) -> SimHandle {
    let mut b = builder().webhook_retry_wait(Duration::from_millis(50));
    for r in receivers {
        b = b.webhook_url(r.url());
    }
    spawn(b)
}

fn request(room: &str) -> lk::RoomCompositeEgressRequest {
    lk::RoomCompositeEgressRequest {
        room_name: room.to_owned(),
        stream_outputs: vec![lk::StreamOutput {
            protocol: lk::StreamProtocol::Rtmp as i32,
            urls: vec!["rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl".to_owned()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn start(sim: &SimHandle, room: &str) -> EgressInfo {
    call(sim, "StartRoomCompositeEgress", &request(room))
        .await
        .decode()
}

async fn stop(sim: &SimHandle, id: &str) -> EgressInfo {
    let stop = lk::StopEgressRequest {
        egress_id: id.to_owned(),
    };
    call(sim, "StopEgress", &stop).await.decode()
}

fn status(event: &Event) -> EgressStatus {
    EgressStatus::try_from(event.info.status).unwrap()
}

fn kinds(events: &[Event]) -> Vec<(EventKind, EgressStatus)> {
    events.iter().map(|e| (e.kind, status(e))).collect()
}

/// Waits until the simulator has recorded `n` deliveries.
async fn wait_records(sim: &SimHandle, n: usize) -> Vec<egress_sim::WebhookDelivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = sim.webhooks();
        if records.len() >= n {
            return records;
        }
        assert!(Instant::now() < deadline, "{records:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_lifecycle_arrives_signed_in_order_at_every_url() {
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let sim = with_hooks(&[&first, &second]);

    let info = start(&sim, "team-a").await;
    // ACTIVE is computed from timestamps: its webhook comes without any request.
    first.wait_for(2).await;
    let stopped = stop(&sim, &info.egress_id).await;
    assert_eq!(
        EgressStatus::try_from(stopped.status),
        Ok(EgressStatus::EgressEnding)
    );
    let got = first.wait_for(4).await;
    let events: Vec<Event> = got.iter().map(Received::event).collect();
    assert_eq!(
        kinds(&events),
        [
            (EventKind::Started, EgressStatus::EgressStarting),
            (EventKind::Updated, EgressStatus::EgressActive),
            (EventKind::Updated, EgressStatus::EgressEnding),
            (EventKind::Ended, EgressStatus::EgressComplete),
        ]
    );
    for (event, raw) in events.iter().zip(&got) {
        assert_eq!(event.info.egress_id, info.egress_id);
        assert_eq!(event.info.room_name, "team-a");
        assert!(
            event.id.starts_with("EV_") && event.id.len() == 15,
            "{}",
            event.id
        );
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - event.created_at).abs() < 30, "{}", event.created_at);
        assert_eq!(raw.path, "/webhook");
        assert_eq!(raw.header("content-type"), Some("application/webhook+json"));
        assert_eq!(raw.header("user-agent"), Some("LiveKit"));
        assert!(!raw.header("authorization").unwrap().starts_with("Bearer "));
        // As the API answers: the stream key is redacted.
        let text = String::from_utf8_lossy(&raw.body);
        assert!(!text.contains("abcd-efgh-ijkl"), "{text}");
        assert!(
            text.contains(r#""egressInfo":{"#),
            "camelCase protojson: {text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["room"]["name"], "team-a");
        assert_eq!(json["room"]["sid"], info.room_id.as_str());
    }
    let ended = &events[3].info;
    assert!(ended.ended_at > 0);
    assert_eq!(ended.details, "End reason: StopEgress API");
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "ids are unique");

    // The second URL got the same events (same ids), in the same order.
    let other: Vec<Event> = second
        .wait_for(4)
        .await
        .iter()
        .map(Received::event)
        .collect();
    assert_eq!(
        other.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>()
    );

    let records = wait_records(&sim, 8).await;
    assert!(
        records
            .iter()
            .all(|r| r.outcome == WebhookOutcome::Delivered
                && r.http_status == Some(200)
                && r.attempts == 1),
        "{records:?}"
    );
    // Nothing more comes once the egress has ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(first.received().len(), 4);
}

#[tokio::test]
async fn streams_failures_and_aborts_are_reported() {
    let hook = Receiver::start().await;
    let sim = with_hooks(&[&hook]);

    // Stopped while STARTING: aborted, one egress_ended.
    let aborted = start(&sim, "r").await;
    stop(&sim, &aborted.egress_id).await;
    // A stream added while ACTIVE: egress_updated; then a forced failure: egress_ended.
    let live = start(&sim, "r").await;
    hook.wait_for(4).await; // started, ended (aborted), started, updated (active)
    let update = lk::UpdateStreamRequest {
        egress_id: live.egress_id.clone(),
        add_output_urls: vec!["rtmp://b.example.com/app/second".to_owned()],
        ..Default::default()
    };
    assert_eq!(call(&sim, "UpdateStream", &update).await.status, 200);
    sim.fail_egress(&live.egress_id, "disk full").unwrap();

    let events: Vec<Event> = hook.wait_for(6).await.iter().map(Received::event).collect();
    let of = |id: &str| -> Vec<(EventKind, EgressStatus)> {
        kinds(
            &events
                .iter()
                .filter(|e| e.info.egress_id == id)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        of(&aborted.egress_id),
        [
            (EventKind::Started, EgressStatus::EgressStarting),
            (EventKind::Ended, EgressStatus::EgressAborted),
        ]
    );
    assert_eq!(
        of(&live.egress_id),
        [
            (EventKind::Started, EgressStatus::EgressStarting),
            (EventKind::Updated, EgressStatus::EgressActive),
            (EventKind::Updated, EgressStatus::EgressActive),
            (EventKind::Ended, EgressStatus::EgressFailed),
        ]
    );
    let stream_update = events
        .iter()
        .filter(|e| e.info.egress_id == live.egress_id)
        .nth(2)
        .unwrap();
    assert_eq!(stream_update.info.stream_results.len(), 2);
    let failed = events.last().unwrap();
    assert_eq!(failed.info.error, "disk full");
}

#[tokio::test]
async fn the_drop_fault_drops_exactly_what_it_says() {
    let hook = Receiver::start().await;
    let sim = with_hooks(&[&hook]);
    // Webhook faults never touch requests: every RPC below is answered normally.
    sim.faults()
        .push(Fault::drop_webhook().event("egress_updated").times(1));
    // Over HTTP too, as a test in another language would arm it.
    let armed = send(
        client()
            .post(format!("{}/sim/faults", sim.url()))
            .body(r#"{"kind":"drop_webhook","event":"egress_ended","times":1}"#),
    )
    .await;
    assert_eq!(armed.status, 200, "{}", armed.text());

    let info = start(&sim, "r").await;
    // started arrives; the first egress_updated (ACTIVE) is dropped.
    hook.wait_for(1).await;
    wait_records(&sim, 2).await;
    stop(&sim, &info.egress_id).await;
    // egress_updated (ENDING) arrives; egress_ended is dropped.
    let records = wait_records(&sim, 4).await;
    let got: Vec<Event> = hook.received().iter().map(Received::event).collect();
    assert_eq!(
        kinds(&got),
        [
            (EventKind::Started, EgressStatus::EgressStarting),
            (EventKind::Updated, EgressStatus::EgressEnding),
        ]
    );
    let dropped: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.outcome == WebhookOutcome::Dropped)
        .map(|r| (r.event.as_str(), r.egress_status.as_str()))
        .collect();
    assert_eq!(
        dropped,
        [
            ("egress_updated", "EGRESS_ACTIVE"),
            ("egress_ended", "EGRESS_COMPLETE")
        ]
    );
    assert!(
        records
            .iter()
            .filter(|r| r.outcome == WebhookOutcome::Dropped)
            .all(|r| r.fault.as_deref() == Some("drop_webhook") && r.attempts == 0)
    );
    assert!(sim.faults().is_empty(), "both faults were used up");

    // Unlimited and for every event: nothing more is sent.
    sim.faults().push(Fault::drop_webhook());
    let other = start(&sim, "r").await;
    stop(&sim, &other.egress_id).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(hook.received().len(), 2);
    let listed = send(client().get(format!("{}/sim/webhooks", sim.url()))).await;
    let listed = listed.json();
    assert_eq!(listed.as_array().unwrap().len(), sim.webhooks().len());
    assert_eq!(listed[1]["outcome"], "dropped");
    assert_eq!(listed[1]["fault"], "drop_webhook");
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_refusals_are_not() {
    let hook = Receiver::start().await;
    // The first attempt gets a 503, the second a 200; the next webhook a 401.
    hook.answers.lock().unwrap().extend([503, 200, 401]);
    let sim = with_hooks(&[&hook]);
    let info = start(&sim, "r").await;
    stop(&sim, &info.egress_id).await; // aborted: egress_ended
    let records = wait_records(&sim, 2).await;
    let got = hook.wait_for(3).await;
    // The retry is the same request: same body, same token.
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(
        got[0].header("authorization"),
        got[1].header("authorization")
    );
    let started = records
        .iter()
        .find(|r| r.event == "egress_started")
        .unwrap();
    assert_eq!(
        (started.outcome, started.attempts, started.http_status),
        (WebhookOutcome::Delivered, 2, Some(200))
    );
    let ended = records.iter().find(|r| r.event == "egress_ended").unwrap();
    assert_eq!(
        (ended.outcome, ended.attempts, ended.http_status),
        (WebhookOutcome::Rejected, 1, Some(401))
    );

    // Nobody listening: every attempt fails, then the webhook is given up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let sim = spawn(
        builder()
            .webhook_url(url)
            .webhook_retry_wait(Duration::from_millis(10)),
    );
    start(&sim, "r").await;
    let records = wait_records(&sim, 1).await;
    assert_eq!(records[0].outcome, WebhookOutcome::Failed);
    assert_eq!(records[0].attempts, egress_sim::WEBHOOK_ATTEMPTS);
    assert!(records[0].error.as_deref().unwrap().contains("connect"));
}

#[tokio::test]
async fn without_urls_nothing_is_recorded_and_reset_forgets() {
    let plain = spawn(builder());
    let info = start(&plain, "r").await;
    stop(&plain, &info.egress_id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(plain.webhooks().is_empty());

    let hook = Receiver::start().await;
    let sim = with_hooks(&[&hook]);
    start(&sim, "r").await;
    wait_records(&sim, 1).await;
    sim.reset();
    assert!(sim.webhooks().is_empty());
    assert_eq!(
        send(client().delete(format!("{}/sim/webhooks", sim.url())))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_dropped_egress_started_does_not_hold_back_what_follows() {
    let hook = Receiver::start().await;
    let sim = with_hooks(&[&hook]);
    sim.faults()
        .push(Fault::drop_webhook().event("egress_started").times(1));
    let info = start(&sim, "r").await;
    // Nothing was sent for the start, yet ACTIVE is reported when it is due.
    let got = hook.wait_for(1).await;
    let event = got[0].event();
    assert_eq!(
        (event.kind, status(&event)),
        (EventKind::Updated, EgressStatus::EgressActive)
    );
    assert_eq!(event.info.egress_id, info.egress_id);
}
