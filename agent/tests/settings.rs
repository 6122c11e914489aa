//! Per-session settings on the real binary: chosen in the handshake (query parameters and
//! AgentCore's custom headers), bounded by the agent's allow-list, reported in
//! `bidi_connection_start`, and carried to the model (voice, system prompt variables, the
//! greeting that makes it speak first) and to tools (MCP `_meta`).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const LIMIT: Duration = Duration::from_secs(30);

fn write_config(dir: &std::path::Path, yaml: &str) -> String {
    let path = dir.join("agent.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path.to_string_lossy().into_owned()
}

/// Opens a session with extra handshake headers.
async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Client {
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        request
            .headers_mut()
            .append(name, HeaderValue::from_str(value).expect("header value"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("handshake");
    Client::from_stream(ws, Encoding::Binary)
}

const NOVA_SETTINGS: &str = "\
sessionSettings:
  voices: [tiffany, amy]
  greeting: true
  maxValueLength: 40
  variables:
    - {name: customer_name, default: there}
    - {name: order_id}
";

#[tokio::test]
async fn the_callers_choices_reach_the_model_and_the_model_speaks_first() {
    let fake = FakeBedrock::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fake.agent_config(dir.path(), "");
    // The fake's config holds a fixed prompt; this test's prompt has variables.
    let yaml = std::fs::read_to_string(&config).expect("config").replace(
        "system: You are the test agent.",
        "system: \"Help {{customer_name}} with order {{ order_id }}.\"",
    );
    let config = write_config(dir.path(), &format!("{yaml}{NOVA_SETTINGS}"));
    let agent = AgentProcess::start_with_env(&["--config", &config], AWS_ENV);
    wait_ready(&agent).await;

    let url = agent.ws_url("?audio_output=binary&voice=tiffany&greeting=Say%20hello%20to%20Ana&var.order_id=A-17");
    let mut client = connect_with(
        &url,
        &[("X-Amzn-Bedrock-AgentCore-Runtime-Custom-Var-Customer-Name", "Ana")],
    )
    .await;
    let start = client.until_event("bidi_connection_start", LIMIT).await;
    assert_eq!(
        events(&start)[0]["settings"],
        json!({
            "voice": "tiffany",
            "greeting": "Say hello to Ana",
            "variables": {"customer_name": "Ana", "order_id": "A-17"},
        })
    );
    // The caller has said nothing, yet the model answers the greeting instruction.
    let greeting = client.until_event("bidi_response_complete", LIMIT).await;
    assert!(!audio_bytes(&greeting).is_empty(), "the greeting is spoken");
    client.close().await;

    let streams = fake.streams().await;
    let stream = &streams[0];
    assert_eq!(stream["voice"], "tiffany");
    assert_eq!(stream["system_prompt"], "Help Ana with order A-17.");
    assert_eq!(stream["text_inputs"], json!(["Say hello to Ana"]));

    // Another caller choosing nothing gets the deployment's defaults.
    let mut plain = Client::connect(&agent.ws_url("?audio_output=binary"), Encoding::Binary).await;
    let start = plain.until_event("bidi_connection_start", LIMIT).await;
    assert_eq!(
        events(&start)[0]["settings"],
        json!({"voice": "matthew", "variables": {"customer_name": "there", "order_id": ""}})
    );
    plain.close().await;
    let streams = fake.streams().await;
    assert_eq!(streams[1]["voice"], "matthew");
    assert_eq!(streams[1]["system_prompt"], "Help there with order .");
    assert_eq!(streams[1]["text_inputs"], json!([]), "no greeting configured");
}

#[tokio::test]
async fn settings_outside_the_allow_list_are_refused_naming_the_setting_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        "prompt:\n  system: \"Help {{customer_name}}.\"\nsessionSettings:\n  maxValueLength: 10\n  variables:\n    - {name: customer_name}\n",
    );
    let agent = AgentProcess::start(&["--config", &config]);
    wait_ready(&agent).await;
    let cases = [
        ("?voice=secretvoice", "voice"),
        ("?greeting=secretgreeting", "greeting"),
        ("?var.customer_name=secretsecretsecret", "var.customer_name"),
        ("?var.nickname=secret", "var.nickname"),
        ("?meta.account=secret", "meta.account"),
    ];
    for (query, setting) in cases {
        let (status, body) = refused(&agent.ws_url(query)).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.starts_with(setting), "{query}: {message}");
        assert!(!message.contains("secret"), "the value is never echoed: {message}");
    }
    wait_metric(
        &agent,
        "voice_agent_handshake_rejections_total{reason=\"bad_request\"}",
        cases.len() as f64,
    )
    .await;
    assert!(
        agent.logs().iter().all(|line| !line.contains("secret")),
        "values never reach the logs"
    );
    // An allowed value within bounds opens the session.
    let mut client = Client::connect(&agent.ws_url("?var.customer_name=Ana"), Encoding::Binary).await;
    let start = client.until_event("bidi_connection_start", LIMIT).await;
    assert_eq!(events(&start)[0]["settings"]["variables"]["customer_name"], "Ana");
    client.close().await;
}

#[tokio::test]
async fn caller_metadata_reaches_tools_as_mcp_meta() {
    let mcp = McpServer::start(false);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!(
            "gateway:\n  url: {}\nsessionSettings:\n  metadata: {{maxKeys: 2}}\n",
            mcp.url
        ),
    );
    let agent = AgentProcess::start(&["--config", &config]);
    wait_ready(&agent).await;
    // Tools load in the background; wait until the agent offers them.
    wait_metric(
        &agent,
        "voice_agent_tool_calls_total{tool=\"unknown\",outcome=\"unknown_tool\"}",
        0.0,
    )
    .await;
    let mut client = Client::connect(&agent.ws_url("?meta.account=A-17&meta.channel=web"), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    client.send_text(r#"tool:get_weather {"city": "Paris"}"#).await;
    client.until_event("tool_result", LIMIT).await;
    client.close().await;

    let calls: Vec<Value> = mcp
        .requests()
        .await
        .into_iter()
        .filter(|r| r.get("tool_meta").is_some())
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    // The MCP client adds its own keys (a progress token) beside the caller's.
    let meta = &calls[0]["tool_meta"];
    assert_eq!(
        (&meta["account"], &meta["channel"]),
        (&json!("A-17"), &json!("web")),
        "{meta}"
    );
}
