//! Admission: the one place a session handshake is let in or refused, on every protocol path.
//! Checks run in a fixed order (is it a WebSocket upgrade; rate limit, origin and credentials;
//! the protocol and its options; drain; capacity) and each refusal is one [`Refusal`], which
//! decides its HTTP status, `Retry-After`, message and metric label.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Agent;
use super::http::error_response;
use super::sessions::{Full, SessionGuard};
use super::telephony::{self, Rejection, Stage};
use crate::auth::{self, Caller};
use crate::metrics::ReasonLabels;
use crate::protocol::{self, Codec, Handshake, JsonLimits};
use crate::resume::{ConversationState, ResumeRefusal};
use crate::session::SessionSettings;

/// Suggested wait before retrying a handshake refused for capacity.
const RETRY_AFTER_CAPACITY: Duration = Duration::from_secs(5);
/// Suggested wait before retrying a handshake refused while draining (another replica answers).
const RETRY_AFTER_DRAINING: Duration = Duration::from_secs(1);

/// Why a handshake is refused, before any WebSocket exists.
#[derive(Debug)]
pub enum Refusal {
    /// Not a WebSocket upgrade request (answered as axum answers it: 400, 405 or 426).
    NotWebSocket(WebSocketUpgradeRejection),
    /// Too many handshakes from this client address.
    RateLimited { retry_after: Duration },
    /// The `Origin` is not on the allow-list.
    Origin,
    /// Authentication is on and the credentials are missing or wrong.
    Unauthenticated,
    /// The handshake asks for a protocol or options the agent does not have.
    BadRequest(String),
    /// The agent is shutting down.
    Draining,
    /// The agent holds its maximum number of sessions.
    Capacity,
    /// This caller holds its maximum number of sessions.
    SubjectLimit,
    /// The conversation a resume token names cannot be resumed.
    Resume(ResumeRefusal),
    /// A carrier's media stream that this agent does not answer, or whose signature fails.
    Carrier(Rejection),
}

/// The closed list of refusal reasons: the `reason` label of `handshake_rejections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    NotWebSocket,
    RateLimited,
    Origin,
    Unauthenticated,
    BadRequest,
    Draining,
    Capacity,
    SubjectLimit,
    Resume,
    CarrierDisabled,
    CarrierSignature,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 11] = [
        Self::Resume,
        Self::NotWebSocket,
        Self::BadRequest,
        Self::Draining,
        Self::Capacity,
        Self::RateLimited,
        Self::Origin,
        Self::Unauthenticated,
        Self::SubjectLimit,
        Self::CarrierDisabled,
        Self::CarrierSignature,
    ];

    /// Stable snake_case name: the metric label and the `code` of the JSON error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotWebSocket => "not_websocket",
            Self::RateLimited => "rate_limited",
            Self::Origin => "origin",
            Self::Unauthenticated => "unauthenticated",
            Self::BadRequest => "bad_request",
            Self::Draining => "draining",
            Self::Capacity => "capacity",
            Self::SubjectLimit => "subject_limit",
            Self::Resume => "resume_refused",
            Self::CarrierDisabled => "carrier_disabled",
            Self::CarrierSignature => "carrier_signature",
        }
    }

    /// The HTTP status of the refusal (a non-upgrade request gets whatever axum's extractor
    /// answers; 400 is its most common answer).
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotWebSocket | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::RateLimited | Self::SubjectLimit => StatusCode::TOO_MANY_REQUESTS,
            Self::Origin | Self::CarrierSignature => StatusCode::FORBIDDEN,
            Self::CarrierDisabled => StatusCode::NOT_FOUND,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Draining | Self::Capacity => StatusCode::SERVICE_UNAVAILABLE,
            // The most common case; each refusal has its own (see `Refusal::status`).
            Self::Resume => StatusCode::GONE,
        }
    }
}

impl Refusal {
    pub fn reason(&self) -> RefusalReason {
        match self {
            Self::NotWebSocket(_) => RefusalReason::NotWebSocket,
            Self::RateLimited { .. } => RefusalReason::RateLimited,
            Self::Origin => RefusalReason::Origin,
            Self::Unauthenticated => RefusalReason::Unauthenticated,
            Self::BadRequest(_) => RefusalReason::BadRequest,
            Self::Draining => RefusalReason::Draining,
            Self::Capacity => RefusalReason::Capacity,
            Self::SubjectLimit => RefusalReason::SubjectLimit,
            Self::Resume(_) => RefusalReason::Resume,
            Self::Carrier(Rejection::Disabled) => RefusalReason::CarrierDisabled,
            Self::Carrier(_) => RefusalReason::CarrierSignature,
        }
    }

