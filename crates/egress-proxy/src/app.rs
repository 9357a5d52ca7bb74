//! The gateway as a value: [`App::build`] turns a validated [`Config`] into bound
//! listeners and ready parts, [`App::serve`] runs it until shutdown. The binary is a thin
//! shell around these two; tests run the same `App` in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use egress_auth::{TokenCache, TokenCacheConfig, VideoGrants};
use egress_policy::{AuthMode, PolicyError, PolicyStore};
use egress_telemetry::{AdminState, Metrics};
use egress_twirp::{BaseUrl, ClientConfig, TwirpClient};
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError, Upstream, UpstreamFlavor};
use crate::deadline::Deadlines;
use crate::events::redis::Fanout;
use crate::events::webhook::{WebhookReceiver, WebhookSettings};
use crate::events::{Hub, HubSettings};
use crate::listen;
use crate::reload::Reloader;
use crate::server::{self, ServerSettings};
use crate::tls::TlsError;

/// Why the gateway cannot start; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid LIVEKIT_URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: egress_twirp::Error,
    },
    #[error("cannot read --upstream-ca-file {}: {source}", path.display())]
    UpstreamCa {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the LiveKit client: {0}")]
    Client(#[source] egress_twirp::Error),
    #[error("cannot start the simulator: {0}")]
    Simulator(#[source] std::io::Error),
    #[error("{0}")]
    SimulatorKeys(#[source] egress_auth::AuthError),
    #[error(
        "--dev needs the embedded simulator; this build left it out (cargo feature `simulator`)"
    )]
    NoSimulator,
    /// `what` is empty for the gRPC listener (the source names the address).
    #[error("{what}{source}")]
    Bind {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A gateway ready to serve: listeners bound, upstream client and policy loaded.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    admin_listener: TcpListener,
    events: EventSources,
    client: TwirpClient,
    settings: ServerSettings,
    reloader: Reloader,
    upstream_url: String,
    auth_mode: &'static str,
    /// The embedded simulator (`--dev`), kept alive as long as the gateway.
    #[cfg(feature = "simulator")]
    _simulator: Option<egress_sim::SimHandle>,
}

impl App {
    /// Builds the gateway: starts the simulator for `--dev`, loads the policy, the TLS
    /// configuration and the secret, raises the open-files limit and binds both listeners
    /// (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    ///
    /// Anything that would keep the gateway from serving as configured.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        // --dev always receives webhooks (the embedded simulator posts them), on a free
        // loopback port unless one is given.
        let webhook_listen =
            config
                .webhook_listen
                .or(matches!(config.upstream, Upstream::DevSimulator)
                    .then(|| SocketAddr::from(([127, 0, 0, 1], 0))));
        let webhook_listener = match webhook_listen {
            None => None,
            Some(addr) => Some(server::bind(addr).await.map_err(|source| AppError::Bind {
                what: "webhook listener: ",
                source,
            })?),
        };
        // --dev: the simulator runs in this process, on a port of its own.
        #[cfg(feature = "simulator")]
        let (upstream_url, simulator) = match &config.upstream {
            Upstream::LiveKit(url) => (url.clone(), None),
            Upstream::DevSimulator => {
                let mut sim =
                    egress_sim::Simulator::builder().credentials(config.credentials.clone());
                if let Some(addr) = webhook_listener.as_ref().and_then(|l| l.local_addr().ok()) {
                    sim = sim.webhook_url(format!("http://{addr}/webhook"));
                }
                let sim = sim.build();
                let handle = sim
                    .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .map_err(AppError::Simulator)?;
                (handle.url(), Some(handle))
            }
        };
        #[cfg(not(feature = "simulator"))]
        let upstream_url = match &config.upstream {
            Upstream::LiveKit(url) => url.clone(),
            Upstream::DevSimulator => return Err(AppError::NoSimulator),
        };
        let base_url = BaseUrl::parse(&upstream_url).map_err(|source| AppError::InvalidUrl {
            url: upstream_url.clone(),
            source,
        })?;
        let mut client_config = ClientConfig::new(base_url, egress_core::Rpc::SERVICE);
        client_config.connect_timeout = config.upstream_settings.connect_timeout;
        client_config.default_timeout = config.upstream_settings.upstream_timeout;
        client_config.max_response_bytes = config.limits.max_message_size;
        // HTTP/1.1 upstreams need a connection per concurrent call; keeping fewer idle than
        // calls may be in flight churns connections (and ports) under load.
        client_config.pool_max_idle_per_host = config.limits.max_concurrency;
        client_config.http2_only = config.upstream_settings.upstream_http2;
        if let Some(path) = &config.upstream_settings.upstream_ca_file {
            let pem = std::fs::read(path).map_err(|source| AppError::UpstreamCa {
                path: path.clone(),
                source,
            })?;
            client_config.extra_root_certs_pem = Some(pem);
        }
        client_config.http2_connections = config.upstream_settings.upstream_http2_connections;
        // Over HTTP/2 calls multiplex: the cap is on connections, which stay few anyway.
        client_config.max_connections = (!config.upstream_settings.upstream_http2)
            .then_some(config.upstream_settings.max_upstream_connections);
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
        let client =
            TwirpClient::new(client_config, Arc::clone(&tokens)).map_err(AppError::Client)?;
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        let policies = load_policy(&config)?;
        let auth_mode = policies.as_ref().map_or("none (no policy file)", |p| {
            p.current().auth_mode().as_str()
        });
        let reloader = Reloader {
            policy: config.policy_file.clone().zip(policies.clone()),
            secret: config
                .api_secret_file
                .clone()
                .map(|path| (path, config.api_key.clone(), Arc::clone(&tokens))),
        };
        // Only once the configuration is known to work, so a bad one still ends in one line.
        let max_connections = match listen::raise_open_files_limit() {
            Some((before, after)) => {
                tracing::info!(before, after, "open-files limit (RLIMIT_NOFILE)");
                config
                    .limits
                    .max_connections
                    .unwrap_or_else(|| listen::default_max_connections(after))
            }
            None => {
                tracing::warn!("cannot read the open-files limit (RLIMIT_NOFILE)");
                config.limits.max_connections.unwrap_or(10_000)
            }
        };
        let listener = server::bind(config.listen)
            .await
            .map_err(|source| AppError::Bind { what: "", source })?;
        let admin_listener =
            server::bind(config.admin_listen)
                .await
                .map_err(|source| AppError::Bind {
                    what: "admin listener: ",
                    source,
                })?;
        let hub = Arc::new(Hub::new(
            HubSettings {
                queue: config.events.watch_queue,
                max_watchers: config.events.max_watchers,
            },
            metrics.clone(),
        ));
        let admin = AdminState::new(metrics.clone());
        let redis = config
            .redis_url
            .as_ref()
            .map(|url| Fanout::new(&url.0, metrics.clone(), Arc::clone(admin.readiness())))
            .transpose()
            .map_err(|_| ConfigError::RedisUrl)?;
        let webhook = match webhook_listener {
            None => None,
            Some(listener) => {
                let tokens = Arc::clone(&tokens);
                let receiver = WebhookReceiver::new(
                    Arc::clone(&hub),
                    Arc::new(move || tokens.credentials()),
                    WebhookSettings::default(),
                );
                Some((listener, Arc::new(receiver)))
            }
        };
        let events = EventSources {
            hub: Arc::clone(&hub),
            webhook,
            redis,
            reconcile_interval: config.events.reconcile_interval,
        };
        let cloud = match config.upstream_settings.upstream_flavor {
            UpstreamFlavor::Cloud => true,
            UpstreamFlavor::Oss => false,
            UpstreamFlavor::Auto => crate::call::retry::is_cloud_host(&upstream_url),
        };
        let settings = ServerSettings {
            retry: crate::call::retry::RetryPolicy {
                writes: cloud || config.upstream_settings.retry_writes,
                failover: cloud,
            },
            hub,
            policies,
            tls,
            admin,
            metrics,
            deadlines: Deadlines {
                default: config.upstream_settings.upstream_timeout,
                max: config.limits.max_call_timeout,
            },
            max_message_size: config.limits.max_message_size,
            io_threads: config.limits.io_threads,
            cors: config.cors.clone(),
            max_concurrency: config.limits.max_concurrency,
            max_concurrency_per_connection: config.limits.max_concurrency_per_connection,
            max_connections,
            header_read_timeout: config.limits.header_read_timeout,
            idle_timeout: config.limits.idle_timeout,
            drain_timeout: config.limits.drain_timeout,
            probe_interval: config.limits.probe_interval,
        };
        Ok(Self {
            listener,
            admin_listener,
            events,
            client,
            settings,
            reloader,
            upstream_url,
            auth_mode,
            #[cfg(feature = "simulator")]
            _simulator: simulator,
        })
    }

    /// The gateway's metrics (served on the admin listener's `/metrics`).
    pub fn metrics(&self) -> &egress_telemetry::Metrics {
        &self.settings.metrics
    }

    /// The gRPC listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// The webhook receiver's address, when there is one.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.events.webhook.as_ref().map(|(listener, _)| {
            listener
                .local_addr()
                .expect("a bound TCP listener has an address")
        })
    }

    /// The LiveKit URL calls go to (the simulator's, with `--dev`).
    pub fn upstream_url(&self) -> &str {
        &self.upstream_url
    }

    /// The caller authentication mode in force, for the start-up line.
    pub fn auth_mode(&self) -> &'static str {
        self.auth_mode
    }

    /// Serves until `shutdown` resolves, then drains (see [`server::serve`]). The admin
    /// endpoint outlives the gRPC drain, so `/readyz` can say "draining" meanwhile.
    ///
    /// # Errors
    ///
    /// The gRPC listener failed.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let reload_task = tokio::spawn(self.reloader.run());
        let event_tasks = self.events.start(self.client.clone());
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(egress_telemetry::serve_admin(
            self.admin_listener,
            self.settings.admin.clone(),
            async {
                let _ = admin_stopped.await;
            },
        ));
        let served = server::serve(self.listener, self.client, self.settings, shutdown).await;
        reload_task.abort();
        for task in event_tasks {
            task.abort();
        }
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        served
    }
}

