//! Validation of decoded egress requests.
//!
//! The gateway does **not** run these rules on the requests it proxies: it
//! forwards the caller's bytes to LiveKit untouched, and LiveKit validates
//! them. These rules are for the code that *builds* requests — the builders
//! in [`requests`](crate::requests), the Rust client — so a mistake is caught
//! before anything is sent, and for the simulator, which answers the way
//! LiveKit would. They are one rule set shared by all of them.
//!
//! The rules only catch requests LiveKit is certain to reject (or that are
//! certainly mistakes): a missing room, URL, track or identity, a request
//! without any output, or `audio_only` together with `video_only`. They do
//! not second-guess values the server is better placed to judge (bitrates,
//! URLs' reachability, unknown-but-possibly-newer enum values).
//!
//! Checks run in a fixed order — what to record, then flags, then outputs —
//! so a request with several problems always reports the same one.
//!
//! Outputs are counted across the repeated `*_outputs` fields **and** the
//! deprecated single `output` oneof, because older clients still send the
//! latter and LiveKit still honours it.

use crate::outputs::V1Outputs;
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

fn exclusive(
    audio_only: bool,
    video_only: bool,
    field: &'static str,
    other: &'static str,
) -> Result<(), ValidationError> {
    if audio_only && video_only {
        Err(ValidationError::MutuallyExclusive { field, other })
    } else {
        Ok(())
    }
}

fn require_outputs(count: usize) -> Result<(), ValidationError> {
    if count == 0 {
        Err(ValidationError::NoOutputs)
    } else {
        Ok(())
    }
}

/// Number of outputs of a room composite request, including the deprecated
/// single `output`.
///
/// ```
/// use egress_core::{proto, validate::room_composite_output_count};
///
/// let request = proto::RoomCompositeEgressRequest {
///     stream_outputs: vec![proto::StreamOutput::default()],
///     ..Default::default()
/// };
/// assert_eq!(room_composite_output_count(&request), 1);
/// ```
pub fn room_composite_output_count(request: &proto::RoomCompositeEgressRequest) -> usize {
    request.output_count()
}

/// Number of outputs of a web request, including the deprecated single
/// `output`.
pub fn web_output_count(request: &proto::WebEgressRequest) -> usize {
    request.output_count()
}

/// Number of outputs of a participant request (it has no deprecated single
/// `output`).
pub fn participant_output_count(request: &proto::ParticipantEgressRequest) -> usize {
    request.output_count()
}

/// Number of outputs of a track composite request, including the deprecated
/// single `output`.
pub fn track_composite_output_count(request: &proto::TrackCompositeEgressRequest) -> usize {
    request.output_count()
}

/// Validates a `StartRoomCompositeEgress` request.
///
/// Requires `room_name` and at least one output; rejects `audio_only`
/// together with `video_only`.
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
    require(&request.room_name, "room_name")?;
    exclusive(
        request.audio_only,
        request.video_only,
        "audio_only",
        "video_only",
    )?;
    require_outputs(room_composite_output_count(request))
}

/// Validates a `StartWebEgress` request.
///
/// Requires `url` and at least one output; rejects `audio_only` together
/// with `video_only`.
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
    require(&request.url, "url")?;
    exclusive(
        request.audio_only,
        request.video_only,
        "audio_only",
        "video_only",
    )?;
    require_outputs(web_output_count(request))
}

/// Validates a `StartParticipantEgress` request.
///
/// Requires `room_name`, the participant `identity` and at least one output.
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
    require(&request.room_name, "room_name")?;
    require(&request.identity, "identity")?;
    require_outputs(participant_output_count(request))
}

/// Validates a `StartTrackCompositeEgress` request.
///
/// Requires `room_name`, at least one of `audio_track_id` /
/// `video_track_id`, and at least one output.
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
    require(&request.room_name, "room_name")?;
    if request.audio_track_id.is_empty() && request.video_track_id.is_empty() {
        return Err(ValidationError::MissingEither {
            field: "audio_track_id",
            other: "video_track_id",
        });
    }
    require_outputs(track_composite_output_count(request))
}

/// Validates a `StartTrackEgress` request.
///
/// Requires `room_name`, `track_id` and an `output`; a WebSocket output
/// needs a non-empty URL. (A file output's `filepath` may be empty: LiveKit
/// then uses its default naming template.)
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
    require(&request.room_name, "room_name")?;
    require(&request.track_id, "track_id")?;
    match &request.output {
        None => Err(ValidationError::Missing { field: "output" }),
        Some(proto::track_egress_request::Output::WebsocketUrl(url)) => {
            require(url, "websocket_url")
        }
        Some(proto::track_egress_request::Output::File(_)) => Ok(()),
    }
}

