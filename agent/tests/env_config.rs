//! Configuration from environment variables and flags alone, as on AgentCore Runtime where the
//! stock image gets environment variables but no config file. Runs the real binary.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use voice_config::{AgentConfig, ModelConfig};

const LIMIT: Duration = Duration::from_secs(30);

/// Environment that points the NovaSonic provider at the fake, with no config file at all.
fn nova_env(fake: &FakeBedrock) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = AWS_ENV.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    env.extend([
        ("VOICE_AGENT_MODEL_PROVIDER", "nova-sonic".to_owned()),
        ("VOICE_AGENT_NOVA_ENDPOINT_URL", fake.endpoint.clone()),
        ("VOICE_AGENT_NOVA_CA_BUNDLE_FILE", fake.ca_file.clone()),
        (
            "VOICE_AGENT_SYSTEM_PROMPT",
            "You are configured by the environment.".to_owned(),
        ),
    ]);
    env
}

fn start_agent(args: &[&str], env: &[(&'static str, String)]) -> AgentProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    AgentProcess::start_with_env(args, &env)
}

async fn status(agent: &AgentProcess) -> Value {
    let response = reqwest::Client::new()
        .post(agent.url("/invocations"))
        .header("content-type", "application/json")
        .body(r#"{"command":"status"}"#)
        .send()
        .await
        .expect("POST /invocations");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("JSON status")
}

/// Says one text turn and returns everything received until the reply completes.
async fn text_turn(agent: &AgentProcess, text: &str) -> (Value, Vec<Received>) {
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let start = client.until_event("bidi_connection_start", LIMIT).await;
    let start = events(&start)[0].clone();
    client.send_text(text).await;
    let received = client.until_event("bidi_response_complete", LIMIT).await;
    client.close().await;
    (start, received)
}

/// Runs the binary to completion (bounded) and returns its exit code, stdout and stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voice-agent"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn voice-agent");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("voice-agent {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.code(), stdout, stderr)
}

/// The effective configuration `voice-agent config` prints.
fn effective_config(args: &[&str], env: &[(&str, &str)]) -> AgentConfig {
    let (code, stdout, stderr) = run(&[&["config"], args].concat(), env);
    assert_eq!(code, Some(0), "{stderr}");
    AgentConfig::from_yaml(&stdout).expect("config prints valid YAML")
}

#[tokio::test]
async fn environment_alone_selects_nova_sonic_and_a_conversation_works() {
    let fake = FakeBedrock::start(&[]);
    let mut env = nova_env(&fake);
    env.extend([
        ("VOICE_AGENT_NAME", "env-agent".to_owned()),
        ("VOICE_AGENT_NOVA_MODEL_ID", "us.amazon.nova-2-sonic-v1:0".to_owned()),
        ("VOICE_AGENT_NOVA_REGION", "us-west-2".to_owned()),
        // The explicit region wins over the SDK's default chain.
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("VOICE_AGENT_NOVA_VOICE", "tiffany".to_owned()),
        ("VOICE_AGENT_NOVA_OUTPUT_SAMPLE_RATE", "16000".to_owned()),
        ("VOICE_AGENT_MAX_SESSIONS", "3".to_owned()),
    ]);
    let agent = start_agent(&[], &env);

    let status = status(&agent).await;
    assert_eq!(status["agent"], "env-agent");
    assert_eq!(status["model"], "us.amazon.nova-2-sonic-v1:0");
    assert_eq!(status["max_sessions"], 3);

    let (start, received) = text_turn(&agent, "Book a table for two").await;
    assert_eq!(start["model"], "us.amazon.nova-2-sonic-v1:0");
    assert_eq!(start["output_sample_rate"], 16000);
    let reply = events(&received)
        .into_iter()
        .filter(|v| v["type"] == "bidi_transcript_stream" && v["role"] == "assistant")
        .filter_map(|v| v["text"].as_str())
        .collect::<String>();
    assert!(reply.contains("Book a table for two"), "{reply}");
    assert!(!audio_bytes(&received).is_empty(), "reply audio");
    assert!(
        events(&received)
            .iter()
            .filter(|v| v["type"] == "bidi_audio_stream")
            .all(|v| v["sample_rate"] == 16000)
    );

    let streams = fake.streams().await;
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["model_id"], "us.amazon.nova-2-sonic-v1:0");
    assert_eq!(streams[0]["region"], "us-west-2");
    assert_eq!(streams[0]["signed"], true);
    assert_eq!(streams[0]["system_prompt"], "You are configured by the environment.");
}

#[tokio::test]
async fn nova_region_falls_back_to_aws_region() {
    let fake = FakeBedrock::start(&[]);
    let mut env = nova_env(&fake);
    env.push(("AWS_REGION", "eu-north-1".to_owned()));
    let agent = start_agent(&[], &env);
    text_turn(&agent, "Hello").await;
    let streams = fake.streams().await;
    assert_eq!(streams[0]["region"], "eu-north-1");
    assert_eq!(streams[0]["model_id"], "amazon.nova-2-5-sonic");
}

#[tokio::test]
async fn flag_overrides_the_file_and_status_reports_the_chosen_model() {
    let fake = FakeBedrock::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fake.agent_config(dir.path(), "");
    let env: Vec<(&str, &str)> = AWS_ENV.to_vec();

    let from_file = AgentProcess::start_with_env(&["--config", &config], &env);
    assert_eq!(status(&from_file).await["model"], "amazon.nova-2-5-sonic");
    drop(from_file);

    let overridden = AgentProcess::start_with_env(
        &[
            "--config",
            &config,
            "--model-provider",
            "simulated",
            "--name",
            "flagged",
        ],
        &env,
    );
    let status = status(&overridden).await;
    assert_eq!(status["model"], "simulated");
    assert_eq!(status["agent"], "flagged");
    let (start, _) = text_turn(&overridden, "Hello").await;
    assert_eq!(start["model"], "simulated");
    assert!(fake.streams().await.is_empty(), "the simulator answered, not Bedrock");
}

#[test]
fn precedence_is_flag_then_environment_then_file_then_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.yaml");
    std::fs::write(
        &path,
        "name: from-file\nmodel:\n  provider: NovaSonic\n  region: us-east-1\n  voice: amy\n\
         session:\n  maxSessions: 3\n  idleTimeout: 45s\n",
    )
    .expect("write config");
    let path = path.to_string_lossy().into_owned();
    let config = effective_config(
        &["--config", &path, "--max-sessions", "5"],
        &[
            ("VOICE_AGENT_MAX_SESSIONS", "4"),
            ("VOICE_AGENT_NOVA_VOICE", "tiffany"),
            ("VOICE_AGENT_GATEWAY_URL", "https://gw.example.com/mcp"),
            ("VOICE_AGENT_GATEWAY_AUTH", "sigv4"),
        ],
    );
    assert_eq!(config.session.max_sessions, 5, "flag beats environment");
    let ModelConfig::NovaSonic(nova) = &config.model else {
        panic!("the file's provider was lost: {:?}", config.model);
    };
    assert_eq!(nova.voice, "tiffany", "environment beats file");
    assert_eq!(
        nova.region.as_deref(),
        Some("us-east-1"),
        "file kept where nothing overrides it"
    );
    assert_eq!(config.name, "from-file");
    assert_eq!(config.session.idle_timeout, Duration::from_secs(45));
    assert_eq!(config.session.drain_timeout, Duration::from_secs(300), "default");
    assert_eq!(
        config.gateway.expect("gateway from environment").url,
        "https://gw.example.com/mcp"
    );
}

