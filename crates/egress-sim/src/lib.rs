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
//! * Bodies over 10 MiB get HTTP 413 (plain text). `X-Twirp-Timeout-Ms` bounds every wait
//!   the handler makes (protocol `xtwirp.ServerPassTimeout`): a wait for an egress worker
//!   it cuts short ends as LiveKit's internal RPC does (`canceled` `request canceled`), an
//!   injected latency as `deadline_exceeded` `request timed out`.
//! * Egresses go `EGRESS_STARTING` → `EGRESS_ACTIVE` (after
//!   [`start_delay`](SimulatorBuilder::start_delay)), and on StopEgress `EGRESS_ENDING`
//!   → `EGRESS_COMPLETE` (after [`complete_after`](SimulatorBuilder::complete_after)),
//!   computed lazily from timestamps. StopEgress while STARTING aborts (`EGRESS_ABORTED`);
//!   a second StopEgress while ENDING answers the egress as it is.
//! * Rooms: created on demand, or ([`Rooms::Strict`]) room egresses need a live room
//!   (`not_found` `requested room does not exist`); ending a room ends its egresses.
//! * Egress workers: without them ([`egress_workers`](SimulatorBuilder::egress_workers))
//!   Start RPCs fail with `unavailable` `no response from servers` after
//!   [`no_worker_delay`](SimulatorBuilder::no_worker_delay) (20 s). StopEgress and
//!   UpdateStream on an egress no worker runs (unknown, ended, or its worker
//!   [dropped](Simulator::drop_worker)) answer from the store after
//!   [`gone_worker_delay`](SimulatorBuilder::gone_worker_delay) (3 s).
//! * Invalid Start requests get `invalid_argument` with the egress worker's text
//!   (`request has missing or invalid field: output`, `invalid url …: invalid scheme`;
//!   rules from `egress-core`, checked where LiveKit's worker checks them), unknown ids
//!   `not_found` `egress does not exist`, finished egresses `failed_precondition`
//!   `egress with status EGRESS_COMPLETE cannot be stopped` (or `… cannot be updated`).
//!   UpdateStream follows the egress worker: `UpdateStream called on non-streaming
//!   egress`, `stream <url> not found`, and removing the last output ends the egress.
//! * ListEgress by id returns that egress whatever the other filters.
//! * A [`Flavor`] picks the deployment: `oss` (default) rewrites errors relayed from
//!   LiveKit's internal RPC layer to `twirp error unknown: <msg>` and ignores ListEgress
//!   `page_token`; `cloud` keeps plain texts and pages (see
//!   [`paginate`](SimulatorBuilder::paginate)).
//! * LiveKit webhooks ([`webhook_url`](SimulatorBuilder::webhook_url), `--webhook-url`):
//!   `egress_started` (STARTING), `egress_updated` (ACTIVE, ENDING, stream changes) and
//!   `egress_ended` are POSTed as LiveKit posts them (protojson `livekit.WebhookEvent`,
//!   `Authorization: <token>` with the body's `sha256`, `application/webhook+json`), when
//!   they happen, with LiveKit's retries; [`Simulator::webhooks`] / `GET /sim/webhooks` list
//!   the outcomes and [`Fault::drop_webhook`] loses some on purpose.
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
mod cors;
mod fault;
mod flavor;
mod ids;
mod record;
mod redact;
mod rpc;
mod server;
mod service;
mod state;
mod tls;
mod twirp;
mod webhook;

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
use webhook::Webhooks;
pub use webhook::{
    DEFAULT_WEBHOOK_RETRY_WAIT, WEBHOOK_ATTEMPT_TIMEOUT, WEBHOOK_ATTEMPTS, WEBHOOK_CONTENT_TYPE,
    WEBHOOK_LOG_CAPACITY, WEBHOOK_MAX_AGE, WEBHOOK_QUEUE_DEPTH, WebhookDelivery, WebhookOutcome,
};

pub use state::Rooms;
use state::Shared;
use state::{ListFilter, Store, Timing, Waits, now_ns};
pub use tls::{SimTls, TlsError};

/// LiveKit's default request body limit: 10 MiB.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;
/// Default time from Start to `EGRESS_ACTIVE` for the library: short, so that embedding
/// programs (the gateway's `--dev` mode) and tests see egresses run soon. The `egress-sim`
/// binary's `--start-delay` defaults to 2 s, closer to a real worker's pipeline start.
pub const DEFAULT_ACTIVATE_AFTER: Duration = Duration::from_millis(500);
/// Default time a Start RPC waits when no egress worker is connected before it fails with
/// `unavailable` `no response from servers` (the egress client's psrpc retries).
pub const DEFAULT_NO_WORKER_DELAY: Duration = Duration::from_secs(20);
/// Default time StopEgress / UpdateStream wait for the worker of an egress that has none
/// (unknown, ended, or its worker gone) before answering from the store (psrpc: three
/// one-second claim attempts).
pub const DEFAULT_GONE_WORKER_DELAY: Duration = Duration::from_secs(3);
/// Default time from StopEgress to `EGRESS_COMPLETE`.
pub const DEFAULT_COMPLETE_AFTER: Duration = Duration::from_millis(200);

