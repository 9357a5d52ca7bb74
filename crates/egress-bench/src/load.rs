//! The load generator: workers that each keep one call in flight, and the statistics of a
//! measurement window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use egress_proto::livekit::ListEgressRequest;
use egress_proto::livekit::egress_client::EgressClient;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Serialize;
use tonic::transport::Channel;

use crate::BenchError;
use crate::procs::Pid;

/// The benchmarked call: `ListEgress` filtered by a room without egresses, which an empty
/// simulator answers with an empty list at almost no cost of its own. (Not an unknown egress
/// id: LiveKit answers that `not_found`, as the simulator now does.)
pub const BENCH_ROOM: &str = "bench-room";

pub fn bench_request() -> ListEgressRequest {
    ListEgressRequest {
        room_name: BENCH_ROOM.to_owned(),
        ..Default::default()
    }
}

/// An HTTP client for loopback servers: no proxy from the environment, no Nagle delay.
pub fn http_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, BenchError> {
    builder
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| BenchError(format!("building the HTTP client: {e}")))
}

/// How a Twirp caller encodes its messages (LiveKit's SDKs: Go, Python and Rust send
/// protobuf, Node sends JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TwirpEncoding {
    Protobuf,
    Json,
}

impl TwirpEncoding {
    /// `protobuf` or `json`, as the report names it.
    pub fn as_str(self) -> &'static str {
        match self {
            TwirpEncoding::Protobuf => "protobuf",
            TwirpEncoding::Json => "json",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            TwirpEncoding::Protobuf => "application/protobuf",
            TwirpEncoding::Json => "application/json",
        }
    }

    fn encode(self, request: &ListEgressRequest) -> Bytes {
        match self {
            TwirpEncoding::Protobuf => Bytes::from(prost::Message::encode_to_vec(request)),
            // What LiveKit's Node SDK sends: the proto field names in camelCase.
            TwirpEncoding::Json => {
                Bytes::from(format!(r#"{{"roomName":"{}"}}"#, request.room_name))
            }
        }
    }
}

/// A Twirp caller: straight to the simulator (the baseline), or into the proxy's Twirp door.
/// One pooled HTTP/1.1 keep-alive client (like the proxy's own upstream client), the URL,
/// headers and body prepared once.
#[derive(Debug)]
pub struct Twirp {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    body: Bytes,
    name: &'static str,
}

impl Twirp {
    /// Calls `ListEgress` at `base_url` (simulator or proxy) signed with `bearer_token`;
    /// `name` prefixes its errors.
    pub fn new(
        name: &'static str,
        base_url: &str,
        bearer_token: &str,
        encoding: TwirpEncoding,
    ) -> Result<Self, BenchError> {
        let client =
            http_client(reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(600)))?;
        let url = format!(
            "{}/twirp/livekit.Egress/ListEgress",
            base_url.trim_end_matches('/')
        );
        let url = reqwest::Url::parse(&url)
            .map_err(|e| BenchError(format!("{name} URL {url:?}: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        );
        let mut auth = HeaderValue::try_from(format!("Bearer {bearer_token}"))
            .map_err(|_| BenchError("the minted token is not a header value".to_owned()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        Ok(Self {
            client,
            url,
            headers,
            body: encoding.encode(&bench_request()),
            name,
        })
    }

    async fn call(&self) -> Result<(), String> {
        let name = self.name;
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(self.body.clone())
            .send()
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{name} body: {e}"))?;
        if status != reqwest::StatusCode::OK {
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("{name}: HTTP {status}: {excerpt}"));
        }
        Ok(())
    }
}

/// gRPC through the proxy: tonic clients over a few shared HTTP/2 channels.
#[derive(Debug)]
pub struct ProxyTarget {
    channels: Vec<Channel>,
    request: ListEgressRequest,
}

impl ProxyTarget {
    /// Opens `channels` HTTP/2 connections to the proxy at `addr` (`IP:PORT`).
    pub async fn connect(addr: &str, channels: usize) -> Result<Self, BenchError> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| BenchError(format!("proxy address {addr:?}: {e}")))?
            .tcp_nodelay(true)
            .buffer_size(4096)
            .connect_timeout(Duration::from_secs(5));
        let mut opened = Vec::with_capacity(channels);
        for _ in 0..channels.max(1) {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| BenchError(format!("connecting to the proxy at {addr}: {e:?}")))?;
            opened.push(channel);
        }
        Ok(Self {
            channels: opened,
            request: bench_request(),
        })
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The open HTTP/2 connections, for other services on the proxy's listener.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// A client on channel `index % used` (callers spread over the first `used` channels).
    fn client(&self, index: usize, used: usize) -> EgressClient<Channel> {
        let used = used.clamp(1, self.channels.len());
        EgressClient::new(self.channels[index % used].clone())
    }
}

async fn proxy_call(
    client: &mut EgressClient<Channel>,
    request: &ListEgressRequest,
) -> Result<(), String> {
    let answer = client
        .list_egress(request.clone())
        .await
        .map_err(|s| format!("proxy: {:?}: {}", s.code(), s.message()))?;
    if !answer.get_ref().items.is_empty() {
        return Err("proxy: expected an empty ListEgress answer".to_owned());
    }
    Ok(())
}

/// What the workers of one phase call.
#[derive(Debug, Clone)]
pub enum Target {
    Twirp(Arc<Twirp>),
    /// The proxy, with the number of channels this phase spreads its workers over.
    Proxy(Arc<ProxyTarget>, usize),
}

impl Target {
    fn caller(&self, index: usize) -> Caller {
        match self {
            Target::Twirp(twirp) => Caller::Twirp(Arc::clone(twirp)),
            Target::Proxy(proxy, used) => Caller::Proxy(Box::new(ProxyCaller {
                client: proxy.client(index, *used),
                request: proxy.request.clone(),
            })),
        }
    }

    /// One call, as a sanity check before measuring.
    pub async fn call_once(&self) -> Result<(), String> {
        self.caller(0).call().await
    }
}

enum Caller {
    Twirp(Arc<Twirp>),
    Proxy(Box<ProxyCaller>),
}

struct ProxyCaller {
    client: EgressClient<Channel>,
    request: ListEgressRequest,
}

impl Caller {
    async fn call(&mut self) -> Result<(), String> {
        match self {
            Caller::Twirp(twirp) => twirp.call().await,
            Caller::Proxy(p) => proxy_call(&mut p.client, &p.request).await,
        }
    }
}

/// What one worker saw inside the window.
#[derive(Debug, Default)]
struct Recorder {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Recorder {
    fn record(&mut self, result: Result<(), String>, elapsed: Duration) {
        match result {
            Ok(()) => self
                .latencies_ns
                .push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)),
            Err(err) => {
                self.errors += 1;
                self.first_error.get_or_insert(err);
            }
        }
    }

    fn merge(&mut self, other: Recorder) {
        self.latencies_ns.extend(other.latencies_ns);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Latency and throughput of one measurement window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallStats {
    pub ok: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub seconds: f64,
    pub rps: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl CallStats {
    fn from_recorder(mut rec: Recorder, window: Duration) -> Self {
        let lat = &mut rec.latencies_ns;
        lat.sort_unstable();
        let n = lat.len();
        let us = |ns: u64| ns as f64 / 1000.0;
        let pct = |p: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            us(lat[rank.clamp(1, n) - 1])
        };
        let seconds = window.as_secs_f64();
        let mean = if n == 0 {
            0.0
        } else {
            lat.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1000.0
        };
        Self {
            ok: n as u64,
            errors: rec.errors,
            first_error: rec.first_error.clone(),
            seconds,
            rps: if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            },
            mean_us: mean,
            p50_us: pct(50.0),
            p90_us: pct(90.0),
            p99_us: pct(99.0),
            p999_us: pct(99.9),
            max_us: lat.last().map_or(0.0, |&v| us(v)),
        }
    }

    /// Statistics of successful operations that took `latencies_ns`, with `errors` failed
    /// ones, over a window of `window`.
    pub fn from_latencies_ns(latencies_ns: Vec<u64>, errors: u64, window: Duration) -> Self {
        Self::from_recorder(
            Recorder {
                latencies_ns,
                errors,
                first_error: None,
            },
            window,
        )
    }

    pub fn calls(&self) -> u64 {
        self.ok + self.errors
    }
}

/// CPU and memory of one observed process over a window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// CPU time (user + system) spent inside the window, in microseconds.
    pub cpu_us: f64,
    /// CPU time per call completed inside the window.
    pub cpu_us_per_call: f64,
    /// Average cores busy during the window.
    pub cores: f64,
    /// Highest VmRSS sampled (every 50 ms) inside the window, KiB.
    pub rss_max_kib: u64,
    /// Most open file descriptors sampled inside the window.
    pub fds_max: u64,
}

/// Samples processes from a plain OS thread, so its timing does not depend on the load
/// generator's (busy) tokio workers.
pub struct Monitor {
    handle: thread::JoinHandle<Sampled>,
    /// Ends the sampling before `end` (set by [`Monitor::finish`]).
    stop: Arc<AtomicBool>,
}

/// Per-process samples, and the machine's busy ticks and TCP active opens at the window's
/// start and end.
type Sampled = (Vec<RawUsage>, Option<(u64, u64)>, Option<(u64, u64)>);

/// Busy time of the whole machine (all CPUs), in clock ticks, from `/proc/stat`.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    let busy = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4);
    Some(busy.map(|(_, v)| v).sum())
}

