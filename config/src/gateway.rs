//! Tool servers: the MCP servers (AgentCore Gateways or any streamable-HTTP MCP server) whose
//! tools the model may call, how the agent authenticates to each, and which of their tools it
//! offers. `toolServers` is the list; `gateway` is the single-server shorthand of earlier
//! versions (a server named [`GATEWAY_SERVER_NAME`]); a file sets one or the other.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The SigV4 signing service of AgentCore Gateway, the default for SigV4 authentication.
pub const DEFAULT_SIGV4_SERVICE: &str = "bedrock-agentcore";
/// The name of the server the `gateway` shorthand describes.
pub const GATEWAY_SERVER_NAME: &str = "gateway";
/// Longest server name: it prefixes tool names (Bedrock allows 64 characters) and names the
/// operator's volumes (63).
pub const MAX_SERVER_NAME_LEN: usize = 32;
/// Most tool servers one agent uses: each is a connection and a loader task per process.
pub const MAX_TOOL_SERVERS: usize = 16;

/// One MCP server: where it is, how the agent authenticates, which tools it offers, and the
/// limits on calls to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolServerConfig {
    /// Names the server in tool names that collide, metrics, logs and status: lowercase
    /// letters, digits and '-', starting with a letter, at most 32 characters. Defaults to
    /// `gateway`, the name of the `gateway` shorthand's server; names in `toolServers` are unique.
    #[serde(default = "default_server_name", skip_serializing_if = "is_default_server_name")]
    pub name: String,
    /// The MCP endpoint, e.g. `https://<id>.gateway.bedrock-agentcore.<region>.amazonaws.com/mcp`.
    pub url: String,
    #[serde(default)]
    pub auth: GatewayAuth,
    /// Tools offered to the model, by name with or without the gateway target prefix
    /// (`target___tool`). Empty: every tool the server lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// Longest a tool call may take before the model is told it timed out.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Tool calls of this server one session runs at once; more wait for a free slot (within
    /// the timeout).
    #[serde(default = "default_max_concurrent_calls")]
    pub max_concurrent_calls: u32,
}

/// The `gateway` shorthand: one server, named `gateway`.
pub type GatewayConfig = ToolServerConfig;

/// How the agent authenticates to a tool server.
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

/// Where a server's settings sit in the file, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerSection {
    /// `gateway`, the shorthand.
    Gateway,
    /// An entry of `toolServers`.
    List,
}

impl ServerSection {
    /// The field path of `suffix` in this section (static, as [`ConfigError`] wants it).
    fn field(self, suffix: &'static str) -> &'static str {
        macro_rules! fields {
            ($($suffix:literal),*) => {
                match (self, suffix) {
                    $((Self::Gateway, $suffix) => concat!("gateway.", $suffix),
                      (Self::List, $suffix) => concat!("toolServers.", $suffix),)*
                    (Self::Gateway, _) => "gateway",
                    (Self::List, _) => "toolServers",
                }
            };
        }
        fields!(
            "name",
            "url",
            "callTimeout",
            "maxConcurrentCalls",
            "auth",
            "auth.tokenEnv",
            "auth.service"
        )
    }
}

impl ToolServerConfig {
    /// A server at `url`, named `gateway`, with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            name: default_server_name(),
            url: url.into(),
            auth: GatewayAuth::default(),
            allowed_tools: Vec::new(),
            call_timeout: default_call_timeout(),
            max_concurrent_calls: default_max_concurrent_calls(),
        }
    }

    /// The same server under another name.
    pub fn named(self, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..self
        }
    }

    pub(super) fn validate(&self, section: ServerSection) -> Result<(), ConfigError> {
        // Entries of the list are named in the message, so the field path stays static.
        let which = match section {
            ServerSection::Gateway => String::new(),
            ServerSection::List => format!("server {:?}: ", self.name),
        };
        let invalid = |suffix, message: String| {
            Err(ConfigError::Invalid {
                field: section.field(suffix),
                message: format!("{which}{message}"),
            })
        };
        if let Some(problem) = server_name_problem(&self.name) {
            return invalid("name", problem);
        }
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return invalid("url", format!("{:?} must start with https:// or http://", self.url));
        }
        if self.call_timeout < Duration::from_millis(100) || self.call_timeout > Duration::from_secs(300) {
            return invalid("callTimeout", "must be between 100ms and 5m".into());
        }
        if !(1..=64).contains(&self.max_concurrent_calls) {
            return invalid("maxConcurrentCalls", "must be between 1 and 64".into());
        }
        match &self.auth {
            // The value is not echoed: it may be the token itself, put there by mistake.
            GatewayAuth::Bearer {
                token_env: Some(variable),
                ..
            } if !is_variable_name(variable) => invalid(
                "auth.tokenEnv",
                "must name an environment variable (letters, digits, _), not hold the token".into(),
            ),
            GatewayAuth::Bearer { token_file, token_env } if token_file.is_some() == token_env.is_some() => {
                invalid("auth", "Bearer needs exactly one of tokenFile and tokenEnv".into())
            }
            GatewayAuth::SigV4 { service, .. } if service.trim().is_empty() => {
                invalid("auth.service", "must not be empty".into())
            }
            _ => Ok(()),
        }
    }
}

