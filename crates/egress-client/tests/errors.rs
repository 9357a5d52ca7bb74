//! Every error class the client reports, produced for real on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use egress_client::{
    ClientError, EgressClient, EgressOutput, Encoding, ListOptions, ParticipantEgressOptions,
    RoomCompositeOptions, TrackCompositeOptions, TrackEgressOutput, ValidationError, WebOptions,
    proto,
};
use egress_sim::Fault;
use egress_twirp::{Error, TwirpCode};

fn twirp_error(err: &ClientError) -> &egress_twirp::TwirpError {
    match err {
        ClientError::Twirp(Error::Twirp(e)) => e,
        other => panic!("not a Twirp error: {other:?}"),
    }
}

#[tokio::test]
async fn validation_errors_are_reported_before_sending() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());
    let validation = |result: Result<proto::EgressInfo, ClientError>| match result {
        Err(ClientError::Validation(e)) => e,
        other => panic!("expected a validation error, got {other:?}"),
    };

    let err = validation(
        client
            .start_room_composite_egress("room", vec![], RoomCompositeOptions::default())
            .await,
    );
    assert_eq!(err, ValidationError::NoOutputs);

    let err = validation(
        client
            .start_room_composite_egress(
                "room",
                vec![rtmp("rtmp://x/app/key")],
                RoomCompositeOptions {
                    audio_only: true,
                    video_only: true,
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(
        err.to_string(),
        "audio_only and video_only are mutually exclusive"
    );

    let err = validation(
        client
            .start_room_composite_egress("", vec![rtmp("rtmp://x/app/key")], Default::default())
            .await,
    );
    assert_eq!(err, ValidationError::Missing { field: "room_name" });

    let err = validation(
        client
            .start_web_egress("", vec![rtmp("rtmp://x/app/key")], WebOptions::default())
            .await,
    );
    assert_eq!(err, ValidationError::Missing { field: "url" });

    let err = validation(
        client
            .start_participant_egress(
                "room",
                "",
                vec![mp4("a.mp4")],
                ParticipantEgressOptions::default(),
            )
            .await,
    );
    assert_eq!(err, ValidationError::Missing { field: "identity" });

    let err = validation(
        client
            .start_track_composite_egress(
                "room",
                vec![mp4("a.mp4")],
                TrackCompositeOptions::default(),
            )
            .await,
    );
    assert_eq!(err.field(), "audio_track_id");

    let err = validation(
        client
            .start_track_egress("room", TrackEgressOutput::WebSocket(String::new()), "TR_1")
            .await,
    );
    assert_eq!(
        err,
        ValidationError::Missing {
            field: "websocket_url"
        }
    );

    let err = validation(
        client
            .start_track_egress("room", TrackEgressOutput::WebSocket("wss://x".into()), "")
            .await,
    );
    assert_eq!(err, ValidationError::Missing { field: "track_id" });

    let err = validation(
        client
            .start_egress(proto::StartEgressRequest {
                room_name: "room".into(),
                ..Default::default()
            })
            .await,
    );
    assert!(!err.to_string().is_empty());

    // Refused whatever the encoding choice.
    let err = validation(
        client
            .start_web_egress(
                "https://example.com",
                vec![],
                WebOptions {
                    encoding: Encoding::ServerDefault,
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(err, ValidationError::NoOutputs);

    for result in [
        client.update_layout("", "grid").await,
        client.update_stream("", vec![], vec![]).await,
        client.stop_egress("").await,
    ] {
        assert_eq!(
            validation(result),
            ValidationError::Missing { field: "egress_id" }
        );
    }

    let display = ClientError::from(ValidationError::NoOutputs).to_string();
    assert_eq!(display, "invalid request: request has no outputs");

    // Nothing reached the server.
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
}

#[tokio::test]
async fn not_found() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    for result in [
        client.stop_egress("EG_doesnotexist").await,
        client.update_layout("EG_doesnotexist", "grid").await,
        client
            .update_stream("EG_doesnotexist", vec!["rtmp://x/app/key".into()], vec![])
            .await,
    ] {
        let err = result.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert_eq!(err.twirp_code(), Some(TwirpCode::NotFound));
        let twirp = twirp_error(&err);
        // The open-source server's text (the simulator's default flavor).
        assert_eq!(twirp.msg, "twirp error unknown: egress does not exist");
        assert_eq!(twirp.http_status, 404);
        assert_eq!(
            err.to_string(),
            "not_found: twirp error unknown: egress does not exist"
        );
    }
    assert_eq!(sim.requests().len(), 3);
}

#[tokio::test]
async fn failed_precondition_when_stopping_twice() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());

    let info = client
        .start_room_composite_egress("room", vec![rtmp("rtmp://x/app/key")], Default::default())
        .await
        .unwrap();
    // Active first (100 ms here): stopped while starting, LiveKit aborts it instead.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.stop_egress(&info.egress_id).await.unwrap();
    // The simulator completes a stopped egress after 100 ms here.
    tokio::time::sleep(Duration::from_millis(250)).await;

    let err = client.stop_egress(&info.egress_id).await.unwrap_err();
    assert_eq!(err.twirp_code(), Some(TwirpCode::FailedPrecondition));
    assert_eq!(
        twirp_error(&err).msg,
        "egress with status EGRESS_COMPLETE cannot be stopped"
    );
    assert_eq!(twirp_error(&err).http_status, 412);

    let err = client
        .update_layout(&info.egress_id, "speaker")
        .await
        .unwrap_err();
    assert_eq!(err.twirp_code(), Some(TwirpCode::FailedPrecondition));
}

#[tokio::test]
async fn injected_twirp_errors_keep_code_msg_and_meta() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());
    sim.faults().push(
        Fault::twirp_error("unavailable", "no response from servers")
            .meta("region", "eu")
            .method("StartRoomCompositeEgress")
            .times(1),
    );
    sim.faults().push(
        Fault::twirp_error("failed_precondition", "egress is not running")
            .method("StopEgress")
            .times(1),
    );

    let err = client
        .start_room_composite_egress("room", vec![rtmp("rtmp://x/app/key")], Default::default())
        .await
        .unwrap_err();
    let twirp = twirp_error(&err);
    assert_eq!(twirp.code, TwirpCode::Unavailable);
    assert_eq!(twirp.msg, "no response from servers");
    assert_eq!(twirp.meta["region"], "eu");

    let err = client.stop_egress("EG_whatever").await.unwrap_err();
    assert_eq!(err.twirp_code(), Some(TwirpCode::FailedPrecondition));

    // The faults were used up: the next calls succeed.
    let info = client
        .start_room_composite_egress("room", vec![rtmp("rtmp://x/app/key")], Default::default())
        .await
        .unwrap();
    client.stop_egress(&info.egress_id).await.unwrap();
}

