//! The allow/deny matrix: every one of the ten RPCs, each rule it is
//! subject to, an allowed and a denied value.

mod common;

use std::collections::BTreeSet;

use common::{ADMIN, BUCKETS_ONLY, LISTER, RECORDER, caller, denial, policy, view_of};
use egress_core::Rpc;
use egress_core::proto;
use egress_core::view::RequestView;
use egress_policy::{Caller, Rule};

/// The values a request is built from.
#[derive(Clone, Copy)]
struct Knobs {
    room: &'static str,
    stream: &'static str,
    websocket: &'static str,
    bucket: &'static str,
    path: &'static str,
    webhook: &'static str,
    web: &'static str,
}

const GOOD: Knobs = Knobs {
    room: "team-blue",
    stream: "rtmps://a.live.example.com/app/STREAMKEY",
    websocket: "wss://transcribe.example.com/ws",
    bucket: "recordings-prod",
    path: "recordings/{room_name}/out.mp4",
    webhook: "https://hooks.example.com/egress",
    web: "https://app.example.com/page",
};

/// One bad value per rule, and the rule that must refuse it.
fn bad_variants() -> Vec<(Rule, Knobs)> {
    vec![
        (
            Rule::Rooms,
            Knobs {
                room: "secret-room",
                ..GOOD
            },
        ),
        (
            Rule::StreamUrls,
            Knobs {
                stream: "rtmp://evil.example.net/live/STREAMKEY",
                ..GOOD
            },
        ),
        (
            Rule::StreamUrls,
            Knobs {
                websocket: "wss://evil.example.net/ws",
                ..GOOD
            },
        ),
        (
            Rule::FileBuckets,
            Knobs {
                bucket: "attacker-bucket",
                ..GOOD
            },
        ),
        (
            Rule::FilePrefixes,
            Knobs {
                path: "other/out.mp4",
                ..GOOD
            },
        ),
        (
            Rule::WebhookUrls,
            Knobs {
                webhook: "https://evil.example.net/hook",
                ..GOOD
            },
        ),
        (
            Rule::WebUrls,
            Knobs {
                web: "https://evil.example.net/page",
                ..GOOD
            },
        ),
    ]
}

fn s3(bucket: &str) -> proto::S3Upload {
    proto::S3Upload {
        access_key: "AKIAEXAMPLE".into(),
        secret: "s3-secret".into(),
        bucket: bucket.into(),
        region: "eu-west-1".into(),
        ..Default::default()
    }
}

fn webhooks(k: &Knobs) -> Vec<proto::WebhookConfig> {
    vec![proto::WebhookConfig {
        url: k.webhook.into(),
        signing_key: "hook-signing-key".into(),
        ..Default::default()
    }]
}

fn streams(k: &Knobs) -> Vec<proto::StreamOutput> {
    vec![proto::StreamOutput {
        urls: vec![k.stream.into()],
        ..Default::default()
    }]
}

fn room_composite(k: &Knobs) -> RequestView {
    let request = proto::RoomCompositeEgressRequest {
        room_name: k.room.into(),
        layout: "grid".into(),
        custom_base_url: k.web.into(),
        file_outputs: vec![proto::EncodedFileOutput {
            filepath: k.path.into(),
            output: Some(proto::encoded_file_output::Output::S3(s3(k.bucket))),
            ..Default::default()
        }],
        stream_outputs: streams(k),
        webhooks: webhooks(k),
        ..Default::default()
    };
    view_of(Rpc::StartRoomCompositeEgress, &request)
}

