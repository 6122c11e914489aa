//! Step 5: the status the VoiceAgent should show (pure), and writing it only when it differs
//! from what it shows.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::Rejection;
use super::build::MANAGER;
use crate::api::{
    ACCEPTED, ConditionStatus, DiscoveredTools, READY, TOOL_SERVERS_REACHABLE, TelephonyStatus, VoiceAgent,
    VoiceAgentStatus,
};
use crate::error::{Error, Result};
use crate::tool_discovery::Listing;

/// What the reconcile found, for the status.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    pub generation: Option<i64>,
    /// `Err` when the spec was not accepted.
    pub accepted: Result<(), &'a Rejection>,
    /// The live Deployment, if any (after a rejection, the one from the last accepted spec).
    pub deployment: Option<&'a Deployment>,
    /// Children that could not be applied because someone else owns them.
    pub conflicts: &'a [String],
    /// The URL, when the spec was accepted.
    pub url: Option<String>,
    /// The carriers' webhook URLs, when the spec was accepted (`None` without telephony).
    pub webhooks: Option<Option<TelephonyStatus>>,
    pub selector: String,
    /// Each tool server's listing, in spec order; `None` when the servers were not looked at
    /// (a rejected spec): the status keeps what it showed.
    pub tool_servers: Option<&'a [(String, Listing)]>,
}

/// A condition's new value.
struct Verdict {
    status: ConditionStatus,
    reason: &'static str,
    message: String,
}

/// The status to show. Conditions keep their `lastTransitionTime` unless their status flips.
pub fn desired_status(
    previous: Option<&VoiceAgentStatus>,
    observation: &Observation<'_>,
    now: &Time,
) -> VoiceAgentStatus {
    let accepted = match observation.accepted {
        Ok(()) => Verdict {
            status: ConditionStatus::True,
            reason: "Accepted",
            message: "the spec is valid and every reference resolves".into(),
        },
        Err(rejection) => Verdict {
            status: ConditionStatus::False,
            reason: rejection.reason.as_str(),
            message: rejection.message.clone(),
        },
    };
    let ready = ready(observation);
    let condition = |type_: &str, v: Verdict| {
        let kept = previous
            .and_then(|p| p.condition(type_))
            .filter(|c| c.status == v.status.as_str())
            .map(|c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: v.status.as_str().into(),
            reason: v.reason.into(),
            message: v.message,
            observed_generation: observation.generation,
            last_transition_time: kept.unwrap_or_else(|| now.clone()),
        }
    };
    let deployment_status = observation.deployment.and_then(|d| d.status.as_ref());
    let mut conditions = vec![condition(ACCEPTED, accepted), condition(READY, ready)];
    let discovered_tools = match observation.tool_servers {
        Some(listings) => {
            if !listings.is_empty() {
                conditions.push(condition(TOOL_SERVERS_REACHABLE, reachability(listings)));
            }
            discovered(listings)
        }
        None => {
            let previous = previous.map(|p| (p.condition(TOOL_SERVERS_REACHABLE), p.discovered_tools.clone()));
            let (kept, tools) = previous.unwrap_or_default();
            conditions.extend(kept.cloned());
            tools
        }
    };
    VoiceAgentStatus {
        observed_generation: observation.generation,
        conditions,
        discovered_tools,
        // After a rejection the last URL stays true while the last workload runs.
        url: observation.url.clone().or_else(|| previous.and_then(|p| p.url.clone())),
        // Likewise the webhook URLs the carriers were given.
        telephony: match &observation.webhooks {
            Some(webhooks) => webhooks.clone(),
            None => previous.and_then(|p| p.telephony.clone()),
        },
        replicas: Some(deployment_status.and_then(|s| s.replicas).unwrap_or(0)),
        ready_replicas: Some(deployment_status.and_then(|s| s.ready_replicas).unwrap_or(0)),
        selector: Some(observation.selector.clone()),
    }
}

/// The tools of each server that listed them, with the names the model gets for them.
fn discovered(listings: &[(String, Listing)]) -> Vec<DiscoveredTools> {
    let listed: Vec<(&str, &[String])> = listings
        .iter()
        .filter_map(|(server, listing)| match listing {
            Listing::Tools(tools) => Some((server.as_str(), tools.as_slice())),
            Listing::Unreachable(_) | Listing::NotListed => None,
        })
        .collect();
    let names: Vec<(&str, Vec<&str>)> = listed
        .iter()
        .map(|(server, tools)| (*server, tools.iter().map(String::as_str).collect()))
        .collect();
    listed
        .iter()
        .zip(voice_config::resolve_tool_names(&names))
        .map(|((server, tools), resolved)| {
            let model_names: Vec<String> = resolved.into_iter().flatten().collect();
            DiscoveredTools {
                server: (*server).to_owned(),
                tools: tools.to_vec(),
                model_names: if model_names.as_slice() == *tools {
                    Vec::new()
                } else {
                    model_names
                },
            }
        })
        .collect()
}

