//! The decisions that keep one Nova conversation going across Bedrock streams, as a plain
//! state machine: when to renew a stream (between turns, after `renewAfter`; at any cost a
//! little later, before Bedrock's hard limit), what to replay into the next one (the history,
//! audio the failed stream may not have heard, input that arrived while it opened), how often
//! a failing model may be retried, and when to give up.
//!
//! It reads no clock and does no I/O: every input carries `now`, and every decision comes
//! back as [`Action`]s that the driver task carries out in order. So the hardest logic of the
//! provider is tested without sockets, sleeps or a runtime (see `tests.rs`).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::super::history::History;
use super::super::mapping::{Mapped, OutputMapper};
use super::super::stream::{Recovery, StreamError};
use super::super::wire;
use crate::audio::ring::ByteRing;
use crate::audio::vad::{TurnDetector, VadEvent};
use crate::model::{ModelOutput, Role, ToolResult};
pub(super) use action::{Action, Outgoing};

/// One frame of audio at 16 kHz: the keep-alive unit.
const FRAME: Duration = Duration::from_millis(32);
/// After this long without client audio, silence is sent in real time instead, so Bedrock
/// never waits for input (it ends streams whose input stops).
const KEEPALIVE_GAP: Duration = Duration::from_millis(200);
/// Keep-alive silence: one frame of 16 kHz PCM16.
const SILENCE_BYTES: usize = 1024;
/// Client audio held while a stream opens: ten seconds at 16 kHz. Opening takes well under a
/// second; the rest covers retries with backoff. Older audio is dropped beyond that.
const HELD_AUDIO_BYTES: usize = 10 * 32_000;
/// Text messages held while a stream opens.
const HELD_TEXTS: usize = 8;
/// Audio sent to the current stream since the user's last transcript, replayed if the stream
/// dies before answering: five seconds.
const RECENT_AUDIO_BYTES: usize = 5 * 32_000;
/// After the user stops speaking, how long the model may take to transcribe the turn; a
/// planned renewal waits this long so it never cuts a turn in half.
const TRANSCRIBE_GRACE: Duration = Duration::from_secs(3);
/// A planned renewal waits for a quiet moment at most this long past `renewAfter`. With the
/// default `renewAfter` of 7 minutes that is still well before Bedrock's 8-minute limit.
const RENEW_PATIENCE: Duration = Duration::from_secs(45);
/// How long before a planned renewal is due the client is warned (`bidi_connection_warning`):
/// the lead Strands' `BidiAgent` gives, so clients built for it behave the same.
const RESTART_WARNING_LEAD: Duration = Duration::from_secs(10);
/// Stream opens attempted before giving up, and the first backoff (doubled each time).
const OPEN_ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Recoveries from failing streams allowed within [`FAILURE_WINDOW`], so a broken model does
/// not loop forever.
const MAX_FAILURES: usize = 3;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// What the machine is told about the model, fixed for the session.
#[derive(Debug, Clone)]
pub(super) struct Policy {
    /// Renew streams this long after they open, at the next quiet moment.
    pub renew_after: Duration,
    /// Whether the model takes text input (Nova 2 does, Nova 1 does not).
    pub text_input: bool,
    /// An instruction sent as the first user text of the conversation, so the model speaks
    /// first. Not part of the history: renewed streams continue from the greeting it gave.
    pub greeting: Option<String>,
    /// The conversation so far (a resumed session): the first stream starts from it.
    pub history: std::sync::Arc<[(Role, String)]>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for the stream asked for by the last `Open`; `attempt` opens have failed so far.
    Opening {
        reason: &'static str,
        attempt: u32,
    },
    /// Waiting to try again after a failed open.
    Backoff {
        reason: &'static str,
        attempt: u32,
        until: Instant,
    },
    Open {
        opened: Instant,
    },
    Ended,
}

