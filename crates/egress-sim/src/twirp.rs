//! Twirp errors as the simulator writes them.

use std::collections::BTreeMap;

use serde::Serialize;

/// The HTTP status Twirp (v7 spec) assigns to an error code; `None` for a code that is not
/// one of Twirp's.
///
/// ```
/// assert_eq!(egress_sim::twirp_status("not_found"), Some(404));
/// assert_eq!(egress_sim::twirp_status("failed_precondition"), Some(412));
/// assert_eq!(egress_sim::twirp_status("bogus"), None);
/// ```
pub fn twirp_status(code: &str) -> Option<u16> {
    Some(match code {
        "canceled" => 408,
        "unknown" => 500,
        "invalid_argument" => 400,
        "malformed" => 400,
        "deadline_exceeded" => 408,
        "not_found" => 404,
        "bad_route" => 404,
        "already_exists" => 409,
        "permission_denied" => 403,
        "unauthenticated" => 401,
        "resource_exhausted" => 429,
        "failed_precondition" => 412,
        "aborted" => 409,
        "out_of_range" => 400,
        "unimplemented" => 501,
        "internal" => 500,
        "unavailable" => 503,
        "dataloss" => 500,
        _ => return None,
    })
}

/// A Twirp error answer: `{"code","msg","meta"?}` with the code's HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct TwirpError {
    pub(crate) code: String,
    pub(crate) msg: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) meta: BTreeMap<String, String>,
    /// Overrides the status derived from `code` (for injected faults).
    #[serde(skip)]
    pub(crate) status: Option<u16>,
    /// The error comes from LiveKit's internal RPC layer (an egress worker or the IO
    /// service), not from the Twirp handler itself. The open-source server rebuilds such
    /// errors on the way out, which changes their text; the flavor decides (see `relayed`).
    #[serde(skip)]
    pub(crate) relayed: bool,
}

impl TwirpError {
    pub(crate) fn new(code: &str, msg: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            msg: msg.into(),
            meta: BTreeMap::new(),
            status: None,
            relayed: false,
        }
    }

    /// An error produced behind LiveKit's internal RPC layer rather than by its Twirp
    /// handler, e.g. `no response from servers` or an unknown egress id from the IO service.
    pub(crate) fn relayed(code: &str, msg: impl Into<String>) -> Self {
        Self {
            relayed: true,
            ..Self::new(code, msg)
        }
    }

    pub(crate) fn with_meta(mut self, key: &str, value: impl Into<String>) -> Self {
        self.meta.insert(key.to_owned(), value.into());
        self
    }

    /// HTTP status: the override, else the code's, else 500.
    pub(crate) fn http_status(&self) -> u16 {
        self.status
            .or_else(|| twirp_status(&self.code))
            .unwrap_or(500)
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("string maps serialize")
    }

    // Constructors for the errors LiveKit and Twirp actually send.

    pub(crate) fn bad_route(msg: impl Into<String>, method: &str, path: &str) -> Self {
        Self::new("bad_route", msg).with_meta("twirp_invalid_route", format!("{method} {path}"))
    }

    pub(crate) fn malformed(encoding: egress_core::codec::WireFormat) -> Self {
        Self::new(
            "malformed",
            format!("the {} request could not be decoded", encoding.as_str()),
        )
    }

    pub(crate) fn permission_denied() -> Self {
        Self::new("unauthenticated", "permissions denied")
    }

    /// An invalid request as the egress worker rejects it (`errors.ErrInvalidInput` in
    /// livekit/egress `pkg/errors`): the worker validates, so the error is relayed.
    pub(crate) fn invalid_field(field: &str) -> Self {
        Self::relayed(
            "invalid_argument",
            format!("request has missing or invalid field: {field}"),
        )
    }

    /// livekit's `ErrEgressNotFound`, which every path that looks an egress up returns
    /// (`IOInfoService.GetEgress` / `ListEgress` over the egress store): a psrpc error from
    /// the IO layer, so relayed.
    pub(crate) fn not_found() -> Self {
        Self::relayed("not_found", "egress does not exist")
    }

    /// livekit's `ErrRoomNotFound` from the room store (`LoadRoom`). It is a psrpc error
    /// like the IO layer's, and the server's error conversion (protocol `xtwirp.ToError`)
    /// treats every such error alike, so it is relayed too.
    pub(crate) fn room_not_found() -> Self {
        Self::relayed("not_found", "requested room does not exist")
    }

    /// psrpc's `ErrNoResponse`: no egress worker claimed the request before the internal
    /// RPC gave up.
    pub(crate) fn no_response() -> Self {
        Self::relayed("unavailable", "no response from servers")
    }

    /// psrpc's `ErrRequestCanceled`: the caller's deadline (`X-Twirp-Timeout-Ms`) ended
    /// the internal RPC's retries (psrpc `middleware/retry.go` gives up with this error
    /// once the request's context is done).
    pub(crate) fn request_canceled() -> Self {
        Self::relayed("canceled", "request canceled")
    }

    /// psrpc's `ErrRequestTimedOut`, relayed. The psrpc call behind a handler gives up with
    /// it when the caller's deadline (`X-Twirp-Timeout-Ms`) runs out, and livekit's
    /// `StopEgress` answers it instead of `ErrNoResponse` ("do not map cases where the
    /// context times out to 503").
    pub(crate) fn deadline_exceeded() -> Self {
        Self::relayed("deadline_exceeded", "request timed out")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_leaves_out_empty_meta() {
        let err = TwirpError::not_found();
        assert_eq!(
            String::from_utf8(err.body()).unwrap(),
            r#"{"code":"not_found","msg":"egress does not exist"}"#
        );
        assert_eq!(err.http_status(), 404);
        let err = TwirpError::bad_route("no handler", "GET", "/x");
        assert_eq!(
            String::from_utf8(err.body()).unwrap(),
            r#"{"code":"bad_route","msg":"no handler","meta":{"twirp_invalid_route":"GET /x"}}"#
        );
    }

    #[test]
    fn every_code_has_a_status() {
        let mut err = TwirpError::new("bogus", "x");
        assert_eq!(err.http_status(), 500);
        err.status = Some(418);
        assert_eq!(err.http_status(), 418);
        assert_eq!(TwirpError::deadline_exceeded().http_status(), 408);
        assert_eq!(TwirpError::permission_denied().http_status(), 401);
    }
}
