//! The session state machine. It decides everything a session does (what the client sees,
//! what reaches the model, when and why the session ends, whatever ended it: the client, the
//! socket, the model, a limit or the drain) and does no I/O, so it is tested directly. It speaks
//! the protocol-neutral [`SessionEvent`]s; the session's wire protocol encodes them.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::settings::SessionSettings;
use crate::model::{
    ErrorReport, ModelError, ModelErrorKind, ModelInput, ModelOutput, Role, TokenUsage, ToolResult, ToolUse,
};
use crate::protocol::{ClientMessage, DecodeError, EndReason, Outbound, ResumeOffer, SessionEvent, StopReason};

/// Longest close-frame reason: a control frame payload is at most 125 bytes, two of which hold
/// the code (RFC 6455 §5.5).
const MAX_CLOSE_REASON: usize = 123;

/// Longest reply audio in one frame to the client (bytes of PCM16): 16 KiB is 341 ms at
/// 24 kHz, and as base64 JSON about 22 KB, so every frame stays below AgentCore Runtime's
/// 32 KB WebSocket frame limit ([`MAX_FRAME_BYTES`](crate::protocol::MAX_FRAME_BYTES)).
pub const MAX_AUDIO_CHUNK_BYTES: usize = 16 * 1024;
/// Longest text in one event to the client (bytes): longer transcripts are sent in pieces, and
/// a tool result's text is cut here for the client (the model gets all of it). Even escaped
/// and repeated as some schemas do, an event stays below the frame limit.
pub const MAX_EVENT_TEXT_BYTES: usize = 4 * 1024;
/// Marks a tool result cut for the client.
pub const TRUNCATED: &str = " [truncated]";

/// `text` in pieces of at most `max` bytes, cut at character boundaries; one piece (maybe
/// empty) at least.
fn text_pieces(mut text: String, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    while text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = text.split_off(cut);
        pieces.push(std::mem::replace(&mut text, rest));
    }
    pieces.push(text);
    pieces
}

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

/// How the client's socket ended a session, as the transport saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketEnding {
    /// The client sent a close frame.
    Closed,
    /// The connection dropped: reset, end of stream, or the socket writer failed.
    Lost,
    /// A message larger than the configured maximum.
    TooBig,
    /// A text frame that is not UTF-8.
    InvalidText,
    /// Any other WebSocket protocol violation.
    ProtocolViolation,
    /// A write did not complete in time: the client stopped reading.
    WriteStalled,
}

/// Things worth counting that the machine notices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    AudioIn,
    /// The user's turn ended (end of speech, or a text message): a turn begins.
    TurnStarted,
    /// A reply ended, and with it the turn.
    TurnEnded(StopReason),
    TimeToFirstAudio(Duration),
    Interruption,
    /// A `bidi_error` was sent to the client, with this code.
    ClientError(&'static str),
    /// The model failed in this way.
    ModelError(ModelErrorKind),
    /// The model counted these tokens since its last report.
    Usage(TokenUsage),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Outbound),
    Model(ModelInput),
    /// Run a tool the model asked for; report back with [`Session::on_tool_result`]. Boxed:
    /// rare, and unboxed it would set the size of every action.
    CallTool(Box<ToolUse>),
    Observe(Observation),
    /// Words said for good (a final transcript): part of the conversation, kept for resuming.
    Remember(Role, String),
    /// The session is over: after the queued sends, close and clean up.
    End(EndReason),
}

// A session keeps the vector of its actions at the size one wake-up needed: the common action
// (a frame to send, one to the model) sets the size of every slot, rare large ones are boxed.
const _: () = assert!(std::mem::size_of::<Action>() <= 56);

#[derive(Debug)]
pub struct Session {
    id: String,
    /// Input and output sample rates, announced to the client.
    rates: (u32, u32),
    /// Shared by every session of the agent.
    limits: Arc<SessionLimits>,
    started_at: Instant,
    last_input_at: Instant,
    /// Bumped at every interruption; audio from older epochs must not be played.
    epoch: u64,
    /// When the user's last turn ended, until the first reply audio arrives.
    turn_ended_at: Option<Instant>,
    got_first_message: bool,
    audio: AudioAllowance,
    ended: Option<EndReason>,
    /// The token a close hands over when the agent ends the session itself (drain, a failed
    /// model) and the conversation can go on: `bidi_connection_close` carries it.
    handover: Option<String>,
    /// Whether another replica can resume the conversation (a drained replica cannot).
    handover_anywhere: bool,
    /// The reply being spoken and what the caller heard of it (phone calls' playback marks).
    playback: Playback,
}

/// The current reply's audio, and how much of it a carrier said the caller heard.
#[derive(Debug, Default)]
struct Playback {
    /// Replies started so far, counted like the protocols count `ResponseStart` events.
    reply: u32,
    /// Bytes of reply audio sent for the current reply.
    sent_bytes: u64,
    /// What the caller heard of it, from the latest playback mark; `None` without marks.
    heard: Option<Duration>,
    /// The reply was interrupted: later marks (echoed by a `clear`) say nothing about hearing.
    interrupted: bool,
}

