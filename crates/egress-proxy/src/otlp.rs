//! Trace export over OTLP (HTTP/protobuf), built with the `otlp` feature and switched on by
//! the standard OpenTelemetry variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g.
//! `http://otel-collector:4318`) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, with
//! `OTEL_SERVICE_NAME` (default `egress-proxy`). Each call's span is exported, as a child of
//! the caller's `traceparent` when it sent one.
//!
//! Spans are batched and sent from the exporter's own thread, so a slow or absent collector
//! never delays a call; what cannot be sent is dropped.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;

/// Variables whose presence turns export on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Flushes what is batched when the process ends.
#[derive(Debug)]
pub struct Exporting(SdkTracerProvider);

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(err) = self.0.shutdown() {
            eprintln!("egress-proxy: flushing traces failed: {err}");
        }
    }
}

/// The tracing layer that exports spans, when the environment names a collector.
pub fn layer<S>() -> Result<Option<(impl tracing_subscriber::Layer<S>, Exporting)>, String>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let configured = ENDPOINT_VARS
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTLP trace exporter: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "egress-proxy".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("egress-proxy");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Exporting(provider))))
}

/// Makes `span` a child of the W3C trace context in `headers`, if any.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only when no OpenTelemetry layer is installed: nothing to join then.
    let _ = span.set_parent(parent);
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
