//! The ConfigMap holding the agent's configuration file.

use k8s_openapi::api::core::v1::ConfigMap;

use super::metadata;
use crate::reconcile::agent_config::CONFIG_FILE;
use crate::reconcile::validate::ValidatedAgent;

/// Name of the agent's ConfigMap.
pub fn configmap_name(agent: &str) -> String {
    format!("{agent}-config")
}

/// The agent's `AgentConfig`, serialized by the agent crate's own type.
pub fn build_configmap(agent: &ValidatedAgent) -> ConfigMap {
    ConfigMap {
        metadata: metadata(agent, configmap_name(&agent.name)),
        data: Some([(CONFIG_FILE.to_owned(), agent.config_yaml.clone())].into()),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{spec, validated};
    use crate::reconcile::build::golden::assert_golden;

    #[test]
    fn simulated_defaults() {
        assert_golden("configmap_simulated", &build_configmap(&validated(Default::default())));
    }

    #[test]
    fn nova_sonic_with_a_mounted_prompt() {
        let agent = validated(spec(
            r#"
model:
  provider: NovaSonic
  novaSonic:
    region: us-east-1
    voice: tiffany
    temperature: 0.7
    endpointingSensitivity: MEDIUM
prompt:
  systemFrom:
    secretKeyRef: {name: prompts, key: support}
session:
  maxSessionsPerReplica: 40
  drainTimeout: 10m
"#,
        ));
        assert_golden("configmap_nova_sonic", &build_configmap(&agent));
    }
}
