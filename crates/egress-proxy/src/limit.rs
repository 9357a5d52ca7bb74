//! A concurrency limit that sheds load instead of queueing it.
//!
//! `tower::limit::ConcurrencyLimit` makes excess calls wait for a slot, which under overload
//! only turns into deadline errors later and holds memory meanwhile. A gateway should say
//! so at once: over the limit, a call is answered RESOURCE_EXHAUSTED without being
//! forwarded, and the caller can back off or try another replica.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

/// Layer for [`ShedLimit`].
#[derive(Debug, Clone)]
pub struct ShedLimitLayer {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ShedLimitLayer {
    /// Allows at most `max` calls in flight across every service this layer wraps.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<S> Layer<S> for ShedLimitLayer {
    type Service = ShedLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ShedLimit {
            inner,
            permits: Arc::clone(&self.permits),
            max: self.max,
        }
    }
}

/// Answers RESOURCE_EXHAUSTED when `max` calls are already in flight.
#[derive(Debug, Clone)]
pub struct ShedLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
    max: usize,
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
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Either::Left(Holding {
                inner: self.inner.call(req),
                _permit: permit,
            }),
            Err(_) => {
                let status = Status::resource_exhausted(format!(
                    "gateway overloaded: {} calls already in flight; retry with backoff",
                    self.max
                ));
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

pin_project! {
    /// A call's future holding its slot. The slot is released when the response head is
    /// ready and hyper drops the future; a unary call's body is complete by then.
    pub struct Holding<F> {
        #[pin]
        inner: F,
        _permit: OwnedSemaphorePermit,
    }
}

impl<F: Future> Future for Holding<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}
