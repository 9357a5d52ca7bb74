//! Secrets taken out of every `EgressInfo` the simulator answers with.
//!
//! LiveKit never echoes storage credentials or stream keys: the egress worker clones the
//! request into `EgressInfo.request` and redacts the clone (`PipelineConfig.Update` in
//! livekit/egress `pkg/config/pipeline.go`, calling livekit/protocol `egress/redact.go`),
//! and a stream result carries the URL with its key redacted (`StreamConfig.AddStream` in
//! `pkg/config/urls.go`). What the IO service stores and ListEgress returns is that redacted
//! info; only the worker's pipeline keeps the real values.
//!
//! The simulator plays worker and IO service at once and needs the real URLs (UpdateStream
//! removes streams by the caller's URL), so its store keeps them and [`redact_info`] runs on
//! every answer instead (one call, in `service::call`). Placeholders and coverage follow
//! livekit/protocol's current `egress/redact.go` and `utils/redact.go`, including its quirks:
//! the v1 output lists are redacted only when they hold exactly one entry
//! (`RedactEncodedOutputs`), and stream `destinations` are left as they are
//! (`RedactStreamKeys` covers `urls` only).

use egress_core::stream_url::split_rtmp;
use egress_proto::livekit::{self as lk, EgressInfo, ListEgressResponse, egress_info};

/// A response message that can carry secrets.
pub(crate) trait Redact {
    /// Replaces every secret with LiveKit's placeholder.
    fn redact(&mut self);
}

impl Redact for EgressInfo {
    fn redact(&mut self) {
        redact_info(self);
    }
}

impl Redact for ListEgressResponse {
    fn redact(&mut self) {
        self.items.iter_mut().for_each(redact_info);
    }
}

/// The request echo and the stream results of one egress, as LiveKit reports them.
pub(crate) fn redact_info(info: &mut EgressInfo) {
    if let Some(request) = &mut info.request {
        redact_request(request);
    }
    for stream in &mut info.stream_results {
        stream.url = redact_result_url(&stream.url);
    }
    // The deprecated single result mirrors `stream_results` when it is set.
    #[allow(deprecated)]
    if let Some(egress_info::Result::Stream(list)) = &mut info.result {
        for stream in &mut list.info {
            stream.url = redact_result_url(&stream.url);
        }
    }
}

/// `EgressInfo.request`: what `PipelineConfig.Update` redacts for each request type.
// The deprecated single `output` is still redacted by LiveKit (`EncodedOutputDeprecated`).
#[allow(deprecated)]
fn redact_request(request: &mut egress_info::Request) {
    macro_rules! encoded {
        ($r:expr, $oneof:ident) => {{
            let r = $r;
            redact_encoded(
                &mut r.file_outputs,
                &mut r.stream_outputs,
                &mut r.segment_outputs,
                &mut r.image_outputs,
            );
            match &mut r.output {
                Some(lk::$oneof::Output::File(f)) => redact_upload(f.output.as_mut()),
                Some(lk::$oneof::Output::Stream(s)) => redact_stream_keys(s),
                Some(lk::$oneof::Output::Segments(s)) => redact_upload(s.output.as_mut()),
                None => {}
            }
        }};
    }
    match request {
        egress_info::Request::RoomComposite(r) => encoded!(r, room_composite_egress_request),
        egress_info::Request::Web(r) => encoded!(r, web_egress_request),
        egress_info::Request::TrackComposite(r) => encoded!(r, track_composite_egress_request),
        egress_info::Request::Participant(r) => redact_encoded(
            &mut r.file_outputs,
            &mut r.stream_outputs,
            &mut r.segment_outputs,
            &mut r.image_outputs,
        ),
        // `RedactDirectOutputs`.
        egress_info::Request::Track(r) => match &mut r.output {
            Some(lk::track_egress_request::Output::File(f)) => {
                redact_upload(f.output.as_mut());
            }
            Some(lk::track_egress_request::Output::WebsocketUrl(url)) => {
                *url = redact_url_query_values(url);
            }
            None => {}
        },
        // `RedactStartEgressRequest`.
        egress_info::Request::Egress(r) => redact_v2(&mut r.storage, &mut r.outputs),
        egress_info::Request::Replay(r) => redact_v2(&mut r.storage, &mut r.outputs),
    }
}

