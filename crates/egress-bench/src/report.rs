//! The results: the markdown tables, the target checks and the JSON document.

use serde::Serialize;

use crate::load::{CallStats, InflightStats, SoakSample, Usage};

/// Added p50 latency at C=1 (proxy p50 − direct p50), microseconds.
pub const TARGET_ADDED_P50_US: f64 = 100.0;
/// Proxy CPU time per forwarded call, microseconds.
pub const TARGET_CPU_PER_CALL_US: f64 = 30.0;
/// Proxy throughput as a fraction of direct throughput.
pub const TARGET_THROUGHPUT_RATIO: f64 = 0.5;
/// Proxy RSS before any load, MiB.
pub const TARGET_RSS_IDLE_MIB: f64 = 20.0;
/// Proxy RSS with the in-flight test's calls held, MiB.
pub const TARGET_RSS_INFLIGHT_MIB: f64 = 64.0;

/// One concurrency level: the direct and the proxy phase.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub concurrency: usize,
    /// HTTP/2 connections the proxy phase spread its callers over.
    pub proxy_channels: usize,
    pub direct: CallStats,
    pub proxy: CallStats,
    /// proxy p50 − direct p50.
    pub added_p50_us: f64,
    /// proxy p99 − direct p99.
    pub added_p99_us: f64,
    /// proxy rps / direct rps.
    pub throughput_ratio: f64,
    /// The proxy process during the proxy phase.
    pub proxy_usage: Usage,
    /// The load generator (this process) during each phase. With `--sim in-process` it
    /// includes the simulator.
    pub loadgen_usage_direct: Usage,
    pub loadgen_usage_proxy: Usage,
    /// The simulator process during each phase (`--sim process` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_usage_direct: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_usage_proxy: Option<Usage>,
    /// Average cores used by everything else on the machine during each phase; well
    /// above zero means the numbers are skewed by other work.
    pub other_cores_direct: f64,
    pub other_cores_proxy: f64,
    /// TCP connections opened on the machine during each phase: ~0 when every hop reuses
    /// its connections; in the proxy phase, mostly the proxy's new upstream connections.
    pub tcp_connects_direct: u64,
    pub tcp_connects_proxy: u64,
    /// The same load into the proxy's Twirp door, by encoding (`--twirp-in`).
    pub twirp_in: Vec<TwirpIn>,
}

/// One phase of Twirp callers (as LiveKit's SDKs call) into the proxy's Twirp door.
#[derive(Debug, Clone, Serialize)]
pub struct TwirpIn {
    /// `protobuf` or `json`.
    pub encoding: &'static str,
    pub stats: CallStats,
    /// The proxy process during the phase.
    pub proxy_usage: Usage,
}

/// Proxy memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    /// VmRSS after start-up, before any call, KiB.
    pub rss_idle_kib: u64,
    pub threads_idle: u64,
    /// VmHWM (peak RSS since start) after the load phases, KiB.
    pub rss_peak_load_kib: u64,
    /// Highest VmRSS sampled every 50 ms during the load phases, KiB.
    pub rss_peak_load_sampled_kib: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflight: Option<InflightStats>,
}

/// One target and whether it was met.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub call: String,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub concurrency: Vec<usize>,
    pub sim_mode: String,
    pub loadgen_threads: usize,
    pub cpus: usize,
    pub clk_tck: u64,
    pub proxy_max_concurrency: usize,
    pub proxy_bin: String,
    pub proxy_rust_log: String,
}

/// Everything `--json` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub levels: Vec<Level>,
    pub memory: Memory,
    pub checks: Vec<Check>,
    pub all_pass: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub soak: Vec<SoakSample>,
    /// Events mode (`--events`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsRun>,
    /// Thread-count mode (`--proxy-threads 1,2,4,8`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadRow>,
}

/// Where the proxy in thread-count mode does a call's work.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyRuntime {
    /// N tokio worker threads, one shared work-stealing runtime.
    Workers,
    /// One worker thread (accept) and `--io-threads N`.
    IoThreads,
}

impl ProxyRuntime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workers => "worker threads",
            Self::IoThreads => "io threads",
        }
    }
}

