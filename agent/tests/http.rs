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
        (r#"{"prompt":"hello"}"#, "missing_command"),
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
    ] {
        assert!(text.contains(&format!("# TYPE {family}")), "missing {family}");
    }
}
