//! The async side of a session: a reader loop that feeds the [`Session`] machine and executes
//! its actions, and a writer task that owns the socket's send half.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use opentelemetry::trace::{TraceContextExt, TraceId};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::machine::{Action, Observation, Outbound, Session, SessionLimits};
use super::tool_calls::ToolCalls;
use crate::metrics::{self, CodeLabels, KindLabels, Metrics, ReasonLabels};
use crate::model::{ModelError, ModelInput, ModelProvider, ModelStream, SessionSetup};
use crate::protocol::{AudioOutput, EndReason, JsonLimits, ServerEvent, decode_binary, decode_text, encode_audio_json};
use crate::tools::Toolbox;

/// Messages queued for the socket writer. 64 frames of 32 ms is two seconds of reply audio: a
/// client that falls further behind is too slow to hold a conversation, and newer audio is
/// dropped (and counted) instead of queued.
const OUTBOUND_QUEUE: usize = 64;
/// A single socket write that takes longer than this means the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening the model stream may take before the session gives up.
const MODEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// After the close frame, how long to wait for the writer to flush and the client to answer.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long to hold a connection whose read side failed after sending it a close frame.
const READ_FAILED_LINGER: Duration = Duration::from_secs(1);

/// Everything a session needs from the server.
pub struct SessionContext {
    pub id: String,
    /// The authenticated caller, if authentication is on.
    pub subject: Option<String>,
    pub json: JsonLimits,
    pub audio_output: AudioOutput,
    pub limits: SessionLimits,
    pub model: Arc<dyn ModelProvider>,
    pub setup: SessionSetup,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the agent's drain timeout is over: close now.
    pub closing: CancellationToken,
    /// Tools the model may call, if a gateway is configured and its tools are loaded.
    pub tools: Option<Arc<Toolbox>>,
    /// Tool calls this session runs at once.
    pub max_tool_calls: usize,
    /// The caller's trace context (W3C `traceparent` on the handshake), if any.
    pub parent: opentelemetry::Context,
}

/// How the writer task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterEnd {
    /// It sent the close frame, or the session dropped the queue.
    Finished,
    /// The socket failed.
    Gone,
    /// A write did not complete in time.
    Stalled,
}

/// Runs one session over a WebSocket until it ends. Generic over the socket so that it can be
/// driven by in-memory channels as well as by a real connection.
pub async fn run_session<S>(socket: S, ctx: SessionContext) -> EndReason
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + 'static,
{
    let span = info_span!(
        "session",
        otel.name = "voice session",
        id = %ctx.id,
        subject = ctx.subject.as_deref().unwrap_or("-"),
        model = ctx.model.model_id(),
        trace_id = tracing::field::Empty,
        close_reason = tracing::field::Empty,
    );
    let remote = ctx.parent.span().span_context().clone();
    if remote.is_valid() {
        let _ = span.set_parent(ctx.parent.clone());
    }
    // Logs carry the trace id: the exported trace's, else the caller's.
    let own = span.context().span().span_context().trace_id();
    let trace_id = if own != TraceId::INVALID {
        own
    } else {
        remote.trace_id()
    };
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    run(socket, ctx).instrument(span).await
}

async fn run<S>(socket: S, ctx: SessionContext) -> EndReason
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + 'static,
{
    let started = Instant::now();
    ctx.metrics.sessions_started.inc();
    let (sink, mut stream) = socket.split();
    let epoch = Arc::new(AtomicU64::new(0));
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let mut writer = tokio::spawn(write_loop(
        sink,
        out_rx,
        epoch.clone(),
        ctx.audio_output,
        ctx.setup.output_sample_rate,
        ctx.metrics.clone(),
    ));

    let reason = match connect_model(&ctx).await {
        Ok(mut model) => {
            info!(model = ctx.model.model_id(), audio_output = ?ctx.audio_output, "session started");
            converse(&ctx, &mut stream, &mut model, &out_tx, &mut writer, &epoch).await
        }
        Err(error) => {
            warn!(%error, "model stream could not be opened");
            ctx.metrics
                .model_errors
                .get_or_create(&KindLabels { kind: "connect" })
                .inc();
            let code = match error {
                ModelError::Unavailable(_) => "model_unavailable",
                ModelError::Misconfigured(_) => "model_misconfigured",
            };
            let _ = out_tx
                .send(Outbound::event(ServerEvent::error(code, error.to_string())))
                .await;
            let reason = EndReason::ModelError;
            let _ = out_tx
                .send(Outbound::event(ServerEvent::ConnectionClose {
                    connection_id: ctx.id.clone(),
                    reason: reason.as_str(),
                }))
                .await;
            let _ = out_tx
                .send(Outbound::Close {
                    code: reason.close_code().unwrap_or(1011),
                    reason: "model unavailable".into(),
                })
                .await;
            reason
        }
    };

    let duration = started.elapsed();
    tracing::Span::current().record("close_reason", reason.as_str());
    ctx.metrics
        .sessions_ended
        .get_or_create(&ReasonLabels {
            reason: reason.as_str(),
        })
        .inc();
    ctx.metrics.session_duration.observe(duration.as_secs_f64());
    info!(
        reason = reason.as_str(),
        duration_ms = duration.as_millis() as u64,
        "session ended"
    );

    // Let the writer flush what is queued (the close frame last), then give the client a moment
    // to answer the close handshake before the connection is dropped.
    drop(out_tx);
    let linger_until = Instant::now() + CLOSE_LINGER;
    if !writer.is_finished() && timeout(CLOSE_LINGER, &mut writer).await.is_err() {
        writer.abort();
    }
    if reason.close_code().is_some() {
        let answered = tokio::time::timeout_at(linger_until, async {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Close(_))) => return true,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return false,
                }
            }
        })
        .await;
        if answered == Ok(false) {
            // The read side already failed (an oversize or broken frame leaves unread bytes
            // behind). Closing the socket now would reset the connection, and the client could
            // lose the close frame it has not read yet.
            sleep_until(linger_until.min(Instant::now() + READ_FAILED_LINGER)).await;
        }
    }
    reason
}

