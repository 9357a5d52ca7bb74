//! The Twirp door's side of the one error table: what a [`CallError`] becomes for a caller
//! that speaks LiveKit's Twirp API, in the shapes LiveKit answers with.
//!
//! | failure | answer |
//! |---|---|
//! | LiveKit's own Twirp error | passed through unchanged: code, `msg`, `meta`, HTTP status |
//! | bad or missing token ([`AuthFailure`], but a missing grant) | HTTP 401, plain text, like LiveKit's auth middleware |
//! | a caller token without the `roomRecord` grant | `unauthenticated` `permissions denied` (LiveKit's words) |
//! | request body over `--max-message-size` | HTTP 413, plain text, as LiveKit answers an oversized body |
//! | anything else | a Twirp error with [`CallError::twirp_code`] (the one table) and the error's message |

use egress_twirp::{Error as UpstreamError, TwirpCode, TwirpError};
use http::StatusCode;

use super::{AuthFailure, CallError};

/// How the Twirp door answers a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwirpAnswer {
    /// A plain-text answer with this status (LiveKit answers so before Twirp routing).
    Plain { status: StatusCode, text: String },
    /// A Twirp JSON error body, with its HTTP status.
    Twirp(TwirpError),
}

impl CallError {
    /// The Twirp door's answer to this failure (see the [module](self)).
    pub fn to_twirp(&self) -> TwirpAnswer {
        match self {
            // LiveKit's words reach the SDK as LiveKit sent them (also when it answered the
            // lookup of an egress's room for the policy).
            CallError::Upstream(UpstreamError::Twirp(error))
            | CallError::RoomLookup(UpstreamError::Twirp(error)) => {
                TwirpAnswer::Twirp(error.clone())
            }
            CallError::Upstream(error) => TwirpAnswer::Twirp(TwirpError {
                meta: error.twirp_meta(),
                ..TwirpError::new(upstream_code(error), error.to_string())
            }),
            CallError::Unauthenticated(AuthFailure::MissingGrant) => TwirpAnswer::Twirp(
                TwirpError::new(TwirpCode::Unauthenticated, self.to_string()),
            ),
            CallError::Unauthenticated(failure) => TwirpAnswer::Plain {
                status: StatusCode::UNAUTHORIZED,
                text: failure.to_string(),
            },
            CallError::BodyTooLarge { .. } => TwirpAnswer::Plain {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                text: self.to_string(),
            },
            CallError::Denied(denial) => TwirpAnswer::Twirp(
                TwirpError::new(TwirpCode::PermissionDenied, self.to_string())
                    .with_meta("rule", denial.rule_path()),
            ),
            other => TwirpAnswer::Twirp(TwirpError::new(other.twirp_code(), other.to_string())),
        }
    }
}

