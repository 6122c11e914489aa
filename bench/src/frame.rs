//! Audio frames as the load generator sends and reads them, in both wire encodings.
//!
//! In loopback runs every frame carries a stamp in its first bytes: when it was sent and its
//! sequence number. The loopback model returns input audio byte for byte, so the echo brings
//! the stamp back and the generator measures the round trip per frame without any bookkeeping.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

/// One frame of microphone audio: 32 ms, the cadence clients and Nova Sonic use.
pub const FRAME: Duration = Duration::from_millis(32);
/// 512 samples of PCM16LE at 16 kHz.
pub const FRAME_BYTES: usize = 1024;
/// Send time (nanoseconds since the run's epoch) then sequence number, both u64 LE.
pub const STAMP_BYTES: usize = 16;

/// The conversation workload speaks for one second, then listens: long enough for the
/// simulated model's reply (about five seconds) to finish before the next question.
const SPEECH_FRAMES: u64 = 31;
/// Samples per frame (16 kHz PCM16).
const FRAME_SAMPLES: u64 = FRAME_BYTES as u64 / 2;
/// The simulated model's turn detector (`agent/src/audio/vad.rs`, which the Bedrock fake runs):
/// 20 ms analysis windows counted in samples from the stream's first byte, and 30 silent windows
/// end a turn. Mirrored here so the generator knows which of its frames ends each turn.
const VAD_WINDOW_SAMPLES: u64 = 320;
const VAD_HANGOVER_WINDOWS: u64 = 30;
/// Fewer speech frames than this may not start a turn (the detector needs 60 ms of speech).
const MIN_TURN_FRAMES: u64 = 3;
const CYCLE_FRAMES: u64 = 250;
/// A 220 Hz tone well above the simulator's speech threshold.
const TONE_HZ: f64 = 220.0;
const TONE_AMPLITUDE: f64 = 8000.0;
const INPUT_RATE: f64 = 16_000.0;

/// How audio travels on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Raw PCM in binary frames both ways (`?audio_output=binary`).
    Binary,
    /// `bidi_audio_input` / `bidi_audio_stream` events with base64 audio.
    Json,
}

impl Encoding {
    pub fn query(self) -> &'static str {
        match self {
            Self::Binary => "?audio_output=binary",
            Self::Json => "?audio_output=json",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Json => "json",
        }
    }
}

/// A silent frame carrying a stamp.
pub fn stamped_frame(sent_ns: u64, seq: u64) -> Vec<u8> {
    let mut pcm = vec![0u8; FRAME_BYTES];
    pcm[..8].copy_from_slice(&sent_ns.to_le_bytes());
    pcm[8..STAMP_BYTES].copy_from_slice(&seq.to_le_bytes());
    pcm
}

/// The stamp of an echoed frame: (send time in ns, sequence number).
pub fn read_stamp(pcm: &[u8]) -> Option<(u64, u64)> {
    let sent = pcm.get(..8)?.try_into().ok()?;
    let seq = pcm.get(8..STAMP_BYTES)?.try_into().ok()?;
    Some((u64::from_le_bytes(sent), u64::from_le_bytes(seq)))
}

/// The Bedrock fake's reply stamp (`fake-bedrock --stamp-replies`): the first 16 bytes of each
/// reply's first audio chunk are this marker, then the time the fake sent it (nanoseconds since
/// the Unix epoch, u64 LE). Mirrored from the fake, which is not a dependency of the generator;
/// a test checks both read the same stamp.
const REPLY_STAMP_MAGIC: &[u8; 8] = b"FAKESTMP";

/// When the fake sent this reply chunk, if it carries the fake's stamp.
pub fn read_reply_stamp(pcm: &[u8]) -> Option<std::time::SystemTime> {
    let (magic, rest) = pcm.split_first_chunk::<8>()?;
    let (sent, _) = rest.split_first_chunk::<8>()?;
    (magic == REPLY_STAMP_MAGIC).then(|| std::time::UNIX_EPOCH + Duration::from_nanos(u64::from_le_bytes(*sent)))
}

/// Frame `index` of a caller who asks a one-second question every eight seconds.
pub fn speech_frame(index: u64) -> Vec<u8> {
    let mut pcm = vec![0u8; FRAME_BYTES];
    if index % CYCLE_FRAMES < SPEECH_FRAMES {
        let first = index * (FRAME_BYTES as u64 / 2);
        for (i, sample) in pcm.chunks_exact_mut(2).enumerate() {
            let t = (first + i as u64) as f64 / INPUT_RATE;
            let v = (TONE_AMPLITUDE * (std::f64::consts::TAU * TONE_HZ * t).sin()) as i16;
            sample.copy_from_slice(&v.to_le_bytes());
        }
    }
    pcm
}

