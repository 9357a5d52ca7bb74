//! The last stage: the call's message bytes go to LiveKit over Twirp, retried when that is
//! safe (see [`retry`](super::retry)).

use std::sync::atomic::Ordering;
use std::time::Duration;

use egress_core::view::check_response;
use egress_telemetry::Metrics;
use egress_twirp::{CallOptions, TwirpClient};

use super::regions::Regions;
use super::retry::{self, FAILOVER_MIN_LEFT, MAX_ATTEMPTS, RetryPolicy};
use super::{Answer, Call};
use crate::error::CallError;

/// Forwards calls to LiveKit with a [`TwirpClient`].
#[derive(Debug)]
pub struct Forwarder {
    client: TwirpClient,
    metrics: Metrics,
    policy: RetryPolicy,
    /// LiveKit Cloud's other regions (failover only).
    regions: Option<Regions>,
}

impl Forwarder {
    /// Forwards through `client`, observing each round trip in `metrics`, retrying as
    /// `policy` allows.
    pub fn new(client: TwirpClient, metrics: Metrics, policy: RetryPolicy) -> Self {
        let regions = policy.failover.then(|| Regions::new(client.clone()));
        Self {
            client,
            metrics,
            policy,
            regions,
        }
    }

    /// Sends `call` to LiveKit: its original bytes, what is left of its deadline (as
    /// `X-Twirp-Timeout-Ms`), its request id, idempotency key and trace context; again, with
    /// the same key, while [`retry`](super::retry) says so.
    ///
    /// # Errors
    ///
    /// [`CallError::DeadlineExceeded`] when the deadline passes first, else what LiveKit (or
    /// the way to it) last answered instead of a valid answer message.
    pub async fn forward(&self, call: &Call) -> Result<Answer, CallError> {
        let mut attempt = 1;
        loop {
            call.attempts.store(attempt, Ordering::Relaxed);
            let base = match attempt {
                1 => None,
                n => self.region_for(n, call).await,
            };
            let error = match self.attempt(call, base).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let left = call
                .deadline()
                .saturating_duration_since(tokio::time::Instant::now());
            let wait = retry::backoff(attempt + 1);
            if attempt >= MAX_ATTEMPTS
                || !self.policy.may_retry(call.rpc, &error)
                || !retry::time_allows(left, wait)
            {
                return Err(call_error(error, call));
            }
            tracing::info!(
                rpc = call.rpc.as_str(),
                attempt,
                kind = error.kind(),
                error = %error,
                "upstream attempt failed; retrying with the same X-Livekit-Request-Id"
            );
            self.metrics.upstream_retry(call.rpc.as_str());
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The region attempt `n` goes to: the next of LiveKit Cloud's others, while enough of
    /// the deadline is left for a far region; the configured URL otherwise.
    async fn region_for(&self, n: u32, call: &Call) -> Option<egress_twirp::BaseUrl> {
        let regions = self.regions.as_ref()?;
        let left = call
            .deadline()
            .saturating_duration_since(tokio::time::Instant::now());
        if left < FAILOVER_MIN_LEFT {
            return None;
        }
        let others = regions.others().await;
        others.get((n as usize - 2) % others.len().max(1)).cloned()
    }

    /// One attempt, to `base` (a region) or the configured URL.
    async fn attempt(
        &self,
        call: &Call,
        base: Option<egress_twirp::BaseUrl>,
    ) -> Result<Answer, egress_twirp::Error> {
        let mut opts = CallOptions::new()
            .with_deadline(call.deadline())
            .with_request_id(call.request_id.clone())
            .with_idempotency_key(call.idempotency_key.clone());
        if let Some(traceparent) = &call.trace.traceparent {
            opts = opts.with_trace_context(traceparent.clone(), call.trace.tracestate.clone());
        }
        if let Some(base) = base {
            opts = opts.with_base_url(base);
        }
        let method = call.rpc.as_str();
        let started = std::time::Instant::now();
        // No timer of its own: the client bounds the whole exchange by `opts`' deadline (the
        // token is minted synchronously before it), and the door bounds the call; a third
        // timer per call in flight would only cost memory and timer-wheel work.
        let outcome = self.client.call(method, call.message.clone(), &opts).await;
        self.metrics.observe_upstream(method, started.elapsed());
        let error = match outcome {
            Ok(answer) => match check_response(call.rpc, &answer.body) {
                Ok(egress_id) => {
                    return Ok(Answer {
                        message: answer.body,
                        egress_id,
                    });
                }
                Err(err) => egress_twirp::Error::from(err),
            },
            Err(err) => err,
        };
        self.metrics.upstream_error(error.kind());
        tracing::debug!(method, kind = error.kind(), "upstream call failed");
        Err(error)
    }
}

/// What the caller is told when the last attempt failed with `error`.
fn call_error(error: egress_twirp::Error, call: &Call) -> CallError {
    let deadline_passed = || CallError::DeadlineExceeded {
        rpc: call.rpc,
        budget: call.budget,
    };
    match error {
        // One shape for a passed deadline, whichever bound noticed it first.
        egress_twirp::Error::Timeout(_) => deadline_passed(),
        other if upstream_gave_up_at_our_deadline(&other, call) => deadline_passed(),
        other => CallError::Upstream(other),
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
