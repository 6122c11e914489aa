//! The session state machine, driven directly: no sockets, no clock.
use bytes::Bytes;

use super::*;
use crate::model::{Role, TokenUsage};
use crate::protocol::StopReason;

const LIMITS: SessionLimits = SessionLimits {
    idle_timeout: Duration::from_secs(10),
    max_duration: Duration::from_secs(60),
    first_message_timeout: Duration::from_secs(5),
    max_audio_rate: 1.5,
    audio_burst: Duration::from_secs(2),
};

fn start(now: Instant) -> (Session, Vec<Action>) {
    let mut actions = Vec::new();
    let mut session = Session::new("s1".into(), (16000, 24000), Arc::new(LIMITS), now);
    session.on_model_connected("simulated", Default::default(), None, &mut actions);
    (session, actions)
}

fn sent_events(actions: &[Action]) -> Vec<&SessionEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Outbound::Event(e)) => Some(e.as_ref()),
            _ => None,
        })
        .collect()
}

fn close_code(actions: &[Action]) -> Option<u16> {
    actions.iter().find_map(|a| match a {
        Action::Send(Outbound::Close { code, .. }) => Some(*code),
        _ => None,
    })
}

#[test]
fn announces_itself_first() {
    let (_, actions) = start(Instant::now());
    assert!(matches!(sent_events(&actions)[..], [SessionEvent::Started { .. }]));
}

#[test]
fn client_audio_goes_to_the_model_and_resets_idle() {
    let t0 = Instant::now();
    let (mut s, _) = start(t0);
    let mut actions = Vec::new();
    let later = t0 + Duration::from_secs(5);
    s.on_client(
        Ok(ClientMessage::Audio(Bytes::from_static(&[0, 0]))),
        later,
        &mut actions,
    );
    assert!(actions.contains(&Action::Model(ModelInput::Audio(Bytes::from_static(&[0, 0])))));
    assert_eq!(s.deadline(), later + LIMITS.idle_timeout);
}

#[test]
fn empty_audio_is_a_sign_of_life_that_never_reaches_the_model() {
    let t0 = Instant::now();
    let (mut s, _) = start(t0);
    let mut actions = Vec::new();
    let later = t0 + Duration::from_secs(5);
    s.on_client(Ok(ClientMessage::Audio(Bytes::new())), later, &mut actions);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(s.deadline(), later + LIMITS.idle_timeout);
}

#[test]
fn rejected_events_get_an_error_and_the_session_goes_on() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    let err = DecodeError::Rejected {
        code: "unknown_event",
        message: "nope".into(),
    };
    s.on_client(Err(err), Instant::now(), &mut actions);
    assert!(matches!(sent_events(&actions)[..], [SessionEvent::Error { code, .. }] if *code == "unknown_event"));
    assert_eq!(s.ended(), None);
}

#[test]
fn fatal_input_closes_with_its_code_after_announcing() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    let err = DecodeError::Fatal {
        reason: EndReason::InvalidPayload,
        detail: "invalid JSON".into(),
    };
    s.on_client(Err(err), Instant::now(), &mut actions);
    assert!(matches!(
        sent_events(&actions)[..],
        [SessionEvent::Closing {
            reason: EndReason::InvalidPayload,
            ..
        }]
    ));
    assert_eq!(close_code(&actions), Some(1007));
    assert_eq!(actions.last(), Some(&Action::End(EndReason::InvalidPayload)));
    assert_eq!(s.ended(), Some(EndReason::InvalidPayload));
}

#[test]
fn a_silent_client_is_closed_after_the_first_message_timeout() {
    let t0 = Instant::now();
    let (mut s, _) = start(t0);
    let mut actions = Vec::new();
    assert_eq!(s.deadline(), t0 + LIMITS.first_message_timeout);
    s.on_deadline(t0 + LIMITS.first_message_timeout, &mut actions);
    assert!(matches!(
        sent_events(&actions)[..],
        [SessionEvent::Closing {
            reason: EndReason::PolicyViolation,
            ..
        }]
    ));
    assert_eq!(close_code(&actions), Some(1008));
}

