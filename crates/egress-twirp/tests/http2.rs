//! `TwirpClient` with `http2_only` (its own HTTP/2 connections, on the `h2` crate) against a
//! raw `h2` server on 127.0.0.1 that can misbehave the ways an HTTP/2 peer can: refuse a
//! stream, reset it, close its connection after each request, limit concurrent streams,
//! grant a small window, answer with more than one window.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use egress_twirp::{BaseUrl, CallOptions, ClientConfig, Error, StaticAuthorization, TwirpClient};
use h2::Reason;
use tokio::net::TcpListener;

/// Every test is bounded by this, so a bug cannot hang the suite.
const TEST_LIMIT: Duration = Duration::from_secs(10);

/// What the server does with each request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Reads the body, answers 200 with `answer_bytes` of protobuf.
    Answer { answer_bytes: usize },
    /// Refuses the first stream of every connection unprocessed, answers the rest.
    RefuseFirst,
    /// Resets every stream with `INTERNAL_ERROR` after reading the request.
    Reset,
    /// Answers, then closes the connection gracefully (GOAWAY): one request per connection.
    OneRequestPerConnection,
    /// Never answers (the stream stays open until the client gives up).
    Hang,
}

#[derive(Default)]
struct Server {
    /// Connections accepted, and of those still open.
    accepted: AtomicUsize,
    open: AtomicUsize,
    /// Streams that ended with a reset from the client.
    client_resets: AtomicUsize,
    /// Request bodies received in full, by length.
    bodies: Mutex<Vec<usize>>,
    /// Most streams open at once on one connection.
    most_streams: AtomicUsize,
}

/// An `h2` server granting the client `max_streams` concurrent streams.
async fn h2_server(behaviour: Behaviour, max_streams: u32) -> (SocketAddr, Arc<Server>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::default());
    let state = Arc::clone(&server);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            state.accepted.fetch_add(1, Ordering::SeqCst);
            state.open.fetch_add(1, Ordering::SeqCst);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                serve(tcp, behaviour, max_streams, &state).await;
                state.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, server)
}

async fn serve(
    tcp: tokio::net::TcpStream,
    behaviour: Behaviour,
    max_streams: u32,
    state: &Arc<Server>,
) {
    let Ok(mut connection) = h2::server::Builder::new()
        .max_concurrent_streams(max_streams)
        .handshake::<_, Bytes>(tcp)
        .await
    else {
        return;
    };
    let streams = Arc::new(AtomicUsize::new(0));
    let mut first = true;
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        if matches!(behaviour, Behaviour::RefuseFirst) && std::mem::take(&mut first) {
            respond.send_reset(Reason::REFUSED_STREAM);
            continue;
        }
        let now = streams.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_streams.fetch_max(now, Ordering::SeqCst);
        let (state, streams) = (Arc::clone(state), Arc::clone(&streams));
        let answered = tokio::spawn(async move {
            let mut body = request.into_body();
            let mut received = 0;
            while let Some(chunk) = body.data().await {
                let Ok(chunk) = chunk else { return };
                received += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            state.bodies.lock().unwrap().push(received);
            let answer_bytes = match behaviour {
                Behaviour::Answer { answer_bytes } => answer_bytes,
                Behaviour::Reset => {
                    respond.send_reset(Reason::INTERNAL_ERROR);
                    return;
                }
                Behaviour::Hang => {
                    if futures_util::future::poll_fn(|cx| respond.poll_reset(cx))
                        .await
                        .is_ok()
                    {
                        state.client_resets.fetch_add(1, Ordering::SeqCst);
                    }
                    return;
                }
                _ => 0,
            };
            // A little time on the stream, so calls overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let head = http::Response::builder()
                .status(200)
                .header("content-type", "application/protobuf")
                .header("content-length", answer_bytes)
                .body(())
                .unwrap();
            let Ok(mut send) = respond.send_response(head, answer_bytes == 0) else {
                return;
            };
            let mut left = answer_bytes;
            while left > 0 {
                // As much as the client's window allows, then wait for more.
                send.reserve_capacity(left.min(64 * 1024));
                let Some(Ok(granted)) =
                    futures_util::future::poll_fn(|cx| send.poll_capacity(cx)).await
                else {
                    return;
                };
                let n = granted.min(left);
                left -= n;
                if send
                    .send_data(Bytes::from(vec![7u8; n]), left == 0)
                    .is_err()
                {
                    return;
                }
            }
        });
        let streams = Arc::clone(&streams);
        tokio::spawn(async move {
            let _ = answered.await;
            streams.fetch_sub(1, Ordering::SeqCst);
        });
        if matches!(behaviour, Behaviour::OneRequestPerConnection) {
            connection.graceful_shutdown();
        }
    }
}

fn client(addr: SocketAddr, tweak: impl FnOnce(&mut ClientConfig)) -> TwirpClient {
    let mut config = ClientConfig::new(
        BaseUrl::parse(&format!("http://{addr}")).unwrap(),
        "livekit.Egress",
    );
    config.proxy_from_env = false;
    config.http2_only = true;
    config.connect_timeout = Duration::from_secs(2);
    tweak(&mut config);
    TwirpClient::new(config, StaticAuthorization::bearer("t").unwrap()).unwrap()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test exceeded its time limit")
}

async fn call(client: &TwirpClient, body: Bytes) -> Result<egress_twirp::Response, Error> {
    client.call("ListEgress", body, &CallOptions::new()).await
}

