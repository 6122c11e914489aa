//! The NovaSonic provider through the real AWS SDK against the Bedrock-wire fake: real TLS,
//! HTTP/2, SigV4 and event-stream framing, driven by real WebSocket clients.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fake_bedrock::frame_digest;
use serde_json::{Value, json};
use support::*;
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(30);

struct Setup {
    fake: FakeBedrock,
    agent: AgentProcess,
    _dir: tempfile::TempDir,
}

fn setup(fake_args: &[&str], extra_model: &str) -> Setup {
    setup_with_flags(fake_args, extra_model, &[])
}

fn setup_with_flags(fake_args: &[&str], extra_model: &str, agent_flags: &[&str]) -> Setup {
    let fake = FakeBedrock::start(fake_args);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fake.agent_config(dir.path(), extra_model);
    let args: Vec<&str> = ["--config", config.as_str()]
        .into_iter()
        .chain(agent_flags.iter().copied())
        .collect();
    let agent = AgentProcess::start_with_env(&args, AWS_ENV);
    Setup { fake, agent, _dir: dir }
}

/// Client audio whose 32 ms frames are all different and never all-zero, so the fake can
/// confirm each one arrived: a frame counter in the first sample, and ±1 dither (far below the
/// turn detector's threshold) where the audio is silent.
struct NumberedAudio {
    next: i16,
    sent: Vec<String>,
}

impl NumberedAudio {
    fn new() -> Self {
        Self {
            next: 1,
            sent: Vec::new(),
        }
    }

    fn frames(&mut self, pcm: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(pcm.len());
        for frame in pcm.chunks(FRAME_BYTES) {
            let mut frame = frame.to_vec();
            for (i, sample) in frame.chunks_exact_mut(2).enumerate() {
                if sample == [0, 0] {
                    sample.copy_from_slice(&(if i % 2 == 0 { 1i16 } else { -1 }).to_le_bytes());
                }
            }
            frame[..2].copy_from_slice(&self.next.to_le_bytes());
            self.next = self.next.wrapping_add(1).max(1);
            self.sent.push(frame_digest(&frame));
            out.extend_from_slice(&frame);
        }
        out
    }
}

/// Streams numbered audio in real time until an event of `kind` arrives.
async fn stream_until(client: &mut Client, audio: &mut NumberedAudio, kind: &str, received: &mut Vec<Received>) {
    let deadline = Instant::now() + LIMIT;
    while !event_types(received).iter().any(|k| k == kind) {
        assert!(Instant::now() < deadline, "no {kind}; got {:?}", event_types(received));
        client.stream_audio(&audio.frames(&silence(160)), received).await;
    }
}

fn spoken_turn(audio: &mut NumberedAudio, words: &str) -> Vec<u8> {
    audio.frames(&[speech(words), silence(900)].concat())
}

fn transcripts<'a>(items: &'a [Received], role: &str, is_final: bool) -> Vec<&'a str> {
    events(items)
        .into_iter()
        .filter(|v| v["type"] == "bidi_transcript_stream" && v["role"] == role && v["is_final"] == is_final)
        .filter_map(|v| v["text"].as_str())
        .collect()
}

#[tokio::test]
async fn spoken_turn_through_the_sdk_with_sigv4_over_http2() {
    let s = setup(&[], "");
    let mut client = Client::connect(&s.agent.ws_url("?audio_output=binary"), Encoding::Binary).await;
    let start = client.until_event("bidi_connection_start", LIMIT).await;
    assert_eq!(events(&start)[0]["model"], "amazon.nova-2-5-sonic");

    let mut audio = NumberedAudio::new();
    let mut received = Vec::new();
    client
        .stream_audio(
            &spoken_turn(&mut audio, "Hello, what can you do for me?"),
            &mut received,
        )
        .await;
    stream_until(&mut client, &mut audio, "bidi_response_complete", &mut received).await;

    let user = transcripts(&received, "user", true);
    assert!(
        user.first().is_some_and(|t| t.contains("seconds of speech")),
        "{user:?}"
    );
    assert!(
        !transcripts(&received, "assistant", false).is_empty(),
        "speculative transcript"
    );
    assert!(
        !transcripts(&received, "assistant", true).is_empty(),
        "final transcript"
    );
    let pcm = audio_bytes(&received);
    assert!(pcm.len() > 48_000 && rms(&pcm) > 500.0, "audible reply audio");
    let complete = events(&received)
        .into_iter()
        .find(|v| v["type"] == "bidi_response_complete")
        .cloned();
    assert_eq!(complete.expect("complete")["stop_reason"], "complete");
    client.close().await;

    let streams = s.fake.streams().await;
    assert_eq!(streams.len(), 1);
    let stream = &streams[0];
    assert_eq!(stream["signed"], true);
    assert_eq!(stream["region"], "us-west-2");
    assert_eq!(stream["service"], "bedrock");
    assert_eq!(stream["http_version"], "HTTP/2.0");
    assert_eq!(stream["model_id"], "amazon.nova-2-5-sonic");
    assert_eq!(stream["system_prompt"], "You are the test agent.");
    assert_eq!(stream["events"]["sessionStart"], 1);
    assert_eq!(stream["events"]["promptStart"], 1);
    // The close sequence reached the fake: contentEnd, promptEnd, sessionEnd.
    wait_for(|| async {
        let streams = s.fake.streams().await;
        streams[0]["events"]["sessionEnd"] == 1 && streams[0]["ended"] == "client_closed"
    })
    .await;
}

