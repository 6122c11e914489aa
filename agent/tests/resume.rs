//! Resumable conversations on real processes: the agent (NovaSonic provider against the
//! Bedrock-wire fake, which records the history each new stream is given), a real
//! `redis-server` as the shared store, real WebSocket clients.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(30);

struct Agent {
    process: AgentProcess,
    _dir: tempfile::TempDir,
}

/// An agent on `fake` with `extra` YAML (its resume settings), and whatever flags.
fn agent(fake: &FakeBedrock, extra: impl Fn(&std::path::Path) -> String, flags: &[&str]) -> Agent {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fake.agent_config(dir.path(), "");
    let yaml = std::fs::read_to_string(&config).expect("config") + &extra(dir.path());
    std::fs::write(&config, yaml).expect("write config");
    let args: Vec<&str> = ["--config", config.as_str()]
        .into_iter()
        .chain(flags.iter().copied())
        .collect();
    Agent {
        process: AgentProcess::start_with_env(&args, AWS_ENV),
        _dir: dir,
    }
}

/// Opens a session; its `bidi_connection_start`.
async fn open(agent: &AgentProcess, query: &str) -> (Client, Value) {
    let mut client = Client::connect(&agent.ws_url(query), Encoding::Json).await;
    let start = client.until_event("bidi_connection_start", LIMIT).await;
    let event = events(&start)[0].clone();
    (client, event)
}

/// A typed turn, through to the end of the reply.
async fn typed_turn(client: &mut Client, text: &str) -> Vec<Received> {
    client.send_text(text).await;
    client.until_event("bidi_response_complete", LIMIT).await
}

/// Waits until the history the fake's newest stream was given includes each of `expected`.
/// The client hears that its session started when the agent has sent the history; the fake may
/// still be reading it then, so this waits up to `LIMIT` before it fails.
async fn replayed(fake: &FakeBedrock, expected: &[&str]) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let streams = fake.streams().await;
        let history = texts(
            streams.last().expect("a stream")["history"]
                .as_array()
                .map_or(&[][..], Vec::as_slice),
        );
        if expected.iter().all(|text| history.contains(text)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the newest stream's history lacks one of {expected:?}: {history}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn texts(history: &[Value]) -> String {
    history
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[tokio::test]
async fn a_dropped_connection_resumes_on_the_same_agent_with_its_history() {
    let fake = FakeBedrock::start(&[]);
    let a = agent(&fake, |_| String::new(), &[]);
    let (mut client, start) = open(&a.process, "").await;
    assert_eq!(start["resumed"], false);
    assert_eq!(start["resume_anywhere"], false, "the in-process store");
    assert_eq!(start["resume_window_s"], 120);
    let token = start["resume_token"].as_str().expect("a resume token").to_owned();
    assert_eq!(token.len(), 43, "256 bits, base64url");
    typed_turn(&mut client, "My order number is 4711.").await;
    drop(client); // the connection drops: no close frame

    let (mut again, start) = open(&a.process, &format!("?resume={token}")).await;
    assert_eq!(start["resumed"], true);
    let next = start["resume_token"].as_str().expect("a fresh token").to_owned();
    assert_ne!(next, token, "every session gets its own token");
    replayed(&fake, &["My order number is 4711."]).await;
    typed_turn(&mut again, "And when will it arrive?").await;
    again.close().await;

    // A token works once.
    let (status, body) = refused(&a.process.ws_url(&format!("?resume={token}"))).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "resume_refused");
    // The second session's token carries the whole conversation on.
    let (third, _) = open(&a.process, &format!("?resume={next}")).await;
    replayed(&fake, &["4711", "when will it arrive"]).await;
    third.close().await;
    wait_metric(&a.process, "voice_agent_resumptions_total{outcome=\"resumed\"}", 2.0).await;
    wait_metric(&a.process, "voice_agent_resumptions_total{outcome=\"expired\"}", 1.0).await;
    assert!(
        a.process
            .logs()
            .iter()
            .all(|l| !l.contains(&token) && !l.contains(&next)),
        "tokens never reach the logs"
    );
}

