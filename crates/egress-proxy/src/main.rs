use std::process::ExitCode;

use clap::Parser;
use egress_proxy::app::App;
use egress_proxy::config::{Cli, Command, Config, LogFormat, Upstream};
use egress_proxy::server;

// Every call allocates a few dozen short-lived objects across two tokio workers; glibc's
// allocator spends a tenth of the proxy's CPU on them (callgrind), mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return fail(format_args!("cannot start the runtime: {err}")),
    };
    match cli.command {
        Some(Command::Simulate { listen }) => {
            let _logs = match init_tracing(LogFormat::Text) {
                Ok(logs) => logs,
                Err(err) => return fail(format_args!("{err}")),
            };
            runtime.block_on(simulate(listen))
        }
        None => match cli.run.into_config() {
            Ok(config) => {
                let _logs = match init_tracing(config.log_format) {
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

/// What must outlive `main`'s work for logs and traces to be flushed.
struct Logging {
    _writer: tracing_appender::non_blocking::WorkerGuard,
    #[cfg(feature = "otlp")]
    _traces: Option<egress_proxy::otlp::Exporting>,
}

/// Logs go to stderr through a background writer: a call never waits on a slow terminal or
/// log collector. With the `otlp` feature, spans also go to the OTLP collector named by
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, if any.
fn init_tracing(format: LogFormat) -> Result<Logging, String> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // Keep every line (audit lines included) rather than dropping under pressure.
        .lossy(false)
        .finish(std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otlp")]
    {
        let (layer, traces) = egress_proxy::otlp::layer()?.unzip();
        subscriber.with(layer).init();
        Ok(Logging {
            _writer: guard,
            _traces: traces,
        })
    }
    #[cfg(not(feature = "otlp"))]
    {
        subscriber.init();
        Ok(Logging { _writer: guard })
    }
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
    // Tests and orchestration scripts read the addresses from this line.
    tracing::info!(
        listen = %app.local_addr(),
        admin = %app.admin_addr(),
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

#[cfg(feature = "simulator")]
async fn simulate(listen: std::net::SocketAddr) -> ExitCode {
    let credentials = match egress_auth::Credentials::from_env() {
        Ok(c) => c,
        Err(err) => return fail(format_args!("{err}")),
    };
    let sim = egress_sim::Simulator::builder()
        .credentials(credentials)
        .build();
    let listener = match server::bind(listen).await {
        Ok(l) => l,
        Err(err) => return fail(format_args!("{err}")),
    };
    tracing::info!(listen = %listen, "egress simulator ready");
    match sim.serve(listener, server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format_args!("{err}")),
    }
}

#[cfg(not(feature = "simulator"))]
async fn simulate(_listen: std::net::SocketAddr) -> ExitCode {
    fail(format_args!(
        "this build left the simulator out (cargo feature `simulator`)"
    ))
}
