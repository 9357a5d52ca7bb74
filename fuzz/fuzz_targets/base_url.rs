//! Fuzzes the LiveKit URL normalisation (`BaseUrl::parse`) and the Twirp method URL built on it.
//!
//! Input: the URL text (lossy UTF-8, so every input is tried).
//!
//! Checked for every input:
//! * `BaseUrl::parse` and `method_url` never panic, and neither do the error messages;
//! * an accepted URL is `http`/`https`, has a host, no credentials, query or fragment, and no
//!   trailing slash; parsing its own text gives it back;
//! * its method URL is exactly `{base}/twirp/livekit.Egress/StartEgress`, with that path suffix;
//! * a method name that could change the path (`/`, `?`, `#`, `..`) is refused.
#![no_main]

use egress_twirp::BaseUrl;
use libfuzzer_sys::fuzz_target;

const SERVICE: &str = "livekit.Egress";
const METHOD: &str = "StartEgress";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let base = match BaseUrl::parse(&text) {
        Ok(base) => base,
        Err(err) => {
            let _ = err.to_string();
            let _ = tonic::Status::from(err);
            return;
        }
    };

    let s = base.as_str();
    assert!(
        s.starts_with("http://") || s.starts_with("https://"),
        "scheme of {s:?}"
    );
    assert!(!s.ends_with('/'), "trailing slash in {s:?}");
    assert_eq!(base.to_string(), s);

    let reparsed = BaseUrl::parse(s).unwrap_or_else(|e| panic!("{s:?} does not re-parse: {e}"));
    assert_eq!(
        reparsed, base,
        "normalisation is not idempotent for {text:?}"
    );

    let url = base
        .method_url(SERVICE, METHOD)
        .unwrap_or_else(|e| panic!("no method URL for accepted base {s:?}: {e}"));
    assert!(
        matches!(url.scheme(), "http" | "https"),
        "scheme {:?}",
        url.scheme()
    );
    assert!(
        url.host_str().is_some_and(|h| !h.is_empty()),
        "no host in {url}"
    );
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "credentials in {url}"
    );
    assert!(
        url.query().is_none() && url.fragment().is_none(),
        "query/fragment in {url}"
    );
    assert!(
        url.path().ends_with("/twirp/livekit.Egress/StartEgress"),
        "path {:?} of {url}",
        url.path()
    );
    assert_eq!(
        url.as_str(),
        format!("{s}/twirp/{SERVICE}/{METHOD}"),
        "method URL differs from base + path"
    );

    // Method names that would change the path structure are refused.
    for bad in [
        "",
        "../StopEgress",
        "Start/Egress",
        "StartEgress?x",
        "StartEgress#x",
    ] {
        assert!(
            base.method_url(SERVICE, bad).is_err(),
            "method {bad:?} accepted"
        );
    }
    assert!(base.method_url("livekit/Egress", METHOD).is_err());
});
