//! Egress outputs: one enum for all kinds, and the conversions to the shapes
//! the different requests want.
//!
//! The v1 Start requests carry outputs as four separate repeated fields (one
//! per kind), while the unified `StartEgress` request carries a single
//! ordered list of [`Output`](proto::Output) messages. [`EgressOutput`] is the
//! common currency: [`split_outputs`] produces the v1 shape and
//! [`to_unified_outputs`] the unified one.

use crate::storage::{UploadOneof, to_storage_config};
use crate::{ValidationError, proto};

/// One destination for a composite, web or participant egress.
///
/// # Example
///
/// ```
/// use egress_core::{EgressOutput, proto};
///
/// let output: EgressOutput = proto::EncodedFileOutput {
///     filepath: "recordings/{room_name}.mp4".into(),
///     ..Default::default()
/// }
/// .into();
/// assert!(matches!(output, EgressOutput::File(_)));
/// ```
// The file variants embed their upload credentials and are much larger than a
// stream output. Boxing them would make every construction and match clumsier
// for no gain: these values are short-lived and moved, not stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EgressOutput {
    /// A single encoded file (MP4, OGG, ...).
    File(proto::EncodedFileOutput),
    /// A live stream to one or more RTMP/SRT/WebSocket URLs.
    Stream(proto::StreamOutput),
    /// Segmented output such as an HLS playlist.
    Segments(proto::SegmentedFileOutput),
    /// Periodic still images.
    Image(proto::ImageOutput),
}

/// The kind of an [`EgressOutput`], without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// [`EgressOutput::File`].
    File,
    /// [`EgressOutput::Stream`].
    Stream,
    /// [`EgressOutput::Segments`].
    Segments,
    /// [`EgressOutput::Image`].
    Image,
}

impl EgressOutput {
    /// Which kind of output this is.
    ///
    /// ```
    /// use egress_core::{EgressOutput, outputs::OutputKind, proto};
    ///
    /// let output = EgressOutput::Image(proto::ImageOutput::default());
    /// assert_eq!(output.kind(), OutputKind::Image);
    /// ```
    pub fn kind(&self) -> OutputKind {
        match self {
            Self::File(_) => OutputKind::File,
            Self::Stream(_) => OutputKind::Stream,
            Self::Segments(_) => OutputKind::Segments,
            Self::Image(_) => OutputKind::Image,
        }
    }
}

/// Each output message converts into its [`EgressOutput`] variant.
macro_rules! egress_output_from {
    ($($message:ident => $variant:ident),* $(,)?) => {$(
        impl From<proto::$message> for EgressOutput {
            fn from(output: proto::$message) -> Self {
                Self::$variant(output)
            }
        }
    )*};
}

egress_output_from!(
    EncodedFileOutput => File,
    StreamOutput => Stream,
    SegmentedFileOutput => Segments,
    ImageOutput => Image,
);

/// Outputs sorted into the four repeated fields of the v1 Start requests.
///
/// Produced by [`split_outputs`]; within each list the outputs keep the
/// order in which they were given.
///
/// # Example
///
/// ```
/// use egress_core::{EgressOutput, SplitOutputs, proto};
///
/// let split: SplitOutputs = [
///     EgressOutput::Stream(proto::StreamOutput::default()),
///     EgressOutput::File(proto::EncodedFileOutput::default()),
/// ]
/// .into_iter()
/// .collect();
/// assert_eq!(split.file_outputs.len(), 1);
/// assert_eq!(split.stream_outputs.len(), 1);
/// assert_eq!(split.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SplitOutputs {
    /// Goes to the request's `file_outputs`.
    pub file_outputs: Vec<proto::EncodedFileOutput>,
    /// Goes to the request's `stream_outputs`.
    pub stream_outputs: Vec<proto::StreamOutput>,
    /// Goes to the request's `segment_outputs`.
    pub segment_outputs: Vec<proto::SegmentedFileOutput>,
    /// Goes to the request's `image_outputs`.
    pub image_outputs: Vec<proto::ImageOutput>,
}

