//! [`EgressClient`] and its builder.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use egress_auth::{AuthError, Credentials, TokenCache, TokenCacheConfig, VideoGrants};
use egress_core::requests::{
    ParticipantRequest, RoomCompositeRequest, TrackCompositeRequest, TrackRequest, WebRequest,
};
use egress_core::{EgressOutput, ListOptions, RpcRequest, TrackEgressOutput, Validate, proto};
use egress_twirp::{BaseUrl, CallOptions, ClientConfig, TwirpClient};

use crate::error::{ClientError, PaginationAbort};
use crate::options::{
    ParticipantEgressOptions, RoomCompositeOptions, TrackCompositeOptions, WebOptions,
};

/// The `start_*` call of each v1 Start RPC: `fn name(args; Options) => Builder { setters }`.
/// The builder is made from the call's string arguments, given the options the call names
/// (`setter` for `options.setter`, or `setter: field`), then what every v1 Start request has:
/// the outputs, the webhooks and the encoding. Validated and sent like every call.
macro_rules! v1_start {
    ($(
        $(#[$doc:meta])*
        fn $name:ident($($arg:ident),+; $options:ty) => $builder:ident {
            $($setter:ident $(: $field:ident)?),* $(,)?
        }
    )*) => {$(
        $(#[$doc])*
        pub async fn $name(
            &self,
            $($arg: &str,)+
            outputs: Vec<EgressOutput>,
            options: $options,
        ) -> Result<proto::EgressInfo, ClientError> {
            let request = $builder::new($($arg),+)
                $(.$setter(v1_start!(@field options, $setter $(: $field)?)))*
                .outputs(outputs)
                .webhooks(options.webhooks)
                .encoding(options.encoding.resolve())
                .build()?;
            self.send(&request).await
        }
    )*};
    (@field $options:ident, $setter:ident) => { $options.$setter };
    (@field $options:ident, $setter:ident: $field:ident) => { $options.$field };
}

/// Most pages [`EgressClient::list_all_egress`] fetches before giving up with
/// [`ClientError::Pagination`].
pub const MAX_LIST_PAGES: usize = 10_000;

/// One page of [`EgressClient::list_egress`].
///
/// Unlike `livekit-api`, which returns only the items, the page keeps the server's
/// `next_page_token` so callers can continue. LiveKit Cloud paginates; the open-source server
/// returns everything at once and never sets a token.
///
/// ```
/// use egress_client::EgressPage;
///
/// let page = EgressPage::default();
/// assert!(page.items.is_empty());
/// assert!(!page.has_more());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EgressPage {
    /// The egresses on this page.
    pub items: Vec<proto::EgressInfo>,
    /// Pass this as [`ListOptions::page_token`] to fetch the next page; `None` on the last
    /// page. A token with an empty string is reported as `None` (it cannot continue anything).
    pub next_page_token: Option<proto::TokenPagination>,
}

impl EgressPage {
    /// Whether another page follows.
    pub fn has_more(&self) -> bool {
        self.next_page_token.is_some()
    }
}

/// A client for LiveKit's Egress API: the surface of LiveKit's Rust `EgressClient`
/// (`livekit-api`), built on `egress-core`'s validating request builders and
/// `egress-twirp`'s transport.
///
/// * Every request is validated before it is sent; a rejected request is
///   [`ClientError::Validation`] and never reaches the network.
/// * Tokens are HS256 JWTs with the `roomRecord` grant, minted once and cached (10 minute
///   lifetime, refreshed 2 minutes before expiry).
/// * `ws://`/`wss://` URLs are accepted (as `http://`/`https://`) and a path prefix such as
///   `https://host/lk` is kept.
/// * Cloning is cheap; clones share the connection pool and the token cache.
///
/// # Example
///
/// ```no_run
/// use egress_client::{EgressClient, EgressOutput, RoomCompositeOptions, proto};
///
/// # async fn run() -> Result<(), egress_client::ClientError> {
/// let client = EgressClient::with_api_key("wss://my-project.livekit.cloud", "APIkey", "secret")?;
/// let info = client
///     .start_room_composite_egress(
///         "standup",
///         vec![EgressOutput::Stream(proto::StreamOutput {
///             protocol: proto::StreamProtocol::Rtmp as i32,
///             urls: vec!["rtmp://live.example.com/app/key".into()],
///             ..Default::default()
///         })],
///         RoomCompositeOptions { layout: "grid".into(), ..Default::default() },
///     )
///     .await?;
/// client.stop_egress(&info.egress_id).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct EgressClient {
    twirp: TwirpClient,
    timeout: Option<Duration>,
}

