//! LiveKit's own Rust server SDK (`livekit-api`) against the gateway's Twirp door, with a
//! caller key of its own: every egress method, a policy denial, a wrong secret, an expired
//! token, a deadline, the caller's protobuf bytes forwarded unchanged, and JSON requests in
//! both name styles.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use egress_auth::{ApiSecret, Claims, Credentials, VideoGrants, mint, sign_claims};
use egress_e2e::certs::temp_dir;
use egress_e2e::{API_KEY, Gateway, ProxyOptions, sim_activating_after, sim_builder, spawn_sim};
use egress_proto::livekit::egress_client::EgressClient as GrpcClient;
use egress_sim::SimHandle;
use livekit_api::services::egress::{
    EgressClient, EgressListFilter, EgressListOptions, EgressOutput, ParticipantEgressOptions,
    RoomCompositeOptions, TrackCompositeOptions, TrackEgressOutput, WebOptions,
};
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as proto;
use prost::Message;

const SDK_KEY: &str = "APIsdkcaller";
const SDK_SECRET: &str = "sdk-caller-secret-0123456789abcdef";
const ROOM: &str = "sdk-room";

/// A policy whose only caller is the SDK, by its own key; its secret in a file.
fn policy(dir: &std::path::Path) -> PathBuf {
    let secret = dir.join("sdk.secret");
    std::fs::write(&secret, format!("{SDK_SECRET}\n")).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
[auth]
mode = "bearer"

[[callers]]
name = "sdk"
api_key = "{SDK_KEY}"
api_secret_file = "{}"
policy = "sdk"

[policies.sdk]
rpcs = ["*"]
rooms = ["sdk-*"]
"#,
            secret.display()
        ),
    )
    .unwrap();
    policy
}

