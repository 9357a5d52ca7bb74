//! The event door: `egress_gateway.v1.EgressEvents/Watch`, a server-streaming gRPC call over
//! the same caller authentication and policy as `livekit.Egress`.
//!
//! In order:
//! 1. only gRPC ([`refuse_non_grpc`]) and only `Watch`;
//! 2. who is calling ([`Authenticator`], the same stage `livekit.Egress` calls go through);
//! 3. a place under `--max-watchers` (RESOURCE_EXHAUSTED beyond);
//! 4. the request (one message) and the policy: `Watch` in the caller's `rpcs`, a room
//!    filter its `rooms` allow, and no filter at all only for a caller allowed every room;
//! 5. with `snapshot`, the unfinished egresses that match (`ListEgress`, active only) as
//!    `snapshot` events — after joining the ring, so nothing that happens meanwhile is lost
//!    (an egress can then show up twice, as snapshot and as event);
//! 6. every event the caller may see ([`CallerPolicy::may_see`]) that matches the filters,
//!    until the caller cancels, the gateway drains (UNAVAILABLE: watch another replica) or
//!    the watcher falls a whole queue behind (RESOURCE_EXHAUSTED: re-watch with snapshot).
//!
//! An idle stream is kept alive by HTTP/2 PINGs every 30 s (the listener's keepalive), which
//! keeps NATs and TCP-level middleboxes open; the stream sends no messages of its own, so
//! every message is an event.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use egress_core::events::{Event, EventKind, Source};
use egress_policy::CallerPolicy;
use egress_proto::egress_gateway::v1::WatchEgressRequest;
use egress_proto::livekit::ListEgressRequest;
use egress_twirp::TwirpClient;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use prost::Message as _;
use tokio::sync::{broadcast, watch};
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use super::grpc::{answer_error, refuse_non_grpc};
use super::{FrontDoor, Protocol};
use crate::call::{Authenticator, CallerInfo};
use crate::codec::BytesCodec;
use crate::error::CallError;
use crate::events::reconcile::list;
use crate::events::{Hub, Published, Watcher, to_message, unix_now};
use crate::tls::Peer;

/// The one method of the service.
const WATCH_PATH: &str = "/egress_gateway.v1.EgressEvents/Watch";
/// Largest `WatchEgressRequest` read.
const MAX_REQUEST: usize = 4096;
/// Budget of the snapshot's `ListEgress`.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// `egress_gateway.v1.EgressEvents`.
pub type EventsDoor = FrontDoor<Events>;

/// The `Watch` protocol, served by [`EventsDoor`].
pub struct Events {
    authenticator: Authenticator,
    hub: Arc<Hub>,
    client: TwirpClient,
    /// Flips when the gateway starts draining: every watch ends with UNAVAILABLE.
    draining: watch::Receiver<bool>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl EventsDoor {
    pub fn new(
        authenticator: Authenticator,
        hub: Arc<Hub>,
        client: TwirpClient,
        draining: watch::Receiver<bool>,
    ) -> Self {
        Self::serving(Events {
            authenticator,
            hub,
            client,
            draining,
        })
    }
}

impl Events {
    /// Steps 1–3 once the request is known to be gRPC: the head of the call.
    fn recognise<B>(&self, req: &http::Request<B>) -> Result<(CallerInfo, Watcher), CallError> {
        if req.uri().path() != WATCH_PATH {
            return Err(CallError::UnknownEventsMethod {
                path: req.uri().path().to_owned(),
            });
        }
        let peer = req
            .extensions()
            .get::<Peer>()
            .cloned()
            .unwrap_or_else(Peer::unknown);
        let caller = self.authenticator.authenticate(
            req.headers().get_all(http::header::AUTHORIZATION).iter(),
            &peer,
        )?;
        let watcher = self.hub.watch().ok_or(CallError::TooManyWatchers {
            max: self.hub.max_watchers(),
        })?;
        Ok((caller, watcher))
    }
}

impl NamedService for EventsDoor {
    const NAME: &'static str = egress_proto::EVENTS_SERVICE;
}

impl Protocol<Body> for Events {
    type Admitted = (CallerInfo, Watcher);

