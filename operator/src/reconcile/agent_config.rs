//! The agent's own configuration (`voice_config::AgentConfig`) rendered from a spec. The
//! operator serializes the very type the agent deserializes, so the file and the agent cannot
//! drift apart; the agent's `validate()` then judges the values with its own field names. Paths
//! of mounted files come from the table of [`super::mounts`], set exactly when the file is
//! mounted.

use std::net::SocketAddr;

use voice_config::{
    AgentConfig, AuthConfig, AuthMode as AgentAuthMode, DEFAULT_SIGV4_SERVICE,
    EndpointingSensitivity as AgentSensitivity, GatewayAuth, GatewayConfig, JwtConfig, LimitsConfig, MetadataConfig,
    ModelConfig, NovaSonicConfig, PromptConfig, PromptVariable, RedisConfig, ResumeConfig, ResumeStore, SessionConfig,
    SessionSettingsConfig, SimulatedMode as AgentMode, SimulatedModelConfig, TelephonyConfig, TelnyxConfig,
    TwilioConfig, VonageConfig, WebSocketConfig, default_key_prefix, default_timeout,
};

use super::mounts::{
    CALLER_TOKENS, GATEWAY_TOKEN, JWKS_CA, MODEL_CA, Mount, PROMPT, REDIS_CA, REDIS_PASSWORD, REDIS_USERNAME,
    RESUME_KEY, TELNYX_PUBLIC_KEY, TELNYX_STREAM_SECRET, TWILIO_AUTH_TOKEN, VONAGE_SIGNATURE_SECRET,
    tool_server_token_path,
};
use crate::api::{
    AuthMode, AuthSpec, EndpointingSensitivity, LimitsSpec, ModelProvider, ResumeStoreKind, SessionSettingsSpec,
    SimulatedMode, SimulatedSpec, TelephonySpec, ToolGatewayAuthType, ToolGatewaySpec, VoiceAgentSpec,
};

/// Port of the agent's single listener (WebSocket, probes and metrics).
pub const AGENT_PORT: u16 = 8080;
/// Where the ConfigMap is mounted, and the config file in it.
pub const CONFIG_DIR: &str = "/etc/voice-agent/config";
pub const CONFIG_FILE: &str = "config.yaml";

/// A value the spec holds that the agent's types cannot (e.g. a negative count).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct OutOfRange {
    pub field: &'static str,
    pub message: String,
}