#[tokio::test]
async fn wrong_secret_is_an_unauthenticated_intermediary_answer() {
    let sim = spawn(builder());
    let client = EgressClient::with_api_key(&sim.url(), KEY, "not-the-right-secret").unwrap();

    let err = client.list_egress(ListOptions::all()).await.unwrap_err();
    match &err {
        ClientError::Twirp(Error::Intermediary {
            status,
            content_type,
            body_excerpt,
            ..
        }) => {
            assert_eq!(*status, 401);
            assert!(
                content_type
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("text/plain"),
                "{content_type:?}"
            );
            assert!(body_excerpt.contains("invalid token"), "{body_excerpt}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.twirp_code(), Some(TwirpCode::Unauthenticated));
    assert!(!err.to_string().contains("not-the-right-secret"));

    // An unknown key is rejected the same way.
    let client = EgressClient::with_api_key(&sim.url(), "APIunknown", SECRET).unwrap();
    let err = client.stop_egress("EG_x").await.unwrap_err();
    assert_eq!(err.twirp_code(), Some(TwirpCode::Unauthenticated));
    assert!(!err.to_string().contains(SECRET));
}

#[tokio::test]
async fn html_502_is_an_unavailable_intermediary_answer() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());
    sim.faults().push(
        Fault::http(502, "text/html", "<html><h1>502 Bad Gateway</h1></html>")
            .method("ListEgress")
            .times(1),
    );

    let err = client.list_egress(ListOptions::all()).await.unwrap_err();
    match &err {
        ClientError::Twirp(Error::Intermediary {
            status,
            content_type,
            ..
        }) => {
            assert_eq!(*status, 502);
            assert_eq!(content_type.as_deref(), Some("text/html"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.twirp_code(), Some(TwirpCode::Unavailable));
    assert!(!err.is_timeout());

    // One-shot: the next call goes through.
    client.list_egress(ListOptions::all()).await.unwrap();
}

#[tokio::test]
async fn refused_port_is_a_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = client_for(&format!("http://127.0.0.1:{port}"));
    let err = client.stop_egress("EG_x").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Twirp(Error::Connect(_))),
        "{err:?}"
    );
    assert_eq!(err.twirp_code(), None);
    assert!(
        err.to_string().starts_with("cannot connect to upstream"),
        "{err}"
    );
}

#[tokio::test]
async fn timeout_with_latency_fault() {
    let sim = spawn(builder());
    let client = client_for(&sim.url()).with_timeout(Duration::from_millis(200));
    sim.faults()
        .push(Fault::latency(Duration::from_secs(3)).method("ListEgress"));

    let started = Instant::now();
    let err = client.list_egress(ListOptions::all()).await.unwrap_err();
    let elapsed = started.elapsed();
    // Either our deadline fires, or the server (which got `X-Twirp-Timeout-Ms`) gives up at
    // the same moment and says `deadline_exceeded`; both are a timeout.
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        matches!(
            err,
            ClientError::Twirp(Error::Timeout(_))
                | ClientError::Twirp(Error::Twirp(egress_twirp::TwirpError {
                    code: TwirpCode::DeadlineExceeded,
                    ..
                }))
        ),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // The deadline was announced to the server.
    let recorded = last(&sim, "ListEgress");
    let budget: u64 = recorded
        .header("x-twirp-timeout-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=200).contains(&budget), "{budget}");

    // Other methods are unaffected by the fault.
    assert!(client.stop_egress("EG_x").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn constructor_errors() {
    let err = EgressClient::with_api_key("ftp://example.com", KEY, SECRET).unwrap_err();
    assert!(matches!(err, ClientError::InvalidUrl(_)), "{err:?}");

    let err = EgressClient::with_api_key("not a url", KEY, SECRET).unwrap_err();
    assert!(matches!(err, ClientError::InvalidUrl(_)), "{err:?}");

    let err =
        EgressClient::with_api_key("https://user:hunter2@example.com", KEY, SECRET).unwrap_err();
    assert!(matches!(err, ClientError::InvalidUrl(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let err = EgressClient::with_api_key("http://127.0.0.1:7880", KEY, "").unwrap_err();
    assert!(matches!(err, ClientError::Auth(_)), "{err:?}");

    let err = EgressClient::with_api_key("http://127.0.0.1:7880", "", SECRET).unwrap_err();
    assert!(matches!(err, ClientError::Auth(_)), "{err:?}");
    assert!(!err.to_string().contains(SECRET));

    // `EgressClient::new` itself is tested in tests/env.rs (in child processes, since the
    // environment cannot be changed safely here).
    let err = ClientError::from(egress_auth::AuthError::MissingEnv {
        name: "LIVEKIT_API_KEY",
    });
    assert!(err.to_string().contains("LIVEKIT_API_KEY"));

    // Debug output of a client never shows the secret.
    let client = EgressClient::with_api_key("http://127.0.0.1:7880", KEY, SECRET).unwrap();
    assert!(!format!("{client:?}").contains(SECRET));
}

#[tokio::test]
async fn unknown_encoding_values_are_left_to_the_server() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());
    // A preset number this protocol version does not know is not representable in the typed
    // enum; an advanced message with an odd codec is sent as is.
    let options = proto::EncodingOptions {
        video_codec: 42,
        ..Default::default()
    };
    client
        .start_web_egress(
            "https://example.com",
            vec![EgressOutput::Stream(proto::StreamOutput {
                protocol: proto::StreamProtocol::Rtmp as i32,
                urls: vec!["rtmp://x/app/key".into()],
                ..Default::default()
            })],
            WebOptions {
                encoding: Encoding::Advanced(options),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sent: proto::WebEgressRequest = last(&sim, "StartWebEgress").decode().unwrap();
    assert_eq!(
        sent.options,
        Some(proto::web_egress_request::Options::Advanced(options))
    );
}
