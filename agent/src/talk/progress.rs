//! Following a talk run from the agent's events: transcripts and notices are printed as they
//! arrive, reply audio is collected, and the reply to the input is timed. Synchronous, with the
//! time of every event passed in, so it is tested without sockets or clocks.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::Value;

use super::TalkError;

/// Reply audio kept for the output file, in seconds; beyond this it is dropped (and said so).
const MAX_REPLY_SECONDS: usize = 600;

/// The agent events talk acts on (see docs/protocol.md); others are ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum AgentEvent {
    #[serde(rename = "bidi_connection_start")]
    ConnectionStart {
        connection_id: String,
        model: String,
        output_sample_rate: u32,
        /// Resumes this conversation after a drop (`?resume=`).
        #[serde(default)]
        resume_token: Option<String>,
        #[serde(default)]
        resumed: bool,
        /// Whether another replica can resume the conversation (a shared store).
        #[serde(default)]
        resume_anywhere: bool,
    },
    #[serde(rename = "bidi_response_start")]
    ResponseStart {},
    #[serde(rename = "bidi_audio_stream")]
    AudioStream { audio: String },
    #[serde(rename = "bidi_transcript_stream")]
    Transcript {
        role: String,
        text: String,
        #[serde(default = "yes")]
        is_final: bool,
    },
    #[serde(rename = "bidi_interruption")]
    Interruption {},
    #[serde(rename = "bidi_response_complete")]
    ResponseComplete {
        #[serde(default)]
        stop_reason: String,
    },
    #[serde(rename = "tool_use_stream")]
    ToolUse { current_tool_use: Value },
    #[serde(rename = "tool_result")]
    ToolResult { tool_result: Value },
    #[serde(rename = "bidi_connection_restart")]
    ConnectionRestart {
        #[serde(default)]
        reason: String,
    },
    #[serde(rename = "bidi_connection_close")]
    ConnectionClose {
        #[serde(default)]
        reason: String,
        /// The agent ended the session itself and the conversation may go on with this.
        #[serde(default)]
        resume_token: Option<String>,
    },
    #[serde(rename = "bidi_error")]
    Error {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    },
    #[serde(other)]
    Other,
}

fn yes() -> bool {
    true
}

impl AgentEvent {
    /// The event in a text frame; `None` for text that is not an event talk understands.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// Whether the run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// The reply to the input is complete.
    Done,
}

/// How fast the reply to the input came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// End of the input's speech (or the typed message) → first reply audio.
    pub first_audio: Duration,
    /// End of the input's speech → reply complete.
    pub turn: Duration,
}

#[derive(Debug)]
struct Reply {
    /// Started after the input ended: this is the answer talk waits for.
    answers_input: bool,
    first_audio: Option<Instant>,
}

pub struct Progress<W: Write> {
    /// A resume token from `bidi_connection_close`.
    handover: Option<String>,
    out: W,
    /// Printed times count from here (the start of the input).
    origin: Instant,
    output_rate: u32,
    input_end: Option<Instant>,
    reply: Option<Reply>,
    first_audio: Option<Instant>,
    timings: Option<Timings>,
    audio: Vec<i16>,
    dropped_samples: usize,
    close_reason: Option<String>,
    last_error: Option<String>,
}

impl<W: Write> Progress<W> {
    pub fn new(out: W, origin: Instant, output_rate: u32) -> Self {
        Self {
            handover: None,
            out,
            origin,
            output_rate,
            input_end: None,
            reply: None,
            first_audio: None,
            timings: None,
            audio: Vec::new(),
            dropped_samples: 0,
            close_reason: None,
            last_error: None,
        }
    }

    /// The input's speech (or the typed message) ended: the next reply to start answers it.
    pub fn input_ended(&mut self, at: Instant) {
        self.input_end.get_or_insert(at);
    }

