//! Client wire protocols: the seam between a session and the frames on its socket.
//!
//! A session speaks neutral values: [`ClientMessage`]s come in, [`Outbound`] messages (a
//! [`SessionEvent`], reply audio, the close) go out. Each wire protocol is one module that turns
//! its frames into those values and back ([`Decode`], [`Encode`]), and owns its framing, audio
//! encoding and event names. It does not own lifecycle, limits or authentication: those are the
//! session's and the server's, the same for every protocol.
//!
//! A handshake picks the protocol from [`PROTOCOLS`]: by path, then by the `protocol` query
//! parameter among those served on that path (the first listed for a path is its default).
//! Adding a protocol is one module plus one line in [`PROTOCOLS`].
//!
//! `docs/protocol.md` documents every protocol's events.

mod close;
pub mod strands;
pub mod strands_1_62;
pub mod telephony;

use std::collections::HashMap;

use axum::extract::ws::Message;
use bytes::Bytes;

pub use close::{CloseCode, EndReason};

use crate::model::{Role, TokenUsage};

/// Every wire protocol the agent speaks, in the order a handshake looks them up: the first one
/// listed for a path is the default there.
pub const PROTOCOLS: &[Protocol] = &[
    strands::PROTOCOL,
    strands_1_62::PROTOCOL,
    telephony::twilio::PROTOCOL,
    telephony::telnyx::PROTOCOL,
    telephony::vonage::PROTOCOL,
];

/// Largest frame the agent sends to a client (bytes). Amazon Bedrock AgentCore Runtime closes
/// WebSocket connections whose frames exceed 32 KB; every path stays below this bound (reply
/// audio is chunked, long texts are split or cut), and the socket writer drops, with a warning,
/// anything that would still exceed it.
pub const MAX_FRAME_BYTES: usize = 30 * 1024;

/// Sample rate of the PCM16LE mono audio a session takes in (Hz). Protocols whose clients send
/// other rates or codecs convert to this.
pub const INPUT_SAMPLE_RATE: u32 = 16_000;

/// One wire protocol: how a handshake selects it and how it opens a session's codec.
pub struct Protocol {
    /// What a client passes as `?protocol=` to choose it, and its label in logs and traces.
    pub name: &'static str,
    /// The path it is served on.
    pub path: &'static str,
    /// Sets up the codec of one session from its handshake, or says what is wrong with the
    /// handshake's options (answered with HTTP 400 before the upgrade).
    pub open: fn(&Handshake<'_>) -> Result<Codec, String>,
}

/// What a protocol may read from a handshake to set up a session.
#[derive(Debug)]
pub struct Handshake<'a> {
    /// The query parameters (the last value wins for a repeated name).
    pub query: &'a HashMap<String, String>,
    /// Limits on JSON text frames, for protocols that take JSON.
    pub json: JsonLimits,
    /// Sample rate of the reply audio the session will produce (PCM16LE mono).
    pub output_sample_rate: u32,
}

/// Why no protocol could be selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("unknown protocol {requested:?} on {path}; this path serves {served}")]
    Unknown {
        requested: String,
        path: String,
        served: String,
    },
    #[error("{0}")]
    BadOptions(String),
}

/// The protocol a handshake on `path` asks for, with its codec opened.
pub fn select(path: &str, handshake: &Handshake<'_>) -> Result<(&'static Protocol, Codec), SelectError> {
    let mut served = PROTOCOLS.iter().filter(|p| p.path == path);
    let protocol = match handshake.query.get("protocol") {
        None => served.next(),
        Some(requested) => served.find(|p| p.name == requested.as_str()),
    };
    let Some(protocol) = protocol else {
        let names: Vec<&str> = PROTOCOLS.iter().filter(|p| p.path == path).map(|p| p.name).collect();
        let requested = handshake.query.get("protocol").map_or("", String::as_str);
        return Err(SelectError::Unknown {
            requested: requested.chars().take(32).collect(),
            path: path.to_owned(),
            served: names.join(", "),
        });
    };
    let codec = (protocol.open)(handshake).map_err(SelectError::BadOptions)?;
    Ok((protocol, codec))
}

