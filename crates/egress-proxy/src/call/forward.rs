//! The last stage: the call's message bytes go to LiveKit over Twirp.

use std::time::Duration;

use egress_core::view::check_response;
use egress_telemetry::Metrics;
use egress_twirp::{CallOptions, TwirpClient};

use super::{Answer, Call};
use crate::error::CallError;

/// Forwards calls to LiveKit with a [`TwirpClient`].
#[derive(Debug)]
pub struct Forwarder {
    client: TwirpClient,
    metrics: Metrics,
}

impl Forwarder {
    /// Forwards through `client`, observing each round trip in `metrics`.
    pub fn new(client: TwirpClient, metrics: Metrics) -> Self {
        Self { client, metrics }
    }

    /// Sends `call` to LiveKit: its original bytes, what is left of its deadline (as
    /// `X-Twirp-Timeout-Ms`), its request id, idempotency key and trace context.
    ///
    /// # Errors
    ///
    /// [`CallError::DeadlineExceeded`] when the deadline passes first, else what LiveKit (or
    /// the way to it) answered instead of a valid answer message.
    pub async fn forward(&self, call: &Call) -> Result<Answer, CallError> {
        let mut opts = CallOptions::new()
            .with_deadline(call.deadline())
            .with_request_id(call.request_id.clone())
            .with_idempotency_key(call.idempotency_key.clone());
        if let Some(traceparent) = &call.trace.traceparent {
            opts = opts.with_trace_context(traceparent.clone(), call.trace.tracestate.clone());
        }
        let method = call.rpc.as_str();
        let started = std::time::Instant::now();
        // The client enforces the deadline itself; this outer bound makes sure that no call
        // outlives it whatever happens below (e.g. a stalled token refresh).
        let outcome = tokio::time::timeout_at(
            call.deadline(),
            self.client.call(method, call.message.clone(), &opts),
        )
        .await;
        self.metrics.observe_upstream(method, started.elapsed());
        let error = match outcome {
            Ok(Ok(answer)) => match check_response(call.rpc, &answer.body) {
                Ok(egress_id) => {
                    return Ok(Answer {
                        message: answer.body,
                        egress_id,
                    });
                }
                Err(err) => egress_twirp::Error::from(err),
            },
            Ok(Err(err)) => err,
            Err(_elapsed) => egress_twirp::Error::Timeout(Duration::ZERO),
        };
        self.metrics.upstream_error(error.kind());
        tracing::debug!(method, kind = error.kind(), "upstream call failed");
        Err(match error {
            // One shape for a passed deadline, whichever bound noticed it first.
            egress_twirp::Error::Timeout(_) => CallError::DeadlineExceeded {
                rpc: call.rpc,
                budget: call.budget,
            },
            other if upstream_gave_up_at_our_deadline(&other, call) => {
                CallError::DeadlineExceeded {
                    rpc: call.rpc,
                    budget: call.budget,
                }
            }
            other => CallError::Upstream(other),
        })
    }
}

/// Whether LiveKit answered `canceled` because the deadline we passed on
/// (`X-Twirp-Timeout-Ms`) ran out: its internal RPC gives up with `canceled` "request
/// canceled" when the request's context ends (psrpc's retry), a moment before our own
/// timer fires. For the caller that is its deadline passing, so it gets DEADLINE_EXCEEDED
/// like any other call that ran out of time, not a CANCELLED it never asked for.
///
/// "At the deadline" allows for the time LiveKit's answer takes to come back: a twentieth
/// of the budget, at least 50 ms. A `canceled` well before the deadline is LiveKit's own and
/// passes through.
fn upstream_gave_up_at_our_deadline(error: &egress_twirp::Error, call: &Call) -> bool {
    let slack = (call.budget / 20).max(Duration::from_millis(50));
    error.twirp_code() == Some(egress_twirp::TwirpCode::Canceled)
        && tokio::time::Instant::now() + slack >= call.deadline()
}
