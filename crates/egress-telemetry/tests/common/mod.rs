//! Helpers shared by the integration tests.

#![allow(dead_code)]

/// The value of the sample whose name and labels are exactly `series`, e.g.
/// `egress_proxy_calls_total{door="grpc",rpc="StopEgress",code="OK"}`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

/// Like [`sample`], but a missing series is a test failure that shows the exposition.
pub fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}
