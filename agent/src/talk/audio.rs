//! WAV in and out for `voice-agent talk`: any PCM WAV becomes the 16 kHz mono PCM16 the agent
//! takes, and the reply is saved as PCM16 mono at the agent's output rate.

use std::f64::consts::PI;
use std::path::Path;

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

use super::TalkError;
use crate::protocol::INPUT_SAMPLE_RATE;

/// Turn detection window: 20 ms at 16 kHz.
const SPEECH_WINDOW: usize = 320;
/// A window this loud (RMS of 32768, about -36 dBFS) counts as speech: the threshold of the
/// simulated model's turn detector, well above room noise and below normal speech.
const SPEECH_RMS: f64 = 500.0;
/// Zero crossings of the resampling filter on each side: sharp enough for speech, cheap.
const SINC_ZERO_CROSSINGS: f64 = 8.0;
/// Filter cutoff as a fraction of the lower Nyquist frequency, leaving room for the transition.
const CUTOFF_FRACTION: f64 = 0.92;

/// The input, ready to stream.
#[derive(Debug, Clone)]
pub struct Speech {
    /// 16 kHz mono PCM16.
    pub samples: Vec<i16>,
    /// Where the last speech ends (a sample index), if the input has any.
    pub speech_end: Option<usize>,
    /// What was converted, for the user (`None` when the file was already 16 kHz mono PCM16).
    pub conversion: Option<String>,
}

/// Reads a PCM WAV file (8/16/24/32-bit integer or 32-bit float, any rate, any channels) and
/// converts it to 16 kHz mono PCM16: channels are averaged, the rate is changed with a
/// windowed-sinc filter.
pub fn read_speech(path: &Path) -> Result<Speech, TalkError> {
    let bad = |message: String| TalkError::Input {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = WavReader::open(path).map_err(|e| bad(describe_wav_error(e)))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f64> = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .map(|s| s.map(f64::from))
            .collect::<Result<_, _>>()
            .map_err(|e| bad(describe_wav_error(e)))?,
        (SampleFormat::Int, bits @ 8..=32) => {
            let scale = f64::from(1u32 << (bits - 1));
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| f64::from(v) / scale))
                .collect::<Result<_, _>>()
                .map_err(|e| bad(describe_wav_error(e)))?
        }
        (format, bits) => {
            return Err(bad(format!(
                "unsupported sample format ({bits}-bit {format:?}); use PCM 8/16/24/32-bit or 32-bit float"
            )));
        }
    };
    let mono: Vec<f64> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f64>() / channels as f64)
        .collect();
    if mono.is_empty() {
        return Err(bad("the file holds no audio".to_owned()));
    }
    let resampled = resample(&mono, spec.sample_rate, INPUT_SAMPLE_RATE);
    let samples: Vec<i16> = resampled.iter().map(|&s| to_pcm16(s)).collect();
    let native = spec.sample_rate == INPUT_SAMPLE_RATE
        && spec.channels == 1
        && spec.sample_format == SampleFormat::Int
        && spec.bits_per_sample == 16;
    let conversion = (!native).then(|| {
        format!(
            "converted from {} Hz, {} channel(s), {}-bit {} to 16 kHz mono 16-bit",
            spec.sample_rate,
            spec.channels,
            spec.bits_per_sample,
            match spec.sample_format {
                SampleFormat::Float => "float",
                SampleFormat::Int => "PCM",
            }
        )
    });
    Ok(Speech {
        speech_end: speech_end(&samples),
        samples,
        conversion,
    })
}

fn describe_wav_error(error: hound::Error) -> String {
    match error {
        hound::Error::IoError(e) => e.to_string(),
        hound::Error::FormatError(what) => format!("not a WAV file this client can read ({what})"),
        hound::Error::Unsupported => "unsupported WAV encoding; use uncompressed PCM".to_owned(),
        other => format!("not a usable WAV file ({other})"),
    }
}

