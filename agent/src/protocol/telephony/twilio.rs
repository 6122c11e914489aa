//! Twilio Media Streams, bidirectional (`<Connect><Stream>`), on `/twilio`.
//!
//! In (JSON text frames): `connected`, `start` (`streamSid`, `callSid`, `mediaFormat`
//! audio/x-mulaw 8000 mono, `customParameters`), `media` (base64 μ-law, 20 ms), `dtmf`, `mark`
//! (a reply we sent has been played), `stop`. Out: `media` (base64 μ-law with the
//! `streamSid`), `mark` at the end of each reply, `clear` when the caller barges in.

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
    name: "twilio",
    path: "/twilio",
    open,
};

pub const CARRIER: Carrier = Carrier {
    protocol: &PROTOCOL,
    start,
    codec,
};

/// Twilio streams μ-law at 8 kHz, both ways.
const SAMPLE_RATE: u32 = 8_000;

#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Event {
    Connected,
    Start {
        start: Start,
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
    Stop,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start {
    stream_sid: String,
    call_sid: Option<String>,
    media_format: Option<MediaFormat>,
    #[serde(default)]
    custom_parameters: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
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

#[derive(Deserialize)]
struct Mark {
    name: String,
}

fn start(frame: Frame<'_>) -> Result<Option<CallStart>, String> {
    match json_frame::<Event>(frame)? {
        Event::Connected | Event::Other => Ok(None),
        Event::Start { start } => {
            if let Some(format) = &start.media_format
                && (format.encoding != "audio/x-mulaw" || format.sample_rate != SAMPLE_RATE || format.channels != 1)
            {
                return Err(format!(
                    "unsupported media format {} at {} Hz, {} channels; Twilio streams audio/x-mulaw at 8000 Hz mono",
                    format.encoding.chars().take(32).collect::<String>(),
                    format.sample_rate,
                    format.channels
                ));
            }
            if start.stream_sid.is_empty() || start.stream_sid.len() > 64 {
                return Err("start without a valid streamSid".into());
            }
            Ok(Some(CallStart {
                stream_id: start.stream_sid,
                call_id: start.call_sid,
                encoding: Encoding::Ulaw,
                sample_rate: SAMPLE_RATE,
                parameters: start.custom_parameters,
            }))
        }
        Event::Media { .. } | Event::Dtmf { .. } | Event::Mark { .. } | Event::Stop => {
            Err("the stream sent call events before its start".into())
        }
    }
}

fn open(handshake: &Handshake<'_>) -> Result<Codec, String> {
    // Replaced once the call's start frame has said which stream this is.
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
            stream_sid: call.stream_id.clone(),
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
        let event = json_frame::<Event>(frame).map_err(DecodeError::fatal)?;
        match event {
            Event::Media { media } => {
                // A bidirectional stream carries the caller's track only; anything else is ignored.
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return Ok(nothing());
                }
                self.caller.decode(&base64_payload(&media.payload)?)
            }
            Event::Dtmf { dtmf } => Ok(key_press(&dtmf.digit).unwrap_or_else(nothing)),
            Event::Mark { mark } => Ok(mark.and_then(|m| PlaybackMarks::heard(&m.name)).unwrap_or_else(nothing)),
            Event::Stop => Err(hung_up()),
            Event::Start { .. } => Err(DecodeError::fatal("a second start on the same stream")),
            Event::Connected | Event::Other => Ok(nothing()),
        }
    }
}

struct Encoder {
    stream_sid: String,
    reply: ReplyAudio,
    marks: PlaybackMarks,
}

impl Encoder {
    fn media(&self, payload: &[u8]) -> Message {
        let event =
            json!({"event": "media", "streamSid": self.stream_sid, "media": {"payload": base64::encode(payload)}});
        Message::Text(event.to_string().into())
    }

    fn mark(&self, name: &str) -> Message {
        let mark = json!({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}});
        Message::Text(mark.to_string().into())
    }
}

impl Encode for Encoder {
    fn event(&mut self, event: SessionEvent, frames: &mut Vec<Message>) {
        match event {
            SessionEvent::ResponseStart { .. } => self.marks.reply_started(),
            SessionEvent::Interrupted => {
                self.reply.clear();
                let clear = json!({"event": "clear", "streamSid": self.stream_sid});
                frames.push(Message::Text(clear.to_string().into()));
            }
            SessionEvent::ResponseComplete { response_id, .. } => {
                let mut last = Vec::new();
                self.reply.flush(|f| last.push(f));
                frames.extend(last.iter().map(|f| self.media(f)));
                if let Some(name) = self.marks.sent(last.len()) {
                    frames.push(self.mark(&name));
                }
                frames.push(self.mark(&response_id));
            }
            _ => {}
        }
    }

