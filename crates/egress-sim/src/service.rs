//! The Egress service itself: decoded requests in, messages or Twirp errors out.
//!
//! Each RPC follows livekit's `pkg/service/egress.go` (v1.13.5): Start RPCs look the room up
//! and then need an egress worker; StopEgress and UpdateStream go to the egress's worker
//! and, when none answers, fall back to the store; ListEgress and UpdateLayout read the
//! store. Waiting for a worker that never answers is async and bounded by the caller's
//! `X-Twirp-Timeout-Ms`, so other requests go on meanwhile.

use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use egress_auth::Claims;
use egress_core::{RpcRequest, Validate};
use egress_proto::livekit::{
    self as lk, EgressInfo, EgressSourceType, EgressStatus, ListEgressResponse, TokenPagination,
    egress_info, start_egress_request,
};

use crate::redact::Redact;
use crate::rpc::Rpc;
use crate::state::{ListFilter, NewEgress, Shared, WorkerAnswer, now_ns};
use crate::twirp::TwirpError;
use egress_core::codec::{self, WireFormat};

/// Rejects requests LiveKit's egress worker would reject, with the worker's text
/// (`ValidationError::livekit_message`, e.g. `request has missing or invalid field:
/// output`). The worker validates when it takes the request (`GetValidatedPipelineConfig`
/// in livekit/egress `pkg/server/server_rpc.go`); LiveKit's server checks nothing before
/// the RPC (livekit/livekit `EgressService.startEgress`), so the error is relayed.
///
/// The rules are egress-core's, shared with the client's request builders.
fn check<T: Validate>(request: &T) -> Result<(), TwirpError> {
    request
        .validate()
        .map_err(|e| TwirpError::relayed("invalid_argument", e.livekit_message()))
}

/// [`check`] as the egress worker runs it on a Start request (egress `errors.ErrInvalidInput`):
/// the error comes back through the internal RPC layer, so it is relayed.
fn check_on_worker<T: Validate>(request: &T) -> Result<(), TwirpError> {
    check(request).map_err(|e| TwirpError::relayed(&e.code, e.msg))
}

/// When an internal RPC that nobody answers gives up: after `wait`, or at the caller's
/// deadline if that comes first (protocol `xtwirp.ServerPassTimeout` puts
/// `X-Twirp-Timeout-Ms` on the handler's context, which psrpc's request honours).
/// The flag says whether the deadline cut the wait short.
pub(crate) fn give_up_at(
    now: Instant,
    wait: Duration,
    deadline: Option<Instant>,
) -> (Instant, bool) {
    let end = now.checked_add(wait).unwrap_or(now);
    match deadline {
        Some(deadline) if deadline < end => (deadline, true),
        _ => (end, false),
    }
}

/// Waits for an internal RPC that no worker answers; `true` if the caller's deadline cut
/// the wait short.
async fn wait_for_nobody(wait: Duration, deadline: Option<Instant>) -> bool {
    let (until, cut) = give_up_at(Instant::now(), wait, deadline);
    tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
    cut
}

