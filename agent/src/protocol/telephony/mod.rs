//! Phone calls: the media streams of telephone carriers as wire protocols, one module per
//! carrier ([`twilio`], [`telnyx`], [`vonage`]), each on its own path.
//!
//! Carriers differ from other clients in two ways this module covers for all of them:
//!
//! - **The call announces itself after the upgrade.** Each carrier's first frames (`connected`,
//!   `start`, Vonage's `websocket:connected`) say which call this is, its audio format and the
//!   stream parameters set by the call-setup document. A [`Carrier`] reads them with its
//!   [`Carrier::start`] before the session opens (the server waits for them, so the session's
//!   settings can include the parameters), then builds the session's codec for that call with
//!   [`Carrier::codec`].
//! - **Telephone audio.** μ-law/A-law at 8 kHz or linear PCM at 8/16 kHz in, converted to the
//!   session's 16 kHz PCM16 ([`CallerAudio`]); the session's reply audio converted to the call's
//!   format and cut into the 20 ms frames carriers play ([`ReplyAudio`]).
//!
//! Frames that carry nothing for the session (a `mark` acknowledgement, an unknown event) decode
//! to [`nothing`]: empty audio, which the session takes as a sign of life and does not pass on.

pub mod g711;
mod resample;
pub mod telnyx;
pub mod twilio;
pub mod vonage;

use std::collections::HashMap;

use bytes::Bytes;

use super::{ClientMessage, Codec, DecodeError, EndReason, Frame, INPUT_SAMPLE_RATE, Protocol};
use crate::audio::base64;
use resample::Resampler;

/// Every carrier, by the name of its protocol.
pub const CARRIERS: &[Carrier] = &[twilio::CARRIER, telnyx::CARRIER, vonage::CARRIER];

/// The carrier whose protocol is `name`, if it is one.
pub fn carrier(name: &str) -> Option<&'static Carrier> {
    CARRIERS.iter().find(|c| c.protocol.name == name)
}

/// The carrier served on `path`, if any.
pub fn carrier_on(path: &str) -> Option<&'static Carrier> {
    CARRIERS.iter().find(|c| c.protocol.path == path)
}

/// Frames a carrier may send before its call's start frame (Twilio and Telnyx send one,
/// `connected`); more means the peer is not the carrier it claims to be.
pub const MAX_FRAMES_BEFORE_START: usize = 3;

/// A telephone carrier's media stream.
pub struct Carrier {
    pub protocol: &'static Protocol,
    /// Reads one frame of the stream's beginning: `Ok(None)` for a frame that comes before the
    /// call's start, the start itself, or why the stream cannot be a call.
    pub start: fn(Frame<'_>) -> Result<Option<CallStart>, String>,
    /// The session's codec for a started call, given the session's reply audio rate.
    pub codec: fn(&CallStart, u32) -> Codec,
}

/// What a carrier says about a call when its stream starts.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStart {
    /// The carrier's id of this media stream (Twilio's `streamSid`, Telnyx's `stream_id`).
    pub stream_id: String,
    /// The carrier's id of the call (Twilio's `CallSid`, Telnyx's `call_control_id`).
    pub call_id: Option<String>,
    pub encoding: Encoding,
    /// Sample rate of the call's audio, both ways.
    pub sample_rate: u32,
    /// Stream parameters the call-setup document set (Twilio's `customParameters`, the
    /// `headers` of Vonage's websocket endpoint).
    pub parameters: HashMap<String, String>,
}

/// The audio encodings of phone calls the agent takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// G.711 μ-law (PCMU).
    Ulaw,
    /// G.711 A-law (PCMA).
    Alaw,
    /// 16-bit signed little-endian linear PCM.
    L16,
}

/// A frame that carries nothing for the session.
pub fn nothing() -> ClientMessage {
    ClientMessage::Audio(Bytes::new())
}

/// The carrier ended the call (its `stop` frame): the session ends as if the caller hung up.
pub fn hung_up() -> DecodeError {
    DecodeError::Fatal {
        reason: EndReason::ClientClosed,
        detail: "the carrier ended the call".into(),
    }
}

/// A key the caller pressed, as text for the model (Nova takes such events as cross-modal text
/// input), or `None` for anything that is not a telephone key.
pub fn key_press(digit: &str) -> Option<ClientMessage> {
    let mut chars = digit.chars();
    match (chars.next(), chars.next()) {
        (Some(key @ ('0'..='9' | '*' | '#' | 'A'..='D')), None) => {
            Some(ClientMessage::Text(format!("The caller pressed {key} on the keypad.")))
        }
        _ => None,
    }
}

/// Decodes a base64 audio payload of a JSON frame.
pub fn base64_payload(payload: &str) -> Result<Vec<u8>, DecodeError> {
    base64::decode(payload).ok_or_else(|| DecodeError::fatal(format!("media payload is not {}", base64::EXPECTED)))
}

/// The caller's audio: the call's encoding and rate to the session's 16 kHz PCM16LE.
pub struct CallerAudio {
    encoding: Encoding,
    resampler: Option<Resampler>,
    samples: Vec<i16>,
}

