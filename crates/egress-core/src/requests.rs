//! Builders for every Start RPC.
//!
//! Each builder collects the settings of one request and its `build()`
//! returns the proto request only if it passes the checks in
//! [`validate`], so a mistake (no room, no outputs) is reported before
//! anything is sent rather than by LiveKit.
//!
//! Encoding is either a named [`preset`](RoomCompositeRequest::preset) or
//! [`advanced`](RoomCompositeRequest::advanced) options. Setting both is a
//! build error rather than "last one wins", because either silent choice
//! would record something the caller did not ask for. Setting neither
//! leaves the choice to LiveKit (its default is `H264_720P_30`).
//!
//! # Example
//!
//! ```
//! use egress_core::requests::TrackRequest;
//! use egress_core::{TrackEgressOutput, ValidationError};
//!
//! let request = TrackRequest::new(
//!     "standup",
//!     "TR_abc",
//!     TrackEgressOutput::WebSocket("wss://stt.example.com/in".into()),
//! )
//! .build()?;
//! assert_eq!(request.track_id, "TR_abc");
//!
//! let err = TrackRequest::new("", "TR_abc", TrackEgressOutput::WebSocket("wss://x".into()))
//!     .build()
//!     .unwrap_err();
//! assert_eq!(err, ValidationError::Missing { field: "room_name" });
//! # Ok::<(), ValidationError>(())
//! ```

use crate::outputs::{EgressOutput, SplitOutputs, TrackEgressOutput};
use crate::{AudioMixing, Validate, ValidationError, proto, validate};

use proto::EncodingOptionsPreset as Preset;

/// The encoding settings a builder has collected so far.
#[derive(Debug, Clone, Default, PartialEq)]
struct EncodingChoice {
    preset: Option<Preset>,
    advanced: Option<proto::EncodingOptions>,
}

/// The one encoding setting that goes into the request's `options` oneof.
enum Chosen {
    Preset(i32),
    Advanced(proto::EncodingOptions),
}

impl EncodingChoice {
    fn resolve(self) -> Result<Option<Chosen>, ValidationError> {
        match (self.preset, self.advanced) {
            (Some(_), Some(_)) => Err(ValidationError::MutuallyExclusive {
                field: "preset",
                other: "advanced",
            }),
            (Some(preset), None) => Ok(Some(Chosen::Preset(preset as i32))),
            (None, Some(advanced)) => Ok(Some(Chosen::Advanced(advanced))),
            (None, None) => Ok(None),
        }
    }
}

/// Maps a resolved encoding choice onto a request-specific oneof enum
/// (they all have `Preset(i32)` and `Advanced(EncodingOptions)` variants).
macro_rules! encoding_oneof {
    ($choice:expr, $oneof:path) => {{
        use $oneof as Oneof;
        $choice.resolve()?.map(|chosen| match chosen {
            Chosen::Preset(preset) => Oneof::Preset(preset),
            Chosen::Advanced(advanced) => Oneof::Advanced(advanced),
        })
    }};
}

/// Assembles a v1 Start request from a builder: the fields the caller names,
/// plus the outputs, webhooks and encoding every v1 builder has, then
/// validates it. Every field is named (no `..Default::default()`), so a new
/// schema field breaks the build here rather than being silently left unset.
macro_rules! build_v1 {
    ($self:ident, $req:ident, $oneof:ident { $($field:ident: $value:expr),* $(,)? }) => {{
        let options = encoding_oneof!($self.encoding, proto::$oneof::Options);
        let request = proto::$req {
            $($field: $value,)*
            file_outputs: $self.outputs.file_outputs,
            stream_outputs: $self.outputs.stream_outputs,
            segment_outputs: $self.outputs.segment_outputs,
            image_outputs: $self.outputs.image_outputs,
            webhooks: $self.webhooks,
            options,
        };
        request.validate()?;
        Ok(request)
    }};
}

/// Where a builder keeps its outputs: per-kind lists for the v1 requests,
/// one ordered list of `Output` messages for the unified one. Lets every
/// Start builder share the same `output`/`outputs` setters.
trait OutputList {
    fn add(&mut self, output: EgressOutput);
}

impl OutputList for SplitOutputs {
    fn add(&mut self, output: EgressOutput) {
        self.push(output);
    }
}

