//! Harness for the end-to-end tests: the gateway in-process ([`Gateway`], the same `App`
//! the binary runs) or the real `egress-proxy` binary ([`Proxy`]: started on a loopback
//! port, its log captured, stopped with a signal like an orchestrator would), the
//! simulator, raw upstreams and raw gRPC calls.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod certs;
pub mod events;
pub mod gateway;

pub use gateway::{Endpoint, Gateway};

use egress_proto::livekit::egress_client::EgressClient;
use tonic::transport::Channel;

/// API key and secret the tests give both the proxy and the simulator.
pub const API_KEY: &str = "e2e-key";
pub const API_SECRET: &str = "e2e-secret-that-must-never-be-logged";

/// The simulator on a free loopback port with the test credentials: egresses ACTIVE after
/// 500 ms, and a short wait (100 ms instead of LiveKit's 3 s) before StopEgress /
/// UpdateStream on an egress without a worker (unknown or ended) answer from the store.
pub fn sim() -> egress_sim::SimHandle {
    sim_with(sim_builder())
}

/// The simulator, its egresses turning ACTIVE `delay` after they start.
pub fn sim_activating_after(delay: Duration) -> egress_sim::SimHandle {
    sim_with(sim_builder().start_delay(delay))
}

/// [`sim`]'s configuration, to refine (rooms, workers, delays) before [`spawn_sim`].
pub fn sim_builder() -> egress_sim::SimulatorBuilder {
    egress_sim::Simulator::builder()
        .start_delay(Duration::from_millis(500))
        .gone_worker_delay(Duration::from_millis(100))
}

/// A simulator with its defaults and the test credentials on `addr` (port 0 for a free one,
/// or a fixed port to start it where a gateway already looks).
pub fn sim_on(addr: &str) -> egress_sim::SimHandle {
    egress_sim::Simulator::builder()
        .credentials(egress_auth::Credentials::new(API_KEY, API_SECRET))
        .build()
        .spawn(addr.parse().expect("a socket address"))
        .expect("start the simulator")
}

/// Starts a simulator from `builder` (e.g. [`sim_builder`]) with the test credentials.
pub fn spawn_sim(builder: egress_sim::SimulatorBuilder) -> egress_sim::SimHandle {
    sim_with(builder)
}

fn sim_with(builder: egress_sim::SimulatorBuilder) -> egress_sim::SimHandle {
    builder
        .credentials(egress_auth::Credentials::new(API_KEY, API_SECRET))
        .build()
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("start the simulator")
}

/// Path of the freshly built `egress-proxy` binary (built once per test process).
pub fn proxy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // This test executable is `<target>/<profile>/deps/e2e-…`: the binary is built into
        // the same `<target>/<profile>`, whatever the target directory or profile.
        let exe = std::env::current_exe().expect("the test executable's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from <target>/<profile>/deps")
            .to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("debug")
            .to_owned();
        let profile = if profile == "debug" {
            "dev".to_owned()
        } else {
            profile
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // A no-op when `cargo test --workspace` already built it; keeps `cargo test -p
        // egress-e2e` self-sufficient.
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "--profile", &profile])
            .args(["-p", "egress-proxy", "--bin", "egress-proxy"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building egress-proxy failed");
        profile_dir.join("egress-proxy")
    })
}

/// A running proxy process. Killed on drop if still running.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    /// The admin HTTP listener (/metrics, /healthz, /readyz).
    pub admin: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// How to start the proxy.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Runs the proxy under `prlimit --nofile=N:N` (file descriptor exhaustion tests).
    pub nofile: Option<u64>,
}

impl ProxyOptions {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Caps the proxy's open files (soft and hard `RLIMIT_NOFILE`) at `limit`.
    pub fn nofile(mut self, limit: u64) -> Self {
        self.nofile = Some(limit);
        self
    }
}

impl Proxy {
    /// Starts the proxy in front of `upstream_url` with the test credentials.
    pub fn start(upstream_url: &str, options: ProxyOptions) -> Proxy {
        // Defaults first, so the caller's own `env` entries win.
        let mut env = vec![
            ("LIVEKIT_URL".to_owned(), upstream_url.to_owned()),
            ("LIVEKIT_API_KEY".to_owned(), API_KEY.to_owned()),
            ("LIVEKIT_API_SECRET".to_owned(), API_SECRET.to_owned()),
        ];
        env.extend(options.env);
        Self::spawn(ProxyOptions {
            args: options.args,
            env,
            nofile: options.nofile,
        })
    }

    /// Starts `egress-proxy --dev` (embedded simulator).
    pub fn start_dev(options: ProxyOptions) -> Proxy {
        Self::spawn(options.arg("--dev"))
    }

