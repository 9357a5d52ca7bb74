//! The LiveKit server URL and the Twirp method URLs derived from it.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::error::Error;

/// A normalised LiveKit server URL, the base of every Twirp method URL.
///
/// Normalisation follows LiveKit's SDKs: `ws://` becomes `http://` and `wss://` becomes
/// `https://`; `http://` and `https://` are kept; any other scheme is rejected. Surrounding
/// whitespace and trailing slashes are removed. A path prefix is kept, so a LiveKit server behind
/// a path-routing proxy works: `https://host/lk/` serves `https://host/lk/twirp/livekit.Egress/M`.
/// URLs with credentials (`user:pass@`), a query or a fragment are rejected: the first would leak
/// secrets into logs, the others cannot be meant.
///
/// ```
/// use egress_twirp::BaseUrl;
///
/// let base = BaseUrl::parse("wss://my-project.livekit.cloud/").unwrap();
/// assert_eq!(base.as_str(), "https://my-project.livekit.cloud");
///
/// let proxied = BaseUrl::parse("https://gateway.example.com/lk/").unwrap();
/// assert_eq!(
///     proxied.method_url("livekit.Egress", "StartRoomCompositeEgress").unwrap().as_str(),
///     "https://gateway.example.com/lk/twirp/livekit.Egress/StartRoomCompositeEgress"
/// );
///
/// assert!(BaseUrl::parse("ftp://example.com").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    /// The normalised URL without a trailing slash, e.g. `https://host/lk`.
    base: String,
}

impl BaseUrl {
    /// Parses and normalises a LiveKit URL; [`Error::InvalidUrl`] if it is not usable.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let input = input.trim();
        if input.is_empty() {
            return Err(Error::InvalidUrl("the URL is empty".into()));
        }
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(Error::InvalidUrl(format!(
                "{:?} has no scheme (expected http://, https://, ws:// or wss://)",
                redact(input)
            )));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            other => {
                // `user:secret@host://x` splits into a "scheme" holding the credentials.
                return Err(Error::InvalidUrl(format!(
                    "unsupported scheme {:?} (expected http, https, ws or wss)",
                    redact(other)
                )));
            }
        };
        let mut url = Url::parse(&format!("{scheme}://{rest}"))
            .map_err(|e| Error::InvalidUrl(format!("{:?}: {e}", redact(input))))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::InvalidUrl(format!(
                "{:?} has no host",
                redact(input)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::InvalidUrl(
                "the URL must not contain credentials (user:password@)".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::InvalidUrl(format!(
                "{:?} must not have a query or fragment",
                redact(input)
            )));
        }
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        let base = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self { base })
    }

    /// The normalised URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// The URL of a Twirp method: `{base}/twirp/{service}/{method}`.
    ///
    /// `service` may contain ASCII letters, digits, `_` and `.`; `method` ASCII letters, digits
    /// and `_`. Anything else is [`Error::InvalidUrl`] (so a method name can never change the
    /// path structure).
    pub fn method_url(&self, service: &str, method: &str) -> Result<Url, Error> {
        let valid = |s: &str, dot: bool| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dot && b == b'.'))
        };
        if !valid(service, true) {
            return Err(Error::InvalidUrl(format!(
                "invalid Twirp service name {:?}",
                redact(service)
            )));
        }
        if !valid(method, false) {
            return Err(Error::InvalidUrl(format!(
                "invalid Twirp method name {:?}",
                redact(method)
            )));
        }
        let full = format!("{}/twirp/{service}/{method}", self.base);
        Url::parse(&full).map_err(|e| Error::InvalidUrl(format!("{full:?}: {e}")))
    }

    /// The URL of one of the server's own routes, `{base}{path}` (`path` starts with `/` and
    /// holds only ASCII letters, digits, `/`, `_` and `-`).
    ///
    /// ```
    /// use egress_twirp::BaseUrl;
    /// let base = BaseUrl::parse("wss://my.livekit.cloud/lk").unwrap();
    /// assert_eq!(base.path_url("/settings/regions").unwrap().as_str(), "https://my.livekit.cloud/lk/settings/regions");
    /// assert!(base.path_url("/../x").is_err());
    /// ```
    pub fn path_url(&self, path: &str) -> Result<Url, Error> {
        let fine = path.starts_with('/')
            && !path.contains("//")
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b));
        if !fine {
            return Err(Error::InvalidUrl(format!(
                "invalid path {:?}",
                redact(path)
            )));
        }
        let full = format!("{}{path}", self.base);
        Url::parse(&full).map_err(|e| Error::InvalidUrl(format!("{full:?}: {e}")))
    }
}

/// Removes anything that looks like credentials from a URL-ish string before it goes into an
/// error message, and bounds its length.
fn redact(input: &str) -> String {
    let mut s = match (input.find("://"), input.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &input[..scheme_end], &input[at + 1..])
        }
        (None, Some(at)) => format!("***@{}", &input[at + 1..]),
        _ => input.to_owned(),
    };
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

