//! `AgentConfig`: the agent's configuration file, and the contract with the operator, which
//! renders this same type into the ConfigMap it mounts. Flags and environment variables
//! override single fields (see `cli.rs`). Secrets never live here: only paths to files that
//! hold them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod gateway;
mod model;
mod resume;
mod security;
mod settings;
mod telephony;

pub use gateway::{
    DEFAULT_SIGV4_SERVICE, GATEWAY_SERVER_NAME, GatewayAuth, GatewayConfig, MAX_SERVER_NAME_LEN, MAX_TOOL_SERVERS,
    TOOL_NAME_SEPARATOR, ToolServerConfig, model_tool_names, resolve_tool_names, server_name_problem, short_tool_name,
    tool_allowed,
};
pub use model::{
    EndpointingSensitivity, ModelConfig, NOVA_2_5_SONIC, NOVA_2_SONIC, NOVA_GENERATIONS, NOVA_SONIC_V1, NovaGeneration,
    NovaSonicConfig, SimulatedMode, SimulatedModelConfig, nova_generation,
};
pub use resume::{RedisConfig, ResumeConfig, ResumeStore, default_key_prefix, default_timeout};
pub use security::{AuthConfig, AuthMode, JwtConfig, LimitsConfig, SUPPORTED_ALGORITHMS, TlsConfig};
pub use settings::{
    MAX_METADATA_KEYS, MAX_SETTING_LENGTH, MetadataConfig, PromptVariable, SessionSettingsConfig, is_variable_name,
    template_variables,
};
pub use telephony::{TelephonyConfig, TelnyxConfig, TwilioConfig, VonageConfig};

/// An [`AgentConfig`] that passed validation: what the agent starts from, so that start-up can
/// fail only on I/O (files, sockets, credentials), never on a value it could have refused first.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig(AgentConfig);

impl ValidConfig {
    pub fn into_inner(self) -> AgentConfig {
        self.0
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = AgentConfig;

    fn deref(&self) -> &AgentConfig {
        &self.0
    }
}

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
    /// What callers may choose for their own session (omitted from the rendered file when it
    /// allows nothing, so agents that do not use it keep the same file).
    #[serde(default, skip_serializing_if = "SessionSettingsConfig::is_default")]
    pub session_settings: SessionSettingsConfig,
    #[serde(default)]
    pub websocket: WebSocketConfig,
    /// Tools from one MCP server (an AgentCore Gateway or any streamable-HTTP MCP server): the
    /// shorthand for a `toolServers` list of one server named `gateway`. Not with `toolServers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayConfig>,
    /// Tools from several MCP servers, each named, with its own URL, auth, allowed tools and
    /// limits. Not with `gateway`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_servers: Vec<ToolServerConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Phone calls through carriers' media streams (Twilio, Telnyx, Vonage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephony: Option<TelephonyConfig>,
}

/// The system prompt, inline or from a file (the operator mounts `systemFrom` as a file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_file: Option<PathBuf>,
    /// An instruction the model answers before the caller speaks (it speaks first), e.g.
    /// "Greet the caller and ask how you can help". Needs a model that takes text input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
}

/// The system prompt of an agent configured without one. Nova's documented event sequence starts
/// every conversation with a system prompt, and a speech-to-speech model without one answers at
/// length, as if writing: this keeps replies short and spoken.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a friendly voice assistant talking with a caller. \
Your replies are spoken aloud, so keep them short and conversational: usually two or three \
sentences, with no lists, markup or emoji. If you did not understand the caller, ask them to repeat.";

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
    /// Resumable sessions (left out of the rendered file while at its defaults).
    #[serde(default, skip_serializing_if = "ResumeConfig::is_default")]
    pub resume: ResumeConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_sessions: default_max_sessions(),
            max_duration: default_max_duration(),
            idle_timeout: default_idle_timeout(),
            drain_timeout: default_drain_timeout(),
            resume: ResumeConfig::default(),
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
            session_settings: SessionSettingsConfig::default(),
            websocket: WebSocketConfig::default(),
            gateway: None,
            tool_servers: Vec::new(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            tls: None,
            telephony: None,
        }
    }
}

