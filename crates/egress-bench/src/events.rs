//! Events mode (`--events`): what the egress event stream costs. LiveKit-signed webhooks
//! go into a proxy's `--webhook-listen` at a steady rate while N `EgressEvents/Watch` streams
//! read them, on one replica and across two replicas through Redis. Every (event, watcher)
//! delivery's delay is taken from just before the webhook's POST to the watcher reading it.
//!
//! The watchers share nothing that needs a lock: the poster writes each event's send time
//! once into a preallocated slot (indexed by the sequence number carried in the egress id),
//! each watcher keeps its delays in its own preallocated vector and publishes how many
//! events it read in its own cache line.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use egress_auth::Credentials;
use egress_proto::egress_gateway::v1::egress_events_client::EgressEventsClient;
use egress_proto::egress_gateway::v1::{EgressEvent, WatchEgressRequest};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::load::{self, CallStats, Monitor, ProxyTarget};
use crate::procs::{self, ChildGuard, Pid, ReadyOn};
use crate::report::{self, EventLevel, EventsRun, Memory, NamedUsage, Report};
use crate::{API_KEY, API_SECRET, Args, BenchError, ProxyLaunch};

/// Egress ids are this prefix and the event's sequence number.
const EGRESS_PREFIX: &str = "EG_bench_";
/// Sequence numbers reserved for warm-up events (sent one at a time until one reaches
/// every watcher: on two replicas, the first may go out before B has subscribed to Redis).
const WARMUP_EVENTS: usize = 10;
/// How long a warm-up event may take to reach every watcher before the next is sent.
const WARMUP_WAIT: Duration = Duration::from_secs(3);
/// After the last webhook, how long deliveries may stall before the rest count as missed.
const DELIVERY_STALL: Duration = Duration::from_secs(3);
/// The longest a level's window may last (posting and reading) before the events not yet
/// read count as missed.
const DELIVERY_GIVE_UP: Duration = Duration::from_secs(180);

/// Send times and read counts shared by the poster and the watchers.
struct Board {
    base: Instant,
    /// Per sequence number: nanoseconds after `base` just before its POST; 0 for none.
    sent_ns: Vec<AtomicU64>,
    /// Events read so far, per watcher; only that watcher writes its counter.
    read: Vec<Counter>,
    /// Sequence numbers below this are warm-up events: counted, not measured.
    measured_from: usize,
}

/// One watcher's count, alone in its cache line.
#[repr(align(64))]
struct Counter(AtomicU64);

