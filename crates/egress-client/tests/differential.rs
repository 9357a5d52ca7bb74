//! Differential test against LiveKit's own Rust SDK (`livekit-api` 0.10).
//!
//! Every call `livekit_api::services::egress::EgressClient` offers is made twice against the
//! same simulator: once with LiveKit's client, once with ours, with the same arguments. The two
//! recorded requests must have the same path and content type, **byte-identical bodies**, and
//! token claims that are equal apart from `nbf`/`exp` (both with `roomRecord`).
//!
//! Our inputs are converted to `livekit-api`'s types by encoding our `egress_proto` message and
//! decoding the bytes as the `livekit_protocol` type (the same wire schema).
//!
//! Protobuf maps (e.g. `S3Upload.metadata`) are encoded in `HashMap` iteration order, which is
//! random per map instance in *both* libraries, so the inputs here use at most one map entry.

mod common;

use std::future::Future;
use std::time::Duration;

use common::*;
use egress_client::{
    AudioMixing, EgressClient, EgressOutput, Encoding, EncodingOptions, ListOptions,
    ParticipantEgressOptions, RoomCompositeOptions, TrackCompositeOptions, TrackEgressOutput,
    WebOptions, proto,
};
use egress_core::presets;
use egress_core::requests::UnifiedRequest;
use egress_sim::{RecordedRequest, SimHandle};
use livekit_api::services::egress as lk;
use livekit_protocol as lkp;
use prost::Message;

/// Re-types a message through its wire form.
fn convert<T: Message + Default>(message: &impl Message) -> T {
    T::decode(message.encode_to_vec().as_slice()).expect("same wire schema")
}

fn lk_output(output: &EgressOutput) -> lk::EgressOutput {
    match output {
        EgressOutput::File(f) => lk::EgressOutput::File(convert(f)),
        EgressOutput::Stream(s) => lk::EgressOutput::Stream(convert(s)),
        EgressOutput::Segments(s) => lk::EgressOutput::Segments(convert(s)),
        EgressOutput::Image(i) => lk::EgressOutput::Image(convert(i)),
    }
}

fn lk_outputs(outputs: &[EgressOutput]) -> Vec<lk::EgressOutput> {
    outputs.iter().map(lk_output).collect()
}

fn lk_track_output(output: &TrackEgressOutput) -> lk::TrackEgressOutput {
    match output {
        TrackEgressOutput::File(f) => lk::TrackEgressOutput::File(Box::new(convert(f))),
        TrackEgressOutput::WebSocket(url) => lk::TrackEgressOutput::WebSocket(url.clone()),
    }
}

fn lk_mixing(mixing: AudioMixing) -> lk::AudioMixing {
    match mixing {
        AudioMixing::DefaultMixing => lk::AudioMixing::DefaultMixing,
        AudioMixing::DualChannelAgent => lk::AudioMixing::DualChannelAgent,
        AudioMixing::DualChannelAlternate => lk::AudioMixing::DualChannelAlternate,
    }
}

/// `livekit-api`'s typed encoding options as our [`Encoding`] (through the proto message,
/// so the deprecated quality fields come along).
fn our_encoding(theirs: &lk::encoding::EncodingOptions) -> Encoding {
    let wire = lkp::EncodingOptions::from(theirs.clone());
    Encoding::Advanced(convert(&wire))
}

fn lk_client(sim: &SimHandle) -> lk::EgressClient {
    lk::EgressClient::with_api_key(&sim.url(), KEY, SECRET)
        .with_request_timeout(Duration::from_secs(10))
}

/// The one request recorded since the log was last cleared.
fn take_one(sim: &SimHandle, who: &str) -> RecordedRequest {
    let mut requests = sim.requests();
    assert_eq!(requests.len(), 1, "{who} sent {} requests", requests.len());
    sim.clear_requests();
    requests.pop().unwrap()
}

fn claims_without_times(request: &RecordedRequest) -> serde_json::Value {
    let mut claims = request.claims.clone().expect("a bearer JWT");
    assert_eq!(claims["video"]["roomRecord"], true, "{claims}");
    assert_eq!(claims["iss"], KEY, "{claims}");
    assert!(claims["exp"].as_u64().unwrap() > claims["nbf"].as_u64().unwrap());
    let object = claims.as_object_mut().unwrap();
    object.remove("nbf");
    object.remove("exp");
    claims
}