fn web(k: &Knobs) -> RequestView {
    let request = proto::WebEgressRequest {
        url: k.web.into(),
        segment_outputs: vec![proto::SegmentedFileOutput {
            filename_prefix: k.path.into(),
            output: Some(proto::segmented_file_output::Output::Gcp(
                proto::GcpUpload {
                    credentials: "gcp-credentials-json".into(),
                    bucket: k.bucket.into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        stream_outputs: streams(k),
        webhooks: webhooks(k),
        ..Default::default()
    };
    view_of(Rpc::StartWebEgress, &request)
}

fn participant(k: &Knobs) -> RequestView {
    let request = proto::ParticipantEgressRequest {
        room_name: k.room.into(),
        identity: "alice".into(),
        image_outputs: vec![proto::ImageOutput {
            filename_prefix: k.path.into(),
            output: Some(proto::image_output::Output::S3(s3(k.bucket))),
            ..Default::default()
        }],
        stream_outputs: streams(k),
        webhooks: webhooks(k),
        ..Default::default()
    };
    view_of(Rpc::StartParticipantEgress, &request)
}

fn track_composite(k: &Knobs) -> RequestView {
    let request = proto::TrackCompositeEgressRequest {
        room_name: k.room.into(),
        audio_track_id: "TR_audio".into(),
        video_track_id: "TR_video".into(),
        segment_outputs: vec![proto::SegmentedFileOutput {
            filename_prefix: k.path.into(),
            playlist_name: "recordings/index.m3u8".into(),
            output: Some(proto::segmented_file_output::Output::S3(s3(k.bucket))),
            ..Default::default()
        }],
        stream_outputs: streams(k),
        webhooks: webhooks(k),
        ..Default::default()
    };
    view_of(Rpc::StartTrackCompositeEgress, &request)
}

fn track_websocket(k: &Knobs) -> RequestView {
    let request = proto::TrackEgressRequest {
        room_name: k.room.into(),
        track_id: "TR_1".into(),
        output: Some(proto::track_egress_request::Output::WebsocketUrl(
            k.websocket.into(),
        )),
        webhooks: webhooks(k),
    };
    view_of(Rpc::StartTrackEgress, &request)
}

fn track_file(k: &Knobs) -> RequestView {
    let request = proto::TrackEgressRequest {
        room_name: k.room.into(),
        track_id: "TR_1".into(),
        output: Some(proto::track_egress_request::Output::File(
            proto::DirectFileOutput {
                filepath: k.path.into(),
                output: Some(proto::direct_file_output::Output::Azure(
                    proto::AzureBlobUpload {
                        account_name: "account".into(),
                        account_key: "azure-key".into(),
                        container_name: k.bucket.into(),
                    },
                )),
                ..Default::default()
            },
        )),
        webhooks: webhooks(k),
    };
    view_of(Rpc::StartTrackEgress, &request)
}

fn start_egress(k: &Knobs) -> RequestView {
    use proto::output::Config;
    let request = proto::StartEgressRequest {
        room_name: k.room.into(),
        source: Some(proto::start_egress_request::Source::Template(
            proto::TemplateSource {
                layout: "speaker".into(),
                custom_base_url: k.web.into(),
                ..Default::default()
            },
        )),
        outputs: vec![
            proto::Output {
                config: Some(Config::File(proto::FileOutput {
                    filepath: k.path.into(),
                    ..Default::default()
                })),
                storage: Some(proto::StorageConfig {
                    provider: Some(proto::storage_config::Provider::S3(s3(k.bucket))),
                }),
            },
            proto::Output {
                config: Some(Config::Stream(proto::StreamOutput {
                    urls: vec![k.stream.into()],
                    ..Default::default()
                })),
                storage: None,
            },
        ],
        webhooks: webhooks(k),
        ..Default::default()
    };
    view_of(Rpc::StartEgress, &request)
}

fn start_egress_web_source(k: &Knobs) -> RequestView {
    let request = proto::StartEgressRequest {
        source: Some(proto::start_egress_request::Source::Web(proto::WebSource {
            url: k.web.into(),
            ..Default::default()
        })),
        webhooks: webhooks(k),
        ..Default::default()
    };
    view_of(Rpc::StartEgress, &request)
}

fn list(k: &Knobs) -> RequestView {
    let request = proto::ListEgressRequest {
        room_name: k.room.into(),
        ..Default::default()
    };
    view_of(Rpc::ListEgress, &request)
}

fn update_stream(k: &Knobs) -> RequestView {
    let request = proto::UpdateStreamRequest {
        egress_id: "EG_1".into(),
        add_output_urls: vec![k.stream.into()],
        remove_output_urls: vec!["rtmp://old.example.net/live/OLDKEY".into()],
        ..Default::default()
    };
    view_of(Rpc::UpdateStream, &request)
}

fn stop(_: &Knobs) -> RequestView {
    view_of(
        Rpc::StopEgress,
        &proto::StopEgressRequest {
            egress_id: "EG_1".into(),
        },
    )
}

fn update_layout(_: &Knobs) -> RequestView {
    view_of(
        Rpc::UpdateLayout,
        &proto::UpdateLayoutRequest {
            egress_id: "EG_1".into(),
            layout: "grid".into(),
        },
    )
}

type Builder = fn(&Knobs) -> RequestView;

/// Every request shape, and the rules that apply to it.
fn shapes() -> Vec<(&'static str, Builder, Vec<Rule>)> {
    use Rule::*;
    let start_rules = vec![Rooms, StreamUrls, FileBuckets, FilePrefixes, WebhookUrls];
    vec![
        (
            "room composite",
            room_composite as Builder,
            [start_rules.clone(), vec![WebUrls]].concat(),
        ),
        (
            "web",
            web,
            vec![StreamUrls, FileBuckets, FilePrefixes, WebhookUrls, WebUrls],
        ),
        ("participant", participant, start_rules.clone()),
        ("track composite", track_composite, start_rules.clone()),
        (
            "track websocket",
            track_websocket,
            vec![Rooms, StreamUrls, WebhookUrls],
        ),
        (
            "track file",
            track_file,
            vec![Rooms, FileBuckets, FilePrefixes, WebhookUrls],
        ),
        (
            "start egress",
            start_egress,
            [start_rules, vec![WebUrls]].concat(),
        ),
        (
            "start egress web source",
            start_egress_web_source,
            vec![WebhookUrls, WebUrls],
        ),
        ("list", list, vec![Rooms]),
        ("update stream", update_stream, vec![StreamUrls]),
        ("stop", stop, vec![]),
        ("update layout", update_layout, vec![]),
    ]
}

#[test]
fn every_rpc_is_covered() {
    let policy = policy();
    let mut seen: Vec<Rpc> = shapes()
        .iter()
        .map(|(_, build, _)| build(&GOOD).rpc)
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), Rpc::ALL.len(), "{seen:?}");
    // And the RPC-level allow/deny for each of them.
    let lister = caller(&policy, LISTER);
    let admin = caller(&policy, ADMIN);
    for (name, build, _) in shapes() {
        let view = build(&GOOD);
        if view.rpc == Rpc::ListEgress {
            assert_eq!(lister.policy.check(&view), Ok(()));
        } else {
            let d = denial(lister, &view);
            assert_eq!(d.rule(), Rule::Rpcs, "{name}");
            assert_eq!(
                d.to_string(),
                format!(
                    "caller \"lister\" may not call {} (rule policies.list-only.rpcs)",
                    view.rpc
                )
            );
        }
        // `rpcs = ["*"]` and no other lists: everything goes, even the bad values.
        for (_, bad) in bad_variants() {
            assert_eq!(admin.policy.check(&build(&bad)), Ok(()), "{name}");
        }
    }
}

#[test]
fn allowed_values_pass_and_each_bad_value_is_denied_by_its_rule() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    for (name, build, rules) in shapes() {
        let view = build(&GOOD);
        assert_eq!(recorder.policy.check(&view), Ok(()), "{name}: {view:?}");
        let mut denied_by = BTreeSet::new();
        for (rule, bad) in bad_variants() {
            let view = build(&bad);
            let result = recorder.policy.check(&view);
            if rules.contains(&rule) && changed(&build, &bad) {
                let d = result.expect_err(name);
                denied_by.insert(rule.as_str());
                assert_eq!(d.rule(), rule, "{name}: {d}");
                assert_eq!(d.caller(), "recorder-service");
                assert_eq!(d.policy(), "recording");
                assert_eq!(d.rule_path(), format!("policies.recording.{rule}"));
                assert!(
                    d.to_string()
                        .ends_with(&format!("(rule policies.recording.{rule})"))
                );
            } else {
                assert_eq!(result, Ok(()), "{name}: {rule} does not apply");
            }
        }
        // Every rule listed for the shape really denied something.
        let expected: BTreeSet<&str> = rules.iter().map(|r| r.as_str()).collect();
        assert_eq!(denied_by, expected, "{name}");
    }
}

/// Whether a bad variant changes this shape's request at all (the
/// WebSocket knob only matters to track requests, and so on).
fn changed(build: &Builder, bad: &Knobs) -> bool {
    build(bad) != build(&GOOD)
}

#[test]
fn denial_messages_name_the_value() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let cases: Vec<(RequestView, &str)> = vec![
        (
            room_composite(&Knobs {
                room: "secret-room",
                ..GOOD
            }),
            "caller \"recorder-service\" may not use room \"secret-room\" (rule policies.recording.rooms)",
        ),
        (
            room_composite(&Knobs {
                stream: "rtmp://evil.example.net/live/STREAMKEY",
                ..GOOD
            }),
            "caller \"recorder-service\" may not stream to \"rtmp://evil.example.net\" (rule policies.recording.stream_urls)",
        ),
        (
            room_composite(&Knobs {
                bucket: "attacker-bucket",
                ..GOOD
            }),
            "caller \"recorder-service\" may not store files in bucket \"attacker-bucket\" (rule policies.recording.file_buckets)",
        ),
        (
            room_composite(&Knobs {
                path: "other/out.mp4",
                ..GOOD
            }),
            "caller \"recorder-service\" may not store files at \"other/out.mp4\" (rule policies.recording.file_prefixes)",
        ),
        (
            room_composite(&Knobs {
                webhook: "https://evil.example.net/hook?sig=1",
                ..GOOD
            }),
            "caller \"recorder-service\" may not send webhooks to \"https://evil.example.net\" (rule policies.recording.webhook_urls)",
        ),
        (
            web(&Knobs {
                web: "https://evil.example.net/page",
                ..GOOD
            }),
            "caller \"recorder-service\" may not record the web page \"https://evil.example.net\" (rule policies.recording.web_urls)",
        ),
        (
            room_composite(&Knobs {
                web: "https://evil.example.net/template",
                ..GOOD
            }),
            "caller \"recorder-service\" may not use the template base URL \"https://evil.example.net\" (rule policies.recording.web_urls)",
        ),
        (
            list(&Knobs { room: "", ..GOOD }),
            "caller \"recorder-service\" may not call ListEgress without a room filter (rule policies.recording.rooms)",
        ),
    ];
    for (view, expected) in cases {
        assert_eq!(denial(recorder, &view).to_string(), expected);
    }
}

#[test]
fn room_scoped_starts_without_a_room() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let admin = caller(&policy, ADMIN);
    let view = participant(&Knobs { room: "", ..GOOD });
    let d = denial(recorder, &view);
    assert_eq!(d.rule(), Rule::Rooms);
    assert_eq!(
        d.reason(),
        "caller \"recorder-service\" may not use room \"\""
    );
    assert_eq!(admin.policy.check(&view), Ok(()));
    // The unified request without a room but with a web source is not
    // room-scoped; with a template source it is.
    assert_eq!(
        recorder.policy.check(&start_egress_web_source(&GOOD)),
        Ok(())
    );
    let view = start_egress(&Knobs { room: "", ..GOOD });
    assert_eq!(denial(recorder, &view).rule(), Rule::Rooms);
}

