//! Options of the `start_*` calls, mirroring `livekit-api`'s `EgressClient` options.

use egress_core::{AudioMixing, EncodingOptions, proto};

/// How a `start_*` call encodes its output.
///
/// The default, [`Encoding::SdkDefault`], is what LiveKit's own Rust SDK (`livekit-api`)
/// sends when the caller does not choose: **advanced** options equal to
/// [`EncodingOptions::DEFAULT`] (1920x1080, 24-bit, 30 fps, Opus 128 kbps at 44.1 kHz,
/// H.264 Main at 4500 kbps, key-frame interval and the deprecated quality fields unset). With
/// it, a request built by this crate is byte-for-byte the request `livekit-api` sends for the
/// same call. Note that this differs from sending *no* encoding options
/// ([`Encoding::ServerDefault`]), for which the server picks its own default preset
/// (`H264_720P_30`).
///
/// # Example
///
/// ```
/// use egress_client::{Encoding, EncodingOptions, proto};
///
/// assert_eq!(Encoding::default(), Encoding::SdkDefault);
///
/// let preset: Encoding = proto::EncodingOptionsPreset::H2641080p60.into();
/// assert_eq!(preset, Encoding::Preset(proto::EncodingOptionsPreset::H2641080p60));
///
/// let custom: Encoding = EncodingOptions { framerate: 25, ..EncodingOptions::DEFAULT }.into();
/// assert!(matches!(custom, Encoding::Advanced(o) if o.framerate == 25));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Encoding {
    /// `livekit-api`'s default: `Advanced(EncodingOptions::DEFAULT)`.
    #[default]
    SdkDefault,
    /// A named transcoding preset.
    Preset(proto::EncodingOptionsPreset),
    /// Explicit options. The proto message is kept as given, deprecated
    /// `audio_quality`/`video_quality` included.
    Advanced(proto::EncodingOptions),
    /// No encoding options at all: the server chooses (LiveKit uses `H264_720P_30`).
    ServerDefault,
}

impl Encoding {
    /// The encoding as the `(preset, advanced)` pair the `egress-core` builders take; at most
    /// one is `Some`.
    ///
    /// ```
    /// use egress_client::{Encoding, EncodingOptions, proto};
    ///
    /// let (preset, advanced) = Encoding::SdkDefault.resolve();
    /// assert_eq!(preset, None);
    /// assert_eq!(advanced, Some(proto::EncodingOptions::from(EncodingOptions::DEFAULT)));
    /// assert_eq!(Encoding::ServerDefault.resolve(), (None, None));
    /// ```
    pub fn resolve(
        self,
    ) -> (
        Option<proto::EncodingOptionsPreset>,
        Option<proto::EncodingOptions>,
    ) {
        match self {
            Encoding::SdkDefault => (None, Some(EncodingOptions::DEFAULT.into())),
            Encoding::Preset(preset) => (Some(preset), None),
            Encoding::Advanced(options) => (None, Some(options)),
            Encoding::ServerDefault => (None, None),
        }
    }
}

impl From<proto::EncodingOptionsPreset> for Encoding {
    fn from(preset: proto::EncodingOptionsPreset) -> Self {
        Encoding::Preset(preset)
    }
}

impl From<EncodingOptions> for Encoding {
    fn from(options: EncodingOptions) -> Self {
        Encoding::Advanced(options.into())
    }
}

impl From<proto::EncodingOptions> for Encoding {
    fn from(options: proto::EncodingOptions) -> Self {
        Encoding::Advanced(options)
    }
}

/// Options of [`start_room_composite_egress`](crate::EgressClient::start_room_composite_egress)
/// (`livekit-api`'s `RoomCompositeOptions`, plus per-egress webhooks).
///
/// ```
/// use egress_client::{AudioMixing, RoomCompositeOptions};
///
/// let options = RoomCompositeOptions {
///     layout: "speaker".into(),
///     audio_only: true,
///     audio_mixing: AudioMixing::DualChannelAgent,
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoomCompositeOptions {
    /// Layout template, e.g. `grid` or `speaker` (empty: LiveKit's default).
    pub layout: String,
    /// Output encoding (default: [`Encoding::SdkDefault`]).
    pub encoding: Encoding,
    /// Record audio only; cannot be combined with `video_only`.
    pub audio_only: bool,
    /// Record video only; cannot be combined with `audio_only`.
    pub video_only: bool,
    /// Serve the layout template from this URL instead of LiveKit's.
    pub custom_base_url: String,
    /// Channel layout of the audio; LiveKit applies it to audio-only recordings.
    pub audio_mixing: AudioMixing,
    /// Extra webhooks for this egress's events.
    pub webhooks: Vec<proto::WebhookConfig>,
}

/// Options of [`start_web_egress`](crate::EgressClient::start_web_egress)
/// (`livekit-api`'s `WebOptions`, plus per-egress webhooks).
///
/// ```
/// use egress_client::WebOptions;
///
/// let options = WebOptions { await_start_signal: true, ..Default::default() };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebOptions {
    /// Output encoding (default: [`Encoding::SdkDefault`]).
    pub encoding: Encoding,
    /// Record audio only; cannot be combined with `video_only`.
    pub audio_only: bool,
    /// Record video only; cannot be combined with `audio_only`.
    pub video_only: bool,
    /// Wait for the page to log `START_RECORDING` before recording.
    pub await_start_signal: bool,
    /// Extra webhooks for this egress's events.
    pub webhooks: Vec<proto::WebhookConfig>,
}

/// Options of [`start_participant_egress`](crate::EgressClient::start_participant_egress)
/// (`livekit-api`'s `ParticipantEgressOptions`, plus per-egress webhooks).
///
/// ```
/// use egress_client::{ParticipantEgressOptions, proto};
///
/// let options = ParticipantEgressOptions {
///     screenshare: true,
///     encoding: proto::EncodingOptionsPreset::H264720p30.into(),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParticipantEgressOptions {
    /// Record the participant's screen share instead of their camera.
    pub screenshare: bool,
    /// Output encoding (default: [`Encoding::SdkDefault`]).
    pub encoding: Encoding,
    /// Extra webhooks for this egress's events.
    pub webhooks: Vec<proto::WebhookConfig>,
}

/// Options of [`start_track_composite_egress`](crate::EgressClient::start_track_composite_egress)
/// (`livekit-api`'s `TrackCompositeOptions`, plus per-egress webhooks). At least one track id
/// is required.
///
/// ```
/// use egress_client::TrackCompositeOptions;
///
/// let options = TrackCompositeOptions {
///     audio_track_id: "TR_audio".into(),
///     video_track_id: "TR_video".into(),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrackCompositeOptions {
    /// Output encoding (default: [`Encoding::SdkDefault`]).
    pub encoding: Encoding,
    /// The audio track to record.
    pub audio_track_id: String,
    /// The video track to record.
    pub video_track_id: String,
    /// Extra webhooks for this egress's events.
    pub webhooks: Vec<proto::WebhookConfig>,
}
