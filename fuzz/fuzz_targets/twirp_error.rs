//! Fuzzes the classification of non-success upstream answers and their mapping to gRPC.
//!
//! Input layout (see fuzz/README.md), chosen so that seeds are readable text:
//!
//! ```text
//! <3 status digits>[<any byte><content type>]\n<body>
//! ```
//!
//! * the first three bytes are read as decimal digits (`(byte - b'0') % 10` each, wrapping); a
//!   number in 100..=599 is the HTTP status as is, anything else is folded into that range;
//! * a first line of three bytes or fewer means "no Content-Type"; otherwise the rest of the
//!   first line after the fourth byte is the Content-Type (lossy UTF-8);
//! * everything after the first `\n` is the body (empty when there is no `\n`).
//!
//! Checked for every input:
//! * `classify_response`, `TwirpError::from_json`, `Status::from(err)`, `into_http` never panic;
//! * a non-2xx answer whose body `from_json` accepts is that same `Error::Twirp`, everything
//!   else is an `Error::Intermediary` with the input's status and content type;
//! * a parsed Twirp error survives `to_json` → `from_json` unchanged;
//! * the status has the documented code, message, `twirp-code` trailer and decodable details;
//! * for intermediary answers: the gRPC message is at most 1 KiB, the body excerpt at most
//!   `BODY_EXCERPT_MAX` bytes, and no JWT-shaped run (`eyJ…` with a `.`) from the body reaches
//!   the message, the trailing metadata or the `ErrorInfo`.
#![no_main]

use std::sync::OnceLock;

use egress_twirp::error::{BODY_EXCERPT_MAX, MAX_META_VALUE_LEN, TWIRP_ERROR_DOMAIN};
use egress_twirp::{Error, TwirpError, classify_response};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tonic_types::StatusExt as _;

/// Largest gRPC message an intermediary error may produce.
const MAX_INTERMEDIARY_MESSAGE: usize = 1024;

struct Input<'a> {
    status: u16,
    content_type: Option<String>,
    body: &'a [u8],
}

fn split(data: &[u8]) -> Input<'_> {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) => (&data[..nl], &data[nl + 1..]),
        None => (data, &[][..]),
    };
    let n = line.iter().take(3).fold(0u16, |acc, &b| {
        acc * 10 + u16::from(b.wrapping_sub(b'0') % 10)
    });
    let status = if (100..=599).contains(&n) {
        n
    } else {
        100 + n % 500
    };
    let content_type = (line.len() > 3).then(|| String::from_utf8_lossy(&line[4..]).into_owned());
    Input {
        status,
        content_type,
        body,
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')
}

/// Every JWT-shaped run of `text`: `eyJ` followed by token characters, with at least one `.`.
fn jwt_runs(text: &str) -> Vec<&str> {
    let mut runs = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("eyJ") {
        let start = from + i;
        let len = text[start..]
            .find(|c: char| !is_token_char(c))
            .unwrap_or(text.len() - start);
        let run = &text[start..start + len];
        if run.contains('.') {
            runs.push(run);
        }
        from = start + len.max(3);
    }
    runs
}

/// Asserts that `text` (output of the gateway) carries no JWT-shaped run. A trailing `...` is the
/// excerpt's truncation mark, not part of the body, so it is ignored.
fn assert_no_jwt(what: &str, text: &str, body: &[u8]) {
    let trimmed = text.strip_suffix("...").unwrap_or(text);
    let runs = jwt_runs(trimmed);
    assert!(
        runs.is_empty(),
        "{what} carries a JWT-shaped run {runs:?}\n  text: {text:?}\n  body: {:?}",
        String::from_utf8_lossy(body)
    );
}

/// `FUZZ_PRINT=1` prints what each input classifies as (for triaging corpus entries).
fn print_results() -> bool {
    static PRINT: OnceLock<bool> = OnceLock::new();
    *PRINT.get_or_init(|| std::env::var_os("FUZZ_PRINT").is_some_and(|v| v == "1"))
}

