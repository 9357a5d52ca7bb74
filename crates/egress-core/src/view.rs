//! A flat, uniform summary of any egress request, for policy and audit.
//!
//! Each of the ten egress RPCs has its own request message, and outputs hide
//! in several places (per-kind lists, the deprecated single output, unified
//! `outputs` with storage overrides). Policy checks ("may this caller stream
//! to that host?", "may files go to that bucket?") and audit logs only want
//! the answer, so [`RequestView`] gathers it once.
//!
//! A view never contains credentials: upload targets are reduced to provider,
//! bucket, region and endpoint, and webhooks to their URL. It is therefore
//! safe to log as a whole.

use prost::Message;

use crate::outputs::{LegacyOutput, V1Outputs};
use crate::proto;
use crate::storage::{UploadOneof, config_target, non_empty};

// The RPC enum and the storage target types used to live here; these paths keep working.
pub use crate::rpc::{Rpc, UnknownRpc};
pub use crate::storage::{StorageProvider, StorageTarget};

/// What kind of stored output a [`Destination`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    /// A single file (encoded, or a track's direct file).
    File,
    /// Segmented output (HLS).
    Segments,
    /// Periodic images.
    Images,
}

/// One stored output: its kind, path and upload target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// File, segments or images.
    pub kind: DestinationKind,
    /// File: `filepath`; segments and images: `filename_prefix`.
    pub filepath: Option<String>,
    /// Segments only: `playlist_name`.
    pub playlist_name: Option<String>,
    /// Segments only: `live_playlist_name`.
    pub live_playlist_name: Option<String>,
    /// The upload target; `None` means the egress service's configured
    /// default storage.
    ///
    /// For the unified request this is the per-output `storage`, else the
    /// segments/images message's own target, else the request-level
    /// `storage`.
    pub storage: Option<StorageTarget>,
}

/// The encoding a Start request asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum EncodingSummary {
    /// A named preset (raw proto value, kept raw so unknown values survive).
    Preset(i32),
    /// Explicit options.
    Advanced(proto::EncodingOptions),
}

/// Everything policy and audit need to know about one egress request.
///
/// Empty proto strings are reported as `None`, so "not given" has one
/// representation. Lists are in request order.
///
/// # Example
///
/// ```
/// use egress_core::{RequestView, Rpc, proto};
///
/// let request = proto::RoomCompositeEgressRequest {
///     room_name: "standup".into(),
///     stream_outputs: vec![proto::StreamOutput {
///         urls: vec!["rtmp://live.example.com/app/key".into()],
///         ..Default::default()
///     }],
///     ..Default::default()
/// };
/// let view = RequestView::from(&request);
/// assert_eq!(view.rpc, Rpc::StartRoomCompositeEgress);
/// assert_eq!(view.room_name.as_deref(), Some("standup"));
/// assert_eq!(view.stream_urls, ["rtmp://live.example.com/app/key"]);
/// assert_eq!(view.output_count, 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    /// Which RPC the request is for.
    pub rpc: Rpc,
    /// The room (Start requests; the room filter of `ListEgress`).
    pub room_name: Option<String>,
    /// The egress (Update/Stop; the id filter of `ListEgress`).
    pub egress_id: Option<String>,
    /// Participant whose media is recorded (participant egress, unified
    /// participant video).
    pub participant_identity: Option<String>,
    /// Track ids named by the request, in request order.
    pub track_ids: Vec<String>,
    /// Layout template (room composite, unified template, `UpdateLayout`).
    pub layout: Option<String>,
    /// Page recorded by a web egress.
    pub web_url: Option<String>,
    /// Custom template base URL of a room composite.
    pub custom_base_url: Option<String>,
    /// Every URL media will be streamed to: stream outputs (both their
    /// `urls` and their `destinations`), a track's WebSocket URL, and URLs
    /// added by `UpdateStream` (`add_output_urls` and `add_destinations`).
    pub stream_urls: Vec<String>,
    /// URLs removed by `UpdateStream`.
    pub removed_stream_urls: Vec<String>,
    /// Files, segment playlists and images the request will store.
    pub destinations: Vec<Destination>,
    /// Extra webhook URLs the request registers.
    pub webhook_urls: Vec<String>,
    /// The requested encoding, if any.
    pub encoding: Option<EncodingSummary>,
    /// `audio_only` was requested.
    pub audio_only: bool,
    /// `video_only` was requested.
    pub video_only: bool,
    /// Number of outputs (as counted by [`validate`](crate::validate)).
    pub output_count: usize,
}

