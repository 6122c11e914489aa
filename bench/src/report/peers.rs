//! The Nova Sonic peers section of BENCHMARKS.md, and the sentence the summary leads with.

use std::fmt::Write as _;

use super::{cpu, kib_per_session, mib, ms, verdict_text};
use crate::load::PointResult;
use crate::peers::{EqualLoad, Peer, PeerRun, PeersResult};
use crate::ramp::{Ramp, Verdict};
use crate::suite::SuiteResult;

/// A stack's server core at or above this share counts as saturated.
const SATURATED_PERCENT: f64 = 90.0;

/// Conversations per core as the report states it: a lower bound (`≥`) when the search ended
/// without the server failing (its maximum, or the harness's limit).
fn capacity_text(run: Option<&PeerRun>) -> String {
    let Some(run) = run else { return "not run".into() };
    let Some(ramp) = &run.ramp else {
        return "not measured".into();
    };
    match ramp.capacity {
        Some(n) if lower_bound(ramp) => format!("≥ {n}"),
        Some(n) => n.to_string(),
        None => "none passed".into(),
    }
}

/// Whether the capacity only bounds the stack from below: the failure above it was the
/// harness's (the generator, or the core the fake shares with it), or nothing failed.
fn lower_bound(ramp: &Ramp) -> bool {
    match first_failure(ramp) {
        Some((p, v)) => harness_limited(p, v),
        None => ramp.open_ended,
    }
}

fn first_failure(ramp: &Ramp) -> Option<(&PointResult, &Verdict)> {
    let n = ramp.first_failure?;
    ramp.points
        .iter()
        .find(|(p, v)| p.sessions == n && !v.passed())
        .map(|(p, v)| (p, v))
}

fn harness_limited(point: &PointResult, verdict: &Verdict) -> bool {
    let server = point.server.map_or(0.0, |u| u.cpu_percent);
    matches!(verdict, Verdict::GeneratorBound(_))
        || (server < SATURATED_PERCENT && point.helper_cpu_percent + point.generator.cpu_percent >= SATURATED_PERCENT)
}

/// The sentence the summary leads with.
pub fn lead(out: &mut String, peers: &PeersResult) {
    let _ = writeln!(
        out,
        "The same conversations on Nova Sonic: **{} per core with voice-agent, {} with Strands, {} with \
         Pipecat** (each stack alone on one core, through its own Bedrock client, against the same \
         Bedrock-wire fake; no gap in reply audio and no error; see \
         [Nova Sonic conversations](#nova-sonic-conversations-voice-agent-strands-and-pipecat)).\n",
        capacity_text(peers.run(Peer::Agent)),
        capacity_text(peers.run(Peer::Strands)),
        capacity_text(peers.run(Peer::Pipecat)),
    );
    for pair in &peers.equal_load {
        let (a, o) = (&pair.agent, &pair.other);
        let _ = writeln!(
            out,
            "At {} conversations ({} capacity), voice-agent ÷ {}: CPU {}, memory per conversation {}, \
             reply latency p50 {} and p99 {}.\n",
            pair.sessions,
            possessive(pair.peer.name()),
            pair.peer.name(),
            ratio(server_cpu(a), server_cpu(o)),
            ratio(kib_per_session(a).unwrap_or(0.0), kib_per_session(o).unwrap_or(0.0)),
            ratio(a.reply_latency.p50_us as f64, o.reply_latency.p50_us as f64),
            ratio(a.reply_latency.p99_us as f64, o.reply_latency.p99_us as f64),
        );
    }
}

/// "Strands'", "Pipecat's".
fn possessive(name: &str) -> String {
    if name.ends_with('s') {
        format!("{name}'")
    } else {
        format!("{name}'s")
    }
}

fn server_cpu(point: &PointResult) -> f64 {
    point.server.map_or(0.0, |u| u.cpu_percent)
}

/// A ratio with two significant digits: the stacks differ by orders of magnitude.
fn ratio(a: f64, b: f64) -> String {
    if !(a > 0.0 && b > 0.0) {
        return "–".into();
    }
    let r = a / b;
    if r >= 10.0 {
        format!("{r:.0}×")
    } else if r >= 1.0 {
        format!("{r:.1}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.3}×")
    }
}

fn per_conversation_cpu(point: &PointResult) -> String {
    if point.sessions == 0 {
        return "–".into();
    }
    format!("{:.2}% of a core", server_cpu(point) / point.sessions as f64)
}

fn kib(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.0} KiB"))
}