/// Where events come from besides the hub itself: the webhook receiver, the Redis fan-out
/// and the reconcile poll.
#[derive(Debug)]
struct EventSources {
    hub: Arc<Hub>,
    webhook: Option<(TcpListener, Arc<WebhookReceiver>)>,
    redis: Option<Fanout>,
    reconcile_interval: std::time::Duration,
}

impl EventSources {
    /// Starts every source; the tasks run until aborted.
    fn start(self, client: TwirpClient) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some((listener, receiver)) = self.webhook {
            // Runs until aborted: LiveKit's retries cover a webhook cut off by shutdown.
            tasks.push(tokio::spawn(crate::events::webhook::serve(
                listener,
                receiver,
                std::future::pending(),
            )));
        }
        if let Some(redis) = &self.redis {
            tasks.extend(redis.start(Arc::clone(&self.hub)));
        }
        tasks.push(tokio::spawn(crate::events::reconcile::run(
            self.hub,
            client,
            self.reconcile_interval,
            self.redis,
        )));
        tasks
    }
}

/// Loads the policy file and refuses setups that would expose unauthenticated access.
fn load_policy(config: &Config) -> Result<Option<Arc<PolicyStore>>, AppError> {
    let store = match &config.policy_file {
        None => None,
        // No caller may hold the gateway's own LiveKit key, now or after a reload.
        Some(path) => Some(Arc::new(
            PolicyStore::load(path)?.reserving_api_key(config.credentials.api_key.as_str())?,
        )),
    };
    let mode = store.as_ref().map(|s| s.current().auth_mode());
    if matches!(mode, None | Some(AuthMode::None))
        && !config.listen.ip().is_loopback()
        && !config.allow_unauthenticated
    {
        return Err(ConfigError::UnauthenticatedExposed(config.listen).into());
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
        .into());
    }
    if mode == Some(AuthMode::Bearer) && config.tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            "bearer tokens over plaintext on a non-loopback listener; consider --tls-cert/--tls-key"
        );
    }
    Ok(store)
}

