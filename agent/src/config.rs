//! `AgentConfig`: the agent's configuration file, and the contract with the operator, which
//! renders this same type into the ConfigMap it mounts. Flags and environment variables
//! override single fields (see `cli.rs`). Secrets never live here: only paths to files that
//! hold them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Name reported by `/invocations` status and in logs (the VoiceAgent's name in clusters).
    #[serde(default = "default_name")]
    pub name: String,
    /// Address of the single listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub prompt: PromptConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub websocket: WebSocketConfig,
    /// Tools from an MCP server (an AgentCore Gateway or any streamable-HTTP MCP server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayConfig>,
}

/// Where tools come from and how they are called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// The MCP endpoint, e.g. `https://<id>.gateway.bedrock-agentcore.<region>.amazonaws.com/mcp`.
    pub url: String,
    #[serde(default)]
    pub auth: GatewayAuth,
    /// Tools offered to the model, by name with or without the gateway target prefix
    /// (`target___tool`). Empty: every tool the gateway lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// Longest a tool call may take before the model is told it timed out.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Tool calls one session runs at once; more wait for a free slot (within the timeout).
    #[serde(default = "default_max_concurrent_calls")]
    pub max_concurrent_calls: u32,
}

/// How the agent authenticates to the gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum GatewayAuth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`, the token read from a file (re-read when it changes, so
    /// a rotated Secret needs no restart) or from an environment variable.
    #[serde(rename_all = "camelCase")]
    Bearer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_env: Option<String>,
    },
    /// AWS SigV4 with the default credential chain, for gateways using IAM authorization.
    #[serde(rename = "SigV4", rename_all = "camelCase")]
    SigV4 {
        /// Signing region; default: the AWS default chain.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Signing service name.
        #[serde(default = "default_sigv4_service")]
        service: String,
    },
}

impl GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return invalid(
                "gateway.url",
                format!("{:?} must start with https:// or http://", self.url),
            );
        }
        if self.call_timeout < Duration::from_millis(100) || self.call_timeout > Duration::from_secs(300) {
            return invalid("gateway.callTimeout", "must be between 100ms and 5m".into());
        }
        if !(1..=64).contains(&self.max_concurrent_calls) {
            return invalid("gateway.maxConcurrentCalls", "must be between 1 and 64".into());
        }
        match &self.auth {
            GatewayAuth::Bearer { token_file, token_env } if token_file.is_some() == token_env.is_some() => invalid(
                "gateway.auth",
                "Bearer needs exactly one of tokenFile and tokenEnv".into(),
            ),
            GatewayAuth::SigV4 { service, .. } if service.trim().is_empty() => {
                invalid("gateway.auth.service", "must not be empty".into())
            }
            _ => Ok(()),
        }
    }
}