/// The two halves of a session's protocol: one for the reader, one for the socket writer.
pub struct Codec {
    pub decoder: Box<dyn Decode>,
    pub encoder: Box<dyn Encode>,
}

/// A data frame from the client (pings, pongs and close frames never reach a protocol).
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    Text(&'a str),
    Binary(&'a Bytes),
}

/// Turns client frames into session input.
pub trait Decode: Send {
    fn decode(&mut self, frame: Frame<'_>) -> Result<ClientMessage, DecodeError>;
}

/// Turns session output into frames for the client. Every method appends the frames to send, in
/// order, to `frames` (none when the protocol has no such message).
pub trait Encode: Send {
    fn event(&mut self, event: SessionEvent, frames: &mut Vec<Message>);
    /// Reply audio: PCM16LE mono at the session's output rate.
    fn audio(&mut self, pcm: Bytes, frames: &mut Vec<Message>);
}

/// A decoded client input.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// PCM16LE mono audio at [`INPUT_SAMPLE_RATE`], whole samples only.
    Audio(Bytes),
    /// A user text message.
    Text(String),
    /// The caller has heard `audio` of reply number `reply` (counted from 1 in the order of the
    /// session's `ResponseStart` events): a carrier's acknowledgement of a playback mark.
    Heard { reply: u32, audio: std::time::Duration },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The frame breaks the protocol: the session closes.
    #[error("{detail}")]
    Fatal { reason: EndReason, detail: String },
    /// The message is understood but refused: the client is told, and the session goes on.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
}

impl DecodeError {
    pub fn fatal(detail: impl Into<String>) -> Self {
        Self::Fatal {
            reason: EndReason::InvalidPayload,
            detail: detail.into(),
        }
    }

    pub fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        Self::Rejected {
            code,
            message: message.into(),
        }
    }
}

/// Limits on JSON text frames, checked before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self {
            max_bytes: 128 * 1024,
            max_depth: 16,
        }
    }
}

/// What a session tells its client, in no particular wire format.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// First event of every session whose model stream opened.
    Started {
        session_id: String,
        model: String,
        input_sample_rate: u32,
        output_sample_rate: u32,
        /// The session's effective per-session settings.
        settings: std::sync::Arc<crate::session::SessionSettings>,
        /// How to resume this conversation after a drop (none when resumption is off).
        resume: Option<ResumeOffer>,
    },
    ResponseStart {
        response_id: String,
    },
    Transcript {
        role: Role,
        text: String,
        is_final: bool,
    },
    /// The user spoke over the reply: what was queued of it is not played.
    Interrupted,
    ResponseComplete {
        response_id: String,
        stop_reason: StopReason,
    },
    /// Tokens the model counted since its previous report.
    Usage(TokenUsage),
    /// The model calls a tool.
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    /// A tool call finished.
    ToolResult {
        id: String,
        name: String,
        is_error: bool,
        content: String,
    },
    /// The model stream will be replaced in about `time_left` (planned, between turns).
    RestartWarning {
        time_left: std::time::Duration,
    },
    /// The model stream was replaced; the conversation continues.
    Restarted {
        reason: String,
        turn_interrupted: bool,
    },
    /// The session ends for this reason (sent before the close frame when the client can still
    /// read it).
    Closing {
        session_id: String,
        reason: EndReason,
        /// The token to resume the conversation with elsewhere, when the agent ends the session
        /// itself (drain) and another replica can resume it.
        resume_token: Option<String>,
    },
    Error {
        code: &'static str,
        message: String,
    },
}

