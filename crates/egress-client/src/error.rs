//! The client's error type.

use egress_twirp::TwirpCode;

/// Everything an [`EgressClient`](crate::EgressClient) call or constructor can fail with.
///
/// The [`Display`](std::fmt::Display) text never contains the API secret or an access token:
/// every wrapped error is secret-free by construction (`egress-auth` and `egress-twirp`
/// guarantee it for theirs), and URLs are redacted of credentials before they are reported.
///
/// # Example
///
/// ```
/// use egress_client::{ClientError, EgressClient};
///
/// let err = EgressClient::with_api_key("ftp://example.com", "APIkey", "secret").unwrap_err();
/// assert!(matches!(err, ClientError::InvalidUrl(_)));
/// assert!(!err.to_string().contains("secret"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request was rejected locally, before anything was sent.
    #[error("invalid request: {0}")]
    Validation(#[from] egress_core::ValidationError),

    /// The call reached (or tried to reach) the server and failed: a Twirp error from LiveKit,
    /// a non-Twirp answer from something in between, or a transport failure or timeout.
    #[error(transparent)]
    Twirp(egress_twirp::Error),

    /// Credentials could not be loaded or a token could not be signed (e.g. `LIVEKIT_API_KEY`
    /// unset for [`EgressClient::new`](crate::EgressClient::new)).
    #[error("credentials: {0}")]
    Auth(#[from] egress_auth::AuthError),

    /// The LiveKit URL is not usable (unsupported scheme, no host, embedded credentials...).
    #[error("invalid LiveKit URL: {0}")]
    InvalidUrl(String),

    /// [`list_all_egress`](crate::EgressClient::list_all_egress) stopped following
    /// `next_page_token` because the server would apparently never stop paginating.
    #[error("ListEgress pagination aborted after {pages} pages: {reason}")]
    Pagination {
        /// Pages fetched before giving up.
        pages: usize,
        /// Why the walk was aborted.
        reason: PaginationAbort,
    },
}

/// Why [`list_all_egress`](crate::EgressClient::list_all_egress) gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum PaginationAbort {
    /// The server returned a `next_page_token` it had already returned (a loop).
    #[error("the server repeated a page token")]
    RepeatedToken,
    /// More than [`MAX_LIST_PAGES`](crate::MAX_LIST_PAGES) pages.
    #[error("too many pages")]
    TooManyPages,
}

impl From<egress_twirp::Error> for ClientError {
    fn from(err: egress_twirp::Error) -> Self {
        match err {
            // A bad base URL is a configuration error of this client, not a failed call.
            egress_twirp::Error::InvalidUrl(msg) => ClientError::InvalidUrl(msg),
            other => ClientError::Twirp(other),
        }
    }
}

impl ClientError {
    /// The Twirp code of a failed call: the server's own code for a Twirp error, the code
    /// classified from the HTTP status for a non-Twirp answer (e.g. a plain-text 401 is
    /// `unauthenticated`, an HTML 502 `unavailable`), and `None` for everything else.
    ///
    /// ```
    /// use egress_client::ClientError;
    /// use egress_twirp::{Error, TwirpCode, TwirpError};
    ///
    /// let err = ClientError::from(Error::Twirp(TwirpError::new(TwirpCode::NotFound, "egress does not exist")));
    /// assert_eq!(err.twirp_code(), Some(TwirpCode::NotFound));
    /// assert_eq!(err.to_string(), "not_found: egress does not exist");
    /// ```
    pub fn twirp_code(&self) -> Option<TwirpCode> {
        match self {
            ClientError::Twirp(err) => err.twirp_code(),
            _ => None,
        }
    }

    /// The underlying Twirp client error, if the failure happened on the wire.
    pub fn as_twirp(&self) -> Option<&egress_twirp::Error> {
        match self {
            ClientError::Twirp(err) => Some(err),
            _ => None,
        }
    }

    /// Whether the call ran out of time: the local deadline passed
    /// ([`egress_twirp::Error::Timeout`]) or the server gave up first (Twirp
    /// `deadline_exceeded`, which LiveKit sends when `X-Twirp-Timeout-Ms` runs out).
    ///
    /// ```
    /// use std::time::Duration;
    /// use egress_client::ClientError;
    ///
    /// let err = ClientError::from(egress_twirp::Error::Timeout(Duration::from_millis(200)));
    /// assert!(err.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        match self {
            ClientError::Twirp(egress_twirp::Error::Timeout(_)) => true,
            ClientError::Twirp(egress_twirp::Error::Twirp(e)) => {
                e.code == TwirpCode::DeadlineExceeded
            }
            _ => false,
        }
    }

    /// Whether the egress (or other entity) does not exist (`not_found`).
    pub fn is_not_found(&self) -> bool {
        self.twirp_code() == Some(TwirpCode::NotFound)
    }
}