impl SplitOutputs {
    /// Total number of outputs across all kinds.
    pub fn len(&self) -> usize {
        self.file_outputs.len()
            + self.stream_outputs.len()
            + self.segment_outputs.len()
            + self.image_outputs.len()
    }

    /// Whether there are no outputs at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds one output to the list of its kind.
    pub fn push(&mut self, output: EgressOutput) {
        match output {
            EgressOutput::File(f) => self.file_outputs.push(f),
            EgressOutput::Stream(s) => self.stream_outputs.push(s),
            EgressOutput::Segments(s) => self.segment_outputs.push(s),
            EgressOutput::Image(i) => self.image_outputs.push(i),
        }
    }

    /// Turns the lists back into individual outputs, grouped by kind
    /// (files, streams, segments, images).
    ///
    /// The original interleaving across kinds is not recorded, so only the
    /// order within each kind survives a split and rejoin.
    ///
    /// ```
    /// use egress_core::{EgressOutput, split_outputs, proto};
    ///
    /// let outputs = vec![
    ///     EgressOutput::File(proto::EncodedFileOutput::default()),
    ///     EgressOutput::Image(proto::ImageOutput::default()),
    /// ];
    /// assert_eq!(split_outputs(outputs.clone()).into_outputs(), outputs);
    /// ```
    pub fn into_outputs(self) -> Vec<EgressOutput> {
        let mut outputs = Vec::with_capacity(self.len());
        outputs.extend(self.file_outputs.into_iter().map(EgressOutput::File));
        outputs.extend(self.stream_outputs.into_iter().map(EgressOutput::Stream));
        outputs.extend(self.segment_outputs.into_iter().map(EgressOutput::Segments));
        outputs.extend(self.image_outputs.into_iter().map(EgressOutput::Image));
        outputs
    }
}

impl Extend<EgressOutput> for SplitOutputs {
    fn extend<I: IntoIterator<Item = EgressOutput>>(&mut self, iter: I) {
        for output in iter {
            self.push(output);
        }
    }
}

impl FromIterator<EgressOutput> for SplitOutputs {
    fn from_iter<I: IntoIterator<Item = EgressOutput>>(iter: I) -> Self {
        let mut split = Self::default();
        split.extend(iter);
        split
    }
}

/// Sorts outputs into the per-kind lists of the v1 Start requests.
///
/// Nothing is dropped, and outputs of the same kind keep their relative
/// order (LiveKit reports results in that order).
///
/// # Example
///
/// ```
/// use egress_core::{EgressOutput, split_outputs, proto};
///
/// let split = split_outputs(vec![
///     EgressOutput::File(proto::EncodedFileOutput { filepath: "a.mp4".into(), ..Default::default() }),
///     EgressOutput::Stream(proto::StreamOutput { urls: vec!["rtmp://x/y".into()], ..Default::default() }),
///     EgressOutput::File(proto::EncodedFileOutput { filepath: "b.mp4".into(), ..Default::default() }),
/// ]);
/// let paths: Vec<_> = split.file_outputs.iter().map(|f| f.filepath.as_str()).collect();
/// assert_eq!(paths, ["a.mp4", "b.mp4"]);
/// assert_eq!(split.stream_outputs.len(), 1);
/// assert!(split.segment_outputs.is_empty() && split.image_outputs.is_empty());
/// ```
pub fn split_outputs(outputs: impl IntoIterator<Item = EgressOutput>) -> SplitOutputs {
    outputs.into_iter().collect()
}