fn default_name() -> String {
    "voice-agent".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
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

    /// The configuration as YAML, as [`from_yaml`](Self::from_yaml) reads it.
    pub fn try_to_yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
        serde_saphyr::to_string(self)
    }

    /// [`try_to_yaml`](Self::try_to_yaml) for display: empty if serialization fails.
    pub fn to_yaml(&self) -> String {
        self.try_to_yaml().unwrap_or_default()
    }

    /// Checks the values serde cannot and returns the configuration as a [`ValidConfig`], the
    /// only form the agent starts from.
    pub fn validated(self) -> Result<ValidConfig, ConfigError> {
        self.validate()?;
        Ok(ValidConfig(self))
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
        if self.prompt.greeting.as_deref().is_some_and(|g| g.trim().is_empty()) {
            return invalid("prompt.greeting", "must not be empty when set");
        }
        if let Some(greeting) = &self.prompt.greeting
            && greeting.chars().count() > MAX_SETTING_LENGTH
        {
            return Err(ConfigError::Invalid {
                field: "prompt.greeting",
                message: format!("must be at most {MAX_SETTING_LENGTH} characters"),
            });
        }
        self.session_settings.validate()?;
        self.session.resume.validate()?;
        if let Some(telephony) = &self.telephony {
            telephony.validate()?;
        }
        if let ModelConfig::NovaSonic(nova) = &self.model
            && !nova.generation().text_input
            && (self.prompt.greeting.is_some()
                || self.session_settings.greeting
                || self.telephony.as_ref().is_some_and(|t| t.greeting.is_some()))
        {
            return Err(ConfigError::Invalid {
                field: if self.prompt.greeting.is_none() && !self.session_settings.greeting {
                    "telephony.greeting"
                } else {
                    "prompt.greeting"
                },
                message: format!(
                    "the model speaks first from a text instruction, which {} does not take",
                    nova.generation().name
                ),
            });
        }
        if let Some(system) = &self.prompt.system {
            self.check_template(system)?;
        }
        gateway::validate_servers(self.gateway.as_ref(), &self.tool_servers)?;
        self.auth.validate()?;
        self.limits.validate()?;
        match &self.model {
            ModelConfig::Simulated(sim) if sim.think_time > Duration::from_secs(10) => {
                invalid("model.thinkTime", "must be at most 10s")
            }
            ModelConfig::Simulated(_) => Ok(()),
            ModelConfig::NovaSonic(nova) => nova.validate(),
        }
    }

    /// Every tool server, in order: the `gateway` shorthand's or the `toolServers` list.
    pub fn tool_servers(&self) -> impl Iterator<Item = &ToolServerConfig> {
        self.gateway.iter().chain(&self.tool_servers)
    }

    /// Sample rate of the audio sessions send to clients.
    pub fn output_sample_rate(&self) -> u32 {
        match &self.model {
            ModelConfig::Simulated(_) => 24_000,
            ModelConfig::NovaSonic(nova) => nova.output_sample_rate,
        }
    }

    /// The system prompt template: `systemFile`'s text, `system`, or [`DEFAULT_SYSTEM_PROMPT`]
    /// when neither is set (or the one set is blank). Its `{{variables}}` are checked against
    /// `sessionSettings.variables`.
    pub fn system_prompt(&self) -> Result<String, ConfigError> {
        let configured = match &self.prompt.system_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?),
            None => self.prompt.system.clone(),
        };
        let prompt = configured
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned());
        self.check_template(&prompt)?;
        Ok(prompt)
    }

    /// Every `{{variable}}` of a prompt must be declared, or callers could never fill it.
    fn check_template(&self, prompt: &str) -> Result<(), ConfigError> {
        let declared = &self.session_settings.variables;
        match template_variables(prompt)
            .into_iter()
            .find(|name| !declared.iter().any(|v| v.name == *name))
        {
            Some(name) => Err(ConfigError::Invalid {
                field: "prompt",
                message: format!("the prompt uses {{{{{name}}}}}, which is not declared in sessionSettings.variables"),
            }),
            None => Ok(()),
        }
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
        assert_eq!(nova.model_id, NOVA_2_5_SONIC, "the default");
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
    fn a_token_in_the_token_variable_name_is_refused_without_echoing_it() {
        let yaml = "gateway:\n  url: http://127.0.0.1:9/mcp\n  auth:\n    type: Bearer\n    tokenEnv: eyJhbGciOi.secret-part\n";
        let err = AgentConfig::from_yaml(yaml)
            .expect("parses")
            .validate()
            .expect_err("invalid");
        let message = err.to_string();
        assert!(message.contains("gateway.auth.tokenEnv"), "{message}");
        assert!(!message.contains("secret-part"), "{message}");
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
                greeting: None,
            },
            ..AgentConfig::default()
        };
        assert!(config.validate().expect_err("invalid").to_string().contains("prompt"));
    }

    #[test]
    fn an_agent_without_a_prompt_gets_the_default_one() {
        let config = AgentConfig::default();
        assert_eq!(config.system_prompt().expect("prompt"), DEFAULT_SYSTEM_PROMPT);
        let blank = AgentConfig {
            prompt: PromptConfig {
                system: Some("  ".into()),
                ..PromptConfig::default()
            },
            ..AgentConfig::default()
        };
        assert_eq!(blank.system_prompt().expect("prompt"), DEFAULT_SYSTEM_PROMPT);
    }

    #[test]
    fn prompt_variables_must_be_declared() {
        let mut config = AgentConfig {
            prompt: PromptConfig {
                system: Some("Help {{customer_name}} with order {{ order_id }}.".into()),
                ..PromptConfig::default()
            },
            ..AgentConfig::default()
        };
        let message = config.validate().expect_err("undeclared").to_string();
        assert!(message.contains("{{customer_name}}"), "{message}");
        config.session_settings.variables = ["customer_name", "order_id"]
            .map(|name| PromptVariable {
                name: name.into(),
                ..PromptVariable::default()
            })
            .to_vec();
        config.validate().expect("declared");
    }

    #[test]
    fn a_greeting_needs_a_model_that_takes_text() {
        let config = AgentConfig {
            model: ModelConfig::NovaSonic(NovaSonicConfig {
                model_id: NOVA_SONIC_V1.into(),
                ..NovaSonicConfig::default()
            }),
            prompt: PromptConfig {
                greeting: Some("Greet the caller.".into()),
                ..PromptConfig::default()
            },
            ..AgentConfig::default()
        };
        let message = config.validate().expect_err("v1 takes no text").to_string();
        assert!(message.contains("prompt.greeting"), "{message}");
        let nova_2 = AgentConfig {
            model: ModelConfig::NovaSonic(NovaSonicConfig::default()),
            ..config
        };
        nova_2.validate().expect("Nova 2.5 takes text");
    }
}
