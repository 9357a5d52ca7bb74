//! One structured audit line per egress call that got past admission: caller, RPC, room,
//! egress id, outcome and latency — never a secret, token or stream key.
//!
//! Lines go to the `audit` tracing target at INFO, so they can be routed or filtered apart
//! from operational logs (`RUST_LOG=info,audit=off` silences them).

use std::time::Duration;

use super::{Answer, Call};
use crate::error::CallError;

/// Writes the audit line of `call`, which ended with `outcome` after `latency`.
pub fn record(call: &Call, outcome: &Result<Answer, CallError>, latency: Duration) {
    let view = call.decoded_view();
    let (code, answered) = match outcome {
        Ok(answer) => (tonic::Code::Ok, answer.egress_id.as_deref()),
        Err(error) => (error.code(), None),
    };
    tracing::info!(
        target: "audit",
        caller = &*call.caller.name,
        rpc = call.rpc.as_str(),
        room = view.and_then(|v| v.room_name.as_deref()).unwrap_or(""),
        egress_id = view
            .and_then(|v| v.egress_id.as_deref())
            .or(answered)
            .unwrap_or(""),
        outcome = ?code,
        latency_ms = latency.as_secs_f64() * 1000.0,
        request_id = call.request_id.to_str().unwrap_or(""),
        peer = %call.peer.addr,
        "egress call"
    );
}
