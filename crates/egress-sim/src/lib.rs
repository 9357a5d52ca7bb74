//! A LiveKit egress simulator: LiveKit's Twirp `livekit.Egress` API served on loopback from
//! in-memory state, with fault injection and a request log.
//!
//! It is the egress gateway's `--dev` upstream and the counterpart of every client test. It
//! behaves like a LiveKit server where that is observable by a client:
//!
//! * `POST {prefix}/twirp/livekit.Egress/<Method>` with `application/protobuf` or
//!   `application/json` bodies, answered in the request's encoding (JSON with `snake_case`
//!   names); anything else is Twirp `bad_route`. Errors are Twirp JSON `{"code","msg","meta"?}`.
//! * LiveKit's auth middleware: a malformed or wrongly signed token is an HTTP 401 with a
//!   plain-text body; a request without grants (no token at all, or a token without
//!   `roomRecord`) gets Twirp `unauthenticated` `permissions denied`.
//! * Bodies over 10 MiB get HTTP 413 (plain text); `X-Twirp-Timeout-Ms` is honoured with
//!   `deadline_exceeded` `request timed out`.
//! * Egresses go `EGRESS_STARTING` → `EGRESS_ACTIVE` (after
//!   [`activate_after`](SimulatorBuilder::activate_after)), and on StopEgress `EGRESS_ENDING`
//!   → `EGRESS_COMPLETE` (after [`complete_after`](SimulatorBuilder::complete_after)),
//!   computed lazily from timestamps.
//! * Invalid Start requests get `invalid_argument` with the egress worker's text
//!   (`request has missing or invalid field: output`, `invalid url …: invalid scheme`;
//!   rules from `egress-core`), unknown ids `not_found` `egress does not exist`, finished
//!   egresses `failed_precondition` `egress with status EGRESS_COMPLETE cannot be stopped`
//!   (or `… cannot be updated`).
//! * A [`Flavor`] picks the deployment: `oss` (default) rewrites errors relayed from
//!   LiveKit's internal RPC layer to `twirp error unknown: <msg>` and ignores ListEgress
//!   `page_token`; `cloud` keeps plain texts and pages (see
//!   [`paginate`](SimulatorBuilder::paginate)).
//! * Storage credentials and stream keys in answers are redacted with LiveKit's
//!   placeholders (`{secret}`, `rtmp://host/app/{abc...xyz}`).
//! * LiveKit's HTTP front: `//twirp/…` works, other paths get Go's plain `404 page not
//!   found`, and CORS preflights (`OPTIONS`) are answered for any origin.
//!
//! Tests drive failures with [`Fault`]s, from Rust through [`Simulator::faults`] or over
//! HTTP with `POST /sim/faults`, and check what a client sent with
//! [`Simulator::requests`] or `GET /sim/requests`. See the crate README for the HTTP
//! control endpoints and the fault JSON format.
//!
//! ```no_run
//! use std::time::Duration;
//! use egress_auth::Credentials;
//! use egress_sim::{Fault, Simulator};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let sim = Simulator::builder()
//!     .credentials(Credentials::new("devkey", "secret"))
//!     .activate_after(Duration::from_millis(100))
//!     .build()
//!     .spawn("127.0.0.1:0".parse().unwrap())?;
//! let url = sim.url(); // http://127.0.0.1:PORT
//! sim.faults().push(Fault::twirp_error("unavailable", "no response from servers").times(1));
//! // ... point a client at `url` ...
//! for request in sim.requests() {
//!     println!("{} {:?}", request.path, request.claims);
//! }
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod auth;
mod codec;
mod cors;
mod fault;
mod flavor;
mod record;
mod redact;
mod rpc;
mod server;
mod service;
mod state;
mod twirp;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use egress_auth::Credentials;
use egress_proto::livekit::EgressInfo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use fault::{Fault, FaultAction, Faults, rpc_status};
pub use flavor::{DEFAULT_CLOUD_PAGE_SIZE, Flavor, UnknownFlavor};
pub use record::{DecodeBodyError, REQUEST_LOG_CAPACITY, RecordedRequest};
pub use rpc::Rpc;
pub use twirp::twirp_status;

use state::Shared;
use state::{ListFilter, Store, Timing, now_ns};

/// LiveKit's default request body limit: 10 MiB.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;
/// Default time from Start to `EGRESS_ACTIVE`.
pub const DEFAULT_ACTIVATE_AFTER: Duration = Duration::from_millis(500);
/// Default time from StopEgress to `EGRESS_COMPLETE`.
pub const DEFAULT_COMPLETE_AFTER: Duration = Duration::from_millis(200);

/// Configures a [`Simulator`]; start with [`Simulator::builder`].
#[derive(Debug, Clone)]
pub struct SimulatorBuilder {
    credentials: Vec<Credentials>,
    prefix: String,
    timing: Timing,
    flavor: Flavor,
    page_size: Option<usize>,
    max_body: usize,
}

