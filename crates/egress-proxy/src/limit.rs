//! Concurrency limits that shed load instead of queueing it: one for the whole gateway,
//! one per client connection.
//!
//! `tower::limit::ConcurrencyLimit` makes excess calls wait for a slot, which under overload
//! only turns into deadline errors later and holds memory meanwhile. A gateway should say
//! so at once: over a limit, a call is answered RESOURCE_EXHAUSTED without being forwarded,
//! and the caller can back off or try another replica.
//!
//! The per-connection limit keeps one connection (one misbehaving client, or one greedy
//! multiplexed channel) from taking every global slot.
//!
//! A call holds its slots until its answer has been handed to HTTP/2 in full or the stream
//! is dropped, not merely until the answer is ready: an answer waiting on a caller that does
//! not read is still memory this call holds. The listener drops streams that outlive their
//! deadline (see [`crate::listen`]), which is what bounds that wait.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use egress_telemetry::Metrics;
use futures_util::future::{Either, Ready, ready as ready_future};
use http_body::Frame;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

/// The slots of one client connection, in its requests' extensions (set by the listener).
#[derive(Debug, Clone)]
pub struct ConnectionSlots(pub Arc<Semaphore>);

/// Layer for [`ShedLimit`].
#[derive(Debug, Clone)]
pub struct ShedLimitLayer {
    permits: Arc<Semaphore>,
    max: usize,
    per_connection: usize,
    metrics: Metrics,
}

impl ShedLimitLayer {
    /// Allows at most `max` calls in flight across every service this layer wraps, and
    /// `per_connection` on any one connection.
    pub fn new(max: usize, per_connection: usize, metrics: Metrics) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            per_connection,
            metrics,
        }
    }
}

impl<S> Layer<S> for ShedLimitLayer {
    type Service = ShedLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ShedLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// Answers RESOURCE_EXHAUSTED when a limit is reached.
#[derive(Debug, Clone)]
pub struct ShedLimit<S> {
    inner: S,
    layer: ShedLimitLayer,
}

/// The slots a call holds.
#[derive(Debug)]
struct Slots {
    _global: OwnedSemaphorePermit,
    _connection: Option<OwnedSemaphorePermit>,
}

impl ShedLimitLayer {
    fn admit(&self, connection: Option<&ConnectionSlots>) -> Result<Slots, Status> {
        // The connection's own limit first: a connection over it must not take global
        // slots from everyone else while being refused.
        let connection = match connection {
            None => None,
            Some(slots) => match Arc::clone(&slots.0).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.metrics.call_shed("connection");
                    return Err(Status::resource_exhausted(format!(
                        "this connection already has {} calls in flight \
                         (--max-concurrency-per-connection); open another connection or retry \
                         with backoff",
                        self.per_connection
                    )));
                }
            },
        };
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(global) => Ok(Slots {
                _global: global,
                _connection: connection,
            }),
            Err(_) => {
                self.metrics.call_shed("global");
                Err(Status::resource_exhausted(format!(
                    "gateway overloaded: {} calls already in flight; retry with backoff",
                    self.max
                )))
            }
        }
    }
}

impl<S, R> Service<http::Request<R>> for ShedLimit<S>
where
    S: Service<http::Request<R>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Holding<S::Future>, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<R>) -> Self::Future {
        match self.layer.admit(req.extensions().get::<ConnectionSlots>()) {
            Ok(slots) => Either::Left(Holding {
                inner: self.inner.call(req),
                slots: Some(slots),
            }),
            Err(status) => Either::Right(ready_future(Ok(status.into_http()))),
        }
    }
}

pin_project! {
    /// A call's future holding its slots; they move into the answer's body.
    pub struct Holding<F> {
        #[pin]
        inner: F,
        slots: Option<Slots>,
    }
}

impl<F, E> Future for Holding<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let slots = this.slots.take();
        Poll::Ready(result.map(|response| {
            response.map(|body| {
                Body::new(HoldingBody {
                    inner: body,
                    _slots: slots,
                })
            })
        }))
    }
}

pin_project! {
    /// An answer's body that releases the call's slots when it is dropped: after its last
    /// frame went out, or when its stream was reset.
    struct HoldingBody {
        #[pin]
        inner: Body,
        _slots: Option<Slots>,
    }
}

impl http_body::Body for HoldingBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