/// `RedactEncodedOutputs`: each list only when it holds exactly one output.
fn redact_encoded(
    files: &mut [lk::EncodedFileOutput],
    streams: &mut [lk::StreamOutput],
    segments: &mut [lk::SegmentedFileOutput],
    images: &mut [lk::ImageOutput],
) {
    if let [file] = files {
        redact_upload(file.output.as_mut());
    }
    if let [segment] = segments {
        redact_upload(segment.output.as_mut());
    }
    if let [stream] = streams {
        redact_stream_keys(stream);
    }
    if let [image] = images {
        redact_upload(image.output.as_mut());
    }
}

/// `RedactStartEgressRequest`: the shared storage, each output's storage and stream keys.
fn redact_v2(storage: &mut Option<lk::StorageConfig>, outputs: &mut [lk::Output]) {
    redact_upload(storage.as_mut().and_then(|s| s.provider.as_mut()));
    for output in outputs {
        redact_upload(output.storage.as_mut().and_then(|s| s.provider.as_mut()));
        if let Some(lk::output::Config::Stream(stream)) = &mut output.config {
            redact_stream_keys(stream);
        }
    }
}

/// One upload destination, whichever message it sits in.
enum Upload<'a> {
    S3(&'a mut lk::S3Upload),
    Gcp(&'a mut lk::GcpUpload),
    Azure(&'a mut lk::AzureBlobUpload),
    AliOss(&'a mut lk::AliOssUpload),
}

/// Every upload oneof (in a file, segments, image, direct file output or a `StorageConfig`)
/// has the same four providers.
macro_rules! upload_from {
    ($($oneof:path),* $(,)?) => {$(
        impl<'a> From<&'a mut $oneof> for Upload<'a> {
            fn from(oneof: &'a mut $oneof) -> Self {
                use $oneof as Oneof;
                match oneof {
                    Oneof::S3(s3) => Upload::S3(s3),
                    Oneof::Gcp(gcp) => Upload::Gcp(gcp),
                    Oneof::Azure(azure) => Upload::Azure(azure),
                    Oneof::AliOss(ali) => Upload::AliOss(ali),
                }
            }
        }
    )*};
}

upload_from!(
    lk::encoded_file_output::Output,
    lk::segmented_file_output::Output,
    lk::image_output::Output,
    lk::direct_file_output::Output,
    lk::storage_config::Provider,
);

/// `RedactUpload`: credentials become `{access_key}`, `{secret}`, … (empty stays empty).
fn redact_upload<'a>(upload: Option<impl Into<Upload<'a>>>) {
    match upload.map(Into::into) {
        Some(Upload::S3(s3)) => {
            redact(&mut s3.access_key, "{access_key}");
            redact(&mut s3.secret, "{secret}");
            redact(&mut s3.assume_role_external_id, "{external_id}");
            redact(&mut s3.session_token, "{session_token}");
        }
        Some(Upload::Gcp(gcp)) => redact(&mut gcp.credentials, "{credentials}"),
        Some(Upload::Azure(azure)) => {
            redact(&mut azure.account_name, "{account_name}");
            redact(&mut azure.account_key, "{account_key}");
        }
        Some(Upload::AliOss(ali)) => {
            redact(&mut ali.access_key, "{access_key}");
            redact(&mut ali.secret, "{secret}");
        }
        None => {}
    }
}

/// `utils.Redact`: a set value becomes the placeholder, an empty one stays empty.
fn redact(value: &mut String, placeholder: &str) {
    if !value.is_empty() {
        *value = placeholder.to_owned();
    }
}

/// `RedactStreamKeys`: each of `urls` through [`redact_stream_key`].
fn redact_stream_keys(stream: &mut lk::StreamOutput) {
    for url in &mut stream.urls {
        if let Some(redacted) = redact_stream_key(url) {
            *url = redacted;
        }
    }
}

/// A stream result's URL as the worker reports it (`StreamConfig.ValidateUrl`): the RTMP
/// stream key redacted; SRT and WebSocket URLs are reported as given. The worker turns
/// `mux://KEY` / `twitch://KEY` into the provider's RTMP URL first (Twitch's needs a
/// lookup); the simulator redacts the shorthand's key in place instead.
fn redact_result_url(url: &str) -> String {
    redact_rtmp(url)
        .or_else(|| redact_shorthand(url))
        .unwrap_or_else(|| url.to_owned())
}

/// `utils.RedactStreamKey`: `mux://KEY` and `twitch://KEY` shorthands, then RTMP URLs
/// (`rtmp(s)://host(/path)/app/KEY( live=1)`), then any other URL's query values; `None`
/// when nothing was redacted.
///
/// ```text
/// rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl → rtmp://a.rtmp.youtube.com/live2/{abc...jkl}
/// srt://h:9000?streamid=k&passphrase=p           → srt://h:9000?streamid={...}&passphrase={...}
/// ```
pub(crate) fn redact_stream_key(url: &str) -> Option<String> {
    if let Some(redacted) = redact_shorthand(url) {
        return Some(redacted);
    }
    if let Some(redacted) = redact_rtmp(url) {
        return Some(redacted);
    }
    let redacted = redact_url_query_values(url);
    (redacted != url).then_some(redacted)
}

/// `^(mux|twitch)://(\S+)$`: the whole authority is the key.
fn redact_shorthand(url: &str) -> Option<String> {
    let (scheme, key) = url.split_once("://")?;
    if !matches!(scheme, "mux" | "twitch") || key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{scheme}://{}", redact_identifier(key)))
}

/// An RTMP URL with its stream key redacted (`utils.RedactStreamKey`'s pattern, split by
/// egress-core's [`split_rtmp`]).
fn redact_rtmp(url: &str) -> Option<String> {
    let parts = split_rtmp(url)?;
    Some(format!(
        "{}{}{}",
        parts.head,
        redact_identifier(parts.key),
        parts.live
    ))
}

/// `utils.RedactIdentifier`: `{` + up to three leading characters + `...` + as many
/// trailing ones + `}`, fewer for short keys (`{...}` under three bytes).
pub(crate) fn redact_identifier(identifier: &str) -> String {
    let bytes = identifier.as_bytes();
    let mut affix = 0;
    for i in (1..=3).rev() {
        if bytes.len() >= i * 3 {
            affix = i;
            break;
        }
    }
    // Go slices bytes; a cut inside a multi-byte character is replaced rather than split.
    let prefix = String::from_utf8_lossy(&bytes[..affix]);
    let suffix = String::from_utf8_lossy(&bytes[bytes.len() - affix..]);
    format!("{{{prefix}...{suffix}}}")
}

/// `utils.RedactUrlQueryValues`: every non-empty query value becomes `{...}`, names kept.
pub(crate) fn redact_url_query_values(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    if query.is_empty() {
        return url.to_owned();
    }
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, value)) if !value.is_empty() => format!("{name}={{...}}"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_keep_at_most_three_characters_each_side() {
        assert_eq!(redact_identifier("abcdefghijkl"), "{abc...jkl}");
        assert_eq!(redact_identifier("abcdefgh"), "{ab...gh}");
        assert_eq!(redact_identifier("abc"), "{a...c}");
        assert_eq!(redact_identifier("ab"), "{...}");
        assert_eq!(redact_identifier(""), "{...}");
    }

    #[test]
    fn stream_keys_like_livekit() {
        assert_eq!(
            redact_stream_key("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl").as_deref(),
            Some("rtmp://a.rtmp.youtube.com/live2/{abc...jkl}")
        );
        assert_eq!(
            redact_stream_key("rtmps://host/path/app/secretkey live=1").as_deref(),
            Some("rtmps://host/path/app/{sec...key} live=1")
        );
        assert_eq!(
            redact_stream_key("mux://0123456789").as_deref(),
            Some("mux://{012...789}")
        );
        // Not of RTMP form: only query values go.
        assert_eq!(redact_stream_key("rtmp://host/onlyapp"), None);
        assert_eq!(
            redact_stream_key("srt://h:9000?streamid=k1&passphrase=p&flag&empty=").as_deref(),
            Some("srt://h:9000?streamid={...}&passphrase={...}&flag&empty=")
        );
        assert_eq!(redact_stream_key("wss://h/socket"), None);
    }

    #[test]
    fn results_redact_rtmp_keys_only() {
        assert_eq!(
            redact_result_url("rtmp://h/live/abcdefghi"),
            "rtmp://h/live/{abc...ghi}"
        );
        assert_eq!(
            redact_result_url("srt://h:1?passphrase=x"),
            "srt://h:1?passphrase=x"
        );
    }

    fn s3(secret: &str) -> lk::S3Upload {
        lk::S3Upload {
            access_key: "AKIA1234".into(),
            secret: secret.into(),
            session_token: "tok".into(),
            assume_role_external_id: String::new(),
            bucket: "b".into(),
            ..Default::default()
        }
    }

    #[test]
    fn v1_requests_lose_credentials_and_keys() {
        let mut info = EgressInfo {
            request: Some(egress_info::Request::RoomComposite(
                lk::RoomCompositeEgressRequest {
                    room_name: "r".into(),
                    file_outputs: vec![lk::EncodedFileOutput {
                        output: Some(lk::encoded_file_output::Output::S3(s3("shh"))),
                        ..Default::default()
                    }],
                    stream_outputs: vec![lk::StreamOutput {
                        urls: vec!["rtmp://h/app/streamkey123".into()],
                        ..Default::default()
                    }],
                    // Two image outputs: LiveKit redacts only a single one.
                    image_outputs: vec![
                        lk::ImageOutput {
                            output: Some(lk::image_output::Output::Gcp(lk::GcpUpload {
                                credentials: "{json}".into(),
                                ..Default::default()
                            })),
                            ..Default::default()
                        };
                        2
                    ],
                    ..Default::default()
                },
            )),
            stream_results: vec![lk::StreamInfo {
                url: "rtmp://h/app/streamkey123".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        info.redact();
        let Some(egress_info::Request::RoomComposite(r)) = &info.request else {
            panic!("request kept");
        };
        let Some(lk::encoded_file_output::Output::S3(s3)) = &r.file_outputs[0].output else {
            panic!("upload kept");
        };
        assert_eq!(
            (
                s3.access_key.as_str(),
                s3.secret.as_str(),
                s3.session_token.as_str()
            ),
            ("{access_key}", "{secret}", "{session_token}")
        );
        assert_eq!(s3.assume_role_external_id, "");
        assert_eq!(s3.bucket, "b");
        assert_eq!(r.stream_outputs[0].urls[0], "rtmp://h/app/{str...123}");
        assert_eq!(info.stream_results[0].url, "rtmp://h/app/{str...123}");
        let Some(lk::image_output::Output::Gcp(gcp)) = &r.image_outputs[1].output else {
            panic!("upload kept");
        };
        assert_eq!(gcp.credentials, "{json}");
    }

    #[test]
    fn v2_and_track_requests() {
        let mut info = EgressInfo {
            request: Some(egress_info::Request::Egress(lk::StartEgressRequest {
                storage: Some(lk::StorageConfig {
                    provider: Some(lk::storage_config::Provider::Azure(lk::AzureBlobUpload {
                        account_name: "acct".into(),
                        account_key: "key".into(),
                        container_name: "c".into(),
                    })),
                }),
                outputs: vec![lk::Output {
                    storage: Some(lk::StorageConfig {
                        provider: Some(lk::storage_config::Provider::AliOss(lk::AliOssUpload {
                            access_key: "a".into(),
                            secret: "s".into(),
                            ..Default::default()
                        })),
                    }),
                    config: Some(lk::output::Config::Stream(lk::StreamOutput {
                        urls: vec!["srt://h:1?passphrase=p".into()],
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        info.redact();
        let Some(egress_info::Request::Egress(r)) = &info.request else {
            panic!("request kept");
        };
        let Some(lk::storage_config::Provider::Azure(azure)) =
            r.storage.as_ref().and_then(|s| s.provider.as_ref())
        else {
            panic!("storage kept");
        };
        assert_eq!(
            (
                azure.account_name.as_str(),
                azure.account_key.as_str(),
                azure.container_name.as_str()
            ),
            ("{account_name}", "{account_key}", "c")
        );
        let Some(lk::storage_config::Provider::AliOss(ali)) = r.outputs[0]
            .storage
            .as_ref()
            .and_then(|s| s.provider.as_ref())
        else {
            panic!("storage kept");
        };
        assert_eq!(
            (ali.access_key.as_str(), ali.secret.as_str()),
            ("{access_key}", "{secret}")
        );
        let Some(lk::output::Config::Stream(stream)) = &r.outputs[0].config else {
            panic!("config kept");
        };
        assert_eq!(stream.urls[0], "srt://h:1?passphrase={...}");

        let mut track = EgressInfo {
            request: Some(egress_info::Request::Track(lk::TrackEgressRequest {
                output: Some(lk::track_egress_request::Output::WebsocketUrl(
                    "wss://h/ws?token=abc".into(),
                )),
                ..Default::default()
            })),
            ..Default::default()
        };
        track.redact();
        let Some(egress_info::Request::Track(r)) = &track.request else {
            panic!("request kept");
        };
        assert_eq!(
            r.output,
            Some(lk::track_egress_request::Output::WebsocketUrl(
                "wss://h/ws?token={...}".into()
            ))
        );
    }
}