    /// A text frame from the agent.
    pub fn on_text(&mut self, text: &str, at: Instant) -> Result<Step, TalkError> {
        let Some(event) = AgentEvent::parse(text) else {
            return Ok(Step::Continue);
        };
        match event {
            AgentEvent::ResponseStart {} => {
                self.reply = Some(self.new_reply(at));
            }
            AgentEvent::AudioStream { audio } => {
                if let Ok(pcm) = BASE64.decode(audio) {
                    self.on_audio(&pcm, at);
                }
            }
            AgentEvent::Transcript { role, text, is_final } => {
                let label = if is_final { role } else { format!("{role} (preview)") };
                self.print(at, &format!("{label}: {text}"));
            }
            AgentEvent::Interruption {} => self.print(at, "interrupted by user speech"),
            AgentEvent::ResponseComplete { stop_reason } => return self.on_complete(&stop_reason, at),
            AgentEvent::ToolUse { current_tool_use } => {
                let name = current_tool_use["name"].as_str().unwrap_or("?");
                self.print(at, &format!("tool call: {name} {}", current_tool_use["input"]));
            }
            AgentEvent::ToolResult { tool_result } => {
                let name = tool_result["name"].as_str().unwrap_or("?");
                let status = tool_result["status"].as_str().unwrap_or("?");
                self.print(at, &format!("tool result: {name} {status}"));
            }
            AgentEvent::ConnectionRestart { reason } => {
                self.print(at, &format!("the agent renewed its model stream ({reason})"));
            }
            AgentEvent::ConnectionClose { reason, resume_token } => {
                self.close_reason = Some(reason);
                if resume_token.is_some() {
                    self.handover = resume_token;
                }
            }
            AgentEvent::Error { code, message } => {
                self.print(at, &format!("agent error {code}: {message}"));
                self.last_error = Some(format!("{code}: {message}"));
            }
            AgentEvent::ConnectionStart { .. } | AgentEvent::Other => {}
        }
        Ok(Step::Continue)
    }

