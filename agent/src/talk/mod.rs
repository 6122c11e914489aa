//! `voice-agent talk`: a command-line client and smoke test. It says a WAV file (or a typed
//! message) to an agent over the same WebSocket protocol browsers use, prints the transcripts as
//! they arrive, saves the spoken reply, and reports how long the reply took. Any failure is one
//! line on stderr and a non-zero exit.

mod agentcore;
pub(crate) mod audio;
pub(crate) mod connect;
mod error;
mod progress;

pub use error::TalkError;
pub use progress::Timings;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

use self::audio::{Speech, read_speech, write_wav};
use self::connect::{Socket, Target, session_url};
use self::progress::{AgentEvent, Progress, Step};

/// 32 ms at 16 kHz: the frame size microphones and speech models use.
const FRAME_SAMPLES: usize = 512;
const FRAME_DURATION: Duration = Duration::from_millis(32);
/// With `--fast`, this much silence follows the input at full speed too, so that the agent's
/// turn detection (which counts samples, not seconds) sees the pause at once.
const FAST_PAUSE_FRAMES: usize = 32;
/// After the reply, how long to wait for the agent to answer the close handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// The first wait before resuming a dropped conversation; doubled for each further attempt.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// Talk to an agent: say a WAV file (or type a message), print the transcripts, save the reply.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("say").required(true).args(["input", "text"])))]
#[command(group(ArgGroup::new("agent").required(true).args(["url", "agentcore_runtime_arn"])))]
pub struct TalkArgs {
    /// The agent: ws://host:port/ws, wss://host/path through an ingress, or the page's
    /// http(s):// address; `/ws` is added when the URL has no path. An AgentCore Runtime URL
    /// (wss://bedrock-agentcore.<region>.amazonaws.com/runtimes/<ARN>/ws) is treated like
    /// --agentcore-runtime-arn.
    #[arg(long, env = "VOICE_AGENT_URL")]
    pub url: Option<String>,
    /// An agent on Amazon Bedrock AgentCore Runtime, by its runtime ARN. The handshake is signed
    /// with SigV4 (a presigned URL, credentials from the default AWS chain), or carries --token
    /// for runtimes with a JWT authorizer.
    #[arg(long, env = "VOICE_AGENT_AGENTCORE_RUNTIME_ARN")]
    pub agentcore_runtime_arn: Option<String>,
    /// The AgentCore runtime endpoint to call (the `qualifier`); the runtime's default otherwise.
    #[arg(long, requires = "agentcore_runtime_arn")]
    pub agentcore_qualifier: Option<String>,
    /// The AgentCore runtime session id (33 to 256 characters); a new random one by default.
    #[arg(long)]
    pub agentcore_session_id: Option<String>,
    /// Another AgentCore data-plane endpoint than the region's (a VPC endpoint, a test double),
    /// read from the AWS SDKs' variable.
    #[arg(long, env = "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE")]
    pub agentcore_endpoint: Option<String>,
    /// Bearer token, sent as `Authorization: Bearer <token>` (prefer the environment variable:
    /// command lines are visible to other users).
    #[arg(long, env = "VOICE_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// WAV file to say: PCM (8/16/24/32-bit) or 32-bit float, any rate and channels; converted
    /// to the 16 kHz mono 16-bit audio the agent takes.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Send this text message instead of audio.
    #[arg(long)]
    pub text: Option<String>,
    /// Write the reply audio to this WAV file (16-bit mono at the agent's output rate).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Send the input as fast as possible instead of in real time.
    #[arg(long)]
    pub fast: bool,
    /// Longest wait for the agent: for the connection, and for the reply after the input ends.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Continue an earlier conversation: the resume token its session was given.
    #[arg(long, env = "VOICE_AGENT_RESUME_TOKEN", hide_env_values = true)]
    pub resume: Option<String>,
    /// When the connection drops (or the agent restarts) before the reply, resume the
    /// conversation this many times, with backoff from 250 ms, and say the input again.
    #[arg(long, default_value_t = 5)]
    pub reconnects: u32,
}

/// What was said, ready to send.
enum Utterance {
    Audio(Speech),
    Text(String),
}

impl Utterance {
    /// The moment replies are timed from.
    fn timed_from(&self) -> &'static str {
        match self {
            Self::Audio(_) => "end of speech in the input",
            Self::Text(_) => "message sent",
        }
    }
}

