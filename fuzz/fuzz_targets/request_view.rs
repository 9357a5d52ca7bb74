//! Fuzzes the decoding of egress requests into `RequestView`s and the response check.
//!
//! Input: the first byte picks the RPC (`byte % 10`, in `Rpc::ALL` order: 0 StartEgress,
//! 1 UpdateLayout, 2 UpdateStream, 3 ListEgress, 4 StopEgress, 5 StartRoomCompositeEgress,
//! 6 StartWebEgress, 7 StartParticipantEgress, 8 StartTrackCompositeEgress, 9 StartTrackEgress);
//! the rest is the protobuf body. An empty input is skipped.
//!
//! Checked for every input:
//! * `decode_view`, `check_response` and the request's `Validate` never panic;
//! * `decode_view` succeeds exactly when the request message decodes, and its view is for `rpc`;
//! * the view's accessors agree with its fields.
#![no_main]

use egress_core::view::{check_response, decode_view};
use egress_core::{Rpc, Validate, proto};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn validate<M: Message + Default + Validate>(body: &[u8]) -> bool {
    match M::decode(body) {
        Ok(request) => {
            let _ = request.validate().map_err(|e| e.to_string());
            true
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let rpc = Rpc::ALL[usize::from(selector) % Rpc::ALL.len()];

    let decodes = match rpc {
        Rpc::StartEgress => validate::<proto::StartEgressRequest>(body),
        Rpc::UpdateLayout => validate::<proto::UpdateLayoutRequest>(body),
        Rpc::UpdateStream => validate::<proto::UpdateStreamRequest>(body),
        Rpc::ListEgress => validate::<proto::ListEgressRequest>(body),
        Rpc::StopEgress => validate::<proto::StopEgressRequest>(body),
        Rpc::StartRoomCompositeEgress => validate::<proto::RoomCompositeEgressRequest>(body),
        Rpc::StartWebEgress => validate::<proto::WebEgressRequest>(body),
        Rpc::StartParticipantEgress => validate::<proto::ParticipantEgressRequest>(body),
        Rpc::StartTrackCompositeEgress => validate::<proto::TrackCompositeEgressRequest>(body),
        Rpc::StartTrackEgress => validate::<proto::TrackEgressRequest>(body),
    };

    match decode_view(rpc, body) {
        Ok(view) => {
            assert!(
                decodes,
                "decode_view accepted a body the request type refuses"
            );
            assert_eq!(view.rpc, rpc);
            assert_eq!(view.room(), view.room_name.as_deref());
            assert_eq!(view.egress(), view.egress_id.as_deref());
            let outbound = view.outbound_urls().count();
            assert_eq!(
                outbound,
                view.stream_urls.len()
                    + usize::from(view.web_url.is_some())
                    + usize::from(view.custom_base_url.is_some())
                    + view.webhook_urls.len()
            );
            assert!(view.buckets().count() <= view.destinations.len());
            // Empty strings are reported as None.
            for s in [
                &view.room_name,
                &view.egress_id,
                &view.participant_identity,
                &view.layout,
            ] {
                assert!(s.as_deref() != Some(""), "empty string reported as Some");
            }
            let _ = format!("{view:?}");
            assert_eq!(view.clone(), view);
        }
        Err(e) => {
            assert!(
                !decodes,
                "decode_view refused a body the request type accepts: {e}"
            );
        }
    }

    // The same bytes as an answer to `rpc` (EgressInfo, or ListEgressResponse).
    match check_response(rpc, body) {
        Ok(id) => assert_eq!(id.is_none(), rpc == Rpc::ListEgress),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
