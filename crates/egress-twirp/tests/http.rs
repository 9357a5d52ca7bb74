//! Loopback HTTP tests of `TwirpClient` against real servers on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use egress_twirp::{
    BaseUrl, CallOptions, ClientConfig, Error, StaticAuthorization, TwirpClient, TwirpCode,
    WireFormat,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const TOKEN: &str = "test-jwt-secret-token";

/// Every test is bounded by this, so a bug cannot hang the suite.
const TEST_LIMIT: Duration = Duration::from_secs(5);

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    n: u32,
}

#[derive(Default)]
struct State {
    connections: AtomicUsize,
    requests: Mutex<Vec<Seen>>,
}

#[derive(Clone, Debug)]
struct Seen {
    method: http::Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type HttpResponse = hyper::Response<Full<Bytes>>;

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<HttpResponse, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let path = parts.uri.path().to_owned();
    state.requests.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let method = path.rsplit('/').next().unwrap_or_default();
    let ct = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(match method {
        // Echo the body back with the request's content type.
        "Echo" => respond(200, &ct, body),
        "Unauthorized" => respond(401, "text/plain", "invalid authorization token"),
        "BadGateway" => respond(
            502,
            "text/html",
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>\n",
        ),
        "NotFound" => respond(
            404,
            "application/json",
            r#"{"code":"not_found","msg":"egress does not exist","meta":{"egress_id":"EG_123","Trace ID":"abc"}}"#,
        ),
        "NoWorkers" => respond(
            503,
            "application/json",
            r#"{"code":"unavailable","msg":"no response from servers"}"#,
        ),
        "Html200" => respond(
            200,
            "text/html; charset=utf-8",
            "<!doctype html><p>Welcome</p>",
        ),
        "Garbage" => respond(
            500,
            "application/octet-stream",
            &b"\x00\x01\xff\xfe{{{\x1b[2J"[..],
        ),
        "BadProto" => respond(200, "application/protobuf", &b"\xff\xff\xff\xff\xff"[..]),
        "Redirect" => hyper::Response::builder()
            .status(302)
            .header("location", "https://elsewhere.example/twirp")
            .body(Full::new(Bytes::new()))
            .unwrap(),
        "Big" => respond(200, &ct, vec![b'x'; 4096]),
        "JsonAlways" => respond(200, "application/json", "{}"),
        "TooLarge413" => respond(413, "text/plain", "request body too large"),
        "Slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            respond(200, &ct, body)
        }
        _ => respond(
            404,
            "application/json",
            r#"{"code":"bad_route","msg":"no handler for path"}"#,
        ),
    })
}

async fn start_server() -> (SocketAddr, Arc<State>) {
    let state = Arc::new(State::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_state = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            server_state.connections.fetch_add(1, Ordering::SeqCst);
            let state = server_state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, state)
}

fn client_for(base: &str, tweak: impl FnOnce(&mut ClientConfig)) -> TwirpClient {
    let mut config = ClientConfig::new(BaseUrl::parse(base).unwrap(), "livekit.Egress");
    config.proxy_from_env = false;
    config.connect_timeout = Duration::from_secs(2);
    tweak(&mut config);
    TwirpClient::new(config, StaticAuthorization::bearer(TOKEN).unwrap()).unwrap()
}

fn client(addr: SocketAddr) -> TwirpClient {
    client_for(&format!("ws://{addr}"), |_| {})
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test exceeded its time limit")
}

fn assert_no_secret(err: &Error) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!format!("{:?}", err.twirp_meta()).contains(TOKEN));
}