impl fmt::Debug for EgressClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressClient")
            .field("base_url", &self.twirp.config().base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Configures an [`EgressClient`]; start with [`EgressClient::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use egress_client::{Credentials, EgressClient};
///
/// # fn run() -> Result<(), egress_client::ClientError> {
/// let client = EgressClient::builder("https://livekit.example.com")
///     .credentials(Credentials::new("APIkey", "secret"))
///     .timeout(Duration::from_secs(60))
///     .connect_timeout(Duration::from_secs(2))
///     .build()?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EgressClientBuilder {
    host: String,
    credentials: Option<Credentials>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    token_config: TokenCacheConfig,
}

impl EgressClientBuilder {
    /// The API key and secret to sign tokens with. Without it, [`build`](Self::build) reads
    /// `LIVEKIT_API_KEY` and `LIVEKIT_API_SECRET`.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Time budget of every call (default 30 s; LiveKit's start calls can take 20 s and more).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Time allowed to establish a connection, TLS included (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Lifetime and refresh margin of the cached access tokens (default: 10 minutes, refreshed
    /// 2 minutes before expiry).
    pub fn token_config(mut self, config: TokenCacheConfig) -> Self {
        self.token_config = config;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidUrl`] for an unusable URL, [`ClientError::Auth`] when credentials
    /// are missing from the environment, empty, or cannot sign a token, and
    /// [`ClientError::Twirp`] (TLS) when the HTTP client cannot be set up.
    pub fn build(self) -> Result<EgressClient, ClientError> {
        let base_url = BaseUrl::parse(&self.host)?;
        let credentials = match self.credentials {
            Some(credentials) => credentials,
            None => Credentials::from_env()?,
        };
        if credentials.api_key.trim().is_empty() {
            return Err(AuthError::Signing("API key is empty".to_owned()).into());
        }
        let tokens = TokenCache::new(credentials, VideoGrants::room_record(), self.token_config);
        // Mint now so that a bad secret is reported here rather than on the first call.
        tokens.authorization()?;

        let mut config = ClientConfig::new(base_url, egress_core::Rpc::SERVICE);
        if let Some(timeout) = self.timeout {
            config.default_timeout = timeout;
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout = timeout;
        }
        let twirp = TwirpClient::new(config, tokens)?;
        Ok(EgressClient {
            twirp,
            timeout: None,
        })
    }
}

impl EgressClient {
    /// A client for `host` that signs tokens with `api_key` and `api_secret`.
    ///
    /// `host` may be `http(s)://` or `ws(s)://` and may carry a path prefix.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidUrl`] for an unusable URL, [`ClientError::Auth`] for an empty key
    /// or secret.
    ///
    /// ```
    /// use egress_client::EgressClient;
    ///
    /// let client = EgressClient::with_api_key("ws://localhost:7880", "devkey", "secret")?;
    /// assert_eq!(client.base_url(), "http://localhost:7880");
    /// assert!(EgressClient::with_api_key("ws://localhost:7880", "devkey", "").is_err());
    /// # Ok::<(), egress_client::ClientError>(())
    /// ```
    pub fn with_api_key(host: &str, api_key: &str, api_secret: &str) -> Result<Self, ClientError> {
        Self::with_credentials(host, Credentials::new(api_key, api_secret))
    }

    /// A client for `host` that signs tokens with `credentials`.
    ///
    /// # Errors
    ///
    /// As [`with_api_key`](Self::with_api_key).
    pub fn with_credentials(host: &str, credentials: Credentials) -> Result<Self, ClientError> {
        Self::builder(host).credentials(credentials).build()
    }

