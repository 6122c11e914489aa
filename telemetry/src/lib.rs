//! Logs and traces. Logs go to stderr as text or JSON lines. Traces go over OTLP (gRPC or
//! HTTP/protobuf), configured with the standard `OTEL_*` environment variables, and only when
//! an OTLP endpoint is set: without one no tracing pipeline exists and nothing is paid for it.
//! Shared by the agent (`voice-agent`) and the operator (`voice-operator`), so both log and
//! trace alike.

use std::io::{IsTerminal, Write as _};

use opentelemetry::propagation::{Extractor, TextMapCompositePropagator};
use opentelemetry::trace::{TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The log format of [`init`], shared by the agent's and the operator's command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the trace pipeline alive; [`shutdown`](Telemetry::shutdown) flushes it.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    service: String,
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
            // Not `eprintln!`: it panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "{}: flushing traces failed: {error}", self.service);
        }
    }
}

/// Installs logging (and tracing when configured). `service` names the process in traces;
/// `attributes` describe it further (agent name, Kubernetes namespace and pod, see
/// [`pod_attributes`]). Fails on an invalid filter, an unsupported OTLP protocol, or when a
/// global subscriber is already installed.
pub fn init(format: LogFormat, filter: &str, service: &str, attributes: Vec<KeyValue>) -> Result<Telemetry, String> {
    let filter = log_filter(filter)?;
    let ansi = std::io::stderr().is_terminal();
    // A closed stderr (a log pipe that went away) must not take the process down:
    // tracing-subscriber would report the failed write with `eprintln!`, which panics then.
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .log_internal_errors(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .log_internal_errors(false)
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
    Ok(Telemetry {
        provider,
        service: service.to_owned(),
    })
}

/// The log filter. Targets and levels (`info`, `voice_agent=debug,info`) make a static filter,
/// decided once per call site. Span and field directives (`[session{id=...}]=debug`) need
/// `EnvFilter`, which looks every span up under a lock all threads share when it is entered and
/// left: for a voice agent, at every wake-up of every session.
fn log_filter(filter: &str) -> Result<Box<dyn Layer<Registry> + Send + Sync>, String> {
    let invalid = |e: &dyn std::fmt::Display| format!("invalid log filter {filter:?}: {e}");
    Ok(if filter.contains(['[', '{']) {
        EnvFilter::try_new(filter).map_err(|e| invalid(&e))?.boxed()
    } else {
        filter.parse::<Targets>().map_err(|e| invalid(&e))?.boxed()
    })
}

/// Where this process runs in Kubernetes, for the trace resource: `k8s.namespace.name` and
/// `k8s.pod.name` from `POD_NAMESPACE` and `POD_NAME` (set through the downward API), when set.
pub fn pod_attributes() -> Vec<KeyValue> {
    [("POD_NAMESPACE", "k8s.namespace.name"), ("POD_NAME", "k8s.pod.name")]
        .into_iter()
        .filter_map(|(variable, key)| std::env::var(variable).ok().map(|value| KeyValue::new(key, value)))
        .collect()
}

/// The id of the exported trace `span` belongs to; `None` when traces are not exported.
pub fn trace_id(span: &tracing::Span) -> Option<TraceId> {
    let id = span.context().span().span_context().trace_id();
    (id != TraceId::INVALID).then_some(id)
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

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    /// Whether `check` finds its callsite enabled under `filter`.
    fn under(filter: &str, check: impl FnOnce() -> bool) -> bool {
        let subscriber = tracing_subscriber::registry().with(log_filter(filter).expect("a valid filter"));
        tracing::subscriber::with_default(subscriber, check)
    }

    #[test]
    fn targets_and_levels_filter_by_target_with_a_default() {
        let filter = "voice_agent=debug,info";
        assert!(under(
            filter,
            || tracing::enabled!(target: "voice_agent::session", Level::DEBUG)
        ));
        assert!(!under(
            filter,
            || tracing::enabled!(target: "voice_agent::session", Level::TRACE)
        ));
        assert!(under(filter, || tracing::enabled!(target: "hyper::proto", Level::INFO)));
        assert!(!under(
            filter,
            || tracing::enabled!(target: "hyper::proto", Level::DEBUG)
        ));
        assert!(!under("warn", || tracing::enabled!(target: "voice_agent", Level::INFO)));
        assert!(!under("off", || tracing::enabled!(target: "voice_agent", Level::ERROR)));
    }

    #[test]
    fn span_directives_still_work() {
        assert!(under("info,[session]=debug", || {
            let outside = tracing::enabled!(target: "voice_agent", Level::DEBUG);
            let span = tracing::info_span!("session");
            let _inside = span.enter();
            !outside && tracing::enabled!(target: "voice_agent", Level::DEBUG)
        }));
    }

    #[test]
    fn a_bad_filter_is_refused_naming_it() {
        for bad in ["voice_agent=loud", "[session=debug"] {
            let error = log_filter(bad).err().expect("refused");
            assert!(error.contains(bad), "{error}");
        }
    }
}
