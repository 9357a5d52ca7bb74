//! Encoding settings: LiveKit's defaults and the named presets.
//!
//! The numbers mirror the `EncodingOptionsPreset` comments in
//! `livekit_egress.proto` and LiveKit's server SDK defaults: every preset
//! uses 24-bit depth, H.264 Main video and 128 kbps / 44.1 kHz Opus audio,
//! and differs only in size, frame rate and video bitrate.
//!
//! A `key_frame_interval` of `0.0` means "unset": the egress service then
//! picks its own default (4 s for streams, the segment length for segmented
//! output, the encoder default for files). The presets leave it unset so
//! that server-side behaviour is unchanged.

use crate::{ValidationError, proto};

use proto::EncodingOptionsPreset as Preset;

/// Advanced encoding options in typed form.
///
/// Converts to and from the proto
/// [`EncodingOptions`](proto::EncodingOptions) message; use it with the
/// request builders' `advanced(..)` setter. The deprecated
/// `audio_quality` / `video_quality` fields are deliberately not modelled:
/// they are ignored when converting from proto and left at zero (unset) when
/// converting to it.
///
/// # Example
///
/// ```
/// use egress_core::{EncodingOptions, proto};
///
/// let options = EncodingOptions { framerate: 25, ..EncodingOptions::default() };
/// let wire: proto::EncodingOptions = options.into();
/// assert_eq!(wire.width, 1920);
/// assert_eq!(wire.framerate, 25);
/// assert_eq!(wire.video_codec, proto::VideoCodec::H264Main as i32);
/// assert_eq!(EncodingOptions::try_from(wire).unwrap(), options);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncodingOptions {
    /// Output width in pixels.
    pub width: i32,
    /// Output height in pixels.
    pub height: i32,
    /// Colour depth in bits per pixel.
    pub depth: i32,
    /// Frames per second.
    pub framerate: i32,
    /// Audio codec.
    pub audio_codec: proto::AudioCodec,
    /// Audio bitrate in kbps.
    pub audio_bitrate: i32,
    /// Audio sample rate in Hz.
    pub audio_frequency: i32,
    /// Video codec.
    pub video_codec: proto::VideoCodec,
    /// Video bitrate in kbps.
    pub video_bitrate: i32,
    /// Seconds between key frames; `0.0` lets the egress service choose.
    pub key_frame_interval: f64,
}

impl EncodingOptions {
    /// LiveKit's default advanced options: 1920x1080, 24-bit, 30 fps,
    /// Opus 128 kbps at 44.1 kHz, H.264 Main at 4500 kbps.
    ///
    /// These happen to equal [`H264_1080P_30`], so
    /// `preset_for(&EncodingOptions::DEFAULT)` names that preset. Note that
    /// a request with *no* encoding options at all gets the server default
    /// preset instead, which is [`H264_720P_30`].
    ///
    /// ```
    /// use egress_core::{EncodingOptions, preset_for, proto};
    ///
    /// assert_eq!(EncodingOptions::default(), EncodingOptions::DEFAULT);
    /// assert_eq!(
    ///     preset_for(&EncodingOptions::DEFAULT),
    ///     Some(proto::EncodingOptionsPreset::H2641080p30),
    /// );
    /// ```
    pub const DEFAULT: Self = Self {
        width: 1920,
        height: 1080,
        depth: 24,
        framerate: 30,
        audio_codec: proto::AudioCodec::Opus,
        audio_bitrate: 128,
        audio_frequency: 44_100,
        video_codec: proto::VideoCodec::H264Main,
        video_bitrate: 4500,
        key_frame_interval: 0.0,
    };
}

impl Default for EncodingOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// 1280x720, 30 fps, 3000 kbps (the server default when no encoding is given).
pub const H264_720P_30: EncodingOptions = EncodingOptions {
    width: 1280,
    height: 720,
    video_bitrate: 3000,
    ..EncodingOptions::DEFAULT
};

/// 1280x720, 60 fps, 4500 kbps.
pub const H264_720P_60: EncodingOptions = EncodingOptions {
    width: 1280,
    height: 720,
    framerate: 60,
    video_bitrate: 4500,
    ..EncodingOptions::DEFAULT
};

