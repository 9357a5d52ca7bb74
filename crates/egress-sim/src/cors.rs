//! LiveKit's CORS middleware, the first thing every request meets.
//!
//! livekit/livekit `NewLivekitServer` (`pkg/service/server.go`) installs rs/cors (v1.11.1)
//! with `AllowOriginFunc` accepting every origin, methods `OPTIONS HEAD GET POST PATCH
//! DELETE`, headers `*`, exposed headers `*` and `MaxAge` 86400, ahead of the auth
//! middleware: token checks rely on the token, not on the origin. What rs/cors then does
//! (`Cors.Handler`, `handlePreflight`, `handleActualRequest`):
//!
//! * A preflight (`OPTIONS` with a non-empty `Access-Control-Request-Method`) ends there:
//!   204, no body, never authenticated. It always varies on the three request headers; with
//!   an `Origin` and an allowed method it echoes the origin, the requested method and the
//!   requested headers, and sets the max age.
//! * Any other request gets `Vary: Origin`, and with an `Origin` (and an allowed method) the
//!   origin echoed and `Access-Control-Expose-Headers: *`.

use http::HeaderMap;
use http::Method;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderValue, ORIGIN, VARY,
};

/// The methods LiveKit allows (`AllowedMethods`); rs/cors always allows `OPTIONS` too.
const ALLOWED_METHODS: [&str; 6] = ["OPTIONS", "HEAD", "GET", "POST", "PATCH", "DELETE"];

/// `MaxAge: 86400`: browsers may cache a preflight for a day.
const MAX_AGE: &str = "86400";

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// Whether the request is a preflight rs/cors answers itself.
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|v| !v.is_empty())
}

/// The preflight answer's headers (status 204, no body).
pub(crate) fn preflight_headers(request: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(VARY, HeaderValue::from_static(PREFLIGHT_VARY));
    let Some(origin) = non_empty(request, ORIGIN) else {
        return out;
    };
    let Some(method) = request.get(ACCESS_CONTROL_REQUEST_METHOD) else {
        return out;
    };
    if !method_allowed(method.as_bytes()) {
        return out;
    }
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    out.insert(ACCESS_CONTROL_ALLOW_METHODS, method.clone());
    // rs/cors echoes the header list as sent (every header is allowed), only when the
    // first value is non-empty.
    let requested: Vec<&HeaderValue> = request
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .collect();
    if requested.first().is_some_and(|v| !v.is_empty()) {
        for value in requested {
            out.append(ACCESS_CONTROL_ALLOW_HEADERS, value.clone());
        }
    }
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    out
}

/// Adds the headers of a non-preflight answer to `response`.
pub(crate) fn add_actual_headers(method: &Method, request: &HeaderMap, response: &mut HeaderMap) {
    response.append(VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = non_empty(request, ORIGIN) else {
        return;
    };
    if !method_allowed(method.as_str().as_bytes()) {
        return;
    }
    response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    response.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("*"));
}

fn non_empty(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&HeaderValue> {
    headers.get(name).filter(|v| !v.is_empty())
}

/// `isMethodAllowed`: an exact, case-sensitive match.
fn method_allowed(method: &[u8]) -> bool {
    ALLOWED_METHODS.iter().any(|m| m.as_bytes() == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn preflight_echoes_origin_method_and_headers() {
        let request = headers(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &request));
        assert!(!is_preflight(&Method::POST, &request));
        let out = preflight_headers(&request);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(
            out[ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization,content-type"
        );
        assert_eq!(out[ACCESS_CONTROL_MAX_AGE], "86400");
        assert_eq!(out[VARY], PREFLIGHT_VARY);
    }

    #[test]
    fn preflight_without_origin_or_with_odd_method_only_varies() {
        let out = preflight_headers(&headers(&[("access-control-request-method", "POST")]));
        assert_eq!(out.len(), 1);
        let out = preflight_headers(&headers(&[
            ("origin", "https://x"),
            ("access-control-request-method", "PUT"),
        ]));
        assert_eq!(out.keys().collect::<Vec<_>>(), [VARY]);
    }

    #[test]
    fn actual_requests_vary_on_origin() {
        let mut out = HeaderMap::new();
        add_actual_headers(&Method::POST, &HeaderMap::new(), &mut out);
        assert_eq!(out[VARY], "Origin");
        assert!(out.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let mut out = HeaderMap::new();
        add_actual_headers(
            &Method::POST,
            &headers(&[("origin", "https://x")]),
            &mut out,
        );
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://x");
        assert_eq!(out[ACCESS_CONTROL_EXPOSE_HEADERS], "*");
    }
}
