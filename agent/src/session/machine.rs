//! The session state machine. It decides everything a session does (what the client sees,
//! what reaches the model, when the session ends) and does no I/O, so it is tested directly.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::model::{ModelInput, ModelOutput};
use crate::protocol::{
    AudioOutput, ClientMessage, DecodeError, EndReason, ServerEvent, ToolResultBody, ToolResultContent, ToolUseBody,
    TranscriptDelta,
};

/// Longest close-frame reason: a control frame payload is at most 125 bytes, two of which hold
/// the code (RFC 6455 §5.5).
const MAX_CLOSE_REASON: usize = 123;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionLimits {
    /// Longest time without client input before the session is closed.
    pub idle_timeout: Duration,
    /// Longest a session may last.
    pub max_duration: Duration,
    /// The first client message must arrive within this.
    pub first_message_timeout: Duration,
    /// Audio may arrive this many times faster than real time on average...
    pub max_audio_rate: f64,
    /// ...with this much audio of burst on top.
    pub audio_burst: Duration,
}

/// Bytes per second of real-time input audio (16 kHz, 16-bit, mono).
const INPUT_BYTES_PER_SECOND: f64 = 32_000.0;

/// A token bucket over input audio bytes: refilled at the allowed rate, as deep as the burst.
#[derive(Debug)]
struct AudioAllowance {
    available: f64,
    capacity: f64,
    per_second: f64,
    updated: Instant,
}

impl AudioAllowance {
    fn new(limits: &SessionLimits, now: Instant) -> Self {
        let capacity = limits.audio_burst.as_secs_f64() * INPUT_BYTES_PER_SECOND * limits.max_audio_rate;
        Self {
            available: capacity,
            capacity,
            per_second: INPUT_BYTES_PER_SECOND * limits.max_audio_rate,
            updated: now,
        }
    }

    /// Takes `bytes` from the bucket; false if the client is sending too fast.
    fn take(&mut self, bytes: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.available = (self.available + elapsed * self.per_second).min(self.capacity);
        self.available -= bytes as f64;
        self.available >= 0.0
    }
}

/// A message for the client socket writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Event(ServerEvent),
    /// Reply audio (PCM16LE). `epoch` lets the writer drop audio queued before an interruption.
    Audio {
        epoch: u64,
        pcm: Bytes,
    },
    Close {
        code: u16,
        reason: String,
    },
}

