//! The model boundary: every speech-to-speech provider is a [`ModelProvider`] that opens a
//! [`ModelStream`] per session. The stream speaks neutral events, so the session never knows
//! which model is behind it.

pub mod nova;
pub mod queue;
pub mod simulated;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::protocol::StopReason;

/// Audio frames queued from the session to the model. 16 frames of 32 ms is half a second: a
/// model that falls further behind than that is not real time any more, and older audio is
/// dropped (and counted) instead of piling up.
pub const MODEL_INPUT_QUEUE: usize = 16;

/// Events queued from the model to the session. Models send reply audio in bursts faster than
/// real time; 64 events absorb a burst while the session forwards it to the client socket.
pub const MODEL_OUTPUT_QUEUE: usize = 64;

/// What the session sends to the model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInput {
    /// PCM16LE mono audio at the input sample rate.
    Audio(Bytes),
    /// A user text message.
    Text(String),
    /// The outcome of a tool call the model asked for. Boxed: rare, and unboxed it would set the
    /// size of every slot in the channel.
    ToolResult(Box<ToolResult>),
    /// The caller heard only this fraction (0 to 1) of the interrupted reply's audio (a phone
    /// carrier's playback marks said so): the conversation keeps only the words heard.
    ReplyHeard(f32),
}

/// A finished tool call, reported back to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub id: String,
    pub name: String,
    pub content: String,
    pub is_error: bool,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The name the model uses.
    pub name: String,
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: serde_json::Value,
}

/// Who spoke a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// What the model sends to the session.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelOutput {
    /// The model decided the user finished a turn (end of speech or a text message). Starts the
    /// time-to-first-audio clock.
    UserTurnEnd,
    ResponseStart {
        id: String,
    },
    /// PCM16LE mono reply audio at the output sample rate.
    Audio(Bytes),
    Transcript {
        role: Role,
        text: String,
        is_final: bool,
    },
    /// The user spoke over the reply: audio not yet played must be discarded.
    Interruption,
    ResponseComplete {
        id: String,
        stop_reason: StopReason,
    },
    /// Tokens the model counted since its previous usage report.
    Usage(TokenUsage),
    /// The model asked for a tool call. Boxed, like `Error`: rare, and unboxed either would set
    /// the size of every slot in the channel.
    ToolUse(Box<ToolUse>),
    /// The provider will replace its underlying stream in about `time_left` (a planned renewal
    /// ahead of the model's stream limit); sent once per stream, ahead of [`Self::Restarted`].
    RestartWarning {
        time_left: std::time::Duration,
    },
    /// The provider replaced its underlying stream; the conversation goes on.
    Restarted {
        reason: String,
        /// The old stream ended in the middle of a turn (it failed), so the reply to it may be
        /// missing or repeated.
        turn_interrupted: bool,
    },
    /// Something went wrong.
    Error(Box<ErrorReport>),
}

// Memory per session: a queue holds its backlog (up to the bound) and keeps a few slots when
// drained, and every message is copied through it, so the size of the common message is what
// counts. Large, rare variants go behind a `Box`; the floor is `Bytes` plus a tag (`Bytes` has room to mark only
// one other variant, not the several these enums have).
const _: () = assert!(std::mem::size_of::<ModelInput>() <= 40);
const _: () = assert!(std::mem::size_of::<ModelOutput>() <= 40);

/// Tokens counted by the model, by direction and modality: a report's own counts (a delta), not
/// running totals, so reports from successive streams of one conversation add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input_speech: u32,
    pub input_text: u32,
    pub output_speech: u32,
    pub output_text: u32,
}

impl TokenUsage {
    pub fn input(&self) -> u64 {
        u64::from(self.input_speech) + u64::from(self.input_text)
    }

    pub fn output(&self) -> u64 {
        u64::from(self.output_speech) + u64::from(self.output_text)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl std::ops::AddAssign for TokenUsage {
    fn add_assign(&mut self, other: Self) {
        self.input_speech = self.input_speech.saturating_add(other.input_speech);
        self.input_text = self.input_text.saturating_add(other.input_text);
        self.output_speech = self.output_speech.saturating_add(other.output_speech);
        self.output_text = self.output_text.saturating_add(other.output_text);
    }
}

/// A tool call the model asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    pub id: String,
    pub name: String,
    pub input: serde_json::Value,
}

/// An error the model reports during the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReport {
    /// From a small fixed set (it labels metrics).
    pub code: &'static str,
    pub message: String,
    /// Fatal errors end the session.
    pub fatal: bool,
}

/// What a provider needs to open a stream for one session.
#[derive(Debug, Clone)]
pub struct SessionSetup {
    /// The system prompt, with the session's variables filled in.
    pub system_prompt: std::sync::Arc<str>,
    pub input_sample_rate: u32,
    pub output_sample_rate: u32,
    /// Tools the model may call.
    pub tools: std::sync::Arc<[ToolSpec]>,
    /// What the caller chose for this session (voice, greeting, prompt variables, metadata).
    pub settings: std::sync::Arc<crate::session::SessionSettings>,
    /// The conversation so far, when the session resumes one: the model starts from it.
    pub history: std::sync::Arc<[(Role, String)]>,
}

/// One open conversation with a model, as the session sees it. Dropping it ends the
/// conversation; a provider that runs a task of its own then finishes its close sequence.
pub enum ModelStream {
    /// The model runs on a task of its own, behind bounded queues each way: Nova Sonic, whose
    /// Bedrock stream's close sequence and renewals outlive the session and do not wait on it.
    Queued {
        input: queue::Sender<ModelInput>,
        output: queue::Receiver<ModelOutput>,
    },
    /// The model runs in the session's own task and is called directly: the simulator. A
    /// frame goes to it and back with no queue and no wake-up (bench/tuning.md, 16).
    Inline(Box<dyn InlineModel>),
}

