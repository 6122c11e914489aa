//! The telephony front door: the call-setup webhooks carriers call when a call arrives (answered
//! with the document that connects the call to the agent's media path), the carriers'
//! signatures on those webhooks and on the media streams' WebSocket upgrades, and the start of
//! a call's session once its stream has said which call it is. The media streams themselves are
//! protocols (`protocol::telephony`).

mod call;
mod documents;
pub mod signatures;
mod webhooks;

pub use call::answer;
pub use webhooks::routes;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use tracing::warn;
use voice_config::TelephonyConfig;

use crate::metrics::{Metrics, TelephonyLabels};
use crate::protocol::telephony::{Carrier, telnyx, twilio, vonage};
use signatures::SignatureError;

/// Where a carrier's request was refused (the `stage` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The call-setup webhook (or Vonage's event webhook).
    Webhook,
    /// The media stream's WebSocket upgrade.
    Stream,
    /// The media stream's first frames, before the session opens.
    Start,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Stream => "stream",
            Self::Start => "start",
        }
    }
}

/// Why a carrier's request was refused (the `reason` label): a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The carrier is not configured on this agent.
    Disabled,
    Signature(SignatureError),
    /// The carrier's secret file cannot be read (a deployment problem, logged).
    Secret,
    /// The stream's first frames are not a call start the agent can take.
    BadStart,
    /// No call start in time.
    NoStart,
    /// The call's settings are not allowed by `sessionSettings`.
    Settings,
}

impl Rejection {
    pub const LABELS: [&'static str; 8] = [
        "disabled",
        "unsigned",
        "bad_signature",
        "stale",
        "secret_unreadable",
        "bad_start",
        "no_start",
        "settings",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Signature(error) => error.as_str(),
            Self::Secret => "secret_unreadable",
            Self::BadStart => "bad_start",
            Self::NoStart => "no_start",
            Self::Settings => "settings",
        }
    }

    /// The HTTP status of a refused webhook or upgrade.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Disabled => StatusCode::NOT_FOUND,
            Self::Secret => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadStart | Self::NoStart | Self::Settings => StatusCode::BAD_REQUEST,
            Self::Signature(_) => StatusCode::FORBIDDEN,
        }
    }
}

/// The carriers this agent answers, and how it checks them.
pub struct Telephony {
    config: TelephonyConfig,
    /// Whether the agent terminates TLS itself (the default scheme of its own URL).
    tls: bool,
}

impl Telephony {
    pub fn new(config: &TelephonyConfig, tls: bool) -> Self {
        for (carrier, path) in secret_files(config) {
            if std::fs::metadata(path).is_err() {
                warn!(carrier, path = %path.display(), "a carrier's secret file is missing: its calls are refused until it appears");
            }
        }
        Self {
            config: config.clone(),
            tls,
        }
    }

    /// Whether this agent answers `carrier`.
    pub fn enabled(&self, carrier: &Carrier) -> bool {
        let name = carrier.protocol.name;
        (name == twilio::PROTOCOL.name && self.config.twilio.is_some())
            || (name == telnyx::PROTOCOL.name && self.config.telnyx.is_some())
            || (name == vonage::PROTOCOL.name && self.config.vonage.is_some())
    }

    /// The phone calls' own greeting instruction, if configured.
    pub fn greeting(&self) -> Option<&str> {
        self.config.greeting.as_deref()
    }

    pub fn tolerance(&self) -> Duration {
        self.config.signature_tolerance
    }