#[tokio::test]
async fn text_input_reaches_nova_2_and_gets_a_reply() {
    let s = setup(&[], "");
    let mut client = Client::connect(&s.agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    client.send_text("Book a table for two").await;
    let received = client.until_event("bidi_response_complete", LIMIT).await;
    assert!(
        transcripts(&received, "assistant", true)
            .iter()
            .any(|t| t.contains("Book a table for two"))
    );
    assert!(!audio_bytes(&received).is_empty());
    assert_eq!(
        s.fake.streams().await[0]["text_inputs"],
        json!(["Book a table for two"])
    );
}

/// Bedrock-like servers cap the streams one HTTP/2 connection carries, and the SDK would queue
/// every stream beyond the cap on its one connection: the agent opens more connections instead.
#[tokio::test]
async fn sessions_beyond_one_connections_stream_limit_get_connections_of_their_own() {
    const SESSIONS: usize = 5;
    let s = setup(&["--max-concurrent-streams", "2"], "  streamsPerConnection: 2\n");
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        let mut client = Client::connect(&s.agent.ws_url(""), Encoding::Json).await;
        client.until_event("bidi_connection_start", LIMIT).await;
        clients.push(client);
    }
    // All sessions stay open while every one of them talks.
    let turns = clients.iter_mut().enumerate().map(|(i, client)| async move {
        client.send_text(&format!("Caller {i} asks for a table")).await;
        let received = client.until_event("bidi_response_complete", LIMIT).await;
        assert!(
            transcripts(&received, "assistant", true)
                .iter()
                .any(|t| t.contains(&format!("Caller {i}"))),
            "caller {i} got no reply"
        );
    });
    futures::future::join_all(turns).await;

    let streams = s.fake.streams().await;
    assert_eq!(streams.len(), SESSIONS);
    let mut per_connection: HashMap<u64, usize> = HashMap::new();
    for stream in &streams {
        let connection = stream["connection"].as_u64().expect("connection id");
        *per_connection.entry(connection).or_default() += 1;
        assert!(stream["ended"].is_null(), "a stream ended early: {stream}");
    }
    assert_eq!(per_connection.len(), SESSIONS.div_ceil(2), "{per_connection:?}");
    assert!(per_connection.values().all(|n| *n <= 2), "{per_connection:?}");
}

#[tokio::test]
async fn barge_in_interrupts_the_reply_without_leaking_the_marker() {
    let s = setup(&[], "");
    let mut client = Client::connect(&s.agent.ws_url("?audio_output=binary"), Encoding::Binary).await;
    let mut audio = NumberedAudio::new();
    let mut received = Vec::new();
    client
        .stream_audio(&spoken_turn(&mut audio, "Tell me a long story please."), &mut received)
        .await;
    while !received.iter().any(|r| matches!(r, Received::Audio(_))) {
        client.stream_audio(&audio.frames(&silence(64)), &mut received).await;
        assert!(received.len() < 5000, "no reply audio");
    }
    client
        .stream_audio(&audio.frames(&speech("Stop, stop!")), &mut received)
        .await;
    stream_until(&mut client, &mut audio, "bidi_response_complete", &mut received).await;

    assert!(event_types(&received).iter().any(|k| k == "bidi_interruption"));
    let complete = events(&received)
        .into_iter()
        .find(|v| v["type"] == "bidi_response_complete")
        .cloned();
    assert_eq!(complete.expect("complete")["stop_reason"], "interrupted");
    let leaked = events(&received).into_iter().any(|v| {
        v["type"] == "bidi_transcript_stream" && v["text"].as_str().is_some_and(|t| t.contains("interrupted"))
    });
    assert!(!leaked, "the interruption marker was forwarded as text");
}