/// 1920x1080, 30 fps, 4500 kbps.
pub const H264_1080P_30: EncodingOptions = EncodingOptions {
    width: 1920,
    height: 1080,
    framerate: 30,
    video_bitrate: 4500,
    ..EncodingOptions::DEFAULT
};

/// 1920x1080, 60 fps, 6000 kbps.
pub const H264_1080P_60: EncodingOptions = EncodingOptions {
    width: 1920,
    height: 1080,
    framerate: 60,
    video_bitrate: 6000,
    ..EncodingOptions::DEFAULT
};

/// 720x1280 (portrait), 30 fps, 3000 kbps.
pub const PORTRAIT_H264_720P_30: EncodingOptions = portrait(H264_720P_30);

/// 720x1280 (portrait), 60 fps, 4500 kbps.
pub const PORTRAIT_H264_720P_60: EncodingOptions = portrait(H264_720P_60);

/// 1080x1920 (portrait), 30 fps, 4500 kbps.
pub const PORTRAIT_H264_1080P_30: EncodingOptions = portrait(H264_1080P_30);

/// 1080x1920 (portrait), 60 fps, 6000 kbps.
pub const PORTRAIT_H264_1080P_60: EncodingOptions = portrait(H264_1080P_60);

/// Portrait presets are their landscape counterpart with width and height
/// swapped; deriving them keeps the two families from drifting apart.
const fn portrait(landscape: EncodingOptions) -> EncodingOptions {
    EncodingOptions {
        width: landscape.height,
        height: landscape.width,
        ..landscape
    }
}

/// Every transcoding preset with its options, in proto enum order.
///
/// `PASSTHROUGH` is absent on purpose: it skips transcoding, so it has no
/// encoding options.
///
/// ```
/// use egress_core::presets::ALL_PRESETS;
/// use egress_core::preset_options;
///
/// for (preset, options) in ALL_PRESETS {
///     assert_eq!(preset_options(preset), Some(options));
/// }
/// ```
pub const ALL_PRESETS: [(Preset, EncodingOptions); 8] = [
    (Preset::H264720p30, H264_720P_30),
    (Preset::H264720p60, H264_720P_60),
    (Preset::H2641080p30, H264_1080P_30),
    (Preset::H2641080p60, H264_1080P_60),
    (Preset::PortraitH264720p30, PORTRAIT_H264_720P_30),
    (Preset::PortraitH264720p60, PORTRAIT_H264_720P_60),
    (Preset::PortraitH2641080p30, PORTRAIT_H264_1080P_30),
    (Preset::PortraitH2641080p60, PORTRAIT_H264_1080P_60),
];

/// The encoding options a preset stands for.
///
/// Returns `None` only for `PASSTHROUGH`, which forwards the track without
/// transcoding and therefore has no width, bitrate or codec of its own.
///
/// # Example
///
/// ```
/// use egress_core::{preset_options, proto::EncodingOptionsPreset};
///
/// let options = preset_options(EncodingOptionsPreset::PortraitH2641080p60).unwrap();
/// assert_eq!((options.width, options.height), (1080, 1920));
/// assert_eq!((options.framerate, options.video_bitrate), (60, 6000));
/// assert_eq!(preset_options(EncodingOptionsPreset::Passthrough), None);
/// ```
pub fn preset_options(preset: Preset) -> Option<EncodingOptions> {
    ALL_PRESETS
        .iter()
        .find(|(candidate, _)| *candidate == preset)
        .map(|(_, options)| *options)
}

/// The preset whose options are exactly `options`, if there is one.
///
/// Every field must match, including codecs and `key_frame_interval`;
/// anything customised is "advanced" and yields `None`.
///
/// # Example
///
/// ```
/// use egress_core::presets::{H264_720P_60, EncodingOptions};
/// use egress_core::{preset_for, proto::EncodingOptionsPreset};
///
/// assert_eq!(preset_for(&H264_720P_60), Some(EncodingOptionsPreset::H264720p60));
/// let custom = EncodingOptions { video_bitrate: 5000, ..H264_720P_60 };
/// assert_eq!(preset_for(&custom), None);
/// ```
pub fn preset_for(options: &EncodingOptions) -> Option<Preset> {
    ALL_PRESETS
        .iter()
        .find(|(_, candidate)| candidate == options)
        .map(|(preset, _)| *preset)
}

