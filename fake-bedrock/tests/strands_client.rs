//! The fake against a Bedrock client we did not write: Strands 1.62's `BedrockNovaSonicModel`
//! (inside its `BidiAgent`), through the Python AWS SDK over TLS and HTTP/2, holds a spoken turn,
//! a typed turn, a tool call and a barge-in with the fake, then stops cleanly
//! (`tests/strands/bidi_conversation.py`). It fails if the fake's events or its checks drift
//! from what the real Python SDK and Strands send and accept.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use voice_agent::model::simulated::Utterance;

/// How long the whole conversation may take (it lasts about 30 s in real time).
const CONVERSATION_LIMIT: Duration = Duration::from_secs(240);

struct Fake {
    child: Child,
    endpoint: String,
    ca_file: String,
    _dir: tempfile::TempDir,
}

impl Fake {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-bedrock"))
            .args(["--listen", "127.0.0.1:0", "--ca-file"])
            .arg(&ca_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fake-bedrock");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the fake announces itself");
        let announced: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("fake said {line:?}"));
        Self {
            child,
            endpoint: announced["endpoint"].as_str().expect("endpoint").to_owned(),
            ca_file: announced["ca_file"].as_str().expect("ca_file").to_owned(),
            _dir: dir,
        }
    }

    async fn streams(&self) -> Vec<Value> {
        let ca = std::fs::read(&self.ca_file).expect("read CA");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
            .build()
            .expect("HTTP client");
        client
            .get(format!("{}/_fake/streams", self.endpoint))
            .send()
            .await
            .expect("GET streams")
            .json()
            .await
            .expect("streams JSON")
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 16 kHz PCM16LE speech-like audio for `words` (the simulator's voice), then 0.9 s of silence.
fn turn(words: &str) -> Vec<u8> {
    let voice = Utterance::from_text(words, 16_000);
    let mut pcm = Vec::new();
    voice.render(0, voice.len(), &mut pcm);
    pcm.resize(pcm.len() + 900 * 32, 0);
    pcm
}

#[tokio::test]
async fn strands_holds_a_conversation_with_the_fake_and_stops_cleanly() {
    let python = std::env::var("VOICE_AGENTS_STRANDS_PYTHON").unwrap_or_else(|_| {
        panic!(
            "VOICE_AGENTS_STRANDS_PYTHON is not set: run the tests with `make test` (or `make test-deps` and export it)"
        )
    });
    let fake = Fake::start();
    let audio = tempfile::tempdir().expect("temp dir");
    for (name, words) in [
        ("spoken", "Hello, what can you do for me?"),
        ("long", "Tell me a long story please."),
        ("barge", "Stop, stop!"),
    ] {
        std::fs::write(audio.path().join(format!("{name}.pcm")), turn(words)).expect("write audio");
    }
    let peer = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/strands/bidi_conversation.py");
    let child = tokio::process::Command::new(python)
        .arg(peer)
        .args(["--endpoint", &fake.endpoint, "--audio-dir"])
        .arg(audio.path())
        .env("AWS_ACCESS_KEY_ID", "AKIDSTRANDSTEST")
        .env("AWS_SECRET_ACCESS_KEY", "strands-test-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SSL_CERT_FILE", &fake.ca_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Strands peer");
    let output = tokio::time::timeout(CONVERSATION_LIMIT, child.wait_with_output())
        .await
        .expect("the conversation ends in time")
        .expect("Strands peer output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().last() == Some(r#"{"done": true}"#),
        "Strands could not hold the conversation ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    // Strands read every kind of output the fake sends: transcripts (contentStart's
    // generationStage), audio, the tool use, the barge-in (stopReason INTERRUPTED) and usage
    // (usageEvent.details.delta, which Strands reads unconditionally).
    assert_eq!(count("bidi_response_stop"), 5, "{events:?}");
    assert_eq!(count("bidi_tool_use_blocks"), 1);
    assert_eq!(count("bidi_barge_in"), 1);
    assert!(count("bidi_audio_delta") > 0 && count("bidi_usage") >= 5);

    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        let streams = fake.streams().await;
        assert_eq!(streams.len(), 1, "one stream: {streams:?}");
        if !streams[0]["ended"].is_null() || Instant::now() > deadline {
            break streams[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // What Strands sent passed the fake's checks (system prompt first, one interactive audio
    // content, tool result for the fake's toolUseId) and ended the way Strands ends: promptEnd,
    // then its `connectionEnd`.
    assert_eq!(stream["ended"], "client_closed", "{stream}");
    assert_eq!(stream["model_id"], "amazon.nova-2-5-sonic");
    assert_eq!(stream["signed"], true);
    assert_eq!(stream["system_prompt"], "You are the test agent.");
    assert_eq!(stream["text_inputs"].as_array().map(Vec::len), Some(2), "{stream}");
    assert_eq!(stream["tool_results"].as_array().map(Vec::len), Some(1), "{stream}");
    assert_eq!(stream["events"]["promptEnd"], 1);
    assert_eq!(stream["events"]["connectionEnd"], 1);
    // Not checked: `response_completed`. Strands closes its side without waiting for the end
    // of the response, so whether it reads it depends on timing.
}
