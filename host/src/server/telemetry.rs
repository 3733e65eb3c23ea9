//! Logs and traces: structured `tracing` logs (text or JSON) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry spans exported over
//! OTLP/HTTP. Without the variable no exporter exists and spans cost only
//! what `tracing` costs.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flushes and stops the span exporter when dropped.
pub struct Guard(
    Option<SdkTracerProvider>,
    /// Flushes the log lines still queued for stderr when dropped.
    #[expect(dead_code, reason = "held for its Drop")]
    tracing_appender::non_blocking::WorkerGuard,
);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Log lines queued for the writer thread before a request waits to queue
/// one: lines are never dropped, and the queue is bounded.
const QUEUED_LINES: usize = 8192;

/// The OpenTelemetry trace id of the current span, when spans are
/// exported; decision records carry it so a log entry leads to its trace.
pub(super) fn trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = tracing::Span::current().context();
    let span = context.span();
    let id = span.span_context();
    id.is_valid().then(|| id.trace_id().to_string())
}

/// Text-log fields in logfmt: `name=value`, each value through
/// [`crate::base::text::log_value`], so a request- or plugin-derived value (a
/// service name, a reason, an error) is quoted and escaped and can neither
/// break the line nor add a field. Every field of every event and span in a
/// text log goes through it; JSON logs need none of this.
pub struct LogfmtFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for LogfmtFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = LogfmtVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct LogfmtVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    result: std::fmt::Result,
    first: bool,
}

impl LogfmtVisitor<'_> {
    fn write(&mut self, field: &tracing::field::Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let name = field.name();
        self.result = if name == "message" {
            write!(
                self.writer,
                "{sep}{}",
                crate::base::text::log_message(value)
            )
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            write!(
                self.writer,
                "{sep}{name}={}",
                crate::base::text::log_value(value)
            )
        };
    }
}

impl tracing::field::Visit for LogfmtVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

/// The OpenTelemetry layer for `provider`, named `tollgate`.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("tollgate"))
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    // Lines are written to stderr by one thread, buffered and flushed
    // whenever its queue runs empty: a write per line on the request path
    // cost about a tenth of the server's throughput (two lines a request).
    let (stderr, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("tollgate-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(LogfmtFields)
            .with_ansi(ansi)
            .with_writer(stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(stderr)
            .boxed(),
    };
    let provider = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(_) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource(
                        std::env::var("OTEL_SERVICE_NAME").ok().as_deref(),
                        std::env::var("OTEL_RESOURCE_ATTRIBUTES").ok().as_deref(),
                    ))
                    .build(),
            )
        }
        None => None,
    };
    let otel = provider.as_ref().map(otel_layer);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(Guard(provider, flush))
}

/// The resource spans are exported with: `service.name` is `tollgate`
/// (not the SDK's `unknown_service:tollgate`) unless `OTEL_SERVICE_NAME` or
/// a `service.name` in `OTEL_RESOURCE_ATTRIBUTES` says otherwise, and
/// `service.version` is this build's version.
fn resource(
    service_env: Option<&str>,
    attributes_env: Option<&str>,
) -> opentelemetry_sdk::Resource {
    let named = service_env.is_some_and(|s| !s.is_empty())
        || attributes_env.is_some_and(|a| {
            a.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let mut builder = opentelemetry_sdk::Resource::builder();
    if !named {
        builder = builder.with_service_name("tollgate");
    }
    builder
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use opentelemetry::Key;

    use super::resource;

    #[test]
    fn spans_carry_service_name_tollgate_and_the_version_by_default() {
        let r = resource(None, None);
        assert_eq!(
            r.get(&Key::from_static_str("service.name"))
                .map(|v| v.to_string()),
            Some("tollgate".into())
        );
        assert_eq!(
            r.get(&Key::from_static_str("service.version"))
                .map(|v| v.to_string()),
            Some(env!("CARGO_PKG_VERSION").into())
        );
    }

    #[test]
    fn an_explicit_service_name_is_left_alone() {
        let r = resource(
            None,
            Some("deployment.environment=prod,service.name=gatekeeper"),
        );
        assert_ne!(
            r.get(&Key::from_static_str("service.name"))
                .map(|v| v.to_string()),
            Some("tollgate".into())
        );
    }
}
