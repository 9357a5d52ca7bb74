//! The proxy as a process: configuration errors, health, draining on SIGTERM, and what
//! its log must never contain.

use std::process::Command;
use std::time::{Duration, Instant};

use egress_e2e::{API_SECRET, Proxy, ProxyOptions, closed_port, proxy_bin, sim_on};
use egress_proto::livekit::egress_client::EgressClient;
use egress_proto::livekit::{ListEgressRequest, ListEgressResponse, StopEgressRequest};
use egress_sim::{Fault, SimHandle};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Sends SIGTERM while a `ListEgress` that LiveKit holds for 800 ms is in flight on
/// `client`: the call's answer, and the exit status with the stopped proxy.
async fn sigterm_during_a_slow_call(
    sim: &SimHandle,
    mut proxy: Proxy,
    mut client: EgressClient<Channel>,
) -> (
    Result<tonic::Response<ListEgressResponse>, tonic::Status>,
    std::process::ExitStatus,
    Proxy,
) {
    sim.faults()
        .push(Fault::latency(Duration::from_millis(800)).method("ListEgress"));
    let call = tokio::spawn(async move { client.list_egress(ListEgressRequest::default()).await });
    // Let the call reach the upstream before the signal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = tokio::task::spawn_blocking(move || {
        let status = proxy.terminate(Duration::from_secs(10));
        (status, proxy)
    });
    let answer = call.await.unwrap();
    let (status, proxy) = stopped.await.unwrap();
    (answer, status, proxy)
}

/// Runs the binary with a bad configuration; returns (exit code, stderr).
fn run_expecting_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(proxy_bin())
        .args(args)
        .env_remove("LIVEKIT_URL")
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET")
        .env_remove("LIVEKIT_API_SECRET_FILE")
        .envs(env.iter().copied())
        .output()
        .expect("run egress-proxy");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_exit_2_with_one_line_saying_what_to_set() {
    // (arguments, environment, what the message must mention)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (
            &[],
            &[("LIVEKIT_API_KEY", "k"), ("LIVEKIT_API_SECRET", "s")],
            "LIVEKIT_URL",
        ),
        (
            &[],
            &[("LIVEKIT_URL", "http://127.0.0.1:7880")],
            "LIVEKIT_API_KEY",
        ),
        (
            &[],
            &[
                ("LIVEKIT_URL", "http://127.0.0.1:7880"),
                ("LIVEKIT_API_KEY", "k"),
            ],
            "LIVEKIT_API_SECRET",
        ),
        (
            &[],
            &[
                ("LIVEKIT_URL", "ftp://example.com"),
                ("LIVEKIT_API_KEY", "k"),
                ("LIVEKIT_API_SECRET", "s"),
            ],
            "LIVEKIT_URL",
        ),
        (
            &["--api-secret-file", "/nonexistent/secret"],
            &[
                ("LIVEKIT_URL", "http://127.0.0.1:7880"),
                ("LIVEKIT_API_KEY", "k"),
            ],
            "secret",
        ),
    ];
    for (args, env, mentions) in cases {
        let (code, stderr) = run_expecting_exit(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(mentions), "mentions {mentions}: {stderr}");
    }
}

#[test]
fn address_in_use_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_expecting_exit(&["--dev", "--listen", &addr], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}

async fn health(proxy: &Proxy, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(proxy.channel().await);
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check");
    response.into_inner().status()
}

