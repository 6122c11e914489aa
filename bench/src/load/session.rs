//! One simulated caller: connects, then sends audio on a fixed 32 ms schedule (open loop: the
//! sender never waits for replies) while a receiver on the same socket reads what comes back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::recorder::{Recorder, record};
use super::{Timing, Workload};
use crate::frame::{self, Encoding, Incoming};

/// Time allowed for TCP connect plus WebSocket handshake plus `bidi_connection_start`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the close handshake at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The generator's own per-connection read buffer: replies are 1-3 KiB.
const CLIENT_READ_BUFFER: usize = 16 * 1024;
/// Placeholder deadline of the receive timer until the point's timing is known.
const UNARMED: Duration = Duration::from_secs(3600);
/// Reply audio rate when the server does not say (24 kHz PCM16 mono).
const DEFAULT_OUTPUT_RATE: u64 = 24_000;
/// A reply whose first audio comes later than this after the frame that ended the turn is not
/// the answer to that turn (a turn the model missed): no latency is recorded for it.
const MAX_REPLY_LATENCY: Duration = Duration::from_secs(2);

/// Everything the sessions of one load point share.
pub struct Shared {
    pub url: String,
    pub encoding: Encoding,
    pub workload: Workload,
    pub sessions: usize,
    /// Zero of the stamps' clock.
    pub base: Instant,
    /// Set once every session has connected (or failed to).
    pub timing: watch::Receiver<Option<Timing>>,
    /// Bounds concurrent handshakes.
    pub connect_gate: Semaphore,
    /// Each session reports here once whether it connected.
    pub connected: mpsc::Sender<Result<(), String>>,
    pub recorder: Mutex<Recorder>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Ran until the end of the point.
    Completed,
    ConnectFailed(String),
    /// The server closed or the socket failed while the point was running.
    EndedEarly(String),
}

