//! Front doors: each turns its protocol's request into a [`Call`](crate::call::Call), runs
//! it through the [`Stages`](crate::call::Stages), and turns the
//! [`Answer`](crate::call::Answer) or [`CallError`](crate::error::CallError) back into its
//! protocol. A door decides nothing about who may do what; it cannot skip a stage, because
//! the stages are the only way to an answer.
//!
//! - [`grpc`]: gRPC over HTTP/2 (the `livekit.Egress` service).
//! - [`twirp`]: LiveKit's own Twirp API (`/twirp/livekit.Egress/<Method>`), so LiveKit's
//!   SDKs can call the gateway as they call LiveKit.
//! - [`events`]: the gateway's own `egress_gateway.v1.EgressEvents/Watch` stream, over the
//!   same authentication and policy.
//!
//! What the doors share is here: the tower service around each door's [`Protocol`]
//! ([`FrontDoor`]), the settings, building a [`Call`] from a request head and admitting it
//! ([`admit_head`]), and the deadline and drain around an answer.

pub mod events;
pub mod grpc;
pub mod twirp;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use egress_core::Rpc;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body::Frame;
use pin_project_lite::pin_project;
use tokio::sync::watch;

use crate::call::{Call, ConnectionSlots, Door, Slots, Stages, TraceContext};
use crate::deadline::Deadlines;
use crate::error::{CallError, MAX_IDEMPOTENCY_KEY};
use crate::listen::bound_this_stream;
use crate::request_id::REQUEST_ID;
use crate::tls::Peer;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Where a caller may put its idempotency key (LiveKit's own name first), and where the
/// key in use goes back to it.
const IDEMPOTENCY_HEADERS: [&str; 2] = ["x-livekit-request-id", "idempotency-key"];

/// What one door does with a request; [`FrontDoor`] makes it a tower service.
///
/// The head is judged in the service's `call`, so a refused call is answered without
/// waiting on anything; only an admitted call's answer (body, stages, LiveKit) is awaited.
pub trait Protocol<B>: Send + Sync + 'static {
    /// What admitting the head gave the answer to go on with.
    type Admitted: Send + 'static;

    /// Judges the request head: the call admitted, or the answer that refuses it.
    #[expect(
        clippy::result_large_err,
        reason = "a refusal is the response sent back; boxing it would only add an allocation"
    )]
    fn admit(
        &self,
        req: &http::Request<B>,
    ) -> Result<Self::Admitted, http::Response<tonic::body::Body>>;

    /// The answer to an admitted call.
    fn answer(
        self: Arc<Self>,
        admitted: Self::Admitted,
        req: http::Request<B>,
    ) -> impl Future<Output = http::Response<tonic::body::Body>> + Send + 'static;
}

/// A front door: the tower service that serves protocol `P`. It never fails as a service;
/// every failure is an answer in `P`'s own terms.
#[derive(Debug)]
pub struct FrontDoor<P>(Arc<P>);

impl<P> FrontDoor<P> {
    fn serving(protocol: P) -> Self {
        Self(Arc::new(protocol))
    }
}

// Not derived: that would ask `P: Clone`, and only the `Arc` is cloned.
impl<P> Clone for FrontDoor<P> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<P: Protocol<B>, B> tower::Service<http::Request<B>> for FrontDoor<P> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.0.admit(&req) {
            // `map`, not `async move { Ok(answer.await) }`: an async block keeps the future
            // it captured and the one it awaits side by side, doubling the largest
            // allocation a call in flight holds (rust-lang/rust#62958).
            Ok(admitted) => Box::pin(Arc::clone(&self.0).answer(admitted, req).map(Ok)),
            Err(refusal) => Box::pin(std::future::ready(Ok(refusal))),
        }
    }
}

/// What the egress doors need besides the stages.
#[derive(Debug, Clone)]
pub struct DoorSettings {
    /// Largest request and response message (after decompression), in bytes.
    pub max_message_size: usize,
    pub deadlines: Deadlines,
    /// Turns `true` when the drain timeout has passed: calls still running are answered
    /// UNAVAILABLE instead of being dropped with their connection.
    pub stopping: watch::Receiver<bool>,
}