fn to_pcm16(sample: f64) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Changes the sample rate with a Hann-windowed sinc interpolator whose cutoff sits below the
/// lower of the two Nyquist frequencies (so downsampling does not alias).
pub fn resample(input: &[f64], from: u32, to: u32) -> Vec<f64> {
    if from == to || input.is_empty() || from == 0 || to == 0 {
        return input.to_vec();
    }
    let step = f64::from(from) / f64::from(to);
    // Cutoff in cycles per input sample, relative to the input Nyquist frequency.
    let cutoff = (1.0 / step).min(1.0) * CUTOFF_FRACTION;
    let half_width = SINC_ZERO_CROSSINGS / cutoff;
    let out_len = (input.len() as f64 / step).floor() as usize;
    let last = input.len() as i64 - 1;
    (0..out_len)
        .map(|n| {
            let t = n as f64 * step;
            let first = ((t - half_width).ceil() as i64).max(0);
            let end = ((t + half_width).floor() as i64).min(last);
            let (mut sum, mut weight) = (0.0, 0.0);
            for k in first..=end {
                let d = t - k as f64;
                let w = sinc(d * cutoff) * 0.5 * (1.0 + (PI * d / half_width).cos());
                sum += input[k as usize] * w;
                weight += w;
            }
            if weight.abs() > 1e-9 { sum / weight } else { 0.0 }
        })
        .collect()
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

/// The sample index just after the last 20 ms window loud enough to be speech.
pub fn speech_end(samples: &[i16]) -> Option<usize> {
    samples
        .chunks(SPEECH_WINDOW)
        .enumerate()
        .rev()
        .find(|(_, window)| {
            let energy: f64 = window.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            (energy / window.len() as f64).sqrt() >= SPEECH_RMS
        })
        .map(|(i, window)| i * SPEECH_WINDOW + window.len())
}

/// Writes PCM16 mono samples as a WAV file.
pub fn write_wav(path: &Path, sample_rate: u32, samples: &[i16]) -> Result<(), TalkError> {
    let fail = |e: hound::Error| TalkError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let spec = WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let mut writer = WavWriter::create(path, spec).map_err(fail)?;
    let mut pcm = writer.get_i16_writer(samples.len() as u32);
    for &s in samples {
        pcm.write_sample(s);
    }
    pcm.flush().map_err(fail)?;
    writer.finalize().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<f64> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin())
            .collect()
    }

    fn rms(samples: &[f64]) -> f64 {
        (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt()
    }

    #[test]
    fn resampling_keeps_speech_band_tones() {
        let input = tone(440.0, 44_100, 1.0, 0.5);
        let output = resample(&input, 44_100, 16_000);
        assert_eq!(output.len(), 16_000);
        // Away from the edges the tone keeps its level (0.5 / sqrt 2).
        let middle = &output[1000..15_000];
        assert!((rms(middle) - 0.5 / 2f64.sqrt()).abs() < 0.01, "{}", rms(middle));
    }

    #[test]
    fn downsampling_removes_tones_above_the_new_nyquist_frequency() {
        // 12 kHz cannot exist at 16 kHz: it must be filtered, not folded to 4 kHz.
        let input = tone(12_000.0, 48_000, 1.0, 0.5);
        let output = resample(&input, 48_000, 16_000);
        assert!(rms(&output[1000..15_000]) < 0.01, "{}", rms(&output[1000..15_000]));
    }

    #[test]
    fn upsampling_keeps_length_and_level() {
        let input = tone(300.0, 8_000, 0.5, 0.25);
        let output = resample(&input, 8_000, 16_000);
        assert_eq!(output.len(), 8_000);
        assert!((rms(&output[500..7_500]) - 0.25 / 2f64.sqrt()).abs() < 0.01);
    }

    #[test]
    fn speech_end_is_after_the_last_loud_window() {
        let mut samples = vec![0i16; 16_000];
        for s in &mut samples[3_200..8_000] {
            *s = 3_000;
        }
        assert_eq!(speech_end(&samples), Some(8_000));
        assert_eq!(speech_end(&[0i16; 4_000]), None);
        assert_eq!(speech_end(&[100i16; 4_000]), None, "room noise is not speech");
    }

    #[test]
    fn wav_round_trip_and_conversion_notes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let native = dir.path().join("native.wav");
        write_wav(&native, 16_000, &[0, 1000, -1000, 0]).expect("write");
        let speech = read_speech(&native).expect("read");
        assert_eq!(speech.samples, vec![0, 1000, -1000, 0]);
        assert!(speech.conversion.is_none());

        let stereo = dir.path().join("stereo.wav");
        let spec = WavSpec {
            channels: 2,
            sample_rate: 32_000,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let mut writer = WavWriter::create(&stereo, spec).expect("create");
        for _ in 0..3_200 {
            writer.write_sample(2000i16).expect("left");
            writer.write_sample(0i16).expect("right");
        }
        writer.finalize().expect("finalize");
        let speech = read_speech(&stereo).expect("read");
        assert_eq!(speech.samples.len(), 1_600);
        assert!((speech.samples[800] - 1000).abs() <= 1, "averaged channels");
        assert!(speech.conversion.expect("converted").contains("32000 Hz, 2 channel(s)"));
    }

    #[test]
    fn rejects_files_that_are_not_wav() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "hello").expect("write");
        let error = read_speech(&path).expect_err("not a wav").to_string();
        assert!(error.contains("not a WAV file"), "{error}");
        let error = read_speech(&dir.path().join("missing.wav")).expect_err("missing");
        assert_eq!(error.exit_code(), 2);
    }
}
