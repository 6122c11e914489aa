//! The async side of a session: one task that decodes client frames with the session's
//! protocol, feeds the [`Session`] machine, executes its actions, and writes what the machine
//! sends through the socket's [`Writer`]. Every decision (how the session ends, what the client
//! is told) is the machine's; this file only moves frames and reports what the socket, the
//! writer and the model did.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use futures::future::BoxFuture;
use futures::{Sink, Stream, StreamExt};
use opentelemetry::trace::{TraceContextExt, TraceId};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::machine::{Action, Observation, Session, SessionLimits, SocketEnding};
use super::resume::{Keeper, ResumeContext};
use super::tool_calls::ToolCalls;
use super::writer::{Writer, WriterEnd};
use crate::cancel::CancelWatch;
use crate::metrics::{CallEndLabels, CarrierLabels, CodeLabels, KindLabels, Metrics, ReasonLabels};
use crate::model::queue::TrySendError;
use crate::model::{ModelError, ModelInput, ModelProvider, ModelStream, SessionSetup, TokenUsage, ToolUse};
use crate::protocol::{ClientMessage, Codec, Decode, EndReason, Frame, StopReason, telephony};
use crate::server::SessionGuard;
use crate::tools::Toolbox;

/// How long opening the model stream may take before the session gives up.
const MODEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// After the close frame, how long to wait for the writer to flush and the client to answer.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long to hold a connection whose read side failed after sending it a close frame.
const READ_FAILED_LINGER: Duration = Duration::from_secs(1);

/// Everything a session needs from the server.
pub struct SessionContext {
    /// Taken by the session's machine when the session starts (the span has it already).
    pub id: String,
    /// The authenticated caller, if authentication is on.
    pub subject: Option<String>,
    /// The name of the wire protocol the handshake selected (for logs and traces).
    pub protocol: &'static str,
    pub limits: Arc<SessionLimits>,
    pub model: Arc<dyn ModelProvider>,
    pub setup: SessionSetup,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the agent's drain timeout is over, or when the conversation is resumed on
    /// another connection: close now.
    pub closing: CancellationToken,
    /// Tools the model may call, if a gateway is configured and its tools are loaded.
    pub tools: Option<Arc<Toolbox>>,
    /// Tool calls this session runs at once.
    /// The caller's trace context (W3C `traceparent` on the handshake), if any.
    pub parent: opentelemetry::Context,
    /// How the conversation is kept for resuming, when resumption is on.
    /// Boxed: the context is kept for the whole session, and inline this would size it for
    /// sessions without resumption too.
    pub resume: Option<Box<ResumeContext>>,
    /// The session's place among the agent's live sessions (capacity, drain), given back when
    /// the session ends and its context goes. Kept here, in the boxed context, rather than
    /// beside the session's future, which every session holds inline (see `run_session`).
    pub place: Option<SessionGuard>,
}

/// Runs one session over a WebSocket until it ends, speaking the protocol of `codec`. Generic
/// over the socket so that it can be driven by in-memory channels as well as by a real
/// connection.
///
/// The context comes boxed (a `SessionContext` converts) and the socket is split before the
/// session's future is built: every layer of futures between the upgrade and the session loop
/// keeps its own copy of what it is handed, for as long as the session lasts, so a large value
/// handed down is paid for at every layer (BENCHMARKS.md, tuning).
pub fn run_session<S>(
    socket: S,
    codec: Codec,
    ctx: impl Into<Box<SessionContext>>,
) -> impl Future<Output = EndReason> + Send + 'static
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + 'static,
{
    let ctx: Box<SessionContext> = ctx.into();
    // Every log line of the session carries the span's fields, and the span keeps them as text
    // for as long as the session lasts: fields only traces need are recorded only when traces
    // are exported.
    let span = info_span!(
        "session",
        otel.name = "voice session",
        id = %ctx.id,
        subject = tracing::field::Empty,
        model = ctx.model.model_id(),
        protocol = ctx.protocol,
        trace_id = tracing::field::Empty,
        close_reason = tracing::field::Empty,
        conversation = tracing::field::Empty,
        resumed = ctx.resume.as_ref().is_some_and(|r| r.resumed),
        // OpenTelemetry's GenAI conventions; the token counts are recorded at the end.
        gen_ai.operation.name = tracing::field::Empty,
        gen_ai.request.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
    );
    if let Some(subject) = &ctx.subject {
        span.record("subject", subject.as_str());
    }
    let remote = ctx.parent.span().span_context().clone();
    if remote.is_valid() {
        let _ = span.set_parent(ctx.parent.clone());
    }
    // Logs carry the trace id: the exported trace's, else the caller's.
    let own = span.context().span().span_context().trace_id();
    let trace_id = if own != TraceId::INVALID {
        span.record("gen_ai.operation.name", "chat");
        span.record("gen_ai.request.model", ctx.model.model_id());
        own
    } else {
        remote.trace_id()
    };
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    if let Some(resume) = &ctx.resume {
        // A new conversation's id is its first session's: log lines carry it once, as `id` (the
        // span keeps every field as text for the session's life); traces always get both.
        if resume.resumed || own != TraceId::INVALID {
            span.record("conversation", resume.state.conversation_id.as_str());
        }
        // A resumed conversation links back to the session it came from.
        if let Some(link) = resume.state.trace.as_deref().and_then(parse_span_context) {
            span.add_link(link);
        }
    }
    let (sink, stream) = socket.split();
    // Built in the span: the session's first steps (its own trace reference) run here.
    span.in_scope(|| run(sink, stream, codec, ctx)).instrument(span)
}