/// Things worth counting that the machine notices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    AudioIn,
    TimeToFirstAudio(Duration),
    Interruption,
    /// A `bidi_error` was sent to the client, with this code.
    ClientError(&'static str),
    /// The model reported an error, with this code.
    ModelError(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Outbound),
    Model(ModelInput),
    /// Run a tool the model asked for; report back with [`Session::on_tool_result`].
    CallTool {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    Observe(Observation),
    /// The session is over: after the queued sends, close and clean up.
    End(EndReason),
}

#[derive(Debug)]
pub struct Session {
    id: String,
    limits: SessionLimits,
    started_at: Instant,
    last_input_at: Instant,
    /// Bumped at every interruption; audio from older epochs must not be played.
    epoch: u64,
    /// When the user's last turn ended, until the first reply audio arrives.
    turn_ended_at: Option<Instant>,
    got_first_message: bool,
    audio: AudioAllowance,
    ended: Option<EndReason>,
}

impl Session {
    /// Starts a session; the first action announces it to the client.
    pub fn start(
        id: String,
        model: &str,
        audio_output: AudioOutput,
        rates: (u32, u32),
        limits: SessionLimits,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> Self {
        actions.push(Action::Send(Outbound::Event(ServerEvent::ConnectionStart {
            connection_id: id.clone(),
            model: model.to_owned(),
            input_sample_rate: rates.0,
            output_sample_rate: rates.1,
            audio_output,
        })));
        Self {
            id,
            limits,
            started_at: now,
            last_input_at: now,
            epoch: 0,
            turn_ended_at: None,
            got_first_message: false,
            audio: AudioAllowance::new(&limits, now),
            ended: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    /// The next instant at which [`on_deadline`](Self::on_deadline) must run.
    pub fn deadline(&self) -> Instant {
        let idle = if self.got_first_message {
            self.last_input_at + self.limits.idle_timeout
        } else {
            self.started_at + self.limits.first_message_timeout.min(self.limits.idle_timeout)
        };
        idle.min(self.started_at + self.limits.max_duration)
    }

    /// A decoded (or undecodable) client frame.
    pub fn on_client(&mut self, message: Result<ClientMessage, DecodeError>, now: Instant, actions: &mut Vec<Action>) {
        if self.ended.is_some() {
            return;
        }
        if message.is_ok() {
            self.got_first_message = true;
        }
        match message {
            Ok(ClientMessage::Audio(pcm)) => {
                if !self.audio.take(pcm.len(), now) {
                    self.end_with(
                        EndReason::PolicyViolation,
                        "audio arrives faster than real time",
                        actions,
                    );
                    return;
                }
                self.last_input_at = now;
                actions.push(Action::Observe(Observation::AudioIn));
                actions.push(Action::Model(ModelInput::Audio(pcm)));
            }
            Ok(ClientMessage::Text(text)) => {
                self.last_input_at = now;
                actions.push(Action::Model(ModelInput::Text(text)));
            }
            Err(DecodeError::Rejected { code, message }) => {
                actions.push(Action::Observe(Observation::ClientError(code)));
                actions.push(Action::Send(Outbound::Event(ServerEvent::error(code, message))));
            }
            Err(DecodeError::Fatal { reason, detail }) => self.end_with(reason, &detail, actions),
        }
    }

    /// An event from the model; `None` when the model stream ended on its own.
    pub fn on_model(&mut self, output: Option<ModelOutput>, now: Instant, actions: &mut Vec<Action>) {
        if self.ended.is_some() {
            return;
        }
        let Some(output) = output else {
            actions.push(Action::Observe(Observation::ModelError("stream_ended")));
            actions.push(Action::Send(Outbound::Event(ServerEvent::error(
                "model_stream_ended",
                "the model stream ended unexpectedly",
            ))));
            self.end_with(EndReason::ModelError, "model stream ended", actions);
            return;
        };
        let event = match output {
            ModelOutput::UserTurnEnd => {
                self.turn_ended_at = Some(now);
                return;
            }
            ModelOutput::Audio(pcm) => {
                if let Some(ended) = self.turn_ended_at.take() {
                    actions.push(Action::Observe(Observation::TimeToFirstAudio(now - ended)));
                }
                actions.push(Action::Send(Outbound::Audio { epoch: self.epoch, pcm }));
                return;
            }
            ModelOutput::Interruption => {
                self.epoch += 1;
                self.turn_ended_at = None;
                actions.push(Action::Observe(Observation::Interruption));
                ServerEvent::Interruption { reason: "user_speech" }
            }
            ModelOutput::ResponseStart { id } => ServerEvent::ResponseStart { response_id: id },
            ModelOutput::Transcript { role, text, is_final } => ServerEvent::TranscriptStream {
                role: role.as_str(),
                delta: TranscriptDelta { text: text.clone() },
                text,
                is_final,
            },
            ModelOutput::ResponseComplete { id, stop_reason } => ServerEvent::ResponseComplete {
                response_id: id,
                stop_reason,
            },
            ModelOutput::Usage {
                input_tokens,
                output_tokens,
            } => ServerEvent::Usage {
                input_tokens,
                output_tokens,
                total_tokens: input_tokens + output_tokens,
            },
            ModelOutput::ToolUse { id, name, input } => {
                actions.push(Action::Send(Outbound::Event(ServerEvent::ToolUse {
                    current_tool_use: ToolUseBody {
                        tool_use_id: id.clone(),
                        name: name.clone(),
                        input: input.clone(),
                    },
                })));
                actions.push(Action::CallTool { id, name, input });
                return;
            }
            ModelOutput::Restarted { reason } => ServerEvent::ConnectionRestart { reason },
            ModelOutput::Error { code, message, fatal } => {
                // Providers count their own errors (recovered ones too); clients see them here.
                actions.push(Action::Observe(Observation::ClientError(code)));
                actions.push(Action::Send(Outbound::Event(ServerEvent::error(code, message.clone()))));
                if fatal {
                    self.end_with(EndReason::ModelError, &message, actions);
                }
                return;
            }
        };
        actions.push(Action::Send(Outbound::Event(event)));
    }

    /// A tool call finished: the model gets the result, the client sees it.
    pub fn on_tool_result(
        &mut self,
        id: String,
        name: String,
        is_error: bool,
        content: String,
        actions: &mut Vec<Action>,
    ) {
        if self.ended.is_some() {
            return;
        }
        actions.push(Action::Send(Outbound::Event(ServerEvent::ToolResult {
            tool_result: ToolResultBody {
                tool_use_id: id.clone(),
                name: name.clone(),
                status: if is_error { "error" } else { "success" },
                content: vec![ToolResultContent { text: content.clone() }],
            },
        })));
        actions.push(Action::Model(ModelInput::ToolResult {
            id,
            name,
            content,
            is_error,
        }));
    }

    /// Time passed: enforce the idle timeout and the maximum duration.
    pub fn on_deadline(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.ended.is_some() {
            return;
        }
        if now >= self.started_at + self.limits.max_duration {
            self.end_with(EndReason::MaxDuration, "maximum session duration reached", actions);
        } else if !self.got_first_message
            && self.limits.first_message_timeout < self.limits.idle_timeout
            && now >= self.started_at + self.limits.first_message_timeout
        {
            self.end_with(EndReason::PolicyViolation, "no message received in time", actions);
        } else if now >= self.last_input_at + self.limits.idle_timeout {
            self.end_with(EndReason::IdleTimeout, "no input within the idle timeout", actions);
        }
    }

    /// The agent is shutting down and the drain timeout is over.
    pub fn on_drain(&mut self, actions: &mut Vec<Action>) {
        self.end_with(EndReason::Draining, "server is restarting, please reconnect", actions);
    }

    /// The socket reported a transport-level ending (close frame, error, end of stream).
    pub fn on_transport_end(&mut self, reason: EndReason, detail: &str, actions: &mut Vec<Action>) {
        self.end_with(reason, detail, actions);
    }

    /// A message the model could not take in time was dropped (model behind real time).
    pub fn on_model_busy(&mut self, actions: &mut Vec<Action>) {
        if self.ended.is_some() {
            return;
        }
        actions.push(Action::Observe(Observation::ClientError("model_busy")));
        actions.push(Action::Send(Outbound::Event(ServerEvent::error(
            "model_busy",
            "the model is not keeping up; the message was dropped",
        ))));
    }

    fn end_with(&mut self, reason: EndReason, detail: &str, actions: &mut Vec<Action>) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(reason);
        if reason.announce() {
            actions.push(Action::Send(Outbound::Event(ServerEvent::ConnectionClose {
                connection_id: self.id.clone(),
                reason: reason.as_str(),
            })));
        }
        if let Some(code) = reason.close_code() {
            actions.push(Action::Send(Outbound::Close {
                code,
                reason: truncate_reason(detail),
            }));
        }
        actions.push(Action::End(reason));
    }
}

fn truncate_reason(detail: &str) -> String {
    if detail.len() <= MAX_CLOSE_REASON {
        return detail.to_owned();
    }
    let mut end = MAX_CLOSE_REASON;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
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
        let session = Session::start(
            "s1".into(),
            "simulated",
            AudioOutput::Json,
            (16000, 24000),
            LIMITS,
            now,
            &mut actions,
        );
        (session, actions)
    }

    fn sent_events(actions: &[Action]) -> Vec<&ServerEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(Outbound::Event(e)) => Some(e),
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
        assert!(matches!(
            sent_events(&actions)[..],
            [ServerEvent::ConnectionStart { .. }]
        ));
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
    fn rejected_events_get_an_error_and_the_session_goes_on() {
        let (mut s, _) = start(Instant::now());
        let mut actions = Vec::new();
        let err = DecodeError::Rejected {
            code: "unknown_event",
            message: "nope".into(),
        };
        s.on_client(Err(err), Instant::now(), &mut actions);
        assert!(matches!(sent_events(&actions)[..], [ServerEvent::Error { code, .. }] if code == "unknown_event"));
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
            [ServerEvent::ConnectionClose {
                reason: "invalid_payload",
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
            [ServerEvent::ConnectionClose {
                reason: "policy_violation",
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
            [ServerEvent::ConnectionClose {
                reason: "idle_timeout",
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
            [ServerEvent::ConnectionClose {
                reason: "max_duration",
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
            [ServerEvent::ConnectionClose { reason: "draining", .. }]
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
        s.on_transport_end(EndReason::ClientGone, "gone", &mut actions);
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
        assert!(sent_events(&actions).contains(&&ServerEvent::Interruption { reason: "user_speech" }));
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
            Some(ModelOutput::Usage {
                input_tokens: 2,
                output_tokens: 3,
            }),
            now,
            &mut actions,
        );
        s.on_model(
            Some(ModelOutput::Restarted {
                reason: "renewal".into(),
            }),
            now,
            &mut actions,
        );
        let events = sent_events(&actions);
        assert_eq!(
            events[0],
            &ServerEvent::ResponseStart {
                response_id: "r1".into()
            }
        );
        assert!(matches!(
            events[1],
            ServerEvent::TranscriptStream {
                role: "assistant",
                is_final: true,
                ..
            }
        ));
        assert!(matches!(
            events[2],
            ServerEvent::ResponseComplete {
                stop_reason: StopReason::Complete,
                ..
            }
        ));
        assert_eq!(
            events[3],
            &ServerEvent::Usage {
                input_tokens: 2,
                output_tokens: 3,
                total_tokens: 5
            }
        );
        assert!(matches!(events[4], ServerEvent::ConnectionRestart { .. }));
    }

    #[test]
    fn tool_calls_are_requested_and_their_results_go_to_both_sides() {
        let (mut s, _) = start(Instant::now());
        let mut actions = Vec::new();
        let input = serde_json::json!({"city": "Oslo"});
        let call = ModelOutput::ToolUse {
            id: "t1".into(),
            name: "weather".into(),
            input: input.clone(),
        };
        s.on_model(Some(call), Instant::now(), &mut actions);
        assert!(matches!(sent_events(&actions)[..], [ServerEvent::ToolUse { .. }]));
        assert!(actions.contains(&Action::CallTool {
            id: "t1".into(),
            name: "weather".into(),
            input
        }));
        actions.clear();
        s.on_tool_result("t1".into(), "weather".into(), false, "{\"c\":3}".into(), &mut actions);
        assert!(
            matches!(sent_events(&actions)[..], [ServerEvent::ToolResult { tool_result }] if tool_result.status == "success")
        );
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Model(ModelInput::ToolResult { id, is_error: false, .. }) if id == "t1"))
        );
    }

    #[test]
    fn fatal_model_errors_close_with_1011() {
        let (mut s, _) = start(Instant::now());
        let mut actions = Vec::new();
        let err = ModelOutput::Error {
            code: "throttled",
            message: "busy".into(),
            fatal: true,
        };
        s.on_model(Some(err), Instant::now(), &mut actions);
        assert!(matches!(sent_events(&actions)[0], ServerEvent::Error { code, .. } if code == "throttled"));
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
}
