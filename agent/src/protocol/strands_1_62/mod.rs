//! The Strands 1.62 event schema on `/ws` (`strands-1.62`, chosen with `?protocol=strands-1.62`):
//! the events `strands.bidi` (`BidiAgent` with `BedrockNovaSonicModel`) yields, so a frontend
//! written against Strands 1.62 reads the agent unchanged.
//!
//! In: the same frames as `strands-1.40` (`bidi_audio_input`, `bidi_text_input`, binary PCM at
//! 16 kHz): Strands 1.62 defines no wire format for input. Out: the events of [`ServerEvent`];
//! reply audio as `bidi_audio_delta` JSON or, with `?audio_output=binary`, binary frames.
//!
//! Strands 1.62 brackets content with start/stop events and names it by `content_id`, where the
//! session's neutral events are single moments. The encoder keeps the open response, transcript
//! and audio stream of its session, so its events come at the moments Strands emits them for
//! the same Nova conversation: a response opens at its first content (the user's transcript,
//! or the first of the reply), the user's transcript closes when another speaker's content begins, the
//! assistant's transcript is the speculative text (the final text is not sent again), and a
//! response closes its audio and transcript before `bidi_response_stop`, after `bidi_barge_in`
//! when interrupted. Ids are the encoder's own, unique within the connection.

mod events;

use axum::extract::ws::Message;
use bytes::Bytes;

pub use events::{ServerEvent, TokenDetails, encode_audio_delta};

use super::strands::{AudioOutput, Decoder, ToolResultBody, ToolUseBody, audio_output};
use super::{Codec, Encode, Handshake, Protocol, SessionEvent};
use crate::model::{Role, TokenUsage};

pub const PROTOCOL: Protocol = Protocol {
    name: "strands-1.62",
    path: "/ws",
    open,
};

fn open(handshake: &Handshake<'_>) -> Result<Codec, String> {
    Ok(Codec {
        decoder: Box::new(Decoder::new(handshake.json)),
        encoder: Box::new(Encoder::new(audio_output(handshake)?, handshake.output_sample_rate)),
    })
}

/// An open transcript: its events share the id; the text is kept for the closing block.
#[derive(Debug)]
struct Transcript {
    content_id: String,
    role: Role,
    text: String,
}

impl Transcript {
    /// The next delta as Strands formats it: a space between chunks that would otherwise run
    /// two words together.
    fn delta(&mut self, chunk: &str) -> String {
        let joins = self.text.chars().next_back().is_some_and(|c| !c.is_whitespace())
            && chunk.chars().next().is_some_and(|c| !c.is_whitespace());
        let delta = if joins { format!(" {chunk}") } else { chunk.to_owned() };
        self.text.push_str(&delta);
        delta
    }
}

struct Encoder {
    audio_output: AudioOutput,
    output_sample_rate: u32,
    /// Source of the connection's response and content ids.
    next_id: u64,
    response: Option<String>,
    transcript: Option<Transcript>,
    /// The content id of the reply audio being streamed.
    audio: Option<String>,
}

impl Encode for Encoder {
    fn event(&mut self, event: SessionEvent, frames: &mut Vec<Message>) {
        let mut events = Vec::new();
        self.server_events(event, &mut events);
        frames.extend(events.iter().map(|e| Message::Text(e.to_json().into())));
    }

    /// The hot path: one branch on an open audio stream, then the JSON built straight from PCM.
    fn audio(&mut self, pcm: Bytes, frames: &mut Vec<Message>) {
        let content_id = match &self.audio {
            Some(id) => id,
            None => {
                let mut events = Vec::new();
                self.close_transcript_of(Role::User, &mut events);
                self.open_response(&mut events);
                let id = self.id("audio");
                events.push(ServerEvent::AudioStart { content_id: id.clone() });
                frames.extend(events.iter().map(|e| Message::Text(e.to_json().into())));
                self.audio.insert(id)
            }
        };
        frames.push(match self.audio_output {
            AudioOutput::Binary => Message::Binary(pcm),
            AudioOutput::Json => Message::Text(encode_audio_delta(&pcm, self.output_sample_rate, content_id).into()),
        });
    }
}

impl Encoder {
    fn new(audio_output: AudioOutput, output_sample_rate: u32) -> Self {
        Self {
            audio_output,
            output_sample_rate,
            next_id: 0,
            response: None,
            transcript: None,
            audio: None,
        }
    }

