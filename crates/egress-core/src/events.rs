//! Egress lifecycle events: LiveKit's webhook as the gateway reads it, what a watcher asked
//! for, duplicate suppression, and the reconciliation diff against `ListEgress`.
//!
//! Pure logic with the clock passed in; the gateway's `events` module does the I/O (the
//! webhook listener, the poll, Redis, the streams).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use prost_reflect::{DeserializeOptions, DynamicMessage};

use crate::proto::{EgressInfo, EgressStatus};

/// What an [`Event`] says happened, named as LiveKit names its webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `egress_started` (LiveKit may send it while the egress is still STARTING).
    Started,
    /// `egress_updated`: a status or stream change.
    Updated,
    /// `egress_ended`: complete, failed, aborted or limit reached.
    Ended,
    /// `snapshot`: the state of an unfinished egress when a watcher asked for it.
    Snapshot,
}

impl EventKind {
    /// The name on the wire (`egress_started`, …, `snapshot`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "egress_started",
            EventKind::Updated => "egress_updated",
            EventKind::Ended => "egress_ended",
            EventKind::Snapshot => "snapshot",
        }
    }

    /// The kind of a LiveKit webhook's `event`; `None` for events that are not about egress
    /// (`room_started`, `track_published`, …) and for anything unknown.
    pub fn from_webhook(event: &str) -> Option<Self> {
        match event {
            "egress_started" => Some(EventKind::Started),
            "egress_updated" => Some(EventKind::Updated),
            "egress_ended" => Some(EventKind::Ended),
            _ => None,
        }
    }
}

crate::display_as_str!(EventKind);

/// Where the gateway learned of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A LiveKit webhook, received by this replica or another one.
    Webhook,
    /// Polling `ListEgress`: the webhook for this change never arrived.
    Reconcile,
    /// The state sent when a watcher asked for a snapshot.
    Snapshot,
}

impl Source {
    /// The name on the wire and in metrics (`webhook`, `reconcile`, `snapshot`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Reconcile => "reconcile",
            Source::Snapshot => "snapshot",
        }
    }

    /// The source named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Source::Webhook),
            "reconcile" => Some(Source::Reconcile),
            "snapshot" => Some(Source::Snapshot),
            _ => None,
        }
    }
}

/// One egress event, as every watcher gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// The egress exactly as LiveKit reported it.
    pub info: EgressInfo,
    /// LiveKit's webhook event id; `reconcile-…` or `snapshot-…` for the gateway's own.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    pub source: Source,
}

impl Event {
    /// An event the gateway made itself (reconciliation, snapshot): its id is the source,
    /// the egress id, the status and the time, so two replicas that see the same change make
    /// the same id and a watcher can tell them apart from LiveKit's.
    pub fn made(kind: EventKind, source: Source, info: EgressInfo, created_at: i64) -> Self {
        let id = format!(
            "{}-{}-{}-{created_at}",
            source.as_str(),
            info.egress_id,
            info.status
        );
        Self {
            kind,
            info,
            id,
            created_at,
            source,
        }
    }

    /// The room the egress belongs to (empty for web egress).
    pub fn room(&self) -> &str {
        &self.info.room_name
    }
}

/// Why a webhook body was not an egress event the gateway can deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body is not a JSON object: {0}")]
    NotJson(String),
    #[error("webhook has no event name")]
    NoEvent,
    #[error("webhook has no event id")]
    NoId,
    #[error("{event} webhook carries no egress_info")]
    NoEgressInfo { event: EventKind },
    #[error("{event} webhook's egress_info is not a livekit.EgressInfo: {reason}")]
    BadEgressInfo { event: EventKind, reason: String },
    #[error("{event} webhook's egress_info has no egress_id")]
    NoEgressId { event: EventKind },
    #[error("webhook created_at is not a number")]
    BadCreatedAt,
}

