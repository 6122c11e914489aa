//! The whole benchmark in one run: relay capacity (agent against the Python peer, both
//! encodings), memory per session, the production path through the Bedrock SDK, the same
//! conversations through Strands and Pipecat, and the operator. Each section starts its own
//! servers and stops them before the next.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::churn::{self, ChurnResult, ChurnSpec};
use crate::floor::FloorCost;
use crate::frame::{Encoding, Protocol};
use crate::load::{self, PointResult, PointSpec, Workload};
use crate::machine::{self, Machine};
use crate::operator::{self, OperatorResult};
use crate::peers::PeersResult;
use crate::ramp::{self, Ramp, Search, Verdict};
use crate::servers::{self, Programs, Server};

/// Step-downs from the searched capacity before the confirmation gives up.
const MAX_CONFIRM_STEPS: usize = 8;

/// How thorough the run is.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub warmup: Duration,
    pub measure: Duration,
    /// Capacity searches; `None` runs one small point per relay instead (the smoke).
    pub relay_search: Option<(Search, Search)>,
    pub fixed_sessions: usize,
    /// Repeats at the capacity found.
    pub confirm_runs: usize,
    pub idle_sessions: usize,
    pub active_sessions: usize,
    pub sdk_search: Option<Search>,
    pub sdk_measure: Duration,
    /// Capacity searches of the Nova Sonic peers section: (voice-agent, the Python stacks);
    /// `None` runs one point of `peer_sessions` per stack instead (the smoke).
    pub peer_search: Option<(Search, Search)>,
    pub peer_sessions: usize,
    pub with_uvloop: bool,
    /// Cost against the floor: sessions at which the agent and the echo are compared, and
    /// runs of each per encoding.
    pub floor_sessions: usize,
    pub floor_runs: usize,
    /// VoiceAgent counts for the operator section (empty: skipped).
    pub operator_counts: Vec<usize>,
    /// Longest wait for a quiet machine before a section.
    pub quiet_wait: Duration,
    /// Sessions of the host probe (`host.rs`).
    pub host_probe_sessions: usize,
    pub churn: ChurnSpec,
    /// Concurrent Twilio calls measured by the phone section.
    pub phone_calls: Vec<usize>,
    /// Conversations handed over at once from a draining agent to another (0: skipped).
    pub resume_conversations: usize,
}

impl Profile {
    pub fn full() -> Self {
        Self {
            name: "full",
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(8),
            relay_search: Some((
                // The agent.
                Search {
                    start: 250,
                    max: 8000,
                    resolution: 0.1,
                    min_step: 25,
                },
                // The Python relay.
                Search {
                    start: 50,
                    max: 4000,
                    resolution: 0.1,
                    min_step: 10,
                },
            )),
            fixed_sessions: 0,
            confirm_runs: 3,
            idle_sessions: 1000,
            active_sessions: 200,
            sdk_search: Some(Search {
                start: 50,
                max: 2000,
                resolution: 0.15,
                min_step: 25,
            }),
            sdk_measure: Duration::from_secs(16),
            peer_search: Some((
                // voice-agent: as in the SDK section.
                Search {
                    start: 50,
                    max: 2000,
                    resolution: 0.15,
                    min_step: 25,
                },
                // Strands and Pipecat: a Python process with one Bedrock stream (and its own TLS
                // connection) per conversation.
                Search {
                    start: 10,
                    max: 1000,
                    resolution: 0.15,
                    min_step: 2,
                },
            )),
            peer_sessions: 0,
            with_uvloop: true,
            // Far below either server's capacity (the agent's is over 1000 here), as many as
            // the first measurement used.
            floor_sessions: 300,
            floor_runs: 3,
            operator_counts: vec![100, 500],
            quiet_wait: Duration::from_secs(300),
            // The load of the cost-against-the-floor section: well under the floor's capacity.
            host_probe_sessions: 300,
            phone_calls: vec![100, 400],
            // A replica's worth of calls at once, as a rollout moves them.
            resume_conversations: 50,
            churn: ChurnSpec {
                sessions: 100_000,
                concurrency: 64,
                warmup: 20_000,
                samples: 50,
                // Allocator noise on a process of ~10 MiB; a leak of even 100 bytes per session
                // is 8 MiB over the 80,000 sessions after the warm-up.
                max_rss_growth_kib: 4096,
                resume_window_ms: 2000,
                max_fd_growth: 0,
                max_task_growth: 0,
            },
        }
    }

