//! `MetricsLayer` around a small fake gRPC service: trailers-only errors, answers with
//! trailers, bodies that end badly, abandoned calls, and the same over real HTTP/2.

mod common;

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use common::{sample, value};
use egress_telemetry::{Metrics, MetricsLayer, MetricsService};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, stream};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{Layer, Service, ServiceExt};

type FakeBody = BoxBody<Bytes, Infallible>;

/// What the fake service answers, chosen by the request's `x-answer` header.
fn fake(req: Request<Empty<Bytes>>) -> BoxFuture<'static, Result<Response<FakeBody>, io::Error>> {
    let answer = req
        .headers()
        .get("x-answer")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let (kind, code) = answer.split_once(':').unwrap_or((&answer, ""));
    let code = code.to_owned();
    match kind {
        // How tonic's `Status::into_http` answers: status in the head, empty body.
        "trailers-only" => ready(grpc_head(&code, empty())),
        // A unary answer: one message, then the status in the trailers.
        "trailers" => ready(grpc_head("", frames(vec![data(), trailers(&code)]))),
        "no-trailers" => ready(grpc_head("", frames(vec![data()]))),
        // Sends a message, then never finishes.
        "stall" => {
            let body = stream::iter(vec![Ok(data())]).chain(stream::pending());
            ready(grpc_head("", BoxBody::new(StreamBody::new(body))))
        }
        "http404" => {
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::NOT_FOUND;
            ready(response)
        }
        "error" => async { Err(io::Error::other("service failed")) }.boxed(),
        "pending" => std::future::pending().boxed(),
        other => panic!("unknown x-answer {other:?}"),
    }
}

fn ready(
    response: Response<FakeBody>,
) -> BoxFuture<'static, Result<Response<FakeBody>, io::Error>> {
    std::future::ready(Ok(response)).boxed()
}

fn grpc_head(code: &str, body: FakeBody) -> Response<FakeBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    if !code.is_empty() {
        headers.insert("grpc-status", HeaderValue::from_str(code).unwrap());
        headers.insert("grpc-message", HeaderValue::from_static("fake"));
    }
    response
}

fn empty() -> FakeBody {
    BoxBody::new(Empty::new().map_err(|never| match never {}))
}

fn frames(frames: Vec<Frame<Bytes>>) -> FakeBody {
    BoxBody::new(StreamBody::new(stream::iter(frames.into_iter().map(Ok))))
}

fn data() -> Frame<Bytes> {
    // A gRPC message frame: uncompressed, length 2, two bytes of protobuf.
    Frame::data(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 0x01]))
}

fn trailers(code: &str) -> Frame<Bytes> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_str(code).unwrap());
    Frame::trailers(trailers)
}

fn request(path: &str, answer: &str) -> Request<Empty<Bytes>> {
    Request::post(path)
        .header("content-type", "application/grpc")
        .header("x-answer", answer)
        .body(Empty::new())
        .unwrap()
}

type FakeService = tower::util::ServiceFn<
    fn(Request<Empty<Bytes>>) -> BoxFuture<'static, Result<Response<FakeBody>, io::Error>>,
>;

fn service(metrics: &Metrics) -> MetricsService<FakeService> {
    let fake: fn(_) -> _ = fake;
    MetricsLayer::new(metrics.clone()).layer(tower::service_fn(fake))
}

fn calls(rpc: &str, code: &str) -> String {
    format!(r#"egress_proxy_calls_total{{door="grpc",rpc="{rpc}",code="{code}"}}"#)
}

fn duration_count(rpc: &str) -> String {
    format!(r#"egress_proxy_call_duration_seconds_count{{door="grpc",rpc="{rpc}"}}"#)
}

/// Polls the body to its end, returning the trailers.
async fn drain<B: Body + Unpin>(mut body: B) -> Option<HeaderMap>
where
    B::Error: std::fmt::Debug,
{
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        if let Ok(t) = frame.unwrap().into_trailers() {
            trailers = Some(t);
        }
    }
    trailers
}

#[tokio::test]
async fn trailers_only_error_is_recorded_at_head_time() {
    let metrics = Metrics::new();
    let response = service(&metrics)
        .oneshot(request("/livekit.Egress/StopEgress", "trailers-only:5"))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "5");
    // Recorded before the body is even looked at.
    assert_eq!(metrics.in_flight(), 0);
    let text = metrics.encode();
    assert_eq!(value(&text, &calls("StopEgress", "NOT_FOUND")), 1.0);
    assert_eq!(value(&text, &duration_count("StopEgress")), 1.0);
    assert_eq!(value(&text, "egress_proxy_in_flight_calls"), 0.0);

    // Dropping (or draining) the empty body records nothing more.
    drop(response);
    let text = metrics.encode();
    assert_eq!(value(&text, &calls("StopEgress", "NOT_FOUND")), 1.0);
    assert_eq!(sample(&text, &calls("StopEgress", "CANCELLED")), None);
}