/// Runs one RPC: decode (`malformed` on failure), check the `roomRecord` grant
/// (`unauthenticated` `permissions denied`), then the RPC's logic; the answer is encoded in
/// the request's encoding. `deadline` is the caller's `X-Twirp-Timeout-Ms`.
pub(crate) async fn call(
    shared: &Shared,
    rpc: Rpc,
    encoding: WireFormat,
    body: &[u8],
    claims: Option<&Claims>,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, TwirpError> {
    use egress_info::Request;
    let incoming = Incoming {
        shared,
        encoding,
        body,
        claims,
        deadline,
    };
    match rpc {
        Rpc::StartRoomCompositeEgress => incoming.start(Request::RoomComposite).await,
        Rpc::StartWebEgress => incoming.start(Request::Web).await,
        Rpc::StartParticipantEgress => incoming.start(Request::Participant).await,
        Rpc::StartTrackCompositeEgress => incoming.start(Request::TrackComposite).await,
        Rpc::StartTrackEgress => incoming.start(Request::Track).await,
        Rpc::StartEgress => incoming.start(Request::Egress).await,
        // LiveKit looks the egress up before anything else, so an empty id is `not_found`
        // rather than `invalid_argument`.
        Rpc::UpdateLayout => {
            incoming
                .run(|r: lk::UpdateLayoutRequest| async move {
                    shared
                        .store()
                        .update_layout(&r.egress_id, &r.layout, now_ns())
                })
                .await
        }
        Rpc::UpdateStream => {
            incoming
                .run(|r: lk::UpdateStreamRequest| update_stream(shared, r, deadline))
                .await
        }
        Rpc::StopEgress => {
            incoming
                .run(|r: lk::StopEgressRequest| stop(shared, r.egress_id, deadline))
                .await
        }
        Rpc::ListEgress => {
            incoming
                .run(|r: lk::ListEgressRequest| async move {
                    check(&r)?;
                    list(shared, &r)
                })
                .await
        }
    }
}

/// One call as it came in, before its request is decoded.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    shared: &'a Shared,
    encoding: WireFormat,
    body: &'a [u8],
    claims: Option<&'a Claims>,
    /// The caller's `X-Twirp-Timeout-Ms`.
    deadline: Option<Instant>,
}

impl Incoming<'_> {
    /// Decodes the request, checks the grant, then answers it with `f`. The request's type
    /// names the RPC, and the table its response type, so a handler cannot answer with the
    /// wrong message.
    async fn run<Req, F, Fut>(self, f: F) -> Result<Vec<u8>, TwirpError>
    where
        Req: RpcRequest,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Req::Response, TwirpError>>,
        Req::Response: Redact,
    {
        let (rpc, encoding) = (Req::RPC, self.encoding);
        let request: Req = codec::decode(encoding, rpc.request_type(), self.body).map_err(|e| {
            tracing::debug!(%rpc, error = %e, "malformed request");
            TwirpError::malformed(encoding)
        })?;
        if !self.claims.is_some_and(|c| c.video.room_record) {
            return Err(TwirpError::permission_denied());
        }
        let mut response = f(request).await?;
        // Every answer carries EgressInfos; none leaves with a secret in it.
        response.redact();
        Ok(codec::encode(encoding, rpc.response_type(), &response))
    }

    /// Runs a Start RPC ([`start`]); `kept_as` is the `EgressInfo.request` variant that
    /// keeps its request type.
    async fn start<T>(self, kept_as: fn(T) -> egress_info::Request) -> Result<Vec<u8>, TwirpError>
    where
        T: RpcRequest<Response = EgressInfo> + Validate + Clone,
    {
        let (shared, deadline) = (self.shared, self.deadline);
        self.run(|request| start(shared, request, kept_as, deadline))
            .await
    }
}

/// The egress a Start request (`request`, as `EgressInfo` keeps it) asks for: its room (a
/// web egress joins none) and the source type LiveKit reports (`SDK` for what records
/// tracks, `WEB` for what renders a page).
fn new_egress(request: egress_info::Request) -> NewEgress {
    use egress_info::Request;
    let (room_name, source_type) = match &request {
        Request::RoomComposite(r) => (r.room_name.clone(), EgressSourceType::Web),
        Request::Web(_) => (String::new(), EgressSourceType::Web),
        Request::Participant(r) => (r.room_name.clone(), EgressSourceType::Sdk),
        Request::TrackComposite(r) => (r.room_name.clone(), EgressSourceType::Sdk),
        Request::Track(r) => (r.room_name.clone(), EgressSourceType::Sdk),
        Request::Egress(r) => match r.source {
            Some(start_egress_request::Source::Media(_)) => {
                (r.room_name.clone(), EgressSourceType::Sdk)
            }
            _ => (r.room_name.clone(), EgressSourceType::Web),
        },
        // `ExportReplay` is no RPC of the pinned `livekit.Egress` ([`call`] starts none); were
        // it ever routed here, a replay records a room's past, like a room composite.
        Request::Replay(_) => (String::new(), EgressSourceType::Web),
    };
    NewEgress {
        room_name,
        source_type,
        request,
    }
}