impl DoorSettings {
    /// `answer` of a call of `rpc`, unless its deadline (`deadline`, `budget` after it
    /// was received) or the drain timeout comes first: then the call's error for that.
    pub(crate) async fn within_deadline<T>(
        &self,
        rpc: Rpc,
        (deadline, budget): (tokio::time::Instant, Duration),
        answer: impl Future<Output = T>,
    ) -> Result<T, CallError> {
        let mut stopping = self.stopping.clone();
        tokio::select! {
            answered = tokio::time::timeout_at(deadline, answer) => {
                answered.map_err(|_elapsed| CallError::DeadlineExceeded { rpc, budget })
            }
            _ = stopping.wait_for(|stopping| *stopping) => Err(CallError::ShuttingDown),
        }
    }
}

/// `response`, holding the call's `slots` until its body is done, and returning the
/// idempotency key in use (`key`) so the caller can retry the call with it.
pub(crate) fn held<B>(
    response: http::Response<B>,
    slots: Slots,
    key: http::HeaderValue,
) -> http::Response<tonic::body::Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut response = response.map(|body| tonic::body::Body::new(HoldingSlots::new(body, slots)));
    response
        .headers_mut()
        .insert(http::HeaderName::from_static(IDEMPOTENCY_HEADERS[0]), key);
    response
}

/// Builds the call of `rpc` through `door` from the request head: peer, request id,
/// trace context, idempotency key and `budget`; bounds the stream by its deadline; then
/// runs the head stages ([`Stages::admit`]: authenticate, take slots).
///
/// # Errors
///
/// A malformed idempotency key, or what the head stages refused.
pub(crate) fn admit_head<B>(
    stages: &Stages,
    req: &http::Request<B>,
    rpc: Rpc,
    door: Door,
    budget: Duration,
) -> Result<(Call, Slots), CallError> {
    let headers = req.headers();
    let peer = req
        .extensions()
        .get::<Peer>()
        .cloned()
        .unwrap_or_else(Peer::unknown);
    // `RequestIdLayer` has made sure there is one.
    let request_id = headers
        .get(REQUEST_ID)
        .cloned()
        .unwrap_or_else(|| http::HeaderValue::from_static(""));
    let trace = TraceContext {
        traceparent: headers.get(TRACEPARENT).cloned(),
        tracestate: headers.get(TRACESTATE).cloned(),
    };
    let mut call = Call::new(rpc, peer, request_id, budget, trace);
    call.door = door;
    if let Some(key) = idempotency_key(headers)? {
        call.idempotency_key = key;
    }
    // The stream itself, answer flushing included, may not outlive the call.
    bound_this_stream(call.deadline());
    let slots = stages.admit(
        &mut call,
        headers.get_all(http::header::AUTHORIZATION).iter(),
        req.extensions().get::<ConnectionSlots>(),
    )?;
    Ok((call, slots))
}

/// A plain-text answer with `status`.
pub(crate) fn plain(
    status: http::StatusCode,
    text: impl Into<Bytes>,
) -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::new(http_body_util::Full::new(
        text.into(),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The caller's idempotency key, if it sent one: `None` when absent.
///
/// # Errors
///
/// [`CallError::MalformedIdempotencyKey`] for an empty, long or odd key: it is forwarded to
/// LiveKit as a header and logged, and silently replacing it would make the caller's own
/// retry a new call.
fn idempotency_key(headers: &http::HeaderMap) -> Result<Option<http::HeaderValue>, CallError> {
    for header in IDEMPOTENCY_HEADERS {
        let Some(value) = headers.get(header) else {
            continue;
        };
        let usable = (1..=MAX_IDEMPOTENCY_KEY).contains(&value.len())
            && value
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(b));
        if !usable {
            return Err(CallError::MalformedIdempotencyKey { header });
        }
        return Ok(Some(value.clone()));
    }
    Ok(None)
}

pin_project! {
    /// An answer's body that holds the call's [`Slots`] until it is dropped: after its last
    /// frame went out, or when its stream was reset.
    pub struct HoldingSlots<B> {
        #[pin]
        body: B,
        _slots: Slots,
    }
}

impl<B> HoldingSlots<B> {
    /// `body`, releasing `slots` only when it is dropped.
    pub fn new(body: B, slots: Slots) -> Self {
        Self {
            body,
            _slots: slots,
        }
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for HoldingSlots<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
