//! What the event tests need: LiveKit-signed webhooks posted over plain HTTP/1.1, a watcher
//! client for `egress_gateway.v1.EgressEvents`, and a real `redis-server` on a free port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use egress_proto::egress_gateway::v1::egress_events_client::EgressEventsClient;
use egress_proto::egress_gateway::v1::{EgressEvent, WatchEgressRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::{API_KEY, API_SECRET};

/// A webhook body as LiveKit writes it (protojson of `livekit.WebhookEvent`, camelCase).
pub fn egress_webhook(event: &str, id: &str, egress_id: &str, room: &str, status: &str) -> String {
    format!(
        r#"{{"event":"{event}","egressInfo":{{"egressId":"{egress_id}","roomName":"{room}","status":"{status}"}},"id":"{id}","createdAt":"1700000000"}}"#
    )
}

/// A token for `body` signed as LiveKit signs webhooks, with the test credentials.
pub fn sign(body: &str) -> String {
    egress_auth::sign_webhook(
        &egress_auth::Credentials::new(API_KEY, API_SECRET),
        body.as_bytes(),
        SystemTime::now(),
    )
    .expect("sign the webhook")
}

/// POSTs `body` to `addr`'s `/webhook` with `authorization` (if any); the HTTP status.
pub async fn post_webhook(addr: SocketAddr, body: &str, authorization: Option<&str>) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the webhook receiver");
    let mut request = format!(
        "POST /webhook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/webhook+json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(authorization) = authorization {
        request.push_str(&format!("authorization: {authorization}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the receiver answers within 10 s")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

/// Posts a correctly signed webhook; panics unless it was accepted.
pub async fn deliver(addr: SocketAddr, body: &str) {
    let status = post_webhook(addr, body, Some(&sign(body))).await;
    assert_eq!(status, 200, "webhook {body} refused");
}

/// An `EgressEvents` client on `channel`.
pub fn events_client(channel: Channel) -> EgressEventsClient<Channel> {
    EgressEventsClient::new(channel)
}

/// Opens a watch with `request`, with `bearer` as the caller's token if given.
pub async fn watch(
    channel: Channel,
    request: WatchEgressRequest,
    bearer: Option<&str>,
) -> Result<tonic::Streaming<EgressEvent>, tonic::Status> {
    let mut request = tonic::Request::new(request);
    if let Some(token) = bearer {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        );
    }
    events_client(channel)
        .watch(request)
        .await
        .map(tonic::Response::into_inner)
}

/// The next event within `within`, or `None` when none came.
pub async fn next_event(
    stream: &mut tonic::Streaming<EgressEvent>,
    within: Duration,
) -> Option<Result<EgressEvent, tonic::Status>> {
    match tokio::time::timeout(within, stream.message()).await {
        Err(_) => None,
        Ok(Ok(Some(event))) => Some(Ok(event)),
        Ok(Ok(None)) => None,
        Ok(Err(status)) => Some(Err(status)),
    }
}

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one; panics with what to install when `redis-server` is missing.
    pub fn start() -> RedisServer {
        Self::start_on(free_port())
    }

    /// Starts one on `port` (to restart a server where clients expect it).
    pub fn start_on(port: u16) -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("egress-e2e-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis work dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian package redis-server; .ci/run installs it)");
        let server = RedisServer { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
