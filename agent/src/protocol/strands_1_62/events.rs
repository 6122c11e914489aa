//! The `strands-1.62` events the agent sends as JSON text frames: Strands 1.62's
//! `strands.bidi.types.events` (type names and keys), plus the agent's extensions
//! (`bidi_error`, `tool_result`, and extra keys on `bidi_connection_start`).
//!
//! Reply audio (`bidi_audio_delta`) is not here: it is built directly from PCM, see
//! [`encode_audio_delta`].

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::protocol::ResumeOffer;
use crate::protocol::strands::{AudioOutput, ToolResultBody, ToolUseBody};
use crate::session::SessionSettings;

/// Token counts by modality (Strands' `TokenDetails`, the keys Nova reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenDetails {
    pub audio: u32,
    pub text: u32,
}

/// Every event of this schema sent as a JSON text frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    /// First event of every session. `connection_id` and `model` are Strands'; the rest are the
    /// agent's, as in `strands-1.40`.
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
    #[serde(rename = "bidi_response_stop")]
    ResponseStop { response_id: String },
    #[serde(rename = "bidi_audio_start")]
    AudioStart { content_id: String },
    #[serde(rename = "bidi_audio_stop")]
    AudioStop { content_id: String },
    #[serde(rename = "bidi_transcript_start")]
    TranscriptStart { role: &'static str, content_id: String },
    #[serde(rename = "bidi_transcript_delta")]
    TranscriptDelta {
        delta: String,
        role: &'static str,
        content_id: String,
    },
    #[serde(rename = "bidi_transcript_stop")]
    TranscriptStop { role: &'static str, content_id: String },
    /// The whole transcript, right after its stop (Strands' `BidiAgent` emits it).
    #[serde(rename = "bidi_transcript_block")]
    TranscriptBlock {
        transcript: String,
        role: &'static str,
        content_id: String,
    },
    #[serde(rename = "bidi_barge_in")]
    BargeIn,
    /// Tokens counted since the previous report (not running totals).
    #[serde(rename = "bidi_usage")]
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        total_tokens: u64,
        input_token_details: TokenDetails,
        output_token_details: TokenDetails,
    },
    #[serde(rename = "bidi_tool_use_blocks")]
    ToolUseBlocks { tool_uses: Vec<ToolUseBody> },
    /// Extension: a tool call finished (the `strands-1.40` event, unchanged).
    #[serde(rename = "tool_result")]
    ToolResult { tool_result: ToolResultBody },
    /// A planned replacement of the model stream is coming.
    #[serde(rename = "bidi_connection_warning")]
    ConnectionWarning { time_left_s: f64 },
    #[serde(rename = "bidi_connection_restart")]
    ConnectionRestart {
        /// `scheduled` (planned renewal) or `timeout` (any reactive replacement).
        reason: &'static str,
        /// What ended the old stream on the reactive path (`model_timeout`, `silence_timeout`,
        /// `input_timeout`, `error`); null when scheduled.
        timeout_error: Option<String>,
        turn_interrupted: bool,
    },
    #[serde(rename = "bidi_connection_stop")]
    ConnectionStop {
        connection_id: String,
        reason: &'static str,
        /// The token to resume with on another replica (a drain close).
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    /// Extension: something went wrong (the `strands-1.40` event, unchanged).
    #[serde(rename = "bidi_error")]
    Error { code: String, message: String },
}

fn settings_are_default(settings: &SessionSettings) -> bool {
    *settings == SessionSettings::default()
}

impl ServerEvent {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // user-provided Serialize impls.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"bidi_error\"}"))
    }
}

/// Builds the `bidi_audio_delta` JSON for a chunk of reply audio, written directly like
/// `strands-1.40`'s audio: base64 and the agent's content ids never need JSON escaping.
/// `content_id` must be one of the encoder's ids (ASCII letters, digits and `-`).
pub fn encode_audio_delta(pcm: &[u8], sample_rate: u32, content_id: &str) -> String {
    const HEAD: &str = r#"{"type":"bidi_audio_delta","audio":""#;
    const TAIL_MAX: usize = r#"","format":"pcm","sample_rate":4294967295,"channels":1,"content_id":""}"#.len();
    let mut json = String::with_capacity(HEAD.len() + pcm.len().div_ceil(3) * 4 + TAIL_MAX + content_id.len());
    json.push_str(HEAD);
    crate::audio::base64::encode_append(pcm, &mut json);
    let _ = write!(
        json,
        r#"","format":"pcm","sample_rate":{sample_rate},"channels":1,"content_id":"{content_id}"}}"#
    );
    json
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn audio_delta_is_the_strands_event() {
        for (pcm, rate) in [(&[][..], 24_000), (&[1, 2, 3][..], 16_000), (&[255; 1536][..], 8_000)] {
            let value: Value = serde_json::from_str(&encode_audio_delta(pcm, rate, "audio-7")).expect("valid JSON");
            assert_eq!(
                value,
                json!({"type": "bidi_audio_delta", "audio": BASE64.encode(pcm), "format": "pcm",
                       "sample_rate": rate, "channels": 1, "content_id": "audio-7"})
            );
        }
    }

    #[test]
    fn usage_has_snake_case_keys_and_details() {
        let event = ServerEvent::Usage {
            input_tokens: 5,
            output_tokens: 7,
            total_tokens: 12,
            input_token_details: TokenDetails { audio: 4, text: 1 },
            output_token_details: TokenDetails { audio: 6, text: 1 },
        };
        let value: Value = serde_json::from_str(&event.to_json()).expect("JSON");
        assert_eq!(
            value,
            json!({"type": "bidi_usage", "input_tokens": 5, "output_tokens": 7, "total_tokens": 12,
                   "input_token_details": {"audio": 4, "text": 1},
                   "output_token_details": {"audio": 6, "text": 1}})
        );
    }

    #[test]
    fn barge_in_is_only_a_type() {
        assert_eq!(ServerEvent::BargeIn.to_json(), r#"{"type":"bidi_barge_in"}"#);
    }
}
