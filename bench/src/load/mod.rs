//! The load generator: one "point" is N sessions held for a warm-up and a measurement window,
//! with the server's CPU and memory sampled over the same window.

mod recorder;
mod session;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout_at};

pub use recorder::{Percentiles, ReplyCounts, histogram, record};
use session::{SessionEnd, Shared};

use crate::frame::{Encoding, Protocol};
use crate::procfs::{self, Usage};

/// Handshakes in flight at once while a point ramps up.
const CONNECT_CONCURRENCY: usize = 64;
/// After sending stops, how long replies may still arrive before missing ones count as dropped.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// How long every session together may take to connect.
const CONNECT_PHASE_LIMIT: Duration = Duration::from_secs(60);
/// Sessions still running this long after the point ended are abandoned.
const FINISH_LIMIT: Duration = Duration::from_secs(10);
/// Slices in which other processes' CPU is sampled during the window.
const NOISE_SLICE: Duration = Duration::from_millis(250);
/// Distinct error messages kept for the report.
const MAX_ERRORS: usize = 5;

/// What the callers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Stamped silence at real-time pace, against a loopback model: round-trip latency.
    Loopback,
    /// A question every eight seconds; the model answers: reply audio gaps and errors.
    Conversation,
    /// Connect, send one frame, stay silent: memory of idle sessions.
    Idle,
}

/// One load point.
#[derive(Debug, Clone)]
pub struct PointSpec {
    /// `ws://host:port/ws`, without the query.
    pub url: String,
    pub sessions: usize,
    pub encoding: Encoding,
    pub protocol: Protocol,
    pub workload: Workload,
    pub warmup: Duration,
    pub measure: Duration,
}

/// The phases of a point, fixed once every session has connected.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub window_start: Instant,
    pub stop_sending: Instant,
    pub stop_receiving: Instant,
}

impl Timing {
    /// Whether a frame sent at `at` belongs to the measurement window.
    pub fn contains(&self, at: Instant) -> bool {
        at >= self.window_start && at < self.stop_sending
    }
}

/// Everything measured at one point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointResult {
    pub sessions: usize,
    pub encoding: Encoding,
    pub workload: Workload,
    pub connected: usize,
    pub connect_failures: usize,
    pub ended_early: usize,
    pub frames_sent: u64,
    pub frames_echoed: u64,
    pub frames_late: u64,
    /// Sent in the window and never echoed.
    pub frames_dropped: u64,
    pub round_trip: Percentiles,
    pub send_lag: Percentiles,
    /// Conversation workload: the frame that ended a turn, sent, to the reply's first audio byte.
    #[serde(default)]
    pub reply_latency: Percentiles,
    /// Conversation workload with `fake-bedrock --stamp-replies`: the fake's first reply byte to
    /// the client's (one way, both read the machine's wall clock).
    #[serde(default)]
    pub reply_downstream: Percentiles,
    pub replies: ReplyCounts,
    /// The server process over the window (and its memory before the first session).
    pub server: Option<Usage>,
    pub server_rss_before_kib: Option<u64>,
    /// RssAnon of the server before the first session (absent in older results).
    #[serde(default)]
    pub server_anon_before_kib: Option<u64>,
    /// The generator itself, to tell a saturated generator from a saturated server.
    pub generator: Usage,
    /// A helper process serving the server under test (the Bedrock fake), if any.
    pub helper_cpu_percent: f64,
    /// Every other process on the machine over the window (percent of one core): noise.
    pub others_cpu_percent: f64,
    /// The same in the busiest quarter second of the window.
    pub others_peak_cpu_percent: f64,
    pub measured_seconds: f64,
    pub errors: Vec<String>,
}

