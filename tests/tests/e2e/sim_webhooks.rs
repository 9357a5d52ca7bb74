//! The simulator's LiveKit webhooks through the gateway's receiver: a watcher of
//! `EgressEvents/Watch` sees an egress started and stopped through the gateway as webhook
//! events; a webhook the simulator drops is made up by the reconcile poll; and `--dev` wires
//! its embedded simulator to its own receiver.

use std::time::Duration;

use egress_e2e::events::{next_event, watch};
use egress_e2e::{API_KEY, API_SECRET, Gateway, ProxyOptions};
use egress_proto::egress_gateway::v1::{EgressEvent, WatchEgressRequest};
use egress_proto::livekit::{self as lk, EgressStatus};
use egress_sim::{Fault, Simulator};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

/// A gateway with a webhook receiver in front of a simulator that posts to it.
struct Setup {
    gateway: Gateway,
    sim: Simulator,
    _stop: oneshot::Sender<()>,
}

/// The simulator's port is bound first (the gateway needs its URL) and it serves once the
/// gateway's receiver address is known (the simulator needs that).
async fn setup(extra: &[&str]) -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    let mut options = ProxyOptions::default()
        .arg("--webhook-listen")
        .arg("127.0.0.1:0");
    for arg in extra {
        options = options.arg(*arg);
    }
    let gateway = Gateway::start(&upstream, options);
    let hook = gateway.webhook.expect("webhook listener");
    let sim = egress_e2e::sim_builder()
        .start_delay(Duration::from_millis(200))
        .credentials(egress_auth::Credentials::new(API_KEY, API_SECRET))
        .webhook_url(format!("http://{hook}/webhook"))
        .build();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = sim.clone();
    tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    Setup {
        gateway,
        sim,
        _stop: stop,
    }
}

