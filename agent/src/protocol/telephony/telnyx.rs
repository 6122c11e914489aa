//! Telnyx media streaming, bidirectional RTP mode (`<Connect><Stream bidirectionalMode="rtp">`
//! in TeXML), on `/telnyx`.
//!
//! In (JSON text frames): `connected`, `start` (`stream_id`, `call_control_id`, `media_format`
//! PCMU or PCMA at 8000 Hz), `media` (base64 RTP payload), `dtmf`, `mark`, `error`, `stop`.
//! Out: `media` (base64 payload in the call's codec, 20 ms), a playback `mark` every 200 ms of
//! a reply and one named after the response at its end, `clear` when the caller barges in.

use std::collections::HashMap;

use axum::extract::ws::Message;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{
    CallStart, CallerAudio, Carrier, Encoding, PlaybackMarks, ReplyAudio, base64_payload, hung_up, json_frame,
    key_press, nothing,
};
use crate::audio::base64;
use crate::protocol::{ClientMessage, Codec, Decode, DecodeError, Encode, Frame, Handshake, Protocol, SessionEvent};

pub const PROTOCOL: Protocol = Protocol {
    name: "telnyx",
    path: "/telnyx",
    open,
};

pub const CARRIER: Carrier = Carrier {
    protocol: &PROTOCOL,
    start,
    codec,
};

const SAMPLE_RATE: u32 = 8_000;

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Event {
    Connected,
    Start {
        start: Start,
        stream_id: String,
    },
    Media {
        media: Media,
    },
    Dtmf {
        dtmf: Dtmf,
    },
    Mark {
        #[serde(default)]
        mark: Option<Mark>,
    },
    Error,
    Stop,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Mark {
    name: String,
}

#[derive(Deserialize)]
struct Start {
    call_control_id: Option<String>,
    media_format: MediaFormat,
}

#[derive(Deserialize)]
struct MediaFormat {
    encoding: String,
    sample_rate: u32,
    channels: u32,
}

#[derive(Deserialize)]
struct Media {
    track: Option<String>,
    payload: String,
}

#[derive(Deserialize)]
struct Dtmf {
    digit: String,
}

fn start(frame: Frame<'_>) -> Result<Option<CallStart>, String> {
    match json_frame::<Event>(frame)? {
        Event::Connected | Event::Other => Ok(None),
        Event::Start { start, stream_id } => {
            let format = &start.media_format;
            let encoding = match format.encoding.as_str() {
                "PCMU" => Encoding::Ulaw,
                "PCMA" => Encoding::Alaw,
                other => {
                    return Err(format!(
                        "unsupported codec {}; ask Telnyx for PCMU or PCMA",
                        other.chars().take(32).collect::<String>()
                    ));
                }
            };
            if format.sample_rate != SAMPLE_RATE || format.channels != 1 {
                return Err(format!(
                    "unsupported audio at {} Hz, {} channels; PCMU and PCMA are 8000 Hz mono",
                    format.sample_rate, format.channels
                ));
            }
            if stream_id.is_empty() || stream_id.len() > 128 {
                return Err("start without a valid stream_id".into());
            }
            Ok(Some(CallStart {
                stream_id,
                call_id: start.call_control_id,
                encoding,
                sample_rate: SAMPLE_RATE,
                parameters: HashMap::new(),
            }))
        }
        Event::Media { .. } | Event::Dtmf { .. } | Event::Mark { .. } | Event::Error | Event::Stop => {
            Err("the stream sent call events before its start".into())
        }
    }
}

fn open(handshake: &Handshake<'_>) -> Result<Codec, String> {
    // Replaced once the call's start frame has said which codec it uses.
    Ok(codec(
        &CallStart {
            stream_id: String::new(),
            call_id: None,
            encoding: Encoding::Ulaw,
            sample_rate: SAMPLE_RATE,
            parameters: HashMap::new(),
        },
        handshake.output_sample_rate,
    ))
}

fn codec(call: &CallStart, output_sample_rate: u32) -> Codec {
    Codec {
        decoder: Box::new(Decoder {
            caller: CallerAudio::new(call.encoding, call.sample_rate),
        }),
        encoder: Box::new(Encoder {
            reply: ReplyAudio::new(call.encoding, call.sample_rate, output_sample_rate),
            marks: PlaybackMarks::default(),
        }),
    }
}

struct Decoder {
    caller: CallerAudio,
}

impl Decode for Decoder {
    fn decode(&mut self, frame: Frame<'_>) -> Result<ClientMessage, DecodeError> {
        match json_frame::<Event>(frame).map_err(DecodeError::fatal)? {
            Event::Media { media } => {
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return Ok(nothing());
                }
                self.caller.decode(&base64_payload(&media.payload)?)
            }
            Event::Dtmf { dtmf } => Ok(key_press(&dtmf.digit).unwrap_or_else(nothing)),
            Event::Stop => Err(hung_up()),
            Event::Start { .. } => Err(DecodeError::fatal("a second start on the same stream")),
            Event::Mark { mark } => Ok(mark.and_then(|m| PlaybackMarks::heard(&m.name)).unwrap_or_else(nothing)),
            Event::Connected | Event::Error | Event::Other => Ok(nothing()),
        }
    }
}