#[tokio::test]
async fn echo_sends_expected_request() {
    bounded(async {
        let (addr, state) = start_server().await;
        let client = client(addr);
        let body = Bytes::from_static(b"\x0a\x03abc");
        let opts = CallOptions::new()
            .with_timeout(Duration::from_millis(800))
            .with_request_id(HeaderValue::from_static("req-42"))
            .with_trace_context(
                HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                Some(HeaderValue::from_static("k=v")),
            );
        let resp = client.call("Echo", body.clone(), &opts).await.unwrap();
        assert_eq!(resp.body, body);
        assert_eq!(resp.wire_format, WireFormat::Protobuf);
        assert_eq!(resp.version, http::Version::HTTP_11);

        let seen = state.requests.lock().unwrap()[0].clone();
        assert_eq!(seen.method, http::Method::POST);
        assert_eq!(seen.path, "/twirp/livekit.Egress/Echo");
        assert_eq!(seen.body, body);
        let h = &seen.headers;
        assert_eq!(h["content-type"], "application/protobuf");
        assert_eq!(h["authorization"], format!("Bearer {TOKEN}").as_str());
        assert_eq!(h["user-agent"], egress_twirp::USER_AGENT);
        assert!(egress_twirp::USER_AGENT.starts_with("livekit-egress-gateway/"));
        assert_eq!(h["x-request-id"], "req-42");
        assert_eq!(
            h["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(h["tracestate"], "k=v");
        let ms: u64 = h["x-twirp-timeout-ms"].to_str().unwrap().parse().unwrap();
        assert!((500..=800).contains(&ms), "{ms}");
    })
    .await;
}

#[tokio::test]
async fn default_timeout_is_the_budget_of_calls_without_a_deadline() {
    bounded(async {
        let (addr, state) = start_server().await;
        let client = client_for(&format!("http://{addr}/"), |c| {
            c.default_timeout = Duration::from_millis(900)
        });
        // No deadline: the default timeout applies.
        client
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap();
        // A deadline later than the default timeout is the caller's: it is not capped.
        let far = CallOptions::new().with_timeout(Duration::from_secs(60));
        client.call("Echo", Bytes::new(), &far).await.unwrap();
        let seen: Vec<u64> = state
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|seen| {
                seen.headers["x-twirp-timeout-ms"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!((600..=900).contains(&seen[0]), "{seen:?}");
        assert!((59_000..=60_000).contains(&seen[1]), "{seen:?}");
    })
    .await;
}

#[tokio::test]
async fn path_prefix_and_json_encoding() {
    bounded(async {
        let (addr, state) = start_server().await;
        let client = client_for(&format!("http://{addr}/lk/"), |_| {});
        let opts = CallOptions::new().with_wire_format(WireFormat::Json);
        let resp = client
            .call(
                "Echo",
                Bytes::from_static(br#"{"egress_id":"EG_1"}"#),
                &opts,
            )
            .await
            .unwrap();
        assert_eq!(resp.wire_format, WireFormat::Json);
        assert_eq!(&resp.body[..], br#"{"egress_id":"EG_1"}"#);
        let seen = state.requests.lock().unwrap()[0].clone();
        assert_eq!(seen.path, "/lk/twirp/livekit.Egress/Echo");
        assert_eq!(seen.headers["content-type"], "application/json");
    })
    .await;
}

#[tokio::test]
async fn typed_calls_round_trip_and_decode_errors() {
    bounded(async {
        let (addr, _) = start_server().await;
        let client = client(addr);
        let ping = Ping {
            text: "hello".into(),
            n: 7,
        };
        // call_typed uses protobuf even when the options say JSON.
        let opts = CallOptions::new().with_wire_format(WireFormat::Json);
        let back: Ping = client.call_typed("Echo", &ping, &opts).await.unwrap();
        assert_eq!(back, ping);

        let err = client
            .call_typed::<Ping, Ping>("BadProto", &ping, &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn connections_are_reused() {
    bounded(async {
        let (addr, state) = start_server().await;
        let client = client(addr);
        let clone = client.clone();
        for _ in 0..3 {
            client
                .call("Echo", Bytes::from_static(b"x"), &CallOptions::new())
                .await
                .unwrap();
            clone
                .call("Echo", Bytes::from_static(b"y"), &CallOptions::new())
                .await
                .unwrap();
        }
        // Error answers do not poison the pool either.
        let _ = client
            .call("NotFound", Bytes::new(), &CallOptions::new())
            .await;
        client
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap();
        assert_eq!(state.connections.load(Ordering::SeqCst), 1);
        assert_eq!(state.requests.lock().unwrap().len(), 8);
    })
    .await;
}

#[tokio::test]
async fn plain_text_401_is_unauthenticated_intermediary() {
    bounded(async {
        let (addr, _) = start_server().await;
        let err = client(addr)
            .call("Unauthorized", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        match &err {
            Error::Intermediary {
                status,
                content_type,
                body_excerpt,
                location,
            } => {
                assert_eq!(*status, 401);
                assert_eq!(content_type.as_deref(), Some("text/plain"));
                assert_eq!(body_excerpt, "invalid authorization token");
                assert!(location.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert_no_secret(&err);
        assert_eq!(err.twirp_code(), Some(TwirpCode::Unauthenticated));
        assert_eq!(
            err.to_string(),
            "upstream returned HTTP 401 Unauthorized (text/plain): invalid authorization token"
        );
        let meta = err.twirp_meta();
        assert_eq!(meta["http_error_from_intermediary"], "true");
        assert_eq!(meta["status_code"], "401");
    })
    .await;
}

#[tokio::test]
async fn html_502_is_unavailable_intermediary() {
    bounded(async {
        let (addr, _) = start_server().await;
        let err = client(addr)
            .call("BadGateway", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Intermediary { status: 502, body_excerpt, .. }
                if body_excerpt == "<html> <head><title>502 Bad Gateway</title></head> <body>nginx</body></html>"),
            "{err:?}"
        );
        assert_eq!(err.twirp_code(), Some(TwirpCode::Unavailable));
        assert!(
            err.to_string()
                .starts_with("upstream returned HTTP 502 Bad Gateway (text/html): <html>"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn twirp_json_error_with_meta() {
    bounded(async {
        let (addr, _) = start_server().await;
        let client = client(addr);
        let err = client
            .call("NotFound", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        let Error::Twirp(twirp) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(twirp.code, TwirpCode::NotFound);
        assert_eq!(twirp.msg, "egress does not exist");
        assert_eq!(twirp.http_status, 404);
        assert_eq!(twirp.meta["egress_id"], "EG_123");
        assert_eq!(err.to_string(), "not_found: egress does not exist");

        assert_eq!(err.twirp_meta()["Trace ID"], "abc");

        let err = client
            .call("NoWorkers", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Twirp(e) if e.code == TwirpCode::Unavailable));
        assert_eq!(err.twirp_code(), Some(TwirpCode::Unavailable));

        // Unknown method: the server's bad_route becomes UNIMPLEMENTED.
        let err = client
            .call("NoSuchMethod", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Twirp(e) if e.code == TwirpCode::BadRoute));
        assert_eq!(err.twirp_code(), Some(TwirpCode::BadRoute));
    })
    .await;
}

#[tokio::test]
async fn html_200_is_an_intermediary() {
    bounded(async {
        let (addr, _) = start_server().await;
        let err = client(addr)
            .call("Html200", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Intermediary { status: 200, content_type: Some(ct), .. }
                if ct == "text/html; charset=utf-8"),
            "{err:?}"
        );
        assert_eq!(err.twirp_code(), Some(TwirpCode::Unknown));
        assert!(err.to_string().contains("<p>Welcome</p>"), "{err}");

        // A JSON answer to a protobuf request is not a success either.
        let (addr, _) = start_server().await;
        let client = client(addr);
        let opts = CallOptions::new().with_wire_format(WireFormat::Json);
        assert!(client.call("JsonAlways", Bytes::new(), &opts).await.is_ok());
        let err = client
            .call("JsonAlways", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Intermediary { status: 200, body_excerpt, .. } if body_excerpt == "{}"),
            "{err:?}"
        );
        assert_eq!(err.twirp_code(), Some(TwirpCode::Unknown));
    })
    .await;
}

#[tokio::test]
async fn garbage_redirect_and_413() {
    bounded(async {
        let (addr, _) = start_server().await;
        let client = client(addr);
        let err = client
            .call("Garbage", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        match &err {
            Error::Intermediary {
                status: 500,
                body_excerpt,
                ..
            } => {
                assert_eq!(body_excerpt, "\u{FFFD}\u{FFFD}{{{ [2J");
                assert!(!body_excerpt.chars().any(char::is_control));
            }
            other => panic!("{other:?}"),
        }

        let err = client
            .call("Redirect", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Intermediary { status: 302, location: Some(l), .. }
                if l == "https://elsewhere.example/twirp"),
            "{err:?}"
        );
        assert_eq!(err.twirp_code(), Some(TwirpCode::Internal));
        assert_eq!(
            err.twirp_meta()["location"],
            "https://elsewhere.example/twirp"
        );

        let err = client
            .call("TooLarge413", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Intermediary { status: 413, .. }));
        assert_eq!(err.twirp_code(), Some(TwirpCode::Unknown));
    })
    .await;
}

#[tokio::test]
async fn response_size_limit() {
    bounded(async {
        let (addr, _) = start_server().await;
        let client = client_for(&format!("http://{addr}"), |c| c.max_response_bytes = 1000);
        let err = client
            .call("Big", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        // Not `Body`/UNAVAILABLE: the same call gets the same answer again, and clients retry
        // UNAVAILABLE forever.
        assert!(
            matches!(
                &err,
                Error::TooLarge {
                    limit: 1000,
                    size: Some(4096)
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.kind(), "too_large");
    })
    .await;
}

#[tokio::test]
async fn deadline_passes_while_server_sleeps() {
    bounded(async {
        let (addr, state) = start_server().await;
        let client = client(addr);
        let start = Instant::now();
        let opts = CallOptions::new().with_timeout(Duration::from_millis(200));
        let err = client.call("Slow", Bytes::new(), &opts).await.unwrap_err();
        let elapsed = start.elapsed();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
        let ms: u64 = state.requests.lock().unwrap()[0].headers["x-twirp-timeout-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((100..=200).contains(&ms), "{ms}");

        // The default timeout applies when there is no deadline.
        let client = client_for(&format!("http://{addr}"), |c| {
            c.default_timeout = Duration::from_millis(150)
        });
        let start = Instant::now();
        let err = client
            .call("Slow", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(d) if d <= Duration::from_millis(150)));
        assert!(start.elapsed() < Duration::from_millis(900));

        // An explicit deadline later than the default is the caller's to set: it is the
        // budget LiveKit is told.
        let opts = CallOptions::new().with_timeout(Duration::from_secs(5));
        client.call("Echo", Bytes::new(), &opts).await.unwrap();
        let ms: u64 = state.requests.lock().unwrap().last().unwrap().headers["x-twirp-timeout-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((4000..=5000).contains(&ms), "{ms}");

        // A deadline already in the past fails without sending anything.
        let before = state.requests.lock().unwrap().len();
        let past = CallOptions::new().with_deadline(Instant::now() - Duration::from_millis(1));
        let err = client.call("Echo", Bytes::new(), &past).await.unwrap_err();
        assert!(matches!(err, Error::Timeout(d) if d.is_zero()));
        assert_eq!(state.requests.lock().unwrap().len(), before);
    })
    .await;
}

#[tokio::test]
async fn refused_port_is_connect_error() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = client(addr)
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
        assert!(!err.to_string().contains("http://"), "{err}");
        assert_no_secret(&err);
    })
    .await;
}

#[tokio::test]
async fn invalid_method_and_auth_failures() {
    bounded(async {
        let (addr, state) = start_server().await;
        let err = client(addr)
            .call("../../admin", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidUrl(_)), "{err:?}");

        struct Broken;
        impl egress_twirp::Authorizer for Broken {
            fn authorization(&self) -> Result<HeaderValue, egress_twirp::AuthFailure> {
                Err(egress_twirp::AuthFailure::new("API secret missing"))
            }
        }
        let mut config = ClientConfig::new(
            BaseUrl::parse(&format!("http://{addr}")).unwrap(),
            "livekit.Egress",
        );
        config.proxy_from_env = false;
        let client = TwirpClient::new(config, Arc::new(Broken)).unwrap();
        let err = client
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Auth(m) if m == "API secret missing"));
        assert!(state.requests.lock().unwrap().is_empty());
    })
    .await;
}

// ---- Misbehaving raw TCP servers -------------------------------------------------------------

/// Reads one HTTP/1.1 request (head and Content-Length body) from the stream.
async fn read_request(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Clone, Copy)]
enum Misbehave {
    /// Close the connection without answering.
    CloseBeforeAnswer,
    /// Reset the connection (RST) without answering.
    ResetBeforeAnswer,
    /// Send the head and part of the body, then close.
    CloseMidBody,
    /// Send the head and part of the body, then reset.
    ResetMidBody,
    /// Answer a TLS ClientHello with plain HTTP.
    PlainHttpToTls,
}

async fn raw_server(behaviour: Misbehave) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            match behaviour {
                Misbehave::PlainHttpToTls => {
                    let mut buf = [0u8; 512];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    let _ = stream.shutdown().await;
                    continue;
                }
                _ => read_request(&mut stream).await,
            }
            match behaviour {
                Misbehave::CloseBeforeAnswer => {
                    let _ = stream.shutdown().await;
                }
                Misbehave::ResetBeforeAnswer => {
                    stream.set_zero_linger().unwrap();
                }
                Misbehave::CloseMidBody | Misbehave::ResetMidBody => {
                    stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/protobuf\r\n\
                              content-length: 100\r\n\r\n0123456789",
                        )
                        .await
                        .unwrap();
                    stream.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if matches!(behaviour, Misbehave::ResetMidBody) {
                        stream.set_zero_linger().unwrap();
                    } else {
                        let _ = stream.shutdown().await;
                    }
                }
                Misbehave::PlainHttpToTls => unreachable!(),
            }
            drop(stream);
        }
    });
    addr
}

#[tokio::test]
async fn close_before_answer_is_reset() {
    bounded(async {
        let addr = raw_server(Misbehave::CloseBeforeAnswer).await;
        let err = client(addr)
            .call("Echo", Bytes::from_static(b"abc"), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Reset(_)), "{err:?}");
        assert_no_secret(&err);
    })
    .await;
}

#[tokio::test]
async fn rst_before_answer_is_reset() {
    bounded(async {
        let addr = raw_server(Misbehave::ResetBeforeAnswer).await;
        let err = client(addr)
            .call("Echo", Bytes::from_static(b"abc"), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Reset(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn close_mid_body_is_body_error() {
    bounded(async {
        for behaviour in [Misbehave::CloseMidBody, Misbehave::ResetMidBody] {
            let addr = raw_server(behaviour).await;
            let err = client(addr)
                .call("Echo", Bytes::from_static(b"abc"), &CallOptions::new())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Body(_)), "{err:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn https_to_plain_http_server_is_tls_error() {
    bounded(async {
        let addr = raw_server(Misbehave::PlainHttpToTls).await;
        let err = client_for(&format!("wss://{addr}"), |_| {})
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
        assert_no_secret(&err);
    })
    .await;
}

#[tokio::test]
async fn dropping_the_future_aborts_the_request() {
    bounded(async {
        let (addr, state) = start_server().await;
        let client = client(addr);
        let opts = CallOptions::new();
        let call = client.call("Slow", Bytes::new(), &opts);
        let start = Instant::now();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), call)
                .await
                .is_err()
        );
        assert!(start.elapsed() < Duration::from_millis(500));
        assert_eq!(state.requests.lock().unwrap().len(), 1);
        // The client is still usable (on a new or pooled connection).
        client
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn status_codes_of_every_intermediary_class_over_http() {
    // One raw server answering a fixed status for each connection.
    bounded(async {
        for (status, code) in [
            (301, TwirpCode::Internal),
            (400, TwirpCode::Internal),
            (403, TwirpCode::PermissionDenied),
            (404, TwirpCode::BadRoute),
            (429, TwirpCode::ResourceExhausted),
            (503, TwirpCode::Unavailable),
            (504, TwirpCode::Unavailable),
            (500, TwirpCode::Unknown),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                read_request(&mut stream).await;
                let reason = StatusCode::from_u16(status)
                    .unwrap()
                    .canonical_reason()
                    .unwrap();
                let answer = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\n\
                     content-length: 4\r\nconnection: close\r\n\r\nnope"
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
                let _ = stream.shutdown().await;
            });
            let err = client(addr)
                .call("Echo", Bytes::new(), &CallOptions::new())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::Intermediary { status: s, body_excerpt, .. }
                    if *s == status && body_excerpt == "nope"),
                "{status}: {err:?}"
            );
            assert_eq!(err.twirp_code(), Some(code), "{status}");
        }
    })
    .await;
}

/// A raw server that reads one request per connection and answers `answer` verbatim, then
/// closes (or, with `linger`, keeps the connection until the client closes it).
async fn verbatim_server(answer: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                read_request(&mut stream).await;
                let _ = stream.write_all(&answer).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn truncated_twirp_error_body_is_body_error() {
    // A 404 whose Twirp JSON breaks off: the status alone would read as an intermediary's
    // bad_route (UNIMPLEMENTED); a truncated answer is UNAVAILABLE like any other.
    bounded(async {
        let body = br#"{"code":"not_found","msg":"egress does not exist"}"#;
        let answer = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            body.len() + 100,
            String::from_utf8_lossy(body)
        );
        let addr = verbatim_server(answer.into_bytes()).await;
        let err = client(addr)
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Body(_)), "{err:?}");
        assert_no_secret(&err);
    })
    .await;
}

#[tokio::test]
async fn twirp_error_over_the_read_bound_keeps_its_code() {
    bounded(async {
        for chunked in [false, true] {
            let body = format!(
                r#"{{"code":"not_found","msg":"egress does not exist","meta":{{"big":"{}"}}}}"#,
                "x".repeat(200_000)
            );
            let answer = if chunked {
                format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                     transfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            let addr = verbatim_server(answer.into_bytes()).await;
            let err = client(addr)
                .call("Echo", Bytes::new(), &CallOptions::new())
                .await
                .unwrap_err();
            let Error::Twirp(e) = &err else {
                panic!("{err:?}")
            };
            assert_eq!(e.code, TwirpCode::NotFound);
            assert_eq!(e.msg, "egress does not exist");
            // Only the bounded prefix was read: the meta after it is not there.
            assert!(e.meta.is_empty(), "{chunked}");
        }
    })
    .await;
}

#[tokio::test]
async fn twirp_error_under_the_read_bound_is_read_whole() {
    bounded(async {
        let value = "v".repeat(60 * 1024);
        let body = format!(r#"{{"code":"not_found","msg":"m","meta":{{"big":"{value}"}}}}"#);
        assert!(body.len() < 64 * 1024);
        let answer = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let addr = verbatim_server(answer.into_bytes()).await;
        let err = client(addr)
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        let Error::Twirp(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.meta["big"], value);
    })
    .await;
}

#[tokio::test]
async fn probe_reports_gateway_errors_and_unreachable_servers() {
    bounded(async {
        // LiveKit's `GET /` (here a Twirp 404): reachable.
        let (addr, _) = start_server().await;
        client(addr).probe().await.unwrap();
        // A load balancer's 502: LiveKit is down behind it.
        let addr = verbatim_server(
            b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let err = client(addr).probe().await.unwrap_err();
        assert!(
            matches!(err, Error::Intermediary { status: 502, .. }),
            "{err:?}"
        );
        // Nothing listening.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        let err = client(closed).probe().await.unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn idle_pooled_connections_are_closed_after_the_idle_timeout() {
    // After a burst the pool holds every connection it opened; the idle timeout is what
    // closes them (hyper checks once per timeout, so within two of them).
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    read_request(&mut stream).await;
                    stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/protobuf\r\n\
                              content-length: 2\r\n\r\nok",
                        )
                        .await
                        .unwrap();
                    let answered = Instant::now();
                    let mut buf = [0u8; 64];
                    // The client sends nothing more: the next read ends when it closes.
                    let _ = stream.read(&mut buf).await;
                    let _ = closed_tx.send(answered.elapsed());
                });
            }
        });
        let idle = Duration::from_millis(300);
        let client = client_for(&format!("http://{addr}"), |c| {
            c.pool_idle_timeout = Some(idle)
        });
        let opts = CallOptions::new();
        let calls = (0..3).map(|_| client.call("Echo", Bytes::new(), &opts));
        for result in futures_util::future::join_all(calls).await {
            result.unwrap();
        }
        for _ in 0..3 {
            let after = closed_rx.recv().await.unwrap();
            assert!(after >= idle - Duration::from_millis(50), "{after:?}");
            assert!(after < 3 * idle, "{after:?}");
        }
        // The client itself is still alive and reconnects.
        client
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap();
    })
    .await;
}

#[test]
fn default_pool_idle_timeout_is_bounded() {
    let config = ClientConfig::new(BaseUrl::parse("http://h").unwrap(), "livekit.Egress");
    let idle = config.pool_idle_timeout.unwrap();
    assert!(
        idle >= Duration::from_secs(10) && idle <= Duration::from_secs(90),
        "{idle:?}"
    );
}

#[tokio::test]
async fn response_size_limit_is_inclusive_and_covers_chunked_bodies() {
    bounded(async {
        // Exactly at the limit: accepted.
        let (addr, _) = start_server().await;
        let client = client_for(&format!("http://{addr}"), |c| c.max_response_bytes = 4096);
        let answer = client
            .call("Big", Bytes::new(), &CallOptions::new())
            .await
            .unwrap();
        assert_eq!(answer.body.len(), 4096);

        // Chunked: no size up front, so the limit applies while reading.
        let chunked = |len: usize| {
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/protobuf\r\n\
                 transfer-encoding: chunked\r\n\r\n{:x}\r\n",
                len
            )
            .into_bytes();
            answer.extend(std::iter::repeat_n(b'x', len));
            answer.extend_from_slice(b"\r\n0\r\n\r\n");
            answer
        };
        let addr = verbatim_server(chunked(1000)).await;
        let client = client_for(&format!("http://{addr}"), |c| c.max_response_bytes = 1000);
        let answer = client
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap();
        assert_eq!(answer.body.len(), 1000);
        let addr = verbatim_server(chunked(1001)).await;
        let client = client_for(&format!("http://{addr}"), |c| c.max_response_bytes = 1000);
        let err = client
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    limit: 1000,
                    size: None
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn error_body_of_exactly_the_read_bound_is_whole() {
    // 64 KiB that end where the bound does were read whole: a broken Twirp object of exactly
    // that size is not a Twirp error (only a body cut by the bound is read leniently).
    bounded(async {
        let mut body = br#"{"code":"not_found","msg":"x""#.to_vec();
        body.resize(64 * 1024, b' ');
        let mut answer = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        let addr = verbatim_server(answer).await;
        let err = client(addr)
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Intermediary { status: 404, .. }),
            "{err:?}"
        );
        // One byte more and the same start is read as the Twirp error it begins.
        let mut body = br#"{"code":"not_found","msg":"x""#.to_vec();
        body.resize(64 * 1024 + 1, b' ');
        let mut answer = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        let addr = verbatim_server(answer).await;
        let err = client(addr)
            .call("Echo", Bytes::new(), &CallOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Twirp(e) if e.code == TwirpCode::NotFound),
            "{err:?}"
        );
    })
    .await;
}