/// The Twirp code of an upstream failure: LiveKit's own (or the one its HTTP status
/// classifies to), else the code of the way to it failing.
pub(super) fn upstream_code(error: &UpstreamError) -> TwirpCode {
    error.twirp_code().unwrap_or(match error {
        UpstreamError::Timeout(_) => TwirpCode::DeadlineExceeded,
        UpstreamError::TooLarge { .. } => TwirpCode::ResourceExhausted,
        UpstreamError::Decode(_) | UpstreamError::Auth(_) | UpstreamError::InvalidUrl(_) => {
            TwirpCode::Internal
        }
        UpstreamError::Canceled => TwirpCode::Canceled,
        _ => TwirpCode::Unavailable,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use egress_core::Rpc;

    use super::*;
    use crate::error::Shed;

    fn twirp(answer: TwirpAnswer) -> TwirpError {
        match answer {
            TwirpAnswer::Twirp(error) => error,
            plain => panic!("not a Twirp error: {plain:?}"),
        }
    }

    #[test]
    fn every_gateway_failure_has_its_twirp_code() {
        let rpc = Rpc::StopEgress;
        let cases = [
            (
                CallError::UnknownMethod {
                    path: "/twirp/livekit.Egress/Nope".into(),
                },
                TwirpCode::BadRoute,
            ),
            (
                CallError::MethodNotAllowed {
                    method: "GET".into(),
                },
                TwirpCode::BadRoute,
            ),
            (
                CallError::TwirpContentType {
                    content_type: "text/plain".into(),
                },
                TwirpCode::BadRoute,
            ),
            (
                CallError::MalformedTimeout {
                    header: "x-twirp-timeout-ms",
                },
                TwirpCode::InvalidArgument,
            ),
            (
                CallError::MalformedJson {
                    rpc,
                    reason: "eof".into(),
                },
                TwirpCode::Malformed,
            ),
            (
                CallError::RequestBody {
                    reason: "reset".into(),
                },
                TwirpCode::Malformed,
            ),
            (Shed::Global { max: 1 }.into(), TwirpCode::ResourceExhausted),
            (
                Shed::Connection { max: 1 }.into(),
                TwirpCode::ResourceExhausted,
            ),
            (CallError::EgressNotFound, TwirpCode::NotFound),
            (
                CallError::DeadlineExceeded {
                    rpc,
                    budget: Duration::from_secs(1),
                },
                TwirpCode::DeadlineExceeded,
            ),
            (CallError::ShuttingDown, TwirpCode::Unavailable),
            (
                CallError::Upstream(UpstreamError::Connect("refused".into())),
                TwirpCode::Unavailable,
            ),
            (
                CallError::Upstream(UpstreamError::Timeout(Duration::ZERO)),
                TwirpCode::DeadlineExceeded,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.twirp_code(), code, "{error:?}");
            let answer = twirp(error.to_twirp());
            assert_eq!(answer.code, code, "{error:?}");
            assert_eq!(answer.http_status, code.http_status().as_u16());
            if !matches!(error, CallError::Upstream(_)) {
                assert_eq!(answer.msg, error.to_string());
            }
        }
    }

    #[test]
    fn livekit_errors_pass_through_unchanged() {
        let livekit = TwirpError::new(
            TwirpCode::FailedPrecondition,
            "egress with status EGRESS_COMPLETE cannot be stopped",
        )
        .with_meta("egress_id", "EG_1");
        let answer = twirp(CallError::Upstream(UpstreamError::Twirp(livekit.clone())).to_twirp());
        assert_eq!(answer, livekit);
        let body: serde_json::Value = serde_json::from_slice(&answer.to_json()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "code": "failed_precondition",
                "msg": "egress with status EGRESS_COMPLETE cannot be stopped",
                "meta": {"egress_id": "EG_1"},
            })
        );
        // An intermediary's answer keeps the meta that explains it.
        let intermediary = UpstreamError::Intermediary {
            status: 502,
            content_type: Some("text/html".into()),
            body_excerpt: "bad gateway".into(),
            location: None,
        };
        let answer = twirp(CallError::Upstream(intermediary).to_twirp());
        assert_eq!(answer.code, TwirpCode::Unavailable);
        assert_eq!(answer.meta["http_error_from_intermediary"], "true");
        assert_eq!(answer.meta["status_code"], "502");
    }

    #[test]
    fn bad_tokens_are_plain_401s_like_livekits_middleware() {
        for failure in [
            AuthFailure::MissingToken,
            AuthFailure::MalformedToken,
            AuthFailure::UnknownToken,
            AuthFailure::CallerTokenMalformed,
            AuthFailure::CallerTokenSignature,
            AuthFailure::CallerTokenExpired,
        ] {
            assert_eq!(
                CallError::from(failure).to_twirp(),
                TwirpAnswer::Plain {
                    status: StatusCode::UNAUTHORIZED,
                    text: failure.to_string(),
                }
            );
        }
        let answer = twirp(CallError::from(AuthFailure::MissingGrant).to_twirp());
        assert_eq!(
            (answer.code, answer.msg.as_str()),
            (TwirpCode::Unauthenticated, "permissions denied")
        );
        assert_eq!(
            CallError::BodyTooLarge { max: 10 }.to_twirp(),
            TwirpAnswer::Plain {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                text: "request body larger than the gateway's limit of 10 bytes \
                       (--max-message-size)"
                    .into(),
            }
        );
    }
}
