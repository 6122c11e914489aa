//! The call-setup webhooks: `POST /twilio/voice`, `POST /telnyx/voice`, `GET|POST
//! /vonage/answer` (and Vonage's `/vonage/events`). Each checks the carrier's signature, then
//! answers with the document that connects the call to the carrier's media path, passing the
//! caller's number, the called number and the call id through as stream parameters, along with
//! any per-session settings (`voice`, `greeting`, `var.*`, `meta.*`) in the webhook URL's own
//! query, so a number can be given its settings in the carrier's console.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::signatures::{self, SignatureError};
use super::{Rejection, Stage, Telephony, count_rejection, documents, unix_now, websocket_url};
use crate::protocol::telephony::{Carrier, telnyx, twilio, vonage};
use crate::server::Agent;
use crate::server::admission::Refusal;
use crate::server::http::error_response;
use crate::session::settings::is_setting_key;

/// Largest webhook body read: carriers' call-setup requests are a few hundred bytes.
const MAX_WEBHOOK_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/twilio/voice", post(twilio_voice))
        .route("/telnyx/voice", post(telnyx_voice))
        .route("/vonage/answer", get(vonage_answer).post(vonage_answer))
        .route("/vonage/events", get(vonage_event).post(vonage_event))
}

/// What a call-setup request says about the call.
#[derive(Default)]
struct Call {
    id: String,
    caller: String,
    callee: String,
}

impl Call {
    /// The call's facts and the settings asked for in the webhook URL, as stream parameters.
    fn parameters(&self, raw_query: Option<&str>) -> Vec<(String, String)> {
        let mut parameters: Vec<(String, String)> = [
            ("call_id", &self.id),
            ("caller", &self.caller),
            ("callee", &self.callee),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
        parameters.extend(
            form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
                .filter(|(k, _)| is_setting_key(k))
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
        parameters
    }
}

/// The checks every webhook starts with: the carrier is on, the client is within its rate, the
/// body is small.
fn admit<'a>(
    agent: &'a Agent,
    carrier: &Carrier,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<&'a Telephony, Box<Response>> {
    let Some(telephony) = agent.telephony.as_ref().filter(|t| t.enabled(carrier)) else {
        return Err(Box::new(refuse(agent, carrier, Rejection::Disabled)));
    };
    if let Err(refusal) = agent.gatekeeper.admit_carrier(peer.ip(), headers) {
        return Err(Box::new(Refusal::from(refusal).into_response()));
    }
    if body.len() > MAX_WEBHOOK_BYTES {
        return Err(Box::new(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large",
        )));
    }
    Ok(telephony)
}

fn refuse(agent: &Agent, carrier: &Carrier, rejection: Rejection) -> Response {
    count_rejection(&agent.metrics, carrier, Stage::Webhook, rejection);
    let message = match rejection {
        Rejection::Disabled => "this carrier is not enabled on this agent",
        Rejection::Secret => "the carrier's secret is not available",
        _ => "the request is not signed by the carrier",
    };
    error_response(rejection.status(), rejection.as_str(), message)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn first(params: &[(String, String)], names: &[&str]) -> String {
    names
        .iter()
        .find_map(|name| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .unwrap_or_default()
}

fn xml(document: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], document).into_response()
}

async fn twilio_voice(
    State(agent): State<Arc<Agent>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let carrier = &twilio::CARRIER;
    let telephony = match admit(&agent, carrier, peer, &headers, &body) {
        Ok(telephony) => telephony,
        Err(response) => return *response,
    };
    let trusted = agent.gatekeeper.is_trusted_proxy(peer.ip());
    let Some(base) = telephony.base_url(&headers, trusted) else {
        return refuse(&agent, carrier, Rejection::Signature(SignatureError::Invalid));
    };
    let secret = match telephony.stream_secret(carrier).await {
        Ok(secret) => secret,
        Err(rejection) => return refuse(&agent, carrier, rejection),
    };
    let url = match &raw_query {
        Some(query) => format!("{base}/twilio/voice?{query}"),
        None => format!("{base}/twilio/voice"),
    };
    let params = form(&body);
    if let Err(error) = signatures::verify_twilio(&secret, &[url], &params, header(&headers, "x-twilio-signature")) {
        return refuse(&agent, carrier, Rejection::Signature(error));
    }
    let call = Call {
        id: first(&params, &["CallSid"]),
        caller: first(&params, &["From"]),
        callee: first(&params, &["To"]),
    };
    let mut parameters = call.parameters(raw_query.as_deref());
    // Twilio signs the stream's upgrade over its URL alone, the same for every call: the token
    // ties the stream to this call and to now, so a recorded upgrade cannot be replayed later.
    let expires = unix_now() + telephony.tolerance().as_secs();
    parameters.push((
        "stream_token".into(),
        signatures::call_token(&secret, &call.id, expires),
    ));
    let stream_url = format!("{}{}", websocket_url(&base), twilio::PROTOCOL.path);
    xml(documents::twiml(
        &stream_url,
        &parameters,
        telephony.config.fallback_number.as_deref(),
    ))
}

