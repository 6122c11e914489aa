//! Contention from outside the machine. On a virtual machine, the host's other tenants slow the
//! loopback network and the wake-ups between the two cores (paravirtual spinlocks, the kicks
//! that wake a halted vCPU) without showing here as a busy process, and hardly as steal time:
//! the same server at the same load then costs up to three times the CPU, and every relay's
//! capacity falls with it. `machine::wait_for_quiet` cannot see that, so the suite also probes
//! the host: the floor (the bare echo) at a fixed load for a few seconds, in CPU per
//! session-second. A probe within [`CONTENDED_ABOVE`] of the run's bar (its second-cheapest
//! probe, so that one unusually cheap reading does not set it) counts as quiet; a section
//! waits for a quiet probe, and a failed point measured while the host was contended is
//! measured again. Every probe is kept for the report.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::{Instant, sleep};

use crate::floor::cpu_us_per_session_second;
use crate::frame::{Encoding, Protocol};
use crate::load::{self, PointSpec, Workload};
use crate::servers::{self, Programs};

/// A probe costing more than this times the run's bar finds the host contended.
/// Quiet probes of the same load differ by about a tenth; contention costs 1.5 to 3 times.
pub const CONTENDED_ABOVE: f64 = 1.3;
/// A quiet probe stands for this long: sections that start within it do not probe again.
const QUIET_PROBE_HOLDS: Duration = Duration::from_secs(60);
/// Pause between probes while the host is contended.
const RETRY: Duration = Duration::from_secs(20);
/// The whole run waits at most this long for the host, summed over every wait: a host that
/// stays contended for longer gets its numbers measured anyway, and the report says so.
const WAIT_BUDGET: Duration = Duration::from_secs(20 * 60);
/// How long each probe streams after its warm-up.
const PROBE_WARMUP: Duration = Duration::from_secs(1);
const PROBE_MEASURE: Duration = Duration::from_secs(3);

/// One probe: the floor's CPU per session-second, and whether it counted as quiet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// Seconds since the run started.
    pub at_seconds: f64,
    pub cpu_us_per_session_second: f64,
    pub quiet: bool,
}

/// Every probe of a run, for the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostProbes {
    /// The probe's load: binary sessions on the floor.
    pub sessions: usize,
    pub probes: Vec<Probe>,
    /// Time spent waiting for the host, summed.
    pub waited_seconds: f64,
}

impl HostProbes {
    /// What a probe is judged against: the second-cheapest probe of the run (the only one
    /// while there is one). A probe is 3 s of CPU time counted in 10 ms ticks, and a single
    /// unusually cheap reading would otherwise make every later one look contended.
    pub fn bar(&self) -> Option<f64> {
        second_cheapest(self.probes.iter().map(|p| p.cpu_us_per_session_second))
    }

    /// Keeps a probe's cost, judged against the run's bar, this probe included.
    fn record(&mut self, at_seconds: f64, cost: f64) -> Probe {
        let costs = self.probes.iter().map(|p| p.cpu_us_per_session_second);
        let bar = second_cheapest(costs.chain([cost])).unwrap_or(cost);
        let probe = Probe {
            at_seconds,
            cpu_us_per_session_second: cost,
            quiet: cost <= bar * CONTENDED_ABOVE,
        };
        self.probes.push(probe.clone());
        probe
    }
}

fn second_cheapest(costs: impl Iterator<Item = f64>) -> Option<f64> {
    let mut costs: Vec<f64> = costs.collect();
    costs.sort_by(f64::total_cmp);
    costs.get(1).or(costs.first()).copied()
}

/// How a wait for the host ended.
pub struct Waited {
    /// The last probe found the host quiet (or could not run).
    pub quiet: bool,
    /// The first probe found it contended.
    pub had_to_wait: bool,
    /// For the report, when the wait was long or given up.
    pub note: Option<String>,
}

/// What the suite keeps between probes.
pub struct Host {
    started: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    probes: HostProbes,
    last_quiet: Option<Instant>,
}

