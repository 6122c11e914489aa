//! Plain HTTP endpoints: AgentCore's `/ping` and `/invocations`, Kubernetes probes, metrics.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Agent;

/// Longest `/invocations` body accepted: commands are tiny JSON objects, prompts at most a few KB.
const MAX_INVOCATION_BYTES: usize = 64 * 1024;

/// A JSON error body: `{"error": {"code": ..., "message": ...}}`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

pub async fn ping(State(agent): State<Arc<Agent>>) -> Json<serde_json::Value> {
    let state = agent.sessions.state();
    Json(json!({"status": state.status, "time_of_last_update": state.status_since}))
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(agent): State<Arc<Agent>>) -> Response {
    match agent.not_ready() {
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
        None => {
            // Ready, but saying which tool servers' tools are missing.
            let unreachable = agent.unreachable_tool_servers();
            if unreachable.is_empty() {
                (StatusCode::OK, "ready\n").into_response()
            } else {
                let detail = format!("ready; tool servers unreachable: {}\n", unreachable.join(", "));
                (StatusCode::OK, detail).into_response()
            }
        }
    }
}

pub async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let alive = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    agent
        .metrics
        .runtime_tasks
        .set(i64::try_from(alive).unwrap_or(i64::MAX));
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &agent.registry).is_err() {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "metrics", "could not encode metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Invocation {
    command: Option<String>,
    /// A typed message to the model; the reply streams back as Server-Sent Events.
    prompt: Option<String>,
    /// Whether the reply's audio streams too (base64 PCM16LE `audio` events).
    #[serde(default)]
    audio: bool,
}

/// AgentCore's invoke endpoint: a `prompt` is answered by the model as Server-Sent Events
/// (see [`super::invocation`]); a `command` answers operational questions. Voice happens on
/// `/ws`.
pub async fn invocations(
    State(agent): State<Arc<Agent>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_INVOCATION_BYTES {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large",
        );
    }
    let invocation: Invocation = match serde_json::from_slice(&body) {
        Ok(invocation) => invocation,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("expected a JSON object like {{\"prompt\":\"...\"}} or {{\"command\":\"status\"}}: {e}"),
            );
        }
    };
    if let Some(prompt) = invocation.prompt {
        if invocation.command.is_some() {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "send either \"prompt\" or \"command\", not both",
            );
        }
        return super::invocation::prompt(
            agent,
            peer,
            &headers,
            raw_query.as_deref(),
            &query,
            prompt,
            invocation.audio,
        )
        .await;
    }
    let state = agent.sessions.state();
    match invocation.command.as_deref() {
        Some("status") => Json(json!({
            "agent": agent.config.name,
            "version": env!("CARGO_PKG_VERSION"),
            "model": agent.model.model_id(),
            "status": state.status,
            "draining": agent.drain.is_draining(),
            "active_sessions": state.active,
            "max_sessions": agent.sessions.max(),
            "ws_path": "/ws",
            "tools": agent.tools.borrow().as_ref().map(|t| t.specs().iter().map(|s| s.name.clone()).collect::<Vec<_>>()),
            "tool_servers": agent.tools.borrow().as_ref().map(|t| t.servers()),
        }))
        .into_response(),
        Some("health") => Json(json!({
            "status": state.status,
            "ready": agent.not_ready().is_none(),
            "time_of_last_update": state.status_since,
        }))
        .into_response(),
        Some(other) => error_response(
            StatusCode::BAD_REQUEST,
            "unknown_command",
            format!(
                "unknown command {:?}; supported commands are \"status\" and \"health\" (voice sessions use GET /ws)",
                other.chars().take(64).collect::<String>()
            ),
        ),
        None => error_response(
            StatusCode::BAD_REQUEST,
            "missing_command",
            "the request needs a \"prompt\" (a message for the model) or a \"command\": \"status\" or \"health\" (voice sessions use GET /ws)",
        ),
    }
}
