//! Hostile and careless clients against the real binary: unknown fields past the policy,
//! duplicated credentials, non-gRPC bodies, bodies that never finish, readers that never
//! read, connections that never speak, descriptor exhaustion, deadlines, drain and
//! compression. Each test states the contract it holds the gateway to.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use egress_e2e::certs::temp_dir;
use egress_e2e::{
    Endpoint, Gateway, Proxy, ProxyOptions, RawBehaviour, RawUpstream, admin_get,
    sim_activating_after,
};
use egress_policy::hash_token;
use egress_proto::livekit::{
    self, EgressInfo, EncodedFileOutput, ListEgressRequest, ListEgressResponse,
    RoomCompositeEgressRequest, StopEgressRequest, StreamOutput, WebEgressRequest,
};
use egress_proxy::codec::BytesCodec;
use egress_sim::SimHandle;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;

const RECORDER_TOKEN: &str = "hostile-recorder-token-0123456789";
const OPS_TOKEN: &str = "hostile-ops-token-9876543210";

/// The HTTP/2 client connection preface followed by an empty SETTINGS frame.
const PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn sim() -> SimHandle {
    sim_activating_after(Duration::from_millis(50))
}

/// Bearer policy: `recorder` may only stream to `rtmps://*.live.example.com/*` in `team-*`
/// rooms; `ops` is restricted by nothing but its RPC list.
fn policy_file(name: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[auth]
mode = "bearer"

[[callers]]
name = "recorder"
token_sha256 = "{recorder}"
policy = "streaming"

[[callers]]
name = "ops"
token_sha256 = "{ops}"
policy = "anything"

[policies.streaming]
rpcs = ["StartRoomCompositeEgress", "ListEgress"]
rooms = ["team-*"]
stream_urls = ["rtmps://*.live.example.com/*"]

[policies.anything]
rpcs = ["*"]
"#,
        recorder = hash_token(RECORDER_TOKEN),
        ops = hash_token(OPS_TOKEN),
    );
    let path = temp_dir(name).join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn with_policy(path: &Path) -> ProxyOptions {
    ProxyOptions::default()
        .arg("--policy-file")
        .arg(path.to_str().unwrap())
}

fn protobuf(body: Vec<u8>) -> RawBehaviour {
    RawBehaviour::Answer {
        content_type: "application/protobuf",
        body,
    }
}

fn egress_info(id: &str) -> Vec<u8> {
    EgressInfo {
        egress_id: id.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

async fn bounded<F: std::future::Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: nothing within {limit:?}"),
    }
}

/// No request body reached the upstream (health probes are not recorded).
fn assert_upstream_got_nothing(upstream: &mut RawUpstream, what: &str) {
    if let Ok(body) = upstream.bodies.try_recv() {
        panic!(
            "{what}: the upstream received a request of {} bytes",
            body.len()
        );
    }
}

/// The raw bytes of field `number` as a varint (wire type 0) holding 1.
fn unknown_varint_field(number: u32) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(number, prost::encoding::WireType::Varint, &mut out);
    prost::encoding::encode_varint(1, &mut out);
    out
}

