//! Energy-based turn detection on 16-bit PCM. Time is counted in samples, never read from a
//! clock, so the same audio always gives the same turns.

/// Analysis window: 20 ms at 16 kHz.
const WINDOW_SAMPLES: u32 = 320;
/// RMS level (of full scale 32768) above which a window counts as speech: about -36 dBFS, well
/// above a quiet room through a laptop microphone and well below normal speech.
const SPEECH_RMS: f64 = 500.0;
/// Consecutive speech windows needed to start a turn (60 ms), so clicks do not count.
const ONSET_WINDOWS: u32 = 3;
/// Consecutive silent windows that end a turn (600 ms), the pause people leave at the end of
/// a sentence but rarely inside one.
const HANGOVER_WINDOWS: u32 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    SpeechStarted,
    /// The user stopped speaking; `speech_ms` runs from the first to the last speech window.
    SpeechEnded {
        speech_ms: u64,
    },
}

#[derive(Debug, Default)]
pub struct TurnDetector {
    window_energy: f64,
    window_len: u32,
    /// Windows seen so far.
    windows: u64,
    speech_run: u32,
    silence_run: u32,
    speaking: bool,
    turn_start_window: u64,
    last_speech_window: u64,
}

impl TurnDetector {
    /// Feeds PCM16LE bytes (an odd trailing byte is ignored) and reports turn changes.
    pub fn push(&mut self, pcm: &[u8], events: &mut Vec<VadEvent>) {
        for sample in pcm.chunks_exact(2) {
            let s = f64::from(i16::from_le_bytes([sample[0], sample[1]]));
            self.window_energy += s * s;
            self.window_len += 1;
            if self.window_len == WINDOW_SAMPLES {
                let rms = (self.window_energy / f64::from(WINDOW_SAMPLES)).sqrt();
                self.window_energy = 0.0;
                self.window_len = 0;
                if let Some(event) = self.on_window(rms >= SPEECH_RMS) {
                    events.push(event);
                }
            }
        }
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    fn on_window(&mut self, speech: bool) -> Option<VadEvent> {
        let index = self.windows;
        self.windows += 1;
        if speech {
            self.speech_run += 1;
            self.silence_run = 0;
            self.last_speech_window = index;
            if !self.speaking && self.speech_run >= ONSET_WINDOWS {
                self.speaking = true;
                self.turn_start_window = index + 1 - u64::from(ONSET_WINDOWS);
                return Some(VadEvent::SpeechStarted);
            }
        } else {
            self.speech_run = 0;
            self.silence_run += 1;
            if self.speaking && self.silence_run >= HANGOVER_WINDOWS {
                self.speaking = false;
                let windows = self.last_speech_window + 1 - self.turn_start_window;
                let speech_ms = windows * u64::from(WINDOW_SAMPLES) * 1000 / 16_000;
                return Some(VadEvent::SpeechEnded { speech_ms });
            }
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 16 kHz test signal: `ms` of a 220 Hz tone at `amplitude`.
    pub(crate) fn tone(ms: u32, amplitude: f64) -> Vec<u8> {
        let n = ms * 16;
        (0..n)
            .flat_map(|i| {
                let t = f64::from(i) / 16_000.0;
                let v = (amplitude * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16;
                v.to_le_bytes()
            })
            .collect()
    }

    pub(crate) fn silence(ms: u32) -> Vec<u8> {
        vec![0; (ms * 32) as usize]
    }

    fn run(chunks: &[Vec<u8>]) -> Vec<VadEvent> {
        let mut vad = TurnDetector::default();
        let mut events = Vec::new();
        for chunk in chunks {
            vad.push(chunk, &mut events);
        }
        events
    }

    #[test]
    fn speech_then_pause_is_one_turn() {
        let events = run(&[silence(200), tone(1000, 8000.0), silence(800)]);
        assert_eq!(
            events,
            vec![VadEvent::SpeechStarted, VadEvent::SpeechEnded { speech_ms: 1000 }]
        );
    }

    #[test]
    fn quiet_noise_is_not_speech() {
        assert!(run(&[tone(2000, 300.0)]).is_empty());
    }

    #[test]
    fn short_clicks_do_not_start_a_turn() {
        assert!(run(&[tone(40, 10000.0), silence(1000)]).is_empty());
    }

    #[test]
    fn short_pauses_inside_a_sentence_do_not_end_the_turn() {
        let events = run(&[tone(500, 8000.0), silence(300), tone(500, 8000.0), silence(700)]);
        assert_eq!(
            events,
            vec![VadEvent::SpeechStarted, VadEvent::SpeechEnded { speech_ms: 1300 }]
        );
    }

    #[test]
    fn chunking_does_not_change_the_result() {
        let whole = [silence(100), tone(900, 6000.0), silence(700)].concat();
        let one = run(std::slice::from_ref(&whole));
        let odd_chunks: Vec<Vec<u8>> = whole.chunks(334).map(<[u8]>::to_vec).collect();
        assert_eq!(one, run(&odd_chunks));
    }
}
