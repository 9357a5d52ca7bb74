//! The gateway in front of a simulator that behaves like LiveKit's released server: rooms
//! that must be live, egress workers that are missing or gone, ListEgress by id. What a
//! gRPC caller sees of each, through tonic's generated client.

use std::time::{Duration, Instant};

use egress_e2e::{Gateway, ProxyOptions, raw_grpc_call, sim_builder, spawn_sim};
use egress_proto::livekit::{
    self, EgressStatus, ListEgressRequest, StopEgressRequest, StreamOutput, StreamProtocol,
};
use egress_sim::Rooms;
use prost::Message as _;
use tonic::Code;

fn room_composite(room: &str) -> livekit::RoomCompositeEgressRequest {
    livekit::RoomCompositeEgressRequest {
        room_name: room.into(),
        layout: "grid".into(),
        stream_outputs: vec![StreamOutput {
            protocol: StreamProtocol::Rtmp as i32,
            urls: vec!["rtmp://live.example.com/app/key".into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn strict_rooms_answer_not_found_until_the_room_is_live() {
    let sim = spawn_sim(sim_builder().rooms(Rooms::Strict));
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = proxy.client().await;

    let status = client
        .start_room_composite_egress(room_composite("standup"))
        .await
        .expect_err("no such room");
    assert_eq!(status.code(), Code::NotFound);
    // The open-source server (the simulator's default flavor) relays it.
    assert_eq!(
        status.message(),
        concat!("twirp error unknown: ", "requested room does not exist")
    );
    assert!(sim.egresses().is_empty());

    let sid = sim.create_room("standup");
    let info = client
        .start_room_composite_egress(room_composite("standup"))
        .await
        .expect("the room is live")
        .into_inner();
    assert_eq!(info.room_id, sid);

    // Ending the room ends its egress (still starting, so aborted).
    assert_eq!(sim.end_room("standup"), Some(vec![info.egress_id.clone()]));
    let listed = client
        .list_egress(ListEgressRequest {
            egress_id: info.egress_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.items[0].status, EgressStatus::EgressAborted as i32);
}

#[tokio::test]
async fn no_worker_and_a_short_deadline_end_at_the_deadline_not_after_20_s() {
    // LiveKit's own 20 s wait for a worker.
    let sim = spawn_sim(sim_builder().egress_workers(false));
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());

    // A generated client gives up at its own deadline (tonic answers itself CANCELLED);
    // this one waits for the gateway's answer.
    let started = Instant::now();
    let answer = raw_grpc_call(
        proxy.addr,
        "/livekit.Egress/StartRoomCompositeEgress",
        &[("grpc-timeout", "300m")],
        &room_composite("standup").encode_to_vec(),
    )
    .await;
    let elapsed = started.elapsed();
    // LiveKit answers `canceled` `request canceled` at the X-Twirp-Timeout-Ms the gateway
    // passes on (psrpc's retry gives up so when the request's context ends), a moment
    // before the gateway's own timer: either way the caller's deadline passed, and it gets
    // DEADLINE_EXCEEDED.
    assert_eq!(
        answer.grpc_status(),
        Some(Code::DeadlineExceeded as i32),
        "{answer:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(sim.egresses().is_empty());
    let sent = sim.requests();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].header("x-twirp-timeout-ms").is_some());
}

#[tokio::test]
async fn no_worker_without_a_deadline_is_unavailable_after_the_wait() {
    let sim = spawn_sim(
        sim_builder()
            .egress_workers(false)
            .no_worker_delay(Duration::from_millis(300)),
    );
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = proxy.client().await;

    let started = Instant::now();
    let status = client
        .start_room_composite_egress(room_composite("standup"))
        .await
        .expect_err("no worker");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The open-source server (the simulator's default flavor) relays it.
    assert_eq!(
        status.message(),
        concat!("twirp error unknown: ", "no response from servers")
    );
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Workers come back: the same call works.
    sim.set_egress_workers(true);
    client
        .start_room_composite_egress(room_composite("standup"))
        .await
        .expect("a worker takes it");
}

#[tokio::test]
async fn a_gone_worker_makes_stop_time_out_and_list_by_id_ignores_filters() {
    let sim = spawn_sim(sim_builder().start_delay(Duration::ZERO));
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = proxy.client().await;

    let info = client
        .start_room_composite_egress(room_composite("standup"))
        .await
        .unwrap()
        .into_inner();
    sim.drop_worker(&info.egress_id).expect("known egress");
    let status = client
        .stop_egress(StopEgressRequest {
            egress_id: info.egress_id.clone(),
        })
        .await
        .expect_err("nobody answers");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // The open-source server (the simulator's default flavor) relays it.
    assert_eq!(
        status.message(),
        concat!("twirp error unknown: ", "request timed out")
    );

    let listed = client
        .list_egress(ListEgressRequest {
            egress_id: info.egress_id.clone(),
            room_name: "elsewhere".into(),
            active: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].egress_id, info.egress_id);
    assert_eq!(listed.items[0].status, EgressStatus::EgressActive as i32);
}
