//! Logs and traces, set up as the agent does it ([`voice_telemetry`]): logs on stderr as
//! text or JSON lines; OpenTelemetry traces over OTLP, configured by the standard `OTEL_*`
//! environment variables and only when an OTLP endpoint is set. Every reconcile is one span
//! (see [`crate::controller`]), and log lines inside it carry its `trace_id`.

use tracing::{Instrument as _, Span};
pub use voice_telemetry::{LogFormat, Telemetry};

use crate::error::Result;

/// `service.name` of the operator's traces (`OTEL_SERVICE_NAME` overrides it).
pub const SERVICE: &str = "voice-operator";

/// Installs the global subscriber, and the trace pipeline when an OTLP endpoint is configured.
/// Call it inside the tokio runtime (the gRPC exporter needs one); flush with
/// [`Telemetry::shutdown`] before exiting.
pub fn init(format: LogFormat, filter: &str) -> Result<Telemetry, String> {
    voice_telemetry::init(format, filter, SERVICE, voice_telemetry::pod_attributes())
}

/// Records the id of the trace `span` belongs to in its `trace_id` field (declared empty), so
/// that every log line inside it names the trace. Nothing when traces are not exported.
pub fn record_trace_id(span: &Span) {
    if let Some(id) = voice_telemetry::trace_id(span) {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// A span for one step of the reconcile pipeline: `step_span!("apply", changes = Empty)`, with
/// the fields [`step`] fills in when the step fails.
macro_rules! step_span {
    ($name:literal $(, $($fields:tt)+)?) => {
        tracing::info_span!(
            $name,
            error.kind = tracing::field::Empty,
            otel.status_code = tracing::field::Empty
            $(, $($fields)+)?
        )
    };
}
pub(crate) use step_span;

/// Runs one step of the pipeline in `span` (made by [`step_span!`]); a failure marks the span
/// as failed, with the error's kind.
pub async fn step<T>(span: Span, work: impl Future<Output = Result<T>>) -> Result<T> {
    let result = work.instrument(span.clone()).await;
    if let Err(err) = &result {
        span.record("error.kind", err.metric_label());
        span.record("otel.status_code", "error");
    }
    result
}
