//! The Strands-compatible protocol on `/ws` (`strands-1.40`, the default): JSON events with a
//! `type` tag in the schema Strands `BidiAgent` frontends up to 1.40 exchange, plus raw PCM16LE
//! binary frames for clients that want the efficient path.
//!
//! In: `bidi_audio_input` (base64 PCM), `bidi_text_input`, or binary PCM at 16 kHz. Out: the
//! events of [`ServerEvent`]; reply audio as `bidi_audio_stream` JSON or, with
//! `?audio_output=binary`, as binary frames.

mod codec;
mod events;

use axum::extract::ws::Message;
use bytes::Bytes;
use serde::Serialize;

pub use codec::{MAX_TEXT_INPUT_BYTES, decode_binary, decode_text, encode_audio_json};
pub use events::{ServerEvent, ToolResultBody, ToolResultContent, ToolUseBody, TranscriptDelta};

use super::{ClientMessage, Codec, Decode, DecodeError, Encode, Frame, Handshake, JsonLimits, Protocol, SessionEvent};
use crate::model::TokenUsage;

pub const PROTOCOL: Protocol = Protocol {
    name: "strands-1.40",
    path: "/ws",
    open,
};

/// How reply audio reaches the client, chosen at connect time (`/ws?audio_output=binary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioOutput {
    /// `bidi_audio_stream` JSON events with base64 PCM (the Strands-compatible default).
    #[default]
    Json,
    /// Raw PCM16LE binary frames; every other event stays JSON.
    Binary,
}

/// The `audio_output` query parameter of a handshake (shared with `strands-1.62`).
pub(crate) fn audio_output(handshake: &Handshake<'_>) -> Result<AudioOutput, String> {
    match handshake.query.get("audio_output").map(String::as_str) {
        None | Some("json") => Ok(AudioOutput::Json),
        Some("binary") => Ok(AudioOutput::Binary),
        Some(_) => Err("audio_output must be \"json\" or \"binary\"".into()),
    }
}

fn open(handshake: &Handshake<'_>) -> Result<Codec, String> {
    let audio_output = audio_output(handshake)?;
    Ok(Codec {
        decoder: Box::new(Decoder::new(handshake.json)),
        encoder: Box::new(Encoder {
            audio_output,
            output_sample_rate: handshake.output_sample_rate,
            usage: TokenUsage::default(),
        }),
    })
}

/// Client frames to session input: typed JSON events or binary PCM. Strands 1.62 defines no
/// wire format for input, so `strands-1.62` decodes with this one too.
pub(crate) struct Decoder {
    json: JsonLimits,
}

impl Decoder {
    pub(crate) fn new(json: JsonLimits) -> Self {
        Self { json }
    }
}

impl Decode for Decoder {
    fn decode(&mut self, frame: Frame<'_>) -> Result<ClientMessage, DecodeError> {
        match frame {
            Frame::Text(text) => decode_text(text, &self.json),
            Frame::Binary(data) => decode_binary(data),
        }
    }
}

struct Encoder {
    audio_output: AudioOutput,
    output_sample_rate: u32,
    /// The session's token counts so far: this schema reports running totals.
    usage: TokenUsage,
}

impl Encode for Encoder {
    fn event(&mut self, event: SessionEvent, frames: &mut Vec<Message>) {
        if let Some(event) = self.server_event(event) {
            frames.push(Message::Text(event.to_json().into()));
        }
    }

    fn audio(&mut self, pcm: Bytes, frames: &mut Vec<Message>) {
        frames.push(match self.audio_output {
            AudioOutput::Binary => Message::Binary(pcm),
            AudioOutput::Json => Message::Text(encode_audio_json(&pcm, self.output_sample_rate).into()),
        });
    }
}