#[test]
fn invalid_environment_values_exit_with_status_2_naming_the_variable() {
    for (env, expected) in [
        (
            vec![("VOICE_AGENT_MODEL_PROVIDER", "gpt-4o")],
            &["VOICE_AGENT_MODEL_PROVIDER"][..],
        ),
        (
            vec![("VOICE_AGENT_IDLE_TIMEOUT", "soon")],
            &["VOICE_AGENT_IDLE_TIMEOUT"][..],
        ),
        (
            vec![
                ("VOICE_AGENT_MODEL_PROVIDER", "NovaSonic"),
                ("VOICE_AGENT_NOVA_OUTPUT_SAMPLE_RATE", "44100"),
            ],
            &["model.outputSampleRate", "VOICE_AGENT_NOVA_OUTPUT_SAMPLE_RATE"][..],
        ),
        (
            vec![("VOICE_AGENT_NOVA_REGION", "us-east-1")],
            &[
                "model.provider",
                "VOICE_AGENT_NOVA_REGION",
                "VOICE_AGENT_MODEL_PROVIDER",
            ][..],
        ),
        (
            vec![("VOICE_AGENT_GATEWAY_AUTH", "bearer")],
            &["gateway.url", "VOICE_AGENT_GATEWAY_URL"][..],
        ),
    ] {
        let (code, _, stderr) = run(&["--listen", "127.0.0.1:0"], &env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        for name in expected {
            assert!(stderr.contains(name), "{env:?} should name {name}: {stderr}");
        }
    }
}

#[test]
fn help_lists_every_variable_and_the_docs_describe_each() {
    let (code, help, _) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md"))
        .expect("docs/configuration.md");
    let variables: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    for expected in [
        "VOICE_AGENT_MODEL_PROVIDER",
        "VOICE_AGENT_NOVA_MODEL_ID",
        "VOICE_AGENT_NOVA_REGION",
        "VOICE_AGENT_GATEWAY_URL",
        "VOICE_AGENT_AUTH_MODE",
        "VOICE_AGENT_LOG_FORMAT",
    ] {
        assert!(variables.contains(&expected), "--help lacks {expected}");
    }
    for variable in variables {
        assert!(
            docs.contains(variable),
            "docs/configuration.md does not describe {variable}"
        );
    }
}