/// Whether frame `index` of the conversation workload carries speech.
pub fn is_speech(index: u64) -> bool {
    index % CYCLE_FRAMES < SPEECH_FRAMES
}

/// The frame (counted from a stream's first) whose arrival makes the simulated model end the
/// turn, for a speech run that ended just before frame `first_silent`, or `None` when the run was
/// too short to be a turn. Any window holding some of the tone counts as speech (frames of 512
/// samples overlap windows of 320 by at least 64, and that much of the tone is far above the
/// detector's threshold), so the turn ends once `VAD_HANGOVER_WINDOWS` whole silent windows have
/// arrived after the last speech sample.
pub fn turn_end_frame(first_silent: u64, speech_frames: u64) -> Option<u64> {
    if speech_frames < MIN_TURN_FRAMES {
        return None;
    }
    let speech_end = first_silent * FRAME_SAMPLES;
    let first_silent_window = speech_end.div_ceil(VAD_WINDOW_SAMPLES);
    let turn_end = (first_silent_window + VAD_HANGOVER_WINDOWS) * VAD_WINDOW_SAMPLES;
    Some((turn_end - 1) / FRAME_SAMPLES)
}

/// Frames per question-and-answer cycle, for spreading sessions over the cycle.
pub fn speech_cycle_frames() -> u64 {
    CYCLE_FRAMES
}

/// Wraps PCM for the socket.
pub fn audio_message(pcm: Vec<u8>, encoding: Encoding) -> Message {
    match encoding {
        Encoding::Binary => Message::Binary(pcm.into()),
        Encoding::Json => Message::Text(
            format!(
                r#"{{"type":"bidi_audio_input","audio":"{}","format":"pcm","sample_rate":16000,"channels":1}}"#,
                BASE64.encode(pcm)
            )
            .into(),
        ),
    }
}

/// Which event schema the server speaks. Input is the same in both; the generator reads reply
/// audio and response boundaries in either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// The agent's default: Strands `BidiAgent` up to 1.40 (`bidi_audio_stream`,
    /// `bidi_response_complete`).
    #[default]
    #[value(name = "strands-1.40")]
    #[serde(rename = "strands-1.40")]
    Strands140,
    /// What Strands 1.62's `BidiAgent` yields (`bidi_audio_delta`, `bidi_response_stop`): the
    /// agent's `?protocol=strands-1.62`, and what the Strands and Pipecat peers send.
    #[value(name = "strands-1.62")]
    #[serde(rename = "strands-1.62")]
    Strands162,
}

impl Protocol {
    /// Added to the encoding's query.
    pub fn query(self) -> &'static str {
        match self {
            Self::Strands140 => "",
            Self::Strands162 => "&protocol=strands-1.62",
        }
    }
}

/// What a message from the server is, as far as the generator cares.
#[derive(Debug, PartialEq)]
pub enum Incoming<'a> {
    /// Reply audio (PCM16LE), from a binary frame, a `bidi_audio_stream` event (Strands 1.40) or
    /// a `bidi_audio_delta` event (Strands 1.62).
    Audio(Cow<'a, [u8]>),
    /// Any other JSON event, by `type`.
    Event(String),
    /// Pings, pongs, close frames, and text the generator could not read.
    Other,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    audio: Option<Cow<'a, str>>,
}

