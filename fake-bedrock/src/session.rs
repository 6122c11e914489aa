//! One fake Nova Sonic stream: checks the input the way the real service does (event order,
//! prompt and content names, the interactive flag, text limits, timeouts) and answers with the
//! same simulation core as the `Simulated` provider, in Nova's output event format.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::record::StreamRecord;
use voice_agent::audio::vad::{TurnDetector, VadEvent};
use voice_agent::model::simulated::{Conversation, Mode, SimulatorConfig};
use voice_agent::model::{ModelOutput, Role, TokenUsage, ToolUse};

/// Longest accepted `textInput` content (bytes).
const MAX_TEXT_INPUT: usize = 1024;
/// Longest accepted history replay (bytes of text).
const MAX_HISTORY: usize = 48 * 1024;

/// The limits one stream enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The stream ends with `modelTimeoutException` at this age (8 minutes on Bedrock).
    pub max_age: Duration,
    /// No input event for this long ends it with "Timed out waiting for input events".
    pub input_timeout: Duration,
    /// No speech for this long ends it with the silence error (InternalErrorCode=531).
    pub silence_timeout: Duration,
    /// The simulated model's pause before replying.
    pub think_time: Duration,
    /// Streams one HTTP/2 connection may carry at once (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// further requests on that connection wait for a stream to end.
    pub max_concurrent_streams: u32,
    /// How long a stream takes to end its response once the client has ended its input, as
    /// Bedrock takes a moment to finish a session. A client that does not wait for the end
    /// leaves the stream's `response_completed` false.
    pub close_delay: Duration,
    /// Writes [`REPLY_STAMP_MAGIC`] and the wall-clock time of sending into the first 16 bytes
    /// of each reply's first audio chunk (see [`reply_stamp`]), so a client behind the agent
    /// can measure the agent's share of the reply latency: the fake's first reply byte to the
    /// client's. Off by default: the stamp is 8 samples of noise in the reply.
    pub stamp_replies: bool,
}

/// First 8 bytes of a stamped reply chunk; the next 8 are the send time in nanoseconds since
/// the Unix epoch (u64 LE). Wall-clock time, so a client on the same machine reads the same
/// clock.
pub const REPLY_STAMP_MAGIC: &[u8; 8] = b"FAKESTMP";
/// Bytes a reply stamp takes at the start of the chunk.
pub const REPLY_STAMP_BYTES: usize = 16;

/// The send time a stamped reply chunk carries (nanoseconds since the Unix epoch), if it is one.
pub fn reply_stamp(pcm: &[u8]) -> Option<u64> {
    let (magic, rest) = pcm.split_first_chunk::<8>()?;
    let (sent, _) = rest.split_first_chunk::<8>()?;
    (magic == REPLY_STAMP_MAGIC).then(|| u64::from_le_bytes(*sent))
}

/// `pcm` with a reply stamp of now in its first bytes (unchanged if it is shorter than one).
fn stamped(pcm: &[u8]) -> Vec<u8> {
    let mut pcm = pcm.to_vec();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    if let Some(head) = pcm.get_mut(..REPLY_STAMP_BYTES) {
        head[..8].copy_from_slice(REPLY_STAMP_MAGIC);
        head[8..].copy_from_slice(&now.to_le_bytes());
    }
    pcm
}

/// An error the stream answers with, ending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub kind: &'static str,
    pub message: String,
}

