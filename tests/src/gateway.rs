//! The gateway in-process: the same [`App`] the binary runs, built from the same flags, on
//! port 0, with the bound addresses returned. Faster than a process and debuggable; tests
//! use the binary ([`crate::Proxy`]) only where a process is the point: signals, exit
//! codes, what it logs, its file-descriptor limit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use egress_proto::livekit::egress_client::EgressClient;
use egress_proxy::app::App;
use egress_proxy::config::Cli;
use tonic::transport::Channel;

use crate::{API_KEY, API_SECRET, ProxyOptions};

/// A gateway running in this process, on its own runtime thread; stopped (drained) on drop.
#[derive(Debug)]
pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin HTTP listener (/metrics, /healthz, /readyz).
    pub admin: SocketAddr,
    /// The webhook receiver (`--webhook-listen`, or `--dev`).
    pub webhook: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    secret_file: PathBuf,
}

impl Gateway {
    /// Starts the gateway in front of `upstream_url` with the test credentials and the
    /// flags of `options` (as the binary takes them). The environment is the whole test
    /// process's, so options that set environment variables need a [`crate::Proxy`].
    pub fn start(upstream_url: &str, options: ProxyOptions) -> Gateway {
        assert!(
            options.env.is_empty(),
            "an in-process gateway takes flags only; use Proxy for {:?}",
            options.env
        );
        // The secret goes through a file, as it may for the binary: the environment is
        // shared by every test in this process.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let secret_file = std::env::temp_dir().join(format!(
            "egress-e2e-secret-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&secret_file, API_SECRET).expect("write the secret file");
        let mut argv: Vec<String> = [
            "egress-proxy",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--api-key",
            API_KEY,
            "--livekit-url",
            upstream_url,
            "--api-secret-file",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        argv.push(secret_file.display().to_string());
        argv.extend(options.args);
        let config = Cli::try_parse_from(&argv)
            .unwrap_or_else(|err| panic!("gateway flags {argv:?}: {err}"))
            .run
            .into_config()
            .unwrap_or_else(|err| panic!("gateway configuration {argv:?}: {err}"));

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the gateway");
            runtime.block_on(async move {
                let app = match App::build(config).await {
                    Ok(app) => app,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((app.local_addr(), app.admin_addr(), app.webhook_addr())));
                let _ = app
                    .serve(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let (addr, admin, webhook) = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(err)) => panic!("the gateway did not start: {err}"),
            Err(_) => panic!("the gateway did not start within 30 s"),
        };
        Gateway {
            addr,
            admin,
            webhook,
            stop: Some(stop),
            thread: Some(thread),
            secret_file,
        }
    }

    /// Starts the gateway with `--dev` (embedded simulator).
    pub fn start_dev(options: ProxyOptions) -> Gateway {
        // `--livekit-url` is ignored with `--dev`.
        Self::start("http://127.0.0.1:9", options.arg("--dev"))
    }

    /// `http://ADDR` of the gRPC listener.
    pub fn url(&self) -> String {
        self.endpoint_url()
    }

    /// A tonic client for `livekit.Egress` through the gateway.
    pub async fn client(&self) -> EgressClient<Channel> {
        self.egress_client().await
    }

    /// A plain channel to the gateway.
    pub async fn channel(&self) -> Channel {
        self.connect().await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Draining is bounded by --drain-timeout; a test that left calls hanging does not
        // wait for it here.
        drop(self.thread.take());
        let _ = std::fs::remove_file(&self.secret_file);
    }
}

/// What tests need from a running gateway, in-process or a process: helpers that work
/// with either take `&impl Endpoint`.
pub trait Endpoint {
    /// The gRPC listener.
    fn grpc_addr(&self) -> SocketAddr;
    /// The admin HTTP listener.
    fn admin_addr(&self) -> SocketAddr;

    /// `http://ADDR` of the gRPC listener.
    fn endpoint_url(&self) -> String {
        format!("http://{}", self.grpc_addr())
    }

    /// A plain channel to the gRPC listener.
    fn connect(&self) -> impl Future<Output = Channel> + Send {
        let url = self.endpoint_url();
        async move {
            Channel::from_shared(url)
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .expect("connect to the gateway")
        }
    }

    /// A tonic client for `livekit.Egress`.
    fn egress_client(&self) -> impl Future<Output = EgressClient<Channel>> + Send {
        let channel = self.connect();
        async move { EgressClient::new(channel.await) }
    }
}

impl Endpoint for Gateway {
    fn grpc_addr(&self) -> SocketAddr {
        self.addr
    }

    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}

impl Endpoint for crate::Proxy {
    fn grpc_addr(&self) -> SocketAddr {
        self.addr
    }

    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}