/// A Start RPC (livekit `egressLauncher.StartEgress`): the room a request names must be
/// live (`LoadRoom`, see [`Rooms`](crate::Rooms)); then an egress worker must take the
/// request, and it is the worker that validates it. With no worker, the internal RPC's
/// retries run out (`unavailable` `no response from servers`), or the caller's deadline
/// ends them first (`canceled` `request canceled`: psrpc's retry gives up with
/// `ErrRequestCanceled` once the context is done).
async fn start<T: Validate + Clone>(
    shared: &Shared,
    request: T,
    kept_as: fn(T) -> egress_info::Request,
    deadline: Option<Instant>,
) -> Result<EgressInfo, TwirpError> {
    let new = new_egress(kept_as(request.clone()));
    let (room_id, workers) = {
        let mut store = shared.store();
        (store.room_for_start(&new.room_name)?, store.workers())
    };
    if !workers {
        return Err(if wait_for_nobody(shared.waits.no_worker, deadline).await {
            TwirpError::request_canceled()
        } else {
            TwirpError::no_response()
        });
    }
    check_on_worker(&request)?;
    Ok(shared.store().start(new, room_id, now_ns()))
}

/// StopEgress (livekit `EgressService.StopEgress`): the egress's worker ends it (see
/// `Store::stop`). When no worker answers (unknown id, ended egress, worker gone) the
/// internal RPC gives up after the gone-worker wait, and the handler answers from the
/// store: `not_found` for an unknown id, `failed_precondition` `egress with status … cannot
/// be stopped` unless the stored status is STARTING or ACTIVE, and otherwise the RPC's
/// error: `request timed out` (the handler maps `no response from servers` to it), or
/// `request canceled` when the caller's deadline ended the wait.
async fn stop(
    shared: &Shared,
    egress_id: String,
    deadline: Option<Instant>,
) -> Result<EgressInfo, TwirpError> {
    let answer = shared.store().stop(&egress_id, now_ns());
    if let WorkerAnswer::Answered(info) = answer {
        return Ok(info);
    }
    let cut = wait_for_nobody(shared.waits.gone_worker, deadline).await;
    let rpc_error = if cut {
        TwirpError::request_canceled()
    } else {
        TwirpError::deadline_exceeded()
    };
    Err(store_fallback(shared, &egress_id, rpc_error, "stopped"))
}

/// UpdateStream (livekit `EgressService.UpdateStream`): the egress's worker applies it
/// (see `Store::update_stream`); its error, or no worker answering (after the gone-worker
/// wait, or at the caller's deadline), falls back to the store like [`stop`], except that
/// a worker that never answers stays `unavailable` `no response from servers`.
async fn update_stream(
    shared: &Shared,
    request: lk::UpdateStreamRequest,
    deadline: Option<Instant>,
) -> Result<EgressInfo, TwirpError> {
    let answer = shared.store().update_stream(&request, now_ns());
    let rpc_error = match answer {
        WorkerAnswer::Answered(Ok(info)) => return Ok(info),
        WorkerAnswer::Answered(Err(error)) => error,
        WorkerAnswer::NoWorker => {
            if wait_for_nobody(shared.waits.gone_worker, deadline).await {
                TwirpError::request_canceled()
            } else {
                TwirpError::no_response()
            }
        }
    };
    Err(store_fallback(
        shared,
        &request.egress_id,
        rpc_error,
        "updated",
    ))
}

/// What livekit's Stop/UpdateStream handlers answer after the worker's RPC failed: they
/// load the egress (`IOInfoService.GetEgress`: `not_found` if unknown) and pass the RPC's
/// error on only while it is STARTING or ACTIVE; otherwise `failed_precondition`.
fn store_fallback(
    shared: &Shared,
    egress_id: &str,
    rpc_error: TwirpError,
    verb: &str,
) -> TwirpError {
    let Some(info) = shared.store().get(egress_id, now_ns()) else {
        return TwirpError::not_found();
    };
    match EgressStatus::try_from(info.status) {
        Ok(EgressStatus::EgressStarting | EgressStatus::EgressActive) => rpc_error,
        Ok(status) => crate::state::precondition(status, verb),
        Err(_) => rpc_error,
    }
}

