//! LiveKit's webhooks: every egress status change is POSTed to each configured URL.
//!
//! What is sent follows livekit/protocol `webhook/resource_url_notifier.go` (the notifier
//! LiveKit's `DefaultNotifier` uses for each URL in its config) and livekit/livekit
//! `pkg/telemetry/events.go` (`NotifyEgressEvent`, `NotifyEvent`):
//!
//! * body: protojson of `livekit.WebhookEvent` (camelCase names, default values left out,
//!   64-bit integers as strings): `event`, `room` (the egress's room id and name only),
//!   `egressInfo` (as the API answers it: redacted), `id` (`EV_` + 12 alphanumerics) and
//!   `createdAt` (Unix seconds, when the event was made);
//! * headers: `Authorization: <token>` (no `Bearer `; an access token of the first API key,
//!   valid 5 minutes, whose `sha256` claim is the body's hash), `Content-Type:
//!   application/webhook+json`, `User-Agent: LiveKit`;
//! * delivery: events are queued per egress and URL (in order, at most
//!   [`WEBHOOK_QUEUE_DEPTH`] waiting, more are dropped), an event that waited longer than
//!   [`WEBHOOK_MAX_AGE`] is dropped unsent, and each is sent with go-retryablehttp's
//!   defaults as LiveKit's client has them: up to [`WEBHOOK_ATTEMPTS`] attempts, retried on
//!   transport errors, 429 and 5xx but 501, waiting 1 s, 2 s, 4 s, 8 s (or `Retry-After` on
//!   429/503). Each attempt is bounded by [`WEBHOOK_ATTEMPT_TIMEOUT`].
//!
//! Every outcome is recorded ([`WebhookDelivery`], `GET /sim/webhooks`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use egress_auth::{Credentials, sign_webhook};
use egress_core::events::EventKind;
use egress_proto::livekit::{EgressInfo, EgressStatus};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::fault::Faults;
use crate::ids::{now_ns, random_id};
use crate::redact::redact_info;
use egress_core::codec;

/// Attempts per webhook (go-retryablehttp's `RetryMax` 4, plus the first).
pub const WEBHOOK_ATTEMPTS: u32 = 5;
/// First wait between attempts (go-retryablehttp's `RetryWaitMin`); it doubles each time.
pub const DEFAULT_WEBHOOK_RETRY_WAIT: Duration = Duration::from_secs(1);
/// Longest wait between attempts (go-retryablehttp's `RetryWaitMax`).
const RETRY_WAIT_MAX: Duration = Duration::from_secs(30);
/// Events that waited longer than this before their turn are dropped (protocol
/// `DefaultResourceURLNotifierConfig.MaxAge`).
pub const WEBHOOK_MAX_AGE: Duration = Duration::from_secs(30);
/// Events waiting per egress and URL; more are dropped (`MaxDepth`).
pub const WEBHOOK_QUEUE_DEPTH: usize = 200;
/// Bound of one attempt: connect, send, and read the answer.
pub const WEBHOOK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many delivery records are kept; the oldest are dropped beyond it.
pub const WEBHOOK_LOG_CAPACITY: usize = 10_000;
/// `Content-Type` of a webhook (protocol `webhook.ContentType`).
pub const WEBHOOK_CONTENT_TYPE: &str = "application/webhook+json";
/// Events handed over but not yet routed to their queue.
const CHANNEL_CAPACITY: usize = 10_000;
/// A queue's sender task ends after this long without events.
const QUEUE_IDLE: Duration = Duration::from_secs(30);

/// What became of one webhook for one URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// A 2xx answer.
    Delivered,
    /// An answer that is not retried (4xx but 429, 501): LiveKit logs it and moves on.
    Rejected,
    /// Every attempt failed (transport error, 429, 5xx).
    Failed,
    /// Dropped by a `drop_webhook` fault.
    Dropped,
    /// Waited longer than [`WEBHOOK_MAX_AGE`] for its turn.
    Expired,
    /// Its queue was full.
    Overflow,
}

/// One webhook sent (or not) to one URL, as `GET /sim/webhooks` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The event id, `EV_…` (the same for every URL).
    pub id: String,
    /// `egress_started`, `egress_updated` or `egress_ended`.
    pub event: String,
    /// The egress it is about.
    pub egress_id: String,
    /// Its status in the event, e.g. `EGRESS_ACTIVE`.
    pub egress_status: String,
    /// Where it went.
    pub url: String,
    /// The event's `createdAt` (Unix seconds).
    pub created_at: i64,
    /// What became of it.
    pub outcome: WebhookOutcome,
    /// The last answer's HTTP status, if any came.
    pub http_status: Option<u16>,
    /// Attempts made (0 when it was never sent).
    pub attempts: u32,
    /// The last attempt's transport error, if any.
    pub error: Option<String>,
    /// `drop_webhook` when a fault dropped it.
    pub fault: Option<String>,
    /// The body (JSON text), as sent or as it would have been.
    pub body: String,
    /// Milliseconds since the Unix epoch when the event was queued.
    pub queued_at_ms: u64,
    /// … and when its outcome was known.
    pub finished_at_ms: u64,
}

