//! Telnyx's side of a call, from "Receiving Webhooks" (Ed25519 signatures) and "Media Streaming
//! over WebSockets": a signed TeXML webhook, then a bidirectional RTP stream: `connected`,
//! `start` (`media_format`), `media` (base64 PCMU, 20 ms), `dtmf`, `stop`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::stream::SplitSink;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Inbox, Socket, send_text, ulaw_encode, unix_now};

/// The account's signing key; Telnyx publishes the public half in its portal.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    pub fn generate() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
        Self(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key pair"))
    }

    pub fn public_base64(&self) -> String {
        BASE64.encode(self.0.public_key().as_ref())
    }

    /// `telnyx-signature-ed25519` for `body` sent at `timestamp`.
    pub fn sign(&self, timestamp: u64, body: &[u8]) -> String {
        let mut message = timestamp.to_string().into_bytes();
        message.push(b'|');
        message.extend_from_slice(body);
        BASE64.encode(self.0.sign(&message).as_ref())
    }
}

/// The TeXML voice webhook, signed `age_secs` ago (0: now).
pub async fn voice_webhook(url: &str, key: &SigningKey, age_secs: u64, forge: bool) -> (u16, String) {
    let body = "AccountSid=acc-1&CallSid=v3%3Acall-1&CallStatus=ringing&Direction=inbound&From=%2B15550100001&To=%2B15550100002";
    let timestamp = unix_now() - age_secs;
    let signature = if forge {
        SigningKey::generate().sign(timestamp, body.as_bytes())
    } else {
        key.sign(timestamp, body.as_bytes())
    };
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("telnyx-signature-ed25519", signature)
        .header("telnyx-timestamp", timestamp.to_string())
        .body(body)
        .send()
        .await
        .expect("POST voice webhook");
    (response.status().as_u16(), response.text().await.expect("body"))
}

pub struct Stream {
    pub sink: SplitSink<Socket, Message>,
    sequence: u64,
    chunk: u64,
}

const STREAM_ID: &str = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC";

impl Stream {
    pub async fn open(url: &str) -> Result<(Self, Inbox), u16> {
        let (sink, inbox) = super::connect(url, &[]).await?;
        Ok((
            Self {
                sink,
                sequence: 0,
                chunk: 0,
            },
            inbox,
        ))
    }

    async fn send(&mut self, mut event: Value) {
        self.sequence += 1;
        event["sequence_number"] = Value::String(self.sequence.to_string());
        if event["event"] != "connected" {
            event["stream_id"] = Value::String(STREAM_ID.into());
        }
        send_text(&mut self.sink, event.to_string()).await;
    }

    pub async fn start(&mut self, encoding: &str) {
        self.send(json!({"event": "connected", "version": "1.0.0"})).await;
        self.send(json!({"event": "start", "start": {
            "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
            "call_control_id": "v3:call-1",
            "client_state": "",
            "media_format": {"encoding": encoding, "sample_rate": 8000, "channels": 1},
        }}))
        .await;
    }

    pub async fn speak(&mut self, samples: &[i16]) {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        for frame in samples.chunks(160) {
            tick.tick().await;
            self.chunk += 1;
            let payload: Vec<u8> = frame.iter().map(|s| ulaw_encode(*s)).collect();
            self.send(json!({"event": "media", "media": {
                "track": "inbound", "chunk": self.chunk.to_string(),
                "timestamp": (self.chunk * 20).to_string(), "payload": BASE64.encode(payload),
            }}))
            .await;
        }
    }

    pub async fn dtmf(&mut self, digit: &str) {
        self.send(json!({"event": "dtmf", "dtmf": {"digit": digit}})).await;
    }

    pub async fn stop(&mut self) {
        self.send(json!({"event": "stop", "stop": {"user_id": "u", "call_control_id": "v3:call-1"}}))
            .await;
    }
}

/// The PCMU bytes of an outbound `media` message.
pub fn media_payload(message: &Message) -> Option<Vec<u8>> {
    let Message::Text(text) = message else { return None };
    let event: Value = serde_json::from_str(text.as_str()).ok()?;
    if event["event"] != "media" {
        return None;
    }
    Some(BASE64.decode(event["media"]["payload"].as_str()?).expect("base64"))
}
