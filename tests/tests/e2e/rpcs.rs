//! Every `livekit.Egress` RPC through the real proxy binary (in `--dev` mode, so the
//! embedded simulator answers), with tonic's generated client.

use egress_e2e::{Gateway, ProxyOptions};
use egress_proto::livekit::{
    self, EgressStatus, EncodedFileOutput, ListEgressRequest, StopEgressRequest, StreamOutput,
    StreamProtocol, UpdateLayoutRequest, UpdateStreamRequest,
};
use tonic::Code;

fn file_output(path: &str) -> EncodedFileOutput {
    EncodedFileOutput {
        filepath: path.into(),
        ..Default::default()
    }
}

fn stream_output(url: &str) -> StreamOutput {
    StreamOutput {
        protocol: StreamProtocol::Rtmp as i32,
        urls: vec![url.into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn every_rpc_round_trips_through_the_proxy() {
    let proxy = Gateway::start_dev(ProxyOptions::default());
    let mut client = proxy.client().await;

    let room_composite = client
        .start_room_composite_egress(livekit::RoomCompositeEgressRequest {
            room_name: "standup".into(),
            layout: "grid".into(),
            file_outputs: vec![file_output("standup.mp4")],
            ..Default::default()
        })
        .await
        .expect("StartRoomCompositeEgress")
        .into_inner();
    assert!(room_composite.egress_id.starts_with("EG_"));
    assert_eq!(room_composite.room_name, "standup");

    let web = client
        .start_web_egress(livekit::WebEgressRequest {
            url: "https://example.com/page".into(),
            stream_outputs: vec![stream_output("rtmp://live.example.com/app/key")],
            ..Default::default()
        })
        .await
        .expect("StartWebEgress")
        .into_inner();
    assert!(web.egress_id.starts_with("EG_"));

    let participant = client
        .start_participant_egress(livekit::ParticipantEgressRequest {
            room_name: "standup".into(),
            identity: "alice".into(),
            file_outputs: vec![file_output("alice.mp4")],
            ..Default::default()
        })
        .await
        .expect("StartParticipantEgress")
        .into_inner();
    assert_eq!(participant.room_name, "standup");

    let track_composite = client
        .start_track_composite_egress(livekit::TrackCompositeEgressRequest {
            room_name: "standup".into(),
            audio_track_id: "TR_audio".into(),
            video_track_id: "TR_video".into(),
            file_outputs: vec![file_output("tracks.mp4")],
            ..Default::default()
        })
        .await
        .expect("StartTrackCompositeEgress")
        .into_inner();
    assert_eq!(track_composite.room_name, "standup");

    let track = client
        .start_track_egress(livekit::TrackEgressRequest {
            room_name: "standup".into(),
            track_id: "TR_audio".into(),
            output: Some(livekit::track_egress_request::Output::WebsocketUrl(
                "wss://sink.example.com/audio".into(),
            )),
            ..Default::default()
        })
        .await
        .expect("StartTrackEgress")
        .into_inner();
    assert_eq!(track.room_name, "standup");

    let unified = client
        .start_egress(livekit::StartEgressRequest {
            room_name: "standup".into(),
            source: Some(livekit::start_egress_request::Source::Template(
                livekit::TemplateSource {
                    layout: "speaker".into(),
                    ..Default::default()
                },
            )),
            outputs: vec![livekit::Output {
                config: Some(livekit::output::Config::File(livekit::FileOutput {
                    filepath: "unified.mp4".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("StartEgress")
        .into_inner();
    assert!(unified.egress_id.starts_with("EG_"));

    let updated = client
        .update_layout(UpdateLayoutRequest {
            egress_id: room_composite.egress_id.clone(),
            layout: "speaker".into(),
        })
        .await
        .expect("UpdateLayout")
        .into_inner();
    assert_eq!(updated.egress_id, room_composite.egress_id);

    let streamed = client
        .update_stream(UpdateStreamRequest {
            egress_id: web.egress_id.clone(),
            add_output_urls: vec!["rtmp://backup.example.com/app/key".into()],
            ..Default::default()
        })
        .await
        .expect("UpdateStream")
        .into_inner();
    assert_eq!(streamed.egress_id, web.egress_id);

    let listed = client
        .list_egress(ListEgressRequest {
            room_name: "standup".into(),
            ..Default::default()
        })
        .await
        .expect("ListEgress")
        .into_inner();
    let mut ids: Vec<_> = listed.items.iter().map(|i| i.egress_id.clone()).collect();
    ids.sort();
    let mut expected = vec![
        room_composite.egress_id.clone(),
        participant.egress_id.clone(),
        track_composite.egress_id.clone(),
        track.egress_id.clone(),
        unified.egress_id.clone(),
    ];
    expected.sort();
    assert_eq!(ids, expected, "ListEgress filtered by room");

    let stopped = client
        .stop_egress(StopEgressRequest {
            egress_id: room_composite.egress_id.clone(),
        })
        .await
        .expect("StopEgress")
        .into_inner();
    assert_eq!(stopped.egress_id, room_composite.egress_id);
    // Still starting, LiveKit aborts it; active, it ends.
    assert!(
        stopped.status == EgressStatus::EgressEnding as i32
            || stopped.status == EgressStatus::EgressComplete as i32
            || stopped.status == EgressStatus::EgressAborted as i32,
        "stopped egress is ending, complete or aborted, got {:?}",
        EgressStatus::try_from(stopped.status)
    );
}

#[tokio::test]
async fn upstream_errors_keep_their_code_and_message() {
    let proxy = Gateway::start_dev(ProxyOptions::default());
    let mut client = proxy.client().await;

    let missing = client
        .stop_egress(StopEgressRequest {
            egress_id: "EG_doesnotexist".into(),
        })
        .await
        .expect_err("unknown egress");
    assert_eq!(missing.code(), Code::NotFound);
    // The open-source server's text for the IO service's error (the `--dev` simulator
    // imitates it).
    assert_eq!(
        missing.message(),
        "twirp error unknown: egress does not exist"
    );
    assert!(missing.metadata().get("x-request-id").is_some());

    let invalid = client
        .start_room_composite_egress(livekit::RoomCompositeEgressRequest {
            room_name: "standup".into(),
            ..Default::default()
        })
        .await
        .expect_err("no outputs");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid.message().contains("output"),
        "message names the field: {}",
        invalid.message()
    );
}

#[tokio::test]
async fn request_id_is_kept_or_made() {
    let proxy = Gateway::start_dev(ProxyOptions::default());
    let mut client = proxy.client().await;

    let mut request = tonic::Request::new(ListEgressRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "caller-chosen-id".parse().unwrap());
    let response = client.list_egress(request).await.expect("ListEgress");
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "caller-chosen-id"
    );

    let response = client
        .list_egress(ListEgressRequest::default())
        .await
        .expect("ListEgress");
    let made = response.metadata().get("x-request-id").expect("made one");
    assert_eq!(made.len(), 36, "a UUID: {made:?}");
}

#[tokio::test]
async fn unknown_methods_are_unimplemented() {
    let proxy = Gateway::start_dev(ProxyOptions::default());
    let channel = proxy.channel().await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    for path in ["/livekit.Egress/Nope", "/livekit.Nope/StartEgress"] {
        let status = grpc
            .unary::<_, ListEgressRequest, _>(
                tonic::Request::new(ListEgressRequest::default()),
                path.parse().unwrap(),
                tonic_prost::ProstCodec::<ListEgressRequest, ListEgressRequest>::default(),
            )
            .await
            .expect_err("unimplemented");
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
        grpc.ready().await.unwrap();
    }
}