impl SimulatorBuilder {
    /// The API key and secret tokens must be signed with (replacing any set before).
    ///
    /// Without credentials every token is rejected as `invalid API key`.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = vec![credentials];
        self
    }

    /// Accepts one more API key, as a LiveKit server with several keys does (e.g. to test
    /// key rotation).
    pub fn add_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials.push(credentials);
        self
    }

    /// Serves the API under a path prefix, e.g. `/lk` → `POST /lk/twirp/livekit.Egress/…`,
    /// as behind a reverse proxy. Leading and trailing slashes are normalized; `""` (the
    /// default) and `"/"` mean none.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let trimmed = prefix.trim_matches('/');
        self.prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        };
        self
    }

    /// Time from Start to `EGRESS_ACTIVE` (default 500 ms).
    pub fn activate_after(mut self, delay: Duration) -> Self {
        self.timing.activate_after = delay;
        self
    }

    /// Time from StopEgress (`EGRESS_ENDING`) to `EGRESS_COMPLETE` (default 200 ms).
    pub fn complete_after(mut self, delay: Duration) -> Self {
        self.timing.complete_after = delay;
        self
    }

    /// The LiveKit deployment to imitate (default [`Flavor::Oss`], the open-source server):
    /// how errors relayed from LiveKit's internal RPC layer read, and whether ListEgress
    /// pages. See [`Flavor`].
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Paginates ListEgress like LiveKit Cloud: at most `page_size` items per answer (at least
    /// one), `next_page_token` set while more remain, `page_token` honoured (an opaque
    /// offset; a token the simulator did not issue is `invalid_argument`). This overrides the
    /// flavor's paging: [`Flavor::Cloud`] pages by [`DEFAULT_CLOUD_PAGE_SIZE`] without it,
    /// and [`Flavor::Oss`] (like the open-source server) returns everything in one answer,
    /// ignores `page_token` and never sets `next_page_token` unless this is called.
    pub fn paginate(mut self, page_size: usize) -> Self {
        self.page_size = Some(page_size.max(1));
        self
    }

    /// Request body limit (default [`DEFAULT_MAX_BODY`], 10 MiB); larger bodies get HTTP 413.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Builds the simulator (nothing is bound yet).
    pub fn build(self) -> Simulator {
        Simulator {
            shared: Arc::new(Shared {
                credentials: self.credentials,
                prefix: self.prefix,
                flavor: self.flavor,
                page_size: self.page_size.or(self.flavor.default_page_size()),
                max_body: self.max_body,
                store: Mutex::new(Store::new(self.timing)),
                faults: Faults::default(),
                requests: Default::default(),
            }),
        }
    }
}

/// A simulated LiveKit egress API. Cheap to clone: clones share state, faults and the request
/// log.
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl Simulator {
    /// A builder with the defaults: no credentials, no prefix, 500 ms to active, 200 ms to
    /// complete, the open-source flavor ([`Flavor::Oss`]), 10 MiB body limit.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder {
            credentials: Vec::new(),
            prefix: String::new(),
            timing: Timing {
                activate_after: DEFAULT_ACTIVATE_AFTER,
                complete_after: DEFAULT_COMPLETE_AFTER,
            },
            flavor: Flavor::Oss,
            page_size: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The LiveKit deployment this simulator imitates.
    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// The path prefix before `/twirp` (`""` or e.g. `/lk`).
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The fault list; push faults to make the next matching requests fail.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Every request received so far (except `/sim/...` control requests), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.requests.clear();
    }

    /// Every egress as ListEgress would show it now, oldest first, but with the real
    /// credentials and stream keys: the Twirp answers redact them, this view (like
    /// `GET /sim/egresses`) is for tests checking what a client sent.
    pub fn egresses(&self) -> Vec<EgressInfo> {
        self.shared.store().list(&ListFilter::default(), now_ns())
    }

    /// One egress as it is now (secrets unredacted, see [`egresses`](Self::egresses)).
    pub fn egress(&self, egress_id: &str) -> Option<EgressInfo> {
        self.shared.store().get(egress_id, now_ns())
    }

    /// Forces an egress into `EGRESS_FAILED` with `error` (as if the egress worker failed);
    /// `None` if there is no such egress.
    pub fn fail_egress(&self, egress_id: &str, error: &str) -> Option<EgressInfo> {
        self.shared.store().fail(egress_id, error, now_ns())
    }

    /// Forgets all egresses, faults and recorded requests.
    pub fn reset(&self) {
        self.shared.store().clear();
        self.shared.faults.clear();
        self.shared.requests.clear();
    }

    /// Serves on `listener` until `shutdown` resolves, then gives open connections up to two
    /// seconds to finish. Use this to embed the simulator in another program's runtime.
    ///
    /// # Errors
    ///
    /// None at present; accept errors are logged and retried.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        server::serve(self.shared.clone(), listener, shutdown).await
    }

    /// Binds `addr` (use port 0 for a free port) and serves in a background tokio task.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime.
    pub fn spawn(self, addr: SocketAddr) -> io::Result<SimHandle> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let local_addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let sim = self.clone();
        let task = tokio::spawn(async move {
            sim.serve(listener, async {
                let _ = rx.await;
            })
            .await
        });
        Ok(SimHandle {
            sim: self,
            local_addr,
            stop: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator, from [`Simulator::spawn`]. Dereferences to the [`Simulator`] for
/// faults, requests and state. Dropping the handle stops the server too (without waiting).
#[derive(Debug)]
pub struct SimHandle {
    sim: Simulator,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl SimHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://IP:PORT` of the server, without the path prefix (an unspecified bind address
    /// such as `0.0.0.0` is reported as loopback). Give this to LiveKit clients.
    pub fn url(&self) -> String {
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.local_addr.port()))
    }

    /// [`url`](Self::url) plus the path prefix, e.g. `http://127.0.0.1:PORT/lk`: the base URL
    /// for clients that keep a path prefix.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.url(), self.sim.prefix())
    }

    /// The simulator behind this server.
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// Stops accepting, lets open connections finish (at most two seconds) and waits for the
    /// server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Deref for SimHandle {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
