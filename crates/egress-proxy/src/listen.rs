//! Client connections: how many, how long, and how long each stream on them may live.
//!
//! Connections speak HTTP/2 (gRPC, and Twirp from HTTP/2 clients) or HTTP/1.1 (LiveKit's
//! SDKs on the Twirp door), told apart by the HTTP/2 preface. hyper's server has no notion
//! of a request deadline, of a connection that never sends a request, or of an idle
//! connection. The listener adds them:
//!
//! - **Connection cap** (`--max-connections`): the accept loop takes a slot before it
//!   accepts, so at the cap further clients wait in the kernel's backlog instead of taking
//!   file descriptors that the upstream side and the admin endpoint need.
//! - **Header-read timeout** (`--header-read-timeout`): a connection that has not sent the
//!   headers of a first request by then (no preface, a stalled TLS handshake, only SETTINGS)
//!   is closed.
//! - **Idle timeout** (`--idle-timeout`): a connection with no stream open for that long
//!   gets GOAWAY. Health `Watch` streams are open streams, so their connections stay.
//! - **Stream deadline**: each stream runs as a task spawned through [`StreamExecutor`]. A
//!   call's door declares its deadline with [`bound_this_stream`]; once it has passed (plus
//!   [`FLUSH_GRACE`] for the deadline's own status to go out), the task is dropped and h2
//!   resets the stream. That is what frees an answer stuck behind a caller that stopped
//!   reading (a zero flow-control window): hyper does not poll a body while the window is
//!   shut, so nothing inside the body could notice the deadline.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use egress_telemetry::Metrics;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

use crate::call::ConnectionSlots;
use crate::tls::{self, Peer};

/// Time a stream gets past its deadline to flush the DEADLINE_EXCEEDED status itself.
pub const FLUSH_GRACE: Duration = Duration::from_millis(250);

tokio::task_local! {
    /// The deadline the current stream's door declared while it was being polled.
    static STREAM_DEADLINE: Cell<Option<Instant>>;
}

/// Declares that the stream being served must be over by `deadline` (plus
/// [`FLUSH_GRACE`]). Called by a door while the stream's task polls it; outside a stream
/// task (a test calling a service directly) it does nothing.
pub fn bound_this_stream(deadline: Instant) {
    let _ = STREAM_DEADLINE.try_with(|slot| slot.set(Some(deadline)));
}

/// What one connection's streams tell its connection task.
#[derive(Debug)]
pub struct ConnectionState {
    accepted: Instant,
    /// Whether any request's headers have arrived.
    requested: AtomicBool,
    /// Streams running now.
    active: AtomicUsize,
    /// When the last stream ended (meaningful while `active` is 0).
    idle_since: Mutex<Instant>,
    /// Signalled on the first request and whenever the last open stream ends.
    changed: Notify,
}

