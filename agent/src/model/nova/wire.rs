//! Nova Sonic's JSON events: builders for what the agent sends, serde types for what it receives.
//! Every event is one JSON document `{"event": {"<name>": {...}}}` carried in a stream chunk.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::ToolSpec;
use voice_config::{EndpointingSensitivity, NovaSonicConfig};

/// Nova's limit for one `textInput` (bytes); longer texts are split across several textInputs
/// of the same content block.
pub const MAX_TEXT_INPUT_BYTES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRole {
    System,
    User,
    Assistant,
}

impl TextRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::System => "SYSTEM",
            Self::User => "USER",
            Self::Assistant => "ASSISTANT",
        }
    }
}

fn event(name: &str, body: Value) -> String {
    json!({ "event": { name: body } }).to_string()
}

pub fn session_start(config: &NovaSonicConfig) -> String {
    let mut inference = serde_json::Map::new();
    inference.insert("maxTokens".into(), json!(config.max_tokens.unwrap_or(1024)));
    inference.insert("topP".into(), json!(config.top_p.unwrap_or(0.9)));
    inference.insert("temperature".into(), json!(config.temperature.unwrap_or(0.7)));
    let mut body = json!({ "inferenceConfiguration": inference });
    if let Some(sensitivity) = config.endpointing_sensitivity {
        let value = match sensitivity {
            EndpointingSensitivity::High => "HIGH",
            EndpointingSensitivity::Medium => "MEDIUM",
            EndpointingSensitivity::Low => "LOW",
        };
        body["turnDetectionConfiguration"] = json!({ "endpointingSensitivity": value });
    }
    event("sessionStart", body)
}

/// `promptStart`, asking for reply audio at `output_sample_rate` (the session's: phone calls ask
/// for the rate the call plays).
pub fn prompt_start(prompt: &str, voice: &str, tools: &[ToolSpec], output_sample_rate: u32) -> String {
    let mut body = json!({
        "promptName": prompt,
        "textOutputConfiguration": { "mediaType": "text/plain" },
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm",
            "sampleRateHertz": output_sample_rate,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "voiceId": voice,
            "encoding": "base64",
            "audioType": "SPEECH",
        },
    });
    if !tools.is_empty() {
        let specs: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({ "toolSpec": {
                    "name": t.name,
                    "description": t.description,
                    // Nova takes the schema as a JSON-encoded string.
                    "inputSchema": { "json": t.input_schema.to_string() },
                }})
            })
            .collect();
        body["toolUseOutputConfiguration"] = json!({ "mediaType": "application/json" });
        body["toolConfiguration"] = json!({ "tools": specs });
    }
    event("promptStart", body)
}

/// A complete text content block: contentStart, one or more textInput, contentEnd.
pub fn text_block(prompt: &str, content: &str, role: TextRole, interactive: bool, text: &str) -> Vec<String> {
    let mut events = vec![event(
        "contentStart",
        json!({
            "promptName": prompt,
            "contentName": content,
            "type": "TEXT",
            "interactive": interactive,
            "role": role.as_str(),
            "textInputConfiguration": { "mediaType": "text/plain" },
        }),
    )];
    for piece in split_text(text, MAX_TEXT_INPUT_BYTES) {
        events.push(event(
            "textInput",
            json!({ "promptName": prompt, "contentName": content, "content": piece }),
        ));
    }
    events.push(content_end(prompt, content));
    events
}

/// Opens the session's single audio content block; `interactive: true` makes the model listen.
pub fn audio_content_start(prompt: &str, content: &str) -> String {
    event(
        "contentStart",
        json!({
            "promptName": prompt,
            "contentName": content,
            "type": "AUDIO",
            "interactive": true,
            "role": "USER",
            "audioInputConfiguration": {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": 16000,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "audioType": "SPEECH",
                "encoding": "base64",
            },
        }),
    )
}

/// One audio frame. Built by hand: this is the hot path, and both names are UUIDs and the
/// content base64, so nothing needs escaping.
pub fn audio_input(prompt: &str, content: &str, base64_pcm: &str) -> String {
    format!(
        r#"{{"event":{{"audioInput":{{"promptName":"{prompt}","contentName":"{content}","content":"{base64_pcm}"}}}}}}"#
    )
}

