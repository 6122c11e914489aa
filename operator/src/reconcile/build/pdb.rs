//! The PodDisruptionBudget, when more than one replica may run.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{metadata, selector_labels};
use crate::reconcile::validate::ValidatedAgent;

/// Voluntary disruptions (node drains) take one agent pod at a time, so a drain never empties
/// the agent while its pods let their sessions finish. Pods that are not ready may always be
/// evicted, so a broken pod cannot block a node drain.
pub fn build_pdb(agent: &ValidatedAgent) -> Option<PodDisruptionBudget> {
    if !agent.replicas.may_exceed_one() {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: metadata(agent, agent.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&agent.name)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, validated};
    use crate::reconcile::build::golden::assert_golden;

    #[test]
    fn none_for_a_single_replica() {
        assert_eq!(build_pdb(&validated(Default::default())), None);
        assert_eq!(build_pdb(&validated(spec("replicas: 1"))), None);
    }

    #[test]
    fn one_at_a_time_for_several_replicas() {
        let pdb = build_pdb(&validated(spec("replicas: 3"))).expect("a PDB");
        assert_golden("pdb", &pdb);
    }

    #[test]
    fn autoscaled_agents_that_may_grow_get_one() {
        let agent = validated(spec("scaling: {minReplicas: 1, maxReplicas: 4}"));
        assert!(build_pdb(&agent).is_some());
    }
}
