//! The task behind one Nova Sonic session. The decisions (renewal, replay, retries, the
//! hand-over between streams) are [`continuity::Continuity`]'s; this task only carries them
//! out: it opens and closes Bedrock streams, sends events, forwards outputs to the session,
//! counts and logs, and feeds the machine what happened and when.

mod continuity;
mod opening;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::oneshot;
use tracing::{Instrument, debug, info, warn};

use super::NovaShared;
use super::stream::{Recovery, StreamError};
use super::wire::{self, TextRole};
use crate::audio::base64;
use crate::cancel::CancelWatch;
use crate::metrics::{self, KindLabels, ReasonLabels};
use crate::model::queue::{self, TryRecvError};
use crate::model::{ErrorReport, ModelError, ModelErrorKind, ModelInput, ModelOutput, SessionSetup, ToolResult};
use continuity::{Action, Continuity, Outgoing, Policy};
use opening::Current;

/// Longest a live audio frame waits for room in the Bedrock stream's queue before it is dropped
/// (and counted): half of what the session's queue to this task holds (16 frames of 32 ms), so
/// the session's queue does not overflow while this task waits.
const LIVE_AUDIO_WAIT: Duration = Duration::from_millis(250);

/// A stream being opened: the driver keeps serving the session while it opens.
type Opening = Pin<Box<dyn Future<Output = Result<Current, StreamError>> + Send>>;

pub(super) struct Driver {
    shared: Arc<NovaShared>,
    setup: SessionSetup,
    /// The session's trace span: every stream's span is its child.
    session: tracing::Span,
    output: queue::Sender<ModelOutput>,
    current: Option<Current>,
    opening: Option<Opening>,
    /// Told once the first stream is open (or cannot be).
    ready: Option<oneshot::Sender<Result<(), ModelError>>>,
}

/// How the driver goes on after carrying out an action.
enum Flow {
    Continue,
    /// A send failed: the stream is dead, and sends queued for it are void.
    StreamFailed,
    End,
}

impl Driver {
    /// Starts the session's task, on the provider's task tracker, and waits until its first
    /// stream is open.
    pub(super) async fn start(
        shared: Arc<NovaShared>,
        setup: SessionSetup,
        input: queue::Receiver<ModelInput>,
        output: queue::Sender<ModelOutput>,
    ) -> Result<(), ModelError> {
        let (ready, started) = oneshot::channel();
        let session = tracing::Span::current();
        let tracker = shared.tracker.clone();
        let driver = Self {
            shared,
            setup,
            session: session.clone(),
            output,
            current: None,
            opening: None,
            ready: Some(ready),
        };
        tracker.spawn(driver.run(input).instrument(session));
        started.await.unwrap_or_else(|_| {
            Err(ModelError::Unavailable(
                "the model stream ended before it opened".into(),
            ))
        })
    }

