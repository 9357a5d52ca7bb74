//! Denial messages never carry stream keys, query strings, userinfo or
//! other secrets of the request.

mod common;

use common::{RECORDER, caller, denial, policy, view_of};
use egress_core::{Rpc, proto};

const SECRETS: &[&str] = &[
    "STREAMKEY",
    "live_123456",
    "token=",
    "sig=",
    "s3cr3t",
    "hunter2",
    "?",
    "@",
    "B0000",
    "XXXXSLACK",
    "AKIAEXAMPLE",
    "aws-secret",
    "hook-signing-key",
];

fn assert_clean(message: &str) {
    for secret in SECRETS {
        assert!(
            !message.contains(secret),
            "{secret:?} leaked into {message:?}"
        );
    }
}

#[test]
fn stream_urls_are_reduced_to_scheme_and_host() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    for url in [
        "rtmp://evil.example.net/live/STREAMKEY",
        "rtmp://evil.example.net/live/live_123456?token=abc",
        "rtmps://user:s3cr3t@evil.example.net:4443/app/STREAMKEY",
        "srt://evil.example.net:9000?streamid=STREAMKEY&passphrase=hunter2",
        "wss://evil.example.net/ws?token=STREAMKEY",
        "rtmp://evil.example.net?@a.live.example.com/STREAMKEY",
        "rtmp evil STREAMKEY",
    ] {
        let view = view_of(
            Rpc::StartRoomCompositeEgress,
            &proto::RoomCompositeEgressRequest {
                room_name: "team-a".into(),
                stream_outputs: vec![proto::StreamOutput {
                    urls: vec![url.into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let d = denial(recorder, &view);
        assert_clean(&d.to_string());
        assert_clean(&format!("{d:?}"));
    }
    // What is shown.
    let view = view_of(
        Rpc::UpdateStream,
        &proto::UpdateStreamRequest {
            egress_id: "EG_1".into(),
            add_output_urls: vec![
                "rtmps://user:s3cr3t@evil.example.net:4443/app/STREAMKEY?sig=1".into(),
            ],
            ..Default::default()
        },
    );
    assert_eq!(
        denial(recorder, &view).to_string(),
        "caller \"recorder-service\" may not stream to \"rtmps://evil.example.net:4443\" (rule policies.recording.stream_urls)"
    );
    let view = view_of(
        Rpc::StartTrackEgress,
        &proto::TrackEgressRequest {
            room_name: "team-a".into(),
            output: Some(proto::track_egress_request::Output::WebsocketUrl(
                "wss://evil.example.net/ws?token=STREAMKEY".into(),
            )),
            ..Default::default()
        },
    );
    assert_eq!(
        denial(recorder, &view).reason(),
        "caller \"recorder-service\" may not stream to \"wss://evil.example.net\""
    );
    let view = view_of(
        Rpc::UpdateStream,
        &proto::UpdateStreamRequest {
            egress_id: "EG_1".into(),
            add_output_urls: vec!["garbage STREAMKEY".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        denial(recorder, &view).reason(),
        "caller \"recorder-service\" may not stream to an invalid URL"
    );
}

#[test]
fn webhook_web_and_endpoint_urls_are_reduced_too() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let webhook = view_of(
        Rpc::StartWebEgress,
        &proto::WebEgressRequest {
            url: "https://app.example.com/page".into(),
            webhooks: vec![proto::WebhookConfig {
                url: "https://hooks.slack.com/services/T0000/B0000/XXXXSLACK?sig=1".into(),
                signing_key: "hook-signing-key".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let web = view_of(
        Rpc::StartWebEgress,
        &proto::WebEgressRequest {
            url: "https://user:hunter2@evil.example.net/room?token=live_123456".into(),
            ..Default::default()
        },
    );
    let endpoint = view_of(
        Rpc::StartRoomCompositeEgress,
        &proto::RoomCompositeEgressRequest {
            room_name: "team-a".into(),
            file_outputs: vec![proto::EncodedFileOutput {
                filepath: "recordings/a.mp4".into(),
                output: Some(proto::encoded_file_output::Output::S3(proto::S3Upload {
                    access_key: "AKIAEXAMPLE".into(),
                    secret: "aws-secret".into(),
                    bucket: "recordings-prod".into(),
                    endpoint: "https://AKIAEXAMPLE:aws-secret@evil.example.net/?sig=1".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    for view in [webhook, web, endpoint] {
        let d = denial(recorder, &view);
        assert_clean(&d.to_string());
        assert_clean(&format!("{d:?}"));
        assert!(d.to_string().contains("https://"), "{d}");
    }
}

#[test]
fn hostile_values_are_escaped_and_cut() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let room = format!("evil\"\n\u{1b}[31m{}", "x".repeat(1000));
    let view = view_of(
        Rpc::ListEgress,
        &proto::ListEgressRequest {
            room_name: room,
            ..Default::default()
        },
    );
    let message = denial(recorder, &view).to_string();
    assert!(
        !message.contains('\n') && !message.contains('\u{1b}'),
        "{message}"
    );
    assert!(message.len() < 300, "{}", message.len());
}