    /// Proves the tooling end to end in about a minute, each section well under one; asserts
    /// almost nothing.
    pub fn smoke() -> Self {
        Self {
            name: "smoke",
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(2),
            relay_search: None,
            fixed_sessions: 10,
            confirm_runs: 1,
            idle_sessions: 20,
            active_sessions: 10,
            sdk_search: None,
            sdk_measure: Duration::from_secs(4),
            peer_search: None,
            peer_sessions: 3,
            with_uvloop: false,
            floor_sessions: 10,
            floor_runs: 1,
            operator_counts: Vec::new(),
            quiet_wait: Duration::ZERO,
            host_probe_sessions: 10,
            phone_calls: vec![4],
            resume_conversations: 3,
            churn: ChurnSpec {
                sessions: 2000,
                concurrency: 16,
                warmup: 500,
                samples: 10,
                // Debug builds and a short run: proves the churn runs and nothing is held.
                max_rss_growth_kib: 16 * 1024,
                resume_window_ms: 1000,
                max_fd_growth: 0,
                max_task_growth: 0,
            },
        }
    }
}

/// Which sections to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Relay,
    Memory,
    /// CPU and memory per session of the agent against the bare echo's, at the same load.
    Floor,
    Sdk,
    /// The same conversations through Strands and Pipecat.
    Peers,
    Operator,
    Churn,
    /// Phone calls (Twilio Media Streams, μ-law) per core.
    Phone,
    /// Conversations resumed on another agent after a drain, through Redis.
    Resume,
}

/// One relay under one encoding: its search (or single point) and the confirmation runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayResult {
    pub relay: Relay,
    pub encoding: Encoding,
    pub ramp: Ramp,
    /// Repeats at the confirmed capacity (all passed), or at the last count tried.
    pub confirmation: Vec<PointResult>,
    /// The largest count where every confirmation run passed.
    pub capacity: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relay {
    Agent,
    Python,
    PythonUvloop,
}

