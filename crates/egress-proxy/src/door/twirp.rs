//! The Twirp door: LiveKit's own API, `POST /twirp/livekit.Egress/<Method>`, on the gRPC
//! listener (HTTP/1.1 or HTTP/2), so LiveKit's server SDKs call the gateway exactly as they
//! call LiveKit: point `LIVEKIT_URL` at the gateway and give them a caller key.
//!
//! What this door decides, in order:
//! 1. `POST`, the RPC from the path, and the encoding from `Content-Type`
//!    (`application/protobuf` or `application/json`, parameters ignored); anything else is
//!    Twirp `bad_route`, as LiveKit answers it;
//! 2. the call's budget from `X-Twirp-Timeout-Ms` (else the default, see
//!    [`Deadlines`](crate::deadline::Deadlines)), covering the body read too;
//! 3. the head stages ([`Stages::admit`]), before the body is read;
//! 4. the body, at most `--max-message-size` bytes; JSON (snake_case or camelCase names,
//!    unknown fields ignored) is converted to protobuf once, so policy, audit and LiveKit
//!    see the same message; protobuf goes on as the caller's own bytes; then
//!    [`Stages::run`];
//! 5. the answer in the request's encoding (JSON with proto field names and defaults, as
//!    LiveKit writes it), or the failure as LiveKit would answer it
//!    ([`CallError::to_twirp`]): never a gRPC status.

use std::sync::Arc;

use bytes::Bytes;
use egress_core::Rpc;
use egress_core::codec::{self, WireFormat};
use egress_telemetry::CallCode;
use http_body_util::BodyExt;
use tonic::body::Body;

use super::{DoorSettings, FrontDoor, Protocol, admit_head, held, plain};
use crate::call::{Call, Door, Slots, Stages};
use crate::error::CallError;
use crate::error::twirp::TwirpAnswer;

/// The path prefix of LiveKit's Twirp API.
pub const TWIRP_PREFIX: &str = "/twirp/";

/// The `livekit.Egress` Twirp endpoint.
pub type TwirpDoor = FrontDoor<Twirp>;

/// LiveKit's Twirp protocol of `livekit.Egress`, served by [`TwirpDoor`].
#[derive(Debug)]
pub struct Twirp {
    stages: Arc<Stages>,
    settings: DoorSettings,
}

impl TwirpDoor {
    /// Serves LiveKit's Twirp `livekit.Egress` through `stages`.
    pub fn new(stages: Arc<Stages>, settings: DoorSettings) -> Self {
        Self::serving(Twirp { stages, settings })
    }

    /// Whether `path` is one for this door.
    pub fn serves(path: &str) -> bool {
        path.starts_with(TWIRP_PREFIX)
    }
}

impl Twirp {
    /// The call's RPC and encoding from the request head; the call built and admitted.
    fn recognise<B>(&self, req: &http::Request<B>) -> Result<(Call, Slots, WireFormat), CallError> {
        if req.method() != http::Method::POST {
            return Err(CallError::MethodNotAllowed {
                method: req.method().to_string(),
            });
        }
        let path = req.uri().path();
        let rpc = Rpc::from_path(path).ok_or_else(|| CallError::UnknownMethod {
            path: path.to_owned(),
        })?;
        let headers = req.headers();
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let encoding = WireFormat::from_content_type(&content_type)
            .ok_or(CallError::TwirpContentType { content_type })?;
        let budget = self.settings.deadlines.twirp_budget(headers)?;
        let (call, slots) = admit_head(&self.stages, req, rpc, Door::Twirp, budget)?;
        Ok((call, slots, encoding))
    }
}

impl<B> Protocol<B> for Twirp
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Admitted = (Call, Slots, WireFormat);

    fn admit(&self, req: &http::Request<B>) -> Result<Self::Admitted, http::Response<Body>> {
        self.recognise(req).map_err(|error| answer_error(&error))
    }

    async fn answer(
        self: Arc<Self>,
        (mut call, slots, encoding): Self::Admitted,
        req: http::Request<B>,
    ) -> http::Response<Body> {
        let (rpc, deadline) = (call.rpc, (call.deadline(), call.budget));
        let key = call.idempotency_key.clone();
        let max = self.settings.max_message_size;
        // Boxed for the same reason as the gRPC door's.
        let answered = Box::pin(async {
            call.message = read_message(req.into_body(), rpc, encoding, max).await?;
            let answer = self.stages.run(&call).await?;
            match encoding {
                WireFormat::Protobuf => Ok(answer.message),
                WireFormat::Json => codec::to_json(rpc.response_type(), &answer.message)
                    .map(Bytes::from)
                    .map_err(|reason| CallError::Upstream(egress_twirp::Error::Decode(reason))),
            }
        });
        let outcome = self.settings.within_deadline(rpc, deadline, answered).await;
        let response = match outcome.and_then(|answered| answered) {
            Ok(message) => answer(encoding, message),
            Err(error) => answer_error(&error),
        };
        held(response, slots, key)
    }
}

/// The request message: the body, at most `max` bytes, as protobuf.
async fn read_message<B>(
    body: B,
    rpc: Rpc,
    encoding: WireFormat,
    max: usize,
) -> Result<Bytes, CallError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = CallError::BodyTooLarge { max };
    if body.size_hint().lower() > max as u64 {
        return Err(too_large);
    }
    let body = http_body_util::Limited::new(body, max)
        .collect()
        .await
        .map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                CallError::BodyTooLarge { max }
            } else {
                CallError::RequestBody {
                    reason: error.to_string(),
                }
            }
        })?
        .to_bytes();
    match encoding {
        // The caller's own bytes go on unchanged.
        WireFormat::Protobuf => Ok(body),
        WireFormat::Json => codec::json_to_protobuf(rpc.request_type(), &body)
            .map(Bytes::from)
            .map_err(|reason| CallError::MalformedJson { rpc, reason }),
    }
}

/// LiveKit's answer message, in the request's encoding.
fn answer(encoding: WireFormat, message: Bytes) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(message)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(encoding.content_type()),
    );
    response.extensions_mut().insert(CallCode(0));
    response
}

/// The answer to a failed call, as LiveKit would give it (see [`CallError::to_twirp`]).
pub(crate) fn answer_error(error: &CallError) -> http::Response<Body> {
    let mut response = match error.to_twirp() {
        TwirpAnswer::Plain { status, text } => plain(status, text),
        TwirpAnswer::Twirp(twirp) => {
            let mut response = http::Response::new(Body::new(http_body_util::Full::new(
                Bytes::from(twirp.to_json()),
            )));
            *response.status_mut() = http::StatusCode::from_u16(twirp.http_status)
                .unwrap_or_else(|_| twirp.code.http_status());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
    };
    response
        .extensions_mut()
        .insert(CallCode(error.code() as u32));
    response
}
