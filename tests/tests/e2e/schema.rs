//! Fields of the newer LiveKit schema through the real binary: stream `destinations` (on a
//! stream output, and `add_destinations` on `UpdateStream`) name where media is sent just as
//! `urls` do, so a caller confined to some streaming hosts must be refused any other host
//! given that way, before the call reaches LiveKit, and let through intact otherwise.

use std::time::Duration;

use egress_e2e::certs::temp_dir;
use egress_e2e::{Gateway, ProxyOptions, sim_activating_after};
use egress_policy::hash_token;
use egress_proto::livekit::{
    self, RoomCompositeEgressRequest, StartEgressRequest, StreamDestination, StreamOutput,
    UpdateStreamRequest,
};
use egress_sim::SimHandle;
use tonic::Code;

const TOKEN: &str = "streamer-token-0123456789abcdef";
const ALLOWED: &str = "rtmps://eu.live.example.com/app/KEY-ONE";
const ELSEWHERE: &str = "rtmps://evil.example.net/app/KEY-TWO";

fn sim() -> SimHandle {
    sim_activating_after(Duration::from_millis(50))
}

fn proxy(sim: &SimHandle) -> Gateway {
    let policy = format!(
        r#"
[auth]
mode = "bearer"

[[callers]]
name = "streamer"
token_sha256 = "{token}"
policy = "streaming"

[policies.streaming]
rpcs = ["*"]
rooms = ["team-*"]
stream_urls = ["rtmps://*.live.example.com/*"]
"#,
        token = hash_token(TOKEN),
    );
    let dir = temp_dir("schema");
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--policy-file")
            .arg(path.to_str().unwrap()),
    )
}

fn with_token<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

fn destination(id: &str, url: &str) -> StreamDestination {
    StreamDestination {
        id: id.into(),
        url: url.into(),
    }
}

/// A stream output that names its target only through `destinations`.
fn stream(url: &str) -> StreamOutput {
    StreamOutput {
        protocol: livekit::StreamProtocol::Rtmp as i32,
        destinations: vec![destination("main", url)],
        ..Default::default()
    }
}

fn room_composite(url: &str) -> RoomCompositeEgressRequest {
    RoomCompositeEgressRequest {
        room_name: "team-a".into(),
        stream_outputs: vec![stream(url)],
        ..Default::default()
    }
}

fn unified(url: &str) -> StartEgressRequest {
    StartEgressRequest {
        room_name: "team-a".into(),
        source: Some(livekit::start_egress_request::Source::Template(
            livekit::TemplateSource {
                layout: "grid".into(),
                ..Default::default()
            },
        )),
        outputs: vec![livekit::Output {
            config: Some(livekit::output::Config::Stream(stream(url))),
            storage: None,
        }],
        ..Default::default()
    }
}

fn add_destination(egress_id: &str, url: &str) -> UpdateStreamRequest {
    UpdateStreamRequest {
        egress_id: egress_id.into(),
        add_destinations: vec![destination("backup", url)],
        ..Default::default()
    }
}

#[track_caller]
fn assert_denied<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) {
    let status = result.expect_err("a destination outside stream_urls");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let message = status.message();
    assert!(message.contains("stream_urls"), "names the rule: {message}");
    assert!(
        message.contains("rtmps://evil.example.net"),
        "names the host: {message}"
    );
    assert!(!message.contains("KEY-TWO"), "stream key leaked: {message}");
}

/// How many calls of `rpc` reached LiveKit.
fn upstream_calls(sim: &SimHandle, rpc: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.rpc.as_deref() == Some(rpc))
        .count()
}

#[tokio::test]
async fn start_destinations_outside_the_stream_allow_list_are_denied() {
    let sim = sim();
    let proxy = proxy(&sim);
    let mut c = proxy.client().await;

    assert_denied(
        c.start_room_composite_egress(with_token(room_composite(ELSEWHERE)))
            .await,
    );
    assert_denied(c.start_egress(with_token(unified(ELSEWHERE))).await);
    assert_eq!(upstream_calls(&sim, "StartRoomCompositeEgress"), 0);
    assert_eq!(upstream_calls(&sim, "StartEgress"), 0);

    let info = c
        .start_room_composite_egress(with_token(room_composite(ALLOWED)))
        .await
        .expect("a destination inside stream_urls")
        .into_inner();
    assert!(!info.egress_id.is_empty());
    c.start_egress(with_token(unified(ALLOWED)))
        .await
        .expect("a unified destination inside stream_urls");

    // The gateway forwards the new field untouched.
    let forwarded: Vec<RoomCompositeEgressRequest> = sim
        .requests()
        .iter()
        .filter(|r| r.rpc.as_deref() == Some("StartRoomCompositeEgress"))
        .map(|r| r.decode().unwrap())
        .collect();
    assert_eq!(forwarded, [room_composite(ALLOWED)]);
}

#[tokio::test]
async fn update_stream_add_destinations_outside_the_stream_allow_list_are_denied() {
    let sim = sim();
    let proxy = proxy(&sim);
    let mut c = proxy.client().await;
    let egress = c
        .start_room_composite_egress(with_token(room_composite(ALLOWED)))
        .await
        .expect("start")
        .into_inner();

    assert_denied(
        c.update_stream(with_token(add_destination(&egress.egress_id, ELSEWHERE)))
            .await,
    );
    assert_eq!(upstream_calls(&sim, "UpdateStream"), 0);

    c.update_stream(with_token(add_destination(&egress.egress_id, ALLOWED)))
        .await
        .expect("an added destination inside stream_urls");
    let forwarded: Vec<UpdateStreamRequest> = sim
        .requests()
        .iter()
        .filter(|r| r.rpc.as_deref() == Some("UpdateStream"))
        .map(|r| r.decode().unwrap())
        .collect();
    assert_eq!(forwarded, [add_destination(&egress.egress_id, ALLOWED)]);
}
