//! `egress-sim`: serves the simulated LiveKit Egress API until SIGINT/SIGTERM.
//!
//! Credentials come from `LIVEKIT_API_KEY` / `LIVEKIT_API_SECRET`, which are required. Once
//! bound, the simulator prints one line `egress-sim listening on http://ADDR` to stdout, so
//! `--listen 127.0.0.1:0` can be used and the port read back.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use egress_auth::Credentials;
use egress_sim::{Flavor, Rooms, SimTls, Simulator};

/// `--rooms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RoomsArg {
    /// Rooms are created on demand by the first egress that names them.
    Auto,
    /// Room egresses need a live room (POST /sim/rooms), like LiveKit.
    Strict,
}

/// LiveKit egress simulator: LiveKit's Twirp Egress API on loopback, with in-memory state and
/// fault injection (`/sim/...`). Keys come from LIVEKIT_API_KEY and LIVEKIT_API_SECRET.
#[derive(Debug, Parser)]
#[command(name = "egress-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7880")]
    listen: SocketAddr,

    /// PEM certificate chain: serve HTTPS (ALPN h2 and http/1.1), as LiveKit Cloud does.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,

    /// Path prefix before /twirp, e.g. /lk for POST /lk/twirp/livekit.Egress/...
    #[arg(long, default_value = "")]
    prefix: String,

    /// How long an egress stays EGRESS_STARTING before EGRESS_ACTIVE (e.g. 2s, 500ms, or
    /// bare milliseconds); StopEgress meanwhile aborts it.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    start_delay: Duration,

    /// Older form of --start-delay, in milliseconds.
    #[arg(long, hide = true, conflicts_with = "start_delay")]
    activate_after_ms: Option<u64>,

    /// auto: rooms exist once an egress names them; strict: room egresses need a live room
    /// (POST /sim/rooms), else not_found "requested room does not exist".
    #[arg(long, value_enum, default_value = "auto")]
    rooms: RoomsArg,

    /// Start with no egress worker connected: Start RPCs fail with unavailable "no response
    /// from servers" after --no-worker-delay (PUT /sim/workers switches at runtime).
    #[arg(long)]
    no_egress_workers: bool,

    /// How long a Start RPC waits for a worker when none is connected.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    no_worker_delay: Duration,

    /// How long StopEgress / UpdateStream wait for the worker of an egress that has none
    /// (unknown, ended, or gone) before answering from the store.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    gone_worker_delay: Duration,

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

    /// Send LiveKit webhooks (egress_started / egress_updated / egress_ended, signed with
    /// LIVEKIT_API_KEY) to this http:// URL; repeat for more URLs. GET /sim/webhooks lists
    /// what was sent.
    #[arg(long = "webhook-url", value_name = "URL", value_parser = parse_webhook_url)]
    webhook_urls: Vec<String>,
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
        .start_delay(
            args.activate_after_ms
                .map_or(args.start_delay, Duration::from_millis),
        )
        .complete_after(Duration::from_millis(args.complete_after_ms))
        .rooms(match args.rooms {
            RoomsArg::Auto => Rooms::Auto,
            RoomsArg::Strict => Rooms::Strict,
        })
        .egress_workers(!args.no_egress_workers)
        .no_worker_delay(args.no_worker_delay)
        .gone_worker_delay(args.gone_worker_delay);
    if let Some(page_size) = args.page_size {
        builder = builder.paginate(page_size);
    }
    for url in args.webhook_urls {
        builder = builder.webhook_url(url);
    }
    let scheme = if let Some((cert, key)) = args.tls_cert.zip(args.tls_key) {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let tls = read(&cert).and_then(|cert| {
            let key = read(&key)?;
            SimTls::from_pem(&cert, &key).map_err(|e| e.to_string())
        });
        match tls {
            Ok(tls) => builder = builder.tls(tls),
            Err(error) => {
                eprintln!("egress-sim: TLS: {error}");
                return ExitCode::from(2);
            }
        }
        "https"
    } else {
        "http"
    };
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
    let _ = writeln!(stdout, "egress-sim listening on {scheme}://{local}");
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

/// An `http://host[:port][/path]` URL (the simulator sends webhooks over plain HTTP).
fn parse_webhook_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(format!("{text:?} is not an http:// URL"));
    }
    Ok(text.to_owned())
}

/// A duration as `2s`, `1.5s`, `300ms`, or bare milliseconds (`300`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || format!("{text:?} is not a duration (e.g. 2s, 1.5s, 300ms, 300)");
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 0.001)
    };
    let value: f64 = number.trim().parse().map_err(|_| invalid())?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("300"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "egress-sim",
            "--rooms",
            "strict",
            "--no-egress-workers",
            "--no-worker-delay",
            "500ms",
            "--start-delay",
            "1s",
            "--webhook-url",
            "http://127.0.0.1:9/a",
            "--webhook-url",
            "http://[::1]:9/b",
        ])
        .unwrap();
        assert_eq!(
            args.webhook_urls,
            ["http://127.0.0.1:9/a", "http://[::1]:9/b"]
        );
        assert!(Args::try_parse_from(["egress-sim", "--webhook-url", "https://x/"]).is_err());
        assert!(Args::try_parse_from(["egress-sim", "--webhook-url", "nope"]).is_err());
        assert_eq!(args.rooms, RoomsArg::Strict);
        assert!(args.no_egress_workers);
        assert_eq!(args.no_worker_delay, Duration::from_millis(500));
        assert_eq!(args.start_delay, Duration::from_secs(1));
        assert_eq!(args.gone_worker_delay, Duration::from_secs(3));
        assert!(
            Args::try_parse_from([
                "egress-sim",
                "--start-delay",
                "1s",
                "--activate-after-ms",
                "5"
            ])
            .is_err()
        );
    }
}
