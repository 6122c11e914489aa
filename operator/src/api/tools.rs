//! `spec.toolServers` (and its one-server shorthand `spec.gateway`): the MCP servers (AgentCore
//! Gateways or any MCP server speaking streamable HTTP) whose tools the model may call. Defaults
//! come from the agent's configuration type.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use voice_config::GatewayConfig;

use super::{Duration, KeyRef};

/// One named MCP server of `toolServers`: the settings of `gateway`, plus a name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolServerSpec {
    /// Names the server in status, metrics and, when two servers offer a tool of the same
    /// name, in the tool's name (`<server>___<tool>`): lowercase letters, digits and '-',
    /// starting with a letter, at most 32 characters. Unique within the list.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    #[serde(flatten)]
    pub server: ToolGatewaySpec,
}

/// Where tools come from and how they are called.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolGatewaySpec {
    /// The MCP endpoint, e.g.
    /// `https://<gateway-id>.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://\S+$"))]
    pub url: String,

    /// How the agent authenticates to the gateway. Defaults to no authentication.
    #[serde(default)]
    pub auth: ToolGatewayAuth,

    /// Tools offered to the model, by name with or without the gateway's target prefix
    /// (`target___tool`). Empty: every tool the gateway lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 256)))]
    pub allowed_tools: Vec<String>,

    /// Longest a tool call may take before the model is told it timed out (100ms to 5m).
    #[serde(default = "default_call_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('100ms') && duration(self) <= duration('5m')").message("callTimeout must be between 100ms and 5m"))]
    pub call_timeout: Duration,

    /// Tool calls one session runs at once (1 to 64); more wait for a free slot.
    #[serde(default = "default_max_concurrent_calls")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrent_calls: i32,
}

/// Authentication to the tool gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("(self.type == 'Bearer') == has(self.tokenSecretRef)")
        .message("auth.tokenSecretRef is required with type Bearer and only used with it"),
    validation = Rule::new("self.type == 'SigV4' || (!has(self.region) && !has(self.service))")
        .message("auth.region and auth.service are only used with type SigV4")
        .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
pub struct ToolGatewayAuth {
    /// `None`; `Bearer`: an OAuth access token or API key from a Secret, sent as
    /// `Authorization: Bearer` (AgentCore Gateway with a JWT authorizer); `SigV4`: AWS
    /// Signature V4 with the pod's AWS identity (AgentCore Gateway with IAM authorization).
    #[serde(default, rename = "type")]
    pub type_: ToolGatewayAuthType,

    /// Bearer: the Secret key holding the token. Mounted as a file the agent re-reads, so
    /// refreshing the token in the Secret needs no restart and rolls no pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<KeyRef>,

    /// SigV4: signing region. Defaults to the pod's AWS region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// SigV4: signing service name. Defaults to `bedrock-agentcore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub service: Option<String>,
}

/// The gateway authentication type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ToolGatewayAuthType {
    #[default]
    None,
    Bearer,
    SigV4,
}

fn default_call_timeout() -> Duration {
    GatewayConfig::new("").call_timeout.into()
}
fn default_max_concurrent_calls() -> i32 {
    i32::try_from(GatewayConfig::new("").max_concurrent_calls).unwrap_or(i32::MAX)
}