    fn admit(&self, req: &http::Request<Body>) -> Result<Self::Admitted, http::Response<Body>> {
        if let Some(refusal) = refuse_non_grpc(req) {
            return Err(refusal);
        }
        self.recognise(req).map_err(|error| answer_error(&error))
    }

    async fn answer(
        self: Arc<Self>,
        admitted: Self::Admitted,
        req: http::Request<Body>,
    ) -> http::Response<Body> {
        let mut grpc =
            tonic::server::Grpc::new(WatchCodec::default()).max_decoding_message_size(MAX_REQUEST);
        let handler = WatchHandler {
            events: self,
            admitted: Some(admitted),
        };
        grpc.server_streaming(handler, req).await
    }
}

/// Steps 4–6, once tonic has read the request.
struct WatchHandler {
    events: Arc<Events>,
    admitted: Option<(CallerInfo, Watcher)>,
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl tonic::server::ServerStreamingService<WatchEgressRequest> for WatchHandler {
    type Response = Bytes;
    type ResponseStream = EventStream;
    type Future = BoxFuture<'static, Result<Response<EventStream>, Status>>;

    fn call(&mut self, request: Request<WatchEgressRequest>) -> Self::Future {
        let events = Arc::clone(&self.events);
        let (caller, watcher) = self
            .admitted
            .take()
            .expect("tonic calls a server-streaming handler once");
        Box::pin(async move {
            let request = request.into_inner();
            let filter = Filter::new(&request, caller.policy.clone());
            if let Some(policy) = &caller.policy {
                policy
                    .check_watch(filter.room.as_deref(), filter.egress_id.as_deref())
                    .map_err(|denial| CallError::Denied(denial).to_status())?;
            }
            tracing::info!(
                target: "audit",
                caller = %caller.name,
                rpc = "Watch",
                room = filter.room.as_deref().unwrap_or(""),
                egress_id = filter.egress_id.as_deref().unwrap_or(""),
                snapshot = request.snapshot,
                "watch started"
            );
            let snapshot = if request.snapshot {
                snapshot(&events.client, &filter).await?
            } else {
                VecDeque::new()
            };
            let state = WatchState {
                snapshot,
                watcher,
                filter,
                draining: events.draining.clone(),
                hub: Arc::clone(&events.hub),
                done: false,
                caller: caller.name,
                started: std::time::Instant::now(),
                delivered: 0,
                ended: "cancelled",
            };
            let stream: EventStream = Box::pin(futures_util::stream::unfold(state, next_event));
            Ok(Response::new(stream))
        })
    }
}

/// What one watcher asked for and may see.
struct Filter {
    room: Option<String>,
    egress_id: Option<String>,
    policy: Option<Arc<CallerPolicy>>,
}

impl Filter {
    fn new(request: &WatchEgressRequest, policy: Option<Arc<CallerPolicy>>) -> Self {
        let set = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Self {
            room: set(&request.room_name),
            egress_id: set(&request.egress_id),
            policy,
        }
    }

