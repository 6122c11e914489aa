//! Audio processing shared by every part that listens: turn detection on 16-bit PCM, used by
//! the Simulated provider, the Nova driver (to tell speech from silence while it renews
//! streams), the Bedrock-wire fake and `voice-agent talk`; the byte-capped frame queue that
//! holds audio while a model stream is replaced; and base64 for audio carried in JSON.

pub mod base64;
pub mod ring;
pub mod vad;
