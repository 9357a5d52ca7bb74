//! Stream and web URLs as LiveKit's egress worker reads them.
//!
//! The worker parses URLs with Go's `net/url` and accepts a scheme by name
//! (livekit/egress `pkg/types` `StreamOutputTypes`, `pkg/config/urls.go`
//! `StreamConfig.ValidateUrl`, `isHttp` in `pkg/config/pipeline.go`); RTMP URLs must also
//! have the shape `rtmp(s)://{host}(/{path})/{app}/{stream_key}( live=1)`, the pattern the
//! worker and livekit/protocol's `utils.RedactStreamKey` both use to find the stream key.
//! These helpers give the validation rules and the simulator's redaction one reading of
//! those URLs.

/// What a stream URL's scheme streams to (`types.OutputType` for the schemes in
/// `StreamOutputTypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `rtmp`, `rtmps`, and the `mux` / `twitch` shorthands.
    Rtmp,
    /// `srt`.
    Srt,
    /// `ws` / `wss`: raw audio over a WebSocket.
    WebSocket,
}

impl StreamKind {
    /// The kind a scheme (already lower-cased) names, if any.
    ///
    /// ```
    /// use egress_core::stream_url::StreamKind;
    ///
    /// assert_eq!(StreamKind::of_scheme("rtmps"), Some(StreamKind::Rtmp));
    /// assert_eq!(StreamKind::of_scheme("https"), None);
    /// ```
    pub fn of_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "rtmp" | "rtmps" | "mux" | "twitch" => Some(Self::Rtmp),
            "srt" => Some(Self::Srt),
            "ws" | "wss" => Some(Self::WebSocket),
            _ => None,
        }
    }
}

/// The scheme Go's `url.Parse` finds (`getScheme`), lower-cased; `""` when the text has
/// none (no `:`, or a character other than a letter, digit, `+`, `-` or `.` before it, or
/// a first character that is not a letter). `Err` with Go's message for a leading `:`.
///
/// ```
/// use egress_core::stream_url::go_url_scheme;
///
/// assert_eq!(go_url_scheme("RTMP://host/app/key").unwrap(), "rtmp");
/// assert_eq!(go_url_scheme("example.com/x").unwrap(), "");
/// assert_eq!(go_url_scheme(":x").unwrap_err(), "parse \":x\": missing protocol scheme");
/// ```
pub fn go_url_scheme(url: &str) -> Result<String, String> {
    for (i, c) in url.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err(format!("parse {url:?}: missing protocol scheme")),
            ':' => return Ok(url[..i].to_ascii_lowercase()),
            _ => return Ok(String::new()),
        }
    }
    Ok(String::new())
}

/// Whether the worker takes `url` as a web page to load: Go parses it and the scheme is
/// `http` or `https` (`isHttp`).
///
/// ```
/// use egress_core::stream_url::is_http_url;
///
/// assert!(is_http_url("HTTPS://example.com/page"));
/// assert!(!is_http_url("example.com"));
/// assert!(!is_http_url(""));
/// ```
pub fn is_http_url(url: &str) -> bool {
    matches!(go_url_scheme(url).as_deref(), Ok("http" | "https"))
}

/// An RTMP URL split where `^(rtmps?://)(.*/)(.*/)(\S*)( live=1)?$` splits it: everything
/// up to the last `/`, the stream key after it, and a trailing ` live=1`. `None` when the
/// URL does not have that shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtmpParts<'a> {
    /// Scheme, host, path and app, up to and including the `/` before the key.
    pub head: &'a str,
    /// The stream key (no whitespace; may be empty).
    pub key: &'a str,
    /// `" live=1"` or `""`.
    pub live: &'a str,
}

/// Splits an RTMP URL the way LiveKit's pattern does (see [`RtmpParts`]).
///
/// ```
/// use egress_core::stream_url::split_rtmp;
///
/// let parts = split_rtmp("rtmp://a.rtmp.youtube.com/live2/abcd-efgh").unwrap();
/// assert_eq!((parts.head, parts.key), ("rtmp://a.rtmp.youtube.com/live2/", "abcd-efgh"));
/// assert!(split_rtmp("rtmp://host/only-app").is_none());
/// ```
pub fn split_rtmp(url: &str) -> Option<RtmpParts<'_>> {
    let rest = url
        .strip_prefix("rtmp://")
        .or_else(|| url.strip_prefix("rtmps://"))?;
    // `.` matches anything but a newline in Go's regexp.
    if rest.contains('\n') {
        return None;
    }
    let (body, live) = match url.strip_suffix(" live=1") {
        Some(body) => (body, " live=1"),
        None => (url, ""),
    };
    let last = body.rfind('/')?;
    let (head, key) = (&body[..=last], &body[last + 1..]);
    let scheme_len = url.len() - rest.len();
    // `(.*/)(.*/)`: two slashes after the scheme, the last one ending the app.
    let between = head.get(scheme_len..head.len() - 1)?;
    if !between.contains('/') || key.contains(char::is_whitespace) {
        return None;
    }
    Some(RtmpParts { head, key, live })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_shapes() {
        let p = split_rtmp("rtmps://h:443/path/app/key live=1").unwrap();
        assert_eq!(
            (p.head, p.key, p.live),
            ("rtmps://h:443/path/app/", "key", " live=1")
        );
        let p = split_rtmp("rtmp://h/app/").unwrap();
        assert_eq!(p.key, "");
        assert!(split_rtmp("rtmp://h/app/a b").is_none());
        assert!(split_rtmp("rtmp://a").is_none());
        assert!(split_rtmp("rtmp://a.example.com/live").is_none());
        assert!(split_rtmp("srt://h/a/b").is_none());
        assert!(split_rtmp("rtmp:///x").is_none());
        assert!(split_rtmp("rtmp:////").is_some());
    }

    #[test]
    fn schemes_like_go() {
        assert_eq!(go_url_scheme("wss://x").unwrap(), "wss");
        assert_eq!(go_url_scheme("1rtmp://x").unwrap(), "");
        assert_eq!(go_url_scheme("").unwrap(), "");
        assert!(go_url_scheme("://x").is_err());
    }
}
