//! A/B comparison of agent builds at a fixed load, for tuning: the same loopback point against
//! each binary in turn (interleaved, so drifting noise hits both alike), optionally with the
//! floor (the bare echo) as one more server in the rotation, then idle memory. Prints Markdown
//! tables; bench/tuning.md records the results.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::floor::{cpu_us_per_session_second, spread};
use crate::frame::{Encoding, Protocol};
use crate::load::{self, PointResult, PointSpec, Workload, kib_per_session};
use crate::machine;
use crate::servers::{self, Programs, Server};

pub struct Comparison {
    pub programs: Programs,
    pub binaries: Vec<PathBuf>,
    pub sessions: usize,
    pub idle_sessions: usize,
    pub runs: usize,
    /// Also run the floor (`voice-bench echo`) in the rotation and give each build's CPU per
    /// session-second and memory per active session as a multiple of the floor's.
    pub floor: bool,
    /// Longest wait for a quiet machine before each point.
    pub quiet_wait: Duration,
}

/// What one row measures: an agent build, or the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Agent(usize),
    Floor,
}

struct Row {
    target: Target,
    encoding: Encoding,
    points: Vec<PointResult>,
}

impl Comparison {
    fn label(&self, target: Target) -> String {
        match target {
            Target::Agent(i) => self.binaries[i].display().to_string(),
            Target::Floor => "floor (voice-bench echo)".into(),
        }
    }
}

pub async fn run(comparison: &Comparison) -> anyhow::Result<String> {
    let mut targets: Vec<Target> = (0..comparison.binaries.len()).map(Target::Agent).collect();
    if comparison.floor {
        targets.push(Target::Floor);
    }
    let mut rows: Vec<Row> = Vec::new();
    for encoding in [Encoding::Binary, Encoding::Json] {
        for &target in &targets {
            rows.push(Row {
                target,
                encoding,
                points: Vec::new(),
            });
        }
    }
    for _ in 0..comparison.runs {
        for row in &mut rows {
            if let Some(note) = machine::wait_for_quiet(comparison.quiet_wait).await {
                eprintln!("voice-bench: {note}");
            }
            let point = point(
                comparison,
                row.target,
                comparison.sessions,
                row.encoding,
                Workload::Loopback,
            )
            .await?;
            eprintln!(
                "voice-bench:   {} {}: cpu {:.1}%, {:.1} KiB per session, p99 {} µs, others {:.0}%",
                comparison.label(row.target),
                row.encoding.as_str(),
                point.server.map_or(0.0, |u| u.cpu_percent),
                kib_per_session(&point).unwrap_or(0.0),
                point.round_trip.p99_us,
                point.others_cpu_percent
            );
            row.points.push(point);
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| build | audio | sessions | server CPU (median of {}) | p50 | p99 (median) | RSS |",
        comparison.runs
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for row in &rows {
        let mut cpu: Vec<f64> = row
            .points
            .iter()
            .filter_map(|p| p.server.map(|u| u.cpu_percent))
            .collect();
        let mut p50: Vec<u64> = row.points.iter().map(|p| p.round_trip.p50_us).collect();
        let mut p99: Vec<u64> = row.points.iter().map(|p| p.round_trip.p99_us).collect();
        let mut rss: Vec<u64> = row.points.iter().filter_map(|p| p.server.map(|u| u.rss_kib)).collect();
        cpu.sort_by(f64::total_cmp);
        p50.sort_unstable();
        p99.sort_unstable();
        rss.sort_unstable();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1}% | {:.2} ms | {:.2} ms | {:.1} MiB |",
            comparison.label(row.target),
            row.encoding.as_str(),
            comparison.sessions,
            median(&cpu).unwrap_or(0.0),
            median(&p50).unwrap_or(0) as f64 / 1000.0,
            median(&p99).unwrap_or(0) as f64 / 1000.0,
            median(&rss).unwrap_or(0) as f64 / 1024.0
        );
    }
    per_session(&mut out, comparison, &rows);

    let _ = writeln!(
        out,
        "\n| build | idle sessions | RSS before | RSS with sessions | per idle session (RssAnon) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for &target in &targets {
        let idle = point(
            comparison,
            target,
            comparison.idle_sessions,
            Encoding::Binary,
            Workload::Idle,
        )
        .await?;
        let before = idle.server_rss_before_kib.unwrap_or(0);
        let after = idle.server.map_or(0, |u| u.rss_kib);
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
            comparison.label(target),
            comparison.idle_sessions,
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            kib_per_session(&idle).unwrap_or(0.0)
        );
    }
    Ok(out)
}

/// CPU per session-second and memory per active session of every row, with the spread over the
/// runs and, when the floor ran, each as a multiple of the floor's at the same encoding.
fn per_session(out: &mut String, comparison: &Comparison, rows: &[Row]) {
    let _ = writeln!(
        out,
        "\n| build | audio | CPU per session-second (median, low–high) | ÷ floor | memory per active session (median, low–high) | ÷ floor |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let floor_of = |encoding: Encoding| {
        rows.iter()
            .find(|r| r.target == Target::Floor && r.encoding == encoding)
    };
    for row in rows {
        let cells = |measure: fn(&PointResult) -> Option<f64>, unit: &str| {
            let own = spread(&row.points, measure);
            let text = own.map_or("–".into(), |(m, lo, hi)| format!("{m:.1} {unit} ({lo:.1}–{hi:.1})"));
            let times = match (own, floor_of(row.encoding).and_then(|f| spread(&f.points, measure))) {
                (Some((m, _, _)), Some((f, _, _))) if f > 0.0 => format!("{:.2}×", m / f),
                _ => "–".into(),
            };
            (text, times)
        };
        let (cpu, cpu_times) = cells(cpu_us_per_session_second, "µs");
        let (rss, rss_times) = cells(kib_per_session, "KiB");
        let _ = writeln!(
            out,
            "| {} | {} | {cpu} | {cpu_times} | {rss} | {rss_times} |",
            comparison.label(row.target),
            row.encoding.as_str(),
        );
    }
}

fn median<T: Copy>(sorted: &[T]) -> Option<T> {
    sorted.get(sorted.len() / 2).copied()
}

async fn point(
    comparison: &Comparison,
    target: Target,
    sessions: usize,
    encoding: Encoding,
    workload: Workload,
) -> anyhow::Result<PointResult> {
    let server: Server = match target {
        Target::Agent(binary) => {
            let programs = Programs {
                agent: comparison.binaries[binary].clone(),
                ..comparison.programs.clone()
            };
            let config = crate::suite::loopback_agent_config(sessions);
            servers::agent(&programs, "agent-compare", &config, 1, &[])?
        }
        Target::Floor => servers::echo(&comparison.programs)?,
    };
    let (warmup, measure) = match workload {
        Workload::Idle => (Duration::from_secs(2), Duration::from_secs(1)),
        _ => (Duration::from_secs(2), Duration::from_secs(8)),
    };
    let spec = PointSpec {
        url: server.ws_url()?,
        sessions,
        encoding,
        protocol: Protocol::default(),
        workload,
        warmup,
        measure,
    };
    Ok(load::run_point(&spec, Some(server.pid()), None).await)
}