    fn spawn(options: ProxyOptions) -> Proxy {
        // `prlimit` sets the limit and then execs the proxy: the child's pid is the proxy's.
        let mut cmd = match options.nofile {
            Some(limit) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(proxy_bin());
                cmd
            }
            None => Command::new(proxy_bin()),
        };
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .args(&options.args)
            .env_remove("LIVEKIT_URL")
            .env_remove("LIVEKIT_API_KEY")
            .env_remove("LIVEKIT_API_SECRET")
            .env_remove("LIVEKIT_API_SECRET_FILE")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn egress-proxy");
        let (log, rx) = read_log(&mut child);
        let (addr, admin) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "egress-proxy did not become ready; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Proxy {
            child,
            addr,
            admin,
            log,
        }
    }

    /// `http://ADDR` of the gRPC listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A tonic client for `livekit.Egress` through the proxy.
    pub async fn client(&self) -> EgressClient<Channel> {
        EgressClient::new(self.channel().await)
    }

    /// A plain channel to the proxy.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to egress-proxy")
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for egress-proxy") {
                return status;
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                panic!("egress-proxy did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Extracts `listen=ADDR` and `admin=ADDR` from the proxy's readiness line.
/// Collects a spawned gateway's stderr into a shared log, and sends the listener addresses
/// of its `egress-proxy ready` line (text or JSON logs) once it appears.
pub fn read_log(
    child: &mut Child,
) -> (
    Arc<Mutex<String>>,
    std::sync::mpsc::Receiver<(SocketAddr, SocketAddr)>,
) {
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addrs) = ready_addrs(&line)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addrs);
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    (log, rx)
}

/// The gRPC and admin addresses of an `egress-proxy ready` line, in text or JSON format.
pub fn ready_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.contains("egress-proxy ready") {
        return None;
    }
    let field = |name: &str| -> Option<SocketAddr> {
        for pattern in [format!(" {name}="), format!("\"{name}\":\"")] {
            if let Some(start) = line.find(&pattern) {
                let rest = &line[start + pattern.len()..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"')
                    .unwrap_or(rest.len());
                return rest[..end].parse().ok();
            }
        }
        None
    };
    Some((field("listen")?, field("admin")?))
}

/// `GET http://ADMIN{path}` over HTTP/1.1: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    http_request(admin, "GET", path, "").await
}

/// One plain HTTP/1.1 request with a JSON body (admin endpoint, simulator control routes):
/// (status, body).
pub async fn http_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// What [`RawUpstream`] does with each request it reads.
#[derive(Debug, Clone)]
pub enum RawBehaviour {
    /// Answers `200` with this content type and body, exactly as given.
    Answer {
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Never answers; reports (on the channel) how long the client kept the connection
    /// open after the request arrived.
    Hang,
    /// Writes these bytes as the whole answer (status line, headers and body, exactly as
    /// given), then closes the connection: for answers no well-behaved server sends, such as a
    /// body shorter than its `Content-Length`.
    Verbatim(Vec<u8>),
    /// The behaviour of the first entry whose text occurs in the request's path (e.g.
    /// `"/ListEgress"`); `404` when none does.
    Routes(Vec<(&'static str, RawBehaviour)>),
}

impl RawBehaviour {
    /// What to do with a request to `path`: `Answer` or `Hang`, never `Routes`.
    fn for_path(&self, path: &str) -> Option<&RawBehaviour> {
        match self {
            RawBehaviour::Routes(routes) => routes
                .iter()
                .find(|(part, _)| path.contains(part))
                .and_then(|(_, behaviour)| behaviour.for_path(path)),
            other => Some(other),
        }
    }
}

/// A deliberately dumb HTTP/1.1 upstream for what the simulator cannot do: answer arbitrary
/// bytes (even a malformed answer), or hang and observe when the gateway gives up on the
/// connection.
#[derive(Debug)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    /// Time from each request's arrival until the peer closed the connection (`Hang`).
    pub closed_after: tokio::sync::mpsc::UnboundedReceiver<Duration>,
    /// Each request body received.
    pub bodies: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    /// Each request head received (request line and headers, as sent), health probes
    /// excepted, in the same order as `bodies`.
    pub heads: tokio::sync::mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start(behaviour: RawBehaviour) -> RawUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed_after) = tokio::sync::mpsc::unbounded_channel();
        let (body_tx, bodies) = tokio::sync::mpsc::unbounded_channel();
        let (head_tx, heads) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let behaviour = behaviour.clone();
                let closed_tx = closed_tx.clone();
                let body_tx = body_tx.clone();
                let head_tx = head_tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        // One request at a time: head, then Content-Length bytes of body.
                        let Some((head_end, length)) =
                            read_request_head(&mut stream, &mut buf).await
                        else {
                            return;
                        };
                        if !read_at_least(&mut stream, &mut buf, head_end + length).await {
                            return;
                        }
                        let is_get = buf.starts_with(b"GET ");
                        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                        let body = buf[head_end..head_end + length].to_vec();
                        buf.drain(..head_end + length);
                        if is_get {
                            // The gateway's health probe: answer like LiveKit's `GET /`.
                            let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK";
                            if stream.write_all(ok.as_bytes()).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let _ = head_tx.send(head);
                        let _ = body_tx.send(body);
                        match behaviour.for_path(&path) {
                            None => {
                                let missing = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                                if stream.write_all(missing.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Some(RawBehaviour::Routes(_)) => unreachable!("resolved by for_path"),
                            Some(RawBehaviour::Answer { content_type, body }) => {
                                let head = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                                    body.len()
                                );
                                if stream.write_all(head.as_bytes()).await.is_err()
                                    || stream.write_all(body).await.is_err()
                                {
                                    return;
                                }
                            }
                            Some(RawBehaviour::Verbatim(answer)) => {
                                let _ = stream.write_all(answer).await;
                                let _ = stream.shutdown().await;
                                return;
                            }
                            Some(RawBehaviour::Hang) => {
                                let arrived = Instant::now();
                                loop {
                                    match stream.read(&mut chunk).await {
                                        Ok(0) | Err(_) => {
                                            let _ = closed_tx.send(arrived.elapsed());
                                            return;
                                        }
                                        Ok(_) => {}
                                    }
                                }
                            }
                        }
                    }
                });
            }
        });
        RawUpstream {
            addr,
            closed_after,
            bodies,
            heads,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads from `stream` into `buf` until `buf` holds a whole HTTP/1.1 request head. Returns
/// where the head ends (after its blank line) and its `Content-Length` (0 when absent), or
/// `None` when the peer closes or fails first.
pub async fn read_request_head(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            return Some((pos + 4, length));
        }
        if !read_more(stream, buf).await {
            return None;
        }
    }
}

