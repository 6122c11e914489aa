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
    /// The outcome of a tool call the model asked for. Boxed: rare, and unboxed it would set the
    /// size of every slot in the channel.
    ToolResult(Box<ToolResult>),
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
    /// Cumulative token counts for the session.
    Usage {
        input_tokens: u64,
        output_tokens: u64,
    },
    /// The model asked for a tool call. Boxed, like `Error`: rare, and unboxed either would set
    /// the size of every slot in the channel.
    ToolUse(Box<ToolUse>),
    /// The provider replaced its underlying stream; the conversation goes on.
    Restarted {
        reason: String,
    },
    /// Something went wrong.
    Error(Box<ErrorReport>),
}

// Memory per session: tokio allocates channel slots in blocks of 32, full or not, and a channel
// carrying audio keeps two blocks, so every byte here costs 64 per session. Large, rare
// variants go behind a `Box`; the floor is `Bytes` plus a tag (`Bytes` has room to mark only
// one other variant, not the several these enums have).
const _: () = assert!(std::mem::size_of::<ModelInput>() <= 40);
const _: () = assert!(std::mem::size_of::<ModelOutput>() <= 40);

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
pub type CloseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

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