/// `ToolServersReachable`: false while any server cannot be asked for its tools.
fn reachability(listings: &[(String, Listing)]) -> Verdict {
    let unreachable: Vec<String> = listings
        .iter()
        .filter_map(|(server, listing)| match listing {
            Listing::Unreachable(reason) => Some(format!("tool server {server:?} unreachable: {reason}")),
            _ => None,
        })
        .collect();
    let not_listed: Vec<&str> = listings
        .iter()
        .filter(|(_, listing)| *listing == Listing::NotListed)
        .map(|(server, _)| server.as_str())
        .collect();
    let not_listed_note = if not_listed.is_empty() {
        String::new()
    } else {
        format!(
            "; SigV4 servers are not listed by the operator: {}",
            not_listed.join(", ")
        )
    };
    if !unreachable.is_empty() {
        Verdict {
            status: ConditionStatus::False,
            reason: "Unreachable",
            message: format!(
                "{}; agents offer the other servers' tools meanwhile{not_listed_note}",
                unreachable.join("; ")
            ),
        }
    } else if not_listed.len() == listings.len() {
        Verdict {
            status: ConditionStatus::Unknown,
            reason: "NotListed",
            message: format!(
                "SigV4 servers are not listed by the operator: {}",
                not_listed.join(", ")
            ),
        }
    } else {
        Verdict {
            status: ConditionStatus::True,
            reason: "Reachable",
            message: format!("every tool server listed its tools{not_listed_note}"),
        }
    }
}

fn ready(observation: &Observation<'_>) -> Verdict {
    let not_ready = |reason, message: String| Verdict {
        status: ConditionStatus::False,
        reason,
        message,
    };
    if let Err(rejection) = observation.accepted {
        return not_ready("NotAccepted", format!("not accepted: {}", rejection.message));
    }
    if !observation.conflicts.is_empty() {
        return not_ready("Conflict", observation.conflicts.join("; "));
    }
    let Some(deployment) = observation.deployment else {
        return not_ready("Progressing", "waiting for the Deployment".into());
    };
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let ready_count = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    if wanted == 0 {
        return not_ready("ScaledToZero", "the agent is scaled to zero replicas".into());
    }
    let available = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Available" && c.status == "True");
    let observed = status.observed_generation >= deployment.metadata.generation;
    if available && ready_count > 0 && observed {
        let message = if updated < wanted {
            format!("{ready_count}/{wanted} replicas ready; rolling out ({updated}/{wanted} updated)")
        } else {
            format!("{ready_count}/{wanted} replicas ready")
        };
        return Verdict {
            status: ConditionStatus::True,
            reason: "Available",
            message,
        };
    }
    not_ready("Progressing", format!("{ready_count}/{wanted} replicas ready"))
}

/// A condition that changed, for an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// Conditions whose status or reason changed.
pub fn transitions(previous: Option<&VoiceAgentStatus>, next: &VoiceAgentStatus) -> Vec<Transition> {
    next.conditions
        .iter()
        .filter(|c| {
            previous
                .and_then(|p| p.condition(&c.type_))
                .is_none_or(|old| old.status != c.status || old.reason != c.reason)
        })
        .map(|c| Transition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect()
}

/// Writes `status` unless the object already shows it. Returns whether it wrote.
pub async fn write_status(
    api: &Api<VoiceAgent>,
    name: &str,
    previous: Option<&VoiceAgentStatus>,
    status: &VoiceAgentStatus,
) -> Result<bool> {
    if previous == Some(status) {
        return Ok(false);
    }
    write_status_unchecked(api, name, status).await?;
    Ok(true)
}

/// Server-side applies `status` to the status subresource.
pub async fn write_status_unchecked(api: &Api<VoiceAgent>, name: &str, status: &VoiceAgentStatus) -> Result<()> {
    let body = json!({
        "apiVersion": crate::api::api_version(),
        "kind": "VoiceAgent",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube(format!("writing status of VoiceAgent {name}")))?;
    Ok(())
}

#[cfg(test)]
mod tests;
