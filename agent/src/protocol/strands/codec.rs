//! Strands-compatible frames: client text and binary frames into [`ClientMessage`]s, and reply
//! audio into `bidi_audio_stream` JSON.
//!
//! Two kinds of failure: a frame that cannot be trusted at all (not JSON, not base64, not whole
//! PCM samples) ends the session with a close code, because the client and agent no longer agree
//! on the protocol; an event that is well-formed JSON but unknown or has a bad field gets a
//! `bidi_error` and the session goes on.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::audio::base64;
use crate::protocol::{ClientMessage, DecodeError, EndReason, INPUT_SAMPLE_RATE, JsonLimits};

/// Longest text input accepted in one `bidi_text_input` (bytes). Models take short cross-modal
/// messages (Nova Sonic caps one text input at about 1 KB); a few KB leaves room without letting
/// one event carry a document.
pub const MAX_TEXT_INPUT_BYTES: usize = 4096;

#[derive(Deserialize)]
struct AudioInput {
    audio: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    sample_rate: Option<u32>,
    #[serde(default)]
    channels: Option<u16>,
}

/// The frame nearly every JSON client sends 30 times a second, read straight into borrowed
/// fields: no intermediate `Value`, no copy of the base64 text. Anything it cannot read (other
/// events, escaped strings, wrong types, duplicate keys, fields it does not know) goes the
/// general way, which also produces the errors, so both ways accept and refuse the same frames.
/// Its fields are all scalars, so a frame it reads nests one level deep, which every
/// `maxJsonDepth` allows (at least 2): it needs no nesting check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioInputFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    audio: &'a str,
    #[serde(default)]
    format: Option<&'a str>,
    #[serde(default)]
    sample_rate: Option<u32>,
    #[serde(default)]
    channels: Option<u16>,
}

#[derive(Deserialize)]
struct TextInput {
    text: String,
    #[serde(default)]
    role: Option<String>,
}

/// Decodes one text frame.
pub fn decode_text(frame: &str, limits: &JsonLimits) -> Result<ClientMessage, DecodeError> {
    if frame.len() > limits.max_bytes {
        return Err(DecodeError::Fatal {
            reason: EndReason::MessageTooBig,
            detail: format!(
                "JSON message of {} bytes; the limit is {}",
                frame.len(),
                limits.max_bytes
            ),
        });
    }
    // Only an object may take the fast way: serde would also read a struct from an array.
    if frame.trim_start().starts_with('{')
        && let Ok(input) = serde_json::from_str::<AudioInputFrame<'_>>(frame)
        && input.kind == "bidi_audio_input"
    {
        return decode_audio(input.audio, input.format, input.sample_rate, input.channels);
    }
    if nesting_exceeds(frame, limits.max_depth) {
        return Err(DecodeError::fatal(format!(
            "JSON nested deeper than {} levels",
            limits.max_depth
        )));
    }
    let value: Value = serde_json::from_str(frame).map_err(|e| DecodeError::fatal(format!("invalid JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(DecodeError::rejected(
            "invalid_event",
            "an event must be a JSON object with a \"type\" field",
        ));
    };
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => {
            return Err(DecodeError::rejected("invalid_event", "\"type\" must be a string"));
        }
        None => {
            return Err(DecodeError::rejected("invalid_event", "missing \"type\" field"));
        }
    };
    let fields = Value::Object(fields);
    match kind.as_str() {
        "bidi_audio_input" => {
            let input: AudioInput = typed(&kind, fields)?;
            decode_audio_input(input)
        }
        "bidi_text_input" => {
            let input: TextInput = typed(&kind, fields)?;
            decode_text_input(input)
        }
        other => Err(DecodeError::rejected(
            "unknown_event",
            format!("unknown event type {:?}", truncate(other, 64)),
        )),
    }
}

/// Decodes one binary frame: raw PCM16LE mono at the input rate.
pub fn decode_binary(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    check_pcm(frame.len())?;
    Ok(ClientMessage::Audio(Bytes::copy_from_slice(frame)))
}