impl CallerAudio {
    pub fn new(encoding: Encoding, sample_rate: u32) -> Self {
        Self {
            encoding,
            resampler: Resampler::new(sample_rate, INPUT_SAMPLE_RATE),
            samples: Vec::with_capacity(INPUT_SAMPLE_RATE as usize / 50),
        }
    }

    /// One payload of the call's audio as session audio (empty while the converter fills).
    pub fn decode(&mut self, payload: &[u8]) -> Result<ClientMessage, DecodeError> {
        let linear: Vec<i16> = match self.encoding {
            Encoding::Ulaw => payload.iter().map(|b| g711::ulaw_decode(*b)).collect(),
            Encoding::Alaw => payload.iter().map(|b| g711::alaw_decode(*b)).collect(),
            Encoding::L16 => {
                if !payload.len().is_multiple_of(2) {
                    return Err(DecodeError::fatal("linear PCM audio must hold whole 16-bit samples"));
                }
                payload
                    .chunks_exact(2)
                    .map(|s| i16::from_le_bytes([s[0], s[1]]))
                    .collect()
            }
        };
        self.samples.clear();
        match &mut self.resampler {
            Some(resampler) => resampler.push(linear, &mut self.samples),
            None => self.samples.extend(linear),
        }
        Ok(ClientMessage::Audio(le_bytes(&self.samples)))
    }
}

/// The session's reply audio for the call: converted to the call's rate and encoding and cut
/// into 20 ms frames, the cadence carriers play. Less than a frame waits for the rest of the
/// reply, and is padded with silence when the reply ends.
pub struct ReplyAudio {
    encoding: Encoding,
    resampler: Option<Resampler>,
    frame_samples: usize,
    pending: Vec<i16>,
}

impl ReplyAudio {
    pub fn new(encoding: Encoding, call_rate: u32, session_rate: u32) -> Self {
        let frame_samples = (call_rate / 50) as usize;
        Self {
            encoding,
            resampler: Resampler::new(session_rate, call_rate),
            frame_samples,
            pending: Vec::with_capacity(frame_samples * 2),
        }
    }

    /// Adds reply audio (PCM16LE at the session's rate); calls `frame` with each whole 20 ms frame.
    pub fn push(&mut self, pcm: &[u8], mut frame: impl FnMut(Vec<u8>)) {
        let samples = pcm.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]]));
        match &mut self.resampler {
            Some(resampler) => resampler.push(samples, &mut self.pending),
            None => self.pending.extend(samples),
        }
        let whole = self.pending.len() / self.frame_samples * self.frame_samples;
        for chunk in self.pending[..whole].chunks(self.frame_samples) {
            frame(self.encode(chunk));
        }
        self.pending.drain(..whole);
    }

    /// The end of a reply: what is left, padded with silence to a whole frame.
    pub fn flush(&mut self, mut frame: impl FnMut(Vec<u8>)) {
        if let Some(resampler) = &mut self.resampler {
            resampler.flush(&mut self.pending);
        }
        let whole = self.pending.len() / self.frame_samples * self.frame_samples;
        for chunk in self.pending[..whole].chunks(self.frame_samples) {
            frame(self.encode(chunk));
        }
        self.pending.drain(..whole);
        if self.pending.is_empty() {
            return;
        }
        self.pending.resize(self.frame_samples, 0);
        frame(self.encode(&self.pending));
        self.pending.clear();
    }

    /// Forgets what is not sent yet (the caller interrupted).
    pub fn clear(&mut self) {
        self.pending.clear();
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
    }

    fn encode(&self, samples: &[i16]) -> Vec<u8> {
        match self.encoding {
            Encoding::Ulaw => samples.iter().map(|s| g711::ulaw_encode(*s)).collect(),
            Encoding::Alaw => samples.iter().map(|s| g711::alaw_encode(*s)).collect(),
            Encoding::L16 => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        }
    }
}

fn le_bytes(samples: &[i16]) -> Bytes {
    Bytes::from(samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>())
}

/// Milliseconds of reply audio between two playback marks: well under a spoken word (about
/// 300 ms), so what the caller heard is known to within a word, for one small message per ten
/// 20 ms media messages.
pub const MARK_INTERVAL_MS: u64 = 200;

/// Longest reply a mark may claim was heard (ms): a bound on what an echo can say.
const MAX_HEARD_MS: u64 = 3_600_000;

/// The playback marks of one call's replies: which reply is playing, how much of its audio was
/// sent, and when the next mark is due. Mark names are `"<reply>:<ms>"`.
#[derive(Debug, Default)]
pub struct PlaybackMarks {
    reply: u32,
    sent_ms: u64,
    marked_ms: u64,
}

impl PlaybackMarks {
    /// A new reply starts (the session's `ResponseStart`).
    pub fn reply_started(&mut self) {
        self.reply = self.reply.saturating_add(1);
        self.sent_ms = 0;
        self.marked_ms = 0;
    }

