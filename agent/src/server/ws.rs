//! The session handshake on every protocol path: admission (see [`super::admission`]), socket
//! limits, and handing the upgraded socket to a tracked session task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, MatchedPath, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::future::{self, Either, FutureExt};
use tracing::debug;

use super::admission::{self, Admission, Request};
use super::{Agent, Continuity};
use crate::auth::BEARER_SUBPROTOCOL;
use crate::protocol::telephony;
use crate::session::run_session;

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
/// AgentCore passes its session id in this header; reusing it correlates logs across both sides.
const AGENTCORE_SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

pub async fn upgrade(
    State(agent): State<Arc<Agent>>,
    path: MatchedPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let request = Request {
        upgrade,
        path: path.as_str(),
        peer,
        headers: &headers,
        raw_query: raw_query.as_deref(),
        query: &query,
    };
    let Admission {
        upgrade,
        caller,
        protocol,
        codec,
        settings,
        resumed,
        guard,
    } = match admission::admit(&agent, request).await {
        Ok(admission) => admission,
        Err(refusal) => return refusal.into_response(),
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
    let tasks = agent.tasks.clone();
    let upgrade = upgrade.on_failed_upgrade(|error| debug!(%error, "WebSocket upgrade failed"));
    if let Some(carrier) = telephony::carrier(protocol.name) {
        // A phone call says which call it is after the upgrade: its session starts from there.
        let agent = agent.clone();
        return upgrade.on_upgrade(move |mut socket| {
            let answering = async move {
                let answered = super::telephony::answer(&agent, carrier, &mut socket, &query, &caller, &headers).await;
                answered.map(|(codec, ctx)| (socket, codec, ctx))
            };
            // The session's future replaces the answering one (`then`) instead of being awaited
            // inside it, which would keep the answer's state and a second socket for the call's
            // whole length.
            let call = answering.then(move |answered| match answered {
                Some((socket, codec, mut ctx)) => {
                    ctx.place = Some(guard);
                    Either::Left(run_session(socket, codec, ctx).map(drop))
                }
                None => Either::Right(future::ready(())),
            });
            tasks.track_future(call)
        });
    }
    // Boxed: the upgrade's future holds it for the whole session (see `run_session`).
    let mut ctx = Box::new(agent.session_context(
        session_id(&headers),
        &caller,
        protocol.name,
        settings,
        &headers,
        resumed.map_or(Continuity::New, |state| Continuity::Resumed(Box::new(state))),
    ));
    ctx.place = Some(guard);
    // `map`, not an `async` block awaiting the session: a block would keep its own copy of the
    // socket beside the session's for the session's whole length.
    upgrade.on_upgrade(move |socket| tasks.track_future(run_session(socket, codec, ctx).map(drop)))
}

/// The AgentCore session id when present and sane, else a fresh UUID.
pub(super) fn session_id(headers: &HeaderMap) -> String {
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
    use axum::http::HeaderValue;

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