#[test]
fn list_egress_rooms() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let admin = caller(&policy, ADMIN);
    let unfiltered = list(&Knobs { room: "", ..GOOD });
    // Restricted rooms: listing every room's egresses is refused.
    assert_eq!(denial(recorder, &unfiltered).rule(), Rule::Rooms);
    assert_eq!(admin.policy.check(&unfiltered), Ok(()));
    assert_eq!(recorder.policy.needs_egress_room(&list(&GOOD)), None);

    // An id filter: LiveKit answers with that egress whatever the room
    // filter says, so its room must be looked up.
    let by_id = view_of(
        Rpc::ListEgress,
        &proto::ListEgressRequest {
            room_name: "team-blue".into(),
            egress_id: "EG_9".into(),
            active: true,
            ..Default::default()
        },
    );
    assert_eq!(recorder.policy.check(&by_id), Ok(()));
    assert_eq!(recorder.policy.needs_egress_room(&by_id), Some("EG_9"));
    assert_eq!(admin.policy.needs_egress_room(&by_id), None);
    let id_only = view_of(
        Rpc::ListEgress,
        &proto::ListEgressRequest {
            egress_id: "EG_9".into(),
            ..Default::default()
        },
    );
    assert_eq!(denial(recorder, &id_only).rule(), Rule::Rooms);
}

