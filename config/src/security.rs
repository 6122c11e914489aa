//! Who may connect, and how much a connection may do: handshake authentication, origins,
//! rate and resource limits, and TLS.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "PascalCase")]
#[value(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who reaches the port may talk (authentication done in front of the agent).
    #[default]
    None,
    /// Static bearer tokens from a file.
    Token,
    /// JSON Web Tokens from an OIDC issuer (Cognito, Auth0, Keycloak, ...), checked against its JWKS.
    Jwt,
}

/// Handshake authentication and origin checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub mode: AuthMode,
    /// Token mode: a file with one accepted token per line (`#` comments allowed). Re-read when
    /// it changes, so rotating the Secret behind it needs no restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// Also accept the token in the `token` query parameter (it may end up in proxy logs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_query_token: bool,
    /// Browser origins allowed to connect (`https://app.example.com`, `*.example.com`). Empty:
    /// any. Requests without an `Origin` header (non-browser clients) are not affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Concurrent sessions one authenticated caller may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_subject: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfig {
    /// Expected `iss`, e.g. `https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf`.
    pub issuer: String,
    /// Accepted audiences: matched against `aud`, or `client_id` when the token has no `aud`
    /// (Cognito access tokens).
    pub audiences: Vec<String>,
    /// Where the issuer publishes its signing keys.
    pub jwks_url: String,
    /// Accepted signing algorithms (asymmetric only).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Extra PEM CA certificates to trust for `jwksUrl`, for an issuer behind a private CA
    /// (an in-cluster Keycloak or Dex, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Limits that protect the agent from hostile or broken clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsConfig {
    /// WebSocket handshakes accepted per client IP per minute (0: unlimited).
    #[serde(default = "default_handshakes_per_minute")]
    pub handshakes_per_minute: u32,
    /// Proxies (CIDRs) whose `X-Forwarded-For` names the real client, e.g. the ingress pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// Time allowed to send the HTTP request (and finish TLS) after connecting.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A session must send its first message within this time.
    #[serde(default = "default_first_message_timeout", with = "humantime_serde")]
    pub first_message_timeout: Duration,
    /// Audio may arrive this much faster than real time on average...
    #[serde(default = "default_audio_rate")]
    pub max_audio_rate: f64,
    /// ...with bursts of up to this much audio ahead of that.
    #[serde(default = "default_audio_burst", with = "humantime_serde")]
    pub audio_burst: Duration,
    /// Largest JSON text frame (bytes); larger ones close with 1009.
    #[serde(default = "default_max_json_bytes")]
    pub max_json_bytes: usize,
    /// Deepest JSON nesting accepted; deeper frames close with 1007.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            handshakes_per_minute: default_handshakes_per_minute(),
            trusted_proxies: Vec::new(),
            handshake_timeout: default_handshake_timeout(),
            first_message_timeout: default_first_message_timeout(),
            max_audio_rate: default_audio_rate(),
            audio_burst: default_audio_burst(),
            max_json_bytes: default_max_json_bytes(),
            max_json_depth: default_max_json_depth(),
        }
    }
}

/// Serve TLS directly (for setups without TLS at the ingress). Files are re-read when they
/// change (cert-manager renewals need no restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        match self.mode {
            AuthMode::Token if self.token_file.is_none() => {
                return invalid("auth.tokenFile", "token authentication needs a token file");
            }
            AuthMode::Jwt => {
                let Some(jwt) = &self.jwt else {
                    return invalid("auth.jwt", "JWT authentication needs issuer, audiences and jwksUrl");
                };
                if jwt.issuer.trim().is_empty() {
                    return invalid("auth.jwt.issuer", "must not be empty");
                }
                if jwt.audiences.is_empty() {
                    return invalid("auth.jwt.audiences", "needs at least one audience");
                }
                if !(jwt.jwks_url.starts_with("https://") || jwt.jwks_url.starts_with("http://")) {
                    return invalid("auth.jwt.jwksUrl", "must be an http(s) URL");
                }
                if jwt.algorithms.is_empty() {
                    return invalid("auth.jwt.algorithms", "needs at least one algorithm");
                }
                for algorithm in &jwt.algorithms {
                    if !SUPPORTED_ALGORITHMS.contains(&algorithm.as_str()) {
                        return Err(ConfigError::Invalid {
                            field: "auth.jwt.algorithms",
                            message: format!(
                                "{algorithm:?} is not allowed; use asymmetric algorithms: {}",
                                SUPPORTED_ALGORITHMS.join(", ")
                            ),
                        });
                    }
                }
            }
            _ => {}
        }
        if self.max_sessions_per_subject == Some(0) {
            return invalid("auth.maxSessionsPerSubject", "must be at least 1");
        }
        for origin in &self.allowed_origins {
            if origin.trim().is_empty() || origin.contains(' ') {
                return invalid(
                    "auth.allowedOrigins",
                    "entries must be origins like https://app.example.com or *.example.com",
                );
            }
        }
        Ok(())
    }
}

/// JWT algorithms the agent accepts: asymmetric signatures only, so a public JWKS key can
/// never be used as an HMAC secret, and never `none`.
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl LimitsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        for proxy in &self.trusted_proxies {
            if proxy.parse::<ipnet::IpNet>().is_err() && proxy.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    field: "limits.trustedProxies",
                    message: format!("{proxy:?} is not an IP address or CIDR"),
                });
            }
        }
        if self.handshake_timeout < Duration::from_millis(100) {
            return invalid("limits.handshakeTimeout", "must be at least 100ms");
        }
        if self.first_message_timeout < Duration::from_millis(100) {
            return invalid("limits.firstMessageTimeout", "must be at least 100ms");
        }
        if !(self.max_audio_rate >= 1.0 && self.max_audio_rate <= 100.0) {
            return invalid("limits.maxAudioRate", "must be between 1 and 100 (times real time)");
        }
        if self.audio_burst < Duration::from_millis(100) || self.audio_burst > Duration::from_secs(60) {
            return invalid("limits.audioBurst", "must be between 100ms and 60s");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_json_bytes) {
            return invalid("limits.maxJsonBytes", "must be between 1024 and 16777216");
        }
        if !(2..=128).contains(&self.max_json_depth) {
            return invalid("limits.maxJsonDepth", "must be between 2 and 128");
        }
        Ok(())
    }
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_handshakes_per_minute() -> u32 {
    120
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_first_message_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_audio_rate() -> f64 {
    1.5
}
fn default_audio_burst() -> Duration {
    Duration::from_secs(5)
}
fn default_max_json_bytes() -> usize {
    // A 32 ms audio frame in JSON is about 1.4 KB; a second of audio in one message about 43 KB.
    128 * 1024
}
fn default_max_json_depth() -> usize {
    // Client events are two levels deep; 16 leaves room for extensions.
    16
}