/// Renders the agent's configuration file for the VoiceAgent `name`.
pub fn agent_config(name: &str, spec: &VoiceAgentSpec) -> Result<AgentConfig, OutOfRange> {
    let model = match spec.model.provider {
        ModelProvider::Simulated => {
            let sim = spec.model.simulated.clone().unwrap_or_default();
            ModelConfig::Simulated(simulated(&sim))
        }
        ModelProvider::NovaSonic => {
            let nova = spec.model.nova_sonic.clone().unwrap_or_default();
            ModelConfig::NovaSonic(NovaSonicConfig {
                model_id: nova.model_id,
                region: nova.region,
                voice: nova.voice,
                output_sample_rate: non_negative("model.novaSonic.outputSampleRate", nova.output_sample_rate)?,
                max_tokens: nova
                    .max_tokens
                    .map(|t| non_negative("model.novaSonic.maxTokens", t))
                    .transpose()?,
                // Narrowing is exact for the 0..1 range the schema allows.
                temperature: nova.temperature.map(|t| t as f32),
                top_p: nova.top_p.map(|p| p as f32),
                endpointing_sensitivity: nova.endpointing_sensitivity.map(sensitivity),
                endpoint_url: nova.endpoint_url,
                ca_bundle_file: MODEL_CA.path_in(spec),
                renew_after: nova.renew_after.into(),
                streams_per_connection: non_negative(
                    "model.novaSonic.streamsPerConnection",
                    nova.streams_per_connection,
                )?,
            })
        }
    };
    let prompt = match &spec.prompt {
        None => PromptConfig::default(),
        Some(p) => PromptConfig {
            system: p.system.clone(),
            system_file: PROMPT.path_in(spec),
            greeting: p.greeting.clone(),
        },
    };
    let session_settings = match &spec.session_settings {
        None => SessionSettingsConfig::default(),
        Some(s) => session_settings(s)?,
    };
    let session = SessionConfig {
        max_sessions: non_negative("session.maxSessionsPerReplica", spec.session.max_sessions_per_replica)?,
        max_duration: spec.session.max_duration.into(),
        idle_timeout: spec.session.idle_timeout.into(),
        drain_timeout: spec.session.drain_timeout.into(),
        resume: resume(spec),
    };
    let websocket = WebSocketConfig {
        max_message_bytes: usize::try_from(spec.websocket.max_message_bytes).map_err(|_| OutOfRange {
            field: "websocket.maxMessageBytes",
            message: "must not be negative".into(),
        })?,
    };
    Ok(AgentConfig {
        name: name.to_owned(),
        listen: SocketAddr::from(([0, 0, 0, 0], AGENT_PORT)),
        model,
        prompt,
        session,
        session_settings,
        websocket,
        gateway: spec
            .gateway
            .as_ref()
            .map(|g| tool_server(g, GATEWAY_TOKEN.path_in(spec)))
            .transpose()?,
        tool_servers: spec
            .tool_servers
            .iter()
            .map(|s| Ok(tool_server(&s.server, tool_server_token_path(spec, &s.name))?.named(&s.name)))
            .collect::<Result<_, OutOfRange>>()?,
        auth: spec
            .auth
            .as_ref()
            .map(|a| auth(a, spec))
            .transpose()?
            .unwrap_or_default(),
        limits: limits(&spec.limits)?,
        telephony: spec.telephony.as_ref().map(|t| telephony(t, spec)).transpose()?,
        // TLS ends at the ingress or gateway; sections the VoiceAgent does not cover keep the
        // agent's defaults, so the agent gaining a field does not break the operator.
        ..AgentConfig::default()
    })
}

/// One tool server's settings; `token_file` is where its bearer token is mounted, if it is.
fn tool_server(spec: &ToolGatewaySpec, token_file: Option<std::path::PathBuf>) -> Result<GatewayConfig, OutOfRange> {
    let auth = match spec.auth.type_ {
        ToolGatewayAuthType::None => GatewayAuth::None,
        ToolGatewayAuthType::Bearer => GatewayAuth::Bearer {
            token_file,
            token_env: None,
        },
        ToolGatewayAuthType::SigV4 => GatewayAuth::SigV4 {
            region: spec.auth.region.clone(),
            service: spec
                .auth
                .service
                .clone()
                .unwrap_or_else(|| DEFAULT_SIGV4_SERVICE.to_owned()),
        },
    };
    Ok(GatewayConfig {
        name: voice_config::GATEWAY_SERVER_NAME.into(),
        url: spec.url.clone(),
        auth,
        allowed_tools: spec.allowed_tools.clone(),
        call_timeout: spec.call_timeout.into(),
        max_concurrent_calls: non_negative("gateway.maxConcurrentCalls", spec.max_concurrent_calls)?,
    })
}

fn auth(spec: &AuthSpec, whole: &VoiceAgentSpec) -> Result<AuthConfig, OutOfRange> {
    Ok(AuthConfig {
        mode: match spec.mode {
            AuthMode::None => AgentAuthMode::None,
            AuthMode::Token => AgentAuthMode::Token,
            AuthMode::Jwt => AgentAuthMode::Jwt,
        },
        token_file: CALLER_TOKENS.path_in(whole),
        jwt: spec
            .jwt
            .as_ref()
            .filter(|_| spec.mode == AuthMode::Jwt)
            .map(|jwt| JwtConfig {
                issuer: jwt.issuer.clone(),
                audiences: jwt.audiences.clone(),
                jwks_url: jwt.jwks_url.clone(),
                algorithms: jwt.algorithms.iter().map(|a| a.as_str().to_owned()).collect(),
                leeway: jwt.leeway.into(),
                ca_file: JWKS_CA.path_in(whole),
            }),
        allow_query_token: spec.allow_query_token,
        allowed_origins: spec.allowed_origins.clone(),
        max_sessions_per_subject: spec
            .max_sessions_per_subject
            .map(|n| non_negative("auth.maxSessionsPerSubject", n))
            .transpose()?,
    })
}