#[tokio::test]
async fn status_in_trailers_is_recorded_when_the_body_ends() {
    let metrics = Metrics::new();
    let response = service(&metrics)
        .oneshot(request("/livekit.Egress/ListEgress", "trailers:0"))
        .await
        .unwrap();
    // Head sent, status not yet: the call is still in flight.
    assert_eq!(metrics.in_flight(), 1);
    assert_eq!(sample(&metrics.encode(), &calls("ListEgress", "OK")), None);

    let trailers = drain(response.into_body()).await.unwrap();
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(metrics.in_flight(), 0);
    let text = metrics.encode();
    assert_eq!(value(&text, &calls("ListEgress", "OK")), 1.0);
    assert_eq!(value(&text, &duration_count("ListEgress")), 1.0);

    // A failure status in the trailers.
    let response = service(&metrics)
        .oneshot(request("/livekit.Egress/UpdateLayout", "trailers:14"))
        .await
        .unwrap();
    drain(response.into_body()).await;
    let text = metrics.encode();
    assert_eq!(value(&text, &calls("UpdateLayout", "UNAVAILABLE")), 1.0);
    assert_eq!(metrics.in_flight(), 0);
}

#[tokio::test]
async fn every_egress_rpc_has_its_own_label() {
    let metrics = Metrics::new();
    let mut svc = service(&metrics);
    for rpc in egress_core::Rpc::ALL {
        let path = format!("/livekit.Egress/{}", rpc.as_str());
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(request(&path, "trailers-only:3"))
            .await
            .unwrap();
        drop(response);
    }
    let text = metrics.encode();
    for rpc in egress_core::Rpc::ALL {
        assert_eq!(value(&text, &calls(rpc.as_str(), "INVALID_ARGUMENT")), 1.0);
    }
}

#[tokio::test]
async fn dropped_response_future_is_cancelled() {
    let metrics = Metrics::new();
    let mut svc = service(&metrics);
    let mut call = svc.call(request("/livekit.Egress/StartEgress", "pending"));
    assert!(futures_util::poll!(Pin::new(&mut call)).is_pending());
    assert_eq!(metrics.in_flight(), 1);
    assert_eq!(
        value(&metrics.encode(), "egress_proxy_in_flight_calls"),
        1.0
    );

    drop(call);
    assert_eq!(metrics.in_flight(), 0);
    let text = metrics.encode();
    assert_eq!(value(&text, &calls("StartEgress", "CANCELLED")), 1.0);
    assert_eq!(value(&text, &duration_count("StartEgress")), 1.0);

    // Never polled at all: still counted and released.
    let call = svc.call(request("/livekit.Egress/StartEgress", "pending"));
    assert_eq!(metrics.in_flight(), 1);
    drop(call);
    assert_eq!(metrics.in_flight(), 0);
    assert_eq!(
        value(&metrics.encode(), &calls("StartEgress", "CANCELLED")),
        2.0
    );
}

#[tokio::test]
async fn dropped_body_before_the_status_is_cancelled() {
    let metrics = Metrics::new();
    let response = service(&metrics)
        .oneshot(request("/livekit.Egress/StartWebEgress", "stall"))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    assert_eq!(metrics.in_flight(), 1);
    drop(body);
    assert_eq!(metrics.in_flight(), 0);
    assert_eq!(
        value(&metrics.encode(), &calls("StartWebEgress", "CANCELLED")),
        1.0
    );
}

#[tokio::test]
async fn body_without_status_is_unknown() {
    let metrics = Metrics::new();
    let response = service(&metrics)
        .oneshot(request("/livekit.Egress/StopEgress", "no-trailers"))
        .await
        .unwrap();
    assert!(drain(response.into_body()).await.is_none());
    assert_eq!(metrics.in_flight(), 0);
    assert_eq!(
        value(&metrics.encode(), &calls("StopEgress", "UNKNOWN")),
        1.0
    );
}

