//! Logs and traces. Logs go to stderr as text or JSON lines. Traces go over OTLP (gRPC or
//! HTTP/protobuf), configured with the standard `OTEL_*` environment variables, and only when
//! an OTLP endpoint is set: without one no tracing pipeline exists and nothing is paid for it.

use std::io::IsTerminal;

use opentelemetry::propagation::{Extractor, TextMapCompositePropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::LogFormat;

/// Keeps the trace pipeline alive; [`shutdown`](Telemetry::shutdown) flushes it.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the pipeline.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("voice-agent: flushing traces failed: {error}");
        }
    }
}

/// Installs logging (and tracing when configured). `service` names the process in traces;
/// `attributes` describe it further (agent name, Kubernetes namespace and pod).
pub fn init(format: LogFormat, filter: &str, service: &str, attributes: Vec<KeyValue>) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let ansi = std::io::stderr().is_terminal();
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = if exporting() {
        Some(tracer_provider(service, attributes)?)
    } else {
        None
    };
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| e.to_string())?;
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    Ok(Telemetry { provider })
}

/// Whether the environment asks for trace export: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED` nor `OTEL_TRACES_EXPORTER=none` turns it off.
fn exporting() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn tracer_provider(service: &str, attributes: Vec<KeyValue>) -> Result<SdkTracerProvider, String> {
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    let exporter = match protocol.trim() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder().with_tonic().build(),
        "http/protobuf" | "" => opentelemetry_otlp::SpanExporter::builder().with_http().build(),
        other => {
            return Err(format!(
                "OTLP protocol {other:?} is not supported; use grpc or http/protobuf"
            ));
        }
    }
    .map_err(|e| format!("cannot set up the OTLP exporter: {e}"))?;
    // The builder also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, which win.
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .with_attributes(attributes)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Reads W3C `traceparent`/`tracestate`/`baggage` from request headers.
pub fn remote_context(headers: &http::HeaderMap) -> Context {
    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }
    global::get_text_map_propagator(|propagator| propagator.extract(&Headers(headers)))
}