impl Encoder {
    /// The event in this schema; `None` for what the schema has no event for.
    fn server_event(&mut self, event: SessionEvent) -> Option<ServerEvent> {
        Some(match event {
            SessionEvent::Started {
                session_id,
                model,
                input_sample_rate,
                output_sample_rate,
                settings,
                resume,
            } => ServerEvent::ConnectionStart {
                connection_id: session_id,
                model,
                input_sample_rate,
                output_sample_rate,
                audio_output: self.audio_output,
                settings,
                resume,
            },
            SessionEvent::ResponseStart { response_id } => ServerEvent::ResponseStart { response_id },
            SessionEvent::Transcript { role, text, is_final } => ServerEvent::TranscriptStream {
                role: role.as_str(),
                delta: TranscriptDelta { text: text.clone() },
                text,
                is_final,
            },
            SessionEvent::Interrupted => ServerEvent::Interruption { reason: "user_speech" },
            SessionEvent::ResponseComplete {
                response_id,
                stop_reason,
            } => ServerEvent::ResponseComplete {
                response_id,
                stop_reason,
            },
            SessionEvent::Usage(usage) => {
                self.usage += usage;
                ServerEvent::Usage {
                    input_tokens: self.usage.input(),
                    output_tokens: self.usage.output(),
                    total_tokens: self.usage.input() + self.usage.output(),
                }
            }
            SessionEvent::RestartWarning { .. } => return None,
            SessionEvent::ToolUse { id, name, input } => ServerEvent::ToolUse {
                current_tool_use: ToolUseBody {
                    tool_use_id: id,
                    name,
                    input,
                },
            },
            SessionEvent::ToolResult {
                id,
                name,
                is_error,
                content,
            } => ServerEvent::ToolResult {
                tool_result: ToolResultBody::new(id, name, is_error, content),
            },
            SessionEvent::Restarted { reason, .. } => ServerEvent::ConnectionRestart { reason },
            SessionEvent::Closing {
                session_id,
                reason,
                resume_token,
            } => ServerEvent::ConnectionClose {
                connection_id: session_id,
                reason: reason.as_str(),
                resume_token,
            },
            SessionEvent::Error { code, message } => ServerEvent::error(code, message),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::model::Role;
    use crate::protocol::{EndReason, StopReason};

    fn codec(query: &[(&str, &str)]) -> Codec {
        let query: HashMap<String, String> = query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        open(&Handshake {
            query: &query,
            json: JsonLimits::default(),
            output_sample_rate: 24_000,
        })
        .expect("opens")
    }

    fn json_of(encoder: &mut dyn Encode, event: SessionEvent) -> Value {
        let mut frames = Vec::new();
        encoder.event(event, &mut frames);
        match frames.as_slice() {
            [Message::Text(text)] => serde_json::from_str(text.as_str()).expect("JSON"),
            other => panic!("one text frame expected, got {other:?}"),
        }
    }

    #[test]
    fn events_keep_the_strands_schema() {
        let mut encoder = codec(&[]).encoder;
        let start = json_of(
            encoder.as_mut(),
            SessionEvent::Started {
                session_id: "c1".into(),
                model: "simulated".into(),
                input_sample_rate: 16_000,
                output_sample_rate: 24_000,
                settings: Default::default(),
                resume: None,
            },
        );
        assert_eq!(
            start,
            json!({"type": "bidi_connection_start", "connection_id": "c1", "model": "simulated",
                   "input_sample_rate": 16000, "output_sample_rate": 24000, "audio_output": "json"})
        );
        let transcript = json_of(
            encoder.as_mut(),
            SessionEvent::Transcript {
                role: Role::Assistant,
                text: "Hi.".into(),
                is_final: true,
            },
        );
        assert_eq!(
            transcript,
            json!({"type": "bidi_transcript_stream", "role": "assistant", "text": "Hi.",
                   "delta": {"text": "Hi."}, "is_final": true})
        );
        assert_eq!(
            json_of(encoder.as_mut(), SessionEvent::Interrupted),
            json!({"type": "bidi_interruption", "reason": "user_speech"})
        );
        assert_eq!(
            json_of(
                encoder.as_mut(),
                SessionEvent::ResponseComplete {
                    response_id: "r1".into(),
                    stop_reason: StopReason::Interrupted
                }
            ),
            json!({"type": "bidi_response_complete", "response_id": "r1", "stop_reason": "interrupted"})
        );
        assert_eq!(
            json_of(
                encoder.as_mut(),
                SessionEvent::Closing {
                    session_id: "c1".into(),
                    reason: EndReason::Draining,
                    resume_token: None,
                }
            ),
            json!({"type": "bidi_connection_close", "connection_id": "c1", "reason": "draining"})
        );
        assert_eq!(
            json_of(
                encoder.as_mut(),
                SessionEvent::ToolResult {
                    id: "t1".into(),
                    name: "lookup".into(),
                    is_error: true,
                    content: "no such order".into()
                }
            ),
            json!({"type": "tool_result", "tool_result": {"toolUseId": "t1", "name": "lookup",
                   "status": "error", "content": [{"text": "no such order"}]}})
        );
    }

    #[test]
    fn binary_audio_output_is_announced_and_sent_raw() {
        let mut encoder = codec(&[("audio_output", "binary")]).encoder;
        let start = json_of(
            encoder.as_mut(),
            SessionEvent::Started {
                session_id: "c1".into(),
                model: "m".into(),
                input_sample_rate: 16_000,
                output_sample_rate: 24_000,
                settings: Default::default(),
                resume: None,
            },
        );
        assert_eq!(start["audio_output"], "binary");
        let mut frames = Vec::new();
        encoder.audio(Bytes::from_static(&[1, 2, 3, 4]), &mut frames);
        assert_eq!(frames, [Message::Binary(Bytes::from_static(&[1, 2, 3, 4]))]);
    }

    #[test]
    fn json_audio_output_is_bidi_audio_stream() {
        let mut encoder = codec(&[]).encoder;
        let mut frames = Vec::new();
        encoder.audio(Bytes::from_static(&[1, 0]), &mut frames);
        let [Message::Text(text)] = frames.as_slice() else {
            panic!("{frames:?}")
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
        assert_eq!(value["type"], "bidi_audio_stream");
        assert_eq!(value["sample_rate"], 24000);
    }

    #[test]
    fn decodes_text_and_binary_frames() {
        let mut decoder = codec(&[]).decoder;
        let text = decoder.decode(Frame::Text(r#"{"type":"bidi_text_input","text":"hello"}"#));
        assert_eq!(text, Ok(ClientMessage::Text("hello".into())));
        let pcm = Bytes::from_static(&[0, 1]);
        assert_eq!(
            decoder.decode(Frame::Binary(&pcm)),
            Ok(ClientMessage::Audio(pcm.clone()))
        );
    }
}
