//! One structured audit line per egress call that got past admission: caller, RPC, room,
//! egress id, outcome and latency — never a secret, token or stream key.
//!
//! Lines go to the `audit` tracing target at INFO, so they can be routed or filtered apart
//! from operational logs (`RUST_LOG=info,audit=off` silences them).
//!
//! A call whose future is dropped before it ends (its deadline passed at the door, the caller
//! went away, the drain timeout ran out) is audited too, by [`Pending`]'s `Drop`: with
//! `DEADLINE_EXCEEDED` when its deadline has passed, `CANCELLED` otherwise.

use std::time::{Duration, Instant};

use tonic::Code;

use super::{Answer, Call};
use crate::error::CallError;

/// A call's audit line, written once: when the call ends, or when it is dropped unfinished.
#[derive(Debug)]
pub struct Pending<'c> {
    call: &'c Call,
    started: Instant,
    written: bool,
}

impl<'c> Pending<'c> {
    /// Starts timing `call`.
    pub fn new(call: &'c Call) -> Self {
        Self {
            call,
            started: Instant::now(),
            written: false,
        }
    }

    /// Writes the line of a call that ended with `outcome`.
    pub fn finish(mut self, outcome: &Result<Answer, CallError>) {
        let (code, answered) = match outcome {
            Ok(answer) => (Code::Ok, answer.egress_id.as_deref()),
            Err(error) => (error.code(), None),
        };
        record(self.call, code, answered, self.started.elapsed());
        self.written = true;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.written {
            return;
        }
        let code = if tokio::time::Instant::now() >= self.call.deadline() {
            Code::DeadlineExceeded
        } else {
            Code::Cancelled
        };
        record(self.call, code, None, self.started.elapsed());
    }
}

/// Writes the audit line of `call`, which ended with `code` after `latency`.
fn record(call: &Call, code: Code, answered: Option<&str>, latency: Duration) {
    let view = call.decoded_view();
    tracing::info!(
        target: "audit",
        caller = &*call.caller.name,
        door = call.door.as_str(),
        rpc = call.rpc.as_str(),
        room = view.and_then(|v| v.room_name.as_deref()).unwrap_or(""),
        egress_id = view
            .and_then(|v| v.egress_id.as_deref())
            .or(answered)
            .unwrap_or(""),
        outcome = ?code,
        latency_ms = latency.as_secs_f64() * 1000.0,
        request_id = call.request_id.to_str().unwrap_or(""),
        idempotency_key = call.idempotency_key.to_str().unwrap_or(""),
        attempts = call.attempts.load(std::sync::atomic::Ordering::Relaxed),
        peer = %call.peer.addr,
        "egress call"
    );
}
