//! HTTP plumbing: the request pipeline, the `/sim/...` control endpoints and the accept loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

use crate::auth;
use crate::cors;
use crate::fault::{self, CAPTIVE_PORTAL_PAGE, Fault, FaultAction};
use crate::flavor::Flavor;
use crate::record::RecordedRequest;
use crate::rpc::Rpc;
use crate::service;
use crate::state::{ListFilter, Shared, now_ns};
use crate::twirp::TwirpError;
use egress_core::codec::{self, WireFormat};

/// The Twirp service name in request paths.
const SERVICE: &str = Rpc::SERVICE;

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

/// A response body: complete, or cut short (for the `truncate` fault).
pub(crate) struct SimBody {
    chunk: Option<Bytes>,
    /// For a truncated body: the declared length, and a pause before failing so the partial
    /// chunk is flushed to the socket first.
    truncated: Option<(u64, Pin<Box<Sleep>>)>,
}

impl SimBody {
    fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            chunk: (!bytes.is_empty()).then_some(bytes),
            truncated: None,
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(chunk) = self.chunk.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match &mut self.truncated {
            None => Poll::Ready(None),
            Some((_, sleep)) => {
                std::task::ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(io::Error::other(
                    "response truncated by fault injection",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunk.is_none() && self.truncated.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.truncated {
            Some((declared, _)) => SizeHint::with_exact(*declared),
            None => SizeHint::with_exact(self.chunk.as_ref().map_or(0, |c| c.len() as u64)),
        }
    }
}

/// A complete answer before it becomes a response (so `truncate` can cut it).
struct Answer {
    status: u16,
    content_type: Option<String>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type: Some(content_type.to_owned()),
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }

    fn plain(status: u16, text: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", text.into())
    }

    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        Self::new(
            status,
            "application/json",
            serde_json::to_vec(value).expect("JSON values serialize"),
        )
    }

    /// A Twirp error as the simulated deployment writes it: the one place the flavor
    /// reshapes relayed errors (see [`Flavor::shape`]).
    fn twirp(error: TwirpError, flavor: Flavor) -> Self {
        let error = flavor.shape(error);
        Self::new(error.http_status(), "application/json", error.body())
    }

    /// What Go's `http.NotFound` writes, LiveKit's answer for a path none of its handlers
    /// serves (`LivekitServer.defaultHandler`).
    fn not_found_page() -> Self {
        let mut answer = Self::plain(404, "404 page not found\n");
        answer
            .headers
            .insert("x-content-type-options".to_owned(), "nosniff".to_owned());
        answer
    }

    fn head(&self, declared_len: usize) -> http::response::Builder {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut builder = Response::builder()
            .status(status)
            .header(CONTENT_LENGTH, declared_len);
        if let Some(content_type) = &self.content_type {
            builder = builder.header(CONTENT_TYPE, content_type.as_str());
        }
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder
    }

    fn into_response(self) -> Response<SimBody> {
        let len = self.body.len();
        self.head(len)
            .body(SimBody::full(self.body))
            .unwrap_or_else(|_| invalid_fault_response())
    }

    /// The answer's head with its real length, but only `keep` bytes (at least one short).
    fn into_truncated(self, keep: Option<usize>) -> Response<SimBody> {
        let declared = self.body.len().max(1);
        let keep = keep
            .unwrap_or(self.body.len() / 2)
            .min(declared - 1)
            .min(self.body.len());
        let chunk = Bytes::copy_from_slice(&self.body[..keep]);
        self.head(declared)
            .body(SimBody {
                chunk: (!chunk.is_empty()).then_some(chunk),
                truncated: Some((
                    declared as u64,
                    Box::pin(tokio::time::sleep(Duration::from_millis(50))),
                )),
            })
            .unwrap_or_else(|_| invalid_fault_response())
    }
}

/// For an `http` fault whose status or headers are not valid HTTP.
fn invalid_fault_response() -> Response<SimBody> {
    let mut response = Response::new(SimBody::full("egress-sim: invalid fault response"));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// Marks an answer a fault made up in LiveKit's place (an error, an intermediary's page):
/// LiveKit's middleware never saw the request, so no CORS headers are added to it.
#[derive(Clone, Copy, Debug)]
struct StandInAnswer;

enum Outcome {
    Respond(Response<SimBody>),
    Drop,
}

/// Time a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves connections from `listener` (over TLS with `tls`) until `shutdown` resolves, then
/// lets open connections finish for up to two seconds.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // E.g. EMFILE; back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let service = service_fn(move |request| handle(shared.clone(), request));
                let Some(tls) = tls.clone() else {
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                    continue;
                };
                // The handshake runs in the connection's task, so a slow client holds up
                // no one else; its connection is watched for shutdown once it is HTTP.
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        };
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
    Ok(())
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, DropConnection> {
    if request.uri().path() == "/sim" || request.uri().path().starts_with("/sim/") {
        return Ok(control(&shared, request).await.into_response());
    }
    // LiveKit's middleware chain, in its order: CORS (a preflight ends there), then
    // `RemoveDoubleSlashes`, then auth and the mux (in `process`).
    let method = request.method().clone();
    let request_headers = request.headers().clone();
    if cors::is_preflight(&method, &request_headers) {
        let mut response = Response::new(SimBody::full(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        *response.headers_mut() = cors::preflight_headers(&request_headers);
        return Ok(response);
    }
    let request = remove_double_slashes(request);
    let mut result = handle_api(shared, request).await;
    if let Ok(response) = &mut result
        && response.extensions().get::<StandInAnswer>().is_none()
    {
        cors::add_actual_headers(&method, &request_headers, response.headers_mut());
    }
    result
}

/// LiveKit Cloud's region list, nearest first, for a caller with a valid token (the SDKs'
/// region discovery sends its API token): `{"regions":[{"region","url","distance"}]}`.
fn regions<B>(shared: &Shared, request: &Request<B>) -> Answer {
    if let Err(message) = auth::authenticate(
        &shared.credentials,
        request.headers(),
        request.uri().query(),
    ) {
        return Answer::plain(401, message);
    }
    let regions: Vec<serde_json::Value> = shared
        .regions
        .iter()
        .enumerate()
        .map(|(i, url)| {
            serde_json::json!({
                "region": format!("sim-{i}"),
                "url": url,
                "distance": (i * 1000).to_string(),
            })
        })
        .collect();
    Answer::json(200, &serde_json::json!({ "regions": regions }))
}

/// livekit/livekit `RemoveDoubleSlashes` (`pkg/service/utils.go`): a path starting with
/// `//` loses its first slash, so `//twirp/livekit.Egress/…` (a base URL with a trailing
/// slash) reaches the Twirp handler.
fn remove_double_slashes<B>(request: Request<B>) -> Request<B> {
    if !request.uri().path().starts_with("//") {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("", |pq| pq.as_str())
        .get(1..)
        .unwrap_or("")
        .to_owned();
    let mut uri = http::uri::Parts::from(parts.uri.clone());
    if let Ok(pq) = path_and_query.parse() {
        uri.path_and_query = Some(pq);
        if let Ok(cleaned) = http::Uri::from_parts(uri) {
            parts.uri = cleaned;
        }
    }
    Request::from_parts(parts, body)
}

/// Everything behind the CORS and path middleware: health, recording, faults, the API.
async fn handle_api(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, DropConnection> {
    let path = request.uri().path().to_owned();
    // LiveKit answers `GET /` with `OK`; gateways probe it for health. Like the control
    // routes it is never faulted or recorded, so probes don't use up a test's faults.
    if path == "/" && request.method() == hyper::Method::GET {
        return Ok(Answer::plain(200, "OK").into_response());
    }
    if !shared.regions.is_empty()
        && path == format!("{}/settings/regions", shared.prefix)
        && request.method() == hyper::Method::GET
    {
        return Ok(regions(&shared, &request).into_response());
    }

    let (parts, body) = request.into_parts();
    let rpc = rpc_from_path(&path);
    let mut record = RecordedRequest {
        method: parts.method.to_string(),
        version: format!("{:?}", parts.version),
        path: path.clone(),
        rpc: rpc.clone(),
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        headers: BTreeMap::new(),
        claims: None,
        body: Vec::new(),
        fault: None,
        received_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    (record.headers, record.claims) = recorded_headers(&parts.headers);

    let body = match read_body(body, &parts.headers, shared.max_body).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            shared.requests.push(record);
            return Ok(Answer::plain(413, "http: request body too large").into_response());
        }
        // The client went away while sending.
        Err(_) => return Err(DropConnection),
    };
    let fault = shared.faults.take(rpc.as_deref());
    record.body = body.to_vec();
    record.fault = fault.as_ref().map(|f| f.action.kind().to_owned());
    shared.requests.push(record);

    // LiveKit starts the clock in a Twirp interceptor, once the request is read.
    let deadline = twirp_timeout(&parts.headers).map(|timeout| Instant::now() + timeout);
    match respond(&shared, &parts, &body, fault, deadline).await {
        Outcome::Respond(response) => Ok(response),
        Outcome::Drop => Err(DropConnection),
    }
}

/// The method name of a `…/livekit.Egress/<Method>` path, when it names a real RPC.
fn rpc_from_path(path: &str) -> Option<String> {
    let mut segments = path.rsplit('/');
    let method = segments.next()?;
    (segments.next()? == SERVICE && Rpc::from_method(method).is_some()).then(|| method.to_owned())
}

/// `X-Twirp-Timeout-Ms` read as protocol `xtwirp.ServerPassTimeout` reads it: any
/// integer Go's `strconv.ParseInt` accepts (zero or negative: already expired); anything
/// else is no deadline.
fn twirp_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("x-twirp-timeout-ms")?.to_str().ok()?;
    let ms: i64 = value.parse().ok()?;
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// Headers for the log, with the authorization value replaced by its JWT claims.
fn recorded_headers(headers: &HeaderMap) -> (BTreeMap<String, String>, Option<serde_json::Value>) {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut claims = None;
    for (name, value) in headers {
        let text = if name == http::header::AUTHORIZATION {
            let decoded = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(auth::unverified_claims);
            let text = decoded
                .as_ref()
                .map_or_else(|| "<not a bearer JWT>".to_owned(), |c| c.to_string());
            claims = claims.or(decoded);
            text
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&text);
            })
            .or_insert(text);
    }
    (out, claims)
}

/// Reads the body; `Ok(None)` when it is over `max` bytes.
async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    max: usize,
) -> Result<Option<Bytes>, Box<dyn std::error::Error + Send + Sync>> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Ok(None);
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Ok(None),
        Err(error) => Err(error),
    }
}

