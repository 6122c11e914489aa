//! The plain HTTP surface: AgentCore's /ping and /invocations, probes, metrics.

mod support;

use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(15);

async fn invoke(agent: &AgentProcess, body: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(agent.url("/invocations"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("POST /invocations");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON response"))
}

#[tokio::test]
async fn ping_reports_busy_while_a_session_is_live() {
    let agent = AgentProcess::start(&[]);
    let idle = get_json(&agent.url("/ping")).await;
    assert_eq!(idle["status"], "Healthy");
    let since_idle = idle["time_of_last_update"].as_u64().expect("unix seconds");
    assert!(since_idle > 1_700_000_000);

    // The timestamp only moves when the status changes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_json(&agent.url("/ping")).await["time_of_last_update"], since_idle);

    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    let busy = get_json(&agent.url("/ping")).await;
    assert_eq!(busy["status"], "HealthyBusy");
    let since_busy = busy["time_of_last_update"].as_u64().expect("unix seconds");
    assert!(since_busy > since_idle);

    client.close().await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let ping = get_json(&agent.url("/ping")).await;
        if ping["status"] == "Healthy" {
            assert!(ping["time_of_last_update"].as_u64() >= Some(since_busy));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still busy after the session ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn invocations_answer_status_and_health() {
    let agent = AgentProcess::start(&["--name", "front-desk", "--max-sessions", "7"]);
    let (status, body) = invoke(&agent, r#"{"command":"status"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(body["agent"], "front-desk");
    assert_eq!(body["active_sessions"], 0);
    assert_eq!(body["max_sessions"], 7);
    assert_eq!(body["ws_path"], "/ws");
    assert_eq!(body["model"], "simulated");
    assert_eq!(body["draining"], false);

    let (status, body) = invoke(&agent, r#"{"command":"health"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "Healthy");
    assert_eq!(body["ready"], true);
}

#[tokio::test]
async fn invocations_refuse_anything_else_with_a_json_error() {
    let agent = AgentProcess::start(&[]);
    for (body, code) in [
        (r#"{"command":"dance"}"#, "unknown_command"),
        ("{}", "missing_command"),
        (r#"{"prompt":"  "}"#, "invalid_request"),
        (r#"{"prompt":"hi","command":"status"}"#, "invalid_request"),
        ("not json", "invalid_request"),
        ("", "invalid_request"),
    ] {
        let (status, reply) = invoke(&agent, body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(reply["error"]["code"], code, "{body}");
        assert!(reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn probes_answer() {
    let agent = AgentProcess::start(&[]);
    assert_eq!(get(&agent.url("/healthz")).await.0, 200);
    assert_eq!(get(&agent.url("/readyz")).await.0, 200);
    assert_eq!(get(&agent.url("/nowhere")).await.0, 404);
}

#[tokio::test]
async fn metrics_count_sessions_frames_and_first_audio() {
    let agent = AgentProcess::start(&[]);
    let (status, text) = get(&agent.url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE voice_agent_sessions_active gauge"), "{text}");
    assert!(text.ends_with("# EOF\n"));

    let mut client = Client::connect(&agent.ws_url("?audio_output=binary"), Encoding::Binary).await;
    let mut received = Vec::new();
    client
        .stream_audio(
            &[speech("Count this turn please."), silence(800)].concat(),
            &mut received,
        )
        .await;
    while !event_types(&received).contains(&"bidi_response_complete".to_owned()) {
        client.stream_audio(&silence(320), &mut received).await;
    }
    client.close().await;

    wait_metric(
        &agent,
        "voice_agent_sessions_ended_total{reason=\"client_disconnect\"}",
        1.0,
    )
    .await;
    assert_eq!(metric(&agent, "voice_agent_sessions_started_total").await, 1.0);
    assert!(metric(&agent, "voice_agent_audio_frames_total{direction=\"in\"}").await > 30.0);
    let frames_out = metric(&agent, "voice_agent_audio_frames_total{direction=\"out\"}").await;
    let audio_frames = received.iter().filter(|r| matches!(r, Received::Audio(_))).count() as f64;
    assert!(
        frames_out >= audio_frames && audio_frames > 0.0,
        "{frames_out} vs {audio_frames}"
    );
    assert_eq!(
        metric(&agent, "voice_agent_time_to_first_audio_seconds_count").await,
        1.0
    );
    assert_eq!(metric(&agent, "voice_agent_session_duration_seconds_count").await, 1.0);
    assert_eq!(metric(&agent, "voice_agent_sessions_active").await, 0.0);
}

#[tokio::test]
async fn every_metric_family_is_exposed() {
    let agent = AgentProcess::start(&[]);
    let (_, text) = get(&agent.url("/metrics")).await;
    for family in [
        "voice_agent_sessions_active gauge",
        "voice_agent_sessions_started counter",
        "voice_agent_sessions_ended counter",
        "voice_agent_session_duration_seconds histogram",
        "voice_agent_audio_frames counter",
        "voice_agent_audio_frames_dropped counter",
        "voice_agent_time_to_first_audio_seconds histogram",
        "voice_agent_interruptions counter",
        "voice_agent_client_errors counter",
        "voice_agent_model_errors counter",
        "voice_agent_model_stream_renewals counter",
        "voice_agent_handshake_rejections counter",
        "voice_agent_tool_calls counter",
        "voice_agent_tool_call_duration_seconds histogram",
        "voice_agent_model_tokens counter",
        "voice_agent_runtime_tasks gauge",
    ] {
        assert!(text.contains(&format!("# TYPE {family}")), "missing {family}");
    }
    let tasks = metric(&agent, "voice_agent_runtime_tasks").await;
    assert!(tasks >= 1.0, "the runtime has tasks (the listener at least): {tasks}");
}

/// The events of a Server-Sent Events body, as `(event, data)`.
fn sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut kind = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            Some((kind?, serde_json::from_str(&data).expect("JSON data")))
        })
        .collect()
}

/// POSTs a prompt; the status, content type and events of the answer.
async fn prompt(agent: &AgentProcess, body: serde_json::Value, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut request = reqwest::Client::new().post(agent.url("/invocations")).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(LIMIT, request.send())
        .await
        .expect("in time")
        .expect("POST /invocations");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = tokio::time::timeout(LIMIT, response.text())
        .await
        .expect("the stream ends")
        .expect("body");
    (status, content_type, text)
}

#[tokio::test]
async fn a_prompt_streams_the_reply_as_server_sent_events() {
    let agent = AgentProcess::start(&[]);
    let (status, content_type, body) = prompt(&agent, serde_json::json!({"prompt": "What are your hours?"}), &[]).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let events = sse_events(&body);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    assert!(kinds.contains(&"delta"), "text streams before the end: {kinds:?}");
    assert!(!kinds.contains(&"audio"), "audio is off unless asked for");
    let (_, done) = events.last().expect("done");
    assert!(
        done["text"]
            .as_str()
            .is_some_and(|t| t.contains("What are your hours?")),
        "{done}"
    );
    assert_eq!(done["stop_reason"], "complete");
    assert!(done["usage"]["input_tokens"].as_u64() > Some(0), "{done}");
    assert!(done["usage"]["output_tokens"].as_u64() > Some(0), "{done}");
    // It was a session like any other: counted, and over.
    wait_metric(&agent, "voice_agent_sessions_started_total", 1.0).await;
    wait_metric(&agent, "voice_agent_sessions_active", 0.0).await;
    assert!(
        metric(
            &agent,
            "voice_agent_model_tokens_total{direction=\"input\",modality=\"text\"}"
        )
        .await
            > 0.0
    );

    let (_, _, body) = prompt(
        &agent,
        serde_json::json!({"prompt": "Say something", "audio": true}),
        &[],
    )
    .await;
    let audio: Vec<u8> = sse_events(&body)
        .iter()
        .filter(|(kind, _)| kind == "audio")
        .flat_map(|(_, data)| {
            assert_eq!(data["sample_rate"], 24000);
            base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                data["audio"].as_str().expect("audio"),
            )
            .expect("base64")
        })
        .collect();
    assert!(audio.len() > 24_000 && rms(&audio) > 500.0, "audible reply audio");
}

#[tokio::test]
async fn prompts_get_the_same_auth_and_limits_as_voice_sessions() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "s3cr3t-alpha\n").expect("tokens");
    let agent = AgentProcess::start(&[
        "--auth-mode",
        "token",
        "--auth-token-file",
        &tokens.to_string_lossy(),
        "--max-sessions",
        "1",
    ]);
    let body = serde_json::json!({"prompt": "hello"});
    let (status, _, text) = prompt(&agent, body.clone(), &[]).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("unauthenticated"), "{text}");
    let bearer = [("authorization", "Bearer s3cr3t-alpha")];
    let (status, _, text) = prompt(&agent, body.clone(), &bearer).await;
    assert_eq!(status, 200, "{text}");
    wait_metric(&agent, "voice_agent_sessions_active", 0.0).await;

    // A voice session holds the only place: the prompt is refused for capacity.
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(agent.ws_url(""))
        .expect("request");
    request
        .headers_mut()
        .insert("authorization", "Bearer s3cr3t-alpha".parse().expect("header"));
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("voice session");
    let mut client = Client::from_stream(ws, Encoding::Json);
    client.until_event("bidi_connection_start", LIMIT).await;
    let (status, _, text) = prompt(&agent, body.clone(), &bearer).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("capacity"), "{text}");
    client.close().await;

    let long = "x".repeat(5000);
    let (status, _, text) = prompt(&agent, serde_json::json!({ "prompt": long }), &bearer).await;
    assert_eq!(status, 400);
    assert!(text.contains("text_too_long"), "{text}");
    assert!(
        agent.logs().iter().all(|l| !l.contains("s3cr3t-alpha")),
        "the token never reaches the logs"
    );
}