async fn connect_model(ctx: &SessionContext) -> Result<ModelStream, ModelError> {
    tokio::select! {
        result = timeout(MODEL_CONNECT_TIMEOUT, ctx.model.connect(ctx.setup.clone())) => match result {
            Ok(result) => result,
            Err(_) => Err(ModelError::Unavailable("timed out opening the model stream".into())),
        },
        () = ctx.closing.cancelled() => Err(ModelError::Unavailable("the agent is shutting down".into())),
    }
}

/// The main loop: client frames, model events, deadlines and the drain signal feed the machine.
async fn converse<R>(
    ctx: &SessionContext,
    stream: &mut R,
    model: &mut ModelStream,
    out_tx: &mpsc::Sender<Outbound>,
    writer: &mut tokio::task::JoinHandle<WriterEnd>,
    epoch: &AtomicU64,
) -> EndReason
where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let mut actions = Vec::with_capacity(8);
    let mut calls = ToolCalls::new(ctx.tools.clone(), ctx.max_tool_calls);
    let mut turn = TurnSpan::default();
    let mut session = Session::start(
        ctx.id.clone(),
        ctx.model.model_id(),
        ctx.audio_output,
        (ctx.setup.input_sample_rate, ctx.setup.output_sample_rate),
        ctx.limits,
        Instant::now(),
        &mut actions,
    );
    loop {
        // Publish the epoch before queueing anything, so the writer drops stale audio at once.
        epoch.store(session.epoch(), Ordering::Relaxed);
        let mut model_busy = false;
        for action in actions.drain(..) {
            match action {
                Action::Send(outbound) => send(outbound, out_tx, &ctx.metrics).await,
                Action::Model(input) => model_busy |= !feed_model(input, model, &ctx.metrics),
                Action::Observe(observation) => {
                    turn.observe(&observation);
                    observe(observation, &ctx.metrics);
                }
                Action::CallTool { id, name, input } => calls.start(id, name, input),
                Action::End(_) => {}
            }
        }
        if model_busy {
            session.on_model_busy(&mut actions);
            continue;
        }
        if let Some(reason) = session.ended() {
            return reason;
        }

        tokio::select! {
            biased;
            () = ctx.closing.cancelled() => session.on_drain(&mut actions),
            end = &mut *writer => {
                let reason = match end {
                    Ok(WriterEnd::Stalled) => EndReason::SlowConsumer,
                    _ => EndReason::ClientGone,
                };
                session.on_transport_end(reason, "socket writer stopped", &mut actions);
            }
            frame = stream.next() => on_frame(frame, &ctx.json, &mut session, &mut actions),
            output = model.output.recv() => session.on_model(output, Instant::now(), &mut actions),
            Some(done) = calls.next(), if !calls.is_empty() => {
                session.on_tool_result(done.id, done.name, done.outcome.is_error(), done.outcome.content, &mut actions);
            }
            () = sleep_until(session.deadline()) => session.on_deadline(Instant::now(), &mut actions),
        }
    }
}

fn on_frame(
    frame: Option<Result<Message, axum::Error>>,
    json: &JsonLimits,
    session: &mut Session,
    actions: &mut Vec<Action>,
) {
    let now = Instant::now();
    match frame {
        Some(Ok(Message::Text(text))) => session.on_client(decode_text(text.as_str(), json), now, actions),
        Some(Ok(Message::Binary(data))) => session.on_client(decode_binary(&data), now, actions),
        // Pings are answered by the WebSocket layer; pongs need nothing.
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        Some(Ok(Message::Close(_))) => session.on_transport_end(EndReason::ClientClosed, "client closed", actions),
        Some(Err(error)) => {
            let (reason, detail) = classify_socket_error(error);
            debug!(reason = reason.as_str(), %detail, "socket read failed");
            session.on_transport_end(reason, &detail, actions);
        }
        None => session.on_transport_end(EndReason::ClientGone, "connection closed", actions),
    }
}