impl RequestView {
    /// An empty view for `rpc`, to be filled in.
    ///
    /// ```
    /// use egress_core::{RequestView, Rpc};
    ///
    /// let view = RequestView::new(Rpc::ListEgress);
    /// assert!(view.room_name.is_none() && view.destinations.is_empty());
    /// ```
    pub fn new(rpc: Rpc) -> Self {
        Self {
            rpc,
            room_name: None,
            egress_id: None,
            participant_identity: None,
            track_ids: Vec::new(),
            layout: None,
            web_url: None,
            custom_base_url: None,
            stream_urls: Vec::new(),
            removed_stream_urls: Vec::new(),
            destinations: Vec::new(),
            webhook_urls: Vec::new(),
            encoding: None,
            audio_only: false,
            video_only: false,
            output_count: 0,
        }
    }

    /// The room name, borrowed.
    pub fn room(&self) -> Option<&str> {
        self.room_name.as_deref()
    }

    /// The egress id, borrowed.
    pub fn egress(&self) -> Option<&str> {
        self.egress_id.as_deref()
    }

    /// Every outbound URL the egress will contact on the caller's behalf:
    /// stream URLs, the recorded web page, a custom template base URL and
    /// webhook URLs. This is what an SSRF/egress-allowlist policy checks.
    ///
    /// ```
    /// use egress_core::{RequestView, proto};
    ///
    /// let request = proto::WebEgressRequest {
    ///     url: "https://example.com/page".into(),
    ///     webhooks: vec![proto::WebhookConfig {
    ///         url: "https://hooks.example.com".into(),
    ///         ..Default::default()
    ///     }],
    ///     ..Default::default()
    /// };
    /// let view = RequestView::from(&request);
    /// let urls: Vec<&str> = view.outbound_urls().collect();
    /// assert_eq!(urls, ["https://example.com/page", "https://hooks.example.com"]);
    /// ```
    pub fn outbound_urls(&self) -> impl Iterator<Item = &str> {
        self.stream_urls
            .iter()
            .map(String::as_str)
            .chain(self.web_url.as_deref())
            .chain(self.custom_base_url.as_deref())
            .chain(self.webhook_urls.iter().map(String::as_str))
    }

    /// The buckets (or Azure containers) named by the destinations, in
    /// order, possibly repeated.
    pub fn buckets(&self) -> impl Iterator<Item = &str> {
        self.destinations
            .iter()
            .filter_map(|d| d.storage.as_ref()?.bucket.as_deref())
    }

    fn set_webhooks(&mut self, webhooks: &[proto::WebhookConfig]) {
        self.webhook_urls = webhooks.iter().filter_map(|w| non_empty(&w.url)).collect();
    }

    fn add_track(&mut self, track_id: &str) {
        if let Some(id) = non_empty(track_id) {
            self.track_ids.push(id);
        }
    }

    fn add_file(&mut self, file: &proto::EncodedFileOutput) {
        self.destinations.push(Destination {
            kind: DestinationKind::File,
            filepath: non_empty(&file.filepath),
            playlist_name: None,
            live_playlist_name: None,
            storage: file.output.as_ref().map(UploadOneof::target),
        });
    }

    /// `storage` is passed in because its source differs between the v1
    /// requests (embedded target only) and the unified one (override,
    /// embedded, request default).
    fn add_segments(
        &mut self,
        segments: &proto::SegmentedFileOutput,
        storage: Option<StorageTarget>,
    ) {
        self.destinations.push(Destination {
            kind: DestinationKind::Segments,
            filepath: non_empty(&segments.filename_prefix),
            playlist_name: non_empty(&segments.playlist_name),
            live_playlist_name: non_empty(&segments.live_playlist_name),
            storage,
        });
    }

