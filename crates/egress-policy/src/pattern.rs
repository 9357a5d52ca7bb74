//! Globs for rooms and buckets, URL patterns, and URL redaction.
//!
//! URLs are never matched as one string: `rtmp://*.example.com/*` matched as
//! a whole would accept `rtmp://evil.net/x.example.com/live` (the first `*`
//! eating `evil.net/x`). Instead both the pattern and the URL are split into
//! scheme, host, port and the rest (path, query, fragment), and each part is
//! matched on its own, so a `*` in the host can never reach into the path.

use std::borrow::Cow;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// Compiles one glob. `*` matches any run of characters, `/` included.
///
/// Runs of stars are collapsed first: globset gives `**` path semantics
/// (`**/x` also matches `x`, `**/` matches the empty string) that make no
/// sense for room names or URL parts, and a single `*` already crosses `/`.
pub(crate) fn glob(pattern: &str, case_insensitive: bool) -> Result<Glob, String> {
    GlobBuilder::new(&collapse_stars(pattern))
        .literal_separator(false)
        .case_insensitive(case_insensitive)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map_err(|e| format!("invalid glob {pattern:?}: {}", e.kind()))
}

/// Replaces every run of unescaped `*` outside a character class by one `*`.
fn collapse_stars(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    let mut previous_star = false;
    while let Some(c) = chars.next() {
        let star = c == '*';
        match c {
            '*' if previous_star => {}
            '\\' => {
                out.push(c);
                out.extend(chars.next());
            }
            '[' => {
                // Copy the class verbatim; a `]` right after `[` or `[!`
                // is a literal member, not the end.
                out.push(c);
                if let Some(&negation @ ('!' | '^')) = chars.peek() {
                    out.push(negation);
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push(']');
                    chars.next();
                }
                for member in chars.by_ref() {
                    out.push(member);
                    if member == ']' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
        previous_star = star;
    }
    out
}

/// A set of case-sensitive globs (rooms, buckets).
#[derive(Debug, Clone)]
pub(crate) struct GlobList {
    patterns: Vec<String>,
    set: GlobSet,
}

impl GlobList {
    /// Compiles `patterns`; the error names the index of the bad one.
    pub(crate) fn new(patterns: &[String]) -> Result<Self, (usize, String)> {
        let mut builder = GlobSetBuilder::new();
        for (i, p) in patterns.iter().enumerate() {
            builder.add(glob(p, false).map_err(|e| (i, e))?);
        }
        let set = builder
            .build()
            .map_err(|e| (0, format!("invalid glob set: {e}")))?;
        Ok(Self {
            patterns: patterns.to_vec(),
            set,
        })
    }

    pub(crate) fn is_match(&self, value: &str) -> bool {
        self.set.is_match(value)
    }

    /// Whether some pattern is only stars, i.e. matches everything.
    pub(crate) fn matches_everything(&self) -> bool {
        self.patterns
            .iter()
            .any(|p| !p.is_empty() && p.chars().all(|c| c == '*'))
    }
}

/// The port part of a URL pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// No port in the pattern: the URL must not name one either (or name
    /// the scheme's default port).
    Default,
    /// `:*`: any port, or none.
    Any,
    /// `:1935`: exactly this port.
    Exact(u16),
}

/// One compiled URL allow-list entry, e.g. `rtmps://*.live.example.com/*`.
#[derive(Debug, Clone)]
pub(crate) struct UrlPattern {
    scheme: GlobMatcher,
    host: GlobMatcher,
    port: PortPattern,
    /// `None`: the pattern stops after the host, so any path is allowed.
    rest: Option<GlobMatcher>,
}

const HOST_PATTERN_CHARS: &str = "-._*?{},[]!";

impl UrlPattern {
    /// Parses a pattern from the policy file.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let shape = || format!("URL pattern {pattern:?} must look like scheme://host/path");
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "URL pattern {pattern:?} must not contain whitespace"
            ));
        }
        let (scheme, after) = pattern.split_once("://").ok_or_else(shape)?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.*?{},[]".contains(c))
        {
            return Err(shape());
        }
        let (authority, rest) = match after.find('/') {
            Some(i) => (&after[..i], Some(&after[i..])),
            None => (after, None),
        };
        if authority.contains('@') {
            return Err(format!(
                "URL pattern {pattern:?} must not contain user information (user@host)"
            ));
        }
        let (host, port) = split_pattern_host(authority).ok_or_else(|| {
            format!("URL pattern {pattern:?} has an invalid host or port {authority:?}")
        })?;
        let scheme_lower = scheme.to_ascii_lowercase();
        let port = match port {
            PortPattern::Exact(p) if default_port(&scheme_lower) == Some(p) => PortPattern::Default,
            other => other,
        };
        let compile = |p: &str, ci: bool| glob(p, ci).map(|g| g.compile_matcher());
        Ok(Self {
            scheme: compile(&scheme_lower, true)?,
            host: compile(&host, true)?,
            port,
            rest: rest.map(|r| compile(r, false)).transpose()?,
        })
    }

    /// Whether `url` (already parsed) is allowed by this pattern.
    pub(crate) fn matches(&self, url: &ParsedUrl<'_>) -> bool {
        let port_ok = match self.port {
            PortPattern::Default => url.port.is_none(),
            PortPattern::Any => true,
            PortPattern::Exact(p) => url.port == Some(p),
        };
        port_ok
            && self.scheme.is_match(&url.scheme)
            && self.host.is_match(&url.host)
            && self.rest.as_ref().is_none_or(|r| r.is_match(&*url.rest))
    }
}