impl Relay {
    pub fn label(self) -> &'static str {
        match self {
            Self::Agent => "voice-agent (Rust, 1 worker thread)",
            Self::Python => "Python websockets relay (asyncio)",
            Self::PythonUvloop => "Python websockets relay (uvloop)",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryResult {
    pub relay: Relay,
    pub idle: PointResult,
    pub active: PointResult,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteResult {
    pub profile: String,
    pub machine: Machine,
    pub machine_after: machine::Load,
    pub relays: Vec<RelayResult>,
    pub floor: Vec<PointResult>,
    /// The agent at the Python relay's capacity, per encoding.
    pub equal_load: Vec<PointResult>,
    pub memory: Vec<MemoryResult>,
    #[serde(default)]
    pub floor_cost: Option<FloorCost>,
    pub sdk: Option<Ramp>,
    #[serde(default)]
    pub peers: Option<PeersResult>,
    pub operator: Option<OperatorResult>,
    pub operator_skipped: Option<String>,
    #[serde(default)]
    pub churn: Option<ChurnResult>,
    #[serde(default)]
    pub phone: Option<crate::phone::PhoneResult>,
    #[serde(default)]
    pub resume: Option<crate::resume::ResumeResult>,
    #[serde(default)]
    pub resume_skipped: Option<String>,
    pub notes: Vec<String>,
    /// The host probes: contention from outside the machine, before sections and points.
    #[serde(default)]
    pub host: crate::host::HostProbes,
    pub seconds: f64,
}

pub struct Suite {
    pub profile: Profile,
    pub programs: Programs,
    pub sections: Vec<Section>,
    pub operator: operator::Setup,
    /// The host probes of this run (`host.rs`).
    pub host: crate::host::Host,
}

/// The agent as the relay benchmark runs it: loopback model, limits opened for one client IP.
pub fn loopback_agent_config(max_sessions: usize) -> String {
    loopback_agent_config_with(max_sessions, "")
}

/// The same, with more `session` settings (`, key: value` pairs).
fn loopback_agent_config_with(max_sessions: usize, session: &str) -> String {
    format!(
        "name: bench\nlisten: 127.0.0.1:0\n\
         model: {{provider: Simulated, mode: loopback, thinkTime: 0s}}\n\
         session: {{maxSessions: {max_sessions}{session}}}\n\
         limits: {{handshakesPerMinute: 0}}\n"
    )
}

impl Suite {
    pub async fn run(&self) -> anyhow::Result<SuiteResult> {
        let started = Instant::now();
        let mut notes = Vec::new();
        if let Some(note) = machine::wait_for_quiet(self.profile.quiet_wait).await {
            notes.push(note);
        }
        let machine = machine::describe(&self.programs).await;
        // The first probe of the host, in every profile: the smoke proves the probe runs.
        self.host.probe(&self.programs).await;
        let mut result = SuiteResult {
            profile: self.profile.name.to_owned(),
            machine,
            machine_after: machine::Load::default(),
            relays: Vec::new(),
            floor: Vec::new(),
            equal_load: Vec::new(),
            memory: Vec::new(),
            floor_cost: None,
            sdk: None,
            peers: None,
            operator: None,
            operator_skipped: None,
            churn: None,
            phone: None,
            resume: None,
            resume_skipped: None,
            notes,
            host: crate::host::HostProbes::default(),
            seconds: 0.0,
        };

        if self.sections.contains(&Section::Relay) {
            let mut relays = vec![Relay::Agent, Relay::Python];
            if self.profile.with_uvloop {
                relays.push(Relay::PythonUvloop);
            }
            for encoding in [Encoding::Binary, Encoding::Json] {
                for &relay in &relays {
                    // uvloop changes the event loop, not the JSON work: binary is enough.
                    if relay == Relay::PythonUvloop && encoding == Encoding::Json {
                        continue;
                    }
                    self.quiet(&mut result.notes).await;
                    let measured = self.relay(relay, encoding).await?;
                    eprintln!(
                        "voice-bench: {} {}: capacity {:?}",
                        relay.label(),
                        encoding.as_str(),
                        measured.capacity
                    );
                    result.relays.push(measured);
                }
                let capacity_of = |relay: Relay| {
                    result
                        .relays
                        .iter()
                        .find(|r| r.relay == relay && r.encoding == encoding)
                        .and_then(|r| r.capacity)
                };
                // The floor at the agent's capacity: what the generator and kernel alone cost.
                let at = capacity_of(Relay::Agent).unwrap_or(self.profile.fixed_sessions.max(1));
                let echo = servers::echo(&self.programs)?;
                result
                    .floor
                    .push(self.point(&echo, at, encoding, Workload::Loopback).await?);
                drop(echo);
                // The agent under the load the Python relay just manages: latency side by side.
                if let (Some(at), Some(_)) = (capacity_of(Relay::Python), self.profile.relay_search) {
                    let (point, _) = self.judged_point(Relay::Agent, at, encoding).await;
                    result.equal_load.push(point);
                }
            }
        }

        if self.sections.contains(&Section::Memory) {
            for relay in [Relay::Agent, Relay::Python] {
                self.quiet(&mut result.notes).await;
                result.memory.push(self.memory(relay).await?);
            }
        }

        if self.sections.contains(&Section::Floor) {
            let (sessions, runs) = (self.profile.floor_sessions, self.profile.floor_runs);
            result.floor_cost = Some(self.floor_cost(sessions, runs, &mut result.notes).await?);
        }

        if self.sections.contains(&Section::Sdk) {
            self.quiet(&mut result.notes).await;
            result.sdk = Some(self.sdk().await?);
        }

        if self.sections.contains(&Section::Peers) {
            result.peers = Some(self.peers(&mut result.notes).await);
        }

        if self.sections.contains(&Section::Operator) {
            if self.profile.operator_counts.is_empty() {
                result.operator_skipped = Some("not part of this profile".into());
            } else {
                self.quiet(&mut result.notes).await;
                match operator::run(&self.operator, &self.profile.operator_counts).await {
                    Ok(measured) => result.operator = Some(measured),
                    Err(error) => {
                        eprintln!("voice-bench: operator section: {error:#}");
                        result.operator_skipped = Some(format!("{error:#}"));
                    }
                }
            }
        }

        if self.sections.contains(&Section::Churn) {
            self.quiet(&mut result.notes).await;
            let spec = &self.profile.churn;
            let agent = servers::agent(
                &self.programs,
                "agent-churn",
                &loopback_agent_config_with(
                    spec.concurrency * 2 + 16,
                    &format!(", resume: {{window: {}ms}}", spec.resume_window_ms),
                ),
                1,
                &[],
            )?;
            let measured = churn::run(&agent, spec).await?;
            eprintln!(
                "voice-bench: churn: {} sessions in {:.0} s, {}",
                spec.sessions,
                measured.seconds,
                if measured.passed() {
                    "no leak".to_owned()
                } else {
                    measured.problems.join("; ")
                }
            );
            result.churn = Some(measured);
        }

        if self.sections.contains(&Section::Phone) && !self.profile.phone_calls.is_empty() {
            self.quiet(&mut result.notes).await;
            result.phone = Some(
                crate::phone::run(
                    &self.programs,
                    &self.profile.phone_calls,
                    self.profile.warmup,
                    self.profile.measure,
                )
                .await?,
            );
        }

        if self.sections.contains(&Section::Resume) && self.profile.resume_conversations > 0 {
            self.quiet(&mut result.notes).await;
            match crate::resume::run(&self.programs, self.profile.resume_conversations).await {
                Ok(measured) => {
                    eprintln!(
                        "voice-bench: resume: {} of {} conversations resumed on the second agent; close → first reply audio p50 {} µs, p99 {} µs",
                        measured.resumed,
                        measured.conversations,
                        measured.close_to_first_audio.p50_us,
                        measured.close_to_first_audio.p99_us
                    );
                    result.resume = Some(measured);
                }
                // Without redis-server (say) the rest of a long run is still worth its report.
                Err(error) => {
                    eprintln!("voice-bench: resume section: {error:#}");
                    result.resume_skipped = Some(format!("{error:#}"));
                }
            }
        }

        result.machine_after = machine::Load::now();
        result.host = self.host.probes();
        result.seconds = started.elapsed().as_secs_f64();
        Ok(result)
    }

    /// Waits until other processes are idle and the host is not contended (each at most the
    /// profile's `quiet_wait`); notes for the report what was waited for or given up on.
    pub(crate) async fn quiet(&self, notes: &mut Vec<String>) {
        if let Some(note) = machine::wait_for_quiet(self.profile.quiet_wait).await {
            eprintln!("voice-bench: {note}");
            notes.push(note);
        }
        if self.profile.quiet_wait.is_zero() {
            return;
        }
        if let Some(note) = self
            .host
            .wait_for_quiet(&self.programs, self.profile.quiet_wait, false)
            .await
            .note
        {
            eprintln!("voice-bench: {note}");
            notes.push(note);
        }
    }

    fn start(&self, relay: Relay, max_sessions: usize) -> anyhow::Result<Server> {
        match relay {
            Relay::Agent => servers::agent(
                &self.programs,
                "agent-loopback",
                &loopback_agent_config(max_sessions),
                1,
                &[],
            ),
            Relay::Python => servers::python_relay(&self.programs, false),
            Relay::PythonUvloop => servers::python_relay(&self.programs, true),
        }
    }

    pub(crate) async fn point(
        &self,
        server: &Server,
        sessions: usize,
        encoding: Encoding,
        workload: Workload,
    ) -> anyhow::Result<PointResult> {
        let spec = PointSpec {
            url: server.ws_url()?,
            sessions,
            encoding,
            protocol: Protocol::default(),
            workload,
            warmup: self.profile.warmup,
            measure: self.profile.measure,
        };
        let point = load::run_point(&spec, Some(server.pid()), None).await;
        if point.connect_failures > 0 || point.ended_early > 0 {
            // Say why on the console; the report keeps only the counts.
            let logs = server.recent_logs();
            let tail = &logs[logs.len().saturating_sub(5)..];
            eprintln!(
                "voice-bench: sessions failed; the server's last lines:\n{}",
                tail.join("\n")
            );
        }
        Ok(point)
    }

    /// Whether a failed point deserves another attempt because other processes were busy
    /// while it was measured, or a probe right after it finds the host contended; if so, first
    /// waits for the machine (or the host) to be quiet.
    pub(crate) async fn measure_again(&self, point: &PointResult, verdict: &Verdict, attempt: u32) -> bool {
        if verdict.passed() || attempt > 3 || self.profile.quiet_wait.is_zero() {
            return false;
        }
        let noisy = point.others_cpu_percent >= machine::NOISY_OTHERS_PERCENT
            || point.others_peak_cpu_percent >= machine::NOISY_OTHERS_PEAK_PERCENT;
        if noisy {
            let _ = machine::wait_for_quiet(self.profile.quiet_wait).await;
            // What looks like other processes is often the host: the kernel's deferred network
            // work (ksoftirqd) grows when the host is contended.
            let _ = self
                .host
                .wait_for_quiet(&self.programs, self.profile.quiet_wait, true)
                .await;
            return true;
        }
        // A probe now: if the host is contended, wait for it and measure the point again.
        let waited = self
            .host
            .wait_for_quiet(&self.programs, self.profile.quiet_wait, true)
            .await;
        let again = waited.had_to_wait && waited.quiet;
        if again {
            eprintln!("voice-bench:   the host was contended after that point: measuring it again");
        }
        again
    }

    /// One loopback point against a fresh server. A failure that [`Self::measure_again`] puts
    /// down to the machine or the host is measured again (at most three times).
    async fn judged_point(&self, relay: Relay, sessions: usize, encoding: Encoding) -> (PointResult, Verdict) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let measured = match self.start(relay, sessions) {
                Ok(server) => self.point(&server, sessions, encoding, Workload::Loopback).await,
                Err(error) => Err(error),
            };
            let point = match measured {
                Ok(point) => point,
                Err(error) => {
                    return (
                        failed_point(sessions, encoding, &error),
                        Verdict::Fail(format!("{error:#}")),
                    );
                }
            };
            let verdict = ramp::judge_loopback(&point);
            eprintln!(
                "voice-bench:   {} {} n={sessions}: p99 {} µs, late {}, dropped {}, server cpu {:.0}%, generator cpu {:.0}%, others {:.0}% (peak {:.0}%): {verdict:?}",
                relay.label(),
                encoding.as_str(),
                point.round_trip.p99_us,
                point.frames_late,
                point.frames_dropped,
                point.server.map_or(0.0, |u| u.cpu_percent),
                point.generator.cpu_percent,
                point.others_cpu_percent,
                point.others_peak_cpu_percent,
            );
            if !self.measure_again(&point, &verdict, attempt).await {
                return (point, verdict);
            }
        }
    }

    async fn relay(&self, relay: Relay, encoding: Encoding) -> anyhow::Result<RelayResult> {
        let Some((agent_search, python_search)) = self.profile.relay_search else {
            let sessions = self.profile.fixed_sessions;
            let (point, verdict) = self.judged_point(relay, sessions, encoding).await;
            let capacity = verdict.passed().then_some(sessions);
            return Ok(RelayResult {
                relay,
                encoding,
                ramp: Ramp {
                    points: vec![(point.clone(), verdict)],
                    capacity,
                    first_failure: None,
                    open_ended: true,
                },
                confirmation: vec![point],
                capacity,
            });
        };
        let bounds = if relay == Relay::Agent {
            agent_search
        } else {
            python_search
        };
        let ramp = ramp::search(bounds, |n| self.judged_point(relay, n, encoding)).await;

        // Confirm: every repeat must pass; otherwise step down by the search's resolution
        // (a relay whose tail is erratic near its limit can need several steps).
        let mut candidate = ramp.capacity;
        let mut confirmation = Vec::new();
        let mut capacity = None;
        for _ in 0..MAX_CONFIRM_STEPS {
            let Some(n) = candidate else { break };
            confirmation.clear();
            let mut all_passed = true;
            for _ in 0..self.profile.confirm_runs {
                let (point, verdict) = self.judged_point(relay, n, encoding).await;
                confirmation.push(point);
                if !verdict.passed() {
                    all_passed = false;
                    break;
                }
            }
            if all_passed {
                capacity = Some(n);
                break;
            }
            let step = bounds.min_step.max((n as f64 * bounds.resolution) as usize);
            candidate = n.checked_sub(step).filter(|&n| n > 0);
        }
        Ok(RelayResult {
            relay,
            encoding,
            ramp,
            confirmation,
            capacity,
        })
    }

    async fn memory(&self, relay: Relay) -> anyhow::Result<MemoryResult> {
        let idle_n = self.profile.idle_sessions;
        let server = self.start(relay, idle_n)?;
        let idle = load::run_point(
            &PointSpec {
                url: server.ws_url()?,
                sessions: idle_n,
                encoding: Encoding::Binary,
                protocol: Protocol::default(),
                workload: Workload::Idle,
                // Long enough for every connection to settle; the smoke's short warm-up is not.
                warmup: self.profile.warmup.max(Duration::from_secs(1)),
                measure: Duration::from_secs(1),
            },
            Some(server.pid()),
            None,
        )
        .await;
        drop(server);
        let active_n = self.profile.active_sessions;
        let server = self.start(relay, active_n)?;
        let active = self
            .point(&server, active_n, Encoding::Binary, Workload::Loopback)
            .await?;
        Ok(MemoryResult { relay, idle, active })
    }

    async fn sdk(&self) -> anyhow::Result<Ramp> {
        Ok(match self.profile.sdk_search {
            Some(bounds) => ramp::search(bounds, |n| self.sdk_judged(n)).await,
            None => {
                let n = self.profile.fixed_sessions.min(5);
                let (point, verdict) = self.sdk_judged(n).await;
                Ramp {
                    capacity: verdict.passed().then_some(n),
                    points: vec![(point, verdict)],
                    first_failure: None,
                    open_ended: true,
                }
            }
        })
    }

    async fn sdk_judged(&self, sessions: usize) -> (PointResult, Verdict) {
        self.judged_conversation("NovaSonic", sessions, || self.sdk_point(sessions))
            .await
    }

    /// One conversation point, judged; a failure while other processes were busy is measured
    /// again once the machine is quiet.
    pub(crate) async fn judged_conversation<F, Fut>(
        &self,
        label: &str,
        sessions: usize,
        measure: F,
    ) -> (PointResult, Verdict)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<PointResult>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let point = match measure().await {
                Ok(point) => point,
                Err(error) => {
                    return (
                        failed_point(sessions, Encoding::Binary, &error),
                        Verdict::Fail(format!("{error:#}")),
                    );
                }
            };
            let verdict = ramp::judge_conversation(&point);
            eprintln!(
                "voice-bench:   {label} n={sessions}: responses {}, late chunks {}, errors {}, reply latency p50 {} µs p99 {} µs ({}), server cpu {:.0}%, fake cpu {:.0}%, generator cpu {:.0}%, others {:.0}% (peak {:.0}%): {verdict:?}",
                point.replies.responses,
                point.replies.late_chunks,
                point.replies.errors,
                point.reply_latency.p50_us,
                point.reply_latency.p99_us,
                point.reply_latency.count,
                point.server.map_or(0.0, |u| u.cpu_percent),
                point.helper_cpu_percent,
                point.generator.cpu_percent,
                point.others_cpu_percent,
                point.others_peak_cpu_percent,
            );
            if !point.errors.is_empty() && !verdict.passed() {
                eprintln!("voice-bench:   {label} n={sessions}: errors: {:?}", point.errors);
            }
            if !self.measure_again(&point, &verdict, attempt).await {
                return (point, verdict);
            }
        }
    }

    /// One conversation point: the fake shares the generator's CPUs, the agent has its own.
    async fn sdk_point(&self, sessions: usize) -> anyhow::Result<PointResult> {
        let (fake, endpoint, ca_file) = servers::fake_bedrock(&self.programs, &[])?;
        let config = nova_agent_config(&endpoint, &ca_file, sessions);
        let agent = servers::agent(&self.programs, "agent-nova", &config, 1, &servers::NOVA_CREDENTIALS)?;
        let spec = PointSpec {
            url: agent.ws_url()?,
            sessions,
            encoding: Encoding::Binary,
            protocol: Protocol::default(),
            workload: Workload::Conversation,
            warmup: self.profile.warmup,
            measure: self.profile.sdk_measure,
        };
        Ok(load::run_point(&spec, Some(agent.pid()), Some(fake.pid())).await)
    }
}