/// Validates a unified `StartEgress` request.
///
/// * A `source` is required.
/// * Template and media sources need `room_name`; a web source needs
///   `web.url`.
/// * Template and web sources reject `audio_only` with `video_only`.
/// * A media source must capture something (`media.video` or
///   `media.audio`); a video track id, participant identity or audio route
///   it names must not be empty.
/// * At least one output is required, and each must say what it produces
///   (have a `config`).
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
    match &request.source {
        None => return Err(ValidationError::Missing { field: "source" }),
        Some(Source::Template(template)) => {
            require(&request.room_name, "room_name")?;
            exclusive(
                template.audio_only,
                template.video_only,
                "template.audio_only",
                "template.video_only",
            )?;
        }
        Some(Source::Web(web)) => {
            require(&web.url, "web.url")?;
            exclusive(
                web.audio_only,
                web.video_only,
                "web.audio_only",
                "web.video_only",
            )?;
        }
        Some(Source::Media(media)) => {
            require(&request.room_name, "room_name")?;
            validate_media(media)?;
        }
    }
    require_outputs(request.outputs.len())?;
    if let Some(index) = request.outputs.iter().position(|o| o.config.is_none()) {
        return Err(ValidationError::EmptyOutput { index });
    }
    Ok(())
}

fn validate_media(media: &proto::MediaSource) -> Result<(), ValidationError> {
    use proto::audio_route::Match;
    use proto::media_source::Video;

    if media.video.is_none() && media.audio.is_none() {
        return Err(ValidationError::MissingEither {
            field: "media.video",
            other: "media.audio",
        });
    }
    match &media.video {
        Some(Video::VideoTrackId(id)) => require(id, "media.video_track_id")?,
        Some(Video::ParticipantVideo(p)) => {
            require(&p.identity, "media.participant_video.identity")?
        }
        None => {}
    }
    if let Some(audio) = &media.audio {
        for route in &audio.routes {
            match &route.r#match {
                None => {
                    return Err(ValidationError::Missing {
                        field: "media.audio.routes.match",
                    });
                }
                Some(Match::TrackId(id)) => require(id, "media.audio.routes.track_id")?,
                Some(Match::ParticipantIdentity(identity)) => {
                    require(identity, "media.audio.routes.participant_identity")?
                }
                Some(Match::ParticipantKind(_)) => {}
            }
        }
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

    /// Counts of each output list plus whether the deprecated single output
    /// is set.
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
        (0usize..3, 0usize..3, 0usize..3, 0usize..3, any::<bool>()).prop_map(
            |(files, streams, segments, images, legacy)| OutputShape {
                files,
                streams,
                segments,
                images,
                legacy,
            },
        )
    }

    fn non_empty_shape() -> impl Strategy<Value = OutputShape> {
        shape().prop_filter("needs an output", |s| s.total() > 0)
    }

    /// Fills a v1 request's four output lists to the shape's counts (the
    /// deprecated single output is set by each helper: its oneof differs).
    macro_rules! with_outputs {
        ($request:expr, $s:expr $(,)?) => {{
            let mut request = $request;
            request.file_outputs = vec![Default::default(); $s.files];
            request.stream_outputs = vec![Default::default(); $s.streams];
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
                output: s.legacy.then(|| {
                    proto::room_composite_egress_request::Output::Stream(Default::default())
                }),
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
            outputs: (0..outputs)
                .map(|_| proto::Output {
                    config: Some(proto::output::Config::Stream(Default::default())),
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

    /// What a room composite or web request must get, in the rules' order:
    /// the required field, then the flags, then the outputs.
    fn expected_outcome(
        required: &str,
        field: &'static str,
        audio_only: bool,
        video_only: bool,
        outputs: usize,
    ) -> Result<(), ValidationError> {
        if required.is_empty() {
            Err(ValidationError::Missing { field })
        } else if audio_only && video_only {
            Err(AV_CONFLICT)
        } else if outputs == 0 {
            Err(ValidationError::NoOutputs)
        } else {
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn room_composite_with_room_and_outputs_passes(
            room in ".{1,20}",
            s in non_empty_shape(),
            (a, v) in (any::<bool>(), any::<bool>()).prop_filter("not both", |(a, v)| !(*a && *v)),
        ) {
            let request = room_composite(room, a, v, &s);
            prop_assert_eq!(validate_room_composite(&request), Ok(()));
        }

        #[test]
        fn room_composite_without_outputs_fails(room in ".{1,20}", audio_only: bool) {
            let s = OutputShape { files: 0, streams: 0, segments: 0, images: 0, legacy: false };
            let request = room_composite(room, audio_only, false, &s);
            prop_assert_eq!(validate_room_composite(&request), Err(ValidationError::NoOutputs));
        }

        #[test]
        fn room_composite_audio_and_video_only_always_fails(room in ".{0,20}", s in shape()) {
            let request = room_composite(room.clone(), true, true, &s);
            let err = validate_room_composite(&request).unwrap_err();
            if room.is_empty() {
                prop_assert_eq!(err, ValidationError::Missing { field: "room_name" });
            } else {
                prop_assert_eq!(err, AV_CONFLICT);
            }
        }

        #[test]
        fn room_composite_empty_room_always_fails(s in shape(), a: bool, v: bool) {
            let request = room_composite(String::new(), a, v, &s);
            prop_assert_eq!(
                validate_room_composite(&request),
                Err(ValidationError::Missing { field: "room_name" })
            );
        }

        #[test]
        fn room_composite_outcome_is_fully_determined(room in ".{0,8}", s in shape(), a: bool, v: bool) {
            let request = room_composite(room.clone(), a, v, &s);
            let expected = expected_outcome(&room, "room_name", a, v, s.total());
            prop_assert_eq!(validate_room_composite(&request), expected);
            prop_assert_eq!(room_composite_output_count(&request), s.total());
        }

        #[test]
        fn web_outcome_is_fully_determined(url in ".{0,8}", s in shape(), a: bool, v: bool) {
            let request = web(url.clone(), a, v, &s);
            let expected = expected_outcome(&url, "url", a, v, s.total());
            prop_assert_eq!(validate_web(&request), expected);
        }

        #[test]
        fn participant_passes_iff_outputs(room in ".{1,20}", s in shape()) {
            // Participant requests have no deprecated single output.
            let s = OutputShape { legacy: false, ..s };
            let request = participant(room, &s);
            let expected = if s.total() == 0 { Err(ValidationError::NoOutputs) } else { Ok(()) };
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
            let expected = if room.is_empty() {
                Err(ValidationError::Missing { field: "room_name" })
            } else if a && v {
                Err(ValidationError::MutuallyExclusive {
                    field: "template.audio_only",
                    other: "template.video_only",
                })
            } else if outputs == 0 {
                Err(ValidationError::NoOutputs)
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
    fn participant_needs_identity() {
        let request = proto::ParticipantEgressRequest {
            room_name: "r".into(),
            stream_outputs: vec![Default::default()],
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
        assert_eq!(
            validate_track(&empty_ws).unwrap_err().field(),
            "websocket_url"
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
                .to_string(),
            "missing source"
        );

        // Web sources do not need a room, but they need a URL.
        let web = proto::StartEgressRequest {
            source: Some(Source::Web(proto::WebSource::default())),
            outputs: vec![output.clone()],
            ..Default::default()
        };
        assert_eq!(validate_start_egress(&web).unwrap_err().field(), "web.url");
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
                .to_string(),
            "missing media.video or media.audio"
        );
        assert_eq!(
            validate_start_egress(&media(proto::MediaSource {
                video: Some(Video::VideoTrackId(String::new())),
                audio: None,
            }))
            .unwrap_err()
            .field(),
            "media.video_track_id"
        );
        assert_eq!(
            validate_start_egress(&media(proto::MediaSource {
                video: Some(Video::ParticipantVideo(proto::ParticipantVideo::default())),
                audio: None,
            }))
            .unwrap_err()
            .field(),
            "media.participant_video.identity"
        );
        assert_eq!(
            validate_start_egress(&media(proto::MediaSource {
                video: None,
                audio: Some(proto::AudioConfig {
                    capture_all: false,
                    routes: vec![proto::AudioRoute {
                        r#match: Some(
                            proto::audio_route::Match::ParticipantIdentity(String::new())
                        ),
                        channel: 0,
                    }],
                }),
            }))
            .unwrap_err()
            .field(),
            "media.audio.routes.participant_identity"
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
    }

    #[test]
    fn unified_reports_first_empty_output() {
        let mut request = unified("r".into(), false, false, 2);
        request.outputs.push(proto::Output::default());
        assert_eq!(
            validate_start_egress(&request),
            Err(ValidationError::EmptyOutput { index: 2 })
        );
    }
}
