//! Fault injection: what the simulator does instead of (or before) answering normally.
//!
//! Faults are kept in insertion order. Each request under the Twirp path takes the **first**
//! fault whose `method` matches (or that has no `method`), uses it up by one if it has a
//! `times` limit, and applies it. Requests to `/sim/...` are never faulted.
//!
//! The JSON form (for `POST /sim/faults`, which takes one fault or a list):
//!
//! ```json
//! {"method": "StartRoomCompositeEgress", "times": 1, "delay_ms": 250,
//!  "kind": "twirp_error", "code": "unavailable", "msg": "no response from servers",
//!  "meta": {"k": "v"}, "error_details": "<standard base64 google.rpc.Status>"}
//! ```
//!
//! `method`, `times` and `delay_ms` are optional on every kind. Kinds:
//!
//! | `kind` | fields | effect |
//! | --- | --- | --- |
//! | `latency` | (`delay_ms`) | wait, then answer normally |
//! | `twirp_error` | `code`, `msg`, `meta`?, `error_details`?, `status`? | Twirp JSON error; `status` overrides the code's HTTP status |
//! | `http` | `status`, `content_type`?, `body`?, `headers`? | a raw HTTP answer, e.g. an HTML 502 from a proxy |
//! | `drop` | `after_processing`? | close the connection without answering (optionally after applying the request) |
//! | `truncate` | `keep_bytes`? | process normally, then send a `Content-Length` larger than the bytes sent and close |
//! | `html_200` | `body`? | `200 text/html` page, like a captive portal |
//! | `drop_webhook` | `event`? | not a request fault: the next webhook events (of that name) are dropped |

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One injected fault. Build one with the constructors and refine it with
/// [`method`](Fault::method), [`times`](Fault::times) and [`delay`](Fault::delay).
///
/// ```
/// use std::time::Duration;
/// use egress_sim::Fault;
///
/// let fault = Fault::twirp_error("unavailable", "no response from servers")
///     .method("StartRoomCompositeEgress")
///     .times(2)
///     .delay(Duration::from_millis(50));
/// let json = serde_json::to_value(&fault).unwrap();
/// assert_eq!(json["kind"], "twirp_error");
/// assert_eq!(json["times"], 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Only requests for this RPC (e.g. `StopEgress`; a `livekit.Egress/StopEgress` style path
    /// tail is accepted too) are affected; `None` affects every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// How many requests the fault affects before it is removed; `None` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Milliseconds to wait before acting (the whole action of a `latency` fault).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// What to do.
    #[serde(flatten)]
    pub action: FaultAction,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// What a [`Fault`] does; serialized with a `kind` tag in `snake_case`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Wait `delay_ms`, then answer normally.
    Latency,
    /// Answer with a Twirp error.
    TwirpError {
        /// Twirp code, e.g. `unavailable`. Any string is sent as is.
        code: String,
        /// Message.
        #[serde(default)]
        msg: String,
        /// Meta entries.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        meta: BTreeMap<String, String>,
        /// Standard-base64 encoded `google.rpc.Status`, sent as meta `error_details`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_details: Option<String>,
        /// HTTP status override; by default the code's Twirp status (500 for unknown codes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// Answer with an arbitrary HTTP response.
    Http {
        /// HTTP status.
        status: u16,
        /// `Content-Type`; none is sent when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        /// Body text.
        #[serde(default)]
        body: String,
        /// Extra headers.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
    /// Close the connection without answering.
    Drop {
        /// Apply the request (e.g. really start the egress) before dropping, to simulate a
        /// lost answer rather than a lost request.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        after_processing: bool,
    },
    /// Process normally, then send only part of the answer: the full `Content-Length` but
    /// `keep_bytes` bytes of body (default: half, and always at least one byte short), then
    /// close the connection.
    Truncate {
        /// Body bytes to send.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_bytes: Option<usize>,
    },
    /// Answer `200 OK` with an HTML page. The documented tag is `html_200` (what
    /// [`FaultAction::kind`] and the README say); `html200`, what `rename_all` derived from the
    /// variant name before, is still accepted so existing fault files keep working.
    #[serde(rename = "html_200", alias = "html200")]
    Html200 {
        /// The page; a captive-portal-like page by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Not a request fault: drops the next webhook events (for every URL) instead of
    /// sending them, as LiveKit's notifier drops events when it falls behind. Requests never
    /// take it, and `method` and `delay_ms` do not apply.
    DropWebhook {
        /// Only events of this name (`egress_started`, `egress_updated`, `egress_ended`);
        /// every event when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
}

impl FaultAction {
    /// The `kind` tag, e.g. `twirp_error`.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultAction::Latency => "latency",
            FaultAction::TwirpError { .. } => "twirp_error",
            FaultAction::Http { .. } => "http",
            FaultAction::Drop { .. } => "drop",
            FaultAction::Truncate { .. } => "truncate",
            FaultAction::Html200 { .. } => "html_200",
            FaultAction::DropWebhook { .. } => "drop_webhook",
        }
    }
}

/// The default `html_200` page.
pub(crate) const CAPTIVE_PORTAL_PAGE: &str = "<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Sign in to continue</h1><p>This network requires authentication.</p></body></html>";

impl Fault {
    fn with(action: FaultAction) -> Self {
        Self {
            method: None,
            times: None,
            delay_ms: 0,
            action,
        }
    }

    /// Adds `delay` of latency, then answers normally.
    pub fn latency(delay: Duration) -> Self {
        Self::with(FaultAction::Latency).delay(delay)
    }

    /// Answers with a Twirp error `{"code","msg"}` and the code's HTTP status.
    pub fn twirp_error(code: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::with(FaultAction::TwirpError {
            code: code.into(),
            msg: msg.into(),
            meta: BTreeMap::new(),
            error_details: None,
            status: None,
        })
    }

    /// Answers with a raw HTTP response, e.g. `Fault::http(502, "text/html", "<h1>Bad Gateway</h1>")`.
    pub fn http(status: u16, content_type: impl Into<String>, body: impl Into<String>) -> Self {
        Self::with(FaultAction::Http {
            status,
            content_type: Some(content_type.into()).filter(|c: &String| !c.is_empty()),
            body: body.into(),
            headers: BTreeMap::new(),
        })
    }

    /// Closes the connection without answering and without applying the request.
    pub fn drop_connection() -> Self {
        Self::with(FaultAction::Drop {
            after_processing: false,
        })
    }

    /// Applies the request, then closes the connection without answering (a lost answer).
    pub fn drop_after_processing() -> Self {
        Self::with(FaultAction::Drop {
            after_processing: true,
        })
    }

    /// Answers with a truncated body (half of it) under the full `Content-Length`, then closes.
    pub fn truncated() -> Self {
        Self::with(FaultAction::Truncate { keep_bytes: None })
    }

    /// Answers `200 text/html` with a captive-portal-like page.
    pub fn html_200() -> Self {
        Self::with(FaultAction::Html200 { body: None })
    }

    /// Drops the next webhook events instead of sending them (see
    /// [`FaultAction::DropWebhook`]); limit it with [`times`](Self::times) and
    /// [`event`](Self::event).
    pub fn drop_webhook() -> Self {
        Self::with(FaultAction::DropWebhook { event: None })
    }

    /// Limits a `drop_webhook` fault to one event name, e.g. `"egress_ended"` (no effect on
    /// other kinds).
    pub fn event(mut self, name: impl Into<String>) -> Self {
        if let FaultAction::DropWebhook { event } = &mut self.action {
            *event = Some(name.into());
        }
        self
    }

    /// Limits the fault to one RPC, e.g. `"StopEgress"`.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Limits the fault to `n` requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Waits `delay` before acting.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Adds a meta entry to a `twirp_error` fault (no effect on other kinds).
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let FaultAction::TwirpError { meta, .. } = &mut self.action {
            meta.insert(key.into(), value.into());
        }
        self
    }

    /// Overrides the HTTP status of a `twirp_error` fault (no effect on other kinds).
    pub fn status(mut self, code: u16) -> Self {
        if let FaultAction::TwirpError { status, .. } = &mut self.action {
            *status = Some(code);
        }
        self
    }

    /// Attaches an encoded `google.rpc.Status` to a `twirp_error` fault; it is sent
    /// standard-base64 encoded as meta `error_details` (see [`rpc_status`]).
    pub fn error_details(mut self, status: &[u8]) -> Self {
        if let FaultAction::TwirpError { error_details, .. } = &mut self.action {
            *error_details = Some(base64::engine::general_purpose::STANDARD.encode(status));
        }
        self
    }

    /// Sets how many body bytes a `truncate` fault sends.
    pub fn keep_bytes(mut self, n: usize) -> Self {
        if let FaultAction::Truncate { keep_bytes } = &mut self.action {
            *keep_bytes = Some(n);
        }
        self
    }

    /// Adds a response header to an `http` fault.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let FaultAction::Http { headers, .. } = &mut self.action {
            headers.insert(name.into(), value.into());
        }
        self
    }

    fn matches(&self, rpc: Option<&str>) -> bool {
        if matches!(self.action, FaultAction::DropWebhook { .. }) {
            return false;
        }
        match &self.method {
            None => true,
            Some(wanted) => {
                let wanted = wanted.rsplit('/').next().unwrap_or(wanted);
                rpc == Some(wanted)
            }
        }
    }
}