/// TCP connections opened on this machine so far (`ActiveOpens` of `/proc/net/snmp`).
fn tcp_active_opens() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next()?;
    let values = tcp.next()?;
    let index = names.split_whitespace().position(|n| n == "ActiveOpens")?;
    values.split_whitespace().nth(index)?.parse().ok()
}

/// CPU use of one window: per observed process, and by everything else on the machine.
#[derive(Debug, Clone, Default)]
pub struct PhaseUsage {
    pub processes: Vec<Usage>,
    /// Average cores used by processes other than the observed ones (other builds, ...).
    pub other_cores: f64,
    /// TCP connections opened on the machine during the window (all processes; the
    /// benchmark's own connections are open before it starts).
    pub tcp_connects: u64,
}

#[derive(Debug, Default, Clone)]
struct RawUsage {
    ticks: Option<(u64, u64)>,
    rss_max_kib: u64,
    fds_max: u64,
}

impl Monitor {
    /// Samples `pids` from `start` to `end`.
    pub fn start(pids: Vec<Pid>, start: Instant, end: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let now = Instant::now();
            if start > now {
                thread::sleep(start - now);
            }
            let machine_before = machine_busy_ticks();
            let opens_before = tcp_active_opens();
            let before: Vec<Option<u64>> = pids.iter().map(|p| p.cpu_ticks()).collect();
            let mut raw = vec![RawUsage::default(); pids.len()];
            loop {
                for (pid, usage) in pids.iter().zip(raw.iter_mut()) {
                    if let Some(rss) = pid.status_kib("VmRSS") {
                        usage.rss_max_kib = usage.rss_max_kib.max(rss);
                    }
                    if let Some(fds) = pid.open_fds() {
                        usage.fds_max = usage.fds_max.max(fds);
                    }
                }
                let now = Instant::now();
                if now >= end || stopped.load(Ordering::Relaxed) {
                    break;
                }
                thread::sleep((end - now).min(Duration::from_millis(50)));
            }
            for ((pid, usage), before) in pids.iter().zip(raw.iter_mut()).zip(before) {
                usage.ticks = before.zip(pid.cpu_ticks());
            }
            (
                raw,
                machine_before.zip(machine_busy_ticks()),
                opens_before.zip(tcp_active_opens()),
            )
        });
        Self { handle, stop }
    }

    /// Ends the window (now, if `end` has not come yet) and returns its usage, CPU per call
    /// counted over `calls`; `window` is how long it lasted.
    pub fn finish(self, calls: u64, window: Duration, ticks_per_sec: u64) -> PhaseUsage {
        self.stop.store(true, Ordering::Relaxed);
        let (raw, machine, opens) = self.handle.join().unwrap_or_default();
        let observed: u64 = raw
            .iter()
            .filter_map(|r| r.ticks.map(|(a, b)| b.saturating_sub(a)))
            .sum();
        let other_cores = machine.map_or(0.0, |(a, b)| {
            b.saturating_sub(a).saturating_sub(observed) as f64
                / ticks_per_sec as f64
                / window.as_secs_f64()
        });
        let processes = raw
            .into_iter()
            .map(|r| {
                let cpu_us = r.ticks.map_or(0.0, |(a, b)| {
                    b.saturating_sub(a) as f64 * 1e6 / ticks_per_sec as f64
                });
                Usage {
                    cpu_us,
                    cpu_us_per_call: if calls > 0 {
                        cpu_us / calls as f64
                    } else {
                        0.0
                    },
                    cores: cpu_us / 1e6 / window.as_secs_f64(),
                    rss_max_kib: r.rss_max_kib,
                    fds_max: r.fds_max,
                }
            })
            .collect();
        PhaseUsage {
            processes,
            other_cores,
            tcp_connects: opens.map_or(0, |(a, b)| b.saturating_sub(a)),
        }
    }
}