pub(super) struct Continuity {
    policy: Policy,
    phase: Phase,
    /// Whether a stream has opened yet (the first one starts the session, later ones renew it).
    started: bool,
    /// Whether the client was warned of the current stream's planned renewal.
    warned: bool,
    /// Whether the stream being replaced failed in the middle of a turn.
    turn_interrupted: bool,
    history: History,
    mapper: OutputMapper,
    vad: TurnDetector,
    vad_events: Vec<VadEvent>,
    speech_ended_at: Option<Instant>,
    /// Audio sent to the current stream that it has not answered yet.
    recent: ByteRing,
    /// Audio waiting for a stream to open.
    held: ByteRing,
    held_texts: VecDeque<String>,
    /// Tool uses the current stream asked for and has no result for yet.
    tools_asked: HashSet<String>,
    next_silence: Instant,
    /// When recent failures happened, within [`FAILURE_WINDOW`].
    failures: VecDeque<Instant>,
    silence: Bytes,
}

impl Continuity {
    /// A conversation whose first stream is about to be opened.
    pub fn start(policy: Policy, now: Instant, out: &mut Vec<Action>) -> Self {
        let mut history = History::default();
        for (role, text) in policy.history.iter() {
            history.push(*role, text);
        }
        let machine = Self {
            policy,
            phase: Phase::Opening {
                reason: "start",
                attempt: 0,
            },
            started: false,
            warned: false,
            turn_interrupted: false,
            history,
            mapper: OutputMapper::default(),
            vad: TurnDetector::default(),
            vad_events: Vec::new(),
            speech_ended_at: None,
            recent: ByteRing::new(RECENT_AUDIO_BYTES),
            held: ByteRing::new(HELD_AUDIO_BYTES),
            held_texts: VecDeque::new(),
            tools_asked: HashSet::new(),
            next_silence: now + KEEPALIVE_GAP,
            failures: VecDeque::new(),
            silence: Bytes::from(vec![0u8; SILENCE_BYTES]),
        };
        out.push(machine.open_action("start"));
        machine
    }

    /// When the driver must call [`Self::tick`] next, if at all: the next keep-alive frame
    /// while a stream is open, or the end of a backoff.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open { .. } => Some(self.next_silence),
            Phase::Backoff { until, .. } => Some(until),
            Phase::Opening { .. } | Phase::Ended => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Messages in the history replayed into the next stream.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Client audio.
    pub fn audio(&mut self, pcm: Bytes, now: Instant, out: &mut Vec<Action>) {
        if self.is_ended() {
            return;
        }
        self.next_silence = now + KEEPALIVE_GAP;
        self.listen(&pcm, now);
        if matches!(self.phase, Phase::Open { .. }) {
            self.recent.push(pcm.clone());
            out.push(Action::Send(Outgoing::Audio(pcm)));
            self.renew_if_due(now, out);
        } else {
            let dropped = self.held.push(pcm);
            if dropped > 0 {
                out.push(Action::AudioDropped(dropped));
            }
        }
    }

    /// A user text message.
    pub fn text(&mut self, text: String, now: Instant, out: &mut Vec<Action>) {
        if self.is_ended() {
            return;
        }
        if !self.policy.text_input {
            out.push(Action::RejectText);
            return;
        }
        if matches!(self.phase, Phase::Open { .. }) {
            self.history.push(Role::User, &text);
            out.push(Action::Send(Outgoing::Text(text)));
            self.renew_if_due(now, out);
        } else {
            self.hold_text(text);
        }
    }

    /// A finished tool call. The stream that asked for it takes it as a tool result; a newer
    /// stream never saw the tool use (history replays only text), so it learns the outcome as
    /// a user message instead, and the conversation can still use it.
    pub fn tool_result(&mut self, result: ToolResult, now: Instant, out: &mut Vec<Action>) {
        if self.is_ended() {
            return;
        }
        let open = matches!(self.phase, Phase::Open { .. });
        if open && self.tools_asked.remove(&result.id) {
            out.push(Action::Send(Outgoing::ToolResult(Box::new(result))));
        } else {
            let status = if result.is_error { "failed" } else { "returned" };
            let text = format!("(The {} tool {status}: {})", result.name, result.content);
            if !self.policy.text_input {
                debug!(
                    tool = result.name,
                    "tool result for an earlier stream dropped: the model takes no text input"
                );
            } else if open {
                self.history.push(Role::User, &text);
                out.push(Action::Send(Outgoing::Text(text)));
            } else {
                self.hold_text(text);
            }
        }
        if open {
            self.renew_if_due(now, out);
        }
    }

