//! Emulators of the carriers' side of a phone call, written from each carrier's public
//! documentation (not from the agent's code): the signed call-setup webhook, then the media
//! stream with the carrier's frames, codecs and pacing. Each emulator is a small state holder
//! over a real WebSocket; the tests drive it.

#![allow(dead_code)]

pub mod telnyx;
pub mod twilio;
pub mod vonage;

use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames the agent sent on a call, as the carrier received them, with when.
pub struct Inbox {
    rx: mpsc::Receiver<(Instant, Message)>,
}

/// The carrier's receive queue: a call is short, 4096 frames is over a minute of 20 ms audio.
const INBOX_FRAMES: usize = 4096;

/// Connects to a media stream URL with extra request headers; `Err(status)` when the upgrade is
/// refused.
pub async fn connect(url: &str, headers: &[(&str, String)]) -> Result<(SplitSink<Socket, Message>, Inbox), u16> {
    let mut request = url.into_client_request().expect("stream URL");
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let (socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => return Err(response.status().as_u16()),
        Err(other) => panic!("connect {url}: {other}"),
    };
    let (sink, stream) = socket.split();
    let (tx, rx) = mpsc::channel(INBOX_FRAMES);
    tokio::spawn(read_all(stream, tx));
    Ok((sink, Inbox { rx }))
}

async fn read_all(mut stream: SplitStream<Socket>, tx: mpsc::Sender<(Instant, Message)>) {
    while let Some(Ok(message)) = stream.next().await {
        let close = matches!(message, Message::Close(_));
        if tx.send((Instant::now(), message)).await.is_err() || close {
            return;
        }
    }
}

impl Inbox {
    /// Every frame that arrives within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<(Instant, Message)> {
        let deadline = Instant::now() + wait;
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            frames.push(frame);
        }
        frames
    }

    /// Frames until one matches `done` (included), or panics after `limit`.
    pub async fn until(&mut self, limit: Duration, done: impl Fn(&Message) -> bool) -> Vec<(Instant, Message)> {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(frame)) => {
                    let finished = done(&frame.1);
                    frames.push(frame);
                    if finished {
                        return frames;
                    }
                }
                Ok(None) => panic!("the stream ended first; got {} frames", frames.len()),
                Err(_) => panic!("nothing matched within {limit:?}; got {} frames", frames.len()),
            }
        }
    }

    /// Waits for the close frame (or the end of the connection): its code, if any.
    pub async fn closed(&mut self, limit: Duration) -> Option<u16> {
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((_, Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(_) => panic!("the agent did not close the stream within {limit:?}"),
            }
        }
    }
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

pub async fn send_text(sink: &mut SplitSink<Socket, Message>, text: String) -> bool {
    sink.send(Message::Text(text.into())).await.is_ok()
}

/// μ-law by its defining companding formula (μ = 255, 7-bit magnitude, inverted byte as G.711
/// stores it), close enough to the standard's segments to carry and measure speech; deliberately
/// not the agent's segment tables.
pub fn ulaw_encode(sample: i16) -> u8 {
    let x = f64::from(sample) / 32768.0;
    let code = (127.0 * (1.0 + 255.0 * x.abs()).ln() / 256f64.ln())
        .round()
        .clamp(0.0, 127.0) as u8;
    if sample >= 0 { code ^ 0xFF } else { code ^ 0x7F }
}

pub fn ulaw_decode(byte: u8) -> i16 {
    let positive = byte & 0x80 != 0;
    let code = f64::from(if positive { byte ^ 0xFF } else { byte ^ 0x7F });
    let magnitude = (256f64.powf(code / 127.0) - 1.0) / 255.0 * 32768.0;
    (if positive { magnitude } else { -magnitude }).clamp(-32768.0, 32767.0) as i16
}

/// 16 kHz PCM16LE to 8 kHz samples (pairs averaged: a phone line has no use for more).
pub fn to_8khz(pcm16k: &[u8]) -> Vec<i16> {
    pcm16k
        .chunks_exact(4)
        .map(|c| {
            let a = i32::from(i16::from_le_bytes([c[0], c[1]]));
            let b = i32::from(i16::from_le_bytes([c[2], c[3]]));
            ((a + b) / 2) as i16
        })
        .collect()
}

pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The value of `name="…"` in an XML start tag, unescaped.
pub fn xml_attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// A call-setup document's `<Response><Connect><Stream …>` (TwiML, TeXML): the Stream tag and
/// its `<Parameter>`s, after checking the document's structure.
pub fn connect_stream(document: &str) -> (String, Vec<(String, String)>) {
    let body = document
        .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .expect("an XML declaration first");
    let body = body
        .strip_prefix("<Response><Connect>")
        .and_then(|b| b.strip_suffix("</Connect></Response>"))
        .unwrap_or_else(|| panic!("<Response><Connect>…</Connect></Response> expected: {document}"));
    assert!(body.starts_with("<Stream "), "a Stream inside Connect: {body}");
    let tag_end = body.find('>').expect("Stream tag ends");
    let stream_tag = body[..=tag_end].to_owned();
    let mut parameters = Vec::new();
    let mut rest = &body[tag_end + 1..];
    while let Some(start) = rest.find("<Parameter ") {
        let end = start + rest[start..].find("/>").expect("Parameter is empty");
        let tag = &rest[start..end];
        parameters.push((
            xml_attribute(tag, "name").expect("name"),
            xml_attribute(tag, "value").expect("value"),
        ));
        rest = &rest[end + 2..];
    }
    (stream_tag, parameters)
}