/// One (thread count, runtime, concurrency) measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadRow {
    pub threads: usize,
    pub runtime: ProxyRuntime,
    /// The proxy's `taskset -c` CPU list, if pinned.
    pub cpus: Option<String>,
    pub concurrency: usize,
    pub stats: CallStats,
    /// The proxy process during the phase.
    pub proxy_usage: Usage,
    /// Cores used by everything outside the measured processes.
    pub other_cores: f64,
}

/// Thread-count mode's table: by thread count, then concurrency.
pub fn print_threads(rows: &[ThreadRow]) {
    println!();
    println!("## egress-proxy CPU per call by worker threads");
    println!();
    println!(
        "| threads | runtime | proxy CPUs | C | rps | p50 | p99 | proxy CPU/call | proxy cores busy | other cores | errors |"
    );
    println!("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            row.threads,
            row.runtime.as_str(),
            row.cpus.as_deref().unwrap_or("any"),
            row.concurrency,
            rate_cells(&row.stats),
            fmt_us(row.proxy_usage.cpu_us_per_call),
            row.proxy_usage.cpu_us_per_call * row.stats.rps / 1e6,
            row.other_cores,
            row.stats.errors,
        );
    }
    println!();
}

pub fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

/// The header of the soak table whose rows [`print_soak_row`] prints.
pub fn print_soak_header() {
    println!("| elapsed | calls/s | p50 | p99 | errors | proxy RSS | proxy CPU/call | proxy fds |");
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|");
}

/// One row of the soak table, printed as the sample arrives.
pub fn print_soak_row(sample: &SoakSample) {
    println!(
        "| {:.0} s | {} | {} | {} | {:.1} µs | {} |",
        sample.elapsed_s,
        rate_cells(&sample.stats),
        sample.stats.errors,
        fmt_mib(sample.proxy_rss_kib),
        sample.proxy_cpu_us_per_call,
        sample.proxy_fds,
    );
    if let Some(err) = &sample.stats.first_error {
        eprintln!("[bench] first error of the interval: {err}");
    }
}

/// The `calls/s | p50 | p99` cells of a table row.
fn rate_cells(stats: &CallStats) -> String {
    format!(
        "{:.0} | {} | {}",
        stats.rps,
        fmt_us(stats.p50_us),
        fmt_us(stats.p99_us)
    )
}

