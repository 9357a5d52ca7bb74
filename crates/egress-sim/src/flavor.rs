//! Which LiveKit deployment the simulator imitates: the open-source server or LiveKit Cloud.
//!
//! The two answer the same API with two visible differences:
//!
//! * **Errors from behind the RPC layer.** The open-source server (livekit/livekit
//!   `pkg/service/server.go`) installs livekit/protocol's `xtwirp.DefaultServerOptions`,
//!   whose `ServerPassErrorDetails` interceptor passes every error that is not already a
//!   Twirp error through `xtwirp.ToError`: that wraps it as a Twirp `unknown` error, then
//!   `WithDetailsFrom` rebuilds it with the code taken from its gRPC status but the message
//!   of the wrapper, i.e. `twirp error unknown: <original message>`. The errors it touches
//!   are the psrpc ones: whatever an egress worker or the IO service answered, and psrpc's
//!   own (`no response from servers`, `request timed out`); see livekit/livekit issue #3657.
//!   Errors the Twirp handler builds itself (`permissions denied`, `… cannot be stopped`)
//!   are Twirp errors already and keep their text. LiveKit Cloud's messages are plain.
//! * **ListEgress pages.** The open-source IO service (`IOInfoService.ListEgress`) returns
//!   everything and ignores `page_token`; LiveKit Cloud pages.

use std::str::FromStr;

use crate::twirp::TwirpError;

/// Page size of the `cloud` flavor when none is given. LiveKit does not document Cloud's;
/// this is the simulator's choice.
pub const DEFAULT_CLOUD_PAGE_SIZE: usize = 100;

/// The LiveKit deployment to imitate (`--flavor oss|cloud`); see
/// [`SimulatorBuilder::flavor`](crate::SimulatorBuilder::flavor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// The open-source server (v1.13): relayed errors read `twirp error unknown: …`,
    /// ListEgress ignores `page_token`.
    #[default]
    Oss,
    /// LiveKit Cloud: plain error messages, ListEgress paginated.
    Cloud,
}

impl Flavor {
    /// The flavor's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oss => "oss",
            Self::Cloud => "cloud",
        }
    }

    /// ListEgress page size when the builder sets none: `None` (no pages) for `oss`.
    pub(crate) fn default_page_size(self) -> Option<usize> {
        match self {
            Self::Oss => None,
            Self::Cloud => Some(DEFAULT_CLOUD_PAGE_SIZE),
        }
    }

    /// The error as this deployment writes it. Only [`TwirpError::relayed`] errors change,
    /// and only for `oss` (see the module docs: `xtwirp.ToError` + `WithDetailsFrom`).
    pub(crate) fn shape(self, error: TwirpError) -> TwirpError {
        if !error.relayed || self == Self::Cloud {
            return error;
        }
        TwirpError {
            code: code_through_grpc(&error.code).to_owned(),
            // `twirp.NewError(twirp.Unknown, msg).Error()`.
            msg: format!("twirp error unknown: {}", error.msg),
            ..error
        }
    }
}

/// The Twirp code a psrpc error ends with after `psrpc.ErrorCode.ToGRPC` and
/// `xtwirp.ErrorCodeFromGRPC`: the same name for every code both share, `unknown` for the
/// Twirp-only ones (`bad_route`, `malformed`), which psrpc cannot carry.
fn code_through_grpc(code: &str) -> &str {
    match code {
        "canceled"
        | "unknown"
        | "invalid_argument"
        | "deadline_exceeded"
        | "not_found"
        | "already_exists"
        | "permission_denied"
        | "resource_exhausted"
        | "failed_precondition"
        | "aborted"
        | "out_of_range"
        | "unimplemented"
        | "internal"
        | "unavailable"
        | "dataloss"
        | "unauthenticated" => code,
        _ => "unknown",
    }
}

egress_core::display_as_str!(Flavor);

/// An unknown flavor name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown flavor {0:?} (expected oss or cloud)")]
pub struct UnknownFlavor(pub String);

impl FromStr for Flavor {
    type Err = UnknownFlavor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "oss" => Ok(Self::Oss),
            "cloud" => Ok(Self::Cloud),
            _ => Err(UnknownFlavor(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oss_rewrites_relayed_errors_only() {
        let relayed = TwirpError::relayed("not_found", "egress does not exist");
        let shaped = Flavor::Oss.shape(relayed.clone());
        assert_eq!(shaped.code, "not_found");
        assert_eq!(shaped.msg, "twirp error unknown: egress does not exist");
        assert_eq!(shaped.http_status(), 404);
        assert_eq!(Flavor::Cloud.shape(relayed.clone()), relayed);

        let native = TwirpError::permission_denied();
        assert_eq!(Flavor::Oss.shape(native.clone()), native);

        let odd = Flavor::Oss.shape(TwirpError::relayed("malformed", "x"));
        assert_eq!(
            (odd.code.as_str(), odd.msg.as_str()),
            ("unknown", "twirp error unknown: x")
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!("oss".parse(), Ok(Flavor::Oss));
        assert_eq!("Cloud".parse(), Ok(Flavor::Cloud));
        assert!("enterprise".parse::<Flavor>().is_err());
        assert_eq!(Flavor::default().to_string(), "oss");
        assert_eq!(
            Flavor::Cloud.default_page_size(),
            Some(DEFAULT_CLOUD_PAGE_SIZE)
        );
        assert_eq!(Flavor::Oss.default_page_size(), None);
    }
}