/// What a verified webhook body held.
#[derive(Debug, Clone, PartialEq)]
pub enum Webhook {
    /// An egress event.
    Egress(Box<Event>),
    /// Any other event (`room_started`, …): acknowledged and ignored.
    Other { event: String },
}

/// Reads a LiveKit webhook body: protojson of `livekit.WebhookEvent`.
///
/// Only what an egress event needs is read — `event`, `id`, `created_at`/`createdAt` and
/// `egress_info`/`egressInfo` — and every other field is ignored, as LiveKit's own receivers
/// discard unknown fields. `egress_info` is decoded with the pinned schema, unknown fields
/// discarded too (a newer LiveKit adds fields; the gateway delivers what it knows).
///
/// # Errors
///
/// A body that is not a JSON object, an egress event without id or `egress_info`, or an
/// `egress_info` that is not an `EgressInfo` or has no `egress_id`.
pub fn parse_webhook(body: &[u8]) -> Result<Webhook, WebhookError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err(WebhookError::NotJson("not an object".into()));
    };
    let name = match fields.get("event") {
        Some(serde_json::Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err(WebhookError::NoEvent),
    };
    let Some(kind) = EventKind::from_webhook(&name) else {
        return Ok(Webhook::Other { event: name });
    };
    let id = match fields.get("id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(WebhookError::NoId),
    };
    // protojson writes int64 as a string; accept a number too. Absent means 0, as proto3 has it.
    let created_at = match fields.get("createdAt").or_else(|| fields.get("created_at")) {
        None => 0,
        Some(serde_json::Value::Number(n)) => n.as_i64().ok_or(WebhookError::BadCreatedAt)?,
        Some(serde_json::Value::String(s)) => s.parse().map_err(|_| WebhookError::BadCreatedAt)?,
        Some(_) => return Err(WebhookError::BadCreatedAt),
    };
    let info = fields
        .remove("egressInfo")
        .or_else(|| fields.remove("egress_info"))
        .filter(|v| !v.is_null())
        .ok_or(WebhookError::NoEgressInfo { event: kind })?;
    let info = decode_egress_info(info).map_err(|reason| WebhookError::BadEgressInfo {
        event: kind,
        reason,
    })?;
    if info.egress_id.is_empty() {
        return Err(WebhookError::NoEgressId { event: kind });
    }
    Ok(Webhook::Egress(Box::new(Event {
        kind,
        info,
        id,
        created_at,
        source: Source::Webhook,
    })))
}

fn decode_egress_info(json: serde_json::Value) -> Result<EgressInfo, String> {
    let descriptor = crate::unknown::pool()
        .get_message_by_name("livekit.EgressInfo")
        .ok_or("the schema has no livekit.EgressInfo")?;
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message = DynamicMessage::deserialize_with_options(descriptor, json, &options)
        .map_err(|e| e.to_string())?;
    message.transcode_to().map_err(|e| e.to_string())
}

