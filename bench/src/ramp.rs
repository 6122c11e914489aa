//! Finding capacity: the largest session count that still meets the latency objective.
//!
//! Session counts double until a point fails, then a bisection narrows the gap between the
//! last pass and the first failure. Every point runs against a freshly started server, so one
//! point's leftovers (memory, sockets in TIME_WAIT) never colour the next.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::load::PointResult;

/// The objective: p99 round trip at or under 5 ms...
pub const MAX_P99_US: u64 = 5_000;
/// ...and the generator must itself keep time, or the point measured the generator. tokio's
/// timers fire on millisecond boundaries, so up to a millisecond of lag is the timer itself.
pub const MAX_GENERATOR_LAG_P99_US: u64 = 5_000;
/// A generator above this share of its core is saturated.
pub const MAX_GENERATOR_CPU_PERCENT: f64 = 90.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// The server missed the objective; the reason says how.
    Fail(String),
    /// The generator could not keep up: the point says nothing about the server.
    GeneratorBound(String),
}

impl Verdict {
    pub fn passed(&self) -> bool {
        *self == Self::Pass
    }
}

/// Judges a loopback point.
pub fn judge_loopback(point: &PointResult) -> Verdict {
    if let Some(reason) = generator_trouble(point) {
        return Verdict::GeneratorBound(reason);
    }
    let mut reasons = session_failures(point);
    if point.frames_echoed == 0 {
        reasons.push("no frame came back".to_owned());
    }
    if point.frames_dropped > 0 {
        reasons.push(format!("{} frames dropped", point.frames_dropped));
    }
    if point.frames_late > 0 {
        reasons.push(format!("{} frames late", point.frames_late));
    }
    if point.round_trip.p99_us > MAX_P99_US {
        reasons.push(format!("p99 {:.1} ms", point.round_trip.p99_us as f64 / 1000.0));
    }
    verdict(reasons)
}

/// Judges a conversation point (the production path): every session answered, no error,
/// no gap in reply audio.
pub fn judge_conversation(point: &PointResult) -> Verdict {
    if let Some(reason) = generator_trouble(point) {
        return Verdict::GeneratorBound(reason);
    }
    let mut reasons = session_failures(point);
    if point.replies.errors > 0 {
        reasons.push(format!("{} errors", point.replies.errors));
    }
    if point.replies.audio_chunks == 0 {
        reasons.push("no reply audio".to_owned());
    }
    if point.replies.late_chunks > 0 {
        reasons.push(format!("{} reply chunks late", point.replies.late_chunks));
    }
    verdict(reasons)
}

/// What fails any point: sessions that never connected or did not last.
fn session_failures(point: &PointResult) -> Vec<String> {
    let mut reasons = Vec::new();
    if point.connect_failures > 0 {
        reasons.push(format!("{} sessions failed to connect", point.connect_failures));
    }
    if point.ended_early > 0 {
        reasons.push(format!("{} sessions closed early", point.ended_early));
    }
    reasons
}

fn verdict(reasons: Vec<String>) -> Verdict {
    if reasons.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(reasons.join(", "))
    }
}

fn generator_trouble(point: &PointResult) -> Option<String> {
    if point.send_lag.p99_us > MAX_GENERATOR_LAG_P99_US {
        return Some(format!(
            "generator sent p99 {:.1} ms behind schedule",
            point.send_lag.p99_us as f64 / 1000.0
        ));
    }
    if point.generator.cpu_percent > MAX_GENERATOR_CPU_PERCENT {
        return Some(format!("generator at {:.0}% CPU", point.generator.cpu_percent));
    }
    None
}

/// Bounds of a search.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    pub start: usize,
    pub max: usize,
    /// Stop bisecting when the gap is at most this fraction of the last pass.
    pub resolution: f64,
    /// ...or at most this many sessions.
    pub min_step: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ramp {
    pub points: Vec<(PointResult, Verdict)>,
    /// The largest passing session count.
    pub capacity: Option<usize>,
    /// The smallest failing count, if one was found.
    pub first_failure: Option<usize>,
    /// True when the search hit `max`, or the generator's limit, before the server failed:
    /// the capacity is then a lower bound.
    pub open_ended: bool,
}

