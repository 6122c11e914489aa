//! `spec.model` and `spec.prompt`: which model answers and what it is told.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use voice_config::{NOVA_2_5_SONIC, NovaSonicConfig, SimulatedModelConfig};

use super::Duration;

/// Which speech-to-speech model answers, and its settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("self.provider == 'NovaSonic' || !has(self.novaSonic)")
        .message("model.novaSonic is only used when model.provider is NovaSonic")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.provider == 'Simulated' || !has(self.simulated)")
        .message("model.simulated is only used when model.provider is Simulated")
        .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// `Simulated`: the built-in conversation simulator (no cloud account; for quick starts,
    /// load tests and smoke tests). `NovaSonic`: Amazon Nova Sonic on Bedrock, with AWS
    /// credentials from the pod's identity (IRSA or EKS Pod Identity).
    #[serde(default)]
    pub provider: ModelProvider,

    /// Settings of the Simulated provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<SimulatedSpec>,

    /// Settings of the NovaSonic provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nova_sonic: Option<NovaSonicSpec>,
}

/// The model provider.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModelProvider {
    #[default]
    Simulated,
    NovaSonic,
}

/// Settings of the built-in simulator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SimulatedSpec {
    /// `Conversation`: turn detection and spoken replies. `Loopback`: input audio echoed back
    /// at once, for measuring the agent's own overhead.
    #[serde(default)]
    pub mode: SimulatedMode,

    /// Pause between the end of the user's turn and the start of the reply (at most 10s).
    #[serde(default = "default_think_time")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('10s')").message("thinkTime must be at most 10s"))]
    pub think_time: Duration,
}

impl Default for SimulatedSpec {
    fn default() -> Self {
        Self {
            mode: SimulatedMode::default(),
            think_time: default_think_time(),
        }
    }
}

/// What the simulator does with the caller's audio.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SimulatedMode {
    #[default]
    Conversation,
    Loopback,
}

/// How eagerly Nova 2 Sonic decides the caller finished speaking.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndpointingSensitivity {
    High,
    Medium,
    Low,
}

/// Settings of Amazon Nova Sonic on Bedrock.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.endpointingSensitivity) || !self.modelId.matches('amazon\\\\.nova(-[01](-[0-9]+)?)?-sonic')")
        .message("endpointingSensitivity is supported from Nova 2 Sonic on, not by Nova Sonic v1")
        .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
pub struct NovaSonicSpec {
    /// Bedrock model id, inference profile id or the ARN of either: `amazon.nova-2-5-sonic`
    /// (Nova 2.5 Sonic, the default), `amazon.nova-2-sonic-v1:0` (Nova 2 Sonic),
    /// `amazon.nova-sonic-v1:0` (v1, end of life), or a profile such as
    /// `us.amazon.nova-2-5-sonic` or `global.amazon.nova-2-sonic-v1:0`.
    #[serde(default = "default_model_id")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new(NOVA_MODEL_ID_RULE).message("modelId must name a Nova Sonic model: amazon.nova-2-5-sonic, amazon.nova-2-sonic-v1:0 or amazon.nova-sonic-v1:0, optionally with an inference-profile prefix such as us., eu. or global."))]
    pub model_id: String,

    /// AWS region of the Bedrock endpoint, e.g. `us-east-1`. Defaults to the pod's
    /// environment (`AWS_REGION`, set by IRSA and Pod Identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// Voice id, e.g. `matthew`, `tiffany`, `amy`.
    #[serde(default = "default_voice")]
    #[schemars(length(min = 1, max = 64))]
    pub voice: String,

    /// Sample rate of the reply audio in Hz: 8000, 16000 or 24000.
    #[serde(default = "default_output_sample_rate")]
    #[x_kube(validation = Rule::new("self in [8000, 16000, 24000]").message("outputSampleRate must be 8000, 16000 or 24000"))]
    pub output_sample_rate: i32,

    /// Largest number of tokens in one reply (1 to 10000). Defaults to the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_tokens: Option<i32>,

    /// Sampling temperature, 0 to 1. Defaults to the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub temperature: Option<f64>,

