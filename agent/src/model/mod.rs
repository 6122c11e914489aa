//! The model boundary: every speech-to-speech provider is a [`ModelProvider`] that opens a
//! [`ModelStream`] per session. The stream speaks neutral events, so the session never knows
//! which model is behind it.

pub mod nova;
pub mod simulated;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::mpsc;

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
    /// The outcome of a tool call the model asked for.
    ToolResult {
        id: String,
        name: String,
        content: String,
        is_error: bool,
    },
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
    /// Cumulative token counts for the session.
    Usage {
        input_tokens: u64,
        output_tokens: u64,
    },
    /// The model asked for a tool call.
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    /// The provider replaced its underlying stream; the conversation goes on.
    Restarted {
        reason: String,
    },
    /// Something went wrong. `fatal` errors end the session. `code` comes from a small fixed
    /// set (it labels metrics).
    Error {
        code: &'static str,
        message: String,
        fatal: bool,
    },
}

/// What a provider needs to open a stream for one session.
#[derive(Debug, Clone)]
pub struct SessionSetup {
    pub session_id: String,
    pub system_prompt: Option<String>,
    pub input_sample_rate: u32,
    pub output_sample_rate: u32,
    /// Tools the model may call.
    pub tools: std::sync::Arc<[ToolSpec]>,
}

/// One open conversation with a model. Dropping `input` ends it; the provider then finishes
/// its close sequence and drops its side of `output`.
pub struct ModelStream {
    pub input: mpsc::Sender<ModelInput>,
    pub output: mpsc::Receiver<ModelOutput>,
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
}
