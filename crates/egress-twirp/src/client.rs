//! The Twirp HTTP client.
//!
//! [`TwirpClient`] holds one transport (hyper's pooled client: HTTP/1.1 keep-alive, HTTP/2 when
//! the server offers it through ALPN; or, with [`ClientConfig::http2_only`], a few HTTP/2
//! connections of its own; rustls with the `ring` provider) and is cheap to clone. Each
//! [`TwirpClient::call`] posts one Twirp request and either returns the answer's body or an
//! [`Error`] that says exactly what failed; dropping the returned future aborts the request.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::{Either, OptionFuture};
use futures_util::{FutureExt as _, TryFutureExt as _};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;
use url::Url;

use crate::authorizer::Authorizer;
use crate::config::ClientConfig;
use crate::error::{Error, classify_response, classify_response_prefix};
use crate::transport::{Transport, UpstreamBody};

/// The header carrying the call's time budget in milliseconds.
pub const TWIRP_TIMEOUT_HEADER: HeaderName = HeaderName::from_static("x-twirp-timeout-ms");

/// The request id header forwarded from [`CallOptions::request_id`].
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// LiveKit's idempotency key, from [`CallOptions::idempotency_key`]: the same on every attempt
/// of one logical call, so a server that deduplicates can tell a retry from a new call.
pub const IDEMPOTENCY_KEY_HEADER: HeaderName = HeaderName::from_static("x-livekit-request-id");

/// W3C trace context header forwarded from [`CallOptions::traceparent`].
pub const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");

/// W3C trace context header forwarded from [`CallOptions::tracestate`].
pub const TRACESTATE_HEADER: HeaderName = HeaderName::from_static("tracestate");

/// Most bytes of an error answer that are read (enough for any Twirp error; the rest is dropped).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Most distinct method URLs cached per client.
const MAX_CACHED_URLS: usize = 256;

/// The wire format of a call's request and answer (their `Content-Type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// `application/protobuf` (the default).
    #[default]
    Protobuf,
    /// `application/json` (LiveKit answers JSON requests with snake_case JSON).
    Json,
}

impl WireFormat {
    /// The `Content-Type` of this encoding.
    ///
    /// ```
    /// use egress_twirp::WireFormat;
    /// assert_eq!(WireFormat::Protobuf.content_type(), "application/protobuf");
    /// ```
    pub const fn content_type(self) -> &'static str {
        match self {
            WireFormat::Protobuf => "application/protobuf",
            WireFormat::Json => "application/json",
        }
    }

    /// The encoding of a `Content-Type` value (parameters after `;` and case ignored).
    ///
    /// ```
    /// use egress_twirp::WireFormat;
    /// assert_eq!(WireFormat::from_content_type("Application/JSON; charset=utf-8"), Some(WireFormat::Json));
    /// assert_eq!(WireFormat::from_content_type("text/html"), None);
    /// ```
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/protobuf") {
            Some(WireFormat::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(WireFormat::Json)
        } else {
            None
        }
    }

    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.content_type())
    }
}

/// Per-call options.
///
/// ```
/// use std::time::Duration;
/// use egress_twirp::{CallOptions, WireFormat};
/// use http::HeaderValue;
///
/// let opts = CallOptions::new()
///     .with_timeout(Duration::from_secs(5))
///     .with_request_id(HeaderValue::from_static("req-1"))
///     .with_wire_format(WireFormat::Json);
/// assert!(opts.deadline.is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// When the call must be over (e.g. from the gRPC `grpc-timeout`), even when that is later
    /// than [`ClientConfig::default_timeout`] from now; `None` means the default.
    pub deadline: Option<Instant>,
    /// Sent as `X-Request-Id`.
    pub request_id: Option<HeaderValue>,
    /// Sent as `X-Livekit-Request-Id`.
    pub idempotency_key: Option<HeaderValue>,
    /// Another server for this call (a LiveKit Cloud region to fail over to); `None` is the
    /// configured [`ClientConfig::base_url`](crate::ClientConfig::base_url).
    pub base_url: Option<crate::url::BaseUrl>,
    /// Sent as `traceparent`.
    pub traceparent: Option<HeaderValue>,
    /// Sent as `tracestate`.
    pub tracestate: Option<HeaderValue>,
    /// The request (and expected answer) encoding. [`TwirpClient::call_typed`] always uses
    /// protobuf.
    pub wire_format: WireFormat,
}

