//! The HTTP/WebSocket server: one listener for voice sessions (every wire protocol's path),
//! AgentCore's contract, probes and metrics, plus graceful drain. [`Agent`] owns everything
//! sessions share and every task it starts: sessions and background loops are tracked, so
//! [`Agent::serve`] returns only when all of them are done.

mod admission;
mod drain;
mod http;
mod invocation;
mod listener;
mod page;
mod sessions;
mod telephony;
mod ws;

pub use admission::{Refusal, RefusalReason};
pub use drain::Drain;
pub use sessions::{PingStatus, SessionGuard, Sessions, SessionsState};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::Gatekeeper;
use crate::metrics::Metrics;
use crate::model::ModelProvider;
use crate::model::SessionSetup;
use crate::model::nova::NovaSonicProvider;
use crate::model::simulated::{Mode, SimulatedProvider, SimulatorConfig};
use crate::protocol::INPUT_SAMPLE_RATE;
use crate::resume::{ConversationState, Resumption};
use crate::session::settings::SettingsPolicy;
use crate::session::{ResumeContext, SessionContext, SessionLimits};
use crate::tools::Toolbox;
use tokio::sync::watch;
use voice_config::{AgentConfig, ConfigError, ModelConfig, SimulatedMode, ValidConfig};

/// After the drain timeout, how long closed sessions get to finish their close handshakes.
const FORCE_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Whether a session's conversation can be resumed, and whether it resumes one.
pub(crate) enum Continuity {
    /// A single exchange (a prompt): nothing to resume.
    OneShot,
    /// A new conversation, offered a resume token when resumption is on.
    New,
    /// The conversation a resume token stood for (boxed: it carries the whole history).
    Resumed(Box<ConversationState>),
}

/// How long plain HTTP requests in flight may take once the listener stops.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything the request handlers and sessions share, and every task the agent starts.
pub struct Agent {
    config: AgentConfig,
    model: Arc<dyn ModelProvider>,
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
    drain: Drain,
    /// The tool servers' tools, once every server answered or failed its first attempt (always
    /// `None` without tool servers).
    tools: watch::Receiver<Option<Arc<Toolbox>>>,
    gatekeeper: Arc<Gatekeeper>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    registry: Registry,
    /// What callers may choose per session, and the prompt template.
    settings: SettingsPolicy,
    /// Resumable conversations (none when resumption is off).
    resumption: Option<Arc<Resumption>>,
    /// The carriers whose calls this agent answers, if any.
    telephony: Option<telephony::Telephony>,
    /// Sessions and background loops (tool loading, certificate reload, tidying).
    tasks: TaskTracker,
    /// Every session's limits, from the configuration: shared, not copied into each session.
    session_limits: Arc<SessionLimits>,
    /// Cancelled once sessions are gone: background loops stop.
    stop_background: CancellationToken,
}

