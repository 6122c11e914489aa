//! Events the agent sends to clients, serialized as JSON text frames with a `type` tag.

use serde::Serialize;

use std::sync::Arc;

use super::AudioOutput;
use crate::protocol::ResumeOffer;
use crate::protocol::StopReason;
use crate::session::SessionSettings;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptDelta {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolUseBody {
    #[serde(rename = "toolUseId")]
    pub tool_use_id: String,
    pub name: String,
    pub input: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolResultBody {
    #[serde(rename = "toolUseId")]
    pub tool_use_id: String,
    pub name: String,
    /// `success` or `error`.
    pub status: &'static str,
    pub content: Vec<ToolResultContent>,
}

impl ToolResultBody {
    /// A finished tool call as Strands reports it (both schemas use this shape).
    pub fn new(tool_use_id: String, name: String, is_error: bool, text: String) -> Self {
        Self {
            tool_use_id,
            name,
            status: if is_error { "error" } else { "success" },
            content: vec![ToolResultContent { text }],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolResultContent {
    pub text: String,
}

/// Every event the agent sends as a JSON text frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    /// First event of every session.
    #[serde(rename = "bidi_connection_start")]
    ConnectionStart {
        connection_id: String,
        model: String,
        input_sample_rate: u32,
        output_sample_rate: u32,
        audio_output: AudioOutput,
        /// The effective per-session settings (omitted when the caller chose none).
        #[serde(skip_serializing_if = "settings_are_default")]
        settings: Arc<SessionSettings>,
        /// `resume_token`, `resume_window_s`, `resumed`, `resume_anywhere` (when resumption is on).
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeOffer>,
    },
    #[serde(rename = "bidi_response_start")]
    ResponseStart { response_id: String },
    // Reply audio in JSON mode (`bidi_audio_stream`) is not here: the encoder builds it from
    // raw PCM (`codec::encode_audio_json`), so the session never holds base64 copies.
    #[serde(rename = "bidi_transcript_stream")]
    TranscriptStream {
        role: &'static str,
        text: String,
        delta: TranscriptDelta,
        is_final: bool,
    },
    #[serde(rename = "bidi_interruption")]
    Interruption { reason: &'static str },
    #[serde(rename = "bidi_response_complete")]
    ResponseComplete {
        response_id: String,
        stop_reason: StopReason,
    },
    #[serde(rename = "bidi_usage")]
    Usage {
        #[serde(rename = "inputTokens")]
        input_tokens: u64,
        #[serde(rename = "outputTokens")]
        output_tokens: u64,
        #[serde(rename = "totalTokens")]
        total_tokens: u64,
    },
    /// The model calls a tool (Strands' tool-use stream event shape).
    #[serde(rename = "tool_use_stream")]
    ToolUse { current_tool_use: ToolUseBody },
    /// A tool call finished (Strands' tool result event shape).
    #[serde(rename = "tool_result")]
    ToolResult { tool_result: ToolResultBody },
    /// The model stream was replaced; the conversation continues.
    #[serde(rename = "bidi_connection_restart")]
    ConnectionRestart { reason: String },
    #[serde(rename = "bidi_connection_close")]
    ConnectionClose {
        connection_id: String,
        reason: &'static str,
        /// The token to resume with on another replica (a drain close).
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    #[serde(rename = "bidi_error")]
    Error { code: String, message: String },
}

fn settings_are_default(settings: &SessionSettings) -> bool {
    *settings == SessionSettings::default()
}

impl ServerEvent {
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // user-provided Serialize impls.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"bidi_error\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(ev: &ServerEvent) -> serde_json::Value {
        serde_json::from_str(&ev.to_json()).expect("valid json")
    }

    #[test]
    fn usage_uses_strands_camel_case_keys() {
        let ev = ServerEvent::Usage {
            input_tokens: 3,
            output_tokens: 4,
            total_tokens: 7,
        };
        assert_eq!(
            value(&ev),
            json!({"type":"bidi_usage","inputTokens":3,"outputTokens":4,"totalTokens":7})
        );
    }

    #[test]
    fn transcript_carries_role_text_delta_and_finality() {
        let ev = ServerEvent::TranscriptStream {
            role: "assistant",
            text: "Hi.".into(),
            delta: TranscriptDelta { text: "Hi.".into() },
            is_final: false,
        };
        assert_eq!(
            value(&ev),
            json!({"type":"bidi_transcript_stream","role":"assistant","text":"Hi.",
                   "delta":{"text":"Hi."},"is_final":false})
        );
    }

    #[test]
    fn connection_start_names_the_audio_output_mode() {
        let ev = ServerEvent::ConnectionStart {
            connection_id: "c1".into(),
            model: "simulated".into(),
            input_sample_rate: 16000,
            output_sample_rate: 24000,
            audio_output: AudioOutput::Binary,
            settings: Arc::default(),
            resume: None,
        };
        assert_eq!(value(&ev)["audio_output"], "binary");
        assert_eq!(value(&ev)["type"], "bidi_connection_start");
    }
}