/// Runs the search; `point` runs one point (against a fresh server) and judges it.
pub async fn search<F, Fut>(search: Search, mut point: F) -> Ramp
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = (PointResult, Verdict)>,
{
    let mut ramp = Ramp {
        points: Vec::new(),
        capacity: None,
        first_failure: None,
        open_ended: false,
    };
    let mut n = search.start.max(1);
    // Doubling.
    loop {
        let (result, verdict) = point(n).await;
        let outcome = verdict.clone();
        ramp.points.push((result, verdict));
        match outcome {
            Verdict::Pass if n >= search.max => {
                ramp.capacity = Some(n);
                ramp.open_ended = true;
                return ramp;
            }
            Verdict::Pass => {
                ramp.capacity = Some(n);
                n = (n * 2).min(search.max);
            }
            // The generator's limit bounds the search like a failure would, but the
            // capacity found below it is only a lower bound for the server.
            Verdict::GeneratorBound(_) => {
                ramp.open_ended = true;
                ramp.first_failure = Some(n);
                break;
            }
            Verdict::Fail(_) => {
                ramp.first_failure = Some(n);
                break;
            }
        }
    }
    // Bisection between the last pass (or zero) and the first failure.
    while let Some(fail) = ramp.first_failure {
        let pass = ramp.capacity.unwrap_or(0);
        let gap = fail - pass;
        if gap <= search.min_step.max((pass as f64 * search.resolution) as usize) {
            break;
        }
        let mid = pass + gap / 2;
        let (result, verdict) = point(mid).await;
        let outcome = verdict.clone();
        ramp.points.push((result, verdict));
        match outcome {
            Verdict::Pass => ramp.capacity = Some(mid),
            Verdict::Fail(_) => ramp.first_failure = Some(mid),
            Verdict::GeneratorBound(_) => {
                ramp.open_ended = true;
                ramp.first_failure = Some(mid);
            }
        }
    }
    ramp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Encoding;
    use crate::load::{Percentiles, ReplyCounts, Workload};
    use crate::procfs::Usage;

    fn point(sessions: usize, p99_us: u64) -> PointResult {
        PointResult {
            sessions,
            encoding: Encoding::Binary,
            workload: Workload::Loopback,
            connected: sessions,
            connect_failures: 0,
            ended_early: 0,
            frames_sent: 100,
            frames_echoed: 100,
            frames_late: 0,
            frames_dropped: 0,
            round_trip: Percentiles {
                count: 100,
                p99_us,
                ..Percentiles::default()
            },
            send_lag: Percentiles::default(),
            reply_latency: Percentiles::default(),
            reply_downstream: Percentiles::default(),
            replies: ReplyCounts::default(),
            server: None,
            server_rss_before_kib: None,
            server_anon_before_kib: None,
            generator: Usage::default(),
            helper_cpu_percent: 0.0,
            others_cpu_percent: 0.0,
            others_peak_cpu_percent: 0.0,
            measured_seconds: 1.0,
            errors: Vec::new(),
        }
    }

    /// A server whose p99 grows with load: 1 µs per session.
    async fn simulated(n: usize) -> (PointResult, Verdict) {
        let result = point(n, n as u64);
        let verdict = judge_loopback(&result);
        (result, verdict)
    }

    #[tokio::test]
    async fn finds_capacity_within_the_resolution() {
        let search_bounds = Search {
            start: 100,
            max: 100_000,
            resolution: 0.05,
            min_step: 10,
        };
        let ramp = search(search_bounds, simulated).await;
        let capacity = ramp.capacity.expect("some point passed");
        assert!((4_750..=5_000).contains(&capacity), "capacity {capacity}");
        assert!(!ramp.open_ended);
    }

    #[tokio::test]
    async fn stops_at_the_maximum() {
        let bounds = Search {
            start: 100,
            max: 400,
            resolution: 0.1,
            min_step: 10,
        };
        let ramp = search(bounds, simulated).await;
        assert_eq!(ramp.capacity, Some(400));
        assert!(ramp.open_ended);
        assert_eq!(ramp.points.len(), 3);
    }

    #[test]
    fn late_or_dropped_frames_fail_a_point() {
        let mut p = point(10, 100);
        p.frames_late = 1;
        assert!(matches!(judge_loopback(&p), Verdict::Fail(r) if r.contains("late")));
        let mut p = point(10, 100);
        p.frames_dropped = 2;
        assert!(matches!(judge_loopback(&p), Verdict::Fail(r) if r.contains("dropped")));
    }

    #[test]
    fn a_lagging_generator_is_not_blamed_on_the_server() {
        let mut p = point(10, 100_000);
        p.send_lag.p99_us = 10_000;
        assert!(matches!(judge_loopback(&p), Verdict::GeneratorBound(_)));
    }
}