fn limits(spec: &LimitsSpec) -> Result<LimitsConfig, OutOfRange> {
    let size = |field, value: i64| {
        usize::try_from(value).map_err(|_| OutOfRange {
            field,
            message: format!("must not be negative (got {value})"),
        })
    };
    Ok(LimitsConfig {
        handshakes_per_minute: non_negative("limits.handshakesPerMinute", spec.handshakes_per_minute)?,
        trusted_proxies: spec.trusted_proxies.clone(),
        handshake_timeout: spec.handshake_timeout.into(),
        first_message_timeout: spec.first_message_timeout.into(),
        max_audio_rate: spec.max_audio_rate,
        audio_burst: spec.audio_burst.into(),
        max_json_bytes: size("limits.maxJsonBytes", spec.max_json_bytes)?,
        max_json_depth: size("limits.maxJsonDepth", i64::from(spec.max_json_depth))?,
    })
}

/// The base URL carriers reach the agent at (`https://host`): `telephony.publicUrl`, else the
/// exposed host, with `https://` when exposed with TLS. `None` when the agent is not exposed.
pub fn telephony_base_url(spec: &VoiceAgentSpec) -> Option<String> {
    if let Some(url) = spec.telephony.as_ref().and_then(|t| t.public_url.clone()) {
        return Some(url);
    }
    let expose = spec.expose.as_ref()?;
    let (host, tls) = match (&expose.ingress, &expose.gateway) {
        (Some(ingress), _) => (&ingress.host, ingress.tls.is_some()),
        (None, Some(route)) => (route.hostnames.first()?, route.tls),
        (None, None) => return None,
    };
    let scheme = if tls { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

fn telephony(spec: &TelephonySpec, whole: &VoiceAgentSpec) -> Result<TelephonyConfig, OutOfRange> {
    // The table mounts each carrier's files whenever the carrier is enabled.
    let file = |mount: &Mount| mount.path();
    Ok(TelephonyConfig {
        public_url: telephony_base_url(whole),
        signature_tolerance: spec.signature_tolerance.into(),
        fallback_number: spec.fallback_number.clone(),
        greeting: spec.greeting.clone(),
        twilio: spec.twilio.as_ref().map(|_| TwilioConfig {
            auth_token_file: file(&TWILIO_AUTH_TOKEN),
        }),
        telnyx: spec.telnyx.as_ref().map(|_| TelnyxConfig {
            public_key_file: file(&TELNYX_PUBLIC_KEY),
            stream_secret_file: file(&TELNYX_STREAM_SECRET),
        }),
        vonage: spec
            .vonage
            .as_ref()
            .map(|v| {
                Ok::<_, OutOfRange>(VonageConfig {
                    signature_secret_file: file(&VONAGE_SIGNATURE_SECRET),
                    sample_rate: non_negative("telephony.vonage.sampleRate", v.sample_rate)?,
                })
            })
            .transpose()?,
    })
}

fn simulated(spec: &SimulatedSpec) -> SimulatedModelConfig {
    SimulatedModelConfig {
        mode: match spec.mode {
            SimulatedMode::Conversation => AgentMode::Conversation,
            SimulatedMode::Loopback => AgentMode::Loopback,
        },
        think_time: spec.think_time.into(),
    }
}

fn sensitivity(s: EndpointingSensitivity) -> AgentSensitivity {
    match s {
        EndpointingSensitivity::High => AgentSensitivity::High,
        EndpointingSensitivity::Medium => AgentSensitivity::Medium,
        EndpointingSensitivity::Low => AgentSensitivity::Low,
    }
}

fn resume(spec: &VoiceAgentSpec) -> ResumeConfig {
    let defaults = ResumeConfig::default();
    let Some(resume) = &spec.session.resume else {
        return defaults;
    };
    let store = match resume.store {
        Some(ResumeStoreKind::Redis) => ResumeStore::Redis,
        Some(ResumeStoreKind::Memory) | None => ResumeStore::Memory,
    };
    ResumeConfig {
        enabled: resume.enabled.unwrap_or(defaults.enabled),
        window: resume.window.map_or(defaults.window, Into::into),
        store,
        redis: resume
            .redis
            .as_ref()
            .filter(|_| store == ResumeStore::Redis)
            .map(|redis| RedisConfig {
                url: redis.url.clone(),
                ca_file: REDIS_CA.path_in(spec),
                username_file: REDIS_USERNAME.path_in(spec),
                password_file: REDIS_PASSWORD.path_in(spec),
                key_prefix: redis.key_prefix.clone().unwrap_or_else(default_key_prefix),
                timeout: default_timeout(),
            }),
        encryption_key_file: RESUME_KEY.path_in(spec),
        max_state_bytes: defaults.max_state_bytes,
    }
}

fn session_settings(spec: &SessionSettingsSpec) -> Result<SessionSettingsConfig, OutOfRange> {
    let metadata = spec.metadata.clone().unwrap_or_default();
    Ok(SessionSettingsConfig {
        voices: spec.voices.clone(),
        greeting: spec.greeting,
        max_value_length: match spec.max_value_length {
            Some(max) => non_negative("sessionSettings.maxValueLength", max)? as usize,
            None => SessionSettingsConfig::default().max_value_length,
        },
        variables: spec
            .variables
            .iter()
            .map(|v| PromptVariable {
                name: v.name.clone(),
                default: v.default.clone().unwrap_or_default(),
                from_claim: v.from_claim.clone(),
            })
            .collect(),
        metadata: MetadataConfig {
            max_keys: non_negative("sessionSettings.metadata.maxKeys", metadata.max_keys)? as usize,
            from_claims: metadata.from_claims,
        },
    })
}

fn non_negative(field: &'static str, value: i32) -> Result<u32, OutOfRange> {
    u32::try_from(value).map_err(|_| OutOfRange {
        field,
        message: format!("must not be negative (got {value})"),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{KeyRef, ModelSpec, NovaSonicSpec, PromptSpec, ValueSource};

    #[test]
    fn defaults_render_the_agents_defaults() {
        let config = agent_config("support", &VoiceAgentSpec::default()).expect("renders");
        let expected = AgentConfig {
            name: "support".into(),
            ..AgentConfig::default()
        };
        assert_eq!(config, expected);
        config.validate().expect("the agent accepts its defaults");
    }

    #[test]
    fn nova_settings_and_mounted_files_map_to_the_agents_fields() {
        let spec = VoiceAgentSpec {
            model: ModelSpec {
                provider: ModelProvider::NovaSonic,
                simulated: None,
                nova_sonic: Some(NovaSonicSpec {
                    region: Some("eu-north-1".into()),
                    temperature: Some(0.5),
                    max_tokens: Some(1024),
                    endpointing_sensitivity: Some(EndpointingSensitivity::Low),
                    ca_bundle: Some(KeyRef {
                        name: "ca".into(),
                        key: "bundle.pem".into(),
                    }),
                    ..NovaSonicSpec::default()
                }),
            },
            prompt: Some(PromptSpec {
                system: None,
                greeting: None,
                system_from: Some(ValueSource {
                    config_map_key_ref: Some(KeyRef {
                        name: "prompts".into(),
                        key: "support".into(),
                    }),
                    secret_key_ref: None,
                }),
            }),
            ..VoiceAgentSpec::default()
        };
        let config = agent_config("support", &spec).expect("renders");
        config.validate().expect("valid");
        let ModelConfig::NovaSonic(nova) = &config.model else {
            panic!("not Nova: {:?}", config.model);
        };
        assert_eq!(nova.region.as_deref(), Some("eu-north-1"));
        assert_eq!(nova.temperature, Some(0.5));
        assert_eq!(nova.max_tokens, Some(1024));
        assert_eq!(nova.endpointing_sensitivity, Some(AgentSensitivity::Low));
        assert_eq!(
            nova.ca_bundle_file.as_deref(),
            Some(std::path::Path::new("/etc/voice-agent/ca/ca.pem"))
        );
        assert_eq!(nova.renew_after, Duration::from_secs(420));
        assert_eq!(
            config.prompt.system_file.as_deref(),
            Some(std::path::Path::new("/etc/voice-agent/prompt/system.txt"))
        );
        assert_eq!(config.prompt.system, None);
    }

    #[test]
    fn the_rendered_yaml_is_what_the_agent_reads_back() {
        let spec = VoiceAgentSpec {
            prompt: Some(PromptSpec {
                system: Some("You are brief.\nAnswer in one sentence.".into()),
                system_from: None,
                greeting: None,
            }),
            ..VoiceAgentSpec::default()
        };
        let config = agent_config("support", &spec).expect("renders");
        let back = AgentConfig::from_yaml(&config.to_yaml()).expect("the agent parses it");
        assert_eq!(back, config);
    }

    #[test]
    fn resumption_with_redis_mounts_its_secrets_and_renders_their_paths() {
        let spec: VoiceAgentSpec = crate::fixtures::spec(
            r#"
session:
  resume:
    store: Redis
    window: 5m
    redis:
      url: rediss://cache.example:6380/0
      caBundle: {name: redis-ca, key: ca.pem}
      passwordSecretRef: {name: redis, key: password}
      keyPrefix: "support:"
    encryptionKeySecretRef: {name: resume, key: key}
"#,
        );
        let config = agent_config("support", &spec).expect("renders");
        let resume = &config.session.resume;
        assert_eq!(resume.store, ResumeStore::Redis);
        assert_eq!(resume.window, Duration::from_secs(300));
        let redis = resume.redis.as_ref().expect("redis");
        assert_eq!(redis.password_file, REDIS_PASSWORD.path_in(&spec));
        assert!(redis.password_file.is_some() && redis.ca_file.is_some() && redis.username_file.is_none());
        assert_eq!(redis.key_prefix, "support:");
        assert_eq!(resume.encryption_key_file, RESUME_KEY.path_in(&spec));
        config.validate().expect("the agent accepts it");
        let mounted: Vec<String> = super::super::mounts::mounted_files(&spec)
            .iter()
            .map(|f| f.volume.clone())
            .collect();
        assert_eq!(mounted, ["resume-key", "redis-ca", "redis-password"]);
        // Without resume settings the file keeps the agent's defaults (and its old checksum).
        let plain = agent_config("support", &VoiceAgentSpec::default()).expect("renders");
        assert!(!plain.to_yaml().contains("resume"), "{}", plain.to_yaml());
    }

    #[test]
    fn greeting_and_session_settings_map_to_the_agents_fields() {
        let spec: VoiceAgentSpec = crate::fixtures::spec(
            r#"
model: {provider: NovaSonic}
prompt:
  system: "Help {{customer_name}} of {{tenant}}."
  greeting: Greet the caller by name.
sessionSettings:
  voices: [tiffany, amy]
  greeting: true
  maxValueLength: 80
  variables:
    - {name: customer_name, default: there}
    - {name: tenant, fromClaim: org}
  metadata: {maxKeys: 4, fromClaims: [sub]}
"#,
        );
        let config = agent_config("support", &spec).expect("renders");
        assert_eq!(config.prompt.greeting.as_deref(), Some("Greet the caller by name."));
        let settings = &config.session_settings;
        assert_eq!(settings.voices, ["tiffany", "amy"]);
        assert!(settings.greeting);
        assert_eq!(settings.max_value_length, 80);
        assert_eq!(settings.variables[0].default, "there");
        assert_eq!(settings.variables[1].from_claim.as_deref(), Some("org"));
        assert_eq!(settings.metadata.max_keys, 4);
        assert_eq!(settings.metadata.from_claims, ["sub"]);
        config.validate().expect("the agent accepts it");
        let back = AgentConfig::from_yaml(&config.to_yaml()).expect("the agent parses it");
        assert_eq!(back, config);
    }

    #[test]
    fn negative_counts_are_named() {
        let mut spec = VoiceAgentSpec::default();
        spec.session.max_sessions_per_replica = -1;
        let err = agent_config("a", &spec).expect_err("refused");
        assert_eq!(err.field, "session.maxSessionsPerReplica");
    }

    #[test]
    fn jwt_gateway_and_limits_map_to_the_agents_fields() {
        let spec: VoiceAgentSpec = crate::fixtures::spec(
            r#"
auth:
  mode: Jwt
  jwt:
    issuer: https://issuer.example.com
    audiences: [voice]
    jwksUrl: https://issuer.example.com/.well-known/jwks.json
    algorithms: [ES256, RS256]
    caBundle: {name: issuer-ca, key: ca.crt}
  allowQueryToken: true
  maxSessionsPerSubject: 2
gateway:
  url: https://g.example.com/mcp
  auth: {type: SigV4, region: eu-west-1}
  allowedTools: [lookup]
  callTimeout: 3s
limits:
  handshakesPerMinute: 30
  trustedProxies: [10.0.0.0/8]
  maxAudioRate: 2.5
  firstMessageTimeout: 2s
"#,
        );
        let config = agent_config("support", &spec).expect("renders");
        config.validate().expect("the agent accepts it");
        let jwt = config.auth.jwt.as_ref().expect("jwt");
        assert_eq!(config.auth.mode, AgentAuthMode::Jwt);
        assert_eq!(jwt.algorithms, ["ES256", "RS256"]);
        assert_eq!(jwt.leeway, Duration::from_secs(30));
        assert_eq!(
            jwt.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/voice-agent/jwks-ca/ca.pem"))
        );
        assert!(config.auth.allow_query_token);
        assert_eq!(config.auth.max_sessions_per_subject, Some(2));
        assert_eq!(config.auth.token_file, None);
        let gateway = config.gateway.as_ref().expect("gateway");
        assert_eq!(
            gateway.auth,
            GatewayAuth::SigV4 {
                region: Some("eu-west-1".into()),
                service: "bedrock-agentcore".into()
            }
        );
        assert_eq!(gateway.call_timeout, Duration::from_secs(3));
        assert_eq!(gateway.max_concurrent_calls, 4);
        assert_eq!(config.limits.handshakes_per_minute, 30);
        assert_eq!(config.limits.trusted_proxies, ["10.0.0.0/8"]);
        assert_eq!(config.limits.max_audio_rate, 2.5);
        assert_eq!(config.limits.first_message_timeout, Duration::from_secs(2));
        assert_eq!(config.limits.max_json_bytes, LimitsConfig::default().max_json_bytes);
    }

    #[test]
    fn the_specs_defaults_are_the_agents_defaults() {
        let spec = crate::fixtures::spec("gateway: {url: 'https://g.example.com/mcp'}\nauth: {}");
        let config = agent_config("support", &spec).expect("renders");
        assert_eq!(config.limits, LimitsConfig::default());
        assert_eq!(config.auth, AuthConfig::default());
        assert_eq!(config.gateway, Some(GatewayConfig::new("https://g.example.com/mcp")));
    }
}
