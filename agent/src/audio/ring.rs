//! A byte-capped queue of audio frames: the newest audio is kept, the oldest gives way. Used
//! wherever audio waits for a model stream, so "how much audio may wait" is one number in
//! bytes (bytes are time: 32 000 of them are a second at 16 kHz PCM16), whatever the frame size.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Clone, Default)]
pub struct ByteRing {
    frames: VecDeque<Bytes>,
    bytes: usize,
    cap: usize,
}

impl ByteRing {
    /// An empty ring that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            cap,
        }
    }

    /// Adds the newest frame, dropping the oldest ones beyond the cap. Returns how many frames
    /// were dropped. A single frame larger than the cap is kept alone: dropping the frame just
    /// received would lose the audio that matters most.
    pub fn push(&mut self, frame: Bytes) -> usize {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        self.evict()
    }

    /// Puts `older` audio in front of what is queued (it came first), dropping the oldest
    /// beyond the cap. Returns how many frames were dropped.
    pub fn prepend(&mut self, older: ByteRing) -> usize {
        let mut frames = older.frames;
        frames.append(&mut self.frames);
        self.frames = frames;
        self.bytes += older.bytes;
        self.evict()
    }

    /// Takes every frame out, oldest first, leaving the ring empty with the same cap.
    pub fn take(&mut self) -> ByteRing {
        let taken = Self {
            frames: std::mem::take(&mut self.frames),
            bytes: self.bytes,
            cap: self.cap,
        };
        self.bytes = 0;
        taken
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames queued, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.frames.iter()
    }

    fn evict(&mut self) -> usize {
        let mut dropped = 0;
        while self.bytes > self.cap && self.frames.len() > 1 {
            if let Some(old) = self.frames.pop_front() {
                self.bytes -= old.len();
                dropped += 1;
            }
        }
        dropped
    }
}

impl IntoIterator for ByteRing {
    type Item = Bytes;
    type IntoIter = std::collections::vec_deque::IntoIter<Bytes>;

    /// Frames oldest first.
    fn into_iter(self) -> Self::IntoIter {
        self.frames.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u8, len: usize) -> Bytes {
        Bytes::from(vec![id; len])
    }

    fn ids(ring: &ByteRing) -> Vec<u8> {
        ring.iter().map(|f| f[0]).collect()
    }

    #[test]
    fn keeps_frames_in_arrival_order_within_the_cap() {
        let mut ring = ByteRing::new(30);
        assert_eq!(ring.push(frame(1, 10)), 0);
        assert_eq!(ring.push(frame(2, 10)), 0);
        assert_eq!(ring.push(frame(3, 10)), 0);
        assert_eq!(ids(&ring), [1, 2, 3]);
        assert_eq!(ring.bytes(), 30);
    }

    #[test]
    fn the_oldest_frames_give_way_and_are_counted() {
        let mut ring = ByteRing::new(30);
        for id in 1..=3 {
            ring.push(frame(id, 10));
        }
        assert_eq!(ring.push(frame(4, 15)), 2, "two frames make room for 15 bytes");
        assert_eq!(ids(&ring), [3, 4]);
        assert_eq!(ring.bytes(), 25);
    }

    #[test]
    fn a_frame_larger_than_the_cap_is_kept_alone() {
        let mut ring = ByteRing::new(8);
        ring.push(frame(1, 4));
        assert_eq!(ring.push(frame(2, 20)), 1);
        assert_eq!(ids(&ring), [2]);
    }

    #[test]
    fn prepended_audio_goes_first_and_the_cap_drops_the_oldest_of_it() {
        let mut older = ByteRing::new(100);
        older.push(frame(1, 10));
        older.push(frame(2, 10));
        let mut ring = ByteRing::new(25);
        ring.push(frame(3, 10));
        assert_eq!(ring.prepend(older), 1);
        assert_eq!(ids(&ring), [2, 3]);
        assert_eq!(ring.bytes(), 20);
    }

    #[test]
    fn take_empties_the_ring_and_keeps_its_cap() {
        let mut ring = ByteRing::new(10);
        ring.push(frame(1, 6));
        let taken = ring.take();
        assert!(ring.is_empty());
        assert_eq!(ring.bytes(), 0);
        assert_eq!(taken.into_iter().map(|f| f[0]).collect::<Vec<_>>(), [1]);
        ring.push(frame(2, 6));
        assert_eq!(ring.push(frame(3, 6)), 1, "the cap survives take");
    }
}