    /// The caller heard only `fraction` of the interrupted reply: the history keeps only the
    /// words heard, so a renewed stream does not believe it said the rest.
    pub fn reply_heard(&mut self, fraction: f32) {
        self.history.reply_heard(f64::from(fraction));
    }

    /// One output chunk of the current stream (its JSON bytes).
    pub fn model_event(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Open { .. }) {
            return;
        }
        let mut mapped = Vec::new();
        match wire::parse_output(bytes) {
            Ok(event) => self.mapper.on_event(event, &mut mapped),
            Err(error) => {
                debug!(%error, "unreadable output event skipped");
                return;
            }
        }
        for item in mapped {
            match item {
                Mapped::Output(output) => {
                    match &output {
                        ModelOutput::ToolUse(tool) => {
                            self.tools_asked.insert(tool.id.clone());
                        }
                        ModelOutput::ResponseStart { .. } => self.history.reply_started(),
                        ModelOutput::Interruption => self.history.reply_interrupted(),
                        _ => {}
                    }
                    out.push(Action::Emit(output));
                }
                Mapped::Remember(role, text) => {
                    if role == Role::User {
                        // The model heard the turn: its audio no longer needs replaying.
                        self.recent.clear();
                        self.speech_ended_at = None;
                    }
                    self.history.push(role, &text);
                }
            }
        }
        self.renew_if_due(now, out);
    }

    /// Time passed: keep-alive silence, the end of a backoff, a renewal that is due.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Open { .. } => {
                if now >= self.next_silence {
                    self.next_silence += FRAME;
                    if self.next_silence < now {
                        // The driver fell behind (a busy runtime): no burst to catch up.
                        self.next_silence = now + FRAME;
                    }
                    self.recent.push(self.silence.clone());
                    out.push(Action::Send(Outgoing::Audio(self.silence.clone())));
                }
                self.renew_if_due(now, out);
            }
            Phase::Backoff { reason, attempt, until } if now >= until => {
                self.phase = Phase::Opening { reason, attempt };
                out.push(self.open_action(reason));
            }
            _ => {}
        }
    }

    /// The stream asked for by the last `Open` is open: hand it what was held, in order
    /// (audio first, it came first), then carry on.
    pub fn stream_opened(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Opening { reason, .. } = self.phase else {
            return;
        };
        self.phase = Phase::Open { opened: now };
        self.warned = false;
        self.next_silence = now + KEEPALIVE_GAP;
        if !self.started
            && self.policy.text_input
            && let Some(greeting) = self.policy.greeting.take()
        {
            out.push(Action::Send(Outgoing::Text(greeting)));
        }
        for pcm in self.held.take() {
            // Handed over counts as sent: if this stream fails too, it is replayed again.
            self.recent.push(pcm.clone());
            out.push(Action::Send(Outgoing::HeldAudio(pcm)));
        }
        for text in std::mem::take(&mut self.held_texts) {
            // Only Nova 2 takes text; texts are held only for it (others are refused on arrival).
            if self.policy.text_input {
                self.history.push(Role::User, &text);
                out.push(Action::Send(Outgoing::Text(text)));
            }
        }
        if self.started {
            out.push(Action::Renewed { reason });
            out.push(Action::Emit(ModelOutput::Restarted {
                reason: reason.to_owned(),
                turn_interrupted: std::mem::take(&mut self.turn_interrupted),
            }));
        } else {
            self.started = true;
            out.push(Action::Started);
        }
    }

    /// Opening a stream failed: try again after a backoff, a few times, unless retrying
    /// cannot help.
    pub fn open_failed(&mut self, error: StreamError, now: Instant, out: &mut Vec<Action>) {
        let Phase::Opening { reason, attempt } = self.phase else {
            return;
        };
        let attempt = attempt + 1;
        if error.recovery == Recovery::Fatal || attempt >= OPEN_ATTEMPTS {
            self.give_up(error, out);
            return;
        }
        self.phase = Phase::Backoff {
            reason,
            attempt,
            until: now + FIRST_BACKOFF * 2u32.pow(attempt - 1),
        };
    }

    /// The current stream failed or ended (Bedrock ended it, or a send to it failed).
    /// Limits (age, silence) are renewed from, transient failures retried within the budget.
    pub fn stream_failed(&mut self, error: StreamError, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Open { .. }) {
            return;
        }
        out.push(Action::Abandon {
            why: error.kind.as_str(),
        });
        let recoverable = match error.recovery {
            Recovery::Fatal => false,
            Recovery::Renew => true,
            Recovery::Retry => {
                while self
                    .failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
                {
                    self.failures.pop_front();
                }
                self.failures.push_back(now);
                self.failures.len() <= MAX_FAILURES
            }
        };
        if !recoverable {
            self.give_up(error, out);
            return;
        }
        let reason = match error.recovery {
            Recovery::Renew => error.kind.as_str(),
            _ => "error",
        };
        self.replace(reason, true, out);
    }

    /// The session is gone (or the agent is shutting down): close the stream cleanly.
    pub fn session_ended(&mut self, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Ended => return,
            Phase::Open { .. } | Phase::Opening { .. } => out.push(Action::Close { why: "session_ended" }),
            Phase::Backoff { .. } => {}
        }
        self.phase = Phase::Ended;
        out.push(Action::End);
    }

    /// A planned renewal: the stream is old enough, and nobody is mid-sentence; or it is so
    /// old that it must go now.
    fn renew_if_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Open { opened } = self.phase else {
            return;
        };
        let age = now.saturating_duration_since(opened);
        let renew_after = self.policy.renew_after;
        if !self.warned && age + RESTART_WARNING_LEAD >= renew_after {
            self.warned = true;
            out.push(Action::Emit(ModelOutput::RestartWarning {
                time_left: renew_after.saturating_sub(age),
            }));
        }
        if age < renew_after {
            return;
        }
        let quiet = !self.mapper.in_response()
            && !self.vad.is_speaking()
            && self
                .speech_ended_at
                .is_none_or(|t| now.saturating_duration_since(t) >= TRANSCRIBE_GRACE);
        if quiet || age >= renew_after + RENEW_PATIENCE {
            // At a turn boundary the old stream has answered everything: close it cleanly.
            out.push(Action::Close { why: "renewed" });
            self.replace("proactive", false, out);
        }
    }

    /// Starts opening the next stream. `replay` resends audio the previous stream may not
    /// have processed (it failed), ahead of anything held since.
    fn replace(&mut self, reason: &'static str, replay: bool, out: &mut Vec<Action>) {
        self.turn_interrupted = replay && (self.mapper.in_response() || self.vad.is_speaking());
        let mut mapped = Vec::new();
        self.mapper.reset_stream(&mut mapped);
        for item in mapped {
            if let Mapped::Output(output) = item {
                out.push(Action::Emit(output));
            }
        }
        let recent = self.recent.take();
        if replay {
            let dropped = self.held.prepend(recent);
            if dropped > 0 {
                out.push(Action::AudioDropped(dropped));
            }
        }
        // Results of tool uses asked so far go to the next stream as messages.
        self.tools_asked.clear();
        self.phase = Phase::Opening { reason, attempt: 0 };
        out.push(self.open_action(reason));
    }

    fn open_action(&self, reason: &'static str) -> Action {
        Action::Open {
            reason,
            history: self.history.replay().cloned().collect(),
        }
    }

    fn give_up(&mut self, error: StreamError, out: &mut Vec<Action>) {
        self.phase = Phase::Ended;
        out.push(Action::GiveUp(error));
        out.push(Action::End);
    }

    fn hold_text(&mut self, text: String) {
        if self.held_texts.len() < HELD_TEXTS {
            self.held_texts.push_back(text);
        } else {
            debug!("text input dropped: too many held while a stream opens");
        }
    }

    fn listen(&mut self, pcm: &[u8], now: Instant) {
        self.vad.push(pcm, &mut self.vad_events);
        for event in self.vad_events.drain(..) {
            match event {
                VadEvent::SpeechStarted => self.speech_ended_at = None,
                VadEvent::SpeechEnded { .. } => self.speech_ended_at = Some(now),
            }
        }
    }
}

mod action;
#[cfg(test)]
mod tests;
