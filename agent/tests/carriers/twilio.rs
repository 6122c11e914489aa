//! Twilio's side of a call, from "Media Streams - WebSocket Messages" and "Webhooks security":
//! a signed POST to the voice URL, then a bidirectional `<Connect><Stream>`: `connected`,
//! `start`, `media` every 20 ms (base64 μ-law 8 kHz), `dtmf`, `mark` echoes for marks the
//! server sent once their audio has played (and, after a `clear`, for every mark still
//! pending), and `stop`. Tests echo marks themselves, to play a line as fast or slow as they
//! need.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::stream::SplitSink;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Inbox, Socket, send_text, ulaw_encode};

/// `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + sorted POST name/value pairs)).
pub fn sign(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
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

/// The voice webhook Twilio POSTs when a call arrives.
pub async fn voice_webhook(url: &str, auth_token: &str, call_sid: &str) -> (u16, String) {
    let params = [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+15550100001"),
        ("To", "+15550100002"),
    ];
    let response = reqwest::Client::new()
        .post(url)
        .header("X-Twilio-Signature", sign(auth_token, url, &params))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(super::form(&params))
        .send()
        .await
        .expect("POST voice webhook");
    (response.status().as_u16(), response.text().await.expect("body"))
}

/// One call's media stream, from Twilio's side.
pub struct Stream {
    pub sink: SplitSink<Socket, Message>,
    pub stream_sid: String,
    sequence: u64,
    chunk: u64,
}

impl Stream {
    /// Opens the stream as Twilio does: the upgrade signed over the stream URL.
    pub async fn open(url: &str, auth_token: &str) -> Result<(Self, Inbox), u16> {
        let signature = sign(auth_token, url, &[]);
        let (sink, inbox) = super::connect(url, &[("x-twilio-signature", signature)]).await?;
        Ok((
            Self {
                sink,
                stream_sid: "MZ11111111111111111111111111111111".into(),
                sequence: 0,
                chunk: 0,
            },
            inbox,
        ))
    }

    async fn send(&mut self, mut event: Value) -> bool {
        self.sequence += 1;
        event["sequenceNumber"] = Value::String(self.sequence.to_string());
        if event["event"] != "connected" {
            event["streamSid"] = Value::String(self.stream_sid.clone());
        }
        send_text(&mut self.sink, event.to_string()).await
    }

    pub async fn connected(&mut self) {
        self.send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            .await;
    }

    pub async fn start(&mut self, call_sid: &str, parameters: &[(String, String)]) {
        let custom: serde_json::Map<String, Value> = parameters
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.send(json!({"event": "start", "start": {
            "accountSid": "AC00000000000000000000000000000000",
            "streamSid": self.stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": custom,
        }}))
        .await;
    }

    /// The caller's audio (8 kHz samples) as 20 ms media messages, at the pace of a live call.
    pub async fn speak(&mut self, samples: &[i16]) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        for frame in samples.chunks(160) {
            tick.tick().await;
            self.chunk += 1;
            let payload: Vec<u8> = frame.iter().map(|s| ulaw_encode(*s)).collect();
            let media = json!({"event": "media", "media": {
                "track": "inbound",
                "chunk": self.chunk.to_string(),
                "timestamp": (self.chunk * 20).to_string(),
                "payload": BASE64.encode(payload),
            }});
            if !self.send(media).await {
                return;
            }
        }
    }

    pub async fn dtmf(&mut self, digit: &str) {
        self.send(json!({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}}))
            .await;
    }

    /// Twilio echoes a mark once the audio sent before it has played.
    pub async fn mark_played(&mut self, name: &str) {
        self.send(json!({"event": "mark", "mark": {"name": name}})).await;
    }

    pub async fn stop(&mut self, call_sid: &str) {
        self.send(
            json!({"event": "stop", "stop": {"accountSid": "AC00000000000000000000000000000000", "callSid": call_sid}}),
        )
        .await;
    }
}

/// A JSON text frame the agent sent to Twilio.
pub fn json_of(message: &Message) -> Option<Value> {
    match message {
        Message::Text(text) => serde_json::from_str(text.as_str()).ok(),
        _ => None,
    }
}

/// The μ-law bytes of an outbound `media` message, checked against Twilio's format.
pub fn media_payload(event: &Value, stream_sid: &str) -> Option<Vec<u8>> {
    if event["event"] != "media" {
        return None;
    }
    assert_eq!(event["streamSid"], stream_sid, "media must name the stream");
    let payload = event["media"]["payload"].as_str().expect("media.payload");
    Some(BASE64.decode(payload).expect("base64 payload"))
}
