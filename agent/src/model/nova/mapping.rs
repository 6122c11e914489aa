//! Where a Nova Sonic output event becomes neutral model outputs: transcripts with their
//! generation stage, reply audio, barge-in (from either signal), tool calls, usage, and the
//! response boundaries the client sees.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;

use super::wire::{OutputEvent, UsageEvent};
use crate::audio::base64;
use crate::model::{ModelOutput, Role, TokenUsage, ToolUse};
use crate::protocol::StopReason;

/// What the driver must do with one mapped event.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Forward to the session.
    Output(ModelOutput),
    /// Add to the conversation history replayed into later streams.
    Remember(Role, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Audio,
    Tool,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaker {
    User,
    Assistant,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Content {
    kind: Kind,
    speaker: Speaker,
    is_final: bool,
    /// It carried Nova's barge-in marker, not words: its end does not end the reply.
    marker: bool,
}

#[derive(Debug)]
struct Response {
    id: String,
    interrupted: bool,
}

#[derive(Debug, Default)]
pub struct OutputMapper {
    /// Open contents of the current stream, by content id.
    contents: HashMap<String, Content>,
    response: Option<Response>,
    /// How the active response will end, once its last content is done.
    pending_end: Option<StopReason>,
    responses: u64,
    /// The stream's running token totals at its last usage report.
    usage_totals: (u64, u64),
}

impl OutputMapper {
    /// Whether a reply is in progress (streams are only renewed between replies).
    pub fn in_response(&self) -> bool {
        self.response.is_some()
    }

    /// Maps one output event.
    pub fn on_event(&mut self, event: OutputEvent<'_>, out: &mut Vec<Mapped>) {
        if let Some(start) = event.content_start {
            let content = Content {
                kind: kind(start.kind.as_deref()),
                speaker: speaker(start.role.as_deref()),
                is_final: start.generation_stage().as_deref() != Some("SPECULATIVE"),
                marker: false,
            };
            if content.speaker == Speaker::User {
                // The user talks again: whatever was pending of the last reply is over.
                self.finish(out);
            } else if content.speaker == Speaker::Assistant && content.kind != Kind::Other {
                self.ensure_response(out);
            }
            if let Some(id) = start.content_id {
                self.contents.insert(id.into_owned(), content);
            }
        }
        if let Some(text) = event.text_output {
            let content = text.content_id.as_deref().and_then(|id| self.contents.get(id)).copied();
            let speaker = content.map_or_else(|| speaker(text.role.as_deref()), |c| c.speaker);
            let body = text.content.into_owned();
            match speaker {
                Speaker::User => {
                    if !body.trim().is_empty() {
                        out.push(Mapped::Output(ModelOutput::UserTurnEnd));
                        out.push(Mapped::Output(ModelOutput::Transcript {
                            role: Role::User,
                            text: body.clone(),
                            is_final: true,
                        }));
                        out.push(Mapped::Remember(Role::User, body));
                    }
                }
                Speaker::Assistant => {
                    if is_interruption_marker(&body) {
                        if let Some(content) = text.content_id.as_deref().and_then(|id| self.contents.get_mut(id)) {
                            content.marker = true;
                        }
                        self.interrupt(out);
                    } else if !body.trim().is_empty() {
                        self.ensure_response(out);
                        let is_final = content.is_none_or(|c| c.is_final);
                        out.push(Mapped::Output(ModelOutput::Transcript {
                            role: Role::Assistant,
                            text: body.clone(),
                            is_final,
                        }));
                        if is_final {
                            out.push(Mapped::Remember(Role::Assistant, body));
                        }
                    }
                }
                Speaker::Other => {}
            }
        }
        if let Some(audio) = event.audio_output {
            let interrupted = self.response.as_ref().is_some_and(|r| r.interrupted);
            if !interrupted && let Some(pcm) = base64::decode(&audio.content) {
                self.ensure_response(out);
                out.push(Mapped::Output(ModelOutput::Audio(Bytes::from(pcm))));
            }
        }
        if let Some(tool) = event.tool_use {
            self.ensure_response(out);
            let input = tool
                .content
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or(Value::Object(Default::default()));
            out.push(Mapped::Output(ModelOutput::ToolUse(Box::new(ToolUse {
                id: tool.tool_use_id.into_owned(),
                name: tool.tool_name.into_owned(),
                input,
            }))));
        }
        if let Some(end) = event.content_end {
            let content = end.content_id.as_deref().and_then(|id| self.contents.remove(id));
            let is_audio = content.map(|c| c.kind) == Some(Kind::Audio) || end.kind.as_deref() == Some("AUDIO");
            match end.stop_reason.as_deref() {
                Some("INTERRUPTED") => self.interrupt(out),
                Some("END_TURN") if is_audio && self.response.is_some() => {
                    self.pending_end.get_or_insert(StopReason::Complete);
                }
                _ => {}
            }
            // The final transcript follows the audio; the reply ends with it (after a barge-in,
            // with the transcript of what was spoken, which follows the marker).
            if let Some(c) = content
                && c.speaker == Speaker::Assistant
                && c.kind == Kind::Text
                && c.is_final
                && !c.marker
                && self.pending_end.is_some()
            {
                self.finish(out);
            }
        }
        if let Some(usage) = event.usage_event {
            let usage = self.usage(usage);
            if !usage.is_empty() {
                out.push(Mapped::Output(ModelOutput::Usage(usage)));
            }
        }
        if event.completion_end.is_some() {
            self.finish(out);
        }
    }

    /// A usage report's own counts: Nova's `details.delta` by modality; from an event without
    /// the breakdown, the growth of the running totals, counted as speech.
    fn usage(&mut self, usage: UsageEvent) -> TokenUsage {
        let totals = (usage.total_input_tokens, usage.total_output_tokens);
        let grown = |now: u64, before: u64| u32::try_from(now.saturating_sub(before)).unwrap_or(u32::MAX);
        let delta = match usage.details.and_then(|d| d.delta) {
            Some(delta) => TokenUsage {
                input_speech: delta.input.speech_tokens,
                input_text: delta.input.text_tokens,
                output_speech: delta.output.speech_tokens,
                output_text: delta.output.text_tokens,
            },
            None => TokenUsage {
                input_speech: grown(totals.0, self.usage_totals.0),
                output_speech: grown(totals.1, self.usage_totals.1),
                ..TokenUsage::default()
            },
        };
        self.usage_totals = totals;
        delta
    }

    /// The stream was replaced: contents of the old one are gone, and a reply it was giving
    /// will not continue.
    pub fn reset_stream(&mut self, out: &mut Vec<Mapped>) {
        self.contents.clear();
        self.usage_totals = (0, 0);
        if self.response.is_some() {
            self.pending_end.get_or_insert(StopReason::Error);
            self.finish(out);
        }
    }

    fn ensure_response(&mut self, out: &mut Vec<Mapped>) {
        if self.response.is_none() {
            self.responses += 1;
            let id = format!("response-{}", self.responses);
            out.push(Mapped::Output(ModelOutput::ResponseStart { id: id.clone() }));
            self.response = Some(Response { id, interrupted: false });
            self.pending_end = None;
        }
    }

    fn interrupt(&mut self, out: &mut Vec<Mapped>) {
        if let Some(response) = &mut self.response
            && !response.interrupted
        {
            response.interrupted = true;
            out.push(Mapped::Output(ModelOutput::Interruption));
        }
        if self.response.is_some() {
            self.pending_end = Some(StopReason::Interrupted);
        }
    }

    fn finish(&mut self, out: &mut Vec<Mapped>) {
        if let Some(response) = self.response.take() {
            let stop_reason = self.pending_end.take().unwrap_or(StopReason::Complete);
            out.push(Mapped::Output(ModelOutput::ResponseComplete {
                id: response.id,
                stop_reason,
            }));
        }
        self.pending_end = None;
    }
}

fn kind(value: Option<&str>) -> Kind {
    match value {
        Some("TEXT") => Kind::Text,
        Some("AUDIO") => Kind::Audio,
        Some("TOOL") => Kind::Tool,
        _ => Kind::Other,
    }
}

fn speaker(value: Option<&str>) -> Speaker {
    match value {
        Some("USER") => Speaker::User,
        Some("ASSISTANT") => Speaker::Assistant,
        _ => Speaker::Other,
    }
}

/// Nova signals barge-in with the text `{ "interrupted" : true }` in the assistant's transcript.
fn is_interruption_marker(text: &str) -> bool {
    let trimmed = text.trim();
    trimmed.starts_with('{')
        && serde_json::from_str::<Value>(trimmed).is_ok_and(|v| v.get("interrupted") == Some(&Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nova::wire::parse_output;

    fn feed(mapper: &mut OutputMapper, events: &[&str]) -> Vec<Mapped> {
        let mut out = Vec::new();
        for e in events {
            mapper.on_event(parse_output(e.as_bytes()).expect("valid event"), &mut out);
        }
        out
    }

    fn outputs(mapped: &[Mapped]) -> Vec<ModelOutput> {
        mapped
            .iter()
            .filter_map(|m| match m {
                Mapped::Output(o) => Some(o.clone()),
                _ => None,
            })
            .collect()
    }

    fn start(id: &str, kind: &str, role: &str, stage: Option<&str>) -> String {
        let fields = stage.map_or(String::new(), |s| {
            format!(r#","additionalModelFields":"{{\"generationStage\":\"{s}\"}}""#)
        });
        format!(r#"{{"event":{{"contentStart":{{"contentId":"{id}","type":"{kind}","role":"{role}"{fields}}}}}}}"#)
    }

    fn text(id: &str, content: &str) -> String {
        format!(
            r#"{{"event":{{"textOutput":{{"contentId":"{id}","content":{}}}}}}}"#,
            Value::String(content.into())
        )
    }

    fn end(id: &str, kind: &str, stop: &str) -> String {
        format!(r#"{{"event":{{"contentEnd":{{"contentId":"{id}","type":"{kind}","stopReason":"{stop}"}}}}}}"#)
    }

    fn audio(id: &str) -> String {
        format!(r#"{{"event":{{"audioOutput":{{"contentId":"{id}","content":"AAABAA=="}}}}}}"#)
    }

    /// One turn in the order Nova documents: user ASR, speculative text, audio, final text.
    fn turn(mapper: &mut OutputMapper) -> Vec<Mapped> {
        feed(
            mapper,
            &[
                r#"{"event":{"completionStart":{"completionId":"x"}}}"#,
                &start("u", "TEXT", "USER", None),
                &text("u", "what time is it"),
                &end("u", "TEXT", "END_TURN"),
                &start("s", "TEXT", "ASSISTANT", Some("SPECULATIVE")),
                &text("s", "It is noon."),
                &end("s", "TEXT", "PARTIAL_TURN"),
                &start("a", "AUDIO", "ASSISTANT", None),
                &audio("a"),
                &audio("a"),
                &end("a", "AUDIO", "END_TURN"),
                &start("f", "TEXT", "ASSISTANT", Some("FINAL")),
                &text("f", "It is noon."),
                &end("f", "TEXT", "END_TURN"),
                r#"{"event":{"usageEvent":{"totalInputTokens":10,"totalOutputTokens":5,"totalTokens":15,
                    "details":{"delta":{"input":{"speechTokens":7,"textTokens":3},"output":{"speechTokens":4,"textTokens":1}},
                    "total":{"input":{"speechTokens":7,"textTokens":3},"output":{"speechTokens":4,"textTokens":1}}}}}}"#,
            ],
        )
    }

    #[test]
    fn maps_a_documented_turn() {
        let mut mapper = OutputMapper::default();
        let mapped = turn(&mut mapper);
        let pcm = Bytes::from_static(&[0, 0, 1, 0]);
        assert_eq!(
            outputs(&mapped),
            vec![
                ModelOutput::UserTurnEnd,
                ModelOutput::Transcript {
                    role: Role::User,
                    text: "what time is it".into(),
                    is_final: true
                },
                ModelOutput::ResponseStart {
                    id: "response-1".into()
                },
                ModelOutput::Transcript {
                    role: Role::Assistant,
                    text: "It is noon.".into(),
                    is_final: false
                },
                ModelOutput::Audio(pcm.clone()),
                ModelOutput::Audio(pcm),
                ModelOutput::Transcript {
                    role: Role::Assistant,
                    text: "It is noon.".into(),
                    is_final: true
                },
                ModelOutput::ResponseComplete {
                    id: "response-1".into(),
                    stop_reason: StopReason::Complete
                },
                ModelOutput::Usage(TokenUsage {
                    input_speech: 7,
                    input_text: 3,
                    output_speech: 4,
                    output_text: 1,
                }),
            ]
        );
        assert!(!mapper.in_response());
    }

    #[test]
    fn only_final_transcripts_enter_history() {
        let mut mapper = OutputMapper::default();
        let remembered: Vec<_> = turn(&mut mapper)
            .into_iter()
            .filter_map(|m| match m {
                Mapped::Remember(role, text) => Some((role, text)),
                _ => None,
            })
            .collect();
        assert_eq!(
            remembered,
            vec![
                (Role::User, "what time is it".into()),
                (Role::Assistant, "It is noon.".into())
            ]
        );
    }

    #[test]
    fn the_interruption_marker_is_a_barge_in_not_text() {
        let mut mapper = OutputMapper::default();
        let mapped = feed(
            &mut mapper,
            &[
                &start("a", "AUDIO", "ASSISTANT", None),
                &audio("a"),
                &start("f", "TEXT", "ASSISTANT", Some("FINAL")),
                &text("f", "{ \"interrupted\" : true }"),
                &audio("a"),
                &end("f", "TEXT", "INTERRUPTED"),
                &end("a", "AUDIO", "INTERRUPTED"),
                // The transcript of what was spoken before the barge-in ends the reply.
                &start("g", "TEXT", "ASSISTANT", Some("FINAL")),
                &text("g", "It is"),
                &end("g", "TEXT", "END_TURN"),
            ],
        );
        let outs = outputs(&mapped);
        assert_eq!(
            outs.iter()
                .filter(|o| matches!(o, ModelOutput::ResponseStart { .. }))
                .count(),
            1,
            "one reply, not a second one for its last transcript: {outs:?}"
        );
        let spoken = outs
            .iter()
            .position(|o| matches!(o, ModelOutput::Transcript { text, is_final: true, .. } if text == "It is"));
        let complete = outs
            .iter()
            .position(|o| matches!(o, ModelOutput::ResponseComplete { .. }));
        assert!(spoken.is_some() && spoken < complete, "{outs:?}");
        assert_eq!(outs.iter().filter(|o| **o == ModelOutput::Interruption).count(), 1);
        assert!(
            !outs
                .iter()
                .any(|o| matches!(o, ModelOutput::Transcript { text, .. } if text.contains("interrupted")))
        );
        assert_eq!(
            outs.iter().filter(|o| matches!(o, ModelOutput::Audio(_))).count(),
            1,
            "no audio after barge-in"
        );
        assert!(outs.contains(&ModelOutput::ResponseComplete {
            id: "response-1".into(),
            stop_reason: StopReason::Interrupted
        }));
    }

    #[test]
    fn an_interrupted_stop_reason_alone_is_a_barge_in() {
        let mut mapper = OutputMapper::default();
        let mapped = feed(
            &mut mapper,
            &[
                &start("a", "AUDIO", "ASSISTANT", None),
                &audio("a"),
                &end("a", "AUDIO", "INTERRUPTED"),
                &start("u", "TEXT", "USER", None),
            ],
        );
        let outs = outputs(&mapped);
        assert!(outs.contains(&ModelOutput::Interruption));
        assert!(outs.contains(&ModelOutput::ResponseComplete {
            id: "response-1".into(),
            stop_reason: StopReason::Interrupted
        }));
    }

    #[test]
    fn tool_use_is_surfaced() {
        let mut mapper = OutputMapper::default();
        let mapped = feed(
            &mut mapper,
            &[
                r#"{"event":{"toolUse":{"contentId":"t","toolName":"get_weather","toolUseId":"u1","content":"{\"city\":\"Paris\"}"}}}"#,
            ],
        );
        assert!(outputs(&mapped).contains(&ModelOutput::ToolUse(Box::new(ToolUse {
            id: "u1".into(),
            name: "get_weather".into(),
            input: serde_json::json!({"city": "Paris"})
        }))));
    }

    #[test]
    fn completion_end_closes_an_open_response() {
        let mut mapper = OutputMapper::default();
        let mapped = feed(
            &mut mapper,
            &[
                &start("a", "AUDIO", "ASSISTANT", None),
                &audio("a"),
                r#"{"event":{"completionEnd":{"stopReason":"END_TURN"}}}"#,
            ],
        );
        assert!(matches!(
            outputs(&mapped).last(),
            Some(ModelOutput::ResponseComplete { .. })
        ));
    }

    #[test]
    fn a_replaced_stream_ends_the_reply_in_progress() {
        let mut mapper = OutputMapper::default();
        let mut out = feed(&mut mapper, &[&start("a", "AUDIO", "ASSISTANT", None), &audio("a")]);
        mapper.reset_stream(&mut out);
        assert!(outputs(&out).contains(&ModelOutput::ResponseComplete {
            id: "response-1".into(),
            stop_reason: StopReason::Error
        }));
        assert!(!mapper.in_response());
    }

    #[test]
    fn responses_are_numbered() {
        let mut mapper = OutputMapper::default();
        turn(&mut mapper);
        let second = outputs(&turn(&mut mapper));
        assert!(second.contains(&ModelOutput::ResponseStart {
            id: "response-2".into()
        }));
    }
}
