//! Graceful shutdown of the real process: SIGTERM with live sessions.

mod support;

use std::time::Duration;

use support::*;
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(20);

async fn refused_status(agent: &AgentProcess) -> (u16, Option<String>) {
    match tokio_tungstenite::connect_async(agent.ws_url("")).await {
        Ok(_) => panic!("handshake accepted while draining"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ),
        Err(other) => panic!("unexpected handshake error {other}"),
    }
}

#[tokio::test]
async fn sigterm_drains_live_sessions_then_closes_them_with_1012() {
    let mut agent = AgentProcess::start(&["--drain-timeout", "6s"]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;

    agent.signal("TERM");
    let signalled = Instant::now();
    // Readiness fails at once and new sessions are refused...
    let deadline = Instant::now() + Duration::from_secs(2);
    while get(&agent.url("/readyz")).await.0 != 503 {
        assert!(Instant::now() < deadline, "/readyz still ready after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused_status(&agent).await, (503, Some("1".to_owned())));
    assert_eq!(get_json(&agent.url("/ping")).await["status"], "HealthyBusy");

    // ...while the live session carries on...
    client.send_text("are you still there?").await;
    let reply = client.until_event("bidi_response_complete", LIMIT).await;
    assert!(
        events(&reply)
            .iter()
            .any(|v| v["role"] == "assistant" && v["is_final"] == true)
    );

    // ...until the drain timeout, when it is told why and closed with 1012.
    let (items, frame) = client.until_closed(LIMIT).await;
    let elapsed = signalled.elapsed();
    assert!(
        elapsed >= Duration::from_millis(5500),
        "closed after {elapsed:?}, before the drain timeout"
    );
    let (code, _) = frame.expect("close frame");
    assert_eq!(code, 1012);
    let close = events(&items)
        .into_iter()
        .find(|v| v["type"] == "bidi_connection_close")
        .cloned()
        .expect("close event");
    assert_eq!(close["reason"], "draining");

    assert_eq!(
        agent.wait_exit(LIMIT).await,
        Some(0),
        "process exits 0 once no session is left"
    );
}

#[tokio::test]
async fn drain_ends_as_soon_as_the_last_session_leaves() {
    let mut agent = AgentProcess::start(&["--drain-timeout", "60s"]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    agent.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        agent.wait_exit(Duration::from_millis(100)).await.is_none(),
        "exited with a live session"
    );
    client.close().await;
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn idle_agent_exits_promptly_on_sigterm() {
    let mut agent = AgentProcess::start(&[]);
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn a_second_signal_closes_sessions_at_once() {
    let mut agent = AgentProcess::start(&["--drain-timeout", "5m"]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    agent.signal("INT");
    tokio::time::sleep(Duration::from_millis(200)).await;
    agent.signal("INT");
    let (_, frame) = client.until_closed(LIMIT).await;
    assert_eq!(frame.map(|f| f.0), Some(1012));
    assert_eq!(agent.wait_exit(LIMIT).await, Some(0));
}
