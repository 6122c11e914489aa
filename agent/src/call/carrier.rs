//! The carrier's side of a call, as each carrier documents it: the signed call-setup webhook,
//! the stream it opens from the document the agent answers with, and its frames both ways.
//! Written from the carriers' documentation (Twilio "Webhooks security" and "Media Streams -
//! WebSocket Messages"; Vonage "Signed webhooks" and "WebSockets"), not from the agent's
//! verifying code, so that a simulated call checks the agent rather than agreeing with it.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::CallError;
use crate::protocol::telephony::g711;

/// The carriers a call can be simulated for. Telnyx signs its webhooks with its own private
/// key, which only Telnyx holds, so it cannot be simulated against a real deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CarrierKind {
    Twilio,
    Vonage,
}

/// What the call-setup webhook told the carrier to open.
#[derive(Debug)]
pub struct Setup {
    pub stream_url: String,
    /// Handshake headers of the stream (Twilio signs its upgrade).
    pub headers: Vec<(&'static str, String)>,
    /// Stream parameters the document set, handed back in the stream's first frames.
    pub parameters: Vec<(String, String)>,
    /// The sample rate of the call's audio.
    pub sample_rate: u32,
    pub call_id: String,
}

/// One call's identity, as the carrier would number it.
#[derive(Debug, Clone)]
pub struct CallFacts {
    pub call_id: String,
    pub from: String,
    pub to: String,
}

impl CallFacts {
    pub fn new(kind: CarrierKind, from: String, to: String) -> Self {
        let id = uuid::Uuid::new_v4();
        let call_id = match kind {
            CarrierKind::Twilio => format!("CA{}", id.simple()),
            CarrierKind::Vonage => id.to_string(),
        };
        Self { call_id, from, to }
    }
}

/// Calls the carrier's call-setup webhook under `base` (`https://host`), signed with `secret`.
pub async fn set_up(
    kind: CarrierKind,
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    call: &CallFacts,
) -> Result<Setup, CallError> {
    match kind {
        CarrierKind::Twilio => twilio_setup(http, base, secret, call).await,
        CarrierKind::Vonage => vonage_setup(http, base, secret, call).await,
    }
}

async fn twilio_setup(
    http: &reqwest::Client,
    base: &str,
    auth_token: &str,
    call: &CallFacts,
) -> Result<Setup, CallError> {
    let url = format!("{base}/twilio/voice");
    let params = [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("CallSid", call.call_id.as_str()),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", call.from.as_str()),
        ("To", call.to.as_str()),
    ];
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = http
        .post(&url)
        .header("x-twilio-signature", twilio_signature(auth_token, &url, &params))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| CallError::Webhook(format!("POST {url}: {e}")))?;
    let twiml = webhook_body(&url, response).await?;
    let stream_tag = element(&twiml, "Stream")
        .ok_or_else(|| CallError::Document(format!("no <Stream> in the TwiML: {}", shorten(&twiml))))?;
    let stream_url = attribute(stream_tag, "url").ok_or_else(|| CallError::Document("<Stream> has no url".into()))?;
    let parameters = elements(&twiml, "Parameter")
        .into_iter()
        .filter_map(|tag| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
        .collect();
    Ok(Setup {
        headers: vec![("x-twilio-signature", twilio_signature(auth_token, &stream_url, &[]))],
        stream_url,
        parameters,
        sample_rate: 8_000,
        call_id: call.call_id.clone(),
    })
}

async fn vonage_setup(http: &reqwest::Client, base: &str, secret: &str, call: &CallFacts) -> Result<Setup, CallError> {
    let url = format!(
        "{base}/vonage/answer?to={}&from={}&uuid={}&conversation_uuid=CON-{}",
        encode(&call.to),
        encode(&call.from),
        encode(&call.call_id),
        uuid::Uuid::new_v4()
    );
    let response = http
        .get(&url)
        .header("authorization", vonage_authorization(secret, b"")?)
        .send()
        .await
        .map_err(|e| CallError::Webhook(format!("GET {base}/vonage/answer: {e}")))?;
    let ncco: Value = serde_json::from_str(&webhook_body(&format!("{base}/vonage/answer"), response).await?)
        .map_err(|e| CallError::Document(format!("the NCCO is not JSON: {e}")))?;
    let endpoint = ncco
        .as_array()
        .and_then(|actions| actions.iter().find(|a| a["action"] == "connect"))
        .map(|connect| &connect["endpoint"][0])
        .filter(|e| e["type"] == "websocket")
        .ok_or_else(|| CallError::Document("the NCCO has no connect action to a websocket".into()))?;
    let stream_url = endpoint["uri"]
        .as_str()
        .ok_or_else(|| CallError::Document("the websocket endpoint has no uri".into()))?
        .to_owned();
    let sample_rate = match endpoint["content-type"].as_str() {
        Some("audio/l16;rate=8000") => 8_000,
        Some("audio/l16;rate=16000") => 16_000,
        other => return Err(CallError::Document(format!("unexpected content-type {other:?}"))),
    };
    let parameters = endpoint["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Setup {
        stream_url,
        headers: Vec::new(),
        parameters,
        sample_rate,
        call_id: call.call_id.clone(),
    })
}