pub fn classify(message: &Message) -> Incoming<'_> {
    match message {
        Message::Binary(pcm) => Incoming::Audio(Cow::Borrowed(pcm)),
        Message::Text(text) => match serde_json::from_str::<Envelope<'_>>(text.as_str()) {
            Ok(Envelope {
                kind,
                audio: Some(audio),
            }) if kind == "bidi_audio_stream" || kind == "bidi_audio_delta" => match BASE64.decode(audio.as_bytes()) {
                Ok(pcm) => Incoming::Audio(Cow::Owned(pcm)),
                Err(_) => Incoming::Other,
            },
            Ok(Envelope { kind, .. }) => Incoming::Event(kind.into_owned()),
            Err(_) => Incoming::Other,
        },
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fakes_reply_stamp() {
        let mut pcm = vec![0u8; 64];
        pcm[..8].copy_from_slice(fake_bedrock::REPLY_STAMP_MAGIC);
        pcm[8..16].copy_from_slice(&1_234_567_890_123u64.to_le_bytes());
        assert_eq!(fake_bedrock::reply_stamp(&pcm), Some(1_234_567_890_123));
        assert_eq!(
            read_reply_stamp(&pcm),
            Some(std::time::UNIX_EPOCH + Duration::from_nanos(1_234_567_890_123))
        );
        assert_eq!(read_reply_stamp(&[0u8; 64]), None);
        assert_eq!(read_reply_stamp(&pcm[..15]), None);
    }

    #[test]
    fn stamps_survive_both_encodings() {
        let pcm = stamped_frame(123_456_789, 42);
        assert_eq!(read_stamp(&pcm), Some((123_456_789, 42)));
        let binary = audio_message(pcm.clone(), Encoding::Binary);
        let Incoming::Audio(back) = classify(&binary) else {
            panic!("binary audio not recognised");
        };
        assert_eq!(read_stamp(&back), Some((123_456_789, 42)));

        // The agent answers JSON clients with bidi_audio_stream; same base64 payload.
        let reply = format!(
            r#"{{"type":"bidi_audio_stream","audio":"{}","format":"pcm","sample_rate":24000,"channels":1}}"#,
            BASE64.encode(&pcm)
        );
        let message = Message::Text(reply.into());
        let Incoming::Audio(back) = classify(&message) else {
            panic!("json audio not recognised");
        };
        assert_eq!(read_stamp(&back), Some((123_456_789, 42)));
    }

    #[test]
    fn strands_1_62_audio_is_reply_audio() {
        let pcm = stamped_frame(7, 1);
        let delta = format!(
            r#"{{"type":"bidi_audio_delta","audio":"{}","format":"pcm","sample_rate":24000,"channels":1,"content_id":"c1"}}"#,
            BASE64.encode(&pcm)
        );
        let message = Message::Text(delta.into());
        let Incoming::Audio(back) = classify(&message) else {
            panic!("bidi_audio_delta not recognised");
        };
        assert_eq!(back.as_ref(), pcm.as_slice());
    }

    #[test]
    fn turn_ends_after_thirty_silent_windows() {
        // Speech over frames 0..31 ends at sample 15872, inside window 49; windows 50..=79 are
        // silent and window 79 ends at sample 25600, the end of frame 49.
        assert_eq!(turn_end_frame(31, 31), Some(49));
        // Speech ending on a window boundary (frame 5 = sample 2560 = window 8): windows 8..=37
        // are silent, ending at sample 12160, inside frame 23.
        assert_eq!(turn_end_frame(5, 5), Some(23));
        assert_eq!(turn_end_frame(31, 2), None);
    }

    #[test]
    fn turn_end_matches_the_simulated_models_detector() {
        use voice_agent::audio::vad::{TurnDetector, VadEvent};
        // Sessions join the cycle anywhere, so speech starts at every alignment of frames to
        // windows; the detector must end the turn on exactly the predicted frame.
        for lead in 0..10u64 {
            let mut detector = TurnDetector::default();
            let mut events = Vec::new();
            let mut ended_at = None;
            let first_silent = lead + SPEECH_FRAMES;
            for index in 0..lead + 100 {
                let speech = (lead..first_silent).contains(&index);
                let pcm = speech_frame(if speech { index - lead } else { SPEECH_FRAMES });
                detector.push(&pcm, &mut events);
                if events.iter().any(|e| matches!(e, VadEvent::SpeechEnded { .. })) && ended_at.is_none() {
                    ended_at = Some(index);
                }
                events.clear();
            }
            assert_eq!(ended_at, turn_end_frame(first_silent, SPEECH_FRAMES), "lead {lead}");
        }
    }

    #[test]
    fn other_events_are_named_by_type() {
        let message = Message::Text(r#"{"type": "bidi_response_start", "response_id": "r1"}"#.into());
        assert_eq!(classify(&message), Incoming::Event("bidi_response_start".into()));
        assert_eq!(classify(&Message::Text("not json".into())), Incoming::Other);
    }

    #[test]
    fn speech_frames_alternate_question_and_silence() {
        assert!(speech_frame(0).iter().any(|&b| b != 0));
        assert!(speech_frame(SPEECH_FRAMES).iter().all(|&b| b == 0));
        assert!(speech_frame(CYCLE_FRAMES).iter().any(|&b| b != 0));
        assert_eq!(speech_frame(7).len(), FRAME_BYTES);
    }

    #[test]
    fn short_payloads_have_no_stamp() {
        assert_eq!(read_stamp(&[0; 10]), None);
    }
}