impl Session {
    /// A session whose model stream is being opened; it speaks once the stream is open
    /// ([`on_model_connected`](Self::on_model_connected)) or has failed.
    pub fn new(id: String, rates: (u32, u32), limits: Arc<SessionLimits>, now: Instant) -> Self {
        Self {
            id,
            rates,
            audio: AudioAllowance::new(&limits, now),
            limits,
            started_at: now,
            last_input_at: now,
            epoch: 0,
            turn_ended_at: None,
            got_first_message: false,
            ended: None,
            handover: None,
            handover_anywhere: false,
            playback: Playback::default(),
        }
    }

    /// The stream of `model` is open: the first event announces the session to the client.
    /// `resume` is how the client can pick the conversation up again after a drop.
    pub fn on_model_connected(
        &mut self,
        model: &str,
        settings: Arc<SessionSettings>,
        resume: Option<ResumeOffer>,
        actions: &mut Vec<Action>,
    ) {
        self.offer_handover(resume.as_ref());
        actions.push(Action::Send(Outbound::event(SessionEvent::Started {
            session_id: self.id.clone(),
            model: model.to_owned(),
            input_sample_rate: self.rates.0,
            output_sample_rate: self.rates.1,
            settings,
            resume,
        })));
    }

    /// The conversation can be resumed with this offer's token after the agent ends the session.
    pub fn offer_handover(&mut self, resume: Option<&ResumeOffer>) {
        self.handover = resume.map(|r| r.token.clone());
        self.handover_anywhere = resume.is_some_and(|r| r.anywhere);
    }