pub fn fmt_us(us: f64) -> String {
    if us.abs() < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

pub fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A ratio with two decimals, rounded down so that a printed 0.50 never hides a miss of
/// the 0.5 target.
fn fmt_ratio(ratio: f64) -> String {
    format!("{:.2}", (ratio * 100.0).floor() / 100.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Checks every target the run has numbers for.
pub fn checks(levels: &[Level], memory: &Memory) -> Vec<Check> {
    let mut checks = Vec::new();
    match levels.iter().find(|l| l.concurrency == 1) {
        Some(level) => checks.push(Check {
            name: "added p50 latency at C=1".to_owned(),
            target: format!("≤ {}", fmt_us(TARGET_ADDED_P50_US)),
            measured: fmt_us(level.added_p50_us),
            pass: level.added_p50_us <= TARGET_ADDED_P50_US,
        }),
        None => checks.push(Check {
            name: "added p50 latency at C=1".to_owned(),
            target: format!("≤ {}", fmt_us(TARGET_ADDED_P50_US)),
            measured: "not measured (C=1 not in --concurrency)".to_owned(),
            pass: false,
        }),
    }
    for level in levels {
        checks.push(Check {
            name: format!("proxy CPU per call at C={}", level.concurrency),
            target: format!("≤ {}", fmt_us(TARGET_CPU_PER_CALL_US)),
            measured: fmt_us(level.proxy_usage.cpu_us_per_call),
            pass: level.proxy.calls() > 0
                && level.proxy_usage.cpu_us_per_call <= TARGET_CPU_PER_CALL_US,
        });
    }
    for level in levels {
        checks.push(Check {
            name: format!("proxy/direct throughput at C={}", level.concurrency),
            target: format!("≥ {TARGET_THROUGHPUT_RATIO:.2}"),
            measured: fmt_ratio(level.throughput_ratio),
            pass: level.throughput_ratio >= TARGET_THROUGHPUT_RATIO,
        });
    }
    checks.push(Check {
        name: "RSS idle".to_owned(),
        target: format!("≤ {TARGET_RSS_IDLE_MIB:.0} MiB"),
        measured: fmt_mib(memory.rss_idle_kib),
        pass: memory.rss_idle_kib > 0 && mib(memory.rss_idle_kib) <= TARGET_RSS_IDLE_MIB,
    });
    if let Some(inflight) = &memory.inflight {
        checks.push(Check {
            name: format!("RSS with {} calls in flight", inflight.calls),
            target: format!("≤ {TARGET_RSS_INFLIGHT_MIB:.0} MiB"),
            measured: fmt_mib(inflight.rss_max_kib),
            pass: inflight.all_in_flight_together
                && mib(inflight.rss_max_kib) <= TARGET_RSS_INFLIGHT_MIB,
        });
        if let Some(settled) = &inflight.settled {
            let bound = 2 * memory.rss_idle_kib;
            checks.push(Check {
                name: format!("RSS {:.0} s after the in-flight burst", settled.after_s),
                target: format!("≤ 2 × idle = {}", fmt_mib(bound)),
                measured: fmt_mib(settled.rss_kib),
                pass: memory.rss_idle_kib > 0 && settled.rss_kib <= bound,
            });
        }
    }
    checks
}

/// CPU per call of every process in both phases. The simulator's direct-phase figure is the
/// cost of one bare hyper HTTP/1.1 exchange on this machine (kernel included), the floor
/// against which the proxy's two exchanges per call (HTTP/2 in, HTTP/1.1 out) are read.
/// The proxy by front door: the gRPC phase beside the Twirp phases of each level.
fn print_doors(levels: &[Level]) {
    if levels.iter().all(|level| level.twirp_in.is_empty()) {
        return;
    }
    println!("Through each front door (same call, same proxy):");
    println!();
    println!("| C | door | rps | p50 | p99 | proxy CPU/call | errors |");
    println!("|--:|---|--:|--:|--:|--:|--:|");
    for level in levels {
        let grpc = ("gRPC", &level.proxy, &level.proxy_usage);
        let twirp = level.twirp_in.iter().map(|t| {
            (
                if t.encoding == "json" {
                    "Twirp JSON"
                } else {
                    "Twirp protobuf"
                },
                &t.stats,
                &t.proxy_usage,
            )
        });
        for (door, stats, usage) in std::iter::once(grpc).chain(twirp) {
            println!(
                "| {} | {door} | {} | {} | {} |",
                level.concurrency,
                rate_cells(stats),
                fmt_us(usage.cpu_us_per_call),
                stats.errors
            );
        }
    }
    println!();
}

fn print_cpu_breakdown(levels: &[Level]) {
    let sim = |usage: &Option<Usage>| {
        usage
            .as_ref()
            .map_or("—".to_owned(), |u| fmt_us(u.cpu_us_per_call))
    };
    println!(
        "CPU per call by process (user + system): the simulator's direct figure is one bare \
         HTTP/1.1 server exchange on this machine."
    );
    println!();
    println!(
        "| C | proxy | simulator, direct | simulator, via proxy | load generator, direct | load generator, via proxy |"
    );
    println!("|--:|--:|--:|--:|--:|--:|");
    for level in levels {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            level.concurrency,
            fmt_us(level.proxy_usage.cpu_us_per_call),
            sim(&level.sim_usage_direct),
            sim(&level.sim_usage_proxy),
            fmt_us(level.loadgen_usage_direct.cpu_us_per_call),
            fmt_us(level.loadgen_usage_proxy.cpu_us_per_call),
        );
    }
    println!();
}

/// Prints the markdown report to stdout.
pub fn print(report: &Report) {
    let run = &report.run;
    println!();
    println!("## egress-proxy benchmark");
    println!();
    println!(
        "Call: {}. {} s measured per phase after {} s warm-up; {} CPUs; simulator: {}; \
         load generator: {} tokio worker threads; proxy RUST_LOG={}.",
        run.call,
        run.duration_s,
        run.warmup_s,
        run.cpus,
        run.sim_mode,
        run.loadgen_threads,
        run.proxy_rust_log
    );
    println!();
    if !report.levels.is_empty() {
        println!(
            "| C | direct rps | direct p50 | direct p99 | proxy rps | proxy p50 | proxy p99 | \
             added p50 | proxy CPU/call | proxy/direct | errors (direct/proxy) |"
        );
        println!("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for level in &report.levels {
            let added = if level.concurrency == 1 {
                format!(
                    "{} {}",
                    fmt_us(level.added_p50_us),
                    verdict(level.added_p50_us <= TARGET_ADDED_P50_US)
                )
            } else {
                fmt_us(level.added_p50_us)
            };
            let cpu = level.proxy_usage.cpu_us_per_call;
            println!(
                "| {} | {} | {} | {} | {} {} | {} {} | {}/{} |",
                level.concurrency,
                rate_cells(&level.direct),
                rate_cells(&level.proxy),
                added,
                fmt_us(cpu),
                verdict(level.proxy.calls() > 0 && cpu <= TARGET_CPU_PER_CALL_US),
                fmt_ratio(level.throughput_ratio),
                verdict(level.throughput_ratio >= TARGET_THROUGHPUT_RATIO),
                level.direct.errors,
                level.proxy.errors,
            );
        }
        println!();
        print_doors(&report.levels);
        print_cpu_breakdown(&report.levels);
        let others: Vec<f64> = report
            .levels
            .iter()
            .flat_map(|l| [l.other_cores_direct, l.other_cores_proxy])
            .collect();
        let mean = others.iter().sum::<f64>() / others.len() as f64;
        let max = others.iter().copied().fold(0.0, f64::max);
        let per_k = |connects: u64, stats: &CallStats| {
            if stats.calls() == 0 {
                0.0
            } else {
                connects as f64 * 1000.0 / stats.calls() as f64
            }
        };
        let connects: Vec<String> = report
            .levels
            .iter()
            .map(|l| {
                format!(
                    "C={}: {:.0} proxy / {:.0} direct",
                    l.concurrency,
                    per_k(l.tcp_connects_proxy, &l.proxy),
                    per_k(l.tcp_connects_direct, &l.direct)
                )
            })
            .collect();
        println!(
            "New TCP connections per 1000 calls (machine-wide; 0 = all connections reused): {}.",
            connects.join(", ")
        );
        print_other_cores(mean, max);
        println!();
    }

    let memory = &report.memory;
    println!("| proxy memory | RSS | target |");
    println!("|---|--:|---|");
    println!(
        "| idle (before any call, {} threads) | {} | ≤ {TARGET_RSS_IDLE_MIB:.0} MiB {} |",
        memory.threads_idle,
        fmt_mib(memory.rss_idle_kib),
        verdict(memory.rss_idle_kib > 0 && mib(memory.rss_idle_kib) <= TARGET_RSS_IDLE_MIB),
    );
    if memory.rss_peak_load_kib > 0 {
        println!(
            "| peak under load (VmHWM; sampled max {}) | {} | — |",
            fmt_mib(memory.rss_peak_load_sampled_kib),
            fmt_mib(memory.rss_peak_load_kib),
        );
    }
    if let Some(inflight) = &memory.inflight {
        println!(
            "| {} calls in flight (upstream delay {} ms) | {} | ≤ {TARGET_RSS_INFLIGHT_MIB:.0} MiB {} |",
            inflight.calls,
            inflight.upstream_delay_ms,
            fmt_mib(inflight.rss_max_kib),
            verdict(
                inflight.all_in_flight_together
                    && mib(inflight.rss_max_kib) <= TARGET_RSS_INFLIGHT_MIB
            ),
        );
        println!(
            "| 1 s after they finished | {} | — |",
            fmt_mib(inflight.rss_after_kib)
        );
        if let Some(settled) = &inflight.settled {
            // An allocator may keep what a burst freed; the target is that it goes back.
            let bound = 2 * memory.rss_idle_kib;
            let heap = settled.heap.map_or_else(String::new, |heap| {
                format!(
                    " (heap: {} allocated, {} resident)",
                    fmt_mib(heap.allocated),
                    fmt_mib(heap.resident)
                )
            });
            println!(
                "| {:.0} s after they finished | {}{heap} | ≤ 2 × idle = {} {} |",
                settled.after_s,
                fmt_mib(settled.rss_kib),
                fmt_mib(bound),
                verdict(memory.rss_idle_kib > 0 && settled.rss_kib <= bound),
            );
        }
        println!();
        println!(
            "In-flight test: {} ok, {} errors; latency {:.0}–{:.0} ms; proxy RSS {} before, \
             {:.1} KiB per call in flight (peak minus before); proxy held up to {} file \
             descriptors and {} threads; all calls in flight together: {}.",
            inflight.ok,
            inflight.errors,
            inflight.min_latency_ms,
            inflight.max_latency_ms,
            fmt_mib(inflight.rss_before_kib),
            inflight.rss_max_kib.saturating_sub(inflight.rss_before_kib) as f64
                / inflight.calls.max(1) as f64,
            inflight.fds_max,
            inflight.threads,
            if inflight.all_in_flight_together {
                "yes"
            } else {
                "NO"
            },
        );
        if let Some(err) = &inflight.first_error {
            println!("First in-flight error: {err}");
        }
    }
    println!();

    for level in &report.levels {
        for (side, stats) in [("direct", &level.direct), ("proxy", &level.proxy)] {
            if let Some(err) = &stats.first_error {
                println!(
                    "C={} {side}: {} errors, first: {err}",
                    level.concurrency, stats.errors
                );
            }
        }
    }

    print_targets(&report.checks);
}

/// The line counting the targets met, and one line per missed target.
fn print_targets(checks: &[Check]) {
    if checks.is_empty() {
        return;
    }
    let met = checks.iter().filter(|c| c.pass).count();
    println!(
        "Targets: {met} of {} met{}",
        checks.len(),
        if met == checks.len() {
            "."
        } else {
            "; missed:"
        }
    );
    for check in checks.iter().filter(|c| !c.pass) {
        println!(
            "- {}: {} (target {}) MISS",
            check.name, check.measured, check.target
        );
    }
}

/// The sentence on what other processes used during the windows, warning when that is
/// enough to skew the numbers.
fn print_other_cores(mean: f64, max: f64) {
    println!(
        "Other processes on this machine used {mean:.2} cores on average (up to {max:.2}) \
         during the measurement windows.{}",
        if max > 0.25 {
            " WARNING: the machine was busy; these numbers are skewed (rerun on a quiet \
             machine)."
        } else {
            ""
        }
    );
}

/// Delay p99 of event deliveries on one replica with [`EVENT_TARGET_WATCHERS`] watchers, ms.
pub const TARGET_EVENT_P99_MS: f64 = 5.0;
/// Delay p99 of event deliveries across two replicas (through Redis), ms.
pub const TARGET_EVENT_P99_REPLICAS_MS: f64 = 20.0;
/// Proxy RSS per open, idle watch stream (its share of the HTTP/2 connections included), KiB.
pub const TARGET_RSS_PER_WATCHER_KIB: f64 = 4.0;
/// The watcher count the event targets are stated for.
pub const EVENT_TARGET_WATCHERS: usize = 10_000;
/// Fewer watchers than this make the RSS difference too small (page and allocator
/// granularity) to judge per watcher.
pub const RSS_PER_WATCHER_MIN_WATCHERS: usize = 1000;

/// The events mode: settings and one entry per (replicas, watchers) level.
#[derive(Debug, Clone, Serialize)]
pub struct EventsRun {
    /// Webhooks per second asked for (`--event-rate`).
    pub event_rate: f64,
    pub watchers_per_connection: usize,
    pub levels: Vec<EventLevel>,
}

/// CPU and memory of one process over an events window.
#[derive(Debug, Clone, Serialize)]
pub struct NamedUsage {
    pub process: String,
    /// `cpu_us_per_call` is per delivered event.
    #[serde(flatten)]
    pub usage: Usage,
}

/// One events level: N watchers reading webhooks posted at a steady rate.
#[derive(Debug, Clone, Serialize)]
pub struct EventLevel {
    /// 1: webhooks and watchers on one proxy; 2: webhooks to replica A, watchers on
    /// replica B, the event crossing through Redis.
    pub replicas: usize,
    pub watchers: usize,
    /// HTTP/2 connections the watchers were spread over.
    pub connections: usize,
    /// Webhooks accepted (HTTP 200) during the window, and those refused or failed.
    pub events_posted: u64,
    pub events_failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_post_error: Option<String>,
    /// Webhooks accepted per second, as the load generator managed to post them.
    pub events_per_s: f64,
    /// (event, watcher) pairs read, and those expected (accepted × watchers) but never read.
    pub deliveries: u64,
    pub missed: u64,
    /// From just before a webhook's POST to a watcher reading its event: `ok` is the
    /// deliveries, `errors` the missed ones, `rps` deliveries per second.
    pub delay: CallStats,
    /// Watch streams that ended before the window did (e.g. RESOURCE_EXHAUSTED after
    /// falling a whole queue behind).
    pub watchers_ended: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_watch_error: Option<String>,
    /// CPU time of the proxies (summed) per delivered event, µs.
    pub proxy_cpu_us_per_delivery: f64,
    /// Every observed process over the window: the proxies, the load generator, Redis.
    pub usage: Vec<NamedUsage>,
    /// Average cores used by other processes on the machine during the window.
    pub other_cores: f64,
    /// VmRSS of the watchers' proxy before the watchers connected, and with all of them
    /// watching but no event sent yet, KiB.
    pub rss_before_watchers_kib: u64,
    pub rss_watchers_idle_kib: u64,
    /// (idle with watchers − before) / watchers.
    pub rss_per_idle_watcher_kib: f64,
}

impl EventLevel {
    fn delay_target_ms(&self) -> f64 {
        if self.replicas == 1 {
            TARGET_EVENT_P99_MS
        } else {
            TARGET_EVENT_P99_REPLICAS_MS
        }
    }

    /// p99 within the target, and nothing missed (a missed delivery has no delay to rank).
    fn delay_pass(&self) -> bool {
        self.deliveries > 0
            && self.missed == 0
            && self.delay.p99_us <= self.delay_target_ms() * 1000.0
    }

    /// Whether the RSS per watcher meets its target; `None` with too few watchers to tell.
    fn rss_pass(&self) -> Option<bool> {
        (self.watchers >= RSS_PER_WATCHER_MIN_WATCHERS)
            .then_some(self.rss_per_idle_watcher_kib <= TARGET_RSS_PER_WATCHER_KIB)
    }
}

fn replicas_name(replicas: usize) -> &'static str {
    if replicas == 1 {
        "one replica"
    } else {
        "two replicas via Redis"
    }
}

/// Checks the event targets against every level that has numbers for them.
pub fn event_checks(levels: &[EventLevel]) -> Vec<Check> {
    let mut checks = Vec::new();
    for replicas in [1, 2] {
        let mode: Vec<&EventLevel> = levels.iter().filter(|l| l.replicas == replicas).collect();
        let Some(first) = mode.first() else { continue };
        let target = format!("p99 ≤ {} ms, none missed", first.delay_target_ms());
        if !mode.iter().any(|l| l.watchers >= EVENT_TARGET_WATCHERS) {
            checks.push(Check {
                name: format!(
                    "event delay with {EVENT_TARGET_WATCHERS} watchers, {}",
                    replicas_name(replicas)
                ),
                target: target.clone(),
                measured: format!("not measured (no level of {EVENT_TARGET_WATCHERS}+ watchers)"),
                pass: false,
            });
        }
        for level in mode {
            checks.push(Check {
                name: format!(
                    "event delay with {} watchers, {}",
                    level.watchers,
                    replicas_name(replicas)
                ),
                target: target.clone(),
                measured: format!(
                    "p99 {}, {} missed",
                    fmt_us(level.delay.p99_us),
                    level.missed
                ),
                pass: level.delay_pass(),
            });
            if let Some(pass) = level.rss_pass() {
                checks.push(Check {
                    name: format!(
                        "RSS per idle watcher with {} watchers, {}",
                        level.watchers,
                        replicas_name(replicas)
                    ),
                    target: format!("≤ {TARGET_RSS_PER_WATCHER_KIB:.0} KiB"),
                    measured: format!("{:.2} KiB", level.rss_per_idle_watcher_kib),
                    pass,
                });
            }
        }
    }
    checks
}

/// Prints the events report: a table per replica setup, CPU by process, and the targets.
pub fn print_events(run: &RunInfo, events: &EventsRun, checks: &[Check]) {
    println!();
    println!("## egress-proxy events");
    println!();
    println!(
        "LiveKit-signed `egress_updated` webhooks (each with its own id) POSTed over HTTP/1.1 \
         keep-alive at {} per second for {} s to the proxy's `--webhook-listen`; watchers are \
         `EgressEvents/Watch` streams, at most {} per HTTP/2 connection. Delay: from just \
         before a webhook's POST to a watcher reading its event, over every (event, watcher) \
         pair. {} CPUs; the load generator ({} tokio worker threads: the poster and every \
         watcher) runs on the same CPUs as the proxies (and redis-server), so the delays \
         include its own scheduling, and the CPU it uses is not the proxies'. Proxy \
         RUST_LOG={}.",
        events.event_rate,
        run.duration_s,
        events.watchers_per_connection,
        run.cpus,
        run.loadgen_threads,
        run.proxy_rust_log,
    );
    println!();
    for replicas in [1, 2] {
        let mode: Vec<&EventLevel> = events
            .levels
            .iter()
            .filter(|l| l.replicas == replicas)
            .collect();
        if mode.is_empty() {
            continue;
        }
        if replicas == 1 {
            println!("### One replica (webhooks and watchers on the same proxy)");
        } else {
            println!(
                "### Two replicas via Redis (webhooks to replica A, watchers on replica B; CPU \
                 summed over both proxies)"
            );
        }
        println!();
        println!(
            "| watchers | events/s | deliveries | missed | delay p50 | delay p99 | proxy \
             CPU/event | RSS per idle watcher |"
        );
        println!("|--:|--:|--:|--:|--:|--:|--:|--:|");
        for level in &mode {
            let rss = match level.rss_pass() {
                Some(pass) => format!(
                    "{:.2} KiB {}",
                    level.rss_per_idle_watcher_kib,
                    verdict(pass)
                ),
                None => format!(
                    "{:.2} KiB (too few to judge)",
                    level.rss_per_idle_watcher_kib
                ),
            };
            println!(
                "| {} | {:.0} | {} | {} | {} | {} {} | {} | {} |",
                level.watchers,
                level.events_per_s,
                level.deliveries,
                level.missed,
                fmt_us(level.delay.p50_us),
                fmt_us(level.delay.p99_us),
                verdict(level.delay_pass()),
                fmt_us(level.proxy_cpu_us_per_delivery),
                rss,
            );
        }
        println!();
    }

    println!(
        "CPU per delivered event by process (user + system), with the proxy RSS before the \
         watchers connected and with them all idle:"
    );
    println!();
    println!("| replicas | watchers | CPU per event | RSS before → with idle watchers |");
    println!("|--:|--:|---|---|");
    for level in &events.levels {
        let by_process: Vec<String> = level
            .usage
            .iter()
            .map(|u| {
                format!(
                    "{} {} ({:.2} cores)",
                    u.process,
                    fmt_us(u.usage.cpu_us_per_call),
                    u.usage.cores
                )
            })
            .collect();
        println!(
            "| {} | {} | {} | {} → {} |",
            level.replicas,
            level.watchers,
            by_process.join(", "),
            fmt_mib(level.rss_before_watchers_kib),
            fmt_mib(level.rss_watchers_idle_kib),
        );
    }
    println!();
    let mean = events.levels.iter().map(|l| l.other_cores).sum::<f64>()
        / events.levels.len().max(1) as f64;
    let max = events
        .levels
        .iter()
        .map(|l| l.other_cores)
        .fold(0.0, f64::max);
    print_other_cores(mean, max);
    println!();
    for level in &events.levels {
        if let Some(err) = &level.first_post_error {
            println!(
                "{} watchers, {}: {} webhooks refused or failed, first: {err}",
                level.watchers,
                replicas_name(level.replicas),
                level.events_failed
            );
        }
        if let Some(err) = &level.first_watch_error {
            println!(
                "{} watchers, {}: {} watch streams ended early, first: {err}",
                level.watchers,
                replicas_name(level.replicas),
                level.watchers_ended
            );
        }
    }
    print_targets(checks);
}
