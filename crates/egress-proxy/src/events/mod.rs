//! Egress lifecycle events: where they come from and how they reach every watcher.
//!
//! ```text
//! LiveKit webhook ─▶ webhook (verify, parse) ─┐
//! ListEgress poll ─▶ reconcile (drift)  ──────┼─▶ Hub::publish ─▶ dedupe ─▶ broadcast ring ─▶ watchers
//! other replicas  ─▶ redis (subscribe)  ──────┘        │                                     (door::events)
//!                                                      └─▶ redis (publish, this replica's events only)
//! ```
//!
//! The [`Hub`] is the one place an event enters: it drops duplicates (LiveKit retries a
//! webhook; two replicas can see one change), tells the reconciler what events said, encodes
//! the `EgressEvent` once, and puts it on a bounded broadcast ring. Each watcher reads the
//! ring at its own pace; one that falls a whole ring behind is ended with
//! RESOURCE_EXHAUSTED (it must re-watch with a snapshot), so a slow watcher costs nothing
//! but its place in the ring, and never holds the others back.

pub mod reconcile;
pub mod redis;
pub mod webhook;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use egress_core::events::{Dedupe, Event, Reconciler};
use egress_proto::egress_gateway::v1::EgressEvent;
use egress_telemetry::Metrics;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};

/// How long an event id is remembered to drop duplicates (LiveKit gives up retrying a
/// webhook well within this).
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Most event ids remembered at once.
pub const DEDUPE_MAX: usize = 100_000;

/// How the event stream is set up (`--watch-queue`, `--max-watchers`).
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// Events a watcher may fall behind before it is ended.
    pub queue: usize,
    /// Watch streams served at once on this replica.
    pub max_watchers: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            queue: 1024,
            max_watchers: 20_000,
        }
    }
}

/// One event as watchers get it.
#[derive(Debug)]
pub struct Published {
    pub event: Event,
    /// The `egress_gateway.v1.EgressEvent`, encoded once for every watcher.
    pub encoded: Bytes,
    /// When its webhook reached a replica (for the delay histogram); `None` for events the
    /// gateway made.
    pub webhook_at: Option<SystemTime>,
}

/// The one entry point of events, and the ring watchers read.
#[derive(Debug)]
pub struct Hub {
    ring: broadcast::Sender<Arc<Published>>,
    dedupe: Mutex<Dedupe>,
    reconciler: Mutex<Reconciler>,
    watchers: AtomicUsize,
    settings: HubSettings,
    metrics: Metrics,
    /// This replica's events, for the Redis fan-out (set once it runs).
    outbound: OnceLock<mpsc::Sender<Arc<Published>>>,
}

/// Where [`Hub::publish`] got an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This replica's webhook receiver or reconciler: also sent to the other replicas.
    Local,
    /// Another replica, through Redis: delivered here only.
    Remote,
}

impl Hub {
    /// A hub with nobody watching.
    pub fn new(settings: HubSettings, metrics: Metrics) -> Self {
        let (ring, _) = broadcast::channel(settings.queue.max(1));
        Self {
            ring,
            dedupe: Mutex::new(Dedupe::new(DEDUPE_WINDOW, DEDUPE_MAX)),
            reconciler: Mutex::new(Reconciler::new()),
            watchers: AtomicUsize::new(0),
            settings,
            metrics,
            outbound: OnceLock::new(),
        }
    }

    /// Delivers `event` to every watcher here (and, for a [`Origin::Local`] event, to the
    /// other replicas), unless its id was seen already. Returns whether it was new.
    pub fn publish(&self, event: Event, webhook_at: Option<SystemTime>, origin: Origin) -> bool {
        let fresh = lock(&self.dedupe).first_time(&event.id, Instant::now());
        if !fresh {
            self.metrics.event_ignored("duplicate");
            return false;
        }
        lock(&self.reconciler).observe(&event.info);
        self.metrics.event_received(match origin {
            Origin::Remote => "redis",
            Origin::Local => event.source.as_str(),
        });
        let encoded = Bytes::from(to_message(&event).encode_to_vec());
        let published = Arc::new(Published {
            event,
            encoded,
            webhook_at,
        });
        if origin == Origin::Local
            && let Some(outbound) = self.outbound.get()
            && outbound.try_send(Arc::clone(&published)).is_err()
        {
            // Redis is slow or down: this replica's watchers still get the event.
            tracing::warn!("redis fan-out queue full; event delivered on this replica only");
        }
        // No receiver is fine: nobody is watching.
        let _ = self.ring.send(published);
        true
    }

    /// A new watcher, or `None` when `--max-watchers` are watching already.
    pub fn watch(self: &Arc<Self>) -> Option<Watcher> {
        let max = self.settings.max_watchers;
        self.watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.metrics.watchers_add(1);
        Some(Watcher {
            ring: self.ring.subscribe(),
            hub: Arc::clone(self),
        })
    }

    /// Watch streams open now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Acquire)
    }

    /// `--max-watchers`.
    pub fn max_watchers(&self) -> usize {
        self.settings.max_watchers
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The reconciler, for the poll loop.
    pub fn reconciler(&self) -> std::sync::MutexGuard<'_, Reconciler> {
        lock(&self.reconciler)
    }

    /// Where this replica's events go for the other replicas; set once.
    pub fn set_outbound(&self, outbound: mpsc::Sender<Arc<Published>>) {
        let _ = self.outbound.set(outbound);
    }
}

/// One watcher's place in the ring; counted until dropped.
#[derive(Debug)]
pub struct Watcher {
    pub ring: broadcast::Receiver<Arc<Published>>,
    hub: Arc<Hub>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.hub.watchers.fetch_sub(1, Ordering::AcqRel);
        self.hub.metrics.watchers_add(-1);
    }
}

/// The wire message of `event`.
pub fn to_message(event: &Event) -> EgressEvent {
    EgressEvent {
        event: event.kind.as_str().to_owned(),
        egress_info: Some(event.info.clone()),
        id: event.id.clone(),
        created_at: event.created_at,
        source: event.source.as_str().to_owned(),
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_core::events::{EventKind, Source};
    use egress_proto::livekit::{EgressInfo, EgressStatus};

    fn event(id: &str) -> Event {
        Event {
            kind: EventKind::Updated,
            info: EgressInfo {
                egress_id: "EG_1".into(),
                status: EgressStatus::EgressActive as i32,
                ..Default::default()
            },
            id: id.into(),
            created_at: 1,
            source: Source::Webhook,
        }
    }

    #[tokio::test]
    async fn duplicates_are_delivered_once_and_slow_watchers_lag() {
        let hub = Arc::new(Hub::new(
            HubSettings {
                queue: 2,
                max_watchers: 1,
            },
            Metrics::new(),
        ));
        let mut watcher = hub.watch().unwrap();
        assert!(hub.watch().is_none(), "over --max-watchers");
        assert!(hub.publish(event("a"), None, Origin::Local));
        assert!(!hub.publish(event("a"), None, Origin::Remote));
        let got = watcher.ring.recv().await.unwrap();
        let decoded = EgressEvent::decode(got.encoded.clone()).unwrap();
        assert_eq!(decoded.id, "a");
        assert_eq!(decoded.event, "egress_updated");
        assert_eq!(decoded.source, "webhook");

        for id in ["b", "c", "d"] {
            hub.publish(event(id), None, Origin::Local);
        }
        assert!(matches!(
            watcher.ring.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
        drop(watcher);
        assert_eq!(hub.watchers(), 0);
        assert!(hub.watch().is_some());
    }
}
