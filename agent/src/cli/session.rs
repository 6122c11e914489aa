//! Session limits and security settings on the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::overrides::{Overrides, flag};
use voice_config::{AgentConfig, AuthMode, JwtConfig, TlsConfig};

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
    /// Whether sessions can be resumed after a drop [config: session.resume.enabled, default true].
    #[arg(long, env = "VOICE_AGENT_RESUME")]
    pub resume: Option<bool>,
    /// How long after a session ends it can be resumed [config: session.resume.window, default 2m].
    #[arg(long, env = "VOICE_AGENT_RESUME_WINDOW", value_parser = humantime::parse_duration)]
    pub resume_window: Option<Duration>,
    /// Where conversations wait to be resumed [config: session.resume.store, default Memory].
    #[arg(long, env = "VOICE_AGENT_RESUME_STORE", value_enum, ignore_case = true)]
    pub resume_store: Option<voice_config::ResumeStore>,
    /// Redis or Valkey URL, redis:// or rediss:// [config: session.resume.redis.url].
    #[arg(long, env = "VOICE_AGENT_RESUME_REDIS_URL")]
    pub resume_redis_url: Option<String>,
    /// File with the Redis ACL user name [config: session.resume.redis.usernameFile].
    #[arg(long, env = "VOICE_AGENT_RESUME_REDIS_USERNAME_FILE")]
    pub resume_redis_username_file: Option<PathBuf>,
    /// File with the Redis password [config: session.resume.redis.passwordFile].
    #[arg(long, env = "VOICE_AGENT_RESUME_REDIS_PASSWORD_FILE")]
    pub resume_redis_password_file: Option<PathBuf>,
    /// PEM CA certificates to trust for rediss:// [config: session.resume.redis.caFile].
    #[arg(long, env = "VOICE_AGENT_RESUME_REDIS_CA_FILE")]
    pub resume_redis_ca_file: Option<PathBuf>,
    /// File with the AES-256 key that encrypts stored conversations [config: session.resume.encryptionKeyFile].
    #[arg(long, env = "VOICE_AGENT_RESUME_ENCRYPTION_KEY_FILE")]
    pub resume_encryption_key_file: Option<PathBuf>,
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
    /// Extra PEM CA certificates to trust for the JWKS URL [config: auth.jwt.caFile].
    #[arg(long, env = "VOICE_AGENT_JWT_CA_FILE")]
    pub jwt_ca_file: Option<PathBuf>,
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

impl SessionArgs {
    pub(super) fn apply(&self, config: &mut AgentConfig, overrides: &mut Overrides) {
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
        let resume = &mut config.session.resume;
        overrides.set(&mut resume.enabled, "session.resume.enabled", flag!(self.resume));
        overrides.set(&mut resume.window, "session.resume.window", flag!(self.resume_window));
        overrides.set(&mut resume.store, "session.resume.store", flag!(self.resume_store));
        overrides.set_some(
            &mut resume.encryption_key_file,
            "session.resume.encryptionKeyFile",
            flag!(self.resume_encryption_key_file),
        );
        if self.resume_redis_url.is_some()
            || self.resume_redis_username_file.is_some()
            || self.resume_redis_password_file.is_some()
            || self.resume_redis_ca_file.is_some()
        {
            let redis = resume.redis.get_or_insert_with(|| voice_config::RedisConfig {
                url: String::new(),
                ca_file: None,
                username_file: None,
                password_file: None,
                key_prefix: voice_config::default_key_prefix(),
                timeout: voice_config::default_timeout(),
            });
            overrides.set(&mut redis.url, "session.resume.redis.url", flag!(self.resume_redis_url));
            overrides.set_some(
                &mut redis.username_file,
                "session.resume.redis.usernameFile",
                flag!(self.resume_redis_username_file),
            );
            overrides.set_some(
                &mut redis.password_file,
                "session.resume.redis.passwordFile",
                flag!(self.resume_redis_password_file),
            );
            overrides.set_some(
                &mut redis.ca_file,
                "session.resume.redis.caFile",
                flag!(self.resume_redis_ca_file),
            );
        }
    }
}

impl SecurityArgs {
    pub(super) fn apply(&self, config: &mut AgentConfig, overrides: &mut Overrides) {
        let auth = &mut config.auth;
        overrides.set(&mut auth.mode, "auth.mode", flag!(self.auth_mode));
        overrides.set_some(&mut auth.token_file, "auth.tokenFile", flag!(self.auth_token_file));
        if self.jwt_issuer.is_some()
            || !self.jwt_audience.is_empty()
            || self.jwks_url.is_some()
            || self.jwt_ca_file.is_some()
        {
            let jwt = auth.jwt.get_or_insert_with(|| JwtConfig {
                issuer: String::new(),
                audiences: Vec::new(),
                jwks_url: String::new(),
                algorithms: vec!["RS256".into()],
                leeway: Duration::from_secs(30),
                ca_file: None,
            });
            overrides.set(&mut jwt.issuer, "auth.jwt.issuer", flag!(self.jwt_issuer));
            overrides.set_list(&mut jwt.audiences, "auth.jwt.audiences", flag!(self.jwt_audience));
            overrides.set(&mut jwt.jwks_url, "auth.jwt.jwksUrl", flag!(self.jwks_url));
            overrides.set_some(&mut jwt.ca_file, "auth.jwt.caFile", flag!(self.jwt_ca_file));
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
