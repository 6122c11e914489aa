//! Bad input and limits: each case has its documented outcome, and a healthy session running
//! alongside is never disturbed.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(15);

/// A session that keeps talking (text turns) while another one misbehaves.
async fn healthy_session_still_answers(client: &mut Client, text: &str) {
    client.send_text(text).await;
    let received = client.until_event("bidi_response_complete", LIMIT).await;
    assert!(
        events(&received)
            .iter()
            .any(|v| v["role"] == "user" && v["text"] == text),
        "healthy session lost its turn: {:?}",
        event_types(&received)
    );
}

async fn expect_close(client: &mut Client, code: u16, close_reason: &str) -> Vec<Received> {
    let (items, frame) = client.until_closed(LIMIT).await;
    let (got_code, reason) = frame.expect("close frame");
    assert_eq!(
        got_code,
        code,
        "close reason {reason:?}, events {:?}",
        event_types(&items)
    );
    let close_event = events(&items)
        .into_iter()
        .find(|v| v["type"] == "bidi_connection_close")
        .cloned();
    let close_event = close_event.unwrap_or_else(|| panic!("no bidi_connection_close in {:?}", event_types(&items)));
    assert_eq!(close_event["reason"], close_reason);
    items
}

#[tokio::test]
async fn handshakes_over_capacity_get_503_with_retry_after() {
    let agent = AgentProcess::start(&["--max-sessions", "1"]);
    let mut first = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    first.until_event("bidi_connection_start", LIMIT).await;

    let refused = tokio_tungstenite::connect_async(agent.ws_url(""))
        .await
        .expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP refusal, got {refused}");
    };
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    wait_metric(
        &agent,
        "voice_agent_handshake_rejections_total{reason=\"capacity\"}",
        1.0,
    )
    .await;

    // Capacity comes back once the session ends: at once when the client closed it (the agent
    // has nothing to wait for then; it used to hold the connection and the place a second).
    let closing = tokio::time::Instant::now();
    first.close().await;
    let mut again = None;
    for _ in 0..10 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(agent.ws_url("")).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "capacity was not released");
    let took = closing.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "the close and the release took {took:?}"
    );
}

#[tokio::test]
async fn plain_http_get_on_ws_is_refused() {
    let agent = AgentProcess::start(&[]);
    let (status, _) = get(&agent.url("/ws")).await;
    assert!((400..500).contains(&status), "status {status}");
}

#[tokio::test]
async fn unknown_audio_output_mode_is_refused() {
    let agent = AgentProcess::start(&[]);
    let refused = tokio_tungstenite::connect_async(agent.ws_url("?audio_output=mp3"))
        .await
        .expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP refusal");
    };
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn the_protocol_is_chosen_at_the_handshake_and_an_unknown_one_is_refused() {
    let agent = AgentProcess::start(&[]);
    let refused = tokio_tungstenite::connect_async(agent.ws_url("?protocol=carrier-pigeon"))
        .await
        .expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP refusal");
    };
    assert_eq!(response.status().as_u16(), 400);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
    assert!(
        body.contains("carrier-pigeon") && body.contains("strands-1.40"),
        "the refusal names what /ws serves: {body}"
    );

    let mut client = Client::connect(&agent.ws_url("?protocol=strands-1.40"), Encoding::Json).await;
    let start = client.until_event("bidi_connection_start", LIMIT).await;
    assert!(!start.is_empty());
    client.close().await;
}

