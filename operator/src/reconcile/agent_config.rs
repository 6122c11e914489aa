//! The agent's own configuration (`voice_agent::config::AgentConfig`) rendered from a spec. The
//! operator serializes the very type the agent deserializes, so the file and the agent cannot
//! drift apart; the agent's `validate()` then judges the values with its own field names.

use std::net::SocketAddr;
use std::path::PathBuf;

use voice_agent::config::{
    AgentConfig, EndpointingSensitivity as AgentSensitivity, ModelConfig, NovaSonicConfig, PromptConfig, SessionConfig,
    SimulatedMode as AgentMode, SimulatedModelConfig, WebSocketConfig,
};

use crate::api::{EndpointingSensitivity, ModelProvider, SimulatedMode, SimulatedSpec, VoiceAgentSpec};

/// Port of the agent's single listener (WebSocket, probes and metrics).
pub const AGENT_PORT: u16 = 8080;
/// Where the ConfigMap is mounted, and the config file in it. Each mounted source gets its own
/// directory: a mount inside a ConfigMap volume would be at the mercy of the kubelet's updates.
pub const CONFIG_DIR: &str = "/etc/voice-agent/config";
pub const CONFIG_FILE: &str = "config.yaml";
/// Where a `systemFrom` prompt is mounted.
pub const PROMPT_DIR: &str = "/etc/voice-agent/prompt";
pub const PROMPT_FILE: &str = "system.txt";
/// Where a Nova Sonic CA bundle is mounted.
pub const CA_DIR: &str = "/etc/voice-agent/ca";
pub const CA_FILE: &str = "ca.pem";

/// A value the spec holds that the agent's types cannot (e.g. a negative count).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct OutOfRange {
    pub field: &'static str,
    pub message: String,
}

/// Renders the agent's configuration file for the VoiceAgent `name`.
pub fn agent_config(name: &str, spec: &VoiceAgentSpec) -> Result<AgentConfig, OutOfRange> {
    let model = match spec.model.provider {
        ModelProvider::Simulated => {
            let sim = spec.model.simulated.clone().unwrap_or_default();
            ModelConfig::Simulated(simulated(&sim))
        }
        ModelProvider::NovaSonic => {
            let nova = spec.model.nova_sonic.clone().unwrap_or_default();
            ModelConfig::NovaSonic(NovaSonicConfig {
                model_id: nova.model_id,
                region: nova.region,
                voice: nova.voice,
                output_sample_rate: non_negative("model.novaSonic.outputSampleRate", nova.output_sample_rate)?,
                max_tokens: nova
                    .max_tokens
                    .map(|t| non_negative("model.novaSonic.maxTokens", t))
                    .transpose()?,
                // Narrowing is exact for the 0..1 range the schema allows.
                temperature: nova.temperature.map(|t| t as f32),
                top_p: nova.top_p.map(|p| p as f32),
                endpointing_sensitivity: nova.endpointing_sensitivity.map(sensitivity),
                endpoint_url: nova.endpoint_url,
                ca_bundle_file: nova.ca_bundle.map(|_| PathBuf::from(CA_DIR).join(CA_FILE)),
                renew_after: nova.renew_after.into(),
            })
        }
    };
    let prompt = match &spec.prompt {
        None => PromptConfig::default(),
        Some(p) => PromptConfig {
            system: p.system.clone(),
            system_file: p
                .system_from
                .as_ref()
                .map(|_| PathBuf::from(PROMPT_DIR).join(PROMPT_FILE)),
        },
    };
    let session = SessionConfig {
        max_sessions: non_negative("session.maxSessionsPerReplica", spec.session.max_sessions_per_replica)?,
        max_duration: spec.session.max_duration.into(),
        idle_timeout: spec.session.idle_timeout.into(),
        drain_timeout: spec.session.drain_timeout.into(),
    };
    let websocket = WebSocketConfig {
        max_message_bytes: usize::try_from(spec.websocket.max_message_bytes).map_err(|_| OutOfRange {
            field: "websocket.maxMessageBytes",
            message: "must not be negative".into(),
        })?,
    };
    Ok(AgentConfig {
        name: name.to_owned(),
        listen: SocketAddr::from(([0, 0, 0, 0], AGENT_PORT)),
        model,
        prompt,
        session,
        websocket,
        // Sections the VoiceAgent does not cover yet (the tool gateway) keep the agent's
        // defaults, so the agent gaining a field does not break the operator.
        ..AgentConfig::default()
    })
}

