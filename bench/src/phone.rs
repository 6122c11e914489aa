//! Phone calls per core on the μ-law path: Twilio calls placed the way Twilio places them (the
//! signed voice webhook, then the signed media stream with the parameters of its TwiML), each
//! sending 20 ms of μ-law every 20 ms and reading everything the agent sends back, while the
//! agent's CPU and memory are measured. The agent runs the Simulated model in loopback mode, as
//! in the relay section: every caller frame comes straight back as reply audio, so each call
//! pays the whole phone path both ways (JSON and base64, G.711, resampling 8 ↔ 16 kHz, the
//! session, 20 ms framing, playback marks) and none of a model's work. Loopback echoes the
//! session's 16 kHz input as reply audio at the call's 8 kHz, so the agent sends twice the audio
//! a real reply would: the figures are a conservative bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::procfs;
use crate::servers::{self, Programs, Server};

/// The Auth Token the benchmark's agent checks Twilio signatures with.
const AUTH_TOKEN: &str = "voice-bench-twilio-auth-token-0123456789";
/// Time allowed to set one call up (webhook, upgrade, start).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// One 20 ms frame of μ-law at 8 kHz: a quiet hum, so the frames are not all one byte.
const FRAME_SAMPLES: usize = 160;

/// One load point of the phone section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhonePoint {
    pub calls: usize,
    /// Calls whose stream started and stayed up for the whole window.
    pub connected: usize,
    pub failures: Vec<String>,
    pub agent: procfs::Usage,
    /// Resident memory of the agent before any call (KiB), and its anonymous part.
    pub baseline_rss_kib: u64,
    #[serde(default)]
    pub baseline_anon_kib: u64,
    /// Caller frames sent and agent media frames received per second, over the window.
    pub frames_in_per_second: f64,
    pub frames_out_per_second: f64,
    /// Playback marks the agent sent per second.
    pub marks_per_second: f64,
}

impl PhonePoint {
    /// Calls one core of the agent carries at this load's cost per call.
    pub fn calls_per_core(&self) -> Option<f64> {
        (self.agent.cpu_percent > 0.0 && self.connected > 0)
            .then(|| self.connected as f64 * 100.0 / self.agent.cpu_percent)
    }