#[tokio::test]
async fn unknown_events_and_bad_fields_get_errors_and_the_session_goes_on() {
    let agent = AgentProcess::start(&[]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    let cases = [
        (json!({"type": "bidi_dance"}), "unknown_event"),
        (json!({"type": "bidi_text_input"}), "invalid_event"),
        (json!({"type": "bidi_audio_input", "audio": 42}), "invalid_event"),
        (
            json!({"type": "bidi_audio_input", "audio": "AAAA", "sample_rate": 8000}),
            "unsupported_sample_rate",
        ),
        (json!({"kind": "no type"}), "invalid_event"),
        (json!([1, 2, 3]), "invalid_event"),
    ];
    for (event, code) in cases {
        client.send_json(event.clone()).await;
        let received = client.until_event("bidi_error", LIMIT).await;
        let error = events(&received).last().copied().cloned().expect("error");
        assert_eq!(error["code"], code, "for {event}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    healthy_session_still_answers(&mut client, "still here").await;
}

#[tokio::test]
async fn invalid_json_closes_with_1007_while_others_carry_on() {
    let agent = AgentProcess::start(&[]);
    let mut healthy = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    healthy.until_event("bidi_connection_start", LIMIT).await;
    let mut bad = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    bad.send_raw(Message::Text("{\"type\": \"bidi_text_input\", ".into()))
        .await;
    expect_close(&mut bad, 1007, "invalid_payload").await;
    healthy_session_still_answers(&mut healthy, "after invalid json").await;
    wait_metric(
        &agent,
        "voice_agent_sessions_ended_total{reason=\"invalid_payload\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn invalid_base64_closes_with_1007() {
    let agent = AgentProcess::start(&[]);
    let mut bad = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    bad.send_json(json!({"type": "bidi_audio_input", "audio": "!!!not base64!!!"}))
        .await;
    expect_close(&mut bad, 1007, "invalid_payload").await;
}

#[tokio::test]
async fn odd_length_binary_audio_closes_with_1007() {
    let agent = AgentProcess::start(&[]);
    let mut bad = Client::connect(&agent.ws_url(""), Encoding::Binary).await;
    bad.send_raw(Message::Binary(vec![1u8, 2, 3].into())).await;
    expect_close(&mut bad, 1007, "invalid_payload").await;
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let agent = AgentProcess::start(&[]);
    let mut bad = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    bad.until_event("bidi_connection_start", LIMIT).await;
    // A text frame whose payload is not UTF-8 cannot be built through the typed API; send the
    // raw frame bytes instead.
    bad.send_raw(Message::Frame(
        tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
            vec![0xff, 0xfe, 0xfd],
            tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
                tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
            ),
            true,
        ),
    ))
    .await;
    let (_, frame) = bad.until_closed(LIMIT).await;
    assert_eq!(frame.map(|f| f.0), Some(1007));
}

#[tokio::test]
async fn oversize_message_closes_with_1009_while_others_carry_on() {
    let agent = AgentProcess::start(&["--max-message-bytes", "65536"]);
    let mut healthy = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    healthy.until_event("bidi_connection_start", LIMIT).await;
    let mut bad = Client::connect(&agent.ws_url(""), Encoding::Binary).await;
    bad.until_event("bidi_connection_start", LIMIT).await;
    bad.send_raw(Message::Binary(vec![0u8; 200_000].into())).await;
    let (_, frame) = bad.until_closed(LIMIT).await;
    assert_eq!(frame.map(|f| f.0), Some(1009));
    healthy_session_still_answers(&mut healthy, "after the flood").await;
    wait_metric(
        &agent,
        "voice_agent_sessions_ended_total{reason=\"message_too_big\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn idle_sessions_are_closed_with_a_reason() {
    let agent = AgentProcess::start(&["--idle-timeout", "1s"]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let started = tokio::time::Instant::now();
    expect_close(&mut client, 1000, "idle_timeout").await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    wait_metric(&agent, "voice_agent_sessions_ended_total{reason=\"idle_timeout\"}", 1.0).await;
}

#[tokio::test]
async fn audio_keeps_a_session_from_idling() {
    let agent = AgentProcess::start(&["--idle-timeout", "1s"]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Binary).await;
    let mut received = Vec::new();
    client.stream_audio(&silence(2500), &mut received).await;
    assert!(
        client.closed.is_none(),
        "closed while audio was flowing: {:?}",
        event_types(&received)
    );
    expect_close(&mut client, 1000, "idle_timeout").await;
}

#[tokio::test]
async fn sessions_end_at_the_maximum_duration() {
    let agent = AgentProcess::start(&["--max-session-duration", "2s"]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Binary).await;
    let mut received = Vec::new();
    client.stream_audio(&silence(1000), &mut received).await;
    let (items, frame) = client.until_closed(LIMIT).await;
    assert_eq!(frame.map(|f| f.0), Some(1000));
    assert!(
        events(&items)
            .iter()
            .any(|v| v["type"] == "bidi_connection_close" && v["reason"] == "max_duration")
    );
}
