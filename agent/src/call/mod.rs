//! `voice-agent call`: a phone simulator. It plays a carrier's side of a phone call against a
//! running agent, so a deployment can be smoke-tested without a phone number: the signed
//! call-setup webhook, then the media stream the agent's answer points to, carrying a WAV file
//! (or silence) as the caller's voice at the pace of a live call, optional key presses, and a
//! phone line that plays the agent's replies in real time, echoes its playback marks and obeys
//! its `clear`. It prints the call as it happens and can save what the caller heard.
//!
//! Carrier protocols carry audio, not words: there are no transcripts on a phone line. The
//! printout says when the agent speaks, how long, when a reply ends and when the agent cuts
//! itself off; the saved WAV is what a caller would have heard.

mod carrier;
mod line;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};
use tokio_tungstenite::tungstenite::Message;

pub use carrier::CarrierKind;
use carrier::{CallFacts, Frames, Incoming, set_up};
use line::Line;

use crate::talk::TalkError;
use crate::talk::audio::{read_speech, resample, write_wav};
use crate::talk::connect::{Target, connect};

/// Carriers send and take audio in 20 ms frames.
const FRAME: Duration = Duration::from_millis(20);
/// The agent's reply is over when no audio came for this long and the line played it all.
const REPLY_GAP: Duration = Duration::from_millis(1_500);
/// A gap in the agent's audio this long starts a new "agent speaks" line in the printout.
const SPEAKING_GAP: Duration = Duration::from_millis(500);
/// Reply audio kept for `--output` at most (seconds): a bound on memory for a runaway agent.
const MAX_KEPT_SECONDS: usize = 600;
/// Between two key presses.
const KEY_GAP: Duration = Duration::from_millis(500);
/// After hanging up, how long to wait for the agent to close the stream.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Simulate a phone call to a running agent: the carrier's signed webhook, then its media stream.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// The agent's public base URL, as the carrier reaches it: https://voice.example.com (the
    /// host of the VoiceAgent's `status.telephony` URLs), or http://127.0.0.1:8080 locally. It
    /// must match the agent's `telephony.publicUrl`, or signatures fail as they would for the
    /// carrier.
    #[arg(long, env = "VOICE_AGENT_URL")]
    pub url: String,
    /// Which carrier to play.
    #[arg(long, value_enum, default_value = "twilio")]
    pub carrier: CarrierKind,
    /// File holding the Twilio Auth Token the agent checks signatures with.
    #[arg(long, env = "VOICE_AGENT_TWILIO_AUTH_TOKEN_FILE")]
    pub twilio_auth_token_file: Option<PathBuf>,
    /// File holding the Vonage signature secret the agent checks signatures with.
    #[arg(long, env = "VOICE_AGENT_VONAGE_SIGNATURE_SECRET_FILE")]
    pub vonage_signature_secret_file: Option<PathBuf>,
    /// WAV file the caller says (any PCM WAV; converted to the call's 8 or 16 kHz). Without it
    /// the caller stays silent, which shows the agent's greeting.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Keys the caller presses after speaking (0-9, *, #, A-D), one every half second.
    #[arg(long, value_parser = parse_keys)]
    pub dtmf: Option<String>,
    /// The caller's number.
    #[arg(long, default_value = "+15550100001")]
    pub from: String,
    /// The number called.
    #[arg(long, default_value = "+15550100002")]
    pub to: String,
    /// Write what the caller heard to this WAV file (16-bit mono at the call's rate).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Longest wait for the agent's reply after the caller is done, and longest the caller
    /// listens to it.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why a simulated call failed; printed as one line after `voice-agent call: `.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A secret the carrier signs with is missing or unreadable.
    #[error("{0}")]
    Secret(String),
    /// The call-setup webhook failed or was refused.
    #[error("webhook: {0}")]
    Webhook(String),
    /// The agent's answer is not a document that connects the call.
    #[error("call-setup document: {0}")]
    Document(String),
    /// The input, the stream or the output failed (as for `voice-agent talk`).
    #[error(transparent)]
    Talk(#[from] TalkError),
    /// The agent closed the stream.
    #[error("the agent closed the stream: {code}{reason}")]
    Closed { code: u16, reason: String },
    /// The agent said nothing in time.
    #[error("the agent said nothing within {}", humantime::format_duration(*.0))]
    Silent(Duration),
}

