//! Validation of decoded egress requests.
//!
//! The gateway does **not** run these rules on the requests it proxies: it
//! forwards the caller's bytes to LiveKit untouched, and LiveKit validates
//! them. These rules are for the code that *builds* requests — the builders
//! in [`requests`](crate::requests), the Rust client — so a mistake is caught
//! before anything is sent, and for the simulator, which answers the way
//! LiveKit would. They are one rule set shared by all of them.
//!
//! The rules are the ones LiveKit's **egress worker** applies when it takes a
//! request (`PipelineConfig.Update` in livekit/egress `pkg/config/pipeline.go`
//! and the output checks in `pkg/config/output.go` and `urls.go`); LiveKit's
//! server forwards Start requests unchecked. They catch what the worker is
//! certain to reject: a missing URL, track or identity, no output, more than
//! one file, stream or segmented output, `audio_only` together with
//! `video_only`, images without video, stream URLs whose scheme does not fit
//! the protocol or RTMP URLs without an app and a key, web pages that are not
//! `http(s)`. They do not judge what only a running pipeline finds out
//! (reachability, encoder limits, storage credentials).
//!
//! Checks run in the worker's order — the source (what to record, then the
//! flags), then the outputs, then the room (the worker needs it last, to join)
//! — so a request with several problems reports the problem LiveKit would.
//! [`ValidationError::livekit_message`] gives the worker's text for each.
//!
//! Outputs are counted across the repeated `*_outputs` fields **and** the
//! deprecated single `output` oneof, because older clients still send the
//! latter and LiveKit still honours it.

use crate::outputs::{LegacyOutput, V1Outputs};
use crate::stream_url::{StreamKind, go_url_scheme, is_http_url, split_rtmp};
use crate::{ValidationError, proto};

/// A request type that can be validated.
///
/// Implemented for every egress request message, so generic proxy code can
/// validate whatever it decoded.
///
/// # Example
///
/// ```
/// use egress_core::{Validate, proto};
///
/// let stop = proto::StopEgressRequest { egress_id: String::new() };
/// assert_eq!(stop.validate().unwrap_err().to_string(), "missing egress_id");
/// ```
pub trait Validate {
    /// Checks the request, reporting the first problem found.
    fn validate(&self) -> Result<(), ValidationError>;
}

fn require(value: &str, field: &'static str) -> Result<(), ValidationError> {
    if value.is_empty() {
        Err(ValidationError::Missing { field })
    } else {
        Ok(())
    }
}

/// `isHttp` on a page URL: empty is missing, anything but `http(s)` invalid.
fn require_http(value: &str, field: &'static str) -> Result<(), ValidationError> {
    require(value, field)?;
    if is_http_url(value) {
        Ok(())
    } else {
        Err(ValidationError::Invalid { field })
    }
}

/// A custom template URL replaces the configured template only when set, and must then be
/// `http(s)` (the worker's `template base url` check).
fn optional_http(value: &str, field: &'static str) -> Result<(), ValidationError> {
    if value.is_empty() || is_http_url(value) {
        Ok(())
    } else {
        Err(ValidationError::Invalid { field })
    }
}

