//! The simulated conversation as a synchronous state machine: audio and text go in, model
//! outputs come out, and the caller supplies the time. The `Simulated` provider drives it in
//! the session's task; the Bedrock fake drives the same core behind the Nova Sonic wire protocol.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::script;
use super::voice::Utterance;
use crate::audio::vad::{TurnDetector, VadEvent};
use crate::fifo::Fifo;
use crate::model::{ModelOutput, Role, TokenUsage, ToolUse};
use crate::protocol::StopReason;

/// Reply audio is released in 32 ms chunks, the cadence real speech models use.
const CHUNK_MS: u64 = 32;
/// Chunks released ahead of real time, as streaming speech models do, so the client's jitter
/// buffer starts with something in it.
const LEAD_CHUNKS: usize = 3;

/// How the simulator behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Turn detection, spoken replies, transcripts, barge-in.
    Conversation,
    /// Every input audio frame comes straight back as output audio: a model that costs nothing,
    /// for measuring what the agent itself adds.
    Loopback,
}

#[derive(Debug, Clone, Copy)]
pub struct SimulatorConfig {
    pub mode: Mode,
    /// Delay between the end of the user's turn and the reply.
    pub think_time: Duration,
    pub output_sample_rate: u32,
}

struct Reply {
    id: String,
    text: String,
}

enum State {
    Listening,
    Thinking {
        reply: Reply,
        due: Instant,
    },
    Speaking {
        reply: Reply,
        voice: Utterance,
        started: Instant,
        sent: usize,
    },
}

pub struct Conversation {
    config: SimulatorConfig,
    /// Replies waiting for the current one to finish (tool results arriving while speaking).
    queued: VecDeque<Reply>,
    /// Tool calls asked for and not answered yet: id → tool name.
    pending_tools: Vec<(String, String)>,
    tool_calls: u64,
    vad: TurnDetector,
    vad_events: Vec<VadEvent>,
    state: State,
    outputs: Fifo<ModelOutput>,
    spoken_turns: u64,
    responses: u64,
    /// Tokens counted since the last usage report.
    usage: TokenUsage,
}

impl Conversation {
    pub fn new(config: SimulatorConfig) -> Self {
        Self {
            config,
            queued: VecDeque::new(),
            pending_tools: Vec::new(),
            tool_calls: 0,
            vad: TurnDetector::default(),
            vad_events: Vec::new(),
            state: State::Listening,
            outputs: Fifo::new(),
            spoken_turns: 0,
            responses: 0,
            usage: TokenUsage::default(),
        }
    }

    /// Feeds user audio (PCM16LE, 16 kHz mono).
    pub fn on_audio(&mut self, pcm: &Bytes, now: Instant) {
        if self.config.mode == Mode::Loopback {
            self.outputs.push_back(ModelOutput::Audio(pcm.clone()));
            return;
        }
        self.vad.push(pcm, &mut self.vad_events);
        let events = std::mem::take(&mut self.vad_events);
        for event in &events {
            match *event {
                VadEvent::SpeechStarted => self.barge_in(),
                VadEvent::SpeechEnded { speech_ms } => {
                    self.usage.input_speech += u32::try_from(speech_ms / 40).unwrap_or(u32::MAX);
                    let text = script::reply_to_speech(self.spoken_turns, speech_ms);
                    self.spoken_turns += 1;
                    self.user_turn(script::describe_speech(speech_ms), text, now);
                }
            }
        }
        self.vad_events = events;
        self.vad_events.clear();
    }

    /// Speaks first, following a greeting instruction: a reply with no user turn before it.
    pub fn greet(&mut self, instruction: &str, now: Instant) {
        if self.config.mode == Mode::Loopback {
            return;
        }
        self.usage.input_text += u32::try_from(instruction.split_whitespace().count() * 4 / 3 + 1).unwrap_or(u32::MAX);
        self.responses += 1;
        self.queued.push_back(Reply {
            id: format!("response-{}", self.responses),
            text: script::greeting(instruction),
        });
        self.start_queued(now);
    }