/// The outcome of a successful run.
#[derive(Debug)]
pub struct Summary {
    pub timings: Option<Timings>,
    /// Reply audio received (and written to `--output`).
    pub reply_samples: usize,
    /// Reply audio beyond the size limit, not kept.
    pub dropped_samples: usize,
    pub output_rate: u32,
}

impl Summary {
    /// The closing lines: timings, and how much reply audio went where.
    fn print(&self, out: &mut impl Write, timed_from: &str, saved_to: Option<&PathBuf>) {
        match self.timings {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "time to first audio: {} ms ({timed_from} to first reply audio)",
                    t.first_audio.as_millis()
                );
                let _ = writeln!(
                    out,
                    "turn latency: {:.2} s ({timed_from} to reply complete)",
                    t.turn.as_secs_f64()
                );
            }
            None => {
                let _ = writeln!(out, "the reply had no audio");
            }
        }
        let seconds = self.reply_samples as f64 / f64::from(self.output_rate.max(1));
        let saved = saved_to.map_or_else(String::new, |p| format!(", saved to {}", p.display()));
        let _ = writeln!(out, "reply audio: {seconds:.2} s at {} Hz{saved}", self.output_rate);
        if self.dropped_samples > 0 {
            let _ = writeln!(
                out,
                "warning: {} samples of reply audio beyond the size limit were not kept",
                self.dropped_samples
            );
        }
    }
}

