//! HTTP/2 to LiveKit on the `h2` crate itself ([`ClientConfig::http2_only`]): a fixed set of
//! multiplexed connections, each driven by one task, and per call nothing but its stream.
//!
//! hyper's pooled client costs more per call in flight than the call's own state: a boxed
//! request future sized for a connect and a handshake (4.1 KB), and a task per request that
//! waits for the answer (2.5 KB, plus a second while the body waits for flow control). With
//! 10,000 calls held by a slow LiveKit that is most of the gateway's memory. Here a call is
//! an `h2` stream, its guard and the future that awaits it.
//!
//! Each slot holds one connection, opened on first use by a task of its own (so the callers
//! who wait for it share one attempt and its outcome, and a caller who gives up does not
//! abandon it), and dropped when the connection ends, when it cannot open a stream, or when
//! it has carried nothing for a whole [`ClientConfig::pool_idle_timeout`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, Shared};
use futures_util::{FutureExt as _, TryFutureExt as _};
use h2::SendStream;
use h2::client::{ResponseFuture, SendRequest};
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tower::ServiceExt as _;

use super::{Connection, Connector, Phase, classify};
use crate::config::ClientConfig;
use crate::error::Error;

/// Per-stream receive window we grant LiveKit (hyper's default for HTTP/2): bounds what one
/// answer can have in flight before we read it.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Per-connection receive window (hyper's default).
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// Largest answer head we accept (as hyper's client): LiveKit's are a few hundred bytes.
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// The connections calls spread over, in turn.
pub(crate) struct Pool {
    state: Arc<PoolState>,
}

struct PoolState {
    slots: Box<[Slot]>,
    next: AtomicUsize,
    connector: Connector,
    /// Where connections go (the base URL's scheme and authority).
    origin: Uri,
    idle_timeout: Option<Duration>,
    /// Numbers the connections, so a slot is only cleared of the one that ended.
    generation: AtomicU64,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
}

#[derive(Default)]
enum State {
    #[default]
    Empty,
    /// Opening a connection; every caller who finds it waits on the same attempt.
    Connecting(Shared<BoxFuture<'static, Result<Live, ConnectFailure>>>),
    Ready(Live),
}

/// A connection that carries calls: a handle to open streams on it, and its use.
#[derive(Clone)]
struct Live {
    send: SendRequest<Bytes>,
    generation: u64,
    usage: Arc<Usage>,
}

#[derive(Default)]
struct Usage {
    /// Streams open on the connection (answers not yet read to the end).
    streams: AtomicUsize,
    /// Whether a call used the connection since the idle check last looked.
    used: AtomicBool,
}

/// Why a connection could not be opened, for every caller who waited on it.
#[derive(Clone)]
struct ConnectFailure {
    tls: bool,
    detail: String,
}

impl From<ConnectFailure> for Error {
    fn from(failure: ConnectFailure) -> Self {
        if failure.tls {
            Error::Tls(failure.detail)
        } else {
            Error::Connect(failure.detail)
        }
    }
}

impl ConnectFailure {
    fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        let tls = matches!(classify(err, Phase::Send), Error::Tls(_));
        ConnectFailure {
            tls,
            detail: super::describe(err),
        }
    }
}

