//! The Vonage Voice API WebSocket (an NCCO `connect` action to a `websocket` endpoint), on
//! `/vonage`.
//!
//! In: first a JSON text frame `websocket:connected` with the `content-type`
//! (`audio/l16;rate=16000` or `rate=8000`) and the endpoint's `headers` as fields; then binary
//! frames of 16-bit linear PCM, 20 ms each; `websocket:dtmf` text frames for key presses. The
//! call ends when Vonage closes the socket. Out: binary frames of 20 ms in the same format,
//! `{"action":"notify","payload":{"mark":"<reply>:<ms>"}}` every 200 ms of a reply, which
//! Vonage echoes as a `websocket:notify` event with the same payload once the audio before it has
//! played (Vonage's counterpart of a Twilio mark), and `{"action":"clear"}` when the caller
//! barges in, which drops what Vonage has buffered.

use std::collections::HashMap;

use axum::extract::ws::Message;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CallStart, CallerAudio, Carrier, Encoding, PlaybackMarks, ReplyAudio, json_frame, key_press, nothing};
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
    #[serde(default)]
    payload: Option<Value>,
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
            marks: PlaybackMarks::default(),
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
                    "websocket:notify" => Ok(event
                        .payload
                        .as_ref()
                        .and_then(|p| p.get("mark"))
                        .and_then(Value::as_str)
                        .and_then(PlaybackMarks::heard)
                        .unwrap_or_else(nothing)),
                    "websocket:connected" => Err(DecodeError::fatal("a second websocket:connected")),
                    _ => Ok(nothing()),
                }
            }
        }
    }
}

struct Encoder {
    reply: ReplyAudio,
    marks: PlaybackMarks,
}

fn notify(name: &str) -> Message {
    let notify = json!({"action": "notify", "payload": {"mark": name}});
    Message::Text(notify.to_string().into())
}

impl Encode for Encoder {
    fn event(&mut self, event: SessionEvent, frames: &mut Vec<Message>) {
        match event {
            SessionEvent::Interrupted => {
                self.reply.clear();
                frames.push(Message::Text(json!({"action": "clear"}).to_string().into()));
            }
            SessionEvent::ResponseStart { .. } => self.marks.reply_started(),
            SessionEvent::ResponseComplete { .. } => {
                let mut sent = 0;
                self.reply.flush(|f| {
                    frames.push(Message::Binary(Bytes::from(f)));
                    sent += 1;
                });
                if let Some(name) = self.marks.sent(sent) {
                    frames.push(notify(&name));
                }
            }
            _ => {}
        }
    }

    fn audio(&mut self, pcm: Bytes, frames: &mut Vec<Message>) {
        let mut sent = 0;
        self.reply.push(&pcm, |f| {
            frames.push(Message::Binary(Bytes::from(f)));
            sent += 1;
        });
        if let Some(name) = self.marks.sent(sent) {
            frames.push(notify(&name));
        }
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
        codec.encoder.event(
            SessionEvent::ResponseStart {
                response_id: "r1".into(),
            },
            &mut frames,
        );
        codec.encoder.audio(Bytes::from(vec![0u8; 14_400]), &mut frames); // 300 ms at 24 kHz
        let (audio, rest) = frames.split_at(frames.len() - 1);
        assert!(audio.len() >= 8, "{}", audio.len());
        assert!(audio.iter().all(|f| matches!(f, Message::Binary(b) if b.len() == 640)));
        // After 200 ms of a reply, a notify whose echo says how much of it the caller heard.
        let Message::Text(text) = &rest[0] else {
            panic!("a notify: {rest:?}")
        };
        let sent: Value = serde_json::from_str(text.as_str()).expect("JSON");
        assert_eq!(sent["action"], "notify");
        let echo = json!({"event": "websocket:notify", "payload": sent["payload"]}).to_string();
        assert!(matches!(
            codec.decoder.decode(Frame::Text(&echo)),
            Ok(ClientMessage::Heard { reply: 1, audio }) if audio.as_millis() >= 180
        ));
    }
}