#[test]
fn calls_naming_an_egress_need_its_room() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let admin = caller(&policy, ADMIN);
    for build in [stop as Builder, update_layout, update_stream] {
        let view = build(&GOOD);
        assert_eq!(recorder.policy.check(&view), Ok(()), "{:?}", view.rpc);
        assert_eq!(recorder.policy.needs_egress_room(&view), Some("EG_1"));
        assert_eq!(admin.policy.needs_egress_room(&view), None);
        // Starts never need a lookup.
        assert_eq!(
            recorder.policy.needs_egress_room(&room_composite(&GOOD)),
            None
        );
    }
    assert_eq!(recorder.policy.check_egress_room("team-red"), Ok(()));
    assert_eq!(recorder.policy.check_egress_room("standup"), Ok(()));
    let d = recorder
        .policy
        .check_egress_room("secret-room")
        .unwrap_err();
    assert_eq!(d.rule(), Rule::Rooms);
    assert_eq!(
        d.to_string(),
        "caller \"recorder-service\" may not use room \"secret-room\" (rule policies.recording.rooms)"
    );
    assert_eq!(admin.policy.check_egress_room("secret-room"), Ok(()));

    // Without an egress id a restricted caller is refused outright.
    for rpc in [Rpc::StopEgress, Rpc::UpdateLayout, Rpc::UpdateStream] {
        let view = RequestView::new(rpc);
        let d = denial(recorder, &view);
        assert_eq!(d.rule(), Rule::Rooms);
        assert_eq!(
            d.reason(),
            format!("caller \"recorder-service\" may not call {rpc} without an egress id")
        );
        assert_eq!(recorder.policy.needs_egress_room(&view), Some(""));
        assert_eq!(admin.policy.check(&view), Ok(()));
    }
}