/// Configures a [`Simulator`]; start with [`Simulator::builder`].
#[derive(Debug, Clone)]
pub struct SimulatorBuilder {
    credentials: Vec<Credentials>,
    prefix: String,
    timing: Timing,
    flavor: Flavor,
    waits: Waits,
    rooms: Rooms,
    workers: bool,
    page_size: Option<usize>,
    max_body: usize,
    webhook_urls: Vec<String>,
    regions: Vec<String>,
    webhook_retry_wait: Duration,
    tls: Option<SimTls>,
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

    /// How long an egress stays `EGRESS_STARTING` before `EGRESS_ACTIVE` (default
    /// [`DEFAULT_ACTIVATE_AFTER`], 500 ms). StopEgress in that window aborts it, as LiveKit's
    /// worker does (`EGRESS_ABORTED`, `Stop called before pipeline could start`).
    pub fn start_delay(mut self, delay: Duration) -> Self {
        self.timing.activate_after = delay;
        self
    }

    /// Same as [`start_delay`](Self::start_delay) (its older name).
    pub fn activate_after(self, delay: Duration) -> Self {
        self.start_delay(delay)
    }

    /// Whether Start RPCs need a live room (default [`Rooms::Auto`]: rooms are created on
    /// demand). With [`Rooms::Strict`], create rooms with [`Simulator::create_room`] or
    /// `POST /sim/rooms`.
    pub fn rooms(mut self, rooms: Rooms) -> Self {
        self.rooms = rooms;
        self
    }

    /// Whether egress workers are connected at start (default `true`). Without them Start
    /// RPCs fail with `unavailable` `no response from servers` after
    /// [`no_worker_delay`](Self::no_worker_delay). Switch at runtime with
    /// [`Simulator::set_egress_workers`] or `PUT /sim/workers`.
    pub fn egress_workers(mut self, available: bool) -> Self {
        self.workers = available;
        self
    }

    /// How long a Start RPC waits for a worker when none is connected (default
    /// [`DEFAULT_NO_WORKER_DELAY`], 20 s), unless the caller's `X-Twirp-Timeout-Ms` ends
    /// it first.
    pub fn no_worker_delay(mut self, delay: Duration) -> Self {
        self.waits.no_worker = delay;
        self
    }

    /// How long StopEgress / UpdateStream wait for an egress's worker when it has none
    /// (unknown id, ended egress, worker gone) before answering from the store (default
    /// [`DEFAULT_GONE_WORKER_DELAY`], 3 s).
    pub fn gone_worker_delay(mut self, delay: Duration) -> Self {
        self.waits.gone_worker = delay;
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

    /// Sends LiveKit webhooks to `url` (`http://` only; call again for more URLs): on
    /// every egress state change, `egress_started` (STARTING), `egress_updated` (ACTIVE,
    /// ENDING, stream changes) and `egress_ended` (COMPLETE, FAILED, ABORTED), signed with
    /// the first [`credentials`](Self::credentials), sent in the background with LiveKit's
    /// retries and recorded ([`Simulator::webhooks`], `GET /sim/webhooks`). They are sent
    /// while the simulator serves.
    pub fn webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_urls.push(url.into());
        self
    }

    /// Serves LiveKit Cloud's `GET /settings/regions` with these region URLs, nearest first
    /// (call again for more): what a client fails over to. Without any, the route is a 404
    /// as on a self-hosted server.
    pub fn region(mut self, url: impl Into<String>) -> Self {
        self.regions.push(url.into());
        self
    }

    /// First wait between webhook attempts (default [`DEFAULT_WEBHOOK_RETRY_WAIT`], 1 s,
    /// doubling up to 30 s); shorten it in tests of retries.
    pub fn webhook_retry_wait(mut self, wait: Duration) -> Self {
        self.webhook_retry_wait = wait;
        self
    }

    /// Serves HTTPS with this certificate (ALPN `h2`, `http/1.1`), as LiveKit Cloud does;
    /// [`SimHandle::url`] then reads `https://`.
    pub fn tls(mut self, tls: SimTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Builds the simulator (nothing is bound yet).
    pub fn build(self) -> Simulator {
        let mut store = Store::new(self.timing, self.rooms, self.workers);
        if !self.webhook_urls.is_empty() {
            store = store.with_reports();
        }
        let webhooks = Webhooks::new(
            self.webhook_urls,
            self.credentials.first().cloned(),
            self.webhook_retry_wait,
        );
        Simulator {
            shared: Arc::new(Shared {
                credentials: self.credentials,
                prefix: self.prefix,
                flavor: self.flavor,
                page_size: self.page_size.or(self.flavor.default_page_size()),
                max_body: self.max_body,
                store: Mutex::new(store),
                faults: Faults::default(),
                requests: Default::default(),
                waits: self.waits,
                webhooks: Arc::new(webhooks),
                regions: self.regions,
            }),
            tls: self.tls,
        }
    }
}

/// A simulated LiveKit egress API. Cheap to clone: clones share state, faults and the request
/// log.
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    tls: Option<SimTls>,
}