/// `egress-proxy simulate`: only the LiveKit egress simulator, with the keys in
/// `LIVEKIT_API_KEY`/`LIVEKIT_API_SECRET`, until `shutdown` resolves.
///
/// # Errors
///
/// Missing keys, a listener that cannot bind, or (without the `simulator` feature) always.
pub async fn simulate(
    listen: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    #[cfg(feature = "simulator")]
    {
        let credentials = egress_auth::Credentials::from_env().map_err(AppError::SimulatorKeys)?;
        // Friendly rather than strict: rooms appear on demand, workers are connected, and
        // egresses turn ACTIVE quickly, so `grpcurl` Start then List shows a running egress.
        let sim = egress_sim::Simulator::builder()
            .credentials(credentials)
            .rooms(egress_sim::Rooms::Auto)
            .egress_workers(true)
            .start_delay(std::time::Duration::from_millis(500))
            .build();
        let listener = server::bind(listen)
            .await
            .map_err(|source| AppError::Bind { what: "", source })?;
        tracing::info!(listen = %listen, "egress simulator ready");
        sim.serve(listener, shutdown)
            .await
            .map_err(AppError::Simulator)
    }
    #[cfg(not(feature = "simulator"))]
    {
        let _ = (listen, shutdown);
        Err(AppError::NoSimulator)
    }
}