    /// Reply audio: PCM16LE mono at the output rate.
    pub fn on_audio(&mut self, pcm: &[u8], at: Instant) {
        if self.reply.is_none() {
            self.reply = Some(self.new_reply(at));
        }
        if let Some(reply) = &mut self.reply
            && reply.first_audio.is_none()
        {
            reply.first_audio = Some(at);
            if reply.answers_input && self.first_audio.is_none() {
                self.first_audio = Some(at);
            }
        }
        let room = (MAX_REPLY_SECONDS * self.output_rate as usize).saturating_sub(self.audio.len());
        let samples = pcm.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]));
        let before = self.audio.len();
        self.audio.extend(samples.take(room));
        self.dropped_samples += pcm.len() / 2 - (self.audio.len() - before);
    }

    fn new_reply(&self, at: Instant) -> Reply {
        Reply {
            answers_input: self.input_end.is_some_and(|end| at >= end),
            first_audio: None,
        }
    }

    fn on_complete(&mut self, stop_reason: &str, at: Instant) -> Result<Step, TalkError> {
        let reply = self.reply.take();
        if stop_reason != "complete" {
            self.print(at, &format!("reply ended: {stop_reason}"));
        }
        let answers_input = reply.is_some_and(|r| r.answers_input);
        match stop_reason {
            "complete" if answers_input => {
                if let (Some(end), Some(first_audio)) = (self.input_end, self.first_audio) {
                    self.timings = Some(Timings {
                        first_audio: first_audio.saturating_duration_since(end),
                        turn: at.saturating_duration_since(end),
                    });
                }
                Ok(Step::Done)
            }
            "error" if answers_input => Err(TalkError::ReplyFailed(
                self.last_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default(),
            )),
            _ => Ok(Step::Continue),
        }
    }

    fn print(&mut self, at: Instant, line: &str) {
        let seconds = at.saturating_duration_since(self.origin).as_secs_f64();
        // Printing is best effort: a closed stdout must not stop the conversation.
        let _ = writeln!(self.out, "[{seconds:6.2} s] {line}");
    }

    /// Timings of the reply to the input, once it is complete (`None` for a reply without audio).
    pub fn timings(&self) -> Option<Timings> {
        self.timings
    }

    /// All reply audio received, PCM16 mono at the output rate.
    pub fn reply_audio(&self) -> &[i16] {
        &self.audio
    }

    /// Reply audio beyond the size limit that was not kept.
    pub fn dropped_samples(&self) -> usize {
        self.dropped_samples
    }

    /// What the agent said about why it closed: its `bidi_connection_close` reason and last
    /// error, as " (reason; code: message)".
    /// The token a close handed over, if the agent ended the session with one.
    pub fn take_handover(&mut self) -> Option<String> {
        self.handover.take()
    }

    pub fn close_detail(&self) -> String {
        let parts: Vec<&str> = [self.close_reason.as_deref(), self.last_error.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join("; "))
        }
    }

    /// A line about the connection, timed like the events.
    pub fn note(&mut self, line: &str) {
        self.print(Instant::now(), line);
    }

    /// Where lines go (for messages outside the conversation, like a new connection).
    pub fn output(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn into_output(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    fn event(progress: &mut Progress<Vec<u8>>, value: Value, time: Instant) -> Step {
        progress.on_text(&value.to_string(), time).expect("no failure")
    }

    fn printed(progress: Progress<Vec<u8>>) -> String {
        String::from_utf8(progress.into_output()).expect("utf-8")
    }

    #[test]
    fn the_reply_after_the_input_ends_the_run_with_its_timings() {
        let t0 = Instant::now();
        let mut p = Progress::new(Vec::new(), t0, 24_000);
        p.input_ended(at(t0, 2_000));
        let user = json!({"type": "bidi_transcript_stream", "role": "user", "text": "(1.9 seconds of speech)", "is_final": true});
        assert_eq!(event(&mut p, user, at(t0, 2_600)), Step::Continue);
        event(
            &mut p,
            json!({"type": "bidi_response_start", "response_id": "r1"}),
            at(t0, 2_850),
        );
        p.on_audio(&[0x10, 0x00, 0x20, 0x00], at(t0, 2_900));
        let done = event(
            &mut p,
            json!({"type": "bidi_response_complete", "stop_reason": "complete"}),
            at(t0, 6_000),
        );
        assert_eq!(done, Step::Done);
        assert_eq!(
            p.timings(),
            Some(Timings {
                first_audio: Duration::from_millis(900),
                turn: Duration::from_millis(4_000)
            })
        );
        assert_eq!(p.reply_audio(), &[16, 32]);
        assert_eq!(printed(p), "[  2.60 s] user: (1.9 seconds of speech)\n");
    }

    #[test]
    fn replies_to_earlier_turns_and_interrupted_replies_do_not_end_the_run() {
        let t0 = Instant::now();
        let mut p = Progress::new(Vec::new(), t0, 24_000);
        event(&mut p, json!({"type": "bidi_response_start"}), at(t0, 1_000));
        let complete = json!({"type": "bidi_response_complete", "stop_reason": "complete"});
        assert_eq!(event(&mut p, complete.clone(), at(t0, 1_500)), Step::Continue);
        p.input_ended(at(t0, 2_000));
        event(&mut p, json!({"type": "bidi_response_start"}), at(t0, 2_500));
        event(
            &mut p,
            json!({"type": "bidi_interruption", "reason": "user_speech"}),
            at(t0, 2_600),
        );
        let interrupted = json!({"type": "bidi_response_complete", "stop_reason": "interrupted"});
        assert_eq!(event(&mut p, interrupted, at(t0, 2_700)), Step::Continue);
        event(&mut p, json!({"type": "bidi_response_start"}), at(t0, 3_000));
        assert_eq!(event(&mut p, complete, at(t0, 4_000)), Step::Done);
        assert_eq!(p.timings(), None, "no audio, no time to first audio");
        let out = printed(p);
        assert!(out.contains("interrupted by user speech"), "{out}");
        assert!(out.contains("reply ended: interrupted"), "{out}");
    }

    #[test]
    fn previews_and_finals_are_labelled() {
        let t0 = Instant::now();
        let mut p = Progress::new(Vec::new(), t0, 24_000);
        let preview = json!({"type": "bidi_transcript_stream", "role": "assistant", "text": "Hi.", "is_final": false});
        let said = json!({"type": "bidi_transcript_stream", "role": "assistant", "text": "Hi.", "is_final": true});
        event(&mut p, preview, at(t0, 10));
        event(&mut p, said, at(t0, 1_234));
        assert_eq!(
            printed(p),
            "[  0.01 s] assistant (preview): Hi.\n[  1.23 s] assistant: Hi.\n"
        );
    }

    #[test]
    fn a_failed_reply_reports_the_agent_error() {
        let t0 = Instant::now();
        let mut p = Progress::new(Vec::new(), t0, 24_000);
        p.input_ended(t0);
        event(&mut p, json!({"type": "bidi_response_start"}), at(t0, 100));
        event(
            &mut p,
            json!({"type": "bidi_error", "code": "model_error", "message": "boom"}),
            at(t0, 200),
        );
        let failed = p
            .on_text(
                &json!({"type": "bidi_response_complete", "stop_reason": "error"}).to_string(),
                at(t0, 300),
            )
            .expect_err("failed reply");
        assert_eq!(failed.to_string(), "the reply ended with an error (model_error: boom)");
    }

    #[test]
    fn close_detail_names_the_reason_and_last_error() {
        let t0 = Instant::now();
        let mut p = Progress::new(Vec::new(), t0, 24_000);
        assert_eq!(p.close_detail(), "");
        event(
            &mut p,
            json!({"type": "bidi_connection_close", "connection_id": "c", "reason": "draining"}),
            t0,
        );
        assert_eq!(p.close_detail(), " (draining)");
    }

    #[test]
    fn json_audio_is_collected_like_binary_audio() {
        let t0 = Instant::now();
        let mut p = Progress::new(Vec::new(), t0, 24_000);
        let audio = BASE64.encode([1u8, 0, 2, 0]);
        event(
            &mut p,
            json!({"type": "bidi_audio_stream", "audio": audio, "format": "pcm", "sample_rate": 24000, "channels": 1}),
            t0,
        );
        assert_eq!(p.reply_audio(), &[1, 2]);
        assert_eq!(p.dropped_samples(), 0);
    }
}