impl CallOptions {
    /// Options with no deadline, no forwarded headers and protobuf encoding.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the deadline to `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.with_deadline(Instant::now() + timeout)
    }

    /// Sets the `X-Request-Id`.
    pub fn with_request_id(mut self, request_id: HeaderValue) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// Sets the `X-Livekit-Request-Id` (LiveKit's idempotency key).
    pub fn with_idempotency_key(mut self, key: HeaderValue) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Sends this call to `base_url` instead of the configured server.
    pub fn with_base_url(mut self, base_url: crate::url::BaseUrl) -> Self {
        self.base_url = Some(base_url);
        self
    }

    /// Sets the W3C trace context headers.
    pub fn with_trace_context(
        mut self,
        traceparent: HeaderValue,
        tracestate: Option<HeaderValue>,
    ) -> Self {
        self.traceparent = Some(traceparent);
        self.tracestate = tracestate;
        self
    }

    /// Sets the encoding.
    pub fn with_wire_format(mut self, wire_format: WireFormat) -> Self {
        self.wire_format = wire_format;
        self
    }
}

/// A successful Twirp answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The answer's body, encoded as [`Response::wire_format`].
    pub body: Bytes,
    /// The answer's encoding (always the request's).
    pub wire_format: WireFormat,
    /// The HTTP version the answer came over.
    pub version: http::Version,
}

/// A Twirp client for one LiveKit server; clones share the connection pool.
///
/// ```no_run
/// use egress_twirp::{BaseUrl, CallOptions, ClientConfig, StaticAuthorization, TwirpClient};
///
/// # async fn run<Req: prost::Message, Resp: prost::Message + Default>(req: Req)
/// #     -> Result<Resp, egress_twirp::Error> {
/// let client = TwirpClient::new(
///     ClientConfig::new(BaseUrl::parse("http://localhost:7880")?, "livekit.Egress"),
///     StaticAuthorization::bearer("jwt")?,
/// )?;
/// let resp: Resp = client.call_typed("StopEgress", &req, &CallOptions::new()).await?;
/// # Ok(resp)
/// # }
/// ```
#[derive(Clone)]
pub struct TwirpClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// hyper's pool, or with [`ClientConfig::http2_only`] our own HTTP/2 connections.
    transport: Transport,
    config: ClientConfig,
    authorizer: Arc<dyn Authorizer>,
    user_agent: HeaderValue,
    /// `GET {base}/`, for [`TwirpClient::probe`].
    root: Uri,
    /// Each method's URI, built once: parsing one per call cost more than the rest of the
    /// request head.
    uris: RwLock<HashMap<Box<str>, Uri>>,
    /// Places for calls on the wire ([`ClientConfig::max_connections`]).
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
}

impl fmt::Debug for TwirpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwirpClient")
            .field("base_url", &self.inner.config.base_url)
            .field("service", &self.inner.config.service)
            .finish_non_exhaustive()
    }
}