#[tokio::test]
async fn calls_multiplex_over_the_configured_connections() {
    bounded(async {
        let (addr, server) = h2_server(Behaviour::Answer { answer_bytes: 3 }, 250).await;
        let client = client(addr, |c| c.http2_connections = 3);
        let calls = (0..60).map(|_| call(&client, Bytes::from_static(b"req")));
        for answer in futures_util::future::join_all(calls).await {
            let answer = answer.expect("answered");
            assert_eq!(answer.version, http::Version::HTTP_2);
            assert_eq!(answer.body.len(), 3);
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
        assert!(server.bodies.lock().unwrap().iter().all(|&n| n == 3));
    })
    .await;
}

#[tokio::test]
async fn calls_beyond_the_servers_stream_limit_wait_for_a_stream() {
    bounded(async {
        let (addr, server) = h2_server(Behaviour::Answer { answer_bytes: 0 }, 4).await;
        let client = client(addr, |_| {});
        let calls = (0..40).map(|_| call(&client, Bytes::new()));
        for answer in futures_util::future::join_all(calls).await {
            answer.expect("answered in turn");
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        assert!(server.most_streams.load(Ordering::SeqCst) <= 4);
    })
    .await;
}

#[tokio::test]
async fn bodies_larger_than_a_window_go_both_ways() {
    bounded(async {
        // 200 KiB up (the server's default window is 64 KiB), 3 MiB down (ours is 2 MiB).
        let (addr, server) = h2_server(
            Behaviour::Answer {
                answer_bytes: 3 << 20,
            },
            250,
        )
        .await;
        let client = client(addr, |_| {});
        let answer = call(&client, Bytes::from(vec![1u8; 200 << 10]))
            .await
            .expect("answered");
        assert_eq!(answer.body.len(), 3 << 20);
        assert_eq!(*server.bodies.lock().unwrap(), vec![200 << 10]);
        // The same connection still carries calls: the windows were given back.
        let again = call(&client, Bytes::from_static(b"x"))
            .await
            .expect("again");
        assert_eq!(again.body.len(), 3 << 20);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn an_answer_larger_than_the_limit_is_refused_by_its_length() {
    bounded(async {
        let (addr, _) = h2_server(Behaviour::Answer { answer_bytes: 4096 }, 250).await;
        let client = client(addr, |c| c.max_response_bytes = 1024);
        let err = call(&client, Bytes::new()).await.expect_err("too large");
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    limit: 1024,
                    size: Some(4096)
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_refused_stream_is_a_request_that_never_arrived() {
    bounded(async {
        let (addr, server) = h2_server(Behaviour::RefuseFirst, 250).await;
        let client = client(addr, |_| {});
        let err = call(&client, Bytes::from_static(b"a"))
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
        assert!(err.to_string().contains("refused the stream"), "{err}");
        // Refused unprocessed: the server never read a body, and the connection still serves.
        assert!(server.bodies.lock().unwrap().is_empty());
        call(&client, Bytes::from_static(b"b"))
            .await
            .expect("the next stream is answered");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn a_stream_reset_after_the_request_is_a_lost_connection() {
    bounded(async {
        let (addr, _) = h2_server(Behaviour::Reset, 250).await;
        let client = client(addr, |_| {});
        let err = call(&client, Bytes::from_static(b"a"))
            .await
            .expect_err("reset");
        // It may have reached LiveKit: not the never-arrived class.
        assert!(matches!(err, Error::Reset(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn a_connection_closed_by_the_server_is_replaced() {
    bounded(async {
        let (addr, server) = h2_server(Behaviour::OneRequestPerConnection, 250).await;
        let client = client(addr, |_| {});
        for i in 0..5 {
            call(&client, Bytes::from_static(b"a"))
                .await
                .unwrap_or_else(|e| panic!("call {i}: {e}"));
            // Let the GOAWAY arrive, so the next call finds the connection going.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 5);
    })
    .await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    bounded(async {
        let (addr, server) = h2_server(Behaviour::Answer { answer_bytes: 0 }, 250).await;
        let client = client(addr, |c| {
            c.pool_idle_timeout = Some(Duration::from_millis(200));
        });
        call(&client, Bytes::new()).await.expect("answered");
        assert_eq!(server.open.load(Ordering::SeqCst), 1);
        // Closed between one and two idle timeouts after its last use.
        let began = tokio::time::Instant::now();
        while server.open.load(Ordering::SeqCst) > 0 {
            assert!(began.elapsed() < Duration::from_secs(2), "still open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A later call opens a new one.
        call(&client, Bytes::new()).await.expect("answered again");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn a_connection_with_a_call_in_flight_is_not_idle() {
    bounded(async {
        let (addr, server) = h2_server(Behaviour::Hang, 250).await;
        let client = client(addr, |c| {
            c.pool_idle_timeout = Some(Duration::from_millis(100));
        });
        let opts = CallOptions::new().with_timeout(Duration::from_millis(700));
        let err = client
            .call("ListEgress", Bytes::new(), &opts)
            .await
            .expect_err("never answered");
        // The deadline ended it, not the idle check (which ran six times meanwhile).
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn a_call_given_up_resets_its_stream() {
    bounded(async {
        let (addr, server) = h2_server(Behaviour::Hang, 250).await;
        let client = client(addr, |_| {});
        let opts = CallOptions::new().with_timeout(Duration::from_millis(200));
        let err = client
            .call("ListEgress", Bytes::new(), &opts)
            .await
            .expect_err("never answered");
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        let began = tokio::time::Instant::now();
        while server.client_resets.load(Ordering::SeqCst) == 0 {
            assert!(
                began.elapsed() < Duration::from_secs(2),
                "no RST_STREAM seen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_for_every_waiting_call() {
    bounded(async {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let client = client(addr, |_| {});
        let calls = (0..20).map(|_| call(&client, Bytes::new()));
        for answer in futures_util::future::join_all(calls).await {
            let err = answer.expect_err("nothing listens");
            assert!(matches!(err, Error::Connect(_)), "{err:?}");
        }
    })
    .await;
}