/// A tool result: contentStart (TOOL), toolResult, contentEnd — sent as one uninterleaved group.
pub fn tool_result_block(prompt: &str, content: &str, tool_use_id: &str, result: &Value) -> Vec<String> {
    vec![
        event(
            "contentStart",
            json!({
                "promptName": prompt,
                "contentName": content,
                "interactive": false,
                "type": "TOOL",
                "role": "TOOL",
                "toolResultInputConfiguration": {
                    "toolUseId": tool_use_id,
                    "type": "TEXT",
                    "textInputConfiguration": { "mediaType": "text/plain" },
                },
            }),
        ),
        event(
            "toolResult",
            json!({ "promptName": prompt, "contentName": content, "content": result.to_string() }),
        ),
        content_end(prompt, content),
    ]
}

pub fn content_end(prompt: &str, content: &str) -> String {
    event("contentEnd", json!({ "promptName": prompt, "contentName": content }))
}

pub fn prompt_end(prompt: &str) -> String {
    event("promptEnd", json!({ "promptName": prompt }))
}

pub fn session_end() -> String {
    event("sessionEnd", json!({}))
}

/// Splits text into pieces of at most `max` bytes, at character boundaries, preferring spaces.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(' ')
            && space > max / 2
        {
            cut = space + 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// One output event. Nova sends exactly one of these fields per event; unknown event kinds
/// leave them all empty and are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputEvent<'a> {
    #[serde(borrow)]
    pub completion_start: Option<CompletionStart<'a>>,
    #[serde(borrow)]
    pub content_start: Option<ContentStart<'a>>,
    #[serde(borrow)]
    pub text_output: Option<TextOutput<'a>>,
    #[serde(borrow)]
    pub audio_output: Option<AudioOutput<'a>>,
    #[serde(borrow)]
    pub tool_use: Option<ToolUse<'a>>,
    #[serde(borrow)]
    pub content_end: Option<ContentEnd<'a>>,
    pub usage_event: Option<UsageEvent>,
    #[serde(borrow)]
    pub completion_end: Option<CompletionEnd<'a>>,
}

#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: OutputEvent<'a>,
}

/// Parses one output chunk.
pub fn parse_output(bytes: &[u8]) -> Result<OutputEvent<'_>, serde_json::Error> {
    serde_json::from_slice::<Envelope<'_>>(bytes).map(|e| e.event)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionStart<'a> {
    #[serde(default, borrow)]
    pub completion_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentStart<'a> {
    #[serde(default, borrow)]
    pub content_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub role: Option<Cow<'a, str>>,
    /// A JSON document in a string, e.g. `{"generationStage":"SPECULATIVE"}`.
    #[serde(default, borrow)]
    pub additional_model_fields: Option<Cow<'a, str>>,
}

