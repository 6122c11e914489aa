//! Command line: every server option has a flag and an environment variable (`VOICE_AGENT_…`),
//! so the stock image runs where only environment variables can be set (AgentCore Runtime).
//! A flag beats its environment variable, which beats the config file, which beats the
//! default; the merged configuration goes through [`AgentConfig::validate`].
//!
//! Secrets are never flag values, which would show in `ps`: only paths of files that hold them,
//! or the name of the environment variable that does.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{
    AgentConfig, AuthMode, ConfigError, DEFAULT_SIGV4_SERVICE, EndpointingSensitivity, GatewayAuth, GatewayConfig,
    JwtConfig, ModelConfig, NovaSonicConfig, PromptConfig, SimulatedMode, SimulatedModelConfig, TlsConfig,
};

#[derive(Debug, Parser)]
#[command(
    name = "voice-agent",
    version,
    about = "Real-time voice agent server: WebSocket voice sessions bridged to a speech-to-speech model",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// Parses flags and environment like [`Parser::parse`], and when a value is refused and
    /// came from an environment variable, also names that variable (clap names only the flag).
    pub fn parse_or_exit() -> Self {
        match Self::try_parse() {
            Ok(cli) => cli,
            Err(error) => {
                let variable = environment_source(&error);
                // Printing to a closed stderr can fail; the exit status still tells.
                let _ = error.print();
                if let Some(variable) = variable {
                    let _ = writeln!(
                        std::io::stderr(),
                        "note: the value comes from the environment variable {variable}"
                    );
                }
                std::process::exit(error.exit_code());
            }
        }
    }
}

