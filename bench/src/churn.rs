//! Churn: sessions opened and closed continuously, in every way a session ends in production
//! (clean closes, connections reset without a close, handshakes refused), while the agent's
//! resident memory, open file descriptors and runtime tasks are sampled. After a warm-up, memory
//! must stay flat within a small bound, and descriptors and tasks must come back to where they
//! started once the churn stops: anything else is a leak.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::procfs;
use crate::servers::Server;

/// Time allowed for one session: handshake, the agent's first event, one frame, the close.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to let go of closed sessions before the after-sample.
const SETTLE: Duration = Duration::from_secs(5);
/// One 32 ms frame of 16 kHz PCM16: each clean session sends one.
const FRAME: [u8; 1024] = [0; 1024];

/// How much churn, and the bounds it must stay within.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnSpec {
    pub sessions: usize,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Sessions before memory counts (allocators and caches grow to their working size).
    pub warmup: usize,
    /// Samples taken over the run.
    pub samples: usize,
    /// Growth of resident memory allowed after the warm-up (KiB).
    pub max_rss_growth_kib: i64,
    /// The agent's resume window (ms). Every ended session is kept that long for resuming, as
    /// by default, but a window of seconds instead of two minutes lets what it holds (sessions
    /// per second × window) reach its steady size within the warm-up, so that what memory does
    /// after the warm-up is what a leak would add, expired conversations included. 0: the
    /// agent's default (runs recorded before this setting).
    #[serde(default)]
    pub resume_window_ms: u64,
    /// Descriptors and tasks allowed above the starting count once the churn is over.
    pub max_fd_growth: i64,
    pub max_task_growth: i64,
}

/// The agent at one moment of the run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ChurnSample {
    /// Sessions finished so far.
    pub sessions: usize,
    pub seconds: f64,
    pub rss_kib: u64,
    pub fds: usize,
    /// `voice_agent_runtime_tasks`, when the agent answered the scrape.
    pub tasks: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnResult {
    pub spec: ChurnSpec,
    pub clean: usize,
    pub resets: usize,
    pub refused: usize,
    /// Sessions that did not go as planned (with the first few reasons).
    pub failures: usize,
    pub failure_examples: Vec<String>,
    pub seconds: f64,
    pub before: ChurnSample,
    pub samples: Vec<ChurnSample>,
    pub after: ChurnSample,
    pub rss_growth_after_warmup_kib: i64,
    /// Why the run failed its bounds, if it did.
    pub problems: Vec<String>,
}

impl ChurnResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How one session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Handshake, first event, a frame of audio, a close handshake.
    Clean,
    /// Handshake and first event, then the TCP connection is reset: no close frame.
    Reset,
    /// A handshake the agent refuses (an unknown protocol): HTTP 400, no session.
    Refused,
}

/// Seven clean closes, two resets and one refusal in every ten sessions.
fn kind(index: usize) -> Kind {
    match index % 10 {
        7 | 8 => Kind::Reset,
        9 => Kind::Refused,
        _ => Kind::Clean,
    }
}

