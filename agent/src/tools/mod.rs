//! Tools the model can call, served by MCP tool servers (AgentCore Gateways or any
//! streamable-HTTP MCP server): discovery per server ([`server`]), composition of every
//! reachable server's tools under names unique across them ([`names`]), and bounded, timed
//! calls routed to the server that offers the tool, whose failures become results the model can
//! talk about. A server that cannot be reached only takes its own tools away.

mod auth;
mod loader;
mod mcp;
mod names;
mod server;

pub use loader::load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::metrics::{Metrics, ToolLabels, ToolNameLabels};
use crate::model::ToolSpec;
use server::Connected;

/// How a call ended (the `outcome` label of the tool metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The tool ran and reported an error (MCP `isError`).
    Error,
    Timeout,
    /// The gateway could not be reached or failed the request.
    Failed,
    /// The model named a tool that is not offered.
    Unknown,
    /// Too many calls were already running in the session.
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Failed => "failed",
            Self::Unknown => "unknown_tool",
            Self::Rejected => "rejected",
        }
    }
}

/// The result handed back to the model (and shown to the client).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub outcome: Outcome,
    /// The tool's output (JSON or text), or an explanation of the failure.
    pub content: String,
}

impl ToolOutcome {
    pub fn failure(outcome: Outcome, content: impl Into<String>) -> Self {
        Self {
            outcome,
            content: content.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.outcome != Outcome::Success
    }
}

/// One configured server as the toolbox knows it.
struct ServerEntry {
    name: String,
    /// `None` while the server cannot be reached: its tools are absent.
    connected: Option<Arc<Connected>>,
    call_timeout: Duration,
    max_concurrent_calls: usize,
}

struct Tool {
    model_name: String,
    /// The name the server knows the tool by.
    server_tool_name: String,
    /// Index into [`Toolbox::servers`].
    server: usize,
}

/// What one server contributes, for status reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerReport {
    pub name: String,
    pub reachable: bool,
    /// The model-facing names of the tools it offers.
    pub tools: Vec<String>,
}