impl CallError {
    /// 2 for problems with what the user asked for, 1 for a call that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Secret(_) | Self::Talk(TalkError::Input { .. } | TalkError::Url { .. }) => 2,
            _ => 1,
        }
    }
}

/// Where the caller is in the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Saying the input.
    Speaking,
    /// Pressing keys; the next one at `next`.
    Pressing { next: Instant },
    /// Done since `at`: listening for the reply.
    Done { at: Instant },
}

/// What a finished call amounted to.
#[derive(Debug, Default)]
pub struct CallSummary {
    /// Reply audio the caller heard (samples at the call's rate).
    pub heard_samples: usize,
    pub sample_rate: u32,
    /// From the end of the caller's input (the WAV, or the start without one) to the first
    /// reply audio after it.
    pub first_audio: Option<Duration>,
    /// Replies the agent ended with a mark (Twilio, Telnyx).
    pub replies_ended: usize,
    /// Times the agent cut its own reply off (`clear`).
    pub clears: usize,
    /// Playback marks echoed back to the agent.
    pub marks_echoed: usize,
}

pub fn main(args: CallArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("voice-agent call: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    match runtime.block_on(run(&args, stdout.lock())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voice-agent call: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Places the call, plays it out and hangs up; prints the call to `out` as it goes.
pub async fn run(args: &CallArgs, mut out: impl Write) -> Result<CallSummary, CallError> {
    let secret = secret(args)?;
    let base = args.url.trim_end_matches('/');
    let call = CallFacts::new(args.carrier, args.from.clone(), args.to.clone());
    let http = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .map_err(|e| CallError::Webhook(e.to_string()))?;
    let setup = set_up(args.carrier, &http, base, &secret, &call).await?;
    // The numbers stay out of the printout, as they stay out of the agent's logs.
    let _ = writeln!(
        out,
        "call {}: webhook answered, stream {} ({} Hz)",
        setup.call_id, setup.stream_url, setup.sample_rate
    );
    let input = match &args.input {
        Some(path) => caller_audio(path, setup.sample_rate)?,
        None => Vec::new(),
    };
    let target = Target {
        shown: setup.stream_url.clone(),
        url: setup.stream_url.clone(),
        token: None,
        headers: setup.headers.clone(),
        presigned: false,
    };
    let socket = connect(&target).await?;
    let (mut sink, mut stream) = socket.split();
    let mut frames = Frames::new(args.carrier);
    for frame in frames.opening(&setup) {
        sink.send(frame).await.map_err(lost)?;
    }
    let started = Instant::now();
    let _ = writeln!(out, "{:>6}  stream open, call started", seconds(Duration::ZERO));
    if !input.is_empty() {
        let said = Duration::from_secs_f64(input.len() as f64 / f64::from(setup.sample_rate));
        let _ = writeln!(out, "{:>6}  caller speaks ({})", seconds(Duration::ZERO), seconds(said));
    }

    let frame_samples = setup.sample_rate as usize / 50;
    let mut caller_frames = input.chunks(frame_samples);
    let mut keys = args
        .dtmf
        .clone()
        .unwrap_or_default()
        .chars()
        .collect::<Vec<_>>()
        .into_iter();
    let mut caller = Caller::Speaking;
    let mut line: Line<Message> = Line::new(started);
    let mut summary = CallSummary {
        sample_rate: setup.sample_rate,
        ..CallSummary::default()
    };
    let mut heard: Vec<i16> = Vec::new();
    let max_kept = MAX_KEPT_SECONDS * setup.sample_rate as usize;
    let mut last_audio_at: Option<Instant> = None;
    // When the caller's input ended (replies are timed from there), and whether the agent has
    // spoken since the caller was done (pressing keys too).
    let mut input_ended_at: Option<Instant> = None;
    let mut spoke_since_done = false;
    let mut tick = interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let silence = vec![0i16; frame_samples];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let samples = match caller_frames.next() {
                    Some(samples) => samples,
                    None => {
                        if caller == Caller::Speaking {
                            caller = Caller::Pressing { next: now };
                            input_ended_at = Some(now);
                        }
                        &silence
                    }
                };
                sink.send(frames.media(samples)).await.map_err(lost)?;
                for echo in line.played(now) {
                    summary.marks_echoed += 1;
                    sink.send(echo).await.map_err(lost)?;
                }
                if let Caller::Pressing { next } = caller
                    && next <= now
                {
                    caller = match keys.next() {
                        Some(key) => {
                            let _ = writeln!(out, "{:>6}  caller presses {key}", seconds(now - started));
                            sink.send(frames.dtmf(key)).await.map_err(lost)?;
                            Caller::Pressing { next: now + KEY_GAP }
                        }
                        None => Caller::Done { at: now },
                    };
                }
                if let Caller::Done { at } = caller {
                    let quiet = last_audio_at.is_none_or(|last| now - last >= REPLY_GAP);
                    if spoke_since_done && quiet && !line.playing(now) {
                        break;
                    }
                    if now - at >= args.timeout {
                        if !spoke_since_done {
                            hang_up(&mut sink, &mut frames, &setup.call_id).await;
                            return Err(CallError::Silent(args.timeout));
                        }
                        // The agent is still talking: the caller has heard enough.
                        let _ = writeln!(out, "{:>6}  the agent is still speaking after {}", seconds(now - started), seconds(args.timeout));
                        break;
                    }
                }
            }
            message = stream.next() => {
                let now = Instant::now();
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => return Err(lost(e)),
                    None => return Err(CallError::Closed { code: 1006, reason: String::new() }),
                };
                if let Message::Close(frame) = &message {
                    let (code, reason) = frame
                        .as_ref()
                        .map_or((1005, String::new()), |f| (u16::from(f.code), format!(" ({})", f.reason)));
                    let _ = writeln!(out, "{:>6}  the agent closed the stream: {code}{reason}", seconds(now - started));
                    if summary.heard_samples > 0 {
                        break;
                    }
                    return Err(CallError::Closed { code, reason });
                }
                match frames.incoming(&message) {
                    Incoming::Audio(samples) => {
                        if last_audio_at.is_none_or(|at| now - at >= SPEAKING_GAP) && !line.playing(now) {
                            let _ = writeln!(out, "{:>6}  agent speaks", seconds(now - started));
                        }
                        if let Some(ended) = input_ended_at
                            && summary.first_audio.is_none()
                        {
                            summary.first_audio = Some(now - ended);
                        }
                        spoke_since_done |= matches!(caller, Caller::Done { .. });
                        last_audio_at = Some(now);
                        let audio = Duration::from_secs_f64(samples.len() as f64 / f64::from(setup.sample_rate));
                        line.queue(audio, now);
                        summary.heard_samples += samples.len();
                        if heard.len() < max_kept {
                            heard.extend(samples);
                        }
                    }
                    Incoming::Mark { name, echo } => {
                        if !name.contains(':') {
                            summary.replies_ended += 1;
                            let _ = writeln!(out, "{:>6}  agent's reply ends (mark {name})", seconds(now - started));
                        }
                        line.mark(echo, now);
                    }
                    Incoming::Clear => {
                        summary.clears += 1;
                        let _ = writeln!(out, "{:>6}  agent cuts its reply off (clear)", seconds(now - started));
                        // Twilio echoes every pending mark at once; Vonage's notifies are dropped.
                        let pending = line.clear(now);
                        if args.carrier == CarrierKind::Twilio {
                            for echo in pending {
                                summary.marks_echoed += 1;
                                sink.send(echo).await.map_err(lost)?;
                            }
                        }
                    }
                    Incoming::Other(what) => {
                        let _ = writeln!(out, "{:>6}  agent sent {what}", seconds(now - started));
                    }
                }
            }
        }
    }
    let ended = Instant::now();
    hang_up(&mut sink, &mut frames, &setup.call_id).await;
    // The agent answers a hang-up by closing the stream.
    let _ = timeout(CLOSE_LINGER, async { while let Some(Ok(_)) = stream.next().await {} }).await;
    let _ = writeln!(out, "{:>6}  caller hangs up", seconds(ended - started));
    if let Some(path) = &args.output {
        write_wav(path, setup.sample_rate, &heard)?;
    }
    print_summary(&mut out, &summary, args.output.as_deref());
    Ok(summary)
}