/// `trace_id-span_id` (hex) as a remote span context.
fn parse_span_context(text: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};
    let (trace, span) = text.split_once('-')?;
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// This session's own span as `trace_id-span_id`, for a later resumption to link to.
fn own_span_reference() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let own = span.span_context();
    own.is_valid().then(|| format!("{}-{}", own.trace_id(), own.span_id()))
}

/// The session: opens the model stream, converses until the machine ends the session, then
/// closes. A plain function returning an `async move` block, not an `async fn`: an `async fn`
/// moves its arguments into locals of its own and its future keeps both copies, while a block
/// uses what it captured in place. Everything made here, before the block, is captured once.
fn run<W, R>(sink: W, mut stream: R, codec: Codec, mut ctx: Box<SessionContext>) -> impl Future<Output = EndReason>
where
    W: Sink<Message, Error = axum::Error> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let started = Instant::now();
    ctx.metrics.sessions_started.inc();
    let Codec { mut decoder, encoder } = codec;
    let mut writer = Writer::new(sink, encoder, ctx.metrics.clone());
    // Grows to what one wake-up makes (a few actions) and stays there.
    let mut actions = Vec::new();
    // The span has the id already: the machine keeps the one copy the session needs.
    let mut session = Session::new(
        std::mem::take(&mut ctx.id),
        (ctx.setup.input_sample_rate, ctx.setup.output_sample_rate),
        ctx.limits.clone(),
        started,
    );
    let mut keeper = ctx.resume.take().map(|mut resume| {
        resume.state.trace = own_span_reference();
        Keeper::start(resume)
    });
    async move {
        // In a block of its own: the model's side closes when the block ends (its input queue's
        // sender goes), not after the linger, and its slot in this future is free after it.
        let usage = {
            // Matched by reference: a stream moved out of the result would take a second slot in
            // this future for the whole session.
            let mut connected = connect_model(&ctx).await;
            match &mut connected {
                Ok(model) => {
                    info!(model = ctx.model.model_id(), protocol = ctx.protocol, "session started");
                    let offer = keeper.as_mut().and_then(|keeper| keeper.offer());
                    session.on_model_connected(ctx.model.model_id(), ctx.setup.settings.clone(), offer, &mut actions);
                    let mut io = SessionIo {
                        stream: &mut stream,
                        decoder: decoder.as_mut(),
                        model,
                        writer: &mut writer,
                    };
                    converse(&ctx, &mut session, &mut actions, &mut io, &mut keeper).await
                }
                Err(error) => {
                    // Stopped while connecting because the conversation was resumed on another
                    // connection: nothing failed, and the conversation is not this session's to offer.
                    let superseded = keeper.as_ref().is_some_and(|keeper| keeper.superseded());
                    if !superseded {
                        warn!(%error, "model stream could not be opened");
                        // A resumed conversation is not lost to a model that is down: the close
                        // offers this session's token to try again with.
                        session.offer_handover(keeper.as_mut().and_then(|keeper| keeper.offer()).as_ref());
                    }
                    if let Some(saving) = keeper.take().map(Keeper::finish) {
                        saving.await;
                    }
                    if superseded {
                        session.on_resumed_elsewhere(&mut actions);
                    } else {
                        session.on_model_connect_failed(error, &mut actions);
                    }
                    for action in actions.drain(..) {
                        execute_without_model(action, &mut writer, &ctx.metrics).await;
                    }
                    TokenUsage::default()
                }
            }
        };
        let reason = session.ended().unwrap_or(EndReason::Internal);
        if let Some(saving) = keeper.take().map(Keeper::finish) {
            saving.await;
        }
        report_end(&ctx, reason, started.elapsed(), usage);

        // Let the writer flush what is queued (the close frame last), then give the client a
        // moment to answer the close handshake before the connection is dropped.
        let linger_until = Instant::now() + CLOSE_LINGER;
        let _ = timeout(CLOSE_LINGER, writer.finish()).await;
        // A client that closed first has its answer once the writer flushed ours: nothing to
        // wait for (waiting would hold the session's place for no one).
        if reason.close_code().is_some() && reason != EndReason::ClientClosed {
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
                // behind). Closing the socket now would reset the connection, and the client
                // could lose the close frame it has not read yet.
                sleep_until(linger_until.min(Instant::now() + READ_FAILED_LINGER)).await;
            }
        }
        reason
    }
}