async fn webhook_body(url: &str, response: reqwest::Response) -> Result<String, CallError> {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(CallError::Webhook(format!(
            "{url} answered HTTP {}: {}",
            status.as_u16(),
            shorten(&body)
        )));
    }
    Ok(body)
}

/// `X-Twilio-Signature`: base64 of the HMAC-SHA1, keyed with the Auth Token, of the URL
/// followed by each POST parameter's name and value, sorted by name.
fn twilio_signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    BASE64.encode(hmac::sign(&key, data.as_bytes()).as_ref())
}

/// Vonage's signed webhook: `Authorization: Bearer <JWT>`, HS256 with the signature secret,
/// with `iat` and the body's SHA-256 (hex) as `payload_hash`.
fn vonage_authorization(secret: &str, body: &[u8]) -> Result<String, CallError> {
    let hash: String = digest::digest(&digest::SHA256, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let iat = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims = json!({"iat": iat, "jti": uuid::Uuid::new_v4().to_string(), "iss": "Vonage", "payload_hash": hash});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| CallError::Secret(format!("cannot sign the Vonage webhook: {e}")))?;
    Ok(format!("Bearer {token}"))
}

/// The stream's frames, both ways, for one carrier.
pub struct Frames {
    kind: CarrierKind,
    stream_sid: String,
    sequence: u64,
    chunk: u64,
}

/// What the agent sent on the stream.
#[derive(Debug)]
pub enum Incoming {
    /// Reply audio (16-bit samples at the call's rate).
    Audio(Vec<i16>),
    /// A playback mark: its name, and the frame that echoes it once played.
    Mark { name: String, echo: Message },
    /// Drop what is buffered: the caller barged in.
    Clear,
    /// Anything else (shown by name).
    Other(String),
}

impl Frames {
    pub fn new(kind: CarrierKind) -> Self {
        Self {
            kind,
            stream_sid: format!("MZ{}", uuid::Uuid::new_v4().simple()),
            sequence: 0,
            chunk: 0,
        }
    }

    fn twilio(&mut self, mut event: Value) -> Message {
        self.sequence += 1;
        event["sequenceNumber"] = Value::String(self.sequence.to_string());
        if event["event"] != "connected" {
            event["streamSid"] = Value::String(self.stream_sid.clone());
        }
        Message::Text(event.to_string().into())
    }