/// The unified request converts with `proto::Output::from`, which moves a
/// file's upload target into the output's `storage`.
impl OutputList for Vec<proto::Output> {
    fn add(&mut self, output: EgressOutput) {
        self.push(proto::Output::from(output));
    }
}

/// Adds the `audio_only` and `video_only` setters to a builder with those
/// fields (room composite and web).
macro_rules! audio_video_only_setters {
    () => {
        /// Record audio only. Cannot be combined with `video_only(true)`.
        pub fn audio_only(mut self, audio_only: bool) -> Self {
            self.audio_only = audio_only;
            self
        }

        /// Record video only. Cannot be combined with `audio_only(true)`.
        pub fn video_only(mut self, video_only: bool) -> Self {
            self.video_only = video_only;
            self
        }
    };
}

/// Adds the `webhook` and `webhooks` setters to a builder with a `webhooks`
/// field.
macro_rules! webhook_setters {
    () => {
        /// Adds a webhook that receives this egress's events in addition to
        /// the project's configured webhooks.
        pub fn webhook(mut self, webhook: proto::WebhookConfig) -> Self {
            self.webhooks.push(webhook);
            self
        }

        /// Adds several webhooks, in order.
        pub fn webhooks(
            mut self,
            webhooks: impl IntoIterator<Item = proto::WebhookConfig>,
        ) -> Self {
            self.webhooks.extend(webhooks);
            self
        }
    };
}

/// Adds the shared `output`, `outputs`, `preset`, `advanced`, `encoding`
/// and webhook setters to a builder with `outputs` (an [`OutputList`]), `encoding` and
/// `webhooks` fields: every Start builder but the track one, whose single
/// output is fixed and which takes no encoding.
macro_rules! common_setters {
    () => {
        /// Adds one output; outputs of the same kind keep the order in
        /// which they are added.
        pub fn output(mut self, output: impl Into<EgressOutput>) -> Self {
            self.outputs.add(output.into());
            self
        }

        /// Adds several outputs, in order.
        pub fn outputs(mut self, outputs: impl IntoIterator<Item = EgressOutput>) -> Self {
            for output in outputs {
                self.outputs.add(output);
            }
            self
        }

        /// Encodes with a named preset. Cannot be combined with
        /// `advanced`.
        pub fn preset(mut self, preset: Preset) -> Self {
            self.encoding.preset = Some(preset);
            self
        }

        /// Encodes with explicit options (typed
        /// [`EncodingOptions`](crate::EncodingOptions) or the proto
        /// message). Cannot be combined with `preset`.
        pub fn advanced(mut self, options: impl Into<proto::EncodingOptions>) -> Self {
            self.encoding.advanced = Some(options.into());
            self
        }

        /// Sets the preset and the explicit options at once, replacing
        /// both (for callers that carry the choice as a pair). Both `Some`
        /// is the same build error as calling `preset` and `advanced`.
        pub fn encoding(
            mut self,
            (preset, advanced): (Option<Preset>, Option<proto::EncodingOptions>),
        ) -> Self {
            self.encoding = EncodingChoice { preset, advanced };
            self
        }

        webhook_setters!();
    };
}

/// Builds a `StartRoomCompositeEgress` request: records a whole room through
/// a layout template.
///
/// # Example
///
/// ```
/// use egress_core::requests::RoomCompositeRequest;
/// use egress_core::presets::H264_1080P_60;
/// use egress_core::{EgressOutput, ValidationError, proto};
///
/// let request = RoomCompositeRequest::new("standup")
///     .layout("grid")
///     .advanced(H264_1080P_60)
///     .output(proto::SegmentedFileOutput {
///         playlist_name: "standup.m3u8".into(),
///         ..Default::default()
///     })
///     .build()?;
/// assert_eq!(request.layout, "grid");
/// assert_eq!(request.segment_outputs.len(), 1);
/// assert!(matches!(
///     request.options,
///     Some(proto::room_composite_egress_request::Options::Advanced(o)) if o.framerate == 60
/// ));
///
/// let err = RoomCompositeRequest::new("standup")
///     .output(EgressOutput::Stream(proto::StreamOutput::default()))
///     .preset(proto::EncodingOptionsPreset::H264720p30)
///     .advanced(H264_1080P_60)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "preset and advanced are mutually exclusive");
/// # Ok::<(), ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct RoomCompositeRequest {
    room_name: String,
    layout: String,
    audio_only: bool,
    video_only: bool,
    audio_mixing: AudioMixing,
    custom_base_url: String,
    encoding: EncodingChoice,
    outputs: SplitOutputs,
    webhooks: Vec<proto::WebhookConfig>,
}