/// What a request's `audio_only` and `video_only` (named `fields` in the request) leave
/// recorded: `(audio, video)`. Both at once is refused.
fn audio_video(
    audio_only: bool,
    video_only: bool,
    [field, other]: [&'static str; 2],
) -> Result<(bool, bool), ValidationError> {
    if audio_only && video_only {
        Err(ValidationError::MutuallyExclusive { field, other })
    } else {
        Ok((!video_only, !audio_only))
    }
}

/// The v1 requests' `audio_only` and `video_only`, for [`audio_video`].
const V1_AUDIO_VIDEO: [&str; 2] = ["audio_only", "video_only"];

/// Fails when more than one output of a kind is given (`multiple … outputs`).
fn at_most_one(count: usize, field: &'static str) -> Result<(), ValidationError> {
    if count > 1 {
        Err(ValidationError::TooMany { field })
    } else {
        Ok(())
    }
}

/// Field names of a stream output's parts, for the v1 lists or the unified `outputs`.
#[derive(Clone, Copy)]
struct StreamFields {
    protocol: &'static str,
    urls: &'static str,
}

const V1_STREAM: StreamFields = StreamFields {
    protocol: "stream_outputs.protocol",
    urls: "stream_outputs.urls",
};
const V2_STREAM: StreamFields = StreamFields {
    protocol: "outputs.stream.protocol",
    urls: "outputs.stream.urls",
};

/// A stream output's target URLs: `urls`, then the URLs of `destinations`. The released
/// worker predates `destinations` (protocol 1.52); they are read here as the URLs they
/// name, so a request that uses them is judged like one that lists the same URLs.
fn stream_targets(stream: &proto::StreamOutput) -> impl Iterator<Item = &String> {
    stream
        .urls
        .iter()
        .chain(stream.destinations.iter().map(|d| &d.url))
}

/// One stream output as the worker reads it: what the protocol (or, for
/// `DEFAULT_PROTOCOL`, the first URL's scheme) says it streams to, then every URL through
/// `StreamConfig.ValidateUrl`. Returns the kind (`None` for a protocol the worker does not
/// know).
fn validate_stream(
    stream: &proto::StreamOutput,
    fields: StreamFields,
    websocket_protocol: bool,
) -> Result<Option<StreamKind>, ValidationError> {
    use proto::StreamProtocol;
    let kind = match StreamProtocol::try_from(stream.protocol) {
        Ok(StreamProtocol::DefaultProtocol) => {
            let Some(first) = stream_targets(stream).next() else {
                return Err(ValidationError::Missing {
                    field: fields.protocol,
                });
            };
            let scheme = go_url_scheme(first).map_err(|reason| ValidationError::InvalidUrl {
                field: fields.urls,
                url: first.clone(),
                reason,
            })?;
            let Some(kind) = StreamKind::of_scheme(&scheme) else {
                return Err(ValidationError::InvalidUrl {
                    field: fields.urls,
                    url: first.clone(),
                    reason: "invalid protocol".to_owned(),
                });
            };
            Some(kind)
        }
        Ok(StreamProtocol::Rtmp) => Some(StreamKind::Rtmp),
        Ok(StreamProtocol::Srt) => Some(StreamKind::Srt),
        // Only the unified request's outputs know the WebSocket protocol.
        Ok(StreamProtocol::Websocket) if websocket_protocol => Some(StreamKind::WebSocket),
        _ => None,
    };
    for url in stream_targets(stream) {
        validate_stream_url(url, kind, fields.urls, fields.protocol)?;
    }
    Ok(kind)
}

/// `StreamConfig.ValidateUrl`: the scheme must name the kind being streamed, and an RTMP
/// URL must have an app and a stream key (the `mux://` and `twitch://` shorthands carry
/// only the key).
fn validate_stream_url(
    url: &str,
    kind: Option<StreamKind>,
    field: &'static str,
    protocol_field: &'static str,
) -> Result<(), ValidationError> {
    let invalid = |reason: String| ValidationError::InvalidUrl {
        field,
        url: url.to_owned(),
        reason,
    };
    let scheme = go_url_scheme(url).map_err(invalid)?;
    let url_kind = StreamKind::of_scheme(&scheme);
    if url_kind != kind {
        return Err(invalid("invalid scheme".to_owned()));
    }
    match kind {
        None => Err(ValidationError::Invalid {
            field: protocol_field,
        }),
        Some(StreamKind::Rtmp) if scheme == "rtmp" || scheme == "rtmps" => {
            if split_rtmp(url).is_some() {
                Ok(())
            } else {
                Err(invalid(RTMP_FORMAT.to_owned()))
            }
        }
        Some(_) => Ok(()),
    }
}

/// The worker's reason for an RTMP URL it cannot find the stream key in.
const RTMP_FORMAT: &str =
    "rtmp urls must be of format rtmp(s)://{host}(/{path})/{app}/{stream_key}( live=1)";

/// `updateEncodedOutputs`: the outputs of a v1 request, in the worker's order (file,
/// stream, segments, images, then "is there any").
fn validate_v1_outputs(
    request: &impl V1Outputs,
    video_enabled: bool,
) -> Result<(), ValidationError> {
    let files = request.file_outputs();
    let streams = request.stream_outputs();
    let segments = request.segment_outputs();
    let images = request.image_outputs();
    let legacy = request.legacy_output();

    at_most_one(files.len(), "file_outputs")?;
    let has_file = !files.is_empty() || matches!(legacy, Some(LegacyOutput::File(_)));

    at_most_one(streams.len(), "stream_outputs")?;
    let stream = streams.first().or(match legacy {
        Some(LegacyOutput::Stream(s)) if streams.is_empty() => Some(s),
        _ => None,
    });
    let mut stream_urls = 0;
    if let Some(stream) = stream {
        validate_stream(stream, V1_STREAM, false)?;
        // An empty stream output is only allowed next to other outputs (the lists; the
        // worker does not count the deprecated single output here).
        stream_urls = stream_targets(stream).count();
        if files.len() + segments.len() + images.len() == 0 && stream_urls == 0 {
            return Err(ValidationError::Missing {
                field: V1_STREAM.urls,
            });
        }
    }

    at_most_one(segments.len(), "segment_outputs")?;
    let has_segments = !segments.is_empty() || matches!(legacy, Some(LegacyOutput::Segments(_)));

    if !images.is_empty() && !video_enabled {
        return Err(ValidationError::MutuallyExclusive {
            field: "image_outputs",
            other: "audio_only",
        });
    }
    // The worker counts stream URLs, not stream outputs.
    if usize::from(has_file) + stream_urls + usize::from(has_segments) + images.len() == 0 {
        return Err(ValidationError::NoOutputs);
    }
    Ok(())
}

/// Number of outputs of a v1 request (room composite, web, participant, track composite),
/// including the deprecated single `output`.
///
/// ```
/// use egress_core::{proto, validate::output_count};
///
/// let request = proto::RoomCompositeEgressRequest {
///     stream_outputs: vec![proto::StreamOutput::default()],
///     ..Default::default()
/// };
/// assert_eq!(output_count(&request), 1);
/// ```
pub fn output_count(request: &impl V1Outputs) -> usize {
    request.output_count()
}

/// Validates a `StartRoomCompositeEgress` request.
///
/// A custom template URL must be `http(s)`; `audio_only` with `video_only` is refused;
/// then the outputs; then `room_name` is required.
///
/// # Example
///
/// ```
/// use egress_core::{proto, validate::validate_room_composite};
///
/// let mut request = proto::RoomCompositeEgressRequest {
///     room_name: "standup".into(),
///     file_outputs: vec![proto::EncodedFileOutput::default()],
///     ..Default::default()
/// };
/// assert!(validate_room_composite(&request).is_ok());
///
/// request.audio_only = true;
/// request.video_only = true;
/// assert_eq!(
///     validate_room_composite(&request).unwrap_err().to_string(),
///     "audio_only and video_only are mutually exclusive",
/// );
/// ```
pub fn validate_room_composite(
    request: &proto::RoomCompositeEgressRequest,
) -> Result<(), ValidationError> {
    optional_http(&request.custom_base_url, "custom_base_url")?;
    let (_, video) = audio_video(request.audio_only, request.video_only, V1_AUDIO_VIDEO)?;
    validate_v1_outputs(request, video)?;
    require(&request.room_name, "room_name")
}

/// Validates a `StartWebEgress` request.
///
/// Requires an `http(s)` `url`, refuses `audio_only` with `video_only`, then checks the
/// outputs (a web egress joins no room).
///
/// ```
/// use egress_core::{proto, validate::validate_web};
///
/// let request = proto::WebEgressRequest {
///     stream_outputs: vec![proto::StreamOutput::default()],
///     ..Default::default()
/// };
/// assert_eq!(validate_web(&request).unwrap_err().to_string(), "missing url");
/// ```
pub fn validate_web(request: &proto::WebEgressRequest) -> Result<(), ValidationError> {
    require_http(&request.url, "url")?;
    let (_, video) = audio_video(request.audio_only, request.video_only, V1_AUDIO_VIDEO)?;
    validate_v1_outputs(request, video)
}

/// Validates a `StartParticipantEgress` request.
///
/// Requires the participant `identity`, then the outputs, then `room_name`.
///
/// ```
/// use egress_core::{proto, validate::validate_participant};
///
/// let request = proto::ParticipantEgressRequest {
///     room_name: "standup".into(),
///     image_outputs: vec![proto::ImageOutput::default()],
///     ..Default::default()
/// };
/// assert_eq!(validate_participant(&request).unwrap_err().field(), "identity");
/// ```
pub fn validate_participant(
    request: &proto::ParticipantEgressRequest,
) -> Result<(), ValidationError> {
    require(&request.identity, "identity")?;
    validate_v1_outputs(request, true)?;
    require(&request.room_name, "room_name")
}

/// Validates a `StartTrackCompositeEgress` request.
///
/// Requires at least one of `audio_track_id` / `video_track_id`, then the outputs (images
/// need the video track), then `room_name`.
///
/// ```
/// use egress_core::{proto, validate::validate_track_composite};
///
/// let request = proto::TrackCompositeEgressRequest {
///     room_name: "standup".into(),
///     file_outputs: vec![proto::EncodedFileOutput::default()],
///     ..Default::default()
/// };
/// assert_eq!(
///     validate_track_composite(&request).unwrap_err().to_string(),
///     "missing audio_track_id or video_track_id",
/// );
/// ```
pub fn validate_track_composite(
    request: &proto::TrackCompositeEgressRequest,
) -> Result<(), ValidationError> {
    if request.audio_track_id.is_empty() && request.video_track_id.is_empty() {
        return Err(ValidationError::MissingEither {
            field: "audio_track_id",
            other: "video_track_id",
        });
    }
    validate_v1_outputs(request, !request.video_track_id.is_empty())?;
    require(&request.room_name, "room_name")
}

/// Validates a `StartTrackEgress` request.
///
/// Requires `track_id` and an `output`; a WebSocket output needs a `ws(s)` URL. (A file
/// output's `filepath` may be empty: LiveKit then uses its default naming template.) Then
/// `room_name` is required.
///
/// ```
/// use egress_core::{proto, validate::validate_track};
///
/// let request = proto::TrackEgressRequest {
///     room_name: "standup".into(),
///     track_id: "TR_abc".into(),
///     output: None,
///     ..Default::default()
/// };
/// assert_eq!(validate_track(&request).unwrap_err().to_string(), "missing output");
/// ```
pub fn validate_track(request: &proto::TrackEgressRequest) -> Result<(), ValidationError> {
    require(&request.track_id, "track_id")?;
    match &request.output {
        None => return Err(ValidationError::Missing { field: "output" }),
        Some(proto::track_egress_request::Output::WebsocketUrl(url)) => {
            require(url, "websocket_url")?;
            validate_stream_url(
                url,
                Some(StreamKind::WebSocket),
                "websocket_url",
                "websocket_url",
            )?;
        }
        Some(proto::track_egress_request::Output::File(_)) => {}
    }
    require(&request.room_name, "room_name")
}

/// Validates a unified `StartEgress` request.
///
/// * A `source` is required. A template's custom base URL and a web source's `web.url`
///   must be `http(s)`; both refuse `audio_only` with `video_only`; a media source must
///   capture video or audio (a video choice, `capture_all`, or audio routes).
/// * At least one output is required, each must say what it produces (have a
///   `config`), and there is at most one file, one stream and one segmented output.
/// * Template and media sources then need `room_name`.
///
/// # Example
///
/// ```
/// use egress_core::{proto, validate::validate_start_egress};
/// use proto::start_egress_request::Source;
///
/// let mut request = proto::StartEgressRequest {
///     room_name: "standup".into(),
///     source: Some(Source::Template(proto::TemplateSource {
///         layout: "grid".into(),
///         ..Default::default()
///     })),
///     ..Default::default()
/// };
/// assert_eq!(validate_start_egress(&request), Err(egress_core::ValidationError::NoOutputs));
///
/// request.outputs.push(proto::Output::default());
/// assert_eq!(
///     validate_start_egress(&request).unwrap_err().to_string(),
///     "outputs[0] has no output config",
/// );
/// ```
pub fn validate_start_egress(request: &proto::StartEgressRequest) -> Result<(), ValidationError> {
    use proto::start_egress_request::Source;
    // `applyV2Source`, then `updateOutputs`, then the connection info.
    let (audio, mut video, joins_room) = match &request.source {
        None => return Err(ValidationError::Missing { field: "source" }),
        Some(Source::Template(template)) => {
            optional_http(&template.custom_base_url, "template.custom_base_url")?;
            let fields = ["template.audio_only", "template.video_only"];
            let (audio, video) = audio_video(template.audio_only, template.video_only, fields)?;
            (audio, video, true)
        }
        Some(Source::Web(web)) => {
            require_http(&web.url, "web.url")?;
            let fields = ["web.audio_only", "web.video_only"];
            let (audio, video) = audio_video(web.audio_only, web.video_only, fields)?;
            (audio, video, false)
        }
        Some(Source::Media(media)) => {
            let video = media.video.is_some();
            let audio = media
                .audio
                .as_ref()
                .is_some_and(|a| a.capture_all || !a.routes.is_empty());
            if !video && !audio {
                return Err(ValidationError::MissingEither {
                    field: "media.video",
                    other: "media.audio",
                });
            }
            (audio, video, true)
        }
    };

    if request.outputs.is_empty() {
        return Err(ValidationError::NoOutputs);
    }
    let (mut files, mut streams, mut segments, mut counted) = (0, 0, 0, 0);
    for (index, output) in request.outputs.iter().enumerate() {
        match &output.config {
            Some(proto::output::Config::File(_)) => {
                files += 1;
                at_most_one(files, "outputs.file")?;
                counted += 1;
            }
            Some(proto::output::Config::Stream(stream)) => {
                streams += 1;
                at_most_one(streams, "outputs.stream")?;
                let kind = validate_stream(stream, V2_STREAM, true)?;
                // A WebSocket carries audio only: the worker drops video when it has both.
                if kind == Some(StreamKind::WebSocket) && audio && video {
                    video = false;
                }
                counted += stream_targets(stream).count();
            }
            Some(proto::output::Config::Segments(_)) => {
                segments += 1;
                at_most_one(segments, "outputs.segments")?;
                counted += 1;
            }
            Some(proto::output::Config::Images(_)) => {
                if !video {
                    return Err(ValidationError::MutuallyExclusive {
                        field: "outputs.images",
                        other: "audio_only",
                    });
                }
                counted += 1;
            }
            None => return Err(ValidationError::EmptyOutput { index }),
        }
    }
    if counted == 0 {
        return Err(ValidationError::NoOutputs);
    }
    if joins_room {
        require(&request.room_name, "room_name")?;
    }
    Ok(())
}

/// Validates an `UpdateLayout` request: `egress_id` is required.
///
/// ```
/// use egress_core::{proto, validate::validate_update_layout};
///
/// let request = proto::UpdateLayoutRequest { egress_id: "EG_1".into(), layout: "grid".into() };
/// assert!(validate_update_layout(&request).is_ok());
/// ```
pub fn validate_update_layout(request: &proto::UpdateLayoutRequest) -> Result<(), ValidationError> {
    require(&request.egress_id, "egress_id")
}

/// Validates an `UpdateStream` request: `egress_id` is required.
///
/// ```
/// use egress_core::{proto, validate::validate_update_stream};
///
/// let request = proto::UpdateStreamRequest::default();
/// assert_eq!(validate_update_stream(&request).unwrap_err().field(), "egress_id");
/// ```
pub fn validate_update_stream(request: &proto::UpdateStreamRequest) -> Result<(), ValidationError> {
    require(&request.egress_id, "egress_id")
}

/// Validates a `StopEgress` request: `egress_id` is required.
///
/// ```
/// use egress_core::{proto, validate::validate_stop};
///
/// assert!(validate_stop(&proto::StopEgressRequest { egress_id: "EG_1".into() }).is_ok());
/// ```
pub fn validate_stop(request: &proto::StopEgressRequest) -> Result<(), ValidationError> {
    require(&request.egress_id, "egress_id")
}

/// Validates a `ListEgress` request. Every field is an optional filter, so
/// this always succeeds; it exists so that every RPC has a validator.
///
/// ```
/// use egress_core::{proto, validate::validate_list};
///
/// assert!(validate_list(&proto::ListEgressRequest::default()).is_ok());
/// ```
pub fn validate_list(_request: &proto::ListEgressRequest) -> Result<(), ValidationError> {
    Ok(())
}

// Each RPC's validator is named in the RPC table.
macro_rules! impl_validate {
    ($([$(#[$doc:meta])* $rpc:ident, $req:ident, $resp:ident, $kind:ident, $outputs:tt,
        $validate:ident])*) => {
        $(
            impl Validate for proto::$req {
                fn validate(&self) -> Result<(), ValidationError> {
                    $validate(self)
                }
            }
        )*
    };
}

crate::rpc::for_each_rpc!(impl_validate);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::start_egress_request::Source;

    const RTMP: &str = "rtmp://live.example.com/app/streamkey";

    fn stream(url: &str) -> proto::StreamOutput {
        proto::StreamOutput {
            urls: vec![url.to_owned()],
            ..Default::default()
        }
    }

    /// Which outputs a v1 request has: at most one file, stream and segmented output (the
    /// worker refuses more), any number of images, and whether the deprecated single
    /// output is set.
    #[derive(Debug, Clone)]
    struct OutputShape {
        files: usize,
        streams: usize,
        segments: usize,
        images: usize,
        legacy: bool,
    }

    impl OutputShape {
        fn total(&self) -> usize {
            self.files + self.streams + self.segments + self.images + usize::from(self.legacy)
        }
    }

    fn shape() -> impl Strategy<Value = OutputShape> {
        (0usize..2, 0usize..2, 0usize..2, 0usize..3, any::<bool>()).prop_map(
            |(files, streams, segments, images, legacy)| OutputShape {
                files,
                streams,
                segments,
                images,
                legacy,
            },
        )
    }

    /// Fills a v1 request's four output lists to the shape's counts (the
    /// deprecated single output is set by each helper: its oneof differs).
    macro_rules! with_outputs {
        ($request:expr, $s:expr $(,)?) => {{
            let mut request = $request;
            request.file_outputs = vec![Default::default(); $s.files];
            request.stream_outputs = vec![stream(RTMP); $s.streams];
            request.segment_outputs = vec![Default::default(); $s.segments];
            request.image_outputs = vec![Default::default(); $s.images];
            request
        }};
    }

    // Deprecated oneof variants are exactly what old clients send, so the
    // tests must construct them.
    #[allow(deprecated)]
    fn room_composite(
        room: String,
        audio_only: bool,
        video_only: bool,
        s: &OutputShape,
    ) -> proto::RoomCompositeEgressRequest {
        with_outputs!(
            proto::RoomCompositeEgressRequest {
                room_name: room,
                audio_only,
                video_only,
                output: s
                    .legacy
                    .then(|| proto::room_composite_egress_request::Output::Stream(stream(RTMP))),
                ..Default::default()
            },
            s,
        )
    }

    #[allow(deprecated)]
    fn web(
        url: String,
        audio_only: bool,
        video_only: bool,
        s: &OutputShape,
    ) -> proto::WebEgressRequest {
        with_outputs!(
            proto::WebEgressRequest {
                url,
                audio_only,
                video_only,
                output: s
                    .legacy
                    .then(|| proto::web_egress_request::Output::File(Default::default())),
                ..Default::default()
            },
            s,
        )
    }

    #[allow(deprecated)]
    fn track_composite(room: String, s: &OutputShape) -> proto::TrackCompositeEgressRequest {
        with_outputs!(
            proto::TrackCompositeEgressRequest {
                room_name: room,
                audio_track_id: "TR_audio".into(),
                video_track_id: "TR_video".into(),
                output: s.legacy.then(|| {
                    proto::track_composite_egress_request::Output::Segments(Default::default())
                }),
                ..Default::default()
            },
            s,
        )
    }

    fn participant(room: String, s: &OutputShape) -> proto::ParticipantEgressRequest {
        with_outputs!(
            proto::ParticipantEgressRequest {
                room_name: room,
                identity: "alice".into(),
                ..Default::default()
            },
            s,
        )
    }

    fn unified(
        room: String,
        audio_only: bool,
        video_only: bool,
        outputs: usize,
    ) -> proto::StartEgressRequest {
        proto::StartEgressRequest {
            room_name: room,
            source: Some(Source::Template(proto::TemplateSource {
                audio_only,
                video_only,
                ..Default::default()
            })),
            // One file, then segments: both may appear once.
            outputs: [
                proto::output::Config::File(Default::default()),
                proto::output::Config::Segments(Default::default()),
                proto::output::Config::Stream(stream(RTMP)),
            ]
            .into_iter()
            .take(outputs)
            .map(|config| proto::Output {
                config: Some(config),
                storage: None,
            })
            .collect(),
            ..Default::default()
        }
    }

    const AV_CONFLICT: ValidationError = ValidationError::MutuallyExclusive {
        field: "audio_only",
        other: "video_only",
    };

    /// What a room composite request must get, in the worker's order: the flags, then
    /// the outputs (images need video), then the room.
    fn expected_outcome(
        room: &str,
        audio_only: bool,
        video_only: bool,
        s: &OutputShape,
    ) -> Result<(), ValidationError> {
        if audio_only && video_only {
            Err(AV_CONFLICT)
        } else if s.images > 0 && audio_only {
            Err(ValidationError::MutuallyExclusive {
                field: "image_outputs",
                other: "audio_only",
            })
        } else if s.total() == 0 {
            Err(ValidationError::NoOutputs)
        } else if room.is_empty() {
            Err(ValidationError::Missing { field: "room_name" })
        } else {
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn room_composite_outcome_is_fully_determined(room in ".{0,8}", s in shape(), a: bool, v: bool) {
            let request = room_composite(room.clone(), a, v, &s);
            prop_assert_eq!(validate_room_composite(&request), expected_outcome(&room, a, v, &s));
            prop_assert_eq!(output_count(&request), s.total());
        }

        #[test]
        fn room_composite_audio_and_video_only_always_fails(room in ".{0,20}", s in shape()) {
            let request = room_composite(room, true, true, &s);
            prop_assert_eq!(validate_room_composite(&request), Err(AV_CONFLICT));
        }

        #[test]
        fn web_outcome_is_fully_determined(s in shape(), a: bool, v: bool, http: bool) {
            let url = if http { "https://example.com/page" } else { "" };
            let request = web(url.to_owned(), a, v, &s);
            // A web egress joins no room, so the room is never what fails.
            let expected = if url.is_empty() {
                Err(ValidationError::Missing { field: "url" })
            } else {
                expected_outcome("room", a, v, &s)
            };
            prop_assert_eq!(validate_web(&request), expected);
        }

        #[test]
        fn participant_passes_iff_outputs_and_room(room in ".{0,8}", s in shape()) {
            // Participant requests have no deprecated single output.
            let s = OutputShape { legacy: false, ..s };
            let request = participant(room.clone(), &s);
            let expected = if s.total() == 0 {
                Err(ValidationError::NoOutputs)
            } else if room.is_empty() {
                Err(ValidationError::Missing { field: "room_name" })
            } else {
                Ok(())
            };
            prop_assert_eq!(validate_participant(&request), expected);
        }

        #[test]
        fn track_composite_passes_iff_outputs(room in ".{1,20}", s in shape()) {
            let request = track_composite(room, &s);
            let expected = if s.total() == 0 { Err(ValidationError::NoOutputs) } else { Ok(()) };
            prop_assert_eq!(validate_track_composite(&request), expected);
        }

        #[test]
        fn unified_outcome_is_fully_determined(room in ".{0,8}", outputs in 0usize..4, a: bool, v: bool) {
            let request = unified(room.clone(), a, v, outputs);
            let expected = if a && v {
                Err(ValidationError::MutuallyExclusive {
                    field: "template.audio_only",
                    other: "template.video_only",
                })
            } else if outputs == 0 {
                Err(ValidationError::NoOutputs)
            } else if room.is_empty() {
                Err(ValidationError::Missing { field: "room_name" })
            } else {
                Ok(())
            };
            prop_assert_eq!(validate_start_egress(&request), expected);
        }

        #[test]
        fn egress_id_rules(id in ".{0,8}") {
            let expected = if id.is_empty() {
                Err(ValidationError::Missing { field: "egress_id" })
            } else {
                Ok(())
            };
            prop_assert_eq!(
                proto::StopEgressRequest { egress_id: id.clone() }.validate(),
                expected.clone()
            );
            prop_assert_eq!(
                proto::UpdateLayoutRequest { egress_id: id.clone(), layout: String::new() }.validate(),
                expected.clone()
            );
            prop_assert_eq!(
                proto::UpdateStreamRequest { egress_id: id, ..Default::default() }.validate(),
                expected
            );
        }
    }

    fn room_with(
        f: impl FnOnce(&mut proto::RoomCompositeEgressRequest),
    ) -> Result<(), ValidationError> {
        let mut request = proto::RoomCompositeEgressRequest {
            room_name: "r".into(),
            ..Default::default()
        };
        f(&mut request);
        validate_room_composite(&request)
    }

    fn message(result: Result<(), ValidationError>) -> String {
        result.unwrap_err().livekit_message()
    }

    #[test]
    #[allow(deprecated)]
    fn deprecated_single_output_counts() {
        let request = proto::RoomCompositeEgressRequest {
            room_name: "r".into(),
            output: Some(proto::room_composite_egress_request::Output::File(
                Default::default(),
            )),
            ..Default::default()
        };
        assert_eq!(validate_room_composite(&request), Ok(()));
    }

    #[test]
    fn one_file_stream_and_segmented_output_at_most() {
        let err = message(room_with(|r| r.file_outputs = vec![Default::default(); 2]));
        assert_eq!(
            err,
            "request has missing or invalid field: multiple file outputs"
        );
        let err = message(room_with(|r| r.stream_outputs = vec![stream(RTMP); 2]));
        assert_eq!(
            err,
            "request has missing or invalid field: multiple stream outputs"
        );
        let err = message(room_with(|r| {
            r.segment_outputs = vec![Default::default(); 2]
        }));
        assert_eq!(
            err,
            "request has missing or invalid field: multiple segmented file outputs"
        );
        // Several images are fine.
        assert_eq!(
            room_with(|r| r.image_outputs = vec![Default::default(); 3]),
            Ok(())
        );

        let file = || proto::Output {
            config: Some(proto::output::Config::File(Default::default())),
            storage: None,
        };
        let mut request = unified("r".into(), false, false, 0);
        request.outputs = vec![file(), file()];
        assert_eq!(
            validate_start_egress(&request)
                .unwrap_err()
                .livekit_message(),
            "request has missing or invalid field: multiple file outputs"
        );
    }

    #[test]
    fn stream_urls_are_checked_like_the_worker() {
        use proto::StreamProtocol;
        let with = |protocol: StreamProtocol, urls: &[&str]| {
            room_with(|r| {
                r.stream_outputs = vec![proto::StreamOutput {
                    protocol: protocol as i32,
                    urls: urls.iter().map(|u| u.to_string()).collect(),
                    ..Default::default()
                }];
            })
        };
        assert_eq!(with(StreamProtocol::DefaultProtocol, &[RTMP]), Ok(()));
        assert_eq!(with(StreamProtocol::Rtmp, &["mux://key"]), Ok(()));
        assert_eq!(
            with(
                StreamProtocol::DefaultProtocol,
                &["srt://h:9000?streamid=x", "srt://b:1"]
            ),
            Ok(())
        );
        assert_eq!(
            message(with(StreamProtocol::DefaultProtocol, &[])),
            "request has missing or invalid field: stream protocol"
        );
        assert_eq!(
            message(with(StreamProtocol::Rtmp, &[])),
            "request has missing or invalid field: stream url"
        );
        assert_eq!(
            message(with(StreamProtocol::DefaultProtocol, &["https://x/y/z"])),
            "invalid url https://x/y/z: invalid protocol"
        );
        assert_eq!(
            message(with(StreamProtocol::Rtmp, &["srt://h:1"])),
            "invalid url srt://h:1: invalid scheme"
        );
        assert_eq!(
            message(with(StreamProtocol::DefaultProtocol, &[RTMP, "srt://h:1"])),
            "invalid url srt://h:1: invalid scheme"
        );
        assert_eq!(
            message(with(StreamProtocol::DefaultProtocol, &["rtmp://host/live"])),
            format!("invalid url rtmp://host/live: {RTMP_FORMAT}")
        );
        // An empty stream output next to a file is fine (URLs can be added later).
        assert_eq!(
            room_with(|r| {
                r.stream_outputs = vec![proto::StreamOutput {
                    protocol: StreamProtocol::Rtmp as i32,
                    ..Default::default()
                }];
                r.file_outputs = vec![Default::default()];
            }),
            Ok(())
        );
    }

    #[test]
    fn destinations_count_as_stream_urls() {
        let with = |url: &str| {
            room_with(|r| {
                r.stream_outputs = vec![proto::StreamOutput {
                    protocol: proto::StreamProtocol::Rtmp as i32,
                    destinations: vec![proto::StreamDestination {
                        id: "main".into(),
                        url: url.into(),
                    }],
                    ..Default::default()
                }];
            })
        };
        assert_eq!(with(RTMP), Ok(()));
        assert_eq!(
            message(with("srt://h:1")),
            "invalid url srt://h:1: invalid scheme"
        );
    }

    #[test]
    fn web_and_template_urls_must_be_http() {
        let web = |url: &str| proto::WebEgressRequest {
            url: url.into(),
            file_outputs: vec![Default::default()],
            ..Default::default()
        };
        assert_eq!(validate_web(&web("HTTPS://example.com")), Ok(()));
        for url in ["", "example.com", "ftp://example.com", "://x"] {
            assert_eq!(
                validate_web(&web(url)).unwrap_err().livekit_message(),
                "request has missing or invalid field: web url",
                "{url}"
            );
        }
        assert_eq!(
            message(room_with(|r| {
                r.custom_base_url = "file:///etc/passwd".into();
                r.file_outputs = vec![Default::default()];
            })),
            "request has missing or invalid field: template base url"
        );
    }

    #[test]
    fn worker_texts() {
        let audio_only_images = room_with(|r| {
            r.audio_only = true;
            r.image_outputs = vec![Default::default()];
        });
        assert_eq!(
            message(audio_only_images),
            "request has missing or invalid field: audio_only images"
        );
        assert_eq!(
            message(room_with(|r| {
                r.audio_only = true;
                r.video_only = true;
            })),
            "request has missing or invalid field: audio_only and video_only"
        );
        assert_eq!(
            message(room_with(|_| {})),
            "request has missing or invalid field: output"
        );
        let no_room = room_with(|r| {
            r.room_name.clear();
            r.file_outputs = vec![Default::default()];
        });
        assert_eq!(
            no_room,
            Err(ValidationError::Missing { field: "room_name" })
        );
        assert_eq!(
            message(no_room),
            "request has missing or invalid field: token or api key/secret"
        );
        let tracks = proto::TrackCompositeEgressRequest {
            room_name: "r".into(),
            file_outputs: vec![Default::default()],
            ..Default::default()
        };
        assert_eq!(
            message(validate_track_composite(&tracks)),
            "request has missing or invalid field: audio_track_id or video_track_id"
        );
    }

    #[test]
    fn participant_needs_identity() {
        let request = proto::ParticipantEgressRequest {
            room_name: "r".into(),
            stream_outputs: vec![stream(RTMP)],
            ..Default::default()
        };
        assert_eq!(
            validate_participant(&request),
            Err(ValidationError::Missing { field: "identity" })
        );
    }

    #[test]
    fn track_composite_accepts_either_track() {
        let mut request = proto::TrackCompositeEgressRequest {
            room_name: "r".into(),
            video_track_id: "TR_v".into(),
            file_outputs: vec![Default::default()],
            ..Default::default()
        };
        assert_eq!(validate_track_composite(&request), Ok(()));
        request.video_track_id.clear();
        request.audio_track_id = "TR_a".into();
        assert_eq!(validate_track_composite(&request), Ok(()));
        request.audio_track_id.clear();
        assert_eq!(
            validate_track_composite(&request).unwrap_err().field(),
            "audio_track_id"
        );
    }

    #[test]
    fn track_rules() {
        use proto::track_egress_request::Output;
        let base = proto::TrackEgressRequest {
            room_name: "r".into(),
            track_id: "TR_1".into(),
            output: Some(Output::File(Default::default())),
            ..Default::default()
        };
        assert_eq!(validate_track(&base), Ok(()));

        let no_room = proto::TrackEgressRequest {
            room_name: String::new(),
            ..base.clone()
        };
        assert_eq!(validate_track(&no_room).unwrap_err().field(), "room_name");

        let no_track = proto::TrackEgressRequest {
            track_id: String::new(),
            ..base.clone()
        };
        assert_eq!(
            validate_track(&no_track).unwrap_err().to_string(),
            "missing track_id"
        );

        let empty_ws = proto::TrackEgressRequest {
            output: Some(Output::WebsocketUrl(String::new())),
            ..base.clone()
        };
        let err = validate_track(&empty_ws).unwrap_err();
        assert_eq!(err.field(), "websocket_url");
        assert_eq!(err.livekit_message(), "invalid url : invalid scheme");

        let not_ws = proto::TrackEgressRequest {
            output: Some(Output::WebsocketUrl("https://x".into())),
            ..base.clone()
        };
        assert_eq!(
            validate_track(&not_ws).unwrap_err().livekit_message(),
            "invalid url https://x: invalid scheme"
        );

        let ws = proto::TrackEgressRequest {
            output: Some(Output::WebsocketUrl("wss://x".into())),
            ..base
        };
        assert_eq!(validate_track(&ws), Ok(()));
    }

    #[test]
    fn unified_sources() {
        use proto::media_source::Video;
        let output = proto::Output {
            config: Some(proto::output::Config::File(Default::default())),
            storage: None,
        };

        let missing_source = proto::StartEgressRequest {
            room_name: "r".into(),
            outputs: vec![output.clone()],
            ..Default::default()
        };
        assert_eq!(
            validate_start_egress(&missing_source)
                .unwrap_err()
                .livekit_message(),
            "request has missing or invalid field: source"
        );

        // Web sources do not need a room, but they need an http(s) URL.
        let web = proto::StartEgressRequest {
            source: Some(Source::Web(proto::WebSource::default())),
            outputs: vec![output.clone()],
            ..Default::default()
        };
        assert_eq!(validate_start_egress(&web).unwrap_err().field(), "web.url");
        assert_eq!(
            validate_start_egress(&web).unwrap_err().livekit_message(),
            "request has missing or invalid field: web url"
        );
        let web = proto::StartEgressRequest {
            source: Some(Source::Web(proto::WebSource {
                url: "https://example.com".into(),
                ..Default::default()
            })),
            ..web
        };
        assert_eq!(validate_start_egress(&web), Ok(()));

        let media = |m: proto::MediaSource| proto::StartEgressRequest {
            room_name: "r".into(),
            source: Some(Source::Media(m)),
            outputs: vec![output.clone()],
            ..Default::default()
        };
        assert_eq!(
            validate_start_egress(&media(proto::MediaSource::default()))
                .unwrap_err()
                .livekit_message(),
            "request has missing or invalid field: audio or video"
        );
        // Audio that routes nothing captures nothing.
        assert_eq!(
            validate_start_egress(&media(proto::MediaSource {
                video: None,
                audio: Some(proto::AudioConfig {
                    capture_all: false,
                    routes: vec![],
                }),
            }))
            .unwrap_err()
            .field(),
            "media.video"
        );
        assert_eq!(
            validate_start_egress(&media(proto::MediaSource {
                video: Some(Video::VideoTrackId("TR_v".into())),
                audio: Some(proto::AudioConfig {
                    capture_all: true,
                    routes: vec![],
                }),
            })),
            Ok(())
        );
        // A WebSocket output takes the audio only, so images then lack video.
        let mut request = media(proto::MediaSource {
            video: Some(Video::VideoTrackId("TR_v".into())),
            audio: Some(proto::AudioConfig {
                capture_all: true,
                routes: vec![],
            }),
        });
        request.outputs = vec![
            proto::Output {
                config: Some(proto::output::Config::Stream(proto::StreamOutput {
                    protocol: proto::StreamProtocol::Websocket as i32,
                    urls: vec!["wss://sink/ws".into()],
                    ..Default::default()
                })),
                storage: None,
            },
            proto::Output {
                config: Some(proto::output::Config::Images(Default::default())),
                storage: None,
            },
        ];
        assert_eq!(
            validate_start_egress(&request)
                .unwrap_err()
                .livekit_message(),
            "request has missing or invalid field: audio_only images"
        );
    }

    #[test]
    fn unified_reports_first_empty_output() {
        let mut request = unified("r".into(), false, false, 2);
        request.outputs.push(proto::Output::default());
        assert_eq!(
            validate_start_egress(&request),
            Err(ValidationError::EmptyOutput { index: 2 })
        );
        assert_eq!(
            validate_start_egress(&request)
                .unwrap_err()
                .livekit_message(),
            "request has missing or invalid field: output config"
        );
    }
}