/// `bytes` as field `number`, length-delimited.
fn length_delimited(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

fn stream_output() -> StreamOutput {
    StreamOutput {
        protocol: livekit::StreamProtocol::Rtmp as i32,
        urls: vec!["rtmps://eu.live.example.com/app/key".into()],
        destinations: Vec::new(),
    }
}

/// A length-prefixed gRPC frame.
fn frame(compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(u8::from(compressed));
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends raw message bytes as a unary `livekit.Egress` call through tonic.
async fn bytes_call(
    proxy: &impl Endpoint,
    method: &str,
    body: Vec<u8>,
    token: &str,
) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(proxy.connect().await);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(Bytes::from(body));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    grpc.unary(
        request,
        format!("/livekit.Egress/{method}").parse().unwrap(),
        BytesCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

// ---------------------------------------------------------------------------------------
// A raw HTTP/2 client (the `h2` crate): whatever headers, bodies and windows a test needs.

type H2 = h2::client::SendRequest<Bytes>;

/// An HTTP/2 connection to `addr` (default settings), its driver running in a task.
async fn h2_connect(addr: SocketAddr) -> (H2, tokio::task::JoinHandle<()>) {
    h2_connect_with(addr, h2::client::Builder::new()).await
}

async fn h2_connect_with(
    addr: SocketAddr,
    builder: h2::client::Builder,
) -> (H2, tokio::task::JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = builder.handshake(tcp).await.expect("h2 handshake");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let send = send.ready().await.expect("h2 ready");
    (send, driver)
}

/// A gRPC-shaped POST request head; `content_type: None` sends none.
fn grpc_head(
    path: &str,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
) -> http::Request<()> {
    let mut request =
        http::Request::post(format!("http://egress.test{path}")).header("te", "trailers");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.body(()).unwrap()
}

/// An answer read to the end: HTTP status, headers and trailers merged, body bytes.
#[derive(Debug)]
struct H2Answer {
    status: u16,
    headers: http::HeaderMap,
    metadata: http::HeaderMap,
    body: Vec<u8>,
    /// A stream error met after the response head (e.g. the server's `RST_STREAM` once it
    /// has answered a request whose body it will not read); the answer is what came before.
    reset: Option<String>,
}

impl H2Answer {
    fn grpc_status(&self) -> Option<i32> {
        self.metadata
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    fn grpc_message(&self) -> String {
        self.metadata
            .get("grpc-message")
            .map(|v| percent_decode(&String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_default()
    }
}

/// Sends a request with `body` (ending the stream) and reads the whole answer.
async fn h2_exchange(h2: &mut H2, head: http::Request<()>, body: Vec<u8>) -> H2Answer {
    let mut h2 = h2.clone().ready().await.expect("h2 ready");
    let (response, mut send) = h2
        .send_request(head, body.is_empty())
        .expect("send request");
    if !body.is_empty() {
        send.send_data(Bytes::from(body), true).expect("send body");
    }
    read_answer(response).await
}

async fn read_answer(response: h2::client::ResponseFuture) -> H2Answer {
    let response = response
        .await
        .unwrap_or_else(|err| panic!("no response head: {err}"));
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    let mut reset = None;
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Err(err) => {
                reset = Some(err.to_string());
                break;
            }
        }
    }
    let mut metadata = parts.headers.clone();
    if reset.is_none() {
        match body.trailers().await {
            Ok(Some(trailers)) => metadata.extend(trailers),
            Ok(None) => {}
            Err(err) => reset = Some(err.to_string()),
        }
    }
    H2Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        metadata,
        body: bytes,
        reset,
    }
}

/// Sums the samples of `family` whose labels contain `label` (e.g. `limit="connection"`).
fn metric_sum(metrics: &str, family: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Connects, sends the client preface and SETTINGS, and says whether the server answered
/// with a SETTINGS frame within `within` (false: silence, or the connection was closed).
async fn served(addr: SocketAddr, within: Duration) -> (TcpStream, bool) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.write_all(PREFACE_AND_SETTINGS).await;
    let mut head = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 1024];
    while head.len() < 9 {
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
            _ => return (tcp, false),
        }
    }
    // Frame header: 3 bytes length, 1 byte type (4 = SETTINGS).
    (tcp, head[3] == 4)
}

/// Reads until the server closes the connection; the time it took, or `None` when it was
/// still open after `limit`.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. Unknown fields fail closed for callers whose policy looks inside the request.

#[tokio::test]
async fn unknown_fields_fail_closed_for_restricted_callers() {
    let mut upstream = RawUpstream::start(protobuf(egress_info("EG_hostile"))).await;
    let policy = policy_file("unknown-fields");
    let proxy = Gateway::start(&upstream.url(), with_policy(&policy));

    let base = RoomCompositeEgressRequest {
        room_name: "team-a".into(),
        layout: "grid".into(),
        ..Default::default()
    };
    // Sanity: without the unknown field the recorder's stream is allowed.
    let mut known = base.clone();
    known.stream_outputs = vec![stream_output()];
    bytes_call(
        &proxy,
        "StartRoomCompositeEgress",
        known.encode_to_vec(),
        RECORDER_TOKEN,
    )
    .await
    .expect("an allowed stream URL is forwarded");
    upstream.bodies.recv().await.expect("forwarded");

    // `stream_outputs[0]` carries field 4000, which this schema does not know.
    let mut nested = stream_output().encode_to_vec();
    nested.extend(unknown_varint_field(4000));
    let mut inner_unknown = base.encode_to_vec();
    inner_unknown.extend(length_delimited(12, &nested));
    let status = bytes_call(
        &proxy,
        "StartRoomCompositeEgress",
        inner_unknown.clone(),
        RECORDER_TOKEN,
    )
    .await
    .expect_err("an unknown field inside a checked message is refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for part in ["livekit.StreamOutput", "4000", "schema"] {
        assert!(
            status.message().contains(part),
            "{part}: {}",
            status.message()
        );
    }
    assert_upstream_got_nothing(&mut upstream, "unknown field in StreamOutput");

    // The same at the top level of the request.
    let mut top_unknown = known.encode_to_vec();
    top_unknown.extend(unknown_varint_field(4000));
    let status = bytes_call(
        &proxy,
        "StartRoomCompositeEgress",
        top_unknown,
        RECORDER_TOKEN,
    )
    .await
    .expect_err("an unknown top-level field is refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for part in ["livekit.RoomCompositeEgressRequest", "4000", "schema"] {
        assert!(
            status.message().contains(part),
            "{part}: {}",
            status.message()
        );
    }
    assert_upstream_got_nothing(&mut upstream, "unknown top-level field");

    // A caller whose policy restricts nothing the request carries: forwarded byte for byte.
    bytes_call(
        &proxy,
        "StartRoomCompositeEgress",
        inner_unknown.clone(),
        OPS_TOKEN,
    )
    .await
    .expect("an unrestricted caller's call is forwarded");
    let forwarded = bounded(
        Duration::from_secs(5),
        "forwarded body",
        upstream.bodies.recv(),
    )
    .await
    .unwrap();
    assert_eq!(
        forwarded, inner_unknown,
        "the exact bytes, unknown field included"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Credentials: exactly one authorization header; the scheme in any case.

#[tokio::test]
async fn duplicate_authorization_headers_are_refused_and_the_scheme_is_case_insensitive() {
    let sim = sim();
    let policy = policy_file("dup-auth");
    let proxy = Gateway::start(&sim.url(), with_policy(&policy));
    let mut client = proxy.client().await;

    for (first, second) in [
        (OPS_TOKEN, OPS_TOKEN),
        ("not-a-known-token", OPS_TOKEN),
        (OPS_TOKEN, "not-a-known-token"),
    ] {
        let mut request = tonic::Request::new(ListEgressRequest::default());
        let metadata = request.metadata_mut();
        metadata.append(
            "authorization",
            MetadataValue::try_from(format!("Bearer {first}")).unwrap(),
        );
        metadata.append(
            "authorization",
            MetadataValue::try_from(format!("Bearer {second}")).unwrap(),
        );
        let status = client
            .list_egress(request)
            .await
            .expect_err("two authorization headers");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status
                .message()
                .contains("more than one authorization header"),
            "{}",
            status.message()
        );
    }

    for scheme in ["BEARER", "bearer", "Bearer"] {
        let mut request = tonic::Request::new(ListEgressRequest::default());
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("{scheme} {OPS_TOKEN}")).unwrap(),
        );
        client
            .list_egress(request)
            .await
            .unwrap_or_else(|s| panic!("scheme {scheme}: {s:?}"));
    }
}

