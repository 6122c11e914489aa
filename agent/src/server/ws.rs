//! The `/ws` handshake: admission (drain, capacity), session options, socket limits.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::debug;

use super::Agent;
use super::http::error_response;
use super::sessions::Full;
use crate::auth::{BEARER_SUBPROTOCOL, Refusal};
use crate::metrics::ReasonLabels;
use crate::model::SessionSetup;
use crate::protocol::JsonLimits;
use crate::protocol::{AudioOutput, INPUT_SAMPLE_RATE};
use crate::session::{SessionContext, SessionLimits, run_session};

/// Socket read buffer per connection. tungstenite allocates it eagerly (128 KiB by default),
/// which would dominate memory with thousands of sessions; client frames are 1-3 KiB. It is
/// also zero-filled before every read, so a smaller one is cheaper per frame too: 4 KiB instead
/// of 8 KiB took 4 KiB off every idle session (BENCHMARKS.md, tuning). Larger messages still
/// arrive, in several reads.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Bytes buffered before a write reaches the socket; every message is flushed anyway.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// Upper bound of unsent data per connection before writes fail, a backstop behind the
/// writer's timeout.
const MAX_WRITE_BUFFER_BYTES: usize = 1024 * 1024;
/// Suggested wait before retrying a handshake refused for capacity.
const RETRY_AFTER_CAPACITY: &str = "5";
/// Suggested wait before retrying a handshake refused while draining (another replica answers).
const RETRY_AFTER_DRAINING: &str = "1";
/// AgentCore passes its session id in this header; reusing it correlates logs across both sides.
const AGENTCORE_SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

#[derive(Deserialize)]
pub struct WsQuery {
    audio_output: Option<String>,
}

pub async fn upgrade(
    State(agent): State<Arc<Agent>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let reject = |status, reason: &'static str, message: &str| {
        agent
            .metrics
            .handshake_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
        error_response(status, reason, message)
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            agent
                .metrics
                .handshake_rejections
                .get_or_create(&ReasonLabels {
                    reason: "not_websocket",
                })
                .inc();
            return rejection.into_response();
        }
    };
    let caller = match agent.gatekeeper.admit(peer.ip(), &headers, raw_query.as_deref()).await {
        Ok(caller) => caller,
        Err(Refusal::RateLimited { retry_after }) => {
            let mut response = reject(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many connection attempts; retry later",
            );
            let seconds = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        Err(Refusal::Origin) => return reject(StatusCode::FORBIDDEN, "origin", "this origin may not connect"),
        Err(Refusal::Unauthenticated) => {
            let mut response = reject(StatusCode::UNAUTHORIZED, "unauthenticated", "authentication required");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    let audio_output = match query.audio_output.as_deref() {
        None | Some("json") => AudioOutput::Json,
        Some("binary") => AudioOutput::Binary,
        Some(_) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "audio_output must be \"json\" or \"binary\"",
            );
        }
    };
    if agent.drain.is_draining() {
        let mut response = reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this agent is shutting down; reconnect to reach another replica",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_DRAINING));
        return response;
    }
    let guard = match agent
        .sessions
        .try_admit(caller.subject.as_deref(), agent.config.auth.max_sessions_per_subject)
    {
        Ok(guard) => guard,
        Err(Full::Capacity) => {
            let mut response = reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "capacity",
                "this agent is at its session limit; retry shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_CAPACITY));
            return response;
        }
        Err(Full::Subject) => {
            return reject(
                StatusCode::TOO_MANY_REQUESTS,
                "subject_limit",
                "too many sessions are open for this caller",
            );
        }
    };

    let id = session_id(&headers);
    let toolbox = agent.tools.borrow().clone();
    let limits = &agent.config.limits;
    let ctx = SessionContext {
        id: id.clone(),
        subject: caller.subject.clone(),
        audio_output,
        limits: SessionLimits {
            idle_timeout: agent.config.session.idle_timeout,
            max_duration: agent.config.session.max_duration,
            first_message_timeout: limits.first_message_timeout,
            max_audio_rate: limits.max_audio_rate,
            audio_burst: limits.audio_burst,
        },
        json: JsonLimits {
            max_bytes: limits.max_json_bytes,
            max_depth: limits.max_json_depth,
        },
        model: agent.model.clone(),
        setup: SessionSetup {
            session_id: id,
            system_prompt: agent.system_prompt.clone(),
            input_sample_rate: INPUT_SAMPLE_RATE,
            output_sample_rate: agent.config.output_sample_rate(),
            tools: toolbox.as_ref().map_or_else(|| Arc::from([]), |t| t.specs()),
        },
        metrics: agent.metrics.clone(),
        closing: agent.drain.closing_token(),
        max_tool_calls: agent
            .config
            .gateway
            .as_ref()
            .map_or(1, |g| g.max_concurrent_calls as usize),
        tools: toolbox,
        parent: voice_telemetry::remote_context(&headers),
    };
    let max_message = agent.config.websocket.max_message_bytes;
    let mut upgrade = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(max_message)
        .max_frame_size(max_message);
    if caller.via_subprotocol {
        // Browsers require the server to pick one of the offered subprotocols.
        upgrade = upgrade.protocols([BEARER_SUBPROTOCOL]);
    }
    upgrade
        .on_failed_upgrade(|error| debug!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            run_session(socket, ctx).await;
            drop(guard);
        })
}

/// The AgentCore session id when present and sane, else a fresh UUID.
fn session_id(headers: &HeaderMap) -> String {
    headers
        .get(AGENTCORE_SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=256).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_valid_agentcore_session_id() {
        let mut headers = HeaderMap::new();
        headers.insert(AGENTCORE_SESSION_HEADER, HeaderValue::from_static("abc-123_XYZ"));
        assert_eq!(session_id(&headers), "abc-123_XYZ");
    }

    #[test]
    fn ignores_odd_session_ids() {
        let mut headers = HeaderMap::new();
        headers.insert(AGENTCORE_SESSION_HEADER, HeaderValue::from_static("../../etc"));
        assert_ne!(session_id(&headers), "../../etc");
        assert_eq!(session_id(&HeaderMap::new()).len(), 36);
    }
}
