//! Prometheus metrics of the operator, served on the admin port's `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Reconcile duration buckets (seconds): most reconciles are a handful of reads; a slow
/// apiserver or a first apply of every child takes longer.
const DURATION_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 15.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: String,
    pub verb: &'static str,
}

/// Every metric, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub rejections: Family<RejectionLabels, Counter>,
    pub writes: Family<WriteLabels, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("voice_operator");
        let reconciles = Counter::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let rejections = Family::<RejectionLabels, Counter>::default();
        let writes = Family::<WriteLabels, Counter>::default();
        let duration = Histogram::new(DURATION_BUCKETS);
        let leader = Gauge::default();
        registry.register("reconciles", "VoiceAgent reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed (and are retried), by reason",
            failures.clone(),
        );
        registry.register(
            "rejections",
            "Reconciles that found the VoiceAgent not acceptable, by condition reason",
            rejections.clone(),
        );
        registry.register(
            "writes",
            "Writes the operator made to children and status, by kind and verb",
            writes.clone(),
        );
        registry.register("reconcile_duration_seconds", "Duration of reconciles", duration.clone());
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controller",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            rejections,
            writes,
            duration,
            leader,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a reconcile and measures it until the guard drops, so early returns are measured
    /// too.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    pub fn record_write(&self, kind: &str, verb: &'static str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_owned(),
                verb,
            })
            .inc();
    }
}

/// Observes the reconcile duration on drop.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics.duration.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_reconciles_failures_and_duration() {
        let metrics = Metrics::new();
        drop(metrics.reconcile_started());
        metrics
            .failures
            .get_or_create(&FailureLabels { reason: "forbidden" })
            .inc();
        metrics.record_write("Deployment", "apply");
        let text = metrics.encode();
        for needle in [
            "voice_operator_reconciles_total 1",
            r#"voice_operator_reconcile_failures_total{reason="forbidden"} 1"#,
            r#"voice_operator_writes_total{kind="Deployment",verb="apply"} 1"#,
            "voice_operator_reconcile_duration_seconds_count 1",
            "voice_operator_leader 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
