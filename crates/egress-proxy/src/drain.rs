//! Ends health `Watch` streams when the gateway starts draining.
//!
//! A `Watch` stream lasts as long as its caller wants, so the HTTP/2 connection carrying it
//! never finishes draining and shutdown waits out the whole `--drain-timeout`. Once draining
//! starts (health already NOT_SERVING), each such stream gets the NOT_SERVING update that is
//! pending on it and then ends with UNAVAILABLE, which tells a gRPC client to watch another
//! replica.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::CallError;
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::watch;

/// The `Watch` method of the standard health service.
const HEALTH_WATCH: &str = "/grpc.health.v1.Health/Watch";

/// Flips once, when draining starts.
#[derive(Debug)]
pub struct DrainSignal(watch::Sender<bool>);

impl DrainSignal {
    /// A signal and the layer that ends `Watch` streams on it.
    pub fn new() -> (Self, EndWatchesOnDrain) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), EndWatchesOnDrain { draining: rx })
    }

    /// Turns `true` when draining starts (the event door ends its watches on it).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Starts ending the streams.
    pub fn drain(&self) {
        self.0.send_replace(true);
    }
}

/// Layer that makes health `Watch` answers end once draining starts.
#[derive(Debug, Clone)]
pub struct EndWatchesOnDrain {
    draining: watch::Receiver<bool>,
}

impl<S> tower::Layer<S> for EndWatchesOnDrain {
    type Service = EndWatches<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndWatches {
            inner,
            draining: self.draining.clone(),
        }
    }
}

/// See [`EndWatchesOnDrain`].
#[derive(Debug, Clone)]
pub struct EndWatches<S> {
    inner: S,
    draining: watch::Receiver<bool>,
}

impl<S, R> tower::Service<http::Request<R>> for EndWatches<S>
where
    S: tower::Service<http::Request<R>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    // Health and reflection only: a box per call costs nothing that matters here.
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<R>) -> Self::Future {
        let watch = req.uri().path() == HEALTH_WATCH;
        let answer = self.inner.call(req);
        if !watch {
            return answer.boxed();
        }
        let mut draining = self.draining.clone();
        async move {
            let response = answer.await?;
            let drained: BoxFuture<'static, ()> = Box::pin(async move {
                // An error means the server is gone: end the stream then too.
                let _ = draining.wait_for(|draining| *draining).await;
            });
            Ok(response.map(|inner| {
                tonic::body::Body::new(DrainingBody {
                    inner,
                    drained: Some(drained),
                })
            }))
        }
        .boxed()
    }
}

/// A `Watch` answer's body that ends with UNAVAILABLE once draining starts.
struct DrainingBody<B> {
    inner: B,
    drained: Option<BoxFuture<'static, ()>>,
}

impl<B> Body for DrainingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        // The inner stream first, so the NOT_SERVING update set before draining goes out.
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let Some(drained) = self.drained.as_mut() else {
            return Poll::Ready(None);
        };
        match drained.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.drained = None;
                let status = CallError::Draining.to_status();
                let mut trailers = http::HeaderMap::new();
                match status.add_header(&mut trailers) {
                    Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    Err(_) => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