impl ConnectionState {
    /// State of a connection accepted now.
    pub fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            accepted: now,
            requested: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(now),
            changed: Notify::new(),
        })
    }

    /// Resolves with the reason the connection should be closed: `header_timeout` when no
    /// request arrived within `header_read_timeout` of accepting it, `idle` when no stream
    /// has been open for `idle_timeout`. Never resolves for a busy connection.
    pub async fn expired(
        &self,
        header_read_timeout: Duration,
        idle_timeout: Duration,
    ) -> &'static str {
        loop {
            let (reason, due) = if !self.requested.load(Ordering::Acquire) {
                ("header_timeout", Some(self.accepted + header_read_timeout))
            } else if self.active.load(Ordering::Acquire) > 0 {
                ("idle", None)
            } else {
                let idle_since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
                ("idle", Some(idle_since + idle_timeout))
            };
            match due {
                Some(due) if Instant::now() >= due => return reason,
                // A first request or the last stream's end wakes us early (`notify_one`
                // keeps the wake-up if we are not waiting yet, so none is lost).
                Some(due) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// A running stream, counted on its connection.
#[derive(Debug)]
struct Active(Arc<ConnectionState>);

impl Active {
    fn new(state: Arc<ConnectionState>) -> Self {
        state.active.fetch_add(1, Ordering::AcqRel);
        if !state.requested.swap(true, Ordering::AcqRel) {
            state.changed.notify_one();
        }
        Self(state)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// The executor hyper spawns each HTTP/2 stream of one connection with.
#[derive(Debug, Clone)]
pub struct StreamExecutor {
    state: Arc<ConnectionState>,
}

impl StreamExecutor {
    /// Spawns the streams of the connection that `state` describes.
    pub fn new(state: Arc<ConnectionState>) -> Self {
        Self { state }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(BoundedStream {
            stream,
            cutoff: None,
            _active: Active::new(Arc::clone(&self.state)),
        });
    }
}

pin_project! {
    /// A stream's task, dropped once the deadline its door declared has passed.
    struct BoundedStream<F> {
        #[pin]
        stream: F,
        #[pin]
        cutoff: Option<Sleep>,
        _active: Active,
    }
}

impl<F: Future<Output = ()>> Future for BoundedStream<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let stream = this.stream;
        let (polled, declared) = STREAM_DEADLINE.sync_scope(Cell::new(None), || {
            let polled = stream.poll(cx);
            (polled, STREAM_DEADLINE.with(Cell::get))
        });
        if polled.is_ready() {
            return Poll::Ready(());
        }
        if this.cutoff.is_none()
            && let Some(deadline) = declared
        {
            this.cutoff
                .set(Some(tokio::time::sleep_until(deadline + FLUSH_GRACE)));
        }
        // Dropping the stream's future makes h2 reset the stream (CANCEL) and free
        // whatever it had buffered for it.
        match this.cutoff.as_pin_mut().map(|cutoff| cutoff.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

/// The client connections of one listener: their cap, their settings, and the GOAWAY that
/// starts a drain.
pub struct Connections {
    slots: Arc<Semaphore>,
    max: u32,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    settings: ConnectionSettings,
    goaway: watch::Sender<bool>,
    /// Where connections are served: `None`, the runtime that accepts them.
    runtimes: Option<crate::runtimes::IoRuntimes>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("max", &self.max)
            .field(
                "open",
                &(self.max as usize - self.slots.available_permits()),
            )
            .field("tls", &self.acceptor.is_some())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// At most `max` connections at once, with TLS when `tls` is set.
    pub fn new(
        max: usize,
        tls: Option<Arc<rustls::ServerConfig>>,
        settings: ConnectionSettings,
    ) -> Self {
        // A semaphore holds at most `u32::MAX` permits in one `acquire_many`.
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            acceptor: tls.map(tokio_rustls::TlsAcceptor::from),
            settings,
            goaway: watch::channel(false).0,
            runtimes: None,
        }
    }

    /// Serves each connection on one of `runtimes` instead of the accepting runtime.
    pub fn on_runtimes(mut self, runtimes: Option<crate::runtimes::IoRuntimes>) -> Self {
        self.runtimes = runtimes;
        self
    }

    /// Accepts connections on `listener` and serves `routes` on each until `shutdown`.
    pub async fn accept<S: Routes<B>, B: ResponseBody>(
        &self,
        listener: &TcpListener,
        routes: S,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        while let Some((slot, stream, addr)) =
            accept_with_slot(listener, &self.slots, shutdown.as_mut(), "gRPC").await
        {
            let _ = stream.set_nodelay(true);
            let routes = routes.clone();
            let acceptor = self.acceptor.clone();
            let settings = self.settings.clone();
            let goaway = self.goaway.subscribe();
            let serve = move |stream| {
                serve_connection(stream, addr, routes, acceptor, settings, goaway, slot)
            };
            match &self.runtimes {
                None => drop(tokio::spawn(serve(stream))),
                Some(runtimes) => runtimes.spawn(stream, serve),
            }
        }
    }

    /// Sends GOAWAY on every connection: they finish their streams and close.
    pub fn goaway(&self) {
        self.goaway.send_replace(true);
    }

    /// Whether every connection has closed within `within`.
    pub async fn drained(&self, within: Duration) -> bool {
        tokio::time::timeout(within, Arc::clone(&self.slots).acquire_many_owned(self.max))
            .await
            .is_ok()
    }
}

/// Waits for a connection slot, then for a client; `None` once `shutdown` resolves. The
/// slot comes first: at the cap, new clients wait in the kernel's backlog and take no
/// descriptor of ours. An accept error (out of descriptors and the like) backs off instead
/// of spinning; `listener_name` says which listener in its log line.
pub(crate) async fn accept_with_slot<F: Future<Output = ()>>(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    mut shutdown: Pin<&mut F>,
    listener_name: &'static str,
) -> Option<(OwnedSemaphorePermit, tokio::net::TcpStream, SocketAddr)> {
    let slot = tokio::select! {
        slot = Arc::clone(slots).acquire_owned() => slot.expect("the slots are never closed"),
        () = &mut shutdown => return None,
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => return Some((slot, stream, addr)),
                Err(err) => {
                    tracing::warn!(error = %err, listener = listener_name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => return None,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service every connection serves: what hyper needs of it, written once.
pub trait Routes<B>:
    tower::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> Routes<B> for S where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static
{
}

/// A response body hyper can send.
pub trait ResponseBody:
    http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + 'static
{
}

/// What each connection task needs.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub per_connection: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub metrics: Metrics,
}

/// Serves one client connection until it ends, is closed for a timeout, or the server
/// drains. `_slot` is its place under `--max-connections`.
async fn serve_connection<S: Routes<B>, B: ResponseBody>(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    routes: S,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    settings: ConnectionSettings,
    mut goaway: tokio::sync::watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let metrics = settings.metrics;
    let _counted = Counted::new(metrics.clone());
    let state = ConnectionState::new();
    let Some((io, identities)) = secure(stream, addr, acceptor, settings.header_read_timeout).await
    else {
        return;
    };
    let peer = Peer { addr, identities };
    let slots = ConnectionSlots::new(settings.per_connection);
    let builder = connection_builder(StreamExecutor::new(Arc::clone(&state)));
    let conn = builder.serve_connection(
        TokioIo::new(io),
        with_peer(routes, peer, slots, Arc::clone(&state)),
    );
    tokio::pin!(conn);
    let expired = state.expired(settings.header_read_timeout, settings.idle_timeout);
    tokio::pin!(expired);
    let mut closing = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%addr, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = goaway.wait_for(|goaway| *goaway), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            reason = &mut expired, if !closing => {
                metrics.connection_closed(reason);
                tracing::debug!(%addr, reason, "closing connection");
                if reason == "header_timeout" {
                    // Nothing was asked of us: no stream to finish, no GOAWAY owed.
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// A connection counted in `egress_proxy_connections` while it lives.
struct Counted(Metrics);

impl Counted {
    fn new(metrics: Metrics) -> Self {
        metrics.connections_add(1);
        Self(metrics)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections_add(-1);
    }
}

/// Largest HTTP/2 send buffer per stream: an answer beyond it waits in its call (which
/// holds a slot, bounded by the deadline) rather than in h2's queue.
const MAX_SEND_BUF: usize = 64 * 1024;

/// The connection's service, with every request tagged with who is on the other end and
/// the connection's call slots.
fn with_peer<S>(
    routes: S,
    peer: Peer,
    slots: ConnectionSlots,
    state: Arc<ConnectionState>,
) -> TowerToHyperService<Tagged<S>>
where
    S: tower::Service<http::Request<hyper::body::Incoming>> + Clone,
{
    TowerToHyperService::new(Tagged {
        inner: routes,
        peer,
        slots,
        state,
    })
}

/// Tags each request with its connection's peer and call slots, and counts HTTP/1.x
/// requests as the connection's streams while they are answered: hyper serves those in the
/// connection's own task, not through [`StreamExecutor`].
#[derive(Clone)]
struct Tagged<S> {
    inner: S,
    peer: Peer,
    slots: ConnectionSlots,
    state: Arc<ConnectionState>,
}

impl<S, R> tower::Service<http::Request<R>> for Tagged<S>
where
    S: tower::Service<http::Request<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<S::Future, Counting<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<R>) -> Self::Future {
        req.extensions_mut().insert(self.peer.clone());
        req.extensions_mut().insert(self.slots.clone());
        let http1 = req.version() < http::Version::HTTP_2;
        let answer = self.inner.call(req);
        if http1 {
            futures_util::future::Either::Right(Counting {
                answer,
                _active: Active::new(Arc::clone(&self.state)),
            })
        } else {
            futures_util::future::Either::Left(answer)
        }
    }
}

pin_project! {
    /// An HTTP/1.x answer being made, counted as an open stream until it is ready.
    struct Counting<F> {
        #[pin]
        answer: F,
        _active: Active,
    }
}

impl<F: Future> Future for Counting<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().answer.poll(cx)
    }
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Runs the TLS handshake when TLS is on; returns the stream to serve and the names a
/// verified client certificate carries (none for plaintext or server-only TLS).
///
/// The handshake runs in the connection's task, bounded by the header-read timeout (the
/// first request's headers come after it), so a slow or silent client cannot stall the
/// accept loop or keep a descriptor.
async fn secure(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    within: Duration,
) -> Option<(Box<dyn Io>, Arc<[String]>)> {
    let Some(acceptor) = acceptor else {
        return Some((Box::new(stream), Arc::from([])));
    };
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let identities = tls::identities(tls.get_ref().1.peer_certificates());
            Some((Box::new(tls), identities.into()))
        }
        Ok(Err(err)) => {
            tracing::debug!(%addr, error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            None
        }
    }
}

/// HTTP/1.1 and HTTP/2 settings of every client connection, with `streams` spawning its
/// HTTP/2 streams.
///
/// HTTP/1.1 gets no hyper header-read timeout: hyper would run it between the requests of
/// a kept-alive connection too, closing it under a client about to reuse it. The
/// connection's own timeouts ([`ConnectionState::expired`]) bound the first request's
/// headers and idle time for both protocols.
fn connection_builder(
    streams: StreamExecutor,
) -> hyper_util::server::conn::auto::Builder<StreamExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(streams);
    builder
        .http1()
        .header_read_timeout(None)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(Some(1024))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(64 * 1024)
        .max_send_buf_size(MAX_SEND_BUF);
    builder
}

/// Raises the soft open-files limit to the hard one, as Go's runtime does at start-up, and
/// returns `(before, after)` soft limits; `None` when the limit cannot be read. A gateway
/// holds a descriptor per client connection and per upstream call in flight.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current?;
    // An unlimited hard limit still meets the kernel's fs.nr_open: ask for a large number
    // that is certainly valid.
    let target = limit.maximum.unwrap_or(1 << 20);
    if target <= before {
        return Some((before, before));
    }
    let raised = rustix::process::Rlimit {
        current: Some(target),
        ..limit
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some((before, target)),
        Err(_) => Some((before, before)),
    }
}

/// The default `--max-connections` for an open-files limit: half of it, leaving the rest
/// to upstream connections (one per call in flight over HTTP/1.1), the admin endpoint,
/// logs and the runtime.
pub fn default_max_connections(open_files: u64) -> usize {
    usize::try_from(open_files / 2).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_open_files_go_to_client_connections() {
        assert_eq!(default_max_connections(64), 32);
        assert_eq!(default_max_connections(1_048_576), 524_288);
        assert_eq!(default_max_connections(1), 1);
        assert_eq!(default_max_connections(0), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_connection_expires_at_the_header_timeout() {
        let state = ConnectionState::new();
        let started = Instant::now();
        let reason = state
            .expired(Duration::from_secs(10), Duration::from_secs(300))
            .await;
        assert_eq!(reason, "header_timeout");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn first_request_ends_the_header_timeout() {
        let state = ConnectionState::new();
        let watchdog = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                state
                    .expired(Duration::from_secs(10), Duration::from_secs(2))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(Active::new(Arc::clone(&state)));
        let ended = Instant::now();
        assert_eq!(watchdog.await.unwrap(), "idle");
        // Idle two seconds after the one stream, not at the ten-second header timeout.
        assert_eq!(ended.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_expires_after_its_last_stream() {
        let state = ConnectionState::new();
        let stream = Active::new(Arc::clone(&state));
        let watchdog = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                state
                    .expired(Duration::from_secs(10), Duration::from_secs(60))
                    .await
            })
        };
        // Busy for five minutes: never idle, whatever the timeouts.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(!watchdog.is_finished());
        let ended = Instant::now();
        drop(stream);
        let reason = watchdog.await.unwrap();
        assert_eq!(reason, "idle");
        let waited = ended.elapsed();
        assert_eq!(waited, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn stream_is_dropped_after_its_declared_deadline() {
        let state = ConnectionState::new();
        let started = Instant::now();
        let task = tokio::spawn(BoundedStream {
            stream: async {
                bound_this_stream(Instant::now() + Duration::from_secs(2));
                std::future::pending::<()>().await;
            },
            cutoff: None,
            _active: Active::new(Arc::clone(&state)),
        });
        task.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2) + FLUSH_GRACE);
        assert_eq!(state.active.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stream_without_a_deadline_is_not_cut() {
        let state = ConnectionState::new();
        let task = tokio::spawn(BoundedStream {
            stream: std::future::pending::<()>(),
            cutoff: None,
            _active: Active::new(Arc::clone(&state)),
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!task.is_finished());
        assert_eq!(state.active.load(Ordering::Acquire), 1);
        task.abort();
    }
}
