//! Thread-count mode (`--proxy-threads 1,2,4,8`): the proxy's CPU per call by its number of
//! tokio worker threads. Each count gets a fresh proxy (the simulator stays) and the same
//! load at every concurrency level; with `--pin-proxy-from CPU` the proxy with N threads
//! runs on CPUs `CPU..CPU+N-1` (`taskset -c`), so that threads and cores grow together while
//! the load generator and simulator keep the CPUs below (run the bench itself under
//! `taskset -c 0-…`).

use std::path::Path;
use std::sync::Arc;

use crate::load::{self, ProxyTarget, Target};
use crate::procs::{self, Pid};
use crate::report::{self, Memory, ProxyRuntime, Report, ThreadRow};
use crate::{Args, BenchError, ProxyLaunch, SimControl};

/// The proxy's CPU list for `threads` workers: `--pin-proxy-from`, else `--proxy-cpus`.
fn cpus_for(args: &Args, threads: usize) -> Option<String> {
    match args.pin_proxy_from {
        Some(first) if threads <= 1 => Some(first.to_string()),
        Some(first) => Some(format!("{first}-{}", first + threads - 1)),
        None => args.proxy_cpus.clone(),
    }
}

pub async fn run(args: &Args, bin_dir: &Path, loadgen_threads: usize) -> Result<(), BenchError> {
    let ticks_per_sec = procs::clock_ticks_per_sec();
    let (sim, sim_url) = crate::start_sim(args.sim, bin_dir)?;
    let control = SimControl::new(&sim_url)?;
    control.clear_faults().await?;
    let _log_cleaner = crate::keep_request_log_empty(control.clone());

    let mut rows = Vec::new();
    let runtimes: &[ProxyRuntime] = if args.compare_io_threads {
        &[ProxyRuntime::Workers, ProxyRuntime::IoThreads]
    } else {
        &[ProxyRuntime::Workers]
    };
    for &threads in &args.proxy_threads {
        for &runtime in runtimes {
            let cpus = cpus_for(args, threads);
            let mut launch = ProxyLaunch::new(args, &sim_url);
            launch.cpus = cpus.clone();
            match runtime {
                ProxyRuntime::Workers => launch.threads = Some(threads),
                // One worker accepts; the N connection runtimes do the calls' work.
                ProxyRuntime::IoThreads => {
                    launch.threads = Some(1);
                    launch.extra.push(format!("--io-threads={threads}"));
                }
            }
            let proxy = crate::start_proxy(bin_dir, launch)?;
            eprintln!(
                "[bench] egress-proxy with {threads} {}{} at {}",
                runtime.as_str(),
                cpus.as_deref()
                    .map(|c| format!(" on CPUs {c}"))
                    .unwrap_or_default(),
                proxy.addr
            );
            let target = Arc::new(ProxyTarget::connect(&proxy.addr, args.channels).await?);
            Target::Proxy(Arc::clone(&target), 1)
                .call_once()
                .await
                .map_err(|e| BenchError(format!("sanity call through the proxy failed: {e}")))?;
            for &concurrency in &args.concurrency {
                let mut observe = vec![proxy.pid(), Pid::SelfProcess];
                observe.extend(sim.pid());
                let channels = args.channels.max(1).min(concurrency);
                let (stats, usage) = crate::measure(
                    args,
                    &format!("{threads} {}", runtime.as_str()),
                    &Target::Proxy(Arc::clone(&target), channels),
                    concurrency,
                    &observe,
                )
                .await;
                let other_cores = usage.other_cores;
                let proxy_usage = usage.processes.into_iter().next().unwrap_or_default();
                rows.push(ThreadRow {
                    threads,
                    runtime,
                    cpus: cpus.clone(),
                    concurrency,
                    stats,
                    proxy_usage,
                    other_cores,
                });
            }
            drop(proxy);
        }
    }

    report::print_threads(&rows);
    let report = Report {
        run: crate::run_info(
            args,
            bin_dir,
            loadgen_threads,
            ticks_per_sec,
            format!(
                "{}/ListEgress {{room_name: \"{}\"}} (empty answer)",
                egress_proto::EGRESS_SERVICE,
                load::BENCH_ROOM
            ),
        ),
        levels: Vec::new(),
        memory: Memory::default(),
        checks: Vec::new(),
        all_pass: rows.iter().all(|row| row.stats.errors == 0),
        soak: Vec::new(),
        events: None,
        threads: rows,
    };
    crate::write_json(args, &report)?;
    drop(sim);
    Ok(())
}