struct Encoder {
    reply: ReplyAudio,
    marks: PlaybackMarks,
}

fn media(payload: &[u8]) -> Message {
    let event = json!({"event": "media", "media": {"payload": base64::encode(payload)}});
    Message::Text(event.to_string().into())
}

fn mark(name: &str) -> Message {
    Message::Text(json!({"event": "mark", "mark": {"name": name}}).to_string().into())
}

impl Encode for Encoder {
    fn event(&mut self, event: SessionEvent, frames: &mut Vec<Message>) {
        match event {
            SessionEvent::ResponseStart { .. } => self.marks.reply_started(),
            SessionEvent::Interrupted => {
                self.reply.clear();
                frames.push(Message::Text(json!({"event": "clear"}).to_string().into()));
            }
            SessionEvent::ResponseComplete { response_id, .. } => {
                let mut sent = 0;
                self.reply.flush(|f| {
                    frames.push(media(&f));
                    sent += 1;
                });
                if let Some(name) = self.marks.sent(sent) {
                    frames.push(mark(&name));
                }
                frames.push(mark(&response_id));
            }
            _ => {}
        }
    }

    fn audio(&mut self, pcm: Bytes, frames: &mut Vec<Message>) {
        let mut sent = 0;
        self.reply.push(&pcm, |f| {
            frames.push(media(&f));
            sent += 1;
        });
        if let Some(name) = self.marks.sent(sent) {
            frames.push(mark(&name));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const START: &str = r#"{"event":"start","sequence_number":"1","start":{"user_id":"u1","call_control_id":"v3:abc","client_state":"","media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}},"stream_id":"32DE0DEA"}"#;

    #[test]
    fn the_start_frame_picks_the_codec() {
        let call = start(Frame::Text(START)).expect("valid").expect("a start");
        assert_eq!(call.encoding, Encoding::Alaw);
        assert_eq!(call.call_id.as_deref(), Some("v3:abc"));
        assert_eq!(
            start(Frame::Text(r#"{"event":"connected","version":"1.0.0"}"#)),
            Ok(None)
        );
        let opus = START.replace("PCMA", "OPUS");
        assert!(
            start(Frame::Text(&opus))
                .expect_err("refused")
                .contains("unsupported codec OPUS")
        );
    }

    #[test]
    fn a_call_in_both_directions() {
        let call = start(Frame::Text(START)).expect("valid").expect("a start");
        let mut codec = codec(&call, 16_000);
        let media = r#"{"event":"media","sequence_number":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"1dXV1Q=="},"stream_id":"32DE0DEA"}"#;
        assert!(matches!(
            codec.decoder.decode(Frame::Text(media)),
            Ok(ClientMessage::Audio(_))
        ));
        let dtmf = r##"{"event":"dtmf","sequence_number":"5","dtmf":{"digit":"#"},"stream_id":"32DE0DEA"}"##;
        assert_eq!(
            codec.decoder.decode(Frame::Text(dtmf)),
            Ok(ClientMessage::Text("The caller pressed # on the keypad.".into()))
        );
        let stop = r#"{"event":"stop","sequence_number":"6","stop":{"user_id":"u1","call_control_id":"v3:abc"},"stream_id":"32DE0DEA"}"#;
        assert!(codec.decoder.decode(Frame::Text(stop)).is_err());
        let mut frames = Vec::new();
        codec.encoder.audio(Bytes::from(vec![0u8; 640]), &mut frames);
        let [Message::Text(text)] = frames.as_slice() else {
            panic!("{frames:?}")
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
        let payload = base64_payload(value["media"]["payload"].as_str().expect("payload")).expect("base64");
        assert_eq!(payload.len(), 160);
        frames.clear();
        codec.encoder.event(SessionEvent::Interrupted, &mut frames);
        assert_eq!(frames, [Message::Text(r#"{"event":"clear"}"#.into())]);
    }
}
