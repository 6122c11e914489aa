//! `?protocol=strands-1.62` against Strands 1.62 itself. One Bedrock fake serves two clients
//! holding the same scripted conversation (a spoken turn, a typed turn, a tool call, a barge-in,
//! a clean stop): Strands' own `BidiAgent` with `BedrockNovaSonicModel` (the real
//! `strands-agents` package, `tests/strands/bidi_conversation.py`), and a WebSocket client of
//! the agent, whose NovaSonic provider talks to the same fake. The agent's events must come as
//! Strands' do, moment by moment: the same types in the same order, each with at least Strands'
//! keys, with values of the same JSON types, and the same transcripts.
//!
//! The Strands run also proves the fake against a Bedrock client we did not write: Strands and
//! the Python AWS SDK hold the whole conversation and end it cleanly (`connectionEnd`).

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio::time::Instant;

const STEP_LIMIT: Duration = Duration::from_secs(60);
const STRANDS_LIMIT: Duration = Duration::from_secs(240);
const TYPED_TURN: &str = "What are your opening hours?";
const TOOL_TURN: &str = r#"tool:get_weather {"city": "Paris"}"#;

/// The audio of the script, as files for the Python side and bytes for this one.
struct Script {
    spoken: Vec<u8>,
    long: Vec<u8>,
    barge: Vec<u8>,
    dir: tempfile::TempDir,
}

impl Script {
    fn new() -> Self {
        let turn = |words: &str| [speech(words), silence(900)].concat();
        let script = Self {
            spoken: turn("Hello, what can you do for me?"),
            long: turn("Tell me a long story please."),
            barge: turn("Stop, stop!"),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for (name, pcm) in [
            ("spoken", &script.spoken),
            ("long", &script.long),
            ("barge", &script.barge),
        ] {
            std::fs::write(script.dir.path().join(format!("{name}.pcm")), pcm).expect("write audio");
        }
        script
    }
}

/// A microphone: queued audio first, silence otherwise, in real time.
struct Microphone {
    pending: Vec<u8>,
}

impl Microphone {
    /// Streams until `done` holds for what was received.
    async fn until(
        &mut self,
        client: &mut Client,
        received: &mut Vec<Received>,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = Instant::now() + STEP_LIMIT;
        while !done(received) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {:?}",
                event_types(received)
            );
            let take = self.pending.len().min(FRAME_BYTES * 5);
            let mut chunk: Vec<u8> = self.pending.drain(..take).collect();
            chunk.resize(FRAME_BYTES * 5, 0);
            client.stream_audio(&chunk, received).await;
        }
    }
}

fn count(received: &[Received], kind: &str) -> usize {
    event_types(received).iter().filter(|k| *k == kind).count()
}

/// The script, played against the agent; mirrors `bidi_conversation.py`.
async fn agent_conversation(agent: &AgentProcess, script: &Script) -> Vec<Value> {
    let mut client = Client::connect(&agent.ws_url("?protocol=strands-1.62"), Encoding::Json).await;
    let mut received = client.until_event("bidi_connection_start", STEP_LIMIT).await;
    let mut mic = Microphone {
        pending: script.spoken.clone(),
    };
    let stops = |n: usize| move |r: &[Received]| count(r, "bidi_response_stop") >= n;
    mic.until(&mut client, &mut received, "the reply to the spoken turn", stops(1))
        .await;
    client.send_text(TYPED_TURN).await;
    mic.until(&mut client, &mut received, "the reply to the typed turn", stops(2))
        .await;
    client.send_text(TOOL_TURN).await;
    mic.until(&mut client, &mut received, "the reply after the tool call", stops(3))
        .await;
    mic.pending.extend_from_slice(&script.long);
    let audio_before = count(&received, "bidi_audio_delta");
    mic.until(&mut client, &mut received, "reply audio to barge in on", |r| {
        count(r, "bidi_response_start") >= 4 && count(r, "bidi_audio_delta") > audio_before
    })
    .await;
    mic.pending.extend_from_slice(&script.barge);
    mic.until(&mut client, &mut received, "the reply after the barge-in", stops(5))
        .await;
    client.stream_audio(&silence(1000), &mut received).await;
    client.close().await;
    events(&received)
        .into_iter()
        .map(|event| {
            let mut event = event.clone();
            if let Some(audio) = event.get_mut("audio") {
                *audio = json!(audio.as_str().map_or(0, |a| a.len() / 4 * 3));
            }
            event
        })
        .collect()
}

