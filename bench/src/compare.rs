//! A/B comparison of agent builds at a fixed load, for tuning: the same loopback point against
//! each binary in turn (interleaved, so drifting noise hits both alike), then idle memory.
//! Prints a Markdown table; bench/tuning.md records the results.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::frame::{Encoding, Protocol};
use crate::load::{self, PointResult, PointSpec, Workload};
use crate::machine;
use crate::servers::{self, Programs};

pub struct Comparison {
    pub programs: Programs,
    pub binaries: Vec<PathBuf>,
    pub sessions: usize,
    pub idle_sessions: usize,
    pub runs: usize,
}

struct Row {
    binary: usize,
    encoding: Encoding,
    points: Vec<PointResult>,
}

pub async fn run(comparison: &Comparison) -> anyhow::Result<String> {
    let mut rows: Vec<Row> = Vec::new();
    for encoding in [Encoding::Binary, Encoding::Json] {
        for binary in 0..comparison.binaries.len() {
            rows.push(Row {
                binary,
                encoding,
                points: Vec::new(),
            });
        }
    }
    for _ in 0..comparison.runs {
        for row in &mut rows {
            if let Some(note) = machine::wait_for_quiet(Duration::from_secs(300)).await {
                eprintln!("voice-bench: {note}");
            }
            let point = point(
                comparison,
                row.binary,
                comparison.sessions,
                row.encoding,
                Workload::Loopback,
            )
            .await?;
            eprintln!(
                "voice-bench:   {} {}: cpu {:.1}%, p99 {} µs, others {:.0}%",
                comparison.binaries[row.binary].display(),
                row.encoding.as_str(),
                point.server.map_or(0.0, |u| u.cpu_percent),
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
            comparison.binaries[row.binary].display(),
            row.encoding.as_str(),
            comparison.sessions,
            median(&cpu).unwrap_or(0.0),
            median(&p50).unwrap_or(0) as f64 / 1000.0,
            median(&p99).unwrap_or(0) as f64 / 1000.0,
            median(&rss).unwrap_or(0) as f64 / 1024.0
        );
    }
    let _ = writeln!(
        out,
        "\n| build | idle sessions | RSS before | RSS with sessions | per idle session |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for binary in 0..comparison.binaries.len() {
        let idle = point(
            comparison,
            binary,
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
            comparison.binaries[binary].display(),
            comparison.idle_sessions,
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / comparison.idle_sessions.max(1) as f64
        );
    }
    Ok(out)
}

fn median<T: Copy>(sorted: &[T]) -> Option<T> {
    sorted.get(sorted.len() / 2).copied()
}

async fn point(
    comparison: &Comparison,
    binary: usize,
    sessions: usize,
    encoding: Encoding,
    workload: Workload,
) -> anyhow::Result<PointResult> {
    let programs = Programs {
        agent: comparison.binaries[binary].clone(),
        ..comparison.programs.clone()
    };
    let config = crate::suite::loopback_agent_config(sessions);
    let server = servers::agent(&programs, "agent-compare", &config, 1, &[])?;
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