/// Converts outputs to the unified request's `outputs` list, in order.
///
/// Each output is converted with `proto::Output::from`, whose documentation
/// explains how upload targets are carried over.
///
/// # Example
///
/// ```
/// use egress_core::outputs::to_unified_outputs;
/// use egress_core::{EgressOutput, proto};
///
/// let outputs = to_unified_outputs(vec![
///     EgressOutput::Stream(proto::StreamOutput::default()),
///     EgressOutput::File(proto::EncodedFileOutput::default()),
/// ]);
/// assert!(matches!(outputs[0].config, Some(proto::output::Config::Stream(_))));
/// assert!(matches!(outputs[1].config, Some(proto::output::Config::File(_))));
/// ```
pub fn to_unified_outputs(outputs: impl IntoIterator<Item = EgressOutput>) -> Vec<proto::Output> {
    outputs.into_iter().map(proto::Output::from).collect()
}

/// Converts a v1 output into a unified `Output` message.
///
/// * A file becomes a [`FileOutput`](proto::FileOutput); since that message
///   has no upload target of its own, the file's S3/GCP/Azure/OSS target
///   moves to the per-output `storage`.
/// * Segments and images keep their (legacy) embedded upload target and a
///   copy of it is also placed in `storage`, so the destination is found
///   whichever of the two places the server reads.
/// * Streams have no upload target; `storage` stays empty.
///
/// ```
/// use egress_core::{EgressOutput, proto};
///
/// let file = proto::EncodedFileOutput {
///     filepath: "room.mp4".into(),
///     output: Some(proto::encoded_file_output::Output::Gcp(proto::GcpUpload {
///         bucket: "recordings".into(),
///         ..Default::default()
///     })),
///     ..Default::default()
/// };
/// let unified = proto::Output::from(EgressOutput::File(file));
/// let Some(proto::output::Config::File(f)) = &unified.config else { unreachable!() };
/// assert_eq!(f.filepath, "room.mp4");
/// assert!(matches!(
///     unified.storage.and_then(|s| s.provider),
///     Some(proto::storage_config::Provider::Gcp(g)) if g.bucket == "recordings"
/// ));
/// ```
impl From<EgressOutput> for proto::Output {
    fn from(output: EgressOutput) -> Self {
        use proto::output::Config;
        match output {
            EgressOutput::File(file) => Self {
                storage: file.output.map(to_storage_config),
                config: Some(Config::File(proto::FileOutput {
                    file_type: file.file_type,
                    filepath: file.filepath,
                    disable_manifest: file.disable_manifest,
                })),
            },
            EgressOutput::Stream(stream) => Self {
                storage: None,
                config: Some(Config::Stream(stream)),
            },
            EgressOutput::Segments(segments) => Self {
                storage: segments.output.clone().map(to_storage_config),
                config: Some(Config::Segments(segments)),
            },
            EgressOutput::Image(images) => Self {
                storage: images.output.clone().map(to_storage_config),
                config: Some(Config::Images(images)),
            },
        }
    }
}

/// Converts a unified `Output` back to a v1 output.
///
/// The inverse of `From<EgressOutput> for proto::Output`: a per-output
/// `storage` becomes the embedded upload target, unless the segments/images
/// message already has one (that embedded target wins). `storage` on a
/// stream output has no v1 equivalent and is dropped. Fails with
/// [`ValidationError::Missing`] (`config`) when the message has no config.
///
/// ```
/// use egress_core::{EgressOutput, proto};
///
/// let original = EgressOutput::File(proto::EncodedFileOutput {
///     filepath: "room.mp4".into(),
///     ..Default::default()
/// });
/// let unified = proto::Output::from(original.clone());
/// assert_eq!(EgressOutput::try_from(unified).unwrap(), original);
/// assert!(EgressOutput::try_from(proto::Output::default()).is_err());
/// ```
impl TryFrom<proto::Output> for EgressOutput {
    type Error = ValidationError;

