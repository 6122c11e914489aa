use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::protocol::{ClientMessage, EndReason, Frame, JsonLimits, StopReason};

fn codec(query: &[(&str, &str)]) -> Codec {
    let query: HashMap<String, String> = query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    open(&Handshake {
        query: &query,
        json: JsonLimits::default(),
        output_sample_rate: 24_000,
    })
    .expect("opens")
}

/// What the client reads for a run of session events and audio chunks.
enum Step {
    Event(SessionEvent),
    Audio(&'static [u8]),
}

fn encode(encoder: &mut dyn Encode, steps: Vec<Step>) -> Vec<Value> {
    let mut frames = Vec::new();
    for step in steps {
        match step {
            Step::Event(event) => encoder.event(event, &mut frames),
            Step::Audio(pcm) => encoder.audio(Bytes::from_static(pcm), &mut frames),
        }
    }
    frames
        .iter()
        .map(|frame| match frame {
            Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
            Message::Binary(pcm) => json!({"binary": pcm.len()}),
            other => panic!("unexpected frame {other:?}"),
        })
        .collect()
}

fn types(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| match (v["type"].as_str(), v["role"].as_str()) {
            (Some(kind), Some(role)) => format!("{kind}:{role}"),
            (Some(kind), None) => kind.to_owned(),
            (None, _) => "binary".to_owned(),
        })
        .collect()
}

fn transcript(role: Role, text: &str, is_final: bool) -> Step {
    Step::Event(SessionEvent::Transcript {
        role,
        text: text.into(),
        is_final,
    })
}

fn response(start: bool) -> Step {
    Step::Event(if start {
        SessionEvent::ResponseStart {
            response_id: "response-1".into(),
        }
    } else {
        SessionEvent::ResponseComplete {
            response_id: "response-1".into(),
            stop_reason: StopReason::Complete,
        }
    })
}

/// A spoken turn in the order the session reports it for Nova.
fn spoken_turn() -> Vec<Step> {
    vec![
        transcript(Role::User, "what time", true),
        transcript(Role::User, "is it", true),
        response(true),
        transcript(Role::Assistant, "It is noon.", false),
        Step::Audio(&[1, 0]),
        Step::Audio(&[2, 0]),
        transcript(Role::Assistant, "It is noon.", true),
        response(false),
    ]
}

#[test]
fn a_spoken_turn_comes_at_strands_moments() {
    let mut encoder = codec(&[]).encoder;
    let values = encode(encoder.as_mut(), spoken_turn());
    assert_eq!(
        types(&values),
        [
            "bidi_response_start",
            "bidi_transcript_start:user",
            "bidi_transcript_delta:user",
            "bidi_transcript_delta:user",
            "bidi_transcript_stop:user",
            "bidi_transcript_block:user",
            "bidi_transcript_start:assistant",
            "bidi_transcript_delta:assistant",
            "bidi_audio_start",
            "bidi_audio_delta",
            "bidi_audio_delta",
            "bidi_audio_stop",
            "bidi_transcript_stop:assistant",
            "bidi_transcript_block:assistant",
            "bidi_response_stop",
        ]
    );
    // Ids tie each bracket together; the block holds the whole transcript, words kept apart.
    assert_eq!(values[0]["response_id"], values[14]["response_id"]);
    assert_eq!(values[1]["content_id"], values[5]["content_id"]);
    assert_eq!(values[3]["delta"], " is it");
    assert_eq!(values[5]["transcript"], "what time is it");
    assert_eq!(values[8]["content_id"], values[9]["content_id"]);
    assert_eq!(values[9]["content_id"], values[11]["content_id"]);
    assert_eq!(values[13]["transcript"], "It is noon.");
    assert_eq!(values[9]["sample_rate"], 24000);
}

#[test]
fn a_response_without_content_of_this_schema_is_not_sent() {
    let mut encoder = codec(&[]).encoder;
    let values = encode(
        encoder.as_mut(),
        vec![
            response(true),
            transcript(Role::Assistant, "(what was said)", true),
            response(false),
        ],
    );
    assert_eq!(values, Vec::<Value>::new());
}

#[test]
fn each_turn_gets_new_ids() {
    let mut encoder = codec(&[]).encoder;
    let first = encode(encoder.as_mut(), spoken_turn());
    let second = encode(encoder.as_mut(), spoken_turn());
    for (a, b) in first.iter().zip(&second) {
        for key in ["response_id", "content_id"] {
            if !a[key].is_null() {
                assert_ne!(a[key], b[key], "{a} and {b}");
            }
        }
    }
}

#[test]
fn a_barge_in_closes_the_reply_before_the_next_turn() {
    let mut encoder = codec(&[]).encoder;
    let mut steps = spoken_turn();
    steps.truncate(5);
    steps.extend([
        Step::Event(SessionEvent::Interrupted),
        transcript(Role::Assistant, "It", true),
        Step::Event(SessionEvent::ResponseComplete {
            response_id: "response-1".into(),
            stop_reason: StopReason::Interrupted,
        }),
        transcript(Role::User, "stop", true),
    ]);
    let values = encode(encoder.as_mut(), steps);
    assert_eq!(
        types(&values)[10..],
        [
            "bidi_barge_in",
            "bidi_audio_stop",
            "bidi_transcript_stop:assistant",
            "bidi_transcript_block:assistant",
            "bidi_response_stop",
            "bidi_response_start",
            "bidi_transcript_start:user",
            "bidi_transcript_delta:user",
        ]
    );
}