#[tokio::test]
async fn http_errors_and_service_errors() {
    let metrics = Metrics::new();
    // No grpc-status and HTTP 404: a gRPC client sees UNIMPLEMENTED.
    let response = service(&metrics)
        .oneshot(request("/not.a.Service/Method", "http404"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The inner service failing outright.
    let err = service(&metrics)
        .oneshot(request("/livekit.Egress/ListEgress", "error"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "service failed");

    assert_eq!(metrics.in_flight(), 0);
    let text = metrics.encode();
    assert_eq!(value(&text, &calls("other", "UNIMPLEMENTED")), 1.0);
    assert_eq!(value(&text, &calls("ListEgress", "UNKNOWN")), 1.0);
}

#[tokio::test]
async fn unknown_methods_are_other_and_probes_are_not_timed() {
    let metrics = Metrics::new();
    let svc = service(&metrics);
    let unknown = svc
        .clone()
        .oneshot(request("/livekit.Egress/Nope", "trailers-only:12"))
        .await
        .unwrap();
    drop(unknown);

    // A health Watch stream: open for a long time, but not "in flight".
    let watch = svc
        .clone()
        .oneshot(request("/grpc.health.v1.Health/Watch", "stall"))
        .await
        .unwrap();
    assert_eq!(metrics.in_flight(), 0);
    drop(watch);
    let check = svc
        .clone()
        .oneshot(request("/grpc.health.v1.Health/Check", "trailers:0"))
        .await
        .unwrap();
    drain(check.into_body()).await;
    let reflection = svc
        .oneshot(request(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "trailers:0",
        ))
        .await
        .unwrap();
    drain(reflection.into_body()).await;

    assert_eq!(metrics.in_flight(), 0);
    let text = metrics.encode();
    assert_eq!(value(&text, &calls("other", "UNIMPLEMENTED")), 1.0);
    assert_eq!(value(&text, &duration_count("other")), 1.0);
    assert_eq!(value(&text, &calls("health", "CANCELLED")), 1.0);
    assert_eq!(value(&text, &calls("health", "OK")), 1.0);
    assert_eq!(value(&text, &calls("reflection", "OK")), 1.0);
    assert_eq!(sample(&text, &duration_count("health")), None);
    assert_eq!(sample(&text, &duration_count("reflection")), None);
}

#[tokio::test]
async fn durations_land_in_the_right_bucket() {
    let metrics = Metrics::new();
    let slow = tower::service_fn(|_req: Request<Empty<Bytes>>| async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok::<_, Infallible>(grpc_head("0", empty()))
    });
    MetricsLayer::new(metrics.clone())
        .layer(slow)
        .oneshot(request("/livekit.Egress/ListEgress", ""))
        .await
        .unwrap();
    let text = metrics.encode();
    let bucket = |le: &str| {
        value(
            &text,
            &format!(
                r#"egress_proxy_call_duration_seconds_bucket{{le="{le}",door="grpc",rpc="ListEgress"}}"#
            ),
        )
    };
    assert_eq!(bucket("0.025"), 0.0);
    assert_eq!(bucket("0.05"), 1.0);
    assert_eq!(bucket("+Inf"), 1.0);
    let sum = value(
        &text,
        r#"egress_proxy_call_duration_seconds_sum{door="grpc",rpc="ListEgress"}"#,
    );
    assert!((0.03..0.05).contains(&sum), "sum {sum}");
}

/// Waits (briefly) until `cond` holds: recording happens on the server's connection task.
async fn eventually(mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cond(), "condition not met in time");
}

/// The layer behind hyper's HTTP/2 server, as the proxy runs it, with a hyper client.
#[tokio::test]
async fn over_http2() {
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = MetricsLayer::new(metrics.clone()).layer(tower::service_fn(
        |req: Request<hyper::body::Incoming>| {
            let (parts, _body) = req.into_parts();
            fake(Request::from_parts(parts, Empty::new()))
        },
    ));
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);

    // A unary success: the status travels in the trailers.
    let response = client
        .send_request(request("/livekit.Egress/ListEgress", "trailers:0"))
        .await
        .unwrap();
    let trailers = drain(response.into_body()).await.unwrap();
    assert_eq!(trailers["grpc-status"], "0");

    // A trailers-only error.
    let response = client
        .send_request(request("/livekit.Egress/StopEgress", "trailers-only:5"))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "5");
    drain(response.into_body()).await;

    eventually(|| sample(&metrics.encode(), &calls("StopEgress", "NOT_FOUND")) == Some(1.0)).await;
    eventually(|| sample(&metrics.encode(), &calls("ListEgress", "OK")) == Some(1.0)).await;
    eventually(|| metrics.in_flight() == 0).await;

    // The client gives up mid-answer: hyper drops the body, the call is CANCELLED.
    let response = client
        .send_request(request("/livekit.Egress/StartTrackEgress", "stall"))
        .await
        .unwrap();
    let mut body = response.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    assert_eq!(metrics.in_flight(), 1);
    drop(body);
    eventually(|| metrics.in_flight() == 0).await;
    assert_eq!(
        value(&metrics.encode(), &calls("StartTrackEgress", "CANCELLED")),
        1.0
    );

    server.abort();
}