    /// `frames` 20 ms frames of the reply were sent; the name of the mark to send after them,
    /// when one is due.
    pub fn sent(&mut self, frames: usize) -> Option<String> {
        self.sent_ms = self.sent_ms.saturating_add(20 * frames as u64);
        (self.sent_ms >= self.marked_ms + MARK_INTERVAL_MS).then(|| {
            self.marked_ms = self.sent_ms;
            format!("{}:{}", self.reply, self.sent_ms)
        })
    }

    /// The echo of a mark named `name`: what the caller heard, or `None` for another mark (the
    /// end-of-reply mark, one the agent did not send).
    pub fn heard(name: &str) -> Option<ClientMessage> {
        let (reply, ms) = name.split_once(':')?;
        let ms: u64 = ms.parse().ok().filter(|ms| *ms <= MAX_HEARD_MS)?;
        Some(ClientMessage::Heard {
            reply: reply.parse().ok()?,
            audio: std::time::Duration::from_millis(ms),
        })
    }
}

/// Reads a JSON text frame of a carrier, refusing binary frames where JSON is expected.
pub fn json_frame<'a, T: serde::Deserialize<'a>>(frame: Frame<'a>) -> Result<T, String> {
    match frame {
        Frame::Text(text) => serde_json::from_str(text).map_err(|e| format!("not a frame of this carrier: {e}")),
        Frame::Binary(_) => Err("binary frames are not part of this carrier's protocol".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_fall_every_interval_of_a_reply_and_name_what_was_heard() {
        let mut marks = PlaybackMarks::default();
        marks.reply_started();
        assert_eq!(marks.sent(5), None, "100 ms");
        assert_eq!(marks.sent(5).as_deref(), Some("1:200"));
        assert_eq!(marks.sent(12).as_deref(), Some("1:440"));
        marks.reply_started();
        assert_eq!(marks.sent(10).as_deref(), Some("2:200"));
        assert_eq!(
            PlaybackMarks::heard("2:200"),
            Some(ClientMessage::Heard {
                reply: 2,
                audio: std::time::Duration::from_millis(200)
            })
        );
        for other in ["response-1", "2:", ":5", "x:5", "1:99999999999", "1:-5"] {
            assert_eq!(PlaybackMarks::heard(other), None, "{other}");
        }
    }

    #[test]
    fn every_carrier_has_its_own_path() {
        for (i, a) in CARRIERS.iter().enumerate() {
            assert!(carrier(a.protocol.name).is_some());
            assert_eq!(
                carrier_on(a.protocol.path).map(|c| c.protocol.name),
                Some(a.protocol.name)
            );
            for b in &CARRIERS[i + 1..] {
                assert_ne!(a.protocol.path, b.protocol.path);
            }
            assert!(
                crate::protocol::PROTOCOLS.iter().any(|p| p.name == a.protocol.name),
                "{} is served",
                a.protocol.name
            );
        }
    }

    #[test]
    fn key_presses_become_text_and_odd_digits_do_not() {
        assert_eq!(
            key_press("4"),
            Some(ClientMessage::Text("The caller pressed 4 on the keypad.".into()))
        );
        assert!(key_press("#").is_some());
        assert_eq!(key_press("42"), None);
        assert_eq!(key_press("x"), None);
    }

    #[test]
    fn caller_audio_at_8_khz_becomes_16_khz_pcm() {
        let mut caller = CallerAudio::new(Encoding::Ulaw, 8_000);
        let frame = vec![0xFFu8; 160];
        let mut total = 0;
        for _ in 0..10 {
            let Ok(ClientMessage::Audio(pcm)) = caller.decode(&frame) else {
                panic!("audio")
            };
            total += pcm.len();
        }
        assert_eq!(total, 10 * 640, "20 ms at 16 kHz is 640 bytes");
        let mut wide = CallerAudio::new(Encoding::L16, 16_000);
        assert_eq!(
            wide.decode(&[1, 0, 2, 0]),
            Ok(ClientMessage::Audio(Bytes::from_static(&[1, 0, 2, 0])))
        );
        assert!(wide.decode(&[1, 0, 2]).is_err());
    }

    #[test]
    fn reply_audio_leaves_in_20_ms_frames() {
        let mut reply = ReplyAudio::new(Encoding::Ulaw, 8_000, 24_000);
        let mut frames = Vec::new();
        // 50 ms at 24 kHz: two whole 20 ms frames, and 10 ms waiting.
        reply.push(&vec![0u8; 2_400], |f| frames.push(f));
        reply.push(&[], |f| frames.push(f));
        let before_flush = frames.len();
        reply.flush(|f| frames.push(f));
        assert!(
            frames.iter().all(|f| f.len() == 160),
            "{:?}",
            frames.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert!(
            before_flush >= 1 && frames.len() > before_flush,
            "the last 10 ms leave at the end"
        );
        reply.push(&vec![0u8; 480], |f| frames.push(f));
        reply.clear();
        let count = frames.len();
        reply.flush(|f| frames.push(f));
        assert_eq!(frames.len(), count, "cleared audio is never sent");
    }
}