/// Reads from `stream` into `buf` until it holds at least `len` bytes; `false` when the peer
/// closes or fails first.
pub async fn read_at_least(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    len: usize,
) -> bool {
    while buf.len() < len {
        if !read_more(stream, buf).await {
            return false;
        }
    }
    true
}

async fn read_more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A forward proxy that only tunnels (`CONNECT host:port`), like the egress proxies of locked-
/// down clusters. It records each request head it was sent.
#[derive(Debug)]
pub struct ConnectProxy {
    pub addr: SocketAddr,
    pub heads: tokio::sync::mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (heads_tx, heads) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let heads_tx = heads_tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let Some((end, _)) = read_request_head(&mut client, &mut buf).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let _ = heads_tx.send(head.clone());
                    let target = head
                        .strip_prefix("CONNECT ")
                        .and_then(|rest| rest.split_whitespace().next());
                    let Some(mut upstream) = (match target {
                        Some(t) => tokio::net::TcpStream::connect(t).await.ok(),
                        None => None,
                    }) else {
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    };
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Bytes the client sent after the head belong to the tunnel.
                    if upstream.write_all(&buf[end..]).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        ConnectProxy { addr, heads, task }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// What a raw gRPC exchange returned: HTTP status, headers and trailers merged (a
/// trailers-only answer carries `grpc-status` in its headers), and the body bytes.
#[derive(Debug)]
pub struct RawGrpcAnswer {
    pub http_status: http::StatusCode,
    pub metadata: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl RawGrpcAnswer {
    /// The `grpc-status` code, from trailers or a trailers-only answer.
    pub fn grpc_status(&self) -> Option<i32> {
        self.metadata
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// One unary gRPC call made by hand over HTTP/2, with whatever headers the test wants.
///
/// Generated clients enforce `grpc-timeout` themselves and give up first; a test of the
/// proxy's own deadline handling needs a client that waits for the server's answer.
pub async fn raw_grpc_call(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    message: &[u8],
) -> RawGrpcAnswer {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap();
    let response = sender.send_request(request).await.expect("send");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    let mut metadata = parts.headers;
    if let Some(trailers) = collected.trailers() {
        metadata.extend(trailers.clone());
    }
    let bytes = collected.to_bytes();
    let body = if bytes.len() >= 5 {
        bytes.slice(5..)
    } else {
        bytes
    };
    RawGrpcAnswer {
        http_status: parts.status,
        metadata,
        body,
    }
}