    fn try_from(output: proto::Output) -> Result<Self, Self::Error> {
        use proto::output::Config;
        let provider = output.storage.and_then(|s| s.provider);
        match output.config {
            Some(Config::File(file)) => Ok(Self::File(proto::EncodedFileOutput {
                file_type: file.file_type,
                filepath: file.filepath,
                disable_manifest: file.disable_manifest,
                output: provider.map(UploadOneof::from_provider),
            })),
            Some(Config::Stream(stream)) => Ok(Self::Stream(stream)),
            Some(Config::Segments(mut segments)) => {
                if segments.output.is_none() {
                    segments.output = provider.map(UploadOneof::from_provider);
                }
                Ok(Self::Segments(segments))
            }
            Some(Config::Images(mut images)) => {
                if images.output.is_none() {
                    images.output = provider.map(UploadOneof::from_provider);
                }
                Ok(Self::Image(images))
            }
            None => Err(ValidationError::Missing { field: "config" }),
        }
    }
}

/// The single output of a `StartTrackEgress` request.
///
/// # Example
///
/// ```
/// use egress_core::{TrackEgressOutput, proto};
///
/// let output = TrackEgressOutput::WebSocket("wss://transcriber.example.com/ingest".into());
/// let wire = proto::track_egress_request::Output::from(output);
/// assert!(matches!(wire, proto::track_egress_request::Output::WebsocketUrl(_)));
/// ```
// Same trade-off as `EgressOutput`: the file variant is large but transient.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TrackEgressOutput {
    /// Write the track, without transcoding, to a file.
    File(proto::DirectFileOutput),
    /// Send the raw track to a WebSocket endpoint.
    WebSocket(String),
}

impl From<TrackEgressOutput> for proto::track_egress_request::Output {
    fn from(output: TrackEgressOutput) -> Self {
        match output {
            TrackEgressOutput::File(file) => Self::File(file),
            TrackEgressOutput::WebSocket(url) => Self::WebsocketUrl(url),
        }
    }
}

impl From<proto::track_egress_request::Output> for TrackEgressOutput {
    fn from(output: proto::track_egress_request::Output) -> Self {
        match output {
            proto::track_egress_request::Output::File(file) => Self::File(file),
            proto::track_egress_request::Output::WebsocketUrl(url) => Self::WebSocket(url),
        }
    }
}

impl From<proto::DirectFileOutput> for TrackEgressOutput {
    fn from(output: proto::DirectFileOutput) -> Self {
        Self::File(output)
    }
}

/// The four output lists and the deprecated single `output` of a v1 Start request
/// (room composite, web, participant, track composite).
///
/// Implemented from the RPC table's `outputs` column, so the output count, the view and
/// anything else that walks a v1 request's outputs is written once.
///
/// ```
/// use egress_core::outputs::V1Outputs;
/// use egress_core::proto;
///
/// let request = proto::ParticipantEgressRequest {
///     file_outputs: vec![proto::EncodedFileOutput::default()],
///     image_outputs: vec![proto::ImageOutput::default()],
///     ..Default::default()
/// };
/// assert_eq!(request.output_count(), 2);
/// assert!(request.legacy_output().is_none());
/// ```
pub trait V1Outputs {
    /// `file_outputs`.
    fn file_outputs(&self) -> &[proto::EncodedFileOutput];
    /// `stream_outputs`.
    fn stream_outputs(&self) -> &[proto::StreamOutput];
    /// `segment_outputs`.
    fn segment_outputs(&self) -> &[proto::SegmentedFileOutput];
    /// `image_outputs`.
    fn image_outputs(&self) -> &[proto::ImageOutput];
    /// The deprecated single `output`: old clients still send it and LiveKit still honours
    /// it, so it counts like any other output.
    fn legacy_output(&self) -> Option<LegacyOutput<'_>>;

    /// Number of outputs across the four lists and the deprecated single `output`.
    fn output_count(&self) -> usize {
        self.file_outputs().len()
            + self.stream_outputs().len()
            + self.segment_outputs().len()
            + self.image_outputs().len()
            + usize::from(self.legacy_output().is_some())
    }
}

