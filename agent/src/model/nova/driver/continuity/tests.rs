//! Clock-free specifications of the machine: every instant is the session's start plus an
//! offset, every stream is imaginary, and the assertions are on the actions it returns.

use super::*;
use crate::model::ModelErrorKind;

const RENEW_AFTER: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A 32 ms frame that is quiet to the turn detector and tells its number in its first sample.
fn frame(id: u16) -> Bytes {
    let mut pcm = vec![0u8; SILENCE_BYTES];
    pcm[..2].copy_from_slice(&id.to_le_bytes());
    Bytes::from(pcm)
}

/// A 32 ms frame loud enough to be speech.
fn loud() -> Bytes {
    Bytes::from(8000i16.to_le_bytes().repeat(SILENCE_BYTES / 2))
}

fn id_of(pcm: &Bytes) -> u16 {
    u16::from_le_bytes([pcm[0], pcm[1]])
}

fn error(recovery: Recovery, kind: ModelErrorKind) -> StreamError {
    StreamError::new(recovery, kind, "injected")
}

fn user_transcript(text: &str) -> String {
    format!(
        r#"{{"event":{{"contentStart":{{"contentId":"u","type":"TEXT","role":"USER"}}}}}}
{{"event":{{"textOutput":{{"contentId":"u","content":"{text}"}}}}}}"#
    )
}

const REPLY_STARTS: &str = r#"{"event":{"contentStart":{"contentId":"a","type":"AUDIO","role":"ASSISTANT"}}}"#;
const REPLY_ENDS: &str = r#"{"event":{"completionEnd":{}}}"#;
const TOOL_USE: &str =
    r#"{"event":{"toolUse":{"toolName":"get_weather","toolUseId":"t1","content":"{\"city\":\"Paris\"}"}}}"#;

/// One session driven by hand: `at` offsets from its start stand in for the clock.
struct Session {
    machine: Continuity,
    start: Instant,
}

impl Session {
    /// A session whose first stream opened at its start.
    fn open() -> Self {
        Self::with_policy(true)
    }

    fn with_policy(text_input: bool) -> Self {
        let start = Instant::now();
        let policy = Policy {
            renew_after: RENEW_AFTER,
            text_input,
            greeting: None,
            history: std::sync::Arc::from([]),
        };
        let mut out = Vec::new();
        let mut machine = Continuity::start(policy, start, &mut out);
        assert!(matches!(out[..], [Action::Open { reason: "start", .. }]), "{out:?}");
        out.clear();
        machine.stream_opened(start, &mut out);
        assert_eq!(out, [Action::Started]);
        Self { machine, start }
    }

    fn run(&mut self, input: impl FnOnce(&mut Continuity, Instant, &mut Vec<Action>), at: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        input(&mut self.machine, self.start + at, &mut out);
        out
    }

    fn audio(&mut self, at: Duration, frames: impl IntoIterator<Item = Bytes>) -> Vec<Action> {
        let mut out = Vec::new();
        for pcm in frames {
            out.extend(self.run(|m, now, out| m.audio(pcm, now, out), at));
        }
        out
    }

    fn events(&mut self, at: Duration, json_lines: &str) -> Vec<Action> {
        let mut out = Vec::new();
        for line in json_lines.lines() {
            out.extend(self.run(|m, now, out| m.model_event(line.as_bytes(), now, out), at));
        }
        out
    }

    fn tick(&mut self, at: Duration) -> Vec<Action> {
        self.run(|m, now, out| m.tick(now, out), at)
    }

    fn fail(&mut self, at: Duration, error: StreamError) -> Vec<Action> {
        self.run(|m, now, out| m.stream_failed(error, now, out), at)
    }

    fn opened(&mut self, at: Duration) -> Vec<Action> {
        self.run(|m, now, out| m.stream_opened(now, out), at)
    }

    fn open_failed(&mut self, at: Duration, error: StreamError) -> Vec<Action> {
        self.run(|m, now, out| m.open_failed(error, now, out), at)
    }