impl ContentStart<'_> {
    /// The generation stage of a text content (`SPECULATIVE` or `FINAL`), if given.
    pub fn generation_stage(&self) -> Option<String> {
        let fields: Value = serde_json::from_str(self.additional_model_fields.as_deref()?).ok()?;
        fields.get("generationStage")?.as_str().map(str::to_owned)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextOutput<'a> {
    #[serde(default, borrow)]
    pub content_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub content: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioOutput<'a> {
    #[serde(borrow)]
    pub content: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUse<'a> {
    #[serde(borrow)]
    pub tool_name: Cow<'a, str>,
    #[serde(borrow)]
    pub tool_use_id: Cow<'a, str>,
    /// The arguments, as a JSON document in a string.
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentEnd<'a> {
    #[serde(default, borrow)]
    pub content_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub stop_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageEvent {
    /// Running totals of the stream.
    #[serde(default)]
    pub total_input_tokens: u64,
    #[serde(default)]
    pub total_output_tokens: u64,
    /// The breakdown by modality: this report's own counts (`delta`) and the running totals.
    #[serde(default)]
    pub details: Option<UsageDetails>,
}

#[derive(Debug, Deserialize)]
pub struct UsageDetails {
    #[serde(default)]
    pub delta: Option<UsageSides>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UsageSides {
    #[serde(default)]
    pub input: UsageCounts,
    #[serde(default)]
    pub output: UsageCounts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageCounts {
    #[serde(default)]
    pub speech_tokens: u32,
    #[serde(default)]
    pub text_tokens: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionEnd<'a> {
    #[serde(default, borrow)]
    pub stop_reason: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn session_start_carries_inference_and_nova_2_endpointing() {
        let config = NovaSonicConfig {
            temperature: Some(0.3),
            endpointing_sensitivity: Some(EndpointingSensitivity::Low),
            ..NovaSonicConfig::default()
        };
        let v = parse(&session_start(&config));
        let body = &v["event"]["sessionStart"];
        assert_eq!(body["inferenceConfiguration"]["maxTokens"], 1024);
        assert!((body["inferenceConfiguration"]["temperature"].as_f64().expect("f64") - 0.3).abs() < 1e-6);
        assert_eq!(body["turnDetectionConfiguration"]["endpointingSensitivity"], "LOW");
        let plain = parse(&session_start(&NovaSonicConfig::default()));
        assert!(
            plain["event"]["sessionStart"]
                .get("turnDetectionConfiguration")
                .is_none()
        );
    }

    #[test]
    fn prompt_start_sends_tool_schemas_as_strings() {
        let tool = ToolSpec {
            name: "get_weather".into(),
            description: "Weather".into(),
            input_schema: json!({"type": "object"}),
        };
        let v = parse(&prompt_start("p1", "matthew", &[tool], 24_000));
        let body = &v["event"]["promptStart"];
        assert_eq!(body["promptName"], "p1");
        assert_eq!(body["audioOutputConfiguration"]["voiceId"], "matthew");
        assert_eq!(body["audioOutputConfiguration"]["sampleRateHertz"], 24000);
        assert_eq!(
            body["toolConfiguration"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
            "{\"type\":\"object\"}"
        );
    }

    #[test]
    fn text_blocks_split_long_text_into_1kb_inputs() {
        let text = "word ".repeat(500);
        let events: Vec<Value> = text_block("p", "c", TextRole::User, false, &text)
            .iter()
            .map(|e| parse(e))
            .collect();
        assert_eq!(events[0]["event"]["contentStart"]["role"], "USER");
        assert_eq!(events[0]["event"]["contentStart"]["interactive"], false);
        let inputs: Vec<&str> = events
            .iter()
            .filter_map(|e| e["event"]["textInput"]["content"].as_str())
            .collect();
        assert!(inputs.len() >= 3);
        assert!(inputs.iter().all(|i| i.len() <= MAX_TEXT_INPUT_BYTES));
        assert_eq!(inputs.concat(), text);
        assert!(events.last().expect("end")["event"]["contentEnd"].is_object());
    }

    #[test]
    fn audio_input_is_valid_json() {
        let v = parse(&audio_input("p", "a", "AAAA"));
        assert_eq!(v["event"]["audioInput"]["content"], "AAAA");
        assert_eq!(v["event"]["audioInput"]["contentName"], "a");
    }

    #[test]
    fn audio_content_is_interactive() {
        let v = parse(&audio_content_start("p", "a"));
        assert_eq!(v["event"]["contentStart"]["interactive"], true);
        assert_eq!(v["event"]["contentStart"]["type"], "AUDIO");
    }

    #[test]
    fn tool_results_are_json_strings() {
        let events = tool_result_block("p", "t", "u1", &json!({"temp": 21}));
        let v = parse(&events[1]);
        assert_eq!(v["event"]["toolResult"]["content"], "{\"temp\":21}");
        let start = parse(&events[0]);
        assert_eq!(
            start["event"]["contentStart"]["toolResultInputConfiguration"]["toolUseId"],
            "u1"
        );
    }

    #[test]
    fn split_text_respects_char_boundaries() {
        let text = "é".repeat(700);
        let pieces = split_text(&text, 1000);
        assert!(pieces.iter().all(|p| p.len() <= 1000));
        assert_eq!(pieces.concat(), text);
        assert_eq!(split_text("", 10), vec![""]);
    }

    #[test]
    fn parses_output_events_and_ignores_unknown_ones() {
        let raw = br#"{"event":{"contentStart":{"contentId":"k","type":"TEXT","role":"ASSISTANT",
            "additionalModelFields":"{\"generationStage\":\"SPECULATIVE\"}"}}}"#;
        let ev = parse_output(raw).expect("parses");
        let start = ev.content_start.expect("contentStart");
        assert_eq!(start.generation_stage().as_deref(), Some("SPECULATIVE"));
        let unknown = parse_output(br#"{"event":{"somethingNew":{"x":1}}}"#).expect("parses");
        assert!(unknown.content_start.is_none() && unknown.text_output.is_none());
        assert!(parse_output(b"not json").is_err());
    }
}
