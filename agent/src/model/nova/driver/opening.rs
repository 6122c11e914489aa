//! Continuation across Bedrock streams: opening a stream with the conversation so far,
//! holding client input while it opens, and handing the held input over in order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tracing::{debug, info};

use super::super::mapping::Mapped;
use super::super::stream::{BedrockStream, Recovery, StreamError};
use super::super::wire::{self, TextRole};
use super::{Current, Driver, FIRST_BACKOFF, HELD_AUDIO_BYTES, HELD_TEXTS, KEEPALIVE_GAP, OPEN_ATTEMPTS};
use crate::metrics::{self, ReasonLabels};
use crate::model::{ModelInput, ModelOutput, Role, ToolResult};

impl Driver {
    pub(super) fn hold(&mut self, message: ModelInput) {
        match message {
            ModelInput::Audio(pcm) => {
                self.listen(&pcm, Instant::now());
                self.held_bytes += pcm.len();
                self.held.push_back(pcm);
                while self.held_bytes > HELD_AUDIO_BYTES {
                    match self.held.pop_front() {
                        Some(old) => {
                            self.held_bytes -= old.len();
                            self.shared
                                .metrics
                                .audio_frames_dropped
                                .get_or_create(&metrics::IN)
                                .inc();
                        }
                        None => break,
                    }
                }
            }
            ModelInput::Text(text) => {
                if self.held_texts.len() < HELD_TEXTS {
                    self.held_texts.push_back(text);
                }
            }
            // The stream that asked for this result is gone; the new one learns the outcome as
            // a message, so the conversation can still use it.
            ModelInput::ToolResult(result) => {
                let ToolResult {
                    name,
                    content,
                    is_error,
                    ..
                } = *result;
                if self.held_texts.len() < HELD_TEXTS {
                    let status = if is_error { "failed" } else { "returned" };
                    self.held_texts
                        .push_back(format!("(The {name} tool {status}: {content})"));
                }
            }
        }
    }

    /// Opens the next stream while holding client input, then hands the held input to it.
    /// `replay` resends audio the previous stream may not have processed (it failed).
    pub(super) async fn replace(
        &mut self,
        reason: &'static str,
        replay: bool,
        input: &mut mpsc::Receiver<ModelInput>,
    ) -> Option<Current> {
        let mut out = Vec::new();
        self.mapper.reset_stream(&mut out);
        for item in out {
            if let Mapped::Output(output) = item {
                let _ = self.output.send(output).await;
            }
        }
        if replay {
            // Replayed audio goes first, before anything received since.
            for pcm in self.recent.drain(..).rev() {
                self.held_bytes += pcm.len();
                self.held.push_front(pcm);
            }
        }
        self.recent.clear();
        self.recent_bytes = 0;

        let mut attempt = 0;
        let current = loop {
            let opened = {
                let open = self.open(reason);
                tokio::pin!(open);
                loop {
                    tokio::select! {
                        result = &mut open => break result,
                        message = input.recv() => match message {
                            Some(message) => self.hold(message),
                            None => return None,
                        },
                    }
                }
            };
            match opened {
                Ok(current) => break current,
                Err(error) => {
                    self.count_error(&error);
                    attempt += 1;
                    if error.recovery == Recovery::Fatal || attempt >= OPEN_ATTEMPTS {
                        self.fail(&error).await;
                        return None;
                    }
                    let backoff = sleep(FIRST_BACKOFF * 2u32.pow(attempt - 1));
                    tokio::pin!(backoff);
                    loop {
                        tokio::select! {
                            () = &mut backoff => break,
                            message = input.recv() => match message {
                                Some(message) => self.hold(message),
                                None => return None,
                            },
                        }
                    }
                }
            }
        };
        // Hand over what was held, in order: audio first (it came first), then texts.
        while let Some(pcm) = self.held.pop_front() {
            self.held_bytes -= pcm.len();
            let event = wire::audio_input(&current.prompt, &current.audio, &BASE64.encode(&pcm));
            if current.stream.send(event).await.is_err() {
                // The new stream died as well; what is left goes to the next one.
                self.held_bytes += pcm.len();
                self.held.push_front(pcm);
                break;
            }
            self.remember_sent(pcm);
            // Keep taking client input meanwhile, so the session's queue never overflows.
            while let Ok(message) = input.try_recv() {
                self.hold(message);
            }
        }
        while let Some(text) = self.held_texts.pop_front() {
            if !self.shared.config.is_nova_2() {
                debug!("held text dropped: the model takes no text input");
                continue;
            }
            self.history.push(Role::User, &text);
            let content = uuid::Uuid::new_v4().to_string();
            let _ = current
                .stream
                .send_all(wire::text_block(&current.prompt, &content, TextRole::User, true, &text))
                .await;
        }
        self.next_silence = Instant::now() + KEEPALIVE_GAP;
        self.shared
            .metrics
            .model_stream_renewals
            .get_or_create(&ReasonLabels { reason })
            .inc();
        info!(reason, history_messages = self.history.len(), "model stream renewed");
        let _ = self
            .output
            .send(ModelOutput::Restarted {
                reason: reason.to_owned(),
            })
            .await;
        Some(current)
    }

    /// Opens a stream: session and prompt start, system prompt, history, the audio block. The
    /// returned future owns what it needs, so input can be held while it runs.
    pub(super) fn open(
        &self,
        reason: &'static str,
    ) -> impl std::future::Future<Output = Result<Current, StreamError>> + Send + 'static {
        let config = &self.shared.config;
        let prompt = uuid::Uuid::new_v4().to_string();
        let audio = uuid::Uuid::new_v4().to_string();
        let mut init = vec![
            wire::session_start(config),
            wire::prompt_start(&prompt, config, &self.setup.tools),
        ];
        if let Some(system) = self.setup.system_prompt.as_deref().filter(|s| !s.trim().is_empty()) {
            let content = uuid::Uuid::new_v4().to_string();
            init.extend(wire::text_block(&prompt, &content, TextRole::System, false, system));
        }
        for message in self.history.replay() {
            let role = match message.role {
                Role::User => TextRole::User,
                Role::Assistant => TextRole::Assistant,
            };
            let content = uuid::Uuid::new_v4().to_string();
            init.extend(wire::text_block(&prompt, &content, role, false, &message.text));
        }
        init.push(wire::audio_content_start(&prompt, &audio));
        let span = tracing::info_span!(
            parent: &self.session,
            "model_stream",
            otel.name = "model stream",
            model = %config.model_id,
            reason,
            end = tracing::field::Empty,
        );
        let lease = self.shared.connections.lease();
        let model_id = config.model_id.clone();
        async move {
            let stream = BedrockStream::open(lease, &model_id, init).await?;
            Ok(Current {
                stream,
                prompt,
                audio,
                opened: Instant::now(),
                span,
            })
        }
    }
}
