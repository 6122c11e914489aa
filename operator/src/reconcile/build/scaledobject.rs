//! KEDA's ScaledObject, when `scaling.mode` is `Keda`: KEDA creates and drives the
//! HorizontalPodAutoscaler from a Prometheus query, so no custom-metrics adapter is needed.

use std::collections::BTreeMap;

use super::hpa::scale_down_behavior;
use super::metadata;
use crate::keda::{Advanced, HorizontalPodAutoscalerConfig, ScaleTarget, ScaledObject, ScaledObjectSpec, Trigger};
use crate::reconcile::validate::{Replicas, ValidatedAgent};

/// The Deployment, scaled so that the agent's sessions in total over `target_sessions` is the
/// replica count (the trigger's `AverageValue` target), within min and max.
pub fn build_scaled_object(agent: &ValidatedAgent) -> Option<ScaledObject> {
    let Replicas::Autoscaled(scaling) = &agent.replicas else {
        return None;
    };
    let trigger = scaling.keda.as_ref()?;
    let metadata_fields: BTreeMap<String, String> = [
        ("serverAddress", trigger.server_address.clone()),
        ("query", trigger.query.clone()),
        ("threshold", scaling.target_sessions.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let spec = ScaledObjectSpec {
        scale_target_ref: ScaleTarget {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: agent.name.clone(),
        },
        min_replica_count: Some(scaling.min),
        max_replica_count: Some(scaling.max),
        advanced: Some(Advanced {
            // KEDA names its HPA `keda-hpa-<name>`: never the operator's own HPA of mode `Hpa`,
            // which the operator deletes when the mode changes.
            horizontal_pod_autoscaler_config: Some(HorizontalPodAutoscalerConfig {
                name: None,
                behavior: Some(scale_down_behavior(scaling)),
            }),
        }),
        triggers: vec![Trigger {
            type_: "prometheus".into(),
            metric_type: Some("AverageValue".into()),
            metadata: metadata_fields,
        }],
    };
    let mut object = ScaledObject::new(&agent.name, spec);
    object.metadata = metadata(agent, agent.name.clone());
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, validated};
    use crate::reconcile::build::build_hpa;
    use crate::reconcile::build::golden::assert_golden;

    #[test]
    fn none_without_keda() {
        assert_eq!(build_scaled_object(&validated(spec("replicas: 2"))), None);
        assert_eq!(build_scaled_object(&validated(spec("scaling: {maxReplicas: 4}"))), None);
    }

    #[test]
    fn keda_replaces_the_hpa_and_queries_prometheus_for_the_agents_sessions() {
        let agent = validated(spec(
            "session: {maxSessionsPerReplica: 50}\nscaling: {minReplicas: 2, maxReplicas: 10, mode: Keda, prometheus: {serverAddress: 'http://prometheus.monitoring.svc:9090'}}",
        ));
        assert_eq!(build_hpa(&agent), None);
        assert_golden("scaledobject", &build_scaled_object(&agent).expect("a ScaledObject"));
    }

    #[test]
    fn a_custom_query_is_used_as_written() {
        let agent = validated(spec(
            "scaling: {maxReplicas: 3, mode: Keda, prometheus: {serverAddress: 'http://p:9090', query: 'sum(x)'}}",
        ));
        let json = serde_json::to_value(build_scaled_object(&agent)).expect("json");
        assert_eq!(json["spec"]["triggers"][0]["metadata"]["query"], "sum(x)");
    }
}
