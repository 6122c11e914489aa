//! Vonage's side of a call, from "Signed webhooks" and "WebSockets in the Voice API": the answer
//! URL called with a signed JWT, an NCCO `connect` to a websocket endpoint, then a JSON
//! `websocket:connected` frame and binary 16-bit linear PCM frames of 20 ms.

use std::time::Duration;

use aws_lc_rs::digest;
use futures::SinkExt;
use futures::stream::SplitSink;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{Inbox, Socket, send_text, unix_now};

/// `Authorization: Bearer <JWT>` as Vonage signs a webhook: HS256 with the signature secret,
/// `iat`, and `payload_hash` (SHA-256 of the body, hex).
pub fn authorization(secret: &str, body: &[u8], iat: u64) -> String {
    let hash: String = digest::digest(&digest::SHA256, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let claims = json!({"iat": iat, "jti": "6c0b4b8f-1b1a-4b9e-8c77-2b6f0e0d0c5e", "iss": "Vonage",
                        "payload_hash": hash, "api_key": "abcd1234", "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("JWT");
    format!("Bearer {token}")
}

/// The answer URL, as Vonage calls it (GET with the call's details in the query).
pub async fn answer_webhook(base: &str, secret: &str, age_secs: u64) -> (u16, String) {
    let url = format!(
        "{base}?to=447700900001&from=447700900000&uuid=63f61863-4a51-4f6b-86e1-46edebcf9356&conversation_uuid=CON-f972836a"
    );
    let response = reqwest::Client::new()
        .get(url)
        .header("authorization", authorization(secret, b"", unix_now() - age_secs))
        .send()
        .await
        .expect("GET answer URL");
    (response.status().as_u16(), response.text().await.expect("body"))
}

pub struct Stream {
    pub sink: SplitSink<Socket, Message>,
}

impl Stream {
    pub async fn open(url: &str) -> Result<(Self, Inbox), u16> {
        let (sink, inbox) = super::connect(url, &[]).await?;
        Ok((Self { sink }, inbox))
    }

    pub async fn connected(&mut self, content_type: &str) {
        let event = json!({"event": "websocket:connected", "content-type": content_type});
        send_text(&mut self.sink, event.to_string()).await;
    }

    /// 16 kHz PCM16LE as 640-byte binary frames, one every 20 ms.
    pub async fn speak(&mut self, pcm: &[u8]) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in pcm.chunks(640) {
            tick.tick().await;
            let mut frame = frame.to_vec();
            frame.resize(640, 0);
            if self.sink.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
    }

    pub async fn dtmf(&mut self, digit: &str) {
        let event = json!({"event": "websocket:dtmf", "digit": digit, "duration": 260});
        send_text(&mut self.sink, event.to_string()).await;
    }
}