pub async fn run(index: usize, shared: Arc<Shared>) -> SessionEnd {
    let connecting = async {
        let _permit = shared.connect_gate.acquire().await.map_err(|e| e.to_string())?;
        timeout(CONNECT_TIMEOUT, connect(&shared))
            .await
            .map_err(|_| "connect timed out".to_owned())?
    };
    let (socket, output_rate) = match connecting.await {
        Ok(connected) => connected,
        Err(error) => {
            let _ = shared.connected.send(Err(error.clone())).await;
            return SessionEnd::ConnectFailed(error);
        }
    };
    let _ = shared.connected.send(Ok(())).await;

    let (sink, stream) = socket.split();
    // Spread the sessions' frames evenly over one frame period, as independent callers are.
    let offset = frame::FRAME.mul_f64(index as f64 / shared.sessions.max(1) as f64);
    let turn_end = TurnEnd::default();
    let (sent, received) = futures::join!(
        send_loop(sink, index, Instant::now() + offset, &shared, &turn_end),
        receive_loop(stream, output_rate, &shared, &turn_end),
    );
    match (sent, received) {
        (Ok(mut sink), Ok(())) => {
            let _ = timeout(CLOSE_TIMEOUT, sink.close()).await;
            SessionEnd::Completed
        }
        (Err(error), _) | (_, Err(error)) => SessionEnd::EndedEarly(error),
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Sink = futures::stream::SplitSink<Socket, Message>;
type Stream = futures::stream::SplitStream<Socket>;

/// Opens the socket and waits for `bidi_connection_start`; returns the reply audio rate.
async fn connect(shared: &Shared) -> Result<(Socket, u64), String> {
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(shared.url.as_str(), Some(config), true)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    while let Some(message) = socket.next().await {
        let message = message.map_err(|e| format!("before connection start: {e}"))?;
        if let Message::Text(text) = &message
            && let Ok(event) = serde_json::from_str::<Value>(text.as_str())
            && event["type"] == "bidi_connection_start"
        {
            let rate = event["output_sample_rate"].as_u64().unwrap_or(DEFAULT_OUTPUT_RATE);
            return Ok((socket, rate));
        }
        if let Message::Close(frame) = message {
            return Err(format!("closed before connection start: {frame:?}"));
        }
    }
    Err("connection ended before connection start".into())
}

fn nanos_since(base: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(base).as_nanos() as u64
}

/// When the frame that ends the caller's current turn was sent (conversation workload), from the
/// sender to the receiver of the same session: the start of the reply latency.
#[derive(Default)]
struct TurnEnd {
    /// Nanoseconds since the point's base, plus one; zero when no turn is waiting for its reply.
    sent: AtomicU64,
}

impl TurnEnd {
    fn mark(&self, base: Instant, at: Instant) {
        self.sent.store(nanos_since(base, at) + 1, Ordering::Relaxed);
    }

    /// The send time of the turn waiting for its reply, if any; the next call returns `None`.
    fn take(&self, base: Instant) -> Option<Instant> {
        match self.sent.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Some(base + Duration::from_nanos(n - 1)),
        }
    }
}

/// Which of a session's frames ends each of its turns, tracked as the frames are sent.
#[derive(Default)]
struct TurnTracker {
    speech_frames: u64,
    turn_end: Option<u64>,
}

impl TurnTracker {
    /// Whether frame `seq` (counted from the session's first), speech or not, ends a turn.
    fn on_frame(&mut self, seq: u64, speech: bool) -> bool {
        if speech {
            self.speech_frames += 1;
        } else if self.speech_frames > 0 {
            self.turn_end = frame::turn_end_frame(seq, self.speech_frames);
            self.speech_frames = 0;
        }
        self.turn_end == Some(seq)
    }
}

async fn send_loop(
    mut sink: Sink,
    index: usize,
    first: Instant,
    shared: &Shared,
    turn_end: &TurnEnd,
) -> Result<Sink, String> {
    let mut timing = shared.timing.clone();
    let mut ticks = interval_at(first, frame::FRAME);
    // Open loop: a frame that is due is sent at once, even if earlier ones were late.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let speech_offset = index as u64 * frame::speech_cycle_frames() / shared.sessions.max(1) as u64;
    let mut turns = TurnTracker::default();
    let mut seq = 0u64;
    loop {
        let scheduled = ticks.tick().await;
        let window = *timing.borrow();
        if window.is_some_and(|t| scheduled >= t.stop_sending) {
            return Ok(sink);
        }
        let now = Instant::now();
        let pcm = match shared.workload {
            Workload::Loopback => frame::stamped_frame(nanos_since(shared.base, now), seq),
            Workload::Conversation => frame::speech_frame(seq + speech_offset),
            Workload::Idle if seq == 0 => vec![0; frame::FRAME_BYTES],
            Workload::Idle => {
                // One frame so the session counts as started, then a caller who says nothing.
                wait_for_stop(&mut timing).await;
                return Ok(sink);
            }
        };
        if window.is_some_and(|t| t.contains(now)) {
            let mut recorder = shared.recorder.lock().map_err(|e| e.to_string())?;
            recorder.frames_sent += 1;
            record(
                &mut recorder.send_lag,
                now.saturating_duration_since(scheduled).as_micros() as u64,
            );
        }
        if shared.workload == Workload::Conversation && turns.on_frame(seq, frame::is_speech(seq + speech_offset)) {
            turn_end.mark(shared.base, now);
        }
        sink.send(frame::audio_message(pcm, shared.encoding))
            .await
            .map_err(|e| format!("send: {e}"))?;
        seq += 1;
    }
}

async fn wait_for_stop(timing: &mut watch::Receiver<Option<Timing>>) {
    loop {
        let stop = timing.borrow().map(|t| t.stop_sending);
        match stop {
            Some(stop) => return sleep_until(stop).await,
            None => {
                if timing.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Per-reply state of the conversation workload.
#[derive(Default)]
struct Reply {
    first_chunk_at: Option<Instant>,
    /// Audio received so far in this reply.
    audio: Duration,
}

async fn receive_loop(mut stream: Stream, output_rate: u64, shared: &Shared, turn_end: &TurnEnd) -> Result<(), String> {
    let mut timing = shared.timing.clone();
    let mut reply = Reply::default();
    // One timer for the whole session, armed once the point's timing is known: a fresh timer
    // per message would cost the generator more than the rest of the receive path.
    let end = sleep_until(Instant::now() + UNARMED);
    tokio::pin!(end);
    let mut armed = false;
    loop {
        let window = *timing.borrow();
        if let (Some(t), false) = (window, armed) {
            end.as_mut().reset(t.stop_receiving);
            armed = true;
        }
        let message = tokio::select! {
            message = stream.next() => message,
            () = &mut end, if armed => return Ok(()),
            changed = timing.changed(), if !armed => {
                if changed.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        let now = Instant::now();
        let running = window.is_none_or(|t| now < t.stop_sending);
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(e)) if running => return Err(format!("receive: {e}")),
            None if running => return Err("connection closed by the server".into()),
            // After the point stopped sending, a closing server is not a failure.
            Some(Err(_)) | None => return Ok(()),
        };
        if let Message::Close(frame) = &message {
            if running {
                return Err(format!("closed by the server: {frame:?}"));
            }
            return Ok(());
        }
        let in_window = |at: Instant| window.is_some_and(|t| t.contains(at));
        match frame::classify(&message) {
            Incoming::Audio(pcm) => match shared.workload {
                Workload::Loopback => {
                    let Some((sent_ns, _seq)) = frame::read_stamp(&pcm) else {
                        continue;
                    };
                    let sent_at = shared.base + Duration::from_nanos(sent_ns);
                    if in_window(sent_at) {
                        let micros = now.saturating_duration_since(sent_at).as_micros() as u64;
                        let mut recorder = shared.recorder.lock().map_err(|e| e.to_string())?;
                        recorder.frames_echoed += 1;
                        if micros > frame::FRAME.as_micros() as u64 {
                            recorder.frames_late += 1;
                        }
                        record(&mut recorder.round_trip, micros);
                    }
                }
                Workload::Conversation | Workload::Idle => {
                    let first = *reply.first_chunk_at.get_or_insert(now);
                    let late = now > first + reply.audio;
                    reply.audio += Duration::from_nanos(pcm.len() as u64 / 2 * 1_000_000_000 / output_rate.max(1));
                    // The first reply audio after a turn ended: the server's round trip to the
                    // model and back, plus the model's own (fixed) processing.
                    let turn_latency = turn_end
                        .take(shared.base)
                        .filter(|&sent| in_window(sent))
                        .map(|sent| now.saturating_duration_since(sent))
                        .filter(|&latency| latency <= MAX_REPLY_LATENCY);
                    // A reply stamped by the Bedrock fake: the one-way time from the fake to
                    // here, what the server under test adds on the way down.
                    let downstream = frame::read_reply_stamp(&pcm)
                        .filter(|_| in_window(now))
                        .and_then(|sent| std::time::SystemTime::now().duration_since(sent).ok())
                        .filter(|&latency| latency <= MAX_REPLY_LATENCY);
                    if in_window(now) || turn_latency.is_some() {
                        let mut recorder = shared.recorder.lock().map_err(|e| e.to_string())?;
                        if let Some(latency) = downstream {
                            record(&mut recorder.reply_downstream, latency.as_micros() as u64);
                        }
                        if in_window(now) {
                            recorder.replies.audio_chunks += 1;
                            recorder.replies.late_chunks += u64::from(late);
                        }
                        if let Some(latency) = turn_latency {
                            record(&mut recorder.reply_latency, latency.as_micros() as u64);
                        }
                    }
                }
            },
            Incoming::Event(kind) => {
                if kind == "bidi_response_start" {
                    reply = Reply::default();
                }
                if in_window(now) {
                    let mut recorder = shared.recorder.lock().map_err(|e| e.to_string())?;
                    let replies = &mut recorder.replies;
                    match kind.as_str() {
                        // Strands 1.40, then 1.62.
                        "bidi_response_complete" | "bidi_response_stop" => replies.responses += 1,
                        "bidi_interruption" | "bidi_barge_in" => replies.interruptions += 1,
                        "bidi_error" => replies.errors += 1,
                        "bidi_connection_restart" => replies.restarts += 1,
                        _ => {}
                    }
                }
            }
            Incoming::Other => {}
        }
    }
}