/// Memory per session (KiB): what the server's anonymous resident memory grew by from before
/// the first session to the end of the window ([`procfs::growth_kib`]; about 2.3 MiB of the
/// agent's code is paged in by its first sessions, 8 KiB per session at 300 had VmRSS been
/// counted), over the sessions that connected.
pub fn kib_per_session(point: &PointResult) -> Option<f64> {
    let growth = procfs::growth_kib(
        &point.server?,
        point.server_rss_before_kib?,
        point.server_anon_before_kib,
    );
    (point.connected > 0).then(|| growth as f64 / point.connected as f64)
}

/// Runs one point against a server whose process is `server_pid` (for CPU and memory), with
/// an optional helper process whose CPU is reported too.
pub async fn run_point(spec: &PointSpec, server_pid: Option<u32>, helper_pid: Option<u32>) -> PointResult {
    let ticks = procfs::ticks_per_second();
    let server_before = server_pid.and_then(procfs::sample);
    let (timing_tx, timing_rx) = watch::channel(None);
    let (connected_tx, mut connected_rx) = mpsc::channel(spec.sessions.max(1));
    let shared = Arc::new(Shared {
        url: format!("{}{}{}", spec.url, spec.encoding.query(), spec.protocol.query()),
        encoding: spec.encoding,
        workload: spec.workload,
        sessions: spec.sessions,
        base: Instant::now(),
        timing: timing_rx,
        connect_gate: Semaphore::new(CONNECT_CONCURRENCY),
        connected: connected_tx,
        recorder: Mutex::new(recorder::Recorder::new()),
    });
    let mut tasks = JoinSet::new();
    for index in 0..spec.sessions {
        tasks.spawn(session::run(index, shared.clone()));
    }

    let mut errors = Vec::new();
    let mut reported = 0;
    let connect_deadline = Instant::now() + CONNECT_PHASE_LIMIT;
    while reported < spec.sessions {
        match timeout_at(connect_deadline, connected_rx.recv()).await {
            Ok(Some(result)) => {
                reported += 1;
                if let Err(error) = result {
                    note_error(&mut errors, error);
                }
            }
            Ok(None) => break,
            Err(_) => {
                note_error(&mut errors, "connect phase timed out".into());
                break;
            }
        }
    }

    let window_start = Instant::now() + spec.warmup;
    let stop_sending = window_start + spec.measure;
    let _ = timing_tx.send(Some(Timing {
        window_start,
        stop_sending,
        stop_receiving: stop_sending + DRAIN_GRACE,
    }));
    sleep_until(window_start).await;
    let machine_start = procfs::machine_busy_ticks();
    let server_start = server_pid.and_then(procfs::sample);
    let helper_start = helper_pid.and_then(procfs::sample);
    let generator_start = procfs::sample(std::process::id());
    // Other processes in short slices too: a compiler that runs for a fraction of a second is
    // invisible in the window's average but can make frames late.
    let mut others_peak: f64 = 0.0;
    let mut previous = CpuSnapshot::take(server_pid, helper_pid);
    let mut next = window_start + NOISE_SLICE;
    while next <= stop_sending {
        sleep_until(next).await;
        let current = CpuSnapshot::take(server_pid, helper_pid);
        if let (Some(a), Some(b)) = (&previous, &current) {
            others_peak = others_peak.max(b.others_percent_since(a, ticks));
        }
        previous = current;
        next += NOISE_SLICE;
    }
    sleep_until(stop_sending).await;
    let machine_end = procfs::machine_busy_ticks();
    let server_end = server_pid.and_then(procfs::sample);
    let helper_end = helper_pid.and_then(procfs::sample);
    let generator_end = procfs::sample(std::process::id());

    let mut ends = Vec::with_capacity(spec.sessions);
    let finish_deadline = stop_sending + DRAIN_GRACE + FINISH_LIMIT;
    while !tasks.is_empty() {
        match timeout_at(finish_deadline, tasks.join_next()).await {
            Ok(Some(Ok(end))) => ends.push(end),
            Ok(Some(Err(error))) => note_error(&mut errors, format!("session task failed: {error}")),
            Ok(None) => break,
            Err(_) => {
                note_error(&mut errors, format!("{} sessions did not finish", tasks.len()));
                tasks.abort_all();
                break;
            }
        }
    }
    let connected = ends
        .iter()
        .filter(|e| !matches!(e, SessionEnd::ConnectFailed(_)))
        .count();
    let mut ended_early = 0;
    for end in &ends {
        if let SessionEnd::EndedEarly(error) = end {
            ended_early += 1;
            note_error(&mut errors, error.clone());
        }
    }

    let recorder = match shared.recorder.lock() {
        Ok(recorder) => recorder,
        Err(poisoned) => poisoned.into_inner(),
    };
    let usage = |a: Option<procfs::ProcSample>, b: Option<procfs::ProcSample>| match (a, b) {
        (Some(a), Some(b)) => Some(procfs::usage(&a, &b, ticks)),
        _ => None,
    };
    let echoed_expected = spec.workload == Workload::Loopback;
    let server = usage(server_start, server_end);
    let helper = usage(helper_start, helper_end);
    let generator = usage(generator_start, generator_end).unwrap_or_default();
    let machine_percent = match (machine_start, machine_end) {
        (Some(a), Some(b)) => 100.0 * b.saturating_sub(a) as f64 / ticks as f64 / spec.measure.as_secs_f64(),
        _ => 0.0,
    };
    let ours = server.map_or(0.0, |u| u.cpu_percent) + helper.map_or(0.0, |u| u.cpu_percent) + generator.cpu_percent;
    PointResult {
        sessions: spec.sessions,
        encoding: spec.encoding,
        workload: spec.workload,
        connected,
        connect_failures: spec.sessions - connected,
        ended_early,
        frames_sent: recorder.frames_sent,
        frames_echoed: recorder.frames_echoed,
        frames_late: recorder.frames_late,
        frames_dropped: if echoed_expected {
            recorder.frames_sent.saturating_sub(recorder.frames_echoed)
        } else {
            0
        },
        round_trip: Percentiles::of(&recorder.round_trip),
        send_lag: Percentiles::of(&recorder.send_lag),
        reply_latency: Percentiles::of(&recorder.reply_latency),
        reply_downstream: Percentiles::of(&recorder.reply_downstream),
        replies: recorder.replies,
        server,
        server_rss_before_kib: server_before.map(|s| s.rss_kib),
        server_anon_before_kib: server_before.map(|s| s.anon_kib),
        generator,
        helper_cpu_percent: helper.map_or(0.0, |u| u.cpu_percent),
        others_cpu_percent: (machine_percent - ours).max(0.0),
        others_peak_cpu_percent: others_peak,
        measured_seconds: spec.measure.as_secs_f64(),
        errors,
    }
}

fn note_error(errors: &mut Vec<String>, error: String) {
    if errors.len() < MAX_ERRORS && !errors.contains(&error) {
        errors.push(error);
    }
}

/// CPU counters of the machine and of the benchmark's own processes at one instant.
struct CpuSnapshot {
    at: Instant,
    machine: u64,
    ours: u64,
}

impl CpuSnapshot {
    fn take(server: Option<u32>, helper: Option<u32>) -> Option<Self> {
        let machine = procfs::machine_busy_ticks()?;
        let ours = [server, helper, Some(std::process::id())]
            .into_iter()
            .flatten()
            .filter_map(procfs::sample)
            .map(|s| s.cpu_ticks)
            .sum();
        Some(Self {
            at: Instant::now(),
            machine,
            ours,
        })
    }

    /// Percent of one core used by everything else since `earlier`.
    fn others_percent_since(&self, earlier: &Self, ticks: u64) -> f64 {
        let wall = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        let machine = self.machine.saturating_sub(earlier.machine) as f64;
        let ours = self.ours.saturating_sub(earlier.ours) as f64;
        if wall <= 0.0 {
            return 0.0;
        }
        (100.0 * (machine - ours) / ticks.max(1) as f64 / wall).max(0.0)
    }
}