/// Counts and logs how the session ended. The session's token totals go on its span here, once:
/// recorded at every usage report instead, text logs would append each report's totals to the
/// span's fields, which grow with the conversation.
fn report_end(ctx: &SessionContext, reason: EndReason, duration: Duration, usage: TokenUsage) {
    let span = tracing::Span::current();
    span.record("close_reason", reason.as_str());
    if !usage.is_empty() {
        span.record("gen_ai.usage.input_tokens", usage.input());
        span.record("gen_ai.usage.output_tokens", usage.output());
    }
    ctx.metrics
        .sessions_ended
        .get_or_create(&ReasonLabels {
            reason: reason.as_str(),
        })
        .inc();
    ctx.metrics.session_duration.observe(duration.as_secs_f64());
    if let Some(carrier) = telephony::carrier(ctx.protocol) {
        ctx.metrics
            .phone_calls_ended
            .get_or_create(&CallEndLabels {
                carrier: carrier.protocol.name,
                reason: reason.as_str(),
            })
            .inc();
    }
    info!(
        reason = reason.as_str(),
        duration_ms = duration.as_millis() as u64,
        input_tokens = usage.input(),
        output_tokens = usage.output(),
        "session ended"
    );
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

/// What the main loop moves frames between.
struct SessionIo<'a, R, W> {
    stream: &'a mut R,
    decoder: &'a mut dyn Decode,
    model: &'a mut ModelStream,
    writer: &'a mut Writer<W>,
}