    fn audio(&mut self, pcm: Bytes, frames: &mut Vec<Message>) {
        let mut encoded = Vec::new();
        self.reply.push(&pcm, |f| encoded.push(f));
        frames.extend(encoded.iter().map(|f| self.media(f)));
        if let Some(name) = self.marks.sent(encoded.len()) {
            frames.push(self.mark(&name));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::protocol::{EndReason, StopReason};

    const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"caller":"+15550100"}},"streamSid":"MZ1"}"#;

    fn started() -> (CallStart, Codec) {
        let call = start(Frame::Text(START)).expect("valid").expect("a start");
        let codec = codec(&call, 24_000);
        (call, codec)
    }

    fn json_of(message: &Message) -> Value {
        match message {
            Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
            other => panic!("text expected: {other:?}"),
        }
    }

    #[test]
    fn the_start_frame_names_the_call_and_its_parameters() {
        assert_eq!(
            start(Frame::Text(
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#
            )),
            Ok(None)
        );
        let (call, _) = started();
        assert_eq!(call.stream_id, "MZ1");
        assert_eq!(call.call_id.as_deref(), Some("CA1"));
        assert_eq!(call.parameters["caller"], "+15550100");
        let media_first = r#"{"event":"media","media":{"payload":""},"streamSid":"MZ1"}"#;
        assert!(start(Frame::Text(media_first)).is_err());
        let alaw = START.replace("audio/x-mulaw", "audio/x-alaw");
        assert!(
            start(Frame::Text(&alaw))
                .expect_err("refused")
                .contains("unsupported media format")
        );
    }

    #[test]
    fn media_dtmf_mark_and_stop_reach_the_session() {
        let (_, mut codec) = started();
        let media = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"//////////8="},"streamSid":"MZ1"}"#;
        assert!(matches!(
            codec.decoder.decode(Frame::Text(media)),
            Ok(ClientMessage::Audio(_))
        ));
        let dtmf =
            r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"7"}}"#;
        assert_eq!(
            codec.decoder.decode(Frame::Text(dtmf)),
            Ok(ClientMessage::Text("The caller pressed 7 on the keypad.".into()))
        );
        let mark = r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"r1"}}"#;
        assert_eq!(codec.decoder.decode(Frame::Text(mark)), Ok(nothing()));
        let playback = mark.replace(r#""r1""#, r#""3:400""#);
        assert_eq!(
            codec.decoder.decode(Frame::Text(&playback)),
            Ok(ClientMessage::Heard {
                reply: 3,
                audio: std::time::Duration::from_millis(400)
            })
        );
        let stop =
            r#"{"event":"stop","sequenceNumber":"6","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
        assert!(matches!(
            codec.decoder.decode(Frame::Text(stop)),
            Err(DecodeError::Fatal {
                reason: EndReason::ClientClosed,
                ..
            })
        ));
        assert!(codec.decoder.decode(Frame::Text(START)).is_err(), "a second start");
        let broken = r#"{"event":"media","media":{"payload":"not base64!"},"streamSid":"MZ1"}"#;
        assert!(codec.decoder.decode(Frame::Text(broken)).is_err());
    }

    #[test]
    fn replies_are_20_ms_media_frames_then_a_mark_and_barge_in_clears() {
        let (_, mut codec) = started();
        let mut frames = Vec::new();
        codec.encoder.audio(Bytes::from(vec![0u8; 4_800]), &mut frames); // 100 ms at 24 kHz
        assert!(!frames.is_empty());
        for frame in &frames {
            let media = json_of(frame);
            assert_eq!(media["event"], "media");
            assert_eq!(media["streamSid"], "MZ1");
            let payload = base64_payload(media["media"]["payload"].as_str().expect("payload")).expect("base64");
            assert_eq!(payload.len(), 160, "20 ms of μ-law at 8 kHz");
        }
        frames.clear();
        codec.encoder.event(
            SessionEvent::ResponseComplete {
                response_id: "r1".into(),
                stop_reason: StopReason::Complete,
            },
            &mut frames,
        );
        let mark = json_of(frames.last().expect("a mark"));
        assert_eq!(mark["event"], "mark");
        assert_eq!(mark["mark"]["name"], "r1");
        frames.clear();
        codec.encoder.event(SessionEvent::Interrupted, &mut frames);
        assert_eq!(json_of(&frames[0]), json!({"event": "clear", "streamSid": "MZ1"}));
    }
}
