//! `spec.session` and `spec.websocket`: per-replica limits. Defaults come from the agent's own
//! configuration type so the two cannot disagree.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use voice_config::{SessionConfig, WebSocketConfig};

use super::{Duration, KeyRef};

/// Limits on sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionSpec {
    /// Sessions one replica holds at once; further handshakes get HTTP 503 with Retry-After.
    #[serde(default = "default_max_sessions")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_sessions_per_replica: i32,

    /// Longest a session may last (at least 1s). Proxy timeouts on the Ingress are derived
    /// from it so that the agent, not a proxy, ends long calls.
    #[serde(default = "default_max_duration")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("maxDuration must be at least 1s"))]
    pub max_duration: Duration,

    /// A session with no caller input (audio or text) for this long is closed (at least 1s).
    #[serde(default = "default_idle_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("idleTimeout must be at least 1s"))]
    pub idle_timeout: Duration,

    /// When a replica stops (rollout, scale-down, node drain), how long its live sessions may
    /// continue before they are closed (at most 6h). The pods' termination grace period and
    /// the load balancer's deregistration delay are derived from it.
    #[serde(default = "default_drain_timeout")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('6h')").message("drainTimeout must be at most 6h"))]
    pub drain_timeout: Duration,

    /// Resumable conversations: a client that reconnects within the window with its resume
    /// token gets the same conversation back. In the pod's memory by default (the same
    /// replica: network blips, page reloads); in Redis or Valkey, on any replica and after a
    /// crash or a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeSpec>,
}

/// `session.resume`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("!has(self.store) || self.store != 'Redis' || (has(self.redis) && has(self.encryptionKeySecretRef))")
        .message("session.resume.store Redis needs redis and encryptionKeySecretRef (conversations are stored encrypted)"),
    validation = Rule::new("!has(self.redis) || (has(self.store) && self.store == 'Redis')")
        .message("session.resume.redis is only used with store: Redis")
)]
#[serde(rename_all = "camelCase")]
pub struct ResumeSpec {
    /// Whether sessions are offered a resume token (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long after a session ends it can be resumed (1s to 24h, default 2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("session.resume.window must be between 1s and 24h"))]
    pub window: Option<Duration>,
    /// `Memory` (default) or `Redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<ResumeStoreKind>,
    /// Redis or Valkey, for the `Redis` store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// A Secret key holding the 32-byte AES-256 key stored conversations are encrypted with
    /// (raw, hex or base64, e.g. `openssl rand -base64 32`). Required with Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_secret_ref: Option<KeyRef>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeStoreKind {
    Memory,
    Redis,
}

/// How the agents reach Redis or Valkey.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// `redis://host:6379/0`, or `rediss://host:6380/0` for TLS (ElastiCache with in-transit
    /// encryption). No credentials in the URL: they come from Secrets.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^rediss?://[^@/]+(/[0-9]+)?$"))]
    pub url: String,
    /// A ConfigMap key with PEM CA certificates for `rediss://`, when the server's certificate
    /// is not from a public CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<KeyRef>,
    /// A Secret key with the ACL user name (Redis 6+, ElastiCache RBAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<KeyRef>,
    /// A Secret key with the password (AUTH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<KeyRef>,
    /// Prefix of every key the agents write (default `voice-agent:resume:`); one per VoiceAgent
    /// sharing a Redis keeps them apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub key_prefix: Option<String>,
}

impl Default for SessionSpec {
    fn default() -> Self {
        Self {
            max_sessions_per_replica: default_max_sessions(),
            max_duration: default_max_duration(),
            idle_timeout: default_idle_timeout(),
            drain_timeout: default_drain_timeout(),
            resume: None,
        }
    }
}

/// WebSocket framing limits.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketSpec {
    /// Largest client message (and frame) accepted, in bytes (49152 to 16777216); larger ones
    /// close the session with code 1009.
    #[serde(default = "default_max_message_bytes")]
    #[schemars(range(min = 49152, max = 16777216))]
    pub max_message_bytes: i64,
}

impl Default for WebSocketSpec {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_message_bytes(),
        }
    }
}

fn default_max_sessions() -> i32 {
    i32::try_from(SessionConfig::default().max_sessions).unwrap_or(i32::MAX)
}
fn default_max_duration() -> Duration {
    SessionConfig::default().max_duration.into()
}
fn default_idle_timeout() -> Duration {
    SessionConfig::default().idle_timeout.into()
}
fn default_drain_timeout() -> Duration {
    SessionConfig::default().drain_timeout.into()
}
fn default_max_message_bytes() -> i64 {
    i64::try_from(WebSocketConfig::default().max_message_bytes).unwrap_or(i64::MAX)
}

/// What callers may choose for their own session, and the bounds. Nothing is settable unless
/// listed here; a handshake asking for anything else is refused with HTTP 400 naming the
/// setting.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionSettingsSpec {
    /// Voices a caller may pick with `voice`; empty: every caller gets the model's voice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = r"^[a-z][a-z0-9_]{0,63}$")))]
    pub voices: Vec<String>,

    /// Whether a caller may replace `prompt.greeting` with its own instruction (`greeting`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub greeting: bool,

    /// Longest value of any setting, in characters (1 to 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2000))]
    pub max_value_length: Option<i32>,

    /// The system prompt's variables: `{{name}}` in the prompt is replaced by the caller's
    /// value (`var.<name>`), the claim named by `fromClaim`, or `default`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// A list keyed by `name`: the apiserver refuses a name listed twice.
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub variables: Vec<PromptVariableSpec>,

    /// Caller metadata passed to tools as MCP request `_meta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataSpec>,
}

/// One variable of the system prompt.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromptVariableSpec {
    /// Lowercase letters, digits and `_`, starting with a letter.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z][a-z0-9_]{0,63}$"))]
    pub name: String,
    /// The value when nobody sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub default: Option<String>,
    /// Taken from this claim of the caller's JWT (and then never from what the caller sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub from_claim: Option<String>,
}

/// Which caller metadata reaches tools.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetadataSpec {
    /// Keys a caller may send itself (`meta.<key>`), 0 to 32; 0 takes none.
    #[serde(default)]
    #[schemars(range(min = 0, max = 32))]
    pub max_keys: i32,
    /// JWT claims copied into the metadata under their own names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 256)))]
    pub from_claims: Vec<String>,
}
