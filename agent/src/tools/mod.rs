//! Tools the model can call, served by an MCP gateway (AgentCore Gateway or any
//! streamable-HTTP MCP server): discovery, name mapping, and bounded, timed calls whose
//! failures become results the model can talk about.

mod auth;
mod mcp;
mod names;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;
use tracing::{info, warn};

use crate::metrics::{Metrics, ToolLabels, ToolNameLabels};
use crate::model::ToolSpec;
use auth::Authenticator;
use mcp::McpGateway;
use voice_config::GatewayConfig;

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

struct Tool {
    model_name: String,
    gateway_name: String,
}

/// The gateway's tools, ready to be offered to sessions and called.
pub struct Toolbox {
    gateway: McpGateway,
    tools: Vec<Tool>,
    specs: Arc<[ToolSpec]>,
    call_timeout: Duration,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Mcp(#[from] mcp::McpError),
}

impl Toolbox {
    /// Connects to the gateway and discovers its tools. Tools the allow-list excludes are left
    /// out; tools whose names the model would refuse are reported here, once, and left out.
    pub async fn load(config: &GatewayConfig, metrics: Arc<Metrics>) -> Result<Self, ToolError> {
        let auth = Arc::new(Authenticator::new(&config.auth).await?);
        let gateway = McpGateway::connect(&config.url, auth).await?;
        let listed = gateway.list_tools().await?;
        let allowed: Vec<_> = listed
            .iter()
            .filter(|t| names::allowed(&config.allowed_tools, &t.name))
            .collect();
        let gateway_names: Vec<&str> = allowed.iter().map(|t| t.name.as_ref()).collect();
        let mut tools = Vec::new();
        let mut specs = Vec::new();
        for (tool, model_name) in allowed.iter().zip(names::model_names(&gateway_names)) {
            if let Some(problem) = names::model_name_problem(&model_name) {
                warn!(tool = %tool.name, problem, "tool skipped: the model would refuse its name");
                continue;
            }
            specs.push(ToolSpec {
                name: model_name.clone(),
                description: tool.description.as_deref().unwrap_or(&model_name).to_owned(),
                input_schema: Value::Object((*tool.input_schema).clone()),
            });
            tools.push(Tool {
                model_name,
                gateway_name: tool.name.to_string(),
            });
        }
        for wanted in &config.allowed_tools {
            if !listed
                .iter()
                .any(|t| names::allowed(std::slice::from_ref(wanted), &t.name))
            {
                warn!(tool = %wanted, "allowed tool not offered by the gateway");
            }
        }
        info!(
            url = %config.url,
            listed = listed.len(),
            offered = tools.len(),
            tools = ?tools.iter().map(|t| t.model_name.as_str()).collect::<Vec<_>>(),
            "tools loaded from the gateway"
        );
        Ok(Self {
            gateway,
            tools,
            specs: specs.into(),
            call_timeout: config.call_timeout,
            metrics,
        })
    }

    /// The tools as offered to the model.
    pub fn specs(&self) -> Arc<[ToolSpec]> {
        self.specs.clone()
    }

    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Calls a tool by its model-facing name. Never fails: every problem becomes an error
    /// result the model can speak about.
    /// `meta` goes with the request as MCP `_meta` (the caller's metadata).
    pub async fn call(
        &self,
        model_name: &str,
        input: Value,
        meta: Option<&serde_json::Map<String, Value>>,
    ) -> ToolOutcome {
        let started = Instant::now();
        let outcome = match self.tools.iter().find(|t| t.model_name == model_name) {
            None => ToolOutcome::failure(Outcome::Unknown, format!("there is no tool named {model_name:?}")),
            Some(tool) => {
                let arguments = match input {
                    Value::Object(map) => map,
                    Value::Null => Default::default(),
                    other => {
                        let mut map = serde_json::Map::new();
                        map.insert("input".into(), other);
                        map
                    }
                };
                match tokio::time::timeout(
                    self.call_timeout,
                    self.gateway.call(&tool.gateway_name, arguments, meta.cloned()),
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
                            humantime::format_duration(self.call_timeout)
                        ),
                    ),
                }
            }
        };
        self.record(model_name, outcome.outcome, started.elapsed());
        outcome
    }

    /// Counts a call (also those refused before reaching the gateway).
    pub fn record(&self, model_name: &str, outcome: Outcome, took: Duration) {
        // Names outside the offered set collapse to one label, so a model inventing names
        // cannot grow the series.
        let tool = if self.tools.iter().any(|t| t.model_name == model_name) {
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
