//! Events across replicas (`--redis-url`): LiveKit posts each webhook to one URL, which a
//! Kubernetes Service routes to one pod, so each replica publishes the events it accepted
//! and every replica delivers what the others published.
//!
//! **Pub/sub, not streams.** A watch is a live view: a watcher that was not connected when
//! an event happened gets the present from a snapshot, not a replay, and reconciliation
//! repairs anything a replica missed while Redis was away. Pub/sub fits that exactly —
//! nothing is stored in Redis, nothing needs trimming, and delivery is one `PUBLISH` to one
//! channel however many replicas listen. Streams would add storage, consumer bookkeeping
//! and trimming for a replay no watcher can use.
//!
//! A message is [`ENVELOPE_VERSION`], the publishing replica's id (16 bytes; a replica
//! ignores its own messages, it delivered them already), the webhook's arrival time in unix
//! milliseconds (0 for events the gateway made) and the encoded `EgressEvent`. One that
//! does not decode is dropped and counted (`egress_proxy_events_ignored_total{reason=
//! "undecodable"}`).
//!
//! Redis down: this replica's watchers still get this replica's events; the gateway logs it,
//! `/readyz` says it (still 200: no `livekit.Egress` call needs Redis), `egress_proxy_redis_up`
//! is 0, and both connections are retried with backoff. The reconcile lease (`SET … NX PX`)
//! is not held while Redis is down, so every replica polls: slower for LiveKit, still
//! correct.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use egress_core::events::{Event, EventKind, Source};
use egress_proto::egress_gateway::v1::EgressEvent;
use egress_telemetry::{Metrics, Readiness};
use futures_util::StreamExt as _;
use prost::Message as _;
use redis::AsyncCommands as _;
use tokio::sync::{Mutex, mpsc};

use super::{Hub, Origin, Published};

/// The first byte of every message.
pub const ENVELOPE_VERSION: u8 = 1;
/// The pub/sub channel.
pub const CHANNEL: &str = "egress-gateway:events:v1";
/// The key of the reconcile lease.
pub const LEASE_KEY: &str = "egress-gateway:reconcile-lease";

/// Time to connect, or to run one command, before Redis counts as down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Events waiting to be published; beyond this, they reach this replica only.
pub const OUTBOUND_QUEUE: usize = 4096;

/// The Redis side of the event hub.
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// This replica, in every message it publishes.
    origin: [u8; 16],
    /// For `PUBLISH` and the lease; `None` while disconnected.
    commands: Mutex<Option<redis::aio::MultiplexedConnection>>,
    up: AtomicBool,
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Fanout {
    /// A fan-out through the Redis at `url` (`redis://[user:password@]host:port[/db]`);
    /// nothing connects until [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// The URL is not a Redis URL.
    pub fn new(
        url: &str,
        metrics: Metrics,
        readiness: Arc<Readiness>,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                origin: *uuid::Uuid::new_v4().as_bytes(),
                commands: Mutex::new(None),
                up: AtomicBool::new(false),
                metrics,
                readiness,
            }),
        })
    }

    /// Whether the subscription is connected now.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Starts publishing `hub`'s local events and delivering the other replicas' into it;
    /// the tasks run until aborted.
    pub fn start(&self, hub: Arc<Hub>) -> [tokio::task::JoinHandle<()>; 2] {
        let (outbound, queue) = mpsc::channel(OUTBOUND_QUEUE);
        hub.set_outbound(outbound);
        self.set_up(false);
        [
            tokio::spawn(self.clone().publish(queue)),
            tokio::spawn(self.clone().subscribe(hub)),
        ]
    }

    /// Whether this replica holds the reconcile lease for the next `ttl` (taking it when
    /// free, renewing it when ours). `false` when Redis cannot say.
    pub async fn hold_reconcile_lease(&self, ttl: Duration) -> bool {
        let origin = uuid::Uuid::from_bytes(self.inner.origin).to_string();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let outcome = self
            .command(|mut conn| {
                let origin = origin.clone();
                async move {
                    let taken: bool = redis::cmd("SET")
                        .arg(LEASE_KEY)
                        .arg(&origin)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async::<Option<String>>(&mut conn)
                        .await?
                        .is_some();
                    if taken {
                        return Ok(true);
                    }
                    let holder: Option<String> = conn.get(LEASE_KEY).await?;
                    if holder.as_deref() == Some(origin.as_str()) {
                        let _: bool = conn.pexpire(LEASE_KEY, ttl_ms as i64).await?;
                        return Ok(true);
                    }
                    Ok(false)
                }
            })
            .await;
        outcome.unwrap_or(false)
    }

    /// Runs `f` on the command connection, connecting first if needed; drops the connection
    /// on failure so the next command reconnects.
    async fn command<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut slot = self.inner.commands.lock().await;
        if slot.is_none() {
            let connecting = self.inner.client.get_multiplexed_async_connection();
            match tokio::time::timeout(COMMAND_TIMEOUT, connecting).await {
                Ok(Ok(conn)) => *slot = Some(conn),
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "redis: cannot connect");
                    return None;
                }
                Err(_) => return None,
            }
        }
        let conn = slot.clone().expect("connected above");
        match tokio::time::timeout(COMMAND_TIMEOUT, f(conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "redis: command failed");
                *slot = None;
                None
            }
            Err(_) => {
                *slot = None;
                None
            }
        }
    }

    async fn publish(self, mut queue: mpsc::Receiver<Arc<Published>>) {
        while let Some(published) = queue.recv().await {
            let message = encode_envelope(&self.inner.origin, &published);
            let mut sent = None;
            // A connection that broke since its last use fails once and is replaced: the
            // second attempt goes out on a fresh one.
            for _ in 0..2 {
                let message = message.clone();
                sent = self
                    .command(|mut conn| async move {
                        let _: i64 = conn.publish(CHANNEL, message.as_ref()).await?;
                        Ok(())
                    })
                    .await;
                if sent.is_some() {
                    break;
                }
            }
            if sent.is_none() {
                tracing::warn!(
                    id = %published.event.id,
                    "redis: event not published; other replicas will not get it until they reconcile"
                );
            }
        }
    }

    async fn subscribe(self, hub: Arc<Hub>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.listen(&hub).await {
                Ok(()) => tracing::warn!("redis: subscription ended; reconnecting"),
                Err(err) => {
                    tracing::warn!(error = %err, "redis: subscription failed; reconnecting")
                }
            }
            self.set_up(false);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One subscription, until it breaks.
    async fn listen(&self, hub: &Hub) -> redis::RedisResult<()> {
        let connecting = self.inner.client.get_async_pubsub();
        let mut pubsub = tokio::time::timeout(COMMAND_TIMEOUT, connecting)
            .await
            .map_err(|_| timeout_error())??;
        tokio::time::timeout(COMMAND_TIMEOUT, pubsub.subscribe(CHANNEL))
            .await
            .map_err(|_| timeout_error())??;
        self.set_up(true);
        tracing::info!("redis: subscribed to {CHANNEL}");
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let payload: &[u8] = message.get_payload_bytes();
            match decode_envelope(payload) {
                Some((origin, _, _)) if origin == self.inner.origin => {}
                Some((_, event, webhook_at)) => {
                    hub.publish(event, webhook_at, Origin::Remote);
                }
                None => {
                    tracing::warn!(
                        bytes = payload.len(),
                        "redis: undecodable event message dropped"
                    );
                    self.inner.metrics.event_ignored("undecodable");
                }
            }
        }
        Ok(())
    }

    fn set_up(&self, up: bool) {
        let was = self.inner.up.swap(up, Ordering::AcqRel);
        self.inner.metrics.set_redis_up(up);
        self.inner.readiness.set_redis_connected(up);
        if was && !up {
            tracing::error!(
                "redis: connection lost; events reach this replica's watchers only until it is back"
            );
        }
    }
}