impl Exception {
    fn validation(message: impl Into<String>) -> Self {
        Self {
            kind: "validationException",
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SessionStart,
    PromptStart,
    /// System prompt and history may come.
    Setup,
    /// The audio block is open: the conversation is live.
    Live,
    /// promptEnd was received.
    Closing,
}

#[derive(Debug, Clone)]
struct OpenContent {
    kind: String,
    role: String,
    interactive: bool,
    text: String,
    tool_use_id: Option<String>,
}

pub struct FakeStream {
    limits: Limits,
    phase: Phase,
    prompt: String,
    contents: HashMap<String, OpenContent>,
    audio_content: Option<String>,
    conversation: Option<Conversation>,
    output_rate: u32,
    /// Tool names offered in promptStart.
    tools: Vec<String>,
    opened: Instant,
    last_input: Instant,
    last_speech: Instant,
    vad: TurnDetector,
    vad_events: Vec<VadEvent>,
    history_bytes: usize,
    /// The system prompt, the first content of every stream, was received.
    saw_system: bool,
    saw_user_history: bool,
    /// Output bookkeeping.
    completion: String,
    completion_started: bool,
    next_content: u64,
    audio_out: Option<String>,
    interrupted: bool,
    /// The stream's token counts so far (usage events carry running totals too).
    usage: TokenUsage,
    pub record: StreamRecord,
}

impl FakeStream {
    pub fn new(limits: Limits, record: StreamRecord, now: Instant) -> Self {
        Self {
            limits,
            phase: Phase::SessionStart,
            prompt: String::new(),
            contents: HashMap::new(),
            audio_content: None,
            conversation: None,
            output_rate: 24_000,
            tools: Vec::new(),
            opened: now,
            last_input: now,
            last_speech: now,
            vad: TurnDetector::default(),
            vad_events: Vec::new(),
            history_bytes: 0,
            saw_system: false,
            saw_user_history: false,
            completion: uuid::Uuid::new_v4().to_string(),
            completion_started: false,
            next_content: 0,
            audio_out: None,
            interrupted: false,
            usage: TokenUsage::default(),
            record,
        }
    }

    /// One input event (Nova JSON). Returns output events to send.
    pub fn on_event(&mut self, json: &[u8], now: Instant, out: &mut Vec<String>) -> Result<(), Exception> {
        self.last_input = now;
        let value: Value =
            serde_json::from_slice(json).map_err(|e| Exception::validation(format!("invalid JSON: {e}")))?;
        let Some(Value::Object(event)) = value.get("event") else {
            return Err(Exception::validation("missing \"event\" object"));
        };
        let Some((name, body)) = event.iter().next() else {
            return Err(Exception::validation("empty event"));
        };
        self.record.count_event(name);
        match (self.phase, name.as_str()) {
            (Phase::SessionStart, "sessionStart") => {
                self.phase = Phase::PromptStart;
                Ok(())
            }
            (Phase::SessionStart, other) => Err(Exception::validation(format!(
                "expected sessionStart first, got {other}"
            ))),
            (Phase::PromptStart, "promptStart") => self.prompt_start(body),
            (Phase::PromptStart, other) => Err(Exception::validation(format!("expected promptStart, got {other}"))),
            // Nova documents `sessionEnd` as the last input event. Strands (1.62 and earlier) sends
            // an undocumented `connectionEnd` instead; Strands holds conversations with Bedrock,
            // so the service does not fail a stream for it. Both end the input after promptEnd.
            (_, "sessionEnd" | "connectionEnd") => {
                if self.phase != Phase::Closing {
                    return Err(Exception::validation(format!("{name} before promptEnd")));
                }
                Ok(())
            }
            (Phase::Closing, other) => Err(Exception::validation(format!("{other} after promptEnd"))),
            (_, "promptEnd") => {
                self.check_prompt(body)?;
                if let Some(open) = self.contents.keys().next() {
                    return Err(Exception::validation(format!("promptEnd while content {open} is open")));
                }
                self.phase = Phase::Closing;
                self.end_output(out);
                Ok(())
            }
            (_, "contentStart") => self.content_start(body),
            (_, "textInput") => self.text_input(body),
            (_, "audioInput") => self.audio_input(body, now, out),
            (_, "toolResult") => self.tool_result(body),
            (_, "contentEnd") => self.content_end(body, now, out),
            (_, other) => Err(Exception::validation(format!("unknown input event {other}"))),
        }
    }

    /// Advances time: releases due reply audio, enforces the stream's limits.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<String>) -> Result<(), Exception> {
        if now.duration_since(self.opened) >= self.limits.max_age {
            return Err(Exception {
                kind: "modelTimeoutException",
                message: "Model has timed out in processing the request. Try your request again.".into(),
            });
        }
        if self.phase != Phase::Closing && now.duration_since(self.last_input) >= self.limits.input_timeout {
            return Err(Exception::validation("Timed out waiting for input events"));
        }
        if self.phase == Phase::Live && now.duration_since(self.last_speech) >= self.limits.silence_timeout {
            return Err(Exception::validation(
                "The user has been silent for too long. InternalErrorCode=531",
            ));
        }
        if let Some(conversation) = &mut self.conversation {
            conversation.poll(now);
            let outputs: Vec<ModelOutput> = conversation.drain().collect();
            for output in outputs {
                self.emit(output, out);
            }
        }
        Ok(())
    }

    /// When [`poll`](Self::poll) must run next.
    pub fn next_wakeup(&self) -> Instant {
        let limits = [
            self.opened + self.limits.max_age,
            self.last_input + self.limits.input_timeout,
            self.last_speech + self.limits.silence_timeout,
        ];
        let limit = limits.into_iter().min().unwrap_or(self.opened + self.limits.max_age);
        match self.conversation.as_ref().and_then(Conversation::next_wakeup) {
            Some(t) => t.min(limit),
            None => limit,
        }
    }

    fn check_prompt(&self, body: &Value) -> Result<(), Exception> {
        match body.get("promptName").and_then(Value::as_str) {
            Some(name) if name == self.prompt => Ok(()),
            Some(name) => Err(Exception::validation(format!("unknown promptName {name}"))),
            None => Err(Exception::validation("missing promptName")),
        }
    }

    fn prompt_start(&mut self, body: &Value) -> Result<(), Exception> {
        let prompt = body.get("promptName").and_then(Value::as_str).unwrap_or_default();
        if prompt.is_empty() {
            return Err(Exception::validation("promptStart needs a promptName"));
        }
        let audio = body
            .get("audioOutputConfiguration")
            .ok_or_else(|| Exception::validation("promptStart needs audioOutputConfiguration"))?;
        let rate = audio.get("sampleRateHertz").and_then(Value::as_u64).unwrap_or(0);
        if ![8000, 16000, 24000].contains(&rate) {
            return Err(Exception::validation(format!(
                "unsupported output sampleRateHertz {rate}"
            )));
        }
        let voice = audio.get("voiceId").and_then(Value::as_str).unwrap_or_default();
        if voice.is_empty() {
            return Err(Exception::validation("Received invalid voiceId"));
        }
        self.record.voice(voice);
        self.prompt = prompt.to_owned();
        self.output_rate = rate as u32;
        if let Some(tools) = body.pointer("/toolConfiguration/tools").and_then(Value::as_array) {
            for tool in tools {
                let spec = tool
                    .get("toolSpec")
                    .ok_or_else(|| Exception::validation("tools need a toolSpec"))?;
                let name = spec.get("name").and_then(Value::as_str).unwrap_or_default();
                if spec.pointer("/inputSchema/json").and_then(Value::as_str).is_none() {
                    return Err(Exception::validation(format!(
                        "toolSpec {name}: inputSchema.json must be a JSON string"
                    )));
                }
                self.tools.push(name.to_owned());
            }
        }
        self.phase = Phase::Setup;
        Ok(())
    }

    fn content_start(&mut self, body: &Value) -> Result<(), Exception> {
        self.check_prompt(body)?;
        let name = body
            .get("contentName")
            .and_then(Value::as_str)
            .ok_or_else(|| Exception::validation("contentStart needs a contentName"))?;
        if self.contents.contains_key(name) {
            return Err(Exception::validation(format!("content {name} is already open")));
        }
        let kind = body.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        let role = body.get("role").and_then(Value::as_str).unwrap_or_default().to_owned();
        let interactive = body.get("interactive").and_then(Value::as_bool).unwrap_or(false);
        // Nova's documented order: the system prompt, then any history, then the live contents.
        if !self.saw_system {
            if kind != "TEXT" || role != "SYSTEM" {
                return Err(Exception::validation(format!(
                    "the first content must be the system prompt (TEXT with role SYSTEM), not {kind} {role}"
                )));
            }
            self.saw_system = true;
        }
        match kind.as_str() {
            "AUDIO" => {
                if !interactive {
                    return Err(Exception::validation("audio input content must be interactive"));
                }
                if self.audio_content.is_some() {
                    return Err(Exception::validation("only one audio content may be open"));
                }
                let rate = body
                    .pointer("/audioInputConfiguration/sampleRateHertz")
                    .and_then(Value::as_u64);
                if rate != Some(16000) && rate != Some(8000) && rate != Some(24000) {
                    return Err(Exception::validation(
                        "audioInputConfiguration.sampleRateHertz is missing or unsupported",
                    ));
                }
                self.audio_content = Some(name.to_owned());
                self.phase = Phase::Live;
                self.last_speech = self.last_input;
                self.conversation = Some(Conversation::new(SimulatorConfig {
                    mode: Mode::Conversation,
                    think_time: self.limits.think_time,
                    output_sample_rate: self.output_rate,
                }));
            }
            "TEXT" => {
                if !["SYSTEM", "USER", "ASSISTANT", "SYSTEM_SPEECH"].contains(&role.as_str()) {
                    return Err(Exception::validation(format!("invalid role {role} for TEXT content")));
                }
                if !interactive && self.phase == Phase::Live && role != "SYSTEM" {
                    return Err(Exception::validation(
                        "history can only be sent before audio streaming begins",
                    ));
                }
                if !interactive && role == "ASSISTANT" && !self.saw_user_history {
                    return Err(Exception::validation("chat history must start with a USER message"));
                }
                if !interactive && role == "USER" {
                    self.saw_user_history = true;
                }
            }
            "TOOL" => {
                if body
                    .pointer("/toolResultInputConfiguration/toolUseId")
                    .and_then(Value::as_str)
                    .is_none()
                {
                    return Err(Exception::validation(
                        "tool content needs toolResultInputConfiguration.toolUseId",
                    ));
                }
            }
            other => {
                return Err(Exception::validation(format!("invalid content type {other:?}")));
            }
        }
        let tool_use_id = body
            .pointer("/toolResultInputConfiguration/toolUseId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.contents.insert(
            name.to_owned(),
            OpenContent {
                kind,
                role,
                interactive,
                text: String::new(),
                tool_use_id,
            },
        );
        Ok(())
    }

    fn open_content(&mut self, body: &Value, kind: &str) -> Result<&mut OpenContent, Exception> {
        self.check_prompt(body)?;
        let name = body.get("contentName").and_then(Value::as_str).unwrap_or_default();
        match self.contents.get_mut(name) {
            Some(content) if content.kind == kind => Ok(content),
            Some(content) => Err(Exception::validation(format!(
                "content {name} is {}, not {kind}",
                content.kind
            ))),
            None => Err(Exception::validation(format!("content {name:?} is not open"))),
        }
    }

    fn text_input(&mut self, body: &Value) -> Result<(), Exception> {
        let text = body
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if text.len() > MAX_TEXT_INPUT {
            return Err(Exception::validation(format!(
                "textInput content is {} bytes; the limit is {MAX_TEXT_INPUT}",
                text.len()
            )));
        }
        let content = self.open_content(body, "TEXT")?;
        content.text.push_str(&text);
        Ok(())
    }

    fn audio_input(&mut self, body: &Value, now: Instant, out: &mut Vec<String>) -> Result<(), Exception> {
        self.open_content(body, "AUDIO")?;
        let pcm = body
            .get("content")
            .and_then(Value::as_str)
            .and_then(|b| BASE64.decode(b).ok())
            .ok_or_else(|| Exception::validation("audioInput content is not base64"))?;
        self.record.audio(&pcm);
        self.vad.push(&pcm, &mut self.vad_events);
        if !self.vad_events.is_empty() || self.vad.is_speaking() {
            self.last_speech = now;
        }
        self.vad_events.clear();
        if let Some(conversation) = &mut self.conversation {
            conversation.on_audio(&Bytes::from(pcm), now);
        }
        self.poll(now, out)
    }

    fn tool_result(&mut self, body: &Value) -> Result<(), Exception> {
        let result = body
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let content = self.open_content(body, "TOOL")?;
        content.text.push_str(&result);
        self.record.tool_result(result);
        Ok(())
    }

    fn content_end(&mut self, body: &Value, now: Instant, out: &mut Vec<String>) -> Result<(), Exception> {
        self.check_prompt(body)?;
        let name = body.get("contentName").and_then(Value::as_str).unwrap_or_default();
        let Some(content) = self.contents.remove(name) else {
            return Err(Exception::validation(format!(
                "contentEnd for {name:?}, which is not open"
            )));
        };
        match (content.kind.as_str(), content.role.as_str(), content.interactive) {
            ("AUDIO", _, _) => self.audio_content = None,
            ("TOOL", _, _) => {
                let is_error = serde_json::from_str::<Value>(&content.text).is_ok_and(|v| v.get("error").is_some());
                if let (Some(conversation), Some(id)) = (&mut self.conversation, &content.tool_use_id) {
                    conversation.on_tool_result(id, &content.text, is_error, now);
                }
                return self.poll(now, out);
            }
            ("TEXT", "SYSTEM", _) => self.record.system_prompt(content.text),
            ("TEXT", "USER", true) => {
                self.record.text_input(content.text.clone());
                self.last_speech = now;
                if let Some(conversation) = &mut self.conversation {
                    conversation.on_text(&content.text, now);
                }
                return self.poll(now, out);
            }
            ("TEXT", role, false) => {
                self.history_bytes += content.text.len();
                if self.history_bytes > MAX_HISTORY {
                    return Err(Exception::validation("chat history exceeds the size limit"));
                }
                self.record.history(role, content.text);
            }
            _ => {}
        }
        Ok(())
    }

    /// Turns a simulator output into Nova output events.
    fn emit(&mut self, output: ModelOutput, out: &mut Vec<String>) {
        if !self.completion_started {
            self.completion_started = true;
            out.push(self.event("completionStart", json!({})));
        }
        match output {
            ModelOutput::Transcript {
                role: Role::User, text, ..
            } => {
                self.text_content("USER", "FINAL", &text, "END_TURN", out);
            }
            ModelOutput::Transcript {
                role: Role::Assistant,
                text,
                is_final: false,
            } => {
                self.interrupted = false;
                self.text_content("ASSISTANT", "SPECULATIVE", &text, "PARTIAL_TURN", out);
            }
            ModelOutput::Transcript {
                role: Role::Assistant,
                text,
                is_final: true,
            } => {
                self.close_audio(if self.interrupted { "INTERRUPTED" } else { "END_TURN" }, out);
                self.text_content("ASSISTANT", "FINAL", &text, "END_TURN", out);
            }
            ModelOutput::Audio(pcm) => {
                let first_of_reply = self.audio_out.is_none();
                if first_of_reply {
                    let id = self.content_id();
                    out.push(self.event(
                        "contentStart",
                        json!({
                            "contentId": id, "type": "AUDIO", "role": "ASSISTANT",
                            "audioOutputConfiguration": {
                                "mediaType": "audio/lpcm", "sampleRateHertz": self.output_rate,
                                "sampleSizeBits": 16, "encoding": "base64", "channelCount": 1
                            }
                        }),
                    ));
                    self.audio_out = Some(id);
                }
                let id = self.audio_out.clone().unwrap_or_default();
                let content = if first_of_reply && self.limits.stamp_replies {
                    BASE64.encode(stamped(&pcm))
                } else {
                    BASE64.encode(&pcm)
                };
                out.push(self.event("audioOutput", json!({ "contentId": id, "content": content })));
            }
            ModelOutput::Interruption => {
                // Nova's barge-in signals: the marker text, then the audio block ends INTERRUPTED.
                self.interrupted = true;
                self.text_content("ASSISTANT", "FINAL", "{ \"interrupted\" : true }", "INTERRUPTED", out);
                self.close_audio("INTERRUPTED", out);
            }
            ModelOutput::Usage(delta) => {
                self.usage += delta;
                let sides = |u: &TokenUsage| {
                    json!({
                        "input": {"speechTokens": u.input_speech, "textTokens": u.input_text},
                        "output": {"speechTokens": u.output_speech, "textTokens": u.output_text},
                    })
                };
                let (input, output) = (self.usage.input(), self.usage.output());
                out.push(self.event(
                    "usageEvent",
                    json!({
                        "details": {"delta": sides(&delta), "total": sides(&self.usage)},
                        "totalInputTokens": input,
                        "totalOutputTokens": output,
                        "totalTokens": input + output,
                    }),
                ));
            }
            ModelOutput::ToolUse(call) => {
                let ToolUse { id, name, input } = *call;
                if !self.tools.contains(&name) {
                    // The real model only calls tools it was given.
                    if let Some(conversation) = &mut self.conversation {
                        conversation.on_tool_result(&id, "no such tool", true, Instant::now());
                    }
                    return;
                }
                let content_id = self.content_id();
                out.push(self.event(
                    "contentStart",
                    json!({ "contentId": content_id, "type": "TOOL", "role": "TOOL",
                            "toolUseOutputConfiguration": { "mediaType": "application/json" } }),
                ));
                out.push(self.event(
                    "toolUse",
                    json!({ "contentId": content_id, "toolName": name, "toolUseId": id, "content": input.to_string() }),
                ));
                out.push(self.event(
                    "contentEnd",
                    json!({ "contentId": content_id, "type": "TOOL", "stopReason": "TOOL_USE" }),
                ));
            }
            // Response boundaries are implicit in Nova's event stream.
            _ => {}
        }
    }

    fn end_output(&mut self, out: &mut Vec<String>) {
        self.close_audio("END_TURN", out);
        if self.completion_started {
            out.push(self.event("completionEnd", json!({ "stopReason": "END_TURN" })));
        }
    }

    fn close_audio(&mut self, stop_reason: &str, out: &mut Vec<String>) {
        if let Some(id) = self.audio_out.take() {
            out.push(self.event(
                "contentEnd",
                json!({ "contentId": id, "type": "AUDIO", "stopReason": stop_reason }),
            ));
        }
    }

    fn text_content(&mut self, role: &str, stage: &str, text: &str, stop_reason: &str, out: &mut Vec<String>) {
        let id = self.content_id();
        let fields = json!({ "generationStage": stage }).to_string();
        out.push(self.event(
            "contentStart",
            json!({ "contentId": id, "type": "TEXT", "role": role, "additionalModelFields": fields,
                    "textOutputConfiguration": { "mediaType": "text/plain" } }),
        ));
        out.push(self.event("textOutput", json!({ "contentId": id, "role": role, "content": text })));
        out.push(self.event(
            "contentEnd",
            json!({ "contentId": id, "type": "TEXT", "stopReason": stop_reason }),
        ));
    }

    fn content_id(&mut self) -> String {
        self.next_content += 1;
        format!("{}-{}", self.completion, self.next_content)
    }

    fn event(&self, name: &str, mut body: Value) -> String {
        if let Value::Object(fields) = &mut body {
            fields.insert("sessionId".into(), json!(self.record.session_id()));
            fields.insert("promptName".into(), json!(self.prompt));
            fields.insert("completionId".into(), json!(self.completion));
        }
        json!({ "event": { name: body } }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "p1";

    fn stream() -> FakeStream {
        let limits = Limits {
            max_age: Duration::from_secs(480),
            input_timeout: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(175),
            think_time: Duration::from_millis(10),
            max_concurrent_streams: 10,
            close_delay: Duration::ZERO,
            stamp_replies: false,
        };
        FakeStream::new(limits, StreamRecord::default(), Instant::now())
    }

    fn send(stream: &mut FakeStream, event: Value) -> Result<Vec<String>, Exception> {
        let mut out = Vec::new();
        stream.on_event(event.to_string().as_bytes(), Instant::now(), &mut out)?;
        Ok(out)
    }

    fn open(stream: &mut FakeStream) {
        send(stream, json!({"event": {"sessionStart": {}}})).expect("sessionStart");
        let prompt_start = json!({"event": {"promptStart": {"promptName": PROMPT,
            "audioOutputConfiguration": {"sampleRateHertz": 24000, "voiceId": "matthew"}}}});
        send(stream, prompt_start).expect("promptStart");
    }

    fn text(stream: &mut FakeStream, name: &str, role: &str, interactive: bool) -> Result<(), Exception> {
        send(
            stream,
            json!({"event": {"contentStart": {"promptName": PROMPT, "contentName": name, "type": "TEXT",
                   "role": role, "interactive": interactive}}}),
        )?;
        send(
            stream,
            json!({"event": {"textInput": {"promptName": PROMPT, "contentName": name, "content": "hi"}}}),
        )?;
        send(
            stream,
            json!({"event": {"contentEnd": {"promptName": PROMPT, "contentName": name}}}),
        )
        .map(drop)
    }

    #[test]
    fn the_system_prompt_must_be_the_first_content() {
        let mut history_first = stream();
        open(&mut history_first);
        let refused = text(&mut history_first, "h1", "USER", false).expect_err("refused");
        assert_eq!(refused.kind, "validationException");
        assert!(refused.message.contains("system prompt"), "{}", refused.message);

        let mut audio_first = stream();
        open(&mut audio_first);
        let audio = json!({"event": {"contentStart": {"promptName": PROMPT, "contentName": "a1", "type": "AUDIO",
            "role": "USER", "interactive": true, "audioInputConfiguration": {"sampleRateHertz": 16000}}}});
        assert!(send(&mut audio_first, audio).is_err());

        let mut ordered = stream();
        open(&mut ordered);
        text(&mut ordered, "s1", "SYSTEM", false).expect("system prompt first");
        text(&mut ordered, "h1", "USER", false).expect("then history");
    }

    #[test]
    fn strands_connection_end_closes_like_session_end() {
        for last in ["sessionEnd", "connectionEnd"] {
            let mut s = stream();
            open(&mut s);
            text(&mut s, "s1", "SYSTEM", false).expect("system prompt");
            assert!(
                send(&mut s, json!({"event": {last: {}}})).is_err(),
                "{last} before promptEnd"
            );

            let mut s = stream();
            open(&mut s);
            text(&mut s, "s1", "SYSTEM", false).expect("system prompt");
            send(&mut s, json!({"event": {"promptEnd": {"promptName": PROMPT}}})).expect("promptEnd");
            send(&mut s, json!({"event": {last: {}}})).expect("accepted after promptEnd");
        }
    }

    fn audio_of(event: &str) -> Option<Vec<u8>> {
        let value: Value = serde_json::from_str(event).ok()?;
        let content = value.pointer("/event/audioOutput/content")?.as_str()?;
        BASE64.decode(content).ok()
    }

    #[test]
    fn stamps_only_the_first_audio_chunk_of_each_reply_when_asked() {
        let pcm = Bytes::from(vec![1u8; 1536]);
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64;
        let mut s = stream();
        s.limits.stamp_replies = true;
        let mut out = Vec::new();
        s.emit(ModelOutput::Audio(pcm.clone()), &mut out);
        s.emit(ModelOutput::Audio(pcm.clone()), &mut out);
        s.close_audio("END_TURN", &mut out);
        s.emit(ModelOutput::Audio(pcm.clone()), &mut out);
        let chunks: Vec<Vec<u8>> = out.iter().filter_map(|e| audio_of(e)).collect();
        assert_eq!(chunks.len(), 3);
        for first in [&chunks[0], &chunks[2]] {
            let sent = reply_stamp(first).expect("stamped");
            assert!(sent >= before, "{sent} < {before}");
            assert_eq!(first.len(), pcm.len());
            assert_eq!(first[REPLY_STAMP_BYTES..], pcm[REPLY_STAMP_BYTES..]);
        }
        assert_eq!(chunks[1], pcm.to_vec(), "later chunks are untouched");

        let mut plain = stream();
        let mut out = Vec::new();
        plain.emit(ModelOutput::Audio(pcm.clone()), &mut out);
        let chunk = out.iter().find_map(|e| audio_of(e)).expect("audio");
        assert_eq!(reply_stamp(&chunk), None, "no stamp unless asked");
    }

    #[test]
    fn usage_events_carry_nova_details_by_modality() {
        let mut s = stream();
        let mut out = Vec::new();
        let usage = TokenUsage {
            input_speech: 3,
            input_text: 1,
            output_speech: 8,
            output_text: 2,
        };
        s.emit(ModelOutput::Usage(usage), &mut out);
        s.emit(ModelOutput::Usage(usage), &mut out);
        let events: Vec<Value> = out.iter().map(|e| serde_json::from_str(e).expect("JSON")).collect();
        assert!(events[0]["event"]["completionStart"]["completionId"].is_string());
        let second = &events[2]["event"]["usageEvent"];
        let side = |speech: u32, text: u32| json!({"speechTokens": speech, "textTokens": text});
        assert_eq!(second["details"]["delta"]["input"], side(3, 1));
        assert_eq!(second["details"]["delta"]["output"], side(8, 2));
        assert_eq!(second["details"]["total"]["input"], side(6, 2));
        assert_eq!(second["details"]["total"]["output"], side(16, 4));
        assert_eq!(second["totalInputTokens"], 8);
        assert_eq!(second["totalOutputTokens"], 20);
        assert_eq!(second["totalTokens"], 28);
        for key in ["sessionId", "promptName", "completionId"] {
            assert!(second[key].is_string(), "{key} in {second}");
        }
    }
}
