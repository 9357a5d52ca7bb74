use std::process::ExitCode;

use clap::Parser;
use egress_proxy::app::App;
use egress_proxy::config::{Cli, Command, Config, LogFormat, Upstream};
use egress_proxy::{logging, server};

// Every call allocates a few dozen short-lived objects across two tokio workers; glibc's
// allocator spends a tenth of the proxy's CPU on them (callgrind). jemalloc costs no more
// CPU per call than mimalloc did (egress-bench), and its background thread gives a burst's
// memory back while the workers sit idle, which mimalloc only does from threads that
// allocate: a minute after 10,000 calls in flight, mimalloc still held 219 MiB of a
// 269 MiB peak, jemalloc 59 MiB of 233.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's own counts for `/metrics`: what the gateway holds apart from what the
/// allocator keeps (RSS alone cannot tell a leak from pages not yet given back).
#[cfg(not(feature = "dhat-heap"))]
fn heap_stats() -> Option<egress_telemetry::HeapStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The counts are a snapshot taken at the last epoch: advance it first.
    epoch::advance().ok()?;
    Some(egress_telemetry::HeapStats {
        allocated: stats::allocated::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
    })
}

// `--features dhat-heap`: every allocation is recorded with its call stack, and the bytes
// live at the heap's peak are written by allocation site when the process exits.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return fail(format_args!("cannot start the runtime: {err}")),
    };
    match cli.command {
        Some(Command::Simulate { listen }) => {
            let _logs = match logging::init(LogFormat::Text) {
                Ok(logs) => logs,
                Err(err) => return fail(format_args!("{err}")),
            };
            runtime.block_on(simulate(listen))
        }
        None => match cli.run.into_config() {
            Ok(config) => {
                let _logs = match logging::init(config.log_format) {
                    Ok(logs) => logs,
                    Err(err) => return fail(format_args!("{err}")),
                };
                runtime.block_on(run(config))
            }
            Err(err) => fail(format_args!("{err}")),
        },
    }
}

/// Configuration problems end the process with a single line and exit code 2.
fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("egress-proxy: error: {message}");
    ExitCode::from(2)
}

async fn run(config: Config) -> ExitCode {
    let dev = matches!(config.upstream, Upstream::DevSimulator);
    let (tls, mtls) = config
        .tls
        .as_ref()
        .map_or((false, false), |t| (true, t.client_ca.is_some()));
    let api_key = config.credentials.api_key.clone();
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(err) => return fail(format_args!("{err}")),
    };
    #[cfg(not(feature = "dhat-heap"))]
    app.metrics().register_heap(std::sync::Arc::new(heap_stats));
    // Tests and orchestration scripts read the addresses from this line.
    tracing::info!(
        listen = %app.local_addr(),
        admin = %app.admin_addr(),
        webhook = %app.webhook_addr().map_or("off".to_owned(), |a| a.to_string()),
        upstream = %app.upstream_url(),
        api_key = %api_key,
        dev,
        auth = app.auth_mode(),
        tls,
        mtls,
        "egress-proxy ready"
    );
    match app.serve(server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format_args!("{err}")),
    }
}

async fn simulate(listen: std::net::SocketAddr) -> ExitCode {
    match egress_proxy::app::simulate(listen, server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format_args!("{err}")),
    }
}