    fn tool_result(&mut self, at: Duration, id: &str) -> Vec<Action> {
        let result = ToolResult {
            id: id.to_owned(),
            name: "get_weather".to_owned(),
            content: r#"{"temp":21}"#.to_owned(),
            is_error: false,
        };
        self.run(|m, now, out| m.tool_result(result, now, out), at)
    }

    /// The model asks for a tool and its reply ends; the tool runs on (Nova 2 calls tools
    /// asynchronously).
    fn asked_for_a_tool(&mut self, at: Duration) {
        self.events(at, TOOL_USE);
        self.events(at, REPLY_ENDS);
    }

    /// Speech starting at `from`; the pause that ends it (as the turn detector hears it) is
    /// over at `until`.
    fn spoke(&mut self, from: Duration, until: Duration) {
        self.audio(from, std::iter::repeat_n(loud(), 10));
        self.audio(until, (1..=25).map(frame));
    }
}

fn renewed(actions: &[Action]) -> bool {
    actions.contains(&Action::Close { why: "renewed" }) && opens(actions) == ["proactive"]
}

fn opens(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Open { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn held_ids(actions: &[Action]) -> Vec<u16> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Outgoing::HeldAudio(pcm)) => Some(id_of(pcm)),
            _ => None,
        })
        .collect()
}

fn live_ids(actions: &[Action]) -> Vec<u16> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Outgoing::Audio(pcm)) => Some(id_of(pcm)),
            _ => None,
        })
        .collect()
}

fn gave_up(actions: &[Action]) -> Option<ModelErrorKind> {
    match actions {
        [.., Action::GiveUp(error), Action::End] => Some(error.kind),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
enum Busy {
    Idle,
    /// A reply started at 30 s and has not finished.
    Replying,
    /// The user started speaking before renewAfter and is still speaking at the check.
    Speaking,
    /// The user spoke from before renewAfter until this long before the check.
    StoppedSpeaking(Duration),
}

#[test]
fn renewal_waits_for_renew_after_and_a_turn_boundary_but_not_past_the_patience() {
    let cases = [
        ("idle, before renewAfter", Busy::Idle, RENEW_AFTER - ms(1), false),
        ("idle, at renewAfter", Busy::Idle, RENEW_AFTER, true),
        ("mid-reply", Busy::Replying, RENEW_AFTER + secs(10), false),
        (
            "mid-reply, patience spent",
            Busy::Replying,
            RENEW_AFTER + RENEW_PATIENCE,
            true,
        ),
        ("user speaking", Busy::Speaking, RENEW_AFTER + secs(10), false),
        (
            "user speaking, patience spent",
            Busy::Speaking,
            RENEW_AFTER + RENEW_PATIENCE,
            true,
        ),
        (
            "turn not transcribed yet",
            Busy::StoppedSpeaking(secs(1)),
            RENEW_AFTER + secs(10),
            false,
        ),
        (
            "transcription grace over",
            Busy::StoppedSpeaking(TRANSCRIBE_GRACE),
            RENEW_AFTER + secs(10),
            true,
        ),
    ];
    for (name, busy, at, renews) in cases {
        let mut s = Session::open();
        match busy {
            Busy::Idle => {}
            Busy::Replying => {
                s.events(secs(30), REPLY_STARTS);
            }
            // Speech starts before renewAfter: the first frames of speech are still too short
            // for the turn detector to hear, and a renewal then would come too soon to test.
            Busy::Speaking => {
                s.audio(RENEW_AFTER - ms(100), std::iter::repeat_n(loud(), 10));
            }
            Busy::StoppedSpeaking(ago) => s.spoke(RENEW_AFTER - ms(100), at - ago),
        }
        assert_eq!(renewed(&s.tick(at)), renews, "{name}");
    }
}

#[test]
fn a_reply_that_ends_after_renew_after_triggers_the_renewal_with_the_history() {
    let mut s = Session::open();
    s.events(secs(10), &user_transcript("My name is Ada"));
    s.events(secs(50), REPLY_STARTS);
    assert!(!renewed(&s.tick(RENEW_AFTER + secs(1))));
    let actions = s.events(RENEW_AFTER + secs(2), REPLY_ENDS);
    assert!(renewed(&actions), "{actions:?}");
    let Some(Action::Open { history, .. }) = actions.iter().find(|a| matches!(a, Action::Open { .. })) else {
        panic!("no open in {actions:?}");
    };
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].text, "My name is Ada");
}