pub fn render(out: &mut String, result: &SuiteResult) {
    let Some(peers) = &result.peers else { return };
    let _ = writeln!(out, "## Nova Sonic conversations: voice-agent, Strands and Pipecat\n");
    let _ = writeln!(
        out,
        "The conversations of the production-path section above, served by the stacks users run, each \
         alone on CPU 0 with the Bedrock-wire fake and the generator on CPU 1: voice-agent (NovaSonic \
         provider, `aws-sdk-bedrockruntime`, one worker thread); a Strands `BidiAgent` with its \
         `BedrockNovaSonicModel` per WebSocket connection behind a `websockets` server \
         (`bench/python/strands_server.py`); Pipecat's `AWSNovaSonicLLMService` in a pipeline per \
         connection behind its FastAPI WebSocket transport (`bench/python/pipecat_server.py`). The \
         Python stacks each run in one process, as their examples do, and open their own Bedrock \
         stream (and TLS connection) per conversation. All speak the Strands 1.62 event schema with \
         JSON audio to the generator (voice-agent with `?protocol=strands-1.62`). Same pass rule as \
         the production path: every session stays up, no `bidi_error`, no gap in reply audio. The \
         fake answers as soon as it detects the end of a turn, so the *reply latency* (the generator \
         sending the frame that ends the caller's turn → the first byte of reply audio at the \
         generator) is the stack's round trip to the model and back, plus the fake's own fixed work. \
         The comparisons at equal load take the peer's passing point at its capacity and a run of \
         voice-agent at the same count right after the searches.\n"
    );
    for pair in &peers.equal_load {
        equal_load(out, peers, pair);
    }
    let _ = writeln!(out, "### Every point measured\n");
    let _ = writeln!(
        out,
        "| stack | conversations | replies | reply chunks | late chunks | errors | reply latency p50 | p99 | latencies | server CPU | server RSS | per conversation | fake CPU | generator CPU | others | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for run in &peers.runs {
        let Some(ramp) = &run.ramp else { continue };
        for (p, verdict) in &ramp.points {
            point_row(out, run.peer, p, &verdict_text(verdict));
        }
    }
    for pair in peers.equal_load.iter().filter(|pair| pair.fresh) {
        let at = format!("at {} capacity", possessive(pair.peer.name()));
        point_row(out, Peer::Agent, &pair.agent, &at);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "### What limits each number\n");
    for run in &peers.runs {
        let _ = writeln!(out, "- {}: {}", run.peer.label(), limit(run));
    }
    out.push('\n');
}

fn equal_load(out: &mut String, peers: &PeersResult, pair: &EqualLoad) {
    let name = pair.peer.name();
    let (a, o) = (&pair.agent, &pair.other);
    let _ = writeln!(
        out,
        "### voice-agent and {name} at {} conversations ({} capacity)\n",
        pair.sessions,
        possessive(name)
    );
    let _ = writeln!(out, "| | voice-agent | {name} | voice-agent ÷ {name} |");
    let _ = writeln!(out, "|---|---|---|---|");
    let capacity = |p: Peer| peers.capacity(p).unwrap_or(0) as f64;
    let capacities = ratio(capacity(Peer::Agent), capacity(pair.peer));
    let agent_bounded = peers
        .run(Peer::Agent)
        .and_then(|r| r.ramp.as_ref())
        .is_some_and(lower_bound);
    let _ = writeln!(
        out,
        "| conversations per core | {} | {} | {}{capacities} |",
        capacity_text(peers.run(Peer::Agent)),
        capacity_text(peers.run(pair.peer)),
        if agent_bounded && capacities != "–" {
            "≥ "
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "| CPU per conversation | {} | {} | {} |",
        per_conversation_cpu(a),
        per_conversation_cpu(o),
        ratio(server_cpu(a), server_cpu(o)),
    );
    let _ = writeln!(
        out,
        "| memory per conversation | {} | {} | {} |",
        kib(kib_per_session(a)),
        kib(kib_per_session(o)),
        ratio(kib_per_session(a).unwrap_or(0.0), kib_per_session(o).unwrap_or(0.0)),
    );
    for (label, pick) in [("p50", 0), ("p99", 1)] {
        let value = |p: &PointResult| {
            if pick == 0 {
                p.reply_latency.p50_us
            } else {
                p.reply_latency.p99_us
            }
        };
        let _ = writeln!(
            out,
            "| reply latency {label} | {} | {} | {} |",
            ms(value(a)),
            ms(value(o)),
            ratio(value(a) as f64, value(o) as f64),
        );
    }
    for (label, pick) in [("p50", 0), ("p99", 1)] {
        let value = |p: &PointResult| {
            if pick == 0 {
                p.reply_downstream.p50_us
            } else {
                p.reply_downstream.p99_us
            }
        };
        let _ = writeln!(
            out,
            "| added latency {label} (fake's first reply byte → client's) | {} | {} | {} |",
            ms_or_dash(value(a), a.reply_downstream.count),
            ms_or_dash(value(o), o.reply_downstream.count),
            ratio(value(a) as f64, value(o) as f64),
        );
    }
    let _ = writeln!(
        out,
        "| replies measured (round-trip / one-way latency samples) | {} / {} | {} / {} | |\n",
        a.reply_latency.count, a.reply_downstream.count, o.reply_latency.count, o.reply_downstream.count
    );
}

/// A latency, or a dash when nothing was measured (a stack that does not pass the fake's stamp
/// through unchanged).
fn ms_or_dash(us: u64, count: u64) -> String {
    if count == 0 { "–".into() } else { ms(us) }
}

fn point_row(out: &mut String, peer: Peer, p: &PointResult, verdict: &str) {
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% | {:.0}% / {:.0}% | {verdict} |",
        peer.name(),
        p.sessions,
        p.replies.responses,
        p.replies.audio_chunks,
        p.replies.late_chunks,
        p.replies.errors,
        ms(p.reply_latency.p50_us),
        ms(p.reply_latency.p99_us),
        p.reply_latency.count,
        cpu(p),
        mib(p.server.map(|u| u.rss_kib)),
        kib(kib_per_session(p)),
        p.helper_cpu_percent,
        p.generator.cpu_percent,
        p.others_cpu_percent,
        p.others_peak_cpu_percent,
    );
}