impl Board {
    fn new(events: usize, watchers: usize, measured_from: usize) -> Self {
        Self {
            base: Instant::now(),
            sent_ns: (0..events).map(|_| AtomicU64::new(0)).collect(),
            read: (0..watchers).map(|_| Counter(AtomicU64::new(0))).collect(),
            measured_from,
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Events read by all watchers together.
    fn read_total(&self) -> u64 {
        self.read.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// The sequence number an event carries in its egress id.
fn sequence(event: &EgressEvent) -> Option<usize> {
    event
        .egress_info
        .as_ref()?
        .egress_id
        .strip_prefix(EGRESS_PREFIX)?
        .parse()
        .ok()
}

/// What one watcher saw.
struct WatcherResult {
    delays_ns: Vec<u64>,
    /// Why the stream ended before it was told to stop.
    error: Option<String>,
}

/// One watch stream: reads until `stop` flips, recording the delay of every measured event.
async fn watcher(
    channel: Channel,
    board: Arc<Board>,
    index: usize,
    capacity: usize,
    mut stop: watch::Receiver<bool>,
) -> WatcherResult {
    let mut delays_ns = Vec::with_capacity(capacity);
    let opened = EgressEventsClient::new(channel)
        .watch(WatchEgressRequest::default())
        .await;
    let mut stream = match opened {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return WatcherResult {
                delays_ns,
                error: Some(format!("watch: {:?}: {}", status.code(), status.message())),
            };
        }
    };
    let counter = &board.read[index].0;
    let mut read = 0;
    let error = loop {
        let message = tokio::select! {
            message = stream.message() => message,
            _ = stop.changed() => break None,
        };
        match message {
            Ok(Some(event)) => {
                let now = board.now_ns();
                if let Some(seq) = sequence(&event)
                    && seq >= board.measured_from
                    && let Some(sent) = board.sent_ns.get(seq)
                {
                    let sent = sent.load(Ordering::Acquire);
                    if sent != 0 {
                        delays_ns.push(now.saturating_sub(sent));
                    }
                }
                read += 1;
                counter.store(read, Ordering::Relaxed);
            }
            Ok(None) => break Some("the stream ended".to_owned()),
            Err(status) => break Some(format!("{:?}: {}", status.code(), status.message())),
        }
    };
    WatcherResult { delays_ns, error }
}

/// Posts LiveKit-signed webhooks to one proxy's receiver.
struct Poster {
    http: reqwest::Client,
    url: String,
    credentials: Credentials,
    /// Makes this level's event ids unique.
    tag: String,
}

impl Poster {
    fn new(webhook_addr: &str, tag: String) -> Result<Self, BenchError> {
        let http = load::http_client(reqwest::Client::builder().timeout(Duration::from_secs(10)))?;
        Ok(Self {
            http,
            url: format!("http://{webhook_addr}/webhook"),
            credentials: Credentials::new(API_KEY, API_SECRET),
            tag,
        })
    }

    /// Posts event `seq`, noting its send time on `board` just before the POST.
    async fn post(&self, board: &Board, seq: usize) -> Result<(), String> {
        let created = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = format!(
            r#"{{"event":"egress_updated","egressInfo":{{"egressId":"{EGRESS_PREFIX}{seq}","roomName":"bench","status":"EGRESS_ACTIVE"}},"id":"EV_{}_{seq}","createdAt":"{created}"}}"#,
            self.tag
        );
        let token =
            egress_auth::sign_webhook(&self.credentials, body.as_bytes(), SystemTime::now())
                .map_err(|e| format!("signing the webhook: {e}"))?;
        let slot = &board.sent_ns[seq];
        slot.store(board.now_ns(), Ordering::Release);
        let result = self
            .http
            .post(&self.url)
            .header(AUTHORIZATION, token)
            .header(CONTENT_TYPE, "application/webhook+json")
            .body(body)
            .send()
            .await;
        let outcome = match result {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                let _ = response.bytes().await;
                Ok(())
            }
            Ok(response) => Err(format!("webhook: HTTP {}", response.status())),
            Err(err) => Err(format!("webhook: {err}")),
        };
        if outcome.is_err() {
            slot.store(0, Ordering::Release);
        }
        outcome
    }
}

/// The webhooks of a measurement window.
#[derive(Debug, Default)]
struct Posted {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
    /// From the first POST to the last one's start.
    posting: Duration,
}

/// Posts events `from..from + count` at `rate` per second, each in its own task so that a
/// slow answer does not hold the next one back, and waits for every answer.
async fn post_at_rate(
    poster: &Arc<Poster>,
    board: &Arc<Board>,
    from: usize,
    count: usize,
    rate: f64,
) -> Posted {
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let poster = Arc::clone(poster);
        let board = Arc::clone(board);
        tasks.push(tokio::spawn(
            async move { poster.post(&board, from + i).await },
        ));
    }
    let mut posted = Posted {
        posting: start.elapsed(),
        ..Default::default()
    };
    for task in tasks {
        match task.await {
            Ok(Ok(())) => posted.ok += 1,
            Ok(Err(err)) => {
                posted.failed += 1;
                posted.first_error.get_or_insert(err);
            }
            Err(err) => {
                posted.failed += 1;
                posted
                    .first_error
                    .get_or_insert(format!("post task: {err}"));
            }
        }
    }
    posted
}

/// Waits until the watchers have read `target` events in all, or until their count has
/// not moved for `stall` (or `give_up` has passed). Returns whether the target was reached.
async fn wait_for_reads(board: &Board, target: u64, stall: Duration, give_up: Duration) -> bool {
    let began = Instant::now();
    let mut last = board.read_total();
    let mut moved = Instant::now();
    loop {
        if last >= target {
            return true;
        }
        if moved.elapsed() >= stall || began.elapsed() >= give_up {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = board.read_total();
        if now != last {
            last = now;
            moved = Instant::now();
        }
    }
}

/// A free loopback port (closed again, for a child to bind).
fn free_port() -> Result<u16, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `redis-server` on a free loopback port without persistence; killed when dropped.
fn start_redis(binary: &Path) -> Result<(ChildGuard, u16), BenchError> {
    let port = free_port()?;
    let mut cmd = Command::new(binary);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(std::env::temp_dir());
    let (guard, _) = procs::spawn_until_ready(
        "redis-server",
        cmd,
        ReadyOn::Stdout("Ready to accept connections"),
    )
    .map_err(|e| {
        BenchError(format!(
            "{e}; two replicas need redis-server (Debian package redis-server, or \
             --redis-server PATH), or run only --replicas 1"
        ))
    })?;
    Ok((guard, port))
}

/// What every level shares.
struct Bench<'a> {
    args: &'a Args,
    bin_dir: &'a Path,
    sim_url: String,
    ticks_per_sec: u64,
}

impl Bench<'_> {
    fn start_proxy(&self, extra: Vec<String>) -> Result<crate::Proxy, BenchError> {
        let mut launch = ProxyLaunch::new(self.args, &self.sim_url);
        launch.per_connection = self.args.watchers_per_connection;
        launch.extra = [extra, self.args.proxy_args.clone()].concat();
        let proxy = crate::start_proxy(self.bin_dir, launch)?;
        if proxy.admin.is_none() {
            return Err(BenchError(
                "this egress-proxy has no admin listener (its /metrics counts the watchers); \
                 build the current one"
                    .to_owned(),
            ));
        }
        Ok(proxy)
    }