/// Splits a pattern's `host[:port]`. IPv6 literals (`[::1]`) are matched
/// literally (their brackets escaped so globset does not read a class).
fn split_pattern_host(authority: &str) -> Option<(String, PortPattern)> {
    let Authority { host, ipv6, port } = split_authority(authority, HOST_PATTERN_CHARS)?;
    let host = if ipv6 {
        format!("[[]{}[]]", host.to_ascii_lowercase())
    } else {
        host.to_owned()
    };
    let port = match port {
        None => PortPattern::Default,
        Some("*") => PortPattern::Any,
        Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            PortPattern::Exact(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// An authority's `host[:port]` as written; an IPv6 literal without its brackets.
struct Authority<'a> {
    host: &'a str,
    ipv6: bool,
    port: Option<&'a str>,
}

/// Splits `host[:port]` for patterns and URLs alike, so both read an authority the same way.
/// An IPv6 literal (`[::1]`) may hold hex digits, `:` and `.`; a name, ASCII alphanumerics and
/// `name_chars` (patterns also allow their glob characters). `None` when either is malformed.
fn split_authority<'a>(authority: &'a str, name_chars: &str) -> Option<Authority<'a>> {
    if let Some(inner) = authority.strip_prefix('[') {
        let close = inner.find(']')?;
        let literal = &inner[..close];
        if literal.is_empty()
            || !literal
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        let port = match &inner[close + 1..] {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        return Some(Authority {
            host: literal,
            ipv6: true,
            port,
        });
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || name_chars.contains(c))
    {
        return None;
    }
    Some(Authority {
        host,
        ipv6: false,
        port,
    })
}

/// A URL split into the parts policies match on. Userinfo is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl<'a> {
    /// Lower-cased scheme.
    pub(crate) scheme: String,
    /// Lower-cased host (IPv6 literals keep their brackets).
    pub(crate) host: String,
    /// Explicit port, `None` when absent or the scheme's default.
    pub(crate) port: Option<u16>,
    /// Path, query and fragment; always starts with `/`.
    pub(crate) rest: Cow<'a, str>,
}

impl ParsedUrl<'_> {
    /// `scheme://host[:port]`, the only part of a URL safe to print: stream
    /// keys, webhook secrets and signed-URL tokens live in the userinfo,
    /// path and query.
    pub(crate) fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

/// The well-known default port of a scheme, so `https://h:443` and
/// `https://h` are the same URL to a policy.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" | "rtmps" => Some(443),
        "rtmp" => Some(1935),
        _ => None,
    }
}