impl From<EncodingOptions> for proto::EncodingOptions {
    fn from(options: EncodingOptions) -> Self {
        Self {
            width: options.width,
            height: options.height,
            depth: options.depth,
            framerate: options.framerate,
            audio_codec: options.audio_codec as i32,
            audio_bitrate: options.audio_bitrate,
            audio_frequency: options.audio_frequency,
            video_codec: options.video_codec as i32,
            video_bitrate: options.video_bitrate,
            key_frame_interval: options.key_frame_interval,
            // The deprecated quality knobs stay unset (zero).
            ..Self::default()
        }
    }
}

/// Fails only when a codec field holds a value the pinned protocol does not
/// define; mapping it to some default would silently change the recording.
impl TryFrom<proto::EncodingOptions> for EncodingOptions {
    type Error = ValidationError;

    fn try_from(options: proto::EncodingOptions) -> Result<Self, Self::Error> {
        Self::try_from(&options)
    }
}

impl TryFrom<&proto::EncodingOptions> for EncodingOptions {
    type Error = ValidationError;

    fn try_from(options: &proto::EncodingOptions) -> Result<Self, Self::Error> {
        let audio_codec = proto::AudioCodec::try_from(options.audio_codec).map_err(|_| {
            ValidationError::UnknownEnumValue {
                field: "audio_codec",
                value: options.audio_codec,
            }
        })?;
        let video_codec = proto::VideoCodec::try_from(options.video_codec).map_err(|_| {
            ValidationError::UnknownEnumValue {
                field: "video_codec",
                value: options.video_codec,
            }
        })?;
        Ok(Self {
            width: options.width,
            height: options.height,
            depth: options.depth,
            framerate: options.framerate,
            audio_codec,
            audio_bitrate: options.audio_bitrate,
            audio_frequency: options.audio_frequency,
            video_codec,
            video_bitrate: options.video_bitrate,
            key_frame_interval: options.key_frame_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (preset, width, height, framerate, video kbps) straight from the
    /// comments on `EncodingOptionsPreset` in livekit_egress.proto.
    const EXPECTED: [(Preset, i32, i32, i32, i32); 8] = [
        (Preset::H264720p30, 1280, 720, 30, 3000),
        (Preset::H264720p60, 1280, 720, 60, 4500),
        (Preset::H2641080p30, 1920, 1080, 30, 4500),
        (Preset::H2641080p60, 1920, 1080, 60, 6000),
        (Preset::PortraitH264720p30, 720, 1280, 30, 3000),
        (Preset::PortraitH264720p60, 720, 1280, 60, 4500),
        (Preset::PortraitH2641080p30, 1080, 1920, 30, 4500),
        (Preset::PortraitH2641080p60, 1080, 1920, 60, 6000),
    ];

    fn assert_common(options: &EncodingOptions) {
        assert_eq!(options.depth, 24);
        assert_eq!(options.audio_codec, proto::AudioCodec::Opus);
        assert_eq!(options.audio_bitrate, 128);
        assert_eq!(options.audio_frequency, 44_100);
        assert_eq!(options.video_codec, proto::VideoCodec::H264Main);
        assert_eq!(options.key_frame_interval, 0.0);
    }

    #[test]
    fn default_values() {
        let d = EncodingOptions::default();
        assert_eq!(d.width, 1920);
        assert_eq!(d.height, 1080);
        assert_eq!(d.framerate, 30);
        assert_eq!(d.video_bitrate, 4500);
        assert_common(&d);
    }

    #[test]
    fn h264_720p_30() {
        let o = H264_720P_30;
        assert_eq!(
            (o.width, o.height, o.framerate, o.video_bitrate),
            (1280, 720, 30, 3000)
        );
        assert_common(&o);
    }

    #[test]
    fn h264_720p_60() {
        let o = H264_720P_60;
        assert_eq!(
            (o.width, o.height, o.framerate, o.video_bitrate),
            (1280, 720, 60, 4500)
        );
        assert_common(&o);
    }

    #[test]
    fn h264_1080p_30() {
        let o = H264_1080P_30;
        assert_eq!(
            (o.width, o.height, o.framerate, o.video_bitrate),
            (1920, 1080, 30, 4500)
        );
        assert_common(&o);
    }

    #[test]
    fn h264_1080p_60() {
        let o = H264_1080P_60;
        assert_eq!(
            (o.width, o.height, o.framerate, o.video_bitrate),
            (1920, 1080, 60, 6000)
        );
        assert_common(&o);
    }

    #[test]
    fn portrait_h264_720p_30() {
        let o = PORTRAIT_H264_720P_30;
        assert_eq!(
            (o.width, o.height, o.framerate, o.video_bitrate),
            (720, 1280, 30, 3000)
        );
        assert_common(&o);
    }

    #[test]
    fn portrait_h264_720p_60() {
        let o = PORTRAIT_H264_720P_60;
        assert_eq!(
            (o.width, o.height, o.framerate, o.video_bitrate),
            (720, 1280, 60, 4500)
        );
        assert_common(&o);
    }

    #[test]
    fn portrait_h264_1080p_30() {
        let o = PORTRAIT_H264_1080P_30;
        assert_eq!(
            (o.width, o.height, o.framerate, o.video_bitrate),
            (1080, 1920, 30, 4500)
        );
        assert_common(&o);
    }

    #[test]
    fn portrait_h264_1080p_60() {
        let o = PORTRAIT_H264_1080P_60;
        assert_eq!(
            (o.width, o.height, o.framerate, o.video_bitrate),
            (1080, 1920, 60, 6000)
        );
        assert_common(&o);
    }

    #[test]
    fn preset_table_matches_proto_comments() {
        for (preset, width, height, framerate, bitrate) in EXPECTED {
            let o = preset_options(preset).unwrap();
            assert_eq!(
                (o.width, o.height, o.framerate, o.video_bitrate),
                (width, height, framerate, bitrate),
                "{}",
                preset.as_str_name()
            );
            assert_common(&o);
        }
    }

    #[test]
    fn presets_round_trip() {
        for (preset, options) in ALL_PRESETS {
            assert_eq!(preset_options(preset), Some(options));
            assert_eq!(preset_for(&options), Some(preset));
        }
    }

    #[test]
    fn presets_are_distinct() {
        for (i, (_, a)) in ALL_PRESETS.iter().enumerate() {
            for (_, b) in &ALL_PRESETS[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn passthrough_has_no_options() {
        assert_eq!(preset_options(Preset::Passthrough), None);
    }

    #[test]
    fn custom_options_have_no_preset() {
        let custom = EncodingOptions {
            key_frame_interval: 2.0,
            ..H264_1080P_60
        };
        assert_eq!(preset_for(&custom), None);
        let custom = EncodingOptions {
            audio_codec: proto::AudioCodec::Aac,
            ..H264_720P_30
        };
        assert_eq!(preset_for(&custom), None);
    }

    #[test]
    fn proto_round_trip() {
        for (_, options) in ALL_PRESETS {
            let wire = proto::EncodingOptions::from(options);
            assert_eq!(wire.audio_codec, proto::AudioCodec::Opus as i32);
            assert_eq!(wire.video_codec, proto::VideoCodec::H264Main as i32);
            assert_eq!(EncodingOptions::try_from(&wire), Ok(options));
        }
    }

    #[test]
    fn unknown_codecs_are_rejected() {
        let wire = proto::EncodingOptions {
            audio_codec: 99,
            ..proto::EncodingOptions::from(H264_720P_30)
        };
        assert_eq!(
            EncodingOptions::try_from(wire),
            Err(ValidationError::UnknownEnumValue {
                field: "audio_codec",
                value: 99
            })
        );
        let wire = proto::EncodingOptions {
            video_codec: -1,
            ..proto::EncodingOptions::from(H264_720P_30)
        };
        assert_eq!(
            EncodingOptions::try_from(wire).unwrap_err().field(),
            "video_codec"
        );
    }
}