impl FromStr for BaseUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BaseUrl").field(&self.base).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        BaseUrl::parse(s).unwrap().as_str().to_owned()
    }

    #[test]
    fn normalises_schemes() {
        assert_eq!(norm("ws://localhost:7880"), "http://localhost:7880");
        assert_eq!(norm("wss://x.livekit.cloud"), "https://x.livekit.cloud");
        assert_eq!(norm("WSS://X.LiveKit.Cloud"), "https://x.livekit.cloud");
        assert_eq!(norm("http://127.0.0.1:7880"), "http://127.0.0.1:7880");
        assert_eq!(norm("https://x.livekit.cloud"), "https://x.livekit.cloud");
        assert_eq!(
            norm("  https://x.livekit.cloud \n"),
            "https://x.livekit.cloud"
        );
        // Default ports are dropped, others kept.
        assert_eq!(norm("https://x:443"), "https://x");
        assert_eq!(norm("wss://x:7443"), "https://x:7443");
        assert_eq!(norm("http://[::1]:7880"), "http://[::1]:7880");
    }

    #[test]
    fn trims_trailing_slashes_and_keeps_prefix() {
        assert_eq!(norm("https://x/"), "https://x");
        assert_eq!(norm("https://x//"), "https://x");
        assert_eq!(norm("https://x/lk"), "https://x/lk");
        assert_eq!(norm("https://x/lk/"), "https://x/lk");
        assert_eq!(norm("wss://x/a/b///"), "https://x/a/b");
        let base = BaseUrl::parse("https://host/lk/").unwrap();
        assert_eq!(
            base.method_url("livekit.Egress", "ListEgress")
                .unwrap()
                .as_str(),
            "https://host/lk/twirp/livekit.Egress/ListEgress"
        );
        let base = BaseUrl::parse("ws://localhost:7880/").unwrap();
        assert_eq!(
            base.method_url("livekit.Egress", "StopEgress")
                .unwrap()
                .as_str(),
            "http://localhost:7880/twirp/livekit.Egress/StopEgress"
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "   ",
            "ftp://x",
            "file:///etc/passwd",
            "unix:///tmp/sock",
            "localhost:7880",
            "x.livekit.cloud",
            "https://",
            "https://x?q=1",
            "https://x/#frag",
            "https://user:secret@x",
            "https://user@x",
            "https://:secret@x",
        ] {
            let err = BaseUrl::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl(_)), "{bad:?}: {err:?}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn rejects_bad_method_names() {
        let base = BaseUrl::parse("http://x").unwrap();
        for (service, method) in [
            ("livekit.Egress", ""),
            ("livekit.Egress", "../Admin"),
            ("livekit.Egress", "List/Egress"),
            ("livekit.Egress", "List?x=1"),
            ("livekit.Egress", "List Egress"),
            ("", "ListEgress"),
            ("livekit/Egress", "ListEgress"),
        ] {
            assert!(
                matches!(base.method_url(service, method), Err(Error::InvalidUrl(_))),
                "{service}/{method}"
            );
        }
    }

    #[test]
    fn redact_hides_credentials() {
        assert_eq!(redact("https://user:pw@host/x"), "https://***@host/x");
        assert_eq!(redact("wss://key:secret@a@host"), "wss://***@host");
        assert_eq!(redact("user:pw@host"), "***@host");
        assert_eq!(redact("https://host/path"), "https://host/path");
        assert_eq!(redact("host"), "host");
        assert_eq!(redact(""), "");
        // An `@` before the scheme separator is not a userinfo of this URL.
        assert_eq!(redact("a@b://c"), "a@b://c");
    }

    #[test]
    fn redact_bounds_the_length_on_a_char_boundary() {
        let exact = "h".repeat(200);
        assert_eq!(redact(&exact), exact);
        let over = "h".repeat(201);
        assert_eq!(redact(&over), format!("{}...", "h".repeat(200)));
        // 200 is inside the 67th `€` (3 bytes each): the cut moves back to 198.
        let euros = "€".repeat(100);
        assert_eq!(redact(&euros), format!("{}...", "€".repeat(66)));
        let e = "é".repeat(150);
        assert_eq!(redact(&e), format!("{}...", "é".repeat(100)));
        // Credentials are removed before the cut.
        let long = format!("https://user:secret@{}", "h".repeat(300));
        let r = redact(&long);
        assert!(!r.contains("secret"));
        assert_eq!(r, format!("https://***@{}...", "h".repeat(200 - 12)));
    }

    #[test]
    fn error_messages_carry_the_redacted_input() {
        let cases = [
            ("user:secret@host", "\"***@host\" has no scheme"),
            ("user:secret@host://x", "unsupported scheme \"***@host\""),
            ("https://user:secret@[::1", "\"https://***@[::1\": "),
            (
                "https://x?token=1",
                "\"https://x?token=1\" must not have a query or fragment",
            ),
        ];
        for (input, expected) in cases {
            let err = BaseUrl::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
        let base = BaseUrl::parse("http://x").unwrap();
        let err = base.method_url("a:b@c", "M").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid upstream URL: invalid Twirp service name \"***@c\""
        );
        let err = base.method_url("svc", "u:p@m").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid upstream URL: invalid Twirp method name \"***@m\""
        );
    }

    #[test]
    fn from_str_and_display() {
        let base: BaseUrl = "wss://x/".parse().unwrap();
        assert_eq!(base.to_string(), "https://x");
        assert_eq!(format!("{base:?}"), "BaseUrl(\"https://x\")");
    }
}