    /// A client for `host` with the key and secret from `LIVEKIT_API_KEY` and
    /// `LIVEKIT_API_SECRET`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Auth`] ([`AuthError::MissingEnv`]) when a variable is unset or empty,
    /// [`ClientError::InvalidUrl`] for an unusable URL.
    ///
    /// ```no_run
    /// let client = egress_client::EgressClient::new("wss://my-project.livekit.cloud")?;
    /// # let _ = client;
    /// # Ok::<(), egress_client::ClientError>(())
    /// ```
    pub fn new(host: &str) -> Result<Self, ClientError> {
        Self::builder(host).build()
    }

    /// A builder for custom timeouts or token lifetimes.
    pub fn builder(host: impl Into<String>) -> EgressClientBuilder {
        EgressClientBuilder {
            host: host.into(),
            credentials: None,
            timeout: None,
            connect_timeout: None,
            token_config: TokenCacheConfig::default(),
        }
    }

    /// Wraps an already configured [`TwirpClient`] (custom [`ClientConfig`], another
    /// [`Authorizer`](egress_twirp::Authorizer), a shared connection pool...). The client must
    /// use the `livekit.Egress` service and credentials with the `roomRecord` grant.
    ///
    /// ```
    /// use egress_client::{Credentials, EgressClient};
    /// use egress_auth::{TokenCache, TokenCacheConfig, VideoGrants};
    /// use egress_twirp::{BaseUrl, ClientConfig, TwirpClient};
    ///
    /// let tokens = TokenCache::new(
    ///     Credentials::new("APIkey", "secret"),
    ///     VideoGrants::room_record(),
    ///     TokenCacheConfig::default(),
    /// );
    /// let mut config = ClientConfig::new(BaseUrl::parse("https://livekit.example.com/lk")?, egress_core::Rpc::SERVICE);
    /// config.user_agent = "my-recorder/1.0".into();
    /// let client = EgressClient::from_twirp(TwirpClient::new(config, tokens)?);
    /// assert_eq!(client.base_url(), "https://livekit.example.com/lk");
    /// # Ok::<(), egress_twirp::Error>(())
    /// ```
    pub fn from_twirp(twirp: TwirpClient) -> Self {
        Self {
            twirp,
            timeout: None,
        }
    }

    /// Sets the time budget of every call made through this client.
    ///
    /// It cannot exceed the underlying [`ClientConfig::default_timeout`] (30 s unless set with
    /// [`EgressClientBuilder::timeout`]): the earlier of the two deadlines applies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use egress_client::EgressClient;
    ///
    /// let client = EgressClient::with_api_key("http://localhost:7880", "devkey", "secret")?
    ///     .with_timeout(Duration::from_secs(10));
    /// assert_eq!(client.timeout(), Some(Duration::from_secs(10)));
    /// # Ok::<(), egress_client::ClientError>(())
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The per-call timeout set with [`with_timeout`](Self::with_timeout), if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The normalised server URL, e.g. `https://host/lk`.
    pub fn base_url(&self) -> &str {
        self.twirp.config().base_url.as_str()
    }

    /// The underlying Twirp client.
    pub fn twirp(&self) -> &TwirpClient {
        &self.twirp
    }

    fn call_options(&self) -> CallOptions {
        match self.timeout {
            Some(timeout) => CallOptions::new().with_timeout(timeout),
            None => CallOptions::new(),
        }
    }

    /// Validates `request`, then sends it to its RPC (named by the request type, as is the
    /// response type, in `egress-core`'s RPC table). A request the builders already checked
    /// is checked again; the rules are cheap and this keeps one path for every call.
    async fn send<R>(&self, request: &R) -> Result<R::Response, ClientError>
    where
        R: RpcRequest + Validate,
    {
        request.validate()?;
        self.twirp
            .call_typed(R::RPC.as_str(), request, &self.call_options())
            .await
            .map_err(ClientError::from)
    }

