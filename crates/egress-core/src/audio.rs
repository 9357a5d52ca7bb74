//! How a room composite's audio is laid out across channels.

use crate::{ValidationError, proto};

/// Channel layout for room composite audio.
///
/// LiveKit only applies this to audio-only room composites; with video the
/// room is always mixed together.
///
/// # Example
///
/// ```
/// use egress_core::{AudioMixing, proto};
///
/// let mixing = AudioMixing::DualChannelAgent;
/// assert_eq!(proto::AudioMixing::from(mixing), proto::AudioMixing::DualChannelAgent);
/// assert_eq!(AudioMixing::try_from(2).unwrap(), AudioMixing::DualChannelAlternate);
/// assert!(AudioMixing::try_from(7).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AudioMixing {
    /// Everyone is mixed into both channels.
    #[default]
    DefaultMixing,
    /// Agent audio goes to the left channel, everyone else to the right.
    DualChannelAgent,
    /// Each newly subscribed audio track alternates between left and right.
    DualChannelAlternate,
}

impl AudioMixing {
    /// The raw proto enum value, as stored in
    /// `RoomCompositeEgressRequest::audio_mixing`.
    ///
    /// ```
    /// # use egress_core::AudioMixing;
    /// assert_eq!(AudioMixing::DefaultMixing.as_i32(), 0);
    /// ```
    pub fn as_i32(self) -> i32 {
        proto::AudioMixing::from(self) as i32
    }
}

impl From<AudioMixing> for proto::AudioMixing {
    fn from(value: AudioMixing) -> Self {
        match value {
            AudioMixing::DefaultMixing => Self::DefaultMixing,
            AudioMixing::DualChannelAgent => Self::DualChannelAgent,
            AudioMixing::DualChannelAlternate => Self::DualChannelAlternate,
        }
    }
}

impl From<proto::AudioMixing> for AudioMixing {
    fn from(value: proto::AudioMixing) -> Self {
        match value {
            proto::AudioMixing::DefaultMixing => Self::DefaultMixing,
            proto::AudioMixing::DualChannelAgent => Self::DualChannelAgent,
            proto::AudioMixing::DualChannelAlternate => Self::DualChannelAlternate,
        }
    }
}

/// Decodes the raw `audio_mixing` field; values this protocol version does
/// not define are reported rather than silently mapped to the default.
impl TryFrom<i32> for AudioMixing {
    type Error = ValidationError;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        proto::AudioMixing::try_from(value)
            .map(Self::from)
            .map_err(|_| ValidationError::UnknownEnumValue {
                field: "audio_mixing",
                value,
            })
    }
}