#[tokio::test]
async fn a_reconnect_before_the_old_connection_is_gone_takes_the_conversation_over() {
    let fake = FakeBedrock::start(&[]);
    let a = agent(&fake, |_| String::new(), &[]);
    let (mut old, start) = open(&a.process, "").await;
    let token = start["resume_token"].as_str().expect("a resume token").to_owned();
    typed_turn(&mut old, "My order number is 4711.").await;
    // The client has moved on (a new network, a new tab) while the old connection is still open:
    // no waiting for the turn's background save.
    let (mut new, start) = open(&a.process, &format!("?resume={token}")).await;
    assert_eq!(start["resumed"], true);
    replayed(&fake, &["My order number is 4711."]).await;

    // The old connection is told, and closed normally: its client must not resume again.
    let (received, close) = old.until_closed(LIMIT).await;
    let closing: Vec<&Value> = events(&received)
        .into_iter()
        .filter(|e| e["type"] == "bidi_connection_close")
        .collect();
    assert_eq!(closing.len(), 1, "{:?}", event_types(&received));
    assert_eq!(closing[0]["reason"], "resumed_elsewhere");
    assert!(closing[0].get("resume_token").is_none_or(Value::is_null), "{closing:?}");
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, 1000);
    assert_eq!(reason, "the conversation was resumed on another connection");
    wait_metric(
        &a.process,
        "voice_agent_sessions_ended_total{reason=\"resumed_elsewhere\"}",
        1.0,
    )
    .await;

    // The new connection has the conversation.
    typed_turn(&mut new, "And when will it arrive?").await;
    new.close().await;
}

#[tokio::test]
async fn a_drop_right_after_a_turn_resumes_with_that_turn() {
    let fake = FakeBedrock::start(&[]);
    let a = agent(&fake, |_| String::new(), &[]);
    let (mut client, start) = open(&a.process, "").await;
    let mut token = start["resume_token"].as_str().expect("a resume token").to_owned();
    // Each round drops the connection the moment its reply ends and reconnects at once: the
    // resumption races the turn's background save and the session's last one.
    for round in 0..5 {
        let said = format!("Remember the number {round}{round}{round}.");
        typed_turn(&mut client, &said).await;
        drop(client);
        let (again, start) = open(&a.process, &format!("?resume={token}")).await;
        assert_eq!(start["resumed"], true, "round {round}");
        replayed(&fake, &[&said]).await;
        token = start["resume_token"].as_str().expect("a fresh token").to_owned();
        client = again;
    }
    client.close().await;
    wait_metric(&a.process, "voice_agent_resumptions_total{outcome=\"resumed\"}", 5.0).await;
}

#[tokio::test]
async fn a_conversation_resumes_on_another_agent_after_the_first_is_killed() {
    let fake = FakeBedrock::start(&[]);
    let redis = RedisServer::start(false);
    let mut first = agent(&fake, |dir| redis.agent_yaml(dir, "2m"), &[]);
    let second = agent(&fake, |dir| redis.agent_yaml(dir, "2m"), &[]);
    let (mut client, start) = open(&first.process, "").await;
    assert_eq!(start["resume_anywhere"], true, "a shared store");
    let token = start["resume_token"].as_str().expect("token").to_owned();
    typed_turn(&mut client, "Please book a table for four at eight.").await;
    // Saved after the turn, in the background: give the write a moment.
    let saved = Instant::now() + LIMIT;
    while !redis
        .cli(&["--scan", "--pattern", "test:resume:*"])
        .contains("test:resume:")
    {
        assert!(Instant::now() < saved, "the conversation was never saved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first agent dies mid-conversation, as with kill -9.
    first.process.signal("KILL");
    first.process.wait_exit(LIMIT).await;
    drop(client);

    let (mut resumed, start) = open(&second.process, &format!("?resume={token}")).await;
    assert_eq!(start["resumed"], true);
    replayed(&fake, &["book a table for four"]).await;
    typed_turn(&mut resumed, "Make it five.").await;
    resumed.close().await;

    // At rest: keys are hashes, values are ciphertext.
    let keys = redis.cli(&["--scan", "--pattern", "test:resume:*"]);
    assert!(!keys.contains(&token), "the store never holds a usable token");
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let value = redis.cli(&["GET", key]);
        assert!(
            !value.contains("table") && !value.contains("five") && !value.contains("history"),
            "plaintext in Redis: {value:.200}"
        );
    }
}

#[tokio::test]
async fn a_drained_session_hands_its_conversation_to_another_replica() {
    let fake = FakeBedrock::start(&[]);
    let redis = RedisServer::start(true);
    let mut first = agent(&fake, |dir| redis.agent_yaml(dir, "2m"), &["--drain-timeout", "1s"]);
    let second = agent(&fake, |dir| redis.agent_yaml(dir, "2m"), &[]);
    let (mut client, _) = open(&first.process, "").await;
    typed_turn(&mut client, "Remember the word pineapple.").await;
    first.process.signal("TERM");
    let (items, close) = client.until_closed(LIMIT).await;
    assert_eq!(close.map(|(code, _)| code), Some(1012));
    let closing = events(&items)
        .into_iter()
        .find(|e| e["type"] == "bidi_connection_close")
        .cloned()
        .expect("bidi_connection_close");
    assert_eq!(closing["reason"], "draining");
    let token = closing["resume_token"]
        .as_str()
        .expect("the close hands over a token")
        .to_owned();
    // The token works at once on another replica (TLS to Redis, which saved before the close).
    let (resumed, start) = open(&second.process, &format!("?resume={token}")).await;
    assert_eq!(start["resumed"], true);
    replayed(&fake, &["pineapple"]).await;
    resumed.close().await;
    first.process.wait_exit(LIMIT).await;
}

#[tokio::test]
async fn tokens_of_others_forged_and_expired_tokens_are_refused() {
    let fake = FakeBedrock::start(&[]);
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "alpha-secret\nbeta-secret\n").expect("tokens");
    let tokens = tokens.to_string_lossy().into_owned();
    let a = agent(
        &fake,
        |_| "session:\n  resume: {window: 1s}\n".into(),
        &[
            "--auth-mode",
            "token",
            "--auth-token-file",
            &tokens,
            "--allow-query-token",
        ],
    );
    let open_as = |who: &'static str, query: String| {
        let url = a.process.ws_url(&format!(
            "{query}{}token={who}-secret",
            if query.is_empty() { "?" } else { "&" }
        ));
        async move { Client::connect(&url, Encoding::Json).await }
    };
    let mut alpha = open_as("alpha", String::new()).await;
    let start = alpha.until_event("bidi_connection_start", LIMIT).await;
    let token = events(&start)[0]["resume_token"].as_str().expect("token").to_owned();
    alpha.close().await;

    // Another caller's token: refused, and spent.
    let url = a.process.ws_url(&format!("?resume={token}&token=beta-secret"));
    let (status, body) = refused(&url).await;
    assert_eq!(status, 403, "{body}");
    // Without credentials: refused before the token is looked at.
    let (status, _) = refused(&a.process.ws_url(&format!("?resume={token}"))).await;
    assert_eq!(status, 401);
    // A forged token and a malformed one.
    for forged in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "nope"] {
        let (status, _) = refused(&a.process.ws_url(&format!("?resume={forged}&token=alpha-secret"))).await;
        assert_eq!(status, 410, "{forged}");
    }
    // Past the window.
    let mut alpha = open_as("alpha", String::new()).await;
    let start = alpha.until_event("bidi_connection_start", LIMIT).await;
    let token = events(&start)[0]["resume_token"].as_str().expect("token").to_owned();
    alpha.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = refused(&a.process.ws_url(&format!("?resume={token}&token=alpha-secret"))).await;
    assert_eq!(status, 410, "expired");
    wait_metric(&a.process, "voice_agent_resumptions_total{outcome=\"foreign\"}", 1.0).await;
    wait_metric(&a.process, "voice_agent_resumptions_total{outcome=\"expired\"}", 3.0).await;
    wait_metric(
        &a.process,
        "voice_agent_handshake_rejections_total{reason=\"resume_refused\"}",
        4.0,
    )
    .await;
}

