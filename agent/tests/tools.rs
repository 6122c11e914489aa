//! Tool calls through an MCP gateway: a real, independent MCP server (the official Python SDK
//! over streamable HTTP) behind the real agent, driven by real WebSocket clients.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(30);

fn write_config(dir: &std::path::Path, yaml: &str) -> String {
    let path = dir.join("agent.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path.to_string_lossy().into_owned()
}

async fn agent_with_gateway(gateway_yaml: &str, env: &[(&str, &str)]) -> (AgentProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), gateway_yaml);
    let agent = AgentProcess::start_with_env(&["--config", &config], env);
    wait_ready(&agent).await;
    (agent, dir)
}

/// Sends a text turn and reads until `replies` responses completed.
async fn turn(client: &mut Client, text: &str, replies: usize) -> Vec<Received> {
    client.send_text(text).await;
    let mut received = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while events(&received)
        .iter()
        .filter(|v| v["type"] == "bidi_response_complete")
        .count()
        < replies
    {
        let left = deadline.saturating_duration_since(Instant::now());
        received.extend(client.until_event("bidi_response_complete", left).await);
    }
    received
}

fn tool_results(items: &[Received]) -> Vec<Value> {
    events(items)
        .into_iter()
        .filter(|v| v["type"] == "tool_result")
        .map(|v| v["tool_result"].clone())
        .collect()
}

fn final_replies(items: &[Received]) -> Vec<String> {
    events(items)
        .into_iter()
        .filter(|v| v["type"] == "bidi_transcript_stream" && v["role"] == "assistant" && v["is_final"] == true)
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn tools_are_discovered_with_gateway_prefixes_removed() {
    let mcp = McpServer::start(false);
    let (agent, _dir) = agent_with_gateway(&format!("gateway:\n  url: {}\n", mcp.url), &[]).await;
    let status: Value = reqwest::Client::new()
        .post(agent.url("/invocations"))
        .body(r#"{"command":"status"}"#)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["tools"], json!(["get_weather", "slow_lookup", "make_booking"]));
}

#[tokio::test]
async fn the_allow_list_limits_the_tools_offered() {
    let mcp = McpServer::start(false);
    let yaml = format!(
        "gateway:\n  url: {}\n  allowedTools: [get_weather, lookup___slow_lookup]\n",
        mcp.url
    );
    let (agent, _dir) = agent_with_gateway(&yaml, &[]).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let received = turn(&mut client, "tool:make_booking", 1).await;
    let result = &tool_results(&received)[0];
    assert_eq!(result["status"], "error");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("no tool named")),
        "{result}"
    );
    assert!(mcp.calls().await.is_empty(), "a tool outside the allow-list was called");
}

#[tokio::test]
async fn a_tool_call_and_its_spoken_result() {
    let mcp = McpServer::start(false);
    let (agent, _dir) = agent_with_gateway(&format!("gateway:\n  url: {}\n", mcp.url), &[]).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let received = turn(&mut client, r#"tool:get_weather {"city": "Paris"}"#, 1).await;

    let uses: Vec<&Value> = events(&received)
        .into_iter()
        .filter(|v| v["type"] == "tool_use_stream")
        .collect();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0]["current_tool_use"]["name"], "get_weather");
    assert_eq!(uses[0]["current_tool_use"]["input"], json!({"city": "Paris"}));
    let result = &tool_results(&received)[0];
    assert_eq!(result["status"], "success");
    assert_eq!(result["toolUseId"], uses[0]["current_tool_use"]["toolUseId"]);
    assert!(
        result["content"][0]["text"].as_str().is_some_and(|t| t.contains("21")),
        "{result}"
    );
    let replies = final_replies(&received);
    assert!(
        replies
            .iter()
            .any(|r| r.contains("get_weather tool says") && r.contains("21")),
        "{replies:?}"
    );
    assert!(!audio_bytes(&received).is_empty(), "the result is spoken");

    let calls = mcp.calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["arguments"], json!({"city": "Paris"}));
    wait_metric(
        &agent,
        "voice_agent_tool_calls_total{tool=\"get_weather\",outcome=\"success\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(
            &agent,
            "voice_agent_tool_call_duration_seconds_count{tool=\"get_weather\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn slow_calls_run_concurrently() {
    let mcp = McpServer::start(false);
    let (agent, _dir) = agent_with_gateway(&format!("gateway:\n  url: {}\n", mcp.url), &[]).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let started = Instant::now();
    let text = r#"tool:slow_lookup {"query": "a", "seconds": 2} tool:slow_lookup {"query": "b", "seconds": 2}"#;
    let received = turn(&mut client, text, 2).await;
    let results = tool_results(&received);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["status"] == "success"), "{results:?}");

    let calls = mcp.calls().await;
    assert_eq!(calls.len(), 2);
    let (a, b) = (&calls[0], &calls[1]);
    let overlap = a["start"].as_f64() < b["end"].as_f64() && b["start"].as_f64() < a["end"].as_f64();
    assert!(overlap, "the calls did not overlap in time: {calls:?}");
    // Both results came back well before two sequential calls could have finished.
    let first_result_at = received
        .iter()
        .position(|r| matches!(r, Received::Event(v) if v["type"] == "tool_result"));
    assert!(first_result_at.is_some());
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_call_that_takes_too_long_becomes_a_timeout_result() {
    let mcp = McpServer::start(false);
    let yaml = format!("gateway:\n  url: {}\n  callTimeout: 1s\n", mcp.url);
    let (agent, _dir) = agent_with_gateway(&yaml, &[]).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let received = turn(&mut client, r#"tool:slow_lookup {"seconds": 4}"#, 1).await;
    let result = &tool_results(&received)[0];
    assert_eq!(result["status"], "error");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("did not answer within 1s")),
        "{result}"
    );
    assert!(
        final_replies(&received)
            .iter()
            .any(|r| r.contains("slow_lookup tool failed"))
    );
    wait_metric(
        &agent,
        "voice_agent_tool_calls_total{tool=\"slow_lookup\",outcome=\"timeout\"}",
        1.0,
    )
    .await;
    // The session is alive and well.
    let again = turn(&mut client, r#"tool:get_weather {"city": "Rome"}"#, 1).await;
    assert_eq!(tool_results(&again)[0]["status"], "success");
}

