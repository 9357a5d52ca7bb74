//! Drives the simulator over real HTTP on 127.0.0.1 with a plain client: every RPC, every
//! error class, the lifecycle, ListEgress modes, deadlines, faults and the control endpoints.

mod common;

use std::time::{Duration, Instant};

use common::*;
use egress_auth::VideoGrants;
use egress_proto::livekit::{
    self as lk, EgressInfo, EgressSourceType, EgressStatus, ListEgressResponse, egress_info,
    stream_info,
};
use egress_sim::{Fault, RecordedRequest, rpc_status};
use prost::Message;

fn stream(url: &str) -> lk::StreamOutput {
    lk::StreamOutput {
        protocol: lk::StreamProtocol::Rtmp as i32,
        urls: vec![url.to_owned()],
        ..Default::default()
    }
}

fn room_composite(room: &str) -> lk::RoomCompositeEgressRequest {
    lk::RoomCompositeEgressRequest {
        room_name: room.to_owned(),
        layout: "grid".to_owned(),
        stream_outputs: vec![stream("rtmp://live.example.com/app/key")],
        file_outputs: vec![lk::EncodedFileOutput {
            filepath: "recordings/{room_name}.mp4".to_owned(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn start_room(sim: &egress_sim::SimHandle, room: &str) -> EgressInfo {
    call(sim, "StartRoomCompositeEgress", &room_composite(room))
        .await
        .decode()
}

fn status(info: &EgressInfo) -> EgressStatus {
    EgressStatus::try_from(info.status).unwrap()
}

async fn list(sim: &egress_sim::SimHandle, request: lk::ListEgressRequest) -> ListEgressResponse {
    call(sim, "ListEgress", &request).await.decode()
}

#[tokio::test]
async fn every_rpc_over_protobuf() {
    let sim = spawn(builder());

    let rc = start_room(&sim, "standup").await;
    assert!(rc.egress_id.starts_with("EG_") && rc.egress_id.len() == 15);
    assert!(rc.room_id.starts_with("RM_") && rc.room_id.len() == 15);
    assert_eq!(rc.room_name, "standup");
    assert_eq!(status(&rc), EgressStatus::EgressStarting);
    assert_eq!(rc.source_type, EgressSourceType::Web as i32);
    assert!(rc.started_at > 0 && rc.updated_at >= rc.started_at);
    assert_eq!(rc.stream_results.len(), 1);
    assert_eq!(rc.file_results[0].filename, "recordings/{room_name}.mp4");
    // Echoed as LiveKit's worker echoes it: the stream key redacted.
    let mut echoed = room_composite("standup");
    echoed.stream_outputs[0].urls = vec!["rtmp://live.example.com/app/{k...y}".into()];
    match &rc.request {
        Some(egress_info::Request::RoomComposite(r)) => assert_eq!(r, &echoed),
        other => panic!("request not echoed: {other:?}"),
    }

    let web: EgressInfo = call(
        &sim,
        "StartWebEgress",
        &lk::WebEgressRequest {
            url: "https://example.com/page".into(),
            segment_outputs: vec![lk::SegmentedFileOutput {
                filename_prefix: "seg".into(),
                playlist_name: "index.m3u8".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await
    .decode();
    assert!(matches!(web.request, Some(egress_info::Request::Web(_))));
    assert_eq!(web.segment_results[0].playlist_name, "index.m3u8");
    assert_eq!(web.room_name, "");

    let participant: EgressInfo = call(
        &sim,
        "StartParticipantEgress",
        &lk::ParticipantEgressRequest {
            room_name: "standup".into(),
            identity: "alice".into(),
            image_outputs: vec![lk::ImageOutput {
                filename_prefix: "thumbs/alice".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await
    .decode();
    assert_eq!(participant.source_type, EgressSourceType::Sdk as i32);
    assert_eq!(participant.room_id, rc.room_id, "one room id per room");
    assert_eq!(participant.image_results[0].filename_prefix, "thumbs/alice");

    let track_composite: EgressInfo = call(
        &sim,
        "StartTrackCompositeEgress",
        &lk::TrackCompositeEgressRequest {
            room_name: "standup".into(),
            audio_track_id: "TR_audio".into(),
            file_outputs: vec![lk::EncodedFileOutput::default()],
            ..Default::default()
        },
    )
    .await
    .decode();
    assert!(matches!(
        track_composite.request,
        Some(egress_info::Request::TrackComposite(_))
    ));

    let track: EgressInfo = call(
        &sim,
        "StartTrackEgress",
        &lk::TrackEgressRequest {
            room_name: "standup".into(),
            track_id: "TR_video".into(),
            output: Some(lk::track_egress_request::Output::WebsocketUrl(
                "wss://sink.example.com/ws".into(),
            )),
            ..Default::default()
        },
    )
    .await
    .decode();
    assert_eq!(track.stream_results[0].url, "wss://sink.example.com/ws");

    let unified: EgressInfo = call(
        &sim,
        "StartEgress",
        &lk::StartEgressRequest {
            room_name: "standup".into(),
            source: Some(lk::start_egress_request::Source::Template(
                lk::TemplateSource {
                    layout: "speaker".into(),
                    ..Default::default()
                },
            )),
            outputs: vec![lk::Output {
                // The protocol must fit the URL's scheme (the worker checks).
                config: Some(lk::output::Config::Stream(lk::StreamOutput {
                    protocol: lk::StreamProtocol::Srt as i32,
                    ..stream("srt://a.example.com:9000")
                })),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await
    .decode();
    assert!(matches!(
        unified.request,
        Some(egress_info::Request::Egress(_))
    ));
    assert_eq!(unified.stream_results[0].url, "srt://a.example.com:9000");

    let updated: EgressInfo = call(
        &sim,
        "UpdateLayout",
        &lk::UpdateLayoutRequest {
            egress_id: rc.egress_id.clone(),
            layout: "single-speaker".into(),
        },
    )
    .await
    .decode();
    match updated.request {
        Some(egress_info::Request::RoomComposite(r)) => assert_eq!(r.layout, "single-speaker"),
        other => panic!("{other:?}"),
    }

    let streamed: EgressInfo = call(
        &sim,
        "UpdateStream",
        &lk::UpdateStreamRequest {
            egress_id: rc.egress_id.clone(),
            add_output_urls: vec!["rtmp://b.example.com/live/key2".into()],
            remove_output_urls: vec!["rtmp://live.example.com/app/key".into()],
            ..Default::default()
        },
    )
    .await
    .decode();
    let by_url = |url: &str| {
        streamed
            .stream_results
            .iter()
            .find(|s| s.url == url)
            .unwrap()
            .status
    };
    // Results carry the URLs with their stream keys redacted, as the worker reports them;
    // removal still works with the caller's real URL.
    assert_eq!(
        by_url("rtmp://b.example.com/live/{k...2}"),
        stream_info::Status::Active as i32
    );
    assert_eq!(
        by_url("rtmp://live.example.com/app/{k...y}"),
        stream_info::Status::Finished as i32
    );

    let all = list(&sim, lk::ListEgressRequest::default()).await;
    assert_eq!(all.items.len(), 6);
    assert!(all.next_page_token.is_none());

    // Active first (150 ms here): stopped while starting, LiveKit aborts it instead.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped: EgressInfo = call(
        &sim,
        "StopEgress",
        &lk::StopEgressRequest {
            egress_id: rc.egress_id.clone(),
        },
    )
    .await
    .decode();
    assert_eq!(status(&stopped), EgressStatus::EgressEnding);

    // The log saw every call with its claims.
    let requests = sim.requests();
    assert_eq!(requests.len(), 10);
    assert!(
        requests
            .iter()
            .all(|r| r.grants().unwrap().video.room_record)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn lifecycle_starting_active_ending_complete() {
    // Generous stage times so a slow machine cannot skip a stage between two requests.
    let sim = spawn(
        builder()
            .activate_after(Duration::from_millis(400))
            .complete_after(Duration::from_millis(400)),
    );
    let info = start_room(&sim, "r").await;
    assert_eq!(status(&info), EgressStatus::EgressStarting);
    let id = info.egress_id.clone();
    let get = |sim: &egress_sim::SimHandle| sim.egress(&id).unwrap();
    assert_eq!(status(&get(&sim)), EgressStatus::EgressStarting);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = list(
        &sim,
        lk::ListEgressRequest {
            egress_id: id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status(&listed.items[0]), EgressStatus::EgressActive);
    assert!(listed.items[0].updated_at > info.updated_at);

    let stop = lk::StopEgressRequest {
        egress_id: id.clone(),
    };
    let ending: EgressInfo = call(&sim, "StopEgress", &stop).await.decode();
    assert_eq!(status(&ending), EgressStatus::EgressEnding);
    // Stopping again while ending: the worker answers with the egress as it is, like
    // LiveKit's (its SendEOS runs once).
    let again: EgressInfo = call(&sim, "StopEgress", &stop).await.decode();
    assert_eq!(status(&again), EgressStatus::EgressEnding);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = get(&sim);
    assert_eq!(status(&done), EgressStatus::EgressComplete);
    assert!(done.ended_at >= ending.updated_at);
    assert_eq!(
        done.stream_results[0].status,
        stream_info::Status::Finished as i32
    );

    let json = call(&sim, "StopEgress", &stop)
        .await
        .twirp("failed_precondition", 412);
    assert_eq!(
        json["msg"],
        "egress with status EGRESS_COMPLETE cannot be stopped"
    );
    let json = call(
        &sim,
        "UpdateLayout",
        &lk::UpdateLayoutRequest {
            egress_id: id.clone(),
            layout: "grid".into(),
        },
    )
    .await
    .twirp("failed_precondition", 412);
    assert_eq!(
        json["msg"],
        "egress with status EGRESS_COMPLETE cannot be updated"
    );
    let json = call(
        &sim,
        "UpdateStream",
        &lk::UpdateStreamRequest {
            egress_id: id.clone(),
            add_output_urls: vec!["rtmp://x".into()],
            ..Default::default()
        },
    )
    .await
    .twirp("failed_precondition", 412);
    assert_eq!(
        json["msg"],
        "egress with status EGRESS_COMPLETE cannot be updated"
    );

    // A failed egress (forced through the library) is finished too.
    let other = start_room(&sim, "r").await;
    let failed = sim
        .fail_egress(&other.egress_id, "pipeline crashed")
        .unwrap();
    assert_eq!(status(&failed), EgressStatus::EgressFailed);
    let json = call(
        &sim,
        "StopEgress",
        &lk::StopEgressRequest {
            egress_id: other.egress_id.clone(),
        },
    )
    .await
    .twirp("failed_precondition", 412);
    assert_eq!(
        json["msg"],
        "egress with status EGRESS_FAILED cannot be stopped"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn not_found_for_unknown_or_empty_ids() {
    let sim = spawn(builder());
    for (method, body) in [
        (
            "StopEgress",
            lk::StopEgressRequest {
                egress_id: "EG_doesnotexist".into(),
            }
            .encode_to_vec(),
        ),
        (
            "UpdateLayout",
            lk::UpdateLayoutRequest {
                egress_id: "EG_doesnotexist".into(),
                layout: "grid".into(),
            }
            .encode_to_vec(),
        ),
        (
            "UpdateStream",
            lk::UpdateStreamRequest {
                egress_id: "EG_doesnotexist".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        ("StopEgress", Vec::new()),
    ] {
        let answer = call_raw(&sim, method, "application/protobuf", body, Some(&token())).await;
        let json = answer.twirp("not_found", 404);
        // The open-source server's rewrite of the IO service's psrpc error.
        assert_eq!(
            json["msg"], "twirp error unknown: egress does not exist",
            "{method}"
        );
        assert!(json.get("meta").is_none());
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_argument_names_the_field() {
    let sim = spawn(builder());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "StartRoomCompositeEgress",
            lk::RoomCompositeEgressRequest {
                room_name: String::new(),
                ..room_composite("x")
            }
            .encode_to_vec(),
            "token or api key/secret",
        ),
        (
            "StartRoomCompositeEgress",
            lk::RoomCompositeEgressRequest {
                room_name: "r".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            "output",
        ),
        (
            "StartWebEgress",
            lk::WebEgressRequest {
                stream_outputs: vec![stream("rtmp://x")],
                ..Default::default()
            }
            .encode_to_vec(),
            "web url",
        ),
        (
            "StartParticipantEgress",
            lk::ParticipantEgressRequest {
                room_name: "r".into(),
                file_outputs: vec![lk::EncodedFileOutput::default()],
                ..Default::default()
            }
            .encode_to_vec(),
            "identity",
        ),
        (
            "StartTrackEgress",
            lk::TrackEgressRequest {
                room_name: "r".into(),
                track_id: "TR_1".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            "output",
        ),
        (
            "StartEgress",
            lk::StartEgressRequest {
                room_name: "r".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            "source",
        ),
    ];
    for (method, body, field) in cases {
        let answer = call_raw(&sim, method, "application/protobuf", body, Some(&token())).await;
        let json = answer.twirp("invalid_argument", 400);
        // The egress worker's text, rewritten by the open-source server.
        assert_eq!(
            json["msg"],
            format!("twirp error unknown: request has missing or invalid field: {field}"),
            "{method}"
        );
    }
    assert!(sim.egresses().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_rejections_are_plain_text_401_and_grants_are_checked() {
    let sim = spawn(builder());
    let body = lk::ListEgressRequest::default().encode_to_vec();
    let post = |auth: Option<String>| {
        let mut request = client()
            .post(rpc_url(&sim, "ListEgress"))
            .header("content-type", "application/protobuf")
            .body(body.clone());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        send(request)
    };

    let garbage = post(Some("Bearer not-a-jwt".into())).await;
    assert_eq!(garbage.status, 401);
    assert!(
        garbage.content_type.starts_with("text/plain"),
        "{garbage:?}"
    );
    assert_eq!(garbage.text(), "invalid authorization token");

    let scheme = post(Some(format!("Token {}", token()))).await;
    assert_eq!(scheme.status, 401);
    assert_eq!(
        scheme.text(),
        "invalid authorization header. Must start with Bearer "
    );

    let wrong_secret = egress_auth::mint(
        &egress_auth::Credentials::new(KEY, "another-secret"),
        &VideoGrants::room_record(),
        Duration::from_secs(60),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let answer = post(Some(format!("Bearer {wrong_secret}"))).await;
    assert_eq!(answer.status, 401);
    assert!(answer.content_type.starts_with("text/plain"));
    assert!(
        answer.text().starts_with("invalid token: "),
        "{}",
        answer.text()
    );

    let unknown_key = egress_auth::mint(
        &egress_auth::Credentials::new("APIother", SECRET),
        &VideoGrants::room_record(),
        Duration::from_secs(60),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let answer = post(Some(format!("Bearer {unknown_key}"))).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (401, "invalid API key: APIother")
    );

    let expired = egress_auth::mint(
        &credentials(),
        &VideoGrants::room_record(),
        Duration::from_secs(1),
        std::time::SystemTime::now() - Duration::from_secs(3600),
    )
    .unwrap();
    let answer = post(Some(format!("Bearer {expired}"))).await;
    assert_eq!(answer.status, 401);
    assert!(answer.text().contains("expired"), "{}", answer.text());

    // A valid token without roomRecord, and no token at all (LiveKit's middleware lets
    // it through without grants): Twirp `unauthenticated` `permissions denied`.
    let no_grant = token_with(VideoGrants {
        room_admin: true,
        ..Default::default()
    });
    for auth in [Some(format!("Bearer {no_grant}")), None] {
        let answer = post(auth).await;
        let json = answer.twirp("unauthenticated", 401);
        assert_eq!(json["msg"], "permissions denied");
    }

    // The log replaced the token by its claims.
    let last: RecordedRequest = sim.requests().into_iter().nth(5).unwrap();
    let claims = last.claims.clone().unwrap();
    assert_eq!(claims["iss"], KEY);
    assert_eq!(claims["video"]["roomAdmin"], true);
    assert!(last.header("authorization").unwrap().starts_with('{'));
    assert!(!last.header("authorization").unwrap().contains(&no_grant));
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_routes() {
    let sim = spawn(builder());
    let token = token();
    let base = sim.url();

    // Wrong HTTP method.
    let answer = send(
        client()
            .get(rpc_url(&sim, "ListEgress"))
            .bearer_auth(&token),
    )
    .await;
    let json = answer.twirp("bad_route", 404);
    assert_eq!(
        json["msg"],
        r#"unsupported method "GET" (only POST is allowed)"#
    );
    assert_eq!(
        json["meta"]["twirp_invalid_route"],
        "GET /twirp/livekit.Egress/ListEgress"
    );

    let post = |path: &str, content_type: Option<&str>| {
        let mut request = client()
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .body(Vec::new());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        send(request)
    };

    let json = post(
        "/twirp/livekit.Egress/DeleteEverything",
        Some("application/protobuf"),
    )
    .await
    .twirp("bad_route", 404);
    assert_eq!(
        json["msg"],
        r#"no handler for path "/twirp/livekit.Egress/DeleteEverything""#
    );
    // A path outside the Egress service's prefix never reaches Twirp: LiveKit's mux
    // answers Go's plain 404 (the simulator serves no other Twirp service).
    for path in [
        "/twirp/livekit.RoomService/ListRooms",
        "/api/livekit.Egress/ListEgress",
        "/livekit.Egress/ListEgress",
    ] {
        let answer = post(path, Some("application/protobuf")).await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (404, "404 page not found\n"),
            "{path}"
        );
        assert_eq!(answer.content_type, "text/plain; charset=utf-8");
    }
    // Inside it, Twirp's own routing.
    let json = post(
        "/twirp/livekit.Egress/livekit.Egress/ListEgress",
        Some("application/protobuf"),
    )
    .await
    .twirp("bad_route", 404);
    assert_eq!(
        json["msg"],
        r#"invalid path prefix "/twirp/livekit.Egress", expected "/twirp", on path "/twirp/livekit.Egress/livekit.Egress/ListEgress""#
    );
    // `/` is LiveKit's health check, whatever the method.
    let health = post("/", None).await;
    assert_eq!((health.status, health.text().as_str()), (200, "OK"));

    for content_type in [Some("text/plain"), Some("application/grpc"), None] {
        let json = post("/twirp/livekit.Egress/ListEgress", content_type)
            .await
            .twirp("bad_route", 404);
        assert!(
            json["msg"]
                .as_str()
                .unwrap()
                .starts_with("unexpected Content-Type"),
            "{json}"
        );
    }
    // Parameters after `;` are ignored and the media type is case-insensitive.
    let ok = post(
        "/twirp/livekit.Egress/ListEgress",
        Some("Application/Protobuf; charset=binary"),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.content_type, "application/protobuf");
    sim.shutdown().await;
}

#[tokio::test]
async fn path_prefix_is_configurable() {
    let sim = spawn(builder().prefix("/lk/"));
    assert!(sim.base_url().ends_with("/lk"));
    let ok = call(&sim, "ListEgress", &lk::ListEgressRequest::default()).await;
    assert_eq!(ok.status, 200);
    let answer = call_raw(
        &sim,
        "ListEgress",
        "application/protobuf",
        Vec::new(),
        Some(&token()),
    )
    .await;
    assert_eq!(answer.status, 200);
    // Without the prefix nothing serves the path: a plain 404, as from LiveKit's mux.
    let answer = send(
        client()
            .post(format!("{}/twirp/livekit.Egress/ListEgress", sim.url()))
            .header("content-type", "application/protobuf")
            .bearer_auth(token())
            .body(Vec::new()),
    )
    .await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (404, "404 page not found\n")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_plain_text() {
    let sim = spawn(builder());
    let big = vec![b'x'; 10 * 1024 * 1024 + 1];
    let answer = call_raw(
        &sim,
        "ListEgress",
        "application/protobuf",
        big,
        Some(&token()),
    )
    .await;
    assert_eq!(answer.status, 413);
    assert!(answer.content_type.starts_with("text/plain"));
    // Exactly at the limit is fine as far as size goes (it is not valid protobuf, though).
    let at_limit = vec![0u8; 10 * 1024 * 1024];
    let answer = call_raw(
        &sim,
        "ListEgress",
        "application/protobuf",
        at_limit,
        Some(&token()),
    )
    .await;
    answer.twirp("malformed", 400);

    let small = spawn(builder().max_body(16));
    let answer = call_raw(
        &small,
        "ListEgress",
        "application/json",
        br#"{"room_name":"a-room-name-that-is-long"}"#.to_vec(),
        Some(&token()),
    )
    .await;
    assert_eq!(answer.status, 413);
    sim.shutdown().await;
    small.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies() {
    let sim = spawn(builder());
    let answer = call_raw(
        &sim,
        "StopEgress",
        "application/protobuf",
        vec![0xff, 0xff, 0xff],
        Some(&token()),
    )
    .await;
    let json = answer.twirp("malformed", 400);
    assert_eq!(json["msg"], "the protobuf request could not be decoded");
    let json = call_json(&sim, "StopEgress", "{not json")
        .await
        .twirp("malformed", 400);
    assert_eq!(json["msg"], "the json request could not be decoded");
    // Malformed wins over missing grants: Twirp decodes before the service checks them.
    call_raw(&sim, "StopEgress", "application/json", b"[".to_vec(), None)
        .await
        .twirp("malformed", 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn json_bodies_accept_both_name_styles_and_answer_snake_case() {
    let sim = spawn(builder());
    // camelCase, as Node's livekit-server-sdk sends, with an unknown field.
    let camel = r#"{
        "roomName": "standup",
        "layout": "grid",
        "audioOnly": false,
        "streamOutputs": [{"protocol": "RTMP", "urls": ["rtmp://a.example.com/live/key"]}],
        "fileOutputs": [{"fileType": "MP4", "filepath": "out.mp4"}],
        "someFutureField": {"nested": [1, 2, 3]}
    }"#;
    let answer = call_json(&sim, "StartRoomCompositeEgress", camel).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.content_type, "application/json");
    let json = answer.json();
    let id = json["egress_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("EG_"));
    assert_eq!(json["room_name"], "standup");
    assert_eq!(json["status"], "EGRESS_STARTING");
    assert!(json["started_at"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    assert_eq!(
        json["room_composite"]["stream_outputs"][0]["protocol"],
        "RTMP"
    );
    assert_eq!(
        json["stream_results"][0]["url"],
        "rtmp://a.example.com/live/{k...y}"
    );
    assert!(json.get("egressId").is_none() && json.get("roomName").is_none());

    // snake_case with an unknown field.
    let snake = format!(
        r#"{{"egress_id": "{id}", "add_output_urls": ["rtmp://b"], "unknown_thing": true}}"#
    );
    let json = call_json(&sim, "UpdateStream", &snake).await.json();
    assert_eq!(json["stream_results"][1]["url"], "rtmp://b");

    let json = call_json(
        &sim,
        "ListEgress",
        r#"{"roomName":"standup","active":true}"#,
    )
    .await
    .json();
    assert_eq!(json["items"].as_array().unwrap().len(), 1);

    // Errors for JSON requests are Twirp JSON too.
    let answer = call_json(&sim, "StopEgress", r#"{"egressId":"EG_nope"}"#).await;
    answer.twirp("not_found", 404);

    // The recorded JSON body decodes to the typed request.
    let recorded = sim.requests();
    let first: lk::RoomCompositeEgressRequest = recorded[0].decode().unwrap();
    assert_eq!(first.room_name, "standup");
    assert_eq!(
        first.file_outputs[0].file_type,
        lk::EncodedFileType::Mp4 as i32
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn list_filters() {
    let sim = spawn(builder().complete_after(Duration::from_millis(400)));
    let a = start_room(&sim, "room-a").await;
    let b = start_room(&sim, "room-a").await;
    let c = start_room(&sim, "room-b").await;
    // Active first: a stop while starting would abort it instead of ending it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    call(
        &sim,
        "StopEgress",
        &lk::StopEgressRequest {
            egress_id: b.egress_id.clone(),
        },
    )
    .await
    .decode::<EgressInfo>();

    let ids = |response: ListEgressResponse| {
        response
            .items
            .into_iter()
            .map(|i| i.egress_id)
            .collect::<Vec<_>>()
    };
    let by_room = list(
        &sim,
        lk::ListEgressRequest {
            room_name: "room-a".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(by_room), vec![a.egress_id.clone(), b.egress_id.clone()]);
    let by_id = list(
        &sim,
        lk::ListEgressRequest {
            egress_id: c.egress_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(by_id), vec![c.egress_id.clone()]);
    // ENDING still counts as active.
    let active = list(
        &sim,
        lk::ListEgressRequest {
            active: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(active.items.len(), 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let active = list(
        &sim,
        lk::ListEgressRequest {
            active: true,
            room_name: "room-a".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(active), vec![a.egress_id.clone()]);
    let none = list(
        &sim,
        lk::ListEgressRequest {
            room_name: "nowhere".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.items.is_empty());

    // Open-source mode ignores page tokens.
    let ignored = list(
        &sim,
        lk::ListEgressRequest {
            page_token: Some(lk::TokenPagination {
                token: "garbage".into(),
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ignored.items.len(), 3);
    assert!(ignored.next_page_token.is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn cloud_like_pagination() {
    let sim = spawn(builder().flavor(egress_sim::Flavor::Cloud).paginate(2));
    let mut started = Vec::new();
    for _ in 0..5 {
        started.push(start_room(&sim, "paged").await.egress_id);
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = list(
            &sim,
            lk::ListEgressRequest {
                page_token: token.take(),
                ..Default::default()
            },
        )
        .await;
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|i| i.egress_id));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, started);

    let json = call(
        &sim,
        "ListEgress",
        &lk::ListEgressRequest {
            page_token: Some(lk::TokenPagination {
                token: "not-ours".into(),
            }),
            ..Default::default()
        },
    )
    .await
    .twirp("invalid_argument", 400);
    assert_eq!(
        json["msg"],
        "request has missing or invalid field: page_token"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn twirp_timeout_header_is_honoured() {
    let sim = spawn(builder());
    sim.faults().push(
        Fault::latency(Duration::from_secs(5))
            .method("ListEgress")
            .times(1),
    );
    let started = Instant::now();
    let answer = send(
        client()
            .post(rpc_url(&sim, "ListEgress"))
            .header("content-type", "application/protobuf")
            .header("x-twirp-timeout-ms", "150")
            .bearer_auth(token())
            .body(Vec::new()),
    )
    .await;
    let elapsed = started.elapsed();
    let json = answer.twirp("deadline_exceeded", 408);
    // psrpc's timeout, rewritten by the open-source server.
    assert_eq!(json["msg"], "twirp error unknown: request timed out");
    assert!(elapsed >= Duration::from_millis(140), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // Within the deadline the answer is normal.
    sim.faults()
        .push(Fault::latency(Duration::from_millis(50)).times(1));
    let answer = send(
        client()
            .post(rpc_url(&sim, "ListEgress"))
            .header("content-type", "application/protobuf")
            .header("x-twirp-timeout-ms", "2000")
            .bearer_auth(token())
            .body(Vec::new()),
    )
    .await;
    assert_eq!(answer.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_latency_and_twirp_errors() {
    let sim = spawn(builder());
    sim.faults().push(
        Fault::latency(Duration::from_millis(200))
            .method("ListEgress")
            .times(1),
    );
    let started = Instant::now();
    let answer = call(&sim, "ListEgress", &lk::ListEgressRequest::default()).await;
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(190));

    let details = rpc_status(14, "egress workers busy", vec![]);
    sim.faults().push(
        Fault::twirp_error("unavailable", "no response from servers")
            .meta("retry", "yes")
            .error_details(&details)
            .method("StartRoomCompositeEgress")
            .times(2),
    );
    // Other methods are unaffected.
    assert_eq!(
        call(&sim, "ListEgress", &lk::ListEgressRequest::default())
            .await
            .status,
        200
    );
    for _ in 0..2 {
        let answer = call(&sim, "StartRoomCompositeEgress", &room_composite("r")).await;
        let json = answer.twirp("unavailable", 503);
        assert_eq!(json["msg"], "no response from servers");
        assert_eq!(json["meta"]["retry"], "yes");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(json["meta"]["error_details"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, details);
    }
    // Used up: the third call starts an egress.
    assert_eq!(
        call(&sim, "StartRoomCompositeEgress", &room_composite("r"))
            .await
            .status,
        200
    );
    assert!(sim.faults().is_empty());
    assert_eq!(sim.egresses().len(), 1);

    // An invalid code with an explicit status, as a broken server might send.
    sim.faults()
        .push(Fault::twirp_error("weird", "?").status(502).times(1));
    let answer = call(&sim, "ListEgress", &lk::ListEgressRequest::default()).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["code"], "weird");
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_raw_http_and_html_200() {
    let sim = spawn(builder());
    sim.faults().push(
        Fault::http(
            502,
            "text/html",
            "<html><body>502 Bad Gateway</body></html>",
        )
        .header("x-proxy", "nginx")
        .times(1),
    );
    let answer = call(&sim, "ListEgress", &lk::ListEgressRequest::default()).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.content_type, "text/html");
    assert!(answer.text().contains("502 Bad Gateway"));

    sim.faults().push(Fault::html_200().times(1));
    let answer = call(&sim, "StopEgress", &lk::StopEgressRequest::default()).await;
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("text/html"));
    assert!(answer.text().contains("<html>"));
    let kinds: Vec<_> = sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        kinds,
        vec![Some("http".to_owned()), Some("html_200".to_owned())]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_drop_connection() {
    let sim = spawn(builder());
    sim.faults().push(Fault::drop_connection().times(1));
    let error = client()
        .post(rpc_url(&sim, "StartRoomCompositeEgress"))
        .header("content-type", "application/protobuf")
        .bearer_auth(token())
        .body(room_composite("r").encode_to_vec())
        .send()
        .await
        .expect_err("the connection is dropped");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(sim.egresses().is_empty(), "dropped before processing");

    // After processing: the egress exists although the client got no answer.
    sim.faults().push(Fault::drop_after_processing().times(1));
    client()
        .post(rpc_url(&sim, "StartRoomCompositeEgress"))
        .header("content-type", "application/protobuf")
        .bearer_auth(token())
        .body(room_composite("r").encode_to_vec())
        .send()
        .await
        .expect_err("the connection is dropped");
    assert_eq!(sim.egresses().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_truncated_body() {
    let sim = spawn(builder());
    sim.faults().push(Fault::truncated().times(1));
    let response = client()
        .post(rpc_url(&sim, "StartRoomCompositeEgress"))
        .header("content-type", "application/protobuf")
        .bearer_auth(token())
        .body(room_composite("r").encode_to_vec())
        .send()
        .await
        .expect("the head arrives");
    assert_eq!(response.status(), 200);
    let declared: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(declared > 10);
    assert!(response.bytes().await.is_err(), "the body is cut short");
    // The egress was started: only the answer was lost.
    assert_eq!(sim.egresses().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn control_endpoints_over_http() {
    let sim = spawn(builder());
    let base = sim.url();
    let c = client();

    let health = send(c.get(format!("{base}/sim/health"))).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));

    let faults = r#"[
        {"kind": "twirp_error", "code": "internal", "msg": "boom", "method": "ListEgress", "times": 1},
        {"kind": "http", "status": 503, "content_type": "text/plain", "body": "upstream down", "times": 1, "delay_ms": 10}
    ]"#;
    let answer = send(
        c.post(format!("{base}/sim/faults"))
            .header("content-type", "application/json")
            .body(faults),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["faults"], 2);
    let listed = send(c.get(format!("{base}/sim/faults"))).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let first = call(&sim, "ListEgress", &lk::ListEgressRequest::default()).await;
    first.twirp("internal", 500);
    let second = call(&sim, "ListEgress", &lk::ListEgressRequest::default()).await;
    assert_eq!(
        (second.status, second.text().as_str()),
        (503, "upstream down")
    );

    let bad = send(
        c.post(format!("{base}/sim/faults"))
            .body(r#"{"kind":"explode"}"#),
    )
    .await;
    assert_eq!(bad.status, 400);

    send(
        c.post(format!("{base}/sim/faults"))
            .body(r#"{"kind":"drop"}"#),
    )
    .await;
    assert_eq!(sim.faults().len(), 1);
    let cleared = send(c.delete(format!("{base}/sim/faults"))).await;
    assert_eq!(cleared.status, 200);
    assert!(sim.faults().is_empty());

    // Start one egress in JSON, then read the log over HTTP.
    let started = call_json(
        &sim,
        "StartWebEgress",
        r#"{"url":"https://example.com","streamOutputs":[{"urls":["rtmp://x.example.com/app/k"]}]}"#,
    )
    .await
    .json();
    let log = send(c.get(format!("{base}/sim/requests"))).await.json();
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let last = &entries[2];
    assert_eq!(last["method"], "POST");
    assert_eq!(last["path"], "/twirp/livekit.Egress/StartWebEgress");
    assert_eq!(last["rpc"], "StartWebEgress");
    assert_eq!(last["content_type"], "application/json");
    assert_eq!(last["claims"]["iss"], KEY);
    let auth: serde_json::Value =
        serde_json::from_str(last["headers"]["authorization"].as_str().unwrap()).unwrap();
    assert_eq!(auth["video"]["roomRecord"], true);
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .decode(last["body"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(body).unwrap().contains("streamOutputs"));
    assert_eq!(entries[0]["fault"], "twirp_error");
    // The JSON form parses back into the typed form.
    let typed: Vec<RecordedRequest> = serde_json::from_value(log.clone()).unwrap();
    assert_eq!(typed, sim.requests());

    let egresses = send(c.get(format!("{base}/sim/egresses"))).await.json();
    assert_eq!(egresses["items"][0]["egress_id"], started["egress_id"]);

    let id = started["egress_id"].as_str().unwrap();
    let failed = send(
        c.post(format!("{base}/sim/egresses/{id}/fail"))
            .body(r#"{"error":"disk full"}"#),
    )
    .await
    .json();
    assert_eq!(failed["status"], "EGRESS_FAILED");
    assert_eq!(failed["error"], "disk full");
    let missing = send(c.post(format!("{base}/sim/egresses/EG_nope/fail"))).await;
    assert_eq!(missing.status, 404);

    let cleared = send(c.delete(format!("{base}/sim/requests"))).await;
    assert_eq!(cleared.status, 200);
    assert!(sim.requests().is_empty());

    sim.faults().push(Fault::drop_connection());
    let reset = send(c.post(format!("{base}/sim/reset"))).await;
    assert_eq!(reset.status, 200);
    assert!(sim.egresses().is_empty() && sim.faults().is_empty() && sim.requests().is_empty());

    let unknown = send(c.get(format!("{base}/sim/nothing"))).await;
    assert_eq!(unknown.status, 404);
    let wrong_method = send(c.put(format!("{base}/sim/faults"))).await;
    assert_eq!(wrong_method.status, 405);
    sim.shutdown().await;
}

#[tokio::test]
async fn several_api_keys() {
    let sim = spawn(builder().add_credentials(egress_auth::Credentials::new("APIsecond", "s2")));
    let second = egress_auth::mint(
        &egress_auth::Credentials::new("APIsecond", "s2"),
        &VideoGrants::room_record(),
        Duration::from_secs(60),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let answer = call_raw(
        &sim,
        "ListEgress",
        "application/protobuf",
        Vec::new(),
        Some(&second),
    )
    .await;
    assert_eq!(answer.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn room_and_worker_control_endpoints() {
    let sim = spawn(builder().rooms(egress_sim::Rooms::Strict));
    let base = sim.url();
    let c = client();

    let created = send(
        c.post(format!("{base}/sim/rooms"))
            .body(r#"{"name": "my room"}"#),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let sid = created.json()["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("RM_"));
    let listed = send(c.get(format!("{base}/sim/rooms"))).await.json();
    assert_eq!(listed["rooms"][0]["name"], "my room");
    for bad in [r#"{"name": ""}"#, "{}", "not json"] {
        let answer = send(c.post(format!("{base}/sim/rooms")).body(bad)).await;
        assert_eq!(answer.status, 400, "{bad}");
    }

    let info = start_room(&sim, "my room").await;
    assert_eq!(info.room_id, sid);
    let ended = send(c.delete(format!("{base}/sim/rooms/my%20room"))).await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    assert_eq!(ended.json()["ended"][0], info.egress_id.as_str());
    assert_eq!(
        send(c.delete(format!("{base}/sim/rooms/my%20room")))
            .await
            .status,
        404
    );
    assert_eq!(send(c.put(format!("{base}/sim/rooms/x"))).await.status, 405);

    let workers = send(c.get(format!("{base}/sim/workers"))).await.json();
    assert_eq!(workers, serde_json::json!({"available": true}));
    let off = send(
        c.put(format!("{base}/sim/workers"))
            .body(r#"{"available": false}"#),
    )
    .await;
    assert_eq!(off.json(), serde_json::json!({"available": false}));
    assert!(!sim.egress_workers());
    assert_eq!(
        send(c.put(format!("{base}/sim/workers")).body("{}"))
            .await
            .status,
        400
    );
    assert_eq!(
        send(c.post(format!("{base}/sim/workers"))).await.status,
        405
    );

    let gone = send(c.delete(format!("{base}/sim/egresses/{}/worker", info.egress_id))).await;
    assert_eq!(gone.status, 200, "{}", gone.text());
    assert_eq!(gone.json()["egress_id"], info.egress_id.as_str());
    assert_eq!(
        send(c.delete(format!("{base}/sim/egresses/EG_nope/worker")))
            .await
            .status,
        404
    );

    // A reset forgets the rooms and reconnects the workers.
    sim.reset();
    assert!(sim.egress_workers());
    let listed = send(c.get(format!("{base}/sim/rooms"))).await.json();
    assert_eq!(listed["rooms"], serde_json::json!([]));
    sim.shutdown().await;
}

#[tokio::test]
async fn waits_for_workers_do_not_hold_up_other_requests_and_faults_still_apply() {
    let sim = spawn(
        builder()
            .egress_workers(false)
            .no_worker_delay(Duration::from_millis(1500)),
    );
    let waiting = {
        let request = room_composite("r");
        let url = sim.url();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = send(
                client()
                    .post(format!(
                        "{url}/twirp/livekit.Egress/StartRoomCompositeEgress"
                    ))
                    .header("content-type", "application/protobuf")
                    .bearer_auth(token())
                    .body(request.encode_to_vec()),
            )
            .await;
            (answer, started.elapsed())
        })
    };
    // While the Start waits for a worker, other calls are answered at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let listed = list(&sim, lk::ListEgressRequest::default()).await;
    assert!(listed.items.is_empty());
    assert!(started.elapsed() < Duration::from_millis(1000));

    let (answer, elapsed) = waiting.await.unwrap();
    let json = answer.twirp("unavailable", 503);
    assert_eq!(json["msg"], "twirp error unknown: no response from servers");
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");

    // A latency fault comes before the wait, and both count against the deadline.
    sim.faults().push(
        Fault::latency(Duration::from_millis(200))
            .method("StartRoomCompositeEgress")
            .times(1),
    );
    let started = Instant::now();
    let answer = send(
        client()
            .post(rpc_url(&sim, "StartRoomCompositeEgress"))
            .header("content-type", "application/protobuf")
            .header("x-twirp-timeout-ms", "500")
            .bearer_auth(token())
            .body(room_composite("r").encode_to_vec()),
    )
    .await;
    let elapsed = started.elapsed();
    let json = answer.twirp("canceled", 408);
    assert_eq!(json["msg"], "twirp error unknown: request canceled");
    assert!(
        (Duration::from_millis(450)..Duration::from_millis(1400)).contains(&elapsed),
        "{elapsed:?}"
    );
    sim.shutdown().await;
}
