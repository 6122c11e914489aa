//! Voice conversations with the real agent over real WebSockets, using the Simulated model.

mod support;

use std::time::Duration;

use support::*;

const TURN_LIMIT: Duration = Duration::from_secs(20);

fn spoken_turn() -> Vec<u8> {
    [silence(200), speech("Hello there, can you hear me?"), silence(800)].concat()
}

async fn full_turn(encoding: Encoding) {
    let agent = AgentProcess::start(&[]);
    let query = if encoding == Encoding::Binary {
        "?audio_output=binary"
    } else {
        ""
    };
    let mut client = Client::connect(&agent.ws_url(query), encoding).await;

    let start = client.until_event("bidi_connection_start", TURN_LIMIT).await;
    let start = events(&start)[0].clone();
    assert!(start["connection_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(start["model"], "simulated");
    assert_eq!(start["input_sample_rate"], 16000);
    assert_eq!(start["output_sample_rate"], 24000);

    let mut received = Vec::new();
    client.stream_audio(&spoken_turn(), &mut received).await;
    // Keep the microphone open (silence) while the reply plays, like a real client.
    let mut tail = Vec::new();
    while !event_types(&received).contains(&"bidi_response_complete".to_owned()) {
        client.stream_audio(&silence(320), &mut tail).await;
        received.append(&mut tail);
        assert!(received.len() < 10_000, "no end of response");
    }

    let kinds = event_types(&received);
    let position = |kind: &str| {
        kinds
            .iter()
            .position(|k| k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    let transcripts: Vec<_> = events(&received)
        .into_iter()
        .filter(|v| v["type"] == "bidi_transcript_stream")
        .cloned()
        .collect();
    let user = &transcripts[0];
    assert_eq!(user["role"], "user");
    assert_eq!(user["is_final"], true);
    assert!(
        user["text"].as_str().is_some_and(|t| t.contains("seconds of speech")),
        "{user}"
    );
    let speculative = transcripts
        .iter()
        .find(|t| t["role"] == "assistant" && t["is_final"] == false)
        .expect("speculative transcript");
    let final_ = transcripts
        .iter()
        .find(|t| t["role"] == "assistant" && t["is_final"] == true)
        .expect("final transcript");
    assert_eq!(speculative["text"], final_["text"]);
    assert!(position("bidi_response_start") < position("bidi_response_complete"));
    let complete = events(&received)
        .into_iter()
        .find(|v| v["type"] == "bidi_response_complete")
        .expect("complete");
    assert_eq!(complete["stop_reason"], "complete");
    let usage = events(&received)
        .into_iter()
        .find(|v| v["type"] == "bidi_usage")
        .cloned();
    let usage = match usage {
        Some(usage) => usage,
        None => events(&client.until_event("bidi_usage", TURN_LIMIT).await)
            .last()
            .copied()
            .cloned()
            .expect("usage"),
    };
    assert!(usage["totalTokens"].as_u64().is_some_and(|t| t > 0), "{usage}");

    let audio = audio_bytes(&received);
    assert!(
        audio.len() >= 24_000 * 2,
        "at least a second of 24 kHz reply audio, got {} bytes",
        audio.len()
    );
    assert!(rms(&audio) > 500.0, "reply audio is audible");
    match encoding {
        Encoding::Binary => {
            assert!(received.iter().any(|r| matches!(r, Received::Audio(_))));
            assert!(
                !kinds.contains(&"bidi_audio_stream".to_owned()),
                "binary mode sends no JSON audio"
            );
        }
        Encoding::Json => {
            assert!(!received.iter().any(|r| matches!(r, Received::Audio(_))));
            let chunk = events(&received)
                .into_iter()
                .find(|v| v["type"] == "bidi_audio_stream")
                .expect("audio event");
            assert_eq!(chunk["sample_rate"], 24000);
            assert_eq!(chunk["format"], "pcm");
            assert_eq!(chunk["channels"], 1);
        }
    }
    client.close().await;

    // The session's end is logged with its token totals, recorded once on its span.
    let ended = tokio::time::timeout(TURN_LIMIT, async {
        loop {
            let found = agent.logs().iter().find_map(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .filter(|v| v["message"] == "session ended")
            });
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a `session ended` log line");
    let output_tokens = ended["output_tokens"].as_u64().unwrap_or_default();
    assert!(output_tokens > 0, "{ended}");
    assert_eq!(
        ended["span"]["gen_ai.usage.output_tokens"].as_u64(),
        Some(output_tokens),
        "{ended}"
    );
    assert_eq!(
        ended["span"]["gen_ai.usage.input_tokens"], ended["input_tokens"],
        "{ended}"
    );
}

#[tokio::test]
async fn full_spoken_turn_in_json_mode() {
    full_turn(Encoding::Json).await;
}

#[tokio::test]
async fn full_spoken_turn_in_binary_mode() {
    full_turn(Encoding::Binary).await;
}

#[tokio::test]
async fn speaking_over_the_reply_interrupts_it() {
    let agent = AgentProcess::start(&[]);
    let mut client = Client::connect(&agent.ws_url("?audio_output=binary"), Encoding::Binary).await;
    let mut received = Vec::new();
    client.stream_audio(&spoken_turn(), &mut received).await;
    // Wait for the reply audio to start, keeping the microphone open.
    while !received.iter().any(|r| matches!(r, Received::Audio(_))) {
        client.stream_audio(&silence(64), &mut received).await;
        assert!(received.len() < 5_000, "reply never started");
    }
    let before = received.len();
    client.stream_audio(&speech("Wait, stop!"), &mut received).await;
    client.stream_audio(&silence(300), &mut received).await;

    let after = &received[before..];
    let kinds = event_types(after);
    let interruption = kinds
        .iter()
        .position(|k| k == "bidi_interruption")
        .unwrap_or_else(|| panic!("no interruption in {kinds:?}"));
    let interrupted = events(after)
        .into_iter()
        .find(|v| v["type"] == "bidi_response_complete")
        .expect("response completes");
    assert_eq!(interrupted["stop_reason"], "interrupted");
    assert_eq!(events(after)[interruption]["reason"], "user_speech");

    // After the interruption, no audio of the interrupted reply is delivered.
    let index_of_interruption = after
        .iter()
        .position(|r| matches!(r, Received::Event(v) if v["type"] == "bidi_interruption"))
        .expect("interruption item");
    let next_response = after[index_of_interruption..]
        .iter()
        .position(|r| matches!(r, Received::Event(v) if v["type"] == "bidi_response_start"))
        .map_or(after.len(), |p| p + index_of_interruption);
    let stale_audio = after[index_of_interruption..next_response]
        .iter()
        .filter(|r| matches!(r, Received::Audio(_)))
        .count();
    assert_eq!(stale_audio, 0, "audio after the interruption");
    client.close().await;
    wait_metric(&agent, "voice_agent_interruptions_total", 1.0).await;
}

#[tokio::test]
async fn text_input_gets_a_spoken_reply() {
    let agent = AgentProcess::start(&[]);
    let mut client = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    client.until_event("bidi_connection_start", TURN_LIMIT).await;
    client.send_text("What is the weather like?").await;
    let received = client.until_event("bidi_response_complete", TURN_LIMIT).await;
    let transcripts: Vec<_> = events(&received)
        .into_iter()
        .filter(|v| v["type"] == "bidi_transcript_stream")
        .collect();
    assert_eq!(transcripts[0]["role"], "user");
    assert_eq!(transcripts[0]["text"], "What is the weather like?");
    let reply = transcripts
        .iter()
        .find(|t| t["role"] == "assistant" && t["is_final"] == true)
        .expect("final reply");
    assert!(
        reply["text"]
            .as_str()
            .is_some_and(|t| t.contains("What is the weather like?")),
        "{reply}"
    );
    assert!(!audio_bytes(&received).is_empty());
    client.close().await;
}

#[tokio::test]
async fn concurrent_sessions_are_independent() {
    let agent = AgentProcess::start(&[]);
    let mut a = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let mut b = Client::connect(&agent.ws_url(""), Encoding::Json).await;
    let id_a = events(&a.until_event("bidi_connection_start", TURN_LIMIT).await)[0]["connection_id"].clone();
    let id_b = events(&b.until_event("bidi_connection_start", TURN_LIMIT).await)[0]["connection_id"].clone();
    assert_ne!(id_a, id_b);
    a.send_text("first").await;
    b.send_text("second").await;
    let reply_a = a.until_event("bidi_response_complete", TURN_LIMIT).await;
    let reply_b = b.until_event("bidi_response_complete", TURN_LIMIT).await;
    let said = |items: &[Received]| {
        events(items)
            .into_iter()
            .find(|v| v["role"] == "user")
            .map(|v| v["text"].clone())
            .expect("user transcript")
    };
    assert_eq!(said(&reply_a), "first");
    assert_eq!(said(&reply_b), "second");
    wait_metric(&agent, "voice_agent_sessions_active", 2.0).await;
    a.close().await;
    b.close().await;
}
