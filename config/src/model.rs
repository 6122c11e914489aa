//! Model settings: the built-in simulator or Amazon Nova Sonic on Bedrock.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
    /// Model streams carried by one HTTP/2 connection to Bedrock. Servers cap concurrent
    /// streams per connection and the SDK never opens a second connection on its own, so the
    /// agent opens another connection whenever all of its connections carry this many.
    #[serde(default = "default_streams_per_connection")]
    pub streams_per_connection: u32,
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
            streams_per_connection: default_streams_per_connection(),
        }
    }
}

impl NovaSonicConfig {
    /// Whether the model is a Nova 2 Sonic (which takes text input and endpointing settings).
    pub fn is_nova_2(&self) -> bool {
        self.model_id.contains("nova-2-sonic")
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
        if !(1..=MAX_STREAMS_PER_CONNECTION).contains(&self.streams_per_connection) {
            return invalid(
                "model.streamsPerConnection",
                format!("must be between 1 and {MAX_STREAMS_PER_CONNECTION}"),
            );
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
/// Below the limits HTTP/2 servers commonly advertise (100 to 250 concurrent streams), so a
/// connection never makes a new stream wait; Bedrock does not publish its own.
fn default_streams_per_connection() -> u32 {
    100
}
/// Far above any server's per-connection limit; a larger setting could only mean a typo.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1000;