impl Agent {
    /// Builds the agent from a validated configuration: reads the prompt, the TLS certificate
    /// and the credentials it names, and prepares the model provider.
    pub async fn new(config: ValidConfig) -> Result<Arc<Self>, ConfigError> {
        let config = config.into_inner();
        let settings = SettingsPolicy::new(&config, config.system_prompt()?);
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::register(&mut registry));
        let model = build_model(&config, metrics.clone()).await?;
        let resumption =
            Resumption::new(&config.session.resume, metrics.clone()).map_err(|message| ConfigError::Invalid {
                field: "session.resume",
                message,
            })?;
        let sessions = Sessions::new(config.session.max_sessions as usize, metrics.sessions_active.clone());
        let gatekeeper = Gatekeeper::new(&config.auth, &config.limits)
            .map_err(|message| ConfigError::Invalid { field: "auth", message })?;
        let tasks = TaskTracker::new();
        let stop_background = CancellationToken::new();
        // Loops that run for the agent's lifetime: tracked, and stopped once sessions are gone.
        tasks.spawn(
            stop_background
                .clone()
                .run_until_cancelled_owned(tidy(Arc::downgrade(&gatekeeper))),
        );
        let tls = match &config.tls {
            Some(tls) => {
                let (acceptor, reload) =
                    listener::tls_acceptor(tls).map_err(|message| ConfigError::Invalid { field: "tls", message })?;
                tasks.spawn(stop_background.clone().run_until_cancelled_owned(reload));
                Some(acceptor)
            }
            None => None,
        };
        let (tools_tx, tools) = watch::channel(None);
        let servers: Vec<_> = config.tool_servers().cloned().collect();
        if !servers.is_empty() {
            tasks.spawn(stop_background.clone().run_until_cancelled_owned(crate::tools::load(
                servers,
                metrics.clone(),
                tools_tx,
            )));
        }
        let telephony = config
            .telephony
            .as_ref()
            .map(|t| telephony::Telephony::new(t, config.tls.is_some()));
        let session_limits = Arc::new(SessionLimits {
            idle_timeout: config.session.idle_timeout,
            max_duration: config.session.max_duration,
            first_message_timeout: config.limits.first_message_timeout,
            max_audio_rate: config.limits.max_audio_rate,
            audio_burst: config.limits.audio_burst,
        });
        Ok(Arc::new(Self {
            telephony,
            session_limits,
            config,
            model,
            metrics,
            sessions,
            drain: Drain::default(),
            tools,
            gatekeeper,
            tls,
            registry,
            settings,
            resumption,
            tasks,
            stop_background,
        }))
    }

    /// The agent's name (the VoiceAgent's, in clusters).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The model sessions talk to.
    pub fn model_id(&self) -> &str {
        self.model.model_id()
    }

    /// Starts the drain if it has not started, and closes every live session now (a second
    /// shutdown signal).
    pub fn close_sessions_now(&self) {
        self.drain.close_all();
    }

    /// Why the agent is not ready, if it is not: draining, the model unavailable (e.g. no
    /// credentials), or tools not loaded yet. A tool server that cannot be reached does not make
    /// the agent unready (its tools are absent, see [`Agent::unreachable_tool_servers`]).
    pub fn not_ready(&self) -> Option<String> {
        if self.drain.is_draining() {
            Some("draining".into())
        } else if let Some(problem) = self.model.unavailable() {
            Some(problem)
        } else if self.config.tool_servers().next().is_some() && self.tools.borrow().is_none() {
            Some("tools not loaded from the tool servers yet".into())
        } else {
            None
        }
    }

    /// Tool servers that could not be reached at their last attempt: their tools are absent.
    pub fn unreachable_tool_servers(&self) -> Vec<String> {
        self.tools
            .borrow()
            .as_ref()
            .map(|t| t.unreachable().into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Everything one session needs, for a caller admitted with `settings`.
    pub(crate) fn session_context(
        &self,
        id: String,
        caller: &crate::auth::Caller,
        protocol: &'static str,
        settings: crate::session::SessionSettings,
        headers: &axum::http::HeaderMap,
        continuity: Continuity,
    ) -> SessionContext {
        let settings = Arc::new(settings);
        let (resumable, resumed) = match continuity {
            Continuity::OneShot => (false, None),
            Continuity::New => (true, None),
            Continuity::Resumed(mut state) => {
                // The same settings (admission took them from the state): one copy, shared.
                state.settings = settings.clone();
                (true, Some(*state))
            }
        };
        let toolbox = self.tools.borrow().clone();
        let history: Arc<[(crate::model::Role, String)]> = resumed
            .as_ref()
            .map(|state| state.history.iter().map(|m| (m.role.into(), m.text.clone())).collect())
            .unwrap_or_else(|| Arc::from([]));
        let mut closing = self.drain.closing_token();
        let resume = self.resumption.as_ref().filter(|_| resumable).map(|service| {
            let token = service.token();
            // The session's own stop signal: the drain's, and a resumption of its conversation
            // on another connection.
            closing = closing.child_token();
            let hold = service.hold(&token, caller.subject.clone(), closing.clone());
            Box::new(ResumeContext {
                token,
                resumed: resumed.is_some(),
                state: resumed
                    .unwrap_or_else(|| ConversationState::new(id.clone(), caller.subject.clone(), settings.clone())),
                live_ttl: self.config.session.max_duration + service.window(),
                hold,
            })
        });
        SessionContext {
            subject: caller.subject.clone(),
            protocol,
            limits: self.session_limits.clone(),
            model: self.model.clone(),
            setup: SessionSetup {
                system_prompt: self.settings.system_prompt(&settings),
                input_sample_rate: INPUT_SAMPLE_RATE,
                output_sample_rate: self.config.output_sample_rate(),
                tools: toolbox.as_ref().map_or_else(|| Arc::from([]), |t| t.specs()),
                settings,
                history,
            },
            id,
            metrics: self.metrics.clone(),
            closing,
            tools: toolbox,
            parent: voice_telemetry::remote_context(headers),
            resume,
            place: None,
        }
    }

    pub fn router(self: &Arc<Self>) -> Router {
        let mut router = Router::new();
        let mut paths: Vec<&'static str> = crate::protocol::PROTOCOLS.iter().map(|p| p.path).collect();
        paths.dedup();
        for path in paths {
            router = router.route(path, get(ws::upgrade));
        }
        router
            .route("/ping", get(http::ping))
            .route("/invocations", post(http::invocations))
            .route("/healthz", get(http::healthz))
            .route("/readyz", get(http::readyz))
            .route("/metrics", get(http::metrics))
            .merge(page::routes())
            .merge(telephony::routes())
            .with_state(self.clone())
    }

    /// Serves until `shutdown` is cancelled, then drains: readiness fails and new sessions are
    /// refused at once, live sessions continue up to the drain timeout and are then closed.
    /// Returns when no session is left.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
        let stop_listener = CancellationToken::new();
        // The listener keeps accepting during the drain: probes must see 503, handshakes a refusal.
        let mut server = tokio::spawn(listener::serve(
            listener,
            self.router(),
            self.tls.clone(),
            self.config.limits.handshake_timeout,
            stop_listener.clone(),
            HTTP_SHUTDOWN_GRACE,
        ));
        tokio::select! {
            result = &mut server => return result.map_err(std::io::Error::other),
            () = shutdown.cancelled() => {}
        }
        self.drain_sessions().await;
        stop_listener.cancel();
        let served = server.await.map_err(std::io::Error::other);
        self.stop_background.cancel();
        self.tasks.close();
        if tokio::time::timeout(FORCE_CLOSE_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(tasks = self.tasks.len(), "tasks still running after the drain");
        }
        // Sessions are gone, but their model streams may still be closing: exit only after.
        self.model.close().await;
        served
    }

    async fn drain_sessions(&self) {
        let drain_timeout = self.config.session.drain_timeout;
        info!(
            live_sessions = self.sessions.state().active,
            drain_timeout = %humantime::format_duration(drain_timeout),
            "draining: not ready, refusing new sessions"
        );
        self.drain.begin();
        tokio::select! {
            () = self.sessions.idle() => {}
            () = tokio::time::sleep(drain_timeout) => {
                info!(live_sessions = self.sessions.state().active, "drain timeout reached; closing sessions");
                self.drain.close_all();
            }
            () = self.drain.closing() => {}
        }
        if tokio::time::timeout(FORCE_CLOSE_GRACE, self.sessions.idle())
            .await
            .is_err()
        {
            warn!(
                live_sessions = self.sessions.state().active,
                "sessions did not close in time"
            );
        }
        info!("drained");
    }
}

/// How often per-client state (the handshake rate limiter) is tidied.
const TIDY_INTERVAL: Duration = Duration::from_secs(60);

async fn tidy(gatekeeper: std::sync::Weak<Gatekeeper>) {
    loop {
        tokio::time::sleep(TIDY_INTERVAL).await;
        match gatekeeper.upgrade() {
            Some(gatekeeper) => gatekeeper.tidy(),
            None => return,
        }
    }
}

async fn build_model(config: &AgentConfig, metrics: Arc<Metrics>) -> Result<Arc<dyn ModelProvider>, ConfigError> {
    Ok(match &config.model {
        ModelConfig::Simulated(sim) => Arc::new(SimulatedProvider::new(SimulatorConfig {
            mode: match sim.mode {
                SimulatedMode::Conversation => Mode::Conversation,
                SimulatedMode::Loopback => Mode::Loopback,
            },
            think_time: sim.think_time,
            output_sample_rate: config.output_sample_rate(),
        })),
        ModelConfig::NovaSonic(nova) => Arc::new(NovaSonicProvider::new(nova.clone(), metrics).await?),
    })
}