    /// The HTTP status: the reason's, or for a resumption, what went wrong (410 Gone: no such
    /// conversation any more; 403: another caller's; 503: the store is down).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Resume(ResumeRefusal::Foreign) => StatusCode::FORBIDDEN,
            Self::Resume(ResumeRefusal::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            other => other.reason().status(),
        }
    }

    /// When the client may usefully try again, if it may.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::Draining => Some(RETRY_AFTER_DRAINING),
            Self::Capacity => Some(RETRY_AFTER_CAPACITY),
            Self::Resume(ResumeRefusal::Unavailable) => Some(RETRY_AFTER_DRAINING),
            _ => None,
        }
    }

    /// What the client is told.
    fn message(&self) -> String {
        match self {
            Self::NotWebSocket(rejection) => rejection.body_text(),
            Self::RateLimited { .. } => "too many connection attempts; retry later".into(),
            Self::Origin => "this origin may not connect".into(),
            Self::Unauthenticated => "authentication required".into(),
            Self::BadRequest(message) => message.clone(),
            Self::Draining => "this agent is shutting down; reconnect to reach another replica".into(),
            Self::Capacity => "this agent is at its session limit; retry shortly".into(),
            Self::SubjectLimit => "too many sessions are open for this caller".into(),
            Self::Resume(refusal) => refusal.message().into(),
            Self::Carrier(Rejection::Disabled) => "this carrier is not enabled on this agent".into(),
            Self::Carrier(_) => "the stream is not signed by the carrier".into(),
        }
    }
}

