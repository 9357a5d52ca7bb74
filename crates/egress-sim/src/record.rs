//! The request log: what clients actually sent.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::rpc::Rpc;
use egress_core::codec::{self, WireFormat};

/// One request the simulator received (anything but `/sim/...`), as `GET /sim/requests`
/// returns it.
///
/// The `authorization` header's value is never stored: it is replaced by the JSON text of the
/// token's claims (decoded without verification), or by `<not a bearer JWT>`. The claims are
/// also available parsed in [`claims`](Self::claims).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// HTTP version the request came over: `HTTP/1.1` or `HTTP/2.0`.
    #[serde(default)]
    pub version: String,
    /// Request path without the query, e.g. `/twirp/livekit.Egress/StopEgress`.
    pub path: String,
    /// The RPC named by the path's last segment, if the path has the
    /// `…/livekit.Egress/<Method>` shape and the method exists.
    pub rpc: Option<String>,
    /// The `Content-Type` header, as sent.
    pub content_type: Option<String>,
    /// Headers, lower-case names; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The bearer token's claims, decoded without verification.
    pub claims: Option<serde_json::Value>,
    /// The body, standard base64 in JSON. Empty when it was over the size limit.
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// `kind` of the fault applied to the request, if any.
    pub fault: Option<String>,
    /// Milliseconds since the Unix epoch when the request was received.
    pub received_at_ms: u64,
}

/// Why [`RecordedRequest::decode`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode recorded body: {0}")]
pub struct DecodeBodyError(pub String);

impl RecordedRequest {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Decodes the body as the RPC's request message `T`, in the encoding its `Content-Type`
    /// names (protobuf or JSON).
    ///
    /// # Errors
    ///
    /// When the content type is neither, the path names no known RPC (needed for JSON), or the
    /// body does not decode.
    pub fn decode<T: prost::Message + Default>(&self) -> Result<T, DecodeBodyError> {
        let encoding = self
            .content_type
            .as_deref()
            .and_then(WireFormat::from_content_type)
            .ok_or_else(|| DecodeBodyError(format!("content type {:?}", self.content_type)))?;
        let rpc = self
            .rpc
            .as_deref()
            .and_then(Rpc::from_method)
            .ok_or_else(|| DecodeBodyError(format!("no RPC in path {}", self.path)))?;
        codec::decode(encoding, rpc.request_type(), &self.body).map_err(DecodeBodyError)
    }

    /// The claims parsed as LiveKit claims (grants in [`egress_auth::Claims::video`]).
    pub fn grants(&self) -> Option<egress_auth::Claims> {
        serde_json::from_value(self.claims.clone()?).ok()
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// How many requests the log keeps; the oldest are dropped beyond it, so a simulator under
/// sustained load (a benchmark, a soak test) does not grow without bound.
pub const REQUEST_LOG_CAPACITY: usize = 10_000;

/// The shared request log: the most recent [`REQUEST_LOG_CAPACITY`] requests.
#[derive(Clone, Default)]
pub(crate) struct RequestLog {
    inner: Arc<Mutex<VecDeque<RecordedRequest>>>,
}

impl fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLog")
            .field("len", &self.inner.lock().map(|l| l.len()).unwrap_or(0))
            .finish()
    }
}

impl RequestLog {
    pub(crate) fn push(&self, request: RecordedRequest) {
        let mut log = self.inner.lock().expect("request log lock");
        if log.len() == REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(request);
    }

    pub(crate) fn all(&self) -> Vec<RecordedRequest> {
        self.inner
            .lock()
            .expect("request log lock")
            .iter()
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.inner.lock().expect("request log lock").clear();
    }
}