#[test]
fn a_tool_call_closes_the_user_transcript_and_stays_in_the_response() {
    let mut encoder = codec(&[]).encoder;
    let steps = vec![
        transcript(Role::User, "weather in Paris", true),
        response(true),
        Step::Event(SessionEvent::ToolUse {
            id: "t1".into(),
            name: "get_weather".into(),
            input: json!({"city": "Paris"}),
        }),
        Step::Event(SessionEvent::ToolResult {
            id: "t1".into(),
            name: "get_weather".into(),
            is_error: false,
            content: "{}".into(),
        }),
        transcript(Role::Assistant, "Sunny.", false),
        response(false),
    ];
    let values = encode(encoder.as_mut(), steps);
    assert_eq!(
        types(&values),
        [
            "bidi_response_start",
            "bidi_transcript_start:user",
            "bidi_transcript_delta:user",
            "bidi_transcript_stop:user",
            "bidi_transcript_block:user",
            "bidi_tool_use_blocks",
            "tool_result",
            "bidi_transcript_start:assistant",
            "bidi_transcript_delta:assistant",
            "bidi_transcript_stop:assistant",
            "bidi_transcript_block:assistant",
            "bidi_response_stop",
        ]
    );
    assert_eq!(
        values[5]["tool_uses"],
        json!([{"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}])
    );
}

#[test]
fn usage_is_per_report_by_modality() {
    let mut encoder = codec(&[]).encoder;
    let usage = TokenUsage {
        input_speech: 10,
        input_text: 2,
        output_speech: 30,
        output_text: 5,
    };
    for _ in 0..2 {
        let values = encode(encoder.as_mut(), vec![Step::Event(SessionEvent::Usage(usage))]);
        assert_eq!(
            values,
            [
                json!({"type": "bidi_usage", "input_tokens": 12, "output_tokens": 35, "total_tokens": 47,
                    "input_token_details": {"audio": 10, "text": 2},
                    "output_token_details": {"audio": 30, "text": 5}})
            ]
        );
    }
}

#[test]
fn restarts_are_warned_and_named_as_strands_names_them() {
    let mut encoder = codec(&[]).encoder;
    let values = encode(
        encoder.as_mut(),
        vec![
            Step::Event(SessionEvent::RestartWarning {
                time_left: Duration::from_secs(10),
            }),
            Step::Event(SessionEvent::Restarted {
                reason: "proactive".into(),
                turn_interrupted: false,
            }),
            Step::Event(SessionEvent::Restarted {
                reason: "model_timeout".into(),
                turn_interrupted: true,
            }),
        ],
    );
    assert_eq!(
        values,
        [
            json!({"type": "bidi_connection_warning", "time_left_s": 10.0}),
            json!({"type": "bidi_connection_restart", "reason": "scheduled", "timeout_error": null,
                   "turn_interrupted": false}),
            json!({"type": "bidi_connection_restart", "reason": "timeout", "timeout_error": "model_timeout",
                   "turn_interrupted": true}),
        ]
    );
}

#[test]
fn a_restart_mid_reply_closes_the_reply_first() {
    let mut encoder = codec(&[]).encoder;
    let mut steps = spoken_turn();
    steps.truncate(5);
    steps.push(Step::Event(SessionEvent::Restarted {
        reason: "error".into(),
        turn_interrupted: true,
    }));
    let values = encode(encoder.as_mut(), steps);
    assert_eq!(
        types(&values)[10..],
        [
            "bidi_audio_stop",
            "bidi_transcript_stop:assistant",
            "bidi_transcript_block:assistant",
            "bidi_response_stop",
            "bidi_connection_restart",
        ]
    );
}

#[test]
fn lifecycle_events_carry_the_connection_id() {
    let mut encoder = codec(&[("audio_output", "binary")]).encoder;
    let values = encode(
        encoder.as_mut(),
        vec![
            Step::Event(SessionEvent::Started {
                session_id: "c1".into(),
                model: "amazon.nova-2-5-sonic".into(),
                input_sample_rate: 16_000,
                output_sample_rate: 24_000,
                settings: Default::default(),
                resume: None,
            }),
            Step::Audio(&[1, 0, 2, 0]),
            Step::Event(SessionEvent::error("model_busy", "dropped")),
            Step::Event(SessionEvent::Closing {
                session_id: "c1".into(),
                reason: EndReason::IdleTimeout,
                resume_token: None,
            }),
        ],
    );
    assert_eq!(
        values[0],
        json!({"type": "bidi_connection_start", "connection_id": "c1", "model": "amazon.nova-2-5-sonic",
               "input_sample_rate": 16000, "output_sample_rate": 24000, "audio_output": "binary"})
    );
    assert_eq!(
        types(&values)[1..],
        [
            "bidi_response_start",
            "bidi_audio_start",
            "binary",
            "bidi_error",
            "bidi_connection_stop"
        ]
    );
    assert_eq!(values[3], json!({"binary": 4}));
    assert_eq!(
        values[5],
        json!({"type": "bidi_connection_stop", "connection_id": "c1", "reason": "idle_timeout"})
    );
}

#[test]
fn input_is_the_same_as_strands_1_40() {
    let mut decoder = codec(&[]).decoder;
    assert_eq!(
        decoder.decode(Frame::Text(r#"{"type":"bidi_text_input","text":"hi"}"#)),
        Ok(ClientMessage::Text("hi".into()))
    );
    let pcm = Bytes::from_static(&[0, 1]);
    assert_eq!(
        decoder.decode(Frame::Binary(&pcm)),
        Ok(ClientMessage::Audio(pcm.clone()))
    );
}
