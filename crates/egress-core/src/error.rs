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

    /// A field is set to a value LiveKit's egress worker cannot use, e.g. a web URL that is
    /// not `http(s)`.
    #[error("invalid {field}")]
    Invalid {
        /// The proto field.
        field: &'static str,
    },

    /// More outputs of one kind than one egress can have: LiveKit records at most one
    /// file, one stream (with any number of URLs) and one segmented output.
    #[error("at most one output allowed in {field}")]
    TooMany {
        /// The output list (or, for the unified request, `outputs.<kind>`).
        field: &'static str,
    },

    /// A stream URL the worker refuses (wrong scheme for the protocol, or an RTMP URL
    /// without an app and a stream key).
    #[error("invalid url {url}: {reason}")]
    InvalidUrl {
        /// The field holding the URL.
        field: &'static str,
        /// The URL as given.
        url: String,
        /// Why, in the worker's words.
        reason: String,
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
            | Self::Invalid { field }
            | Self::TooMany { field }
            | Self::InvalidUrl { field, .. }
            | Self::UnknownEnumValue { field, .. } => field,
            Self::NoOutputs | Self::EmptyOutput { .. } => "outputs",
        }
    }

    /// The message LiveKit's egress worker answers for this problem: its
    /// `errors.ErrInvalidInput(field)`, `request has missing or invalid field: <field>`,
    /// with the worker's own name for the field (livekit/egress `pkg/config/pipeline.go`
    /// and `output.go`), or for a stream URL its `errors.ErrInvalidUrl`, `invalid url
    /// <url>: <reason>`.
    ///
    /// The worker has no check of its own for a missing room: without one it cannot make
    /// a room token, so a room-bound request without `room_name` reads `token or api
    /// key/secret`. An empty WebSocket URL fails its scheme check.
    ///
    /// ```
    /// use egress_core::ValidationError;
    ///
    /// assert_eq!(
    ///     ValidationError::NoOutputs.livekit_message(),
    ///     "request has missing or invalid field: output",
    /// );
    /// assert_eq!(
    ///     ValidationError::Missing { field: "url" }.livekit_message(),
    ///     "request has missing or invalid field: web url",
    /// );
    /// assert_eq!(
    ///     ValidationError::TooMany { field: "file_outputs" }.livekit_message(),
    ///     "request has missing or invalid field: multiple file outputs",
    /// );
    /// ```
    pub fn livekit_message(&self) -> String {
        match self {
            Self::InvalidUrl { url, reason, .. } => format!("invalid url {url}: {reason}"),
            Self::Missing {
                field: "websocket_url",
            } => "invalid url : invalid scheme".to_owned(),
            other => format!(
                "request has missing or invalid field: {}",
                other.livekit_field()
            ),
        }
    }

    /// The worker's name for the field (see [`livekit_message`](Self::livekit_message)).
    fn livekit_field(&self) -> String {
        let stream_part = |field: &str| field.rsplit('.').next().unwrap_or(field).to_owned();
        match self {
            Self::Missing { field } | Self::Invalid { field } => match *field {
                "url" | "web.url" => "web url".to_owned(),
                "custom_base_url" | "template.custom_base_url" => "template base url".to_owned(),
                "room_name" => "token or api key/secret".to_owned(),
                f if f.ends_with(".protocol") => match self {
                    Self::Missing { .. } => "stream protocol".to_owned(),
                    _ => "stream output type".to_owned(),
                },
                f if f.ends_with(".urls") => "stream url".to_owned(),
                f => f.to_owned(),
            },
            Self::MissingEither {
                field: "media.video",
                ..
            } => "audio or video".to_owned(),
            Self::MissingEither { field, other } => format!("{field} or {other}"),
            Self::MutuallyExclusive {
                other: "audio_only",
                ..
            } => "audio_only images".to_owned(),
            Self::MutuallyExclusive { field, other } => {
                format!("{} and {}", stream_part(field), stream_part(other))
            }
            Self::NoOutputs => "output".to_owned(),
            Self::EmptyOutput { .. } => "output config".to_owned(),
            Self::TooMany { field } => match stream_part(field).as_str() {
                "file_outputs" | "file" => "multiple file outputs".to_owned(),
                "stream_outputs" | "stream" => "multiple stream outputs".to_owned(),
                _ => "multiple segmented file outputs".to_owned(),
            },
            Self::InvalidUrl { field, .. } | Self::UnknownEnumValue { field, .. } => {
                (*field).to_owned()
            }
        }
    }
}
