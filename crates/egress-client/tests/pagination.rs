//! ListEgress pagination: `next_page_token` is kept and `list_all_egress` follows it.

mod common;

use common::*;
use egress_client::{ClientError, ListOptions, PaginationAbort, RoomCompositeOptions, proto};
use egress_sim::Fault;

async fn start_five(client: &egress_client::EgressClient, room: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..5 {
        let info = client
            .start_room_composite_egress(
                room,
                vec![rtmp(&format!("rtmp://live.example.com/app/{i}"))],
                RoomCompositeOptions::default(),
            )
            .await
            .unwrap();
        ids.push(info.egress_id);
    }
    ids
}

fn ids(items: &[proto::EgressInfo]) -> Vec<String> {
    items.iter().map(|i| i.egress_id.clone()).collect()
}

#[tokio::test]
async fn pages_keep_the_next_token_and_list_all_walks_them() {
    let sim = spawn(builder().paginate(2));
    let client = client_for(&sim.url());
    let started = start_five(&client, "paged").await;

    let first = client.list_egress(ListOptions::all()).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert!(first.has_more());
    let token = first.next_page_token.clone().unwrap();
    assert!(!token.token.is_empty());

    // Page by hand.
    let mut seen = ids(&first.items);
    let mut next = Some(token.clone());
    let mut pages = 1;
    while let Some(token) = next {
        let page = client
            .list_egress(ListOptions::all().page_token(token.clone()))
            .await
            .unwrap();
        let sent: proto::ListEgressRequest = last(&sim, "ListEgress").decode().unwrap();
        assert_eq!(sent.page_token, Some(token));
        assert!(page.items.len() <= 2);
        seen.extend(ids(&page.items));
        next = page.next_page_token;
        pages += 1;
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    let mut expected = started.clone();
    expected.sort();
    assert_eq!(sorted, expected);

    // All at once.
    sim.clear_requests();
    let all = client.list_all_egress(ListOptions::all()).await.unwrap();
    assert_eq!(ids(&all), seen);
    let requests = sim.requests();
    assert_eq!(requests.len(), 3);
    let tokens: Vec<Option<proto::TokenPagination>> = requests
        .iter()
        .map(|r| {
            assert_wire(r, "ListEgress");
            r.decode::<proto::ListEgressRequest>().unwrap().page_token
        })
        .collect();
    assert_eq!(tokens[0], None);
    assert_eq!(tokens[1], Some(token));
    assert!(tokens[2].is_some());

    // Starting from a token continues from there.
    let rest = client
        .list_all_egress(ListOptions::all().page_token(first.next_page_token.unwrap()))
        .await
        .unwrap();
    assert_eq!(ids(&rest), seen[2..].to_vec());

    // Filters travel on every page.
    sim.clear_requests();
    let room = client
        .list_all_egress(ListOptions::room("paged").active(true))
        .await
        .unwrap();
    assert_eq!(room.len(), 5);
    for request in sim.requests() {
        let sent: proto::ListEgressRequest = request.decode().unwrap();
        assert_eq!(sent.room_name, "paged");
        assert!(sent.active);
    }
}

#[tokio::test]
async fn without_pagination_everything_comes_at_once() {
    let sim = spawn(builder());
    let client = client_for(&sim.url());
    start_five(&client, "unpaged").await;

    let page = client.list_egress(ListOptions::all()).await.unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.next_page_token, None);

    sim.clear_requests();
    assert_eq!(
        client
            .list_all_egress(ListOptions::all())
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn a_failing_page_fails_the_walk() {
    let sim = spawn(builder().paginate(2));
    let client = client_for(&sim.url());
    start_five(&client, "paged").await;

    // The second page fails.
    let first = client.list_egress(ListOptions::all()).await.unwrap();
    sim.faults().push(
        Fault::twirp_error("unavailable", "no response from servers")
            .method("ListEgress")
            .times(1),
    );
    let err = client
        .list_all_egress(ListOptions::all().page_token(first.next_page_token.unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.twirp_code(), Some(egress_twirp::TwirpCode::Unavailable));

    // A token the server never issued.
    let err = client
        .list_all_egress(ListOptions::all().page_token(proto::TokenPagination {
            token: "bogus".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        err.twirp_code(),
        Some(egress_twirp::TwirpCode::InvalidArgument)
    );
}

#[tokio::test]
async fn a_server_repeating_its_token_is_caught() {
    use prost::Message;

    let sim = spawn(builder());
    let client = client_for(&sim.url());

    // A server stuck in a loop: every ListEgress answer is the same page with the same token.
    let token = proto::TokenPagination {
        token: "same-token-forever".into(),
    };
    let answer = proto::ListEgressResponse {
        items: vec![proto::EgressInfo {
            egress_id: "EG_loop".into(),
            ..Default::default()
        }],
        next_page_token: Some(token.clone()),
    };
    // Fault bodies are strings; this small message encodes to ASCII only.
    let body = String::from_utf8(answer.encode_to_vec()).expect("ASCII protobuf");
    sim.faults()
        .push(Fault::http(200, "application/protobuf", body).method("ListEgress"));

    // One page by itself is fine and reports the token.
    let page = client.list_egress(ListOptions::all()).await.unwrap();
    assert_eq!(ids(&page.items), ["EG_loop"]);
    assert_eq!(page.next_page_token, Some(token.clone()));

    // The walk stops on the second page, which repeats the first one's token.
    sim.clear_requests();
    let err = client
        .list_all_egress(ListOptions::all())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Pagination {
                pages: 2,
                reason: PaginationAbort::RepeatedToken,
            }
        ),
        "{err:?}"
    );
    assert_eq!(sim.requests().len(), 2);
    assert_eq!(
        err.to_string(),
        "ListEgress pagination aborted after 2 pages: the server repeated a page token"
    );

    // Starting from that token, the very first answer is already a repeat.
    sim.clear_requests();
    let err = client
        .list_all_egress(ListOptions::all().page_token(token))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Pagination { pages: 1, .. }),
        "{err:?}"
    );
    assert_eq!(sim.requests().len(), 1);
}
