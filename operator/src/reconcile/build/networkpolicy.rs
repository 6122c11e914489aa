//! The NetworkPolicy of the agent pods, when `spec.networkPolicy` asks for one.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{metadata, selector_labels};
use crate::reconcile::agent_config::AGENT_PORT;
use crate::reconcile::validate::ValidatedAgent;

/// Only the listed peers reach the agent's port; nothing reaches any other port. With egress
/// rules, the pods may also resolve names (port 53 anywhere: cluster DNS runs in another
/// namespace, node-local caches on the node) and reach what the rules allow, nothing else.
pub fn build_network_policy(agent: &ValidatedAgent) -> Option<NetworkPolicy> {
    let spec = agent.network_policy.as_ref()?;
    let port = |protocol: &str, port: IntOrString| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(port),
        ..NetworkPolicyPort::default()
    };
    // No rule at all when no peer is listed: an ingress rule without `from` would admit
    // everyone, the opposite of an empty list.
    let ingress = if spec.ingress_from.is_empty() {
        Vec::new()
    } else {
        vec![NetworkPolicyIngressRule {
            from: Some(spec.ingress_from.clone()),
            ports: Some(vec![port("TCP", IntOrString::Int(i32::from(AGENT_PORT)))]),
        }]
    };
    let mut policy_types = vec!["Ingress".to_owned()];
    let egress = spec.egress.as_ref().map(|rules| {
        policy_types.push("Egress".to_owned());
        let dns = NetworkPolicyEgressRule {
            to: None,
            ports: Some(vec![
                port("UDP", IntOrString::Int(53)),
                port("TCP", IntOrString::Int(53)),
            ]),
        };
        std::iter::once(dns).chain(rules.iter().cloned()).collect()
    });
    Some(NetworkPolicy {
        metadata: metadata(agent, agent.name.clone()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&agent.name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(policy_types),
            ingress: Some(ingress),
            egress,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, validated};
    use crate::reconcile::build::golden::assert_golden;

    #[test]
    fn none_unless_asked_for() {
        assert_eq!(build_network_policy(&validated(Default::default())), None);
    }

    #[test]
    fn ingress_from_the_listed_peers_and_egress_with_dns() {
        let agent = validated(spec(
            r#"
networkPolicy:
  ingressFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
      podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
  egress:
    - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [169.254.169.254/32]}}]
      ports: [{protocol: TCP, port: 443}]
"#,
        ));
        let policy = build_network_policy(&agent).expect("a policy");
        assert_golden("networkpolicy", &policy);
    }

    #[test]
    fn no_peers_denies_all_ingress_and_leaves_egress_open() {
        let policy = build_network_policy(&validated(spec("networkPolicy: {}"))).expect("a policy");
        let spec = policy.spec.expect("spec");
        assert_eq!(spec.ingress, Some(Vec::new()));
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        assert_eq!(spec.egress, None);
    }
}
