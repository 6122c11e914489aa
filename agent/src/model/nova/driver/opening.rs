//! Opening and closing one Bedrock stream of a session: the events a stream starts with
//! (session and prompt start, the system prompt, the conversation so far, the audio block) and
//! the clean close sequence it ends with.

use std::time::Duration;

use super::super::history::Message;
use super::super::stream::{BedrockStream, StreamError};
use super::super::wire::{self, TextRole};
use super::Driver;
use crate::model::Role;

/// How long a closed stream may take to finish its close sequence.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The stream a session is talking to.
pub(super) struct Current {
    pub stream: BedrockStream,
    pub prompt: String,
    /// The content name of the stream's one audio block.
    pub audio: String,
    /// The stream's trace span, closed when the stream is.
    pub span: tracing::Span,
}

impl Current {
    /// Closes the stream the way Nova documents: the audio block's contentEnd, promptEnd,
    /// sessionEnd, then the end of the input; then waits briefly for Bedrock to end its side.
    pub async fn close(self, why: &'static str) {
        self.span.record("end", why);
        let events = vec![
            wire::content_end(&self.prompt, &self.audio),
            wire::prompt_end(&self.prompt),
            wire::session_end(),
        ];
        let _span = self.span;
        self.stream.finish(events, CLOSE_WAIT).await;
    }
}

impl Driver {
    /// Opens a stream that starts with `history`. The returned future owns what it needs, so
    /// the driver keeps taking client input while it runs.
    pub(super) fn open(
        &self,
        reason: &'static str,
        history: &[Message],
    ) -> impl std::future::Future<Output = Result<Current, StreamError>> + Send + 'static {
        let config = &self.shared.config;
        let prompt = uuid::Uuid::new_v4().to_string();
        let audio = uuid::Uuid::new_v4().to_string();
        let mut init = vec![
            wire::session_start(config),
            wire::prompt_start(
                &prompt,
                self.setup.settings.voice.as_deref().unwrap_or(&config.voice),
                &self.setup.tools,
                self.setup.output_sample_rate,
            ),
        ];
        // Every stream starts with the system prompt, as Nova documents; renewals too.
        let content = uuid::Uuid::new_v4().to_string();
        init.extend(wire::text_block(
            &prompt,
            &content,
            TextRole::System,
            false,
            &self.setup.system_prompt,
        ));
        for message in history {
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
                span,
            })
        }
    }
}
