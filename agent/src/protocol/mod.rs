//! The client wire protocol: JSON events compatible with Strands BidiAgent, raw PCM binary
//! frames, and the close codes a session can end with. `docs/protocol.md` documents all of it.

mod close;
mod codec;
mod events;

pub use close::{CloseCode, EndReason};
pub use codec::{ClientMessage, DecodeError, JsonLimits, decode_binary, decode_text, encode_audio_json};
pub use events::{
    AudioOutput, ServerEvent, StopReason, ToolResultBody, ToolResultContent, ToolUseBody, TranscriptDelta,
};

/// Sample rate of the PCM16LE mono audio clients send (Hz).
pub const INPUT_SAMPLE_RATE: u32 = 16_000;