async fn wait_for_health(proxy: &Proxy, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = health(proxy, "").await;
        if now == want {
            assert_eq!(health(proxy, "livekit.Egress").await, want);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {now:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_follows_upstream_reachability() {
    let port = closed_port();
    let proxy = Proxy::start(
        &format!("http://127.0.0.1:{port}"),
        ProxyOptions::default().arg("--probe-interval").arg("100ms"),
    );
    wait_for_health(&proxy, ServingStatus::NotServing).await;

    let sim = sim_on(&format!("127.0.0.1:{port}"));
    wait_for_health(&proxy, ServingStatus::Serving).await;

    sim.shutdown().await;
    wait_for_health(&proxy, ServingStatus::NotServing).await;
}

#[tokio::test]
async fn sigterm_lets_in_flight_calls_finish_then_exits_0() {
    let sim = sim_on("127.0.0.1:0");
    let proxy = Proxy::start(&sim.url(), ProxyOptions::default());
    let client = proxy.client().await;
    let (answer, status, proxy) = sigterm_during_a_slow_call(&sim, proxy, client).await;
    assert!(answer.is_ok(), "in-flight call finished: {answer:?}");
    assert_eq!(status.code(), Some(0), "{}", proxy.log());
    assert!(proxy.log().contains("draining"), "{}", proxy.log());
    assert!(
        std::net::TcpStream::connect(proxy.addr).is_err(),
        "listener closed after exit"
    );
}

/// A health `Watch` stream lasts as long as its caller likes; on SIGTERM it must hear
/// NOT_SERVING and then end, instead of holding the drain for its whole timeout.
#[tokio::test]
async fn sigterm_ends_health_watches_without_waiting_out_the_drain() {
    let sim = sim_on("127.0.0.1:0");
    let mut proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default().arg("--drain-timeout").arg("60s"),
    );
    wait_for_health(&proxy, ServingStatus::Serving).await;
    let mut watch = HealthClient::new(proxy.channel().await)
        .watch(HealthCheckRequest {
            service: "livekit.Egress".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let started = Instant::now();
    let exited = tokio::task::spawn_blocking(move || {
        let status = proxy.terminate(Duration::from_secs(20));
        (status, proxy)
    });
    let update = watch
        .message()
        .await
        .unwrap()
        .expect("a NOT_SERVING update");
    assert_eq!(update.status(), ServingStatus::NotServing);
    let end = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the stream ended");
    let status = end.expect_err("ended with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let (exit, proxy) = exited.await.unwrap();
    assert_eq!(exit.code(), Some(0), "{}", proxy.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?} of a 60 s drain timeout",
        started.elapsed()
    );
    assert!(proxy.log().contains("drained; bye"), "{}", proxy.log());
}

#[tokio::test]
async fn drain_timeout_bounds_shutdown() {
    let sim = sim_on("127.0.0.1:0");
    sim.faults()
        .push(Fault::latency(Duration::from_secs(30)).method("ListEgress"));
    let mut proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default().arg("--drain-timeout").arg("300ms"),
    );
    let mut client = proxy.client().await;
    let call = tokio::spawn(async move { client.list_egress(ListEgressRequest::default()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, proxy) = tokio::task::spawn_blocking(move || {
        let status = proxy.terminate(Duration::from_secs(10));
        (status, proxy)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{}", proxy.log());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let answer = call.await.unwrap();
    let err = answer.expect_err("cut off by the drain timeout");
    assert!(
        matches!(
            err.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn secrets_and_tokens_never_reach_the_log_or_the_caller() {
    let sim = sim_on("127.0.0.1:0");
    // Debug logging, as an operator chasing a problem would turn on.
    let proxy = Proxy::start(&sim.url(), ProxyOptions::default().env("RUST_LOG", "debug"));
    let mut client = proxy.client().await;
    client
        .list_egress(ListEgressRequest::default())
        .await
        .expect("ListEgress");
    let missing = client
        .stop_egress(StopEgressRequest {
            egress_id: "EG_missing".into(),
        })
        .await
        .expect_err("not found");
    assert_eq!(missing.code(), Code::NotFound);

    // A proxy with the wrong secret: LiveKit's 401 body echoes the token it rejected.
    let wrong = Proxy::start(
        &sim.url(),
        ProxyOptions::default()
            .env("LIVEKIT_API_SECRET", "wrong-secret-also-private")
            .env("RUST_LOG", "debug"),
    );
    let rejected = wrong
        .client()
        .await
        .list_egress(ListEgressRequest::default())
        .await
        .expect_err("401");
    assert_eq!(rejected.code(), Code::Unauthenticated);
    assert!(
        !rejected.message().contains("eyJ"),
        "the rejected token is not echoed to the caller: {}",
        rejected.message()
    );

    let tokens: Vec<String> = sim
        .requests()
        .iter()
        .filter_map(|r| r.claims.as_ref().map(|c| c.to_string()))
        .collect();
    assert!(!tokens.is_empty(), "calls were made");
    for log in [proxy.log(), wrong.log()] {
        assert!(log.contains("egress-proxy ready"), "{log}");
        assert!(!log.contains(API_SECRET), "secret in log:\n{log}");
        assert!(
            !log.contains("wrong-secret-also-private"),
            "secret in log:\n{log}"
        );
        assert!(!log.contains("eyJ"), "a JWT in log:\n{log}");
        assert!(
            !log.to_lowercase().contains("bearer "),
            "bearer token in log:\n{log}"
        );
    }
}

/// With `--io-threads`, connections are served on their own single-threaded runtimes: calls
/// over several connections (spread over the runtimes) are answered, and SIGTERM still lets
/// an in-flight call finish before a clean exit.
#[tokio::test]
async fn io_threads_serve_connections_and_drain_on_sigterm() {
    let sim = sim_on("127.0.0.1:0");
    let proxy = Proxy::start(
        &sim.url(),
        ProxyOptions::default().arg("--io-threads").arg("2"),
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(proxy.client().await);
    }
    for client in &mut clients {
        for _ in 0..5 {
            client
                .list_egress(ListEgressRequest::default())
                .await
                .expect("answered on its connection's runtime");
        }
    }

    let client = clients.pop().unwrap();
    let (answer, status, proxy) = sigterm_during_a_slow_call(&sim, proxy, client).await;
    assert!(answer.is_ok(), "in-flight call finished: {answer:?}");
    assert_eq!(status.code(), Some(0), "{}", proxy.log());
    assert!(proxy.log().contains("drained; bye"), "{}", proxy.log());
}
