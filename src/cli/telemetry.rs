//! Logs and traces. Events go to stderr, filtered by `EOD_LOG` (default `warn`). With an OTLP
//! endpoint the spans (one per stage: gateway connection, archive upload, replay segment,
//! run worker, sink batch, HTTP request, ...) are also exported over OTLP/HTTP (protobuf) to a
//! collector such as Jaeger, Tempo or the OpenTelemetry Collector.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Where spans go, if anywhere besides the log.
// Without the `otlp` feature the flags still parse (and are refused when used), so their
// values are read by nothing.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
#[derive(Clone, Debug, Default)]
pub struct OtlpOptions {
    /// Collector base URL, e.g. `http://127.0.0.1:4318`; `/v1/traces` is appended.
    pub endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Which spans to export, as an `EnvFilter` directive (`info`, `eod=debug`, ...).
    pub filter: String,
}

/// Keeps the exporter alive; dropping it flushes the spans not yet sent.
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[cfg(not(feature = "otlp"))]
    #[error("--otlp-endpoint was given, but this build has no OTLP export (feature `otlp`)")]
    NotBuiltIn,
    #[cfg(feature = "otlp")]
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[cfg(feature = "otlp")]
    #[error("span filter `{0}`: {1}")]
    Filter(String, String),
}

fn log_filter() -> EnvFilter {
    EnvFilter::try_from_env("EOD_LOG").unwrap_or_else(|_| "warn".into())
}

fn log_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(log_filter())
}

/// Installs the process's subscriber. Call once, before the work starts.
pub fn init(otlp: &OtlpOptions) -> Result<Telemetry, TelemetryError> {
    let Some(endpoint) = &otlp.endpoint else {
        tracing_subscriber::registry().with(log_layer()).init();
        return Ok(Telemetry {
            #[cfg(feature = "otlp")]
            provider: None,
        });
    };
    export(endpoint, otlp)
}

#[cfg(not(feature = "otlp"))]
fn export(_: &str, _: &OtlpOptions) -> Result<Telemetry, TelemetryError> {
    Err(TelemetryError::NotBuiltIn)
}

#[cfg(feature = "otlp")]
fn export(endpoint: &str, otlp: &OtlpOptions) -> Result<Telemetry, TelemetryError> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;

    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(otlp.service_name.clone())
        .build();
    // Batched on the SDK's own thread: a slow or absent collector never slows a stage.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let span_filter = EnvFilter::try_new(&otlp.filter)
        .map_err(|e| TelemetryError::Filter(otlp.filter.clone(), e.to_string()))?;
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("eod"))
        .with_filter(span_filter);
    tracing_subscriber::registry()
        .with(log_layer())
        .with(spans)
        .init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("eod: flushing spans to the OTLP collector failed: {error}");
            }
        }
    }
}