/// The environment variable that supplied the argument a parse error is about, if it did.
fn environment_source(error: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(argument)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    // clap describes the argument as `--long-name <VALUE>`.
    let long = argument.strip_prefix("--")?.split([' ', '=']).next()?;
    let flag = format!("--{long}");
    let given_as_flag = std::env::args_os()
        .filter_map(|a| a.into_string().ok())
        .any(|a| a == flag || a.strip_prefix(&flag).is_some_and(|rest| rest.starts_with('=')));
    if given_as_flag {
        return None;
    }
    let command = Cli::command();
    let variable = command
        .get_arguments()
        .chain(command.get_subcommands().flat_map(|s| s.get_arguments()))
        .find(|a| a.get_long() == Some(long))?
        .get_env()?;
    std::env::var_os(variable).map(|_| variable.to_string_lossy().into_owned())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent server (what `voice-agent` does without a subcommand).
    Serve(ServeArgs),
    /// Print the effective configuration (file, environment and flags) as YAML, then exit.
    Config(ServeArgs),
    /// Run a local fake of Amazon Bedrock's Nova Sonic stream (for development and tests).
    FakeBedrock(FakeBedrockArgs),
    /// Talk to a running agent: say a WAV file or a message, print the transcripts, save the reply.
    Talk(crate::talk::TalkArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FakeBedrockArgs {
    /// Address to listen on.
    #[arg(long, env = "FAKE_BEDROCK_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Serve plain HTTP (HTTP/1.1 and h2c) instead of TLS with HTTP/2.
    #[arg(long)]
    pub plain_http: bool,
    /// Where to write the self-signed certificate clients must trust (TLS mode).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Streams end with modelTimeoutException at this age, as Bedrock's do after about 8 minutes.
    #[arg(long, default_value = "8m", value_parser = humantime::parse_duration)]
    pub max_stream_age: Duration,
    /// Streams with no input event for this long end with "Timed out waiting for input events".
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub input_timeout: Duration,
    /// Streams without speech for this long end with the silence error (InternalErrorCode=531).
    #[arg(long, default_value = "175s", value_parser = humantime::parse_duration)]
    pub silence_timeout: Duration,
    /// The simulated model's pause before replying.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub think_time: Duration,
    /// Streams one HTTP/2 connection may carry at once, as the server advertises it (hyper's
    /// default; what Bedrock advertises is not published).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter.
    #[arg(long, default_value = "info")]
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

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

/// How the agent authenticates to the tool gateway (`gateway.auth.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GatewayAuthType {
    None,
    /// A bearer token from a file or an environment variable.
    Bearer,
    /// AWS SigV4 with the default credential chain.
    #[value(name = "sigv4")]
    SigV4,
}

impl GatewayAuthType {
    fn of(auth: &GatewayAuth) -> Self {
        match auth {
            GatewayAuth::None => Self::None,
            GatewayAuth::Bearer { .. } => Self::Bearer,
            GatewayAuth::SigV4 { .. } => Self::SigV4,
        }
    }

    fn default_auth(self) -> GatewayAuth {
        match self {
            Self::None => GatewayAuth::None,
            Self::Bearer => GatewayAuth::Bearer {
                token_file: None,
                token_env: None,
            },
            Self::SigV4 => GatewayAuth::SigV4 {
                region: None,
                service: DEFAULT_SIGV4_SERVICE.into(),
            },
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// YAML configuration file (see docs/configuration.md); optional. Flags and environment variables override its fields.
    #[arg(long, env = "VOICE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [config: listen, default 0.0.0.0:8080].
    #[arg(long, env = "VOICE_AGENT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Agent name shown in status and logs [config: name].
    #[arg(long, env = "VOICE_AGENT_NAME")]
    pub name: Option<String>,
    /// Log format.
    #[arg(
        long,
        env = "VOICE_AGENT_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `voice_agent=debug`).
    #[arg(long, env = "VOICE_AGENT_LOG", default_value = "info")]
    pub log: String,
    #[command(flatten, next_help_heading = "Sessions")]
    pub session: SessionArgs,
    #[command(flatten, next_help_heading = "Model")]
    pub model: ModelArgs,
    #[command(flatten, next_help_heading = "Prompt")]
    pub prompt: PromptArgs,
    #[command(flatten, next_help_heading = "Tool gateway")]
    pub gateway: GatewayArgs,
    #[command(flatten, next_help_heading = "Security")]
    pub security: SecurityArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Maximum concurrent sessions; more handshakes get HTTP 503 [config: session.maxSessions, default 100].
    #[arg(long, env = "VOICE_AGENT_MAX_SESSIONS")]
    pub max_sessions: Option<u32>,
    /// Longest a session may last [config: session.maxDuration, default 1h].
    #[arg(long, env = "VOICE_AGENT_MAX_SESSION_DURATION", value_parser = humantime::parse_duration)]
    pub max_session_duration: Option<Duration>,
    /// Close sessions without client input for this long [config: session.idleTimeout, default 2m].
    #[arg(long, env = "VOICE_AGENT_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// On SIGTERM, how long live sessions may continue, e.g. 30s or 5m [config: session.drainTimeout, default 5m].
    #[arg(long, env = "VOICE_AGENT_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Largest client WebSocket message in bytes [config: websocket.maxMessageBytes, default 262144].
    #[arg(long, env = "VOICE_AGENT_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
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
    /// Nova Sonic: Bedrock model id or inference profile id [config: model.modelId, default amazon.nova-2-sonic-v1:0].
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

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// MCP endpoint of the tool gateway (AgentCore Gateway or any MCP server) [config: gateway.url].
    #[arg(long, env = "VOICE_AGENT_GATEWAY_URL")]
    pub gateway_url: Option<String>,
    /// How the agent authenticates to the gateway [config: gateway.auth.type, default none].
    #[arg(long, env = "VOICE_AGENT_GATEWAY_AUTH", value_enum, ignore_case = true)]
    pub gateway_auth: Option<GatewayAuthType>,
    /// Bearer: file holding the token, re-read on change [config: gateway.auth.tokenFile].
    #[arg(long, env = "VOICE_AGENT_GATEWAY_TOKEN_FILE", conflicts_with = "gateway_token_env")]
    pub gateway_token_file: Option<PathBuf>,
    /// Bearer: name of the environment variable holding the token, not the token itself [config: gateway.auth.tokenEnv].
    #[arg(long, env = "VOICE_AGENT_GATEWAY_TOKEN_ENV", value_name = "VARIABLE")]
    pub gateway_token_env: Option<String>,
    /// SigV4: signing region [config: gateway.auth.region; default: AWS_REGION or the AWS profile].
    #[arg(long, env = "VOICE_AGENT_GATEWAY_SIGV4_REGION")]
    pub gateway_sigv4_region: Option<String>,
    /// Tools offered to the model, comma-separated [config: gateway.allowedTools, default: all].
    #[arg(long, env = "VOICE_AGENT_GATEWAY_ALLOWED_TOOLS", value_delimiter = ',')]
    pub gateway_allowed_tools: Vec<String>,
    /// Longest a tool call may take, 100ms to 5m [config: gateway.callTimeout, default 10s].
    #[arg(long, env = "VOICE_AGENT_GATEWAY_CALL_TIMEOUT", value_parser = humantime::parse_duration)]
    pub gateway_call_timeout: Option<Duration>,
    /// Tool calls one session runs at once, 1 to 64 [config: gateway.maxConcurrentCalls, default 4].
    #[arg(long, env = "VOICE_AGENT_GATEWAY_MAX_CONCURRENT_CALLS")]
    pub gateway_max_concurrent_calls: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// Handshake authentication [config: auth.mode, default none].
    #[arg(long, env = "VOICE_AGENT_AUTH_MODE", value_enum, ignore_case = true)]
    pub auth_mode: Option<AuthMode>,
    /// File with accepted tokens, one per line, re-read on change [config: auth.tokenFile].
    #[arg(long, env = "VOICE_AGENT_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Expected JWT issuer [config: auth.jwt.issuer].
    #[arg(long, env = "VOICE_AGENT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accepted JWT audience(s), comma-separated [config: auth.jwt.audiences].
    #[arg(long, env = "VOICE_AGENT_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// The issuer's JWKS URL [config: auth.jwt.jwksUrl].
    #[arg(long, env = "VOICE_AGENT_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Browser origins allowed to connect, comma-separated (exact, or *.example.com) [config: auth.allowedOrigins].
    #[arg(long, env = "VOICE_AGENT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Accept the token in the `token` query parameter [config: auth.allowQueryToken].
    #[arg(long, env = "VOICE_AGENT_ALLOW_QUERY_TOKEN")]
    pub allow_query_token: bool,
    /// Concurrent sessions per authenticated caller [config: auth.maxSessionsPerSubject].
    #[arg(long, env = "VOICE_AGENT_MAX_SESSIONS_PER_SUBJECT")]
    pub max_sessions_per_subject: Option<u32>,
    /// WebSocket handshakes per client IP per minute, 0 for no limit [config: limits.handshakesPerMinute, default 120].
    #[arg(long, env = "VOICE_AGENT_HANDSHAKES_PER_MINUTE")]
    pub handshakes_per_minute: Option<u32>,
    /// Proxies whose X-Forwarded-For is trusted, comma-separated CIDRs [config: limits.trustedProxies].
    #[arg(long, env = "VOICE_AGENT_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Serve TLS with this certificate chain (PEM), re-read on change [config: tls.certFile].
    #[arg(long, env = "VOICE_AGENT_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The TLS private key (PEM) [config: tls.keyFile].
    #[arg(long, env = "VOICE_AGENT_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

/// A flag's value together with its clap id (the field name), so errors can name the flag.
macro_rules! flag {
    ($args:ident . $name:ident) => {
        ($args.$name.clone(), stringify!($name))
    };
}

impl ServeArgs {
    /// The config file (or defaults) with flags and environment variables applied, validated.
    pub fn load_config(&self) -> Result<AgentConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => AgentConfig::from_file(path)?,
            None => AgentConfig::default(),
        };
        let mut overrides = Overrides::default();
        overrides.set(&mut config.listen, "listen", flag!(self.listen));
        overrides.set(&mut config.name, "name", flag!(self.name));
        self.session.apply(&mut config, &mut overrides);
        self.model.apply(&mut config.model, &mut overrides)?;
        self.prompt.apply(&mut config.prompt, &mut overrides);
        self.gateway.apply(&mut config.gateway, &mut overrides)?;
        self.security.apply(&mut config, &mut overrides);
        config.validate().map_err(|e| overrides.explain(e))?;
        Ok(config)
    }
}

impl SessionArgs {
    fn apply(&self, config: &mut AgentConfig, overrides: &mut Overrides) {
        let session = &mut config.session;
        overrides.set(
            &mut session.max_sessions,
            "session.maxSessions",
            flag!(self.max_sessions),
        );
        overrides.set(
            &mut session.max_duration,
            "session.maxDuration",
            flag!(self.max_session_duration),
        );
        overrides.set(
            &mut session.idle_timeout,
            "session.idleTimeout",
            flag!(self.idle_timeout),
        );
        overrides.set(
            &mut session.drain_timeout,
            "session.drainTimeout",
            flag!(self.drain_timeout),
        );
        overrides.set(
            &mut config.websocket.max_message_bytes,
            "websocket.maxMessageBytes",
            flag!(self.max_message_bytes),
        );
    }
}

impl ModelArgs {
    fn apply(&self, model: &mut ModelConfig, overrides: &mut Overrides) -> Result<(), ConfigError> {
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
    fn apply(&self, prompt: &mut PromptConfig, overrides: &mut Overrides) {
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

impl GatewayArgs {
    fn apply(&self, gateway: &mut Option<GatewayConfig>, overrides: &mut Overrides) -> Result<(), ConfigError> {
        if let Some(url) = &self.gateway_url {
            gateway.get_or_insert_with(|| GatewayConfig::new(url.clone())).url = url.clone();
            overrides.record("gateway.url", "gateway_url");
        }
        let Some(gateway) = gateway else {
            return match self.first_setting() {
                None => Ok(()),
                Some(arg) => Err(ConfigError::Invalid {
                    field: "gateway.url",
                    message: format!(
                        "{} needs a gateway; set {}",
                        describe_flag(arg),
                        describe_flag("gateway_url")
                    ),
                }),
            };
        };
        self.apply_auth(&mut gateway.auth, overrides)?;
        if !self.gateway_allowed_tools.is_empty() {
            gateway.allowed_tools = self.gateway_allowed_tools.clone();
            overrides.record("gateway.allowedTools", "gateway_allowed_tools");
        }
        overrides.set(
            &mut gateway.call_timeout,
            "gateway.callTimeout",
            flag!(self.gateway_call_timeout),
        );
        overrides.set(
            &mut gateway.max_concurrent_calls,
            "gateway.maxConcurrentCalls",
            flag!(self.gateway_max_concurrent_calls),
        );
        Ok(())
    }

    /// The first gateway setting given besides the URL, by clap id.
    fn first_setting(&self) -> Option<&'static str> {
        [
            ("gateway_auth", self.gateway_auth.is_some()),
            ("gateway_token_file", self.gateway_token_file.is_some()),
            ("gateway_token_env", self.gateway_token_env.is_some()),
            ("gateway_sigv4_region", self.gateway_sigv4_region.is_some()),
            ("gateway_allowed_tools", !self.gateway_allowed_tools.is_empty()),
            ("gateway_call_timeout", self.gateway_call_timeout.is_some()),
            (
                "gateway_max_concurrent_calls",
                self.gateway_max_concurrent_calls.is_some(),
            ),
        ]
        .into_iter()
        .find_map(|(arg, given)| given.then_some(arg))
    }

    fn apply_auth(&self, auth: &mut GatewayAuth, overrides: &mut Overrides) -> Result<(), ConfigError> {
        // Choosing the type the file already has keeps the file's settings for it.
        if let Some(kind) = self.gateway_auth {
            if kind != GatewayAuthType::of(auth) {
                *auth = kind.default_auth();
            }
            overrides.record("gateway.auth", "gateway_auth");
        }
        let needs = |arg: &str, kind: &str| ConfigError::Invalid {
            field: "gateway.auth",
            message: format!(
                "{} is for {kind} authentication; set {} to {kind}",
                describe_flag(arg),
                describe_flag("gateway_auth")
            ),
        };
        let token_arg = match (&self.gateway_token_file, &self.gateway_token_env) {
            (Some(_), _) => Some("gateway_token_file"),
            (None, Some(_)) => Some("gateway_token_env"),
            (None, None) => None,
        };
        if let Some(variable) = &self.gateway_token_env
            && !is_variable_name(variable)
        {
            // The value is not echoed: it may be the token itself, set here by mistake.
            return Err(ConfigError::Invalid {
                field: "gateway.auth.tokenEnv",
                message: format!(
                    "{} must name an environment variable (letters, digits, _), not hold the token",
                    describe_flag("gateway_token_env")
                ),
            });
        }
        match (&mut *auth, token_arg) {
            (GatewayAuth::Bearer { token_file, token_env }, Some(arg)) => {
                // A token source from flags replaces the file's: exactly one stays.
                *token_file = self.gateway_token_file.clone();
                *token_env = self.gateway_token_env.clone();
                overrides.record("gateway.auth", arg);
            }
            (_, Some(arg)) => return Err(needs(arg, "bearer")),
            (_, None) => {}
        }
        match auth {
            GatewayAuth::SigV4 { region, .. } => {
                overrides.set_some(region, "gateway.auth.region", flag!(self.gateway_sigv4_region));
            }
            _ if self.gateway_sigv4_region.is_some() => return Err(needs("gateway_sigv4_region", "sigv4")),
            _ => {}
        }
        Ok(())
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SecurityArgs {
    fn apply(&self, config: &mut AgentConfig, overrides: &mut Overrides) {
        let auth = &mut config.auth;
        overrides.set(&mut auth.mode, "auth.mode", flag!(self.auth_mode));
        overrides.set_some(&mut auth.token_file, "auth.tokenFile", flag!(self.auth_token_file));
        if self.jwt_issuer.is_some() || !self.jwt_audience.is_empty() || self.jwks_url.is_some() {
            let jwt = auth.jwt.get_or_insert_with(|| JwtConfig {
                issuer: String::new(),
                audiences: Vec::new(),
                jwks_url: String::new(),
                algorithms: vec!["RS256".into()],
                leeway: Duration::from_secs(30),
            });
            overrides.set(&mut jwt.issuer, "auth.jwt.issuer", flag!(self.jwt_issuer));
            overrides.set_list(&mut jwt.audiences, "auth.jwt.audiences", flag!(self.jwt_audience));
            overrides.set(&mut jwt.jwks_url, "auth.jwt.jwksUrl", flag!(self.jwks_url));
        }
        overrides.set_list(
            &mut auth.allowed_origins,
            "auth.allowedOrigins",
            flag!(self.allowed_origins),
        );
        if self.allow_query_token {
            auth.allow_query_token = true;
        }
        overrides.set_some(
            &mut auth.max_sessions_per_subject,
            "auth.maxSessionsPerSubject",
            flag!(self.max_sessions_per_subject),
        );
        let limits = &mut config.limits;
        overrides.set(
            &mut limits.handshakes_per_minute,
            "limits.handshakesPerMinute",
            flag!(self.handshakes_per_minute),
        );
        overrides.set_list(
            &mut limits.trusted_proxies,
            "limits.trustedProxies",
            flag!(self.trusted_proxies),
        );
        if let (Some(cert_file), Some(key_file)) = (&self.tls_cert_file, &self.tls_key_file) {
            config.tls = Some(TlsConfig {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            });
        }
    }
}

/// The config fields that flags (or their environment variables) set, by clap id, so that a
/// validation error can also say which flag or variable to fix.
#[derive(Default)]
struct Overrides(Vec<(&'static str, &'static str)>);

impl Overrides {
    /// Sets `target` when the flag has a value.
    fn set<T>(&mut self, target: &mut T, field: &'static str, (value, arg): (Option<T>, &'static str)) {
        if let Some(value) = value {
            *target = value;
            self.record(field, arg);
        }
    }

    /// Sets an optional field when the flag has a value.
    fn set_some<T>(&mut self, target: &mut Option<T>, field: &'static str, (value, arg): (Option<T>, &'static str)) {
        self.set(target, field, (value.map(Some), arg));
    }

    /// Replaces a list when the flag has entries.
    fn set_list(&mut self, target: &mut Vec<String>, field: &'static str, (value, arg): (Vec<String>, &'static str)) {
        self.set(target, field, ((!value.is_empty()).then_some(value), arg));
    }

    fn record(&mut self, field: &'static str, arg: &'static str) {
        self.0.push((field, arg));
    }

    fn first(&self) -> Option<&'static str> {
        self.0.first().map(|(_, arg)| *arg)
    }

    /// Adds the flag and variable to a validation error about a field a flag set.
    fn explain(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Invalid { field, message } => {
                let culprit = self.0.iter().rev().find(|(set, _)| {
                    field == *set || field.strip_prefix(set).is_some_and(|rest| rest.starts_with('.'))
                });
                let message = match culprit {
                    Some((_, arg)) => format!("{message} (set by {})", describe_flag(arg)),
                    None => message,
                };
                ConfigError::Invalid { field, message }
            }
            other => other,
        }
    }
}

/// `--flag or VOICE_AGENT_…` for an argument of [`ServeArgs`], from clap's own definition.
fn describe_flag(id: &str) -> String {
    let command = ServeArgs::augment_args(clap::Command::new("voice-agent"));
    let Some(arg) = command.get_arguments().find(|a| a.get_id().as_str() == id) else {
        return id.to_owned();
    };
    let flag = arg.get_long().map_or_else(|| id.to_owned(), |long| format!("--{long}"));
    match arg.get_env() {
        Some(variable) => format!("{flag} or {}", variable.to_string_lossy()),
        None => flag,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn load(args: &[&str]) -> Result<AgentConfig, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("voice-agent").chain(args.iter().copied())).expect("parses");
        cli.serve.load_config()
    }

    fn nova(config: &AgentConfig) -> &NovaSonicConfig {
        match &config.model {
            ModelConfig::NovaSonic(nova) => nova,
            other => panic!("not NovaSonic: {other:?}"),
        }
    }

    #[test]
    fn every_server_option_has_its_own_voice_agent_variable() {
        let command = ServeArgs::augment_args(clap::Command::new("voice-agent"));
        let mut seen = HashSet::new();
        for arg in command.get_arguments() {
            let variable = arg.get_env().unwrap_or_else(|| panic!("{} has no env", arg.get_id()));
            let variable = variable.to_string_lossy().into_owned();
            assert!(variable.starts_with("VOICE_AGENT_"), "{variable}");
            assert!(seen.insert(variable.clone()), "{variable} is used twice");
        }
    }

    #[test]
    fn provider_flag_selects_nova_with_its_settings() {
        let config = load(&[
            "--model-provider",
            "NovaSonic",
            "--nova-model-id",
            "us.amazon.nova-2-sonic-v1:0",
            "--nova-region",
            "eu-north-1",
            "--nova-voice",
            "tiffany",
            "--nova-output-sample-rate",
            "16000",
            "--nova-renew-after",
            "5m",
            "--nova-endpointing-sensitivity",
            "HIGH",
        ])
        .expect("valid");
        let nova = nova(&config);
        assert_eq!(nova.model_id, "us.amazon.nova-2-sonic-v1:0");
        assert_eq!(nova.region.as_deref(), Some("eu-north-1"));
        assert_eq!(nova.voice, "tiffany");
        assert_eq!(nova.output_sample_rate, 16_000);
        assert_eq!(nova.renew_after, Duration::from_secs(300));
        assert_eq!(nova.endpointing_sensitivity, Some(EndpointingSensitivity::High));
    }

    #[test]
    fn provider_accepts_the_config_file_spelling_and_kebab_case() {
        for spelling in ["NovaSonic", "nova-sonic", "novasonic", "NOVA-SONIC"] {
            let config = load(&["--model-provider", spelling]).expect("valid");
            assert_eq!(nova(&config).model_id, crate::config::NOVA_2_SONIC, "{spelling}");
        }
        let config = load(&["--model-provider", "Simulated"]).expect("valid");
        assert_eq!(config.model, ModelConfig::default());
    }

    /// The environment variable of a long flag, by the naming rule.
    fn variable_of(flag: &str) -> String {
        format!(
            "VOICE_AGENT_{}",
            flag.trim_start_matches('-').replace('-', "_").to_uppercase()
        )
    }

    #[test]
    fn nova_settings_without_the_nova_provider_are_refused_naming_the_variable() {
        for (flag, value) in [
            ("--nova-model-id", "amazon.nova-sonic-v1:0"),
            ("--nova-region", "us-east-1"),
            ("--nova-voice", "amy"),
            ("--nova-output-sample-rate", "16000"),
            ("--nova-endpointing-sensitivity", "low"),
            ("--nova-max-tokens", "100"),
            ("--nova-temperature", "0.5"),
            ("--nova-top-p", "0.5"),
            ("--nova-endpoint-url", "http://127.0.0.1:9"),
            ("--nova-ca-bundle-file", "/ca.pem"),
            ("--nova-renew-after", "5m"),
        ] {
            let message = load(&[flag, value]).expect_err("refused").to_string();
            assert!(message.contains("model.provider"), "{message}");
            assert!(message.contains(&variable_of(flag)), "{message}");
            assert!(message.contains("VOICE_AGENT_MODEL_PROVIDER"), "{message}");
        }
        let message = load(&["--model-provider", "nova-sonic", "--simulated-mode", "loopback"])
            .expect_err("refused")
            .to_string();
        assert!(message.contains("VOICE_AGENT_SIMULATED_MODE"), "{message}");
    }

    #[test]
    fn validation_errors_name_the_flag_and_variable_that_set_the_field() {
        let err = load(&["--model-provider", "nova-sonic", "--nova-output-sample-rate", "44100"]).expect_err("invalid");
        let message = err.to_string();
        assert!(message.contains("model.outputSampleRate"), "{message}");
        assert!(
            message.contains("--nova-output-sample-rate or VOICE_AGENT_NOVA_OUTPUT_SAMPLE_RATE"),
            "{message}"
        );

        let err = load(&["--max-sessions", "0"]).expect_err("invalid");
        assert!(err.to_string().contains("VOICE_AGENT_MAX_SESSIONS"), "{err}");
    }

    #[test]
    fn gateway_from_flags_alone() {
        let config = load(&[
            "--gateway-url",
            "https://gw.example.com/mcp",
            "--gateway-auth",
            "bearer",
            "--gateway-token-env",
            "GATEWAY_TOKEN",
            "--gateway-allowed-tools",
            "get_weather,book_table",
            "--gateway-call-timeout",
            "5s",
        ])
        .expect("valid");
        let gateway = config.gateway.expect("gateway");
        assert_eq!(gateway.url, "https://gw.example.com/mcp");
        assert_eq!(
            gateway.auth,
            GatewayAuth::Bearer {
                token_file: None,
                token_env: Some("GATEWAY_TOKEN".into())
            }
        );
        assert_eq!(gateway.allowed_tools, ["get_weather", "book_table"]);
        assert_eq!(gateway.call_timeout, Duration::from_secs(5));

        let config = load(&[
            "--gateway-url",
            "https://gw.example.com/mcp",
            "--gateway-auth",
            "SigV4",
            "--gateway-sigv4-region",
            "us-east-1",
        ])
        .expect("valid");
        assert_eq!(
            config.gateway.expect("gateway").auth,
            GatewayAuth::SigV4 {
                region: Some("us-east-1".into()),
                service: DEFAULT_SIGV4_SERVICE.into()
            }
        );
    }

    #[test]
    fn gateway_settings_without_a_gateway_url_are_refused_naming_the_variable() {
        for (flag, value) in [
            ("--gateway-auth", "sigv4"),
            ("--gateway-token-file", "/run/token"),
            ("--gateway-token-env", "GATEWAY_TOKEN"),
            ("--gateway-sigv4-region", "us-east-1"),
            ("--gateway-allowed-tools", "get_weather"),
            ("--gateway-call-timeout", "5s"),
            ("--gateway-max-concurrent-calls", "2"),
        ] {
            let message = load(&[flag, value]).expect_err("refused").to_string();
            assert!(message.contains("gateway.url"), "{message}");
            assert!(message.contains(&variable_of(flag)), "{message}");
            assert!(message.contains("VOICE_AGENT_GATEWAY_URL"), "{message}");
        }
    }

    #[test]
    fn bearer_without_a_token_source_names_the_auth_variable() {
        let err = load(&["--gateway-url", "http://127.0.0.1:9/mcp", "--gateway-auth", "bearer"]).expect_err("invalid");
        let message = err.to_string();
        assert!(message.contains("gateway.auth"), "{message}");
        assert!(message.contains("VOICE_AGENT_GATEWAY_AUTH"), "{message}");
    }

    #[test]
    fn token_source_without_bearer_auth_is_refused() {
        let err = load(&[
            "--gateway-url",
            "http://127.0.0.1:9/mcp",
            "--gateway-token-file",
            "/run/token",
        ])
        .expect_err("refused");
        assert!(err.to_string().contains("bearer"), "{err}");
    }

    #[test]
    fn a_token_given_as_the_token_variable_name_is_refused_without_echoing_it() {
        let err = load(&[
            "--gateway-url",
            "http://127.0.0.1:9/mcp",
            "--gateway-auth",
            "bearer",
            "--gateway-token-env",
            "eyJhbGciOi.secret-part",
        ])
        .expect_err("refused");
        let message = err.to_string();
        assert!(message.contains("gateway.auth.tokenEnv"), "{message}");
        assert!(!message.contains("secret-part"), "{message}");
    }

    #[test]
    fn system_prompt_flags_replace_each_other() {
        let config = load(&["--system-prompt", "Be brief."]).expect("valid");
        assert_eq!(config.prompt.system.as_deref(), Some("Be brief."));
        assert!(Cli::try_parse_from(["voice-agent", "--system-prompt", "a", "--system-prompt-file", "/p"]).is_err());
    }

    #[test]
    fn auth_mode_accepts_the_config_file_spelling() {
        let config = load(&["--auth-mode", "Token", "--auth-token-file", "/run/tokens"]).expect("valid");
        assert_eq!(config.auth.mode, AuthMode::Token);
    }
}