    fn add_images(&mut self, images: &proto::ImageOutput, storage: Option<StorageTarget>) {
        self.destinations.push(Destination {
            kind: DestinationKind::Images,
            filepath: non_empty(&images.filename_prefix),
            playlist_name: None,
            live_playlist_name: None,
            storage,
        });
    }

    /// Both ways a stream output names where media goes: plain `urls`, and
    /// `destinations` (a URL with a caller-chosen id, so it can be removed
    /// later). A policy that checked only `urls` would let any destination
    /// through, so both land in the same list.
    fn add_streams(&mut self, stream: &proto::StreamOutput) {
        self.stream_urls
            .extend(stream.urls.iter().filter_map(|u| non_empty(u)));
        self.add_stream_destinations(&stream.destinations);
    }

    fn add_stream_destinations(&mut self, destinations: &[proto::StreamDestination]) {
        self.stream_urls
            .extend(destinations.iter().filter_map(|d| non_empty(&d.url)));
    }

    /// The four output lists and the deprecated single `output` of a v1
    /// request, and their count. The segments' and images' own embedded
    /// target is their storage (v1 requests have no other).
    fn add_v1_outputs(&mut self, request: &impl V1Outputs) {
        request.file_outputs().iter().for_each(|f| self.add_file(f));
        request
            .stream_outputs()
            .iter()
            .for_each(|s| self.add_streams(s));
        for s in request.segment_outputs() {
            self.add_segments(s, s.output.as_ref().map(UploadOneof::target));
        }
        for i in request.image_outputs() {
            self.add_images(i, i.output.as_ref().map(UploadOneof::target));
        }
        match request.legacy_output() {
            Some(LegacyOutput::File(f)) => self.add_file(f),
            Some(LegacyOutput::Stream(s)) => self.add_streams(s),
            Some(LegacyOutput::Segments(s)) => {
                self.add_segments(s, s.output.as_ref().map(UploadOneof::target))
            }
            None => {}
        }
        self.output_count = request.output_count();
    }
}

/// Summarises a Start request's encoding oneof (`options` in the v1
/// requests, `encoding` in the unified one: each has its own generated copy
/// with identical variants).
macro_rules! encoding_of {
    ($options:expr, $oneof:path) => {{
        use $oneof as Oneof;
        $options.as_ref().map(|o| match o {
            Oneof::Preset(p) => EncodingSummary::Preset(*p),
            // Whether prost derives `Copy` for this message depends on the
            // code generator's settings, so clone rather than copy.
            #[allow(clippy::clone_on_copy)]
            Oneof::Advanced(a) => EncodingSummary::Advanced(a.clone()),
        })
    }};
}

// Old clients still send the deprecated single `output`; `add_v1_outputs`
// puts it in the view like any other output.
impl From<&proto::RoomCompositeEgressRequest> for RequestView {
    fn from(r: &proto::RoomCompositeEgressRequest) -> Self {
        let mut view = RequestView::new(Rpc::StartRoomCompositeEgress);
        view.room_name = non_empty(&r.room_name);
        view.layout = non_empty(&r.layout);
        view.custom_base_url = non_empty(&r.custom_base_url);
        view.audio_only = r.audio_only;
        view.video_only = r.video_only;
        view.add_v1_outputs(r);
        view.set_webhooks(&r.webhooks);
        view.encoding = encoding_of!(r.options, proto::room_composite_egress_request::Options);
        view
    }
}

impl From<&proto::WebEgressRequest> for RequestView {
    fn from(r: &proto::WebEgressRequest) -> Self {
        let mut view = RequestView::new(Rpc::StartWebEgress);
        view.web_url = non_empty(&r.url);
        view.audio_only = r.audio_only;
        view.video_only = r.video_only;
        view.add_v1_outputs(r);
        view.set_webhooks(&r.webhooks);
        view.encoding = encoding_of!(r.options, proto::web_egress_request::Options);
        view
    }
}

impl From<&proto::ParticipantEgressRequest> for RequestView {
    fn from(r: &proto::ParticipantEgressRequest) -> Self {
        let mut view = RequestView::new(Rpc::StartParticipantEgress);
        view.room_name = non_empty(&r.room_name);
        view.participant_identity = non_empty(&r.identity);
        view.add_v1_outputs(r);
        view.set_webhooks(&r.webhooks);
        view.encoding = encoding_of!(r.options, proto::participant_egress_request::Options);
        view
    }
}