/// Runs `voice-agent talk` and returns its exit code; errors are printed as one line.
pub fn main(args: TalkArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("voice-agent talk: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    match runtime.block_on(run(&args, stdout.lock())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voice-agent talk: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Connects, says the input, follows the conversation until the reply to the input is
/// complete, then writes the reply audio and prints the timings to `out`.
pub async fn run(args: &TalkArgs, mut out: impl Write) -> Result<Summary, TalkError> {
    let utterance = match (&args.input, &args.text) {
        (Some(path), _) => {
            let speech = read_speech(path)?;
            if let Some(conversion) = &speech.conversion {
                let _ = writeln!(out, "{}: {conversion}", path.display());
            }
            if speech.speech_end.is_none() {
                eprintln!(
                    "voice-agent talk: warning: {} sounds silent (nothing above -36 dBFS); the agent may not answer",
                    path.display()
                );
            }
            Utterance::Audio(speech)
        }
        (None, Some(text)) => Utterance::Text(text.clone()),
        (None, None) => {
            return Err(TalkError::Input {
                path: PathBuf::from("--input"),
                message: "nothing to say: give --input or --text".to_owned(),
            });
        }
    };
    let target = target(args, &mut out).await?;
    let (mut socket, output_rate, mut resume, mut anywhere) =
        open(&target, args.resume.as_deref(), args.timeout, &mut out).await?;
    let mut progress = Progress::new(out, std::time::Instant::now(), output_rate);
    let mut attempt = 0;
    loop {
        let result = converse(&mut socket, &utterance, args, &mut progress).await;
        let error = match result {
            Ok(()) => {
                let _ = timeout(CLOSE_LINGER, socket.close(None)).await;
                break;
            }
            Err(error) => error,
        };
        // A conversation that dropped (or whose agent is restarting) goes on where it was, if
        // the agent gave a token for it; a signed AgentCore URL cannot take one more parameter.
        let handover = progress.take_handover();
        // A replica draining away with the conversation in its own memory cannot take it back.
        let drained_here = matches!(error, TalkError::Closed { code: 1012, .. }) && handover.is_none() && !anywhere;
        let token = handover.or(resume.take());
        let Some(token) =
            token.filter(|_| resumable(&error) && !drained_here && attempt < args.reconnects && !target.presigned)
        else {
            return Err(error);
        };
        progress.note(&format!("connection lost ({error}); resuming the conversation"));
        // The agent may still be closing the old session (its state is saved as it ends), or
        // restarting: a few tries, further and further apart.
        let (next, next_resume, next_anywhere) = loop {
            let delay = FIRST_RECONNECT_DELAY * 2u32.saturating_pow(attempt);
            attempt += 1;
            tokio::time::sleep(delay).await;
            match open(&target, Some(&token), args.timeout, progress.output()).await {
                Ok((socket, _, next_resume, next_anywhere)) => break (socket, next_resume, next_anywhere),
                Err(failed) if attempt < args.reconnects && retry_resume(&failed) => {
                    progress.note(&format!("resuming failed ({failed}); trying again"));
                }
                Err(failed) => {
                    progress.note(&format!("resuming failed ({failed})"));
                    // What ended the conversation is the error to report.
                    return Err(error);
                }
            }
        };
        socket = next;
        resume = next_resume;
        anywhere = next_anywhere;
    }

    if let Some(path) = &args.output {
        write_wav(path, output_rate, progress.reply_audio())?;
    }
    let summary = Summary {
        timings: progress.timings(),
        reply_samples: progress.reply_audio().len(),
        dropped_samples: progress.dropped_samples(),
        output_rate,
    };
    summary.print(
        &mut progress.into_output(),
        utterance.timed_from(),
        args.output.as_ref(),
    );
    Ok(summary)
}

/// Where to connect and how to authenticate: a URL as given, or an AgentCore runtime (its own
/// session id, and a SigV4-presigned URL unless a token is given).
async fn target(args: &TalkArgs, out: &mut impl Write) -> Result<Target, TalkError> {
    let (url, region) = match (&args.agentcore_runtime_arn, &args.url) {
        (Some(arn), _) => {
            let runtime = agentcore::runtime_for_arn(
                arn,
                args.agentcore_qualifier.as_deref(),
                args.agentcore_endpoint.as_deref(),
            )?;
            (session_url(&runtime.url)?, Some(runtime.region))
        }
        (None, Some(url)) => {
            let url = session_url(url)?;
            let region = agentcore::region_of(&url);
            (url, region)
        }
        (None, None) => {
            return Err(TalkError::Url {
                url: String::new(),
                reason: "give --url or --agentcore-runtime-arn".to_owned(),
            });
        }
    };
    let Some(region) = region else {
        return Ok(Target::plain(url, args.token.clone()));
    };
    let session = agentcore::session_id(args.agentcore_session_id.as_deref())?;
    let target = agentcore::target(url, &region, &session, args.token.clone()).await?;
    let how = if target.presigned {
        "SigV4-presigned URL"
    } else {
        "bearer token"
    };
    let _ = writeln!(out, "AgentCore runtime session {session} in {region} ({how})");
    Ok(target)
}

/// Whether an error is a connection that went away mid-conversation (a dropped network, an
/// agent restarting), which a resumption can carry over.
fn resumable(error: &TalkError) -> bool {
    match error {
        TalkError::Lost(_) => true,
        // Going away, abnormal closure, internal error, service restart.
        TalkError::Closed { code, .. } => matches!(code, 1001 | 1006 | 1011 | 1012),
        _ => false,
    }
}

/// Whether a failed resumption may work a moment later: the agent is restarting, unreachable
/// for now, or not done with the dropped session (410: its state is not saved yet).
fn retry_resume(error: &TalkError) -> bool {
    match error {
        TalkError::Refused { status, .. } => matches!(status, 410 | 502 | 503 | 504),
        TalkError::Lost(_) | TalkError::Unreachable { .. } | TalkError::Timeout { .. } => true,
        _ => false,
    }
}

/// Connects (resuming the conversation of `resume`, if given) and waits for the session to
/// start: the socket, the reply audio's sample rate, the session's own resume token, and
/// whether another replica could resume it.
async fn open(
    target: &Target,
    resume: Option<&str>,
    limit: Duration,
    out: &mut impl Write,
) -> Result<(Socket, u32, Option<String>, bool), TalkError> {
    let target = match resume {
        Some(token) => target.with_query("resume", token),
        None => target.clone(),
    };
    let mut socket = timeout(limit, connect::connect(&target))
        .await
        .map_err(|_| TalkError::Timeout {
            what: "answer to the connection request",
            timeout: limit,
        })??;
    let (rate, token, anywhere) = await_start(&mut socket, limit, out).await?;
    Ok((socket, rate, token, anywhere))
}

/// Waits for `bidi_connection_start`; the reply audio's sample rate, the resume token, and
/// whether it works on any replica.
async fn await_start(
    socket: &mut Socket,
    limit: Duration,
    out: &mut impl Write,
) -> Result<(u32, Option<String>, bool), TalkError> {
    let deadline = Instant::now() + limit;
    loop {
        let message = timeout(deadline.saturating_duration_since(Instant::now()), socket.next())
            .await
            .map_err(|_| TalkError::Timeout {
                what: "bidi_connection_start from the agent",
                timeout: limit,
            })?;
        match message {
            Some(Ok(Message::Text(text))) => {
                if let Some(AgentEvent::ConnectionStart {
                    connection_id,
                    model,
                    output_sample_rate,
                    resume_token,
                    resumed,
                    resume_anywhere,
                }) = AgentEvent::parse(text.as_str())
                {
                    let resumed = if resumed { ", the conversation resumed" } else { "" };
                    let _ = writeln!(
                        out,
                        "connected: session {connection_id}, model {model}, reply audio at {output_sample_rate} Hz{resumed}"
                    );
                    return Ok((output_sample_rate, resume_token, resume_anywhere));
                }
            }
            Some(Ok(Message::Close(frame))) => return Err(closed(frame, String::new())),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(TalkError::Lost(e.to_string())),
            None => return Err(TalkError::Lost("closed before the session started".to_owned())),
        }
    }
}

/// Sends the utterance, then silence (an open microphone), at real-time pace, while reading
/// the agent's events, until the reply to the input is complete.
async fn converse<W: Write>(
    socket: &mut Socket,
    utterance: &Utterance,
    args: &TalkArgs,
    progress: &mut Progress<W>,
) -> Result<(), TalkError> {
    let (input, speech_end) = match utterance {
        Utterance::Audio(speech) => (speech.samples.as_slice(), speech.speech_end),
        Utterance::Text(text) => {
            let message = serde_json::json!({"type": "bidi_text_input", "text": text, "role": "user"});
            socket
                .send(Message::Text(message.to_string().into()))
                .await
                .map_err(|e| TalkError::Lost(e.to_string()))?;
            progress.input_ended(std::time::Instant::now());
            (&[][..], None)
        }
    };
    let input_frames = input.len().div_ceil(FRAME_SAMPLES);
    // The frame holding the last speech sample; without speech, the end of the input counts.
    let speech_end_frame = speech_end.map_or(input_frames.saturating_sub(1), |end| {
        end.saturating_sub(1) / FRAME_SAMPLES
    });
    let burst_frames = if args.fast { input_frames + FAST_PAUSE_FRAMES } else { 0 };
    let silence = vec![0u8; FRAME_SAMPLES * 2];
    let mut sent = 0usize;
    let mut paced_from = Instant::now();
    let mut reply_deadline = (input_frames == 0).then(|| Instant::now() + args.timeout);
    loop {
        let due = if sent < burst_frames {
            Instant::now()
        } else {
            paced_from + FRAME_DURATION * (sent - burst_frames) as u32
        };
        tokio::select! {
            message = socket.next() => {
                let now = std::time::Instant::now();
                let step = match message {
                    Some(Ok(Message::Text(text))) => progress.on_text(text.as_str(), now)?,
                    Some(Ok(Message::Binary(pcm))) => {
                        progress.on_audio(&pcm, now);
                        Step::Continue
                    }
                    Some(Ok(Message::Close(frame))) => return Err(closed(frame, progress.close_detail())),
                    Some(Ok(_)) => Step::Continue,
                    Some(Err(e)) => return Err(TalkError::Lost(e.to_string())),
                    None => return Err(TalkError::Lost("the connection ended without a close frame".to_owned())),
                };
                if step == Step::Done {
                    return Ok(());
                }
            }
            () = sleep_until(due) => {
                let frame = match input.chunks(FRAME_SAMPLES).nth(sent) {
                    Some(samples) => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
                    None => silence.clone(),
                };
                socket
                    .send(Message::Binary(frame.into()))
                    .await
                    .map_err(|e| TalkError::Lost(e.to_string()))?;
                if sent == speech_end_frame && input_frames > 0 {
                    progress.input_ended(std::time::Instant::now());
                }
                sent += 1;
                if sent == input_frames {
                    reply_deadline = Some(Instant::now() + args.timeout);
                }
                if sent == burst_frames {
                    paced_from = Instant::now();
                }
            }
            () = sleep_until(reply_deadline.unwrap_or_else(far_future)) => {
                return Err(TalkError::Timeout { what: "complete reply after the input", timeout: args.timeout });
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

fn closed(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>, detail: String) -> TalkError {
    match frame {
        Some(frame) => {
            let reason = frame.reason.to_string();
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(" {reason}")
            };
            TalkError::Closed {
                code: u16::from(frame.code),
                detail: format!("{reason}{detail}"),
            }
        }
        None => TalkError::Closed {
            code: 1005,
            detail: format!(" (no status){detail}"),
        },
    }
}