#[tokio::test]
async fn calls_go_on_while_redis_is_down_and_resumption_comes_back_with_it() {
    let fake = FakeBedrock::start(&[]);
    let mut redis = RedisServer::start(false);
    let a = agent(&fake, |dir| redis.agent_yaml(dir, "2m"), &[]);
    let (mut client, start) = open(&a.process, "").await;
    let token = start["resume_token"].as_str().expect("token").to_owned();
    redis.stop();
    // The call is not affected: turns go on, saves fail and are counted.
    typed_turn(&mut client, "Is anyone there?").await;
    typed_turn(&mut client, "Still there?").await;
    let failures = Instant::now() + LIMIT;
    while metric(&a.process, "voice_agent_resume_store_failures_total{op=\"save\"}").await < 1.0 {
        assert!(Instant::now() < failures, "failed saves are counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(&a.process.url("/readyz")).await.0,
        200,
        "readiness does not depend on Redis"
    );
    drop(client);
    let (status, body) = refused(&a.process.ws_url(&format!("?resume={token}"))).await;
    assert_eq!(status, 503, "{body}");
    wait_metric(
        &a.process,
        "voice_agent_resumptions_total{outcome=\"unavailable\"}",
        1.0,
    )
    .await;

    // Redis is back: new conversations are saved and resumed again.
    redis.restart();
    let (mut client, start) = open(&a.process, "").await;
    let token = start["resume_token"].as_str().expect("token").to_owned();
    typed_turn(&mut client, "Back again.").await;
    drop(client);
    // The old session's last save may still be on its way: a 410 meanwhile is retried.
    let deadline = Instant::now() + LIMIT;
    let ws = loop {
        match tokio_tungstenite::connect_async(a.process.ws_url(&format!("?resume={token}"))).await {
            Ok((ws, _)) => break ws,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "no resumption after Redis came back: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let mut resumed = Client::from_stream(ws, Encoding::Json);
    let start = resumed.until_event("bidi_connection_start", LIMIT).await;
    assert_eq!(events(&start)[0]["resumed"], true);
    replayed(&fake, &["Back again."]).await;
    resumed.close().await;
}