/// One phase: `concurrency` workers call `target` back to back for `warmup + duration`;
/// calls that complete inside the last `duration` are measured, and `observe`d processes
/// are sampled over the same window.
pub async fn run_phase(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    observe: &[Pid],
    ticks_per_sec: u64,
) -> (CallStats, PhaseUsage) {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let monitor = Monitor::start(observe.to_vec(), start, end);
    let mut workers = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let mut caller = target.caller(index);
        workers.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let result = caller.call().await;
                let t1 = Instant::now();
                if t1 >= start && t1 <= end {
                    rec.record(result, t1 - t0);
                }
            }
            rec
        }));
    }
    let mut all = Recorder::default();
    for worker in workers {
        match worker.await {
            Ok(rec) => all.merge(rec),
            Err(err) => {
                all.errors += 1;
                all.first_error
                    .get_or_insert(format!("worker failed: {err}"));
            }
        }
    }
    let stats = CallStats::from_recorder(all, duration);
    let usage = monitor.finish(stats.calls(), duration, ticks_per_sec);
    (stats, usage)
}

/// Result of holding many calls in flight at once.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InflightStats {
    pub calls: usize,
    pub ok: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub upstream_delay_ms: u64,
    /// VmRSS just before the calls were launched, KiB.
    pub rss_before_kib: u64,
    /// Highest VmRSS sampled (every 20 ms) while the calls were in flight, KiB.
    pub rss_max_kib: u64,
    /// VmRSS one second after the last call finished, KiB.
    pub rss_after_kib: u64,
    /// With `--inflight-settle`: how long after the last call finished (counted from its
    /// end, the first second included) the proxy's VmRSS was read again, and that reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled: Option<Settled>,
    /// Most open file descriptors of the proxy while the calls were in flight.
    pub fds_max: u64,
    /// Proxy threads while the calls were in flight.
    pub threads: u64,
    pub min_latency_ms: f64,
    pub max_latency_ms: f64,
    /// Whether every call succeeded and took between the delay and twice the delay, i.e.
    /// all of them were held by the proxy at the same time.
    pub all_in_flight_together: bool,
}

