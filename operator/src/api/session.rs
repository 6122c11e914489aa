//! `spec.session` and `spec.websocket`: per-replica limits. Defaults come from the agent's own
//! configuration type so the two cannot disagree.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use voice_config::{SessionConfig, WebSocketConfig};

use super::Duration;

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
}

impl Default for SessionSpec {
    fn default() -> Self {
        Self {
            max_sessions_per_replica: default_max_sessions(),
            max_duration: default_max_duration(),
            idle_timeout: default_idle_timeout(),
            drain_timeout: default_drain_timeout(),
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
