//! The proxy binary in front of an upstream that answers what LiveKit never should (or, for
//! huge errors, what nothing bounds it from sending): the caller must still get the right code.
//!
//! Each answer here is written verbatim by [`RawUpstream`], so malformed framing (a body shorter
//! than its `Content-Length`) reaches the proxy exactly as a broken server sends it.

use std::collections::BTreeMap;

use egress_e2e::{Proxy, ProxyOptions, RawBehaviour, RawGrpcAnswer, RawUpstream, raw_grpc_call};
use egress_proto::livekit::StopEgressRequest;
use egress_twirp::{TwirpCode, TwirpError};
use prost::Message;
use tonic::Code;

/// grpc-core's default limit on a response's metadata (headers, and trailers, each).
const GRPC_CORE_METADATA_LIMIT: usize = 8 * 1024;

/// An HTTP/1.1 answer, head and body, with a `Content-Length` of `declared` (the body's own
/// length unless a test lies about it).
fn http_answer(status: &str, content_type: &str, body: &[u8], declared: usize) -> Vec<u8> {
    let mut answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {declared}\r\n\
         connection: close\r\n\r\n"
    )
    .into_bytes();
    answer.extend_from_slice(body);
    answer
}

async fn upstream(answer: Vec<u8>) -> RawUpstream {
    RawUpstream::start(RawBehaviour::Verbatim(answer)).await
}

async fn stop(proxy: &Proxy) -> Result<(), tonic::Status> {
    proxy
        .client()
        .await
        .stop_egress(StopEgressRequest {
            egress_id: "EG_x".into(),
        })
        .await
        .map(drop)
}

async fn raw_stop(proxy: &Proxy) -> RawGrpcAnswer {
    raw_grpc_call(
        proxy.addr,
        "/livekit.Egress/StopEgress",
        &[],
        &StopEgressRequest {
            egress_id: "EG_x".into(),
        }
        .encode_to_vec(),
    )
    .await
}

/// The response's headers and trailers as grpc-core counts them against its limit: name, value
/// and 32 bytes per entry.
fn metadata_size(answer: &RawGrpcAnswer) -> usize {
    answer
        .metadata
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

#[tokio::test]
async fn huge_twirp_error_keeps_its_code_within_the_metadata_limit() {
    let mut error = TwirpError::new(TwirpCode::NotFound, "m".repeat(4096));
    error.meta = (0..300)
        .map(|i| (format!("key_{i:03}"), format!("value-{i}")))
        .collect::<BTreeMap<_, _>>();
    let body = error.to_json();
    let upstream = upstream(http_answer(
        "404 Not Found",
        "application/json",
        &body,
        body.len(),
    ))
    .await;
    let proxy = Proxy::start(&upstream.url(), ProxyOptions::default());

    let status = stop(&proxy).await.expect_err("not found");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().starts_with("mmmm"), "{status:?}");
    assert!(status.message().ends_with("[truncated]"), "{status:?}");
    assert!(status.message().len() <= 1024);

    let answer = raw_stop(&proxy).await;
    assert_eq!(answer.grpc_status(), Some(Code::NotFound as i32));
    let size = metadata_size(&answer);
    assert!(
        size < GRPC_CORE_METADATA_LIMIT,
        "headers and trailers take {size} bytes"
    );
    assert_eq!(answer.metadata["twirp-code"], "not_found");
    assert_eq!(answer.metadata["twirp-meta-key_000"], "value-0");
}

#[tokio::test]
async fn truncated_twirp_error_body_is_unavailable() {
    // A 404 whose body breaks off: read by its status alone it would be an intermediary's
    // bad_route (UNIMPLEMENTED), which clients do not retry.
    let body = br#"{"code":"not_found","msg":"egress does not exist"}"#;
    let upstream = upstream(http_answer(
        "404 Not Found",
        "application/json",
        body,
        body.len() + 100,
    ))
    .await;
    let proxy = Proxy::start(&upstream.url(), ProxyOptions::default());
    let status = stop(&proxy).await.expect_err("truncated");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn answer_over_the_message_size_is_resource_exhausted() {
    // UNAVAILABLE would have clients retry forever for an answer that will never fit.
    let upstream = upstream(http_answer(
        "200 OK",
        "application/protobuf",
        &[0u8; 4096],
        4096,
    ))
    .await;
    let proxy = Proxy::start(
        &upstream.url(),
        ProxyOptions::default()
            .arg("--max-message-size")
            .arg("1024"),
    );
    let status = stop(&proxy).await.expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("1024"), "{status:?}");
}

#[tokio::test]
async fn twirp_error_over_the_read_bound_keeps_its_code() {
    // The client reads 64 KiB of an error body. LiveKit (Go's twirp) writes `code`, `msg`,
    // `meta` in that order, so both the code and the message come before the cut.
    let body = format!(
        r#"{{"code":"failed_precondition","msg":"egress is complete","meta":{{"blob":"{}"}}}}"#,
        "x".repeat(100 * 1024)
    )
    .into_bytes();
    let upstream = upstream(http_answer(
        "412 Precondition Failed",
        "application/json",
        &body,
        body.len(),
    ))
    .await;
    let proxy = Proxy::start(&upstream.url(), ProxyOptions::default());
    let status = stop(&proxy).await.expect_err("failed precondition");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.message(), "egress is complete");
}
