//! What the fake saw on each stream, readable while the stream runs (`GET /_fake/streams`), so
//! tests can check what really reached "Bedrock": signing, events, every audio frame, history.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

/// A stable digest of one audio frame's PCM bytes (64-bit FNV-1a, hex). Clients that want to
/// check delivery compute the same over the frames they sent.
pub fn frame_digest(pcm: &[u8]) -> String {
    let hash = pcm.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub role: String,
    pub text: String,
}

#[derive(Debug, Default, Serialize)]
pub struct StreamData {
    pub id: u64,
    pub session_id: String,
    pub model_id: String,
    /// From the SigV4 credential scope of the request.
    pub region: Option<String>,
    pub service: Option<String>,
    pub signed: bool,
    pub http_version: String,
    /// Which client connection carried the stream (numbered from 1 in accept order).
    pub connection: u64,
    /// How many of each input event arrived.
    pub events: BTreeMap<String, u64>,
    pub audio_bytes: u64,
    /// Digest of every audio frame with any non-zero sample, in arrival order.
    pub audio_frames: Vec<String>,
    pub system_prompt: Option<String>,
    /// The `voiceId` of the stream's promptStart.
    pub voice: Option<String>,
    pub history: Vec<HistoryEntry>,
    pub text_inputs: Vec<String>,
    pub tool_results: Vec<String>,
    /// How the stream ended: `client_closed` (the client ended its input),
    /// `client_disconnected` (the connection or the request went away without that), or the
    /// exception it was answered with.
    pub ended: Option<String>,
    /// Whether the fake's response reached its end while the client was still there: a client
    /// that exits or resets the stream first leaves this false.
    pub response_completed: bool,
}

/// A shared, live view of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamRecord(Arc<Mutex<StreamData>>);

impl StreamRecord {
    pub fn new(data: StreamData) -> Self {
        Self(Arc::new(Mutex::new(data)))
    }

    fn data(&self) -> MutexGuard<'_, StreamData> {
        // A panic while holding this lock would only come from a bug in this module; the data
        // is still usable for reporting.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&*self.data()).unwrap_or_default()
    }

    pub fn session_id(&self) -> String {
        self.data().session_id.clone()
    }

    pub fn count_event(&self, name: &str) {
        *self.data().events.entry(name.to_owned()).or_default() += 1;
    }

    pub fn audio(&self, pcm: &[u8]) {
        let mut data = self.data();
        data.audio_bytes += pcm.len() as u64;
        if pcm.iter().any(|b| *b != 0) {
            data.audio_frames.push(frame_digest(pcm));
        }
    }

    pub fn voice(&self, voice: &str) {
        self.data().voice = Some(voice.to_owned());
    }

    pub fn system_prompt(&self, text: String) {
        self.data().system_prompt = Some(text);
    }

    pub fn history(&self, role: &str, text: String) {
        self.data().history.push(HistoryEntry {
            role: role.to_owned(),
            text,
        });
    }

    pub fn text_input(&self, text: String) {
        self.data().text_inputs.push(text);
    }

    pub fn tool_result(&self, content: String) {
        self.data().tool_results.push(content);
    }

    pub fn response_completed(&self) {
        self.data().response_completed = true;
    }

    pub fn ended(&self, how: impl Into<String>) {
        let mut data = self.data();
        if data.ended.is_none() {
            data.ended = Some(how.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_stable_and_distinguish_frames() {
        assert_eq!(frame_digest(b""), "cbf29ce484222325");
        assert_ne!(frame_digest(&[1, 0]), frame_digest(&[0, 1]));
    }

    #[test]
    fn silent_frames_are_counted_but_not_listed() {
        let record = StreamRecord::default();
        record.audio(&[0, 0, 0, 0]);
        record.audio(&[1, 0]);
        let snapshot = record.snapshot();
        assert_eq!(snapshot["audio_bytes"], 6);
        assert_eq!(snapshot["audio_frames"].as_array().map(Vec::len), Some(1));
    }
}
