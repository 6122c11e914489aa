//! The phone line of a simulated call: the carrier's playback buffer. Reply audio queues up and
//! plays in real time; a playback mark is echoed once the audio before it has played, and a
//! `clear` empties the buffer (Twilio and Telnyx then echo every pending mark at once, as their
//! documentation says), which is what lets the agent learn how much of a reply was heard.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Pending marks kept at most: one per 200 ms of a reply, so this covers 20 minutes of queued
/// audio; an agent sending more marks than that is misbehaving and the oldest are forgotten.
const MAX_PENDING_MARKS: usize = 6_000;

/// A line whose marks are `M` (what echoes them).
#[derive(Debug)]
pub struct Line<M> {
    /// When the audio queued so far will have played.
    plays_until: Instant,
    /// Marks waiting for the audio before them: (when it will have played, the mark).
    pending: VecDeque<(Instant, M)>,
}

impl<M> Line<M> {
    pub fn new(now: Instant) -> Self {
        Self {
            plays_until: now,
            pending: VecDeque::new(),
        }
    }

    /// `audio` more reply audio arrived at `now`.
    pub fn queue(&mut self, audio: Duration, now: Instant) {
        self.plays_until = self.plays_until.max(now) + audio;
    }

    /// A mark arrived after the audio queued so far.
    pub fn mark(&mut self, mark: M, now: Instant) {
        if self.pending.len() == MAX_PENDING_MARKS {
            self.pending.pop_front();
        }
        self.pending.push_back((self.plays_until.max(now), mark));
    }

    /// The marks whose audio has played by `now`, in order.
    pub fn played(&mut self, now: Instant) -> Vec<M> {
        let mut out = Vec::new();
        while self.pending.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, mark)) = self.pending.pop_front() {
                out.push(mark);
            }
        }
        out
    }

    /// The agent sent `clear`: the buffer is dropped; the pending marks are returned.
    pub fn clear(&mut self, now: Instant) -> Vec<M> {
        self.plays_until = now;
        self.pending.drain(..).map(|(_, mark)| mark).collect()
    }

    /// Whether reply audio is still playing at `now`.
    pub fn playing(&self, now: Instant) -> bool {
        self.plays_until > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_echoed_when_their_audio_has_played_or_cleared() {
        let t0 = Instant::now();
        let mut line: Line<String> = Line::new(t0);
        line.queue(Duration::from_millis(200), t0);
        line.mark("1:200".into(), t0);
        line.queue(Duration::from_millis(200), t0);
        line.mark("1:400".into(), t0);
        assert!(line.played(t0 + Duration::from_millis(100)).is_empty());
        assert_eq!(line.played(t0 + Duration::from_millis(250)), ["1:200"]);
        assert!(line.playing(t0 + Duration::from_millis(300)));
        assert_eq!(line.clear(t0 + Duration::from_millis(300)), ["1:400"]);
        assert!(!line.playing(t0 + Duration::from_millis(300)));
    }
}
