//! Helpers shared by the integration tests: a simulator on loopback and clients for it.

#![allow(dead_code)]

use std::time::Duration;

use egress_client::{EgressClient, EgressOutput, proto};
use egress_sim::{Credentials, RecordedRequest, SimHandle, Simulator, SimulatorBuilder};

pub const KEY: &str = "APIclienttest";
pub const SECRET: &str = "client-test-secret-long-enough-for-hs256";

/// A simulator builder with the test credentials and quick lifecycle timings.
pub fn builder() -> SimulatorBuilder {
    Simulator::builder()
        .credentials(Credentials::new(KEY, SECRET))
        .activate_after(Duration::from_millis(100))
        .complete_after(Duration::from_millis(100))
        // Unknown and ended egresses have no worker; LiveKit's 3 s wait before the store
        // answers would only slow the tests down.
        .gone_worker_delay(Duration::from_millis(100))
}

pub fn spawn(builder: SimulatorBuilder) -> SimHandle {
    builder
        .build()
        .spawn("127.0.0.1:0".parse().unwrap())
        .expect("bind loopback")
}

/// Our client for `url`, bounded so a hung test fails instead of waiting forever.
pub fn client_for(url: &str) -> EgressClient {
    EgressClient::with_api_key(url, KEY, SECRET)
        .unwrap()
        .with_timeout(Duration::from_secs(10))
}

pub fn rtmp(url: &str) -> EgressOutput {
    EgressOutput::Stream(proto::StreamOutput {
        protocol: proto::StreamProtocol::Rtmp as i32,
        urls: vec![url.to_owned()],
        ..Default::default()
    })
}

pub fn mp4(path: &str) -> EgressOutput {
    EgressOutput::File(proto::EncodedFileOutput {
        file_type: proto::EncodedFileType::Mp4 as i32,
        filepath: path.to_owned(),
        ..Default::default()
    })
}

/// Checks what every call of this client must look like on the wire.
pub fn assert_wire(request: &RecordedRequest, method: &str) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/twirp/livekit.Egress/{method}"));
    assert_eq!(request.rpc.as_deref(), Some(method));
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/protobuf")
    );
    assert_claims(request);
}

/// The token carries `roomRecord` and is issued by the test key.
pub fn assert_claims(request: &RecordedRequest) {
    let claims = request.claims.as_ref().expect("a bearer JWT");
    assert_eq!(claims["iss"], KEY, "{claims}");
    assert_eq!(claims["video"]["roomRecord"], true, "{claims}");
    assert!(claims["exp"].as_u64().unwrap() > claims["nbf"].as_u64().unwrap());
    // The token itself is never recorded, only its claims.
    assert!(
        !request
            .header("authorization")
            .unwrap_or_default()
            .contains("Bearer")
    );
}

/// The last recorded request, checked with [`assert_wire`].
pub fn last(sim: &SimHandle, method: &str) -> RecordedRequest {
    let request = sim.requests().pop().expect("a recorded request");
    assert_wire(&request, method);
    request
}
