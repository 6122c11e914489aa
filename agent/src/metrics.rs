//! Prometheus metrics of the agent. Labels are small closed sets (reasons, directions, codes),
//! never session ids or callers, so cardinality stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::{ModelErrorKind, TokenUsage};
use crate::protocol::EndReason;
use crate::server::RefusalReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Why model streams are replaced (the `reason` label of `model_stream_renewals`).
pub const RENEWAL_REASONS: &[&str] = &[
    "proactive",
    "model_timeout",
    "silence_timeout",
    "input_timeout",
    "error",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// A tool offered to the model (a bounded set, from the gateway), or `unknown`.
    pub tool: String,
    pub outcome: &'static str,
}

/// A configured tool server, by name (a bounded set, from the configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolServerLabels {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolNameLabels {
    pub tool: String,
}

/// Tokens a model counted, by direction (`input`, `output`) and modality (`speech`, `text`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub direction: &'static str,
    pub modality: &'static str,
}

/// How a resumption attempt ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// A resumption store operation (`save`, `take`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

/// A carrier's refused request: which carrier, at which stage, why (closed sets, see
/// `server::telephony::Rejection`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TelephonyLabels {
    pub carrier: &'static str,
    pub stage: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CarrierLabels {
    pub carrier: &'static str,
}

/// How a phone call ended: the carrier, and the session's end reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallEndLabels {
    pub carrier: &'static str,
    pub reason: &'static str,
}

pub const IN: DirectionLabels = DirectionLabels { direction: "in" };
pub const OUT: DirectionLabels = DirectionLabels { direction: "out" };

/// The audio frame counters, resolved once: every frame in and out counts one, and looking a
/// series up in its family (a lock and a hash per frame) cost more than the count itself.
pub struct AudioFrameCounters {
    pub received: Counter,
    pub sent: Counter,
    pub dropped_in: Counter,
    pub dropped_out: Counter,
}

pub struct Metrics {
    pub sessions_active: Gauge,
    pub sessions_started: Counter,
    pub sessions_ended: Family<ReasonLabels, Counter>,
    pub session_duration: Histogram,
    pub audio_frames: Family<DirectionLabels, Counter>,
    pub audio_frames_dropped: Family<DirectionLabels, Counter>,
    /// The series of `audio_frames` and `audio_frames_dropped`, for the per-frame path.
    pub audio: AudioFrameCounters,
    pub time_to_first_audio: Histogram,
    pub interruptions: Counter,
    pub client_errors: Family<CodeLabels, Counter>,
    pub model_errors: Family<KindLabels, Counter>,
    pub model_stream_renewals: Family<ReasonLabels, Counter>,
    pub handshake_rejections: Family<ReasonLabels, Counter>,
    pub tool_calls: Family<ToolLabels, Counter>,
    pub tool_call_duration: Family<ToolNameLabels, Histogram>,
    /// 1 when the tool server answered its last attempt, 0 while it cannot be reached.
    pub tool_server_up: Family<ToolServerLabels, Gauge>,
    /// Tools of the server offered to the model.
    pub tool_server_tools: Family<ToolServerLabels, Gauge>,
    pub model_tokens: Family<TokenLabels, Counter>,
    /// Tasks alive in the runtime, read at each scrape.
    pub runtime_tasks: Gauge,
    pub resumptions: Family<OutcomeLabels, Counter>,
    pub resume_store_seconds: Family<OpLabels, Histogram>,
    pub resume_store_failures: Family<OpLabels, Counter>,
    /// Phone calls whose stream started and opened a session, by carrier.
    pub phone_calls: Family<CarrierLabels, Counter>,
    /// Phone calls ended, by carrier and end reason.
    pub phone_calls_ended: Family<CallEndLabels, Counter>,
    /// Keys callers pressed (DTMF), by carrier.
    pub dtmf_presses: Family<CarrierLabels, Counter>,
    /// Carriers' requests refused (webhooks, stream upgrades, call starts).
    pub telephony_rejections: Family<TelephonyLabels, Counter>,
}

const TOKEN_LABELS: [TokenLabels; 4] = [
    TokenLabels {
        direction: "input",
        modality: "speech",
    },
    TokenLabels {
        direction: "input",
        modality: "text",
    },
    TokenLabels {
        direction: "output",
        modality: "speech",
    },
    TokenLabels {
        direction: "output",
        modality: "text",
    },
];