/// Builds the `bidi_audio_stream` JSON for a chunk of reply audio, written directly: base64
/// never needs JSON escaping, so there is no intermediate string and no escape scan per frame.
pub fn encode_audio_json(pcm: &[u8], sample_rate: u32) -> String {
    const HEAD: &str = r#"{"type":"bidi_audio_stream","audio":""#;
    const TAIL_MAX: usize = r#"","format":"pcm","sample_rate":4294967295,"channels":1}"#.len();
    let mut json = String::with_capacity(HEAD.len() + pcm.len().div_ceil(3) * 4 + TAIL_MAX);
    json.push_str(HEAD);
    base64::encode_append(pcm, &mut json);
    let _ = write!(json, r#"","format":"pcm","sample_rate":{sample_rate},"channels":1}}"#);
    json
}

fn typed<T: for<'de> Deserialize<'de>>(kind: &str, fields: Value) -> Result<T, DecodeError> {
    serde_json::from_value(fields).map_err(|e| DecodeError::rejected("invalid_event", format!("{kind}: {e}")))
}

fn decode_audio_input(input: AudioInput) -> Result<ClientMessage, DecodeError> {
    decode_audio(&input.audio, input.format.as_deref(), input.sample_rate, input.channels)
}

fn decode_audio(
    audio: &str,
    format: Option<&str>,
    sample_rate: Option<u32>,
    channels: Option<u16>,
) -> Result<ClientMessage, DecodeError> {
    if let Some(format) = format
        && format != "pcm"
    {
        return Err(DecodeError::rejected(
            "unsupported_audio_format",
            format!(
                "audio format {:?} is not supported; send \"pcm\" (PCM16LE)",
                truncate(format, 32)
            ),
        ));
    }
    if let Some(rate) = sample_rate
        && rate != INPUT_SAMPLE_RATE
    {
        return Err(DecodeError::rejected(
            "unsupported_sample_rate",
            format!("sample_rate {rate} is not supported; send {INPUT_SAMPLE_RATE} Hz audio"),
        ));
    }
    if let Some(channels) = channels
        && channels != 1
    {
        return Err(DecodeError::rejected(
            "unsupported_channels",
            format!("{channels} channels are not supported; send mono audio"),
        ));
    }
    let pcm = base64::decode(audio)
        .ok_or_else(|| DecodeError::fatal(format!("bidi_audio_input: audio is not {}", base64::EXPECTED)))?;
    check_pcm(pcm.len())?;
    Ok(ClientMessage::Audio(Bytes::from(pcm)))
}

fn decode_text_input(input: TextInput) -> Result<ClientMessage, DecodeError> {
    if let Some(role) = input.role.as_deref()
        && role != "user"
    {
        return Err(DecodeError::rejected(
            "invalid_event",
            format!("bidi_text_input: role must be \"user\", not {:?}", truncate(role, 32)),
        ));
    }
    let text = input.text.trim();
    if text.is_empty() {
        return Err(DecodeError::rejected("invalid_event", "bidi_text_input: text is empty"));
    }
    if text.len() > MAX_TEXT_INPUT_BYTES {
        return Err(DecodeError::rejected(
            "text_too_long",
            format!(
                "bidi_text_input: text is {} bytes; the limit is {MAX_TEXT_INPUT_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(ClientMessage::Text(text.to_owned()))
}

/// Whether brackets nest deeper than `max` (outside strings): checked before parsing, so a
/// deeply nested frame costs one linear scan and no recursion. Strings are skipped to their
/// closing quote with `memchr`: an audio frame is almost all one base64 string.
fn nesting_exceeds(frame: &str, max: usize) -> bool {
    let bytes = frame.as_bytes();
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        at += 1;
        match byte {
            b'"' => loop {
                let rest = bytes.get(at..).unwrap_or_default();
                match memchr::memchr2(b'"', b'\\', rest) {
                    // An escape: skip it and the character it escapes.
                    Some(found) if rest[found] == b'\\' => at += found + 2,
                    Some(found) => {
                        at += found + 1;
                        break;
                    }
                    // An unterminated string holds no more brackets; the parser refuses it.
                    None => return false,
                }
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn check_pcm(len: usize) -> Result<(), DecodeError> {
    if !len.is_multiple_of(2) {
        return Err(DecodeError::fatal(format!(
            "audio has {len} bytes, which is not a whole number of 16-bit samples"
        )));
    }
    Ok(())
}

/// Cuts client-provided strings before echoing them in errors or logs.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use ::base64::Engine as _;
    use ::base64::engine::general_purpose::STANDARD as BASE64;

    use super::*;

    fn audio_event(pcm: &[u8]) -> String {
        format!(
            r#"{{"type":"bidi_audio_input","audio":"{}","format":"pcm","sample_rate":16000,"channels":1}}"#,
            BASE64.encode(pcm)
        )
    }

    fn rejected_code(result: Result<ClientMessage, DecodeError>) -> &'static str {
        match result {
            Err(DecodeError::Rejected { code, .. }) => code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn fatal_reason(result: Result<ClientMessage, DecodeError>) -> EndReason {
        match result {
            Err(DecodeError::Fatal { reason, .. }) => reason,
            other => panic!("expected a fatal error, got {other:?}"),
        }
    }

    #[test]
    fn decodes_strands_audio_input() {
        let msg = decode_text(&audio_event(&[1, 0, 2, 0]), &JsonLimits::default()).expect("decodes");
        assert_eq!(msg, ClientMessage::Audio(Bytes::from_static(&[1, 0, 2, 0])));
    }

    #[test]
    fn audio_input_fields_other_than_audio_are_optional() {
        let frame = format!(r#"{{"type":"bidi_audio_input","audio":"{}"}}"#, BASE64.encode([0u8; 4]));
        assert!(matches!(
            decode_text(&frame, &JsonLimits::default()),
            Ok(ClientMessage::Audio(_))
        ));
    }

    #[test]
    fn decodes_text_input_and_trims_it() {
        let msg = decode_text(
            r#"{"type":"bidi_text_input","text":"  hello ","role":"user"}"#,
            &JsonLimits::default(),
        );
        assert_eq!(msg, Ok(ClientMessage::Text("hello".into())));
    }

    #[test]
    fn invalid_json_is_fatal() {
        assert_eq!(
            fatal_reason(decode_text("{not json", &JsonLimits::default())),
            EndReason::InvalidPayload
        );
        assert_eq!(
            fatal_reason(decode_text("", &JsonLimits::default())),
            EndReason::InvalidPayload
        );
    }

    #[test]
    fn invalid_base64_is_fatal() {
        let frame = r#"{"type":"bidi_audio_input","audio":"@@not base64@@"}"#;
        assert_eq!(
            fatal_reason(decode_text(frame, &JsonLimits::default())),
            EndReason::InvalidPayload
        );
    }

    #[test]
    fn odd_length_pcm_is_fatal_in_both_encodings() {
        assert_eq!(
            fatal_reason(decode_text(&audio_event(&[1, 2, 3]), &JsonLimits::default())),
            EndReason::InvalidPayload
        );
        assert_eq!(fatal_reason(decode_binary(&[1, 2, 3])), EndReason::InvalidPayload);
    }

    #[test]
    fn unknown_event_type_is_rejected_not_fatal() {
        assert_eq!(
            rejected_code(decode_text(r#"{"type":"bidi_dance"}"#, &JsonLimits::default())),
            "unknown_event"
        );
    }

    #[test]
    fn non_object_or_untyped_events_are_rejected() {
        assert_eq!(
            rejected_code(decode_text("[1,2]", &JsonLimits::default())),
            "invalid_event"
        );
        assert_eq!(
            rejected_code(decode_text(r#"{"text":"hi"}"#, &JsonLimits::default())),
            "invalid_event"
        );
        assert_eq!(
            rejected_code(decode_text(r#"{"type":7}"#, &JsonLimits::default())),
            "invalid_event"
        );
    }

    #[test]
    fn wrong_field_types_are_rejected() {
        assert_eq!(
            rejected_code(decode_text(
                r#"{"type":"bidi_audio_input","audio":5}"#,
                &JsonLimits::default()
            )),
            "invalid_event"
        );
        assert_eq!(
            rejected_code(decode_text(r#"{"type":"bidi_text_input"}"#, &JsonLimits::default())),
            "invalid_event"
        );
        assert_eq!(
            rejected_code(decode_text(
                r#"{"type":"bidi_audio_input","audio":"","sample_rate":"fast"}"#,
                &JsonLimits::default()
            )),
            "invalid_event"
        );
    }

    #[test]
    fn unsupported_audio_parameters_are_rejected() {
        let rate = r#"{"type":"bidi_audio_input","audio":"AAAA","sample_rate":48000}"#;
        assert_eq!(
            rejected_code(decode_text(rate, &JsonLimits::default())),
            "unsupported_sample_rate"
        );
        let stereo = r#"{"type":"bidi_audio_input","audio":"AAAA","channels":2}"#;
        assert_eq!(
            rejected_code(decode_text(stereo, &JsonLimits::default())),
            "unsupported_channels"
        );
        let mp3 = r#"{"type":"bidi_audio_input","audio":"AAAA","format":"mp3"}"#;
        assert_eq!(
            rejected_code(decode_text(mp3, &JsonLimits::default())),
            "unsupported_audio_format"
        );
    }

    #[test]
    fn text_limits_are_enforced() {
        assert_eq!(
            rejected_code(decode_text(
                r#"{"type":"bidi_text_input","text":"   "}"#,
                &JsonLimits::default()
            )),
            "invalid_event"
        );
        let long = format!(
            r#"{{"type":"bidi_text_input","text":"{}"}}"#,
            "a".repeat(MAX_TEXT_INPUT_BYTES + 1)
        );
        assert_eq!(
            rejected_code(decode_text(&long, &JsonLimits::default())),
            "text_too_long"
        );
        let role = r#"{"type":"bidi_text_input","text":"hi","role":"assistant"}"#;
        assert_eq!(
            rejected_code(decode_text(role, &JsonLimits::default())),
            "invalid_event"
        );
    }

    #[test]
    fn oversize_json_is_too_big_and_nesting_is_bounded() {
        let limits = JsonLimits {
            max_bytes: 64,
            max_depth: 3,
        };
        let big = format!(r#"{{"type":"bidi_text_input","text":"{}"}}"#, "a".repeat(100));
        assert_eq!(fatal_reason(decode_text(&big, &limits)), EndReason::MessageTooBig);
        assert_eq!(
            fatal_reason(decode_text(r#"{"a":[[[1]]]}"#, &limits)),
            EndReason::InvalidPayload
        );
        let brackets_in_strings = r#"{"type":"bidi_text_input","text":"[[[[{{{{"}"#;
        assert!(decode_text(brackets_in_strings, &limits).is_ok());
        let escaped_quote = r#"{"type":"bidi_text_input","text":"\"[[[["}"#;
        assert!(decode_text(escaped_quote, &limits).is_ok());
        // An escaped backslash ends no string early and hides no bracket after the string.
        let escaped_backslash = r#"{"a":"\\","b":[[[1]]]}"#;
        assert_eq!(
            fatal_reason(decode_text(escaped_backslash, &limits)),
            EndReason::InvalidPayload
        );
        // A frame that ends inside a string, or inside an escape, is invalid JSON, not a panic.
        for unterminated in [r#"{"a":"[[[["#, r#"{"a":"\"#] {
            assert_eq!(
                fatal_reason(decode_text(unterminated, &limits)),
                EndReason::InvalidPayload
            );
        }
    }

    #[test]
    fn deeply_nested_json_is_fatal_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            fatal_reason(decode_text(&deep, &JsonLimits::default())),
            EndReason::InvalidPayload
        );
    }

    #[test]
    fn unknown_event_names_are_truncated_in_errors() {
        let frame = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
        match decode_text(&frame, &JsonLimits::default()) {
            Err(DecodeError::Rejected { message, .. }) => assert!(message.len() < 200),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn audio_json_is_the_documented_event() {
        for (pcm, rate) in [(&[][..], 24_000), (&[1, 2, 3][..], 16_000), (&[255; 1536][..], 8_000)] {
            let json: Value = serde_json::from_str(&encode_audio_json(pcm, rate)).expect("valid JSON");
            let expected = serde_json::json!({
                "type": "bidi_audio_stream",
                "audio": BASE64.encode(pcm),
                "format": "pcm",
                "sample_rate": rate,
                "channels": 1,
            });
            assert_eq!(json, expected);
        }
    }

    #[test]
    fn audio_input_reads_the_same_either_way() {
        let limits = JsonLimits::default();
        // Escaped text, reordered fields, a null format and an array all leave the fast way;
        // the results must match what the general way gives.
        let escaped = r#"{"type":"bidi_audio_input","audio":"AAAA\/w==","format":"pcm"}"#;
        assert_eq!(
            decode_text(escaped, &limits),
            Ok(ClientMessage::Audio(Bytes::from_static(&[0, 0, 0, 255])))
        );
        let reordered = r#"{"channels":1,"audio":"AAAAAA==","format":null,"type":"bidi_audio_input"}"#;
        assert_eq!(
            decode_text(reordered, &limits),
            Ok(ClientMessage::Audio(Bytes::from_static(&[0, 0, 0, 0])))
        );
        assert_eq!(
            rejected_code(decode_text(r#"["bidi_audio_input","AAAA"]"#, &limits)),
            "invalid_event"
        );
        // A field the fast way does not know: read the general way, nesting checked there.
        let extra = r#"{"type":"bidi_audio_input","audio":"AAAAAA==","id":7}"#;
        assert_eq!(
            decode_text(extra, &limits),
            Ok(ClientMessage::Audio(Bytes::from_static(&[0, 0, 0, 0])))
        );
        let shallow = JsonLimits { max_depth: 2, ..limits };
        let nested = r#"{"type":"bidi_audio_input","audio":"AAAA","meta":{"a":[1]}}"#;
        assert_eq!(fatal_reason(decode_text(nested, &shallow)), EndReason::InvalidPayload);
        let twice = r#"{"type":"bidi_audio_input","audio":"AAAA","audio":"AAAAAA=="}"#;
        assert_eq!(
            decode_text(twice, &limits),
            Ok(ClientMessage::Audio(Bytes::from_static(&[0, 0, 0, 0])))
        );
    }

    #[test]
    fn audio_json_round_trips_through_base64() {
        let json = encode_audio_json(&[1, 2, 3, 4], 24000);
        let v: Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["type"], "bidi_audio_stream");
        assert_eq!(v["sample_rate"], 24000);
        assert_eq!(v["format"], "pcm");
        let audio = v["audio"].as_str().expect("audio string");
        assert_eq!(BASE64.decode(audio).expect("base64"), vec![1, 2, 3, 4]);
    }
}