    /// The model stream could not be opened: the client is told why, and the session ends.
    pub fn on_model_connect_failed(&mut self, error: &ModelError, actions: &mut Vec<Action>) {
        let code = match error {
            ModelError::Unavailable(_) => "model_unavailable",
            ModelError::Misconfigured(_) => "model_misconfigured",
        };
        actions.push(Action::Observe(Observation::ModelError(ModelErrorKind::Connect)));
        actions.push(Action::Send(Outbound::event(SessionEvent::error(
            code,
            error.to_string(),
        ))));
        self.end_with(EndReason::ModelError, "model unavailable", actions);
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

    /// The fraction of the current reply's audio the caller heard, when a carrier's playback
    /// marks said how much (audio is 16-bit mono at the output rate).
    fn heard_fraction(&self) -> Option<f32> {
        let heard = self.playback.heard?;
        if self.playback.interrupted || self.playback.sent_bytes == 0 {
            return None;
        }
        let heard_bytes = heard.as_secs_f64() * f64::from(self.rates.1) * 2.0;
        Some((heard_bytes / self.playback.sent_bytes as f64).clamp(0.0, 1.0) as f32)
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
            // Empty audio: a frame that carries nothing for the model (a carrier's `mark`); it
            // shows the client is there, and goes no further.
            Ok(ClientMessage::Audio(pcm)) if pcm.is_empty() => self.last_input_at = now,
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
            Ok(ClientMessage::Heard { reply, audio }) => {
                self.last_input_at = now;
                let playback = &mut self.playback;
                if reply == playback.reply && !playback.interrupted {
                    playback.heard = playback.heard.max(Some(audio));
                }
            }
            Err(DecodeError::Rejected { code, message }) => {
                actions.push(Action::Observe(Observation::ClientError(code)));
                actions.push(Action::Send(Outbound::event(SessionEvent::error(code, message))));
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
            actions.push(Action::Observe(Observation::ModelError(ModelErrorKind::StreamEnded)));
            actions.push(Action::Send(Outbound::event(SessionEvent::error(
                "model_stream_ended",
                "the model stream ended unexpectedly",
            ))));
            self.end_with(EndReason::ModelError, "model stream ended", actions);
            return;
        };
        let event = match output {
            ModelOutput::UserTurnEnd => {
                self.turn_ended_at = Some(now);
                actions.push(Action::Observe(Observation::TurnStarted));
                return;
            }
            ModelOutput::Audio(pcm) => {
                if let Some(ended) = self.turn_ended_at.take() {
                    actions.push(Action::Observe(Observation::TimeToFirstAudio(now - ended)));
                }
                self.playback.sent_bytes += pcm.len() as u64;
                let mut pcm = pcm;
                while pcm.len() > MAX_AUDIO_CHUNK_BYTES {
                    let chunk = pcm.split_to(MAX_AUDIO_CHUNK_BYTES);
                    actions.push(Action::Send(Outbound::Audio {
                        epoch: self.epoch,
                        pcm: chunk,
                    }));
                }
                actions.push(Action::Send(Outbound::Audio { epoch: self.epoch, pcm }));
                return;
            }
            ModelOutput::Interruption => {
                self.epoch += 1;
                self.turn_ended_at = None;
                actions.push(Action::Observe(Observation::Interruption));
                if let Some(fraction) = self.heard_fraction() {
                    actions.push(Action::Model(ModelInput::ReplyHeard(fraction)));
                }
                self.playback.interrupted = true;
                SessionEvent::Interrupted
            }
            ModelOutput::ResponseStart { id } => {
                self.playback = Playback {
                    reply: self.playback.reply.saturating_add(1),
                    ..Playback::default()
                };
                SessionEvent::ResponseStart { response_id: id }
            }
            ModelOutput::Transcript { role, text, is_final } => {
                if is_final {
                    actions.push(Action::Remember(role, text.clone()));
                }
                let mut pieces = text_pieces(text, MAX_EVENT_TEXT_BYTES);
                let last = pieces.pop().unwrap_or_default();
                for text in pieces {
                    actions.push(Action::Send(Outbound::event(SessionEvent::Transcript {
                        role,
                        text,
                        is_final,
                    })));
                }
                SessionEvent::Transcript {
                    role,
                    text: last,
                    is_final,
                }
            }
            ModelOutput::ResponseComplete { id, stop_reason } => {
                actions.push(Action::Observe(Observation::TurnEnded(stop_reason)));
                SessionEvent::ResponseComplete {
                    response_id: id,
                    stop_reason,
                }
            }
            ModelOutput::Usage(usage) => {
                actions.push(Action::Observe(Observation::Usage(usage)));
                SessionEvent::Usage(usage)
            }
            ModelOutput::RestartWarning { time_left } => SessionEvent::RestartWarning { time_left },
            ModelOutput::ToolUse(tool_use) => {
                actions.push(Action::Send(Outbound::event(SessionEvent::ToolUse {
                    id: tool_use.id.clone(),
                    name: tool_use.name.clone(),
                    input: tool_use.input.clone(),
                })));
                actions.push(Action::CallTool(tool_use));
                return;
            }
            ModelOutput::Restarted {
                reason,
                turn_interrupted,
            } => SessionEvent::Restarted {
                reason,
                turn_interrupted,
            },
            ModelOutput::Error(error) => {
                let ErrorReport { code, message, fatal } = *error;
                // Providers count their own errors (recovered ones too); clients see them here.
                actions.push(Action::Observe(Observation::ClientError(code)));
                actions.push(Action::Send(Outbound::event(SessionEvent::error(
                    code,
                    message.clone(),
                ))));
                if fatal {
                    self.end_with(EndReason::ModelError, &message, actions);
                }
                return;
            }
        };
        actions.push(Action::Send(Outbound::event(event)));
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
        // The client sees the start of a long result; the model gets all of it.
        let mut shown = text_pieces(content.clone(), MAX_EVENT_TEXT_BYTES);
        let mut shown_content = shown.swap_remove(0);
        if !shown.is_empty() {
            shown_content.push_str(TRUNCATED);
        }
        actions.push(Action::Send(Outbound::event(SessionEvent::ToolResult {
            id: id.clone(),
            name: name.clone(),
            is_error,
            content: shown_content,
        })));
        actions.push(Action::Model(ModelInput::ToolResult(Box::new(ToolResult {
            id,
            name,
            content,
            is_error,
        }))));
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

    /// The client resumed the conversation on another connection: this one ends, without a
    /// token (the conversation is the new connection's now).
    pub fn on_resumed_elsewhere(&mut self, actions: &mut Vec<Action>) {
        self.end_with(
            EndReason::ResumedElsewhere,
            "the conversation was resumed on another connection",
            actions,
        );
    }

    /// The client's socket ended the conversation: a close frame, an error, or the end of the
    /// stream.
    pub fn on_socket(&mut self, ending: SocketEnding, detail: &str, actions: &mut Vec<Action>) {
        let reason = match ending {
            SocketEnding::Closed => EndReason::ClientClosed,
            SocketEnding::Lost => EndReason::ClientGone,
            SocketEnding::TooBig => EndReason::MessageTooBig,
            SocketEnding::InvalidText => EndReason::InvalidPayload,
            SocketEnding::ProtocolViolation => EndReason::ProtocolError,
            SocketEnding::WriteStalled => EndReason::SlowConsumer,
        };
        self.end_with(reason, detail, actions);
    }

    /// A message the model could not take in time was dropped (model behind real time).
    pub fn on_model_busy(&mut self, actions: &mut Vec<Action>) {
        if self.ended.is_some() {
            return;
        }
        actions.push(Action::Observe(Observation::ClientError("model_busy")));
        actions.push(Action::Send(Outbound::event(SessionEvent::error(
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
            // A drained session may go on on another replica, one whose model failed later on:
            // the close says how.
            let resumable = match reason {
                EndReason::Draining => self.handover_anywhere,
                EndReason::ModelError | EndReason::Internal => true,
                _ => false,
            };
            let resume_token = resumable.then(|| self.handover.clone()).flatten();
            actions.push(Action::Send(Outbound::event(SessionEvent::Closing {
                session_id: self.id.clone(),
                reason,
                resume_token,
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
mod tests;
