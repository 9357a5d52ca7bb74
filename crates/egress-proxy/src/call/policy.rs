//! Per-caller policy: the decoded request view is checked against the caller's rules; the
//! original bytes are what is forwarded.
//!
//! Calls that name only an egress id (StopEgress, UpdateLayout, UpdateStream) are checked
//! against the room the egress belongs to, looked up with ListEgress and cached briefly.
//!
//! A caller whose policy reads what a request carries (rooms, URLs, storage) is refused any
//! field the pinned schema does not know: such a field could hold exactly what the policy
//! forbids (a newer LiveKit's output destination, say), and the caller's bytes are
//! forwarded as they are. Callers whose policy names only RPCs keep full pass-through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use egress_core::unknown::first_unknown_field;
use egress_proto::livekit::{ListEgressRequest, ListEgressResponse};
use egress_twirp::{CallOptions, TwirpClient};

use super::Call;
use crate::error::CallError;

/// How long an egress → room answer is reused.
const ROOM_TTL: Duration = Duration::from_secs(30);
/// Bound on the cache; when full it is emptied (rooms of egresses rarely change anyway).
const ROOM_CACHE_MAX: usize = 10_000;
/// Budget of one room lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The policy stage.
#[derive(Debug)]
pub struct PolicyStage {
    rooms: RoomLookup,
}