async fn respond(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    fault: Option<Fault>,
    deadline: Option<Instant>,
) -> Outcome {
    let Some(fault) = fault else {
        return Outcome::Respond(process(shared, parts, body, deadline).await.into_response());
    };
    if fault.delay_ms > 0 {
        // An injected delay stands for slowness anywhere before the handler answers; the
        // caller's deadline cuts it short with LiveKit's `deadline_exceeded`.
        let (until, cut) = service::give_up_at(
            Instant::now(),
            Duration::from_millis(fault.delay_ms),
            deadline,
        );
        tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        if cut {
            return Outcome::Respond(
                Answer::twirp(TwirpError::deadline_exceeded(), shared.flavor).into_response(),
            );
        }
    }
    let answer = match fault.action {
        // Requests never take a webhook fault (`Faults::take`); it would change nothing.
        FaultAction::Latency | FaultAction::DropWebhook { .. } => {
            return Outcome::Respond(process(shared, parts, body, deadline).await.into_response());
        }
        FaultAction::TwirpError {
            code,
            msg,
            meta,
            error_details,
            status,
        } => {
            let mut error = TwirpError::new(&code, msg);
            error.meta = meta;
            if let Some(details) = error_details {
                error.meta.insert("error_details".to_owned(), details);
            }
            error.status = status;
            Answer::twirp(error, shared.flavor)
        }
        FaultAction::Http {
            status,
            content_type,
            body,
            headers,
        } => Answer {
            status,
            content_type,
            headers,
            body: body.into_bytes(),
        },
        FaultAction::Drop { after_processing } => {
            if after_processing {
                let _ = process(shared, parts, body, deadline).await;
            }
            return Outcome::Drop;
        }
        FaultAction::Truncate { keep_bytes } => {
            return Outcome::Respond(
                process(shared, parts, body, deadline)
                    .await
                    .into_truncated(keep_bytes),
            );
        }
        FaultAction::Html200 { body } => Answer::new(
            200,
            "text/html; charset=utf-8",
            body.unwrap_or_else(|| CAPTIVE_PORTAL_PAGE.to_owned()),
        ),
    };
    let mut response = answer.into_response();
    response.extensions_mut().insert(StandInAnswer);
    Outcome::Respond(response)
}

