//! The Egress service itself: decoded requests in, messages or Twirp errors out.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use egress_auth::Claims;
use egress_core::{RpcRequest, Validate};
use egress_proto::livekit::{
    self as lk, EgressInfo, EgressSourceType, ListEgressResponse, TokenPagination, egress_info,
    start_egress_request,
};

use crate::codec::{self, WireFormat};
use crate::redact::Redact;
use crate::rpc::Rpc;
use crate::state::{ListFilter, NewEgress, Shared, now_ns};
use crate::twirp::TwirpError;

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

/// Runs one RPC: decode (`malformed` on failure), check the `roomRecord` grant
/// (`unauthenticated` `permissions denied`), then the RPC's logic; the answer is encoded in
/// the request's encoding.
pub(crate) fn call(
    shared: &Shared,
    rpc: Rpc,
    encoding: WireFormat,
    body: &[u8],
    claims: Option<&Claims>,
) -> Result<Vec<u8>, TwirpError> {
    // The request's type names the RPC, and the table its response type, so a handler
    // cannot answer with the wrong message.
    fn run<Req: RpcRequest>(
        encoding: WireFormat,
        body: &[u8],
        claims: Option<&Claims>,
        f: impl FnOnce(Req) -> Result<Req::Response, TwirpError>,
    ) -> Result<Vec<u8>, TwirpError>
    where
        Req::Response: Redact,
    {
        let rpc = Req::RPC;
        let request: Req = codec::decode(encoding, rpc.request_type(), body).map_err(|e| {
            tracing::debug!(%rpc, error = %e, "malformed request");
            TwirpError::malformed(encoding)
        })?;
        if !claims.is_some_and(|c| c.video.room_record) {
            return Err(TwirpError::permission_denied());
        }
        let mut response = f(request)?;
        // Every answer carries EgressInfos; none leaves with a secret in it.
        response.redact();
        Ok(codec::encode(encoding, rpc.response_type(), &response))
    }

    let start = |new: NewEgress| -> Result<EgressInfo, TwirpError> {
        Ok(shared.store().start(new, now_ns()))
    };

    match rpc {
        Rpc::StartRoomCompositeEgress => run(
            encoding,
            body,
            claims,
            |r: lk::RoomCompositeEgressRequest| {
                check(&r)?;
                start(NewEgress {
                    room_name: r.room_name.clone(),
                    source_type: EgressSourceType::Web,
                    request: egress_info::Request::RoomComposite(r),
                })
            },
        ),
        Rpc::StartWebEgress => run(encoding, body, claims, |r: lk::WebEgressRequest| {
            check(&r)?;
            start(NewEgress {
                room_name: String::new(),
                source_type: EgressSourceType::Web,
                request: egress_info::Request::Web(r),
            })
        }),
        Rpc::StartParticipantEgress => {
            run(encoding, body, claims, |r: lk::ParticipantEgressRequest| {
                check(&r)?;
                start(NewEgress {
                    room_name: r.room_name.clone(),
                    source_type: EgressSourceType::Sdk,
                    request: egress_info::Request::Participant(r),
                })
            })
        }
        Rpc::StartTrackCompositeEgress => run(
            encoding,
            body,
            claims,
            |r: lk::TrackCompositeEgressRequest| {
                check(&r)?;
                start(NewEgress {
                    room_name: r.room_name.clone(),
                    source_type: EgressSourceType::Sdk,
                    request: egress_info::Request::TrackComposite(r),
                })
            },
        ),
        Rpc::StartTrackEgress => run(encoding, body, claims, |r: lk::TrackEgressRequest| {
            check(&r)?;
            start(NewEgress {
                room_name: r.room_name.clone(),
                source_type: EgressSourceType::Sdk,
                request: egress_info::Request::Track(r),
            })
        }),
        Rpc::StartEgress => run(encoding, body, claims, |r: lk::StartEgressRequest| {
            check(&r)?;
            let source_type = match r.source {
                Some(start_egress_request::Source::Media(_)) => EgressSourceType::Sdk,
                _ => EgressSourceType::Web,
            };
            start(NewEgress {
                room_name: r.room_name.clone(),
                source_type,
                request: egress_info::Request::Egress(r),
            })
        }),
        // LiveKit looks the egress up before anything else, so an empty id is `not_found`
        // rather than `invalid_argument`.
        Rpc::UpdateLayout => run(encoding, body, claims, |r: lk::UpdateLayoutRequest| {
            shared
                .store()
                .update_layout(&r.egress_id, &r.layout, now_ns())
        }),
        Rpc::UpdateStream => run(encoding, body, claims, |r: lk::UpdateStreamRequest| {
            shared.store().update_stream(&r, now_ns())
        }),
        Rpc::StopEgress => run(encoding, body, claims, |r: lk::StopEgressRequest| {
            shared.store().stop(&r.egress_id, now_ns())
        }),
        Rpc::ListEgress => run(encoding, body, claims, |r: lk::ListEgressRequest| {
            check(&r)?;
            let items = shared.store().list(
                &ListFilter {
                    room_name: &r.room_name,
                    egress_id: &r.egress_id,
                    active: r.active,
                },
                now_ns(),
            );
            paginate(items, shared.page_size, r.page_token.as_ref())
        }),
    }
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
