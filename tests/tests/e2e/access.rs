//! Who may call what, through the real binary: bearer and mTLS authentication, the policy
//! allow/deny matrix for every RPC, hot reload under load, secret rotation.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use egress_auth::Credentials;
use egress_e2e::certs::{TestCa, temp_dir};
use egress_e2e::{API_KEY, API_SECRET, Gateway, Proxy, ProxyOptions, sim_activating_after};
use egress_policy::hash_token;
use egress_proto::livekit::egress_client::EgressClient;
use egress_proto::livekit::{
    self, EncodedFileOutput, ListEgressRequest, StopEgressRequest, StreamOutput,
    UpdateLayoutRequest, UpdateStreamRequest,
};
use egress_sim::{SimHandle, Simulator};
use tonic::Code;
use tonic::transport::Channel;

const RECORDER_TOKEN: &str = "recorder-token-0123456789abcdef";
const OPS_TOKEN: &str = "ops-token-fedcba9876543210";

fn sim() -> SimHandle {
    sim_activating_after(Duration::from_millis(50))
}

fn bearer_policy() -> String {
    format!(
        r#"
[auth]
mode = "bearer"

[[callers]]
name = "recorder"
token_sha256 = "{recorder}"
policy = "recording"

[[callers]]
name = "ops"
token_sha256 = "{ops}"
policy = "admin"

[policies.recording]
rpcs = ["StartRoomCompositeEgress", "StartWebEgress", "StartParticipantEgress", "StartTrackCompositeEgress", "StartTrackEgress", "StartEgress", "UpdateLayout", "UpdateStream", "ListEgress", "StopEgress"]
rooms = ["team-*"]
stream_urls = ["rtmps://*.live.example.com/*"]
file_buckets = ["@default"]
file_prefixes = ["recordings/"]
web_urls = ["https://*.example.com/*"]

[policies.admin]
rpcs = ["*"]
"#,
        recorder = hash_token(RECORDER_TOKEN),
        ops = hash_token(OPS_TOKEN),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn file(path: &str) -> Vec<EncodedFileOutput> {
    vec![EncodedFileOutput {
        filepath: path.into(),
        ..Default::default()
    }]
}

fn room_composite(room: &str) -> livekit::RoomCompositeEgressRequest {
    livekit::RoomCompositeEgressRequest {
        room_name: room.into(),
        file_outputs: file("recordings/a.mp4"),
        ..Default::default()
    }
}

async fn start_as(
    client: &mut EgressClient<Channel>,
    token: &str,
    room: &str,
) -> Result<livekit::EgressInfo, tonic::Status> {
    client
        .start_room_composite_egress(with_token(room_composite(room), token))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn bearer_tokens_authenticate_callers() {
    let dir = temp_dir("bearer");
    let policy = write(&dir, "policy.toml", &bearer_policy());
    let sim = sim();
    let proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--policy-file")
            .arg(policy.to_str().unwrap())
            .env("RUST_LOG", "debug"),
    );
    let mut client = proxy.client().await;

    let ok = start_as(&mut client, RECORDER_TOKEN, "team-a").await;
    assert!(ok.is_ok(), "{ok:?}");

    let missing = client
        .list_egress(ListEgressRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("Bearer"),
        "{}",
        missing.message()
    );

    let wrong = start_as(&mut client, "not-a-known-token", "team-a")
        .await
        .expect_err("wrong token");
    assert_eq!(wrong.code(), Code::Unauthenticated);

    let mut malformed = tonic::Request::new(ListEgressRequest::default());
    malformed
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let malformed = client.list_egress(malformed).await.expect_err("basic auth");
    assert_eq!(malformed.code(), Code::Unauthenticated);

    // Health stays open for probes.
    let mut health = tonic_health::pb::health_client::HealthClient::new(proxy.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health needs no token");

    // The caller's token never goes upstream, and never into the log.
    for request in sim.requests() {
        let claims = request.claims.expect("our minted token");
        assert_eq!(claims["iss"], API_KEY);
    }
    let log = proxy.log();
    assert!(!log.contains(RECORDER_TOKEN), "{log}");
    assert!(log.contains("egress call"), "audit lines: {log}");
    assert!(
        log.contains("caller=\"recorder\"") || log.contains("caller=recorder"),
        "{log}"
    );
}

#[tokio::test]
async fn policy_matrix_for_every_rpc() {
    let dir = temp_dir("matrix");
    let policy = write(&dir, "policy.toml", &bearer_policy());
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--policy-file")
            .arg(policy.to_str().unwrap()),
    );
    let mut c = proxy.client().await;
    let denied = |r: Result<tonic::Response<livekit::EgressInfo>, tonic::Status>, rule: &str| {
        let status = r.expect_err("denied");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains(rule),
            "names the rule {rule}: {}",
            status.message()
        );
    };

    // An egress in an allowed room and one in a forbidden room (started by ops).
    let mine = start_as(&mut c, RECORDER_TOKEN, "team-a").await.unwrap();
    let theirs = start_as(&mut c, OPS_TOKEN, "board-room").await.unwrap();

    // StartRoomCompositeEgress: room rule, file prefix rule.
    denied(
        c.start_room_composite_egress(with_token(room_composite("board-room"), RECORDER_TOKEN))
            .await,
        "rooms",
    );
    let mut outside = room_composite("team-a");
    outside.file_outputs = file("elsewhere/a.mp4");
    denied(
        c.start_room_composite_egress(with_token(outside, RECORDER_TOKEN))
            .await,
        "file_prefixes",
    );

    // StartWebEgress: page URL rule.
    let web = |url: &str| livekit::WebEgressRequest {
        url: url.into(),
        file_outputs: file("recordings/web.mp4"),
        ..Default::default()
    };
    c.start_web_egress(with_token(
        web("https://app.example.com/view"),
        RECORDER_TOKEN,
    ))
    .await
    .expect("allowed page");
    denied(
        c.start_web_egress(with_token(web("https://evil.net/view"), RECORDER_TOKEN))
            .await,
        "web_urls",
    );

    // StartParticipantEgress: stream URL rule (the key in the path must not be echoed).
    let participant = |url: &str| livekit::ParticipantEgressRequest {
        room_name: "team-a".into(),
        identity: "alice".into(),
        stream_outputs: vec![StreamOutput {
            urls: vec![url.into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    c.start_participant_egress(with_token(
        participant("rtmps://eu.live.example.com/app/KEY123"),
        RECORDER_TOKEN,
    ))
    .await
    .expect("allowed stream");
    let status = c
        .start_participant_egress(with_token(
            participant("rtmp://attacker.net/app/SECRETKEY"),
            RECORDER_TOKEN,
        ))
        .await
        .expect_err("denied stream");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("stream_urls"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("SECRETKEY"),
        "{}",
        status.message()
    );

    // StartTrackCompositeEgress and StartTrackEgress: room rule.
    let track_composite = |room: &str| livekit::TrackCompositeEgressRequest {
        room_name: room.into(),
        audio_track_id: "TR_a".into(),
        file_outputs: file("recordings/t.ogg"),
        ..Default::default()
    };
    c.start_track_composite_egress(with_token(track_composite("team-b"), RECORDER_TOKEN))
        .await
        .expect("allowed room");
    denied(
        c.start_track_composite_egress(with_token(track_composite("other"), RECORDER_TOKEN))
            .await,
        "rooms",
    );
    let track = |room: &str, url: &str| livekit::TrackEgressRequest {
        room_name: room.into(),
        track_id: "TR_a".into(),
        output: Some(livekit::track_egress_request::Output::WebsocketUrl(
            url.into(),
        )),
        ..Default::default()
    };
    denied(
        c.start_track_egress(with_token(
            track("other", "wss://x.live.example.com/a"),
            RECORDER_TOKEN,
        ))
        .await,
        "rooms",
    );

    // StartEgress (unified): room rule.
    let unified = |room: &str| livekit::StartEgressRequest {
        room_name: room.into(),
        source: Some(livekit::start_egress_request::Source::Template(
            livekit::TemplateSource::default(),
        )),
        outputs: vec![livekit::Output {
            config: Some(livekit::output::Config::File(livekit::FileOutput {
                filepath: "recordings/u.mp4".into(),
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    };
    c.start_egress(with_token(unified("team-c"), RECORDER_TOKEN))
        .await
        .expect("allowed unified");
    denied(
        c.start_egress(with_token(unified("other"), RECORDER_TOKEN))
            .await,
        "rooms",
    );

    // UpdateLayout / UpdateStream / StopEgress: checked against the egress's room.
    let layout = |id: &str| UpdateLayoutRequest {
        egress_id: id.into(),
        layout: "speaker".into(),
    };
    c.update_layout(with_token(layout(&mine.egress_id), RECORDER_TOKEN))
        .await
        .expect("own egress");
    denied(
        c.update_layout(with_token(layout(&theirs.egress_id), RECORDER_TOKEN))
            .await,
        "rooms",
    );
    let stream = |id: &str| UpdateStreamRequest {
        egress_id: id.into(),
        add_output_urls: vec!["rtmps://eu.live.example.com/app/K".into()],
        ..Default::default()
    };
    denied(
        c.update_stream(with_token(stream(&theirs.egress_id), RECORDER_TOKEN))
            .await,
        "rooms",
    );
    denied(
        c.stop_egress(with_token(
            StopEgressRequest {
                egress_id: theirs.egress_id.clone(),
            },
            RECORDER_TOKEN,
        ))
        .await,
        "rooms",
    );
    c.stop_egress(with_token(
        StopEgressRequest {
            egress_id: mine.egress_id.clone(),
        },
        RECORDER_TOKEN,
    ))
    .await
    .expect("own egress");

    // ListEgress: an unrestricted listing would show other rooms.
    let listing = c
        .list_egress(with_token(ListEgressRequest::default(), RECORDER_TOKEN))
        .await
        .expect_err("listing every room");
    assert_eq!(listing.code(), Code::PermissionDenied);
    c.list_egress(with_token(
        ListEgressRequest {
            room_name: "team-a".into(),
            ..Default::default()
        },
        RECORDER_TOKEN,
    ))
    .await
    .expect("listing an allowed room");

    // The admin caller may do anything.
    c.list_egress(with_token(ListEgressRequest::default(), OPS_TOKEN))
        .await
        .expect("ops lists everything");
}

#[tokio::test]
async fn rpc_allow_list_is_enforced() {
    let dir = temp_dir("rpcs");
    let text = format!(
        r#"
[auth]
mode = "bearer"

[[callers]]
name = "reader"
token_sha256 = "{}"
policy = "read"

[policies.read]
rpcs = ["ListEgress"]
"#,
        hash_token(RECORDER_TOKEN)
    );
    let policy = write(&dir, "policy.toml", &text);
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--policy-file")
            .arg(policy.to_str().unwrap()),
    );
    let mut c = proxy.client().await;
    c.list_egress(with_token(ListEgressRequest::default(), RECORDER_TOKEN))
        .await
        .expect("allowed RPC");
    let denied = start_as(&mut c, RECORDER_TOKEN, "team-a")
        .await
        .expect_err("RPC not in the list");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("rpcs"), "{}", denied.message());
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.rpc.as_deref() != Some("StartRoomCompositeEgress")),
        "a denied call never reaches LiveKit"
    );
}

#[tokio::test]
async fn mtls_identities_map_to_callers() {
    let dir = temp_dir("mtls-policy");
    let ca = TestCa::new("callers CA");
    let server = ca.server(&dir, "server");
    let client_ca = ca.write(&dir, "ca.pem");
    let policy = write(
        &dir,
        "policy.toml",
        r#"
[auth]
mode = "mtls"

[[callers]]
name = "recorder"
identity = "recorder.prod.svc"
policy = "any"

[policies.any]
rpcs = ["*"]
"#,
    );
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--policy-file")
            .arg(policy.to_str().unwrap())
            .arg("--tls-cert")
            .arg(server.cert.to_str().unwrap())
            .arg("--tls-key")
            .arg(server.key.to_str().unwrap())
            .arg("--tls-client-ca")
            .arg(client_ca.to_str().unwrap()),
    );
    let connect = async |leaf: &egress_e2e::certs::LeafFiles| {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem()))
            .domain_name("localhost")
            .identity(tonic::transport::Identity::from_pem(
                &leaf.cert_pem,
                &leaf.key_pem,
            ));
        let channel = Channel::from_shared(format!("https://{}", proxy.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        EgressClient::new(channel)
    };
    let known = ca.client(&dir, "known", "recorder.prod.svc", false);
    connect(&known)
        .await
        .list_egress(ListEgressRequest::default())
        .await
        .expect("known identity");
    let stranger = ca.client(&dir, "stranger", "intruder.prod.svc", false);
    let status = connect(&stranger)
        .await
        .list_egress(ListEgressRequest::default())
        .await
        .expect_err("valid certificate, unknown identity");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[test]
fn unauthenticated_non_loopback_listener_is_refused() {
    let out = std::process::Command::new(egress_e2e::proxy_bin())
        .args([
            "--dev",
            "--listen",
            "0.0.0.0:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-unauthenticated"), "{stderr}");
}

#[test]
fn invalid_policy_file_names_the_line() {
    let dir = temp_dir("bad-policy");
    let policy = write(
        &dir,
        "policy.toml",
        "[auth]\nmode = \"bearer\"\n\n[policies.p]\nrpcs = [\"StartEgres\"]\n",
    );
    let out = std::process::Command::new(egress_e2e::proxy_bin())
        .args([
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--policy-file")
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policy.toml:5:"), "{stderr}");
}

#[tokio::test]
async fn policy_reload_under_load_fails_no_call() {
    let dir = temp_dir("reload");
    let policy = write(&dir, "policy.toml", &bearer_policy());
    let sim = sim();
    let proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--policy-file")
            .arg(policy.to_str().unwrap()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut client = proxy.client().await;
        let stop = Arc::clone(&stop);
        let calls = Arc::clone(&calls);
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let request = with_token(
                    ListEgressRequest {
                        room_name: "team-a".into(),
                        ..Default::default()
                    },
                    RECORDER_TOKEN,
                );
                if let Err(status) = client.list_egress(request).await {
                    failures.push(status);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let pid = proxy_pid(&proxy);
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Alternate a real change (a new caller), a broken file, and a SIGHUP.
        let text = match round % 3 {
            0 => format!(
                "{}\n[[callers]]\nname = \"extra{round}\"\ntoken_sha256 = \"{}\"\npolicy = \"admin\"\n",
                bearer_policy(),
                hash_token(&format!("extra{round}"))
            ),
            1 => "this is [not toml".to_owned(),
            _ => bearer_policy(),
        };
        std::fs::write(&policy, text).unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.unwrap());
    }
    assert!(calls.load(Ordering::Relaxed) > 20, "load was running");
    assert!(
        failures.is_empty(),
        "failed calls during reloads: {failures:?}"
    );
    let log = proxy.log();
    assert!(log.contains("policy reloaded"), "{log}");
    assert!(log.contains("policy reload failed"), "{log}");
}

fn proxy_pid(proxy: &Proxy) -> String {
    proxy.pid().to_string()
}

#[tokio::test]
async fn secret_file_rotation_switches_keys_without_restart() {
    let dir = temp_dir("rotate");
    let secret_file = write(&dir, "livekit.keys", &format!("{API_KEY}: {API_SECRET}\n"));
    let sim = Simulator::builder()
        .credentials(Credentials::new(API_KEY, API_SECRET))
        .add_credentials(Credentials::new("key-two", "second-secret-value"))
        .build()
        .spawn("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default()
            .env("LIVEKIT_API_KEY", "")
            .env("LIVEKIT_API_SECRET", "")
            .arg("--api-secret-file")
            .arg(secret_file.to_str().unwrap()),
    );
    let mut client = proxy.client().await;
    client
        .list_egress(ListEgressRequest::default())
        .await
        .expect("first key");
    std::fs::write(&secret_file, "key-two: second-secret-value\n").unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        client
            .list_egress(ListEgressRequest::default())
            .await
            .expect("calls keep working across the rotation");
        let last = sim
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.rpc.is_some())
            .unwrap();
        if last.claims.as_ref().unwrap()["iss"] == "key-two" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "key never rotated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!proxy.log().contains("second-secret-value"));
}
