//! `egress-bench`: measures what `egress-proxy` costs in latency, throughput, CPU and memory.
//!
//! One run starts a LiveKit egress simulator (a separate `egress-sim` process by default) and
//! the `egress-proxy` binary in front of it, then, per concurrency level, drives the same
//! Twirp call straight to the simulator (direct) and the same gRPC call through the proxy,
//! and prints a markdown table checked against the gateway's targets. It is run by hand:
//!
//! ```text
//! cargo run --release -p egress-bench -- [--duration 5s] [--concurrency 1,16,64,256] [--json out.json] [--soak 10m]
//! cargo run --release -p egress-bench -- --events [--watchers 1,1000,10000] [--event-rate 200]
//! ```

mod events;
mod load;
mod procs;
mod report;
mod threads;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use clap::{Parser, ValueEnum};
use egress_auth::{Credentials, VideoGrants};

use crate::load::{ProxyTarget, Target, Twirp, TwirpEncoding};
use crate::procs::{ChildGuard, Pid, ReadyOn};
use crate::report::{Level, Memory, Report, RunInfo};

const API_KEY: &str = "benchkey";
const API_SECRET: &str = "egress-bench-secret-not-for-production";

/// Benchmark of egress-proxy: latency, throughput, CPU and memory against direct Twirp calls
/// to the LiveKit egress simulator. Builds and starts egress-sim and egress-proxy itself.
#[derive(Debug, Parser)]
#[command(name = "egress-bench", version)]
struct Args {
    /// Measured time per phase (each concurrency level has a direct and a proxy phase).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,

    /// Warm-up before each phase's measurement window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,

    /// Concurrency levels: callers each keeping one call in flight.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    concurrency: Vec<usize>,

    /// Twirp encodings whose callers also load the proxy's Twirp door at each level (a row
    /// each beside gRPC's); `--twirp-in` alone for none.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        num_args = 0..,
        default_value = "protobuf,json"
    )]
    twirp_in: Vec<TwirpEncoding>,

    /// Write every number as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,

    /// Soak mode instead of the benchmark: constant load through the proxy for this long,
    /// printing throughput, latency and the proxy's RSS every 10 s.
    #[arg(long, value_parser = parse_duration)]
    soak: Option<Duration>,

    /// Events mode instead of the benchmark: egress events from LiveKit-signed webhooks to
    /// EgressEvents/Watch streams, on one replica and across two replicas through Redis.
    #[arg(long, conflicts_with = "soak")]
    events: bool,

    /// Events mode: watcher counts, one level each.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
    watchers: Vec<usize>,

    /// Events mode: webhooks posted per second during --duration.
    #[arg(long, default_value_t = 200.0)]
    event_rate: f64,

    /// Events mode: watch streams per HTTP/2 connection; also the proxy's
    /// --max-concurrency-per-connection.
    #[arg(long, default_value_t = 100)]
    watchers_per_connection: usize,

    /// Events mode: 1 (one proxy) and/or 2 (webhooks to one proxy, watchers on another,
    /// through a redis-server this tool starts).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    replicas: Vec<usize>,

    /// Events mode: the redis-server binary.
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,

    /// Callers in soak mode.
    #[arg(long, default_value_t = 16)]
    soak_concurrency: usize,

    /// Calls held in flight at once for the memory test (0 skips it).
    #[arg(long, default_value_t = 1000)]
    inflight: usize,

    /// Upstream latency injected (ListEgress latency fault) for the in-flight test.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    inflight_delay: Duration,

    /// In-flight test: also read the proxy's RSS this long after the last call finished
    /// (e.g. 60s: does the allocator give the burst's memory back?). Off by default, so a
    /// default run is not a minute longer; the RSS one second after is always read.
    #[arg(long, value_parser = parse_duration)]
    inflight_settle: Option<Duration>,

    /// Most HTTP/2 connections the callers share in a proxy phase (never more than C).
    #[arg(long, default_value_t = 4)]
    channels: usize,

    /// `--max-concurrency` of the proxy (must exceed --inflight).
    #[arg(long, default_value_t = 2048)]
    proxy_max_concurrency: usize,

    /// RUST_LOG of the proxy. It must enable egress_proxy's info readiness line; try `info`
    /// (the proxy's default) to include the per-call audit log line in the cost.
    #[arg(long, default_value = "warn,egress_proxy=info")]
    proxy_rust_log: String,

    /// Tokio worker threads of the load generator (default: CPU count).
    #[arg(long)]
    threads: Option<usize>,

    /// Tokio worker threads of the proxy (its `TOKIO_WORKER_THREADS`; default: CPU count).
    /// Several (`1,2,4,8`): thread-count mode, a table of CPU per call by thread count (a
    /// fresh proxy for each).
    #[arg(long, value_delimiter = ',')]
    proxy_threads: Vec<usize>,

    /// Thread-count mode: pin the proxy with N worker threads to CPUs FROM..FROM+N-1
    /// (`taskset -c`), so that threads and cores grow together.
    #[arg(long)]
    pin_proxy_from: Option<usize>,

    /// Thread-count mode: for each count N also run the proxy with one worker thread and
    /// `--io-threads N` (connections on N single-threaded runtimes), on the same CPUs.
    #[arg(long)]
    compare_io_threads: bool,

    /// CPUs the proxy may run on (`taskset -c` list, e.g. `1` or `2-9`); the load generator
    /// and simulator keep the rest when the bench itself runs under `taskset -c`.
    #[arg(long)]
    proxy_cpus: Option<String>,

    /// Another argument for the proxy, e.g. `--proxy-arg=--upstream-http2` (repeatable).
    #[arg(long = "proxy-arg", allow_hyphen_values = true)]
    proxy_args: Vec<String>,

    /// Where the simulator runs: its own process (CPU kept apart from the load generator's)
    /// or a dedicated one-thread runtime inside this process.
    #[arg(long, value_enum, default_value_t = SimMode::Process)]
    sim: SimMode,

    /// Don't run `cargo build --release -p egress-proxy -p egress-sim` first.
    #[arg(long)]
    no_build: bool,

    /// Directory holding the egress-proxy and egress-sim binaries (default: the release
    /// directory of the target directory this tool was built in).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SimMode {
    Process,
    InProcess,
}

