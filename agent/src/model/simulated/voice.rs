//! A tiny formant-style voice: turns reply text into speech-like PCM (voiced syllables with a
//! falling pitch contour, consonant noise, pauses between words and sentences). It is rendered
//! lazily chunk by chunk, so a long reply costs no memory, and it is a pure function of the text.

use std::f32::consts::TAU;

/// Harmonics summed per voiced sample; six keep vowels distinguishable at a modest CPU cost.
const HARMONICS: usize = 6;
const PEAK: f32 = 9000.0;

#[derive(Debug, Clone)]
struct Syllable {
    start: usize,
    len: usize,
    f0_start: f32,
    f0_end: f32,
    formants: (f32, f32),
    /// Samples of consonant noise before the vowel.
    onset: usize,
}

/// The reply audio plan: syllables placed on a sample timeline.
#[derive(Debug, Clone)]
pub struct Utterance {
    syllables: Vec<Syllable>,
    total: usize,
    rate: f32,
    seed: u32,
}

impl Utterance {
    pub fn from_text(text: &str, sample_rate: u32) -> Self {
        let rate = sample_rate as f32;
        let ms = |v: f32| (v * rate / 1000.0) as usize;
        let words: Vec<&str> = text.split_whitespace().collect();
        let question = text.trim_end().ends_with('?');
        let total_syllables: usize = words.iter().map(|w| vowel_groups(w).len().max(1)).sum();
        let mut syllables = Vec::with_capacity(total_syllables);
        let mut cursor = ms(80.0);
        let mut index = 0usize;
        for word in &words {
            let groups = vowel_groups(word);
            let groups = if groups.is_empty() { vec![(0, 'a')] } else { groups };
            for (n, (consonants, vowel)) in groups.iter().enumerate() {
                let progress = index as f32 / total_syllables.max(1) as f32;
                // Declination from 200 Hz to 150 Hz across the reply, a lift on stressed
                // (word-initial) syllables, and a rise at the end of questions.
                let mut f0 = 200.0 - 50.0 * progress + if n == 0 { 15.0 } else { 0.0 };
                if question && progress > 0.8 {
                    f0 += 120.0 * (progress - 0.8);
                }
                let len = ms(130.0 + 15.0 * (*consonants).min(3) as f32 + if n == 0 { 30.0 } else { 0.0 });
                let onset = ms(12.0 * (*consonants).min(3) as f32);
                syllables.push(Syllable {
                    start: cursor,
                    len,
                    f0_start: f0,
                    f0_end: f0 - 12.0,
                    formants: formants(*vowel),
                    onset,
                });
                cursor += len + ms(10.0);
                index += 1;
            }
            cursor += match word.chars().last() {
                Some('.' | '!' | '?') => ms(320.0),
                Some(',' | ';' | ':') => ms(160.0),
                _ => ms(55.0),
            };
        }
        Self {
            syllables,
            total: cursor + ms(60.0),
            rate,
            seed: text
                .bytes()
                .fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619)),
        }
    }

    /// Total length in samples.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Renders samples `[offset, offset + count)` (clipped to the end) as PCM16LE bytes.
    pub fn render(&self, offset: usize, count: usize, out: &mut Vec<u8>) {
        let end = (offset + count).min(self.total);
        let mut next = self.syllables.partition_point(|s| s.start + s.len <= offset);
        for i in offset..end {
            while next < self.syllables.len() && self.syllables[next].start + self.syllables[next].len <= i {
                next += 1;
            }
            let value = match self.syllables.get(next) {
                Some(s) if i >= s.start => self.sample(s, i - s.start, i),
                _ => 0.0,
            };
            out.extend_from_slice(&(value.clamp(-32767.0, 32767.0) as i16).to_le_bytes());
        }
    }

    fn sample(&self, s: &Syllable, k: usize, absolute: usize) -> f32 {
        let t = k as f32 / self.rate;
        let duration = s.len as f32 / self.rate;
        let attack = 0.02;
        let release = 0.04;
        let envelope = if t < attack {
            0.5 - 0.5 * (std::f32::consts::PI * t / attack).cos()
        } else if t > duration - release {
            0.5 - 0.5 * (std::f32::consts::PI * (duration - t).max(0.0) / release).cos()
        } else {
            1.0
        };
        if k < s.onset {
            // Consonant: soft deterministic noise.
            return PEAK * 0.18 * envelope * noise(self.seed, absolute);
        }
        // Linear pitch glide; phase is the integral of f0.
        let slope = (s.f0_end - s.f0_start) / duration;
        let phase = s.f0_start * t + 0.5 * slope * t * t;
        let mut value = 0.0;
        let mut norm = 0.0;
        for h in 1..=HARMONICS {
            let hf = h as f32;
            let freq = hf * (s.f0_start + slope * t);
            let weight = (bump(freq, s.formants.0, 160.0) + 0.6 * bump(freq, s.formants.1, 260.0) + 0.08) / hf.sqrt();
            value += weight * (TAU * hf * phase).sin();
            norm += weight;
        }
        PEAK * envelope * value / norm.max(1e-3)
    }
}