    /// One level: `replicas` proxies (and Redis for two), `watchers` watch streams on the
    /// last proxy, webhooks to the first.
    async fn level(&self, replicas: usize, watchers: usize) -> Result<EventLevel, BenchError> {
        let args = self.args;
        let redis = if replicas == 2 {
            Some(start_redis(&args.redis_server)?)
        } else {
            None
        };
        let mut common = vec![
            // Reconciliation polls LiveKit while anyone watches; not what is measured here.
            "--reconcile-interval".to_owned(),
            "1h".to_owned(),
            "--max-watchers".to_owned(),
            watchers.max(20_000).to_string(),
        ];
        if let Some((_, port)) = &redis {
            common.extend([
                "--redis-url".to_owned(),
                format!("redis://127.0.0.1:{port}"),
            ]);
        }
        let webhook_addr = format!("127.0.0.1:{}", free_port()?);
        let mut with_webhook = common.clone();
        with_webhook.extend(["--webhook-listen".to_owned(), webhook_addr.clone()]);
        let receiver = self.start_proxy(with_webhook)?;
        let other = if replicas == 2 {
            Some(self.start_proxy(common)?)
        } else {
            None
        };
        let watched = other.as_ref().unwrap_or(&receiver);
        let admin = watched.admin.clone().unwrap_or_default();
        let poster = Arc::new(Poster::new(
            &webhook_addr,
            format!("{replicas}r{watchers}w{}", std::process::id()),
        )?);

        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = watched.pid().status_kib("VmRSS").unwrap_or(0);

        let per_connection = args.watchers_per_connection;
        let connections = watchers.div_ceil(per_connection);
        let target = ProxyTarget::connect(&watched.addr, connections).await?;
        let events = (args.event_rate * args.duration.as_secs_f64())
            .round()
            .max(1.0) as usize;
        let board = Arc::new(Board::new(WARMUP_EVENTS + events, watchers, WARMUP_EVENTS));
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks: Vec<_> = (0..watchers)
            .map(|index| {
                tokio::spawn(watcher(
                    target.channels()[index / per_connection].clone(),
                    Arc::clone(&board),
                    index,
                    events,
                    stop_rx.clone(),
                ))
            })
            .collect();
        let stop_and_collect = |tasks: Vec<tokio::task::JoinHandle<WatcherResult>>| {
            let _ = stop_tx.send(true);
            async move {
                let mut results = Vec::with_capacity(tasks.len());
                for task in tasks {
                    results.push(task.await.unwrap_or_else(|err| WatcherResult {
                        delays_ns: Vec::new(),
                        error: Some(format!("watcher task: {err}")),
                    }));
                }
                results
            }
        };

        // Every watcher open: the proxy counts them.
        let open_by =
            Instant::now() + Duration::from_secs(30) + Duration::from_millis(watchers as u64 * 2);
        loop {
            let open = load::metric(&poster.http, &admin, "egress_proxy_event_watchers").await;
            if open.is_some_and(|n| n >= watchers as f64) {
                break;
            }
            let ended = tasks.iter().filter(|t| t.is_finished()).count();
            if ended > 0 || Instant::now() >= open_by {
                let results = stop_and_collect(tasks).await;
                let first = results.into_iter().find_map(|r| r.error);
                return Err(BenchError(format!(
                    "{watchers} watchers did not all open on {} (proxy counts {open:?}; {ended} \
                     ended{})",
                    watched.addr,
                    first.map_or(String::new(), |e| format!(", first: {e}"))
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle = watched.pid().status_kib("VmRSS").unwrap_or(0);
        eprintln!(
            "[bench] {watchers} watchers open over {connections} connections, {}: proxy RSS {} → {}",
            if replicas == 1 {
                "one replica"
            } else {
                "two replicas"
            },
            report::fmt_mib(rss_before),
            report::fmt_mib(rss_idle),
        );

        // Warm-up: one event through to every watcher (on two replicas this also proves that
        // replica B has subscribed to Redis).
        let mut warmed = false;
        for seq in 0..WARMUP_EVENTS {
            let before = board.read_total();
            poster.post(&board, seq).await.map_err(|e| {
                BenchError(format!("the warm-up webhook to {webhook_addr} failed: {e}"))
            })?;
            if wait_for_reads(&board, before + watchers as u64, WARMUP_WAIT, WARMUP_WAIT).await {
                warmed = true;
                break;
            }
        }
        if !warmed {
            let _ = stop_and_collect(tasks).await;
            return Err(BenchError(format!(
                "no warm-up event reached all {watchers} watchers within {WARMUP_WAIT:?} \
                 ({WARMUP_EVENTS} tried)"
            )));
        }
        // A late copy of an earlier warm-up event must not count as a measured read.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let baseline = board.read_total();

        let mut pids = vec![receiver.pid()];
        let mut names = vec![if replicas == 1 { "proxy" } else { "proxy A" }];
        if let Some(other) = &other {
            pids.push(other.pid());
            names.push("proxy B");
        }
        let proxies = pids.len();
        pids.push(Pid::SelfProcess);
        names.push("load generator");
        if let Some((redis, _)) = &redis {
            pids.push(Pid::Child(redis.pid()));
            names.push("redis-server");
        }
        // The window: from the first webhook until every event has been read (or the reads
        // stalled).
        let start = Instant::now();
        let monitor = Monitor::start(pids, start, start + DELIVERY_GIVE_UP);
        let posted = post_at_rate(&poster, &board, WARMUP_EVENTS, events, args.event_rate).await;
        let expected = posted.ok * watchers as u64;
        wait_for_reads(
            &board,
            baseline + expected,
            DELIVERY_STALL,
            DELIVERY_GIVE_UP.saturating_sub(start.elapsed()),
        )
        .await;
        let window = start.elapsed();
        let results = stop_and_collect(tasks).await;

        let watchers_ended = results.iter().filter(|r| r.error.is_some()).count() as u64;
        let first_watch_error = results.iter().find_map(|r| r.error.clone());
        let mut delays_ns = Vec::with_capacity(expected as usize);
        for result in results {
            delays_ns.extend(result.delays_ns);
        }
        let deliveries = delays_ns.len() as u64;
        let missed = expected.saturating_sub(deliveries);
        let usage = monitor.finish(deliveries, window, self.ticks_per_sec);
        let delay = CallStats::from_latencies_ns(delays_ns, missed, window);
        let proxy_cpu_us: f64 = usage.processes[..proxies].iter().map(|u| u.cpu_us).sum();
        let proxy_cpu_us_per_delivery = if deliveries > 0 {
            proxy_cpu_us / deliveries as f64
        } else {
            0.0
        };
        let level = EventLevel {
            replicas,
            watchers,
            connections,
            events_posted: posted.ok,
            events_failed: posted.failed,
            first_post_error: posted.first_error,
            events_per_s: posted.ok as f64
                / posted.posting.as_secs_f64().max(1.0 / args.event_rate),
            deliveries,
            missed,
            delay,
            watchers_ended,
            first_watch_error,
            proxy_cpu_us_per_delivery,
            usage: names
                .into_iter()
                .zip(usage.processes)
                .map(|(name, usage)| NamedUsage {
                    process: name.to_owned(),
                    usage,
                })
                .collect(),
            other_cores: usage.other_cores,
            rss_before_watchers_kib: rss_before,
            rss_watchers_idle_kib: rss_idle,
            rss_per_idle_watcher_kib: rss_idle.saturating_sub(rss_before) as f64 / watchers as f64,
        };
        eprintln!(
            "[bench] {watchers} watchers, {}: {} events, {} deliveries, {} missed, delay p50 {}, \
             p99 {}, proxy CPU/event {}",
            if replicas == 1 {
                "one replica"
            } else {
                "two replicas"
            },
            level.events_posted,
            level.deliveries,
            level.missed,
            report::fmt_us(level.delay.p50_us),
            report::fmt_us(level.delay.p99_us),
            report::fmt_us(level.proxy_cpu_us_per_delivery),
        );
        // The watchers are gone; now the proxies (and Redis) may stop.
        drop(target);
        drop(other);
        drop(receiver);
        drop(redis);
        Ok(level)
    }
}

/// The events mode: every `--replicas` setup at every `--watchers` count, then the report.
pub async fn run(args: &Args, bin_dir: &Path, threads: usize) -> Result<(), BenchError> {
    let ticks_per_sec = procs::clock_ticks_per_sec();
    let (sim, sim_url) = crate::start_sim(args.sim, bin_dir)?;
    eprintln!("[bench] simulator at {sim_url}");
    let bench = Bench {
        args,
        bin_dir,
        sim_url,
        ticks_per_sec,
    };
    let mut levels = Vec::new();
    for &replicas in &args.replicas {
        for &watchers in &args.watchers {
            levels.push(bench.level(replicas, watchers).await?);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(sim);

    let checks = report::event_checks(&levels);
    let mut run_info = crate::run_info(
        args,
        bin_dir,
        threads,
        ticks_per_sec,
        format!(
            "POST /webhook (egress_updated) → {}/Watch",
            egress_proto::EVENTS_SERVICE
        ),
    );
    // Settings of the call benchmark, not used here.
    run_info.concurrency.clear();
    run_info.warmup_s = 0.0;
    let events = EventsRun {
        event_rate: args.event_rate,
        watchers_per_connection: args.watchers_per_connection,
        levels,
    };
    report::print_events(&run_info, &events, &checks);
    let report = Report {
        run: run_info,
        levels: Vec::new(),
        memory: Memory {
            rss_idle_kib: events
                .levels
                .first()
                .map_or(0, |l| l.rss_before_watchers_kib),
            ..Default::default()
        },
        all_pass: checks.iter().all(|c| c.pass),
        checks,
        soak: Vec::new(),
        events: Some(events),
        threads: Vec::new(),
    };
    crate::write_json(args, &report)
}