/// Runs the churn against `agent` (its `/ws` and `/metrics`).
pub async fn run(agent: &Server, spec: &ChurnSpec) -> anyhow::Result<ChurnResult> {
    let addr = agent.addr()?;
    let url = format!("ws://{addr}/ws?audio_output=binary");

    let pid = agent.pid();
    let started = Instant::now();
    let before = sample(pid, addr, 0, started).await;

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)]);
    let failures = Arc::new(std::sync::Mutex::new((0usize, Vec::<String>::new())));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.concurrency.max(1) {
        let (next, done, counts, failures, url) = (
            next.clone(),
            done.clone(),
            counts.clone(),
            failures.clone(),
            url.clone(),
        );
        let total = spec.sessions;
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return;
                }
                let kind = kind(index);
                match timeout(SESSION_TIMEOUT, session(&url, kind)).await {
                    Ok(Ok(())) => {
                        let slot = match kind {
                            Kind::Clean => 0,
                            Kind::Reset => 1,
                            Kind::Refused => 2,
                        };
                        counts[slot].fetch_add(1, Ordering::Relaxed);
                    }
                    outcome => {
                        let reason = match outcome {
                            Ok(Err(error)) => format!("{kind:?}: {error}"),
                            _ => format!("{kind:?}: timed out"),
                        };
                        let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                        failures.0 += 1;
                        if failures.1.len() < 5 {
                            failures.1.push(reason);
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let mut samples = Vec::new();
    let every = (spec.sessions / spec.samples.max(1)).max(1);
    let mut next_sample = every;
    while !workers.is_empty() {
        tokio::select! {
            _ = workers.join_next() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let finished = done.load(Ordering::Relaxed);
        if finished >= next_sample {
            samples.push(sample(pid, addr, finished, started).await);
            next_sample = finished + every;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // The sessions are gone; give the agent a moment to let go of them.
    tokio::time::sleep(SETTLE).await;
    let after = sample(pid, addr, done.load(Ordering::Relaxed), started).await;

    let warm = samples
        .iter()
        .find(|s| s.sessions >= spec.warmup)
        .copied()
        .unwrap_or(before);
    let peak_after_warmup = samples
        .iter()
        .filter(|s| s.sessions >= spec.warmup)
        .map(|s| s.rss_kib)
        .chain([after.rss_kib])
        .max()
        .unwrap_or(after.rss_kib);
    let rss_growth_after_warmup_kib = peak_after_warmup as i64 - warm.rss_kib as i64;
    let (failure_count, failure_examples) = {
        let failures = failures.lock().unwrap_or_else(|p| p.into_inner());
        (failures.0, failures.1.clone())
    };
    let mut problems = Vec::new();
    if rss_growth_after_warmup_kib > spec.max_rss_growth_kib {
        problems.push(format!(
            "resident memory grew by {rss_growth_after_warmup_kib} KiB after the warm-up (bound {} KiB)",
            spec.max_rss_growth_kib
        ));
    }
    let fd_growth = after.fds as i64 - before.fds as i64;
    if fd_growth > spec.max_fd_growth {
        problems.push(format!(
            "{fd_growth} more open descriptors after the churn than before (bound {})",
            spec.max_fd_growth
        ));
    }
    if let (Some(start), Some(end)) = (before.tasks, after.tasks) {
        let task_growth = end as i64 - start as i64;
        if task_growth > spec.max_task_growth {
            problems.push(format!(
                "{task_growth} more runtime tasks after the churn than before (bound {})",
                spec.max_task_growth
            ));
        }
    } else {
        problems.push("the agent's task count could not be read".into());
    }
    // A few failures under load are noise; many mean the churn did not happen as described.
    if failure_count * 100 > spec.sessions {
        problems.push(format!(
            "{failure_count} of {} sessions failed: {failure_examples:?}",
            spec.sessions
        ));
    }
    Ok(ChurnResult {
        spec: spec.clone(),
        clean: counts[0].load(Ordering::Relaxed),
        resets: counts[1].load(Ordering::Relaxed),
        refused: counts[2].load(Ordering::Relaxed),
        failures: failure_count,
        failure_examples,
        seconds,
        before,
        samples,
        after,
        rss_growth_after_warmup_kib,
        problems,
    })
}

/// One session of `kind`, start to end.
async fn session(url: &str, kind: Kind) -> anyhow::Result<()> {
    if kind == Kind::Refused {
        return match tokio_tungstenite::connect_async(format!("{url}&protocol=churn")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 400 => Ok(()),
            Err(error) => Err(anyhow::anyhow!("expected HTTP 400, got {error}")),
            Ok(_) => Err(anyhow::anyhow!("an unknown protocol was accepted")),
        };
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    // The session is live once the agent announces it.
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.as_str().contains("bidi_connection_start") => {}
        other => anyhow::bail!("expected bidi_connection_start, got {other:?}"),
    }
    match kind {
        Kind::Clean => {
            ws.send(Message::Binary(FRAME.to_vec().into())).await?;
            ws.close(None).await?;
            // Read until the agent's close frame (or the end of the stream).
            while let Some(message) = ws.next().await {
                if matches!(message, Ok(Message::Close(_)) | Err(_)) {
                    break;
                }
            }
        }
        Kind::Reset => {
            // Dropping with linger 0 sends a TCP reset: the agent sees the connection vanish.
            if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                tcp.set_zero_linger()?;
            }
            drop(ws);
        }
        Kind::Refused => {}
    }
    Ok(())
}

async fn sample(pid: u32, agent: SocketAddr, sessions: usize, started: Instant) -> ChurnSample {
    let proc = procfs::sample(pid);
    ChurnSample {
        sessions,
        seconds: started.elapsed().as_secs_f64(),
        rss_kib: proc.map_or(0, |p| p.rss_kib),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
        tasks: runtime_tasks(agent).await,
    }
}

/// `voice_agent_runtime_tasks` from the agent's metrics.
async fn runtime_tasks(agent: SocketAddr) -> Option<u64> {
    let (_, text) = voice_e2e::http::get(agent, "/metrics").await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("voice_agent_runtime_tasks "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}