    /// Feeds a user text message.
    pub fn on_text(&mut self, text: &str, now: Instant) {
        if self.config.mode == Mode::Loopback {
            self.transcript(Role::Assistant, text.to_owned(), true);
            return;
        }
        self.barge_in();
        self.usage.input_text += u32::try_from(text.split_whitespace().count() * 4 / 3 + 1).unwrap_or(u32::MAX);
        let requests = script::tool_requests(text);
        if requests.is_empty() {
            self.user_turn(text.to_owned(), script::reply_to_text(text), now);
            return;
        }
        // A turn that calls tools: the model asks, and speaks once the results come back.
        self.outputs.push_back(ModelOutput::UserTurnEnd);
        self.transcript(Role::User, text.to_owned(), true);
        for request in requests {
            self.tool_calls += 1;
            let id = format!("tooluse-{}", self.tool_calls);
            self.pending_tools.push((id.clone(), request.name.clone()));
            self.outputs.push_back(ModelOutput::ToolUse(Box::new(ToolUse {
                id,
                name: request.name,
                input: request.input,
            })));
        }
    }

    /// Feeds the result of a tool call asked for earlier; the reply about it is spoken as soon
    /// as nothing else is being said.
    pub fn on_tool_result(&mut self, id: &str, content: &str, is_error: bool, now: Instant) {
        let Some(index) = self.pending_tools.iter().position(|(pending, _)| pending == id) else {
            return;
        };
        let (_, name) = self.pending_tools.remove(index);
        self.responses += 1;
        self.queued.push_back(Reply {
            id: format!("response-{}", self.responses),
            text: script::reply_to_tool(&name, content, is_error),
        });
        self.start_queued(now);
    }

    fn start_queued(&mut self, now: Instant) {
        if matches!(self.state, State::Listening)
            && let Some(reply) = self.queued.pop_front()
        {
            self.state = State::Thinking {
                reply,
                due: now + self.config.think_time,
            };
        }
    }

    /// Advances time: starts due replies and releases reply audio that is due.
    pub fn poll(&mut self, now: Instant) {
        // A reply queued while listening (after an interruption) starts now.
        self.start_queued(now);
        if let State::Thinking { due, .. } = &self.state
            && now >= *due
        {
            let State::Thinking { reply, .. } = std::mem::replace(&mut self.state, State::Listening) else {
                return;
            };
            self.outputs
                .push_back(ModelOutput::ResponseStart { id: reply.id.clone() });
            self.transcript(Role::Assistant, reply.text.clone(), false);
            let voice = Utterance::from_text(&reply.text, self.config.output_sample_rate);
            self.state = State::Speaking {
                reply,
                voice,
                started: now,
                sent: 0,
            };
        }
        let chunk = self.chunk_samples();
        let lead = chunk * LEAD_CHUNKS;
        let rate = f64::from(self.config.output_sample_rate);
        let State::Speaking {
            voice, started, sent, ..
        } = &mut self.state
        else {
            return;
        };
        let due = (now.saturating_duration_since(*started).as_secs_f64() * rate) as usize + lead;
        while *sent < voice.len() && *sent < due {
            let mut pcm = Vec::with_capacity(chunk * 2);
            voice.render(*sent, chunk, &mut pcm);
            *sent += chunk;
            self.outputs.push_back(ModelOutput::Audio(Bytes::from(pcm)));
        }
        if *sent >= voice.len() {
            self.finish_reply(StopReason::Complete, 1.0);
            self.start_queued(now);
        }
    }

