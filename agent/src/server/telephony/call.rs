//! A call's session, from the upgraded stream to the session core: wait for the carrier's start
//! frame, check the call token where the carrier's upgrade signature cannot tell calls apart
//! (Twilio), resolve the session's settings from the stream parameters through the same
//! allow-list as every other session, and build the call's codec.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::HeaderMap;
use futures::StreamExt;
use tokio::time::timeout;
use tracing::{debug, info};

use super::{Rejection, Stage, count_rejection, signatures, unix_now};
use crate::auth::Caller;
use crate::metrics::CarrierLabels;
use crate::protocol::telephony::{CallStart, Carrier, MAX_FRAMES_BEFORE_START, twilio};
use crate::protocol::{CloseCode, Codec, Frame};
use crate::server::Agent;
use crate::session::SessionContext;

/// Longest call id used as the session id (longer ones get a generated id).
const MAX_CALL_ID: usize = 128;

/// Waits for the call's start on `socket` and returns the session's codec and context, or
/// closes the socket saying why (the refusal is counted and no model stream opens).
pub async fn answer(
    agent: &Agent,
    carrier: &'static Carrier,
    socket: &mut WebSocket,
    query: &HashMap<String, String>,
    caller: &Caller,
    headers: &HeaderMap,
) -> Option<(Codec, SessionContext)> {
    let started = match timeout(agent.config.limits.first_message_timeout, call_start(socket, carrier)).await {
        Ok(Ok(start)) => start,
        Ok(Err(Some(detail))) => return refuse(agent, carrier, socket, Rejection::BadStart, &detail).await,
        // The carrier went away before the call started: nothing to tell it.
        Ok(Err(None)) => return None,
        Err(_) => return refuse(agent, carrier, socket, Rejection::NoStart, "no call start in time").await,
    };
    let mut parameters = query.clone();
    for (name, value) in &started.parameters {
        if parameters.insert(name.clone(), value.clone()).is_some() {
            let detail = format!("{name} is given twice (stream URL and stream parameters)");
            return refuse(agent, carrier, socket, Rejection::Settings, &detail).await;
        }
    }
    let call_id = parameters
        .get("call_id")
        .cloned()
        .or_else(|| started.call_id.clone())
        .unwrap_or_default();
    if carrier.protocol.name == twilio::PROTOCOL.name
        && let Err(rejection) = check_call_token(agent, carrier, &started, &parameters).await
    {
        return refuse(
            agent,
            carrier,
            socket,
            rejection,
            "the stream is not one the agent set up",
        )
        .await;
    }
    // The call's facts count as verified claims (the carrier signed them, or the agent did):
    // a prompt variable with `fromClaim: caller` gets the caller's number.
    let mut claims = caller.claims.clone();
    for fact in ["caller", "callee"] {
        if let Some(value) = parameters.get(fact) {
            claims.insert(fact.into(), value.clone().into());
        }
    }
    claims.insert("call_id".into(), call_id.clone().into());
    claims.insert("carrier".into(), carrier.protocol.name.into());
    let mut settings = match agent.settings.resolve(&parameters, &HeaderMap::new(), &claims) {
        Ok(settings) => settings,
        Err(error) => return refuse(agent, carrier, socket, Rejection::Settings, &error.to_string()).await,
    };
    // Phones have their own greeting; one the webhook URL chose (allow-listed) still wins.
    if !parameters.contains_key("greeting")
        && let Some(greeting) = agent.telephony.as_ref().and_then(|t| t.greeting())
    {
        settings.greeting = Some(greeting.to_owned());
    }
    let id = if !call_id.is_empty() && call_id.len() <= MAX_CALL_ID && call_id.bytes().all(|b| b.is_ascii_graphic()) {
        call_id
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    agent
        .metrics
        .phone_calls
        .get_or_create(&CarrierLabels {
            carrier: carrier.protocol.name,
        })
        .inc();
    info!(carrier = carrier.protocol.name, call = %id, "call started");
    // The model replies at the rate the call plays (Nova Sonic speaks 8 and 16 kHz too), so
    // reply audio needs no resampling on its way to the caller.
    let codec = (carrier.codec)(&started, started.sample_rate);
    // A carrier cannot reconnect with a token: a call is not resumable.
    let mut ctx = agent.session_context(
        id,
        caller,
        carrier.protocol.name,
        settings,
        headers,
        crate::server::Continuity::OneShot,
    );
    ctx.setup.output_sample_rate = started.sample_rate;
    Some((codec, ctx))
}

/// Reads frames until the carrier's start: `Err(Some(why))` for a stream that is not a call,
/// `Err(None)` when the connection ends first.
async fn call_start(socket: &mut WebSocket, carrier: &Carrier) -> Result<CallStart, Option<String>> {
    for _ in 0..=MAX_FRAMES_BEFORE_START {
        let step = match socket.next().await {
            Some(Ok(Message::Text(text))) => (carrier.start)(Frame::Text(text.as_str())),
            Some(Ok(Message::Binary(data))) => (carrier.start)(Frame::Binary(&data)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(None),
        };
        match step {
            Ok(Some(start)) => return Ok(start),
            Ok(None) => {}
            Err(detail) => return Err(Some(detail)),
        }
    }
    Err(Some("no call start in the stream's first frames".into()))
}

async fn check_call_token(
    agent: &Agent,
    carrier: &Carrier,
    started: &CallStart,
    parameters: &HashMap<String, String>,
) -> Result<(), Rejection> {
    let telephony = agent.telephony.as_ref().ok_or(Rejection::Disabled)?;
    let secret = telephony.stream_secret(carrier).await?;
    let call_id = started.call_id.as_deref().unwrap_or_default();
    let token = parameters.get("stream_token").map(String::as_str);
    signatures::verify_call_token(&secret, call_id, token, unix_now(), tolerance(agent)).map_err(Rejection::Signature)
}

fn tolerance(agent: &Agent) -> Duration {
    agent
        .telephony
        .as_ref()
        .map_or(Duration::from_secs(300), |t| t.tolerance())
}

async fn refuse<T>(
    agent: &Agent,
    carrier: &Carrier,
    socket: &mut WebSocket,
    rejection: Rejection,
    detail: &str,
) -> Option<T> {
    count_rejection(&agent.metrics, carrier, Stage::Start, rejection);
    debug!(carrier = carrier.protocol.name, reason = rejection.as_str(), %detail, "call refused at its start");
    let frame = CloseFrame {
        code: CloseCode::POLICY_VIOLATION,
        reason: detail.chars().take(120).collect::<String>().into(),
    };
    let _ = timeout(Duration::from_secs(2), socket.send(Message::Close(Some(frame)))).await;
    None
}