/// Which speech-to-speech model answers, and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "provider")]
pub enum ModelConfig {
    /// The built-in simulator: no cloud account needed.
    Simulated(SimulatedModelConfig),
    /// Amazon Nova Sonic on Bedrock, through `InvokeModelWithBidirectionalStream`.
    NovaSonic(NovaSonicConfig),
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::Simulated(SimulatedModelConfig::default())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SimulatedMode {
    /// Turn detection and spoken replies.
    #[default]
    Conversation,
    /// Input audio echoed straight back with no delay: for measuring the agent's own overhead.
    Loopback,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulatedModelConfig {
    #[serde(default)]
    pub mode: SimulatedMode,
    /// Pause between the end of the user's turn and the start of the reply.
    #[serde(default = "default_think_time", with = "humantime_serde")]
    pub think_time: Duration,
}

impl Default for SimulatedModelConfig {
    fn default() -> Self {
        Self {
            mode: SimulatedMode::default(),
            think_time: default_think_time(),
        }
    }
}

/// Nova 2 Sonic's model id, the default.
pub const NOVA_2_SONIC: &str = "amazon.nova-2-sonic-v1:0";
/// The first Nova Sonic, still accepted.
pub const NOVA_SONIC_V1: &str = "amazon.nova-sonic-v1:0";

/// How eagerly Nova 2 Sonic decides the user finished speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndpointingSensitivity {
    High,
    Medium,
    Low,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NovaSonicConfig {
    /// Bedrock model id (or inference profile id such as `us.amazon.nova-2-sonic-v1:0`).
    #[serde(default = "default_nova_model")]
    pub model_id: String,
    /// AWS region; when absent, the default chain (`AWS_REGION`, profile) decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Voice id, e.g. `matthew`, `tiffany`, `amy`.
    #[serde(default = "default_voice")]
    pub voice: String,
    /// Sample rate of the reply audio (8000, 16000 or 24000).
    #[serde(default = "default_output_sample_rate")]
    pub output_sample_rate: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Nova 2 only: how quickly a pause ends the user's turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpointing_sensitivity: Option<EndpointingSensitivity>,
    /// Bedrock runtime endpoint override (VPC endpoint, or a local fake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Extra PEM CA certificates to trust for the endpoint (private CAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_file: Option<PathBuf>,
    /// Age at which a Bedrock stream is replaced at the next turn boundary, before Nova's
    /// stream limit of about eight minutes.
    #[serde(default = "default_renew_after", with = "humantime_serde")]
    pub renew_after: Duration,
}

impl Default for NovaSonicConfig {
    fn default() -> Self {
        Self {
            model_id: default_nova_model(),
            region: None,
            voice: default_voice(),
            output_sample_rate: default_output_sample_rate(),
            max_tokens: None,
            temperature: None,
            top_p: None,
            endpointing_sensitivity: None,
            endpoint_url: None,
            ca_bundle_file: None,
            renew_after: default_renew_after(),
        }
    }
}

impl NovaSonicConfig {
    /// Whether the model is a Nova 2 Sonic (which takes text input and endpointing settings).
    pub fn is_nova_2(&self) -> bool {
        self.model_id.contains("nova-2-sonic")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        if !self.model_id.contains("nova-2-sonic") && !self.model_id.contains("nova-sonic") {
            return invalid(
                "model.modelId",
                format!(
                    "{:?} is not a Nova Sonic model (use {NOVA_2_SONIC} or {NOVA_SONIC_V1})",
                    self.model_id
                ),
            );
        }
        if self.endpointing_sensitivity.is_some() && !self.is_nova_2() {
            return invalid(
                "model.endpointingSensitivity",
                format!(
                    "is only supported by Nova 2 Sonic ({NOVA_2_SONIC}), not {}",
                    self.model_id
                ),
            );
        }
        if self.voice.trim().is_empty() {
            return invalid("model.voice", "must not be empty".into());
        }
        if ![8000, 16000, 24000].contains(&self.output_sample_rate) {
            return invalid("model.outputSampleRate", "must be 8000, 16000 or 24000".into());
        }
        if let Some(max) = self.max_tokens
            && !(1..=10_000).contains(&max)
        {
            return invalid("model.maxTokens", "must be between 1 and 10000".into());
        }
        if let Some(t) = self.temperature
            && !(0.0..=1.0).contains(&t)
        {
            return invalid("model.temperature", "must be between 0 and 1".into());
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return invalid("model.topP", "must be between 0 and 1".into());
        }
        if self.renew_after < Duration::from_secs(10) || self.renew_after > Duration::from_secs(475) {
            return invalid("model.renewAfter", "must be between 10s and 7m55s".into());
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return invalid(
                "model.endpointUrl",
                format!("{url:?} must start with https:// or http://"),
            );
        }
        Ok(())
    }
}

/// The system prompt, inline or from a file (the operator mounts `systemFrom` as a file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_file: Option<PathBuf>,
}

/// Limits on sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionConfig {
    /// Sessions one process holds at once; further handshakes get HTTP 503.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u32,
    /// Longest a session may last.
    #[serde(default = "default_max_duration", with = "humantime_serde")]
    pub max_duration: Duration,
    /// A session with no client input (audio or text) for this long is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// On shutdown, how long live sessions may continue before they are closed.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_sessions: default_max_sessions(),
            max_duration: default_max_duration(),
            idle_timeout: default_idle_timeout(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

/// WebSocket framing limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Largest client message (and frame) accepted, in bytes; larger ones close with 1009.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_message_bytes(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            name: default_name(),
            listen: default_listen(),
            model: ModelConfig::default(),
            prompt: PromptConfig::default(),
            session: SessionConfig::default(),
            websocket: WebSocketConfig::default(),
            gateway: None,
        }
    }
}