// ---------------------------------------------------------------------------------------
// 3. Only gRPC is served as gRPC.

fn web_request() -> Vec<u8> {
    WebEgressRequest {
        url: "https://example.com/page".into(),
        file_outputs: vec![EncodedFileOutput {
            filepath: "out.mp4".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test]
async fn only_grpc_content_types_are_served_as_grpc() {
    let mut upstream = RawUpstream::start(protobuf(egress_info("EG_web"))).await;
    let proxy = Gateway::start(&upstream.url(), ProxyOptions::default());
    let (mut h2, _driver) = h2_connect(proxy.addr).await;
    let path = "/livekit.Egress/StartWebEgress";
    let body = frame(false, &web_request());

    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ] {
        let answer = h2_exchange(&mut h2, grpc_head(path, content_type, &[]), body.clone()).await;
        assert_eq!(answer.status, 415, "{content_type:?}: {answer:?}");
        assert_upstream_got_nothing(&mut upstream, &format!("{content_type:?}"));
    }

    let answer = h2_exchange(
        &mut h2,
        grpc_head(path, Some("application/grpc+json"), &[]),
        frame(false, br#"{"url":"https://example.com/page"}"#),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.grpc_status(), Some(12), "{answer:?}");
    assert!(
        answer.grpc_message().contains("application/grpc+json"),
        "{}",
        answer.grpc_message()
    );
    assert_upstream_got_nothing(&mut upstream, "application/grpc+json");

    let answer = h2_exchange(
        &mut h2,
        grpc_head(path, Some("application/grpc+proto"), &[]),
        body.clone(),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    assert!(answer.reset.is_none(), "{answer:?}");
    assert_eq!(
        upstream.bodies.try_recv().expect("grpc+proto is forwarded"),
        web_request()
    );
}

#[tokio::test]
async fn two_messages_in_a_unary_body_are_invalid_argument() {
    let mut upstream = RawUpstream::start(protobuf(egress_info("EG_web"))).await;
    let proxy = Gateway::start(&upstream.url(), ProxyOptions::default());
    let (mut h2, _driver) = h2_connect(proxy.addr).await;
    let mut body = frame(false, &web_request());
    body.extend(frame(false, &web_request()));
    let answer = h2_exchange(
        &mut h2,
        grpc_head(
            "/livekit.Egress/StartWebEgress",
            Some("application/grpc"),
            &[],
        ),
        body,
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(3), "{answer:?}");
    assert_upstream_got_nothing(&mut upstream, "two messages");
}

#[tokio::test]
async fn unknown_method_answer_does_not_echo_a_huge_path() {
    let upstream = RawUpstream::start(protobuf(egress_info("EG_web"))).await;
    let proxy = Gateway::start(&upstream.url(), ProxyOptions::default());
    let (mut h2, _driver) = h2_connect(proxy.addr).await;
    let path = format!("/livekit.Egress/{}", "x".repeat(10_000));
    let answer = h2_exchange(
        &mut h2,
        grpc_head(&path, Some("application/grpc"), &[]),
        frame(false, &[]),
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(12), "{:?}", answer.metadata);
    let raw = answer
        .metadata
        .get("grpc-message")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let longest = raw.split(|c| c != 'x').map(str::len).max().unwrap_or(0);
    assert!(
        longest <= 200,
        "grpc-message carries {longest} consecutive x ({} bytes in all)",
        raw.len()
    );
}

// ---------------------------------------------------------------------------------------
// 4. Bodies that never finish; per-connection concurrency.

/// Opens `n` streams on one connection with valid headers and never sends a body; each
/// must end with DEADLINE_EXCEEDED within `limit`.
async fn unfinished_bodies_end_in_deadline_exceeded(
    proxy: &impl Endpoint,
    n: usize,
    headers: &[(&str, &str)],
    limit: Duration,
) {
    let (h2, _driver) = h2_connect(proxy.grpc_addr()).await;
    let mut pending = Vec::new();
    for _ in 0..n {
        let mut h2 = h2.clone().ready().await.expect("h2 ready");
        let head = grpc_head(
            "/livekit.Egress/ListEgress",
            Some("application/grpc"),
            headers,
        );
        // Headers only, stream left open: the body never comes.
        let (response, send) = h2.send_request(head, false).expect("send headers");
        pending.push((response, send));
    }
    let started = Instant::now();
    let mut answers = Vec::new();
    for (response, send) in pending {
        let answer = bounded(limit, "answer to an unfinished body", read_answer(response)).await;
        answers.push(answer);
        drop(send);
    }
    for answer in &answers {
        assert_eq!(answer.grpc_status(), Some(4), "{answer:?}");
    }
    assert!(started.elapsed() <= limit, "{:?}", started.elapsed());
}

#[tokio::test]
async fn unfinished_request_bodies_end_at_the_callers_deadline() {
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default().arg("--max-concurrency").arg("4"),
    );
    unfinished_bodies_end_in_deadline_exceeded(
        &proxy,
        4,
        &[("grpc-timeout", "1S")],
        Duration::from_secs(4),
    )
    .await;
    // The slots are free again.
    bounded(
        Duration::from_secs(5),
        "a normal call",
        proxy
            .client()
            .await
            .list_egress(ListEgressRequest::default()),
    )
    .await
    .expect("a normal call after the unfinished ones");
}

#[tokio::test]
async fn unfinished_request_bodies_end_at_the_upstream_timeout() {
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--max-concurrency")
            .arg("4")
            .arg("--upstream-timeout")
            .arg("1s"),
    );
    unfinished_bodies_end_in_deadline_exceeded(&proxy, 4, &[], Duration::from_secs(4)).await;
    bounded(
        Duration::from_secs(5),
        "a normal call",
        proxy
            .client()
            .await
            .list_egress(ListEgressRequest::default()),
    )
    .await
    .expect("a normal call after the unfinished ones");
}

/// Start hangs upstream, everything else answers an empty message.
fn hang_on_start() -> RawBehaviour {
    RawBehaviour::Routes(vec![
        ("/StartRoomCompositeEgress", RawBehaviour::Hang),
        ("/", protobuf(Vec::new())),
    ])
}

fn start_frame() -> Vec<u8> {
    frame(
        false,
        &RoomCompositeEgressRequest {
            room_name: "room".into(),
            file_outputs: vec![EncodedFileOutput {
                filepath: "out.mp4".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// Starts a call that will hang upstream; returns its pending answer.
fn hanging_start(h2: &mut H2) -> h2::client::ResponseFuture {
    let head = grpc_head(
        "/livekit.Egress/StartRoomCompositeEgress",
        Some("application/grpc"),
        &[],
    );
    let (response, mut send) = h2.send_request(head, false).expect("send headers");
    send.send_data(Bytes::from(start_frame()), true)
        .expect("send body");
    response
}

/// Two calls hang upstream on one connection; a third on it must be shed with
/// RESOURCE_EXHAUSTED naming the connection, while a second connection still gets through.
/// Returns the hanging calls (drop them to end them).
async fn third_call_on_one_connection_is_shed(
    proxy: &Proxy,
    upstream: &mut RawUpstream,
) -> Vec<h2::client::ResponseFuture> {
    let (h2, _driver) = h2_connect(proxy.addr).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut h2 = h2.clone().ready().await.unwrap();
        held.push(hanging_start(&mut h2));
        bounded(
            Duration::from_secs(5),
            "call in flight upstream",
            upstream.bodies.recv(),
        )
        .await;
    }
    let mut h2_third = h2.clone().ready().await.unwrap();
    let third = bounded(
        Duration::from_secs(5),
        "third call on the connection",
        read_answer(hanging_start(&mut h2_third)),
    )
    .await;
    assert_eq!(third.grpc_status(), Some(8), "{third:?}");
    assert!(
        third.grpc_message().contains("connection"),
        "{}",
        third.grpc_message()
    );
    assert_upstream_got_nothing(upstream, "the shed third call");

    // Another connection is not held back by this one.
    bounded(
        Duration::from_secs(5),
        "a call on a second connection",
        proxy
            .client()
            .await
            .list_egress(ListEgressRequest::default()),
    )
    .await
    .expect("a second connection has its own slots");
    held
}

#[tokio::test]
async fn per_connection_concurrency_cap_sheds_the_third_call() {
    let mut upstream = RawUpstream::start(hang_on_start()).await;
    let proxy = Proxy::start(
        &upstream.url(),
        ProxyOptions::default()
            .arg("--max-concurrency-per-connection")
            .arg("2"),
    );
    let held = third_call_on_one_connection_is_shed(&proxy, &mut upstream).await;

    let (status, metrics) = admin_get(proxy.admin, "/metrics").await;
    assert_eq!(status, 200);
    let shed = metric_sum(
        &metrics,
        "egress_proxy_shed_calls_total",
        r#"limit="connection""#,
    );
    assert!(
        shed >= 1.0,
        "shed_calls_total{{limit=connection}} = {shed}:\n{metrics}"
    );
    drop(held);
    drop(proxy);

    // The same cap from the environment.
    while upstream.bodies.try_recv().is_ok() {}
    let proxy = Proxy::start(
        &upstream.url(),
        ProxyOptions::default().env("EGRESS_PROXY_MAX_CONCURRENCY_PER_CONNECTION", "2"),
    );
    let held = third_call_on_one_connection_is_shed(&proxy, &mut upstream).await;
    drop(held);
}

#[tokio::test]
async fn global_concurrency_sheds_are_counted_as_global() {
    let mut upstream = RawUpstream::start(hang_on_start()).await;
    let proxy = Proxy::start(
        &upstream.url(),
        ProxyOptions::default()
            .arg("--max-concurrency")
            .arg("2")
            .env("EGRESS_PROXY_MAX_CONCURRENCY_PER_CONNECTION", "100"),
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let (mut h2, driver) = h2_connect(proxy.addr).await;
        held.push((hanging_start(&mut h2), h2, driver));
        bounded(
            Duration::from_secs(5),
            "call in flight upstream",
            upstream.bodies.recv(),
        )
        .await;
    }
    let (mut h2, _driver) = h2_connect(proxy.addr).await;
    let third = bounded(
        Duration::from_secs(5),
        "third call",
        read_answer(hanging_start(&mut h2)),
    )
    .await;
    assert_eq!(third.grpc_status(), Some(8), "{third:?}");
    let (_, metrics) = admin_get(proxy.admin, "/metrics").await;
    let shed = metric_sum(
        &metrics,
        "egress_proxy_shed_calls_total",
        r#"limit="global""#,
    );
    assert!(
        shed >= 1.0,
        "shed_calls_total{{limit=global}} = {shed}:\n{metrics}"
    );
    drop(held);
}

// ---------------------------------------------------------------------------------------
// 5. A reader that never reads.

#[tokio::test]
async fn slow_readers_do_not_hold_slots_or_memory() {
    let big = ListEgressResponse {
        items: vec![EgressInfo {
            egress_id: "EG_big".into(),
            error: "e".repeat(1024 * 1024),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut upstream = RawUpstream::start(protobuf(big.encode_to_vec())).await;
    let proxy = Proxy::start(
        &upstream.url(),
        ProxyOptions::default()
            .arg("--max-concurrency")
            .arg("8")
            .arg("--max-message-size")
            .arg("4194304"),
    );
    // Warm up (allocator, buffers), then take the baseline.
    let answer = proxy
        .client()
        .await
        .list_egress(ListEgressRequest::default())
        .await
        .expect("warm-up call");
    assert_eq!(answer.into_inner(), big);
    let before = rss_kib(proxy.pid());

    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(1);
    let (h2, driver) = h2_connect_with(proxy.addr, builder).await;
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let mut h2 = h2.clone().ready().await.unwrap();
        let head = grpc_head(
            "/livekit.Egress/ListEgress",
            Some("application/grpc"),
            &[("grpc-timeout", "2S")],
        );
        let (response, mut send) = h2.send_request(head, false).unwrap();
        send.send_data(Bytes::from(frame(false, &[])), true)
            .unwrap();
        // Never read: keep the handles so the streams stay open.
        stuck.push((response, send));
    }

    tokio::time::sleep(Duration::from_millis(3500)).await;
    // The attack happened: all 8 calls went upstream (their answers are what is stuck).
    let mut forwarded = 0;
    while upstream.bodies.try_recv().is_ok() {
        forwarded += 1;
    }
    assert_eq!(forwarded, 1 + 8, "the warm-up call and the 8 stuck ones");
    bounded(
        Duration::from_secs(5),
        "a call from another connection",
        proxy
            .client()
            .await
            .list_egress(ListEgressRequest::default()),
    )
    .await
    .expect("the slots of answers never flushed are free after their deadline");

    drop(stuck);
    drop(h2);
    driver.abort();
    let started = Instant::now();
    let limit_kib = before + 64 * 1024;
    loop {
        let now = rss_kib(proxy.pid());
        if now <= limit_kib {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "RSS {now} KiB, {before} KiB before the attack"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 6. Connections that never speak, idle connections, the connection cap, descriptors.

#[tokio::test]
async fn silent_connections_are_closed_after_the_header_read_timeout() {
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default()
            .arg("--header-read-timeout")
            .arg("1s"),
    );
    // Not a byte.
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(4)).await;
    assert!(
        took.is_some(),
        "a silent connection is still open after 4 s"
    );

    // Preface and SETTINGS, then never a request.
    let mut preface_only = TcpStream::connect(proxy.addr).await.unwrap();
    preface_only.write_all(PREFACE_AND_SETTINGS).await.unwrap();
    let took = closed_within(&mut preface_only, Duration::from_secs(4)).await;
    assert!(
        took.is_some(),
        "a connection without a request is still open after 4 s"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_but_watch_streams_are_not() {
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default().arg("--idle-timeout").arg("1s"),
    );

    // A health Watch on its own connection stays open past the idle timeout.
    let mut health = tonic_health::pb::health_client::HealthClient::new(proxy.channel().await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    bounded(
        Duration::from_secs(5),
        "first health status",
        watch.message(),
    )
    .await
    .expect("watch stream")
    .expect("a first status");
    match tokio::time::timeout(Duration::from_millis(3500), watch.message()).await {
        Err(_) => {}          // still open, nothing new: right
        Ok(Ok(Some(_))) => {} // a status change (upstream probe): still open
        Ok(other) => panic!("the Watch stream ended under the idle timeout: {other:?}"),
    }

    // One call, then silence: the connection is closed.
    let (mut h2, driver) = h2_connect(proxy.addr).await;
    let answer = h2_exchange(
        &mut h2,
        grpc_head("/livekit.Egress/ListEgress", Some("application/grpc"), &[]),
        frame(false, &[]),
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    assert!(answer.reset.is_none(), "{answer:?}");
    // `h2` stays alive: the client itself must not be what ends the connection.
    bounded(
        Duration::from_secs(6),
        "the idle connection's close",
        driver,
    )
    .await
    .unwrap();
    drop(h2);

    // And the Watch is still there.
    if let Ok(other) = tokio::time::timeout(Duration::from_millis(500), watch.message()).await {
        assert!(
            matches!(other, Ok(Some(_))),
            "the Watch stream ended: {other:?}"
        );
    }
}

#[tokio::test]
async fn connection_cap_keeps_the_admin_endpoint_and_frees_slots() {
    let sim = sim();
    let proxy = Gateway::start(
        &sim.url(),
        ProxyOptions::default().arg("--max-connections").arg("2"),
    );
    let (first, ok) = served(proxy.addr, Duration::from_secs(5)).await;
    assert!(ok, "first connection served");
    let (second, ok) = served(proxy.addr, Duration::from_secs(5)).await;
    assert!(ok, "second connection served");
    let (third, ok) = served(proxy.addr, Duration::from_secs(1)).await;
    assert!(!ok, "a third connection is served over --max-connections 2");

    let (status, _) = bounded(
        Duration::from_secs(5),
        "/healthz at the connection cap",
        admin_get(proxy.admin, "/healthz"),
    )
    .await;
    assert_eq!(status, 200);

    drop(first);
    drop(third);
    let started = Instant::now();
    loop {
        let (_conn, ok) = served(proxy.addr, Duration::from_secs(1)).await;
        if ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no new connection served after one of the two closed"
        );
    }
    drop(second);
}

#[tokio::test]
async fn startup_log_reports_the_open_file_limit() {
    let sim = sim();
    let proxy = Proxy::start(&sim.url(), ProxyOptions::default());
    // Logged at startup; allow for it to follow the readiness line.
    let started = Instant::now();
    while !proxy.log().contains("RLIMIT_NOFILE") {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no RLIMIT_NOFILE in the startup log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn descriptor_exhaustion_keeps_health_and_recovers() {
    let sim = sim();
    let proxy = Proxy::start(&sim.url(), ProxyOptions::default().nofile(64));
    // Up to 200 connections; once the proxy stops accepting, the kernel's accept queue
    // (128) fills and further connects time out: the flood has done its work then.
    let mut flood = Vec::new();
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(proxy.addr)).await {
            Ok(Ok(tcp)) => flood.push(tcp),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    assert!(flood.len() > 64, "only {} connections opened", flood.len());
    // Give the proxy time to run into the limit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = bounded(
        Duration::from_secs(10),
        "/healthz with descriptors exhausted",
        admin_get(proxy.admin, "/healthz"),
    )
    .await;
    assert_eq!(status, 200);

    drop(flood);
    let started = Instant::now();
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(3), async {
            let channel = tonic::transport::Channel::from_shared(proxy.url())
                .unwrap()
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            egress_proto::livekit::egress_client::EgressClient::new(channel)
                .list_egress(ListEgressRequest::default())
                .await
                .map_err(|s| s.to_string())
        })
        .await;
        match attempt {
            Ok(Ok(_)) => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(15),
                "no call succeeded after the flood closed: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 7. The caller's deadline governs the upstream timeout.

fn twirp_timeout_ms(head: &str) -> u64 {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-twirp-timeout-ms")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no X-Twirp-Timeout-Ms in:\n{head}"))
}

async fn list_with_deadline(proxy: &impl Endpoint, timeout: Option<Duration>) {
    let mut request = tonic::Request::new(ListEgressRequest::default());
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    proxy
        .egress_client()
        .await
        .list_egress(request)
        .await
        .expect("list");
}

#[tokio::test]
async fn the_callers_deadline_governs_the_upstream_timeout() {
    let mut upstream = RawUpstream::start(protobuf(Vec::new())).await;
    let proxy = Gateway::start(
        &upstream.url(),
        ProxyOptions::default().arg("--upstream-timeout").arg("2s"),
    );
    list_with_deadline(&proxy, Some(Duration::from_secs(10))).await;
    let ms = twirp_timeout_ms(&upstream.heads.recv().await.unwrap());
    assert!(ms >= 9000, "caller's 10 s deadline, upstream told {ms} ms");

    list_with_deadline(&proxy, None).await;
    let ms = twirp_timeout_ms(&upstream.heads.recv().await.unwrap());
    assert!((1500..=2000).contains(&ms), "no caller deadline: {ms} ms");
    drop(proxy);

    let proxy = Gateway::start(
        &upstream.url(),
        ProxyOptions::default()
            .arg("--upstream-timeout")
            .arg("2s")
            .arg("--max-call-timeout")
            .arg("3s"),
    );
    list_with_deadline(&proxy, Some(Duration::from_secs(10))).await;
    let ms = twirp_timeout_ms(&upstream.heads.recv().await.unwrap());
    assert!(ms <= 3000, "--max-call-timeout 3s, upstream told {ms} ms");
}

// ---------------------------------------------------------------------------------------
// 8. Drain ends hanging calls with a status, not a broken connection.

#[tokio::test]
async fn drain_timeout_ends_hanging_calls_with_unavailable() {
    let mut upstream = RawUpstream::start(RawBehaviour::Hang).await;
    let proxy = Proxy::start(
        &upstream.url(),
        ProxyOptions::default().arg("--drain-timeout").arg("1s"),
    );
    let mut client = proxy.client().await;
    let call = tokio::spawn(async move {
        client
            .stop_egress(StopEgressRequest {
                egress_id: "EG_hang".into(),
            })
            .await
    });
    bounded(
        Duration::from_secs(5),
        "call upstream",
        upstream.bodies.recv(),
    )
    .await;
    let mut proxy = proxy;
    let proxy = tokio::task::spawn_blocking(move || {
        proxy.terminate(Duration::from_secs(10));
        proxy
    })
    .await
    .unwrap();
    let status = bounded(Duration::from_secs(5), "the hanging call's end", call)
        .await
        .unwrap()
        .expect_err("no answer upstream");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("shutting down"),
        "{status:?}\nlog:\n{}",
        proxy.log()
    );
}

// ---------------------------------------------------------------------------------------
// 9. Compression.

#[tokio::test]
async fn compressed_requests_reach_the_upstream_decompressed() {
    let mut upstream = RawUpstream::start(protobuf(egress_info("EG_z"))).await;
    let proxy = Gateway::start(&upstream.url(), ProxyOptions::default());
    let message = StopEgressRequest {
        egress_id: format!("EG_{}", "z".repeat(300)),
    };
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let info = proxy
            .client()
            .await
            .send_compressed(encoding)
            .stop_egress(message.clone())
            .await
            .unwrap_or_else(|s| panic!("{encoding:?}: {s:?}"))
            .into_inner();
        assert_eq!(info.egress_id, "EG_z");
        let body = upstream.bodies.try_recv().expect("forwarded");
        assert_eq!(
            body,
            message.encode_to_vec(),
            "{encoding:?}: plain protobuf upstream"
        );
    }
}

#[tokio::test]
async fn gzip_bomb_is_resource_exhausted() {
    use std::io::Write;
    let mut upstream = RawUpstream::start(protobuf(egress_info("EG_z"))).await;
    let proxy = Gateway::start(
        &upstream.url(),
        ProxyOptions::default()
            .arg("--max-message-size")
            .arg("1048576"),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 16 * 1024 * 1024]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(
        bomb.len() < 1024 * 1024,
        "the bomb fits the limit compressed"
    );
    let (mut h2, _driver) = h2_connect(proxy.addr).await;
    let answer = h2_exchange(
        &mut h2,
        grpc_head(
            "/livekit.Egress/StopEgress",
            Some("application/grpc"),
            &[("grpc-encoding", "gzip")],
        ),
        frame(true, &bomb),
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(8), "{:?}", answer.metadata);
    assert_upstream_got_nothing(&mut upstream, "gzip bomb");
}

#[tokio::test]
async fn list_answers_are_gzip_compressed_when_the_caller_accepts_gzip() {
    use std::io::Read;
    let list = ListEgressResponse {
        items: (0..20)
            .map(|i| EgressInfo {
                egress_id: format!("EG_{i}"),
                room_name: "a-room-with-a-long-name".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let upstream = RawUpstream::start(RawBehaviour::Routes(vec![
        ("/ListEgress", protobuf(list.encode_to_vec())),
        ("/StopEgress", protobuf(egress_info("EG_stop"))),
    ]))
    .await;
    let proxy = Gateway::start(&upstream.url(), ProxyOptions::default());
    let (mut h2, _driver) = h2_connect(proxy.addr).await;
    let accept = [("grpc-accept-encoding", "gzip")];

    let answer = h2_exchange(
        &mut h2,
        grpc_head(
            "/livekit.Egress/ListEgress",
            Some("application/grpc"),
            &accept,
        ),
        frame(false, &[]),
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    assert!(answer.reset.is_none(), "{answer:?}");
    assert_eq!(
        answer.headers.get("grpc-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..]),
        "{:?}",
        answer.headers
    );
    assert_eq!(answer.body.first(), Some(&1), "compressed flag");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&answer.body[5..])
        .read_to_end(&mut plain)
        .expect("gzip body");
    assert_eq!(ListEgressResponse::decode(&plain[..]).unwrap(), list);

    let answer = h2_exchange(
        &mut h2,
        grpc_head(
            "/livekit.Egress/StopEgress",
            Some("application/grpc"),
            &accept,
        ),
        frame(
            false,
            &StopEgressRequest {
                egress_id: "EG_stop".into(),
            }
            .encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    assert!(answer.reset.is_none(), "{answer:?}");
    let encoding = answer.headers.get("grpc-encoding").map(|v| v.as_bytes());
    assert!(
        encoding.is_none() || encoding == Some(b"identity"),
        "{:?}",
        answer.headers
    );
    assert_eq!(answer.body.first(), Some(&0), "uncompressed flag");
}

/// Waits (bounded) for an audit line of `egress_id` whose outcome is `outcome`.
async fn audited(proxy: &Proxy, egress_id: &str, outcome: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = proxy.log();
        if log.lines().any(|line| {
            line.contains("egress call") && line.contains(egress_id) && line.contains(outcome)
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no audit line for {egress_id} with {outcome}; log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A call that never gets LiveKit's answer is still audited: one whose deadline passes, and
/// one whose caller goes away while LiveKit is silent.
#[tokio::test]
async fn calls_that_never_finish_are_audited() {
    let mut upstream = RawUpstream::start(RawBehaviour::Hang).await;
    let proxy = Proxy::start(&upstream.url(), ProxyOptions::default());
    let mut client = proxy.client().await;

    // A raw call: tonic's client would enforce the same deadline itself and cancel first.
    let message = egress_proto::livekit::StopEgressRequest {
        egress_id: "EG_past_deadline".into(),
    }
    .encode_to_vec();
    let answer = egress_e2e::raw_grpc_call(
        proxy.addr,
        "/livekit.Egress/StopEgress",
        &[("grpc-timeout", "300m")],
        &message,
    )
    .await;
    assert_eq!(answer.grpc_status(), Some(4), "{answer:?}");
    audited(&proxy, "EG_past_deadline", "DeadlineExceeded").await;

    let call = tokio::spawn(async move {
        client
            .stop_egress(egress_proto::livekit::StopEgressRequest {
                egress_id: "EG_caller_left".into(),
            })
            .await
    });
    // Both requests reach the silent upstream; cancel the second once it is there.
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), upstream.bodies.recv())
            .await
            .expect("request reached upstream");
    }
    call.abort();
    audited(&proxy, "EG_caller_left", "Cancelled").await;
}