impl RoomCompositeRequest {
    /// Starts a request for `room_name`, with no outputs yet.
    pub fn new(room_name: impl Into<String>) -> Self {
        Self {
            room_name: room_name.into(),
            layout: String::new(),
            audio_only: false,
            video_only: false,
            audio_mixing: AudioMixing::default(),
            custom_base_url: String::new(),
            encoding: EncodingChoice::default(),
            outputs: SplitOutputs::default(),
            webhooks: Vec::new(),
        }
    }

    /// The layout template, e.g. `grid` or `speaker` (empty: LiveKit's
    /// default layout).
    pub fn layout(mut self, layout: impl Into<String>) -> Self {
        self.layout = layout.into();
        self
    }

    audio_video_only_setters!();

    /// How audio is spread over channels (LiveKit applies it to audio-only
    /// recordings).
    pub fn audio_mixing(mut self, audio_mixing: AudioMixing) -> Self {
        self.audio_mixing = audio_mixing;
        self
    }

    /// Serve the layout template from this URL instead of LiveKit's.
    pub fn custom_base_url(mut self, url: impl Into<String>) -> Self {
        self.custom_base_url = url.into();
        self
    }

    common_setters!();

    /// Validates and returns the proto request.
    ///
    /// # Errors
    ///
    /// `preset` together with `advanced`, then anything
    /// [`validate_room_composite`](validate::validate_room_composite)
    /// rejects.
    pub fn build(self) -> Result<proto::RoomCompositeEgressRequest, ValidationError> {
        build_v1!(
            self,
            RoomCompositeEgressRequest,
            room_composite_egress_request {
                room_name: self.room_name,
                layout: self.layout,
                audio_only: self.audio_only,
                audio_mixing: self.audio_mixing.as_i32(),
                video_only: self.video_only,
                custom_base_url: self.custom_base_url,
                // The deprecated single output is only for old clients.
                output: None,
            }
        )
    }
}

/// Builds a `StartWebEgress` request: records an arbitrary web page.
///
/// # Example
///
/// ```
/// use egress_core::requests::WebRequest;
/// use egress_core::{ValidationError, proto};
///
/// let request = WebRequest::new("https://example.com/dashboard")
///     .await_start_signal(true)
///     .output(proto::EncodedFileOutput::default())
///     .build()?;
/// assert!(request.await_start_signal);
///
/// let err = WebRequest::new("https://example.com")
///     .audio_only(true)
///     .video_only(true)
///     .output(proto::EncodedFileOutput::default())
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "audio_only and video_only are mutually exclusive");
/// # Ok::<(), ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct WebRequest {
    url: String,
    audio_only: bool,
    video_only: bool,
    await_start_signal: bool,
    encoding: EncodingChoice,
    outputs: SplitOutputs,
    webhooks: Vec<proto::WebhookConfig>,
}

impl WebRequest {
    /// Starts a request recording `url`, with no outputs yet.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            audio_only: false,
            video_only: false,
            await_start_signal: false,
            encoding: EncodingChoice::default(),
            outputs: SplitOutputs::default(),
            webhooks: Vec::new(),
        }
    }

    audio_video_only_setters!();

    /// Wait for the page to log `START_RECORDING` before recording.
    pub fn await_start_signal(mut self, await_start_signal: bool) -> Self {
        self.await_start_signal = await_start_signal;
        self
    }

    common_setters!();

    /// Validates and returns the proto request.
    ///
    /// # Errors
    ///
    /// `preset` together with `advanced`, then anything
    /// [`validate_web`](validate::validate_web) rejects.
    pub fn build(self) -> Result<proto::WebEgressRequest, ValidationError> {
        build_v1!(
            self,
            WebEgressRequest,
            web_egress_request {
                url: self.url,
                audio_only: self.audio_only,
                video_only: self.video_only,
                await_start_signal: self.await_start_signal,
                output: None,
            }
        )
    }
}