    v1_start! {
        /// Records a whole room through a layout template (`StartRoomCompositeEgress`).
        ///
        /// With the default options the request is byte-identical to what `livekit-api` sends for
        /// the same arguments (see [`Encoding::SdkDefault`](crate::Encoding::SdkDefault)).
        ///
        /// # Errors
        ///
        /// [`ClientError::Validation`] (nothing sent) for an empty room, no outputs,
        /// `audio_only` with `video_only`; otherwise any call failure.
        ///
        /// ```no_run
        /// use egress_client::{EgressClient, EgressOutput, RoomCompositeOptions, proto};
        ///
        /// # async fn run(client: EgressClient) -> Result<(), egress_client::ClientError> {
        /// let info = client
        ///     .start_room_composite_egress(
        ///         "standup",
        ///         vec![EgressOutput::File(proto::EncodedFileOutput {
        ///             filepath: "recordings/{room_name}.mp4".into(),
        ///             ..Default::default()
        ///         })],
        ///         RoomCompositeOptions {
        ///             layout: "speaker".into(),
        ///             encoding: proto::EncodingOptionsPreset::H264720p30.into(),
        ///             ..Default::default()
        ///         },
        ///     )
        ///     .await?;
        /// println!("started {}", info.egress_id);
        /// # Ok(())
        /// # }
        /// ```
        fn start_room_composite_egress(room; RoomCompositeOptions) => RoomCompositeRequest {
            layout, audio_only, video_only, audio_mixing, custom_base_url
        }

        /// Records a web page (`StartWebEgress`).
        ///
        /// # Errors
        ///
        /// [`ClientError::Validation`] (nothing sent) for an empty URL, no outputs, `audio_only`
        /// with `video_only`; otherwise any call failure.
        ///
        /// ```no_run
        /// use egress_client::{EgressClient, EgressOutput, WebOptions, proto};
        ///
        /// # async fn run(client: EgressClient) -> Result<(), egress_client::ClientError> {
        /// let info = client
        ///     .start_web_egress(
        ///         "https://example.com/dashboard",
        ///         vec![EgressOutput::Stream(proto::StreamOutput {
        ///             protocol: proto::StreamProtocol::Rtmp as i32,
        ///             urls: vec!["rtmp://live.example.com/app/key".into()],
        ///             ..Default::default()
        ///         })],
        ///         WebOptions { await_start_signal: true, ..Default::default() },
        ///     )
        ///     .await?;
        /// # let _ = info;
        /// # Ok(())
        /// # }
        /// ```
        fn start_web_egress(url; WebOptions) => WebRequest {
            audio_only, video_only, await_start_signal
        }

        /// Records one participant's camera (or screen share) and microphone
        /// (`StartParticipantEgress`).
        ///
        /// # Errors
        ///
        /// [`ClientError::Validation`] (nothing sent) for an empty room or identity, or no
        /// outputs; otherwise any call failure.
        ///
        /// ```no_run
        /// use egress_client::{EgressClient, EgressOutput, ParticipantEgressOptions, proto};
        ///
        /// # async fn run(client: EgressClient) -> Result<(), egress_client::ClientError> {
        /// let info = client
        ///     .start_participant_egress(
        ///         "standup",
        ///         "alice",
        ///         vec![EgressOutput::Segments(proto::SegmentedFileOutput {
        ///             filename_prefix: "hls/alice".into(),
        ///             playlist_name: "alice.m3u8".into(),
        ///             ..Default::default()
        ///         })],
        ///         ParticipantEgressOptions { screenshare: true, ..Default::default() },
        ///     )
        ///     .await?;
        /// # let _ = info;
        /// # Ok(())
        /// # }
        /// ```
        fn start_participant_egress(room, participant_identity; ParticipantEgressOptions)
            => ParticipantRequest { screen_share: screenshare }

        /// Records one audio and/or one video track, synchronised (`StartTrackCompositeEgress`).
        ///
        /// # Errors
        ///
        /// [`ClientError::Validation`] (nothing sent) for an empty room, no track id, or no
        /// outputs; otherwise any call failure.
        ///
        /// ```no_run
        /// use egress_client::{EgressClient, EgressOutput, TrackCompositeOptions, proto};
        ///
        /// # async fn run(client: EgressClient) -> Result<(), egress_client::ClientError> {
        /// let info = client
        ///     .start_track_composite_egress(
        ///         "standup",
        ///         vec![EgressOutput::File(proto::EncodedFileOutput::default())],
        ///         TrackCompositeOptions {
        ///             audio_track_id: "TR_audio".into(),
        ///             video_track_id: "TR_video".into(),
        ///             ..Default::default()
        ///         },
        ///     )
        ///     .await?;
        /// # let _ = info;
        /// # Ok(())
        /// # }
        /// ```
        fn start_track_composite_egress(room; TrackCompositeOptions) => TrackCompositeRequest {
            audio_track_id, video_track_id
        }
    }

