//! `status`: what the operator observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::TelephonyStatus;

/// Condition types.
pub const ACCEPTED: &str = "Accepted";
pub const READY: &str = "Ready";
/// Present when the spec names tool servers: whether the operator could list each one's tools.
pub const TOOL_SERVERS_REACHABLE: &str = "ToolServersReachable";

/// Observed state of a VoiceAgent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VoiceAgentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Accepted`: the spec is valid and everything it references exists. `Ready`: the agent
    /// is available (its Deployment has the wanted replicas ready) and exposed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// WebSocket URL clients connect to: `wss://<host><path>` when exposed with TLS, the
    /// in-cluster Service URL when not exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// The webhook URLs to enter in each enabled carrier's console (with `spec.telephony`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephony: Option<TelephonyStatus>,

    /// Agent pods (all revisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Agent pods ready to take sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,

    /// Label selector of the agent pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The tools each tool server offered when the operator last listed them (MCP
    /// `tools/list`, after the server's `allowedTools`), by server. A server that could not be
    /// reached, or whose SigV4 authentication only the agent can perform, has no entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["server".into()]))]
    pub discovered_tools: Vec<DiscoveredTools>,
}

/// The tools one server offered.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredTools {
    /// The server's name (`gateway` for `spec.gateway`).
    pub server: String,
    /// Tool names as the server gives them.
    #[serde(default)]
    pub tools: Vec<String>,
    /// The names the model is given for these tools, in the same order, when any differs from
    /// `tools`: an AgentCore Gateway name `target___tool` is shortened to `tool` when no other
    /// tool of the server has that short name, and a name two servers offer is prefixed with
    /// the server's name (`crm___lookup`). A tool whose name an earlier server's tool already
    /// takes is left out. Worked out from the servers listed here, as the agent does from the
    /// servers it reaches (a SigV4 server, which the operator does not list, can add prefixes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_names: Vec<String>,
}

impl VoiceAgentStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}
