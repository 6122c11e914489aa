//! What the continuity machine asks the driver to do.

use bytes::Bytes;

use super::super::super::history::Message;
use super::super::super::stream::StreamError;
use crate::model::{ModelOutput, ToolResult};

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub(in super::super) enum Action {
    /// Open a stream that starts with this history (the system prompt and tools are fixed;
    /// the driver adds them). The outcome comes back as `stream_opened` or `open_failed`.
    Open {
        reason: &'static str,
        history: Vec<Message>,
    },
    /// Send to the current stream. A failed send comes back as `stream_failed`.
    Send(Outgoing),
    /// Forward to the session.
    Emit(ModelOutput),
    /// Close the current stream the clean way (audio contentEnd, promptEnd, sessionEnd, end of
    /// input) without waiting for it; a stream still opening is closed once it opens.
    Close { why: &'static str },
    /// Drop the current stream: it failed.
    Abandon { why: &'static str },
    /// The session's first stream is open: the session can start.
    Started,
    /// A new stream took over from the last one (the client is told by an `Emit`).
    Renewed { reason: &'static str },
    /// This many frames of client audio were dropped: too much was waiting.
    AudioDropped(usize),
    /// Text input for a model that takes none: tell the client.
    RejectText,
    /// The conversation cannot go on: tell the session why.
    GiveUp(StreamError),
    /// Nothing follows: the driver stops once it has carried out the actions before this one.
    End,
}

/// What goes to a stream.
#[derive(Debug, Clone, PartialEq)]
pub(in super::super) enum Outgoing {
    /// Live client audio or keep-alive silence: never waits; dropped (and counted) if the
    /// stream's queue is full, because late audio is worse than none.
    Audio(Bytes),
    /// Held or replayed audio handed to a new stream: a burst, so it waits for room.
    HeldAudio(Bytes),
    /// A user text message.
    Text(String),
    /// The result of a tool use this stream asked for.
    ToolResult(Box<ToolResult>),
}