impl WebhookDelivery {
    /// The body parsed as JSON.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A change of an egress to report as a webhook.
#[derive(Debug)]
pub(crate) struct StoreEvent {
    pub(crate) kind: EventKind,
    /// As the store holds it (not yet redacted).
    pub(crate) info: EgressInfo,
}

/// One event on its way: made once, sent to every URL.
#[derive(Debug)]
struct Outgoing {
    id: String,
    event: EventKind,
    egress_id: String,
    egress_status: String,
    created_at: i64,
    body: Bytes,
    queued_at: Instant,
    queued_at_ms: u64,
    /// [`Webhooks::reset`] forgets events queued before it.
    epoch: u64,
}

impl Outgoing {
    fn record(&self, url: &str, outcome: WebhookOutcome) -> WebhookDelivery {
        WebhookDelivery {
            id: self.id.clone(),
            event: self.event.as_str().to_owned(),
            egress_id: self.egress_id.clone(),
            egress_status: self.egress_status.clone(),
            url: url.to_owned(),
            created_at: self.created_at,
            outcome,
            http_status: None,
            attempts: 0,
            error: None,
            fault: None,
            body: String::from_utf8_lossy(&self.body).into_owned(),
            queued_at_ms: self.queued_at_ms,
            finished_at_ms: now_ms(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The webhook side of a simulator: its URLs, the signer, the queue into the sender and the
/// delivery log.
pub(crate) struct Webhooks {
    urls: Vec<String>,
    signer: Option<Credentials>,
    retry_wait: Duration,
    tx: mpsc::Sender<(usize, Arc<Outgoing>)>,
    rx: tokio::sync::Mutex<mpsc::Receiver<(usize, Arc<Outgoing>)>>,
    log: Mutex<VecDeque<WebhookDelivery>>,
    epoch: AtomicU64,
    /// The store changed: the next transition may be due at another time.
    changed: Notify,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("urls", &self.urls)
            .field("retry_wait", &self.retry_wait)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    pub(crate) fn new(
        urls: Vec<String>,
        signer: Option<Credentials>,
        retry_wait: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        Self {
            urls,
            signer,
            retry_wait,
            tx,
            rx: tokio::sync::Mutex::new(rx),
            log: Mutex::default(),
            epoch: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    /// Tells the sender that the store changed (an egress started or stopped without an
    /// event being sent, e.g. one a fault dropped).
    pub(crate) fn wake(&self) {
        self.changed.notify_one();
    }

    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Every delivery record, oldest first.
    pub(crate) fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.log
            .lock()
            .expect("webhook log lock")
            .iter()
            .cloned()
            .collect()
    }

    pub(crate) fn clear_log(&self) {
        self.log.lock().expect("webhook log lock").clear();
    }

    /// Forgets the log and every event not sent yet.
    pub(crate) fn reset(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.clear_log();
    }

    fn push(&self, record: WebhookDelivery) {
        let mut log = self.log.lock().expect("webhook log lock");
        if log.len() == WEBHOOK_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(record);
    }

    /// Makes the webhooks of `events` (ids, times, bodies) and hands them to the sender;
    /// never waits. A `drop_webhook` fault takes an event here, for every URL.
    pub(crate) fn queue(&self, events: Vec<StoreEvent>, faults: &Faults) {
        if self.urls.is_empty() {
            return;
        }
        for StoreEvent { kind, mut info } in events {
            redact_info(&mut info);
            let created_at = now_ns() / 1_000_000_000;
            let id = random_id("EV_");
            let outgoing = Arc::new(Outgoing {
                body: Bytes::from(encode_event(kind, &info, &id, created_at)),
                id,
                event: kind,
                egress_status: EgressStatus::try_from(info.status)
                    .map_or_else(|_| info.status.to_string(), |s| s.as_str_name().to_owned()),
                egress_id: info.egress_id,
                created_at,
                queued_at: Instant::now(),
                queued_at_ms: now_ms(),
                epoch: self.epoch.load(Ordering::SeqCst),
            });
            if let Some(fault) = faults.take_webhook(kind.as_str()) {
                for url in &self.urls {
                    let mut record = outgoing.record(url, WebhookOutcome::Dropped);
                    record.fault = Some(fault.action.kind().to_owned());
                    self.push(record);
                }
                continue;
            }
            for index in 0..self.urls.len() {
                if self.tx.try_send((index, Arc::clone(&outgoing))).is_err() {
                    self.push(outgoing.record(&self.urls[index], WebhookOutcome::Overflow));
                }
            }
        }
    }
}

/// `livekit.WebhookEvent` as protojson writes it, for an egress event.
pub(crate) fn encode_event(
    kind: EventKind,
    info: &EgressInfo,
    id: &str,
    created_at: i64,
) -> Vec<u8> {
    /// `toMinimalRoomProto`: the room's sid and name only (empty ones left out).
    #[derive(Serialize)]
    struct Room<'a> {
        #[serde(skip_serializing_if = "str::is_empty")]
        sid: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        name: &'a str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Event<'a> {
        event: &'a str,
        room: Room<'a>,
        egress_info: codec::ProtoJson,
        id: &'a str,
        created_at: String,
    }
    let event = Event {
        event: kind.as_str(),
        room: Room {
            sid: &info.room_id,
            name: &info.room_name,
        },
        egress_info: codec::ProtoJson::new("livekit.EgressInfo", info)
            .expect("EgressInfo is in the pool"),
        id,
        created_at: created_at.to_string(),
    };
    serde_json::to_vec(&event).expect("webhook events serialize")
}

/// Sends what [`Webhooks::queue`] hands over, one queue (and task) per egress and URL, and
/// wakes when a transition computed from timestamps is due (`next_due`, ns since the
/// epoch: reading the store reports what became due) so that it is reported on time.
/// Runs as long as the simulator serves; never returns.
pub(crate) async fn dispatch(webhooks: Arc<Webhooks>, next_due: impl Fn() -> Option<i64>) {
    if webhooks.urls.is_empty() {
        return std::future::pending().await;
    }
    let mut rx = webhooks.rx.lock().await;
    let mut queues: HashMap<(usize, String), mpsc::Sender<Arc<Outgoing>>> = HashMap::new();
    // Dropped with this future: the senders stop with the simulator.
    let mut tasks = JoinSet::new();
    loop {
        let due = next_due();
        let wait = due.map(|at| {
            let ns = at.saturating_sub(now_ns()).max(1_000_000);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        });
        tokio::select! {
            item = rx.recv() => {
                let Some((index, outgoing)) = item else {
                    return std::future::pending().await;
                };
                route(&webhooks, &mut queues, &mut tasks, index, outgoing);
            }
            () = sleep_or_forever(wait) => {}
            () = webhooks.changed.notified() => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                queues.retain(|_, sender| !sender.is_closed());
            }
        }
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Puts an event in its egress's queue for one URL, starting the queue's task if needed.
fn route(
    webhooks: &Arc<Webhooks>,
    queues: &mut HashMap<(usize, String), mpsc::Sender<Arc<Outgoing>>>,
    tasks: &mut JoinSet<()>,
    index: usize,
    outgoing: Arc<Outgoing>,
) {
    let key = (index, outgoing.egress_id.clone());
    let mut outgoing = outgoing;
    for _ in 0..2 {
        let sender = match queues.get(&key).filter(|s| !s.is_closed()) {
            Some(sender) => sender.clone(),
            None => {
                let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE_DEPTH);
                tasks.spawn(send_queue(Arc::clone(webhooks), index, rx));
                queues.insert(key.clone(), tx.clone());
                tx
            }
        };
        match sender.try_send(outgoing) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(back)) => {
                webhooks.push(back.record(&webhooks.urls[index], WebhookOutcome::Overflow));
                return;
            }
            // Its task just ended for idleness: start another.
            Err(mpsc::error::TrySendError::Closed(back)) => {
                queues.remove(&key);
                outgoing = back;
            }
        }
    }
}

/// One egress's queue for one URL: sent in order, one at a time.
async fn send_queue(webhooks: Arc<Webhooks>, index: usize, mut rx: mpsc::Receiver<Arc<Outgoing>>) {
    loop {
        match tokio::time::timeout(QUEUE_IDLE, rx.recv()).await {
            Ok(Some(outgoing)) => deliver(&webhooks, index, &outgoing).await,
            Ok(None) => return,
            Err(_) => {
                // Nothing more is accepted; what got in meanwhile is still sent.
                rx.close();
                while let Ok(outgoing) = rx.try_recv() {
                    deliver(&webhooks, index, &outgoing).await;
                }
                return;
            }
        }
    }
}

/// Sends one event to one URL, with retries, and records the outcome.
async fn deliver(webhooks: &Webhooks, index: usize, outgoing: &Outgoing) {
    let current = || outgoing.epoch == webhooks.epoch.load(Ordering::SeqCst);
    if !current() {
        return;
    }
    let url = &webhooks.urls[index];
    if outgoing.queued_at.elapsed() > WEBHOOK_MAX_AGE {
        webhooks.push(outgoing.record(url, WebhookOutcome::Expired));
        return;
    }
    let mut record = outgoing.record(url, WebhookOutcome::Failed);
    let signed = webhooks
        .signer
        .as_ref()
        .map(|signer| sign_webhook(signer, &outgoing.body, SystemTime::now()));
    let token = match signed {
        Some(Ok(token)) => token,
        Some(Err(error)) => {
            record.error = Some(format!("cannot sign: {error}"));
            webhooks.push(record);
            return;
        }
        None => {
            record.error = Some("no API key to sign webhooks with".to_owned());
            webhooks.push(record);
            return;
        }
    };
    for attempt in 0..WEBHOOK_ATTEMPTS {
        record.attempts = attempt + 1;
        let retry_after = match post(url, &token, outgoing.body.clone()).await {
            Ok((status, retry_after)) => {
                record.http_status = Some(status);
                record.error = None;
                if !retryable(status) {
                    record.outcome = if (200..300).contains(&status) {
                        WebhookOutcome::Delivered
                    } else {
                        WebhookOutcome::Rejected
                    };
                    break;
                }
                retry_after
            }
            Err(error) => {
                record.http_status = None;
                record.error = Some(error);
                None
            }
        };
        if attempt + 1 < WEBHOOK_ATTEMPTS {
            tokio::time::sleep(backoff(webhooks.retry_wait, attempt, retry_after)).await;
            if !current() {
                return;
            }
        }
    }
    record.finished_at_ms = now_ms();
    webhooks.push(record);
}

/// go-retryablehttp's `DefaultRetryPolicy` for an answer: 429, and 5xx but 501.
fn retryable(status: u16) -> bool {
    status == 429 || status == 0 || (status >= 500 && status != 501)
}

/// go-retryablehttp's `DefaultBackoff`: `Retry-After` when given (429/503), otherwise
/// `min · 2^attempt`, at most 30 s.
fn backoff(min: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or_else(|| min.saturating_mul(2u32.saturating_pow(attempt)))
        .min(RETRY_WAIT_MAX)
}

/// One POST over a fresh HTTP/1.1 connection; the status and a `Retry-After` (429/503).
async fn post(url: &str, token: &str, body: Bytes) -> Result<(u16, Option<Duration>), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// webhook URLs are supported".to_owned());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let authority = uri
        .authority()
        .map_or(host.clone(), |a| a.as_str().to_owned());
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let attempt = async move {
        let ip_or_name = host.trim_start_matches('[').trim_end_matches(']');
        let stream = tokio::net::TcpStream::connect((ip_or_name, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = http::Request::post(path)
            .header(HOST, authority)
            .header(AUTHORIZATION, token)
            .header(CONTENT_TYPE, WEBHOOK_CONTENT_TYPE)
            .header(USER_AGENT, "LiveKit")
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status().as_u16();
        let retry_after = matches!(status, 429 | 503)
            .then(|| response.headers().get(RETRY_AFTER))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The answer is read and thrown away, as LiveKit does.
        let _ = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        Ok((status, retry_after))
    };
    tokio::time::timeout(WEBHOOK_ATTEMPT_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no answer within {WEBHOOK_ATTEMPT_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let min = Duration::from_secs(1);
        let waits: Vec<_> = (0..4).map(|a| backoff(min, a, None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(backoff(min, 10, None), RETRY_WAIT_MAX);
        assert_eq!(
            backoff(min, 0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert!(retryable(500) && retryable(503) && retryable(429));
        assert!(!retryable(501) && !retryable(401) && !retryable(200));
    }

    #[test]
    fn events_are_protojson_with_camel_case_names() {
        let info = EgressInfo {
            egress_id: "EG_1".into(),
            room_id: "RM_1".into(),
            room_name: "r".into(),
            started_at: 5,
            ..Default::default()
        };
        let body = encode_event(EventKind::Started, &info, "EV_1", 1_700_000_000);
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(
                r#"{"event":"egress_started","room":{"sid":"RM_1","name":"r"},"egressInfo":{"#
            ),
            "{text}"
        );
        assert!(
            text.ends_with(r#""id":"EV_1","createdAt":"1700000000"}"#),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let info = &value["egressInfo"];
        assert_eq!(info["egressId"], "EG_1");
        assert_eq!(info["startedAt"], "5");
        // Default values are left out, as protojson does: STARTING is the enum's zero.
        assert!(info.get("status").is_none(), "{info}");
        assert!(info.get("egress_id").is_none());
    }
}
