//! Any bytes a client can send in a WebSocket frame, through the client protocol decoder:
//! as a text frame (when UTF-8) and as a binary frame. Decoding must never panic, and a text
//! frame the decoder reads (anything but a fatal error) nests no deeper than the limit allows,
//! whichever way it was read: the audio frame's fast way skips the nesting check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use voice_agent::protocol::strands::{decode_binary, decode_text};
use voice_agent::protocol::{DecodeError, JsonLimits};

/// Brackets deep, as the limit counts them: a scalar is 0, `[]` and `{}` are 1.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_text(text, &JsonLimits::default());
        let tight = JsonLimits { max_bytes: 64, max_depth: 2 };
        if !matches!(decode_text(text, &tight), Err(DecodeError::Fatal { .. })) {
            let value: Value = serde_json::from_str(text).expect("a frame the decoder read is JSON");
            assert!(depth(&value) <= tight.max_depth, "read a frame nested {} deep", depth(&value));
        }
    }
    let _ = decode_binary(data);
});
