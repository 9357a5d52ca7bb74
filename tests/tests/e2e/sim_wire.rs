//! The simulator's wire fidelity as a gRPC caller sees it through the gateway: the
//! open-source server's error texts, redacted secrets, and the egress worker's validation.

use std::time::Duration;

use egress_e2e::{Gateway, ProxyOptions, sim};
use egress_proto::livekit::{
    self, EncodedFileOutput, ListEgressRequest, S3Upload, StopEgressRequest, StreamOutput,
    StreamProtocol, WebEgressRequest, encoded_file_output,
};
use tonic::Code;

const S3_SECRET: &str = "s3-secret-never-shown";
const STREAM_KEY: &str = "live_stream_key_0123456789";

fn secret_request() -> livekit::RoomCompositeEgressRequest {
    livekit::RoomCompositeEgressRequest {
        room_name: "standup".into(),
        layout: "grid".into(),
        file_outputs: vec![EncodedFileOutput {
            filepath: "rec.mp4".into(),
            output: Some(encoded_file_output::Output::S3(S3Upload {
                access_key: "AKIAEXAMPLE".into(),
                secret: S3_SECRET.into(),
                bucket: "recordings".into(),
                ..Default::default()
            })),
            ..Default::default()
        }],
        stream_outputs: vec![StreamOutput {
            protocol: StreamProtocol::Rtmp as i32,
            urls: vec![format!("rtmp://live.example.com/app/{STREAM_KEY}")],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn open_source_error_texts_reach_the_caller_verbatim() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = proxy.client().await;

    // The IO service's psrpc error, as the open-source server rebuilds it.
    let missing = client
        .stop_egress(StopEgressRequest {
            egress_id: "EG_doesnotexist".into(),
        })
        .await
        .expect_err("unknown egress");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        missing.message(),
        "twirp error unknown: egress does not exist"
    );

    // A Twirp-native error keeps its plain text.
    let started = client
        .start_room_composite_egress(secret_request())
        .await
        .expect("start")
        .into_inner();
    client
        .stop_egress(StopEgressRequest {
            egress_id: started.egress_id.clone(),
        })
        .await
        .expect("stop");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let twice = client
        .stop_egress(StopEgressRequest {
            egress_id: started.egress_id,
        })
        .await
        .expect_err("already complete");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    // Stopped while STARTING it was aborted; either way the text is the handler's own.
    assert!(
        twice.message().starts_with("egress with status EGRESS_")
            && twice.message().ends_with(" cannot be stopped"),
        "{}",
        twice.message()
    );
}

#[tokio::test]
async fn dev_upstream_speaks_like_the_open_source_server() {
    let proxy = Gateway::start_dev(ProxyOptions::default());
    let mut client = proxy.client().await;
    let missing = client
        .stop_egress(StopEgressRequest {
            egress_id: "EG_doesnotexist".into(),
        })
        .await
        .expect_err("unknown egress");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        missing.message(),
        "twirp error unknown: egress does not exist"
    );
}

#[tokio::test]
async fn secrets_never_reach_the_caller() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = proxy.client().await;

    let started = client
        .start_room_composite_egress(secret_request())
        .await
        .expect("start")
        .into_inner();
    let listed = client
        .list_egress(ListEgressRequest::default())
        .await
        .expect("list")
        .into_inner();
    let stopped = client
        .stop_egress(StopEgressRequest {
            egress_id: started.egress_id.clone(),
        })
        .await
        .expect("stop")
        .into_inner();
    for (what, text) in [
        ("start", format!("{started:?}")),
        ("list", format!("{listed:?}")),
        ("stop", format!("{stopped:?}")),
    ] {
        assert!(
            !text.contains(S3_SECRET),
            "{what} leaks the S3 secret: {text}"
        );
        assert!(
            !text.contains(STREAM_KEY),
            "{what} leaks the stream key: {text}"
        );
        assert!(text.contains("{secret}"), "{what}: {text}");
        assert!(
            text.contains("rtmp://live.example.com/app/{liv...789}"),
            "{what}: {text}"
        );
    }
    assert_eq!(
        stopped.stream_results[0].url,
        "rtmp://live.example.com/app/{liv...789}"
    );
    // The simulator kept the real values (as LiveKit's worker does for its pipeline):
    // only the answers are redacted.
    let kept = format!("{:?}", sim.egress(&started.egress_id).expect("stored"));
    assert!(kept.contains(S3_SECRET) && kept.contains(STREAM_KEY));
}

#[tokio::test]
async fn worker_validation_is_invalid_argument_with_its_text() {
    let sim = sim();
    let proxy = Gateway::start(&sim.url(), ProxyOptions::default());
    let mut client = proxy.client().await;

    let web = client
        .start_web_egress(WebEgressRequest {
            url: "example.com/dashboard".into(),
            file_outputs: vec![EncodedFileOutput::default()],
            ..Default::default()
        })
        .await
        .expect_err("not an http URL");
    assert_eq!(web.code(), Code::InvalidArgument);
    assert_eq!(
        web.message(),
        "twirp error unknown: request has missing or invalid field: web url"
    );

    let mut two_files = secret_request();
    two_files.file_outputs.push(EncodedFileOutput::default());
    let refused = client
        .start_room_composite_egress(two_files)
        .await
        .expect_err("two files");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "twirp error unknown: request has missing or invalid field: multiple file outputs"
    );
    assert!(sim.egresses().is_empty());
}
