//! The Vonage Voice API WebSocket (an NCCO `connect` action to a `websocket` endpoint), on
//! `/vonage`.
//!
//! In: first a JSON text frame `websocket:connected` with the `content-type`
//! (`audio/l16;rate=16000` or `rate=8000`) and the endpoint's `headers` as fields; then binary
//! frames of 16-bit linear PCM, 20 ms each; `websocket:dtmf` text frames for key presses. The
//! call ends when Vonage closes the socket. Out: binary frames of 20 ms in the same format,
//! and `{"action":"clear"}` when the caller barges in, which drops what Vonage has buffered.

use std::collections::HashMap;

use axum::extract::ws::Message;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CallStart, CallerAudio, Carrier, Encoding, ReplyAudio, json_frame, key_press, nothing};
use crate::protocol::{ClientMessage, Codec, Decode, DecodeError, Encode, Frame, Handshake, Protocol, SessionEvent};

pub const PROTOCOL: Protocol = Protocol {
    name: "vonage",
    path: "/vonage",
    open,
};

pub const CARRIER: Carrier = Carrier {
    protocol: &PROTOCOL,
    start,
    codec,
};

/// Fields of `websocket:connected` that are Vonage's own, not the endpoint's headers.
const OWN_FIELDS: [&str; 2] = ["event", "content-type"];

#[derive(Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    digit: Option<String>,
}

fn start(frame: Frame<'_>) -> Result<Option<CallStart>, String> {
    if let Frame::Binary(_) = frame {
        return Err("the stream sent audio before websocket:connected".into());
    }
    let fields: serde_json::Map<String, Value> = json_frame(frame)?;
    if fields.get("event").and_then(Value::as_str) != Some("websocket:connected") {
        return Err("the first frame must be websocket:connected".into());
    }
    let content_type = fields.get("content-type").and_then(Value::as_str).unwrap_or_default();
    let sample_rate = match content_type.replace(' ', "").to_ascii_lowercase().as_str() {
        "audio/l16;rate=16000" => 16_000,
        "audio/l16;rate=8000" => 8_000,
        _ => {
            return Err(format!(
                "unsupported content-type {:?}; the agent takes audio/l16;rate=16000 or rate=8000",
                content_type.chars().take(48).collect::<String>()
            ));
        }
    };
    let parameters = fields
        .iter()
        .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect();
    Ok(Some(CallStart {
        stream_id: String::new(),
        call_id: None,
        encoding: Encoding::L16,
        sample_rate,
        parameters,
    }))
}

fn open(handshake: &Handshake<'_>) -> Result<Codec, String> {
    // Replaced once websocket:connected has said the call's rate.
    Ok(codec(
        &CallStart {
            stream_id: String::new(),
            call_id: None,
            encoding: Encoding::L16,
            sample_rate: 16_000,
            parameters: HashMap::new(),
        },
        handshake.output_sample_rate,
    ))
}

fn codec(call: &CallStart, output_sample_rate: u32) -> Codec {
    Codec {
        decoder: Box::new(Decoder {
            caller: CallerAudio::new(Encoding::L16, call.sample_rate),
        }),
        encoder: Box::new(Encoder {
            reply: ReplyAudio::new(Encoding::L16, call.sample_rate, output_sample_rate),
        }),
    }
}

struct Decoder {
    caller: CallerAudio,
}

impl Decode for Decoder {
    fn decode(&mut self, frame: Frame<'_>) -> Result<ClientMessage, DecodeError> {
        match frame {
            Frame::Binary(audio) => self.caller.decode(audio),
            Frame::Text(_) => {
                let event: Event = json_frame(frame).map_err(DecodeError::fatal)?;
                match event.event.as_str() {
                    "websocket:dtmf" => Ok(event.digit.as_deref().and_then(key_press).unwrap_or_else(nothing)),
                    "websocket:connected" => Err(DecodeError::fatal("a second websocket:connected")),
                    _ => Ok(nothing()),
                }
            }
        }
    }
}

struct Encoder {
    reply: ReplyAudio,
}

impl Encode for Encoder {
    fn event(&mut self, event: SessionEvent, frames: &mut Vec<Message>) {
        match event {
            SessionEvent::Interrupted => {
                self.reply.clear();
                frames.push(Message::Text(json!({"action": "clear"}).to_string().into()));
            }
            SessionEvent::ResponseComplete { .. } => {
                self.reply.flush(|f| frames.push(Message::Binary(Bytes::from(f))));
            }
            _ => {}
        }
    }

    fn audio(&mut self, pcm: Bytes, frames: &mut Vec<Message>) {
        self.reply.push(&pcm, |f| frames.push(Message::Binary(Bytes::from(f))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECTED: &str =
        r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","caller":"447700900000"}"#;

    #[test]
    fn websocket_connected_is_the_start_with_the_endpoint_headers() {
        let call = start(Frame::Text(CONNECTED)).expect("valid").expect("a start");
        assert_eq!(call.sample_rate, 16_000);
        assert_eq!(call.parameters["caller"], "447700900000");
        assert!(!call.parameters.contains_key("content-type"));
        let pcmu = CONNECTED.replace("audio/l16;rate=16000", "audio/pcmu");
        assert!(start(Frame::Text(&pcmu)).is_err());
        assert!(start(Frame::Binary(&Bytes::from_static(&[0, 0]))).is_err());
    }

    #[test]
    fn binary_audio_both_ways_in_20_ms_frames() {
        let call = start(Frame::Text(CONNECTED)).expect("valid").expect("a start");
        let mut codec = codec(&call, 24_000);
        let audio = Bytes::from(vec![0u8; 640]);
        assert_eq!(
            codec.decoder.decode(Frame::Binary(&audio)),
            Ok(ClientMessage::Audio(audio.clone()))
        );
        let dtmf = r#"{"event":"websocket:dtmf","digit":"9","duration":250}"#;
        assert_eq!(
            codec.decoder.decode(Frame::Text(dtmf)),
            Ok(ClientMessage::Text("The caller pressed 9 on the keypad.".into()))
        );
        let mut frames = Vec::new();
        codec.encoder.audio(Bytes::from(vec![0u8; 9_600]), &mut frames); // 200 ms at 24 kHz
        assert!(frames.len() >= 8, "{}", frames.len());
        assert!(frames.iter().all(|f| matches!(f, Message::Binary(b) if b.len() == 640)));
    }
}
