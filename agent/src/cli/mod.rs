//! Command line: every server option has a flag and an environment variable (`VOICE_AGENT_…`),
//! so the stock image runs where only environment variables can be set (AgentCore Runtime).
//! A flag beats its environment variable, which beats the config file, which beats the
//! default; the merged configuration goes through [`AgentConfig::validate`].
//!
//! Secrets are never flag values, which would show in `ps`: only paths of files that hold them,
//! or the name of the environment variable that does.

mod gateway;
mod model;
mod overrides;
mod session;
mod telephony;
#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue};
use clap::{Args, CommandFactory, Parser, Subcommand};

pub use gateway::{GatewayArgs, GatewayAuthType};
pub use model::{ModelArgs, ModelProvider, PromptArgs};
pub use session::{SecurityArgs, SessionArgs};
pub use telephony::TelephonyArgs;

use overrides::{Overrides, flag};
use voice_config::{AgentConfig, ConfigError, ValidConfig};

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
    /// Talk to a running agent: say a WAV file or a message, print the transcripts, save the reply.
    Talk(crate::talk::TalkArgs),
    /// Simulate a phone call to a running agent: a carrier's signed webhook, then its media stream with a WAV.
    Call(crate::call::CallArgs),
}

pub use voice_telemetry::LogFormat;

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
    #[command(flatten, next_help_heading = "Phone calls")]
    pub telephony: TelephonyArgs,
}

impl ServeArgs {
    /// The config file (or defaults) with flags and environment variables applied, validated.
    pub fn load_config(&self) -> Result<ValidConfig, ConfigError> {
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
        self.telephony.apply(&mut config, &mut overrides);
        config.validated().map_err(|e| overrides.explain(e))
    }
}