fn default_name() -> String {
    "voice-agent".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_think_time() -> Duration {
    Duration::from_millis(250)
}
fn default_nova_model() -> String {
    NOVA_2_SONIC.into()
}
fn default_voice() -> String {
    "matthew".into()
}
fn default_output_sample_rate() -> u32 {
    24_000
}
fn default_renew_after() -> Duration {
    Duration::from_secs(420)
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_concurrent_calls() -> u32 {
    4
}
fn default_sigv4_service() -> String {
    "bedrock-agentcore".into()
}
fn default_max_sessions() -> u32 {
    100
}
fn default_max_duration() -> Duration {
    Duration::from_secs(3600)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_message_bytes() -> usize {
    // 256 KiB is eight seconds of 16 kHz PCM in one message: far above what a real-time client
    // sends (about 1 KiB per 32 ms frame), small enough that a flood costs little memory.
    256 * 1024
}

/// Smallest accepted message limit: one second of 16 kHz PCM, base64-encoded in JSON.
const MIN_MESSAGE_BYTES: usize = 48 * 1024;
/// Largest accepted message limit.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {field}: {message}")]
    Invalid { field: &'static str, message: String },
}

impl AgentConfig {
    /// Reads and validates a YAML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses YAML (an empty document gives the defaults). Does not validate.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Checks values serde cannot, naming the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if self.name.trim().is_empty() {
            return invalid("name", "must not be empty");
        }
        if self.session.max_sessions == 0 {
            return invalid("session.maxSessions", "must be at least 1");
        }
        if self.session.max_duration < Duration::from_secs(1) {
            return invalid("session.maxDuration", "must be at least 1s");
        }
        if self.session.idle_timeout < Duration::from_secs(1) {
            return invalid("session.idleTimeout", "must be at least 1s");
        }
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&self.websocket.max_message_bytes) {
            return Err(ConfigError::Invalid {
                field: "websocket.maxMessageBytes",
                message: format!("must be between {MIN_MESSAGE_BYTES} and {MAX_MESSAGE_BYTES}"),
            });
        }
        if self.prompt.system.is_some() && self.prompt.system_file.is_some() {
            return invalid("prompt", "set either system or systemFile, not both");
        }
        if let Some(gateway) = &self.gateway {
            gateway.validate()?;
        }
        match &self.model {
            ModelConfig::Simulated(sim) if sim.think_time > Duration::from_secs(10) => {
                invalid("model.thinkTime", "must be at most 10s")
            }
            ModelConfig::Simulated(_) => Ok(()),
            ModelConfig::NovaSonic(nova) => nova.validate(),
        }
    }

    /// Sample rate of the audio sessions send to clients.
    pub fn output_sample_rate(&self) -> u32 {
        match &self.model {
            ModelConfig::Simulated(_) => 24_000,
            ModelConfig::NovaSonic(nova) => nova.output_sample_rate,
        }
    }

    /// The system prompt, reading `systemFile` if that is how it is given.
    pub fn system_prompt(&self) -> Result<Option<String>, ConfigError> {
        if let Some(path) = &self.prompt.system_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            return Ok(Some(text));
        }
        Ok(self.prompt.system.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = AgentConfig::from_yaml("").expect("parses");
        assert_eq!(config, AgentConfig::default());
        assert_eq!(config.session.max_sessions, 100);
        assert_eq!(config.listen.port(), 8080);
    }

    #[test]
    fn parses_a_full_file() {
        let yaml = r#"
name: support-line
listen: 127.0.0.1:9000
model:
  provider: Simulated
  mode: loopback
  thinkTime: 0s
prompt:
  system: You are helpful.
session:
  maxSessions: 7
  maxDuration: 30m
  idleTimeout: 45s
  drainTimeout: 2m
websocket:
  maxMessageBytes: 65536
"#;
        let config = AgentConfig::from_yaml(yaml).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.name, "support-line");
        assert_eq!(config.session.max_duration, Duration::from_secs(1800));
        assert_eq!(config.session.idle_timeout, Duration::from_secs(45));
        assert_eq!(
            config.model,
            ModelConfig::Simulated(SimulatedModelConfig {
                mode: SimulatedMode::Loopback,
                think_time: Duration::ZERO
            })
        );
    }

    #[test]
    fn yaml_round_trips() {
        let mut config = AgentConfig::default();
        config.prompt.system = Some("Be brief.".into());
        config.session.drain_timeout = Duration::from_secs(90);
        let back = AgentConfig::from_yaml(&config.to_yaml()).expect("parses");
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = AgentConfig::from_yaml("session:\n  maxSesions: 3\n").expect_err("rejected");
        assert!(err.to_string().contains("maxSesions"), "{err}");
    }

    #[test]
    fn bad_durations_are_refused() {
        let err = AgentConfig::from_yaml("session:\n  idleTimeout: soon\n").expect_err("rejected");
        assert!(
            err.to_string().contains("idleTimeout") || err.to_string().contains("soon"),
            "{err}"
        );
    }

    #[test]
    fn parses_nova_sonic_settings() {
        let yaml = r#"
model:
  provider: NovaSonic
  region: us-east-1
  voice: tiffany
  temperature: 0.5
  endpointingSensitivity: HIGH
  endpointUrl: https://bedrock-runtime.us-east-1.amazonaws.com
"#;
        let config = AgentConfig::from_yaml(yaml).expect("parses");
        config.validate().expect("valid");
        let ModelConfig::NovaSonic(nova) = &config.model else {
            panic!("not nova: {:?}", config.model);
        };
        assert_eq!(nova.model_id, NOVA_2_SONIC);
        assert_eq!(nova.endpointing_sensitivity, Some(EndpointingSensitivity::High));
        assert_eq!(nova.renew_after, Duration::from_secs(420));
        assert_eq!(AgentConfig::from_yaml(&config.to_yaml()).expect("round trip"), config);
    }

    #[test]
    fn endpointing_sensitivity_is_refused_for_nova_v1_naming_the_field() {
        let nova = NovaSonicConfig {
            model_id: NOVA_SONIC_V1.into(),
            endpointing_sensitivity: Some(EndpointingSensitivity::Low),
            ..NovaSonicConfig::default()
        };
        let config = AgentConfig {
            model: ModelConfig::NovaSonic(nova),
            ..AgentConfig::default()
        };
        let err = config.validate().expect_err("invalid");
        assert!(err.to_string().contains("model.endpointingSensitivity"), "{err}");
    }

    #[test]
    fn nova_ranges_are_checked() {
        for (nova, field) in [
            (
                NovaSonicConfig {
                    temperature: Some(1.5),
                    ..Default::default()
                },
                "model.temperature",
            ),
            (
                NovaSonicConfig {
                    top_p: Some(-0.1),
                    ..Default::default()
                },
                "model.topP",
            ),
            (
                NovaSonicConfig {
                    max_tokens: Some(0),
                    ..Default::default()
                },
                "model.maxTokens",
            ),
            (
                NovaSonicConfig {
                    output_sample_rate: 44100,
                    ..Default::default()
                },
                "model.outputSampleRate",
            ),
            (
                NovaSonicConfig {
                    model_id: "anthropic.claude".into(),
                    ..Default::default()
                },
                "model.modelId",
            ),
            (
                NovaSonicConfig {
                    renew_after: Duration::from_secs(600),
                    ..Default::default()
                },
                "model.renewAfter",
            ),
        ] {
            let config = AgentConfig {
                model: ModelConfig::NovaSonic(nova),
                ..AgentConfig::default()
            };
            let err = config.validate().expect_err("invalid");
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn parses_gateway_settings() {
        let yaml = r#"
gateway:
  url: https://gw.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp
  auth:
    type: SigV4
    region: us-east-1
  allowedTools: [get_weather]
  callTimeout: 5s
"#;
        let config = AgentConfig::from_yaml(yaml).expect("parses");
        config.validate().expect("valid");
        let gateway = config.gateway.clone().expect("gateway");
        assert_eq!(
            gateway.auth,
            GatewayAuth::SigV4 {
                region: Some("us-east-1".into()),
                service: "bedrock-agentcore".into()
            }
        );
        assert_eq!(gateway.max_concurrent_calls, 4);
        assert_eq!(AgentConfig::from_yaml(&config.to_yaml()).expect("round trip"), config);
    }

    #[test]
    fn bearer_auth_needs_exactly_one_token_source() {
        let yaml = "gateway:\n  url: http://127.0.0.1:9/mcp\n  auth:\n    type: Bearer\n";
        let err = AgentConfig::from_yaml(yaml)
            .expect("parses")
            .validate()
            .expect_err("invalid");
        assert!(err.to_string().contains("gateway.auth"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut config = AgentConfig::default();
        config.session.max_sessions = 0;
        let err = config.validate().expect_err("invalid");
        assert!(err.to_string().contains("session.maxSessions"), "{err}");

        let mut config = AgentConfig::default();
        config.websocket.max_message_bytes = 10;
        assert!(
            config
                .validate()
                .expect_err("invalid")
                .to_string()
                .contains("websocket.maxMessageBytes")
        );

        let config = AgentConfig {
            prompt: PromptConfig {
                system: Some("a".into()),
                system_file: Some("/p".into()),
            },
            ..AgentConfig::default()
        };
        assert!(config.validate().expect_err("invalid").to_string().contains("prompt"));
    }
}
