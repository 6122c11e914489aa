//! Tool gateway settings on the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::overrides::{Overrides, describe_flag, flag};
use voice_config::{ConfigError, DEFAULT_SIGV4_SERVICE, GatewayAuth, GatewayConfig};

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

impl GatewayArgs {
    pub(super) fn apply(
        &self,
        gateway: &mut Option<GatewayConfig>,
        overrides: &mut Overrides,
    ) -> Result<(), ConfigError> {
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