#[tokio::test]
async fn a_failing_tool_gives_an_error_result_the_model_can_speak_about() {
    let mcp = McpServer::start(false);
    let (agent, _dir) = agent_with_gateway(&format!("gateway:\n  url: {}\n", mcp.url), &[]).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let received = turn(&mut client, "tool:make_booking {\"party\": 4}", 1).await;
    let result = &tool_results(&received)[0];
    assert_eq!(result["status"], "error");
    assert!(
        final_replies(&received)
            .iter()
            .any(|r| r.contains("make_booking tool failed"))
    );
    assert!(!event_types(&received).contains(&"bidi_connection_close".to_owned()));
    wait_metric(
        &agent,
        "voice_agent_tool_calls_total{tool=\"make_booking\",outcome=\"error\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn json_responses_work_as_well_as_sse() {
    let mcp = McpServer::start(true);
    let (agent, _dir) = agent_with_gateway(&format!("gateway:\n  url: {}\n", mcp.url), &[]).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let received = turn(&mut client, r#"tool:get_weather {"city": "Lima"}"#, 1).await;
    assert_eq!(tool_results(&received)[0]["status"], "success");
}

#[tokio::test]
async fn bearer_tokens_are_sent_and_rotated_without_a_restart() {
    let mcp = McpServer::start(false);
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").expect("token");
    let yaml = format!(
        "gateway:\n  url: {}\n  auth:\n    type: Bearer\n    tokenFile: {}\n",
        mcp.url,
        token_file.display()
    );
    let (agent, _config_dir) = agent_with_gateway(&yaml, &[]).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    turn(&mut client, r#"tool:get_weather {"city": "Oslo"}"#, 1).await;
    let before = mcp.requests().await;
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|r| r["authorization"] == "Bearer first-token"),
        "{before:?}"
    );

    std::fs::write(&token_file, "second-token\n").expect("rotate");
    turn(&mut client, r#"tool:get_weather {"city": "Bergen"}"#, 1).await;
    let after = mcp.requests().await;
    assert_eq!(
        after.last().map(|r| r["authorization"].clone()),
        Some(json!("Bearer second-token"))
    );
    let logs = agent.logs().join("\n");
    assert!(
        !logs.contains("first-token") && !logs.contains("second-token"),
        "a token was logged"
    );
}

#[tokio::test]
async fn sigv4_signatures_for_bedrock_agentcore_are_valid() {
    let mcp = McpServer::start(false);
    let yaml = format!(
        "gateway:\n  url: {}\n  auth:\n    type: SigV4\n    region: eu-central-1\n",
        mcp.url
    );
    let (agent, _dir) = agent_with_gateway(&yaml, AWS_ENV).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    turn(&mut client, r#"tool:get_weather {"city": "Berlin"}"#, 1).await;
    let requests = mcp.requests().await;
    assert!(requests.len() >= 3, "initialize, list and call: {requests:?}");
    for request in &requests {
        let auth = request["authorization"].as_str().unwrap_or_default();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDVOICETEST/"),
            "{request}"
        );
        assert_eq!(request["sigv4"]["service"], "bedrock-agentcore", "{request}");
        assert_eq!(request["sigv4"]["region"], "eu-central-1", "{request}");
        assert_eq!(request["sigv4"]["valid"], true, "signature does not verify: {request}");
    }
    assert!(
        !agent.logs().join("\n").contains(SIGV4_SECRET),
        "the secret key was logged"
    );
}

#[tokio::test]
async fn without_a_gateway_tool_requests_get_an_error_result() {
    let agent = AgentProcess::start(&[]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let received = turn(&mut client, "tool:get_weather", 1).await;
    let result = &tool_results(&received)[0];
    assert_eq!(result["status"], "error");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("no tools are configured"))
    );
}

/// Readiness waits for the gateway's first answer, or its first failure: a gateway that is down
/// leaves the agent ready without tools (saying so) rather than out of service.
#[tokio::test]
async fn the_agent_is_not_ready_until_the_gateway_answered_or_failed_once() {
    // A listener that never accepts: connections open, requests are never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/mcp", silent.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &format!("gateway:\n  url: {url}\n"));
    let agent = AgentProcess::start(&["--config", &config]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = get(&agent.url("/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("tools not loaded"), "{body}");

    // The attempt gives up after 10 s; then the agent serves, without the gateway's tools.
    wait_ready(&agent).await;
    let (_, body) = get(&agent.url("/readyz")).await;
    assert_eq!(body, "ready; tool servers unreachable: gateway\n");
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let received = turn(&mut client, "tool:get_weather", 1).await;
    assert!(
        tool_results(&received)[0]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("no tool named")),
        "{received:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn tools_work_through_nova_sonic_and_the_bedrock_fake() {
    let mcp = McpServer::start(false);
    let fake = FakeBedrock::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fake.agent_config(dir.path(), "");
    let mut yaml = std::fs::read_to_string(&config).expect("config");
    yaml.push_str(&format!("gateway:\n  url: {}\n", mcp.url));
    std::fs::write(&config, yaml).expect("config");
    let agent = AgentProcess::start_with_env(&["--config", &config], AWS_ENV);
    wait_ready(&agent).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    let received = turn(&mut client, r#"tool:get_weather {"city": "Tokyo"}"#, 1).await;
    assert_eq!(tool_results(&received)[0]["status"], "success");
    assert!(
        final_replies(&received)
            .iter()
            .any(|r| r.contains("get_weather tool says"))
    );
    let streams = fake.streams().await;
    let results = streams[0]["tool_results"].as_array().expect("tool results");
    assert_eq!(results.len(), 1);
    let sent: Value = serde_json::from_str(results[0].as_str().expect("string")).expect("JSON tool result");
    assert_eq!(sent["city"], "Tokyo");
}

#[tokio::test]
async fn a_prompt_to_invocations_calls_tools_and_streams_the_answer() {
    let mcp = McpServer::start(false);
    let (agent, _dir) = agent_with_gateway(&format!("gateway:\n  url: {}\n", mcp.url), &[]).await;
    let response = reqwest::Client::new()
        .post(agent.url("/invocations"))
        .json(&json!({"prompt": r#"tool:get_weather {"city": "Lyon"}"#}))
        .send()
        .await
        .expect("POST /invocations");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(LIMIT, response.text())
        .await
        .expect("the reply ends")
        .expect("body");
    let kinds: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event:").map(str::trim))
        .collect();
    let position = |kind: &str| kinds.iter().position(|k| *k == kind);
    assert!(
        position("tool_use") < position("tool_result") && position("tool_result") < position("done"),
        "{kinds:?}"
    );
    assert!(
        body.contains("get_weather tool says") && body.contains("21"),
        "the answer speaks of the result: {body}"
    );
    assert_eq!(mcp.calls().await[0]["arguments"], json!({"city": "Lyon"}));
}

#[tokio::test]
async fn every_frame_stays_below_agentcores_frame_limit() {
    // AgentCore Runtime closes WebSocket connections whose frames exceed 32 KB.
    const LIMIT_BYTES: usize = 32_000;
    let mcp = McpServer::start(false);
    let (agent, _dir) = agent_with_gateway(&format!("gateway:\n  url: {}\n", mcp.url), &[]).await;
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    // A result of about 200 KB, and spoken replies with JSON audio.
    let received = turn(
        &mut client,
        r#"tool:slow_lookup {"query": "the manual", "seconds": 0.1, "repeat": 5000}"#,
        1,
    )
    .await;
    let mut sizes: Vec<usize> = received
        .iter()
        .map(|item| match item {
            // Compact JSON, as the agent writes it: the same length as the frame.
            Received::Event(value) => value.to_string().len(),
            Received::Audio(pcm) => pcm.len(),
            Received::Closed(_) => 0,
        })
        .collect();
    sizes.sort_unstable();
    let largest = sizes.last().copied().unwrap_or_default();
    assert!(largest < LIMIT_BYTES, "a frame of {largest} bytes");
    let result = &tool_results(&received)[0];
    let shown = result["content"][0]["text"].as_str().expect("text");
    assert!(
        shown.ends_with("[truncated]"),
        "the client sees the start of the result"
    );
    assert!(
        events(&received).iter().any(|e| e["type"] == "bidi_audio_stream"),
        "the reply is spoken, as JSON audio"
    );
}