    fn matches(&self, event: &Event) -> bool {
        self.room.as_deref().is_none_or(|r| r == event.room())
            && self
                .egress_id
                .as_deref()
                .is_none_or(|id| id == event.info.egress_id)
            && self.policy.as_ref().is_none_or(|p| p.may_see(event.room()))
    }
}

/// The matching unfinished egresses, as encoded `snapshot` events.
async fn snapshot(client: &TwirpClient, filter: &Filter) -> Result<VecDeque<Bytes>, Status> {
    let request = ListEgressRequest {
        room_name: filter.room.clone().unwrap_or_default(),
        egress_id: filter.egress_id.clone().unwrap_or_default(),
        active: true,
        ..Default::default()
    };
    let listed = tokio::time::timeout(SNAPSHOT_TIMEOUT, list(client, request))
        .await
        .map_err(|_| {
            CallError::Upstream(egress_twirp::Error::Timeout(SNAPSHOT_TIMEOUT)).to_status()
        })?;
    let items = match listed {
        Ok(items) => items,
        // An egress id LiveKit does not know has no unfinished state: an empty snapshot.
        Err(err) if err.twirp_code() == Some(egress_twirp::TwirpCode::NotFound) => Vec::new(),
        Err(err) => return Err(CallError::Upstream(err).to_status()),
    };
    let now = unix_now();
    Ok(items
        .into_iter()
        .map(|info| Event::made(EventKind::Snapshot, Source::Snapshot, info, now))
        .filter(|event| !egress_core::events::is_finished(event.info.status))
        .filter(|event| filter.matches(event))
        .map(|event| Bytes::from(to_message(&event).encode_to_vec()))
        .collect())
}

struct WatchState {
    snapshot: VecDeque<Bytes>,
    watcher: Watcher,
    filter: Filter,
    draining: watch::Receiver<bool>,
    hub: Arc<Hub>,
    done: bool,
    // For the audit line when the watch ends.
    caller: Arc<str>,
    started: std::time::Instant,
    delivered: u64,
    /// How it ended: `cancelled` (the caller went away) unless the gateway ended it.
    ended: &'static str,
}

impl Drop for WatchState {
    /// One audit line per watch, however it ended.
    fn drop(&mut self) {
        tracing::info!(
            target: "audit",
            caller = &*self.caller,
            rpc = "Watch",
            room = self.filter.room.as_deref().unwrap_or(""),
            egress_id = self.filter.egress_id.as_deref().unwrap_or(""),
            outcome = self.ended,
            delivered = self.delivered,
            duration_s = self.started.elapsed().as_secs_f64(),
            "watch ended"
        );
    }
}

async fn next_event(mut state: WatchState) -> Option<(Result<Bytes, Status>, WatchState)> {
    if state.done {
        return None;
    }
    if let Some(event) = state.snapshot.pop_front() {
        state.delivered += 1;
        return Some((Ok(event), state));
    }
    loop {
        let received = tokio::select! {
            received = state.watcher.ring.recv() => Some(received),
            _ = state.draining.wait_for(|draining| *draining) => None,
        };
        let Some(received) = received else {
            state.done = true;
            state.ended = "draining";
            return Some((Err(CallError::Draining.to_status()), state));
        };
        match received {
            Ok(published) => {
                if !state.filter.matches(&published.event) {
                    continue;
                }
                state.hub.metrics().event_delivered(delay(&published));
                state.delivered += 1;
                return Some((Ok(published.encoded.clone()), state));
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                state.hub.metrics().events_dropped(missed);
                state.done = true;
                state.ended = "fell_behind";
                return Some((Err(CallError::WatcherBehind { missed }.to_status()), state));
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

fn delay(published: &Published) -> Option<Duration> {
    published
        .webhook_at
        .and_then(|at| SystemTime::now().duration_since(at).ok())
}

/// tonic's encode buffer per stream: it is allocated when the stream opens and held while it
/// lasts, and its default (8 KiB) was most of an idle watcher's memory. An event is a few
/// hundred bytes; the buffer grows for a larger one.
const STREAM_BUFFER: usize = 512;

/// Reads the request as a prost message; sends events already encoded.
struct WatchCodec<T>(PhantomData<fn() -> T>);

/// Writes the pre-encoded events, with a buffer sized for them.
struct EventEncoder;

impl tonic::codec::Encoder for EventEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        BytesCodec.encode(item, dst)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(STREAM_BUFFER, 32 * 1024)
    }
}

impl<T> Default for WatchCodec<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: prost::Message + Default + Send + 'static> Codec for WatchCodec<T> {
    type Encode = Bytes;
    type Decode = T;
    type Encoder = EventEncoder;
    type Decoder = WatchCodec<T>;

    fn encoder(&mut self) -> Self::Encoder {
        EventEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        Self::default()
    }
}

impl<T: prost::Message + Default> Decoder for WatchCodec<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        let message = T::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|err| CallError::MalformedWatchRequest(err).to_status())?;
        Ok(Some(message))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(STREAM_BUFFER, 32 * 1024)
    }
}