async fn telnyx_voice(
    State(agent): State<Arc<Agent>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let carrier = &telnyx::CARRIER;
    let telephony = match admit(&agent, carrier, peer, &headers, &body) {
        Ok(telephony) => telephony,
        Err(response) => return *response,
    };
    let Some(config) = telephony.config.telnyx.as_ref() else {
        return refuse(&agent, carrier, Rejection::Disabled);
    };
    let public_key = match telephony.secret(&config.public_key_file).await {
        Ok(key) => key,
        Err(rejection) => return refuse(&agent, carrier, rejection),
    };
    if let Err(error) = signatures::verify_telnyx(
        &public_key,
        header(&headers, "telnyx-signature-ed25519"),
        header(&headers, "telnyx-timestamp"),
        &body,
        unix_now(),
        telephony.tolerance(),
    ) {
        return refuse(&agent, carrier, Rejection::Signature(error));
    }
    let params = if header(&headers, "content-type").is_some_and(|c| c.contains("json")) {
        json_fields(&body)
    } else {
        form(&body)
    };
    let call = Call {
        id: first(&params, &["CallSid", "call_control_id"]),
        caller: first(&params, &["From", "from"]),
        callee: first(&params, &["To", "to"]),
    };
    let trusted = agent.gatekeeper.is_trusted_proxy(peer.ip());
    match signed_stream_url(
        telephony,
        carrier,
        &headers,
        trusted,
        &call.parameters(raw_query.as_deref()),
    )
    .await
    {
        Ok(url) => xml(documents::texml(&url, telephony.config.fallback_number.as_deref())),
        Err(rejection) => refuse(&agent, carrier, rejection),
    }
}

async fn vonage_answer(
    State(agent): State<Arc<Agent>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let carrier = &vonage::CARRIER;
    let telephony = match admit(&agent, carrier, peer, &headers, &body) {
        Ok(telephony) => telephony,
        Err(response) => return *response,
    };
    if let Err(rejection) = verify_vonage(telephony, carrier, &headers, &body).await {
        return refuse(&agent, carrier, rejection);
    }
    // Vonage asks with GET and query parameters, or POSTs them as JSON.
    let mut params = form(raw_query.as_deref().unwrap_or_default().as_bytes());
    params.extend(json_fields(&body));
    let call = Call {
        id: first(&params, &["uuid"]),
        caller: first(&params, &["from"]),
        callee: first(&params, &["to"]),
    };
    let trusted = agent.gatekeeper.is_trusted_proxy(peer.ip());
    let rate = telephony.config.vonage.as_ref().map_or(16_000, |v| v.sample_rate);
    match signed_stream_url(
        telephony,
        carrier,
        &headers,
        trusted,
        &call.parameters(raw_query.as_deref()),
    )
    .await
    {
        Ok(url) => axum::Json(documents::ncco(&url, rate)).into_response(),
        Err(rejection) => refuse(&agent, carrier, rejection),
    }
}

/// Vonage's call events (the application's event URL): checked, and acknowledged.
async fn vonage_event(
    State(agent): State<Arc<Agent>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let carrier = &vonage::CARRIER;
    let telephony = match admit(&agent, carrier, peer, &headers, &body) {
        Ok(telephony) => telephony,
        Err(response) => return *response,
    };
    match verify_vonage(telephony, carrier, &headers, &body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(rejection) => refuse(&agent, carrier, rejection),
    }
}

async fn verify_vonage(
    telephony: &Telephony,
    carrier: &Carrier,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Rejection> {
    let secret = telephony.stream_secret(carrier).await?;
    signatures::verify_vonage(
        &secret,
        header(headers, "authorization"),
        body,
        unix_now(),
        telephony.tolerance(),
    )
    .map_err(Rejection::Signature)
}

/// The carrier's media stream URL carrying `parameters`, signed with the carrier's stream
/// secret and valid for the signature tolerance.
async fn signed_stream_url(
    telephony: &Telephony,
    carrier: &Carrier,
    headers: &HeaderMap,
    trusted: bool,
    parameters: &[(String, String)],
) -> Result<String, Rejection> {
    let base = telephony
        .base_url(headers, trusted)
        .ok_or(Rejection::Signature(SignatureError::Invalid))?;
    let secret = telephony.stream_secret(carrier).await?;
    let path = carrier.protocol.path;
    let query = signatures::sign_stream(&secret, path, parameters, unix_now() + telephony.tolerance().as_secs());
    Ok(format!("{}{path}?{query}", websocket_url(&base)))
}

/// The string (and number) fields of a JSON object body, or none.
fn json_fields(body: &[u8]) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            _ => None,
        })
        .collect()
}
