//! Sample-rate conversion between the carrier's rate and the session's, with rubato's FFT
//! resampler (band-limited, so 24 kHz reply audio does not alias into an 8 kHz call), fed in
//! 20 ms chunks as calls deliver them.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

/// A mono stream converter from one fixed rate to another.
pub struct Resampler {
    fft: Fft<f32>,
    /// Input samples per conversion step (20 ms of the input rate).
    chunk: usize,
    pending: Vec<f32>,
    output: Vec<f32>,
}

impl Resampler {
    /// A converter from `from` to `to` Hz, or `None` when the rates are equal (or unusable).
    pub fn new(from: u32, to: u32) -> Option<Self> {
        if from == to || from == 0 || to == 0 {
            return None;
        }
        let chunk = (from / 50) as usize;
        let fft = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input).ok()?;
        let output = vec![0.0; fft.output_frames_max()];
        Some(Self {
            fft,
            chunk,
            pending: Vec::with_capacity(chunk * 2),
            output,
        })
    }

    /// Converts `input`, appending what is ready to `out`; less than a chunk waits for more.
    pub fn push(&mut self, input: impl IntoIterator<Item = i16>, out: &mut Vec<i16>) {
        self.pending
            .extend(input.into_iter().map(|s| f32::from(s) / f32::from(i16::MAX)));
        let mut start = 0;
        while self.pending.len() - start >= self.chunk {
            let block = &self.pending[start..start + self.chunk];
            start += self.chunk;
            let frames_out = self.output.len();
            let (Ok(input), Ok(mut output)) = (
                InterleavedSlice::new(block, 1, self.chunk),
                InterleavedSlice::new_mut(&mut self.output, 1, frames_out),
            ) else {
                continue;
            };
            // Sizes are this converter's own, so processing cannot fail; if it did, the block is
            // dropped rather than the call.
            if let Ok((_, produced)) = self.fft.process_into_buffer(&input, &mut output, None) {
                out.extend(self.output[..produced].iter().map(|s| to_i16(*s)));
            }
        }
        self.pending.drain(..start);
    }

    /// Converts what waits for a whole chunk, padded with silence (the end of a stream).
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        if self.pending.is_empty() {
            return;
        }
        let missing = self.chunk - self.pending.len() % self.chunk;
        self.push(std::iter::repeat_n(0, missing), out);
    }

    /// Forgets buffered audio (after a barge-in: nothing queued is played).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.fft.reset();
    }
}

fn to_i16(sample: f32) -> i16 {
    (sample * f32::from(i16::MAX))
        .round()
        .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|n| ((n as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 10_000.0) as i16)
            .collect()
    }

    /// Frequency of the strongest zero-crossing rate, roughly: crossings / 2 per second.
    fn crossings_per_second(samples: &[i16], rate: u32) -> f32 {
        let crossings = samples.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f32 / 2.0 / (samples.len() as f32 / rate as f32)
    }

    #[test]
    fn doubles_8_khz_to_16_khz_keeping_the_pitch() {
        let mut resampler = Resampler::new(8_000, 16_000).expect("converter");
        let mut out = Vec::new();
        for frame in tone(8_000, 440.0, 8_000).chunks(160) {
            resampler.push(frame.iter().copied(), &mut out);
        }
        assert_eq!(out.len(), 16_000, "one second in, one second out");
        let pitch = crossings_per_second(&out[2_000..], 16_000);
        assert!((pitch - 440.0).abs() < 10.0, "{pitch}");
    }

    #[test]
    fn brings_24_khz_down_to_8_khz_without_aliasing() {
        let mut resampler = Resampler::new(24_000, 8_000).expect("converter");
        let mut out = Vec::new();
        // 6 kHz is above the 4 kHz limit of an 8 kHz call: it must be filtered out, not folded
        // back to 2 kHz.
        resampler.push(tone(24_000, 6_000.0, 24_000), &mut out);
        assert_eq!(out.len(), 8_000);
        let peak = out[1_000..].iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak < 500, "aliased energy {peak}");
        let mut speech = Vec::new();
        resampler.reset();
        resampler.push(tone(24_000, 300.0, 24_000), &mut speech);
        let peak = speech[1_000..].iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 9_000, "in-band tone kept: {peak}");
    }

    #[test]
    fn partial_chunks_wait_for_more() {
        let mut resampler = Resampler::new(8_000, 16_000).expect("converter");
        let mut out = Vec::new();
        resampler.push(vec![0i16; 100], &mut out);
        assert!(out.is_empty());
        resampler.push(vec![0i16; 60], &mut out);
        assert_eq!(out.len(), 320);
        assert!(Resampler::new(16_000, 16_000).is_none());
    }
}