#[test]
fn audio_much_faster_than_real_time_is_refused_after_the_burst() {
    let t0 = Instant::now();
    let (mut s, _) = start(t0);
    let mut actions = Vec::new();
    let second = Bytes::from(vec![0u8; 32_000]);
    // Real time is fine indefinitely.
    for i in 0..10 {
        s.on_client(
            Ok(ClientMessage::Audio(second.clone())),
            t0 + Duration::from_secs(i),
            &mut actions,
        );
    }
    assert_eq!(s.ended(), None);
    // A burst beyond 2 s at 1.5x is not.
    let later = t0 + Duration::from_secs(10);
    for _ in 0..4 {
        s.on_client(Ok(ClientMessage::Audio(second.clone())), later, &mut actions);
    }
    assert_eq!(s.ended(), Some(EndReason::PolicyViolation));
    assert_eq!(close_code(&actions), Some(1008));
}

#[test]
fn idle_timeout_closes_normally_with_reason() {
    let t0 = Instant::now();
    let (mut s, _) = start(t0);
    let mut actions = Vec::new();
    s.on_client(Ok(ClientMessage::Text("hi".into())), t0, &mut actions);
    actions.clear();
    s.on_deadline(t0 + Duration::from_secs(9), &mut actions);
    assert!(actions.is_empty());
    s.on_deadline(t0 + LIMITS.idle_timeout, &mut actions);
    assert!(matches!(
        sent_events(&actions)[..],
        [SessionEvent::Closing {
            reason: EndReason::IdleTimeout,
            ..
        }]
    ));
    assert_eq!(close_code(&actions), Some(1000));
}

#[test]
fn max_duration_wins_even_with_activity() {
    let t0 = Instant::now();
    let (mut s, _) = start(t0);
    let mut actions = Vec::new();
    let end = t0 + LIMITS.max_duration;
    s.on_client(
        Ok(ClientMessage::Text("hi".into())),
        end - Duration::from_secs(1),
        &mut actions,
    );
    actions.clear();
    assert_eq!(s.deadline(), end);
    s.on_deadline(end, &mut actions);
    assert!(matches!(
        sent_events(&actions)[..],
        [SessionEvent::Closing {
            reason: EndReason::MaxDuration,
            ..
        }]
    ));
}

#[test]
fn drain_closes_with_1012() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    s.on_drain(&mut actions);
    assert!(matches!(
        sent_events(&actions)[..],
        [SessionEvent::Closing {
            reason: EndReason::Draining,
            ..
        }]
    ));
    assert_eq!(close_code(&actions), Some(1012));
}

#[test]
fn ends_only_once() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    s.on_drain(&mut actions);
    let n = actions.len();
    s.on_deadline(Instant::now() + Duration::from_secs(3600), &mut actions);
    s.on_socket(SocketEnding::Lost, "gone", &mut actions);
    assert_eq!(actions.len(), n);
}

#[test]
fn measures_time_to_first_audio_once_per_turn() {
    let t0 = Instant::now();
    let (mut s, _) = start(t0);
    let mut actions = Vec::new();
    s.on_model(Some(ModelOutput::UserTurnEnd), t0, &mut actions);
    let audio = || Some(ModelOutput::Audio(Bytes::from_static(&[0, 0])));
    s.on_model(audio(), t0 + Duration::from_millis(300), &mut actions);
    s.on_model(audio(), t0 + Duration::from_millis(400), &mut actions);
    let ttfa: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Observe(Observation::TimeToFirstAudio(d)) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(ttfa, vec![Duration::from_millis(300)]);
}

#[test]
fn interruption_bumps_the_audio_epoch() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    s.on_model(
        Some(ModelOutput::Audio(Bytes::from_static(&[1, 0]))),
        Instant::now(),
        &mut actions,
    );
    s.on_model(Some(ModelOutput::Interruption), Instant::now(), &mut actions);
    s.on_model(
        Some(ModelOutput::Audio(Bytes::from_static(&[2, 0]))),
        Instant::now(),
        &mut actions,
    );
    let epochs: Vec<u64> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Outbound::Audio { epoch, .. }) => Some(*epoch),
            _ => None,
        })
        .collect();
    assert_eq!(epochs, vec![0, 1]);
    assert!(sent_events(&actions).contains(&&SessionEvent::Interrupted));
}

