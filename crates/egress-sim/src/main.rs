//! `egress-sim`: serves the simulated LiveKit Egress API until SIGINT/SIGTERM.
//!
//! Credentials come from `LIVEKIT_API_KEY` / `LIVEKIT_API_SECRET`, which are required. Once
//! bound, the simulator prints one line `egress-sim listening on http://ADDR` to stdout, so
//! `--listen 127.0.0.1:0` can be used and the port read back.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use egress_auth::Credentials;
use egress_sim::{Flavor, Simulator};

/// LiveKit egress simulator: LiveKit's Twirp Egress API on loopback, with in-memory state and
/// fault injection (`/sim/...`). Keys come from LIVEKIT_API_KEY and LIVEKIT_API_SECRET.
#[derive(Debug, Parser)]
#[command(name = "egress-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7880")]
    listen: SocketAddr,

    /// Path prefix before /twirp, e.g. /lk for POST /lk/twirp/livekit.Egress/...
    #[arg(long, default_value = "")]
    prefix: String,

    /// Milliseconds from Start to EGRESS_ACTIVE.
    #[arg(long, default_value_t = 500)]
    activate_after_ms: u64,

    /// Milliseconds from StopEgress to EGRESS_COMPLETE.
    #[arg(long, default_value_t = 200)]
    complete_after_ms: u64,

    /// LiveKit deployment to imitate: `oss` (the open-source server: relayed errors read
    /// `twirp error unknown: …`, ListEgress ignores page_token) or `cloud` (plain error
    /// texts, ListEgress paginated).
    #[arg(long, default_value = "oss", value_parser = parse_flavor)]
    flavor: Flavor,

    /// Paginate ListEgress with this page size, whatever the flavor (default: none for
    /// `oss`, 100 for `cloud`).
    #[arg(long)]
    page_size: Option<usize>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let credentials = match Credentials::from_env() {
        Ok(credentials) => credentials,
        Err(error) => {
            eprintln!("egress-sim: {error}; set LIVEKIT_API_KEY and LIVEKIT_API_SECRET");
            return ExitCode::from(2);
        }
    };

    let mut builder = Simulator::builder()
        .credentials(credentials)
        .prefix(args.prefix)
        .flavor(args.flavor)
        .activate_after(Duration::from_millis(args.activate_after_ms))
        .complete_after(Duration::from_millis(args.complete_after_ms));
    if let Some(page_size) = args.page_size {
        builder = builder.paginate(page_size);
    }
    let simulator = builder.build();

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("egress-sim: cannot listen on {}: {error}", args.listen);
            return ExitCode::from(1);
        }
    };
    let local = listener.local_addr().unwrap_or(args.listen);
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "egress-sim listening on http://{local}");
    let _ = stdout.flush();

    match simulator.serve(listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("egress-sim: {error}");
            ExitCode::from(1)
        }
    }
}

fn parse_flavor(value: &str) -> Result<Flavor, String> {
    value
        .parse()
        .map_err(|e: egress_sim::UnknownFlavor| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
