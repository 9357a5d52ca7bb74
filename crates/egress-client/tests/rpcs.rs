//! Every RPC of the client against the simulator on loopback: the returned `EgressInfo` and
//! what went over the wire.

mod common;

use std::time::Duration;

use common::*;
use egress_client::{
    AudioMixing, EgressOutput, Encoding, EncodingOptions, ListOptions, ParticipantEgressOptions,
    RoomCompositeOptions, TrackCompositeOptions, TrackEgressOutput, WebOptions, proto,
};
use egress_core::requests::UnifiedRequest;
use proto::egress_info::Request;

#[tokio::test]
async fn room_composite_with_default_options() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    let info = client
        .start_room_composite_egress(
            "rpc-room",
            vec![
                rtmp("rtmp://live.example.com/app/key"),
                mp4("out/{room_name}.mp4"),
            ],
            RoomCompositeOptions {
                layout: "grid".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(info.egress_id.starts_with("EG_"), "{}", info.egress_id);
    assert!(info.room_id.starts_with("RM_"), "{}", info.room_id);
    assert_eq!(info.room_name, "rpc-room");
    assert_eq!(info.status(), proto::EgressStatus::EgressStarting);
    assert_eq!(info.source_type(), proto::EgressSourceType::Web);
    assert_eq!(info.stream_results.len(), 1);
    // LiveKit reports stream URLs with the key redacted.
    assert_eq!(
        info.stream_results[0].url,
        "rtmp://live.example.com/app/{k...y}"
    );
    assert_eq!(info.file_results[0].filename, "out/{room_name}.mp4");

    let Some(Request::RoomComposite(echoed)) = &info.request else {
        panic!("{:?}", info.request)
    };
    assert_eq!(echoed.layout, "grid");
    // No encoding chosen: LiveKit's SDK default, as advanced options.
    assert_eq!(
        echoed.options,
        Some(proto::room_composite_egress_request::Options::Advanced(
            EncodingOptions::DEFAULT.into()
        ))
    );

    let recorded = last(&sim, "StartRoomCompositeEgress");
    let sent: proto::RoomCompositeEgressRequest = recorded.decode().unwrap();
    // The echo is what was sent, secrets redacted.
    let mut redacted = sent.clone();
    redacted.stream_outputs[0].urls = vec!["rtmp://live.example.com/app/{k...y}".into()];
    assert_eq!(&redacted, echoed);
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn room_composite_with_every_option() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());
    let webhook = proto::WebhookConfig {
        url: "https://hooks.example.com/egress".into(),
        ..Default::default()
    };

    let info = client
        .start_room_composite_egress(
            "rpc-room",
            vec![EgressOutput::Segments(proto::SegmentedFileOutput {
                filename_prefix: "hls/room".into(),
                playlist_name: "room.m3u8".into(),
                ..Default::default()
            })],
            RoomCompositeOptions {
                layout: "speaker".into(),
                encoding: Encoding::Preset(proto::EncodingOptionsPreset::PortraitH264720p30),
                audio_only: true,
                video_only: false,
                custom_base_url: "https://layouts.example.com".into(),
                audio_mixing: AudioMixing::DualChannelAgent,
                webhooks: vec![webhook.clone()],
            },
        )
        .await
        .unwrap();
    assert_eq!(info.segment_results[0].playlist_name, "room.m3u8");

    let sent: proto::RoomCompositeEgressRequest =
        last(&sim, "StartRoomCompositeEgress").decode().unwrap();
    assert_eq!(sent.room_name, "rpc-room");
    assert_eq!(sent.layout, "speaker");
    assert!(sent.audio_only && !sent.video_only);
    assert_eq!(sent.custom_base_url, "https://layouts.example.com");
    assert_eq!(sent.audio_mixing(), proto::AudioMixing::DualChannelAgent);
    assert_eq!(sent.webhooks, vec![webhook]);
    assert_eq!(
        sent.options,
        Some(proto::room_composite_egress_request::Options::Preset(
            proto::EncodingOptionsPreset::PortraitH264720p30 as i32
        ))
    );

    // ServerDefault sends no encoding options at all.
    client
        .start_room_composite_egress(
            "rpc-room",
            vec![rtmp("rtmp://x.example.com/app/a")],
            RoomCompositeOptions {
                encoding: Encoding::ServerDefault,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sent: proto::RoomCompositeEgressRequest =
        last(&sim, "StartRoomCompositeEgress").decode().unwrap();
    assert_eq!(sent.options, None);
}

#[tokio::test]
async fn web_egress() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    let custom = EncodingOptions {
        framerate: 25,
        key_frame_interval: 2.0,
        ..EncodingOptions::DEFAULT
    };
    let info = client
        .start_web_egress(
            "https://example.com/dashboard",
            vec![rtmp("rtmp://b.example.com/live/b"), mp4("web.mp4")],
            WebOptions {
                encoding: custom.into(),
                audio_only: false,
                video_only: true,
                await_start_signal: true,
                webhooks: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(info.source_type(), proto::EgressSourceType::Web);
    assert_eq!(info.room_name, "");
    assert_eq!(info.stream_results.len(), 1);
    assert_eq!(info.file_results.len(), 1);
    let Some(Request::Web(echoed)) = &info.request else {
        panic!("{:?}", info.request)
    };
    assert_eq!(echoed.url, "https://example.com/dashboard");
    assert!(echoed.video_only && echoed.await_start_signal);

    let sent: proto::WebEgressRequest = last(&sim, "StartWebEgress").decode().unwrap();
    // The echo is what was sent, the (one-letter) stream key redacted.
    let mut redacted = sent.clone();
    redacted.stream_outputs[0].urls = vec!["rtmp://b.example.com/live/{...}".into()];
    assert_eq!(&redacted, echoed);
    assert_eq!(
        sent.options,
        Some(proto::web_egress_request::Options::Advanced(custom.into()))
    );
}

#[tokio::test]
async fn participant_egress() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    let info = client
        .start_participant_egress(
            "rpc-room",
            "alice",
            vec![EgressOutput::Image(proto::ImageOutput {
                capture_interval: 5,
                filename_prefix: "thumbs/alice".into(),
                ..Default::default()
            })],
            ParticipantEgressOptions {
                screenshare: true,
                encoding: proto::EncodingOptionsPreset::H264720p60.into(),
                webhooks: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(info.room_name, "rpc-room");
    assert_eq!(info.source_type(), proto::EgressSourceType::Sdk);
    assert_eq!(info.image_results[0].filename_prefix, "thumbs/alice");
    let Some(Request::Participant(echoed)) = &info.request else {
        panic!("{:?}", info.request)
    };
    assert_eq!(echoed.identity, "alice");
    assert!(echoed.screen_share);

    let sent: proto::ParticipantEgressRequest =
        last(&sim, "StartParticipantEgress").decode().unwrap();
    assert_eq!(&sent, echoed);
}

#[tokio::test]
async fn track_composite_egress() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    let info = client
        .start_track_composite_egress(
            "rpc-room",
            vec![mp4("tc.mp4")],
            TrackCompositeOptions {
                audio_track_id: "TR_audio".into(),
                video_track_id: "TR_video".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.source_type(), proto::EgressSourceType::Sdk);
    assert_eq!(info.file_results[0].filename, "tc.mp4");
    let Some(Request::TrackComposite(echoed)) = &info.request else {
        panic!("{:?}", info.request)
    };
    assert_eq!(echoed.audio_track_id, "TR_audio");
    assert_eq!(echoed.video_track_id, "TR_video");

    let sent: proto::TrackCompositeEgressRequest =
        last(&sim, "StartTrackCompositeEgress").decode().unwrap();
    assert_eq!(&sent, echoed);
}

#[tokio::test]
async fn track_egress_to_file_and_websocket() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    let info = client
        .start_track_egress(
            "rpc-room",
            TrackEgressOutput::File(proto::DirectFileOutput {
                filepath: "tracks/{track_id}.ogg".into(),
                ..Default::default()
            }),
            "TR_audio",
        )
        .await
        .unwrap();
    assert_eq!(info.file_results[0].filename, "tracks/{track_id}.ogg");
    let sent: proto::TrackEgressRequest = last(&sim, "StartTrackEgress").decode().unwrap();
    assert_eq!(sent.track_id, "TR_audio");
    assert_eq!(sent.room_name, "rpc-room");

    let info = client
        .start_track_egress(
            "rpc-room",
            TrackEgressOutput::WebSocket("wss://stt.example.com/in".into()),
            "TR_audio",
        )
        .await
        .unwrap();
    assert_eq!(info.stream_results[0].url, "wss://stt.example.com/in");
    let sent: proto::TrackEgressRequest = last(&sim, "StartTrackEgress").decode().unwrap();
    assert_eq!(
        sent.output,
        Some(proto::track_egress_request::Output::WebsocketUrl(
            "wss://stt.example.com/in".into()
        ))
    );
}

#[tokio::test]
async fn unified_start_egress() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    let request = UnifiedRequest::template(
        "rpc-room",
        proto::TemplateSource {
            layout: "grid".into(),
            ..Default::default()
        },
    )
    .output(rtmp("rtmp://u.example.com/live/key"))
    .output(mp4("unified.mp4"))
    .preset(proto::EncodingOptionsPreset::H2641080p60)
    .build()
    .unwrap();
    let info = client.start_egress(request.clone()).await.unwrap();
    assert_eq!(info.room_name, "rpc-room");
    assert_eq!(info.stream_results.len(), 1);
    assert_eq!(info.file_results[0].filename, "unified.mp4");
    // Echoed with the stream key redacted.
    let mut redacted = request.clone();
    if let Some(proto::output::Config::Stream(stream)) = &mut redacted.outputs[0].config {
        stream.urls = vec!["rtmp://u.example.com/live/{k...y}".into()];
    }
    assert_eq!(info.request, Some(Request::Egress(redacted)));

    let recorded = last(&sim, "StartEgress");
    // Sent exactly as given.
    assert_eq!(recorded.body, prost::Message::encode_to_vec(&request));
}

#[tokio::test]
async fn update_layout_update_stream_list_and_stop() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    let first = client
        .start_room_composite_egress(
            "room-a",
            vec![rtmp("rtmp://a.example.com/live/akey1")],
            RoomCompositeOptions::default(),
        )
        .await
        .unwrap();
    let second = client
        .start_track_egress(
            "room-b",
            TrackEgressOutput::WebSocket("wss://b.example.com".into()),
            "TR_b",
        )
        .await
        .unwrap();

    // UpdateLayout
    let info = client
        .update_layout(&first.egress_id, "speaker")
        .await
        .unwrap();
    let Some(Request::RoomComposite(r)) = &info.request else {
        panic!("{:?}", info.request)
    };
    assert_eq!(r.layout, "speaker");
    let sent: proto::UpdateLayoutRequest = last(&sim, "UpdateLayout").decode().unwrap();
    assert_eq!(
        sent,
        proto::UpdateLayoutRequest {
            egress_id: first.egress_id.clone(),
            layout: "speaker".into(),
        }
    );

    // UpdateStream
    let info = client
        .update_stream(
            &first.egress_id,
            vec!["rtmp://c.example.com/live".into()],
            vec!["rtmp://a.example.com/live/akey1".into()],
        )
        .await
        .unwrap();
    let status_of = |url: &str| {
        info.stream_results
            .iter()
            .find(|s| s.url == url)
            .map(|s| s.status())
            .unwrap()
    };
    assert_eq!(
        status_of("rtmp://c.example.com/live"),
        proto::stream_info::Status::Active
    );
    // The result names the removed stream with its key redacted.
    assert_eq!(
        status_of("rtmp://a.example.com/live/{a...1}"),
        proto::stream_info::Status::Finished
    );
    let sent: proto::UpdateStreamRequest = last(&sim, "UpdateStream").decode().unwrap();
    assert_eq!(sent.add_output_urls, ["rtmp://c.example.com/live"]);
    assert_eq!(sent.remove_output_urls, ["rtmp://a.example.com/live/akey1"]);

    // ListEgress with every filter.
    let ids = |items: &[proto::EgressInfo]| {
        let mut ids: Vec<String> = items.iter().map(|i| i.egress_id.clone()).collect();
        ids.sort();
        ids
    };
    let mut both = vec![first.egress_id.clone(), second.egress_id.clone()];
    both.sort();

    let page = client.list_egress(ListOptions::all()).await.unwrap();
    assert_eq!(ids(&page.items), both);
    assert_eq!(page.next_page_token, None);
    let sent: proto::ListEgressRequest = last(&sim, "ListEgress").decode().unwrap();
    assert_eq!(sent, proto::ListEgressRequest::default());

    let page = client
        .list_egress(ListOptions::room("room-b"))
        .await
        .unwrap();
    assert_eq!(ids(&page.items), [second.egress_id.as_str()]);
    let sent: proto::ListEgressRequest = last(&sim, "ListEgress").decode().unwrap();
    assert_eq!(sent.room_name, "room-b");
    assert!(sent.egress_id.is_empty());

    let page = client
        .list_egress(ListOptions::egress(&first.egress_id))
        .await
        .unwrap();
    assert_eq!(ids(&page.items), [first.egress_id.as_str()]);
    let sent: proto::ListEgressRequest = last(&sim, "ListEgress").decode().unwrap();
    assert_eq!(sent.egress_id, first.egress_id);
    assert!(sent.room_name.is_empty());

    let page = client
        .list_egress(ListOptions::room("no-such-room"))
        .await
        .unwrap();
    assert!(page.items.is_empty());

    // StopEgress, then `active` filtering once it has completed. Active first (100 ms
    // here): stopped while starting, LiveKit aborts it instead.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = client.stop_egress(&first.egress_id).await.unwrap();
    assert_eq!(stopped.egress_id, first.egress_id);
    assert_eq!(stopped.status(), proto::EgressStatus::EgressEnding);
    let sent: proto::StopEgressRequest = last(&sim, "StopEgress").decode().unwrap();
    assert_eq!(sent.egress_id, first.egress_id);

    tokio::time::sleep(Duration::from_millis(250)).await;
    let page = client
        .list_egress(ListOptions::all().active(true))
        .await
        .unwrap();
    assert_eq!(ids(&page.items), [second.egress_id.as_str()]);
    let sent: proto::ListEgressRequest = last(&sim, "ListEgress").decode().unwrap();
    assert!(sent.active);

    let done = client
        .list_egress(ListOptions::egress(&first.egress_id))
        .await
        .unwrap();
    assert_eq!(done.items[0].status(), proto::EgressStatus::EgressComplete);
    assert!(done.items[0].ended_at > 0);

    // Every request of the session went the same way.
    for request in sim.requests() {
        assert_wire(&request, request.rpc.as_deref().unwrap());
    }
}
