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

/// Nova 2.5 Sonic's model id: the default, and what Strands' `BidiAgent` and Pipecat default to.
pub const NOVA_2_5_SONIC: &str = "amazon.nova-2-5-sonic";
/// Nova 2 Sonic's model id.
pub const NOVA_2_SONIC: &str = "amazon.nova-2-sonic-v1:0";
/// The first Nova Sonic (end of life on Bedrock since 2026-09-14), still accepted for accounts
/// that kept it through a provisioned or private offering.
pub const NOVA_SONIC_V1: &str = "amazon.nova-sonic-v1:0";

/// One generation of Nova Sonic and what the agent may use of it. Model ids map onto the table
/// by their version (`nova-sonic` is 1, `nova-2-sonic` 2.0, `nova-2-5-sonic` 2.5); the last row
/// covers every later version, so a new Nova Sonic works the day it ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NovaGeneration {
    /// What users call it.
    pub name: &'static str,
    /// The model id of this generation the agent documents.
    pub model_id: &'static str,
    /// The lowest model version in this generation.
    pub since: (u32, u32),
    /// Takes cross-modal text input (typed messages, the greeting instruction) in an audio
    /// conversation.
    pub text_input: bool,
    /// Takes `turnDetectionConfiguration.endpointingSensitivity`.
    pub endpointing: bool,
    /// Whether Bedrock has retired it.
    pub end_of_life: bool,
}

/// Every Nova Sonic generation the agent knows, oldest first.
pub const NOVA_GENERATIONS: &[NovaGeneration] = &[
    NovaGeneration {
        name: "Nova Sonic",
        model_id: NOVA_SONIC_V1,
        since: (1, 0),
        text_input: false,
        endpointing: false,
        end_of_life: true,
    },
    NovaGeneration {
        name: "Nova 2 Sonic",
        model_id: NOVA_2_SONIC,
        since: (2, 0),
        text_input: true,
        endpointing: true,
        end_of_life: false,
    },
    NovaGeneration {
        name: "Nova 2.5 Sonic and later",
        model_id: NOVA_2_5_SONIC,
        since: (2, 5),
        text_input: true,
        endpointing: true,
        end_of_life: false,
    },
];

/// The generation of a Bedrock model id, inference profile id (`us.`, `eu.`, `global.`…) or
/// their ARN, or why it is not a Nova Sonic model.
pub fn nova_generation(model_id: &str) -> Result<&'static NovaGeneration, String> {
    let version = nova_version(model_id).ok_or_else(|| {
        let families: Vec<String> = NOVA_GENERATIONS
            .iter()
            .rev()
            .map(|g| format!("{} ({})", g.model_id, g.name))
            .collect();
        format!(
            "{:?} is not a Nova Sonic model id; use one of {}, optionally with an inference-profile \
             prefix such as us., eu. or global.",
            model_id.chars().take(128).collect::<String>(),
            families.join(", ")
        )
    })?;
    Ok(NOVA_GENERATIONS
        .iter()
        .rev()
        .find(|g| version >= g.since)
        .unwrap_or(&NOVA_GENERATIONS[0]))
}