/// Every reachable server's tools, ready to be offered to sessions and called.
pub struct Toolbox {
    servers: Vec<ServerEntry>,
    tools: Vec<Tool>,
    specs: Arc<[ToolSpec]>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Mcp(#[from] mcp::McpError),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// One session's share of each server: the calls it may run on it at once.
pub struct CallSlots(Vec<Arc<Semaphore>>);

impl Toolbox {
    /// The toolbox of the servers as they are now. Names are made unique across servers
    /// ([`names::resolve`]); tools whose names the model would refuse are reported and left out.
    fn compose(servers: Vec<ServerEntry>, metrics: Arc<Metrics>) -> Self {
        let listed: Vec<(&str, Vec<&str>)> = servers
            .iter()
            .map(|s| {
                let names = s
                    .connected
                    .as_ref()
                    .map(|c| c.tools.iter().map(|t| t.name.as_ref()).collect())
                    .unwrap_or_default();
                (s.name.as_str(), names)
            })
            .collect();
        let resolved = names::resolve(&listed);
        let mut tools = Vec::new();
        let mut specs = Vec::new();
        for (index, (server, model_names)) in servers.iter().zip(resolved).enumerate() {
            let Some(connected) = &server.connected else { continue };
            for (tool, model_name) in connected.tools.iter().zip(model_names) {
                let Some(model_name) = model_name else {
                    warn!(server = %server.name, tool = %tool.name, "tool skipped: an earlier server offers a tool of the same name");
                    continue;
                };
                if let Some(problem) = names::model_name_problem(&model_name) {
                    warn!(server = %server.name, tool = %tool.name, problem, "tool skipped: the model would refuse its name");
                    continue;
                }
                specs.push(ToolSpec {
                    name: model_name.clone(),
                    description: tool.description.as_deref().unwrap_or(&model_name).to_owned(),
                    input_schema: Value::Object((*tool.input_schema).clone()),
                });
                tools.push(Tool {
                    model_name,
                    server_tool_name: tool.name.to_string(),
                    server: index,
                });
            }
        }
        let toolbox = Self {
            servers,
            tools,
            specs: specs.into(),
            metrics,
        };
        info!(
            offered = toolbox.tools.len(),
            tools = ?toolbox.tools.iter().map(|t| t.model_name.as_str()).collect::<Vec<_>>(),
            unreachable = ?toolbox.unreachable(),
            "tools offered to the model"
        );
        toolbox
    }

    /// The tools as offered to the model.
    pub fn specs(&self) -> Arc<[ToolSpec]> {
        self.specs.clone()
    }

    /// The longest a call of the named tool may take: its server's call timeout (the longest
    /// of any server for a tool no server offers, which fails at once anyway).
    pub fn call_timeout(&self, model_name: &str) -> Duration {
        match self.tool(model_name) {
            Some(tool) => self.servers[tool.server].call_timeout,
            None => self
                .servers
                .iter()
                .map(|s| s.call_timeout)
                .max()
                .unwrap_or(Duration::ZERO),
        }
    }

    /// A new session's share of each server's calls.
    pub fn call_slots(&self) -> CallSlots {
        CallSlots(
            self.servers
                .iter()
                .map(|s| Arc::new(Semaphore::new(s.max_concurrent_calls.max(1))))
                .collect(),
        )
    }

    /// What each server contributes, in configuration order.
    pub fn servers(&self) -> Vec<ServerReport> {
        self.servers
            .iter()
            .enumerate()
            .map(|(index, server)| ServerReport {
                name: server.name.clone(),
                reachable: server.connected.is_some(),
                tools: self
                    .tools
                    .iter()
                    .filter(|t| t.server == index)
                    .map(|t| t.model_name.clone())
                    .collect(),
            })
            .collect()
    }

    /// Names of the servers that could not be reached at their last attempt.
    pub fn unreachable(&self) -> Vec<&str> {
        self.servers
            .iter()
            .filter(|s| s.connected.is_none())
            .map(|s| s.name.as_str())
            .collect()
    }

    fn tool(&self, model_name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.model_name == model_name)
    }

    /// Calls a tool by its model-facing name, on the server that offers it. Never fails: every
    /// problem becomes an error result the model can speak about.
    /// `meta` goes with the request as MCP `_meta` (the caller's metadata).
    pub async fn call(
        &self,
        model_name: &str,
        input: Value,
        meta: Option<&serde_json::Map<String, Value>>,
    ) -> ToolOutcome {
        let started = Instant::now();
        let found = self
            .tool(model_name)
            .and_then(|tool| Some((tool, self.servers[tool.server].connected.as_ref()?)));
        let outcome = match found {
            None => ToolOutcome::failure(Outcome::Unknown, format!("there is no tool named {model_name:?}")),
            Some((tool, connected)) => {
                let arguments = match input {
                    Value::Object(map) => map,
                    Value::Null => Default::default(),
                    other => {
                        let mut map = serde_json::Map::new();
                        map.insert("input".into(), other);
                        map
                    }
                };
                let timeout = self.servers[tool.server].call_timeout;
                match tokio::time::timeout(
                    timeout,
                    connected.client.call(&tool.server_tool_name, arguments, meta.cloned()),
                )
                .await
                {
                    Ok(Ok(result)) => from_result(result),
                    Ok(Err(error)) => ToolOutcome::failure(
                        Outcome::Failed,
                        format!("the tool {model_name} could not be reached: {error}"),
                    ),
                    Err(_) => ToolOutcome::failure(
                        Outcome::Timeout,
                        format!(
                            "the tool {model_name} did not answer within {}",
                            humantime::format_duration(timeout)
                        ),
                    ),
                }
            }
        };
        self.record(model_name, outcome.outcome, started.elapsed());
        outcome
    }

    /// Counts a call (also those refused before reaching the server).
    pub fn record(&self, model_name: &str, outcome: Outcome, took: Duration) {
        // Names outside the offered set collapse to one label, so a model inventing names
        // cannot grow the series.
        let tool = if self.tool(model_name).is_some() {
            model_name
        } else {
            "unknown"
        };
        let labels = ToolLabels {
            tool: tool.to_owned(),
            outcome: outcome.as_str(),
        };
        self.metrics
            .tool_call_duration
            .get_or_create(&ToolNameLabels {
                tool: labels.tool.clone(),
            })
            .observe(took.as_secs_f64());
        self.metrics.tool_calls.get_or_create(&labels).inc();
    }
}

impl CallSlots {
    /// Waits for a free slot on the server that offers `model_name`. A tool no server offers
    /// needs none (its call fails at once).
    pub async fn acquire(&self, toolbox: &Toolbox, model_name: &str) -> Option<OwnedSemaphorePermit> {
        let slots = self.0.get(toolbox.tool(model_name)?.server)?.clone();
        slots.acquire_owned().await.ok()
    }
}

/// Flattens an MCP result to the text given to the model.
fn from_result(result: CallToolResult) -> ToolOutcome {
    let mut parts = Vec::new();
    if let Some(structured) = &result.structured_content {
        parts.push(structured.to_string());
    } else {
        for block in &result.content {
            match block {
                ContentBlock::Text(text) => parts.push(text.text.clone()),
                other => parts.push(serde_json::to_string(other).unwrap_or_default()),
            }
        }
    }
    let outcome = if result.is_error == Some(true) {
        Outcome::Error
    } else {
        Outcome::Success
    };
    ToolOutcome {
        outcome,
        content: parts.join("\n"),
    }
}