impl From<&proto::TrackCompositeEgressRequest> for RequestView {
    fn from(r: &proto::TrackCompositeEgressRequest) -> Self {
        let mut view = RequestView::new(Rpc::StartTrackCompositeEgress);
        view.room_name = non_empty(&r.room_name);
        view.add_track(&r.audio_track_id);
        view.add_track(&r.video_track_id);
        view.add_v1_outputs(r);
        view.set_webhooks(&r.webhooks);
        view.encoding = encoding_of!(r.options, proto::track_composite_egress_request::Options);
        view
    }
}

impl From<&proto::TrackEgressRequest> for RequestView {
    fn from(r: &proto::TrackEgressRequest) -> Self {
        use proto::track_egress_request::Output;
        let mut view = RequestView::new(Rpc::StartTrackEgress);
        view.room_name = non_empty(&r.room_name);
        view.add_track(&r.track_id);
        match &r.output {
            Some(Output::File(f)) => view.destinations.push(Destination {
                kind: DestinationKind::File,
                filepath: non_empty(&f.filepath),
                playlist_name: None,
                live_playlist_name: None,
                storage: f.output.as_ref().map(UploadOneof::target),
            }),
            Some(Output::WebsocketUrl(url)) => view.stream_urls.extend(non_empty(url)),
            None => {}
        }
        view.output_count = usize::from(r.output.is_some());
        view.set_webhooks(&r.webhooks);
        view
    }
}

impl From<&proto::StartEgressRequest> for RequestView {
    fn from(r: &proto::StartEgressRequest) -> Self {
        use proto::start_egress_request::Source;
        let mut view = RequestView::new(Rpc::StartEgress);
        view.room_name = non_empty(&r.room_name);
        match &r.source {
            Some(Source::Template(t)) => {
                view.layout = non_empty(&t.layout);
                view.custom_base_url = non_empty(&t.custom_base_url);
                view.audio_only = t.audio_only;
                view.video_only = t.video_only;
            }
            Some(Source::Web(w)) => {
                view.web_url = non_empty(&w.url);
                view.audio_only = w.audio_only;
                view.video_only = w.video_only;
            }
            Some(Source::Media(m)) => add_media(&mut view, m),
            None => {}
        }

        let request_storage = r.storage.as_ref().and_then(config_target);
        for output in &r.outputs {
            use proto::output::Config;
            // Precedence: the output's own override, then (segments/images)
            // the legacy embedded target, then the request-level default.
            let override_target = output.storage.as_ref().and_then(config_target);
            match &output.config {
                Some(Config::File(f)) => view.destinations.push(Destination {
                    kind: DestinationKind::File,
                    filepath: non_empty(&f.filepath),
                    playlist_name: None,
                    live_playlist_name: None,
                    storage: override_target.or_else(|| request_storage.clone()),
                }),
                Some(Config::Stream(s)) => view.add_streams(s),
                Some(Config::Segments(s)) => {
                    let storage = override_target
                        .or_else(|| s.output.as_ref().map(UploadOneof::target))
                        .or_else(|| request_storage.clone());
                    view.add_segments(s, storage);
                }
                Some(Config::Images(i)) => {
                    let storage = override_target
                        .or_else(|| i.output.as_ref().map(UploadOneof::target))
                        .or_else(|| request_storage.clone());
                    view.add_images(i, storage);
                }
                None => {}
            }
        }
        view.output_count = r.outputs.len();
        view.set_webhooks(&r.webhooks);
        view.encoding = encoding_of!(r.encoding, proto::start_egress_request::Encoding);
        view
    }
}

