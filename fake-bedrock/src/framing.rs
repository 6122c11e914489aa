//! `application/vnd.amazon.eventstream` framing as Bedrock's bidirectional stream uses it.
//!
//! Requests: every message is a SigV4-signed envelope (`:date`, `:chunk-signature` headers)
//! whose payload is the real message (`:event-type: chunk`, payload `{"bytes": "<base64>"}`);
//! an envelope with an empty payload ends the input. Responses: unsigned `chunk` messages with
//! the same payload shape, or `exception` messages with a JSON `{"message": ...}` body.

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;

/// What one request envelope held.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// A Nova JSON event.
    Event(Vec<u8>),
    /// The client ended its input.
    End,
}

#[derive(Deserialize)]
struct ChunkPayload {
    bytes: String,
}

/// Unwraps one signed envelope. Signatures are not verified: the fake checks that requests
/// are signed (the `Authorization` header) but holds no secret to verify them with.
pub fn unwrap_envelope(outer: &Message) -> Result<Inbound, String> {
    if !outer.headers().iter().any(|h| h.name().as_str() == ":chunk-signature") {
        return Err("event stream message is not signed (no :chunk-signature header)".into());
    }
    if outer.payload().is_empty() {
        return Ok(Inbound::End);
    }
    let inner = read_message_from(outer.payload().clone()).map_err(|e| format!("malformed inner message: {e}"))?;
    let event_type = header(&inner, ":event-type");
    if event_type.as_deref() != Some("chunk") {
        return Err(format!("unexpected :event-type {event_type:?}"));
    }
    let payload: ChunkPayload =
        serde_json::from_slice(inner.payload()).map_err(|e| format!("chunk payload is not {{\"bytes\": ...}}: {e}"))?;
    let json = BASE64
        .decode(payload.bytes)
        .map_err(|e| format!("chunk bytes are not base64: {e}"))?;
    Ok(Inbound::Event(json))
}

/// Encodes a Nova JSON event as a response `chunk` message.
pub fn chunk(json: &str) -> Bytes {
    let payload = serde_json::json!({ "bytes": BASE64.encode(json) }).to_string();
    encode(
        Message::new(payload)
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
            .add_header(Header::new(":event-type", HeaderValue::String("chunk".into())))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            )),
    )
}

/// Encodes an in-stream exception such as `modelTimeoutException`.
pub fn exception(exception_type: &str, message: &str) -> Bytes {
    let payload = serde_json::json!({ "message": message }).to_string();
    encode(
        Message::new(payload)
            .add_header(Header::new(":message-type", HeaderValue::String("exception".into())))
            .add_header(Header::new(
                ":exception-type",
                HeaderValue::String(exception_type.to_owned().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            )),
    )
}

fn encode(message: Message) -> Bytes {
    let mut buffer = Vec::new();
    // Writing headers and payload into a Vec cannot fail except for oversized headers, which
    // these fixed headers are not.
    let _ = write_message_to(&message, &mut buffer);
    Bytes::from(buffer)
}

fn header(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str().to_owned()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};

    fn signed(inner: Option<Message>) -> Message {
        let payload = inner.map_or_else(Vec::new, |m| {
            let mut b = Vec::new();
            write_message_to(&m, &mut b).expect("encode");
            b
        });
        Message::new(payload)
            .add_header(Header::new(":date", HeaderValue::String("now".into())))
            .add_header(Header::new(
                ":chunk-signature",
                HeaderValue::ByteArray(Bytes::from_static(b"sig")),
            ))
    }

    #[test]
    fn unwraps_a_signed_chunk() {
        let inner = Message::new(format!("{{\"bytes\":\"{}\"}}", BASE64.encode("{\"event\":{}}")))
            .add_header(Header::new(":event-type", HeaderValue::String("chunk".into())));
        assert_eq!(
            unwrap_envelope(&signed(Some(inner))),
            Ok(Inbound::Event(b"{\"event\":{}}".to_vec()))
        );
        assert_eq!(unwrap_envelope(&signed(None)), Ok(Inbound::End));
    }

    #[test]
    fn refuses_unsigned_messages() {
        assert!(unwrap_envelope(&Message::new("x")).is_err());
    }

    #[test]
    fn response_chunks_decode_back() {
        let bytes = chunk("{\"event\":{\"x\":1}}");
        let mut decoder = MessageFrameDecoder::new();
        let mut buf = bytes.clone();
        let DecodedFrame::Complete(message) = decoder.decode_frame(&mut buf).expect("frame") else {
            panic!("incomplete");
        };
        assert_eq!(header(&message, ":event-type").as_deref(), Some("chunk"));
        let payload: ChunkPayload = serde_json::from_slice(message.payload()).expect("payload");
        assert_eq!(BASE64.decode(payload.bytes).expect("b64"), b"{\"event\":{\"x\":1}}");
    }
}