/// ListEgress (livekit `IOInfoService.ListEgress`): an egress id looks that one egress up
/// and ignores the other filters (`not_found` if unknown); otherwise the room and `active`
/// filters apply.
fn list(shared: &Shared, r: &lk::ListEgressRequest) -> Result<ListEgressResponse, TwirpError> {
    if !r.egress_id.is_empty() {
        let info = shared
            .store()
            .get(&r.egress_id, now_ns())
            .ok_or_else(TwirpError::not_found)?;
        return Ok(ListEgressResponse {
            items: vec![info],
            next_page_token: None,
        });
    }
    let items = shared.store().list(
        &ListFilter {
            room_name: &r.room_name,
            egress_id: "",
            active: r.active,
        },
        now_ns(),
    );
    paginate(items, shared.page_size, r.page_token.as_ref())
}

const TOKEN_PREFIX: &str = "sim-offset:";

fn encode_offset(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{offset}"))
}

fn decode_offset(token: &str) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    text.strip_prefix(TOKEN_PREFIX)?.parse().ok()
}

/// Open-source mode (`page_size` `None`): everything, `page_token` ignored, no
/// `next_page_token`. Cloud-like mode: `page_size` items from the token's offset, and a
/// `next_page_token` while items remain.
fn paginate(
    items: Vec<EgressInfo>,
    page_size: Option<usize>,
    token: Option<&TokenPagination>,
) -> Result<ListEgressResponse, TwirpError> {
    let Some(size) = page_size else {
        return Ok(ListEgressResponse {
            items,
            next_page_token: None,
        });
    };
    let offset = match token.map(|t| t.token.as_str()).filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => {
            decode_offset(token).ok_or_else(|| TwirpError::invalid_field("page_token"))?
        }
    };
    let total = items.len();
    let page: Vec<EgressInfo> = items.into_iter().skip(offset).take(size.max(1)).collect();
    let next = offset.saturating_add(page.len());
    Ok(ListEgressResponse {
        next_page_token: (next < total).then(|| TokenPagination {
            token: encode_offset(next),
        }),
        items: page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infos(n: usize) -> Vec<EgressInfo> {
        (0..n)
            .map(|i| EgressInfo {
                egress_id: format!("EG_{i}"),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn waits_end_at_the_deadline_when_it_comes_first() {
        let now = Instant::now();
        let wait = Duration::from_secs(3);
        assert_eq!(give_up_at(now, wait, None), (now + wait, false));
        let soon = now + Duration::from_millis(300);
        assert_eq!(give_up_at(now, wait, Some(soon)), (soon, true));
        let late = now + Duration::from_secs(5);
        assert_eq!(give_up_at(now, wait, Some(late)), (now + wait, false));
        // An already expired deadline (X-Twirp-Timeout-Ms: 0) ends the wait at once.
        assert_eq!(give_up_at(now, wait, Some(now)), (now, true));
    }

    #[test]
    fn open_source_mode_ignores_tokens() {
        let token = TokenPagination {
            token: "whatever".into(),
        };
        let page = paginate(infos(5), None, Some(&token)).unwrap();
        assert_eq!(page.items.len(), 5);
        assert!(page.next_page_token.is_none());
    }

    #[test]
    fn cloud_mode_walks_pages() {
        let mut token = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let page = paginate(infos(5), Some(2), token.as_ref()).unwrap();
            seen.extend(page.items.into_iter().map(|i| i.egress_id));
            token = page.next_page_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen, ["EG_0", "EG_1", "EG_2", "EG_3", "EG_4"]);

        let bad = TokenPagination { token: "!!".into() };
        assert_eq!(
            paginate(infos(1), Some(2), Some(&bad)).unwrap_err(),
            TwirpError::invalid_field("page_token")
        );
        let empty = paginate(Vec::new(), Some(2), None).unwrap();
        assert!(empty.items.is_empty() && empty.next_page_token.is_none());
    }
}