#[test]
fn model_events_map_to_client_events() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    let now = Instant::now();
    s.on_model(Some(ModelOutput::ResponseStart { id: "r1".into() }), now, &mut actions);
    s.on_model(
        Some(ModelOutput::Transcript {
            role: Role::Assistant,
            text: "Hi".into(),
            is_final: true,
        }),
        now,
        &mut actions,
    );
    s.on_model(
        Some(ModelOutput::ResponseComplete {
            id: "r1".into(),
            stop_reason: StopReason::Complete,
        }),
        now,
        &mut actions,
    );
    s.on_model(
        Some(ModelOutput::Usage(TokenUsage {
            input_speech: 2,
            output_speech: 3,
            ..TokenUsage::default()
        })),
        now,
        &mut actions,
    );
    s.on_model(
        Some(ModelOutput::Restarted {
            reason: "renewal".into(),
            turn_interrupted: false,
        }),
        now,
        &mut actions,
    );
    let events = sent_events(&actions);
    assert_eq!(
        events[0],
        &SessionEvent::ResponseStart {
            response_id: "r1".into()
        }
    );
    assert!(matches!(
        events[1],
        SessionEvent::Transcript {
            role: Role::Assistant,
            is_final: true,
            ..
        }
    ));
    assert!(matches!(
        events[2],
        SessionEvent::ResponseComplete {
            stop_reason: StopReason::Complete,
            ..
        }
    ));
    assert_eq!(
        events[3],
        &SessionEvent::Usage(TokenUsage {
            input_speech: 2,
            output_speech: 3,
            ..TokenUsage::default()
        })
    );
    assert!(matches!(events[4], SessionEvent::Restarted { .. }));
}

#[test]
fn tool_calls_are_requested_and_their_results_go_to_both_sides() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    let input = serde_json::json!({"city": "Oslo"});
    let call = ModelOutput::ToolUse(Box::new(ToolUse {
        id: "t1".into(),
        name: "weather".into(),
        input: input.clone(),
    }));
    s.on_model(Some(call), Instant::now(), &mut actions);
    assert!(matches!(sent_events(&actions)[..], [SessionEvent::ToolUse { .. }]));
    assert!(actions.contains(&Action::CallTool(Box::new(ToolUse {
        id: "t1".into(),
        name: "weather".into(),
        input
    }))));
    actions.clear();
    s.on_tool_result("t1".into(), "weather".into(), false, "{\"c\":3}".into(), &mut actions);
    assert!(matches!(
        sent_events(&actions)[..],
        [SessionEvent::ToolResult { is_error: false, .. }]
    ));
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::Model(ModelInput::ToolResult(result)) if result.id == "t1" && !result.is_error)
        )
    );
}

#[test]
fn fatal_model_errors_close_with_1011() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    let err = ModelOutput::Error(Box::new(ErrorReport {
        code: "throttled",
        message: "busy".into(),
        fatal: true,
    }));
    s.on_model(Some(err), Instant::now(), &mut actions);
    assert!(matches!(sent_events(&actions)[0], SessionEvent::Error { code, .. } if *code == "throttled"));
    assert_eq!(close_code(&actions), Some(1011));
}

#[test]
fn model_stream_ending_closes_with_1011() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    s.on_model(None, Instant::now(), &mut actions);
    assert_eq!(close_code(&actions), Some(1011));
    assert_eq!(s.ended(), Some(EndReason::ModelError));
}

#[test]
fn close_reasons_fit_in_a_control_frame() {
    let long = "é".repeat(200);
    let reason = truncate_reason(&long);
    assert!(reason.len() <= MAX_CLOSE_REASON);
    assert!(reason.chars().all(|c| c == 'é'));
}

#[test]
fn a_model_that_cannot_connect_ends_the_session_with_1011_and_no_start() {
    let mut s = Session::new("s1".into(), (16000, 24000), Arc::new(LIMITS), Instant::now());
    let mut actions = Vec::new();
    s.on_model_connect_failed(&ModelError::Misconfigured("no credentials".into()), &mut actions);
    assert!(matches!(
        sent_events(&actions)[..],
        [
            SessionEvent::Error {
                code: "model_misconfigured",
                ..
            },
            SessionEvent::Closing {
                reason: EndReason::ModelError,
                ..
            }
        ]
    ));
    assert!(actions.contains(&Action::Observe(Observation::ModelError(ModelErrorKind::Connect))));
    assert_eq!(close_code(&actions), Some(1011));
    assert_eq!(s.ended(), Some(EndReason::ModelError));
}

#[test]
fn socket_endings_decide_reason_close_code_and_announcement() {
    let cases = [
        (SocketEnding::Closed, EndReason::ClientClosed, Some(1000), false),
        (SocketEnding::Lost, EndReason::ClientGone, None, false),
        (SocketEnding::TooBig, EndReason::MessageTooBig, Some(1009), true),
        (SocketEnding::InvalidText, EndReason::InvalidPayload, Some(1007), true),
        (
            SocketEnding::ProtocolViolation,
            EndReason::ProtocolError,
            Some(1002),
            true,
        ),
        (SocketEnding::WriteStalled, EndReason::SlowConsumer, None, false),
    ];
    for (ending, reason, code, announced) in cases {
        let (mut s, _) = start(Instant::now());
        let mut actions = Vec::new();
        s.on_socket(ending, "detail", &mut actions);
        assert_eq!(s.ended(), Some(reason), "{ending:?}");
        assert_eq!(close_code(&actions), code, "{ending:?}");
        let closing = sent_events(&actions)
            .iter()
            .any(|e| matches!(e, SessionEvent::Closing { .. }));
        assert_eq!(closing, announced, "{ending:?}");
    }
}

