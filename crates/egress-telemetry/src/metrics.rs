//! The metric registry of the gateway.

use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::labels::{CODE_NAMES, Door, RPC_LABELS, index_of};

/// Content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the latency histograms: 100 µs to 60 s, roughly 1-2.5-5
/// per decade. Calls slower than a minute land in `+Inf`.
pub const DURATION_BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Source of the token refresh count: called once per scrape.
pub type TokenRefreshSource = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Source of the allocator's figures: called once per scrape; `None` when it cannot say.
pub type HeapSource = Arc<dyn Fn() -> Option<HeapStats> + Send + Sync>;

/// What the process's allocator reports, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes the program holds allocated.
    pub allocated: u64,
    /// Bytes of the allocator's pages resident in memory: `allocated`, plus what it keeps
    /// for reuse or has not yet given back to the kernel.
    pub resident: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    door: &'static str,
    rpc: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DoorRpcLabels {
    door: &'static str,
    rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type HistogramFamily = Family<RpcLabels, Histogram, fn() -> Histogram>;
type DoorHistogramFamily = Family<DoorRpcLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The gateway's metrics, registered in one [`prometheus_client`] registry.
///
/// Cheap to clone (an `Arc` inside); every clone records into the same metrics. Label
/// values are `&'static str`, so recording never allocates once a label combination has
/// been seen.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use egress_telemetry::Metrics;
///
/// let metrics = Metrics::with_version("1.2.3");
/// metrics.observe_upstream("StopEgress", Duration::from_millis(12));
/// metrics.upstream_error("timeout");
///
/// let text = metrics.encode();
/// assert!(text.contains(r#"egress_proxy_upstream_duration_seconds_count{rpc="StopEgress"} 1"#));
/// assert!(text.contains(r#"egress_proxy_upstream_errors_total{kind="timeout"} 1"#));
/// assert!(text.contains(r#"egress_proxy_build_info{version="1.2.3"} 1"#));
/// assert!(text.ends_with("# EOF\n"));
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_duration: DoorHistogramFamily,
    upstream_duration: HistogramFamily,
    in_flight: Gauge,
    upstream_errors: Family<KindLabels, Counter>,
    upstream_retries: Family<RpcLabels, Counter>,
    shed_calls: Family<LimitLabels, Counter>,
    connections: Gauge,
    closed_connections: Family<ReasonLabels, Counter>,
    events: EventMetrics,
    scraped: Arc<Scraped>,
    handles: Handles,
}

/// The event stream's series (see the README's metrics table).
struct EventMetrics {
    watchers: Gauge,
    received: Family<SourceLabels, Counter>,
    ignored: Family<ReasonLabels, Counter>,
    delivered: Counter,
    dropped: Counter,
    webhook_rejected: Family<ReasonLabels, Counter>,
    delay: Histogram,
    redis_up: Gauge,
}

impl EventMetrics {
    fn register(registry: &mut Registry) -> Self {
        let this = Self {
            watchers: Gauge::default(),
            received: Family::default(),
            ignored: Family::default(),
            delivered: Counter::default(),
            dropped: Counter::default(),
            webhook_rejected: Family::default(),
            delay: duration_histogram(),
            redis_up: Gauge::default(),
        };
        registry.register(
            "egress_proxy_event_watchers",
            "EgressEvents/Watch streams open on this replica",
            this.watchers.clone(),
        );
        registry.register(
            "egress_proxy_events_received",
            "Egress events accepted for delivery, by source (webhook, reconcile, redis)",
            this.received.clone(),
        );
        registry.register(
            "egress_proxy_events_ignored",
            "Events not delivered, by reason (duplicate, not_egress, invalid, undecodable)",
            this.ignored.clone(),
        );
        registry.register(
            "egress_proxy_events_delivered",
            "Events written to watchers (one per watcher that got it)",
            this.delivered.clone(),
        );
        registry.register(
            "egress_proxy_events_dropped",
            "Events a watcher missed because it fell behind (the watcher is then ended)",
            this.dropped.clone(),
        );
        registry.register(
            "egress_proxy_webhooks_rejected",
            "Webhooks refused with 401 or 400, by reason",
            this.webhook_rejected.clone(),
        );
        registry.register_with_unit(
            "egress_proxy_event_delay",
            "From a webhook's arrival (at any replica) to its event being written to a watcher",
            Unit::Seconds,
            this.delay.clone(),
        );
        registry.register(
            "egress_proxy_redis_up",
            "1 while the Redis fan-out is subscribed, 0 while it reconnects or without Redis",
            this.redis_up.clone(),
        );
        this
    }
}