/// The agent on the production path: the NovaSonic provider against the Bedrock fake at
/// `endpoint`, limits opened for one client IP.
pub fn nova_agent_config(endpoint: &str, ca_file: &std::path::Path, max_sessions: usize) -> String {
    format!(
        "name: bench\nlisten: 127.0.0.1:0\n\
         model: {{provider: NovaSonic, region: us-east-1, endpointUrl: \"{endpoint}\", caBundleFile: \"{}\"}}\n\
         session: {{maxSessions: {max_sessions}}}\n\
         limits: {{handshakesPerMinute: 0}}\n\
         prompt: {{system: \"You are the benchmark agent.\"}}\n",
        ca_file.display()
    )
}

/// A point that could not run at all (the server did not start).
pub(crate) fn failed_point(sessions: usize, encoding: Encoding, error: &anyhow::Error) -> PointResult {
    PointResult {
        sessions,
        encoding,
        workload: Workload::Loopback,
        connected: 0,
        connect_failures: sessions,
        ended_early: 0,
        frames_sent: 0,
        frames_echoed: 0,
        frames_late: 0,
        frames_dropped: 0,
        round_trip: load::Percentiles::default(),
        send_lag: load::Percentiles::default(),
        reply_latency: load::Percentiles::default(),
        reply_downstream: load::Percentiles::default(),
        replies: load::ReplyCounts::default(),
        server: None,
        server_rss_before_kib: None,
        server_anon_before_kib: None,
        generator: crate::procfs::Usage::default(),
        others_cpu_percent: 0.0,
        others_peak_cpu_percent: 0.0,
        helper_cpu_percent: 0.0,
        measured_seconds: 0.0,
        errors: vec![format!("{error:#}")],
    }
}