#[test]
fn a_planned_renewal_replays_nothing_and_tells_the_client_once_the_new_stream_is_open() {
    let mut s = Session::open();
    assert_eq!(live_ids(&s.audio(secs(1), (1..=3).map(frame))), [1, 2, 3]);
    let renewal = s.tick(RENEW_AFTER);
    assert!(renewed(&renewal));
    // Audio arriving while the next stream opens waits for it.
    assert!(live_ids(&s.audio(RENEW_AFTER + ms(10), [frame(4)])).is_empty());
    let opened = s.opened(RENEW_AFTER + ms(300));
    assert_eq!(
        held_ids(&opened),
        [4],
        "frames 1-3 reached the old stream, which answered them"
    );
    assert!(opened.contains(&Action::Renewed { reason: "proactive" }));
    assert!(opened.contains(&Action::Emit(ModelOutput::Restarted {
        reason: "proactive".into(),
        turn_interrupted: false,
    })));
}

fn warnings(actions: &[Action]) -> Vec<Duration> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(ModelOutput::RestartWarning { time_left }) => Some(*time_left),
            _ => None,
        })
        .collect()
}

#[test]
fn the_client_is_warned_once_ten_seconds_before_a_planned_renewal_on_every_stream() {
    let mut s = Session::open();
    assert!(warnings(&s.tick(RENEW_AFTER - secs(11))).is_empty());
    assert_eq!(warnings(&s.tick(RENEW_AFTER - secs(10))), [secs(10)]);
    assert!(warnings(&s.tick(RENEW_AFTER - secs(5))).is_empty(), "once per stream");
    assert!(renewed(&s.tick(RENEW_AFTER)));
    let reopened = RENEW_AFTER + ms(300);
    s.opened(reopened);
    assert!(warnings(&s.tick(reopened + RENEW_AFTER - secs(11))).is_empty());
    assert_eq!(warnings(&s.tick(reopened + RENEW_AFTER - secs(9))), [secs(9)]);
}

#[test]
fn a_stream_failing_mid_reply_reports_the_turn_as_interrupted() {
    let mut s = Session::open();
    s.events(
        secs(1),
        r#"{"event":{"contentStart":{"role":"ASSISTANT","type":"AUDIO","contentId":"a1"}}}"#,
    );
    s.fail(secs(2), error(Recovery::Retry, ModelErrorKind::Internal));
    let opened = s.opened(secs(3));
    assert!(
        opened.contains(&Action::Emit(ModelOutput::Restarted {
            reason: "error".into(),
            turn_interrupted: true,
        })),
        "{opened:?}"
    );
}

#[test]
fn after_a_failure_unanswered_audio_is_replayed_before_audio_held_since() {
    let mut s = Session::open();
    s.audio(secs(1), (1..=3).map(frame));
    let failed = s.fail(secs(2), error(Recovery::Retry, ModelErrorKind::Internal));
    assert_eq!(failed.first(), Some(&Action::Abandon { why: "internal" }));
    assert_eq!(opens(&failed), ["error"]);
    assert!(live_ids(&s.audio(secs(2) + ms(50), (4..=5).map(frame))).is_empty());
    let opened = s.opened(secs(3));
    assert_eq!(held_ids(&opened), [1, 2, 3, 4, 5]);
    assert!(opened.contains(&Action::Emit(ModelOutput::Restarted {
        reason: "error".into(),
        turn_interrupted: false,
    })));
}

#[test]
fn audio_the_model_already_transcribed_is_not_replayed() {
    let mut s = Session::open();
    s.audio(secs(1), (1..=2).map(frame));
    s.events(secs(2), &user_transcript("hello"));
    s.audio(secs(3), [frame(3)]);
    s.fail(secs(4), error(Recovery::Renew, ModelErrorKind::ModelTimeout));
    assert_eq!(held_ids(&s.opened(secs(5))), [3]);
}