/// Why a stack's search stopped where it did.
fn limit(run: &PeerRun) -> String {
    let Some(ramp) = &run.ramp else {
        return format!("not measured: {}", run.skipped.as_deref().unwrap_or("skipped"));
    };
    if ramp.capacity.is_none()
        && let Some((p, v)) = ramp.points.last()
    {
        let why = p
            .errors
            .first()
            .map_or(String::new(), |e| format!(" First error: `{e}`."));
        return format!(
            "no point passed; at {} conversations: {}.{why}",
            p.sessions,
            verdict_text(v)
        );
    }
    match first_failure(ramp) {
        Some((p, v)) => {
            let server = server_cpu(p);
            let harness = p.helper_cpu_percent + p.generator.cpu_percent;
            let culprit = if matches!(v, Verdict::GeneratorBound(_)) {
                format!(
                    "The generator, not the stack, fell behind: the stack used {server:.0}% of its core, \
                     other processes {:.0}% of a core; the capacity is a lower bound",
                    p.others_cpu_percent
                )
            } else if harness_limited(p, v) {
                format!(
                    "The stack used {server:.0}% of its core while the fake and the generator used \
                     {harness:.0}% of theirs: the harness, not the stack, is the limit; the capacity \
                     is a lower bound"
                )
            } else if server >= SATURATED_PERCENT {
                format!("The stack's core is saturated: {server:.0}%")
            } else {
                format!("The stack used {server:.0}% of its core")
            };
            let why = p
                .errors
                .first()
                .map_or(String::new(), |e| format!(" First error: `{e}`."));
            format!("at {} conversations: {}. {culprit}.{why}", p.sessions, verdict_text(v))
        }
        None if ramp.open_ended => "the search stopped without a failure.".into(),
        None => "no point passed.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Encoding;
    use crate::procfs::Usage;

    fn point(sessions: usize, server_cpu: f64, harness_cpu: f64) -> PointResult {
        let mut p = crate::suite::failed_point(sessions, Encoding::Json, &anyhow::anyhow!("unused"));
        p.server = Some(Usage {
            cpu_percent: server_cpu,
            ..Usage::default()
        });
        p.helper_cpu_percent = harness_cpu / 2.0;
        p.generator.cpu_percent = harness_cpu / 2.0;
        p
    }

    fn run(peer: Peer, points: Vec<(PointResult, Verdict)>, capacity: usize, first_failure: usize) -> PeerRun {
        PeerRun {
            peer,
            ramp: Some(Ramp {
                points,
                capacity: Some(capacity),
                first_failure: Some(first_failure),
                open_ended: false,
            }),
            skipped: None,
        }
    }

    #[test]
    fn summary_leads_with_each_stacks_conversations_per_core() {
        let late = || Verdict::Fail("3 reply chunks late".into());
        let peers = PeersResult {
            runs: vec![
                // The harness's core ran out first: the agent's capacity is a lower bound.
                run(Peer::Agent, vec![(point(450, 60.0, 95.0), late())], 400, 450),
                // Strands' own core ran out.
                run(Peer::Strands, vec![(point(48, 97.0, 20.0), late())], 40, 48),
                PeerRun {
                    peer: Peer::Pipecat,
                    ramp: None,
                    skipped: Some("no Python for it".into()),
                },
            ],
            equal_load: Vec::new(),
        };
        let mut out = String::new();
        lead(&mut out, &peers);
        assert!(
            out.starts_with(
                "The same conversations on Nova Sonic: **≥ 400 per core with voice-agent, 40 with Strands, \
                 not measured with Pipecat**"
            ),
            "{out}"
        );
    }

    #[test]
    fn ratios_keep_two_significant_digits() {
        assert_eq!(ratio(1.0, 50.0), "0.020×");
        assert_eq!(ratio(1.0, 4.0), "0.25×");
        assert_eq!(ratio(3.0, 2.0), "1.5×");
        assert_eq!(ratio(400.0, 12.0), "33×");
        assert_eq!(ratio(0.0, 2.0), "–");
        assert_eq!(possessive("Strands"), "Strands'");
        assert_eq!(possessive("Pipecat"), "Pipecat's");
    }
}
