//! Tool gateway settings: where the MCP server is and how the agent authenticates to it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The SigV4 signing service of AgentCore Gateway, the default for SigV4 authentication.
pub const DEFAULT_SIGV4_SERVICE: &str = "bedrock-agentcore";

/// Where tools come from and how they are called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// The MCP endpoint, e.g. `https://<id>.gateway.bedrock-agentcore.<region>.amazonaws.com/mcp`.
    pub url: String,
    #[serde(default)]
    pub auth: GatewayAuth,
    /// Tools offered to the model, by name with or without the gateway target prefix
    /// (`target___tool`). Empty: every tool the gateway lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// Longest a tool call may take before the model is told it timed out.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Tool calls one session runs at once; more wait for a free slot (within the timeout).
    #[serde(default = "default_max_concurrent_calls")]
    pub max_concurrent_calls: u32,
}

/// How the agent authenticates to the gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum GatewayAuth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`, the token read from a file (re-read when it changes, so
    /// a rotated Secret needs no restart) or from an environment variable.
    #[serde(rename_all = "camelCase")]
    Bearer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_env: Option<String>,
    },
    /// AWS SigV4 with the default credential chain, for gateways using IAM authorization.
    #[serde(rename = "SigV4", rename_all = "camelCase")]
    SigV4 {
        /// Signing region; default: the AWS default chain.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Signing service name.
        #[serde(default = "default_sigv4_service")]
        service: String,
    },
}

impl GatewayConfig {
    /// A gateway at `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: GatewayAuth::default(),
            allowed_tools: Vec::new(),
            call_timeout: default_call_timeout(),
            max_concurrent_calls: default_max_concurrent_calls(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return invalid(
                "gateway.url",
                format!("{:?} must start with https:// or http://", self.url),
            );
        }
        if self.call_timeout < Duration::from_millis(100) || self.call_timeout > Duration::from_secs(300) {
            return invalid("gateway.callTimeout", "must be between 100ms and 5m".into());
        }
        if !(1..=64).contains(&self.max_concurrent_calls) {
            return invalid("gateway.maxConcurrentCalls", "must be between 1 and 64".into());
        }
        match &self.auth {
            // The value is not echoed: it may be the token itself, put there by mistake.
            GatewayAuth::Bearer {
                token_env: Some(variable),
                ..
            } if !is_variable_name(variable) => invalid(
                "gateway.auth.tokenEnv",
                "must name an environment variable (letters, digits, _), not hold the token".into(),
            ),
            GatewayAuth::Bearer { token_file, token_env } if token_file.is_some() == token_env.is_some() => invalid(
                "gateway.auth",
                "Bearer needs exactly one of tokenFile and tokenEnv".into(),
            ),
            GatewayAuth::SigV4 { service, .. } if service.trim().is_empty() => {
                invalid("gateway.auth.service", "must not be empty".into())
            }
            _ => Ok(()),
        }
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn default_call_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_concurrent_calls() -> u32 {
    4
}
fn default_sigv4_service() -> String {
    DEFAULT_SIGV4_SERVICE.into()
}
