//! The HorizontalPodAutoscaler on active sessions, when `scaling` is set with mode `Hpa`.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec, MetricTarget,
    PodsMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::metadata;
use crate::reconcile::validate::{Autoscaling, Replicas, ValidatedAgent};

/// Scale-down removes at most one pod per this many seconds: each removal drains sessions.
const SCALE_DOWN_PERIOD_SECS: i32 = 60;

/// Targets the Deployment with the per-pod sessions metric as an average value.
pub fn build_hpa(agent: &ValidatedAgent) -> Option<HorizontalPodAutoscaler> {
    let Replicas::Autoscaled(scaling) = &agent.replicas else {
        return None;
    };
    if scaling.keda.is_some() {
        return None;
    }
    Some(HorizontalPodAutoscaler {
        metadata: metadata(agent, agent.name.clone()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: agent.name.clone(),
            },
            min_replicas: Some(scaling.min),
            max_replicas: scaling.max,
            metrics: Some(vec![MetricSpec {
                type_: "Pods".into(),
                pods: Some(PodsMetricSource {
                    metric: MetricIdentifier {
                        name: scaling.metric.clone(),
                        selector: None,
                    },
                    target: MetricTarget {
                        type_: "AverageValue".into(),
                        average_value: Some(Quantity(scaling.target_sessions.to_string())),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: Some(scale_down_behavior(scaling)),
        },
        ..HorizontalPodAutoscaler::default()
    })
}

/// Scale down slowly, one pod per period after the stabilization window: each removal drains
/// sessions. Shared with KEDA's ScaledObject, which passes it to the HPA it creates.
pub(super) fn scale_down_behavior(scaling: &Autoscaling) -> HorizontalPodAutoscalerBehavior {
    HorizontalPodAutoscalerBehavior {
        scale_down: Some(HPAScalingRules {
            stabilization_window_seconds: Some(scaling.scale_down_window_secs),
            policies: Some(vec![HPAScalingPolicy {
                type_: "Pods".into(),
                value: 1,
                period_seconds: SCALE_DOWN_PERIOD_SECS,
            }]),
            ..HPAScalingRules::default()
        }),
        scale_up: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, validated};
    use crate::reconcile::build::golden::assert_golden;

    #[test]
    fn none_for_fixed_replicas() {
        assert_eq!(build_hpa(&validated(spec("replicas: 2"))), None);
    }

    #[test]
    fn scales_on_active_sessions_with_a_default_target() {
        let agent = validated(spec(
            "session: {maxSessionsPerReplica: 50}\nscaling: {minReplicas: 2, maxReplicas: 10}",
        ));
        assert_golden("hpa", &build_hpa(&agent).expect("an HPA"));
    }

    #[test]
    fn explicit_target_metric_and_window() {
        let agent = validated(spec(
            "scaling: {maxReplicas: 3, targetSessionsPerReplica: 12, metricName: sessions, scaleDownStabilizationWindow: 10m}",
        ));
        let hpa = build_hpa(&agent).expect("an HPA");
        let json = serde_json::to_value(&hpa).expect("json");
        assert_eq!(json["spec"]["minReplicas"], 1);
        assert_eq!(json["spec"]["metrics"][0]["pods"]["metric"]["name"], "sessions");
        assert_eq!(json["spec"]["metrics"][0]["pods"]["target"]["averageValue"], "12");
        assert_eq!(json["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 600);
    }
}