    /// Memory per call above the idle agent (KiB), counted as [`procfs::growth_kib`] does.
    pub fn kib_per_call(&self) -> Option<f64> {
        let growth = procfs::growth_kib(
            &self.agent,
            self.baseline_rss_kib,
            (self.baseline_anon_kib > 0).then_some(self.baseline_anon_kib),
        );
        (self.connected > 0).then(|| growth.max(0) as f64 / self.connected as f64)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhoneResult {
    pub points: Vec<PhonePoint>,
}

/// The agent the phone section runs: loopback model, Twilio enabled, limits opened for one
/// client address.
fn agent_config(token_file: &std::path::Path, max_sessions: usize) -> String {
    format!(
        "name: bench-phone\nlisten: 127.0.0.1:0\n\
         model: {{provider: Simulated, mode: loopback, thinkTime: 0s}}\n\
         session: {{maxSessions: {max_sessions}}}\n\
         limits: {{handshakesPerMinute: 0}}\n\
         telephony:\n  twilio:\n    authTokenFile: {}\n",
        token_file.display()
    )
}

/// Measures each count of calls against a fresh agent.
pub async fn run(
    programs: &Programs,
    counts: &[usize],
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<PhoneResult> {
    let token_file = programs.scratch.join("twilio-auth-token");
    std::fs::write(&token_file, AUTH_TOKEN)?;
    let mut points = Vec::new();
    for &calls in counts {
        let agent = servers::agent(
            programs,
            "agent-phone",
            &agent_config(&token_file, calls + 16),
            1,
            &[("VOICE_AGENT_LOG", "info,voice_agent::server::telephony=debug")],
        )?;
        let point = point(&agent, calls, warmup, measure).await?;
        if point.connected < calls {
            // Say why on the console; the report keeps the callers' side.
            let logs = agent.recent_logs();
            eprintln!(
                "voice-bench: phone calls failed; the agent's last lines:\n{}",
                logs[logs.len().saturating_sub(5)..].join("\n")
            );
        }
        eprintln!(
            "voice-bench: phone: {} of {} calls, agent {:.1}% of a core, {:?} calls per core",
            point.connected,
            point.calls,
            point.agent.cpu_percent,
            point.calls_per_core().map(f64::round)
        );
        points.push(point);
    }
    Ok(PhoneResult { points })
}

#[derive(Default)]
struct Counters {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    marks: AtomicU64,
    /// Calls whose stream started.
    started: AtomicUsize,
    /// Calls that ended before they were told to.
    ended_early: AtomicUsize,
}

async fn point(agent: &Server, calls: usize, warmup: Duration, measure: Duration) -> anyhow::Result<PhonePoint> {
    let addr = agent.addr()?;
    let baseline = procfs::sample(agent.pid());
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(calls);
    for n in 0..calls {
        let counters = counters.clone();
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            call(addr, n, counters, stop)
                .await
                .map_err(|e| format!("call {n}: {e:#}"))
        }));
    }
    // Every call up, then the warm-up, then the window.
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while counters.started.load(Ordering::Relaxed) < calls && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(warmup).await;
    let before = procfs::sample(agent.pid());
    let (in0, out0, marks0) = (
        counters.frames_in.load(Ordering::Relaxed),
        counters.frames_out.load(Ordering::Relaxed),
        counters.marks.load(Ordering::Relaxed),
    );
    tokio::time::sleep(measure).await;
    let after = procfs::sample(agent.pid());
    let seconds = measure.as_secs_f64();
    let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
    let frames_in = rate(counters.frames_in.load(Ordering::Relaxed), in0);
    let frames_out = rate(counters.frames_out.load(Ordering::Relaxed), out0);
    let marks = rate(counters.marks.load(Ordering::Relaxed), marks0);
    let ended_early = counters.ended_early.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(error),
            Err(error) => failures.push(format!("task: {error}")),
        }
    }
    failures.truncate(5);
    let agent_usage = match (before, after) {
        (Some(b), Some(a)) => procfs::usage(&b, &a, procfs::ticks_per_second()),
        _ => procfs::Usage::default(),
    };
    Ok(PhonePoint {
        calls,
        connected: counters.started.load(Ordering::Relaxed).saturating_sub(ended_early),
        failures,
        agent: agent_usage,
        baseline_rss_kib: baseline.map_or(0, |s| s.rss_kib),
        baseline_anon_kib: baseline.map_or(0, |s| s.anon_kib),
        frames_in_per_second: frames_in,
        frames_out_per_second: frames_out,
        marks_per_second: marks,
    })
}

/// One call: webhook, stream, then a frame every 20 ms until `stop`; marks are echoed at once
/// (the generator plays nothing).
async fn call(
    addr: std::net::SocketAddr,
    n: usize,
    counters: Arc<Counters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let call_sid = format!("CA{n:032x}");
    let twiml = timeout(SETUP_TIMEOUT, voice_webhook(addr, &call_sid)).await??;
    let stream_url = attribute(&twiml, "Stream", "url").ok_or_else(|| anyhow::anyhow!("no <Stream url> in {twiml}"))?;
    let parameters = parameters(&twiml);
    let mut request = stream_url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("x-twilio-signature", sign(&stream_url, &[]).parse()?);
    let (socket, _) = timeout(SETUP_TIMEOUT, tokio_tungstenite::connect_async(request)).await??;
    let (mut sink, mut stream) = socket.split();
    let stream_sid = format!("MZ{n:032x}");
    sink.send(text(
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    ))
    .await?;
    sink.send(text(json!({"event": "start", "streamSid": stream_sid, "start": {
        "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": parameters,
    }})))
    .await?;
    counters.started.fetch_add(1, Ordering::Relaxed);
    let payload = BASE64.encode(hum());
    let mut tick = interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut chunk = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                chunk += 1;
                let media = json!({"event": "media", "streamSid": stream_sid, "media": {
                    "track": "inbound", "chunk": chunk.to_string(), "timestamp": (chunk * 20).to_string(),
                    "payload": payload,
                }});
                sink.send(text(media)).await?;
                counters.frames_in.fetch_add(1, Ordering::Relaxed);
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(body))) => {
                    let event: Value = serde_json::from_str(body.as_str()).unwrap_or(Value::Null);
                    match event["event"].as_str() {
                        Some("media") => {
                            counters.frames_out.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("mark") => {
                            counters.marks.fetch_add(1, Ordering::Relaxed);
                            let echo = json!({"event": "mark", "streamSid": stream_sid, "mark": event["mark"]});
                            sink.send(text(echo)).await?;
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    counters.ended_early.fetch_add(1, Ordering::Relaxed);
                    let why = frame.map_or_else(String::new, |f| format!("{} {}", u16::from(f.code), f.reason));
                    anyhow::bail!("the agent closed the stream: {why}");
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    counters.ended_early.fetch_add(1, Ordering::Relaxed);
                    anyhow::bail!("stream failed: {e}");
                }
                None => {
                    counters.ended_early.fetch_add(1, Ordering::Relaxed);
                    anyhow::bail!("the agent closed the stream");
                }
            }
        }
    }
    let _ = sink
        .send(text(
            json!({"event": "stop", "streamSid": stream_sid, "stop": {"callSid": call_sid}}),
        ))
        .await;
    let _ = sink.send(Message::Close(None)).await;
    Ok(())
}