/// A session's resume token and what it means; the JSON schemas add these fields to
/// `bidi_connection_start`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResumeOffer {
    /// Pass it as `?resume=<token>` when reconnecting; it works once.
    #[serde(rename = "resume_token")]
    pub token: String,
    /// How long after the session ends the token works (seconds).
    #[serde(rename = "resume_window_s")]
    pub window_s: u64,
    /// Whether this session resumed an earlier one.
    pub resumed: bool,
    /// Whether any replica can resume it (a shared store), or only this one.
    #[serde(rename = "resume_anywhere")]
    pub anywhere: bool,
}

impl SessionEvent {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }
}

/// Why a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Complete,
    Interrupted,
    ToolUse,
    Error,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Interrupted => "interrupted",
            Self::ToolUse => "tool_use",
            Self::Error => "error",
        }
    }
}

/// A message for the client socket writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Boxed: rare next to audio, and unboxed the largest event would set the size of every
    /// slot in the channel.
    Event(Box<SessionEvent>),
    /// Reply audio (PCM16LE). `epoch` lets the writer drop audio queued before an interruption.
    Audio {
        epoch: u64,
        pcm: Bytes,
    },
    Close {
        code: u16,
        reason: String,
    },
}

// Memory per session: the socket writer's queue holds up to `OUTBOUND_QUEUE` of these, and
// every message is moved through it, so the common one sets the cost. Large, rare payloads go
// behind a `Box`; the audio variant (`Bytes`, the epoch, a tag) is the floor.
const _: () = assert!(std::mem::size_of::<Outbound>() <= 48);

impl Outbound {
    /// An event for the client, boxed.
    pub fn event(event: SessionEvent) -> Self {
        Self::Event(Box::new(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(query: &HashMap<String, String>) -> Handshake<'_> {
        Handshake {
            query,
            json: JsonLimits::default(),
            output_sample_rate: 24_000,
        }
    }

    #[test]
    fn every_protocol_has_a_unique_name_on_its_path() {
        for (i, a) in PROTOCOLS.iter().enumerate() {
            assert!(a.path.starts_with('/'), "{}", a.name);
            for b in &PROTOCOLS[i + 1..] {
                assert!(a.path != b.path || a.name != b.name, "{} twice on {}", a.name, a.path);
            }
        }
    }

    #[test]
    fn the_first_protocol_on_a_path_is_its_default() {
        let query = HashMap::new();
        let (protocol, _) = select("/ws", &handshake(&query)).expect("a default on /ws");
        assert_eq!(protocol.name, strands::PROTOCOL.name);
    }

    #[test]
    fn a_client_may_name_the_protocol() {
        let query = HashMap::from([("protocol".to_owned(), strands::PROTOCOL.name.to_owned())]);
        let (protocol, _) = select("/ws", &handshake(&query)).expect("selected by name");
        assert_eq!(protocol.name, strands::PROTOCOL.name);
    }

    #[test]
    fn strands_1_62_is_served_on_ws_by_name() {
        let query = HashMap::from([("protocol".to_owned(), "strands-1.62".to_owned())]);
        let (protocol, _) = select("/ws", &handshake(&query)).expect("selected by name");
        assert_eq!(protocol.name, strands_1_62::PROTOCOL.name);
    }

    #[test]
    fn an_unknown_protocol_is_refused_with_what_the_path_serves() {
        let query = HashMap::from([("protocol".to_owned(), "carrier-pigeon".to_owned())]);
        let error = select("/ws", &handshake(&query)).err().expect("refused");
        let message = error.to_string();
        assert!(
            message.contains("carrier-pigeon") && message.contains(strands::PROTOCOL.name),
            "{message}"
        );
    }

    #[test]
    fn a_protocol_refuses_bad_options() {
        let query = HashMap::from([("audio_output".to_owned(), "mp3".to_owned())]);
        let error = select("/ws", &handshake(&query)).err().expect("refused");
        assert!(matches!(error, SelectError::BadOptions(_)), "{error:?}");
    }
}