fn assert_same(theirs: &RecordedRequest, ours: &RecordedRequest, method: &str, case: &str) {
    assert_eq!(
        theirs.path,
        format!("/twirp/livekit.Egress/{method}"),
        "{case}"
    );
    assert_eq!(ours.path, theirs.path, "{case}: path");
    assert_eq!(ours.method, theirs.method, "{case}: HTTP method");
    assert_eq!(
        ours.content_type, theirs.content_type,
        "{case}: content type"
    );
    assert_eq!(
        ours.content_type.as_deref(),
        Some("application/protobuf"),
        "{case}"
    );
    assert!(
        ours.body == theirs.body,
        "{case}: bodies differ\n theirs: {:02x?}\n ours:   {:02x?}",
        theirs.body,
        ours.body
    );
    assert_eq!(
        claims_without_times(ours),
        claims_without_times(theirs),
        "{case}: claims"
    );
}

/// Runs LiveKit's call, then ours, and compares what each sent. Returns both results.
async fn differential<A, B>(
    sim: &SimHandle,
    method: &str,
    case: &str,
    theirs: impl Future<Output = A>,
    ours: impl Future<Output = B>,
) -> (A, B) {
    sim.clear_requests();
    let a = theirs.await;
    let theirs_request = take_one(sim, "livekit-api");
    let b = ours.await;
    let ours_request = take_one(sim, "egress-client");
    assert_same(&theirs_request, &ours_request, method, case);
    (a, b)
}

struct Clients {
    sim: SimHandle,
    theirs: lk::EgressClient,
    ours: EgressClient,
}

fn setup() -> Clients {
    let sim = spawn(builder());
    Clients {
        theirs: lk_client(&sim),
        ours: client_for(&sim.url()),
        sim,
    }
}

