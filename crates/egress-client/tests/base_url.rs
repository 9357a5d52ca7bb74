//! Base URL handling: `ws://` works like `http://`, and a path prefix is kept.

mod common;

use common::*;
use egress_client::{EgressClient, ListOptions, TrackEgressOutput};

#[tokio::test]
async fn ws_scheme_is_plain_http() {
    let sim = spawn(builder());
    let ws = sim.url().replacen("http://", "ws://", 1);
    assert!(ws.starts_with("ws://127.0.0.1:"), "{ws}");
    let client = client_for(&ws);
    assert_eq!(client.base_url(), sim.url());

    let info = client
        .start_track_egress(
            "room",
            TrackEgressOutput::WebSocket("wss://stt.example.com".into()),
            "TR_1",
        )
        .await
        .unwrap();
    let page = client
        .list_egress(ListOptions::egress(&info.egress_id))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    last(&sim, "ListEgress");

    // A trailing slash changes nothing.
    let client = client_for(&format!("{ws}/"));
    client.list_egress(ListOptions::all()).await.unwrap();
    last(&sim, "ListEgress");
}

#[tokio::test]
async fn path_prefix_is_kept() {
    let sim = spawn(builder().prefix("/lk"));
    let base = sim.base_url();
    assert!(base.ends_with("/lk"), "{base}");

    let client = client_for(&base);
    assert_eq!(client.base_url(), base);
    let info = client
        .start_track_egress(
            "room",
            TrackEgressOutput::WebSocket("wss://stt.example.com".into()),
            "TR_1",
        )
        .await
        .unwrap();
    client.stop_egress(&info.egress_id).await.unwrap();

    let requests = sim.requests();
    assert_eq!(requests.len(), 2);
    for (request, method) in requests.iter().zip(["StartTrackEgress", "StopEgress"]) {
        assert_eq!(request.path, format!("/lk/twirp/livekit.Egress/{method}"));
        assert_eq!(request.rpc.as_deref(), Some(method));
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/protobuf")
        );
        assert_claims(request);
    }

    // wss-style prefix URL with a trailing slash, as users paste it.
    let client = EgressClient::with_api_key(
        &format!("{}/", base.replacen("http://", "ws://", 1)),
        KEY,
        SECRET,
    )
    .unwrap();
    client.list_egress(ListOptions::all()).await.unwrap();
    assert_eq!(
        sim.requests().last().unwrap().path,
        "/lk/twirp/livekit.Egress/ListEgress"
    );

    // Without the prefix the simulator (like a proxy routing on it) refuses the call.
    let client = client_for(&sim.url());
    let err = client.list_egress(ListOptions::all()).await.unwrap_err();
    assert_eq!(err.twirp_code(), Some(egress_twirp::TwirpCode::BadRoute));
}
