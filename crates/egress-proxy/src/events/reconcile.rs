//! Reconciliation: while anyone watches, poll LiveKit's `ListEgress` (active only) every
//! `--reconcile-interval` (jittered ±20 %) and deliver what no webhook said.
//!
//! LiveKit drops webhooks it could not deliver (after a few retries, or when older than
//! about 30 s), so a stream fed by webhooks alone can miss an `egress_ended` and show an
//! egress active forever. The poll finds:
//! - an egress that is new or changed status with no event: delivered as `egress_updated`;
//! - an egress that left the active list without `egress_ended`: looked up by id, and its
//!   final state delivered as `egress_ended`.
//!
//! Both carry `source: "reconcile"` and an id `reconcile-<egress>-<status>-<time>`. Without a
//! webhook listener this alone drives the stream, one interval behind. With Redis, one replica
//! at a time holds the reconcile lease, so N replicas do not poll LiveKit N times.

use std::sync::Arc;
use std::time::Duration;

use egress_core::events::{Event, EventKind, Source, is_finished};
use egress_proto::livekit::{EgressInfo, ListEgressRequest, ListEgressResponse};
use egress_twirp::{CallOptions, TwirpClient};
use rand::Rng as _;

use super::redis::Fanout;
use super::{Hub, Origin, unix_now};

/// Budget of one `ListEgress` call of the poll.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most pages read in one poll (LiveKit Cloud paginates; the open-source server does not).
const MAX_PAGES: usize = 100;

/// Polls while anyone watches, until the task is dropped.
pub async fn run(hub: Arc<Hub>, client: TwirpClient, interval: Duration, redis: Option<Fanout>) {
    loop {
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::time::sleep(interval.mul_f64(jitter)).await;
        if hub.watchers() == 0 {
            // Nobody to tell: stop polling, and learn afresh when someone watches again.
            hub.reconciler().reset();
            continue;
        }
        if let Some(redis) = &redis
            && !redis.hold_reconcile_lease(interval * 3).await
        {
            hub.reconciler().reset();
            continue;
        }
        if let Err(err) = poll_once(&hub, &client).await {
            tracing::warn!(error = %err, "reconcile: ListEgress failed; will retry");
        }
    }
}

/// One poll: list the active egresses, deliver the drift.
///
/// # Errors
///
/// The listing failed (nothing is delivered; the next poll tries again).
pub async fn poll_once(hub: &Hub, client: &TwirpClient) -> Result<(), egress_twirp::Error> {
    let active = list(
        client,
        ListEgressRequest {
            active: true,
            ..Default::default()
        },
    )
    .await?;
    let drift = hub.reconciler().poll(&active);
    let now = unix_now();
    for info in drift.changed {
        let event = Event::made(EventKind::Updated, Source::Reconcile, info, now);
        hub.publish(event, None, Origin::Local);
    }
    for egress_id in drift.vanished {
        let found = list(
            client,
            ListEgressRequest {
                egress_id: egress_id.clone(),
                ..Default::default()
            },
        )
        .await;
        match found {
            Ok(items) => match items.into_iter().find(|i| i.egress_id == egress_id) {
                Some(info) if is_finished(info.status) => {
                    let event = Event::made(EventKind::Ended, Source::Reconcile, info, now);
                    hub.publish(event, None, Origin::Local);
                }
                // Still running after all (it fell off a page): keep watching it.
                Some(info) => hub.reconciler().observe(&info),
                None => hub.reconciler().forget(&egress_id),
            },
            Err(err) if err.twirp_code() == Some(egress_twirp::TwirpCode::NotFound) => {
                hub.reconciler().forget(&egress_id);
            }
            Err(err) => {
                tracing::warn!(%egress_id, error = %err, "reconcile: lookup failed; will retry");
            }
        }
    }
    Ok(())
}

/// Every egress `request` lists, across pages.
pub(crate) async fn list(
    client: &TwirpClient,
    mut request: ListEgressRequest,
) -> Result<Vec<EgressInfo>, egress_twirp::Error> {
    let mut items = Vec::new();
    for _ in 0..MAX_PAGES {
        let answer: ListEgressResponse = client
            .call_typed(
                "ListEgress",
                &request,
                &CallOptions::new().with_timeout(POLL_TIMEOUT),
            )
            .await?;
        items.extend(answer.items);
        match answer.next_page_token {
            Some(next) if !next.token.is_empty() => request.page_token = Some(next),
            _ => break,
        }
    }
    Ok(items)
}
