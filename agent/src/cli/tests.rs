use std::collections::HashSet;
use std::time::Duration;

use clap::{Args as _, Parser as _};

use super::*;
use voice_config::{
    AgentConfig, AuthMode, ConfigError, DEFAULT_SIGV4_SERVICE, EndpointingSensitivity, GatewayAuth, ModelConfig,
    NovaSonicConfig,
};

fn load(args: &[&str]) -> Result<AgentConfig, ConfigError> {
    let cli = Cli::try_parse_from(std::iter::once("voice-agent").chain(args.iter().copied())).expect("parses");
    cli.serve.load_config().map(ValidConfig::into_inner)
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
        assert_eq!(nova(&config).model_id, voice_config::NOVA_2_5_SONIC, "{spelling}");
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

#[test]
fn resume_flags_configure_the_shared_store() {
    let config = load(&[
        "--resume-store",
        "redis",
        "--resume-redis-url",
        "rediss://cache.internal:6380/0",
        "--resume-redis-password-file",
        "/run/secrets/redis-password",
        "--resume-encryption-key-file",
        "/run/secrets/resume-key",
        "--resume-window",
        "5m",
    ])
    .expect("valid");
    let resume = &config.session.resume;
    assert_eq!(resume.store, voice_config::ResumeStore::Redis);
    assert_eq!(resume.window, Duration::from_secs(300));
    let redis = resume.redis.as_ref().expect("redis");
    assert_eq!(redis.url, "rediss://cache.internal:6380/0");
    assert_eq!(
        redis.password_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/redis-password"))
    );
    assert_eq!(redis.key_prefix, "voice-agent:resume:");
    // Redis without an encryption key is refused, naming the flag's field.
    let error = load(&["--resume-store", "redis", "--resume-redis-url", "redis://r:6379"]).expect_err("no key");
    assert!(error.to_string().contains("encryptionKeyFile"), "{error}");
    assert!(!load(&["--resume", "false"]).expect("valid").session.resume.enabled);
}