fn add_media(view: &mut RequestView, media: &proto::MediaSource) {
    use proto::audio_route::Match;
    use proto::media_source::Video;
    match &media.video {
        Some(Video::VideoTrackId(id)) => view.add_track(id),
        Some(Video::ParticipantVideo(p)) => view.participant_identity = non_empty(&p.identity),
        None => {}
    }
    if let Some(audio) = &media.audio {
        for route in &audio.routes {
            match &route.r#match {
                Some(Match::TrackId(id)) => view.add_track(id),
                // The view has one identity slot: the participant whose
                // video is recorded wins, otherwise the first audio route's.
                Some(Match::ParticipantIdentity(identity)) => {
                    if view.participant_identity.is_none() {
                        view.participant_identity = non_empty(identity);
                    }
                }
                Some(Match::ParticipantKind(_)) | None => {}
            }
        }
    }
}

impl From<&proto::UpdateLayoutRequest> for RequestView {
    fn from(r: &proto::UpdateLayoutRequest) -> Self {
        let mut view = RequestView::new(Rpc::UpdateLayout);
        view.egress_id = non_empty(&r.egress_id);
        view.layout = non_empty(&r.layout);
        view
    }
}

impl From<&proto::UpdateStreamRequest> for RequestView {
    fn from(r: &proto::UpdateStreamRequest) -> Self {
        let mut view = RequestView::new(Rpc::UpdateStream);
        view.egress_id = non_empty(&r.egress_id);
        view.stream_urls = r
            .add_output_urls
            .iter()
            .filter_map(|u| non_empty(u))
            .collect();
        view.add_stream_destinations(&r.add_destinations);
        view.removed_stream_urls = r
            .remove_output_urls
            .iter()
            .filter_map(|u| non_empty(u))
            .collect();
        view
    }
}

impl From<&proto::ListEgressRequest> for RequestView {
    fn from(r: &proto::ListEgressRequest) -> Self {
        let mut view = RequestView::new(Rpc::ListEgress);
        view.room_name = non_empty(&r.room_name);
        view.egress_id = non_empty(&r.egress_id);
        view
    }
}

impl From<&proto::StopEgressRequest> for RequestView {
    fn from(r: &proto::StopEgressRequest) -> Self {
        let mut view = RequestView::new(Rpc::StopEgress);
        view.egress_id = non_empty(&r.egress_id);
        view
    }
}

