//! Harness for the end-to-end tests: builds and starts the real `egress-proxy` binary on a
//! loopback port, captures its log, and stops it with a signal like an orchestrator would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use egress_proto::livekit::egress_client::EgressClient;
use tonic::transport::Channel;

/// API key and secret the tests give both the proxy and the simulator.
pub const API_KEY: &str = "e2e-key";
pub const API_SECRET: &str = "e2e-secret-that-must-never-be-logged";

/// Path of the freshly built `egress-proxy` binary (built once per test process).
pub fn proxy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // A no-op when `cargo test --workspace` already built it; keeps `cargo test -p
        // egress-e2e` self-sufficient.
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "-p", "egress-proxy", "--bin", "egress-proxy"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building egress-proxy failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug").join("egress-proxy")
    })
}

/// A running proxy process. Killed on drop if still running.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// How to start the proxy.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
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
}

impl Proxy {
    /// Starts the proxy in front of `upstream_url` with the test credentials.
    pub fn start(upstream_url: &str, options: ProxyOptions) -> Proxy {
        Self::spawn(
            options
                .env("LIVEKIT_URL", upstream_url)
                .env("LIVEKIT_API_KEY", API_KEY)
                .env("LIVEKIT_API_SECRET", API_SECRET),
        )
    }

    /// Starts `egress-proxy --dev` (embedded simulator).
    pub fn start_dev(options: ProxyOptions) -> Proxy {
        Self::spawn(options.arg("--dev"))
    }

    fn spawn(options: ProxyOptions) -> Proxy {
        let mut cmd = Command::new(proxy_bin());
        cmd.arg("--listen")
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
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listen_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("egress-proxy did not become ready; log:\n{}", log.lock().unwrap());
            }
        };
        Proxy { child, addr, log }
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

/// Extracts `listen=ADDR` from the proxy's readiness line.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("egress-proxy ready") {
        return None;
    }
    let start = line.find("listen=")? + "listen=".len();
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].parse().ok()
}