impl TwirpClient {
    /// Builds the client and its connection pool.
    ///
    /// Installs rustls' `ring` crypto provider as the process default first if no provider is
    /// installed yet. Fails with [`Error::Tls`] if the TLS configuration (the platform's
    /// certificate verifier, [`ClientConfig::extra_root_certs_pem`]) cannot be built.
    pub fn new(config: ClientConfig, authorizer: impl Authorizer) -> Result<Self, Error> {
        let root = format!("{}/", config.base_url.as_str().trim_end_matches('/'));
        let root = Uri::try_from(root)
            .map_err(|e| Error::InvalidUrl(format!("{}: {e}", config.base_url.as_str())))?;
        let user_agent = HeaderValue::try_from(config.user_agent.as_str()).map_err(|_| {
            Error::InvalidUrl(format!("invalid User-Agent {:?}", config.user_agent))
        })?;
        let transport = Transport::build(&config, &root)?;
        let in_flight = config
            .max_connections
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                config,
                authorizer: Arc::new(authorizer),
                user_agent,
                root,
                uris: RwLock::new(HashMap::new()),
                in_flight,
            }),
        })
    }

    /// The client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The URL a method is posted to.
    pub fn method_url(&self, method: &str) -> Result<Url, Error> {
        let config = &self.inner.config;
        config.base_url.method_url(&config.service, method)
    }

    /// The URI a method is posted to (cached per method).
    fn method_uri(&self, method: &str) -> Result<Uri, Error> {
        if let Some(uri) = self
            .inner
            .uris
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(method)
        {
            return Ok(uri.clone());
        }
        let url = self.method_url(method)?;
        let uri = Uri::try_from(url.as_str())
            .map_err(|e| Error::InvalidUrl(format!("{}: {e}", url.as_str())))?;
        let mut uris = self.inner.uris.write().unwrap_or_else(|e| e.into_inner());
        if uris.len() < MAX_CACHED_URLS {
            uris.insert(method.into(), uri.clone());
        }
        Ok(uri)
    }

    /// Calls a Twirp method with an already encoded body.
    ///
    /// Posts `body` to `{base}/twirp/{service}/{method}` with `Content-Type` set from
    /// [`CallOptions::wire_format`], `Authorization` from the [`Authorizer`],
    /// `X-Twirp-Timeout-Ms` (the milliseconds left of the effective deadline), `User-Agent`,
    /// and the request id and trace headers when given. The body is sent without copying.
    ///
    /// Succeeds on HTTP 200 with the request's content type; otherwise returns the classified
    /// [`Error`]: [`Error::Timeout`] when the effective deadline passes (the request is then
    /// aborted), [`Error::Twirp`] / [`Error::Intermediary`] for error answers, and the transport
    /// variants for connection failures. Dropping the future aborts the request.
    pub async fn call(
        &self,
        method: &str,
        body: Bytes,
        opts: &CallOptions,
    ) -> Result<Response, Error> {
        self.call_with_wire_format(method, body, opts, opts.wire_format)
            .await
    }

    /// Calls a Twirp method with protobuf messages (whatever [`CallOptions::wire_format`] says).
    ///
    /// An answer that does not decode as `Resp` is [`Error::Decode`].
    pub async fn call_typed<Req, Resp>(
        &self,
        method: &str,
        request: &Req,
        opts: &CallOptions,
    ) -> Result<Resp, Error>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let body = Bytes::from(request.encode_to_vec());
        let response = self
            .call_with_wire_format(method, body, opts, WireFormat::Protobuf)
            .await?;
        Resp::decode(response.body).map_err(Error::from)
    }

    /// Checks that the upstream answers HTTP at all, for health reporting.
    ///
    /// Sends `GET {base}/` without credentials: LiveKit answers `200 OK` there, and any
    /// answer other than a gateway error (502/503/504, which a load balancer sends when
    /// LiveKit is down behind it) proves the server is reachable. No token is minted and
    /// no egress state is touched.
    pub async fn probe(&self) -> Result<(), Error> {
        let config = &self.inner.config;
        let mut request = http::Request::new(Bytes::new());
        *request.uri_mut() = self.inner.root.clone();
        request
            .headers_mut()
            .insert(header::USER_AGENT, self.inner.user_agent.clone());
        let budget = config.connect_timeout.max(Duration::from_secs(1));
        let response = match tokio::time::timeout(budget, self.inner.transport.send(request)).await
        {
            Ok(result) => result?,
            Err(_) => return Err(Error::Timeout(budget)),
        };
        let status = response.status();
        if matches!(status.as_u16(), 502..=504) {
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Err(classify_response(status, content_type.as_deref(), &[]));
        }
        Ok(())
    }

    /// `GET {base}{path}` with the call's `Authorization`, for LiveKit's JSON side routes
    /// (`/settings/regions`): the body of a `200`, at most 64 KiB, within `timeout`.
    ///
    /// # Errors
    ///
    /// As for a call: transport failures, [`Error::Timeout`], a non-`200` answer classified
    /// like any other, [`Error::TooLarge`] past 64 KiB.
    pub async fn get(&self, path: &str, timeout: Duration) -> Result<Bytes, Error> {
        const MAX: usize = 64 * 1024;
        let url = self.inner.config.base_url.path_url(path)?;
        let uri = Uri::try_from(url.as_str())
            .map_err(|e| Error::InvalidUrl(format!("{}: {e}", url.as_str())))?;
        let mut authorization = self.inner.authorizer.authorization()?;
        authorization.set_sensitive(true);
        let mut request = http::Request::new(Bytes::new());
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(header::USER_AGENT, self.inner.user_agent.clone());
        headers.insert(header::AUTHORIZATION, authorization);
        let exchange = async {
            let response = self.inner.transport.send(request).await?;
            let status = response.status();
            if status != http::StatusCode::OK {
                let content_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let (body, _) = read_error_body(response.into_body()).await?;
                return Err(classify_response(status, content_type.as_deref(), &body));
            }
            read_body(response.into_body(), MAX).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    async fn call_with_wire_format(
        &self,
        method: &str,
        body: Bytes,
        opts: &CallOptions,
        encoding: WireFormat,
    ) -> Result<Response, Error> {
        let config = &self.inner.config;
        let now = Instant::now();
        // An explicit deadline is the caller's decision (the gateway passes its caller's own
        // gRPC deadline); the default only covers calls that bring none.
        let deadline = opts.deadline.unwrap_or(now + config.default_timeout);
        let budget = deadline.saturating_duration_since(now);
        if budget.is_zero() {
            return Err(Error::Timeout(budget));
        }

        let uri = match &opts.base_url {
            None => self.method_uri(method)?,
            Some(base) => {
                let url = base.method_url(&self.inner.config.service, method)?;
                Uri::try_from(url.as_str())
                    .map_err(|e| Error::InvalidUrl(format!("{}: {e}", url.as_str())))?
            }
        };
        let mut authorization = self.inner.authorizer.authorization()?;
        authorization.set_sensitive(true);

        let mut request = http::Request::new(body);
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.reserve(8);
        headers.insert(header::USER_AGENT, self.inner.user_agent.clone());
        headers.insert(header::CONTENT_TYPE, encoding.header_value());
        headers.insert(header::ACCEPT, encoding.header_value());
        headers.insert(header::AUTHORIZATION, authorization);
        headers.insert(TWIRP_TIMEOUT_HEADER, HeaderValue::from(timeout_ms(budget)));
        if let Some(v) = &opts.request_id {
            headers.insert(REQUEST_ID_HEADER, v.clone());
        }
        if let Some(v) = &opts.idempotency_key {
            headers.insert(IDEMPOTENCY_KEY_HEADER, v.clone());
        }
        if let Some(v) = &opts.traceparent {
            headers.insert(TRACEPARENT_HEADER, v.clone());
        }
        if let Some(v) = &opts.tracestate {
            headers.insert(TRACESTATE_HEADER, v.clone());
        }

        // A place on the wire first (held until the answer is read): past the cap, calls
        // wait here, within their deadline, instead of opening more connections. Chained
        // futures, not an async block: the block would keep `request` for the whole call
        // beside the transport's future, which holds it too (rust-lang/rust#62958).
        let place = OptionFuture::from(self.inner.in_flight.as_ref().map(|p| p.acquire()));
        let exchange = place.then(move |place| {
            let Ok(place) = place.transpose() else {
                return Either::Left(std::future::ready(Err(Error::Canceled)));
            };
            Either::Right(
                self.inner
                    .transport
                    .send(request)
                    .and_then(move |response| {
                        self.read_response(response, encoding)
                            .inspect(move |_| drop(place))
                    }),
            )
        });
        let result = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(budget)),
        };
        if let Err(err) = &result {
            tracing::debug!(
                method,
                kind = err.kind(),
                error = %err,
                elapsed_ms = u64::try_from(now.elapsed().as_millis()).unwrap_or(u64::MAX),
                "twirp call failed"
            );
        }
        result
    }

    async fn read_response(
        &self,
        response: http::Response<UpstreamBody>,
        encoding: WireFormat,
    ) -> Result<Response, Error> {
        let status = response.status();
        let version = response.version();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

        if status == http::StatusCode::OK
            && content_type
                .as_deref()
                .and_then(WireFormat::from_content_type)
                == Some(encoding)
        {
            let body =
                read_body(response.into_body(), self.inner.config.max_response_bytes).await?;
            return Ok(Response {
                body,
                wire_format: encoding,
                version,
            });
        }

        let location = status
            .is_redirection()
            .then(|| response.headers().get(header::LOCATION))
            .flatten()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        // The error body is read up to a bound. One that breaks off is `Error::Body`, like any
        // truncated answer: its status alone (say a 404) would be misread as an intermediary's
        // `bad_route`. One cut at the bound is classified from what was read.
        let (body, complete) = read_error_body(response.into_body()).await?;
        let mut err = if complete {
            classify_response(status, content_type.as_deref(), &body)
        } else {
            classify_response_prefix(status, content_type.as_deref(), &body)
        };
        if let Error::Intermediary { location: slot, .. } = &mut err {
            *slot = location;
        }
        Err(err)
    }
}