/// The script, played by Strands 1.62 against the fake: the events it yielded.
async fn strands_conversation(fake: &FakeBedrock, script: &Script) -> Vec<Value> {
    let python = std::env::var("VOICE_AGENTS_STRANDS_PYTHON").unwrap_or_else(|_| {
        panic!(
            "VOICE_AGENTS_STRANDS_PYTHON is not set: run the tests with `make test` (or `make test-deps` and export it)"
        )
    });
    let peer = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/strands/bidi_conversation.py");
    let child = tokio::process::Command::new(python)
        .arg(peer)
        .args(["--endpoint", &fake.endpoint, "--audio-dir"])
        .arg(script.dir.path())
        .envs(AWS_ENV.iter().copied())
        .env("SSL_CERT_FILE", &fake.ca_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Strands peer");
    let output = tokio::time::timeout(STRANDS_LIMIT, child.wait_with_output())
        .await
        .expect("the Strands conversation ends in time")
        .expect("Strands peer output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().last() == Some(r#"{"done": true}"#),
        "the Strands conversation failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .filter(|event| event["type"].is_string())
        .collect()
}

/// The moments of a conversation: each event's type (and role, for transcripts), with runs of
/// audio deltas as one moment (their count follows the chunking, not the schema).
fn moments(events: &[Value]) -> Vec<(String, &Value)> {
    let mut moments: Vec<(String, &Value)> = Vec::new();
    for event in events {
        let kind = event["type"].as_str().unwrap_or_default();
        let moment = match event["role"].as_str() {
            Some(role) => format!("{kind}:{role}"),
            None => kind.to_owned(),
        };
        if kind == "bidi_audio_delta" && moments.last().is_some_and(|(last, _)| *last == moment) {
            continue;
        }
        moments.push((moment, event));
    }
    moments
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of Strands' event is in ours with a value of the same JSON type, recursively
/// through objects (and the first element of arrays).
fn assert_covers(ours: &Value, strands: &Value, path: &str) {
    match (ours, strands) {
        (Value::Object(ours), Value::Object(strands)) => {
            for (key, value) in strands {
                let Some(mine) = ours.get(key) else {
                    panic!("{path}.{key} is missing; Strands sends {value}");
                };
                assert_covers(mine, value, &format!("{path}.{key}"));
            }
        }
        (Value::Array(ours), Value::Array(strands)) => {
            if let (Some(mine), Some(theirs)) = (ours.first(), strands.first()) {
                assert_covers(mine, theirs, &format!("{path}[0]"));
            }
        }
        // Strands leaves `timeout_error` null on a scheduled restart.
        (_, Value::Null) => {}
        _ => assert_eq!(
            json_type(ours),
            json_type(strands),
            "{path}: ours {ours}, Strands' {strands}"
        ),
    }
}

#[tokio::test]
async fn the_agent_speaks_strands_1_62_as_strands_does_for_the_same_conversation() {
    let script = Script::new();
    let fake = FakeBedrock::start(&[]);
    let mcp = McpServer::start(false);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = fake.agent_config(dir.path(), &format!("gateway:\n  url: {}\n", mcp.url));
    let agent = AgentProcess::start_with_env(&["--config", &config], AWS_ENV);
    wait_ready(&agent).await;

    let (ours, strands) = tokio::join!(
        agent_conversation(&agent, &script),
        strands_conversation(&fake, &script)
    );

    let ours_moments = moments(&ours);
    let strands_moments = moments(&strands);
    let names = |m: &[(String, &Value)]| m.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&ours_moments),
        names(&strands_moments),
        "the agent's moments (left) differ from Strands' (right)"
    );
    for ((name, mine), (_, theirs)) in ours_moments.iter().zip(&strands_moments) {
        assert_covers(mine, theirs, name);
        for key in ["format", "sample_rate", "channels", "role", "reason"] {
            assert_eq!(mine.get(key), theirs.get(key), "{name}: {key}");
        }
    }
    // The words: typed turns are the same text on both sides. (Spoken turns are transcribed by
    // their measured length, which varies by a frame with timing; tool replies quote results
    // the two tool runners format differently.)
    let typed = |moments: &[(String, &Value)]| -> Vec<String> {
        moments
            .iter()
            .filter(|(name, _)| name == "bidi_transcript_block:user")
            .filter_map(|(_, e)| e["transcript"].as_str().map(str::to_owned))
            .filter(|t| !t.contains("seconds of speech"))
            .collect()
    };
    assert_eq!(typed(&ours_moments), [TYPED_TURN, TOOL_TURN]);
    assert_eq!(typed(&strands_moments), [TYPED_TURN, TOOL_TURN]);
    let kinds: BTreeSet<&str> = strands_moments.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "bidi_connection_start",
        "bidi_transcript_block:user",
        "bidi_transcript_block:assistant",
        "bidi_audio_delta",
        "bidi_tool_use_blocks",
        "tool_result",
        "bidi_barge_in",
        "bidi_usage",
    ] {
        assert!(
            kinds.contains(expected),
            "the conversation had no {expected}: {kinds:?}"
        );
    }

    // Both streams ran the whole conversation on the fake and ended cleanly: Strands with its
    // `connectionEnd`, the agent with `sessionEnd`.
    let deadline = Instant::now() + Duration::from_secs(10);
    let streams = loop {
        let streams = fake.streams().await;
        if streams.iter().all(|s| !s["ended"].is_null()) || Instant::now() > deadline {
            break streams;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(streams.len(), 2, "{streams:?}");
    for stream in &streams {
        assert_eq!(stream["ended"], "client_closed", "{stream}");
        assert_eq!(stream["tool_results"].as_array().map(Vec::len), Some(1), "{stream}");
        assert_eq!(stream["text_inputs"].as_array().map(Vec::len), Some(2), "{stream}");
    }
    let ends: BTreeSet<&str> = streams
        .iter()
        .flat_map(|s| s["events"].as_object().into_iter().flat_map(|e| e.keys()))
        .map(String::as_str)
        .filter(|name| name.ends_with("End") && name.starts_with(['s', 'c']) && *name != "contentEnd")
        .collect();
    assert_eq!(ends, BTreeSet::from(["connectionEnd", "sessionEnd"]));
}