/// Encodes a `google.rpc.Status` (code, message and `Any` details) for
/// [`Fault::error_details`].
pub fn rpc_status(code: i32, message: &str, details: Vec<prost_types::Any>) -> Vec<u8> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
        #[prost(message, repeated, tag = "3")]
        details: Vec<prost_types::Any>,
    }
    prost::Message::encode_to_vec(&Status {
        code,
        message: message.to_owned(),
        details,
    })
}

/// The simulator's fault list, shared between the server and its handles (cheap to clone).
#[derive(Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<Vec<Fault>>>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}

impl Faults {
    /// Appends a fault.
    pub fn push(&self, fault: Fault) {
        self.extend([fault]);
    }

    /// Appends several faults, in order.
    pub fn extend(&self, faults: impl IntoIterator<Item = Fault>) {
        let mut list = self.inner.lock().expect("fault list lock");
        list.extend(faults.into_iter().filter(|f| f.times != Some(0)));
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.inner.lock().expect("fault list lock").clear();
    }

    /// The faults still armed, with their remaining `times`.
    pub fn list(&self) -> Vec<Fault> {
        self.inner.lock().expect("fault list lock").clone()
    }

    /// Number of faults still armed.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("fault list lock").len()
    }

    /// Whether no fault is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the first fault matching `rpc`, using up one of its `times`.
    pub(crate) fn take(&self, rpc: Option<&str>) -> Option<Fault> {
        self.take_first(|f| f.matches(rpc))
    }

    /// Takes the first `drop_webhook` fault for the webhook event `name`.
    pub(crate) fn take_webhook(&self, name: &str) -> Option<Fault> {
        self.take_first(|f| match &f.action {
            FaultAction::DropWebhook { event } => event.as_deref().is_none_or(|e| e == name),
            _ => false,
        })
    }

    fn take_first(&self, pick: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut list = self.inner.lock().expect("fault list lock");
        let index = list.iter().position(pick)?;
        let fault = list[index].clone();
        if let Some(times) = &mut list[index].times {
            *times -= 1;
            if *times == 0 {
                list.remove(index);
            }
        }
        Some(fault)
    }
}