impl Pool {
    pub(crate) fn new(connector: Connector, config: &ClientConfig, origin: Uri) -> Self {
        let slots = (0..config.http2_connections.max(1))
            .map(|_| Slot::default())
            .collect();
        Pool {
            state: Arc::new(PoolState {
                slots,
                next: AtomicUsize::new(0),
                connector,
                origin,
                idle_timeout: config.pool_idle_timeout,
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Sends `request` on the next connection in turn and waits for the answer's head.
    ///
    /// A pooled connection that turns out unable to open a stream (LiveKit sent GOAWAY, or it
    /// closed) is replaced once at once: nothing was sent on it, so this is no retry of the
    /// call. Errors before the stream opened are [`Error::Connect`] (or [`Error::Tls`]), as is
    /// a stream LiveKit refused unprocessed (`REFUSED_STREAM`); after that, [`Error::Reset`].
    ///
    /// Two chained futures: opening the stream (which needs the request) and waiting for the
    /// answer (which needs only the stream) are two states of one enum, so the request does
    /// not stay in the call's memory while LiveKit takes its time.
    pub(crate) fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> impl Future<Output = Result<http::Response<RecvBody>, Error>> + Send + use<'_> {
        self.open(request).and_then(|(response, stream, guard)| {
            response.map(move |answered| {
                // The send half lives until the answer's head, so that h2 never sees the
                // request abandoned while its body may still sit in the send queue.
                drop(stream);
                let (parts, recv) = answered.map_err(|e| stream_error(&e))?.into_parts();
                let length = parts
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                Ok(http::Response::from_parts(
                    parts,
                    RecvBody {
                        recv,
                        length,
                        data_done: false,
                        _guard: guard,
                    },
                ))
            })
        })
    }

    /// Opens a stream for `request` and sends it: head, and body where there is one.
    async fn open(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<(ResponseFuture, SendStream<Bytes>, StreamGuard), Error> {
        let pool = &self.state;
        let index = pool.next.fetch_add(1, Ordering::Relaxed) % pool.slots.len();
        let mut replaced = false;
        let (mut send, usage) = loop {
            let live = PoolState::live(pool, index).await?;
            match live.send.clone().ready().await {
                Ok(send) => break (send, live.usage),
                Err(err) => {
                    pool.slots[index].clear(live.generation);
                    if replaced {
                        return Err(Error::Connect(super::describe(&err)));
                    }
                    replaced = true;
                }
            }
        };
        let guard = StreamGuard::new(usage);
        let (mut head, body) = request.into_parts();
        head.version = http::Version::HTTP_2;
        let end_of_stream = body.is_empty();
        let (response, mut stream) = send
            .send_request(http::Request::from_parts(head, ()), end_of_stream)
            .map_err(|e| Error::Connect(super::describe(&e)))?;
        if !end_of_stream {
            // Beyond the stream's send window h2 queues the rest and sends it as LiveKit
            // grants more; the bytes are the caller's, already bounded by the request limit.
            stream.send_data(body, true).map_err(|e| stream_error(&e))?;
        }
        Ok((response, stream, guard))
    }
}

/// An error on an open stream: `REFUSED_STREAM` means LiveKit did not process the request
/// (RFC 9113 §8.7), as if it never arrived; anything else may have reached it.
fn stream_error(err: &h2::Error) -> Error {
    if err.reason() == Some(h2::Reason::REFUSED_STREAM) {
        Error::Connect(format!("LiveKit refused the stream unprocessed: {err}"))
    } else {
        classify(err, Phase::Send)
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets connection `generation` if it is still this slot's.
    fn clear(&self, generation: u64) {
        let mut state = self.lock();
        if let State::Ready(live) = &*state
            && live.generation == generation
        {
            *state = State::Empty;
        }
    }
}

impl PoolState {
    /// Slot `index`'s connection, opened first if it has none.
    async fn live(this: &Arc<Self>, index: usize) -> Result<Live, Error> {
        let attempt = {
            let mut state = this.slots[index].lock();
            match &*state {
                State::Ready(live) => return Ok(live.clone()),
                State::Connecting(attempt) => attempt.clone(),
                State::Empty => {
                    let opening = tokio::spawn(Self::open(Arc::clone(this), index));
                    let attempt = async move {
                        opening.await.unwrap_or_else(|_| {
                            Err(ConnectFailure {
                                tls: false,
                                detail: "the connecting task ended early".into(),
                            })
                        })
                    }
                    .boxed()
                    .shared();
                    *state = State::Connecting(attempt.clone());
                    attempt
                }
            }
        };
        attempt.await.map_err(Error::from)
    }

    /// Opens slot `index`'s connection and puts the outcome in the slot: the connection, or
    /// nothing (the next caller tries again).
    async fn open(this: Arc<Self>, index: usize) -> Result<Live, ConnectFailure> {
        let opened = this.connect().await;
        let mut state = this.slots[index].lock();
        match opened {
            Ok((send, connection)) => {
                let generation = this.generation.fetch_add(1, Ordering::Relaxed);
                let usage = Arc::new(Usage::default());
                let live = Live {
                    send,
                    generation,
                    usage: Arc::clone(&usage),
                };
                *state = State::Ready(live.clone());
                tokio::spawn(drive(
                    connection,
                    Arc::downgrade(&this),
                    index,
                    generation,
                    usage,
                ));
                Ok(live)
            }
            Err(failure) => {
                *state = State::Empty;
                Err(failure)
            }
        }
    }

    /// TCP (or the proxy's tunnel), TLS, and the HTTP/2 preface, within the connect bound.
    async fn connect(
        &self,
    ) -> Result<
        (
            SendRequest<Bytes>,
            h2::client::Connection<TokioIo<Connection>>,
        ),
        ConnectFailure,
    > {
        let io = self
            .connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(|e| ConnectFailure::from_error(&*e))?;
        if let MaybeHttpsStream::Https(tls) = &io
            && let Some(protocol) = tls.inner().get_ref().1.alpn_protocol()
            && protocol != b"h2"
        {
            return Err(ConnectFailure {
                tls: false,
                detail: format!(
                    "LiveKit chose {} by ALPN, and --upstream-http2 speaks only HTTP/2",
                    String::from_utf8_lossy(protocol)
                ),
            });
        }
        h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| ConnectFailure::from_error(&e))
    }
}

/// Runs one connection until it ends, then clears its slot. Every [`PoolState::idle_timeout`]
/// it looks whether the connection carried anything since the last look; if not, and no
/// stream is open, the slot lets it go (h2 closes it once the last handle is dropped).
async fn drive(
    connection: h2::client::Connection<TokioIo<Connection>>,
    pool: Weak<PoolState>,
    index: usize,
    generation: u64,
    usage: Arc<Usage>,
) {
    let idle = pool.upgrade().and_then(|p| p.idle_timeout);
    let mut connection = std::pin::pin!(connection);
    if let Some(idle) = idle {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
        loop {
            tokio::select! {
                ended = &mut connection => {
                    log_end(ended);
                    break;
                }
                _ = ticks.tick() => {
                    let used = usage.used.swap(false, Ordering::Relaxed);
                    if !used && usage.streams.load(Ordering::Relaxed) == 0 {
                        tracing::debug!(index, "closing an idle HTTP/2 connection to LiveKit");
                        if let Some(pool) = pool.upgrade() {
                            pool.slots[index].clear(generation);
                        }
                        log_end(connection.await);
                        return;
                    }
                }
            }
        }
    } else {
        log_end(connection.await);
    }
    if let Some(pool) = pool.upgrade() {
        pool.slots[index].clear(generation);
    }
}

fn log_end(ended: Result<(), h2::Error>) {
    if let Err(err) = ended {
        tracing::debug!(error = %err, "HTTP/2 connection to LiveKit ended");
    }
}

/// Counts a stream as open on its connection from before it opens until its answer has been
/// read (or given up).
struct StreamGuard(Arc<Usage>);

impl StreamGuard {
    fn new(usage: Arc<Usage>) -> Self {
        usage.used.store(true, Ordering::Relaxed);
        usage.streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(usage)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body over [`Pool`]: data, given back to LiveKit's flow-control window as it is
/// read, then trailers.
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    /// The answer's `Content-Length` (h2 checks the data against it).
    length: Option<u64>,
    data_done: bool,
    _guard: StreamGuard,
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read, so LiveKit may send as much again.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(err) => Poll::Ready(Some(Err(err))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.length
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}