fn timeout_error() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis did not answer in time",
    ))
}

/// One message on [`CHANNEL`].
pub fn encode_envelope(origin: &[u8; 16], published: &Published) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + 16 + 8 + published.encoded.len());
    out.put_u8(ENVELOPE_VERSION);
    out.put_slice(origin);
    let millis = published
        .webhook_at
        .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    out.put_i64(millis);
    out.put_slice(&published.encoded);
    out.freeze()
}

/// The origin, event and webhook arrival time of a message; `None` if it is not one of ours.
pub fn decode_envelope(mut bytes: &[u8]) -> Option<([u8; 16], Event, Option<SystemTime>)> {
    if bytes.len() < 1 + 16 + 8 || bytes.get_u8() != ENVELOPE_VERSION {
        return None;
    }
    let mut origin = [0; 16];
    bytes.copy_to_slice(&mut origin);
    let millis = bytes.get_i64();
    let webhook_at =
        (millis > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(millis as u64));
    let message = EgressEvent::decode(bytes).ok()?;
    let kind = match message.event.as_str() {
        "snapshot" => EventKind::Snapshot,
        other => EventKind::from_webhook(other)?,
    };
    let info = message.egress_info.filter(|i| !i.egress_id.is_empty())?;
    let event = Event {
        kind,
        info,
        id: message.id,
        created_at: message.created_at,
        source: Source::parse(&message.source)?,
    };
    Some((origin, event, webhook_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_proto::livekit::EgressInfo;

    #[test]
    fn envelopes_round_trip_and_junk_is_refused() {
        let event = Event {
            kind: EventKind::Ended,
            info: EgressInfo {
                egress_id: "EG_1".into(),
                room_name: "r".into(),
                status: 3,
                ..Default::default()
            },
            id: "EV_1".into(),
            created_at: 9,
            source: Source::Webhook,
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let published = Published {
            encoded: Bytes::from(super::super::to_message(&event).encode_to_vec()),
            event: event.clone(),
            webhook_at: Some(at),
        };
        let bytes = encode_envelope(&[7; 16], &published);
        let (origin, back, when) = decode_envelope(&bytes).unwrap();
        assert_eq!(origin, [7; 16]);
        assert_eq!(back, event);
        assert_eq!(when, Some(at));

        assert!(decode_envelope(b"").is_none());
        assert!(decode_envelope(&[2; 40]).is_none());
        let mut wrong = bytes.to_vec();
        wrong.truncate(30);
        assert!(decode_envelope(&wrong).is_none());
    }
}