/// Each call's series, found by label position instead of through the families: a family
/// lookup hashes the labels and takes a lock, three times per call. A handle is taken from
/// its family the first time its labels occur, so `/metrics` shows the same series either way.
struct Handles {
    /// By `(door * RPC_LABELS.len() + rpc) * CODE_NAMES.len() + code`.
    calls: Box<[OnceLock<Counter>]>,
    /// By `door * RPC_LABELS.len() + rpc`.
    call_duration: Box<[OnceLock<Histogram>]>,
    upstream_duration: Box<[OnceLock<Histogram>]>,
}

impl Handles {
    fn new() -> Self {
        fn slots<T>(n: usize) -> Box<[OnceLock<T>]> {
            (0..n).map(|_| OnceLock::new()).collect()
        }
        Self {
            calls: slots(Door::ALL.len() * RPC_LABELS.len() * CODE_NAMES.len()),
            call_duration: slots(Door::ALL.len() * RPC_LABELS.len()),
            upstream_duration: slots(RPC_LABELS.len()),
        }
    }
}

/// Records `seconds` in the histogram of `rpc`, through its handle when `rpc` is a known label.
fn observe_rpc(
    family: &HistogramFamily,
    handles: &[OnceLock<Histogram>],
    rpc: &'static str,
    seconds: f64,
) {
    match index_of(&RPC_LABELS, rpc) {
        Some(i) => handles[i]
            .get_or_init(|| family.get_or_create(&RpcLabels { rpc }).clone())
            .observe(seconds),
        None => family.get_or_create(&RpcLabels { rpc }).observe(seconds),
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("in_flight", &self.inner.in_flight.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics whose `egress_proxy_build_info` carries this crate's version (the
    /// workspace version, shared by the proxy).
    pub fn new() -> Self {
        Self::with_version(env!("CARGO_PKG_VERSION"))
    }

    /// Metrics whose `egress_proxy_build_info` carries `version`.
    pub fn with_version(version: impl Into<String>) -> Self {
        let mut registry = Registry::default();

        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "egress_proxy_calls",
            "Egress calls answered, by front door (grpc, twirp, grpc-web), method and gRPC status code",
            calls.clone(),
        );

        let call_duration: DoorHistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "egress_proxy_call_duration",
            "Time from receiving a call to sending its status, as seen by the proxy, by front door \
             and method",
            Unit::Seconds,
            call_duration.clone(),
        );

        let upstream_duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "egress_proxy_upstream_duration",
            "Round trip of the Twirp call to LiveKit",
            Unit::Seconds,
            upstream_duration.clone(),
        );

        let in_flight = Gauge::default();
        registry.register(
            "egress_proxy_in_flight_calls",
            "gRPC calls being handled right now (health and reflection streams excluded)",
            in_flight.clone(),
        );

        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "egress_proxy_upstream_errors",
            "Failed calls to LiveKit, by kind of failure",
            upstream_errors.clone(),
        );

        let upstream_retries = Family::<RpcLabels, Counter>::default();
        registry.register(
            "egress_proxy_upstream_retries",
            "Upstream attempts after the first, by method (same X-Livekit-Request-Id)",
            upstream_retries.clone(),
        );

        let shed_calls = Family::<LimitLabels, Counter>::default();
        registry.register(
            "egress_proxy_shed_calls",
            "Calls refused with RESOURCE_EXHAUSTED, by the limit they hit (global, connection)",
            shed_calls.clone(),
        );

        let connections = Gauge::default();
        registry.register(
            "egress_proxy_connections",
            "Client connections open on the gRPC listener",
            connections.clone(),
        );

        let closed_connections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "egress_proxy_closed_connections",
            "Client connections the gateway closed itself, by reason (header_timeout, idle)",
            closed_connections.clone(),
        );

        let events = EventMetrics::register(&mut registry);

        let scraped = Arc::new(Scraped::default());
        registry.register_collector(Box::new(Arc::clone(&scraped)));

        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: version.into(),
            })
            .set(1);
        registry.register(
            "egress_proxy_build_info",
            "Always 1; the version label names the running build",
            build_info,
        );

        Self {
            inner: Arc::new(Inner {
                registry,
                calls,
                call_duration,
                upstream_duration,
                in_flight,
                upstream_errors,
                upstream_retries,
                shed_calls,
                connections,
                closed_connections,
                events,
                scraped,
                handles: Handles::new(),
            }),
        }
    }

    /// Sets where `egress_proxy_token_refreshes_total` comes from: `source` is called on
    /// every scrape and must return the number of tokens minted so far (a monotonic
    /// count). Replaces any earlier source. Until a source is set the metric is absent.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use egress_telemetry::Metrics;
    ///
    /// let mints = Arc::new(AtomicU64::new(3));
    /// let metrics = Metrics::new();
    /// assert!(!metrics.encode().contains("egress_proxy_token_refreshes_total"));
    ///
    /// let counter = Arc::clone(&mints);
    /// metrics.register_token_refreshes(Arc::new(move || counter.load(Ordering::Relaxed)));
    /// assert!(metrics.encode().contains("egress_proxy_token_refreshes_total 3\n"));
    ///
    /// mints.fetch_add(1, Ordering::Relaxed);
    /// assert!(metrics.encode().contains("egress_proxy_token_refreshes_total 4\n"));
    /// ```
    pub fn register_token_refreshes(&self, source: TokenRefreshSource) {
        *write(&self.inner.scraped.token_refreshes) = Some(source);
    }

    /// Sets where `egress_proxy_heap_allocated_bytes` and `egress_proxy_heap_resident_bytes`
    /// come from (the binary's allocator; a library does not know which one it runs on).
    /// Until a source is set, or while it returns `None`, both are absent.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use egress_telemetry::{HeapStats, Metrics};
    ///
    /// let metrics = Metrics::new();
    /// assert!(!metrics.encode().contains("egress_proxy_heap_"));
    /// metrics.register_heap(Arc::new(|| Some(HeapStats { allocated: 10, resident: 32 })));
    /// let text = metrics.encode();
    /// assert!(text.contains("egress_proxy_heap_allocated_bytes 10\n"));
    /// assert!(text.contains("egress_proxy_heap_resident_bytes 32\n"));
    /// ```
    pub fn register_heap(&self, source: HeapSource) {
        *write(&self.inner.scraped.heap) = Some(source);
    }

    /// Records the round trip of one Twirp call to LiveKit for `rpc` (the method name,
    /// e.g. `Rpc::as_str()`), whatever its outcome.
    pub fn observe_upstream(&self, rpc: &'static str, elapsed: Duration) {
        let inner = &self.inner;
        observe_rpc(
            &inner.upstream_duration,
            &inner.handles.upstream_duration,
            rpc,
            elapsed.as_secs_f64(),
        );
    }

    /// Counts one failed call to LiveKit. `kind` is a short, fixed word such as
    /// `connect`, `timeout`, `twirp`, `intermediary`, `reset`, `body`, `too_large`, `tls` or
    /// `decode` (`egress_twirp::Error::kind()` gives these and a few more).
    pub fn upstream_error(&self, kind: &'static str) {
        self.inner
            .upstream_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Counts one more attempt of a call to LiveKit for `rpc`, after a failed one.
    pub fn upstream_retry(&self, rpc: &'static str) {
        self.inner
            .upstream_retries
            .get_or_create(&RpcLabels { rpc })
            .inc();
    }

    /// Counts one call refused because `limit` (`global`, `connection`) was reached.
    pub fn call_shed(&self, limit: &'static str) {
        self.inner
            .shed_calls
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// Moves `egress_proxy_connections` by `delta` (+1 when a connection is accepted, -1
    /// when it ends).
    pub fn connections_add(&self, delta: i64) {
        self.inner.connections.inc_by(delta);
    }

    /// Counts one connection the gateway closed for `reason` (`header_timeout`, `idle`).
    pub fn connection_closed(&self, reason: &'static str) {
        self.inner
            .closed_connections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Moves `egress_proxy_event_watchers` by `delta`.
    pub fn watchers_add(&self, delta: i64) {
        self.inner.events.watchers.inc_by(delta);
    }

    /// Counts one event accepted for delivery from `source` (`webhook`, `reconcile`, `redis`).
    pub fn event_received(&self, source: &'static str) {
        self.inner
            .events
            .received
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    /// Counts one event not delivered for `reason` (`duplicate`, `not_egress`, `invalid`,
    /// `undecodable`).
    pub fn event_ignored(&self, reason: &'static str) {
        self.inner
            .events
            .ignored
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one event written to one watcher, `delay` after its webhook arrived (`None`
    /// for events that did not come from a webhook).
    pub fn event_delivered(&self, delay: Option<Duration>) {
        self.inner.events.delivered.inc();
        if let Some(delay) = delay {
            self.inner.events.delay.observe(delay.as_secs_f64());
        }
    }

    /// Counts `n` events a slow watcher missed.
    pub fn events_dropped(&self, n: u64) {
        self.inner.events.dropped.inc_by(n);
    }

    /// Counts one webhook refused for `reason` (`egress_auth::WebhookAuthError::reason`, or
    /// `invalid_body`, `too_large`, `wrong_method`).
    pub fn webhook_rejected(&self, reason: &'static str) {
        self.inner
            .events
            .webhook_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Sets `egress_proxy_redis_up`.
    pub fn set_redis_up(&self, up: bool) {
        self.inner.events.redis_up.set(i64::from(up));
    }

    /// Number of calls currently counted in `egress_proxy_in_flight_calls`.
    pub fn in_flight(&self) -> i64 {
        self.inner.in_flight.get()
    }

    /// Every metric in the OpenMetrics text format, ending in `# EOF`; serve it with
    /// [`METRICS_CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("encoding metrics into a String cannot fail");
        out
    }

    pub(crate) fn call_started(&self) {
        self.inner.in_flight.inc();
    }

    pub(crate) fn call_ended(&self) {
        self.inner.in_flight.dec();
    }

    pub(crate) fn record_call(
        &self,
        door: Door,
        rpc: &'static str,
        code: &'static str,
        elapsed: Option<Duration>,
    ) {
        let inner = &self.inner;
        let d = door as usize;
        let door = door.as_str();
        let count = || {
            let labels = CallLabels { door, rpc, code };
            inner.calls.get_or_create(&labels).clone()
        };
        match (index_of(&RPC_LABELS, rpc), index_of(&CODE_NAMES, code)) {
            (Some(r), Some(c)) => {
                inner.handles.calls[(d * RPC_LABELS.len() + r) * CODE_NAMES.len() + c]
                    .get_or_init(count)
                    .inc();
            }
            _ => {
                count().inc();
            }
        }
        if let Some(elapsed) = elapsed {
            let seconds = elapsed.as_secs_f64();
            let histogram = || {
                let labels = DoorRpcLabels { door, rpc };
                inner.call_duration.get_or_create(&labels).clone()
            };
            match index_of(&RPC_LABELS, rpc) {
                Some(r) => inner.handles.call_duration[d * RPC_LABELS.len() + r]
                    .get_or_init(histogram)
                    .observe(seconds),
                _ => histogram().observe(seconds),
            }
        }
    }
}

/// The series read from callbacks at scrape time: `egress_proxy_token_refreshes_total`
/// and the allocator's `egress_proxy_heap_*_bytes`.
#[derive(Default)]
struct Scraped {
    token_refreshes: RwLock<Option<TokenRefreshSource>>,
    heap: RwLock<Option<HeapSource>>,
}

impl fmt::Debug for Scraped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Clones the source out so that it never runs under our lock.
fn read<T: Clone>(lock: &RwLock<Option<T>>) -> Option<T> {
    lock.read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        if let Some(source) = read(&self.token_refreshes) {
            let counter = ConstCounter::new(source());
            let metric = encoder.encode_descriptor(
                "egress_proxy_token_refreshes",
                "LiveKit access tokens minted by the token cache.",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        if let Some(stats) = read(&self.heap).and_then(|source| source()) {
            for (name, help, bytes) in [
                (
                    "egress_proxy_heap_allocated",
                    "Bytes the gateway holds allocated (its allocator's count).",
                    stats.allocated,
                ),
                (
                    "egress_proxy_heap_resident",
                    "Bytes of the allocator's pages resident in memory: allocated, plus what \
                     it keeps for reuse or has not given back yet.",
                    stats.resident,
                ),
            ] {
                let gauge = ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
                let metric = encoder.encode_descriptor(
                    name,
                    help,
                    Some(&Unit::Bytes),
                    gauge.metric_type(),
                )?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_families_count_into_the_same_series() {
        let metrics = Metrics::new();
        metrics.record_call(
            Door::Grpc,
            "StopEgress",
            "OK",
            Some(Duration::from_millis(3)),
        );
        metrics.record_call(Door::Grpc, "StopEgress", "OK", None);
        metrics.record_call(Door::Grpc, "StopEgress", "NOT_FOUND", None);
        metrics.record_call(
            Door::Twirp,
            "StopEgress",
            "OK",
            Some(Duration::from_millis(2)),
        );
        // Labels outside the fixed sets take the family path.
        metrics.record_call(Door::Grpc, "custom", "OK", Some(Duration::from_millis(1)));
        metrics.observe_upstream("StopEgress", Duration::from_millis(2));
        metrics.observe_upstream("custom", Duration::from_millis(2));
        let text = metrics.encode();
        for line in [
            r#"egress_proxy_calls_total{door="grpc",rpc="StopEgress",code="OK"} 2"#,
            r#"egress_proxy_calls_total{door="grpc",rpc="StopEgress",code="NOT_FOUND"} 1"#,
            r#"egress_proxy_calls_total{door="twirp",rpc="StopEgress",code="OK"} 1"#,
            r#"egress_proxy_calls_total{door="grpc",rpc="custom",code="OK"} 1"#,
            r#"egress_proxy_call_duration_seconds_count{door="grpc",rpc="StopEgress"} 1"#,
            r#"egress_proxy_call_duration_seconds_count{door="grpc",rpc="custom"} 1"#,
            r#"egress_proxy_call_duration_seconds_count{door="twirp",rpc="StopEgress"} 1"#,
            r#"egress_proxy_upstream_duration_seconds_count{rpc="StopEgress"} 1"#,
            r#"egress_proxy_upstream_duration_seconds_count{rpc="custom"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A series appears only once its labels occurred.
        assert!(!text.contains(r#"rpc="ListEgress""#), "{text}");
    }
}
