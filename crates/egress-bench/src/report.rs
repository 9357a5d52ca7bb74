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
    }
    checks
}

/// CPU per call of every process in both phases. The simulator's direct-phase figure is the
/// cost of one bare hyper HTTP/1.1 exchange on this machine (kernel included), the floor
/// against which the proxy's two exchanges per call (HTTP/2 in, HTTP/1.1 out) are read.
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
        println!();
        println!(
            "In-flight test: {} ok, {} errors; latency {:.0}–{:.0} ms; proxy held up to {} file \
             descriptors and {} threads; all calls in flight together: {}.",
            inflight.ok,
            inflight.errors,
            inflight.min_latency_ms,
            inflight.max_latency_ms,
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

    if !report.checks.is_empty() {
        let met = report.checks.iter().filter(|c| c.pass).count();
        println!(
            "Targets: {met} of {} met{}",
            report.checks.len(),
            if report.all_pass { "." } else { "; missed:" }
        );
        for check in report.checks.iter().filter(|c| !c.pass) {
            println!(
                "- {}: {} (target {}) MISS",
                check.name, check.measured, check.target
            );
        }
    }
}