/// A model the session calls directly, in its own task.
pub trait InlineModel: Send {
    /// Hands it one input now; gives the input back when it cannot take more (its replies are
    /// waiting for the session to take them).
    fn try_send(&mut self, input: ModelInput) -> Result<(), queue::TrySendError<ModelInput>>;

    /// Its next output. `Pending` arranges a wake-up only for what the model does on its own
    /// time (a reply paced in real time): input arrives through `try_send`, after which the
    /// session's loop polls this again before it waits, so input needs no wake-up.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ModelOutput>>;
}

impl ModelStream {
    /// Hands input to the model without waiting.
    pub fn try_send(&mut self, input: ModelInput) -> Result<(), queue::TrySendError<ModelInput>> {
        match self {
            Self::Queued { input: queue, .. } => queue.try_send(input),
            Self::Inline(model) => model.try_send(input),
        }
    }

    /// The model's next output; `None` once the model ended the conversation. Cancel-safe.
    pub fn recv(&mut self) -> impl Future<Output = Option<ModelOutput>> + '_ {
        std::future::poll_fn(move |cx| match self {
            Self::Queued { output, .. } => output.poll_recv(cx),
            Self::Inline(model) => model.poll_recv(cx),
        })
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The model cannot be reached or refused the stream; retrying later may work.
    #[error("model unavailable: {0}")]
    Unavailable(String),
    /// The model is misconfigured (credentials, access, region, options); retrying will not help.
    #[error("model misconfigured: {0}")]
    Misconfigured(String),
}

pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<ModelStream, ModelError>> + Send>>;
pub type CloseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Every kind of model error: the `kind` label of `model_errors`, and the basis of the error code
/// clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelErrorKind {
    /// The model stream could not be opened for a new session.
    Connect,
    /// The model ended a stream without saying why.
    StreamEnded,
    /// The model refused for request rate (Bedrock ThrottlingException); retried.
    Throttled,
    /// The account's service quota is used up (ServiceQuotaExceededException); retried.
    QuotaExceeded,
    /// The model is not serving right now (ServiceUnavailable, ModelNotReady); retried.
    Unavailable,
    /// The model failed on its side or in a way not named otherwise; retried.
    Internal,
    /// The connection to the model failed (DNS, TLS, reset); retried.
    Transport,
    /// A stream reached its time limit (Bedrock's ~8 minutes); renewed.
    ModelTimeout,
    /// The model ended a stream after a long silence; renewed.
    SilenceTimeout,
    /// The model ended a stream that received no input in time; renewed.
    InputTimeout,
    /// The credentials may not invoke this model (IAM, model access); fatal.
    AccessDenied,
    /// No such model in this region; fatal.
    NotFound,
    /// The model refused a request as invalid; fatal.
    Validation,
    /// No usable AWS credentials to sign requests with; fatal.
    Credentials,
}

impl ModelErrorKind {
    pub const ALL: [ModelErrorKind; 14] = [
        Self::Connect,
        Self::StreamEnded,
        Self::Throttled,
        Self::QuotaExceeded,
        Self::Unavailable,
        Self::Internal,
        Self::Transport,
        Self::ModelTimeout,
        Self::SilenceTimeout,
        Self::InputTimeout,
        Self::AccessDenied,
        Self::NotFound,
        Self::Validation,
        Self::Credentials,
    ];

    /// Stable snake_case name: the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::StreamEnded => "stream_ended",
            Self::Throttled => "throttled",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Transport => "transport",
            Self::ModelTimeout => "model_timeout",
            Self::SilenceTimeout => "silence_timeout",
            Self::InputTimeout => "input_timeout",
            Self::AccessDenied => "access_denied",
            Self::NotFound => "not_found",
            Self::Validation => "validation",
            Self::Credentials => "credentials",
        }
    }

    /// The `bidi_error` code clients see when an error of this kind reaches them.
    pub fn client_code(self) -> &'static str {
        match self {
            Self::Throttled => "model_throttled",
            Self::QuotaExceeded => "model_quota_exceeded",
            Self::Unavailable => "model_unavailable",
            Self::AccessDenied => "model_access_denied",
            Self::NotFound => "model_not_found",
            Self::Validation => "model_rejected_request",
            Self::Credentials => "model_credentials",
            _ => "model_error",
        }
    }
}

impl std::fmt::Display for ModelErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A speech-to-speech model that can hold many concurrent sessions.
pub trait ModelProvider: Send + Sync + 'static {
    /// The model name reported to clients in `bidi_connection_start`.
    fn model_id(&self) -> &str;

    /// Opens a stream for one session.
    fn connect(&self, setup: SessionSetup) -> ConnectFuture;

    /// Why the model cannot take sessions right now (e.g. no credentials), if it cannot.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Shuts the provider down: streams still open are closed the clean way, new ones are
    /// refused, and the future resolves once every stream the provider opened has ended (or a
    /// bounded wait ran out). The server awaits it after the last session is gone, so the
    /// process never exits with a model stream still open.
    fn close(&self) -> CloseFuture<'_> {
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_error_kind_has_a_distinct_label_and_a_model_code() {
        let mut labels: Vec<&str> = ModelErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ModelErrorKind::ALL.len());
        for kind in ModelErrorKind::ALL {
            assert!(kind.client_code().starts_with("model_"), "{kind}");
        }
        assert_eq!(ModelErrorKind::Throttled.client_code(), "model_throttled");
        assert_eq!(ModelErrorKind::Transport.client_code(), "model_error");
    }
}