fuzz_target!(|data: &[u8]| {
    let input = split(data);
    let status = StatusCode::from_u16(input.status).expect("100..=599 is a valid status");

    // The Twirp JSON parser on its own.
    let parsed = TwirpError::from_json(input.body, input.status);
    if let Some(e) = &parsed {
        assert_eq!(e.http_status, input.status);
        let again = TwirpError::from_json(&e.to_json(), input.status);
        assert_eq!(again.as_ref(), Some(e), "to_json/from_json round trip");
        let _ = e.to_string();
    }

    let err = classify_response(status, input.content_type.as_deref(), input.body);
    if print_results() {
        eprintln!("classified: {err:?}");
        eprintln!("gRPC message: {:?}", err.grpc_message());
    }
    match (&err, &parsed) {
        (Error::Twirp(e), Some(p)) => {
            assert!(!status.is_success(), "a 2xx is never a Twirp error");
            assert_eq!(e, p);
        }
        (Error::Twirp(_), None) => panic!("Twirp error although from_json refused the body"),
        (
            Error::Intermediary {
                status: s,
                content_type,
                location,
                body_excerpt,
            },
            _,
        ) => {
            assert!(
                status.is_success() || parsed.is_none(),
                "a non-2xx Twirp body was classified as an intermediary"
            );
            assert_eq!(*s, input.status);
            assert_eq!(content_type, &input.content_type);
            assert!(location.is_none());
            assert!(
                body_excerpt.len() <= BODY_EXCERPT_MAX,
                "excerpt of {} bytes",
                body_excerpt.len()
            );
            assert_no_jwt("body excerpt", body_excerpt, input.body);
        }
        (other, _) => panic!("classify_response returned {other:?}"),
    }

    let code = err.grpc_code();
    let message = err.grpc_message();
    let twirp_code = err
        .twirp_code()
        .expect("Twirp and intermediary errors have a Twirp code");
    let meta = err.twirp_meta();
    let is_intermediary = matches!(err, Error::Intermediary { .. });
    // A JWT-shaped content type is echoed (sanitised, not redacted) in the message by design:
    // only the body is redacted, so the message is checked only when the header has no `eyJ`.
    let ct_has_marker = input
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.contains("eyJ"));
    let _ = err.to_string();
    let _ = err.kind();

    let st = tonic::Status::from(err);
    assert_eq!(st.code(), code);
    assert_eq!(st.message(), message);
    assert_eq!(
        st.metadata().get("twirp-code").map(|v| v.as_bytes()),
        Some(twirp_code.as_str().as_bytes())
    );

    // Trailing metadata: printable, bounded, and (for intermediaries) token-free.
    for kv in st.metadata().iter() {
        if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = kv {
            let key = key.as_str();
            assert!(
                key == "twirp-code" || key.starts_with("twirp-meta-"),
                "unexpected trailer {key}"
            );
            let bytes = value.as_bytes();
            assert!(
                bytes.len() <= MAX_META_VALUE_LEN,
                "{key}: {} bytes",
                bytes.len()
            );
            assert!(
                bytes.iter().all(|b| (0x20..0x7f).contains(b)),
                "{key}: {bytes:?}"
            );
            if is_intermediary {
                assert_no_jwt(key, value.to_str().unwrap_or_default(), input.body);
            }
        }
    }

    // Details: always a decodable google.rpc.Status.
    tonic_types::pb::Status::decode(st.details()).expect("status details decode");
    let details = st.get_error_details();
    if meta.contains_key("error_details") && !is_intermediary {
        // A Twirp server's `error_details` may replace the details verbatim (when it is base64
        // of a google.rpc.Status): whatever it holds is the server's; decodability is enough.
    } else if let Some(info) = details.error_info() {
        assert_eq!(info.domain, TWIRP_ERROR_DOMAIN);
        assert_eq!(info.reason, twirp_code.reason());
        assert_eq!(info.metadata.len(), meta.len());
        if is_intermediary {
            for (k, v) in &info.metadata {
                assert_no_jwt(&format!("ErrorInfo.metadata[{k}]"), v, input.body);
            }
        }
    } else {
        panic!("no ErrorInfo although no error_details replaced it");
    }

    if is_intermediary {
        assert!(
            st.message().len() <= MAX_INTERMEDIARY_MESSAGE,
            "intermediary message of {} bytes: {:?}",
            st.message().len(),
            st.message()
        );
        if !ct_has_marker {
            assert_no_jwt("gRPC message", st.message(), input.body);
            // The excerpt's own `...` truncation mark is no part of the body.
            let shown = st.message().strip_suffix("...").unwrap_or(st.message());
            let body_text = String::from_utf8_lossy(input.body);
            for run in jwt_runs(&body_text) {
                assert!(
                    !shown.contains(run),
                    "token {run:?} from the body is in the message {:?}",
                    st.message()
                );
            }
        }
    }

    // The status as it goes on the wire, and back.
    let response = st.into_http::<()>();
    if let Some(back) = tonic::Status::from_header_map(response.headers()) {
        assert_eq!(back.code(), code);
    }
});