    /// Nucleus sampling threshold, 0 to 1. Defaults to the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: Option<f64>,

    /// Nova 2 Sonic only: how quickly a pause ends the caller's turn (HIGH, MEDIUM or LOW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpointing_sensitivity: Option<EndpointingSensitivity>,

    /// Bedrock runtime endpoint override, e.g. a VPC endpoint
    /// (`https://vpce-....bedrock-runtime.us-east-1.vpce.amazonaws.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint_url: Option<String>,

    /// Extra CA certificates (PEM) to trust for the endpoint, from a ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<KeyRef>,

    /// Age at which a model stream is replaced at the next turn boundary, before Nova's limit
    /// of about eight minutes (10s to 7m55s).
    #[serde(default = "default_renew_after")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s') && duration(self) <= duration('7m55s')").message("renewAfter must be between 10s and 7m55s (Nova ends streams after about 8 minutes)"))]
    pub renew_after: Duration,

    /// Model streams one HTTP/2 connection to Bedrock carries before the agent opens another
    /// (1 to 1000). Servers limit the concurrent streams per connection; keep this below it.
    #[serde(default = "default_streams_per_connection")]
    #[schemars(range(min = 1, max = 1000))]
    pub streams_per_connection: i32,
}

impl Default for NovaSonicSpec {
    fn default() -> Self {
        Self {
            model_id: default_model_id(),
            region: None,
            voice: default_voice(),
            output_sample_rate: default_output_sample_rate(),
            max_tokens: None,
            temperature: None,
            top_p: None,
            endpointing_sensitivity: None,
            endpoint_url: None,
            ca_bundle: None,
            renew_after: default_renew_after(),
            streams_per_connection: default_streams_per_connection(),
        }
    }
}

/// The agent's system prompt.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.system) != has(self.systemFrom)")
        .message("set exactly one of prompt.system and prompt.systemFrom")
)]
#[serde(rename_all = "camelCase")]
pub struct PromptSpec {
    /// The system prompt, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub system: Option<String>,

    /// The system prompt from a ConfigMap or Secret key, mounted into the pods as a file.
    /// Changing the referenced value rolls the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_from: Option<ValueSource>,

    /// An instruction the model answers before the caller speaks, so it speaks first (e.g.
    /// "Greet the caller and ask how you can help"). Needs Nova 2 Sonic or later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2000))]
    pub greeting: Option<String>,
}

/// A value kept in a ConfigMap or a Secret of the VoiceAgent's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.configMapKeyRef) != has(self.secretKeyRef)")
        .message("set exactly one of configMapKeyRef and secretKeyRef")
)]
#[serde(rename_all = "camelCase")]
pub struct ValueSource {
    /// A key of a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
    /// A key of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
}

/// A key of a ConfigMap or Secret in the VoiceAgent's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    /// Name of the object.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// The key within the object's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_think_time() -> Duration {
    SimulatedModelConfig::default().think_time.into()
}
/// What `voice_config::nova_generation` accepts, as a CEL rule (tests/cel_rules.rs checks the
/// two agree on a table of ids).
const NOVA_MODEL_ID_RULE: &str = "self.matches('^(arn:[a-z-]+:[a-z-]+:[a-z0-9-]*:[0-9]*:(foundation-model|inference-profile)/)?([a-z-]{2,12}\\\\.)?amazon\\\\.nova(-[0-9]+){0,2}-sonic(-v[0-9]+(:[0-9]+)?)?$')";

fn default_model_id() -> String {
    NOVA_2_5_SONIC.to_owned()
}
fn default_voice() -> String {
    NovaSonicConfig::default().voice
}
fn default_output_sample_rate() -> i32 {
    i32::try_from(NovaSonicConfig::default().output_sample_rate).unwrap_or(24_000)
}
fn default_renew_after() -> Duration {
    NovaSonicConfig::default().renew_after.into()
}

fn default_streams_per_connection() -> i32 {
    // The agent's default is a small constant (100), well inside i32.
    i32::try_from(NovaSonicConfig::default().streams_per_connection).unwrap_or(i32::MAX)
}