/// Parses a URL strictly. Anything another parser might read differently is
/// rejected (`None`) rather than guessed at, so an allow-list fails closed:
/// whitespace, control characters, backslashes, non-ASCII or percent-encoded
/// hosts, and an `@` between the host and the first `/` (as in
/// `rtmp://good.example?@evil.example/app`).
pub(crate) fn parse_url(url: &str) -> Option<ParsedUrl<'_>> {
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return None;
    }
    let (scheme, after) = url.split_once("://")?;
    let mut scheme_chars = scheme.chars();
    if !scheme_chars.next()?.is_ascii_alphabetic()
        || !scheme_chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let up_to_slash = &after[..after.find('/').unwrap_or(after.len())];
    if up_to_slash[authority.len()..].contains('@') {
        return None;
    }
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let Authority { host, ipv6, port } = split_authority(host_port, "-._")?;
    let host = if ipv6 {
        format!("[{}]", host.to_ascii_lowercase())
    } else {
        host.to_ascii_lowercase()
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.chars().all(|c| c.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    let scheme = scheme.to_ascii_lowercase();
    let port = port.filter(|p| default_port(&scheme) != Some(*p));
    let rest = if rest.starts_with('/') {
        Cow::Borrowed(rest)
    } else {
        Cow::Owned(format!("/{rest}"))
    };
    Some(ParsedUrl {
        scheme,
        host,
        port,
        rest,
    })
}

/// What a denial message may show of a URL: `scheme://host[:port]`, or
/// `<invalid URL>` when it does not parse. Never the userinfo, path or query.
pub(crate) fn redact_url(url: &str) -> String {
    parse_url(url).map_or_else(|| "<invalid URL>".to_owned(), |u| u.origin())
}

/// Quotes a value for a message, escaping control characters and cutting
/// very long values so a hostile request cannot flood the logs.
pub(crate) fn quote(value: &str) -> String {
    const MAX: usize = 128;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(pattern: &str, url: &str) -> bool {
        let pattern = UrlPattern::parse(pattern).unwrap();
        parse_url(url).is_some_and(|u| pattern.matches(&u))
    }

    #[test]
    fn parses_urls_strictly() {
        let u = parse_url("RTMP://User:Pw@Live.Example.COM:1936/app/KEY?x=1").unwrap();
        assert_eq!(u.scheme, "rtmp");
        assert_eq!(u.host, "live.example.com");
        assert_eq!(u.port, Some(1936));
        assert_eq!(u.rest, "/app/KEY?x=1");
        assert_eq!(u.origin(), "rtmp://live.example.com:1936");

        let u = parse_url("srt://ingest.example.com:9000?streamid=abc").unwrap();
        assert_eq!(u.rest, "/?streamid=abc");
        assert_eq!(parse_url("https://h.example:443/x").unwrap().port, None);
        assert_eq!(parse_url("rtmp://h:1935").unwrap().port, None);
        assert_eq!(parse_url("rtmp://h").unwrap().rest, "/");
        assert_eq!(parse_url("http://[::1]:8080/x").unwrap().host, "[::1]");
        assert_eq!(
            parse_url("rtmp://[::ffff:10.0.0.1]/app").unwrap().host,
            "[::ffff:10.0.0.1]"
        );

        for bad in [
            "live.example.com/app",
            "rtmp://",
            "rtmp://:1935/app",
            "rtmp://host:port/app",
            "rtmp://host:99999/app",
            "rtmp://h\\@evil/app",
            "rtmp://good.example?@evil.example/app",
            "rtmp://good.example#@evil.example/app",
            "rtmp://ex ample.com/app",
            "rtmp://exam%70le.com/app",
            "rtmp://exämple.com/app",
            "1rtmp://host/app",
            "rtmp://host/app\n",
            // Whitespace alone (not a control character), a control character alone.
            "rtmp://host/a b",
            "rtmp://host/a\u{7}b",
            // Empty or non-hex IPv6 literals.
            "rtmp://[]/app",
            "rtmp://[zz]/app",
            "rtmp://[::g]/app",
            // u16's parser takes a leading '+'; a URL port must not.
            "rtmp://host:+1935/app",
        ] {
            assert!(parse_url(bad).is_none(), "{bad:?} should not parse");
        }
        // An '@' in the path is fine; only the authority's last '@' counts.
        let u = parse_url("https://a@b@host.example/p@q").unwrap();
        assert_eq!(u.host, "host.example");
        assert_eq!(u.rest, "/p@q");
    }

    #[test]
    fn url_patterns_match_part_by_part() {
        let p = "rtmps://*.live.example.com/*";
        assert!(allowed(p, "rtmps://a.live.example.com/app/key"));
        assert!(allowed(p, "RTMPS://A.LIVE.EXAMPLE.COM/app/key"));
        assert!(allowed(p, "rtmps://a.b.live.example.com/"));
        assert!(!allowed(p, "rtmps://live.example.com/app"));
        assert!(!allowed(p, "rtmp://a.live.example.com/app"));
        // The classic whole-string-glob bypasses.
        assert!(!allowed(p, "rtmps://evil.net/x.live.example.com/app"));
        assert!(!allowed(p, "rtmps://a.live.example.com.evil.net/app"));
        assert!(!allowed(p, "rtmps://a.live.example.com@evil.net/app"));
        assert!(allowed(p, "rtmps://evil@a.live.example.com/app"));
        // Ports: none in the pattern means the default port only.
        assert!(allowed(p, "rtmps://a.live.example.com:443/app"));
        assert!(!allowed(p, "rtmps://a.live.example.com:8443/app"));
        assert!(allowed(
            "srt://i.example.com:*",
            "srt://i.example.com:9000?streamid=k"
        ));
        assert!(allowed("srt://i.example.com:*", "srt://i.example.com"));
        assert!(allowed(
            "srt://i.example.com:9000",
            "srt://i.example.com:9000?s=1"
        ));
        assert!(!allowed(
            "srt://i.example.com:9000",
            "srt://i.example.com:9001?s=1"
        ));
        // No path in the pattern: any path; a path: a glob on path+query.
        assert!(allowed(
            "https://hooks.example.com",
            "https://hooks.example.com/a?b"
        ));
        assert!(allowed(
            "https://h.example/hooks/*",
            "https://h.example/hooks/a/b?c"
        ));
        assert!(!allowed(
            "https://h.example/hooks/*",
            "https://h.example/other"
        ));
        assert!(!allowed(
            "https://h.example/hooks/*",
            "https://h.example/Hooks/a"
        ));
        assert!(allowed("http://[::1]:8080/*", "http://[::1]:8080/x"));
        assert!(allowed(
            "{rtmp,rtmps}://*.example.com",
            "rtmp://a.example.com/k"
        ));
    }

    #[test]
    fn bad_url_patterns() {
        for bad in [
            "live.example.com",
            "rtmp://",
            "rtmp://user@host/*",
            "rtmp://host:port/*",
            "rtmp://ho st/*",
            "rtmp://host/[",
            "rtmp://[zz]/x",
            // Whitespace that is not a control character, a control character that is not
            // whitespace.
            "rtmp://host/a b",
            "rtmp://host/a\u{7}b",
            // An empty scheme, and a scheme with a character no scheme has.
            "://host/*",
            "rt_mp://host/*",
        ] {
            assert!(
                UrlPattern::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn pattern_ports_are_digits_only_and_ipv6_hosts_may_omit_them() {
        // u16's own parser takes a leading '+': the pattern must not.
        for bad in [
            "rtmp://host:+1935/*",
            "rtmp://host:/*",
            "rtmp://[::1]:+80/*",
            "rtmp://[::1]x/*",
        ] {
            assert!(
                UrlPattern::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(allowed("rtmp://[::1]/*", "rtmp://[::1]/app"));
        assert!(!allowed("rtmp://[::1]/*", "rtmp://[::1]:1936/app"));
        assert!(allowed("rtmp://[::1]:1936/*", "rtmp://[::1]:1936/app"));
        assert!(allowed(
            "http://h.example.com:80/*",
            "http://h.example.com/x"
        ));
        assert!(allowed("ws://h.example.com/*", "ws://h.example.com:80/x"));
        assert!(!allowed(
            "http://h.example.com/*",
            "http://h.example.com:8080/x"
        ));
    }

    #[test]
    fn explicit_default_port_in_a_pattern_is_the_default_port() {
        for (pattern, url) in [
            ("rtmps://h.example.com:443/*", "rtmps://h.example.com/app"),
            ("rtmp://h.example.com:1935/*", "rtmp://h.example.com/app"),
            ("https://h.example.com:443/*", "https://h.example.com:443/x"),
        ] {
            assert!(allowed(pattern, url), "{pattern} {url}");
        }
        assert!(!allowed(
            "rtmps://h.example.com:443/*",
            "rtmps://h.example.com:8443/app"
        ));
        // Not a default port for the scheme: only that port.
        assert!(allowed(
            "rtmp://h.example.com:443/*",
            "rtmp://h.example.com:443/app"
        ));
        assert!(!allowed(
            "rtmp://h.example.com:443/*",
            "rtmp://h.example.com/app"
        ));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("rtmp://user:pw@live.example.com/app/STREAMKEY?token=x"),
            "rtmp://live.example.com"
        );
        assert_eq!(redact_url("not a url SECRET"), "<invalid URL>");
        assert_eq!(quote("a\"b\n"), r#""a\"b\n""#);
        let long = "x".repeat(500);
        assert_eq!(quote(&long).chars().count(), 128 + 3);
    }

    #[test]
    fn star_runs_collapse() {
        assert_eq!(collapse_stars("**/"), "*/");
        assert_eq!(collapse_stars("a***b*"), "a*b*");
        assert_eq!(collapse_stars("\\**"), "\\**");
        assert_eq!(collapse_stars("[**]**"), "[**]*");
        assert_eq!(collapse_stars("[]**]**"), "[]**]*");
        assert_eq!(collapse_stars("[!]*]**x"), "[!]*]*x");
        assert_eq!(collapse_stars("{a**,b}"), "{a*,b}");
        let list = GlobList::new(&["**/".into(), "x/**".into()]).unwrap();
        assert!(!list.is_match(""));
        assert!(list.is_match("a/"));
        assert!(!list.is_match("x"));
        assert!(list.is_match("x/"));
    }

    #[test]
    fn glob_lists() {
        let list = GlobList::new(&["team-*".into(), "standup".into()]).unwrap();
        assert!(list.is_match("team-a"));
        assert!(list.is_match("team-a/b"));
        assert!(!list.is_match("Team-a"));
        assert!(!list.is_match("standup2"));
        assert!(!list.matches_everything());
        assert!(GlobList::new(&["*".into()]).unwrap().matches_everything());
        assert_eq!(GlobList::new(&["ok".into(), "a[".into()]).unwrap_err().0, 1);
    }
}