/// `X-Twirp-Timeout-Ms` of a budget: whole milliseconds, at least 1.
fn timeout_ms(budget: Duration) -> u64 {
    u64::try_from(budget.as_millis()).unwrap_or(u64::MAX).max(1)
}

async fn read_body(mut body: UpstreamBody, limit: usize) -> Result<Bytes, Error> {
    // hyper knows a `Content-Length` body's exact size before any of it is read.
    let content_length = body.size_hint().exact();
    let too_large = || Error::TooLarge {
        limit,
        size: content_length,
    };
    if content_length.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers: Twirp has none to read
        };
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(too_large());
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let capacity = content_length
                    .and_then(|len| usize::try_from(len).ok())
                    .unwrap_or(total)
                    .min(limit);
                let mut buf = BytesMut::with_capacity(capacity.max(total));
                buf.extend_from_slice(head);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    if let Some(expected) = content_length
        && total as u64 != expected
    {
        return Err(Error::Body(format!(
            "response body has {total} of {expected} bytes"
        )));
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(only), None) => only,
        (None, None) => Bytes::new(),
    })
}

/// Reads an error answer's body up to [`MAX_ERROR_BODY_BYTES`]: the bytes, and whether they
/// are the whole body (`false` when the bound cut it). A body that breaks off is
/// [`Error::Body`].
async fn read_error_body(mut body: UpstreamBody) -> Result<(Vec<u8>, bool), Error> {
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let room = MAX_ERROR_BODY_BYTES - kept.len();
        if chunk.len() > room {
            kept.extend_from_slice(&chunk[..room]);
            return Ok((kept, false));
        }
        kept.extend_from_slice(&chunk);
    }
    Ok((kept, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::BaseUrl;

    #[test]
    fn timeout_header_value() {
        assert_eq!(timeout_ms(Duration::from_micros(10)), 1);
        assert_eq!(timeout_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(timeout_ms(Duration::from_secs(30)), 30_000);
    }

    #[test]
    fn builds_https_client_without_panicking() {
        let config = ClientConfig::new(
            BaseUrl::parse("wss://example.invalid").unwrap(),
            "livekit.Egress",
        );
        let client =
            TwirpClient::new(config, crate::StaticAuthorization::bearer("t").unwrap()).unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        assert_eq!(
            client.method_url("ListEgress").unwrap().as_str(),
            "https://example.invalid/twirp/livekit.Egress/ListEgress"
        );
        // A second client reuses the installed provider.
        let config = ClientConfig::new(
            BaseUrl::parse("https://example.invalid/lk/").unwrap(),
            "livekit.Egress",
        );
        TwirpClient::new(config, crate::StaticAuthorization::bearer("t").unwrap()).unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("Bearer"));
        assert_eq!(
            debug,
            r#"TwirpClient { base_url: BaseUrl("https://example.invalid"), service: "livekit.Egress", .. }"#
        );
    }

    #[test]
    fn method_urls_are_cached_and_validated() {
        let config = ClientConfig::new(BaseUrl::parse("http://h/lk").unwrap(), "livekit.Egress");
        let client =
            TwirpClient::new(config, crate::StaticAuthorization::bearer("t").unwrap()).unwrap();
        let a = client.method_url("StopEgress").unwrap();
        let b = client.method_url("StopEgress").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "http://h/lk/twirp/livekit.Egress/StopEgress");
        assert_eq!(
            client.method_uri("StopEgress").unwrap(),
            "http://h/lk/twirp/livekit.Egress/StopEgress"
        );
        assert_eq!(client.inner.uris.read().unwrap().len(), 1);
        assert!(matches!(
            client.method_uri("../x"),
            Err(Error::InvalidUrl(_))
        ));
        assert_eq!(client.inner.uris.read().unwrap().len(), 1);
    }

    #[test]
    fn method_uri_cache_is_bounded() {
        let config = ClientConfig::new(BaseUrl::parse("http://h").unwrap(), "livekit.Egress");
        let client =
            TwirpClient::new(config, crate::StaticAuthorization::bearer("t").unwrap()).unwrap();
        for i in 0..MAX_CACHED_URLS + 10 {
            let uri = client.method_uri(&format!("M{i}")).unwrap();
            assert_eq!(uri, format!("http://h/twirp/livekit.Egress/M{i}").as_str());
        }
        assert_eq!(client.inner.uris.read().unwrap().len(), MAX_CACHED_URLS);
    }

    #[test]
    fn encodings() {
        assert_eq!(
            WireFormat::from_content_type("application/protobuf"),
            Some(WireFormat::Protobuf)
        );
        assert_eq!(
            WireFormat::from_content_type(" application/protobuf ; x=y"),
            Some(WireFormat::Protobuf)
        );
        assert_eq!(
            WireFormat::from_content_type("application/json;charset=utf-8"),
            Some(WireFormat::Json)
        );
        assert_eq!(
            WireFormat::from_content_type("application/x-protobuf"),
            None
        );
        assert_eq!(WireFormat::from_content_type(""), None);
    }
}
