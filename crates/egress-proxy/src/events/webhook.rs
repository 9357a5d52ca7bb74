//! The webhook receiver (`--webhook-listen`): LiveKit's `POST` of a `livekit.WebhookEvent`,
//! at `/webhook` or `/`.
//!
//! Checked before anything is parsed: the body is read within [`WebhookSettings::max_body`]
//! and [`WebhookSettings::read_timeout`], then the `Authorization` token is verified with the
//! API secret the upstream token is minted with (the same reloadable store: a rotated
//! secret applies to both), including the `sha256` claim over the raw body. Only then is the
//! JSON read. A refused webhook gets 401 (signature) or 400 (body) and is never delivered;
//! an accepted one is handed to the [`Hub`] and answered 200 at once, because LiveKit's sender
//! times out and retries a slow receiver.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use egress_auth::{Credentials, verify_webhook};
use egress_core::events::{Webhook, parse_webhook};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{Hub, Origin};

/// The secret in force, read per webhook so a reload applies at once.
pub type CredentialSource = Arc<dyn Fn() -> Credentials + Send + Sync>;

/// Bounds of the receiver.
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    /// Largest body accepted (LiveKit's are a few KiB).
    pub max_body: usize,
    /// Time a sender has for its request, headers and body.
    pub read_timeout: Duration,
    /// Connections served at once; more wait in the accept backlog.
    pub max_connections: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_body: 1024 * 1024,
            read_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// Verifies and hands off webhooks.
pub struct WebhookReceiver {
    hub: Arc<Hub>,
    credentials: CredentialSource,
    settings: WebhookSettings,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl WebhookReceiver {
    pub fn new(hub: Arc<Hub>, credentials: CredentialSource, settings: WebhookSettings) -> Self {
        Self {
            hub,
            credentials,
            settings,
        }
    }

    /// Answers one request.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let metrics = self.hub.metrics();
        if !matches!(request.uri().path(), "/" | "/webhook") {
            return answer(StatusCode::NOT_FOUND, "webhooks are received at /webhook\n");
        }
        if request.method() != Method::POST {
            metrics.webhook_rejected("wrong_method");
            return answer(StatusCode::METHOD_NOT_ALLOWED, "POST a LiveKit webhook\n");
        }
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let received_at = SystemTime::now();
        let limited = Limited::new(request.into_body(), self.settings.max_body);
        let body = match tokio::time::timeout(self.settings.read_timeout, limited.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
                metrics.webhook_rejected("too_large");
                return answer(StatusCode::PAYLOAD_TOO_LARGE, "webhook body too large\n");
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "webhook body could not be read");
                metrics.webhook_rejected("unreadable_body");
                return answer(StatusCode::BAD_REQUEST, "webhook body could not be read\n");
            }
            Err(_) => {
                metrics.webhook_rejected("read_timeout");
                return answer(StatusCode::REQUEST_TIMEOUT, "webhook body too slow\n");
            }
        };

        let credentials = (self.credentials)();
        let lookup =
            |key: &str| (key == credentials.api_key).then(|| credentials.api_secret.clone());
        if let Err(err) = verify_webhook(authorization.as_deref(), &body, lookup, received_at) {
            // The error names the check that failed, never the token or the secret.
            tracing::warn!(reason = err.reason(), error = %err, "webhook refused");
            metrics.webhook_rejected(err.reason());
            return answer(StatusCode::UNAUTHORIZED, "webhook signature not valid\n");
        }
        match parse_webhook(&body) {
            Ok(Webhook::Egress(event)) => {
                tracing::debug!(event = %event.kind, id = %event.id, egress_id = %event.info.egress_id, "webhook accepted");
                self.hub.publish(*event, Some(received_at), Origin::Local);
                answer(StatusCode::OK, "")
            }
            Ok(Webhook::Other { event }) => {
                tracing::trace!(event = %event.chars().take(64).collect::<String>(), "not an egress webhook; ignored");
                metrics.event_ignored("not_egress");
                answer(StatusCode::OK, "")
            }
            Err(err) => {
                tracing::warn!(error = %err, "signed webhook with a body the gateway cannot deliver");
                metrics.webhook_rejected("invalid_body");
                answer(
                    StatusCode::BAD_REQUEST,
                    "webhook body is not an egress event\n",
                )
            }
        }
    }
}

fn answer(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    if !text.is_empty() {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// Serves `receiver` on `listener` (HTTP/1.1 and HTTP/2) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    receiver: Arc<WebhookReceiver>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(receiver.settings.max_connections));
    tokio::pin!(shutdown);
    while let Some((slot, stream, peer)) =
        crate::listen::accept_with_slot(&listener, &slots, shutdown.as_mut(), "webhook").await
    {
        let receiver = Arc::clone(&receiver);
        let read_timeout = receiver.settings.read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let receiver = Arc::clone(&receiver);
                async move { Ok::<_, Infallible>(receiver.handle(request).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            // A sender gets a few requests' worth of time per connection, then it is closed:
            // LiveKit opens connections as it needs them.
            if tokio::time::timeout(read_timeout * 6, connection)
                .await
                .is_err()
            {
                tracing::debug!(%peer, "webhook connection closed after its time");
            }
        });
    }
}