fn room_composite_with(output: proto::EncodedFileOutput) -> RequestView {
    view_of(
        Rpc::StartRoomCompositeEgress,
        &proto::RoomCompositeEgressRequest {
            room_name: "team-blue".into(),
            file_outputs: vec![output],
            ..Default::default()
        },
    )
}

fn file(
    path: &str,
    output: Option<proto::encoded_file_output::Output>,
) -> proto::EncodedFileOutput {
    proto::EncodedFileOutput {
        filepath: path.into(),
        output,
        ..Default::default()
    }
}

#[test]
fn storage_rules() {
    use proto::encoded_file_output::Output;
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let archiver = caller(&policy, BUCKETS_ONLY);
    let check = |c: &Caller, f: proto::EncodedFileOutput| c.policy.check(&room_composite_with(f));
    let rule = |c: &Caller, f: proto::EncodedFileOutput| denial(c, &room_composite_with(f)).rule();

    // Bucket globs.
    assert_eq!(
        check(
            recorder,
            file("recordings/a.mp4", Some(Output::S3(s3("media-eu"))))
        ),
        Ok(())
    );
    // The egress service's default storage is the pseudo-bucket "@default".
    assert_eq!(check(recorder, file("recordings/a.mp4", None)), Ok(()));
    let d = denial(archiver, &room_composite_with(file("a.mp4", None)));
    assert_eq!(
        d.to_string(),
        "caller \"archiver\" may not store files in the egress service's default storage (rule policies.buckets-only.file_buckets)"
    );
    assert_eq!(
        check(
            archiver,
            file("anywhere/a.mp4", Some(Output::S3(s3("recordings-prod"))))
        ),
        Ok(())
    );

    // Providers.
    let oss = Output::AliOss(proto::AliOssUpload {
        bucket: "recordings-prod".into(),
        ..Default::default()
    });
    let d = denial(
        recorder,
        &room_composite_with(file("recordings/a.mp4", Some(oss))),
    );
    assert_eq!(d.rule(), Rule::StorageProviders);
    assert_eq!(
        d.reason(),
        "caller \"recorder-service\" may not store files on alioss"
    );

    // Custom endpoints: a bucket name alone says nothing about whose bucket it is.
    let at = |endpoint: &str| {
        let mut upload = s3("recordings-prod");
        upload.endpoint = endpoint.into();
        Some(Output::S3(upload))
    };
    assert_eq!(
        check(
            recorder,
            file("recordings/a.mp4", at("https://minio.example.com"))
        ),
        Ok(())
    );
    assert_eq!(
        check(recorder, file("recordings/a.mp4", at("minio.example.com"))),
        Ok(())
    );
    let d = denial(
        recorder,
        &room_composite_with(file(
            "recordings/a.mp4",
            at("https://key:secret@evil.example.net/x?token=t"),
        )),
    );
    assert_eq!(d.rule(), Rule::StorageEndpoints);
    assert_eq!(
        d.reason(),
        "caller \"recorder-service\" may not upload to the custom endpoint \"https://evil.example.net\""
    );
    // No storage_endpoints list but a bucket list: custom endpoints are refused.
    assert_eq!(
        rule(archiver, file("a.mp4", at("https://minio.example.com"))),
        Rule::StorageEndpoints
    );

    // Prefixes.
    assert_eq!(
        rule(
            recorder,
            file(
                "recordings/../secret/a.mp4",
                Some(Output::S3(s3("recordings-prod")))
            )
        ),
        Rule::FilePrefixes
    );
    let d = denial(
        recorder,
        &room_composite_with(file("", Some(Output::S3(s3("recordings-prod"))))),
    );
    assert_eq!(d.rule(), Rule::FilePrefixes);
    assert_eq!(
        d.reason(),
        "caller \"recorder-service\" may not store files under the default file name"
    );
}

