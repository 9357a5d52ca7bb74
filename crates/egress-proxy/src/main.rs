use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use egress_auth::{TokenCache, TokenCacheConfig, VideoGrants};
use egress_policy::{AuthMode, PolicyStore};
use egress_proxy::config::{Cli, Command, Config, ConfigError, LogFormat, Upstream};
use egress_proxy::deadline::Deadlines;
use egress_proxy::listen;
use egress_proxy::reload::Reloader;
use egress_proxy::server::{self, ServerSettings};
use egress_telemetry::{AdminState, Metrics};
use egress_twirp::{BaseUrl, ClientConfig, TwirpClient};

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
    // --dev: the simulator runs in this process, on a port of its own.
    let (url, _simulator) = match &config.upstream {
        Upstream::LiveKit(url) => (url.clone(), None),
        Upstream::DevSimulator => {
            let sim = egress_sim::Simulator::builder()
                .credentials(config.credentials.clone())
                .build();
            match sim.spawn("127.0.0.1:0".parse().expect("literal address")) {
                Ok(handle) => (handle.url(), Some(handle)),
                Err(err) => return fail(format_args!("cannot start the simulator: {err}")),
            }
        }
    };
    let base_url = match BaseUrl::parse(&url) {
        Ok(base) => base,
        Err(err) => {
            return fail(format_args!(
                "invalid LIVEKIT_URL {:?}: {err}",
                url.as_str()
            ));
        }
    };
    let mut client_config = ClientConfig::new(base_url);
    client_config.connect_timeout = config.connect_timeout;
    client_config.default_timeout = config.upstream_timeout;
    client_config.max_response_bytes = config.max_message_size;
    // HTTP/1.1 upstreams need a connection per concurrent call; keeping fewer idle than
    // calls may be in flight churns connections (and ports) under load.
    client_config.pool_max_idle_per_host = config.max_concurrency;
    let tokens = Arc::new(TokenCache::new(
        config.credentials.clone(),
        VideoGrants::room_record(),
        TokenCacheConfig::default(),
    ));
    let metrics = Metrics::new();
    {
        let tokens = Arc::clone(&tokens);
        metrics.register_token_refreshes(Arc::new(move || tokens.refreshes()));
    }
    let admin = AdminState::new(metrics.clone());
    let client = match TwirpClient::new(client_config, Arc::clone(&tokens)) {
        Ok(client) => client,
        Err(err) => return fail(format_args!("cannot build the LiveKit client: {err}")),
    };
    let tls = match config
        .tls
        .as_ref()
        .map(egress_proxy::tls::server_config)
        .transpose()
    {
        Ok(tls) => tls,
        Err(err) => return fail(format_args!("{err}")),
    };
    let policies = match load_policy(&config) {
        Ok(policies) => policies,
        Err(message) => return fail(format_args!("{message}")),
    };
    let reloader = Reloader {
        policy: config.policy_file.clone().zip(policies.clone()),
        secret: config
            .api_secret_file
            .clone()
            .map(|path| (path, config.api_key.clone(), Arc::clone(&tokens))),
    };
    let auth_mode = policies.as_ref().map_or("none (no policy file)", |p| {
        p.current().auth_mode().as_str()
    });
    // Only once the configuration is known to work, so a bad one still ends in one line.
    let max_connections = match listen::raise_open_files_limit() {
        Some((before, after)) => {
            tracing::info!(before, after, "open-files limit (RLIMIT_NOFILE)");
            config
                .max_connections
                .unwrap_or_else(|| listen::default_max_connections(after))
        }
        None => {
            tracing::warn!("cannot read the open-files limit (RLIMIT_NOFILE)");
            config.max_connections.unwrap_or(10_000)
        }
    };
    let listener = match server::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => return fail(format_args!("{err}")),
    };
    let admin_listener = match server::bind(config.admin_listen).await {
        Ok(listener) => listener,
        Err(err) => return fail(format_args!("admin listener: {err}")),
    };
    let admin_local = admin_listener.local_addr().unwrap_or(config.admin_listen);
    let local = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(
        listen = %local,
        admin = %admin_local,
        upstream = %url,
        api_key = %config.credentials.api_key,
        dev = matches!(config.upstream, Upstream::DevSimulator),
        auth = auth_mode,
        max_connections,
        tls = config.tls.is_some(),
        mtls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        "egress-proxy ready"
    );
    let reload_task = tokio::spawn(reloader.run());
    let settings = ServerSettings {
        policies,
        tls,
        metrics,
        admin: admin.clone(),
        deadlines: Deadlines {
            default: config.upstream_timeout,
            max: config.max_call_timeout,
        },
        max_message_size: config.max_message_size,
        max_concurrency: config.max_concurrency,
        max_concurrency_per_connection: config.max_concurrency_per_connection,
        max_connections,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        drain_timeout: config.drain_timeout,
        probe_interval: config.probe_interval,
    };
    // The admin endpoint outlives the gRPC drain, so /readyz can say "draining" meanwhile.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(egress_telemetry::serve_admin(
        admin_listener,
        admin,
        async {
            let _ = admin_stopped.await;
        },
    ));
    let served = server::serve(listener, client, settings, server::shutdown_signal()).await;
    reload_task.abort();
    let _ = admin_stop.send(());
    let _ = admin_task.await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format_args!("{err}")),
    }
}

/// Loads the policy file and refuses setups that would expose unauthenticated access.
fn load_policy(config: &Config) -> Result<Option<Arc<PolicyStore>>, String> {
    let store = match &config.policy_file {
        None => None,
        Some(path) => Some(Arc::new(
            PolicyStore::load(path).map_err(|e| e.to_string())?,
        )),
    };
    let mode = store.as_ref().map(|s| s.current().auth_mode());
    if matches!(mode, None | Some(AuthMode::None))
        && !config.listen.ip().is_loopback()
        && !config.allow_unauthenticated
    {
        return Err(ConfigError::UnauthenticatedExposed(config.listen).to_string());
    }
    if mode == Some(AuthMode::Mtls)
        && config
            .tls
            .as_ref()
            .and_then(|t| t.client_ca.as_ref())
            .is_none()
    {
        let path = config.policy_file.as_ref().map(|p| p.display().to_string());
        return Err(ConfigError::MtlsWithoutClientCa {
            path: path.unwrap_or_default(),
        }
        .to_string());
    }
    if mode == Some(AuthMode::Bearer) && config.tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            "bearer tokens over plaintext on a non-loopback listener; consider --tls-cert/--tls-key"
        );
    }
    Ok(store)
}

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