/// Builds a `StartParticipantEgress` request: records one participant's
/// camera (or screen share) and microphone.
///
/// # Example
///
/// ```
/// use egress_core::requests::ParticipantRequest;
/// use egress_core::{ValidationError, proto};
///
/// let request = ParticipantRequest::new("standup", "alice")
///     .screen_share(true)
///     .preset(proto::EncodingOptionsPreset::H2641080p30)
///     .output(proto::EncodedFileOutput::default())
///     .build()?;
/// assert!(request.screen_share);
///
/// let err = ParticipantRequest::new("standup", "")
///     .output(proto::EncodedFileOutput::default())
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "missing identity");
/// # Ok::<(), ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ParticipantRequest {
    room_name: String,
    identity: String,
    screen_share: bool,
    encoding: EncodingChoice,
    outputs: SplitOutputs,
    webhooks: Vec<proto::WebhookConfig>,
}

impl ParticipantRequest {
    /// Starts a request for participant `identity` in `room_name`.
    pub fn new(room_name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            room_name: room_name.into(),
            identity: identity.into(),
            screen_share: false,
            encoding: EncodingChoice::default(),
            outputs: SplitOutputs::default(),
            webhooks: Vec::new(),
        }
    }

    /// Record the participant's screen share instead of their camera.
    pub fn screen_share(mut self, screen_share: bool) -> Self {
        self.screen_share = screen_share;
        self
    }

    common_setters!();

    /// Validates and returns the proto request.
    ///
    /// # Errors
    ///
    /// `preset` together with `advanced`, then anything
    /// [`validate_participant`](validate::validate_participant) rejects.
    pub fn build(self) -> Result<proto::ParticipantEgressRequest, ValidationError> {
        build_v1!(
            self,
            ParticipantEgressRequest,
            participant_egress_request {
                room_name: self.room_name,
                identity: self.identity,
                screen_share: self.screen_share,
            }
        )
    }
}

/// Builds a `StartTrackCompositeEgress` request: records one audio and/or
/// one video track, synchronised.
///
/// # Example
///
/// ```
/// use egress_core::requests::TrackCompositeRequest;
/// use egress_core::{ValidationError, proto};
///
/// let request = TrackCompositeRequest::new("standup")
///     .audio_track_id("TR_audio")
///     .video_track_id("TR_video")
///     .output(proto::EncodedFileOutput::default())
///     .build()?;
/// assert_eq!(request.video_track_id, "TR_video");
///
/// let err = TrackCompositeRequest::new("standup")
///     .output(proto::EncodedFileOutput::default())
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "missing audio_track_id or video_track_id");
/// # Ok::<(), ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TrackCompositeRequest {
    room_name: String,
    audio_track_id: String,
    video_track_id: String,
    encoding: EncodingChoice,
    outputs: SplitOutputs,
    webhooks: Vec<proto::WebhookConfig>,
}

impl TrackCompositeRequest {
    /// Starts a request for tracks of `room_name`; add at least one track id.
    pub fn new(room_name: impl Into<String>) -> Self {
        Self {
            room_name: room_name.into(),
            audio_track_id: String::new(),
            video_track_id: String::new(),
            encoding: EncodingChoice::default(),
            outputs: SplitOutputs::default(),
            webhooks: Vec::new(),
        }
    }

    /// The audio track to record.
    pub fn audio_track_id(mut self, track_id: impl Into<String>) -> Self {
        self.audio_track_id = track_id.into();
        self
    }

    /// The video track to record.
    pub fn video_track_id(mut self, track_id: impl Into<String>) -> Self {
        self.video_track_id = track_id.into();
        self
    }

    common_setters!();

    /// Validates and returns the proto request.
    ///
    /// # Errors
    ///
    /// `preset` together with `advanced`, then anything
    /// [`validate_track_composite`](validate::validate_track_composite)
    /// rejects.
    pub fn build(self) -> Result<proto::TrackCompositeEgressRequest, ValidationError> {
        build_v1!(
            self,
            TrackCompositeEgressRequest,
            track_composite_egress_request {
                room_name: self.room_name,
                audio_track_id: self.audio_track_id,
                video_track_id: self.video_track_id,
                output: None,
            }
        )
    }
}

