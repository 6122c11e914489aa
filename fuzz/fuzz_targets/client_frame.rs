//! Any bytes a client can send in a WebSocket frame, through the client protocol decoder:
//! as a text frame (when UTF-8) and as a binary frame. Decoding must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice_agent::protocol::JsonLimits;
use voice_agent::protocol::strands::{decode_binary, decode_text};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_text(text, &JsonLimits::default());
        let _ = decode_text(text, &JsonLimits { max_bytes: 64, max_depth: 2 });
    }
    let _ = decode_binary(data);
});