/// Waits (bounded) until `check` holds.
async fn wait_for<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + LIMIT;
    while !check().await {
        assert!(Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn digests_by_stream(streams: &[Value]) -> Vec<Vec<String>> {
    streams
        .iter()
        .map(|s| {
            s["audio_frames"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        })
        .collect()
}

/// A conversation across a stream replacement: turn one, the restart, turn two.
async fn converse_across_a_restart(s: &Setup, restart_reason: &str) -> (NumberedAudio, Vec<Received>) {
    let mut client = Client::connect(&s.agent.ws_url("?audio_output=binary"), Encoding::Binary).await;
    let mut audio = NumberedAudio::new();
    let mut received = Vec::new();
    client
        .stream_audio(
            &spoken_turn(&mut audio, "My name is Ada and I like tea."),
            &mut received,
        )
        .await;
    stream_until(&mut client, &mut audio, "bidi_response_complete", &mut received).await;
    stream_until(&mut client, &mut audio, "bidi_connection_restart", &mut received).await;
    let restart = events(&received)
        .into_iter()
        .find(|v| v["type"] == "bidi_connection_restart")
        .cloned();
    assert_eq!(restart.expect("restart")["reason"], restart_reason);

    let before = received.len();
    client
        .stream_audio(&spoken_turn(&mut audio, "What did I just tell you?"), &mut received)
        .await;
    let mut tail = received.split_off(before);
    stream_until(&mut client, &mut audio, "bidi_response_complete", &mut tail).await;
    assert!(
        !transcripts(&tail, "assistant", true).is_empty(),
        "the conversation continues after the restart"
    );
    assert!(!audio_bytes(&tail).is_empty());
    received.extend(tail);
    client.close().await;
    (audio, received)
}

#[tokio::test]
async fn an_expired_stream_is_replaced_with_history_and_no_audio_is_lost() {
    let s = setup(&["--max-stream-age", "12s"], "");
    let (audio, received) = converse_across_a_restart(&s, "model_timeout").await;
    assert_eq!(
        event_types(&received)
            .iter()
            .filter(|k| *k == "bidi_connection_close")
            .count(),
        0
    );

    let streams = s.fake.streams().await;
    assert!(streams.len() >= 2, "{streams:?}");
    assert!(
        streams[0]["ended"]
            .as_str()
            .is_some_and(|e| e.starts_with("modelTimeoutException"))
    );
    let history = streams[1]["history"].as_array().expect("history");
    assert_eq!(
        history.first().map(|h| h["role"].clone()),
        Some(json!("USER")),
        "history starts with the user"
    );
    assert!(
        history.iter().any(|h| h["role"] == "ASSISTANT"),
        "assistant turn replayed: {history:?}"
    );

    let seen: HashSet<String> = digests_by_stream(&streams).into_iter().flatten().collect();
    let missing: Vec<usize> = (0..audio.sent.len())
        .filter(|i| !seen.contains(&audio.sent[*i]))
        .collect();
    let dropped = metric(&s.agent, "voice_agent_audio_frames_dropped_total{direction=\"in\"}").await;
    assert!(
        missing.is_empty(),
        "frames {missing:?} of {} never reached a stream (agent dropped {dropped}); streams: {:?}",
        audio.sent.len(),
        streams
            .iter()
            .map(|s| (s["audio_frames"].as_array().map(Vec::len), s["ended"].clone()))
            .collect::<Vec<_>>()
    );
    wait_metric(
        &s.agent,
        "voice_agent_model_stream_renewals_total{reason=\"model_timeout\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn streams_are_renewed_between_turns_before_the_limit_and_every_frame_arrives_once() {
    let s = setup(&["--max-stream-age", "60s"], "  renewAfter: 10s\n");
    let (audio, _) = converse_across_a_restart(&s, "proactive").await;

    let streams = s.fake.streams().await;
    assert!(streams.len() >= 2);
    assert_eq!(
        streams[0]["ended"], "client_closed",
        "the old stream was closed cleanly"
    );
    assert!(!streams[1]["history"].as_array().expect("history").is_empty());
    let mut counts: HashMap<String, usize> = HashMap::new();
    for digest in digests_by_stream(&streams).into_iter().flatten() {
        *counts.entry(digest).or_default() += 1;
    }
    for digest in &audio.sent {
        assert_eq!(
            counts.get(digest),
            Some(&1),
            "a client frame reached Bedrock {:?} times",
            counts.get(digest)
        );
    }
    wait_metric(
        &s.agent,
        "voice_agent_model_stream_renewals_total{reason=\"proactive\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(&s.agent, "voice_agent_audio_frames_dropped_total{direction=\"in\"}").await,
        0.0
    );
}

#[tokio::test]
async fn silence_keeps_a_text_only_session_alive() {
    let s = setup(&["--input-timeout", "2s"], "");
    let mut client = Client::connect(&s.agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    client.send_text("first").await;
    client.until_event("bidi_response_complete", LIMIT).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    client.send_text("second").await;
    let received = client.until_event("bidi_response_complete", LIMIT).await;
    assert!(!event_types(&received).contains(&"bidi_connection_restart".to_owned()));
    let streams = s.fake.streams().await;
    assert_eq!(streams.len(), 1, "no stream had to be replaced");
    assert!(
        streams[0]["events"]["audioInput"].as_u64() > Some(100),
        "silence was streamed"
    );
}

async fn refused_session(s: &Setup) -> (Vec<Received>, Option<(u16, String)>) {
    let mut client = Client::connect(&s.agent.ws_url(""), Encoding::Json).await;
    client.until_closed(LIMIT).await
}

#[tokio::test]
async fn access_denied_tells_the_operator_what_to_fix() {
    let s = setup(&[], "");
    s.fake.inject(json!({"fault": "access_denied"})).await;
    let (items, frame) = refused_session(&s).await;
    let error = events(&items)
        .into_iter()
        .find(|v| v["type"] == "bidi_error")
        .cloned()
        .expect("bidi_error");
    assert_eq!(error["code"], "model_misconfigured");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("bedrock:InvokeModel") && message.contains("us-west-2"),
        "{message}"
    );
    assert_eq!(frame.map(|f| f.0), Some(1011));
    assert_eq!(s.fake.streams().await.len(), 0, "no retry for a permissions error");
    wait_metric(&s.agent, "voice_agent_model_errors_total{kind=\"access_denied\"}", 1.0).await;
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let s = setup(&[], "");
    s.fake.inject(json!({"fault": "throttling", "count": 2})).await;
    let mut client = Client::connect(&s.agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    client.send_text("hello after throttling").await;
    client.until_event("bidi_response_complete", LIMIT).await;
    wait_metric(&s.agent, "voice_agent_model_errors_total{kind=\"throttled\"}", 2.0).await;
}

#[tokio::test]
async fn persistent_throttling_ends_with_a_clear_error() {
    let s = setup(&[], "");
    s.fake.inject(json!({"fault": "throttling", "count": 20})).await;
    let (items, frame) = refused_session(&s).await;
    let error = events(&items)
        .into_iter()
        .find(|v| v["type"] == "bidi_error")
        .cloned()
        .expect("bidi_error");
    assert_eq!(error["code"], "model_unavailable");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("throttling")),
        "{error}"
    );
    assert_eq!(frame.map(|f| f.0), Some(1011));
}

#[tokio::test]
async fn a_mid_stream_service_error_is_recovered() {
    let s = setup(&[], "");
    s.fake.inject(json!({"fault": "internal", "after_ms": 1500})).await;
    let mut client = Client::connect(&s.agent.ws_url(""), Encoding::Json).await;
    let restart = client.until_event("bidi_connection_restart", LIMIT).await;
    assert_eq!(
        events(&restart).last().map(|v| v["reason"].clone()),
        Some(json!("error"))
    );
    client.send_text("still there?").await;
    client.until_event("bidi_response_complete", LIMIT).await;
}

#[tokio::test]
async fn a_mid_stream_rejection_ends_the_session_with_1011() {
    let s = setup(&[], "");
    s.fake.inject(json!({"fault": "validation", "after_ms": 1000})).await;
    let mut client = Client::connect(&s.agent.ws_url(""), Encoding::Json).await;
    let (items, frame) = client.until_closed(LIMIT).await;
    let error = events(&items)
        .into_iter()
        .find(|v| v["type"] == "bidi_error")
        .cloned()
        .expect("bidi_error");
    assert_eq!(error["code"], "model_rejected_request");
    assert_eq!(frame.map(|f| f.0), Some(1011));
}

#[tokio::test]
async fn without_aws_credentials_the_agent_is_not_ready() {
    let fake = FakeBedrock::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fake.agent_config(dir.path(), "");
    let no_credentials = [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
    ];
    let agent = AgentProcess::start_with_env(&["--config", &config], &no_credentials);
    let deadline = Instant::now() + LIMIT;
    loop {
        let (status, body) = get(&agent.url("/readyz")).await;
        if body.contains("credentials") {
            assert_eq!(status, 503);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never reported the missing credentials: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let with_credentials = AgentProcess::start_with_env(&["--config", &config], AWS_ENV);
    wait_ready(&with_credentials).await;
}

/// Drain means done: the process exits only once every Bedrock stream it opened is closed the
/// way Nova documents (contentEnd, promptEnd, sessionEnd, the end of the input) and Bedrock has
/// ended its side. The fake takes a second to end a stream after its input ends, and keeps its
/// record after the agent is gone: a stream the agent left open reads `client_disconnected`,
/// and one it did not wait for has no `response_completed`.
#[tokio::test]
async fn sigterm_closes_model_streams_cleanly_before_the_process_exits() {
    let mut s = setup_with_flags(&["--close-delay", "1s"], "", &["--drain-timeout", "1s"]);
    let mut client = Client::connect(&s.agent.ws_url("?audio_output=binary"), Encoding::Binary).await;
    client.until_event("bidi_connection_start", LIMIT).await;
    let mut audio = NumberedAudio::new();
    let mut received = Vec::new();
    client
        .stream_audio(&spoken_turn(&mut audio, "Are you still there?"), &mut received)
        .await;
    assert_eq!(s.fake.streams().await[0]["ended"], Value::Null, "the stream is open");

    s.agent.signal("TERM");
    let (_, frame) = client.until_closed(LIMIT).await;
    assert_eq!(frame.map(|f| f.0), Some(1012), "closed by the drain");
    // Answer the close at once, so nothing but the model streams holds the process.
    client.close().await;
    assert_eq!(s.agent.wait_exit(LIMIT).await, Some(0));

    let streams = s.fake.streams().await;
    assert!(!streams.is_empty());
    for stream in &streams {
        assert_eq!(stream["ended"], "client_closed", "{stream}");
        assert_eq!(stream["events"]["promptEnd"], 1, "{stream}");
        assert_eq!(stream["events"]["sessionEnd"], 1, "{stream}");
        assert_eq!(stream["response_completed"], true, "{stream}");
    }
}

#[tokio::test]
async fn a_prompt_to_invocations_is_answered_through_novas_text_input() {
    let s = setup(&[], "");
    wait_ready(&s.agent).await;
    let response = reqwest::Client::new()
        .post(s.agent.url("/invocations"))
        .json(&json!({"prompt": "What are your opening hours?"}))
        .send()
        .await
        .expect("POST /invocations");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(LIMIT, response.text())
        .await
        .expect("the reply ends")
        .expect("body");
    let events: Vec<(&str, Value)> = body
        .split("\n\n")
        .filter_map(|block| {
            let kind = block.lines().find_map(|l| l.strip_prefix("event:"))?.trim();
            let data = block.lines().find_map(|l| l.strip_prefix("data:"))?.trim();
            Some((kind, serde_json::from_str(data).expect("JSON data")))
        })
        .collect();
    let (kind, done) = events.last().expect("events");
    assert_eq!(*kind, "done", "{body}");
    assert!(
        done["text"]
            .as_str()
            .is_some_and(|t| t.contains("What are your opening hours?")),
        "{done}"
    );
    assert!(
        done["usage"]["input_tokens"].as_u64() > Some(0),
        "usage from Nova's usageEvent: {done}"
    );

    let streams = s.fake.streams().await;
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["text_inputs"], json!(["What are your opening hours?"]));
    assert_eq!(streams[0]["system_prompt"], "You are the test agent.");
    // The stream is closed the documented way once the reply is done.
    wait_for(|| async { s.fake.streams().await[0]["ended"] == "client_closed" }).await;
}
