//! Per-caller policy at the message level: the decoded request view is checked against the
//! caller's rules; the original bytes are what is forwarded.
//!
//! Calls that name only an egress id (StopEgress, UpdateLayout, UpdateStream) are checked
//! against the room the egress belongs to, looked up with ListEgress and cached briefly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use egress_core::Rpc;
use egress_core::unknown::first_unknown_field;
use egress_policy::CallerPolicy;
use egress_proto::livekit::{ListEgressRequest, ListEgressResponse};
use egress_twirp::{CallOptions, TwirpClient};
use futures_util::future::BoxFuture;
use tonic::{Request, Response, Status};
use tower::{Layer, Service};

use crate::audit::view_of;
use crate::auth::CallerInfo;

/// How long an egress → room answer is reused.
const ROOM_TTL: Duration = Duration::from_secs(30);
/// Bound on the cache; when full it is emptied (rooms of egresses rarely change anyway).
const ROOM_CACHE_MAX: usize = 10_000;
/// Budget of one room lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Layer for [`PolicyCheck`].
#[derive(Debug, Clone)]
pub struct PolicyLayer {
    rooms: Arc<RoomLookup>,
}

impl PolicyLayer {
    /// Room lookups for egress-id calls go through `client`.
    pub fn new(client: TwirpClient) -> Self {
        Self {
            rooms: Arc::new(RoomLookup {
                client,
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyCheck {
            inner,
            rooms: Arc::clone(&self.rooms),
        }
    }
}

/// Answers PERMISSION_DENIED, naming the rule, when the caller's policy forbids the call.
#[derive(Debug, Clone)]
pub struct PolicyCheck<S> {
    inner: S,
    rooms: Arc<RoomLookup>,
}

impl<S> Service<Request<Bytes>> for PolicyCheck<S>
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
        let mut inner = self.inner.clone();
        let rooms = Arc::clone(&self.rooms);
        Box::pin(async move {
            let policy = request
                .extensions()
                .get::<CallerInfo>()
                .and_then(|c| c.policy.clone());
            if let Some(policy) = policy {
                if policy.restricts_content() {
                    refuse_unknown_fields(&request, &policy)?;
                }
                let view = view_of(&mut request)?;
                policy
                    .check(&view)
                    .map_err(|denial| Status::permission_denied(denial.to_string()))?;
                if let Some(egress_id) = policy.needs_egress_room(&view) {
                    let room = rooms.room_of(egress_id).await?;
                    policy
                        .check_egress_room(&room)
                        .map_err(|denial| Status::permission_denied(denial.to_string()))?;
                }
            }
            inner.call(request).await
        })
    }
}

/// Fails closed for callers whose policy reads what a request carries: a field the pinned
/// schema does not know could hold exactly what the policy forbids (a newer LiveKit's
/// output destination, say), and the caller's bytes are forwarded as they are.
fn refuse_unknown_fields(request: &Request<Bytes>, policy: &CallerPolicy) -> Result<(), Status> {
    let rpc = *request
        .extensions()
        .get::<Rpc>()
        .ok_or_else(|| Status::internal("call without its RPC"))?;
    match first_unknown_field(rpc, request.get_ref()) {
        Ok(None) => Ok(()),
        Ok(Some(unknown)) => Err(Status::permission_denied(format!(
            "{rpc} request carries {unknown}, which the gateway's LiveKit schema does not know \
             (the caller's schema is newer than the gateway's); refused because the policy of \
             caller {} restricts what requests may carry",
            policy.caller_name()
        ))),
        Err(err) => Err(Status::invalid_argument(format!(
            "{rpc} request is not valid protobuf: {err}"
        ))),
    }
}

#[derive(Debug)]
struct RoomLookup {
    client: TwirpClient,
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

impl RoomLookup {
    async fn room_of(&self, egress_id: &str) -> Result<String, Status> {
        if let Some((room, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(egress_id)
            && at.elapsed() < ROOM_TTL
        {
            return Ok(room.clone());
        }
        let request = ListEgressRequest {
            egress_id: egress_id.to_owned(),
            ..Default::default()
        };
        let answer: ListEgressResponse = self
            .client
            .call_typed(
                "ListEgress",
                &request,
                &CallOptions::new().with_timeout(LOOKUP_TIMEOUT),
            )
            .await
            .map_err(|err| {
                let status = Status::from(err);
                Status::new(
                    status.code(),
                    format!(
                        "checking which room the egress belongs to: {}",
                        status.message()
                    ),
                )
            })?;
        let room = answer
            .items
            .into_iter()
            .find(|info| info.egress_id == egress_id)
            .map(|info| info.room_name)
            .ok_or_else(|| Status::not_found("egress does not exist"))?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= ROOM_CACHE_MAX {
            cache.clear();
        }
        cache.insert(egress_id.to_owned(), (room.clone(), Instant::now()));
        Ok(room)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use egress_auth::{Credentials, TokenCache, TokenCacheConfig, VideoGrants};
    use egress_core::Rpc;
    use egress_policy::Policy;
    use egress_twirp::{BaseUrl, ClientConfig, TwirpClient};
    use prost::Message;
    use tonic::{Code, Request, Response, Status};
    use tower::{Layer, Service, ServiceExt};

    use super::PolicyLayer;
    use crate::auth::CallerInfo;

    /// A caller named "svc" with `rules` (TOML lines of its policy table).
    fn caller(rules: &str) -> CallerInfo {
        let text = format!(
            "[auth]\nmode = \"bearer\"\n[[callers]]\nname = \"svc\"\n\
             token_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n\
             policy = \"p\"\n[policies.p]\nrpcs = [\"*\"]\n{rules}\n"
        );
        let policy = Policy::from_toml_str(&text, "policy.toml").expect("valid policy");
        let caller = policy.authenticate_bearer("test").expect("known token");
        CallerInfo {
            name: Arc::from("svc"),
            policy: Some(Arc::clone(&caller.policy)),
        }
    }

    /// The policy stage in front of an inner service that echoes the bytes it was given.
    /// Room lookups would go to a closed port; these requests never need one.
    async fn check(caller: Option<CallerInfo>, body: Vec<u8>) -> Result<Bytes, Status> {
        let base = BaseUrl::parse("http://127.0.0.1:9").unwrap();
        let tokens = Arc::new(TokenCache::new(
            Credentials::new("key", "secret"),
            VideoGrants::room_record(),
            TokenCacheConfig::default(),
        ));
        let client = TwirpClient::new(ClientConfig::new(base), tokens).unwrap();
        let echo = tower::service_fn(|request: Request<Bytes>| async move {
            Ok::<_, Status>(Response::new(request.into_inner()))
        });
        let mut request = Request::new(Bytes::from(body));
        request
            .extensions_mut()
            .insert(Rpc::StartRoomCompositeEgress);
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        let mut service = PolicyLayer::new(client).layer(echo);
        let response = service.ready().await?.call(request).await?;
        Ok(response.into_inner())
    }

    fn room_composite(room: &str) -> Vec<u8> {
        egress_core::proto::RoomCompositeEgressRequest {
            room_name: room.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// `body` followed by field 4000 (a varint), which no egress message declares.
    fn with_unknown_field(mut body: Vec<u8>) -> Vec<u8> {
        prost::encoding::encode_key(4000, prost::encoding::WireType::Varint, &mut body);
        prost::encoding::encode_varint(1, &mut body);
        body
    }

    #[tokio::test]
    async fn unknown_fields_are_refused_when_the_policy_reads_requests() {
        let body = with_unknown_field(room_composite("team-a"));
        let status = check(Some(caller("rooms = [\"team-*\"]")), body)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let message = status.message();
        for expected in [
            "field 4000 of livekit.RoomCompositeEgressRequest",
            "schema",
            "svc",
        ] {
            assert!(message.contains(expected), "{expected:?} not in {message}");
        }
    }

    #[tokio::test]
    async fn unknown_fields_pass_untouched_when_the_policy_does_not_read_requests() {
        let body = with_unknown_field(room_composite("any"));
        let forwarded = check(Some(caller("")), body.clone()).await.unwrap();
        assert_eq!(forwarded, body);
        // And without a policy file at all.
        assert_eq!(check(None, body.clone()).await.unwrap(), body);
    }

    #[tokio::test]
    async fn known_requests_are_checked_against_the_rules() {
        let allowed = check(
            Some(caller("rooms = [\"team-*\"]")),
            room_composite("team-a"),
        )
        .await
        .unwrap();
        assert_eq!(allowed, room_composite("team-a"));
        let denied = check(
            Some(caller("rooms = [\"team-*\"]")),
            room_composite("board"),
        )
        .await
        .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("board"), "{}", denied.message());
    }

    #[tokio::test]
    async fn malformed_requests_are_invalid_for_restricted_callers() {
        // stream_outputs (field 12) claiming 50 bytes that are not there.
        let status = check(Some(caller("rooms = [\"team-*\"]")), vec![0x62, 50, 1])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