impl Simulator {
    /// A builder with the defaults: no credentials, no prefix, 500 ms to active, 200 ms to
    /// complete, rooms created on demand, workers connected (20 s wait without them, 3 s
    /// for a gone worker), the open-source flavor ([`Flavor::Oss`]), 10 MiB body limit.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder {
            credentials: Vec::new(),
            prefix: String::new(),
            timing: Timing {
                activate_after: DEFAULT_ACTIVATE_AFTER,
                complete_after: DEFAULT_COMPLETE_AFTER,
            },
            flavor: Flavor::Oss,
            waits: Waits {
                no_worker: DEFAULT_NO_WORKER_DELAY,
                gone_worker: DEFAULT_GONE_WORKER_DELAY,
            },
            rooms: Rooms::Auto,
            workers: true,
            page_size: None,
            max_body: DEFAULT_MAX_BODY,
            webhook_urls: Vec::new(),
            regions: Vec::new(),
            webhook_retry_wait: DEFAULT_WEBHOOK_RETRY_WAIT,
            tls: None,
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

    /// Makes a room live (idempotent) and returns its id (`RM_…`). Needed before starting
    /// room egresses with [`Rooms::Strict`].
    pub fn create_room(&self, room_name: &str) -> String {
        self.shared.store().create_room(room_name)
    }

    /// Ends a live room; its running egresses end as LiveKit's do when their source closes
    /// (STARTING → `EGRESS_ABORTED`, ACTIVE → `EGRESS_ENDING` → `EGRESS_COMPLETE`, details
    /// `End reason: Source closed`). Returns the ids of those egresses, or `None` if the
    /// room was not live.
    pub fn end_room(&self, room_name: &str) -> Option<Vec<String>> {
        self.shared.store().end_room(room_name, now_ns())
    }

    /// Connects (`true`) or disconnects all egress workers. [`reset`](Self::reset) restores
    /// the builder's setting.
    pub fn set_egress_workers(&self, available: bool) {
        self.shared.store().set_workers(available);
    }

    /// Whether egress workers are connected.
    pub fn egress_workers(&self) -> bool {
        self.shared.store().workers()
    }

    /// Makes the worker of one egress go away without a word to the store (a crashed
    /// worker): its state freezes, and StopEgress / UpdateStream on it answer from the
    /// store after the gone-worker delay. `None` if there is no such egress.
    pub fn drop_worker(&self, egress_id: &str) -> Option<EgressInfo> {
        self.shared.store().drop_worker(egress_id, now_ns())
    }

    /// Every webhook sent (or dropped) so far, one record per event and URL, in the order
    /// their outcome was known.
    pub fn webhooks(&self) -> Vec<WebhookDelivery> {
        self.shared.webhooks.deliveries()
    }

    /// Empties the webhook log.
    pub fn clear_webhooks(&self) {
        self.shared.webhooks.clear_log();
    }

    /// The URLs webhooks go to.
    pub fn webhook_urls(&self) -> &[String] {
        self.shared.webhooks.urls()
    }

    /// Forgets all egresses, rooms, faults, recorded requests and webhooks (also those not
    /// sent yet), and reconnects the workers as the builder set them.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Serves on `listener` until `shutdown` resolves, then gives open connections up to two
    /// seconds to finish. Use this to embed the simulator in another program's runtime.
    /// Webhooks are sent meanwhile; those still queued or being retried when it returns are
    /// not.
    ///
    /// # Errors
    ///
    /// None at present; accept errors are logged and retried.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        tokio::select! {
            result = server::serve(
                self.shared.clone(),
                listener,
                self.tls.as_ref().map(|tls| tls.acceptor.clone()),
                shutdown,
            ) => result,
            () = webhook::dispatch(Arc::clone(&self.shared.webhooks), {
                // Reading the store reports whatever became due (its guard's drop).
                let shared = Arc::clone(&self.shared);
                move || shared.store().next_due()
            }) => Ok(()),
        }
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

    /// `http://IP:PORT` (`https://` with [`SimulatorBuilder::tls`]) of the server, without the path prefix (an unspecified bind address
    /// such as `0.0.0.0` is reported as loopback). Give this to LiveKit clients.
    pub fn url(&self) -> String {
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let scheme = if self.sim.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", SocketAddr::new(ip, self.local_addr.port()))
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