    /// The session's model task. A function returning an `async move` block rather than an
    /// `async fn`, whose future would keep a second copy of the driver for the whole session.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` keeps a second copy of its arguments"
    )]
    fn run(mut self, mut input: queue::Receiver<ModelInput>) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let policy = Policy {
                renew_after: self.shared.config.renew_after,
                text_input: self.shared.config.generation().text_input,
                greeting: self.setup.settings.greeting.clone(),
                history: self.setup.history.clone(),
            };
            let mut batch = Vec::new();
            let mut machine = Continuity::start(policy, Instant::now(), &mut batch);
            let mut queue: VecDeque<Action> = batch.drain(..).collect();
            // One future for the whole loop, polled only once the token fired: a fresh one per
            // iteration took its `Notify`'s lock twice (see `crate::cancel`).
            let token = self.shared.closing.clone();
            let closing = token.cancelled();
            tokio::pin!(closing);
            let mut closing = CancelWatch::new(closing);
            loop {
                while let Some(action) = queue.pop_front() {
                    match self.carry_out(action, &mut machine, &mut input, &mut batch).await {
                        Flow::Continue => {}
                        Flow::StreamFailed => queue.retain(|a| !matches!(a, Action::Send(_))),
                        Flow::End => return,
                    }
                    queue.extend(batch.drain(..));
                }
                let deadline = machine.deadline();
                tokio::select! {
                    message = input.recv() => on_input(&mut machine, message, &mut batch),
                    chunk = recv(&mut self.current) => match chunk {
                        Ok(Some(bytes)) => machine.model_event(&bytes, Instant::now(), &mut batch),
                        Ok(None) => self.stream_failed(
                            StreamError::new(Recovery::Retry, ModelErrorKind::StreamEnded, "Bedrock ended the stream"),
                            &mut machine,
                            &mut batch,
                        ),
                        Err(error) => self.stream_failed(error, &mut machine, &mut batch),
                    },
                    opened = opened(&mut self.opening) => match opened {
                        Ok(current) => {
                            self.current = Some(current);
                            machine.stream_opened(Instant::now(), &mut batch);
                        }
                        Err(error) => {
                            self.count_error(&error);
                            debug!(kind = %error.kind, message = %error.message, "opening a model stream failed");
                            machine.open_failed(error, Instant::now(), &mut batch);
                        }
                    },
                    () = sleep_until(deadline), if deadline.is_some() => machine.tick(Instant::now(), &mut batch),
                    // The agent is shutting down: close the stream cleanly now.
                    () = closing.fired() => machine.session_ended(&mut batch),
                }
                queue.extend(batch.drain(..));
            }
        }
    }

    async fn carry_out(
        &mut self,
        action: Action,
        machine: &mut Continuity,
        input: &mut queue::Receiver<ModelInput>,
        batch: &mut Vec<Action>,
    ) -> Flow {
        match action {
            Action::Open { reason, history } => self.opening = Some(Box::pin(self.open(reason, &history))),
            Action::Send(outgoing) => {
                let held = matches!(outgoing, Outgoing::HeldAudio(_));
                if let Err(error) = self.send(outgoing).await {
                    self.stream_failed(error, machine, batch);
                    return Flow::StreamFailed;
                }
                if held {
                    // A hand-over is a burst: keep taking client input meanwhile, so the
                    // session's queue never overflows. The machine queues it after the burst.
                    loop {
                        match input.try_recv() {
                            Ok(message) => on_input(machine, Some(message), batch),
                            Err(TryRecvError::Disconnected) => on_input(machine, None, batch),
                            Err(TryRecvError::Empty) => break,
                        }
                    }
                }
            }
            Action::Emit(output) => {
                if self.output.send(output).await.is_err() {
                    machine.session_ended(batch);
                }
            }
            Action::Close { why } => self.close(why),
            Action::Abandon { why } => {
                if let Some(current) = self.current.take() {
                    current.span.record("end", why);
                }
            }
            Action::Started => {
                if let Some(ready) = self.ready.take()
                    && ready.send(Ok(())).is_err()
                {
                    // The session gave up waiting.
                    machine.session_ended(batch);
                }
            }
            Action::Renewed { reason } => {
                self.shared
                    .metrics
                    .model_stream_renewals
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
                info!(reason, history_messages = machine.history_len(), "model stream renewed");
            }
            Action::AudioDropped(frames) => {
                self.shared
                    .metrics
                    .audio_frames_dropped
                    .get_or_create(&metrics::IN)
                    .inc_by(frames as u64);
            }
            Action::RejectText => {
                let message = format!(
                    "{} does not take text input; use Nova 2 Sonic",
                    self.shared.config.model_id
                );
                let report = ErrorReport {
                    code: "text_input_unsupported",
                    message,
                    fatal: false,
                };
                let _ = self.output.send(ModelOutput::Error(Box::new(report))).await;
            }
            Action::GiveUp(error) => self.give_up(&error).await,
            Action::End => {
                // Every path to the end closes or abandons the stream first; this is a net.
                self.close("session_ended");
                return Flow::End;
            }
        }
        Flow::Continue
    }

    async fn send(&mut self, outgoing: Outgoing) -> Result<(), StreamError> {
        let Some(current) = &self.current else {
            debug!("nothing to send to: no stream is open");
            return Ok(());
        };
        match outgoing {
            Outgoing::Audio(pcm) => {
                let event = wire::audio_input(&current.prompt, &current.audio, &base64::encode(&pcm));
                // Right after held audio is replayed into a new stream its queue can be full for a
                // moment: wait that out, but a stalled Bedrock never holds the session up longer.
                // A closed stream just died, and its error is on the way.
                if tokio::time::timeout(LIVE_AUDIO_WAIT, current.stream.send(event))
                    .await
                    .is_err()
                {
                    self.shared
                        .metrics
                        .audio_frames_dropped
                        .get_or_create(&metrics::IN)
                        .inc();
                }
                Ok(())
            }
            Outgoing::HeldAudio(pcm) => {
                let event = wire::audio_input(&current.prompt, &current.audio, &base64::encode(&pcm));
                current.stream.send(event).await
            }
            Outgoing::Text(text) => {
                let content = uuid::Uuid::new_v4().to_string();
                let block = wire::text_block(&current.prompt, &content, TextRole::User, true, &text);
                current.stream.send_all(block).await
            }
            Outgoing::ToolResult(result) => {
                let ToolResult {
                    id,
                    name,
                    content,
                    is_error,
                } = *result;
                let block = uuid::Uuid::new_v4().to_string();
                debug!(tool = name, is_error, "tool result sent to the model");
                let result = tool_result_json(&content, is_error);
                current
                    .stream
                    .send_all(wire::tool_result_block(&current.prompt, &block, &id, &result))
                    .await
            }
        }
    }

    /// Closes the current stream cleanly in the background (tracked, so the provider's
    /// `close` waits for it); a stream still opening is closed once it opens.
    fn close(&mut self, why: &'static str) {
        let tracker = &self.shared.tracker;
        if let Some(current) = self.current.take() {
            tracker.spawn(current.close(why));
        } else if let Some(opening) = self.opening.take() {
            tracker.spawn(async move {
                if let Ok(current) = opening.await {
                    current.close(why).await;
                }
            });
        }
    }

    fn stream_failed(&self, error: StreamError, machine: &mut Continuity, batch: &mut Vec<Action>) {
        self.count_error(&error);
        warn!(kind = %error.kind, message = %error.message, "model stream failed");
        machine.stream_failed(error, Instant::now(), batch);
    }

    /// Tells the session the conversation cannot go on: as the outcome of opening the
    /// session, or as a fatal error during it.
    async fn give_up(&mut self, error: &StreamError) {
        let message = self.explain(error);
        match self.ready.take() {
            Some(ready) => {
                let _ = ready.send(Err(match error.recovery {
                    Recovery::Fatal => ModelError::Misconfigured(message),
                    _ => ModelError::Unavailable(message),
                }));
            }
            None => {
                let report = ErrorReport {
                    code: error.client_code(),
                    message,
                    fatal: true,
                };
                let _ = self.output.send(ModelOutput::Error(Box::new(report))).await;
            }
        }
    }

    fn count_error(&self, error: &StreamError) {
        self.shared
            .metrics
            .model_errors
            .get_or_create(&KindLabels {
                kind: error.kind.as_str(),
            })
            .inc();
    }

    /// A message an operator can act on.
    fn explain(&self, error: &StreamError) -> String {
        let model = &self.shared.config.model_id;
        let region = self.shared.region.as_deref().unwrap_or("the configured region");
        match error.kind {
            ModelErrorKind::AccessDenied => format!(
                "Bedrock denied access to {model} in {region}: {}. The agent's IAM role needs \
                 bedrock:InvokeModel on this model, and model access must be enabled for the account in this region.",
                error.message
            ),
            ModelErrorKind::NotFound => format!(
                "model {model} was not found in {region}: {}. Check the model id and that Nova Sonic is offered in this region.",
                error.message
            ),
            ModelErrorKind::Throttled | ModelErrorKind::QuotaExceeded => format!(
                "Bedrock is throttling {model} in {region}: {}. Check the account's concurrent stream quota.",
                error.message
            ),
            _ => format!("{} ({})", error.message, error.kind),
        }
    }
}

/// Feeds one message from the session (`None`: the session is gone) to the machine.
fn on_input(machine: &mut Continuity, message: Option<ModelInput>, batch: &mut Vec<Action>) {
    let now = Instant::now();
    match message {
        Some(ModelInput::Audio(pcm)) => machine.audio(pcm, now, batch),
        Some(ModelInput::Text(text)) => machine.text(text, now, batch),
        Some(ModelInput::ToolResult(result)) => machine.tool_result(*result, now, batch),
        Some(ModelInput::ReplyHeard(fraction)) => machine.reply_heard(fraction),
        None => machine.session_ended(batch),
    }
}

/// The current stream's next output chunk; never, while there is no stream.
async fn recv(current: &mut Option<Current>) -> Result<Option<Vec<u8>>, StreamError> {
    match current {
        Some(current) => current.stream.recv().await,
        None => std::future::pending().await,
    }
}

/// The outcome of the stream being opened; never, while none is.
async fn opened(opening: &mut Option<Opening>) -> Result<Current, StreamError> {
    let Some(future) = opening else {
        return std::future::pending().await;
    };
    let result = future.await;
    *opening = None;
    result
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
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
