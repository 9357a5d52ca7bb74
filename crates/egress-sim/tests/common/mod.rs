//! Helpers shared by the integration tests: a running simulator and a plain HTTP client.

#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use egress_auth::{Credentials, VideoGrants, mint};
use egress_sim::{SimHandle, Simulator, SimulatorBuilder};
use prost::Message;

pub const KEY: &str = "APItestkey";
pub const SECRET: &str = "test-secret-that-is-long-enough";

pub fn credentials() -> Credentials {
    Credentials::new(KEY, SECRET)
}

/// A builder with the test credentials and fast lifecycle timings.
pub fn builder() -> SimulatorBuilder {
    Simulator::builder()
        .credentials(credentials())
        .activate_after(Duration::from_millis(150))
        .complete_after(Duration::from_millis(100))
        // Unknown and ended egresses have no worker; LiveKit's 3 s wait would only slow
        // the tests down.
        .gone_worker_delay(Duration::from_millis(100))
}

pub fn spawn(builder: SimulatorBuilder) -> SimHandle {
    builder
        .build()
        .spawn("127.0.0.1:0".parse().unwrap())
        .expect("bind loopback")
}

pub fn token_with(grants: VideoGrants) -> String {
    mint(
        &credentials(),
        &grants,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap()
}

pub fn token() -> String {
    token_with(VideoGrants::room_record())
}

/// A client without connection reuse, so a fault that kills a connection cannot affect the
/// next request, and with a bound on every request.
pub fn client() -> reqwest::Client {
    // Already installed by an earlier call (or another test) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// An answer as seen on the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn decode<T: Message + Default>(&self) -> T {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.content_type, "application/protobuf");
        T::decode(&self.body[..]).unwrap()
    }

    /// Asserts a Twirp JSON error and returns it.
    pub fn twirp(&self, code: &str, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.content_type, "application/json", "{}", self.text());
        let json = self.json();
        assert_eq!(json["code"], code, "{json}");
        json
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.bytes().await.expect("body").to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

pub fn rpc_url(sim: &SimHandle, method: &str) -> String {
    format!("{}/twirp/livekit.Egress/{method}", sim.base_url())
}

/// POSTs a protobuf message with a valid token.
pub async fn call<M: Message>(sim: &SimHandle, method: &str, message: &M) -> Answer {
    call_raw(
        sim,
        method,
        "application/protobuf",
        message.encode_to_vec(),
        Some(&token()),
    )
    .await
}

/// POSTs a JSON body with a valid token.
pub async fn call_json(sim: &SimHandle, method: &str, body: &str) -> Answer {
    call_raw(
        sim,
        method,
        "application/json",
        body.as_bytes().to_vec(),
        Some(&token()),
    )
    .await
}

pub async fn call_raw(
    sim: &SimHandle,
    method: &str,
    content_type: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Answer {
    let mut request = client()
        .post(rpc_url(sim, method))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    send(request).await
}