/// The main loop: client frames, model events, tool results, deadlines, the writer's end and the
/// drain signal feed the machine; its actions are carried out until it says the session ended.
/// Returns the tokens the model counted.
async fn converse<R, W>(
    ctx: &SessionContext,
    session: &mut Session,
    actions: &mut Vec<Action>,
    io: &mut SessionIo<'_, R, W>,
    keeper: &mut Option<Box<Keeper>>,
) -> TokenUsage
where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    W: Sink<Message, Error = axum::Error> + Unpin,
{
    let mut calls = ToolCalls::new(ctx.tools.clone(), &ctx.setup.settings);
    let mut turn = TurnSpan::default();
    // The drain signal and the deadline live across iterations: made afresh in each one, both
    // were registered with the runtime and removed again for every frame. The deadline moves
    // later with every input, and moving a registered timer later is a single store.
    let closing = ctx.closing.cancelled();
    tokio::pin!(closing);
    let mut closing = CancelWatch::new(closing);
    let deadline = sleep_until(session.deadline());
    tokio::pin!(deadline);
    loop {
        // Set the epoch before queueing anything, so the writer drops stale audio at once.
        io.writer.set_epoch(session.epoch());
        let mut model_busy = false;
        // The conversation is saved before a close that offers to resume it elsewhere, so the
        // client finds it there.
        if let Some(saving) = save_before_close(keeper, actions) {
            saving.await;
        }
        for action in actions.drain(..) {
            match action {
                Action::Send(outbound) => io.writer.send(outbound).await,
                Action::Model(input) => model_busy |= !feed_model(input, io.model, &ctx.metrics),
                Action::Observe(observation) => {
                    if let (Observation::TurnEnded(stop), Some(keeper)) = (&observation, keeper.as_mut())
                        && *stop != StopReason::ToolUse
                    {
                        keeper.save();
                    }
                    turn.observe(&observation);
                    observe(observation, &ctx.metrics);
                }
                Action::Remember(role, text) => {
                    if let Some(keeper) = keeper.as_mut() {
                        keeper.said(role, &text);
                    }
                }
                Action::CallTool(call) => {
                    let ToolUse { id, name, input } = *call;
                    calls.start(id, name, input);
                }
                Action::End(_) => {}
            }
        }
        if model_busy {
            session.on_model_busy(actions);
            continue;
        }
        if session.ended().is_some() {
            return turn.finish();
        }
        let due = session.deadline();
        if deadline.deadline() != due {
            deadline.as_mut().reset(due);
        }

        tokio::select! {
            biased;
            // The session's stop signal: the drain's, or a resumption of its conversation.
            () = closing.fired() => {
                if keeper.as_ref().is_some_and(|keeper| keeper.superseded()) {
                    session.on_resumed_elsewhere(actions);
                } else {
                    session.on_drain(actions);
                }
            }
            end = io.writer.run(), if io.writer.wants_polling() => {
                let ending = match end {
                    WriterEnd::Stalled => SocketEnding::WriteStalled,
                    WriterEnd::Finished | WriterEnd::Gone => SocketEnding::Lost,
                };
                session.on_socket(ending, "socket writer stopped", actions);
            }
            frame = io.stream.next() => on_frame(frame, io.decoder, session, actions, ctx),
            // Polled in every pass that ends in a wait: a model in this task answers input
            // handed to it above without a wake-up (`InlineModel`).
            output = io.model.recv() => session.on_model(output, Instant::now(), actions),
            Some(done) = calls.next(), if !calls.is_empty() => {
                if let Some(keeper) = keeper.as_mut() {
                    keeper.tool_finished(&done.name, done.outcome.is_error(), &done.outcome.content);
                }
                session.on_tool_result(done.id, done.name, done.outcome.is_error(), done.outcome.content, actions);
            }
            () = &mut deadline => session.on_deadline(Instant::now(), actions),
        }
    }
}

/// Before a close that offers to resume the conversation elsewhere, the conversation is saved
/// (with the close's last words), so the client finds it there. The save is boxed: it runs
/// once, and inline it would size the session loop's future for the whole session.
fn save_before_close(keeper: &mut Option<Box<Keeper>>, actions: &[Action]) -> Option<BoxFuture<'static, ()>> {
    if !actions.iter().any(|a| matches!(a, Action::End(_))) {
        return None;
    }
    let mut keeper = keeper.take()?;
    for action in actions {
        if let Action::Remember(role, text) = action {
            keeper.said(*role, text);
        }
    }
    Some(keeper.finish())
}

/// Carries out an action of a session that never reached its model (only sends and counts
/// happen then).
async fn execute_without_model<W>(action: Action, writer: &mut Writer<W>, metrics: &Metrics)
where
    W: Sink<Message, Error = axum::Error> + Unpin,
{
    match action {
        Action::Send(outbound) => writer.send(outbound).await,
        Action::Observe(observation) => observe(observation, metrics),
        Action::Model(_) | Action::CallTool(_) | Action::Remember(..) | Action::End(_) => {}
    }
}

fn on_frame(
    frame: Option<Result<Message, axum::Error>>,
    decoder: &mut dyn Decode,
    session: &mut Session,
    actions: &mut Vec<Action>,
    ctx: &SessionContext,
) {
    let now = Instant::now();
    let decoded = match &frame {
        Some(Ok(Message::Text(text))) => Some(decoder.decode(Frame::Text(text.as_str()))),
        Some(Ok(Message::Binary(data))) => Some(decoder.decode(Frame::Binary(data))),
        _ => None,
    };
    if let Some(decoded) = decoded {
        // A phone call's only text input is a key the caller pressed.
        if let (Ok(ClientMessage::Text(_)), Some(carrier)) = (&decoded, telephony::carrier(ctx.protocol)) {
            ctx.metrics
                .dtmf_presses
                .get_or_create(&CarrierLabels {
                    carrier: carrier.protocol.name,
                })
                .inc();
        }
        session.on_client(decoded, now, actions);
        return;
    }
    match frame {
        Some(Ok(Message::Text(_) | Message::Binary(_))) => {}
        // Pings are answered by the WebSocket layer; pongs need nothing.
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        Some(Ok(Message::Close(_))) => session.on_socket(SocketEnding::Closed, "client closed", actions),
        Some(Err(error)) => {
            let (ending, detail) = classify_socket_error(error);
            debug!(?ending, %detail, "socket read failed");
            session.on_socket(ending, &detail, actions);
        }
        None => session.on_socket(SocketEnding::Lost, "connection closed", actions),
    }
}