    fn id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{kind}-{}", self.next_id)
    }

    /// The events of this schema for one session event, in order (none for what it has no
    /// event for).
    fn server_events(&mut self, event: SessionEvent, out: &mut Vec<ServerEvent>) {
        match event {
            SessionEvent::Started {
                session_id,
                model,
                input_sample_rate,
                output_sample_rate,
                settings,
                resume,
            } => out.push(ServerEvent::ConnectionStart {
                connection_id: session_id,
                model,
                input_sample_rate,
                output_sample_rate,
                audio_output: self.audio_output,
                settings,
                resume,
            }),
            // A response opens at its first content, as in Strands: a reply the session starts
            // that brings nothing this schema sends (only a final transcript, say) is no
            // response here.
            SessionEvent::ResponseStart { .. } => {}
            SessionEvent::Transcript { role, text, is_final } => self.transcript(role, &text, is_final, out),
            SessionEvent::Interrupted => {
                out.push(ServerEvent::BargeIn);
                self.close_response(out);
            }
            SessionEvent::ResponseComplete { .. } => self.close_response(out),
            SessionEvent::Usage(usage) => out.push(usage_event(usage)),
            SessionEvent::ToolUse { id, name, input } => {
                self.close_transcript_of(Role::User, out);
                self.open_response(out);
                out.push(ServerEvent::ToolUseBlocks {
                    tool_uses: vec![ToolUseBody {
                        tool_use_id: id,
                        name,
                        input,
                    }],
                });
            }
            SessionEvent::ToolResult {
                id,
                name,
                is_error,
                content,
            } => out.push(ServerEvent::ToolResult {
                tool_result: ToolResultBody::new(id, name, is_error, content),
            }),
            SessionEvent::RestartWarning { time_left } => out.push(ServerEvent::ConnectionWarning {
                time_left_s: time_left.as_secs_f64(),
            }),
            SessionEvent::Restarted {
                reason,
                turn_interrupted,
            } => {
                // Nothing of the old stream continues on the new one.
                self.close_response(out);
                let scheduled = reason == "proactive";
                out.push(ServerEvent::ConnectionRestart {
                    reason: if scheduled { "scheduled" } else { "timeout" },
                    timeout_error: (!scheduled).then_some(reason),
                    turn_interrupted,
                });
            }
            SessionEvent::Closing {
                session_id,
                reason,
                resume_token,
            } => out.push(ServerEvent::ConnectionStop {
                connection_id: session_id,
                reason: reason.as_str(),
                resume_token,
            }),
            SessionEvent::Error { code, message } => out.push(ServerEvent::Error {
                code: code.to_owned(),
                message,
            }),
        }
    }

    /// A transcript: the user's text and the assistant's speculative text stream as deltas of
    /// one transcript per speaker turn; the assistant's final text repeats what was streamed.
    fn transcript(&mut self, role: Role, text: &str, is_final: bool, out: &mut Vec<ServerEvent>) {
        if role == Role::Assistant && is_final {
            return;
        }
        let other = match role {
            Role::User => Role::Assistant,
            Role::Assistant => Role::User,
        };
        self.close_transcript_of(other, out);
        self.open_response(out);
        if self.transcript.is_none() {
            let content_id = self.id("transcript");
            out.push(ServerEvent::TranscriptStart {
                role: role.as_str(),
                content_id: content_id.clone(),
            });
            self.transcript = Some(Transcript {
                content_id,
                role,
                text: String::new(),
            });
        }
        if let Some(transcript) = &mut self.transcript {
            out.push(ServerEvent::TranscriptDelta {
                delta: transcript.delta(text),
                role: role.as_str(),
                content_id: transcript.content_id.clone(),
            });
        }
    }

    fn open_response(&mut self, out: &mut Vec<ServerEvent>) {
        if self.response.is_none() {
            let response_id = self.id("response");
            out.push(ServerEvent::ResponseStart {
                response_id: response_id.clone(),
            });
            self.response = Some(response_id);
        }
    }

    /// Closes the open transcript if `role` speaks it: its stop, then its block.
    fn close_transcript_of(&mut self, role: Role, out: &mut Vec<ServerEvent>) {
        if self.transcript.as_ref().is_some_and(|t| t.role == role) {
            self.close_transcript(out);
        }
    }

    fn close_transcript(&mut self, out: &mut Vec<ServerEvent>) {
        if let Some(Transcript { content_id, role, text }) = self.transcript.take() {
            out.push(ServerEvent::TranscriptStop {
                role: role.as_str(),
                content_id: content_id.clone(),
            });
            out.push(ServerEvent::TranscriptBlock {
                transcript: text,
                role: role.as_str(),
                content_id,
            });
        }
    }

    /// Ends the open response: its audio, then its transcript, then the response.
    fn close_response(&mut self, out: &mut Vec<ServerEvent>) {
        let Some(response_id) = self.response.take() else {
            return;
        };
        if let Some(content_id) = self.audio.take() {
            out.push(ServerEvent::AudioStop { content_id });
        }
        self.close_transcript(out);
        out.push(ServerEvent::ResponseStop { response_id });
    }
}

fn usage_event(usage: TokenUsage) -> ServerEvent {
    ServerEvent::Usage {
        input_tokens: usage.input(),
        output_tokens: usage.output(),
        total_tokens: usage.input() + usage.output(),
        input_token_details: TokenDetails {
            audio: usage.input_speech,
            text: usage.input_text,
        },
        output_token_details: TokenDetails {
            audio: usage.output_speech,
            text: usage.output_text,
        },
    }
}

#[cfg(test)]
mod tests;