impl From<auth::Refusal> for Refusal {
    fn from(refusal: auth::Refusal) -> Self {
        match refusal {
            auth::Refusal::RateLimited { retry_after } => Self::RateLimited { retry_after },
            auth::Refusal::Origin => Self::Origin,
            auth::Refusal::Unauthenticated => Self::Unauthenticated,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let reason = self.reason();
        let retry_after = self.retry_after();
        let mut response = match self {
            Self::NotWebSocket(rejection) => rejection.into_response(),
            other => error_response(other.status(), reason.as_str(), other.message()),
        };
        let headers = response.headers_mut();
        if let Some(wait) = retry_after
            && let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        if reason == RefusalReason::Unauthenticated {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A handshake that may become a session.
pub struct Admission {
    pub upgrade: WebSocketUpgrade,
    pub caller: Caller,
    pub protocol: &'static protocol::Protocol,
    pub codec: Codec,
    /// What the caller chose for the session, within what the agent allows (a resumed
    /// conversation's own).
    pub settings: SessionSettings,
    /// The conversation this session resumes, if it does.
    pub resumed: Option<ConversationState>,
    /// Holds the session's place in the agent's (and the caller's) session count.
    pub guard: SessionGuard,
}

/// What a handshake brings.
pub struct Request<'a> {
    /// The upgrade, or why the request is not one.
    pub upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    pub path: &'a str,
    pub peer: SocketAddr,
    pub headers: &'a HeaderMap,
    pub raw_query: Option<&'a str>,
    pub query: &'a HashMap<String, String>,
}

/// Admits a handshake or says why not; every refusal is counted by its reason.
pub async fn admit(agent: &Agent, request: Request<'_>) -> Result<Admission, Refusal> {
    counted(agent, decide(agent, request).await)
}

/// A session that is not a WebSocket (a prompt to `/invocations`): the same checks but the
/// upgrade and the protocol, counted the same way.
pub async fn admit_invocation(
    agent: &Agent,
    peer: SocketAddr,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<Admitted, Refusal> {
    let result = match agent.gatekeeper.admit(peer.ip(), headers, raw_query).await {
        Ok(caller) => admit_caller(agent, caller, query, headers),
        Err(refusal) => Err(refusal.into()),
    };
    counted(agent, result)
}

fn counted<T>(agent: &Agent, result: Result<T, Refusal>) -> Result<T, Refusal> {
    if let Err(refusal) = &result {
        agent
            .metrics
            .handshake_rejections
            .get_or_create(&ReasonLabels {
                reason: refusal.reason().as_str(),
            })
            .inc();
    }
    result
}

/// An authenticated caller let in: its settings, and its place in the session count.
pub struct Admitted {
    pub caller: Caller,
    pub settings: SessionSettings,
    pub guard: SessionGuard,
}

/// The checks after authentication and the protocol: settings, drain, capacity.
fn admit_caller(
    agent: &Agent,
    caller: Caller,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Admitted, Refusal> {
    let settings = agent
        .settings
        .resolve(query, headers, &caller.claims)
        .map_err(|error| Refusal::BadRequest(error.to_string()))?;
    if agent.drain.is_draining() {
        return Err(Refusal::Draining);
    }
    let guard = agent
        .sessions
        .try_admit(caller.subject.as_deref(), agent.config.auth.max_sessions_per_subject)
        .map_err(|full| match full {
            Full::Capacity => Refusal::Capacity,
            Full::Subject => Refusal::SubjectLimit,
        })?;
    Ok(Admitted {
        caller,
        settings,
        guard,
    })
}

/// A carrier's media stream: rate limited like any client, then proven by the carrier's own
/// signature instead of the agent's tokens.
async fn admit_carrier(
    agent: &Agent,
    carrier: &'static protocol::telephony::Carrier,
    peer: SocketAddr,
    headers: &HeaderMap,
    raw_query: Option<&str>,
) -> Result<Caller, Refusal> {
    let caller = agent.gatekeeper.admit_carrier(peer.ip(), headers)?;
    let verdict = match agent.telephony.as_ref().filter(|t| t.enabled(carrier)) {
        None => Err(Rejection::Disabled),
        Some(telephony) => {
            let trusted = agent.gatekeeper.is_trusted_proxy(peer.ip());
            telephony.verify_stream(carrier, headers, raw_query, trusted).await
        }
    };
    verdict.map_err(|rejection| {
        telephony::count_rejection(&agent.metrics, carrier, Stage::Stream, rejection);
        Refusal::Carrier(rejection)
    })?;
    Ok(caller)
}

async fn decide(agent: &Agent, request: Request<'_>) -> Result<Admission, Refusal> {
    let upgrade = request.upgrade.map_err(Refusal::NotWebSocket)?;
    let caller = match protocol::telephony::carrier_on(request.path) {
        Some(carrier) => admit_carrier(agent, carrier, request.peer, request.headers, request.raw_query).await?,
        None => {
            agent
                .gatekeeper
                .admit(request.peer.ip(), request.headers, request.raw_query)
                .await?
        }
    };
    let limits = &agent.config.limits;
    let handshake = Handshake {
        query: request.query,
        json: JsonLimits {
            max_bytes: limits.max_json_bytes,
            max_depth: limits.max_json_depth,
        },
        output_sample_rate: agent.config.output_sample_rate(),
    };
    let (protocol, codec) =
        protocol::select(request.path, &handshake).map_err(|error| Refusal::BadRequest(error.to_string()))?;
    let Admitted {
        caller,
        mut settings,
        guard,
    } = admit_caller(agent, caller, request.query, request.headers)?;
    // Last, once the session has its place: taking the state spends the token.
    let mut resumed = None;
    if let Some(token) = request.query.get("resume") {
        let Some(service) = &agent.resumption else {
            return Err(Refusal::BadRequest("this agent does not resume conversations".into()));
        };
        let state = service
            .take(token, caller.subject.as_deref())
            .await
            .map_err(Refusal::Resume)?;
        settings = SessionSettings::clone(&state.settings);
        resumed = Some(state);
    }
    Ok(Admission {
        upgrade,
        caller,
        protocol,
        codec,
        settings,
        resumed,
        guard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_label() {
        let mut labels: Vec<&str> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
    }

    #[test]
    fn refusals_carry_status_and_retry_after() {
        let capacity = Refusal::Capacity.into_response();
        assert_eq!(capacity.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(capacity.headers()[header::RETRY_AFTER], "5");
        let draining = Refusal::Draining.into_response();
        assert_eq!(draining.headers()[header::RETRY_AFTER], "1");
        let limited = Refusal::RateLimited {
            retry_after: Duration::from_millis(300),
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            limited.headers()[header::RETRY_AFTER],
            "1",
            "rounded up to a whole second"
        );
        let unauthenticated = Refusal::Unauthenticated.into_response();
        assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(unauthenticated.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(Refusal::Origin.into_response().status(), StatusCode::FORBIDDEN);
        assert_eq!(
            Refusal::SubjectLimit.into_response().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert!(
            Refusal::Origin
                .into_response()
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
    }
}