#[test]
fn large_model_output_reaches_the_client_in_bounded_pieces() {
    let (mut s, _) = start(Instant::now());
    let mut actions = Vec::new();
    let pcm = Bytes::from(vec![1u8; 3 * MAX_AUDIO_CHUNK_BYTES + 10]);
    s.on_model(Some(ModelOutput::Audio(pcm.clone())), Instant::now(), &mut actions);
    let chunks: Vec<&Bytes> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Outbound::Audio { pcm, .. }) => Some(pcm),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 4);
    assert!(
        chunks
            .iter()
            .all(|c| c.len() <= MAX_AUDIO_CHUNK_BYTES && c.len() % 2 == 0)
    );
    assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), pcm.len(), "nothing lost");

    actions.clear();
    // Multi-byte characters straddle the cut: pieces end on character boundaries.
    let text = "é".repeat(MAX_EVENT_TEXT_BYTES);
    let transcript = ModelOutput::Transcript {
        role: Role::Assistant,
        text: text.clone(),
        is_final: true,
    };
    s.on_model(Some(transcript), Instant::now(), &mut actions);
    let pieces: Vec<&str> = sent_events(&actions)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Transcript { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(pieces.len(), 2);
    assert!(pieces.iter().all(|p| p.len() <= MAX_EVENT_TEXT_BYTES));
    assert_eq!(pieces.concat(), text);

    actions.clear();
    let long = "x".repeat(MAX_EVENT_TEXT_BYTES * 3);
    s.on_tool_result("t1".into(), "search".into(), false, long.clone(), &mut actions);
    let shown = sent_events(&actions)
        .into_iter()
        .find_map(|e| match e {
            SessionEvent::ToolResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .expect("shown to the client");
    assert!(shown.len() <= MAX_EVENT_TEXT_BYTES + TRUNCATED.len() && shown.ends_with(TRUNCATED));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Model(ModelInput::ToolResult(r)) if r.content == long)),
        "the model gets the whole result"
    );
}

fn heard_reports(actions: &[Action]) -> Vec<f32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Model(ModelInput::ReplyHeard(f)) => Some(*f),
            _ => None,
        })
        .collect()
}

#[test]
fn an_interruption_tells_the_model_how_much_of_the_reply_the_caller_heard() {
    let now = Instant::now();
    let (mut s, _) = start(now);
    let mut actions = Vec::new();
    let heard = |reply, ms| {
        Ok(ClientMessage::Heard {
            reply,
            audio: Duration::from_millis(ms),
        })
    };
    s.on_model(Some(ModelOutput::ResponseStart { id: "r1".into() }), now, &mut actions);
    // One second of reply audio at 24 kHz; the caller heard the first quarter.
    s.on_model(
        Some(ModelOutput::Audio(Bytes::from(vec![0u8; 48_000]))),
        now,
        &mut actions,
    );
    s.on_client(heard(1, 100), now, &mut actions);
    s.on_client(heard(1, 250), now, &mut actions);
    s.on_client(heard(7, 900), now, &mut actions); // not this reply's mark
    s.on_model(Some(ModelOutput::Interruption), now, &mut actions);
    // Marks a `clear` echoes back say nothing about what was heard.
    s.on_client(heard(1, 1000), now, &mut actions);
    s.on_model(Some(ModelOutput::Interruption), now, &mut actions);
    assert_eq!(heard_reports(&actions), [0.25]);
    assert!(!actions.iter().any(|a| matches!(a, Action::End(_))));

    // Without marks (a WebSocket client), an interruption reports nothing.
    actions.clear();
    s.on_model(Some(ModelOutput::ResponseStart { id: "r2".into() }), now, &mut actions);
    s.on_model(
        Some(ModelOutput::Audio(Bytes::from(vec![0u8; 4_800]))),
        now,
        &mut actions,
    );
    s.on_model(Some(ModelOutput::Interruption), now, &mut actions);
    assert_eq!(heard_reports(&actions), [] as [f32; 0]);
}