/// What LiveKit would answer: auth middleware, then the mux, then Twirp routing, then the
/// service.
async fn process(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    deadline: Option<Instant>,
) -> Answer {
    let claims = match auth::authenticate(&shared.credentials, &parts.headers, parts.uri.query()) {
        Ok(claims) => claims,
        Err(message) => return Answer::plain(401, message),
    };
    let flavor = shared.flavor;
    let bad_route = |msg: String| {
        Answer::twirp(
            TwirpError::bad_route(msg, parts.method.as_str(), parts.uri.path()),
            flavor,
        )
    };

    let method = parts.method.as_str();
    let path = parts.uri.path();
    // The mux (`NewLivekitServer`): the Egress Twirp server owns everything under its
    // path prefix (`xtwirp.RegisterServer` registers `PathPrefix()`); `/` is the health
    // check, and any other path gets `http.NotFound` from `defaultHandler`. The simulator
    // serves only livekit.Egress, so the other Twirp services' paths are unknown here.
    if path == "/" {
        return Answer::plain(200, "OK");
    }
    if !path.starts_with(&format!("{}/twirp/{SERVICE}/", shared.prefix)) {
        return Answer::not_found_page();
    }
    // From here on, Twirp's generated `ServeHTTP`, in its order.
    if parts.method != Method::POST {
        return bad_route(format!(
            "unsupported method {method:?} (only POST is allowed)"
        ));
    }
    let (prefix, service, rpc_name) = parse_twirp_path(path);
    if service != SERVICE {
        return bad_route(format!("no handler for path {path:?}"));
    }
    let expected = format!("{}/twirp", shared.prefix);
    if prefix != expected {
        return bad_route(format!(
            "invalid path prefix {prefix:?}, expected {expected:?}, on path {path:?}"
        ));
    }
    let Some(rpc) = Rpc::from_method(rpc_name) else {
        return bad_route(format!("no handler for path {path:?}"));
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let Some(encoding) = WireFormat::from_content_type(&content_type) else {
        return bad_route(format!("unexpected Content-Type: {content_type:?}"));
    };

    match service::call(shared, rpc, encoding, body, claims.as_ref(), deadline).await {
        Ok(bytes) => Answer::new(200, encoding.content_type(), bytes),
        Err(error) => {
            tracing::debug!(%rpc, code = %error.code, msg = %error.msg, "twirp error");
            Answer::twirp(error, flavor)
        }
    }
}

/// Decodes `%XX` escapes in a path segment (room names may hold any character); invalid
/// escapes stay as they are.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `[<prefix>]/<package>.<Service>/<Method>` the way Twirp's Go server does.
fn parse_twirp_path(path: &str) -> (String, &str, &str) {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 2 {
        return (String::new(), "", "");
    }
    let method = parts[parts.len() - 1];
    let service = parts[parts.len() - 2];
    (parts[..parts.len() - 2].join("/"), service, method)
}

/// The `/sim/...` control endpoints (no auth, never faulted or recorded).
async fn control(shared: &Shared, request: Request<Incoming>) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let body = match read_body(body, &parts.headers, shared.max_body).await {
        Ok(Some(body)) => body,
        Ok(None) => return Answer::plain(413, "http: request body too large"),
        Err(error) => return Answer::plain(400, format!("cannot read body: {error}")),
    };
    let segments: Vec<&str> = path
        .trim_start_matches("/sim")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();

    match (&method, segments.as_slice()) {
        (&Method::GET, ["health"]) => Answer::plain(200, "ok"),
        (&Method::GET, ["faults"]) => Answer::json(200, &shared.faults.list()),
        (&Method::POST, ["faults"]) => match fault::parse_faults(&body) {
            Ok(faults) => {
                shared.faults.extend(faults);
                Answer::json(200, &serde_json::json!({ "faults": shared.faults.len() }))
            }
            Err(error) => Answer::plain(400, format!("invalid fault JSON: {error}")),
        },
        (&Method::DELETE, ["faults"]) => {
            shared.faults.clear();
            Answer::json(200, &serde_json::json!({ "faults": 0 }))
        }
        (&Method::GET, ["requests"]) => Answer::json(200, &shared.requests.all()),
        (&Method::DELETE, ["requests"]) => {
            shared.requests.clear();
            Answer::json(200, &serde_json::json!({ "requests": 0 }))
        }
        (&Method::GET, ["egresses"]) => {
            let items = shared.store().list(&ListFilter::default(), now_ns());
            let response = egress_proto::livekit::ListEgressResponse {
                items,
                next_page_token: None,
            };
            let json = codec::encode(WireFormat::Json, "livekit.ListEgressResponse", &response);
            Answer::new(200, "application/json", json)
        }
        (&Method::DELETE, ["egresses"]) => {
            shared.store().clear();
            Answer::json(200, &serde_json::json!({ "egresses": 0 }))
        }
        (&Method::POST, ["egresses", id, "fail"]) => {
            #[derive(serde::Deserialize, Default)]
            struct FailBody {
                #[serde(default)]
                error: Option<String>,
            }
            let parsed: FailBody = if body.iter().all(u8::is_ascii_whitespace) {
                FailBody::default()
            } else {
                match serde_json::from_slice(&body) {
                    Ok(parsed) => parsed,
                    Err(error) => return Answer::plain(400, format!("invalid JSON: {error}")),
                }
            };
            let error = parsed
                .error
                .unwrap_or_else(|| "egress failed (simulated)".to_owned());
            match shared.store().fail(id, &error, now_ns()) {
                Some(info) => Answer::new(
                    200,
                    "application/json",
                    codec::encode(WireFormat::Json, "livekit.EgressInfo", &info),
                ),
                None => Answer::plain(404, "egress does not exist"),
            }
        }
        (&Method::DELETE, ["egresses", id, "worker"]) => {
            match shared.store().drop_worker(id, now_ns()) {
                Some(info) => Answer::new(
                    200,
                    "application/json",
                    codec::encode(WireFormat::Json, "livekit.EgressInfo", &info),
                ),
                None => Answer::plain(404, "egress does not exist"),
            }
        }
        (&Method::GET, ["rooms"]) => {
            let rooms: Vec<_> = shared
                .store()
                .rooms()
                .into_iter()
                .map(|(name, sid)| serde_json::json!({ "name": name, "sid": sid }))
                .collect();
            Answer::json(200, &serde_json::json!({ "rooms": rooms }))
        }
        (&Method::POST, ["rooms"]) => {
            #[derive(serde::Deserialize)]
            struct RoomBody {
                name: String,
            }
            match serde_json::from_slice::<RoomBody>(&body) {
                Ok(room) if !room.name.is_empty() => {
                    let sid = shared.store().create_room(&room.name);
                    Answer::json(200, &serde_json::json!({ "name": room.name, "sid": sid }))
                }
                Ok(_) => Answer::plain(400, "a room needs a name"),
                Err(error) => Answer::plain(400, format!("invalid JSON: {error}")),
            }
        }
        (&Method::DELETE, ["rooms", name]) => {
            let name = percent_decode(name);
            match shared.store().end_room(&name, now_ns()) {
                Some(ended) => {
                    Answer::json(200, &serde_json::json!({ "name": name, "ended": ended }))
                }
                None => Answer::plain(404, format!("room {name:?} is not live")),
            }
        }
        (&Method::GET, ["workers"]) => Answer::json(
            200,
            &serde_json::json!({ "available": shared.store().workers() }),
        ),
        (&Method::PUT, ["workers"]) => {
            #[derive(serde::Deserialize)]
            struct WorkersBody {
                available: bool,
            }
            match serde_json::from_slice::<WorkersBody>(&body) {
                Ok(workers) => {
                    shared.store().set_workers(workers.available);
                    Answer::json(200, &serde_json::json!({ "available": workers.available }))
                }
                Err(error) => Answer::plain(400, format!("invalid JSON: {error}")),
            }
        }
        (&Method::GET, ["webhooks"]) => Answer::json(200, &shared.webhooks.deliveries()),
        (&Method::DELETE, ["webhooks"]) => {
            shared.webhooks.clear_log();
            Answer::json(200, &serde_json::json!({ "webhooks": 0 }))
        }
        (&Method::POST, ["reset"]) => {
            shared.reset();
            Answer::json(200, &serde_json::json!({ "reset": true }))
        }
        (
            _,
            [
                "health" | "faults" | "requests" | "egresses" | "reset" | "rooms" | "workers"
                | "webhooks",
            ],
        )
        | (_, ["egresses", _, "fail" | "worker"])
        | (_, ["rooms", _]) => Answer::plain(405, "method not allowed"),
        _ => Answer::plain(404, format!("no simulator endpoint {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twirp_paths_split_like_go() {
        assert_eq!(
            parse_twirp_path("/twirp/livekit.Egress/StopEgress"),
            ("/twirp".to_owned(), "livekit.Egress", "StopEgress")
        );
        assert_eq!(
            parse_twirp_path("/lk/twirp/livekit.Egress/ListEgress"),
            ("/lk/twirp".to_owned(), "livekit.Egress", "ListEgress")
        );
        assert_eq!(
            parse_twirp_path("/livekit.Egress/X"),
            (String::new(), "livekit.Egress", "X")
        );
        assert_eq!(parse_twirp_path("/"), (String::new(), "", ""));
        assert_eq!(parse_twirp_path(""), (String::new(), "", ""));
    }

    #[test]
    fn room_names_in_paths_are_percent_decoded() {
        assert_eq!(percent_decode("my%20room"), "my room");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }

    #[test]
    fn rpc_names_from_paths() {
        assert_eq!(
            rpc_from_path("/x/twirp/livekit.Egress/StopEgress").as_deref(),
            Some("StopEgress")
        );
        assert_eq!(rpc_from_path("/twirp/livekit.Egress/Nope"), None);
        assert_eq!(rpc_from_path("/twirp/livekit.Room/StopEgress"), None);
    }

    #[test]
    fn timeout_header() {
        let mut h = HeaderMap::new();
        assert_eq!(twirp_timeout(&h), None);
        h.insert("x-twirp-timeout-ms", "250".parse().unwrap());
        assert_eq!(twirp_timeout(&h), Some(Duration::from_millis(250)));
        h.insert("x-twirp-timeout-ms", "soon".parse().unwrap());
        assert_eq!(twirp_timeout(&h), None);
        // Go's ParseInt takes these, and a zero or negative timeout is already over.
        h.insert("x-twirp-timeout-ms", "0".parse().unwrap());
        assert_eq!(twirp_timeout(&h), Some(Duration::ZERO));
        h.insert("x-twirp-timeout-ms", "-5".parse().unwrap());
        assert_eq!(twirp_timeout(&h), Some(Duration::ZERO));
        h.insert("x-twirp-timeout-ms", "+7".parse().unwrap());
        assert_eq!(twirp_timeout(&h), Some(Duration::from_millis(7)));
        h.insert("x-twirp-timeout-ms", "1.5".parse().unwrap());
        assert_eq!(twirp_timeout(&h), None);
    }

    #[test]
    fn authorization_is_replaced_by_claims() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer a.eyJpc3MiOiJrIn0.c".parse().unwrap(),
        );
        h.append("x-multi", "1".parse().unwrap());
        h.append("x-multi", "2".parse().unwrap());
        let (headers, claims) = recorded_headers(&h);
        assert_eq!(headers["authorization"], r#"{"iss":"k"}"#);
        assert_eq!(headers["x-multi"], "1, 2");
        assert_eq!(claims.unwrap()["iss"], "k");

        h.insert("authorization", "Basic secret".parse().unwrap());
        let (headers, claims) = recorded_headers(&h);
        assert_eq!(headers["authorization"], "<not a bearer JWT>");
        assert!(claims.is_none());
    }
}