/// Parses the body of `POST /sim/faults`: one fault object or a list of them.
pub(crate) fn parse_faults(body: &[u8]) -> Result<Vec<Fault>, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    if value.is_array() {
        serde_json::from_value(value)
    } else {
        serde_json::from_value::<Fault>(value).map(|f| vec![f])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_of_every_kind() {
        let faults = vec![
            Fault::latency(Duration::from_millis(20)),
            Fault::twirp_error("unavailable", "no response from servers")
                .meta("a", "b")
                .error_details(&rpc_status(14, "down", vec![]))
                .status(502)
                .method("StopEgress")
                .times(2),
            Fault::http(502, "text/html", "<h1>Bad Gateway</h1>").header("retry-after", "1"),
            Fault::drop_connection(),
            Fault::drop_after_processing(),
            Fault::truncated().keep_bytes(3),
            Fault::html_200(),
            Fault::drop_webhook().event("egress_ended").times(1),
        ];
        let json = serde_json::to_string(&faults).unwrap();
        assert_eq!(parse_faults(json.as_bytes()).unwrap(), faults);
    }

    #[test]
    fn parses_documented_shapes() {
        let one = parse_faults(br#"{"kind":"drop"}"#).unwrap();
        assert_eq!(one, vec![Fault::drop_connection()]);
        let many = parse_faults(
            br#"[{"kind":"latency","delay_ms":5},{"kind":"twirp_error","code":"internal","method":"ListEgress","times":1}]"#,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].delay_ms, 5);
        assert_eq!(many[1].method.as_deref(), Some("ListEgress"));
        assert!(parse_faults(br#"{"kind":"nope"}"#).is_err());
        // The documented spelling and the one the derive used to produce both parse, and
        // the documented one is what is written back.
        for kind in ["html_200", "html200"] {
            let json = format!(r#"{{"kind":"{kind}"}}"#);
            assert_eq!(
                parse_faults(json.as_bytes()).unwrap(),
                vec![Fault::html_200()]
            );
        }
        let json = serde_json::to_value(Fault::html_200()).unwrap();
        assert_eq!(json["kind"], "html_200");
        assert!(parse_faults(br#"{"kind":"http"}"#).is_err());
    }

    #[test]
    fn take_matches_method_and_uses_up_times() {
        let faults = Faults::default();
        faults.extend([
            Fault::drop_connection()
                .method("livekit.Egress/StopEgress")
                .times(1),
            Fault::html_200().times(2),
            Fault::latency(Duration::ZERO).times(0),
        ]);
        assert_eq!(faults.len(), 2);
        assert_eq!(
            faults.take(Some("ListEgress")).unwrap().action.kind(),
            "html_200"
        );
        assert_eq!(
            faults.take(Some("StopEgress")).unwrap().action.kind(),
            "drop"
        );
        assert_eq!(faults.take(None).unwrap().action.kind(), "html_200");
        assert!(faults.take(Some("StopEgress")).is_none());
        assert!(faults.is_empty());
    }
}