fn bump(freq: f32, center: f32, width: f32) -> f32 {
    let d = (freq - center) / width;
    (-0.5 * d * d).exp()
}

fn noise(seed: u32, i: usize) -> f32 {
    let mut x = seed ^ (i as u32).wrapping_mul(0x9E37_79B9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    (x as f32 / u32::MAX as f32) * 2.0 - 1.0
}

/// First and second formant of a vowel letter (Hz), rough adult averages.
fn formants(vowel: char) -> (f32, f32) {
    match vowel {
        'a' => (730.0, 1090.0),
        'e' => (530.0, 1840.0),
        'i' | 'y' => (300.0, 2250.0),
        'o' => (570.0, 840.0),
        _ => (320.0, 900.0),
    }
}

/// Splits a word into syllables: (consonants before the vowel group, first vowel of the group).
fn vowel_groups(word: &str) -> Vec<(usize, char)> {
    let mut groups = Vec::new();
    let mut consonants = 0;
    let mut in_vowel = false;
    for c in word.chars().flat_map(char::to_lowercase) {
        if !c.is_alphabetic() {
            continue;
        }
        if "aeiouy".contains(c) {
            if !in_vowel {
                groups.push((consonants, c));
                consonants = 0;
            }
            in_vowel = true;
        } else {
            consonants += 1;
            in_vowel = false;
        }
    }
    groups.truncate(4);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_all(u: &Utterance) -> Vec<i16> {
        let mut bytes = Vec::new();
        u.render(0, u.len(), &mut bytes);
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn length_grows_with_text_and_is_speech_paced() {
        let short = Utterance::from_text("Hello there.", 24_000);
        let long = Utterance::from_text("Hello there, this is a much longer reply with many words.", 24_000);
        assert!(long.len() > 2 * short.len());
        let seconds = long.len() as f64 / 24_000.0;
        assert!((2.0..6.0).contains(&seconds), "{seconds} s");
    }

    #[test]
    fn audio_is_audible_and_has_pauses() {
        let samples = render_all(&Utterance::from_text("One two. Three four.", 24_000));
        assert!(rms(&samples) > 1000.0, "rms {}", rms(&samples));
        let quiet_windows = samples.chunks(480).filter(|w| rms(w) < 50.0).count();
        assert!(quiet_windows >= 5, "expected gaps between words, got {quiet_windows}");
    }

    #[test]
    fn rendering_in_chunks_equals_rendering_at_once() {
        let u = Utterance::from_text("Chunked rendering must be seamless.", 24_000);
        let mut whole = Vec::new();
        u.render(0, u.len(), &mut whole);
        let mut pieces = Vec::new();
        let mut offset = 0;
        while offset < u.len() {
            u.render(offset, 768, &mut pieces);
            offset += 768;
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn same_text_same_audio() {
        let a = render_all(&Utterance::from_text("Deterministic?", 24_000));
        let b = render_all(&Utterance::from_text("Deterministic?", 24_000));
        assert_eq!(a, b);
    }
}