/// The model version a Nova Sonic id names: `[arn:…:(foundation-model|inference-profile)/]
/// [<geography>.]amazon.nova[-<major>[-<minor>]]-sonic[-v<n>[:<n>]]`.
fn nova_version(model_id: &str) -> Option<(u32, u32)> {
    let id = match model_id.strip_prefix("arn:") {
        Some(arn) => {
            // arn:partition:service:region:account:resource; the resource may hold colons.
            let resource = arn.splitn(5, ':').nth(4)?;
            resource
                .strip_prefix("foundation-model/")
                .or_else(|| resource.strip_prefix("inference-profile/"))?
        }
        None => model_id,
    };
    let (geography, rest) = id.split_once("amazon.nova")?;
    let geography_ok = geography.is_empty()
        || geography
            .strip_suffix('.')
            .is_some_and(|g| (2..=12).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
    if !geography_ok {
        return None;
    }
    let (version, suffix) = rest.split_once("-sonic")?;
    let mut numbers = version.split('-').skip(1).map(|n| {
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<u32>().ok())
            .flatten()
    });
    if !version.is_empty() && !version.starts_with('-') {
        return None;
    }
    let version = match (numbers.next(), numbers.next(), numbers.next()) {
        (None, _, _) => (1, 0),
        (Some(Some(major)), None, _) => (major, 0),
        (Some(Some(major)), Some(Some(minor)), None) => (major, minor),
        _ => return None,
    };
    let suffix_ok = suffix.is_empty()
        || suffix.strip_prefix("-v").is_some_and(|v| {
            let (major, minor) = v.split_once(':').unwrap_or((v, "0"));
            [major, minor]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    suffix_ok.then_some(version)
}

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
    /// Bedrock model id, inference profile id (such as `us.amazon.nova-2-sonic-v1:0`) or ARN of
    /// either; see [`NOVA_GENERATIONS`].
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
    /// The model's generation; the first row of the table for an id validation would refuse.
    pub fn generation(&self) -> &'static NovaGeneration {
        nova_generation(&self.model_id).unwrap_or(&NOVA_GENERATIONS[0])
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        let generation = match nova_generation(&self.model_id) {
            Ok(generation) => generation,
            Err(message) => return invalid("model.modelId", message),
        };
        if self.endpointing_sensitivity.is_some() && !generation.endpointing {
            return invalid(
                "model.endpointingSensitivity",
                format!(
                    "is supported from Nova 2 Sonic ({NOVA_2_SONIC}) on, not by {} ({})",
                    generation.name, self.model_id
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
    NOVA_2_5_SONIC.into()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn generation_name(id: &str) -> Result<&'static str, String> {
        nova_generation(id).map(|g| g.name)
    }

    #[test]
    fn model_ids_map_to_their_generation() {
        let cases = [
            ("amazon.nova-sonic-v1:0", "Nova Sonic"),
            ("us.amazon.nova-sonic-v1:0", "Nova Sonic"),
            ("amazon.nova-2-sonic-v1:0", "Nova 2 Sonic"),
            ("eu.amazon.nova-2-sonic-v1:0", "Nova 2 Sonic"),
            ("amazon.nova-2-sonic", "Nova 2 Sonic"),
            ("amazon.nova-2-5-sonic", "Nova 2.5 Sonic and later"),
            ("global.amazon.nova-2-5-sonic", "Nova 2.5 Sonic and later"),
            ("us-gov.amazon.nova-2-5-sonic-v1:0", "Nova 2.5 Sonic and later"),
            ("amazon.nova-3-sonic-v2", "Nova 2.5 Sonic and later"),
            (
                "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-2-sonic-v1:0",
                "Nova 2 Sonic",
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-2-5-sonic",
                "Nova 2.5 Sonic and later",
            ),
        ];
        for (id, name) in cases {
            assert_eq!(generation_name(id), Ok(name), "{id}");
        }
    }

    #[test]
    fn other_models_are_refused_with_the_accepted_families() {
        for id in [
            "anthropic.claude-3-haiku",
            "amazon.nova-lite-v1:0",
            "amazon.nova-2-lite-v1:0",
            "amazon.nova-sonicx",
            "amazon.nova-2--sonic",
            "amazon.nova-2-5-1-sonic",
            "amazon.nova-x-sonic",
            "US.amazon.nova-2-sonic-v1:0",
            "amazon.nova-2-sonic-v1:",
            "arn:aws:bedrock:us-east-1:1:application-inference-profile/abc",
            "",
        ] {
            let message = nova_generation(id).err().unwrap_or_else(|| panic!("{id:?} accepted"));
            assert!(
                message.contains(NOVA_2_5_SONIC) && message.contains(NOVA_2_SONIC) && message.contains("us."),
                "{message}"
            );
        }
    }

    #[test]
    fn capabilities_follow_the_generation() {
        let v1 = nova_generation(NOVA_SONIC_V1).expect("v1");
        assert!(!v1.text_input && !v1.endpointing && v1.end_of_life);
        for id in [NOVA_2_SONIC, NOVA_2_5_SONIC, "amazon.nova-4-sonic"] {
            let generation = nova_generation(id).expect(id);
            assert!(
                generation.text_input && generation.endpointing && !generation.end_of_life,
                "{id}"
            );
        }
    }

    #[test]
    fn the_table_is_in_version_order_and_each_documented_id_maps_to_its_row() {
        for pair in NOVA_GENERATIONS.windows(2) {
            assert!(pair[0].since < pair[1].since);
        }
        for generation in NOVA_GENERATIONS {
            assert_eq!(nova_generation(generation.model_id), Ok(generation));
        }
    }
}