/// Builds a `StartTrackEgress` request: exports one track without
/// transcoding, to a file or a WebSocket.
///
/// The output is required, so it is taken by [`new`](Self::new).
///
/// # Example
///
/// ```
/// use egress_core::requests::TrackRequest;
/// use egress_core::{TrackEgressOutput, ValidationError, proto};
///
/// let request = TrackRequest::new(
///     "standup",
///     "TR_abc",
///     proto::DirectFileOutput { filepath: "tracks/{track_id}.ogg".into(), ..Default::default() },
/// )
/// .build()?;
/// assert!(matches!(request.output, Some(proto::track_egress_request::Output::File(_))));
/// # Ok::<(), ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TrackRequest {
    room_name: String,
    track_id: String,
    output: TrackEgressOutput,
    webhooks: Vec<proto::WebhookConfig>,
}

impl TrackRequest {
    /// Starts a request exporting `track_id` of `room_name` to `output`.
    pub fn new(
        room_name: impl Into<String>,
        track_id: impl Into<String>,
        output: impl Into<TrackEgressOutput>,
    ) -> Self {
        Self {
            room_name: room_name.into(),
            track_id: track_id.into(),
            output: output.into(),
            webhooks: Vec::new(),
        }
    }

    webhook_setters!();

    /// Validates and returns the proto request.
    ///
    /// # Errors
    ///
    /// Anything [`validate_track`](validate::validate_track) rejects.
    pub fn build(self) -> Result<proto::TrackEgressRequest, ValidationError> {
        let request = proto::TrackEgressRequest {
            room_name: self.room_name,
            track_id: self.track_id,
            webhooks: self.webhooks,
            output: Some(self.output.into()),
        };
        validate::validate_track(&request)?;
        Ok(request)
    }
}

/// Builds a unified `StartEgress` request.
///
/// Pick the source with a constructor — [`template`](Self::template) (room
/// composite), [`web`](Self::web) or [`media`](Self::media) (tracks or a
/// participant) — then add outputs. The source messages are small, so they
/// are passed as the proto structs themselves.
///
/// # Example
///
/// ```
/// use egress_core::requests::UnifiedRequest;
/// use egress_core::{EgressOutput, ValidationError, proto};
///
/// let request = UnifiedRequest::template(
///     "standup",
///     proto::TemplateSource { layout: "grid".into(), audio_only: true, ..Default::default() },
/// )
/// .output(proto::EncodedFileOutput { filepath: "standup.ogg".into(), ..Default::default() })
/// .storage(proto::StorageConfig {
///     provider: Some(proto::storage_config::Provider::Gcp(proto::GcpUpload {
///         bucket: "recordings".into(),
///         ..Default::default()
///     })),
/// })
/// .build()?;
/// assert_eq!(request.outputs.len(), 1);
/// assert!(request.storage.is_some());
///
/// let err = UnifiedRequest::web(proto::WebSource::default())
///     .output(proto::StreamOutput::default())
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "missing web.url");
/// # Ok::<(), ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct UnifiedRequest {
    room_name: String,
    source: proto::start_egress_request::Source,
    encoding: EncodingChoice,
    outputs: Vec<proto::Output>,
    storage: Option<proto::StorageConfig>,
    webhooks: Vec<proto::WebhookConfig>,
}

impl UnifiedRequest {
    fn with_source(room_name: String, source: proto::start_egress_request::Source) -> Self {
        Self {
            room_name,
            source,
            encoding: EncodingChoice::default(),
            outputs: Vec::new(),
            storage: None,
            webhooks: Vec::new(),
        }
    }

    /// Records `room_name` through a layout template (room composite).
    pub fn template(room_name: impl Into<String>, template: proto::TemplateSource) -> Self {
        Self::with_source(
            room_name.into(),
            proto::start_egress_request::Source::Template(template),
        )
    }

    /// Records a web page. No room is needed; add one with
    /// [`room_name`](Self::room_name) to associate the egress with a room.
    pub fn web(web: proto::WebSource) -> Self {
        Self::with_source(String::new(), proto::start_egress_request::Source::Web(web))
    }