    /// The agent's public base URL (`https://host[/prefix]`) for a request with `headers`, the
    /// forwarded headers counting only from a trusted proxy.
    pub fn base_url(&self, headers: &HeaderMap, trusted_proxy: bool) -> Option<String> {
        if let Some(url) = &self.config.public_url {
            return Some(url.trim_end_matches('/').to_owned());
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let forwarded = |name: &str| {
            trusted_proxy
                .then(|| header(name))
                .flatten()
                .and_then(|v| v.split(',').next())
                .map(str::trim)
        };
        let scheme = forwarded("x-forwarded-proto").unwrap_or(if self.tls { "https" } else { "http" });
        let host = forwarded("x-forwarded-host").or_else(|| header("host"))?;
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
        (matches!(scheme, "http" | "https") && valid_host).then(|| format!("{scheme}://{host}"))
    }

    /// Reads a carrier's secret (re-read on every use, so a rotated Secret applies at once).
    async fn secret(&self, path: &Path) -> Result<String, Rejection> {
        match tokio::fs::read_to_string(path).await {
            Ok(secret) if !secret.trim().is_empty() => Ok(secret.trim().to_owned()),
            _ => {
                warn!(path = %path.display(), "cannot read a carrier's secret file");
                Err(Rejection::Secret)
            }
        }
    }

    /// The secret that signs and checks a carrier's stream URLs and call tokens.
    async fn stream_secret(&self, carrier: &Carrier) -> Result<String, Rejection> {
        let name = carrier.protocol.name;
        let path = if name == twilio::PROTOCOL.name {
            self.config.twilio.as_ref().map(|c| c.auth_token_file.as_path())
        } else if name == telnyx::PROTOCOL.name {
            self.config.telnyx.as_ref().map(|c| c.stream_secret_file.as_path())
        } else if name == vonage::PROTOCOL.name {
            self.config.vonage.as_ref().map(|c| c.signature_secret_file.as_path())
        } else {
            None
        };
        self.secret(path.ok_or(Rejection::Disabled)?).await
    }

    /// Checks a media stream's WebSocket upgrade: Twilio's signature over the stream URL, or the
    /// signed query of the URL the agent's own call-setup document handed out.
    pub async fn verify_stream(
        &self,
        carrier: &Carrier,
        headers: &HeaderMap,
        raw_query: Option<&str>,
        trusted_proxy: bool,
    ) -> Result<(), Rejection> {
        let secret = self.stream_secret(carrier).await?;
        let path = carrier.protocol.path;
        if carrier.protocol.name == twilio::PROTOCOL.name {
            let base = self
                .base_url(headers, trusted_proxy)
                .ok_or(Rejection::Signature(SignatureError::Invalid))?;
            // The URL as Twilio requested it: its `wss://` form, or the `https://` form.
            let urls = [format!("{}{path}", websocket_url(&base)), format!("{base}{path}")];
            let header = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
            signatures::verify_twilio(&secret, &urls, &[], header).map_err(Rejection::Signature)
        } else {
            signatures::verify_stream(&secret, path, raw_query, unix_now(), self.tolerance())
                .map_err(Rejection::Signature)
        }
    }
}

/// Counts a refused carrier request.
pub fn count_rejection(metrics: &Metrics, carrier: &Carrier, stage: Stage, rejection: Rejection) {
    metrics
        .telephony_rejections
        .get_or_create(&TelephonyLabels {
            carrier: carrier.protocol.name,
            stage: stage.as_str(),
            reason: rejection.as_str(),
        })
        .inc();
}

/// `https://…` as `wss://…` (and `http://` as `ws://`).
pub fn websocket_url(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn secret_files(config: &TelephonyConfig) -> Vec<(&'static str, &Path)> {
    let mut files = Vec::new();
    if let Some(twilio) = &config.twilio {
        files.push(("twilio", twilio.auth_token_file.as_path()));
    }
    if let Some(telnyx) = &config.telnyx {
        files.push(("telnyx", telnyx.public_key_file.as_path()));
        files.push(("telnyx", telnyx.stream_secret_file.as_path()));
    }
    if let Some(vonage) = &config.vonage {
        files.push(("vonage", vonage.signature_secret_file.as_path()));
    }
    files
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn telephony(public_url: Option<&str>) -> Telephony {
        Telephony {
            config: TelephonyConfig {
                public_url: public_url.map(str::to_owned),
                ..TelephonyConfig::default()
            },
            tls: false,
        }
    }

    #[test]
    fn the_public_url_comes_from_config_or_trusted_forwarded_headers_only() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("10.0.0.5:8080"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("voice.example.com"));
        assert_eq!(
            telephony(Some("https://voice.example.com/"))
                .base_url(&headers, false)
                .as_deref(),
            Some("https://voice.example.com")
        );
        assert_eq!(
            telephony(None).base_url(&headers, true).as_deref(),
            Some("https://voice.example.com")
        );
        assert_eq!(
            telephony(None).base_url(&headers, false).as_deref(),
            Some("http://10.0.0.5:8080")
        );
        headers.insert("host", HeaderValue::from_static("evil/path"));
        assert_eq!(telephony(None).base_url(&headers, false), None);
        assert_eq!(websocket_url("https://a.example"), "wss://a.example");
    }

    #[test]
    fn rejection_labels_are_the_closed_set() {
        let all = [
            Rejection::Disabled,
            Rejection::Signature(SignatureError::Missing),
            Rejection::Signature(SignatureError::Invalid),
            Rejection::Signature(SignatureError::Stale),
            Rejection::Secret,
            Rejection::BadStart,
            Rejection::NoStart,
            Rejection::Settings,
        ];
        let labels: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels, Rejection::LABELS);
        assert_eq!(
            Rejection::Signature(SignatureError::Stale).status(),
            StatusCode::FORBIDDEN
        );
    }
}