fn simulated(spec: &SimulatedSpec) -> SimulatedModelConfig {
    SimulatedModelConfig {
        mode: match spec.mode {
            SimulatedMode::Conversation => AgentMode::Conversation,
            SimulatedMode::Loopback => AgentMode::Loopback,
        },
        think_time: spec.think_time.into(),
    }
}

fn sensitivity(s: EndpointingSensitivity) -> AgentSensitivity {
    match s {
        EndpointingSensitivity::High => AgentSensitivity::High,
        EndpointingSensitivity::Medium => AgentSensitivity::Medium,
        EndpointingSensitivity::Low => AgentSensitivity::Low,
    }
}

fn non_negative(field: &'static str, value: i32) -> Result<u32, OutOfRange> {
    u32::try_from(value).map_err(|_| OutOfRange {
        field,
        message: format!("must not be negative (got {value})"),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{KeyRef, ModelSpec, NovaSonicSpec, PromptSpec, ValueSource};

    #[test]
    fn defaults_render_the_agents_defaults() {
        let config = agent_config("support", &VoiceAgentSpec::default()).expect("renders");
        let expected = AgentConfig {
            name: "support".into(),
            ..AgentConfig::default()
        };
        assert_eq!(config, expected);
        config.validate().expect("the agent accepts its defaults");
    }

    #[test]
    fn nova_settings_and_mounted_files_map_to_the_agents_fields() {
        let spec = VoiceAgentSpec {
            model: ModelSpec {
                provider: ModelProvider::NovaSonic,
                simulated: None,
                nova_sonic: Some(NovaSonicSpec {
                    region: Some("eu-north-1".into()),
                    temperature: Some(0.5),
                    max_tokens: Some(1024),
                    endpointing_sensitivity: Some(EndpointingSensitivity::Low),
                    ca_bundle: Some(KeyRef {
                        name: "ca".into(),
                        key: "bundle.pem".into(),
                    }),
                    ..NovaSonicSpec::default()
                }),
            },
            prompt: Some(PromptSpec {
                system: None,
                system_from: Some(ValueSource {
                    config_map_key_ref: Some(KeyRef {
                        name: "prompts".into(),
                        key: "support".into(),
                    }),
                    secret_key_ref: None,
                }),
            }),
            ..VoiceAgentSpec::default()
        };
        let config = agent_config("support", &spec).expect("renders");
        config.validate().expect("valid");
        let ModelConfig::NovaSonic(nova) = &config.model else {
            panic!("not Nova: {:?}", config.model);
        };
        assert_eq!(nova.region.as_deref(), Some("eu-north-1"));
        assert_eq!(nova.temperature, Some(0.5));
        assert_eq!(nova.max_tokens, Some(1024));
        assert_eq!(nova.endpointing_sensitivity, Some(AgentSensitivity::Low));
        assert_eq!(
            nova.ca_bundle_file.as_deref(),
            Some(std::path::Path::new("/etc/voice-agent/ca/ca.pem"))
        );
        assert_eq!(nova.renew_after, Duration::from_secs(420));
        assert_eq!(
            config.prompt.system_file.as_deref(),
            Some(std::path::Path::new("/etc/voice-agent/prompt/system.txt"))
        );
        assert_eq!(config.prompt.system, None);
    }

    #[test]
    fn the_rendered_yaml_is_what_the_agent_reads_back() {
        let spec = VoiceAgentSpec {
            prompt: Some(PromptSpec {
                system: Some("You are brief.\nAnswer in one sentence.".into()),
                system_from: None,
            }),
            ..VoiceAgentSpec::default()
        };
        let config = agent_config("support", &spec).expect("renders");
        let back = AgentConfig::from_yaml(&config.to_yaml()).expect("the agent parses it");
        assert_eq!(back, config);
    }

    #[test]
    fn negative_counts_are_named() {
        let mut spec = VoiceAgentSpec::default();
        spec.session.max_sessions_per_replica = -1;
        let err = agent_config("a", &spec).expect_err("refused");
        assert_eq!(err.field, "session.maxSessionsPerReplica");
    }
}
