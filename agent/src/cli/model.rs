//! Model and prompt settings on the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::overrides::{Overrides, describe_flag, flag};
use voice_config::{
    ConfigError, EndpointingSensitivity, ModelConfig, NovaSonicConfig, PromptConfig, SimulatedMode,
    SimulatedModelConfig,
};

/// Which model answers (`model.provider`). Also accepts the config file's spelling
/// (`NovaSonic`), since values are case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelProvider {
    /// The built-in simulator: no AWS account needed.
    Simulated,
    /// Amazon Nova Sonic on Bedrock.
    #[value(alias = "novasonic")]
    NovaSonic,
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Which model answers [config: model.provider, default simulated].
    #[arg(long, env = "VOICE_AGENT_MODEL_PROVIDER", value_enum, ignore_case = true)]
    pub model_provider: Option<ModelProvider>,
    /// Simulated provider: conversation, or loopback to echo input audio [config: model.mode].
    #[arg(long, env = "VOICE_AGENT_SIMULATED_MODE", value_enum, ignore_case = true)]
    pub simulated_mode: Option<SimulatedMode>,
    /// Simulated provider: pause before a reply, 0s to 10s [config: model.thinkTime, default 250ms].
    #[arg(long, env = "VOICE_AGENT_SIMULATED_THINK_TIME", value_parser = humantime::parse_duration)]
    pub simulated_think_time: Option<Duration>,
    /// Nova Sonic: Bedrock model id or inference profile id [config: model.modelId, default amazon.nova-2-5-sonic].
    #[arg(long, env = "VOICE_AGENT_NOVA_MODEL_ID")]
    pub nova_model_id: Option<String>,
    /// Nova Sonic: AWS region [config: model.region; default: AWS_REGION or the AWS profile].
    #[arg(long, env = "VOICE_AGENT_NOVA_REGION")]
    pub nova_region: Option<String>,
    /// Nova Sonic: voice id, e.g. matthew, tiffany, amy [config: model.voice, default matthew].
    #[arg(long, env = "VOICE_AGENT_NOVA_VOICE")]
    pub nova_voice: Option<String>,
    /// Nova Sonic: sample rate of the reply audio, 8000, 16000 or 24000 [config: model.outputSampleRate, default 24000].
    #[arg(long, env = "VOICE_AGENT_NOVA_OUTPUT_SAMPLE_RATE")]
    pub nova_output_sample_rate: Option<u32>,
    /// Nova 2 Sonic: how quickly a pause ends the user's turn [config: model.endpointingSensitivity].
    #[arg(
        long,
        env = "VOICE_AGENT_NOVA_ENDPOINTING_SENSITIVITY",
        value_enum,
        ignore_case = true
    )]
    pub nova_endpointing_sensitivity: Option<EndpointingSensitivity>,
    /// Nova Sonic: maximum tokens per reply, 1 to 10000 [config: model.maxTokens].
    #[arg(long, env = "VOICE_AGENT_NOVA_MAX_TOKENS")]
    pub nova_max_tokens: Option<u32>,
    /// Nova Sonic: sampling temperature, 0 to 1 [config: model.temperature].
    #[arg(long, env = "VOICE_AGENT_NOVA_TEMPERATURE")]
    pub nova_temperature: Option<f32>,
    /// Nova Sonic: nucleus sampling, 0 to 1 [config: model.topP].
    #[arg(long, env = "VOICE_AGENT_NOVA_TOP_P")]
    pub nova_top_p: Option<f32>,
    /// Nova Sonic: Bedrock runtime endpoint override (VPC endpoint, local fake) [config: model.endpointUrl].
    #[arg(long, env = "VOICE_AGENT_NOVA_ENDPOINT_URL")]
    pub nova_endpoint_url: Option<String>,
    /// Nova Sonic: extra PEM CA certificates to trust for the endpoint [config: model.caBundleFile].
    #[arg(long, env = "VOICE_AGENT_NOVA_CA_BUNDLE_FILE")]
    pub nova_ca_bundle_file: Option<PathBuf>,
    /// Nova Sonic: stream age at which it is renewed at the next turn boundary, 10s to 7m55s [config: model.renewAfter, default 7m].
    #[arg(long, env = "VOICE_AGENT_NOVA_RENEW_AFTER", value_parser = humantime::parse_duration)]
    pub nova_renew_after: Option<Duration>,
    /// Nova Sonic: model streams per HTTP/2 connection to Bedrock before another connection is opened, 1 to 1000 [config: model.streamsPerConnection, default 100].
    #[arg(long, env = "VOICE_AGENT_NOVA_STREAMS_PER_CONNECTION")]
    pub nova_streams_per_connection: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct PromptArgs {
    /// System prompt text [config: prompt.system].
    #[arg(long, env = "VOICE_AGENT_SYSTEM_PROMPT", conflicts_with = "system_prompt_file")]
    pub system_prompt: Option<String>,
    /// File with the system prompt, read at start [config: prompt.systemFile].
    #[arg(long, env = "VOICE_AGENT_SYSTEM_PROMPT_FILE")]
    pub system_prompt_file: Option<PathBuf>,
}