/// Checks `gateway` and `toolServers` together: one form or the other, names unique.
pub(super) fn validate_servers(
    gateway: Option<&ToolServerConfig>,
    list: &[ToolServerConfig],
) -> Result<(), ConfigError> {
    if gateway.is_some() && !list.is_empty() {
        return Err(ConfigError::Invalid {
            field: "toolServers",
            message: "set either gateway (one server) or toolServers (a list), not both; \
                      gateway is the same as a toolServers entry named \"gateway\""
                .into(),
        });
    }
    if let Some(gateway) = gateway {
        return gateway.validate(ServerSection::Gateway);
    }
    if list.len() > MAX_TOOL_SERVERS {
        return Err(ConfigError::Invalid {
            field: "toolServers",
            message: format!("at most {MAX_TOOL_SERVERS} servers"),
        });
    }
    for (i, server) in list.iter().enumerate() {
        server.validate(ServerSection::List)?;
        if list[..i].iter().any(|earlier| earlier.name == server.name) {
            return Err(ConfigError::Invalid {
                field: "toolServers.name",
                message: format!("{:?} names two servers; names must be unique", server.name),
            });
        }
    }
    Ok(())
}

/// AgentCore Gateway's separator between a target and its tool (`target___tool`), also the
/// separator of the server prefix that tells apart tools of the same name on two servers.
pub const TOOL_NAME_SEPARATOR: &str = "___";

/// The tool part of a gateway tool name (`weather___get_forecast` → `get_forecast`).
pub fn short_tool_name(name: &str) -> &str {
    name.rsplit_once(TOOL_NAME_SEPARATOR)
        .map_or(name, |(_, tool)| tool)
        .trim()
}

/// Model-facing names for one server's tools: the short name of a gateway tool
/// (`target___tool` → `tool`) unless two of its tools share it, then the full name.
pub fn model_tool_names(names: &[&str]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in names {
        *counts.entry(short_tool_name(name)).or_default() += 1;
    }
    names
        .iter()
        .map(|name| {
            let short = short_tool_name(name);
            if !short.is_empty() && counts.get(short) == Some(&1) {
                short.to_owned()
            } else {
                (*name).to_owned()
            }
        })
        .collect()
}

/// Model-facing names for the tools of several servers (`(server name, its tool names)`, in
/// configuration order): each server's [`model_tool_names`], prefixed with the server's name
/// (`<server>___<name>`) where another server offers the same name, so the model tells them
/// apart and calls go to the right server. `None` for a tool left out because an earlier
/// server already offers its (prefixed) name, which only a server naming its tools
/// `<server>___<tool>` after another server can cause. The agent names its tools this way, and
/// the operator's `status.discoveredTools` shows the result.
pub fn resolve_tool_names(servers: &[(&str, Vec<&str>)]) -> Vec<Vec<Option<String>>> {
    let per_server: Vec<Vec<String>> = servers.iter().map(|(_, names)| model_tool_names(names)).collect();
    let mut offered_by: HashMap<&str, usize> = HashMap::new();
    for names in &per_server {
        let mut unique: Vec<&str> = names.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        for name in unique {
            *offered_by.entry(name).or_default() += 1;
        }
    }
    let mut taken = HashSet::new();
    servers
        .iter()
        .zip(&per_server)
        .map(|((server, _), names)| {
            names
                .iter()
                .map(|name| {
                    let resolved = if offered_by.get(name.as_str()).copied().unwrap_or(0) > 1 {
                        format!("{server}{TOOL_NAME_SEPARATOR}{name}")
                    } else {
                        name.clone()
                    };
                    taken.insert(resolved.clone()).then_some(resolved)
                })
                .collect()
        })
        .collect()
}

/// Whether `allowedTools` lets a tool through: by its full or its short name (an empty list
/// allows every tool). The agent and the operator's discovery apply the same rule.
pub fn tool_allowed(allowed_tools: &[String], name: &str) -> bool {
    allowed_tools.is_empty() || allowed_tools.iter().any(|a| a == name || a == short_tool_name(name))
}

/// Why a server name is refused, if it is.
pub fn server_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let valid = starts_with_letter
        && name.len() <= MAX_SERVER_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    (!valid).then(|| {
        format!(
            "{name:?} is not a valid server name: 1 to {MAX_SERVER_NAME_LEN} lowercase letters, digits and '-', \
             starting with a letter and not ending with '-'"
        )
    })
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn default_server_name() -> String {
    GATEWAY_SERVER_NAME.into()
}
fn is_default_server_name(name: &str) -> bool {
    name == GATEWAY_SERVER_NAME
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

#[cfg(test)]
mod tests;