/// Maps a socket read error to the way the session ends.
fn classify_socket_error(error: axum::Error) -> (EndReason, String) {
    let inner = error.into_inner();
    let detail = inner.to_string();
    let reason = match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => EndReason::MessageTooBig,
        Some(tungstenite::Error::Utf8(_)) => EndReason::InvalidPayload,
        Some(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
            EndReason::ClientGone
        }
        Some(tungstenite::Error::Protocol(_)) => EndReason::ProtocolError,
        _ => EndReason::ClientGone,
    };
    (reason, detail)
}

async fn send(outbound: Outbound, out_tx: &mpsc::Sender<Outbound>, metrics: &Metrics) {
    match outbound {
        // Audio never waits: if the client is this far behind, the frame is dropped.
        Outbound::Audio { .. } => match out_tx.try_send(outbound) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics.audio_frames_dropped.get_or_create(&metrics::OUT).inc();
            }
            Err(TrySendError::Closed(_)) => {}
        },
        // Events and close frames wait for room; the writer's timeout bounds the wait.
        other => {
            let _ = out_tx.send(other).await;
        }
    }
}

/// Hands input to the model without ever waiting on it. Returns false when a message other
/// than audio had to be dropped because the model is not keeping up.
fn feed_model(input: ModelInput, model: &ModelStream, metrics: &Metrics) -> bool {
    let is_audio = matches!(input, ModelInput::Audio(_));
    match model.input.try_send(input) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) if is_audio => {
            metrics.audio_frames_dropped.get_or_create(&metrics::IN).inc();
            true
        }
        Err(TrySendError::Full(_)) => false,
        // The model task is gone; its output channel reports that to the machine.
        Err(TrySendError::Closed(_)) => true,
    }
}

/// The trace span of the turn in progress: from the end of the user's turn, through the first
/// reply audio, to the end of the reply.
#[derive(Default)]
struct TurnSpan(Option<tracing::Span>);

impl TurnSpan {
    fn observe(&mut self, observation: &Observation) {
        match observation {
            Observation::TurnStarted => {
                self.0 = Some(info_span!(
                    "turn",
                    otel.name = "turn",
                    time_to_first_audio_ms = tracing::field::Empty,
                    stop_reason = tracing::field::Empty,
                ));
            }
            Observation::TimeToFirstAudio(elapsed) => {
                if let Some(span) = &self.0 {
                    span.record("time_to_first_audio_ms", elapsed.as_millis() as u64);
                    span.in_scope(|| debug!("first reply audio"));
                }
            }
            Observation::TurnEnded(stop_reason) => {
                if let Some(span) = self.0.take() {
                    span.record("stop_reason", stop_reason.as_str());
                }
            }
            _ => {}
        }
    }
}

fn observe(observation: Observation, metrics: &Metrics) {
    match observation {
        Observation::TurnStarted | Observation::TurnEnded(_) => {}
        Observation::AudioIn => {
            metrics.audio_frames.get_or_create(&metrics::IN).inc();
        }
        Observation::TimeToFirstAudio(d) => metrics.time_to_first_audio.observe(d.as_secs_f64()),
        Observation::Interruption => {
            metrics.interruptions.inc();
        }
        Observation::ClientError(code) => {
            metrics.client_errors.get_or_create(&CodeLabels { code }).inc();
        }
        Observation::ModelError(kind) => {
            metrics.model_errors.get_or_create(&KindLabels { kind }).inc();
        }
    }
}

/// Owns the socket's send half: encodes outbound messages, drops audio from before an
/// interruption, and bounds every write in time.
async fn write_loop<W>(
    mut sink: W,
    mut queue: mpsc::Receiver<Outbound>,
    epoch: Arc<AtomicU64>,
    audio_output: AudioOutput,
    output_rate: u32,
    metrics: Arc<Metrics>,
) -> WriterEnd
where
    W: Sink<Message, Error = axum::Error> + Unpin,
{
    while let Some(outbound) = queue.recv().await {
        let message = match outbound {
            Outbound::Audio { epoch: e, pcm } => {
                if e < epoch.load(Ordering::Relaxed) {
                    metrics.audio_frames_dropped.get_or_create(&metrics::OUT).inc();
                    continue;
                }
                metrics.audio_frames.get_or_create(&metrics::OUT).inc();
                match audio_output {
                    AudioOutput::Binary => Message::Binary(pcm),
                    AudioOutput::Json => Message::Text(encode_audio_json(&pcm, output_rate).into()),
                }
            }
            Outbound::Event(event) => Message::Text(event.to_json().into()),
            Outbound::Close { code, reason } => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
                return WriterEnd::Finished;
            }
        };
        match timeout(WRITE_TIMEOUT, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return WriterEnd::Gone,
            Err(_) => return WriterEnd::Stalled,
        }
    }
    WriterEnd::Finished
}