fn web_egress() -> lk::WebEgressRequest {
    lk::WebEgressRequest {
        url: "https://example.com".into(),
        file_outputs: vec![lk::EncodedFileOutput {
            filepath: "out.mp4".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn room_egress(room: &str) -> lk::RoomCompositeEgressRequest {
    lk::RoomCompositeEgressRequest {
        room_name: room.into(),
        file_outputs: vec![lk::EncodedFileOutput {
            filepath: "out.mp4".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A watch of every egress (with a snapshot first if asked).
async fn watch_all(gateway: &Gateway, snapshot: bool) -> tonic::Streaming<EgressEvent> {
    let request = WatchEgressRequest {
        snapshot,
        ..Default::default()
    };
    watch(gateway.channel().await, request, None).await.unwrap()
}

async fn stop(
    client: &mut lk::egress_client::EgressClient<tonic::transport::Channel>,
    egress_id: &str,
) {
    let request = lk::StopEgressRequest {
        egress_id: egress_id.to_owned(),
    };
    client.stop_egress(request).await.unwrap();
}

/// Events for `egress_id` until (and with) its `egress_ended`, skipping snapshots.
async fn until_ended(
    events: &mut tonic::Streaming<EgressEvent>,
    egress_id: &str,
) -> Vec<EgressEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(events, WAIT)
            .await
            .unwrap_or_else(|| panic!("no egress_ended for {egress_id}; saw {seen:?}"))
            .unwrap();
        if event.event == "snapshot"
            || event.egress_info.as_ref().map(|i| i.egress_id.as_str()) != Some(egress_id)
        {
            continue;
        }
        let ended = event.event == "egress_ended";
        seen.push(event);
        if ended {
            return seen;
        }
    }
}

fn summary(events: &[EgressEvent]) -> Vec<(&str, &str, EgressStatus)> {
    events
        .iter()
        .map(|e| {
            (
                e.event.as_str(),
                e.source.as_str(),
                e.egress_info.as_ref().unwrap().status(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_watcher_sees_the_simulators_webhooks() {
    let setup = setup(&[]).await;
    let mut events = watch_all(&setup.gateway, false).await;
    let mut client = setup.gateway.client().await;
    let started = client
        .start_room_composite_egress(room_egress("team-a"))
        .await
        .unwrap()
        .into_inner();
    // ACTIVE comes from a webhook; then stop.
    let first = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(first.event, "egress_started");
    let second = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(second.event, "egress_updated");
    stop(&mut client, &started.egress_id).await;
    let mut seen = vec![first, second];
    seen.extend(until_ended(&mut events, &started.egress_id).await);
    assert_eq!(
        summary(&seen),
        [
            ("egress_started", "webhook", EgressStatus::EgressStarting),
            ("egress_updated", "webhook", EgressStatus::EgressActive),
            ("egress_updated", "webhook", EgressStatus::EgressEnding),
            ("egress_ended", "webhook", EgressStatus::EgressComplete),
        ]
    );
    for event in &seen {
        assert!(event.id.starts_with("EV_"), "LiveKit's id: {}", event.id);
        let info = event.egress_info.as_ref().unwrap();
        assert_eq!(info.egress_id, started.egress_id);
        assert_eq!(info.room_name, "team-a");
    }
    // What the simulator sent is what the gateway took.
    let delivered: Vec<_> = setup
        .sim
        .webhooks()
        .into_iter()
        .map(|d| (d.id, d.http_status))
        .collect();
    assert_eq!(
        delivered,
        seen.iter()
            .map(|e| (e.id.clone(), Some(200)))
            .collect::<Vec<_>>()
    );
    let metrics = egress_e2e::admin_get(setup.gateway.admin, "/metrics")
        .await
        .1;
    assert!(
        metrics.contains(r#"egress_proxy_events_received_total{source="webhook"} 4"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_dropped_egress_ended_is_made_up_by_reconciliation() {
    let setup = setup(&["--reconcile-interval", "200ms"]).await;
    setup
        .sim
        .faults()
        .push(Fault::drop_webhook().event("egress_ended").times(1));
    let mut events = watch_all(&setup.gateway, false).await;
    let mut client = setup.gateway.client().await;
    let started = client
        .start_web_egress(web_egress())
        .await
        .unwrap()
        .into_inner();
    let first = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(
        (first.event.as_str(), first.source.as_str()),
        ("egress_started", "webhook")
    );
    // Let it become ACTIVE so that the stop ends it (not aborts it).
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop(&mut client, &started.egress_id).await;
    let seen = until_ended(&mut events, &started.egress_id).await;
    let ended = seen.last().unwrap();
    assert_eq!(ended.source, "reconcile", "{:?}", summary(&seen));
    assert!(ended.id.starts_with("reconcile-"), "{}", ended.id);
    assert_eq!(
        ended.egress_info.as_ref().unwrap().status(),
        EgressStatus::EgressComplete
    );
    // The simulator did drop it, and sent the others.
    let records = setup.sim.webhooks();
    let dropped: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == egress_sim::WebhookOutcome::Dropped)
        .map(|r| r.event.as_str())
        .collect();
    assert_eq!(dropped, ["egress_ended"]);
    assert!(
        seen.iter()
            .any(|e| e.event == "egress_updated" && e.source == "webhook"),
        "{:?}",
        summary(&seen)
    );
}

#[tokio::test]
async fn dev_mode_wires_its_simulator_to_its_receiver() {
    let gateway = Gateway::start_dev(ProxyOptions::default());
    let mut events = watch_all(&gateway, true).await;
    let mut client = gateway.client().await;
    let started = client
        .start_web_egress(web_egress())
        .await
        .unwrap()
        .into_inner();
    let first = loop {
        let event = next_event(&mut events, WAIT).await.unwrap().unwrap();
        if event.event != "snapshot" {
            break event;
        }
    };
    assert_eq!(
        (first.event.as_str(), first.source.as_str()),
        ("egress_started", "webhook")
    );
    assert_eq!(first.egress_info.unwrap().egress_id, started.egress_id);
    let active = next_event(&mut events, WAIT).await.unwrap().unwrap();
    assert_eq!(
        (active.event.as_str(), active.source.as_str()),
        ("egress_updated", "webhook")
    );
    stop(&mut client, &started.egress_id).await;
    let seen = until_ended(&mut events, &started.egress_id).await;
    assert!(
        seen.iter().all(|e| e.source == "webhook"),
        "{:?}",
        summary(&seen)
    );
    assert_eq!(
        seen.last().unwrap().egress_info.as_ref().unwrap().status(),
        EgressStatus::EgressComplete
    );
}
