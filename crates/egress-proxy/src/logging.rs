//! Logging (and, with the `otlp` feature, trace export) for the binary.

use crate::config::LogFormat;

/// What must outlive `main`'s work for logs and traces to be flushed.
#[derive(Debug)]
#[must_use = "logs are flushed when this is dropped"]
pub struct Logging {
    _writer: tracing_appender::non_blocking::WorkerGuard,
    #[cfg(feature = "otlp")]
    _traces: Option<crate::otlp::Exporting>,
}

/// Logs go to stderr through a background writer: a call never waits on a slow terminal or
/// log collector. With the `otlp` feature, spans also go to the OTLP collector named by
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, if any.
pub fn init(format: LogFormat) -> Result<Logging, String> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // Keep every line (audit lines included) rather than dropping under pressure.
        .lossy(false)
        .finish(std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otlp")]
    {
        let (layer, traces) = crate::otlp::layer()?.unzip();
        subscriber.with(layer).init();
        Ok(Logging {
            _writer: guard,
            _traces: traces,
        })
    }
    #[cfg(not(feature = "otlp"))]
    {
        subscriber.init();
        Ok(Logging { _writer: guard })
    }
}
