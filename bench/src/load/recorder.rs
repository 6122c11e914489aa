//! What the sessions of one load point measure, merged in one place.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Histogram range in microseconds: 1 µs to 60 s, 3 significant digits.
const HISTOGRAM_MAX_US: u64 = 60_000_000;
const HISTOGRAM_DIGITS: u8 = 3;

/// Counts and histograms shared by every session of a load point. Sessions lock it for a
/// moment per frame; the lock is never held across an await.
pub struct Recorder {
    /// Round trip of stamped frames through the relay and the loopback model (µs).
    pub round_trip: Histogram<u64>,
    /// How late the generator sent frames against their schedule (µs): its own health check.
    pub send_lag: Histogram<u64>,
    /// Conversation workload: from sending the frame that ends a turn to the first byte of the
    /// reply's audio (µs), for turns ended inside the window.
    pub reply_latency: Histogram<u64>,
    /// Conversation workload against a fake that stamps its replies: from the fake sending a
    /// reply's first audio to the client receiving it (µs): what the server adds downstream.
    pub reply_downstream: Histogram<u64>,
    pub frames_sent: u64,
    pub frames_echoed: u64,
    /// Echoes that came back more than one frame period after they were sent.
    pub frames_late: u64,
    pub replies: ReplyCounts,
}

/// Conversation workload: what the model's answers looked like from the client.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ReplyCounts {
    pub responses: u64,
    pub audio_chunks: u64,
    /// Chunks that arrived after a player that started with the first chunk of the reply
    /// would have needed them: audible gaps.
    pub late_chunks: u64,
    pub interruptions: u64,
    pub errors: u64,
    pub restarts: u64,
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            round_trip: histogram(),
            send_lag: histogram(),
            reply_latency: histogram(),
            reply_downstream: histogram(),
            frames_sent: 0,
            frames_echoed: 0,
            frames_late: 0,
            replies: ReplyCounts::default(),
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// A histogram of microseconds over the range every measurement of the benchmark uses.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_DIGITS).expect("constant histogram bounds are valid")
}

/// Records a value, clamping it into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.clamp(1, HISTOGRAM_MAX_US));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut recorder = Recorder::new();
        for us in 1..=1000 {
            record(&mut recorder.round_trip, us);
        }
        let p = Percentiles::of(&recorder.round_trip);
        assert_eq!(p.count, 1000);
        assert!((495..=505).contains(&p.p50_us));
        assert!((985..=995).contains(&p.p99_us));
        assert_eq!(p.max_us, 1000);
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mut recorder = Recorder::new();
        record(&mut recorder.round_trip, 0);
        record(&mut recorder.round_trip, u64::MAX);
        assert_eq!(recorder.round_trip.len(), 2);
    }

    #[test]
    fn empty_histograms_give_zeros() {
        assert_eq!(Percentiles::of(&Recorder::new().send_lag).count, 0);
    }
}