    /// The frames that open the stream and say which call it carries.
    pub fn opening(&mut self, setup: &Setup) -> Vec<Message> {
        match self.kind {
            CarrierKind::Twilio => {
                let custom: serde_json::Map<String, Value> = setup
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                let connected = self.twilio(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}));
                let start = self.twilio(json!({"event": "start", "start": {
                    "accountSid": "AC00000000000000000000000000000000",
                    "streamSid": self.stream_sid,
                    "callSid": setup.call_id,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": custom,
                }}));
                vec![connected, start]
            }
            CarrierKind::Vonage => {
                let mut event = json!({
                    "event": "websocket:connected",
                    "content-type": format!("audio/l16;rate={}", setup.sample_rate),
                });
                for (k, v) in &setup.parameters {
                    event[k] = Value::String(v.clone());
                }
                vec![Message::Text(event.to_string().into())]
            }
        }
    }

    /// 20 ms of the caller's audio (samples at the call's rate).
    pub fn media(&mut self, samples: &[i16]) -> Message {
        match self.kind {
            CarrierKind::Twilio => {
                self.chunk += 1;
                let payload: Vec<u8> = samples.iter().map(|s| g711::ulaw_encode(*s)).collect();
                self.twilio(json!({"event": "media", "media": {
                    "track": "inbound",
                    "chunk": self.chunk.to_string(),
                    "timestamp": (self.chunk * 20).to_string(),
                    "payload": BASE64.encode(payload),
                }}))
            }
            CarrierKind::Vonage => {
                Message::Binary(samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>().into())
            }
        }
    }

    /// A key press.
    pub fn dtmf(&mut self, digit: char) -> Message {
        match self.kind {
            CarrierKind::Twilio => {
                self.twilio(json!({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit.to_string()}}))
            }
            CarrierKind::Vonage => Message::Text(
                json!({"event": "websocket:dtmf", "digit": digit.to_string(), "duration": 250})
                    .to_string()
                    .into(),
            ),
        }
    }

    /// The caller hangs up (Vonage has no frame for it: the socket closes).
    pub fn hang_up(&mut self, call_id: &str) -> Option<Message> {
        match self.kind {
            CarrierKind::Twilio => Some(self.twilio(json!({"event": "stop", "stop": {
                "accountSid": "AC00000000000000000000000000000000",
                "callSid": call_id,
            }}))),
            CarrierKind::Vonage => None,
        }
    }

    /// Reads a frame the agent sent.
    pub fn incoming(&mut self, message: &Message) -> Incoming {
        match (self.kind, message) {
            (CarrierKind::Vonage, Message::Binary(bytes)) => Incoming::Audio(
                bytes
                    .chunks_exact(2)
                    .map(|s| i16::from_le_bytes([s[0], s[1]]))
                    .collect(),
            ),
            (_, Message::Text(text)) => {
                let event: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                self.text_event(event)
            }
            (_, other) => Incoming::Other(format!("{} frame", frame_kind(other))),
        }
    }

    fn text_event(&mut self, event: Value) -> Incoming {
        match self.kind {
            CarrierKind::Twilio => match event["event"].as_str() {
                Some("media") => {
                    let payload = event["media"]["payload"].as_str().unwrap_or_default();
                    let bytes = BASE64.decode(payload).unwrap_or_default();
                    Incoming::Audio(bytes.iter().map(|b| g711::ulaw_decode(*b)).collect())
                }
                Some("mark") => {
                    let name = event["mark"]["name"].as_str().unwrap_or_default().to_owned();
                    let echo = self.twilio(json!({"event": "mark", "mark": {"name": name}}));
                    Incoming::Mark { name, echo }
                }
                Some("clear") => Incoming::Clear,
                other => Incoming::Other(other.unwrap_or("unknown").to_owned()),
            },
            CarrierKind::Vonage => match event["action"].as_str() {
                Some("notify") => {
                    let payload = event["payload"].clone();
                    let name = payload["mark"]
                        .as_str()
                        .map_or_else(|| payload.to_string(), str::to_owned);
                    let echo = json!({"event": "websocket:notify", "payload": payload}).to_string();
                    Incoming::Mark {
                        name,
                        echo: Message::Text(echo.into()),
                    }
                }
                Some("clear") => Incoming::Clear,
                other => Incoming::Other(other.unwrap_or("unknown").to_owned()),
            },
        }
    }
}

fn frame_kind(message: &Message) -> &'static str {
    match message {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "raw",
    }
}

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// The first `<name …>` start tag of an XML document (its attributes' text).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    elements(xml, name).into_iter().next()
}

/// Every `<name …>` start tag of an XML document, in order.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    xml.match_indices(open.as_str())
        .filter_map(|(at, _)| {
            let rest = &xml[at + open.len()..];
            // `<Stream` must not match `<StreamX`.
            if !rest.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/') {
                return None;
            }
            rest.find('>').map(|end| &rest[..end])
        })
        .collect()
}

/// An attribute of a start tag, with XML's predefined entities resolved.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = tag
        .match_indices(&key)
        .find(|(at, _)| *at == 0 || tag[..*at].ends_with(char::is_whitespace))?
        .0
        + key.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_signs_the_url_and_sorted_parameters() {
        // The example of Twilio's "Webhooks security" page.
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ];
        assert_eq!(
            twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn reads_the_stream_and_its_parameters_from_twiml() {
        let twiml = r#"<Response><Connect><Stream url="wss://v.example.com/twilio"><Parameter name="note" value="a &amp; &quot;b&quot;"/></Stream></Connect></Response>"#;
        let tag = element(twiml, "Stream").expect("Stream");
        assert_eq!(attribute(tag, "url").as_deref(), Some("wss://v.example.com/twilio"));
        let parameters: Vec<(String, String)> = elements(twiml, "Parameter")
            .into_iter()
            .filter_map(|t| Some((attribute(t, "name")?, attribute(t, "value")?)))
            .collect();
        assert_eq!(parameters, [("note".to_owned(), "a & \"b\"".to_owned())]);
    }
}