    /// Exports one track without transcoding, to a file or a WebSocket (`StartTrackEgress`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Validation`] (nothing sent) for an empty room, track id, file path or
    /// WebSocket URL; otherwise any call failure.
    ///
    /// ```no_run
    /// use egress_client::{EgressClient, TrackEgressOutput};
    ///
    /// # async fn run(client: EgressClient) -> Result<(), egress_client::ClientError> {
    /// let info = client
    ///     .start_track_egress(
    ///         "standup",
    ///         TrackEgressOutput::WebSocket("wss://stt.example.com/ingest".into()),
    ///         "TR_audio",
    ///     )
    ///     .await?;
    /// # let _ = info;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start_track_egress(
        &self,
        room: &str,
        output: TrackEgressOutput,
        track_id: &str,
    ) -> Result<proto::EgressInfo, ClientError> {
        let request = TrackRequest::new(room, track_id, output).build()?;
        self.send(&request).await
    }

    /// Starts an egress with the unified `StartEgress` request, sent as given once it passes
    /// validation. Build it with [`egress_core::requests::UnifiedRequest`] or by hand.
    ///
    /// # Errors
    ///
    /// [`ClientError::Validation`] (nothing sent) for a request `egress-core` rejects
    /// (missing source, room, outputs...); otherwise any call failure.
    ///
    /// ```no_run
    /// use egress_client::{EgressClient, EgressOutput, proto};
    /// use egress_core::requests::UnifiedRequest;
    ///
    /// # async fn run(client: EgressClient) -> Result<(), egress_client::ClientError> {
    /// let request = UnifiedRequest::template(
    ///     "standup",
    ///     proto::TemplateSource { layout: "grid".into(), ..Default::default() },
    /// )
    /// .output(EgressOutput::File(proto::EncodedFileOutput {
    ///     filepath: "standup.mp4".into(),
    ///     ..Default::default()
    /// }))
    /// .build()?;
    /// let info = client.start_egress(request).await?;
    /// # let _ = info;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start_egress(
        &self,
        request: proto::StartEgressRequest,
    ) -> Result<proto::EgressInfo, ClientError> {
        self.send(&request).await
    }

    /// Switches a room composite's layout template (`UpdateLayout`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Validation`] (nothing sent) for an empty egress id; `not_found` for an
    /// unknown egress, `failed_precondition` for one that has ended.
    ///
    /// ```no_run
    /// # async fn run(client: egress_client::EgressClient) -> Result<(), egress_client::ClientError> {
    /// let info = client.update_layout("EG_abc", "speaker").await?;
    /// # let _ = info;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn update_layout(
        &self,
        egress_id: &str,
        layout: &str,
    ) -> Result<proto::EgressInfo, ClientError> {
        let request = proto::UpdateLayoutRequest {
            egress_id: egress_id.to_owned(),
            layout: layout.to_owned(),
        };
        self.send(&request).await
    }

    /// Adds and removes stream URLs of a running egress (`UpdateStream`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Validation`] (nothing sent) for an empty egress id; `not_found` for an
    /// unknown egress, `failed_precondition` for one that has ended.
    ///
    /// ```no_run
    /// # async fn run(client: egress_client::EgressClient) -> Result<(), egress_client::ClientError> {
    /// let info = client
    ///     .update_stream(
    ///         "EG_abc",
    ///         vec!["rtmp://backup.example.com/app/key".into()],
    ///         vec!["rtmp://live.example.com/app/key".into()],
    ///     )
    ///     .await?;
    /// # let _ = info;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn update_stream(
        &self,
        egress_id: &str,
        add_output_urls: Vec<String>,
        remove_output_urls: Vec<String>,
    ) -> Result<proto::EgressInfo, ClientError> {
        let request = proto::UpdateStreamRequest {
            egress_id: egress_id.to_owned(),
            add_output_urls,
            remove_output_urls,
            // This helper speaks plain URLs; destinations (URL plus id) are named here
            // rather than defaulted so the next new field breaks the build at this spot.
            add_destinations: Vec::new(),
        };
        self.send(&request).await
    }

    /// Lists one page of egresses (`ListEgress`), keeping the server's `next_page_token`.
    ///
    /// # Errors
    ///
    /// Any call failure (`invalid_argument` for a page token the server did not issue).
    ///
    /// ```no_run
    /// use egress_client::{EgressClient, ListOptions};
    ///
    /// # async fn run(client: EgressClient) -> Result<(), egress_client::ClientError> {
    /// let mut page = client.list_egress(ListOptions::room("standup").active(true)).await?;
    /// while let Some(token) = page.next_page_token.take() {
    ///     page = client.list_egress(ListOptions::room("standup").active(true).page_token(token)).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_egress(&self, options: ListOptions) -> Result<EgressPage, ClientError> {
        let request = options.into_request();
        let response = self.send(&request).await?;
        Ok(EgressPage {
            items: response.items,
            next_page_token: response.next_page_token.filter(|t| !t.token.is_empty()),
        })
    }

    /// Lists every matching egress, following `next_page_token` from `options.page_token` (or
    /// the start) to the last page.
    ///
    /// # Errors
    ///
    /// The first failing page's error; [`ClientError::Pagination`] when the server returns a
    /// token it already returned or more than [`MAX_LIST_PAGES`] pages.
    ///
    /// ```no_run
    /// use egress_client::{EgressClient, ListOptions};
    ///
    /// # async fn run(client: EgressClient) -> Result<(), egress_client::ClientError> {
    /// let active = client.list_all_egress(ListOptions::all().active(true)).await?;
    /// println!("{} egresses running", active.len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_all_egress(
        &self,
        mut options: ListOptions,
    ) -> Result<Vec<proto::EgressInfo>, ClientError> {
        let mut items = Vec::new();
        let mut seen: HashSet<String> = options
            .page_token
            .iter()
            .map(|token| token.token.clone())
            .collect();
        for pages in 1..=MAX_LIST_PAGES {
            let page = self.list_egress(options.clone()).await?;
            items.extend(page.items);
            let Some(token) = page.next_page_token else {
                return Ok(items);
            };
            if !seen.insert(token.token.clone()) {
                return Err(ClientError::Pagination {
                    pages,
                    reason: PaginationAbort::RepeatedToken,
                });
            }
            options.page_token = Some(token);
        }
        Err(ClientError::Pagination {
            pages: MAX_LIST_PAGES,
            reason: PaginationAbort::TooManyPages,
        })
    }

    /// Stops an egress (`StopEgress`); it then goes `EGRESS_ENDING` → `EGRESS_COMPLETE`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Validation`] (nothing sent) for an empty egress id; `not_found` for an
    /// unknown egress, `failed_precondition` for one that is already ending or over.
    ///
    /// ```no_run
    /// # async fn run(client: egress_client::EgressClient) -> Result<(), egress_client::ClientError> {
    /// let info = client.stop_egress("EG_abc").await?;
    /// # let _ = info;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stop_egress(&self, egress_id: &str) -> Result<proto::EgressInfo, ClientError> {
        let request = proto::StopEgressRequest {
            egress_id: egress_id.to_owned(),
        };
        self.send(&request).await
    }
}