impl Metrics {
    pub fn count_resumption(&self, outcome: &'static str) {
        self.resumptions.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn observe_resume_store(&self, op: &'static str, took: std::time::Duration, ok: bool) {
        let labels = OpLabels { op };
        self.resume_store_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.resume_store_failures.get_or_create(&labels).inc();
        }
    }

    /// Adds a model's usage report to the token counters.
    pub fn count_tokens(&self, usage: &TokenUsage) {
        let counts = [
            usage.input_speech,
            usage.input_text,
            usage.output_speech,
            usage.output_text,
        ];
        for (labels, count) in TOKEN_LABELS.iter().zip(counts) {
            if count > 0 {
                self.model_tokens.get_or_create(labels).inc_by(u64::from(count));
            }
        }
    }

    /// Creates the metrics and registers them under the `voice_agent_` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let audio_frames = Family::<DirectionLabels, Counter>::default();
        let audio_frames_dropped = Family::<DirectionLabels, Counter>::default();
        // One statement each: `get_or_create` returns a read guard, and a guard still held
        // (a temporary lives to the end of its statement) blocks the next series' insertion.
        let received = audio_frames.get_or_create(&IN).clone();
        let sent = audio_frames.get_or_create(&OUT).clone();
        let dropped_in = audio_frames_dropped.get_or_create(&IN).clone();
        let dropped_out = audio_frames_dropped.get_or_create(&OUT).clone();
        let audio = AudioFrameCounters {
            received,
            sent,
            dropped_in,
            dropped_out,
        };
        let metrics = Self {
            sessions_active: Gauge::default(),
            sessions_started: Counter::default(),
            sessions_ended: Family::default(),
            // Calls last seconds to an hour.
            session_duration: Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]),
            audio_frames,
            audio_frames_dropped,
            audio,
            // Voice-to-voice budgets are a few hundred milliseconds; resolve that range finely.
            time_to_first_audio: Histogram::new([
                0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0,
            ]),
            interruptions: Counter::default(),
            client_errors: Family::default(),
            model_errors: Family::default(),
            model_stream_renewals: Family::default(),
            handshake_rejections: Family::default(),
            tool_calls: Family::default(),
            // Tools answer in tens of milliseconds to tens of seconds.
            tool_call_duration: Family::new_with_constructor(|| {
                Histogram::new([0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
            }),
            tool_server_up: Family::default(),
            tool_server_tools: Family::default(),
            model_tokens: Family::default(),
            runtime_tasks: Gauge::default(),
            resumptions: Family::default(),
            // A store on the same network answers in a millisecond; its timeout is 500 ms.
            resume_store_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0])
            }),
            resume_store_failures: Family::default(),
            phone_calls: Family::default(),
            phone_calls_ended: Family::default(),
            dtmf_presses: Family::default(),
            telephony_rejections: Family::default(),
        };
        for outcome in ["resumed", "expired", "foreign", "corrupt", "unavailable"] {
            let _ = metrics.resumptions.get_or_create(&OutcomeLabels { outcome });
        }
        for op in ["save", "take"] {
            let _ = metrics.resume_store_seconds.get_or_create(&OpLabels { op });
            let _ = metrics.resume_store_failures.get_or_create(&OpLabels { op });
        }
        for carrier in crate::protocol::telephony::CARRIERS {
            let carrier = carrier.protocol.name;
            let _ = metrics.phone_calls.get_or_create(&CarrierLabels { carrier });
            let _ = metrics.dtmf_presses.get_or_create(&CarrierLabels { carrier });
            for reason in EndReason::ALL {
                let _ = metrics.phone_calls_ended.get_or_create(&CallEndLabels {
                    carrier,
                    reason: reason.as_str(),
                });
            }
        }
        for labels in TOKEN_LABELS {
            let _ = metrics.model_tokens.get_or_create(&labels);
        }
        // Every known label value starts at zero, so each series exists from the start
        // (rates and alerts work before the first event, and dashboards find every name).
        for reason in EndReason::ALL {
            let _ = metrics.sessions_ended.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for direction in [IN, OUT] {
            let _ = metrics.audio_frames.get_or_create(&direction);
            let _ = metrics.audio_frames_dropped.get_or_create(&direction);
        }
        for reason in RefusalReason::ALL {
            let _ = metrics.handshake_rejections.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for kind in ModelErrorKind::ALL {
            let _ = metrics.model_errors.get_or_create(&KindLabels { kind: kind.as_str() });
        }
        for &reason in RENEWAL_REASONS {
            let _ = metrics.model_stream_renewals.get_or_create(&ReasonLabels { reason });
        }
        let _ = metrics
            .client_errors
            .get_or_create(&CodeLabels { code: "invalid_event" });
        let unknown = ToolLabels {
            tool: "unknown".into(),
            outcome: "unknown_tool",
        };
        let _ = metrics.tool_calls.get_or_create(&unknown);
        let _ = metrics.tool_call_duration.get_or_create(&ToolNameLabels {
            tool: unknown.tool.clone(),
        });
        let r = registry.sub_registry_with_prefix("voice_agent");
        r.register(
            "sessions_active",
            "Voice sessions currently open",
            metrics.sessions_active.clone(),
        );
        r.register(
            "sessions_started",
            "Voice sessions accepted",
            metrics.sessions_started.clone(),
        );
        r.register(
            "sessions_ended",
            "Voice sessions ended, by reason",
            metrics.sessions_ended.clone(),
        );
        r.register(
            "session_duration_seconds",
            "Duration of ended voice sessions",
            metrics.session_duration.clone(),
        );
        r.register(
            "audio_frames",
            "Audio frames relayed, by direction",
            metrics.audio_frames.clone(),
        );
        r.register(
            "audio_frames_dropped",
            "Audio frames dropped because the receiver could not keep up, by direction",
            metrics.audio_frames_dropped.clone(),
        );
        r.register(
            "time_to_first_audio_seconds",
            "Time from the end of the user's turn to the first reply audio",
            metrics.time_to_first_audio.clone(),
        );
        r.register(
            "interruptions",
            "Replies interrupted by the user (barge-in)",
            metrics.interruptions.clone(),
        );
        r.register(
            "client_errors",
            "bidi_error events sent to clients, by error code",
            metrics.client_errors.clone(),
        );
        r.register(
            "model_errors",
            "Model errors by kind, including those recovered from",
            metrics.model_errors.clone(),
        );
        r.register(
            "model_stream_renewals",
            "Model streams replaced within a session, by reason",
            metrics.model_stream_renewals.clone(),
        );
        r.register(
            "tool_calls",
            "Tool calls by tool and outcome",
            metrics.tool_calls.clone(),
        );
        r.register(
            "tool_call_duration_seconds",
            "Duration of tool calls, by tool",
            metrics.tool_call_duration.clone(),
        );
        r.register(
            "tool_server_up",
            "Whether each tool server answered its last attempt to list its tools (1) or not (0)",
            metrics.tool_server_up.clone(),
        );
        r.register(
            "tool_server_tools",
            "Tools of each tool server offered to the model",
            metrics.tool_server_tools.clone(),
        );
        r.register(
            "handshake_rejections",
            "WebSocket handshakes refused, by reason",
            metrics.handshake_rejections.clone(),
        );
        r.register(
            "model_tokens",
            "Tokens the model counted, by direction (input, output) and modality (speech, text)",
            metrics.model_tokens.clone(),
        );
        r.register(
            "runtime_tasks",
            "Tasks alive in the agent's async runtime (a few per session): growth with a steady session count is a leak",
            metrics.runtime_tasks.clone(),
        );
        r.register(
            "resumptions",
            "Resumption attempts by outcome: resumed, expired (unknown, used or too late), foreign (another caller's token), corrupt, unavailable (store down)",
            metrics.resumptions.clone(),
        );
        r.register(
            "resume_store_seconds",
            "Latency of resumption store operations (save, take)",
            metrics.resume_store_seconds.clone(),
        );
        r.register(
            "resume_store_failures",
            "Resumption store operations that failed or timed out (the call goes on)",
            metrics.resume_store_failures.clone(),
        );
        r.register(
            "phone_calls",
            "Phone calls whose media stream started a session, by carrier",
            metrics.phone_calls.clone(),
        );
        r.register(
            "phone_calls_ended",
            "Phone calls ended, by carrier and reason (the reasons of sessions_ended)",
            metrics.phone_calls_ended.clone(),
        );
        r.register(
            "dtmf_presses",
            "Keypad keys callers pressed during phone calls, by carrier",
            metrics.dtmf_presses.clone(),
        );
        r.register(
            "telephony_rejections",
            "Carrier requests refused, by carrier, stage (webhook, stream, start) and reason",
            metrics.telephony_rejections.clone(),
        );
        metrics
    }
}
