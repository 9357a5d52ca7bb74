//! One structured audit line per `livekit.Egress` call: caller, RPC, room, egress id,
//! outcome and latency — never a secret, token or stream key.
//!
//! Lines go to the `audit` tracing target at INFO, so they can be routed or filtered apart
//! from operational logs (`RUST_LOG=info,audit=off` silences them).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use egress_core::Rpc;
use egress_core::view::{RequestView, decode_view};
use futures_util::future::BoxFuture;
use tonic::{Request, Response, Status};
use tower::{Layer, Service};

use crate::auth::CallerInfo;
use crate::request_id::REQUEST_ID;
use crate::tls::Peer;

/// The egress id an answer carried (start calls learn theirs only from the answer).
#[derive(Debug, Clone)]
pub struct AnsweredEgressId(pub String);

/// The request's decoded view, shared by the message-level layers (decoded once per call).
pub fn view_of(request: &mut Request<Bytes>) -> Result<Arc<RequestView>, Status> {
    if let Some(view) = request.extensions().get::<Arc<RequestView>>() {
        return Ok(Arc::clone(view));
    }
    let rpc = *request
        .extensions()
        .get::<Rpc>()
        .ok_or_else(|| Status::internal("call without its RPC"))?;
    let view = decode_view(rpc, request.get_ref())
        .map(Arc::new)
        .map_err(|err| {
            Status::invalid_argument(format!(
                "{} request is not valid protobuf: {err}",
                rpc.as_str()
            ))
        })?;
    request.extensions_mut().insert(Arc::clone(&view));
    Ok(view)
}

/// Layer for [`Audit`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditLayer;

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit { inner }
    }
}

/// Logs each call when it ends.
#[derive(Debug, Clone)]
pub struct Audit<S> {
    inner: S,
}

impl<S> Service<Request<Bytes>> for Audit<S>
where
    S: Service<Request<Bytes>, Response = Response<Bytes>, Error = Status> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Bytes>) -> Self::Future {
        let started = Instant::now();
        let view = view_of(&mut request);
        let caller = request
            .extensions()
            .get::<CallerInfo>()
            .map(|c| Arc::clone(&c.name));
        let peer = request.extensions().get::<Peer>().map(|p| p.addr);
        let request_id = request
            .metadata()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let rpc = request.extensions().get::<Rpc>().copied();
        // A request that doesn't decode is refused (and audited) without going upstream.
        let call = view.as_ref().ok().map(|_| self.inner.call(request));
        Box::pin(async move {
            let result = match (&view, call) {
                (_, Some(call)) => call.await,
                (Err(status), None) => Err(status.clone()),
                (Ok(_), None) => unreachable!("a call is made whenever the view decoded"),
            };
            let view = view.ok();
            let (code, answered) = match &result {
                Ok(response) => (
                    tonic::Code::Ok,
                    response
                        .extensions()
                        .get::<AnsweredEgressId>()
                        .map(|e| e.0.as_str()),
                ),
                Err(status) => (status.code(), None),
            };
            tracing::info!(
                target: "audit",
                caller = caller.as_deref().unwrap_or("anonymous"),
                rpc = rpc.map_or("", Rpc::as_str),
                room = view.as_ref().and_then(|v| v.room_name.as_deref()).unwrap_or(""),
                egress_id = view
                    .as_ref()
                    .and_then(|v| v.egress_id.as_deref())
                    .or(answered)
                    .unwrap_or(""),
                outcome = ?code,
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                request_id = request_id.as_deref().unwrap_or(""),
                peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                "egress call"
            );
            result
        })
    }
}
