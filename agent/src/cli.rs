//! Command line: every option has a flag and an environment variable, and overrides the
//! matching field of the config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{AgentConfig, AuthMode, ConfigError, JwtConfig, TlsConfig};

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
    /// Handshake authentication: none, token or jwt [config: auth.mode].
    #[arg(long, env = "VOICE_AGENT_AUTH_MODE", value_enum)]
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
        self.apply_security(&mut config);
        if let Some(prompt) = &self.system_prompt {
            config.prompt.system = Some(prompt.clone());
            config.prompt.system_file = None;
        }
        config.validate()?;
        Ok(config)
    }

    fn apply_security(&self, config: &mut AgentConfig) {
        if let Some(mode) = self.auth_mode {
            config.auth.mode = mode;
        }
        if let Some(path) = &self.auth_token_file {
            config.auth.token_file = Some(path.clone());
        }
        if self.jwt_issuer.is_some() || !self.jwt_audience.is_empty() || self.jwks_url.is_some() {
            let jwt = config.auth.jwt.get_or_insert_with(|| JwtConfig {
                issuer: String::new(),
                audiences: Vec::new(),
                jwks_url: String::new(),
                algorithms: vec!["RS256".into()],
                leeway: Duration::from_secs(30),
            });
            if let Some(issuer) = &self.jwt_issuer {
                jwt.issuer = issuer.clone();
            }
            if !self.jwt_audience.is_empty() {
                jwt.audiences = self.jwt_audience.clone();
            }
            if let Some(url) = &self.jwks_url {
                jwt.jwks_url = url.clone();
            }
        }
        if !self.allowed_origins.is_empty() {
            config.auth.allowed_origins = self.allowed_origins.clone();
        }
        if self.allow_query_token {
            config.auth.allow_query_token = true;
        }
        if let Some(max) = self.max_sessions_per_subject {
            config.auth.max_sessions_per_subject = Some(max);
        }
        if let Some(n) = self.handshakes_per_minute {
            config.limits.handshakes_per_minute = n;
        }
        if !self.trusted_proxies.is_empty() {
            config.limits.trusted_proxies = self.trusted_proxies.clone();
        }
        if let (Some(cert_file), Some(key_file)) = (&self.tls_cert_file, &self.tls_key_file) {
            config.tls = Some(TlsConfig {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            });
        }
    }
}
