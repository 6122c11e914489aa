//! `spec.auth`, `spec.limits` and `spec.networkPolicy`: who may open a session, how much one
//! connection may do, and which pods may reach the agent at all. Defaults come from the agent's
//! own configuration types so the two cannot disagree.

use k8s_openapi::api::networking::v1::{NetworkPolicyEgressRule, NetworkPolicyPeer};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use voice_config::LimitsConfig;

use super::{Duration, KeyRef};

/// How callers authenticate on the WebSocket handshake.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("(self.mode == 'Token') == has(self.tokenSecretRef)")
        .message("auth.tokenSecretRef is required with mode Token and only used with it"),
    validation = Rule::new("(self.mode == 'Jwt') == has(self.jwt)")
        .message("auth.jwt is required with mode Jwt and only used with it")
)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// `None`: anyone who reaches the agent may talk (authentication happens in front of it).
    /// `Token`: static bearer tokens from a Secret. `Jwt`: JSON Web Tokens of an OIDC issuer
    /// (Cognito, Auth0, Keycloak, Entra ID, ...), checked against its published keys. Callers
    /// send `Authorization: Bearer <token>`, or from browsers the WebSocket subprotocol pair
    /// `base64UrlBearerAuthorization.<base64url token>`, `base64UrlBearerAuthorization`.
    #[serde(default)]
    pub mode: AuthMode,

    /// Token mode: a Secret key holding the accepted tokens, one per line (`#` starts a
    /// comment). It is mounted as a file the agent re-reads, so rotating tokens (add the new
    /// one, move callers over, remove the old one) needs no restart and rolls no pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<KeyRef>,

    /// Jwt mode: the issuer and what its tokens must say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,

    /// Also accept the token in the `token` query parameter of the WebSocket URL, for clients
    /// that can set neither headers nor subprotocols. Query strings end up in proxy access
    /// logs: prefer short-lived tokens when enabling this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_query_token: bool,

    /// Browser origins allowed to open sessions: exact (`https://app.example.com`) or a
    /// subdomain wildcard (`*.example.com`). Empty: any origin. Clients that send no `Origin`
    /// header (phones, servers) are not affected. Other origins get HTTP 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253), regex(pattern = r"^\S+$")))]
    pub allowed_origins: Vec<String>,

    /// Concurrent sessions one authenticated caller (token or JWT subject) may hold on one
    /// replica; more get HTTP 429. Unset: no per-caller limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_sessions_per_subject: Option<i32>,
}

/// The authentication mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthMode {
    #[default]
    None,
    Token,
    Jwt,
}

/// Signing algorithms a JWT may use: asymmetric only, so the issuer's public keys can never be
/// used as an HMAC secret.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// What a JWT must satisfy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Expected `iss` claim, e.g.
    /// `https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf`.
    #[schemars(length(min = 1, max = 2048))]
    pub issuer: String,

    /// Accepted audiences, matched against `aud`, or against `client_id` for tokens without
    /// `aud` (Cognito access tokens).
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 512)))]
    pub audiences: Vec<String>,

    /// Where the issuer publishes its signing keys (JWKS), e.g.
    /// `https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf/.well-known/jwks.json`.
    /// Keys are cached and fetched again when a token names an unknown key id.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://\S+$"))]
    pub jwks_url: String,

    /// Accepted signing algorithms.
    #[serde(default = "default_algorithms")]
    #[schemars(length(min = 1, max = 9))]
    pub algorithms: Vec<JwtAlgorithm>,

    /// Clock skew tolerated on `exp` and `nbf` (at most 5m).
    #[serde(default = "default_leeway")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('5m')").message("leeway must be at most 5m"))]
    pub leeway: Duration,

    /// Extra CA certificates (PEM) to trust for `jwksUrl`, from a ConfigMap key: for an
    /// issuer whose certificate comes from a private CA (an in-cluster Keycloak or Dex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<KeyRef>,
}