    /// When [`poll`](Self::poll) next has something to do, if anything is scheduled.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match &self.state {
            State::Listening if !self.queued.is_empty() => Some(Instant::now()),
            State::Listening => None,
            State::Thinking { due, .. } => Some(*due),
            State::Speaking { started, sent, .. } => {
                let ahead = sent.saturating_sub(self.chunk_samples() * LEAD_CHUNKS) as u64;
                let nanos = (ahead * 1_000_000_000).div_ceil(u64::from(self.config.output_sample_rate));
                Some(*started + Duration::from_nanos(nanos) + Duration::from_micros(1))
            }
        }
    }

    /// Takes the outputs produced so far.
    pub fn drain(&mut self) -> impl Iterator<Item = ModelOutput> + '_ {
        std::iter::from_fn(|| self.next_output())
    }

    /// Takes the oldest output produced so far.
    pub fn next_output(&mut self) -> Option<ModelOutput> {
        self.outputs.pop_front()
    }

    /// How many outputs are waiting to be taken.
    pub fn outputs_waiting(&self) -> usize {
        self.outputs.len()
    }

    pub fn is_user_speaking(&self) -> bool {
        self.vad.is_speaking()
    }

    fn chunk_samples(&self) -> usize {
        (u64::from(self.config.output_sample_rate) * CHUNK_MS / 1000) as usize
    }

    fn user_turn(&mut self, user_text: String, reply_text: String, now: Instant) {
        self.outputs.push_back(ModelOutput::UserTurnEnd);
        self.transcript(Role::User, user_text, true);
        self.responses += 1;
        let reply = Reply {
            id: format!("response-{}", self.responses),
            text: reply_text,
        };
        self.state = State::Thinking {
            reply,
            due: now + self.config.think_time,
        };
    }

    /// The user started talking (or typing) over the agent.
    fn barge_in(&mut self) {
        match &self.state {
            State::Listening => {}
            // Not speaking yet: the pending reply is simply dropped.
            State::Thinking { .. } => self.state = State::Listening,
            State::Speaking { voice, sent, .. } => {
                let fraction = *sent as f64 / voice.len().max(1) as f64;
                self.outputs.push_back(ModelOutput::Interruption);
                self.finish_reply(StopReason::Interrupted, fraction);
            }
        }
    }

    fn finish_reply(&mut self, stop_reason: StopReason, fraction: f64) {
        let State::Speaking { reply, .. } = std::mem::replace(&mut self.state, State::Listening) else {
            return;
        };
        let spoken = script::spoken_prefix(&reply.text, fraction);
        self.usage.output_speech += u32::try_from(spoken.split_whitespace().count() * 2).unwrap_or(u32::MAX);
        if !spoken.is_empty() {
            self.transcript(Role::Assistant, spoken, true);
        }
        self.outputs.push_back(ModelOutput::ResponseComplete {
            id: reply.id,
            stop_reason,
        });
        self.outputs
            .push_back(ModelOutput::Usage(std::mem::take(&mut self.usage)));
    }

    fn transcript(&mut self, role: Role, text: String, is_final: bool) {
        self.outputs.push_back(ModelOutput::Transcript { role, text, is_final });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::vad::tests::{silence, tone};

    fn conversation() -> Conversation {
        Conversation::new(SimulatorConfig {
            mode: Mode::Conversation,
            think_time: Duration::from_millis(200),
            output_sample_rate: 24_000,
        })
    }

    fn feed(c: &mut Conversation, pcm: &[u8], now: Instant) -> Vec<ModelOutput> {
        for frame in pcm.chunks(1024) {
            c.on_audio(&Bytes::copy_from_slice(frame), now);
        }
        c.poll(now);
        c.drain().collect()
    }

    /// Polls at 10 ms steps until nothing is scheduled; returns everything produced. Fails
    /// after a simulated minute: work that stays due is a conversation that never goes idle.
    fn run_until_idle(c: &mut Conversation, mut now: Instant) -> (Vec<ModelOutput>, Instant) {
        let mut out = Vec::new();
        let give_up = now + Duration::from_secs(60);
        while c.next_wakeup().is_some() {
            assert!(now < give_up, "the conversation never went idle");
            now += Duration::from_millis(10);
            c.poll(now);
            out.extend(c.drain());
        }
        (out, now)
    }

    /// The assistant's final transcripts, in order.
    fn assistant_finals(outputs: &[ModelOutput]) -> Vec<&str> {
        outputs
            .iter()
            .filter_map(|o| match o {
                ModelOutput::Transcript {
                    role: Role::Assistant,
                    text,
                    is_final: true,
                } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn kinds(outputs: &[ModelOutput]) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = outputs
            .iter()
            .map(|o| match o {
                ModelOutput::UserTurnEnd => "turn_end",
                ModelOutput::ResponseStart { .. } => "response_start",
                ModelOutput::Audio(_) => "audio",
                ModelOutput::Transcript { role: Role::User, .. } => "user_transcript",
                ModelOutput::Transcript { is_final: false, .. } => "speculative",
                ModelOutput::Transcript { .. } => "final",
                ModelOutput::Interruption => "interruption",
                ModelOutput::ResponseComplete { .. } => "complete",
                ModelOutput::Usage { .. } => "usage",
                ModelOutput::Restarted { .. } => "restarted",
                ModelOutput::RestartWarning { .. } => "restart_warning",
                ModelOutput::Error(_) => "error",
                ModelOutput::ToolUse(_) => "tool_use",
            })
            .collect();
        kinds.dedup();
        kinds
    }

    #[test]
    fn a_spoken_turn_gets_a_spoken_reply() {
        let mut c = conversation();
        let t0 = Instant::now();
        let first = feed(&mut c, &[tone(1200, 8000.0), silence(700)].concat(), t0);
        assert_eq!(kinds(&first), vec!["turn_end", "user_transcript"]);
        assert_eq!(
            first[1],
            ModelOutput::Transcript {
                role: Role::User,
                text: "(1.2 seconds of speech)".into(),
                is_final: true
            }
        );
        let (reply, _) = run_until_idle(&mut c, t0);
        assert_eq!(
            kinds(&reply),
            vec!["response_start", "speculative", "audio", "final", "complete", "usage"]
        );
        let audio_bytes: usize = reply
            .iter()
            .map(|o| if let ModelOutput::Audio(b) = o { b.len() } else { 0 })
            .sum();
        assert!(
            audio_bytes > 24_000 * 2,
            "at least a second of reply audio, got {audio_bytes} bytes"
        );
    }

    #[test]
    fn reply_waits_for_the_think_time() {
        let mut c = conversation();
        let t0 = Instant::now();
        feed(&mut c, &[tone(600, 8000.0), silence(700)].concat(), t0);
        c.poll(t0 + Duration::from_millis(150));
        assert_eq!(c.drain().count(), 0);
        c.poll(t0 + Duration::from_millis(200));
        assert!(matches!(c.drain().next(), Some(ModelOutput::ResponseStart { .. })));
    }

    #[test]
    fn reply_audio_is_paced_in_real_time() {
        let mut c = conversation();
        let t0 = Instant::now();
        feed(&mut c, &[tone(600, 8000.0), silence(700)].concat(), t0);
        let start = t0 + Duration::from_millis(200);
        c.poll(start);
        let at_start = c.drain().filter(|o| matches!(o, ModelOutput::Audio(_))).count();
        assert_eq!(at_start, LEAD_CHUNKS);
        c.poll(start + Duration::from_millis(320));
        let after = c.drain().filter(|o| matches!(o, ModelOutput::Audio(_))).count();
        assert_eq!(after, 10, "320 ms later, ten more 32 ms chunks");
    }

    #[test]
    fn speaking_over_the_reply_interrupts_it() {
        let mut c = conversation();
        let t0 = Instant::now();
        feed(&mut c, &[tone(800, 8000.0), silence(700)].concat(), t0);
        c.poll(t0 + Duration::from_millis(600));
        c.drain().for_each(drop);
        let barge = feed(&mut c, &tone(200, 8000.0), t0 + Duration::from_millis(700));
        assert_eq!(kinds(&barge), vec!["interruption", "final", "complete", "usage"]);
        assert!(barge.contains(&ModelOutput::ResponseComplete {
            id: "response-1".into(),
            stop_reason: StopReason::Interrupted
        }));
        assert!(c.next_wakeup().is_none(), "no more reply audio after the interruption");
    }

    #[test]
    fn a_reply_queued_behind_an_interrupted_one_is_spoken_next() {
        let mut c = conversation();
        let t0 = Instant::now();
        c.on_text("tool:first tool:second", t0);
        let calls: Vec<String> = c
            .drain()
            .filter_map(|o| match o {
                ModelOutput::ToolUse(call) => Some(call.id),
                _ => None,
            })
            .collect();
        c.on_tool_result(&calls[0], "one", false, t0);
        // The first reply starts speaking; the second result's reply waits behind it.
        let speaking_at = t0 + Duration::from_millis(300);
        c.poll(speaking_at);
        c.drain().for_each(drop);
        c.on_tool_result(&calls[1], "two", false, speaking_at);
        let barge = feed(&mut c, &tone(200, 8000.0), speaking_at + Duration::from_millis(100));
        assert!(barge.contains(&ModelOutput::Interruption));
        // Work is due now, and a poll does it: the waiting reply starts instead of staying due
        // forever (a driver polling on `next_wakeup` would spin).
        let (out, _) = run_until_idle(&mut c, speaking_at + Duration::from_millis(100));
        let finals = assistant_finals(&out);
        assert_eq!(finals.len(), 1, "the waiting reply, spoken in full: {finals:?}");
        assert!(finals[0].contains("second tool says: two"), "{finals:?}");
        assert!(c.next_wakeup().is_none());
    }

    #[test]
    fn text_input_gets_a_reply_quoting_it() {
        let mut c = conversation();
        let t0 = Instant::now();
        c.on_text("what time is it", t0);
        let (out, _) = run_until_idle(&mut c, t0);
        assert!(out.contains(&ModelOutput::Transcript {
            role: Role::User,
            text: "what time is it".into(),
            is_final: true
        }));
        assert!(out.iter().any(
            |o| matches!(o, ModelOutput::Transcript { role: Role::Assistant, text, is_final: true }
            if text.contains("what time is it"))
        ));
    }

    #[test]
    fn text_can_ask_for_tools_and_their_results_are_spoken() {
        let mut c = conversation();
        let t0 = Instant::now();
        c.on_text(r#"tool:get_weather {"city": "Oslo"} tool:slow"#, t0);
        let asked: Vec<_> = c.drain().collect();
        let calls: Vec<(String, String)> = asked
            .iter()
            .filter_map(|o| match o {
                ModelOutput::ToolUse(call) => Some((call.id.clone(), call.name.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
            vec!["get_weather", "slow"]
        );
        assert!(asked.contains(&ModelOutput::ToolUse(Box::new(ToolUse {
            id: calls[0].0.clone(),
            name: "get_weather".into(),
            input: serde_json::json!({"city": "Oslo"})
        }))));
        c.on_tool_result(&calls[1].0, "done slowly", false, t0);
        c.on_tool_result(&calls[0].0, "{\"temp\": 3}", false, t0);
        let (out, _) = run_until_idle(&mut c, t0);
        let finals = assistant_finals(&out);
        assert_eq!(finals.len(), 2, "one spoken reply per result: {finals:?}");
        assert!(finals[0].contains("slow tool says: done slowly"));
        assert!(finals[1].contains("get_weather tool says"));
    }

    #[test]
    fn usage_is_reported_per_turn_by_modality() {
        let mut c = conversation();
        let t0 = Instant::now();
        c.on_text("one", t0);
        let (first, t1) = run_until_idle(&mut c, t0);
        c.on_text("two", t1);
        let (second, _) = run_until_idle(&mut c, t1);
        let usage = |v: &[ModelOutput]| {
            v.iter()
                .find_map(|o| match o {
                    ModelOutput::Usage(usage) => Some(*usage),
                    _ => None,
                })
                .expect("a usage report")
        };
        for turn in [usage(&first), usage(&second)] {
            assert!(turn.input_text > 0 && turn.output_speech > 0, "{turn:?}");
            assert_eq!(turn.input_speech, 0, "typed turns: {turn:?}");
        }
    }

    #[test]
    fn same_input_same_conversation() {
        let run = || {
            let mut c = conversation();
            let t0 = Instant::now();
            let mut out = feed(&mut c, &[tone(900, 7000.0), silence(700)].concat(), t0);
            out.extend(run_until_idle(&mut c, t0).0);
            out
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn loopback_returns_input_audio_immediately() {
        let mut c = Conversation::new(SimulatorConfig {
            mode: Mode::Loopback,
            think_time: Duration::ZERO,
            output_sample_rate: 24_000,
        });
        let frame = Bytes::from_static(&[1, 2, 3, 4]);
        c.on_audio(&frame, Instant::now());
        assert_eq!(c.drain().collect::<Vec<_>>(), vec![ModelOutput::Audio(frame)]);
    }
}