    /// Records tracks of `room_name` directly (participant, track composite
    /// or single-track export).
    pub fn media(room_name: impl Into<String>, media: proto::MediaSource) -> Self {
        Self::with_source(
            room_name.into(),
            proto::start_egress_request::Source::Media(media),
        )
    }

    /// Sets (or replaces) the room the egress belongs to.
    pub fn room_name(mut self, room_name: impl Into<String>) -> Self {
        self.room_name = room_name.into();
        self
    }

    // `output`/`outputs` convert with `proto::Output::from` (a file's upload
    // target moves into the output's `storage`) and keep the order given.
    common_setters!();

    /// Adds an output message as is, e.g. with a per-output `storage`.
    pub fn raw_output(mut self, output: proto::Output) -> Self {
        self.outputs.push(output);
        self
    }

    /// Sets the request-level upload target, used by outputs that do not
    /// name their own.
    pub fn storage(mut self, storage: proto::StorageConfig) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Validates and returns the proto request.
    ///
    /// # Errors
    ///
    /// `preset` together with `advanced`, then anything
    /// [`validate_start_egress`](validate::validate_start_egress) rejects.
    pub fn build(self) -> Result<proto::StartEgressRequest, ValidationError> {
        let encoding = encoding_oneof!(self.encoding, proto::start_egress_request::Encoding);
        let request = proto::StartEgressRequest {
            room_name: self.room_name,
            outputs: self.outputs,
            storage: self.storage,
            webhooks: self.webhooks,
            source: Some(self.source),
            encoding,
        };
        validate::validate_start_egress(&request)?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::{self, H264_720P_60};
    use crate::split_outputs;
    use proptest::prelude::*;

    fn file(path: &str) -> EgressOutput {
        EgressOutput::File(proto::EncodedFileOutput {
            filepath: path.into(),
            ..Default::default()
        })
    }

    fn stream(url: &str) -> EgressOutput {
        EgressOutput::Stream(proto::StreamOutput {
            protocol: proto::StreamProtocol::Rtmp as i32,
            urls: vec![url.into()],
            ..Default::default()
        })
    }

    const BOTH: ValidationError = ValidationError::MutuallyExclusive {
        field: "preset",
        other: "advanced",
    };

    #[test]
    fn every_builder_rejects_preset_and_advanced() {
        let preset = Preset::H264720p30;
        let errors = [
            RoomCompositeRequest::new("r")
                .output(file("a"))
                .preset(preset)
                .advanced(H264_720P_60)
                .build()
                .err(),
            WebRequest::new("https://x")
                .output(file("a"))
                .advanced(H264_720P_60)
                .preset(preset)
                .build()
                .err(),
            ParticipantRequest::new("r", "p")
                .output(file("a"))
                .preset(preset)
                .advanced(H264_720P_60)
                .build()
                .err(),
            TrackCompositeRequest::new("r")
                .audio_track_id("a")
                .output(file("a"))
                .preset(preset)
                .advanced(H264_720P_60)
                .build()
                .err(),
            UnifiedRequest::template("r", Default::default())
                .output(file("a"))
                .preset(preset)
                .advanced(H264_720P_60)
                .build()
                .err(),
        ];
        for error in errors {
            assert_eq!(error, Some(BOTH));
        }
    }

    #[test]
    fn encoding_pair_sets_both_choices() {
        let preset = Preset::H264720p30;
        let request = WebRequest::new("https://x")
            .output(file("a"))
            .advanced(H264_720P_60)
            .encoding((Some(preset), None))
            .build()
            .unwrap();
        assert_eq!(
            request.options,
            Some(proto::web_egress_request::Options::Preset(preset as i32))
        );
        let both = UnifiedRequest::template("r", Default::default())
            .output(file("a"))
            .encoding((Some(preset), Some(H264_720P_60.into())))
            .build();
        assert_eq!(both, Err(BOTH));
    }

    #[test]
    fn encoding_choice_lands_in_the_oneof() {
        use proto::room_composite_egress_request::Options;
        let preset = RoomCompositeRequest::new("r")
            .output(file("a"))
            .preset(Preset::PortraitH264720p60)
            .build()
            .unwrap();
        assert_eq!(
            preset.options,
            Some(Options::Preset(Preset::PortraitH264720p60 as i32))
        );

        let advanced = RoomCompositeRequest::new("r")
            .output(file("a"))
            .advanced(presets::PORTRAIT_H264_1080P_30)
            .build()
            .unwrap();
        assert_eq!(
            advanced.options,
            Some(Options::Advanced(presets::PORTRAIT_H264_1080P_30.into()))
        );

        let neither = RoomCompositeRequest::new("r")
            .output(file("a"))
            .build()
            .unwrap();
        assert_eq!(neither.options, None);
    }

    #[test]
    fn builders_reject_missing_outputs() {
        assert_eq!(
            RoomCompositeRequest::new("r").build(),
            Err(ValidationError::NoOutputs)
        );
        assert_eq!(
            WebRequest::new("https://x").build(),
            Err(ValidationError::NoOutputs)
        );
        assert_eq!(
            ParticipantRequest::new("r", "p").build(),
            Err(ValidationError::NoOutputs)
        );
        assert_eq!(
            TrackCompositeRequest::new("r").video_track_id("v").build(),
            Err(ValidationError::NoOutputs)
        );
        assert_eq!(
            UnifiedRequest::media(
                "r",
                proto::MediaSource {
                    video: Some(proto::media_source::Video::VideoTrackId("v".into())),
                    audio: None,
                }
            )
            .build(),
            Err(ValidationError::NoOutputs)
        );
    }

    #[test]
    fn builders_reject_empty_identifiers() {
        let cases = [
            (
                RoomCompositeRequest::new("")
                    .output(file("a"))
                    .build()
                    .err(),
                "room_name",
            ),
            (WebRequest::new("").output(file("a")).build().err(), "url"),
            (
                ParticipantRequest::new("", "p")
                    .output(file("a"))
                    .build()
                    .err(),
                "room_name",
            ),
            (
                ParticipantRequest::new("r", "")
                    .output(file("a"))
                    .build()
                    .err(),
                "identity",
            ),
            (
                TrackCompositeRequest::new("")
                    .audio_track_id("a")
                    .output(file("a"))
                    .build()
                    .err(),
                "room_name",
            ),
            (
                TrackRequest::new("r", "", TrackEgressOutput::WebSocket("wss://x".into()))
                    .build()
                    .err(),
                "track_id",
            ),
            (
                TrackRequest::new("r", "t", TrackEgressOutput::WebSocket(String::new()))
                    .build()
                    .err(),
                "websocket_url",
            ),
            (
                UnifiedRequest::template("", Default::default())
                    .output(file("a"))
                    .build()
                    .err(),
                "room_name",
            ),
        ];
        for (err, field) in cases {
            assert_eq!(err, Some(ValidationError::Missing { field }));
        }
    }

    #[test]
    fn builders_reject_audio_and_video_only() {
        let err = ValidationError::MutuallyExclusive {
            field: "audio_only",
            other: "video_only",
        };
        assert_eq!(
            RoomCompositeRequest::new("r")
                .audio_only(true)
                .video_only(true)
                .output(file("a"))
                .build(),
            Err(err.clone())
        );
        assert_eq!(
            WebRequest::new("https://x")
                .audio_only(true)
                .video_only(true)
                .output(file("a"))
                .build(),
            Err(err)
        );
    }

    #[test]
    fn room_composite_carries_every_setting() {
        let webhook = proto::WebhookConfig {
            url: "https://hooks.example.com".into(),
            ..Default::default()
        };
        let request = RoomCompositeRequest::new("r")
            .layout("speaker")
            .audio_only(true)
            .audio_mixing(AudioMixing::DualChannelAlternate)
            .custom_base_url("https://layouts.example.com")
            .webhook(webhook.clone())
            .outputs([file("a"), stream("rtmp://b.example.com/live/key")])
            .build()
            .unwrap();
        assert_eq!(request.layout, "speaker");
        assert!(request.audio_only && !request.video_only);
        assert_eq!(
            request.audio_mixing,
            proto::AudioMixing::DualChannelAlternate as i32
        );
        assert_eq!(request.custom_base_url, "https://layouts.example.com");
        assert_eq!(request.webhooks, vec![webhook]);
        let paths: Vec<_> = request
            .file_outputs
            .iter()
            .map(|f| f.filepath.as_str())
            .collect();
        assert_eq!(paths, ["a"]);
        assert_eq!(request.stream_outputs.len(), 1);
        assert!(request.output.is_none());
    }

    #[test]
    fn unified_keeps_outputs_in_order() {
        let request = UnifiedRequest::web(proto::WebSource {
            url: "https://x".into(),
            ..Default::default()
        })
        .room_name("r")
        .output(stream("rtmp://a.example.com/live/key"))
        .raw_output(proto::Output {
            config: Some(proto::output::Config::Images(Default::default())),
            storage: None,
        })
        .output(file("b"))
        .preset(Preset::H2641080p60)
        .build()
        .unwrap();
        assert_eq!(request.room_name, "r");
        let kinds: Vec<_> = request
            .outputs
            .iter()
            .map(|o| match o.config {
                Some(proto::output::Config::Stream(_)) => "stream",
                Some(proto::output::Config::Images(_)) => "images",
                Some(proto::output::Config::File(_)) => "file",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["stream", "images", "file"]);
        assert_eq!(
            request.encoding,
            Some(proto::start_egress_request::Encoding::Preset(
                Preset::H2641080p60 as i32
            ))
        );
    }

    fn output_strategy() -> impl Strategy<Value = EgressOutput> {
        (0u8..4, "[a-z]{1,6}").prop_map(|(kind, name)| crate::outputs::tests::named(kind, name))
    }

    /// Output sets LiveKit's worker accepts: at most one file, stream and segmented output
    /// (the stream with a well-formed RTMP URL), any number of images, in any order.
    fn accepted_outputs_strategy() -> impl Strategy<Value = Vec<EgressOutput>> {
        (
            any::<[bool; 3]>(),
            0usize..4,
            "[a-z]{1,6}",
            any::<prop::sample::Index>(),
        )
            .prop_filter("needs an output", |(once, images, _, _)| {
                once.iter().any(|b| *b) || *images > 0
            })
            .prop_map(|(once, images, name, rotate)| {
                let mut outputs: Vec<EgressOutput> = (0u8..3)
                    .filter(|kind| once[usize::from(*kind)])
                    .map(|kind| crate::outputs::tests::named(kind, name.clone()))
                    .chain((0..images).map(|_| crate::outputs::tests::named(3, name.clone())))
                    .map(|output| match output {
                        EgressOutput::Stream(mut s) => {
                            s.urls = vec![format!("rtmp://live.example.com/app/{name}")];
                            EgressOutput::Stream(s)
                        }
                        other => other,
                    })
                    .collect();
                let len = outputs.len();
                outputs.rotate_left(rotate.index(len));
                outputs
            })
    }

    proptest! {
        #[test]
        fn room_composite_builder_passes_with_room_and_outputs(
            room in ".{1,16}",
            outputs in accepted_outputs_strategy(),
        ) {
            let request = RoomCompositeRequest::new(room.clone())
                .outputs(outputs.clone())
                .build()
                .unwrap();
            let expected = split_outputs(outputs);
            prop_assert_eq!(request.room_name, room);
            prop_assert_eq!(request.file_outputs, expected.file_outputs);
            prop_assert_eq!(request.stream_outputs, expected.stream_outputs);
            prop_assert_eq!(request.segment_outputs, expected.segment_outputs);
            prop_assert_eq!(request.image_outputs, expected.image_outputs);
        }

        #[test]
        fn builders_fail_without_outputs(room in ".{1,16}", audio_only: bool) {
            prop_assert_eq!(
                RoomCompositeRequest::new(room.clone()).audio_only(audio_only).build(),
                Err(ValidationError::NoOutputs)
            );
            prop_assert_eq!(
                ParticipantRequest::new(room, "p").build(),
                Err(ValidationError::NoOutputs)
            );
        }

        #[test]
        fn audio_and_video_only_always_fails(
            room in ".{1,16}",
            outputs in prop::collection::vec(output_strategy(), 0..5),
        ) {
            let err = RoomCompositeRequest::new(room)
                .audio_only(true)
                .video_only(true)
                .outputs(outputs)
                .build()
                .unwrap_err();
            prop_assert_eq!(err.to_string(), "audio_only and video_only are mutually exclusive");
        }
    }
}