/// The proxy's memory some time after an in-flight burst: what it still holds, and what
/// its allocator keeps beyond that.
#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    pub after_s: f64,
    pub rss_kib: u64,
    /// The proxy's heap gauges, where it reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap: Option<HeapKib>,
}

/// The proxy's `egress_proxy_heap_{allocated,resident}_bytes`, in KiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HeapKib {
    pub allocated: u64,
    /// The allocator's resident pages: `allocated` and what it keeps.
    pub resident: u64,
}

/// `stats` with the proxy's VmRSS (and, from its admin listener, its heap) read `settle`
/// after the burst ended (the one second [`run_inflight`] already waited counts towards it).
pub async fn settle(
    mut stats: InflightStats,
    proxy_pid: Pid,
    admin: Option<&str>,
    settle: Duration,
) -> InflightStats {
    tokio::time::sleep(settle.saturating_sub(INFLIGHT_AFTER)).await;
    let rss_kib = proxy_pid.status_kib("VmRSS").unwrap_or(0);
    let mut heap = None;
    if let (Some(admin), Ok(http)) = (admin, http_client(reqwest::Client::builder())) {
        // One scrape for both: the two gauges are read from the same allocator snapshot.
        let page = scrape(&http, admin).await.unwrap_or_default();
        let kib = |bytes: f64| (bytes / 1024.0) as u64;
        let allocated = value(&page, "egress_proxy_heap_allocated_bytes");
        let resident = value(&page, "egress_proxy_heap_resident_bytes");
        if let (Some(allocated), Some(resident)) = (allocated, resident) {
            heap = Some(HeapKib {
                allocated: kib(allocated),
                resident: kib(resident),
            });
        }
    }
    stats.settled = Some(Settled {
        after_s: settle.max(INFLIGHT_AFTER).as_secs_f64(),
        rss_kib,
        heap,
    });
    stats
}

