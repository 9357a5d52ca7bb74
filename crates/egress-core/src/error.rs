//! The single error type for everything that can be wrong with a request
//! before it is sent.

/// Why a request was rejected before it reached LiveKit.
///
/// The [`Display`](std::fmt::Display) text is meant for whoever built the
/// request (a client's error, the simulator's `invalid_argument` message), and
/// [`field`](ValidationError::field) names the offending proto field. The
/// gateway itself never produces one: it forwards requests unvalidated and
/// LiveKit judges them. Field names are the proto field names; fields inside the
/// unified request's `source` oneof are prefixed with the oneof member
/// (`web.url`, `template.audio_only`, `media.video_track_id`, ...).
///
/// # Example
///
/// ```
/// use egress_core::ValidationError;
///
/// let err = ValidationError::Missing { field: "room_name" };
/// assert_eq!(err.to_string(), "missing room_name");
/// assert_eq!(err.field(), "room_name");
///
/// assert_eq!(ValidationError::NoOutputs.to_string(), "request has no outputs");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A required field is absent or empty.
    #[error("missing {field}")]
    Missing {
        /// The proto field that must be set.
        field: &'static str,
    },

    /// At least one of two fields must be set, and neither is.
    #[error("missing {field} or {other}")]
    MissingEither {
        /// The first of the two acceptable fields (reported by `field()`).
        field: &'static str,
        /// The second acceptable field.
        other: &'static str,
    },

    /// The request carries no output at all (neither the repeated output
    /// lists nor the deprecated single `output`).
    #[error("request has no outputs")]
    NoOutputs,

    /// An entry of the unified request's `outputs` list has no `config`, so
    /// it does not say what to produce.
    #[error("outputs[{index}] has no output config")]
    EmptyOutput {
        /// Position of the empty entry in `outputs`.
        index: usize,
    },

    /// Two settings that cannot be combined were both given.
    #[error("{field} and {other} are mutually exclusive")]
    MutuallyExclusive {
        /// The first setting (reported by `field()`).
        field: &'static str,
        /// The setting it conflicts with.
        other: &'static str,
    },

    /// An enum-typed field holds a number the pinned protocol does not define.
    #[error("unknown {field} value {value}")]
    UnknownEnumValue {
        /// The enum-typed proto field.
        field: &'static str,
        /// The raw value that was found.
        value: i32,
    },
}

impl ValidationError {
    /// The proto field the error is about, for structured error details.
    ///
    /// For errors involving two fields this is the first one; for
    /// [`NoOutputs`](Self::NoOutputs) and [`EmptyOutput`](Self::EmptyOutput)
    /// it is `"outputs"`.
    ///
    /// ```
    /// use egress_core::ValidationError;
    ///
    /// let err = ValidationError::MutuallyExclusive {
    ///     field: "audio_only",
    ///     other: "video_only",
    /// };
    /// assert_eq!(err.field(), "audio_only");
    /// assert_eq!(err.to_string(), "audio_only and video_only are mutually exclusive");
    /// ```
    pub fn field(&self) -> &'static str {
        match self {
            Self::Missing { field }
            | Self::MissingEither { field, .. }
            | Self::MutuallyExclusive { field, .. }
            | Self::UnknownEnumValue { field, .. } => field,
            Self::NoOutputs | Self::EmptyOutput { .. } => "outputs",
        }
    }
}