impl PolicyStage {
    /// Room lookups for egress-id calls go through `client`.
    pub fn new(client: TwirpClient) -> Self {
        Self {
            rooms: RoomLookup {
                client,
                cache: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Checks `call` against its caller's policy (nothing to check without one).
    ///
    /// # Errors
    ///
    /// PERMISSION_DENIED naming the rule (or the unknown field); a failed room lookup.
    pub async fn check(&self, call: &Call) -> Result<(), CallError> {
        let Some(policy) = &call.caller.policy else {
            return Ok(());
        };
        if policy.restricts_content() {
            match first_unknown_field(call.rpc, &call.message) {
                Ok(None) => {}
                Ok(Some(field)) => {
                    return Err(CallError::UnknownField {
                        rpc: call.rpc,
                        field,
                        caller: policy.caller_name().to_owned(),
                    });
                }
                Err(err) => {
                    return Err(CallError::MalformedRequest {
                        rpc: call.rpc,
                        source: Box::new(err),
                    });
                }
            }
        }
        let view = call.view()?;
        policy.check(view)?;
        if let Some(egress_id) = policy.needs_egress_room(view) {
            let room = self.rooms.room_of(egress_id).await?;
            policy.check_egress_room(&room)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct RoomLookup {
    client: TwirpClient,
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

impl RoomLookup {
    async fn room_of(&self, egress_id: &str) -> Result<String, CallError> {
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
            .map_err(CallError::RoomLookup)?;
        let room = answer
            .items
            .into_iter()
            .find(|info| info.egress_id == egress_id)
            .map(|info| info.room_name)
            .ok_or(CallError::EgressNotFound)?;
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
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use egress_auth::{Credentials, TokenCache, TokenCacheConfig, VideoGrants};
    use egress_core::Rpc;
    use egress_policy::Policy;
    use egress_twirp::{BaseUrl, ClientConfig, TwirpClient};
    use http::HeaderValue;
    use prost::Message;
    use tonic::Code;

    use super::*;
    use crate::call::{CallerInfo, TraceContext};
    use crate::tls::Peer;

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

    fn client(url: &str) -> TwirpClient {
        let base = BaseUrl::parse(url).unwrap();
        let tokens = Arc::new(TokenCache::new(
            Credentials::new("key", "secret"),
            VideoGrants::room_record(),
            TokenCacheConfig::default(),
        ));
        TwirpClient::new(ClientConfig::new(base, egress_core::Rpc::SERVICE), tokens).unwrap()
    }

    /// Runs the policy stage on a StartRoomCompositeEgress call carrying `message`. Room
    /// lookups would go to a closed port; these requests never need one.
    async fn check(caller: Option<CallerInfo>, message: Vec<u8>) -> Result<(), CallError> {
        let stage = PolicyStage::new(client("http://127.0.0.1:9"));
        check_with(&stage, Rpc::StartRoomCompositeEgress, caller, message).await
    }

    async fn check_with(
        stage: &PolicyStage,
        rpc: Rpc,
        caller: Option<CallerInfo>,
        message: Vec<u8>,
    ) -> Result<(), CallError> {
        let mut call = Call::new(
            rpc,
            Peer {
                addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
                identities: Arc::from([]),
            },
            HeaderValue::from_static("req-1"),
            Duration::from_secs(5),
            TraceContext::default(),
        );
        if let Some(caller) = caller {
            call.caller = caller;
        }
        call.message = Bytes::from(message);
        stage.check(&call).await
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
        let error = check(Some(caller("rooms = [\"team-*\"]")), body)
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied);
        let message = error.to_string();
        for expected in [
            "field 4000 of livekit.RoomCompositeEgressRequest",
            "schema",
            "svc",
        ] {
            assert!(message.contains(expected), "{expected:?} not in {message}");
        }
    }

    #[tokio::test]
    async fn unknown_fields_pass_when_the_policy_does_not_read_requests() {
        let body = with_unknown_field(room_composite("any"));
        check(Some(caller("")), body.clone()).await.unwrap();
        // And without a policy file at all.
        check(None, body).await.unwrap();
    }

    #[tokio::test]
    async fn known_requests_are_checked_against_the_rules() {
        check(
            Some(caller("rooms = [\"team-*\"]")),
            room_composite("team-a"),
        )
        .await
        .unwrap();
        let denied = check(
            Some(caller("rooms = [\"team-*\"]")),
            room_composite("board"),
        )
        .await
        .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.to_string().contains("board"), "{denied}");
    }

    #[tokio::test]
    async fn malformed_requests_are_invalid_for_restricted_callers() {
        // stream_outputs (field 12) claiming 50 bytes that are not there.
        let error = check(Some(caller("rooms = [\"team-*\"]")), vec![0x62, 50, 1])
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
    }

    /// Calls that name only an egress id are checked against the egress's room, looked up
    /// once and then cached.
    #[cfg(feature = "simulator")]
    #[tokio::test]
    async fn egress_rooms_are_looked_up_once_and_checked() {
        use egress_core::proto::{EgressInfo, EncodedFileOutput, StopEgressRequest};

        let sim = egress_sim::Simulator::builder()
            .credentials(Credentials::new("key", "secret"))
            .build()
            .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap();
        let upstream = client(&sim.url());
        let mut started = Vec::new();
        for room in ["team-a", "board"] {
            let request = egress_core::proto::RoomCompositeEgressRequest {
                room_name: room.into(),
                file_outputs: vec![EncodedFileOutput {
                    filepath: "out.mp4".into(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let info: EgressInfo = upstream
                .call_typed(
                    "StartRoomCompositeEgress",
                    &request,
                    &egress_twirp::CallOptions::new(),
                )
                .await
                .unwrap();
            started.push(info.egress_id);
        }
        let stop = |id: &str| {
            StopEgressRequest {
                egress_id: id.into(),
            }
            .encode_to_vec()
        };
        let lookups = || {
            sim.requests()
                .iter()
                .filter(|r| r.path.ends_with("/ListEgress"))
                .count()
        };
        let stage = PolicyStage::new(upstream);
        let team = || Some(caller("rooms = [\"team-*\"]"));

        check_with(&stage, Rpc::StopEgress, team(), stop(&started[0]))
            .await
            .unwrap();
        let denied = check_with(&stage, Rpc::StopEgress, team(), stop(&started[1]))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.to_string().contains("board"), "{denied}");
        assert_eq!(lookups(), 2);
        // Each lookup asks for its one egress: an unfiltered list could be paginated past it.
        let asked: Vec<String> = sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/ListEgress"))
            .map(|r| {
                r.decode::<egress_core::proto::ListEgressRequest>()
                    .unwrap()
                    .egress_id
            })
            .collect();
        assert_eq!(asked, started);

        // Both answers are cached: no further lookups, the same decisions.
        check_with(&stage, Rpc::StopEgress, team(), stop(&started[0]))
            .await
            .unwrap();
        check_with(&stage, Rpc::StopEgress, team(), stop(&started[1]))
            .await
            .unwrap_err();
        assert_eq!(lookups(), 2);

        let missing = check_with(&stage, Rpc::StopEgress, team(), stop("EG_missing"))
            .await
            .unwrap_err();
        // LiveKit answers ListEgress for an unknown id with `not_found` (its
        // `IOInfoService.ListEgress`), which the lookup passes on; an empty list would be
        // `EgressNotFound`. Either way the caller gets NOT_FOUND.
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    }
}