/// Limits that protect the agent from broken and hostile clients.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// WebSocket handshakes accepted per client IP per minute on one replica; more get HTTP
    /// 429. 0 turns the limit off.
    #[serde(default = "default_handshakes_per_minute")]
    #[schemars(range(min = 0, max = 1000000))]
    pub handshakes_per_minute: i32,

    /// Addresses or CIDRs of proxies whose `X-Forwarded-For` header names the real client, e.g.
    /// the ingress controller's pod network (`10.0.0.0/8`). Without it the per-IP limit sees
    /// the proxy's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 64)))]
    pub trusted_proxies: Vec<String>,

    /// Time a client has to send its HTTP request after connecting (at least 100ms).
    #[serde(default = "default_handshake_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('100ms')").message("handshakeTimeout must be at least 100ms"))]
    pub handshake_timeout: Duration,

    /// A new session must send its first message within this time (at least 100ms).
    #[serde(default = "default_first_message_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('100ms')").message("firstMessageTimeout must be at least 100ms"))]
    pub first_message_timeout: Duration,

    /// How much faster than real time a caller's audio may arrive on average (1 to 100);
    /// beyond that and the burst the session is closed with code 1008.
    #[serde(default = "default_max_audio_rate")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub max_audio_rate: f64,

    /// How much audio may arrive ahead of that rate at once (100ms to 60s).
    #[serde(default = "default_audio_burst")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('100ms') && duration(self) <= duration('60s')").message("audioBurst must be between 100ms and 60s"))]
    pub audio_burst: Duration,

    /// Largest JSON text message, in bytes (1024 to 16777216); larger ones close the session
    /// with code 1009.
    #[serde(default = "default_max_json_bytes")]
    #[schemars(range(min = 1024, max = 16777216))]
    pub max_json_bytes: i64,

    /// Deepest JSON nesting accepted (2 to 128); deeper messages close with code 1007.
    #[serde(default = "default_max_json_depth")]
    #[schemars(range(min = 2, max = 128))]
    pub max_json_depth: i32,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            handshakes_per_minute: default_handshakes_per_minute(),
            trusted_proxies: Vec::new(),
            handshake_timeout: default_handshake_timeout(),
            first_message_timeout: default_first_message_timeout(),
            max_audio_rate: default_max_audio_rate(),
            audio_burst: default_audio_burst(),
            max_json_bytes: default_max_json_bytes(),
            max_json_depth: default_max_json_depth(),
        }
    }
}

/// A NetworkPolicy for the agent pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Who may connect to the agent's port (WebSocket, probes and metrics share it): typically
    /// the ingress controller's namespace and the monitoring namespace. Empty: nothing but the
    /// kubelet's probes (which network policies do not block on most network plugins). All
    /// other ingress traffic to the agent pods is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ingress_from: Vec<NetworkPolicyPeer>,

    /// When set, egress from the agent pods is limited to these rules plus DNS (port 53 to any
    /// destination). The model (Bedrock), the tool gateway and the JWKS endpoint must then be
    /// allowed here. Unset: egress is not restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub egress: Option<Vec<NetworkPolicyEgressRule>>,
}

fn default_algorithms() -> Vec<JwtAlgorithm> {
    vec![JwtAlgorithm::RS256]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_handshakes_per_minute() -> i32 {
    i32::try_from(LimitsConfig::default().handshakes_per_minute).unwrap_or(i32::MAX)
}
fn default_handshake_timeout() -> Duration {
    LimitsConfig::default().handshake_timeout.into()
}
fn default_first_message_timeout() -> Duration {
    LimitsConfig::default().first_message_timeout.into()
}
fn default_max_audio_rate() -> f64 {
    LimitsConfig::default().max_audio_rate
}
fn default_audio_burst() -> Duration {
    LimitsConfig::default().audio_burst.into()
}
fn default_max_json_bytes() -> i64 {
    i64::try_from(LimitsConfig::default().max_json_bytes).unwrap_or(i64::MAX)
}
fn default_max_json_depth() -> i32 {
    i32::try_from(LimitsConfig::default().max_json_depth).unwrap_or(i32::MAX)
}
