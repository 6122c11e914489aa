//! Cost against the floor: the agent's CPU per session-second and memory per active session,
//! divided by the bare tokio-tungstenite echo's (`voice-bench echo`) at the same load. The load
//! is fixed and well below either server's capacity, so neither the generator nor a saturated
//! core shapes the numbers; the two servers run alternately, so drifting background load hits
//! both alike, and the ratios are of the medians over the runs.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::frame::Encoding;
use crate::load::{PointResult, Workload, kib_per_session};
use crate::servers;
use crate::suite::{Suite, loopback_agent_config};

/// The measurements at one encoding: every run of each server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorRow {
    pub encoding: Encoding,
    pub agent: Vec<PointResult>,
    pub echo: Vec<PointResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorCost {
    pub sessions: usize,
    pub rows: Vec<FloorRow>,
}

/// Server CPU time per second of session (µs): the server's share of one core over the window,
/// divided by the sessions that streamed through it.
pub fn cpu_us_per_session_second(point: &PointResult) -> Option<f64> {
    let cpu = point.server?.cpu_percent;
    (point.connected > 0).then(|| cpu / 100.0 * 1e6 / point.connected as f64)
}

/// Median, lowest and highest of the values `measure` gives for `points`.
pub fn spread(points: &[PointResult], measure: fn(&PointResult) -> Option<f64>) -> Option<(f64, f64, f64)> {
    let mut values: Vec<f64> = points.iter().filter_map(measure).collect();
    values.sort_by(f64::total_cmp);
    let median = *values.get(values.len() / 2)?;
    Some((median, values[0], values[values.len() - 1]))
}

impl FloorRow {
    /// agent ÷ floor of the medians: (CPU per session-second, memory per active session).
    pub fn ratios(&self) -> (Option<f64>, Option<f64>) {
        let ratio = |measure: fn(&PointResult) -> Option<f64>| {
            let (agent, _, _) = spread(&self.agent, measure)?;
            let (echo, _, _) = spread(&self.echo, measure)?;
            (echo > 0.0).then(|| agent / echo)
        };
        (ratio(cpu_us_per_session_second), ratio(kib_per_session))
    }
}

impl Suite {
    /// Runs the agent and the echo alternately, `runs` times each per encoding, at `sessions`.
    pub(crate) async fn floor_cost(
        &self,
        sessions: usize,
        runs: usize,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<FloorCost> {
        let mut rows = Vec::new();
        for encoding in [Encoding::Binary, Encoding::Json] {
            let mut row = FloorRow {
                encoding,
                agent: Vec::new(),
                echo: Vec::new(),
            };
            for _ in 0..runs {
                self.quiet(notes).await;
                let agent = servers::agent(&self.programs, "agent-floor", &loopback_agent_config(sessions), 1, &[])?;
                row.agent
                    .push(self.point(&agent, sessions, encoding, Workload::Loopback).await?);
                drop(agent);
                self.quiet(notes).await;
                let echo = servers::echo(&self.programs)?;
                row.echo
                    .push(self.point(&echo, sessions, encoding, Workload::Loopback).await?);
                drop(echo);
            }
            let (cpu, rss) = row.ratios();
            eprintln!(
                "voice-bench: against the floor, {} at {sessions}: CPU {}, memory {}",
                encoding.as_str(),
                times(cpu),
                times(rss)
            );
            rows.push(row);
        }
        Ok(FloorCost { sessions, rows })
    }
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or("–".into(), |r| format!("{r:.2}×"))
}

/// The report's section.
pub fn render(out: &mut String, cost: &FloorCost) {
    let _ = writeln!(out, "## Cost against the floor\n");
    let runs = cost.rows.first().map_or(0, |r| r.agent.len());
    let _ = writeln!(
        out,
        "What the agent costs on top of a bare tokio-tungstenite echo (`voice-bench echo`: the same \
         read buffer, no session, no model, no JSON parsing) carrying the same {} sessions at real-time \
         pace, well below either one's capacity: CPU time per second of session and resident memory \
         per active session ((RssAnon at the end of the window − RssAnon before the first session) ÷ \
         sessions: heap and stacks, not the program code the first sessions page in once). The two \
         servers ran alternately on the same core, each run on a fresh process ({runs} runs of each per encoding); medians, with the lowest and highest run in brackets.\n",
        cost.sessions
    );
    let _ = writeln!(
        out,
        "| audio | agent CPU per session-second | floor's | agent ÷ floor | agent memory per active session | floor's | agent ÷ floor |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let show = |points: &[PointResult], measure: fn(&PointResult) -> Option<f64>, unit: &str| {
        spread(points, measure).map_or("–".into(), |(median, low, high)| {
            format!("{median:.1} {unit} ({low:.1}–{high:.1})")
        })
    };
    for row in &cost.rows {
        let (cpu, rss) = row.ratios();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.encoding.as_str(),
            show(&row.agent, cpu_us_per_session_second, "µs"),
            show(&row.echo, cpu_us_per_session_second, "µs"),
            times(cpu),
            show(&row.agent, kib_per_session, "KiB"),
            show(&row.echo, kib_per_session, "KiB"),
            times(rss)
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::Usage;

    fn point(cpu_percent: f64, before_kib: u64, after_kib: u64, connected: usize) -> PointResult {
        let mut p = crate::suite::failed_point(connected, Encoding::Binary, &anyhow::anyhow!("unused"));
        p.connected = connected;
        p.connect_failures = 0;
        p.errors.clear();
        p.server = Some(Usage {
            cpu_percent,
            rss_kib: after_kib + 2048,
            peak_rss_kib: after_kib + 2048,
            anon_kib: after_kib,
        });
        p.server_rss_before_kib = Some(before_kib);
        p.server_anon_before_kib = Some(before_kib);
        p
    }

    #[test]
    fn per_session_costs_divide_by_the_connected_sessions() {
        let p = point(30.0, 10_000, 13_000, 300);
        assert_eq!(cpu_us_per_session_second(&p), Some(1000.0));
        assert_eq!(kib_per_session(&p), Some(10.0), "RssAnon's growth, not VmRSS's");
        // Results from before RssAnon was recorded: VmRSS.
        let mut old = p.clone();
        old.server_anon_before_kib = None;
        assert_eq!(kib_per_session(&old), Some((13_000.0 + 2048.0 - 10_000.0) / 300.0));
        assert_eq!(cpu_us_per_session_second(&point(30.0, 0, 0, 0)), None);
    }

    #[test]
    fn ratios_are_of_the_medians() {
        let row = FloorRow {
            encoding: Encoding::Binary,
            // CPU medians 30 % and 20 %, memory 20 and 10 KiB per session (100 sessions).
            agent: vec![
                point(90.0, 0, 2000, 100),
                point(30.0, 0, 1000, 100),
                point(10.0, 0, 3000, 100),
            ],
            echo: vec![
                point(20.0, 0, 1000, 100),
                point(25.0, 0, 900, 100),
                point(15.0, 0, 5000, 100),
            ],
        };
        let (cpu, rss) = row.ratios();
        assert!((cpu.expect("cpu ratio") - 1.5).abs() < 1e-9);
        assert!((rss.expect("rss ratio") - 2.0).abs() < 1e-9);
    }
}