struct Setup {
    sim: SimHandle,
    gateway: Gateway,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn setup_with(sim: SimHandle, options: ProxyOptions) -> Setup {
    let dir = temp_dir("twirp-door");
    let policy = policy(&dir);
    let gateway = Gateway::start(
        &sim.url(),
        options
            .arg("--policy-file")
            .arg(policy.display().to_string()),
    );
    Setup {
        sim,
        gateway,
        _dir: tempdir::Dir(dir),
    }
}

fn setup() -> Setup {
    setup_with(
        sim_activating_after(Duration::from_millis(50)),
        ProxyOptions::default(),
    )
}

/// LiveKit's SDK, as a service would configure it: the gateway's URL, its own key.
fn sdk(gateway: &Gateway, secret: &str) -> EgressClient {
    EgressClient::with_api_key(&gateway.url(), SDK_KEY, secret)
        .with_request_timeout(Duration::from_secs(10))
}

fn in_room() -> EgressListOptions {
    EgressListOptions {
        filter: EgressListFilter::Room(ROOM.into()),
        ..Default::default()
    }
}

fn twirp_error(error: ServiceError) -> (String, String) {
    match error {
        ServiceError::Twirp(ServerError::Twirp(code)) => (code.code, code.msg),
        other => panic!("not a Twirp error: {other:?}"),
    }
}

fn rtmp(url: &str) -> EgressOutput {
    EgressOutput::Stream(proto::StreamOutput {
        protocol: proto::StreamProtocol::Rtmp as i32,
        urls: vec![url.to_owned()],
    })
}

fn token(claims: &Claims, secret: &str) -> String {
    sign_claims(&ApiSecret::new(secret), claims).unwrap()
}

fn sdk_token() -> String {
    mint(
        &Credentials::new(SDK_KEY, SDK_SECRET),
        &VideoGrants::room_record(),
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap()
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A raw Twirp POST: status, content type and body.
async fn post(
    gateway: &Gateway,
    method: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut request = http()
        .post(format!("{}/twirp/livekit.Egress/{method}", gateway.url()))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

async fn scrape_metrics(gateway: &Gateway) -> String {
    let url = format!("http://{}/metrics", gateway.admin);
    http().get(url).send().await.unwrap().text().await.unwrap()
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

#[tokio::test]
async fn livekits_rust_sdk_drives_every_egress_method_with_its_own_key() {
    let setup = setup();
    let client = sdk(&setup.gateway, SDK_SECRET);

    let rc = client
        .start_room_composite_egress(
            ROOM,
            vec![rtmp("rtmp://live.example.com/app/key")],
            RoomCompositeOptions {
                layout: "grid".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(rc.egress_id.starts_with("EG_"));
    assert_eq!(rc.room_name, ROOM);

    let web = client
        .start_web_egress(
            "https://example.com/dashboard",
            vec![rtmp("rtmp://b.example.com/live/stream-key")],
            WebOptions::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        web.request,
        Some(proto::egress_info::Request::Web(_))
    ));

    let participant = client
        .start_participant_egress(
            ROOM,
            "alice",
            vec![EgressOutput::Segments(proto::SegmentedFileOutput {
                filename_prefix: "hls/alice".into(),
                ..Default::default()
            })],
            ParticipantEgressOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(participant.room_id, rc.room_id);

    let track_composite = client
        .start_track_composite_egress(
            ROOM,
            vec![EgressOutput::Image(proto::ImageOutput {
                capture_interval: 5,
                filename_prefix: "thumbs".into(),
                ..Default::default()
            })],
            TrackCompositeOptions {
                audio_track_id: "TR_a".into(),
                video_track_id: "TR_v".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(track_composite.image_results[0].filename_prefix, "thumbs");

    let track = client
        .start_track_egress(
            ROOM,
            TrackEgressOutput::File(Box::new(proto::DirectFileOutput {
                filepath: "tracks/TR_a.ogg".into(),
                ..Default::default()
            })),
            "TR_a",
        )
        .await
        .unwrap();
    assert_eq!(track.file_results[0].filename, "tracks/TR_a.ogg");

    let unified = client
        .start_egress(proto::StartEgressRequest {
            room_name: ROOM.into(),
            source: Some(proto::start_egress_request::Source::Media(
                proto::MediaSource {
                    video: Some(proto::media_source::Video::VideoTrackId("TR_v".into())),
                    ..Default::default()
                },
            )),
            outputs: vec![proto::Output {
                config: Some(proto::output::Config::File(proto::FileOutput {
                    filepath: "media.mp4".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(unified.egress_id.starts_with("EG_"));

    tokio::time::sleep(Duration::from_millis(150)).await;
    let updated = client
        .update_layout(&rc.egress_id, "speaker")
        .await
        .unwrap();
    match updated.request {
        Some(proto::egress_info::Request::RoomComposite(r)) => assert_eq!(r.layout, "speaker"),
        other => panic!("{other:?}"),
    }
    let streamed = client
        .update_stream(
            &rc.egress_id,
            vec!["rtmp://c.example.com/live".into()],
            vec![],
        )
        .await
        .unwrap();
    assert!(
        streamed
            .stream_results
            .iter()
            .any(|s| s.url.starts_with("rtmp://c.example.com")),
        "{streamed:?}"
    );

    let in_room = client
        .list_egress(EgressListOptions {
            filter: EgressListFilter::Room(ROOM.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(in_room.len(), 5);
    let stopped = client.stop_egress(&rc.egress_id).await.unwrap();
    assert_eq!(stopped.egress_id, rc.egress_id);

    // Ten calls reached LiveKit (besides the policy's lookup of an egress's room, which
    // carries no idempotency key), every one with the gateway's key, never the caller's.
    let requests = setup.sim.requests();
    let calls = requests
        .iter()
        .filter(|r| r.header("x-livekit-request-id").is_some())
        .count();
    assert_eq!(calls, 10, "{requests:?}");
    for request in &requests {
        let claims = request.grants().expect("a token");
        assert_eq!(claims.iss, API_KEY);
    }

    // Same metrics and audit as gRPC calls, the door as a label.
    let metrics = scrape_metrics(&setup.gateway).await;
    for rpc in ["StartRoomCompositeEgress", "ListEgress", "StopEgress"] {
        let series = format!(r#"egress_proxy_calls_total{{door="twirp",rpc="{rpc}",code="OK"}} 1"#);
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
        let timed =
            format!(r#"egress_proxy_call_duration_seconds_count{{door="twirp",rpc="{rpc}"}} 1"#);
        assert!(metrics.contains(&timed), "{timed} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_policy_denial_surfaces_as_livekits_permission_denied_naming_the_rule() {
    let setup = setup();
    let client = sdk(&setup.gateway, SDK_SECRET);
    let (code, msg) = twirp_error(
        client
            .start_room_composite_egress(
                "finance-room",
                vec![rtmp("rtmp://live.example.com/app/key")],
                RoomCompositeOptions::default(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "permission_denied");
    assert!(msg.contains("policies.sdk.rooms"), "{msg}");
    assert!(msg.contains("finance-room"), "{msg}");
    assert!(setup.sim.requests().is_empty());

    // LiveKit's own errors pass through as LiveKit wrote them.
    let (code, msg) = twirp_error(client.stop_egress("EG_unknown").await.unwrap_err());
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("not_found", "twirp error unknown: egress does not exist")
    );
}

#[tokio::test]
async fn wrong_secrets_and_expired_tokens_are_refused_like_livekits_middleware() {
    let setup = setup();

    // LiveKit's SDK reads the plain-text 401 as it reads LiveKit's: not a Twirp error.
    let wrong = sdk(&setup.gateway, "not-the-secret");
    match wrong.list_egress(EgressListOptions::default()).await {
        Err(ServiceError::Twirp(ServerError::Request(_))) => {}
        other => panic!("expected the SDK's failed read of a plain-text 401: {other:?}"),
    }

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |exp: u64, grants: VideoGrants| Claims {
        exp,
        iss: SDK_KEY.into(),
        nbf: now - 600,
        video: grants,
        ..Default::default()
    };
    let body = proto::ListEgressRequest::default().encode_to_vec();
    for (token, status, text) in [
        (
            token(
                &claims(now + 600, VideoGrants::room_record()),
                "not-the-secret",
            ),
            401,
            "invalid token, error: invalid token signature",
        ),
        // Past LiveKit's minute of leeway.
        (
            token(&claims(now - 120, VideoGrants::room_record()), SDK_SECRET),
            401,
            "invalid token, error: token has expired",
        ),
        ("not-a-jwt".to_owned(), 401, "invalid bearer token"),
    ] {
        let (got, content_type, answer) = post(
            &setup.gateway,
            "ListEgress",
            "application/protobuf",
            &[bearer(&token)],
            body.clone(),
        )
        .await;
        assert_eq!(got, status, "{text}");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(String::from_utf8(answer).unwrap(), text);
    }
    // A valid token without the roomRecord grant: LiveKit's Twirp `permissions denied`.
    let (status, content_type, answer) = post(
        &setup.gateway,
        "ListEgress",
        "application/protobuf",
        &[bearer(&token(
            &claims(now + 600, VideoGrants::default()),
            SDK_SECRET,
        ))],
        body.clone(),
    )
    .await;
    assert_eq!((status, content_type.as_str()), (401, "application/json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&answer).unwrap(),
        serde_json::json!({"code": "unauthenticated", "msg": "permissions denied"})
    );
    // No token at all, in bearer mode.
    let (status, _, _) = post(
        &setup.gateway,
        "ListEgress",
        "application/protobuf",
        &[],
        body,
    )
    .await;
    assert_eq!(status, 401);
    assert!(setup.sim.requests().is_empty());
}

#[tokio::test]
async fn the_callers_deadline_is_honoured() {
    // No egress worker: LiveKit would keep a Start waiting 20 s for one.
    let setup = setup_with(
        spawn_sim(sim_builder().egress_workers(false)),
        ProxyOptions::default(),
    );
    let request = proto::RoomCompositeEgressRequest {
        room_name: ROOM.into(),
        file_outputs: vec![proto::EncodedFileOutput {
            filepath: "a.mp4".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let (status, content_type, answer) = post(
        &setup.gateway,
        "StartRoomCompositeEgress",
        "application/protobuf",
        &[
            bearer(&sdk_token()),
            ("x-twirp-timeout-ms", "400".to_owned()),
        ],
        request.encode_to_vec(),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((status, content_type.as_str()), (408, "application/json"));
    let error: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(error["code"], "deadline_exceeded", "{error}");
    // The remaining budget went on to LiveKit.
    let forwarded: u64 = setup.sim.requests()[0]
        .header("x-twirp-timeout-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(forwarded <= 400, "{forwarded}");

    // The SDK sends no deadline: the gateway's default (--upstream-timeout) applies.
    let setup = setup_with(
        spawn_sim(sim_builder().egress_workers(false)),
        ProxyOptions::default()
            .arg("--upstream-timeout")
            .arg("300ms"),
    );
    let (code, _) = twirp_error(
        sdk(&setup.gateway, SDK_SECRET)
            .start_room_composite_egress(
                ROOM,
                vec![rtmp("rtmp://live.example.com/app/key")],
                RoomCompositeOptions::default(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "deadline_exceeded");
}

#[tokio::test]
async fn protobuf_bytes_reach_livekit_unchanged_and_json_is_converted_once() {
    let setup = setup();
    // A message no encoder writes (the room named twice; protobuf keeps the last) still
    // travels as it is: the gateway forwards what the caller sent, not a re-encoding.
    let mut original = proto::ListEgressRequest {
        room_name: "sdk-first".into(),
        ..Default::default()
    }
    .encode_to_vec();
    original.extend(
        proto::ListEgressRequest {
            room_name: ROOM.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let (status, content_type, answer) = post(
        &setup.gateway,
        "ListEgress",
        "application/protobuf",
        &[bearer(&sdk_token())],
        original.clone(),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/protobuf")
    );
    proto::ListEgressResponse::decode(answer.as_slice()).unwrap();
    assert_eq!(setup.sim.requests()[0].body, original);

    // JSON, camelCase and snake_case, unknown fields ignored: LiveKit gets protobuf, the
    // caller JSON back with LiveKit's snake_case names.
    for body in [
        r#"{"roomName":"sdk-room","fileOutputs":[{"filepath":"a.mp4"}],"fromTheFuture":1}"#,
        r#"{"room_name":"sdk-room","file_outputs":[{"filepath":"a.mp4"}]}"#,
    ] {
        setup.sim.clear_requests();
        let (status, content_type, answer) = post(
            &setup.gateway,
            "StartRoomCompositeEgress",
            "application/json; charset=utf-8",
            &[bearer(&sdk_token())],
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/json"),
            "{body}"
        );
        let info: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert!(
            info["egress_id"].as_str().unwrap().starts_with("EG_"),
            "{info}"
        );
        assert_eq!(info["room_name"], ROOM);
        let sent = &setup.sim.requests()[0];
        assert_eq!(sent.content_type.as_deref(), Some("application/protobuf"));
        let request: proto::RoomCompositeEgressRequest = sent.decode().unwrap();
        assert_eq!(request.room_name, ROOM);
        assert_eq!(request.file_outputs[0].filepath, "a.mp4");
    }

    // Policy reads the converted message: a JSON request for another room is denied.
    let (status, _, answer) = post(
        &setup.gateway,
        "StartRoomCompositeEgress",
        "application/json",
        &[bearer(&sdk_token())],
        br#"{"roomName":"finance"}"#.to_vec(),
    )
    .await;
    let error: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        (status, error["code"].as_str()),
        (403, Some("permission_denied"))
    );
    assert_eq!(error["meta"]["rule"], "policies.sdk.rooms");

    // Malformed JSON, an unknown method, another content type: as LiveKit answers them.
    for (method, content_type, body, code) in [
        ("ListEgress", "application/json", "{", "malformed"),
        ("Frobnicate", "application/json", "{}", "bad_route"),
        ("ListEgress", "text/plain", "{}", "bad_route"),
    ] {
        let (_, _, answer) = post(
            &setup.gateway,
            method,
            content_type,
            &[bearer(&sdk_token())],
            body.as_bytes().to_vec(),
        )
        .await;
        let error: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            error["code"], code,
            "{method} {content_type} {body}: {error}"
        );
    }
}

#[tokio::test]
async fn a_caller_key_token_works_on_grpc_too() {
    let setup = setup();
    let mut client = GrpcClient::new(egress_e2e::Endpoint::connect(&setup.gateway).await);
    let mut request = tonic::Request::new(egress_proto::livekit::ListEgressRequest {
        room_name: ROOM.into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", sdk_token()).parse().unwrap(),
    );
    client.list_egress(request).await.unwrap();
    let metrics = scrape_metrics(&setup.gateway).await;
    assert!(
        metrics.contains(r#"egress_proxy_calls_total{door="grpc",rpc="ListEgress",code="OK"} 1"#),
        "{metrics}"
    );
}

#[test]
fn a_caller_holding_the_gateways_own_key_is_refused_at_startup() {
    let dir = temp_dir("twirp-own-key");
    let secret = dir.join("caller.secret");
    std::fs::write(&secret, "some-secret").unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[auth]\nmode = \"bearer\"\n\n[[callers]]\nname = \"sneaky\"\napi_key = \"{API_KEY}\"\n\
             api_secret_file = \"{}\"\npolicy = \"p\"\n\n[policies.p]\nrpcs = [\"*\"]\n",
            secret.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(egress_e2e::proxy_bin())
        .args([
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--api-key", API_KEY])
        .arg("--policy-file")
        .arg(&policy)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("policy.toml:6:11: the api_key of caller \"sneaky\" is the gateway's own"),
        "{stderr}"
    );
}

#[tokio::test]
async fn without_a_policy_twirp_callers_are_anonymous_and_bodies_are_bounded() {
    let sim = sim_activating_after(Duration::from_millis(50));
    let gateway = Gateway::start(
        &sim.url(),
        ProxyOptions::default().arg("--max-message-size").arg("64"),
    );
    // Loopback without a policy file: no token needed, as on gRPC.
    let (status, content_type, body) = post(
        &gateway,
        "ListEgress",
        "application/json",
        &[],
        br#"{"room_name":"any"}"#.to_vec(),
    )
    .await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(listed["items"].is_array(), "{listed}");

    // Over --max-message-size: refused before LiveKit, in plain text as LiveKit does.
    sim.clear_requests();
    let big = format!(r#"{{"room_name":"{}"}}"#, "r".repeat(100));
    let (status, content_type, body) = post(
        &gateway,
        "ListEgress",
        "application/json",
        &[],
        big.into_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("--max-message-size"),
        "the limit is named"
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn a_rotated_caller_secret_takes_effect_without_a_restart() {
    let setup = setup();
    let before = sdk(&setup.gateway, SDK_SECRET);
    before.list_egress(in_room()).await.unwrap();

    let rotated = "sdk-caller-secret-rotated-fedcba9876543210";
    std::fs::write(setup._dir.0.join("sdk.secret"), rotated).unwrap();
    let after = sdk(&setup.gateway, rotated);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while after.list_egress(in_room()).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new secret was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match before.list_egress(in_room()).await {
        Err(ServiceError::Twirp(ServerError::Request(_))) => {}
        other => panic!("the old secret should get the plain-text 401: {other:?}"),
    }
}