/// A gauge or counter of the proxy's `/metrics` (unlabelled).
pub async fn metric(http: &reqwest::Client, admin: &str, name: &str) -> Option<f64> {
    value(&scrape(http, admin).await?, name)
}

/// The proxy's `/metrics` page.
async fn scrape(http: &reqwest::Client, admin: &str) -> Option<String> {
    http.get(format!("http://{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// An unlabelled series' value on a `/metrics` page.
fn value(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// When [`InflightStats::rss_after_kib`] is read after the last in-flight call.
const INFLIGHT_AFTER: Duration = Duration::from_secs(1);

/// Launches `calls` proxy calls at once against an upstream that delays each answer by
/// `delay`, sampling the proxy's memory while they are in flight.
pub async fn run_inflight(
    proxy: &Arc<ProxyTarget>,
    proxy_pid: Pid,
    calls: usize,
    delay: Duration,
) -> InflightStats {
    let rss_before = proxy_pid.status_kib("VmRSS").unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let (mut rss, mut fds, mut threads) = (0, 0, 0);
            while !stop.load(Ordering::Relaxed) {
                rss = rss.max(proxy_pid.status_kib("VmRSS").unwrap_or(0));
                fds = fds.max(proxy_pid.open_fds().unwrap_or(0));
                threads = threads.max(proxy_pid.threads().unwrap_or(0));
                thread::sleep(Duration::from_millis(20));
            }
            (rss, fds, threads)
        })
    };

    let target = Target::Proxy(Arc::clone(proxy), proxy.channel_count());
    let budget = delay + Duration::from_secs(30);
    let mut tasks = Vec::with_capacity(calls);
    for index in 0..calls {
        let mut caller = target.caller(index);
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let result = match tokio::time::timeout(budget, caller.call()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {budget:?}")),
            };
            (result, t0.elapsed())
        }));
    }
    let mut stats = InflightStats {
        calls,
        upstream_delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        rss_before_kib: rss_before,
        min_latency_ms: f64::INFINITY,
        ..Default::default()
    };
    for task in tasks {
        let (result, elapsed) = match task.await {
            Ok(done) => done,
            Err(err) => (Err(format!("task failed: {err}")), Duration::ZERO),
        };
        match result {
            Ok(()) => {
                stats.ok += 1;
                let ms = elapsed.as_secs_f64() * 1000.0;
                stats.min_latency_ms = stats.min_latency_ms.min(ms);
                stats.max_latency_ms = stats.max_latency_ms.max(ms);
            }
            Err(err) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(err);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (rss, fds, threads) = sampler.join().unwrap_or((0, 0, 0));
    stats.rss_max_kib = rss;
    stats.fds_max = fds;
    stats.threads = threads;
    if stats.ok == 0 {
        stats.min_latency_ms = 0.0;
    }
    let delay_ms = delay.as_secs_f64() * 1000.0;
    stats.all_in_flight_together = stats.ok == calls as u64
        && stats.min_latency_ms >= delay_ms
        && stats.max_latency_ms < 2.0 * delay_ms;
    tokio::time::sleep(INFLIGHT_AFTER).await;
    stats.rss_after_kib = proxy_pid.status_kib("VmRSS").unwrap_or(0);
    stats
}

/// Soak mode: `concurrency` workers call the proxy until `duration` has passed; every
/// `every`, the interval's throughput, latency, errors and the proxy's RSS go to
/// `on_sample` (the report prints them as they come) and into the returned list.
pub async fn run_soak(
    target: &Target,
    concurrency: usize,
    duration: Duration,
    every: Duration,
    proxy_pid: Pid,
    ticks_per_sec: u64,
    mut on_sample: impl FnMut(&SoakSample),
) -> Vec<SoakSample> {
    let stop = Arc::new(AtomicBool::new(false));
    let shared: Vec<Arc<std::sync::Mutex<Recorder>>> = (0..concurrency)
        .map(|_| Arc::new(std::sync::Mutex::new(Recorder::default())))
        .collect();
    let mut workers = Vec::with_capacity(concurrency);
    for (index, slot) in shared.iter().enumerate() {
        let mut caller = target.caller(index);
        let slot = Arc::clone(slot);
        let stop = Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let result = caller.call().await;
                let elapsed = t0.elapsed();
                slot.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .record(result, elapsed);
            }
        }));
    }

    let began = Instant::now();
    let mut samples = Vec::new();
    let mut last_ticks = proxy_pid.cpu_ticks();
    let mut last = began;
    let mut next = began + every;
    loop {
        let deadline = next.min(began + duration);
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
        let now = Instant::now();
        let mut interval = Recorder::default();
        for slot in &shared {
            let taken = std::mem::take(
                &mut *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            interval.merge(taken);
        }
        let stats = CallStats::from_recorder(interval, now - last);
        let ticks = proxy_pid.cpu_ticks();
        let cpu_us = last_ticks.zip(ticks).map_or(0.0, |(a, b)| {
            b.saturating_sub(a) as f64 * 1e6 / ticks_per_sec as f64
        });
        let calls = stats.calls();
        let sample = SoakSample {
            elapsed_s: (now - began).as_secs_f64(),
            stats,
            proxy_rss_kib: proxy_pid.status_kib("VmRSS").unwrap_or(0),
            proxy_cpu_us_per_call: if calls > 0 {
                cpu_us / calls as f64
            } else {
                0.0
            },
            proxy_fds: proxy_pid.open_fds().unwrap_or(0),
        };
        on_sample(&sample);
        samples.push(sample);
        last_ticks = ticks;
        last = now;
        next += every;
        if now >= began + duration {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    samples
}

/// One soak interval.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    pub elapsed_s: f64,
    #[serde(flatten)]
    pub stats: CallStats,
    pub proxy_rss_kib: u64,
    pub proxy_cpu_us_per_call: f64,
    pub proxy_fds: u64,
}