/// The deprecated single `output` of a v1 request, borrowed (each request has its own
/// generated oneof with these three variants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LegacyOutput<'a> {
    /// `output.file`.
    File(&'a proto::EncodedFileOutput),
    /// `output.stream`.
    Stream(&'a proto::StreamOutput),
    /// `output.segments`.
    Segments(&'a proto::SegmentedFileOutput),
}

macro_rules! v1_outputs {
    ($([$(#[$doc:meta])* $rpc:ident, $req:ident, $resp:ident, $kind:ident, $outputs:tt,
        $validate:ident])*) => {
        $(v1_outputs!(@one $req, $outputs);)*
    };
    (@one $req:ident, (v1 $($legacy:ident)?)) => {
        impl V1Outputs for proto::$req {
            fn file_outputs(&self) -> &[proto::EncodedFileOutput] {
                &self.file_outputs
            }
            fn stream_outputs(&self) -> &[proto::StreamOutput] {
                &self.stream_outputs
            }
            fn segment_outputs(&self) -> &[proto::SegmentedFileOutput] {
                &self.segment_outputs
            }
            fn image_outputs(&self) -> &[proto::ImageOutput] {
                &self.image_outputs
            }
            // Reading the deprecated field is the point: old clients send it.
            #[allow(deprecated)]
            fn legacy_output(&self) -> Option<LegacyOutput<'_>> {
                v1_outputs!(@legacy self $($legacy)?)
            }
        }
    };
    (@legacy $self:ident $legacy:ident) => {{
        use proto::$legacy::Output;
        Some(match $self.output.as_ref()? {
            Output::File(f) => LegacyOutput::File(f),
            Output::Stream(s) => LegacyOutput::Stream(s),
            Output::Segments(s) => LegacyOutput::Segments(s),
        })
    }};
    (@legacy $self:ident) => {
        None
    };
    (@one $req:ident, $other:tt) => {};
}

crate::rpc::for_each_rpc!(v1_outputs);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Outputs tagged with an index in a field every kind has, so order and
    /// identity can be checked after splitting.
    fn tagged(kind: u8, tag: usize) -> EgressOutput {
        named(kind, format!("out-{tag}"))
    }

    /// An output of kind `kind % 4` (file, stream, segments, images) whose
    /// path, URL or prefix is `name`.
    pub(crate) fn named(kind: u8, name: String) -> EgressOutput {
        match kind % 4 {
            0 => EgressOutput::File(proto::EncodedFileOutput {
                filepath: name,
                ..Default::default()
            }),
            1 => EgressOutput::Stream(proto::StreamOutput {
                urls: vec![name],
                ..Default::default()
            }),
            2 => EgressOutput::Segments(proto::SegmentedFileOutput {
                filename_prefix: name,
                ..Default::default()
            }),
            _ => EgressOutput::Image(proto::ImageOutput {
                filename_prefix: name,
                ..Default::default()
            }),
        }
    }

    fn outputs_strategy() -> impl Strategy<Value = Vec<EgressOutput>> {
        prop::collection::vec(0u8..4, 0..40).prop_map(|kinds| {
            kinds
                .into_iter()
                .enumerate()
                .map(|(tag, kind)| tagged(kind, tag))
                .collect()
        })
    }

    fn s3(bucket: &str) -> proto::S3Upload {
        proto::S3Upload {
            bucket: bucket.into(),
            region: "eu-west-1".into(),
            ..Default::default()
        }
    }

    fn arbitrary_output() -> impl Strategy<Value = EgressOutput> {
        (0u8..4, any::<bool>(), "[a-z]{0,8}").prop_map(|(kind, with_storage, name)| {
            let bucket = with_storage.then(|| s3(&name));
            match kind {
                0 => EgressOutput::File(proto::EncodedFileOutput {
                    filepath: name.clone(),
                    file_type: proto::EncodedFileType::Mp4 as i32,
                    output: bucket.map(proto::encoded_file_output::Output::S3),
                    ..Default::default()
                }),
                1 => EgressOutput::Stream(proto::StreamOutput {
                    protocol: proto::StreamProtocol::Srt as i32,
                    urls: vec![name],
                    ..Default::default()
                }),
                2 => EgressOutput::Segments(proto::SegmentedFileOutput {
                    playlist_name: name,
                    output: bucket.map(proto::segmented_file_output::Output::S3),
                    ..Default::default()
                }),
                _ => EgressOutput::Image(proto::ImageOutput {
                    capture_interval: 5,
                    filename_prefix: name,
                    output: bucket.map(proto::image_output::Output::S3),
                    ..Default::default()
                }),
            }
        })
    }

    proptest! {
        #[test]
        fn split_counts_add_up(outputs in outputs_strategy()) {
            let expected = |k: OutputKind| outputs.iter().filter(|o| o.kind() == k).count();
            let (files, streams, segments, images) = (
                expected(OutputKind::File),
                expected(OutputKind::Stream),
                expected(OutputKind::Segments),
                expected(OutputKind::Image),
            );
            let total = outputs.len();
            let split = split_outputs(outputs);
            prop_assert_eq!(split.file_outputs.len(), files);
            prop_assert_eq!(split.stream_outputs.len(), streams);
            prop_assert_eq!(split.segment_outputs.len(), segments);
            prop_assert_eq!(split.image_outputs.len(), images);
            prop_assert_eq!(split.len(), total);
            prop_assert_eq!(split.is_empty(), total == 0);
        }

        #[test]
        fn split_loses_nothing_and_keeps_order_per_kind(outputs in outputs_strategy()) {
            let split = split_outputs(outputs.clone());
            // Rejoining groups by kind; filtering the original by kind must
            // give exactly the same sequence for each kind.
            let rejoined = split.into_outputs();
            for kind in [OutputKind::File, OutputKind::Stream, OutputKind::Segments, OutputKind::Image] {
                let before: Vec<_> = outputs.iter().filter(|o| o.kind() == kind).collect();
                let after: Vec<_> = rejoined.iter().filter(|o| o.kind() == kind).collect();
                prop_assert_eq!(before, after);
            }
            prop_assert_eq!(rejoined.len(), outputs.len());
        }

        #[test]
        fn split_is_idempotent(outputs in outputs_strategy()) {
            let once = split_outputs(outputs);
            let twice = split_outputs(once.clone().into_outputs());
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn unified_keeps_order_and_round_trips(outputs in prop::collection::vec(arbitrary_output(), 0..20)) {
            let unified = to_unified_outputs(outputs.clone());
            prop_assert_eq!(unified.len(), outputs.len());
            for (original, wire) in outputs.iter().zip(&unified) {
                prop_assert!(wire.config.is_some());
                // Storage is present exactly when the original had an upload target.
                let had_upload = match original {
                    EgressOutput::File(f) => f.output.is_some(),
                    EgressOutput::Stream(_) => false,
                    EgressOutput::Segments(s) => s.output.is_some(),
                    EgressOutput::Image(i) => i.output.is_some(),
                };
                prop_assert_eq!(wire.storage.is_some(), had_upload);
            }
            let back: Vec<_> = unified
                .into_iter()
                .map(EgressOutput::try_from)
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(back, outputs);
        }
    }

    #[test]
    fn unified_storage_fills_missing_embedded_target() {
        let wire = proto::Output {
            storage: Some(to_storage_config(proto::storage_config::Provider::S3(s3(
                "b",
            )))),
            config: Some(proto::output::Config::Segments(
                proto::SegmentedFileOutput::default(),
            )),
        };
        let EgressOutput::Segments(segments) = EgressOutput::try_from(wire).unwrap() else {
            panic!("wrong kind");
        };
        assert_eq!(
            segments.output,
            Some(proto::segmented_file_output::Output::S3(s3("b")))
        );
    }

    #[test]
    fn track_output_round_trips() {
        for output in [
            TrackEgressOutput::WebSocket("wss://a/b".into()),
            TrackEgressOutput::File(proto::DirectFileOutput {
                filepath: "track.ogg".into(),
                ..Default::default()
            }),
        ] {
            let wire = proto::track_egress_request::Output::from(output.clone());
            assert_eq!(TrackEgressOutput::from(wire), output);
        }
    }
}
