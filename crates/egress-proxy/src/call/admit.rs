//! Concurrency limits that shed load instead of queueing it: one for the whole gateway,
//! one per client connection.
//!
//! `tower::limit::ConcurrencyLimit` makes excess calls wait for a slot, which under overload
//! only turns into deadline errors later and holds memory meanwhile. A gateway should say
//! so at once: over a limit, a call is refused (RESOURCE_EXHAUSTED) without being forwarded,
//! and the caller can back off or try another replica.
//!
//! The per-connection limit keeps one connection (one misbehaving client, or one greedy
//! multiplexed channel) from taking every global slot.
//!
//! A call holds its [`Slots`] until its door drops them: after the answer has been handed to
//! HTTP/2 in full, or the stream was reset. An answer waiting on a caller that does not read
//! is still memory the call holds; the listener drops streams that outlive their deadline
//! (see [`crate::listen`]), which bounds that wait.

use std::sync::Arc;

use egress_telemetry::Metrics;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Shed;

/// The slots of one client connection (made by the listener for each connection).
#[derive(Debug, Clone)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    /// Room for `max` calls at once on one connection.
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max)))
    }
}

/// The slots a call holds; released when dropped.
#[derive(Debug)]
pub struct Slots {
    _global: OwnedSemaphorePermit,
    _connection: Option<OwnedSemaphorePermit>,
}

/// The global and per-connection limits.
#[derive(Debug)]
pub struct Limits {
    permits: Arc<Semaphore>,
    max: usize,
    per_connection: usize,
    metrics: Metrics,
}

impl Limits {
    /// At most `max` calls in flight in all, and `per_connection` on any one connection.
    pub fn new(max: usize, per_connection: usize, metrics: Metrics) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            per_connection,
            metrics,
        }
    }

    /// Takes a call's slots on `connection` (if the door has one).
    ///
    /// # Errors
    ///
    /// The limit that is reached; counted in `egress_proxy_shed_calls_total`.
    pub fn admit(&self, connection: Option<&ConnectionSlots>) -> Result<Slots, Shed> {
        self.try_admit(connection).inspect_err(|shed| {
            self.metrics.call_shed(shed.limit());
        })
    }

    fn try_admit(&self, connection: Option<&ConnectionSlots>) -> Result<Slots, Shed> {
        // The connection's own limit first: a connection over it must not take global
        // slots from everyone else while being refused.
        let connection = connection
            .map(|slots| Arc::clone(&slots.0).try_acquire_owned())
            .transpose()
            .map_err(|_| Shed::Connection {
                max: self.per_connection,
            })?;
        let global = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| Shed::Global { max: self.max })?;
        Ok(Slots {
            _global: global,
            _connection: connection,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit_comes_first_and_slots_return_on_drop() {
        let metrics = Metrics::new();
        let limits = Limits::new(3, 2, metrics.clone());
        let busy = ConnectionSlots::new(2);
        let a = limits.admit(Some(&busy)).unwrap();
        let _b = limits.admit(Some(&busy)).unwrap();
        assert_eq!(
            limits.admit(Some(&busy)).unwrap_err(),
            Shed::Connection { max: 2 }
        );
        // The refused call took no global slot: another connection still gets the last.
        let other = ConnectionSlots::new(2);
        let _c = limits.admit(Some(&other)).unwrap();
        assert_eq!(limits.admit(None).unwrap_err(), Shed::Global { max: 3 });
        drop(a);
        let _d = limits.admit(Some(&busy)).unwrap();
        let text = metrics.encode();
        assert!(
            text.contains(r#"egress_proxy_shed_calls_total{limit="connection"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"egress_proxy_shed_calls_total{limit="global"} 1"#),
            "{text}"
        );
    }
}