async fn hang_up<S>(sink: &mut S, frames: &mut Frames, call_id: &str)
where
    S: futures::Sink<Message> + Unpin,
{
    if let Some(stop) = frames.hang_up(call_id) {
        let _ = sink.send(stop).await;
    }
    let _ = sink.send(Message::Close(None)).await;
}

fn print_summary(out: &mut impl Write, summary: &CallSummary, saved_to: Option<&Path>) {
    let heard = Duration::from_secs_f64(summary.heard_samples as f64 / f64::from(summary.sample_rate.max(1)));
    if let Some(first) = summary.first_audio {
        let _ = writeln!(
            out,
            "time to first audio: {} ms (end of the caller's input to first reply audio)",
            first.as_millis()
        );
    }
    let saved = saved_to.map_or_else(String::new, |p| format!(", saved to {}", p.display()));
    let _ = writeln!(
        out,
        "agent audio: {}{saved}; {} replies ended, {} cut off, {} playback marks echoed",
        seconds(heard),
        summary.replies_ended,
        summary.clears,
        summary.marks_echoed
    );
}

fn secret(args: &CallArgs) -> Result<String, CallError> {
    let (file, flag) = match args.carrier {
        CarrierKind::Twilio => (&args.twilio_auth_token_file, "--twilio-auth-token-file"),
        CarrierKind::Vonage => (&args.vonage_signature_secret_file, "--vonage-signature-secret-file"),
    };
    let file = file
        .as_ref()
        .ok_or_else(|| CallError::Secret(format!("{flag} is needed to sign the carrier's requests")))?;
    let secret =
        std::fs::read_to_string(file).map_err(|e| CallError::Secret(format!("{flag} {}: {e}", file.display())))?;
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(CallError::Secret(format!(
            "{flag} {}: the file is empty",
            file.display()
        )));
    }
    Ok(secret.to_owned())
}

/// The input WAV as 16-bit samples at the call's rate.
fn caller_audio(path: &Path, rate: u32) -> Result<Vec<i16>, CallError> {
    let speech = read_speech(path)?;
    if rate == crate::protocol::INPUT_SAMPLE_RATE {
        return Ok(speech.samples);
    }
    let input: Vec<f64> = speech.samples.iter().map(|s| f64::from(*s) / 32768.0).collect();
    Ok(resample(&input, crate::protocol::INPUT_SAMPLE_RATE, rate)
        .into_iter()
        .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

fn parse_keys(keys: &str) -> Result<String, String> {
    if keys.is_empty() || keys.len() > 32 {
        return Err("give 1 to 32 keys".into());
    }
    match keys.chars().find(|c| !matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')) {
        Some(c) => Err(format!("{c:?} is not a telephone key (0-9, *, #, A-D)")),
        None => Ok(keys.to_owned()),
    }
}

fn lost(error: impl std::fmt::Display) -> CallError {
    CallError::Talk(TalkError::Lost(error.to_string()))
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
