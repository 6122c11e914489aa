//! Waiting on a VoiceAgent's status as the operator reports it: `Ready=True` for the current
//! generation, or a condition with a given status and reason.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use voice_operator::api::{READY, VoiceAgent};

use crate::wait::eventually;

/// The condition of type `type_`, if the status has one.
pub fn condition<'a>(agent: &'a VoiceAgent, type_: &str) -> Option<&'a Condition> {
    agent.status.as_ref().and_then(|s| s.condition(type_))
}

/// Waits until `name` is `Ready=True` for its current generation; returns it as it was then.
pub async fn wait_ready(agents: &Api<VoiceAgent>, name: &str, timeout: Duration) -> anyhow::Result<VoiceAgent> {
    eventually(&format!("VoiceAgent {name} Ready=True"), timeout, || async {
        let Some(agent) = agents.get_opt(name).await? else {
            return Ok(None);
        };
        let current = agent.status.as_ref().and_then(|s| s.observed_generation) == agent.metadata.generation;
        let ready = condition(&agent, READY).is_some_and(|c| c.status == "True");
        Ok((current && ready).then_some(agent))
    })
    .await
}

/// Waits until condition `type_` of `name` has `status` and `reason` for its current
/// generation; returns the condition.
pub async fn wait_condition(
    agents: &Api<VoiceAgent>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> anyhow::Result<Condition> {
    eventually(
        &format!("VoiceAgent {name} {type_}={status} ({reason})"),
        timeout,
        || async {
            let Some(agent) = agents.get_opt(name).await? else {
                return Ok(None);
            };
            Ok(condition(&agent, type_)
                .filter(|c| c.status == status && c.reason == reason)
                .filter(|c| c.observed_generation == agent.metadata.generation)
                .cloned())
        },
    )
    .await
}