#[test]
fn segment_paths_are_all_checked() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let segments = |prefix: &str, playlist: &str, live: &str| {
        view_of(
            Rpc::StartTrackCompositeEgress,
            &proto::TrackCompositeEgressRequest {
                room_name: "team-blue".into(),
                segment_outputs: vec![proto::SegmentedFileOutput {
                    filename_prefix: prefix.into(),
                    playlist_name: playlist.into(),
                    live_playlist_name: live.into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    };
    let ok = |v: RequestView| recorder.policy.check(&v);
    assert_eq!(ok(segments("recordings/r/seg", "", "")), Ok(()));
    assert_eq!(ok(segments("", "recordings/r/index.m3u8", "")), Ok(()));
    assert_eq!(
        ok(segments(
            "recordings/r/seg",
            "recordings/r/index.m3u8",
            "recordings/r/live.m3u8"
        )),
        Ok(())
    );
    for (prefix, playlist, live) in [
        ("", "", ""),
        ("recordings/r/seg", "elsewhere/index.m3u8", ""),
        (
            "recordings/r/seg",
            "recordings/r/index.m3u8",
            "elsewhere/live.m3u8",
        ),
        ("elsewhere/seg", "recordings/r/index.m3u8", ""),
    ] {
        let d = denial(recorder, &segments(prefix, playlist, live));
        assert_eq!(d.rule(), Rule::FilePrefixes, "{prefix} {playlist} {live}");
    }
}

#[test]
fn unified_request_level_storage_is_checked() {
    use proto::output::Config;
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let request = proto::StartEgressRequest {
        room_name: "team-blue".into(),
        storage: Some(proto::StorageConfig {
            provider: Some(proto::storage_config::Provider::S3(s3("attacker-bucket"))),
        }),
        outputs: vec![proto::Output {
            config: Some(Config::File(proto::FileOutput {
                filepath: "recordings/a.mp4".into(),
                ..Default::default()
            })),
            storage: None,
        }],
        ..Default::default()
    };
    let d = denial(recorder, &view_of(Rpc::StartEgress, &request));
    assert_eq!(d.rule(), Rule::FileBuckets);
}

#[test]
fn url_allow_lists_resist_tricks() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    for url in [
        // Host glob must not reach into the path, userinfo or a longer host.
        "rtmps://evil.example.net/x.live.example.com/app",
        "rtmps://a.live.example.com@evil.example.net/app",
        "rtmps://a.live.example.com.evil.example.net/app",
        "rtmps://a.live.example.com:8443/app",
        "rtmps://a.live.example.com?@evil.example.net/app",
        "rtmps://a.live.example.com\\@evil.example.net/app",
        "rtmps:/a.live.example.com/app",
        "not a url",
    ] {
        let view = room_composite(&Knobs {
            stream: url,
            ..GOOD
        });
        assert_eq!(denial(recorder, &view).rule(), Rule::StreamUrls, "{url}");
    }
    for url in [
        "RTMPS://A.Live.Example.COM/app/KEY",
        "rtmps://user:pass@a.live.example.com/app/KEY",
        "rtmps://a.live.example.com:443/app/KEY",
    ] {
        let view = room_composite(&Knobs {
            stream: url,
            ..GOOD
        });
        assert_eq!(recorder.policy.check(&view), Ok(()), "{url}");
    }
}

#[test]
fn removed_stream_urls_are_not_checked() {
    let policy = policy();
    let recorder = caller(&policy, RECORDER);
    let view = view_of(
        Rpc::UpdateStream,
        &proto::UpdateStreamRequest {
            egress_id: "EG_1".into(),
            add_output_urls: vec![],
            remove_output_urls: vec!["rtmp://anything.example.net/live/KEY".into()],
            ..Default::default()
        },
    );
    assert_eq!(recorder.policy.check(&view), Ok(()));
}
