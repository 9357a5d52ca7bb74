//! One egress call, whatever door it came through, and the stages it goes through.
//!
//! ```text
//! door ─▶ Call ─▶ authenticate ─▶ admit ─┬─▶ (door reads the message) ─▶ policy ─▶ forward ─▶ Answer
//!                                        │                                audit (one line per call)
//!                                        └──────────── any stage: Err(CallError) ─▶ door
//! ```
//!
//! A door (see [`crate::door`]) recognises a request as an egress call and builds a [`Call`]
//! from what its protocol carries: the RPC, the peer, the request id, the deadline and the
//! trace context. [`Stages::admit`] runs the stages that need only that head, *before* the
//! message is read, so an unauthenticated caller or one over a limit costs no body read:
//!
//! 1. [`auth`] — who is calling (bearer token or client certificate), from the policy file.
//! 2. [`admit`] — a slot under the global and per-connection limits; the door holds the
//!    returned [`Slots`] until the answer has been flushed.
//!
//! The door then reads the message, and [`Stages::run`] takes it the rest of the way:
//!
//! 3. the request view is decoded (once; `INVALID_ARGUMENT` if the bytes are not the RPC's
//!    message);
//! 4. [`policy`] — the caller's rules, failing closed on fields our schema does not know,
//!    and the egress → room lookup for calls that name only an egress id;
//! 5. [`forward`] — the original bytes to LiveKit over Twirp, with the deadline, request id
//!    and trace context;
//! 6. [`audit`] — one line for every call that got this far, whatever its outcome.
//!
//! Every stage returns [`CallError`]; the door alone turns it into its protocol's answer.

pub mod admit;
pub mod audit;
pub mod auth;
pub mod forward;
pub mod policy;
pub mod regions;
pub mod retry;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use egress_core::Rpc;
use egress_core::view::{RequestView, decode_view};
use egress_policy::CallerPolicy;
use http::HeaderValue;
use tokio::time::Instant;

pub use self::admit::{ConnectionSlots, Limits, Slots};
pub use self::auth::Authenticator;
pub use self::forward::Forwarder;
pub use self::policy::PolicyStage;
use crate::error::CallError;
use crate::tls::Peer;

/// Who a call is from, as established by [`auth`].
#[derive(Debug, Clone)]
pub struct CallerInfo {
    /// Caller name for logs and metrics (`anonymous` without a policy file).
    pub name: Arc<str>,
    /// What the caller may do; `None` means unrestricted (no policy file).
    pub policy: Option<Arc<CallerPolicy>>,
}

/// W3C trace context to pass upstream.
#[derive(Debug, Clone, Default)]
pub struct TraceContext {
    pub traceparent: Option<HeaderValue>,
    pub tracestate: Option<HeaderValue>,
}

/// The front door a call came through (a label in metrics, a field of the audit line): one
/// type for both, so they cannot disagree.
pub use egress_telemetry::Door;

/// One egress call: every fact a stage may need, in one place.
#[derive(Debug)]
pub struct Call {
    pub rpc: Rpc,
    /// The front door it came through.
    pub door: Door,
    /// The connection it came on.
    pub peer: Peer,
    /// `x-request-id`, the caller's or a fresh one.
    pub request_id: HeaderValue,
    /// LiveKit's idempotency key (`X-Livekit-Request-Id`): the caller's
    /// (`x-livekit-request-id` or `idempotency-key`) or a fresh UUID; the same on every
    /// attempt of this call, and returned to the caller so a retry of its own can reuse it.
    pub idempotency_key: HeaderValue,
    /// When the call was recognised.
    pub received: Instant,
    /// How long it may take from then, reading its message included: the caller's deadline,
    /// else the default (see [`Deadlines`](crate::deadline::Deadlines)).
    pub budget: Duration,
    pub trace: TraceContext,
    /// Set by [`Stages::admit`]; anonymous until then.
    pub caller: CallerInfo,
    /// The request message as the caller encoded it (decompressed); forwarded as is.
    pub message: Bytes,
    /// Attempts made upstream so far (see [`retry`]); for the audit line.
    pub attempts: std::sync::atomic::AtomicU32,
    /// The decoded request view, made at most once. Boxed: a `Call` is held inline by
    /// several futures of every call in flight (the door's and the stages'), and each of
    /// them reserved room for the whole view (a `Call` was 656 bytes with it, 320 without).
    view: OnceLock<Box<RequestView>>,
}

impl Call {
    /// A gRPC call whose message is not read yet (see [`door`](Self::door) for others).
    pub fn new(
        rpc: Rpc,
        peer: Peer,
        request_id: HeaderValue,
        budget: Duration,
        trace: TraceContext,
    ) -> Self {
        Self {
            rpc,
            door: Door::Grpc,
            peer,
            request_id,
            idempotency_key: fresh_key(),
            received: Instant::now(),
            budget,
            trace,
            caller: CallerInfo {
                name: Arc::from("anonymous"),
                policy: None,
            },
            message: Bytes::new(),
            attempts: std::sync::atomic::AtomicU32::new(0),
            view: OnceLock::new(),
        }
    }

    /// When the call must be over.
    pub fn deadline(&self) -> Instant {
        self.received + self.budget
    }

    /// The request view, decoded from [`message`](Self::message) on first use.
    ///
    /// # Errors
    ///
    /// [`CallError::MalformedRequest`] when the message is not the RPC's request.
    pub fn view(&self) -> Result<&RequestView, CallError> {
        if let Some(view) = self.view.get() {
            return Ok(&**view);
        }
        let view =
            decode_view(self.rpc, &self.message).map_err(|err| CallError::MalformedRequest {
                rpc: self.rpc,
                source: Box::new(err),
            })?;
        Ok(&**self.view.get_or_init(|| Box::new(view)))
    }

    /// The view if a stage has decoded it already.
    pub fn decoded_view(&self) -> Option<&RequestView> {
        self.view.get().map(|view| &**view)
    }
}

/// A new idempotency key: a UUID, as LiveKit's SDKs make them.
fn fresh_key() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a header value")
}

/// LiveKit's answer to a call.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The answer message as LiveKit encoded it.
    pub message: Bytes,
    /// The egress id it names (start calls learn theirs only from the answer).
    pub egress_id: Option<String>,
}

/// The stages every door runs its calls through.
#[derive(Debug)]
pub struct Stages {
    pub authenticator: Authenticator,
    pub limits: Limits,
    pub policy: PolicyStage,
    pub forwarder: Forwarder,
}

impl Stages {
    /// The stages that need only the call's head: authenticate (with the `authorization`
    /// values the caller sent, and its peer), then take the call's slots.
    ///
    /// # Errors
    ///
    /// UNAUTHENTICATED or RESOURCE_EXHAUSTED; nothing was read or held.
    pub fn admit<'h>(
        &self,
        call: &mut Call,
        authorization: impl Iterator<Item = &'h HeaderValue>,
        connection: Option<&ConnectionSlots>,
    ) -> Result<Slots, CallError> {
        call.caller = self.authenticator.authenticate(authorization, &call.peer)?;
        Ok(self.limits.admit(connection)?)
    }

    /// The stages after the message is read: decode, policy, forward; audited.
    ///
    /// # Errors
    ///
    /// Whatever stage refused or failed the call.
    pub async fn run(&self, call: &Call) -> Result<Answer, CallError> {
        let audit = audit::Pending::new(call);
        let outcome = async {
            // Decoded once here; the policy and the audit line read the same view.
            call.view()?;
            self.policy.check(call).await?;
            self.forwarder.forward(call).await
        }
        .await;
        audit.finish(&outcome);
        outcome
    }
}