#[test]
fn replay_keeps_the_newest_audio_within_its_byte_cap() {
    let mut s = Session::open();
    let sent = 200u16;
    s.audio(secs(1), (1..=sent).map(frame));
    s.fail(secs(2), error(Recovery::Retry, ModelErrorKind::Transport));
    let replayed = held_ids(&s.opened(secs(3)));
    let kept = (RECENT_AUDIO_BYTES / SILENCE_BYTES) as u16;
    assert_eq!(replayed, (sent - kept + 1..=sent).collect::<Vec<_>>());
}

#[test]
fn audio_held_beyond_its_byte_cap_drops_the_oldest_and_counts_it() {
    let mut s = Session::open();
    s.fail(secs(1), error(Recovery::Retry, ModelErrorKind::Transport));
    let arrived = 400u16;
    let held = s.audio(secs(2), (1..=arrived).map(frame));
    let kept = (HELD_AUDIO_BYTES / SILENCE_BYTES) as u16;
    let dropped: usize = held
        .iter()
        .map(|a| match a {
            Action::AudioDropped(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(dropped, usize::from(arrived - kept));
    assert_eq!(
        held_ids(&s.opened(secs(3))),
        (arrived - kept + 1..=arrived).collect::<Vec<_>>()
    );
}

#[test]
fn transient_failures_are_retried_within_a_budget_per_window() {
    // (failure kind, seconds after the start at which streams fail, gives up at the last?)
    let cases: [(Recovery, ModelErrorKind, &[u64], bool); 5] = [
        (Recovery::Retry, ModelErrorKind::Internal, &[0, 10, 20], false),
        (Recovery::Retry, ModelErrorKind::Internal, &[0, 10, 20, 30], true),
        (Recovery::Retry, ModelErrorKind::Internal, &[0, 10, 20, 61], false),
        (
            Recovery::Renew,
            ModelErrorKind::ModelTimeout,
            &[0, 1, 2, 3, 4, 5, 6, 7],
            false,
        ),
        (Recovery::Fatal, ModelErrorKind::Validation, &[0], true),
    ];
    for (recovery, kind, times, gives_up) in cases {
        let mut s = Session::open();
        let (last, earlier) = times.split_last().expect("a failure");
        for &t in earlier {
            let actions = s.fail(secs(t + 1), error(recovery, kind));
            assert_eq!(gave_up(&actions), None, "{kind} at {t}s");
            s.opened(secs(t + 1) + ms(100));
        }
        let actions = s.fail(secs(last + 1), error(recovery, kind));
        assert_eq!(
            gave_up(&actions).is_some(),
            gives_up,
            "{kind} at {times:?}: {actions:?}"
        );
        assert_eq!(s.machine.is_ended(), gives_up);
    }
}

#[test]
fn a_tool_result_for_the_current_stream_goes_back_as_a_tool_result() {
    let mut s = Session::open();
    let asked = s.events(secs(1), TOOL_USE);
    assert!(asked.iter().any(|a| matches!(a, Action::Emit(ModelOutput::ToolUse(_)))));
    let sent = s.tool_result(secs(2), "t1");
    assert!(
        matches!(&sent[..], [Action::Send(Outgoing::ToolResult(r))] if r.id == "t1"),
        "{sent:?}"
    );
}

#[test]
fn a_tool_result_that_finishes_after_a_renewal_reaches_the_new_stream_as_a_message() {
    let mut s = Session::open();
    s.asked_for_a_tool(secs(50));
    assert!(renewed(&s.tick(RENEW_AFTER)));
    s.opened(RENEW_AFTER + ms(200));
    let sent = s.tool_result(RENEW_AFTER + secs(2), "t1");
    let message = "(The get_weather tool returned: {\"temp\":21})";
    assert_eq!(sent, [Action::Send(Outgoing::Text(message.into()))]);
    // And it is part of the conversation replayed into later streams.
    let failed = s.fail(RENEW_AFTER + secs(3), error(Recovery::Retry, ModelErrorKind::Internal));
    let Some(Action::Open { history, .. }) = failed.last() else {
        panic!("{failed:?}");
    };
    assert_eq!(history.last().map(|m| m.text.as_str()), Some(message));
}

#[test]
fn a_tool_result_that_finishes_while_the_new_stream_opens_is_handed_over_after_the_audio() {
    let mut s = Session::open();
    s.asked_for_a_tool(secs(50));
    s.tick(RENEW_AFTER);
    assert!(s.tool_result(RENEW_AFTER + ms(10), "t1").is_empty());
    s.audio(RENEW_AFTER + ms(20), [frame(7)]);
    let opened = s.opened(RENEW_AFTER + ms(300));
    let sends: Vec<_> = opened.iter().filter(|a| matches!(a, Action::Send(_))).collect();
    assert!(
        matches!(
            &sends[..],
            [Action::Send(Outgoing::HeldAudio(_)), Action::Send(Outgoing::Text(t))] if t.contains("get_weather")
        ),
        "{sends:?}"
    );
}

#[test]
fn a_model_without_text_input_drops_late_tool_results_and_refuses_text() {
    let mut s = Session::with_policy(false);
    s.asked_for_a_tool(secs(50));
    s.tick(RENEW_AFTER);
    s.opened(RENEW_AFTER + ms(200));
    assert!(s.tool_result(RENEW_AFTER + secs(1), "t1").is_empty());
    let text = s.run(|m, now, out| m.text("hi".into(), now, out), RENEW_AFTER + secs(2));
    assert_eq!(text, [Action::RejectText]);
}

#[test]
fn a_renewal_whose_opens_fail_backs_off_then_hands_everything_over() {
    let mut s = Session::open();
    assert!(renewed(&s.tick(RENEW_AFTER)));
    let mut now = RENEW_AFTER;
    for (id, backoff) in [(1, 250), (2, 500)] {
        now += ms(100);
        assert!(
            s.open_failed(now, error(Recovery::Retry, ModelErrorKind::Throttled))
                .is_empty()
        );
        assert_eq!(s.machine.deadline(), Some(s.start + now + ms(backoff)));
        s.audio(now + ms(1), [frame(id)]);
        assert!(
            opens(&s.tick(now + ms(backoff) - ms(1))).is_empty(),
            "not before the backoff"
        );
        now += ms(backoff);
        assert_eq!(opens(&s.tick(now)), ["proactive"]);
    }
    let opened = s.opened(now + ms(100));
    assert_eq!(held_ids(&opened), [1, 2]);
    assert!(opened.contains(&Action::Renewed { reason: "proactive" }));
}

#[test]
fn a_renewal_that_cannot_open_a_stream_gives_up() {
    let mut s = Session::open();
    s.tick(RENEW_AFTER);
    let mut now = RENEW_AFTER;
    for attempt in 1..OPEN_ATTEMPTS {
        now += ms(100);
        assert_eq!(
            gave_up(&s.open_failed(now, error(Recovery::Retry, ModelErrorKind::Throttled))),
            None
        );
        now += FIRST_BACKOFF * 2u32.pow(attempt - 1);
        assert_eq!(opens(&s.tick(now)).len(), 1);
    }
    let last = s.open_failed(now + ms(100), error(Recovery::Retry, ModelErrorKind::Throttled));
    assert_eq!(gave_up(&last), Some(ModelErrorKind::Throttled));

    let mut s = Session::open();
    s.tick(RENEW_AFTER);
    let refused = s.open_failed(
        RENEW_AFTER + ms(100),
        error(Recovery::Fatal, ModelErrorKind::AccessDenied),
    );
    assert_eq!(
        gave_up(&refused),
        Some(ModelErrorKind::AccessDenied),
        "no retry when retrying cannot help"
    );
}

#[test]
fn a_new_stream_that_dies_during_the_hand_over_gets_its_audio_replayed_again() {
    let mut s = Session::open();
    s.audio(secs(1), (1..=2).map(frame));
    s.fail(secs(2), error(Recovery::Retry, ModelErrorKind::Internal));
    assert_eq!(held_ids(&s.opened(secs(3))), [1, 2]);
    s.fail(secs(3) + ms(10), error(Recovery::Retry, ModelErrorKind::Transport));
    assert_eq!(held_ids(&s.opened(secs(4))), [1, 2]);
}

#[test]
fn the_first_stream_starts_the_session_and_its_failures_end_it_before_it_starts() {
    let mut out = Vec::new();
    let start = Instant::now();
    let policy = Policy {
        renew_after: RENEW_AFTER,
        text_input: true,
        greeting: None,
        history: std::sync::Arc::from([]),
    };
    let mut machine = Continuity::start(policy, start, &mut out);
    out.clear();
    machine.open_failed(
        error(Recovery::Fatal, ModelErrorKind::AccessDenied),
        start + ms(50),
        &mut out,
    );
    assert_eq!(gave_up(&out), Some(ModelErrorKind::AccessDenied));
    assert!(!out.contains(&Action::Started));
}

#[test]
fn the_greeting_is_the_first_text_of_the_first_stream_only() {
    let start = Instant::now();
    let mut out = Vec::new();
    let policy = Policy {
        renew_after: RENEW_AFTER,
        text_input: true,
        greeting: Some("Greet the caller.".into()),
        history: std::sync::Arc::from([]),
    };
    let mut machine = Continuity::start(policy, start, &mut out);
    out.clear();
    machine.stream_opened(start, &mut out);
    assert_eq!(
        out,
        [
            Action::Send(Outgoing::Text("Greet the caller.".into())),
            Action::Started
        ]
    );
    assert_eq!(
        machine.history_len(),
        0,
        "the instruction is not part of the conversation"
    );
    out.clear();
    machine.tick(start + RENEW_AFTER, &mut out);
    out.clear();
    machine.stream_opened(start + RENEW_AFTER + ms(200), &mut out);
    assert!(
        !out.iter().any(|a| matches!(a, Action::Send(Outgoing::Text(_)))),
        "a renewed stream is not greeted again: {out:?}"
    );
}

#[test]
fn silence_keeps_the_stream_fed_while_the_client_is_quiet() {
    let mut s = Session::open();
    assert_eq!(s.machine.deadline(), Some(s.start + KEEPALIVE_GAP));
    assert_eq!(live_ids(&s.tick(KEEPALIVE_GAP)), [0], "one frame of silence");
    assert_eq!(s.machine.deadline(), Some(s.start + KEEPALIVE_GAP + FRAME));
    // Client audio pushes the silence back; a stream being replaced gets none.
    s.audio(secs(1), [frame(1)]);
    assert_eq!(s.machine.deadline(), Some(s.start + secs(1) + KEEPALIVE_GAP));
    s.fail(secs(2), error(Recovery::Retry, ModelErrorKind::Internal));
    assert_eq!(s.machine.deadline(), None);
}

#[test]
fn the_end_of_the_session_closes_the_stream_cleanly() {
    let mut s = Session::open();
    let ended = s.run(|m, _, out| m.session_ended(out), secs(1));
    assert_eq!(ended, [Action::Close { why: "session_ended" }, Action::End]);

    // A stream still opening is closed too (once it opens); in a backoff there is none.
    let mut s = Session::open();
    s.fail(secs(1), error(Recovery::Retry, ModelErrorKind::Internal));
    let ended = s.run(|m, _, out| m.session_ended(out), secs(1));
    assert_eq!(ended, [Action::Close { why: "session_ended" }, Action::End]);
    assert!(s.audio(secs(2), [frame(1)]).is_empty(), "nothing after the end");

    let mut s = Session::open();
    s.fail(secs(1), error(Recovery::Retry, ModelErrorKind::Internal));
    s.open_failed(secs(1), error(Recovery::Retry, ModelErrorKind::Throttled));
    assert_eq!(s.run(|m, _, out| m.session_ended(out), secs(1)), [Action::End]);
}