/// What a socket read error says about the connection.
fn classify_socket_error(error: axum::Error) -> (SocketEnding, String) {
    let inner = error.into_inner();
    let detail = inner.to_string();
    let ending = match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => SocketEnding::TooBig,
        Some(tungstenite::Error::Utf8(_)) => SocketEnding::InvalidText,
        Some(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
            SocketEnding::Lost
        }
        Some(tungstenite::Error::Protocol(_)) => SocketEnding::ProtocolViolation,
        _ => SocketEnding::Lost,
    };
    (ending, detail)
}

/// Hands input to the model without ever waiting on it. Returns false when a message other
/// than audio had to be dropped because the model is not keeping up.
fn feed_model(input: ModelInput, model: &mut ModelStream, metrics: &Metrics) -> bool {
    let is_audio = matches!(input, ModelInput::Audio(_));
    match model.try_send(input) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) if is_audio => {
            metrics.audio.dropped_in.inc();
            true
        }
        Err(TrySendError::Full(_)) => false,
        // The model task is gone; its output channel reports that to the machine.
        Err(TrySendError::Closed(_)) => true,
    }
}

/// The trace span of the turn in progress: from the end of the user's turn, through the first
/// reply audio, to the end of the reply, with its token counts; and the session's token totals.
/// Counts are recorded once, when a span ends: text logs append every recorded value to the
/// span's fields instead of replacing the last one.
#[derive(Default)]
struct TurnSpan {
    span: Option<tracing::Span>,
    turn_usage: TokenUsage,
    session_usage: TokenUsage,
}

impl TurnSpan {
    fn observe(&mut self, observation: &Observation) {
        match observation {
            Observation::TurnStarted => {
                self.turn_usage = TokenUsage::default();
                self.span = Some(info_span!(
                    "turn",
                    otel.name = "turn",
                    time_to_first_audio_ms = tracing::field::Empty,
                    stop_reason = tracing::field::Empty,
                    gen_ai.usage.input_tokens = tracing::field::Empty,
                    gen_ai.usage.output_tokens = tracing::field::Empty,
                ));
            }
            Observation::TimeToFirstAudio(elapsed) => {
                if let Some(span) = &self.span {
                    span.record("time_to_first_audio_ms", elapsed.as_millis() as u64);
                    span.in_scope(|| debug!("first reply audio"));
                }
            }
            Observation::TurnEnded(stop_reason) => self.end_turn(Some(*stop_reason)),
            Observation::Usage(usage) => {
                self.session_usage += *usage;
                if self.span.is_some() {
                    self.turn_usage += *usage;
                }
            }
            _ => {}
        }
    }

    fn end_turn(&mut self, stop_reason: Option<StopReason>) {
        let Some(span) = self.span.take() else {
            return;
        };
        if let Some(stop_reason) = stop_reason {
            span.record("stop_reason", stop_reason.as_str());
        }
        if !self.turn_usage.is_empty() {
            span.record("gen_ai.usage.input_tokens", self.turn_usage.input());
            span.record("gen_ai.usage.output_tokens", self.turn_usage.output());
        }
    }

    /// The session is over: a turn still open gets its counts so far. Returns the session's
    /// totals.
    fn finish(mut self) -> TokenUsage {
        self.end_turn(None);
        self.session_usage
    }
}

fn observe(observation: Observation, metrics: &Metrics) {
    match observation {
        Observation::TurnStarted | Observation::TurnEnded(_) => {}
        Observation::AudioIn => {
            metrics.audio.received.inc();
        }
        Observation::TimeToFirstAudio(d) => metrics.time_to_first_audio.observe(d.as_secs_f64()),
        Observation::Interruption => {
            metrics.interruptions.inc();
        }
        Observation::ClientError(code) => {
            metrics.client_errors.get_or_create(&CodeLabels { code }).inc();
        }
        Observation::ModelError(kind) => {
            metrics
                .model_errors
                .get_or_create(&KindLabels { kind: kind.as_str() })
                .inc();
        }
        Observation::Usage(usage) => metrics.count_tokens(&usage),
    }
}
