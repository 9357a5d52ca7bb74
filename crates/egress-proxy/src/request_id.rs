//! Every call carries an `x-request-id`: the caller's when it sent a usable one, a fresh
//! UUID otherwise. It goes upstream with the Twirp request and comes back in the response
//! headers (the trailers, for a trailers-only error answer), so a caller's log line, ours
//! and LiveKit's can be joined. The layer also opens the call's tracing span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderValue;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// Header (gRPC metadata key) of the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest caller-supplied id we keep; longer ones are replaced rather than forwarded.
const MAX_LEN: usize = 128;

/// Layer for [`RequestId`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestId { inner }
    }
}

/// Ensures the request has an id and echoes it on the response.
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for RequestId<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Echoed<Instrumented<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let id = match req.headers().get(REQUEST_ID) {
            Some(id) if usable(id) => id.clone(),
            _ => {
                let id = fresh();
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        // One span per call: every log line of the call (the audit line included) carries
        // the request id, and a subscriber that exports traces gets one span per call.
        let span = tracing::info_span!(
            "call",
            request_id = id.to_str().unwrap_or(""),
            path = req.uri().path(),
        );
        #[cfg(feature = "otlp")]
        crate::otlp::adopt_parent(&span, req.headers());
        Echoed {
            inner: self.inner.call(req).instrument(span),
            id: Some(id),
        }
    }
}

pin_project! {
    /// A call's future that puts the request id on its response.
    pub struct Echoed<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for Echoed<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        Poll::Ready(result.map(|mut response| {
            if let Some(id) = this.id.take() {
                response.headers_mut().insert(REQUEST_ID, id);
            }
            response
        }))
    }
}

fn usable(id: &HeaderValue) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

fn fresh() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_ids() {
        assert!(usable(&HeaderValue::from_static("abc-123")));
        assert!(!usable(&HeaderValue::from_static("")));
        assert!(!usable(&HeaderValue::from_static("has space")));
        assert!(!usable(&HeaderValue::from_str(&"x".repeat(129)).unwrap()));
        assert!(usable(&fresh()));
    }
}