/// An error that ends the run, with a message saying what to do.
#[derive(Debug)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for BenchError {
    fn from(err: std::io::Error) -> Self {
        BenchError(err.to_string())
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 5s, 10m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{text}`: {e}"))
}

fn main() -> ExitCode {
    // reqwest is built without a default TLS provider in this workspace (LiveKit's crates
    // select `rustls-no-provider`); the direct Twirp client needs one installed first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        eprintln!("egress-bench: --concurrency needs positive numbers, e.g. 1,16,64,256");
        return ExitCode::from(2);
    }
    if args.events
        && (args.watchers.is_empty()
            || args.watchers.contains(&0)
            || args.event_rate.is_nan()
            || args.event_rate <= 0.0
            || args.watchers_per_connection == 0
            || args.replicas.is_empty()
            || args.replicas.iter().any(|&r| r != 1 && r != 2))
    {
        eprintln!(
            "egress-bench: --events needs positive --watchers (e.g. 1,1000,10000), a positive \
             --event-rate and --watchers-per-connection, and --replicas 1 and/or 2"
        );
        return ExitCode::from(2);
    }
    if args.inflight >= args.proxy_max_concurrency {
        eprintln!("egress-bench: --proxy-max-concurrency must exceed --inflight");
        return ExitCode::from(2);
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "[bench] warning: this is a debug build of the load generator; numbers will be \
             skewed (use cargo run --release -p egress-bench)"
        );
    }
    let bin_dir = match prepare_binaries(&args) {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("egress-bench: {err}");
            return ExitCode::from(1);
        }
    };
    let threads = args.threads.unwrap_or_else(cpu_count).max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("bench")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("egress-bench: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    // Dropping the benchmark future (on Ctrl-C) drops the process guards inside it, which
    // kill the simulator and the proxy.
    let result = runtime.block_on(async {
        tokio::select! {
            result = run(&args, &bin_dir, threads) => result,
            _ = tokio::signal::ctrl_c() => Err(BenchError("interrupted".to_owned())),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("egress-bench: {err}");
            ExitCode::from(1)
        }
    }
}

fn cpu_count() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

/// Builds the two binaries (unless `--no-build`) and returns the directory holding them.
fn prepare_binaries(args: &Args) -> Result<PathBuf, BenchError> {
    if !args.no_build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        eprintln!("[bench] cargo build --release -p egress-proxy -p egress-sim");
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "-p",
                "egress-proxy",
                "-p",
                "egress-sim",
            ])
            .status()
            .map_err(|e| BenchError(format!("cannot run cargo: {e}")))?;
        if !status.success() {
            return Err(BenchError(format!(
                "building egress-proxy and egress-sim failed ({status}); fix the build, or \
                 pass --no-build --bin-dir DIR with prebuilt binaries"
            )));
        }
    }
    let dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            // This tool is <target>/{release,debug}/egress-bench; the binaries are built
            // into <target>/release.
            let exe = std::env::current_exe()?;
            exe.parent()
                .and_then(Path::parent)
                .map(|target| target.join("release"))
                .ok_or_else(|| BenchError("cannot locate the target directory".to_owned()))?
        }
    };
    let mut needed = vec!["egress-proxy"];
    if args.sim == SimMode::Process {
        needed.push("egress-sim");
    }
    for name in needed {
        if !dir.join(name).is_file() {
            return Err(BenchError(format!(
                "{} not found; build it with `cargo build --release -p egress-proxy -p \
                 egress-sim` or pass --bin-dir",
                dir.join(name).display()
            )));
        }
    }
    Ok(dir)
}

/// The simulator, wherever it runs; stopping it is dropping it.
#[derive(Debug)]
enum Sim {
    Process(ChildGuard),
    /// Held only to be dropped: dropping stops the simulator.
    InProcess {
        _sim: InProcessSim,
    },
}

impl Sim {
    fn pid(&self) -> Option<Pid> {
        match self {
            Sim::Process(child) => Some(Pid::Child(child.pid())),
            Sim::InProcess { .. } => None,
        }
    }
}

/// The simulator on a dedicated one-worker tokio runtime on its own thread.
#[derive(Debug)]
struct InProcessSim {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for InProcessSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn child_env(cmd: &mut Command) {
    // Settings of the caller's shell must not change what is measured.
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("EGRESS_PROXY_")
            || name_str.starts_with("LIVEKIT_")
            || name_str.eq_ignore_ascii_case("http_proxy")
            || name_str.eq_ignore_ascii_case("https_proxy")
            || name_str.eq_ignore_ascii_case("all_proxy")
        {
            cmd.env_remove(&name);
        }
    }
    cmd.env("LIVEKIT_API_KEY", API_KEY)
        .env("LIVEKIT_API_SECRET", API_SECRET)
        .env("NO_PROXY", "127.0.0.1,localhost");
}

fn start_sim(mode: SimMode, bin_dir: &Path) -> Result<(Sim, String), BenchError> {
    match mode {
        SimMode::Process => {
            let mut cmd = Command::new(bin_dir.join("egress-sim"));
            cmd.args(["--listen", "127.0.0.1:0"]);
            child_env(&mut cmd);
            cmd.env("RUST_LOG", "warn");
            let ready = ReadyOn::Stdout("egress-sim listening on ");
            let (guard, line) = procs::spawn_until_ready("egress-sim", cmd, ready)?;
            let url = line
                .split("listening on ")
                .nth(1)
                .map(|u| u.trim().to_owned())
                .ok_or_else(|| BenchError(format!("unexpected egress-sim line {line:?}")))?;
            Ok((Sim::Process(guard), url))
        }
        SimMode::InProcess => {
            let (url_tx, url_rx) = std::sync::mpsc::channel::<Result<String, String>>();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let thread = thread::Builder::new()
                .name("egress-sim".to_owned())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .thread_name("egress-sim")
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(err) => {
                            let _ = url_tx.send(Err(err.to_string()));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let handle = egress_sim::Simulator::builder()
                            .credentials(Credentials::new(API_KEY, API_SECRET))
                            .build()
                            .spawn("127.0.0.1:0".parse().expect("literal address"));
                        match handle {
                            Ok(handle) => {
                                let _ = url_tx.send(Ok(handle.url()));
                                let _ = stop_rx.await;
                                handle.shutdown().await;
                            }
                            Err(err) => {
                                let _ = url_tx.send(Err(err.to_string()));
                            }
                        }
                    });
                })?;
            let sim = InProcessSim {
                stop: Some(stop_tx),
                thread: Some(thread),
            };
            let url = url_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| BenchError("the in-process simulator did not start".to_owned()))?
                .map_err(|e| BenchError(format!("cannot start the simulator: {e}")))?;
            Ok((Sim::InProcess { _sim: sim }, url))
        }
    }
}

/// How to start one proxy.
#[derive(Debug)]
struct ProxyLaunch<'a> {
    sim_url: &'a str,
    max_concurrency: usize,
    /// `--max-concurrency-per-connection`, also the HTTP/2 streams one connection may open.
    per_connection: usize,
    rust_log: &'a str,
    /// Further arguments (the events mode's webhook, Redis and watcher flags, `--proxy-arg`).
    extra: Vec<String>,
    /// Tokio worker threads (`--proxy-threads`); `None`: the runtime's default.
    threads: Option<usize>,
    /// `taskset -c` CPU list (`--proxy-cpus`); `None`: wherever the scheduler puts it.
    cpus: Option<String>,
}

impl<'a> ProxyLaunch<'a> {
    /// The proxy as `args` ask for it, in front of the simulator at `sim_url`.
    fn new(args: &'a Args, sim_url: &'a str) -> Self {
        ProxyLaunch {
            sim_url,
            max_concurrency: args.proxy_max_concurrency,
            per_connection: args.proxy_max_concurrency,
            rust_log: &args.proxy_rust_log,
            extra: args.proxy_args.clone(),
            threads: args.proxy_threads.first().copied(),
            cpus: args.proxy_cpus.clone(),
        }
    }
}

/// A started proxy: killed when dropped.
#[derive(Debug)]
struct Proxy {
    guard: ChildGuard,
    /// gRPC listener, `IP:PORT`.
    addr: String,
    /// Admin listener (`/metrics`), `IP:PORT`, when the binary has one.
    admin: Option<String>,
}

impl Proxy {
    fn pid(&self) -> Pid {
        Pid::Child(self.guard.pid())
    }
}

/// Starts the proxy and reads its addresses from its readiness line.
fn start_proxy(bin_dir: &Path, launch: ProxyLaunch<'_>) -> Result<Proxy, BenchError> {
    // taskset execs the proxy: the child's pid is the proxy's.
    let mut cmd = match &launch.cpus {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", cpus]).arg(bin_dir.join("egress-proxy"));
            cmd
        }
        None => Command::new(bin_dir.join("egress-proxy")),
    };
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--max-concurrency",
        &launch.max_concurrency.to_string(),
    ]);
    // Newer proxies also serve an admin endpoint on a fixed default port; move it to a free
    // one so that a gateway already running on this machine doesn't make the start fail.
    let help = Command::new(bin_dir.join("egress-proxy"))
        .arg("--help")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    if help.contains("--admin-listen") {
        cmd.args(["--admin-listen", "127.0.0.1:0"]);
    }
    // The load generator multiplexes its calls over a few channels (the in-flight phase puts
    // 1,000 on them), so the per-connection cap of newer proxies is lifted to the global one.
    if help.contains("--max-concurrency-per-connection") {
        cmd.args([
            "--max-concurrency-per-connection",
            &launch.per_connection.to_string(),
        ]);
    }
    cmd.args(&launch.extra);
    child_env(&mut cmd);
    if let Some(threads) = launch.threads {
        cmd.env("TOKIO_WORKER_THREADS", threads.to_string());
    }
    cmd.env("LIVEKIT_URL", launch.sim_url)
        // The readiness line is an info event; by default everything else only from warn up.
        .env("RUST_LOG", launch.rust_log)
        .env("EGRESS_PROXY_LOG_FORMAT", "text");
    let ready = ReadyOn::Stderr("egress-proxy ready");
    let (guard, line) = procs::spawn_until_ready("egress-proxy", cmd, ready)?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .map(str::to_owned)
    };
    let addr = field("listen=")
        .ok_or_else(|| BenchError(format!("no listen=ADDR in the proxy's line {line:?}")))?;
    Ok(Proxy {
        guard,
        addr,
        admin: field("admin="),
    })
}

/// The simulator's control API (`/sim/...`), reachable the same way in both modes.
#[derive(Debug, Clone)]
struct SimControl {
    http: reqwest::Client,
    base: String,
}

impl SimControl {
    fn new(base: &str) -> Result<Self, BenchError> {
        let http = load::http_client(reqwest::Client::builder().timeout(Duration::from_secs(10)))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(), BenchError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| BenchError(format!("simulator control {path}: {e}")))?;
        if !response.status().is_success() {
            return Err(BenchError(format!(
                "simulator control {path}: HTTP {}",
                response.status()
            )));
        }
        Ok(())
    }

    async fn push_latency_fault(&self, delay: Duration) -> Result<(), BenchError> {
        let fault = serde_json::json!({
            "kind": "latency",
            "delay_ms": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "method": "ListEgress",
        });
        self.send(
            reqwest::Method::POST,
            "/sim/faults",
            Some(fault.to_string()),
        )
        .await
    }

    async fn clear_faults(&self) -> Result<(), BenchError> {
        self.send(reqwest::Method::DELETE, "/sim/faults", None)
            .await
    }

    async fn clear_requests(&self) -> Result<(), BenchError> {
        self.send(reqwest::Method::DELETE, "/sim/requests", None)
            .await
    }
}

/// Aborts a background task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The simulator logs every request it serves and never forgets them; at tens of thousands
/// of calls per second that log would grow by gigabytes and slow the simulator down, so it
/// is emptied twice a second.
fn keep_request_log_empty(control: SimControl) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            ticker.tick().await;
            let _ = control.clear_requests().await;
        }
    }))
}

/// How the run is set up, for the report.
fn run_info(
    args: &Args,
    bin_dir: &Path,
    threads: usize,
    ticks_per_sec: u64,
    call: String,
) -> RunInfo {
    RunInfo {
        call,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        concurrency: args.concurrency.clone(),
        sim_mode: match args.sim {
            SimMode::Process => "separate egress-sim process".to_owned(),
            SimMode::InProcess => "in this process (own 1-thread runtime)".to_owned(),
        },
        loadgen_threads: threads,
        cpus: cpu_count(),
        clk_tck: ticks_per_sec,
        proxy_max_concurrency: args.proxy_max_concurrency,
        proxy_bin: bin_dir.join("egress-proxy").display().to_string(),
        proxy_rust_log: args.proxy_rust_log.clone(),
    }
}

async fn run(args: &Args, bin_dir: &Path, threads: usize) -> Result<(), BenchError> {
    if args.events {
        return events::run(args, bin_dir, threads).await;
    }
    if args.proxy_threads.len() > 1 {
        return threads::run(args, bin_dir, threads).await;
    }
    let ticks_per_sec = procs::clock_ticks_per_sec();
    let (sim, sim_url) = start_sim(args.sim, bin_dir)?;
    eprintln!("[bench] simulator at {sim_url}");
    let proxy = start_proxy(bin_dir, ProxyLaunch::new(args, &sim_url))?;
    let proxy_pid = proxy.pid();
    let proxy_addr = proxy.addr.clone();
    eprintln!(
        "[bench] egress-proxy (pid {}) at {proxy_addr}",
        proxy.guard.pid()
    );

    let control = SimControl::new(&sim_url)?;
    control.clear_faults().await?;
    let _log_cleaner = keep_request_log_empty(control.clone());

    // Idle: started, nothing called yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_idle = Memory {
        rss_idle_kib: proxy_pid.status_kib("VmRSS").unwrap_or(0),
        threads_idle: proxy_pid.threads().unwrap_or(0),
        ..Default::default()
    };

    let ttl = Duration::from_secs(3600) + args.soak.unwrap_or_default();
    let token = egress_auth::mint(
        &Credentials::new(API_KEY, API_SECRET),
        &VideoGrants::room_record(),
        ttl,
        SystemTime::now(),
    )
    .map_err(|e| BenchError(format!("minting the token: {e}")))?;
    let direct = Target::Twirp(Arc::new(Twirp::new(
        "direct",
        &sim_url,
        &token,
        TwirpEncoding::Protobuf,
    )?));
    let proxy_url = format!("http://{proxy_addr}");
    let twirp_in = args
        .twirp_in
        .iter()
        .map(|&encoding| {
            let twirp = Twirp::new("twirp door", &proxy_url, &token, encoding)?;
            Ok((encoding, Target::Twirp(Arc::new(twirp))))
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    let pool = args.channels.max(1).max(args.inflight.div_ceil(500));
    let proxy_target = Arc::new(ProxyTarget::connect(&proxy_addr, pool).await?);

    direct
        .call_once()
        .await
        .map_err(|e| BenchError(format!("sanity call straight to the simulator failed: {e}")))?;
    Target::Proxy(Arc::clone(&proxy_target), 1)
        .call_once()
        .await
        .map_err(|e| BenchError(format!("sanity call through the proxy failed: {e}")))?;
    for (encoding, target) in &twirp_in {
        target.call_once().await.map_err(|e| {
            BenchError(format!(
                "sanity call into the Twirp door ({encoding:?}) failed: {e}"
            ))
        })?;
    }

    let run_info = run_info(
        args,
        bin_dir,
        threads,
        ticks_per_sec,
        format!(
            "{}/ListEgress {{room_name: \"{}\"}} (empty answer)",
            egress_proto::EGRESS_SERVICE,
            load::BENCH_ROOM
        ),
    );

    if let Some(soak) = args.soak {
        return soak_mode(
            args,
            soak,
            &proxy_target,
            proxy_pid,
            ticks_per_sec,
            memory_idle,
            run_info,
        )
        .await;
    }

    let mut levels = Vec::new();
    let mut rss_sampled_max = 0;
    for &concurrency in &args.concurrency {
        let mut observe_direct = vec![Pid::SelfProcess];
        let mut observe_proxy = vec![proxy_pid, Pid::SelfProcess];
        if let Some(pid) = sim.pid() {
            observe_direct.push(pid);
            observe_proxy.push(pid);
        }

        let (direct_stats, direct_usage) =
            measure(args, "direct", &direct, concurrency, &observe_direct).await;

        let channels = args.channels.max(1).min(concurrency);
        let (proxy_stats, proxy_usage) = measure(
            args,
            "proxy",
            &Target::Proxy(Arc::clone(&proxy_target), channels),
            concurrency,
            &observe_proxy,
        )
        .await;
        rss_sampled_max = rss_sampled_max.max(proxy_usage.processes[0].rss_max_kib);

        let mut twirp_levels = Vec::with_capacity(twirp_in.len());
        for (encoding, target) in &twirp_in {
            let encoding = encoding.as_str();
            let (stats, usage) = measure(
                args,
                &format!("Twirp {encoding} in"),
                target,
                concurrency,
                &observe_proxy,
            )
            .await;
            let proxy_usage = usage.processes.into_iter().next().unwrap_or_default();
            rss_sampled_max = rss_sampled_max.max(proxy_usage.rss_max_kib);
            twirp_levels.push(report::TwirpIn {
                encoding,
                stats,
                proxy_usage,
            });
        }

        let other_cores_direct = direct_usage.other_cores;
        let other_cores_proxy = proxy_usage.other_cores;
        let tcp_connects_direct = direct_usage.tcp_connects;
        let tcp_connects_proxy = proxy_usage.tcp_connects;
        let mut direct_usage = direct_usage.processes.into_iter();
        let mut proxy_usage = proxy_usage.processes.into_iter();
        let level_proxy_usage = proxy_usage.next().unwrap_or_default();
        levels.push(Level {
            concurrency,
            proxy_channels: channels,
            added_p50_us: proxy_stats.p50_us - direct_stats.p50_us,
            added_p99_us: proxy_stats.p99_us - direct_stats.p99_us,
            throughput_ratio: if direct_stats.rps > 0.0 {
                proxy_stats.rps / direct_stats.rps
            } else {
                0.0
            },
            direct: direct_stats,
            proxy: proxy_stats,
            proxy_usage: level_proxy_usage,
            loadgen_usage_direct: direct_usage.next().unwrap_or_default(),
            loadgen_usage_proxy: proxy_usage.next().unwrap_or_default(),
            sim_usage_direct: direct_usage.next(),
            sim_usage_proxy: proxy_usage.next(),
            other_cores_direct,
            other_cores_proxy,
            tcp_connects_direct,
            tcp_connects_proxy,
            twirp_in: twirp_levels,
        });
    }

    let mut memory = memory_idle;
    memory.rss_peak_load_kib = proxy_pid.status_kib("VmHWM").unwrap_or(0);
    memory.rss_peak_load_sampled_kib = rss_sampled_max;

    if args.inflight > 0 {
        eprintln!(
            "[bench] holding {} calls in flight (upstream ListEgress delayed {:?})",
            args.inflight, args.inflight_delay
        );
        control.push_latency_fault(args.inflight_delay).await?;
        let inflight =
            load::run_inflight(&proxy_target, proxy_pid, args.inflight, args.inflight_delay).await;
        let inflight = match args.inflight_settle {
            Some(settle) => {
                eprintln!(
                    "[bench] waiting {settle:?} after the in-flight burst for the proxy's RSS"
                );
                load::settle(inflight, proxy_pid, proxy.admin.as_deref(), settle).await
            }
            None => inflight,
        };
        control.clear_faults().await?;
        memory.inflight = Some(inflight);
    }

    let checks = report::checks(&levels, &memory);
    let all_pass = checks.iter().all(|c| c.pass);
    let report = Report {
        run: run_info,
        levels,
        memory,
        checks,
        all_pass,
        soak: Vec::new(),
        events: None,
        threads: Vec::new(),
    };
    report::print(&report);
    write_json(args, &report)?;
    drop(proxy);
    drop(sim);
    Ok(())
}

/// One measured phase of `label` at `concurrency`, logged as it ends (with the first
/// observed process's CPU per call when that is the proxy), then a short pause so that the
/// next phase starts on a settled machine.
async fn measure(
    args: &Args,
    label: &str,
    target: &Target,
    concurrency: usize,
    observe: &[Pid],
) -> (load::CallStats, load::PhaseUsage) {
    let (stats, usage) = load::run_phase(
        target,
        concurrency,
        args.warmup,
        args.duration,
        observe,
        procs::clock_ticks_per_sec(),
    )
    .await;
    let proxy_cpu = match (observe.first(), usage.processes.first()) {
        (Some(Pid::Child(_)), Some(proxy)) => {
            format!(", {} proxy CPU/call", report::fmt_us(proxy.cpu_us_per_call))
        }
        _ => String::new(),
    };
    eprintln!(
        "[bench] C={concurrency} {label}: {:.0} calls/s, p50 {}, p99 {}, {} errors{proxy_cpu}",
        stats.rps,
        report::fmt_us(stats.p50_us),
        report::fmt_us(stats.p99_us),
        stats.errors,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    (stats, usage)
}

async fn soak_mode(
    args: &Args,
    soak: Duration,
    proxy_target: &Arc<ProxyTarget>,
    proxy_pid: Pid,
    ticks_per_sec: u64,
    mut memory: Memory,
    run_info: RunInfo,
) -> Result<(), BenchError> {
    let concurrency = args.soak_concurrency.max(1);
    println!(
        "## egress-proxy soak: C={concurrency} for {soak:?}; proxy RSS idle {}",
        report::fmt_mib(memory.rss_idle_kib)
    );
    println!();
    let target = Target::Proxy(Arc::clone(proxy_target), args.channels.min(concurrency));
    report::print_soak_header();
    let samples = load::run_soak(
        &target,
        concurrency,
        soak,
        Duration::from_secs(10),
        proxy_pid,
        ticks_per_sec,
        report::print_soak_row,
    )
    .await;
    memory.rss_peak_load_kib = proxy_pid.status_kib("VmHWM").unwrap_or(0);
    memory.rss_peak_load_sampled_kib = samples.iter().map(|s| s.proxy_rss_kib).max().unwrap_or(0);
    let first = samples.first().map_or(0, |s| s.proxy_rss_kib);
    let last = samples.last().map_or(0, |s| s.proxy_rss_kib);
    let calls: u64 = samples.iter().map(|s| s.stats.ok).sum();
    let errors: u64 = samples.iter().map(|s| s.stats.errors).sum();
    println!();
    println!(
        "Soak: {calls} calls, {errors} errors; proxy RSS idle {}, first interval {}, last {}, \
         peak (VmHWM) {}.",
        report::fmt_mib(memory.rss_idle_kib),
        report::fmt_mib(first),
        report::fmt_mib(last),
        report::fmt_mib(memory.rss_peak_load_kib),
    );
    let report = Report {
        run: run_info,
        levels: Vec::new(),
        memory,
        checks: Vec::new(),
        all_pass: errors == 0,
        soak: samples,
        events: None,
        threads: Vec::new(),
    };
    write_json(args, &report)
}

fn write_json(args: &Args, report: &Report) -> Result<(), BenchError> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|e| BenchError(format!("encoding the JSON report: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| BenchError(format!("writing {}: {e}", path.display())))?;
        eprintln!("[bench] wrote {}", path.display());
    }
    Ok(())
}