/// POSTs the signed voice webhook over a plain HTTP/1.1 connection; returns the TwiML.
async fn voice_webhook(addr: std::net::SocketAddr, call_sid: &str) -> anyhow::Result<String> {
    let url = format!("http://{addr}/twilio/voice");
    let params = [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("CallSid", call_sid),
        ("From", "+15550100001"),
        ("To", "+15550100002"),
    ];
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let request = format!(
        "POST /twilio/voice HTTP/1.1\r\nHost: {addr}\r\nX-Twilio-Signature: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        sign(&url, &params),
        body.len()
    );
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await?;
    anyhow::ensure!(
        response.starts_with("HTTP/1.1 200"),
        "webhook refused: {}",
        response.lines().next().unwrap_or_default()
    );
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// `X-Twilio-Signature`: base64(HMAC-SHA1(token, URL + sorted name/value pairs)).
fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, AUTH_TOKEN.as_bytes());
    BASE64.encode(hmac::sign(&key, data.as_bytes()).as_ref())
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn text(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

/// 20 ms of a quiet 200 Hz hum in μ-law.
fn hum() -> Vec<u8> {
    (0..FRAME_SAMPLES)
        .map(|i| {
            let sample = (800.0 * (std::f64::consts::TAU * 200.0 * i as f64 / 8000.0).sin()) as i16;
            ulaw(sample)
        })
        .collect()
}

/// G.711 μ-law of one sample.
fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = (s.min(32_635)) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// The value of `name` in the first `<tag …>` of a document.
fn attribute(xml: &str, tag: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag} "))?;
    let element = &xml[start..start + xml[start..].find('>')?];
    let key = format!("{name}=\"");
    let from = element.find(&key)? + key.len();
    let value = &element[from..from + element[from..].find('"')?];
    Some(
        value
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

/// The `<Parameter name value>`s of a TwiML document, as Twilio's `customParameters`.
fn parameters(xml: &str) -> serde_json::Map<String, Value> {
    xml.split("<Parameter ")
        .skip(1)
        .filter_map(|rest| {
            let element = format!("<Parameter {}", &rest[..=rest.find('>')?]);
            Some((
                attribute(&element, "Parameter", "name")?,
                Value::String(attribute(&element, "Parameter", "value")?),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_the_g711_reference_points() {
        assert_eq!(ulaw(0), 0xff);
        assert_eq!(ulaw(-1), 0x7f);
        assert_eq!(ulaw(32_767), 0x80);
        assert_eq!(ulaw(-32_768), 0x00);
    }

    #[test]
    fn reads_the_stream_and_parameters_of_twiml() {
        let twiml = r#"<Response><Connect><Stream url="ws://127.0.0.1:1/twilio"><Parameter name="call_id" value="CA1"/><Parameter name="stream_token" value="a&amp;b"/></Stream></Connect></Response>"#;
        assert_eq!(
            attribute(twiml, "Stream", "url").as_deref(),
            Some("ws://127.0.0.1:1/twilio")
        );
        let p = parameters(twiml);
        assert_eq!(p["call_id"], "CA1");
        assert_eq!(p["stream_token"], "a&b");
        let agents = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="ws://127.0.0.1:18933/twilio"><Parameter name="call_id" value="CA00000000000000000000000000000000"/><Parameter name="caller" value="+15550100001"/><Parameter name="callee" value="+15550100002"/><Parameter name="stream_token" value="1796545034.tF9oIyoKMO9IHWdi7tLLkjA2Xu2DmBI-0ye-xgA7nfw"/></Stream></Connect></Response>"#;
        let p = parameters(agents);
        assert_eq!(p.len(), 4, "{p:?}");
        assert_eq!(
            p["stream_token"],
            "1796545034.tF9oIyoKMO9IHWdi7tLLkjA2Xu2DmBI-0ye-xgA7nfw"
        );
    }
}
