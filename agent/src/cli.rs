//! Command line: every option has a flag and an environment variable, and overrides the
//! matching field of the config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{AgentConfig, ConfigError};

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent server (what `voice-agent` does without a subcommand).
    Serve(ServeArgs),
    /// Print the effective configuration (file plus flags) as YAML, then exit.
    Config(ServeArgs),
    /// Run a local fake of Amazon Bedrock's Nova Sonic stream (for development and tests).
    FakeBedrock(FakeBedrockArgs),
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

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// YAML configuration file (see docs/configuration.md). Flags override its fields.
    #[arg(long, env = "VOICE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [config: listen, default 0.0.0.0:8080].
    #[arg(long, env = "VOICE_AGENT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Agent name shown in status and logs [config: name].
    #[arg(long, env = "VOICE_AGENT_NAME")]
    pub name: Option<String>,
    /// Maximum concurrent sessions; more handshakes get HTTP 503 [config: session.maxSessions, default 100].
    #[arg(long, env = "VOICE_AGENT_MAX_SESSIONS")]
    pub max_sessions: Option<u32>,
    /// On SIGTERM, how long live sessions may continue, e.g. 30s or 5m [config: session.drainTimeout, default 5m].
    #[arg(long, env = "VOICE_AGENT_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Close sessions without client input for this long [config: session.idleTimeout, default 2m].
    #[arg(long, env = "VOICE_AGENT_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Longest a session may last [config: session.maxDuration, default 1h].
    #[arg(long, env = "VOICE_AGENT_MAX_SESSION_DURATION", value_parser = humantime::parse_duration)]
    pub max_session_duration: Option<Duration>,
    /// Largest client WebSocket message in bytes [config: websocket.maxMessageBytes, default 262144].
    #[arg(long, env = "VOICE_AGENT_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// System prompt text [config: prompt.system].
    #[arg(long, env = "VOICE_AGENT_SYSTEM_PROMPT")]
    pub system_prompt: Option<String>,
    /// Log format.
    #[arg(long, env = "VOICE_AGENT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `voice_agent=debug`).
    #[arg(long, env = "VOICE_AGENT_LOG", default_value = "info")]
    pub log: String,
}

impl ServeArgs {
    /// The config file (or defaults) with flags applied, validated.
    pub fn load_config(&self) -> Result<AgentConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => AgentConfig::from_file(path)?,
            None => AgentConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(name) = &self.name {
            config.name = name.clone();
        }
        if let Some(max) = self.max_sessions {
            config.session.max_sessions = max;
        }
        if let Some(d) = self.drain_timeout {
            config.session.drain_timeout = d;
        }
        if let Some(d) = self.idle_timeout {
            config.session.idle_timeout = d;
        }
        if let Some(d) = self.max_session_duration {
            config.session.max_duration = d;
        }
        if let Some(bytes) = self.max_message_bytes {
            config.websocket.max_message_bytes = bytes;
        }
        if let Some(prompt) = &self.system_prompt {
            config.prompt.system = Some(prompt.clone());
            config.prompt.system_file = None;
        }
        config.validate()?;
        Ok(config)
    }
}