/// Decodes a protobuf-encoded request body for `rpc` and summarises it.
///
/// # Errors
///
/// The body is not a valid protobuf encoding of `rpc`'s request message.
///
/// # Example
///
/// ```
/// use egress_core::{Rpc, decode_view, proto};
/// use prost::Message;
///
/// let body = proto::StopEgressRequest { egress_id: "EG_123".into() }.encode_to_vec();
/// let view = decode_view(Rpc::StopEgress, &body)?;
/// assert_eq!(view.egress_id.as_deref(), Some("EG_123"));
/// assert!(decode_view(Rpc::StopEgress, &[0xff]).is_err());
/// # Ok::<(), prost::DecodeError>(())
/// ```
pub fn decode_view(rpc: Rpc, body: &[u8]) -> Result<RequestView, prost::DecodeError> {
    fn view<M: Message + Default>(body: &[u8]) -> Result<RequestView, prost::DecodeError>
    where
        for<'a> &'a M: Into<RequestView>,
    {
        Ok((&M::decode(body)?).into())
    }
    macro_rules! dispatch {
        ($([$(#[$doc:meta])* $rpc:ident, $req:ident, $resp:ident, $kind:ident,
            $outputs:tt, $validate:ident])*) => {
            match rpc {
                $(Rpc::$rpc => view::<proto::$req>(body),)*
            }
        };
    }
    crate::rpc::for_each_rpc!(dispatch)
}

/// Checks that `body` is a well-formed answer to `rpc` (an `EgressInfo`, or a
/// `ListEgressResponse` for `ListEgress`).
///
/// A gateway that forwards answer bytes untouched still should not hand a caller garbage
/// that came back with a 200 (a truncated or mislabelled body): this decodes and drops the
/// message, so fields unknown to our schema pass while broken framing does not.
///
/// ```
/// use egress_core::{Rpc, view::check_response};
/// use egress_core::proto::EgressInfo;
/// use prost::Message;
///
/// let ok = EgressInfo { egress_id: "EG_1".into(), ..Default::default() }.encode_to_vec();
/// assert_eq!(check_response(Rpc::StopEgress, &ok).unwrap().as_deref(), Some("EG_1"));
/// assert!(check_response(Rpc::StopEgress, b"<html>").is_err());
/// ```
///
/// Returns the answer's egress id (`None` for `ListEgress`), which audit logs want for the
/// start calls whose request has none yet.
pub fn check_response(rpc: Rpc, body: &[u8]) -> Result<Option<String>, prost::DecodeError> {
    fn check<M: Message + Default + Answer>(
        body: &[u8],
    ) -> Result<Option<String>, prost::DecodeError> {
        M::decode(body).map(Answer::egress_id)
    }
    // The response type of each RPC comes from the RPC table.
    macro_rules! dispatch {
        ($([$(#[$doc:meta])* $rpc:ident, $req:ident, $resp:ident, $kind:ident,
            $outputs:tt, $validate:ident])*) => {
            match rpc {
                $(Rpc::$rpc => check::<proto::$resp>(body),)*
            }
        };
    }
    crate::rpc::for_each_rpc!(dispatch)
}

/// A response message, and the egress id it reports (none for a list).
trait Answer {
    fn egress_id(self) -> Option<String>;
}

impl Answer for proto::EgressInfo {
    fn egress_id(self) -> Option<String> {
        Some(self.egress_id)
    }
}

impl Answer for proto::ListEgressResponse {
    fn egress_id(self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str) -> proto::S3Upload {
        proto::S3Upload {
            access_key: "AKIA-secret-key".into(),
            secret: "very-secret".into(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            endpoint: "https://s3.example.com".into(),
            ..Default::default()
        }
    }

    fn s3_target(bucket: &str) -> StorageTarget {
        StorageTarget {
            provider: StorageProvider::S3,
            account: None,
            bucket: Some(bucket.into()),
            region: Some("us-east-1".into()),
            endpoint: Some("https://s3.example.com".into()),
        }
    }

    #[test]
    #[allow(deprecated)]
    fn room_composite_view_includes_legacy_output_and_hides_secrets() {
        let request = proto::RoomCompositeEgressRequest {
            room_name: "r".into(),
            layout: "grid".into(),
            file_outputs: vec![proto::EncodedFileOutput {
                filepath: "a.mp4".into(),
                output: Some(proto::encoded_file_output::Output::S3(s3("files"))),
                ..Default::default()
            }],
            output: Some(proto::room_composite_egress_request::Output::Stream(
                proto::StreamOutput {
                    urls: vec!["rtmp://legacy".into()],
                    ..Default::default()
                },
            )),
            webhooks: vec![proto::WebhookConfig {
                url: "https://hook".into(),
                signing_key: "hook-secret".into(),
                ..Default::default()
            }],
            options: Some(proto::room_composite_egress_request::Options::Preset(3)),
            ..Default::default()
        };
        let view = RequestView::from(&request);
        assert_eq!(view.room(), Some("r"));
        assert_eq!(view.layout.as_deref(), Some("grid"));
        assert_eq!(view.stream_urls, ["rtmp://legacy"]);
        assert_eq!(view.output_count, 2);
        assert_eq!(view.webhook_urls, ["https://hook"]);
        assert_eq!(view.encoding, Some(EncodingSummary::Preset(3)));
        assert_eq!(
            view.destinations,
            [Destination {
                kind: DestinationKind::File,
                filepath: Some("a.mp4".into()),
                playlist_name: None,
                live_playlist_name: None,
                storage: Some(s3_target("files")),
            }]
        );
        assert_eq!(view.buckets().collect::<Vec<_>>(), ["files"]);
        let debug = format!("{view:?}");
        for secret in ["AKIA-secret-key", "very-secret", "hook-secret"] {
            assert!(!debug.contains(secret), "{secret} leaked into the view");
        }
    }

    #[test]
    fn unified_storage_precedence() {
        use proto::output::Config;
        let gcp = proto::StorageConfig {
            provider: Some(proto::storage_config::Provider::Gcp(proto::GcpUpload {
                bucket: "request-default".into(),
                ..Default::default()
            })),
        };
        let over = proto::StorageConfig {
            provider: Some(proto::storage_config::Provider::S3(s3("override"))),
        };
        let request = proto::StartEgressRequest {
            room_name: "r".into(),
            source: Some(proto::start_egress_request::Source::Template(
                proto::TemplateSource {
                    layout: "speaker".into(),
                    ..Default::default()
                },
            )),
            storage: Some(gcp),
            outputs: vec![
                proto::Output {
                    config: Some(Config::File(proto::FileOutput {
                        filepath: "plain.mp4".into(),
                        ..Default::default()
                    })),
                    storage: None,
                },
                proto::Output {
                    config: Some(Config::File(proto::FileOutput::default())),
                    storage: Some(over.clone()),
                },
                proto::Output {
                    config: Some(Config::Segments(proto::SegmentedFileOutput {
                        playlist_name: "p.m3u8".into(),
                        output: Some(proto::segmented_file_output::Output::S3(s3("embedded"))),
                        ..Default::default()
                    })),
                    storage: None,
                },
                proto::Output {
                    config: Some(Config::Images(proto::ImageOutput {
                        output: Some(proto::image_output::Output::S3(s3("embedded"))),
                        ..Default::default()
                    })),
                    storage: Some(over),
                },
                proto::Output {
                    config: Some(Config::Stream(proto::StreamOutput {
                        urls: vec!["srt://a".into(), String::new(), "srt://b".into()],
                        ..Default::default()
                    })),
                    storage: None,
                },
            ],
            ..Default::default()
        };
        let view = RequestView::from(&request);
        let buckets: Vec<_> = view.buckets().collect();
        assert_eq!(
            buckets,
            ["request-default", "override", "embedded", "override"]
        );
        assert_eq!(view.destinations[0].filepath.as_deref(), Some("plain.mp4"));
        assert_eq!(view.destinations[1].filepath, None);
        assert_eq!(
            view.destinations[2].playlist_name.as_deref(),
            Some("p.m3u8")
        );
        assert_eq!(view.destinations[2].kind, DestinationKind::Segments);
        assert_eq!(view.destinations[3].kind, DestinationKind::Images);
        assert_eq!(view.stream_urls, ["srt://a", "srt://b"]);
        assert_eq!(view.layout.as_deref(), Some("speaker"));
        assert_eq!(view.output_count, 5);
    }

    #[test]
    fn media_source_view() {
        use proto::audio_route::Match;
        let request = proto::StartEgressRequest {
            room_name: "r".into(),
            source: Some(proto::start_egress_request::Source::Media(
                proto::MediaSource {
                    video: Some(proto::media_source::Video::VideoTrackId("TR_v".into())),
                    audio: Some(proto::AudioConfig {
                        capture_all: false,
                        routes: vec![
                            proto::AudioRoute {
                                r#match: Some(Match::TrackId("TR_a".into())),
                                channel: 0,
                            },
                            proto::AudioRoute {
                                r#match: Some(Match::ParticipantIdentity("bob".into())),
                                channel: 1,
                            },
                        ],
                    }),
                },
            )),
            ..Default::default()
        };
        let view = RequestView::from(&request);
        assert_eq!(view.track_ids, ["TR_v", "TR_a"]);
        assert_eq!(view.participant_identity.as_deref(), Some("bob"));
    }

    #[test]
    fn track_views() {
        let ws = proto::TrackEgressRequest {
            room_name: "r".into(),
            track_id: "TR_1".into(),
            output: Some(proto::track_egress_request::Output::WebsocketUrl(
                "wss://sink".into(),
            )),
            ..Default::default()
        };
        let view = RequestView::from(&ws);
        assert_eq!(view.stream_urls, ["wss://sink"]);
        assert_eq!(view.track_ids, ["TR_1"]);
        assert_eq!(view.output_count, 1);

        let file = proto::TrackEgressRequest {
            output: Some(proto::track_egress_request::Output::File(
                proto::DirectFileOutput {
                    filepath: "t.ogg".into(),
                    output: Some(proto::direct_file_output::Output::Azure(
                        proto::AzureBlobUpload {
                            account_name: "acct".into(),
                            account_key: "key".into(),
                            container_name: "media".into(),
                        },
                    )),
                    ..Default::default()
                },
            )),
            ..ws
        };
        let view = RequestView::from(&file);
        assert_eq!(view.buckets().collect::<Vec<_>>(), ["media"]);
        let storage = view.destinations[0].storage.as_ref().unwrap();
        assert_eq!(storage.provider, StorageProvider::Azure);
        assert_eq!(storage.account.as_deref(), Some("acct"));
        assert!(
            !format!("{view:?}").contains("key"),
            "the account key leaked"
        );
    }

    #[test]
    fn decode_view_dispatches_on_rpc() {
        let update = proto::UpdateStreamRequest {
            egress_id: "EG_1".into(),
            add_output_urls: vec!["rtmp://new".into()],
            remove_output_urls: vec!["rtmp://old".into()],
            ..Default::default()
        };
        let view = decode_view(Rpc::UpdateStream, &update.encode_to_vec()).unwrap();
        assert_eq!(view.rpc, Rpc::UpdateStream);
        assert_eq!(view.egress(), Some("EG_1"));
        assert_eq!(view.stream_urls, ["rtmp://new"]);
        assert_eq!(view.removed_stream_urls, ["rtmp://old"]);

        let list = proto::ListEgressRequest {
            room_name: "r".into(),
            ..Default::default()
        };
        let view = decode_view(Rpc::ListEgress, &list.encode_to_vec()).unwrap();
        assert_eq!(view.room(), Some("r"));
        assert_eq!(view.egress_id, None);

        let web = proto::WebEgressRequest {
            url: "https://page".into(),
            ..Default::default()
        };
        let view = decode_view(Rpc::StartWebEgress, &web.encode_to_vec()).unwrap();
        assert_eq!(view.web_url.as_deref(), Some("https://page"));

        // An empty body is a valid (all-default) message for every RPC.
        for rpc in Rpc::ALL {
            let view = decode_view(rpc, &[]).unwrap();
            assert_eq!(view, RequestView::new(rpc));
        }
    }

    fn destination(id: &str, url: &str) -> proto::StreamDestination {
        proto::StreamDestination {
            id: id.into(),
            url: url.into(),
        }
    }

    #[test]
    #[allow(deprecated)]
    fn stream_destinations_are_stream_urls_in_every_request() {
        let stream = proto::StreamOutput {
            urls: vec!["rtmp://plain".into()],
            destinations: vec![
                destination("a", "rtmps://dest-a"),
                destination("empty", ""),
                destination("b", "srt://dest-b"),
            ],
            ..Default::default()
        };
        let expected = ["rtmp://plain", "rtmps://dest-a", "srt://dest-b"];

        let room = proto::RoomCompositeEgressRequest {
            stream_outputs: vec![stream.clone()],
            ..Default::default()
        };
        assert_eq!(RequestView::from(&room).stream_urls, expected);
        let legacy = proto::TrackCompositeEgressRequest {
            output: Some(proto::track_composite_egress_request::Output::Stream(
                stream.clone(),
            )),
            ..Default::default()
        };
        assert_eq!(RequestView::from(&legacy).stream_urls, expected);
        let participant = proto::ParticipantEgressRequest {
            stream_outputs: vec![stream.clone()],
            ..Default::default()
        };
        assert_eq!(RequestView::from(&participant).stream_urls, expected);
        let unified = proto::StartEgressRequest {
            outputs: vec![proto::Output {
                config: Some(proto::output::Config::Stream(stream)),
                storage: None,
            }],
            ..Default::default()
        };
        let view = decode_view(Rpc::StartEgress, &unified.encode_to_vec()).unwrap();
        assert_eq!(view.stream_urls, expected);
        assert_eq!(view.outbound_urls().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn update_stream_add_destinations_are_stream_urls() {
        let update = proto::UpdateStreamRequest {
            egress_id: "EG_1".into(),
            add_output_urls: vec!["rtmp://added".into()],
            add_destinations: vec![destination("d1", "rtmps://dest")],
            ..Default::default()
        };
        let view = decode_view(Rpc::UpdateStream, &update.encode_to_vec()).unwrap();
        assert_eq!(view.stream_urls, ["rtmp://added", "rtmps://dest"]);
    }
}
