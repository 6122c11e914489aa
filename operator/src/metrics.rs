//! Prometheus metrics of the operator, served on the admin port's `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::reconcile::RejectReason;
use crate::reconcile::children::CHILD_KINDS;

/// Reconcile duration buckets (seconds): most reconciles are a handful of reads; a slow
/// apiserver or a first apply of every child takes longer.
const DURATION_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 15.0];

/// Every `reason` of `reconcile_failures`: the values of [`crate::error::Error::metric_label`].
pub const FAILURE_REASONS: [&str; 8] = [
    "forbidden",
    "conflict",
    "not_found",
    "invalid",
    "api",
    "transport",
    "not_namespaced",
    "encode",
];

/// Every reason a reconcile can reject a VoiceAgent with (`rejections`).
pub const REJECT_REASONS: [RejectReason; 5] = [
    RejectReason::InvalidSpec,
    RejectReason::ReferenceNotFound,
    RejectReason::GatewayApiUnavailable,
    RejectReason::KedaUnavailable,
    RejectReason::Undecodable,
];

/// `kind` of the status writes in `writes`.
pub const STATUS_KIND: &str = "VoiceAgent/status";
/// `kind` of Event writes in `writes`.
pub const EVENT_KIND: &str = "Event";

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
        // Every known label value starts at zero, so each series exists from the start (rates
        // and alerts work before the first event, and dashboards find every name).
        for reason in FAILURE_REASONS {
            let _ = failures.get_or_create(&FailureLabels { reason });
        }
        for reason in REJECT_REASONS {
            let _ = rejections.get_or_create(&RejectionLabels {
                reason: reason.as_str(),
            });
        }
        for (kind, verb) in known_writes() {
            let _ = writes.get_or_create(&WriteLabels { kind, verb });
        }
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

/// Every (kind, verb) the operator writes: server-side apply of each kind of child, deletion of
/// the optional ones no longer wanted, status and Events.
fn known_writes() -> Vec<(String, &'static str)> {
    let mut writes = Vec::new();
    for kind in CHILD_KINDS {
        writes.push((kind.kind().into_owned(), "apply"));
        if kind.is_optional() {
            writes.push((kind.kind().into_owned(), "delete"));
        }
    }
    writes.push((STATUS_KIND.to_owned(), "apply"));
    writes.push((EVENT_KIND.to_owned(), "create"));
    writes
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
    use crate::error::Error;

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

    #[test]
    fn known_series_exist_at_zero_before_any_reconcile() {
        let text = Metrics::new().encode();
        for needle in [
            "voice_operator_reconciles_total 0",
            r#"voice_operator_reconcile_failures_total{reason="forbidden"} 0"#,
            r#"voice_operator_reconcile_failures_total{reason="transport"} 0"#,
            r#"voice_operator_rejections_total{reason="InvalidSpec"} 0"#,
            r#"voice_operator_rejections_total{reason="ReferenceNotFound"} 0"#,
            r#"voice_operator_rejections_total{reason="GatewayAPIUnavailable"} 0"#,
            r#"voice_operator_rejections_total{reason="KEDAUnavailable"} 0"#,
            r#"voice_operator_writes_total{kind="ConfigMap",verb="apply"} 0"#,
            r#"voice_operator_writes_total{kind="Deployment",verb="apply"} 0"#,
            r#"voice_operator_writes_total{kind="HTTPRoute",verb="delete"} 0"#,
            r#"voice_operator_writes_total{kind="HorizontalPodAutoscaler",verb="apply"} 0"#,
            r#"voice_operator_writes_total{kind="VoiceAgent/status",verb="apply"} 0"#,
            r#"voice_operator_writes_total{kind="Event",verb="create"} 0"#,
            "voice_operator_reconcile_duration_seconds_count 0",
            "voice_operator_leader 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    #[test]
    fn every_failure_label_is_precreated() {
        let api = |reason: &str, code: u16| Error::Kube {
            context: "test".into(),
            source: kube::Error::Api(kube::core::Status::failure("test", reason).with_code(code).boxed()),
        };
        let encode = serde_json::from_str::<u8>("x").expect_err("not JSON");
        let errors = [
            api("Forbidden", 403),
            api("Conflict", 409),
            api("NotFound", 404),
            api("Invalid", 422),
            api("InternalError", 500),
            Error::Kube {
                context: "test".into(),
                source: kube::Error::LinesCodecMaxLineLengthExceeded,
            },
            Error::NotNamespaced,
            Error::Encode {
                what: "test",
                source: encode,
            },
        ];
        let labels: Vec<_> = errors.iter().map(Error::metric_label).collect();
        assert_eq!(labels, FAILURE_REASONS);
    }

    #[test]
    fn every_reject_reason_is_precreated() {
        let all = [
            RejectReason::InvalidSpec,
            RejectReason::ReferenceNotFound,
            RejectReason::GatewayApiUnavailable,
            RejectReason::KedaUnavailable,
            RejectReason::Undecodable,
        ];
        for reason in all {
            // Exhaustive: a new reason fails to compile here until it is listed above (and in
            // REJECT_REASONS).
            match reason {
                RejectReason::InvalidSpec
                | RejectReason::ReferenceNotFound
                | RejectReason::GatewayApiUnavailable
                | RejectReason::KedaUnavailable
                | RejectReason::Undecodable => {}
            }
            assert!(REJECT_REASONS.contains(&reason), "{reason:?} is not pre-created");
        }
    }
}