/// Suppresses duplicate deliveries of one event id (LiveKit retries a webhook it thinks
/// failed; two replicas may reconcile the same change) for a bounded window and count.
#[derive(Debug)]
pub struct Dedupe {
    window: Duration,
    max: usize,
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl Dedupe {
    /// Remembers ids for `window`, at most `max` of them (the oldest are forgotten first).
    pub fn new(window: Duration, max: usize) -> Self {
        Self {
            window,
            max: max.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` is new at `now`; it is remembered either way.
    pub fn first_time(&mut self, id: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.window && self.order.len() < self.max {
                break;
            }
            let (at, old) = self.order.pop_front().expect("front exists");
            if self.seen.get(&old) == Some(&at) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(id) {
            return false;
        }
        self.seen.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        true
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Whether `status` is final: LiveKit sends no event for the egress after it.
pub fn is_finished(status: i32) -> bool {
    matches!(
        EgressStatus::try_from(status),
        Ok(EgressStatus::EgressComplete
            | EgressStatus::EgressFailed
            | EgressStatus::EgressAborted
            | EgressStatus::EgressLimitReached)
    )
}

/// What one poll of `ListEgress` (active only) found that no event said.
#[derive(Debug, Default, PartialEq)]
pub struct Drift {
    /// Active egresses that are new or changed status since the last event: delivered as
    /// `egress_updated`.
    pub changed: Vec<EgressInfo>,
    /// Egresses last known unfinished that left the active list: look each up by id and
    /// deliver its final state as `egress_ended`.
    pub vanished: Vec<String>,
}

/// The last status of every unfinished egress, from events and polls, so a poll can tell
/// what the webhooks missed.
#[derive(Debug, Default)]
pub struct Reconciler {
    /// Unfinished egresses and their last known status.
    known: HashMap<String, i32>,
    /// Whether a poll has seeded `known`: the first one only learns, or a watcher that
    /// connects would get an `egress_updated` for every egress already running.
    seeded: bool,
}

impl Reconciler {
    /// A reconciler that knows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns from an event from any source.
    pub fn observe(&mut self, info: &EgressInfo) {
        if is_finished(info.status) {
            self.known.remove(&info.egress_id);
        } else {
            self.known.insert(info.egress_id.clone(), info.status);
        }
    }

    /// Compares one poll's active egresses with what events said.
    pub fn poll(&mut self, active: &[EgressInfo]) -> Drift {
        let mut drift = Drift::default();
        let mut listed = std::collections::HashSet::with_capacity(active.len());
        for info in active {
            listed.insert(info.egress_id.as_str());
            if is_finished(info.status) {
                continue;
            }
            let previous = self.known.insert(info.egress_id.clone(), info.status);
            if self.seeded && previous != Some(info.status) {
                drift.changed.push(info.clone());
            }
        }
        if self.seeded {
            drift.vanished = self
                .known
                .keys()
                .filter(|id| !listed.contains(id.as_str()))
                .cloned()
                .collect();
            drift.vanished.sort();
        } else {
            self.known.retain(|id, _| listed.contains(id.as_str()));
        }
        self.seeded = true;
        drift
    }

    /// Forgets an egress that vanished and whose lookup found nothing: LiveKit no longer
    /// knows it, so there is no final state to deliver.
    pub fn forget(&mut self, egress_id: &str) {
        self.known.remove(egress_id);
    }

    /// Starts over: the next poll only learns (after a pause in watching, or when another
    /// replica held the reconcile lease).
    pub fn reset(&mut self) {
        self.known.clear();
        self.seeded = false;
    }

    /// Unfinished egresses known now.
    pub fn known(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, status: EgressStatus) -> EgressInfo {
        EgressInfo {
            egress_id: id.into(),
            room_name: "team-a".into(),
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn webhooks_as_livekit_writes_them() {
        let body = br#"{"event":"egress_started","egressInfo":{"egressId":"EG_1","roomName":"team-a","status":"EGRESS_STARTING","futureField":1},"id":"EV_1","createdAt":"1700000000","numDropped":0}"#;
        let Webhook::Egress(event) = parse_webhook(body).unwrap() else {
            panic!("not egress")
        };
        assert_eq!(event.kind, EventKind::Started);
        assert_eq!(event.id, "EV_1");
        assert_eq!(event.created_at, 1_700_000_000);
        assert_eq!(event.info.egress_id, "EG_1");
        assert_eq!(event.room(), "team-a");
        assert_eq!(event.info.status, EgressStatus::EgressStarting as i32);
        assert_eq!(event.source, Source::Webhook);

        // Proto field names and a numeric created_at are read too.
        let body = br#"{"event":"egress_ended","egress_info":{"egress_id":"EG_2","status":3},"id":"EV_2","created_at":5}"#;
        let Webhook::Egress(event) = parse_webhook(body).unwrap() else {
            panic!("not egress")
        };
        assert_eq!(event.kind, EventKind::Ended);
        assert_eq!(event.created_at, 5);
        assert!(is_finished(event.info.status));

        assert_eq!(
            parse_webhook(br#"{"event":"room_started","room":{"name":"x"},"id":"EV_3"}"#).unwrap(),
            Webhook::Other {
                event: "room_started".into()
            }
        );
    }

    #[test]
    fn bad_webhooks_say_why() {
        let cases: [(&[u8], &str); 8] = [
            (b"not json", "not a JSON object"),
            (b"[1]", "not a JSON object"),
            (br#"{"id":"x"}"#, "no event name"),
            (br#"{"event":"egress_updated","egressInfo":{"egressId":"E"}}"#, "no event id"),
            (br#"{"event":"egress_updated","id":"x"}"#, "carries no egress_info"),
            (
                br#"{"event":"egress_updated","id":"x","egressInfo":{"status":{"a":1}}}"#,
                "is not a livekit.EgressInfo",
            ),
            (
                br#"{"event":"egress_updated","id":"x","egressInfo":{"roomName":"r"}}"#,
                "has no egress_id",
            ),
            (
                br#"{"event":"egress_updated","id":"x","createdAt":"soon","egressInfo":{"egressId":"E"}}"#,
                "created_at is not a number",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_webhook(body).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} for {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn dedupe_is_bounded_in_time_and_count() {
        let start = Instant::now();
        let mut dedupe = Dedupe::new(Duration::from_secs(60), 3);
        assert!(dedupe.first_time("a", start));
        assert!(!dedupe.first_time("a", start + Duration::from_secs(1)));
        assert!(dedupe.first_time("b", start));
        assert!(dedupe.first_time("c", start));
        // A fourth id pushes out the oldest.
        assert!(dedupe.first_time("d", start));
        assert_eq!(dedupe.len(), 3);
        assert!(dedupe.first_time("a", start + Duration::from_secs(2)));
        // Past the window everything is forgotten.
        assert!(dedupe.first_time("b", start + Duration::from_secs(120)));
        assert!(dedupe.len() <= 2, "{}", dedupe.len());
    }

    #[test]
    fn reconciler_reports_only_what_events_missed() {
        use EgressStatus::*;
        let mut r = Reconciler::new();
        // The first poll only learns.
        let first = r.poll(&[info("EG_1", EgressActive), info("EG_2", EgressStarting)]);
        assert_eq!(first, Drift::default());
        assert_eq!(r.known(), 2);

        // A webhook said EG_2 is active; EG_3 started without any webhook.
        r.observe(&info("EG_2", EgressActive));
        let drift = r.poll(&[
            info("EG_1", EgressActive),
            info("EG_2", EgressActive),
            info("EG_3", EgressActive),
        ]);
        assert_eq!(drift.changed, vec![info("EG_3", EgressActive)]);
        assert!(drift.vanished.is_empty());

        // EG_1 ended with its webhook; EG_3 vanished without one.
        r.observe(&info("EG_1", EgressComplete));
        let drift = r.poll(&[info("EG_2", EgressEnding)]);
        assert_eq!(drift.changed, vec![info("EG_2", EgressEnding)]);
        assert_eq!(drift.vanished, vec!["EG_3".to_owned()]);
        // Until the final state is delivered (observed) or forgotten, it stays vanished.
        r.observe(&info("EG_3", EgressFailed));
        assert!(r.poll(&[info("EG_2", EgressEnding)]).vanished.is_empty());

        r.reset();
        assert_eq!(r.poll(&[info("EG_9", EgressActive)]), Drift::default());
    }

    #[test]
    fn made_events_name_their_source() {
        let event = Event::made(
            EventKind::Ended,
            Source::Reconcile,
            info("EG_1", EgressStatus::EgressComplete),
            7,
        );
        assert_eq!(event.id, "reconcile-EG_1-3-7");
        assert_eq!(event.kind.as_str(), "egress_ended");
        assert_eq!(
            Source::parse(event.source.as_str()),
            Some(Source::Reconcile)
        );
    }
}
