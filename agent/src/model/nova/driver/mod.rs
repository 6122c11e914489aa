//! The task behind one Nova Sonic session. It owns the current Bedrock stream and keeps the
//! conversation going across streams: silence while the client is quiet (so Bedrock never
//! starves), a planned renewal between replies before the stream's time limit, recovery when a
//! stream ends early, history replayed into every new stream, and client audio held while a
//! stream is being opened so none is lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{Instrument, debug, warn};

use super::NovaShared;
mod continuation;

use super::history::History;
use super::mapping::{Mapped, OutputMapper};
use super::stream::{BedrockStream, Recovery, StreamError};
use super::wire::{self, TextRole};
use crate::audio::vad::{TurnDetector, VadEvent};
use crate::metrics::{self, KindLabels};
use crate::model::{ErrorReport, ModelError, ModelInput, ModelOutput, Role, SessionSetup, ToolResult};

/// One frame of audio at 16 kHz: the keep-alive unit.
const FRAME: Duration = Duration::from_millis(32);
/// After this long without client audio, silence is sent in real time instead.
const KEEPALIVE_GAP: Duration = Duration::from_millis(200);
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
/// A planned renewal waits for a quiet moment at most this long past `renewAfter`.
const RENEW_PATIENCE: Duration = Duration::from_secs(45);
/// Stream opens attempted before giving up, and the first backoff (doubled each time).
const OPEN_ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Recoveries from failing streams allowed within [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 3;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a replaced stream may take to finish its close sequence.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

struct Current {
    stream: BedrockStream,
    prompt: String,
    audio: String,
    opened: Instant,
    /// The stream's trace span, closed when the stream is replaced or the session ends.
    span: tracing::Span,
}

pub(super) struct Driver {
    shared: Arc<NovaShared>,
    setup: SessionSetup,
    /// The session's trace span: every stream's span is its child.
    session: tracing::Span,
    output: mpsc::Sender<ModelOutput>,
    history: History,
    mapper: OutputMapper,
    vad: TurnDetector,
    vad_events: Vec<VadEvent>,
    speech_ended_at: Option<Instant>,
    recent: VecDeque<Bytes>,
    recent_bytes: usize,
    held: VecDeque<Bytes>,
    held_bytes: usize,
    held_texts: VecDeque<String>,
    next_silence: Instant,
    failures: VecDeque<Instant>,
    silence: Bytes,
}

enum Step {
    Continue,
    Renew(&'static str),
    Fail(StreamError),
    Stop,
}

impl Driver {
    /// Opens the first stream for a session and starts the driver task.
    pub(super) async fn start(
        shared: Arc<NovaShared>,
        setup: SessionSetup,
        input: mpsc::Receiver<ModelInput>,
        output: mpsc::Sender<ModelOutput>,
    ) -> Result<(), ModelError> {
        let driver = Self {
            session: tracing::Span::current(),
            shared,
            setup,
            output,
            history: History::default(),
            mapper: OutputMapper::default(),
            vad: TurnDetector::default(),
            vad_events: Vec::new(),
            speech_ended_at: None,
            recent: VecDeque::new(),
            recent_bytes: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            held_texts: VecDeque::new(),
            next_silence: Instant::now() + KEEPALIVE_GAP,
            failures: VecDeque::new(),
            silence: Bytes::from(vec![0u8; 1024]),
        };
        let mut attempt = 0;
        let current = loop {
            match driver.open("start").await {
                Ok(current) => break current,
                Err(error) => {
                    driver.count_error(&error);
                    attempt += 1;
                    if error.recovery == Recovery::Fatal || attempt >= OPEN_ATTEMPTS {
                        return Err(match error.recovery {
                            Recovery::Fatal => ModelError::Misconfigured(driver.explain(&error)),
                            _ => ModelError::Unavailable(driver.explain(&error)),
                        });
                    }
                    sleep(FIRST_BACKOFF * 2u32.pow(attempt - 1)).await;
                }
            }
        };
        let session = driver.session.clone();
        tokio::spawn(driver.run(current, input).instrument(session));
        Ok(())
    }

    async fn run(mut self, mut current: Current, mut input: mpsc::Receiver<ModelInput>) {
        let mut mapped = Vec::new();
        loop {
            let step = tokio::select! {
                message = input.recv() => match message {
                    Some(ModelInput::Audio(pcm)) => self.on_audio(&current, pcm),
                    Some(ModelInput::Text(text)) => self.on_text(&current, text).await,
                    Some(ModelInput::ToolResult(result)) => {
                        let ToolResult { id, name, content, is_error } = *result;
                        self.on_tool_result(&current, &id, &name, &content, is_error).await
                    }
                    None => Step::Stop,
                },
                chunk = current.stream.recv() => match chunk {
                    Ok(Some(bytes)) => self.on_chunk(&bytes, &mut mapped).await,
                    Ok(None) => Step::Fail(StreamError::new(Recovery::Retry, "stream_ended", "Bedrock ended the stream")),
                    Err(error) => Step::Fail(error),
                },
                () = sleep_until(self.next_silence) => self.keep_alive(&current),
            };
            let step = match step {
                Step::Continue => self.renewal_due(&current),
                other => other,
            };
            let replacement = match step {
                Step::Continue => continue,
                Step::Stop => {
                    current.span.record("end", "session_ended");
                    let close = close_events(&current);
                    current.stream.finish(close, CLOSE_WAIT).await;
                    return;
                }
                Step::Renew(reason) => {
                    current.span.record("end", "renewed");
                    // Planned: the old stream is at a turn boundary; close it cleanly.
                    let close = close_events(&current);
                    tokio::spawn(current.stream.finish(close, CLOSE_WAIT));
                    self.replace(reason, false, &mut input).await
                }
                Step::Fail(error) => {
                    current.span.record("end", error.kind);
                    self.count_error(&error);
                    warn!(kind = error.kind, message = %error.message, "model stream failed");
                    if !self.may_recover(&error) {
                        self.fail(&error).await;
                        return;
                    }
                    drop(current);
                    let reason = match error.recovery {
                        Recovery::Renew => error.kind,
                        _ => "error",
                    };
                    self.replace(reason, true, &mut input).await
                }
            };
            match replacement {
                Some(next) => current = next,
                None => return,
            }
        }
    }

    fn on_audio(&mut self, current: &Current, pcm: Bytes) -> Step {
        self.next_silence = Instant::now() + KEEPALIVE_GAP;
        if self.held.is_empty() {
            self.listen(&pcm, Instant::now());
            self.send_audio(current, pcm);
        } else {
            // Older audio is still waiting for a working stream: keep the order.
            self.hold(ModelInput::Audio(pcm));
        }
        Step::Continue
    }

    async fn on_text(&mut self, current: &Current, text: String) -> Step {
        if !self.shared.config.is_nova_2() {
            let _ = self
                .output
                .send(ModelOutput::Error(Box::new(ErrorReport {
                    code: "text_input_unsupported",
                    message: format!(
                        "{} does not take text input; use Nova 2 Sonic",
                        self.shared.config.model_id
                    ),
                    fatal: false,
                })))
                .await;
            return Step::Continue;
        }
        self.history.push(Role::User, &text);
        let content = uuid::Uuid::new_v4().to_string();
        match current
            .stream
            .send_all(wire::text_block(&current.prompt, &content, TextRole::User, true, &text))
            .await
        {
            Ok(()) => Step::Continue,
            Err(error) => Step::Fail(error),
        }
    }

    /// Sends a tool's result back as one uninterleaved contentStart/toolResult/contentEnd group.
    async fn on_tool_result(&mut self, current: &Current, id: &str, name: &str, content: &str, is_error: bool) -> Step {
        let result = tool_result_json(content, is_error);
        let block = uuid::Uuid::new_v4().to_string();
        debug!(tool = name, is_error, "tool result sent to the model");
        match current
            .stream
            .send_all(wire::tool_result_block(&current.prompt, &block, id, &result))
            .await
        {
            Ok(()) => Step::Continue,
            Err(error) => Step::Fail(error),
        }
    }

    async fn on_chunk(&mut self, bytes: &[u8], mapped: &mut Vec<Mapped>) -> Step {
        match wire::parse_output(bytes) {
            Ok(event) => self.mapper.on_event(event, mapped),
            Err(error) => {
                debug!(%error, "unreadable output event skipped");
                return Step::Continue;
            }
        }
        for item in mapped.drain(..) {
            match item {
                Mapped::Output(output) => {
                    if self.output.send(output).await.is_err() {
                        return Step::Stop;
                    }
                }
                Mapped::Remember(role, text) => {
                    if role == Role::User {
                        // The model heard the turn: its audio no longer needs replaying.
                        self.recent.clear();
                        self.recent_bytes = 0;
                        self.speech_ended_at = None;
                    }
                    self.history.push(role, &text);
                }
            }
        }
        Step::Continue
    }

    fn keep_alive(&mut self, current: &Current) -> Step {
        self.next_silence += FRAME;
        let now = Instant::now();
        if self.next_silence < now {
            // The timer fell behind (a busy runtime): do not send a burst to catch up.
            self.next_silence = now + FRAME;
        }
        if current
            .stream
            .try_send(wire::audio_input(
                &current.prompt,
                &current.audio,
                &BASE64.encode(&self.silence),
            ))
            .is_ok()
        {
            self.remember_sent(self.silence.clone());
        }
        Step::Continue
    }

    /// A planned renewal: the stream is old enough, and nobody is mid-sentence.
    fn renewal_due(&self, current: &Current) -> Step {
        let age = current.opened.elapsed();
        let renew_after = self.shared.config.renew_after;
        if age < renew_after {
            return Step::Continue;
        }
        let quiet = !self.mapper.in_response()
            && !self.vad.is_speaking()
            && self.speech_ended_at.is_none_or(|t| t.elapsed() >= TRANSCRIBE_GRACE);
        if quiet || age >= renew_after + RENEW_PATIENCE {
            Step::Renew("proactive")
        } else {
            Step::Continue
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

    fn send_audio(&mut self, current: &Current, pcm: Bytes) {
        let event = wire::audio_input(&current.prompt, &current.audio, &BASE64.encode(&pcm));
        match current.stream.try_send(event) {
            Ok(()) => self.remember_sent(pcm),
            // The stream just died; its error is on the way. Keep the frame for the next one.
            Err(TrySendError::Closed(())) => self.remember_sent(pcm),
            Err(TrySendError::Full(())) => {
                self.shared
                    .metrics
                    .audio_frames_dropped
                    .get_or_create(&metrics::IN)
                    .inc();
            }
        }
    }

    fn remember_sent(&mut self, pcm: Bytes) {
        self.recent_bytes += pcm.len();
        self.recent.push_back(pcm);
        while self.recent_bytes > RECENT_AUDIO_BYTES {
            match self.recent.pop_front() {
                Some(old) => self.recent_bytes -= old.len(),
                None => break,
            }
        }
    }

    /// Whether another recovery is allowed: renewals always are; failures only a few times
    /// a minute, so a broken model does not loop forever.
    fn may_recover(&mut self, error: &StreamError) -> bool {
        match error.recovery {
            Recovery::Fatal => false,
            Recovery::Renew => true,
            Recovery::Retry => {
                let now = Instant::now();
                while self
                    .failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
                {
                    self.failures.pop_front();
                }
                self.failures.push_back(now);
                self.failures.len() as u32 <= MAX_FAILURES
            }
        }
    }

    async fn fail(&self, error: &StreamError) {
        let _ = self
            .output
            .send(ModelOutput::Error(Box::new(ErrorReport {
                code: error.client_code(),
                message: self.explain(error),
                fatal: true,
            })))
            .await;
    }

    fn count_error(&self, error: &StreamError) {
        self.shared
            .metrics
            .model_errors
            .get_or_create(&KindLabels { kind: error.kind })
            .inc();
    }

    /// A message an operator can act on.
    fn explain(&self, error: &StreamError) -> String {
        let model = &self.shared.config.model_id;
        let region = self.shared.region.as_deref().unwrap_or("the configured region");
        match error.kind {
            "access_denied" => format!(
                "Bedrock denied access to {model} in {region}: {}. The agent's IAM role needs \
                 bedrock:InvokeModel on this model, and model access must be enabled for the account in this region.",
                error.message
            ),
            "not_found" => format!(
                "model {model} was not found in {region}: {}. Check the model id and that Nova Sonic is offered in this region.",
                error.message
            ),
            "throttled" | "quota_exceeded" => format!(
                "Bedrock is throttling {model} in {region}: {}. Check the account's concurrent stream quota.",
                error.message
            ),
            _ => format!("{} ({})", error.message, error.kind),
        }
    }
}

fn close_events(current: &Current) -> Vec<String> {
    vec![
        wire::content_end(&current.prompt, &current.audio),
        wire::prompt_end(&current.prompt),
        wire::session_end(),
    ]
}

/// Nova takes tool results as JSON text: a tool's JSON output as is, other text wrapped, and
/// failures as `{"error": ...}` so the model can explain them.
fn tool_result_json(content: &str, is_error: bool) -> serde_json::Value {
    if is_error {
        return json!({ "error": content });
    }
    match serde_json::from_str::<serde_json::Value>(content) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        _ => json!({ "result": content }),
    }
}