impl ModelArgs {
    pub(super) fn apply(&self, model: &mut ModelConfig, overrides: &mut Overrides) -> Result<(), ConfigError> {
        // Choosing the provider the file already has keeps the file's settings for it.
        match (self.model_provider, &*model) {
            (Some(ModelProvider::Simulated), ModelConfig::NovaSonic(_)) => {
                *model = ModelConfig::Simulated(SimulatedModelConfig::default());
            }
            (Some(ModelProvider::NovaSonic), ModelConfig::Simulated(_)) => {
                *model = ModelConfig::NovaSonic(NovaSonicConfig::default());
            }
            _ => {}
        }
        if self.model_provider.is_some() {
            overrides.record("model.provider", "model_provider");
        }
        match model {
            ModelConfig::Simulated(simulated) => {
                refuse_other_provider("Simulated", "nova-sonic", |o| {
                    self.apply_nova(&mut NovaSonicConfig::default(), o)
                })?;
                self.apply_simulated(simulated, overrides);
            }
            ModelConfig::NovaSonic(nova) => {
                refuse_other_provider("NovaSonic", "simulated", |o| {
                    self.apply_simulated(&mut SimulatedModelConfig::default(), o)
                })?;
                self.apply_nova(nova, overrides);
            }
        }
        Ok(())
    }

    fn apply_simulated(&self, simulated: &mut SimulatedModelConfig, overrides: &mut Overrides) {
        overrides.set(&mut simulated.mode, "model.mode", flag!(self.simulated_mode));
        overrides.set(
            &mut simulated.think_time,
            "model.thinkTime",
            flag!(self.simulated_think_time),
        );
    }

    fn apply_nova(&self, nova: &mut NovaSonicConfig, overrides: &mut Overrides) {
        overrides.set(&mut nova.model_id, "model.modelId", flag!(self.nova_model_id));
        overrides.set_some(&mut nova.region, "model.region", flag!(self.nova_region));
        overrides.set(&mut nova.voice, "model.voice", flag!(self.nova_voice));
        overrides.set(
            &mut nova.output_sample_rate,
            "model.outputSampleRate",
            flag!(self.nova_output_sample_rate),
        );
        overrides.set_some(
            &mut nova.endpointing_sensitivity,
            "model.endpointingSensitivity",
            flag!(self.nova_endpointing_sensitivity),
        );
        overrides.set_some(&mut nova.max_tokens, "model.maxTokens", flag!(self.nova_max_tokens));
        overrides.set_some(&mut nova.temperature, "model.temperature", flag!(self.nova_temperature));
        overrides.set_some(&mut nova.top_p, "model.topP", flag!(self.nova_top_p));
        overrides.set_some(
            &mut nova.endpoint_url,
            "model.endpointUrl",
            flag!(self.nova_endpoint_url),
        );
        overrides.set_some(
            &mut nova.ca_bundle_file,
            "model.caBundleFile",
            flag!(self.nova_ca_bundle_file),
        );
        overrides.set(&mut nova.renew_after, "model.renewAfter", flag!(self.nova_renew_after));
        overrides.set(
            &mut nova.streams_per_connection,
            "model.streamsPerConnection",
            flag!(self.nova_streams_per_connection),
        );
    }
}

/// Refuses settings of the provider not chosen: a Nova setting with the simulator selected is
/// almost always a forgotten `VOICE_AGENT_MODEL_PROVIDER`, which must not pass silently.
fn refuse_other_provider(
    provider: &str,
    other: &str,
    apply_other: impl FnOnce(&mut Overrides),
) -> Result<(), ConfigError> {
    let mut applied = Overrides::default();
    apply_other(&mut applied);
    match applied.first() {
        None => Ok(()),
        Some(arg) => Err(ConfigError::Invalid {
            field: "model.provider",
            message: format!(
                "the provider is {provider}, but {} is a setting of the other provider; set {} to {other}",
                describe_flag(arg),
                describe_flag("model_provider"),
            ),
        }),
    }
}

impl PromptArgs {
    pub(super) fn apply(&self, prompt: &mut PromptConfig, overrides: &mut Overrides) {
        // One source replaces the other, so a flag never collides with the file's choice.
        if self.system_prompt.is_some() {
            prompt.system_file = None;
        }
        if self.system_prompt_file.is_some() {
            prompt.system = None;
        }
        overrides.set_some(&mut prompt.system, "prompt.system", flag!(self.system_prompt));
        overrides.set_some(
            &mut prompt.system_file,
            "prompt.systemFile",
            flag!(self.system_prompt_file),
        );
    }
}