impl Host {
    pub fn new(sessions: usize) -> Self {
        Self {
            started: Instant::now(),
            state: Mutex::new(State {
                probes: HostProbes {
                    sessions,
                    ..HostProbes::default()
                },
                last_quiet: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the record half-written: every update is one push.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn probes(&self) -> HostProbes {
        self.state().probes.clone()
    }

    /// Probes once and records it. `None` when the probe itself could not run (its error is
    /// printed): the suite then goes on as if the host were quiet.
    pub async fn probe(&self, programs: &Programs) -> Option<Probe> {
        let cost = match self.measure(programs).await {
            Ok(cost) => cost,
            Err(error) => {
                eprintln!("voice-bench: host probe failed: {error:#}");
                return None;
            }
        };
        let mut state = self.state();
        let probe = state.probes.record(self.started.elapsed().as_secs_f64(), cost);
        if probe.quiet {
            state.last_quiet = Some(Instant::now());
        }
        eprintln!(
            "voice-bench: host probe: the floor at {cost:.0} µs per session-second ({})",
            if probe.quiet { "quiet" } else { "contended" }
        );
        Some(probe)
    }

    async fn measure(&self, programs: &Programs) -> anyhow::Result<f64> {
        let sessions = self.state().probes.sessions;
        let echo = servers::echo(programs)?;
        let spec = PointSpec {
            url: echo.ws_url()?,
            sessions,
            encoding: Encoding::Binary,
            protocol: Protocol::default(),
            workload: Workload::Loopback,
            warmup: PROBE_WARMUP,
            measure: PROBE_MEASURE,
        };
        let point = load::run_point(&spec, Some(echo.pid()), None).await;
        anyhow::ensure!(
            point.connected == sessions,
            "{} of {sessions} probe sessions connected",
            point.connected
        );
        cpu_us_per_session_second(&point).ok_or_else(|| anyhow::anyhow!("the echo's CPU time could not be read"))
    }

    /// Waits until a probe finds the host quiet, unless one did within [`QUIET_PROBE_HOLDS`]
    /// (`fresh` probes regardless). Gives up after `limit`, or when the run's wait budget is
    /// spent.
    pub async fn wait_for_quiet(&self, programs: &Programs, limit: Duration, fresh: bool) -> Waited {
        let held = !fresh
            && self
                .state()
                .last_quiet
                .is_some_and(|at| at.elapsed() < QUIET_PROBE_HOLDS);
        let mut waited = Waited {
            quiet: true,
            had_to_wait: false,
            note: None,
        };
        if held {
            return waited;
        }
        let spent_before = self.state().probes.waited_seconds;
        let started = Instant::now();
        loop {
            let Some(probe) = self.probe(programs).await else {
                break;
            };
            let seconds = started.elapsed().as_secs_f64();
            let cost = probe.cpu_us_per_session_second;
            let bar = self.state().probes.bar().unwrap_or(cost);
            if probe.quiet {
                waited.note = waited.had_to_wait.then(|| {
                    format!(
                        "waited {seconds:.0} s for the host (the floor's CPU per session-second back to {cost:.0} µs; the run's bar {bar:.0} µs)"
                    )
                });
                break;
            }
            waited.had_to_wait = true;
            if seconds >= limit.as_secs_f64() || spent_before + seconds >= WAIT_BUDGET.as_secs_f64() {
                waited.quiet = false;
                waited.note = Some(format!(
                    "the host was contended (the floor's CPU per session-second {cost:.0} µs against the run's bar {bar:.0} µs) after {seconds:.0} s of waiting: measured anyway"
                ));
                break;
            }
            eprintln!(
                "voice-bench: host contended (the run's bar {bar:.0} µs), waiting {} s",
                RETRY.as_secs()
            );
            sleep(RETRY).await;
        }
        // A first probe that finds the host quiet is no wait.
        if waited.had_to_wait {
            self.state().probes.waited_seconds += started.elapsed().as_secs_f64();
        }
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_judged_against_the_second_cheapest_of_the_run() {
        let mut host = HostProbes::default();
        // The first probe has nothing to be compared with but itself.
        assert!(host.record(0.0, 900.0).quiet);
        // One cheap reading does not set the bar on its own...
        assert!(host.record(60.0, 300.0).quiet);
        assert_eq!(host.bar(), Some(900.0));
        assert!(host.record(120.0, 900.0).quiet);
        // ...a second one does: the first figure is now contention.
        assert!(host.record(180.0, 320.0).quiet);
        assert_eq!(host.bar(), Some(320.0));
        assert!(!host.record(240.0, 900.0).quiet);
        assert!(host.record(300.0, 320.0 * CONTENDED_ABOVE).quiet);
        assert!(!host.record(360.0, 320.0 * CONTENDED_ABOVE + 1.0).quiet);
        assert_eq!(host.bar(), Some(320.0));
    }
}