fn rich_outputs() -> Vec<EgressOutput> {
    vec![
        EgressOutput::Stream(proto::StreamOutput {
            protocol: proto::StreamProtocol::Rtmp as i32,
            urls: vec![
                "rtmp://a.example.com/live/1".into(),
                "rtmp://b.example.com/live/2".into(),
            ],
            ..Default::default()
        }),
        EgressOutput::File(proto::EncodedFileOutput {
            file_type: proto::EncodedFileType::Mp4 as i32,
            filepath: "rec/{room_name}-{time}.mp4".into(),
            disable_manifest: true,
            output: Some(proto::encoded_file_output::Output::Gcp(proto::GcpUpload {
                credentials: "{\"type\":\"service_account\"}".into(),
                bucket: "recordings".into(),
                proxy: None,
            })),
        }),
        EgressOutput::Segments(proto::SegmentedFileOutput {
            protocol: proto::SegmentedFileProtocol::HlsProtocol as i32,
            filename_prefix: "hls/{room_name}".into(),
            playlist_name: "index.m3u8".into(),
            live_playlist_name: "live.m3u8".into(),
            segment_duration: 4,
            filename_suffix: proto::SegmentedFileSuffix::Timestamp as i32,
            output: Some(proto::segmented_file_output::Output::S3(proto::S3Upload {
                access_key: "AKIA".into(),
                secret: "s3-secret".into(),
                region: "eu-west-1".into(),
                bucket: "hls".into(),
                force_path_style: true,
                metadata: [("team".to_owned(), "video".to_owned())].into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        EgressOutput::Image(proto::ImageOutput {
            capture_interval: 10,
            width: 640,
            height: 360,
            filename_prefix: "thumbs/{room_name}".into(),
            image_codec: proto::ImageCodec::IcJpeg as i32,
            output: Some(proto::image_output::Output::Azure(proto::AzureBlobUpload {
                account_name: "acct".into(),
                account_key: "azure-key".into(),
                container_name: "thumbs".into(),
            })),
            ..Default::default()
        }),
        // A second image output: order within a kind must be kept. (LiveKit's worker
        // takes one stream output, with any number of URLs, but several image outputs.)
        EgressOutput::Image(proto::ImageOutput {
            capture_interval: 30,
            filename_prefix: "stills/{room_name}".into(),
            ..Default::default()
        }),
    ]
}

/// [`rich_outputs`] without the images, for audio-only requests: LiveKit's worker refuses
/// image outputs without video (`audio_only images`).
fn rich_audio_outputs() -> Vec<EgressOutput> {
    rich_outputs()
        .into_iter()
        .filter(|o| !matches!(o, EgressOutput::Image(_)))
        .collect()
}

#[tokio::test]
async fn start_room_composite_egress() {
    let Clients { sim, theirs, ours } = setup();

    // Defaults: both send `Advanced(<SDK default options>)`.
    let outputs = vec![rtmp("rtmp://live.example.com/app/key")];
    let (a, b) = differential(
        &sim,
        "StartRoomCompositeEgress",
        "defaults",
        theirs.start_room_composite_egress(
            "diff-room",
            lk_outputs(&outputs),
            lk::RoomCompositeOptions::default(),
        ),
        ours.start_room_composite_egress("diff-room", outputs, RoomCompositeOptions::default()),
    )
    .await;
    a.unwrap();
    b.unwrap();

    // Every option set, custom encoding including the deprecated quality knobs.
    let encoding = lk::encoding::EncodingOptions {
        width: 1280,
        height: 720,
        depth: 24,
        framerate: 25,
        audio_codec: lkp::AudioCodec::Aac,
        audio_bitrate: 96,
        audio_frequency: 48000,
        video_codec: lkp::VideoCodec::H264High,
        video_bitrate: 2500,
        keyframe_interval: 2.0,
        audio_quality: 3,
        video_quality: 4,
    };
    for mixing in [
        AudioMixing::DefaultMixing,
        AudioMixing::DualChannelAgent,
        AudioMixing::DualChannelAlternate,
    ] {
        let outputs = rich_audio_outputs();
        let (a, b) = differential(
            &sim,
            "StartRoomCompositeEgress",
            &format!("all options, {mixing:?}"),
            theirs.start_room_composite_egress(
                "diff-room",
                lk_outputs(&outputs),
                lk::RoomCompositeOptions {
                    layout: "speaker-light".into(),
                    encoding: encoding.clone(),
                    audio_only: true,
                    video_only: false,
                    custom_base_url: "https://layouts.example.com/base".into(),
                    audio_mixing: lk_mixing(mixing),
                },
            ),
            ours.start_room_composite_egress(
                "diff-room",
                outputs,
                RoomCompositeOptions {
                    layout: "speaker-light".into(),
                    encoding: our_encoding(&encoding),
                    audio_only: true,
                    video_only: false,
                    custom_base_url: "https://layouts.example.com/base".into(),
                    audio_mixing: mixing,
                    webhooks: Vec::new(),
                },
            ),
        )
        .await;
        a.unwrap();
        b.unwrap();
    }
}

#[tokio::test]
async fn encoding_presets_match_livekit_api_constants() {
    let Clients { sim, theirs, ours } = setup();
    let pairs = [
        (
            "H264_720P_30",
            lk::encoding::H264_720P_30,
            presets::H264_720P_30,
        ),
        (
            "H264_720P_60",
            lk::encoding::H264_720P_60,
            presets::H264_720P_60,
        ),
        (
            "H264_1080P_30",
            lk::encoding::H264_1080P_30,
            presets::H264_1080P_30,
        ),
        (
            "H264_1080P_60",
            lk::encoding::H264_1080P_60,
            presets::H264_1080P_60,
        ),
        (
            "PORTRAIT_H264_720P_30",
            lk::encoding::PORTRAIT_H264_720P_30,
            presets::PORTRAIT_H264_720P_30,
        ),
        (
            "PORTRAIT_H264_720P_60",
            lk::encoding::PORTRAIT_H264_720P_60,
            presets::PORTRAIT_H264_720P_60,
        ),
        (
            "PORTRAIT_H264_1080P_30",
            lk::encoding::PORTRAIT_H264_1080P_30,
            presets::PORTRAIT_H264_1080P_30,
        ),
        (
            "PORTRAIT_H264_1080P_60",
            lk::encoding::PORTRAIT_H264_1080P_60,
            presets::PORTRAIT_H264_1080P_60,
        ),
        (
            "default",
            lk::encoding::EncodingOptions::default(),
            EncodingOptions::DEFAULT,
        ),
    ];
    for (name, theirs_options, our_options) in pairs {
        let outputs = vec![mp4("preset.mp4")];
        let (a, b) = differential(
            &sim,
            "StartWebEgress",
            name,
            theirs.start_web_egress(
                "https://example.com/page",
                lk_outputs(&outputs),
                lk::WebOptions {
                    encoding: theirs_options,
                    ..Default::default()
                },
            ),
            ours.start_web_egress(
                "https://example.com/page",
                outputs,
                WebOptions {
                    // Our typed constants, not a conversion of theirs.
                    encoding: our_options.into(),
                    ..Default::default()
                },
            ),
        )
        .await;
        a.unwrap();
        b.unwrap();
    }
}

#[tokio::test]
async fn start_web_egress() {
    let Clients { sim, theirs, ours } = setup();

    let outputs = vec![mp4("web.mp4")];
    let (a, b) = differential(
        &sim,
        "StartWebEgress",
        "defaults",
        theirs.start_web_egress(
            "https://example.com/dashboard",
            lk_outputs(&outputs),
            lk::WebOptions::default(),
        ),
        ours.start_web_egress(
            "https://example.com/dashboard",
            outputs,
            WebOptions::default(),
        ),
    )
    .await;
    a.unwrap();
    b.unwrap();

    let encoding = lk::encoding::EncodingOptions {
        framerate: 15,
        video_bitrate: 1200,
        ..lk::encoding::H264_720P_30
    };
    let outputs = rich_outputs();
    let (a, b) = differential(
        &sim,
        "StartWebEgress",
        "all options",
        theirs.start_web_egress(
            "https://example.com/dashboard?view=wall",
            lk_outputs(&outputs),
            lk::WebOptions {
                encoding: encoding.clone(),
                audio_only: false,
                video_only: true,
                await_start_signal: true,
            },
        ),
        ours.start_web_egress(
            "https://example.com/dashboard?view=wall",
            outputs,
            WebOptions {
                encoding: our_encoding(&encoding),
                audio_only: false,
                video_only: true,
                await_start_signal: true,
                webhooks: Vec::new(),
            },
        ),
    )
    .await;
    a.unwrap();
    b.unwrap();
}

#[tokio::test]
async fn start_participant_egress() {
    let Clients { sim, theirs, ours } = setup();

    for screenshare in [false, true] {
        let outputs = rich_outputs();
        let (a, b) = differential(
            &sim,
            "StartParticipantEgress",
            &format!("screenshare={screenshare}"),
            theirs.start_participant_egress(
                "diff-room",
                "alice",
                lk_outputs(&outputs),
                lk::ParticipantEgressOptions {
                    screenshare,
                    ..Default::default()
                },
            ),
            ours.start_participant_egress(
                "diff-room",
                "alice",
                outputs,
                ParticipantEgressOptions {
                    screenshare,
                    ..Default::default()
                },
            ),
        )
        .await;
        a.unwrap();
        b.unwrap();
    }

    let encoding = lk::encoding::PORTRAIT_H264_1080P_60;
    let outputs = vec![rtmp("rtmp://live.example.com/app/alice")];
    let (a, b) = differential(
        &sim,
        "StartParticipantEgress",
        "custom encoding",
        theirs.start_participant_egress(
            "diff-room",
            "bob",
            lk_outputs(&outputs),
            lk::ParticipantEgressOptions {
                screenshare: false,
                encoding: encoding.clone(),
            },
        ),
        ours.start_participant_egress(
            "diff-room",
            "bob",
            outputs,
            ParticipantEgressOptions {
                encoding: our_encoding(&encoding),
                ..Default::default()
            },
        ),
    )
    .await;
    a.unwrap();
    b.unwrap();
}

#[tokio::test]
async fn start_track_composite_egress() {
    let Clients { sim, theirs, ours } = setup();

    for (audio, video) in [("TR_audio", "TR_video"), ("TR_audio", ""), ("", "TR_video")] {
        let outputs = if video.is_empty() {
            rich_audio_outputs()
        } else {
            rich_outputs()
        };
        let (a, b) = differential(
            &sim,
            "StartTrackCompositeEgress",
            &format!("audio={audio:?} video={video:?}"),
            theirs.start_track_composite_egress(
                "diff-room",
                lk_outputs(&outputs),
                lk::TrackCompositeOptions {
                    audio_track_id: audio.into(),
                    video_track_id: video.into(),
                    ..Default::default()
                },
            ),
            ours.start_track_composite_egress(
                "diff-room",
                outputs,
                TrackCompositeOptions {
                    audio_track_id: audio.into(),
                    video_track_id: video.into(),
                    ..Default::default()
                },
            ),
        )
        .await;
        a.unwrap();
        b.unwrap();
    }
}

#[tokio::test]
async fn start_track_egress() {
    let Clients { sim, theirs, ours } = setup();

    let outputs = [
        TrackEgressOutput::File(proto::DirectFileOutput {
            filepath: "tracks/{track_id}.ogg".into(),
            disable_manifest: true,
            output: Some(proto::direct_file_output::Output::S3(proto::S3Upload {
                access_key: "AKIA".into(),
                secret: "s3-secret".into(),
                bucket: "tracks".into(),
                endpoint: "https://s3.example.com".into(),
                ..Default::default()
            })),
        }),
        TrackEgressOutput::File(proto::DirectFileOutput::default()),
        TrackEgressOutput::WebSocket("wss://stt.example.com/ingest?lang=en".into()),
    ];
    for output in outputs {
        let (a, b) = differential(
            &sim,
            "StartTrackEgress",
            &format!("{output:?}"),
            theirs.start_track_egress("diff-room", lk_track_output(&output), "TR_audio"),
            ours.start_track_egress("diff-room", output.clone(), "TR_audio"),
        )
        .await;
        a.unwrap();
        b.unwrap();
    }
}

#[tokio::test]
async fn start_egress() {
    let Clients { sim, theirs, ours } = setup();

    let requests = [
        (
            "template",
            UnifiedRequest::template(
                "diff-room",
                proto::TemplateSource {
                    layout: "grid".into(),
                    audio_only: false,
                    video_only: false,
                    custom_base_url: "https://layouts.example.com".into(),
                },
            )
            .outputs(rich_outputs())
            .preset(proto::EncodingOptionsPreset::H2641080p60)
            .build()
            .unwrap(),
        ),
        (
            "web",
            UnifiedRequest::web(proto::WebSource {
                url: "https://example.com".into(),
                audio_only: true,
                video_only: false,
                await_start_signal: true,
            })
            .output(mp4("web.ogg"))
            .advanced(presets::H264_720P_30)
            .build()
            .unwrap(),
        ),
        (
            "media",
            UnifiedRequest::media(
                "diff-room",
                proto::MediaSource {
                    video: Some(proto::media_source::Video::VideoTrackId("TR_v".into())),
                    audio: Some(proto::AudioConfig {
                        capture_all: false,
                        routes: vec![proto::AudioRoute {
                            channel: proto::AudioChannel::Left as i32,
                            r#match: Some(proto::audio_route::Match::TrackId("TR_a".into())),
                        }],
                    }),
                },
            )
            .output(rtmp("rtmp://live.example.com/app/media"))
            .storage(proto::StorageConfig {
                provider: Some(proto::storage_config::Provider::Gcp(proto::GcpUpload {
                    bucket: "media".into(),
                    ..Default::default()
                })),
            })
            .build()
            .unwrap(),
        ),
    ];
    for (name, request) in requests {
        let (a, b) = differential(
            &sim,
            "StartEgress",
            name,
            theirs.start_egress(convert(&request)),
            ours.start_egress(request.clone()),
        )
        .await;
        a.unwrap();
        b.unwrap();
    }
}

#[tokio::test]
async fn update_list_and_stop() {
    let Clients { sim, theirs, ours } = setup();

    let first = ours
        .start_room_composite_egress(
            "diff-room",
            vec![rtmp("rtmp://a.example.com/live/a")],
            RoomCompositeOptions::default(),
        )
        .await
        .unwrap();
    let second = ours
        .start_room_composite_egress(
            "other-room",
            vec![rtmp("rtmp://b.example.com/live/b")],
            RoomCompositeOptions::default(),
        )
        .await
        .unwrap();
    let id = first.egress_id.as_str();

    // UpdateLayout: both succeed on the running egress.
    for layout in ["speaker", ""] {
        let (a, b) = differential(
            &sim,
            "UpdateLayout",
            &format!("layout {layout:?}"),
            theirs.update_layout(id, layout),
            ours.update_layout(id, layout),
        )
        .await;
        assert_eq!(a.unwrap().egress_id, id);
        assert_eq!(b.unwrap().egress_id, id);
    }

    // UpdateStream
    let cases: [(Vec<String>, Vec<String>); 3] = [
        (
            vec![
                "rtmp://c.example.com/live/c".into(),
                "rtmp://d.example.com/live/d".into(),
            ],
            vec![],
        ),
        (vec![], vec!["rtmp://a.example.com/live/a".into()]),
        (
            vec!["srt://e.example.com:9000".into()],
            vec!["rtmp://c.example.com/live/c".into()],
        ),
    ];
    for (add, remove) in cases {
        let (a, b) = differential(
            &sim,
            "UpdateStream",
            &format!("add {add:?} remove {remove:?}"),
            theirs.update_stream(id, add.clone(), remove.clone()),
            ours.update_stream(id, add.clone(), remove.clone()),
        )
        .await;
        a.unwrap();
        // Both send the same request to the same egress, so ours removes a stream theirs
        // already removed, which LiveKit's egress worker refuses (`stream <url> not found`).
        if remove.is_empty() {
            b.unwrap();
        } else {
            let error = b.unwrap_err().to_string();
            assert!(error.contains("not found"), "{error}");
        }
    }

    // ListEgress with every filter, `active`, and a page token (ignored by this
    // open-source-like simulator, but still sent).
    let token = || lkp::TokenPagination {
        token: "page-2".into(),
    };
    let cases: Vec<(&str, lk::EgressListOptions, ListOptions)> = vec![
        ("all", lk::EgressListOptions::default(), ListOptions::all()),
        (
            "room",
            lk::EgressListOptions {
                filter: lk::EgressListFilter::Room("diff-room".into()),
                ..Default::default()
            },
            ListOptions::room("diff-room"),
        ),
        (
            "egress",
            lk::EgressListOptions {
                filter: lk::EgressListFilter::Egress(second.egress_id.clone()),
                ..Default::default()
            },
            ListOptions::egress(&second.egress_id),
        ),
        (
            "active",
            lk::EgressListOptions {
                active: true,
                ..Default::default()
            },
            ListOptions::all().active(true),
        ),
        (
            "room, active, page token",
            lk::EgressListOptions {
                filter: lk::EgressListFilter::Room("other-room".into()),
                active: true,
                page_token: Some(token()),
            },
            ListOptions::room("other-room")
                .active(true)
                .page_token(convert(&token())),
        ),
    ];
    for (name, theirs_options, our_options) in cases {
        let (a, b) = differential(
            &sim,
            "ListEgress",
            name,
            theirs.list_egress(theirs_options),
            ours.list_egress(our_options),
        )
        .await;
        let theirs_ids: Vec<String> = a.unwrap().into_iter().map(|i| i.egress_id).collect();
        let ours_ids: Vec<String> = b.unwrap().items.into_iter().map(|i| i.egress_id).collect();
        assert_eq!(ours_ids, theirs_ids, "{name}");
    }

    // StopEgress: LiveKit's client stops the egress; ours, second, finds it ending (LiveKit's
    // worker answers with the egress as it is) or, if it completed meanwhile, is refused.
    // The requests are the same. Active first: LiveKit aborts an egress still starting.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (a, b) = differential(
        &sim,
        "StopEgress",
        "stop",
        theirs.stop_egress(id),
        ours.stop_egress(id),
    )
    .await;
    assert_eq!(a.unwrap().status, lkp::EgressStatus::EgressEnding as i32);
    match b {
        Ok(info) => assert_eq!(info.status(), proto::EgressStatus::EgressEnding),
        Err(error) => assert_eq!(
            error.twirp_code(),
            Some(egress_twirp::TwirpCode::FailedPrecondition)
        ),
    }

    // And the other way round, so that our successful stop is compared too.
    let other = second.egress_id.as_str();
    sim.clear_requests();
    let ours_result = ours.stop_egress(other).await;
    let ours_request = take_one(&sim, "egress-client");
    let theirs_result = theirs.stop_egress(other).await;
    let theirs_request = take_one(&sim, "livekit-api");
    assert_same(
        &theirs_request,
        &ours_request,
        "StopEgress",
        "stop (ours first)",
    );
    assert_eq!(
        ours_result.unwrap().status(),
        proto::EgressStatus::EgressEnding
    );
    // Ending (answered by the worker) or, completed meanwhile, refused.
    match theirs_result {
        Ok(info) => assert_eq!(info.status, lkp::EgressStatus::EgressEnding as i32),
        Err(error) => assert!(error.to_string().contains("cannot be stopped"), "{error}"),
    }

    // Unknown ids: the same request, and both report not_found.
    let (a, b) = differential(
        &sim,
        "StopEgress",
        "unknown id",
        theirs.stop_egress("EG_unknown"),
        ours.stop_egress("EG_unknown"),
    )
    .await;
    match a.unwrap_err() {
        livekit_api::services::ServiceError::Twirp(livekit_api::services::ServerError::Twirp(
            e,
        )) => assert_eq!(e.code, "not_found"),
        other => panic!("{other:?}"),
    }
    assert!(b.unwrap_err().is_not_found());
}
