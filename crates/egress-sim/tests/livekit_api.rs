//! Drives the simulator with LiveKit's own Rust server SDK (`livekit-api`), which speaks
//! Twirp protobuf and signs its own tokens.

mod common;

use std::time::Duration;

use common::*;
use livekit_api::services::egress::{
    EgressClient, EgressListFilter, EgressListOptions, EgressOutput, ParticipantEgressOptions,
    RoomCompositeOptions, TrackCompositeOptions, TrackEgressOutput, WebOptions,
};
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as proto;

fn client_for(sim: &egress_sim::SimHandle) -> EgressClient {
    EgressClient::with_api_key(&sim.url(), KEY, SECRET)
        .with_request_timeout(Duration::from_secs(10))
}

fn rtmp(url: &str) -> EgressOutput {
    EgressOutput::Stream(proto::StreamOutput {
        protocol: proto::StreamProtocol::Rtmp as i32,
        urls: vec![url.to_owned()],
    })
}

fn twirp_code(error: ServiceError) -> (String, String) {
    match error {
        ServiceError::Twirp(ServerError::Twirp(code)) => (code.code, code.msg),
        other => panic!("not a Twirp error: {other:?}"),
    }
}

#[tokio::test]
async fn livekit_rust_sdk_round_trip() {
    let sim = spawn(builder());
    let client = client_for(&sim);

    let rc = client
        .start_room_composite_egress(
            "sdk-room",
            vec![
                rtmp("rtmp://live.example.com/app/key"),
                EgressOutput::File(proto::EncodedFileOutput {
                    file_type: proto::EncodedFileType::Mp4 as i32,
                    filepath: "out/{room_name}.mp4".into(),
                    ..Default::default()
                }),
            ],
            RoomCompositeOptions {
                layout: "grid".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(rc.egress_id.starts_with("EG_"));
    assert_eq!(rc.room_name, "sdk-room");
    assert_eq!(rc.status, proto::EgressStatus::EgressStarting as i32);
    assert_eq!(rc.stream_results.len(), 1);
    match &rc.request {
        Some(proto::egress_info::Request::RoomComposite(r)) => {
            assert_eq!(r.layout, "grid");
            assert_eq!(r.file_outputs[0].filepath, "out/{room_name}.mp4");
        }
        other => panic!("{other:?}"),
    }

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
            "sdk-room",
            "alice",
            vec![EgressOutput::Segments(proto::SegmentedFileOutput {
                filename_prefix: "hls/alice".into(),
                ..Default::default()
            })],
            ParticipantEgressOptions {
                screenshare: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(participant.room_id, rc.room_id);
    assert_eq!(participant.segment_results.len(), 1);

    let track_composite = client
        .start_track_composite_egress(
            "sdk-room",
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
            "sdk-room",
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
            room_name: "sdk-room".into(),
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
    assert_eq!(unified.source_type, proto::EgressSourceType::Sdk as i32);

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
            vec!["rtmp://live.example.com/app/key".into()],
        )
        .await
        .unwrap();
    let active: Vec<_> = streamed
        .stream_results
        .iter()
        .filter(|s| s.status == proto::stream_info::Status::Active as i32)
        .map(|s| s.url.as_str())
        .collect();
    assert_eq!(active, vec!["rtmp://c.example.com/live"]);

    let all = client
        .list_egress(EgressListOptions::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    let in_room = client
        .list_egress(EgressListOptions {
            filter: EgressListFilter::Room("sdk-room".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(in_room.len(), 5);
    let one = client
        .list_egress(EgressListOptions {
            filter: EgressListFilter::Egress(web.egress_id.clone()),
            active: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);

    // Active first: LiveKit aborts an egress stopped while it is still starting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = client.stop_egress(&rc.egress_id).await.unwrap();
    assert_eq!(stopped.status, proto::EgressStatus::EgressEnding as i32);

    // What the SDK sent: protobuf, its own user agent, a token with roomRecord for our key.
    let requests = sim.requests();
    assert_eq!(requests.len(), 12);
    for request in &requests {
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/protobuf")
        );
        assert!(
            request
                .header("user-agent")
                .unwrap()
                .starts_with("livekit-server-sdk-rust/"),
            "{:?}",
            request.headers
        );
        let grants = request.grants().expect("claims decoded");
        assert_eq!(grants.iss, KEY);
        assert!(grants.video.room_record);
    }
    let first: egress_proto::livekit::RoomCompositeEgressRequest = requests[0].decode().unwrap();
    assert_eq!(first.room_name, "sdk-room");
    sim.shutdown().await;
}

#[tokio::test]
async fn livekit_rust_sdk_errors() {
    let sim = spawn(builder().complete_after(Duration::from_millis(50)));
    let client = client_for(&sim);

    let (code, msg) = twirp_code(client.stop_egress("EG_unknown").await.unwrap_err());
    assert_eq!(
        (code.as_str(), msg.as_str()),
        // As the open-source server rewrites the IO service's error.
        ("not_found", "twirp error unknown: egress does not exist")
    );

    let info = client
        .start_room_composite_egress(
            "r",
            vec![rtmp("rtmp://x.example.com/live/stream-key")],
            RoomCompositeOptions::default(),
        )
        .await
        .unwrap();
    // Active first, so that it ends COMPLETE rather than ABORTED.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.stop_egress(&info.egress_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, msg) = twirp_code(client.stop_egress(&info.egress_id).await.unwrap_err());
    assert_eq!(code, "failed_precondition");
    assert_eq!(msg, "egress with status EGRESS_COMPLETE cannot be stopped");

    let (code, msg) = twirp_code(
        client
            .start_room_composite_egress("r", vec![], RoomCompositeOptions::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, "invalid_argument");
    assert_eq!(
        msg,
        "twirp error unknown: request has missing or invalid field: output"
    );

    // Wrong secret: a plain-text 401, which the SDK cannot parse as a Twirp error.
    let wrong = EgressClient::with_api_key(&sim.url(), KEY, "not-the-secret");
    let error = wrong
        .list_egress(EgressListOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ServiceError::Twirp(ServerError::Request(_))),
        "{error:?}"
    );

    // Injected faults reach the SDK as what they are.
    sim.faults().push(
        egress_sim::Fault::twirp_error("unavailable", "no response from servers")
            .meta("error_details", "CA4SBGRvd24=")
            .times(1),
    );
    match client
        .list_egress(EgressListOptions::default())
        .await
        .unwrap_err()
    {
        ServiceError::Twirp(ServerError::Twirp(code)) => {
            assert_eq!(code.code, "unavailable");
            assert_eq!(code.meta["error_details"], "CA4SBGRvd24=");
        }
        other => panic!("{other:?}"),
    }
    sim.shutdown().await;
}
