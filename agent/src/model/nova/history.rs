//! The conversation history replayed into a new Bedrock stream, within Nova's limits: about
//! 40 KB in total, the first message from the user, oldest messages dropped first. Messages
//! longer than one text input are split into several inputs by the wire layer.
//!
//! An interrupted reply keeps only what the caller heard when the session learns it (a phone
//! carrier's playback marks): the reply's assistant messages, those already recorded and those
//! still to come, become the words spoken in the heard fraction of its audio.

use std::collections::VecDeque;

use crate::model::Role;

/// Nova's limit for the whole replayed history (bytes of text).
const MAX_TOTAL_BYTES: usize = 40_000;
/// Longest single message kept (bytes); longer ones keep their end, the most recent words.
const MAX_MESSAGE_BYTES: usize = 8_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub text: String,
    /// The reply an assistant message belongs to (a count of replies), if any.
    reply: Option<u64>,
}

#[derive(Debug, Default)]
pub struct History {
    messages: VecDeque<Message>,
    bytes: usize,
    /// Replies started so far; the last one is the current reply.
    replies: u64,
    /// The reply the caller last interrupted.
    interrupted: Option<u64>,
    /// What the caller heard of the interrupted reply, once known.
    cut: Option<Cut>,
}

/// An interrupted reply's words and the fraction of its audio the caller heard.
#[derive(Debug)]
struct Cut {
    reply: u64,
    fraction: f64,
    /// Every word the model said in the reply, in order.
    said: String,
}

impl History {
    /// Records a message. Consecutive duplicates (a text input echoed back as a transcript)
    /// are kept once.
    pub fn push(&mut self, role: Role, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if self.messages.back().is_some_and(|m| m.role == role && m.text == text) {
            return;
        }
        let reply = (role == Role::Assistant && self.replies > 0).then_some(self.replies);
        if let Some(cut) = self.cut.as_mut().filter(|c| Some(c.reply) == reply) {
            cut.said.push(' ');
            cut.said.push_str(text);
            self.apply_cut();
            return;
        }
        let text = keep_end(text, MAX_MESSAGE_BYTES);
        self.bytes += text.len();
        self.messages.push_back(Message {
            role,
            text: text.to_owned(),
            reply,
        });
        self.trim();
    }

    /// A reply starts: the assistant messages that follow belong to it.
    pub fn reply_started(&mut self) {
        self.replies += 1;
    }

    /// The caller spoke over the current reply.
    pub fn reply_interrupted(&mut self) {
        self.interrupted = Some(self.replies).filter(|r| *r > 0);
    }

    /// The caller heard `fraction` of the interrupted reply's audio: its messages keep the words
    /// spoken in that fraction (the words are assumed evenly spread over the audio).
    pub fn reply_heard(&mut self, fraction: f64) {
        let Some(reply) = self.interrupted else {
            return;
        };
        let said: Vec<&str> = self
            .messages
            .iter()
            .filter(|m| m.reply == Some(reply))
            .map(|m| m.text.as_str())
            .collect();
        self.cut = Some(Cut {
            reply,
            fraction: fraction.clamp(0.0, 1.0),
            said: said.join(" "),
        });
        self.apply_cut();
    }

    /// Replaces the cut reply's messages with one message of the words heard (none if none).
    fn apply_cut(&mut self) {
        let Some(cut) = &self.cut else {
            return;
        };
        let Some(at) = self.messages.iter().position(|m| m.reply == Some(cut.reply)) else {
            // Its words have not arrived yet, or were dropped as the oldest.
            let heard = heard_words(&cut.said, cut.fraction);
            if !heard.is_empty() {
                let reply = Some(cut.reply);
                self.bytes += heard.len();
                self.messages.push_back(Message {
                    role: Role::Assistant,
                    text: heard,
                    reply,
                });
                self.trim();
            }
            return;
        };
        let heard = heard_words(&cut.said, cut.fraction);
        let reply = Some(cut.reply);
        let mut index = 0;
        self.messages.retain(|m| {
            let keep = m.reply != reply || index == at;
            index += 1;
            keep
        });
        if heard.is_empty() {
            self.messages.remove(at);
        } else if let Some(message) = self.messages.get_mut(at) {
            message.text = keep_end(&heard, MAX_MESSAGE_BYTES).to_owned();
        }
        self.bytes = self.messages.iter().map(|m| m.text.len()).sum::<usize>();
    }

    fn trim(&mut self) {
        while self.bytes > MAX_TOTAL_BYTES {
            match self.messages.pop_front() {
                Some(old) => self.bytes -= old.text.len(),
                None => break,
            }
        }
    }

    /// The messages to replay: within the total limit, starting with a user message.
    pub fn replay(&self) -> impl Iterator<Item = &Message> {
        let first_user = self
            .messages
            .iter()
            .position(|m| m.role == Role::User)
            .unwrap_or(self.messages.len());
        self.messages.iter().skip(first_user)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }
}

/// The words of `text` spoken in `fraction` of its audio, rounded down to whole words: a word
/// cut off in the middle was not heard.
fn heard_words(text: &str, fraction: f64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let heard = ((words.len() as f64) * fraction.clamp(0.0, 1.0)).floor() as usize;
    words[..heard.min(words.len())].join(" ")
}

fn keep_end(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replayed(h: &History) -> Vec<(Role, String)> {
        h.replay().map(|m| (m.role, m.text.clone())).collect()
    }

    #[test]
    fn keeps_messages_in_order() {
        let mut h = History::default();
        h.push(Role::User, "hi");
        h.push(Role::Assistant, "hello");
        assert_eq!(
            replayed(&h),
            vec![(Role::User, "hi".into()), (Role::Assistant, "hello".into())]
        );
    }

    #[test]
    fn replay_starts_with_a_user_message() {
        let mut h = History::default();
        h.push(Role::Assistant, "Welcome!");
        h.push(Role::User, "thanks");
        assert_eq!(replayed(&h), vec![(Role::User, "thanks".into())]);
    }

    #[test]
    fn drops_the_oldest_messages_beyond_40kb() {
        let mut h = History::default();
        for i in 0..100 {
            let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
            h.push(role, &format!("{i:03} {}", "x".repeat(996)));
        }
        let total: usize = h.replay().map(|m| m.text.len()).sum();
        assert!(total <= MAX_TOTAL_BYTES);
        let first = h.replay().next().expect("messages");
        assert_eq!(first.role, Role::User);
        assert!(!first.text.starts_with("000"), "oldest dropped first");
        assert!(h.replay().last().expect("last").text.starts_with("099"), "newest kept");
    }

    #[test]
    fn ignores_empty_and_repeated_messages() {
        let mut h = History::default();
        h.push(Role::User, "  ");
        h.push(Role::User, "book a table");
        h.push(Role::User, "book a table");
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn an_interrupted_reply_keeps_the_words_the_caller_heard() {
        let mut h = History::default();
        h.push(Role::User, "what are your opening hours");
        h.reply_started();
        // Nova finishes a reply in several blocks; two arrive before the interruption.
        h.push(Role::Assistant, "We open at nine");
        h.push(Role::Assistant, "and close at six on weekdays");
        h.reply_interrupted();
        h.reply_heard(0.5);
        // A block that arrives after the caller was heard is cut too.
        h.push(Role::Assistant, "and at noon on Saturdays");
        h.push(Role::User, "thanks");
        assert_eq!(
            replayed(&h),
            vec![
                (Role::User, "what are your opening hours".into()),
                (Role::Assistant, "We open at nine and close at".into()),
                (Role::User, "thanks".into()),
            ]
        );
        // The next reply is whole.
        h.reply_started();
        h.push(Role::Assistant, "You are welcome.");
        assert_eq!(replayed(&h).last(), Some(&(Role::Assistant, "You are welcome.".into())));
    }

    #[test]
    fn a_reply_the_caller_did_not_hear_leaves_no_message() {
        let mut h = History::default();
        h.push(Role::User, "hello");
        h.reply_started();
        h.push(Role::Assistant, "Hello, how can I help you today?");
        h.reply_interrupted();
        h.reply_heard(0.0);
        assert_eq!(replayed(&h), vec![(Role::User, "hello".into())]);
        // Without an interruption, a heard report changes nothing.
        let mut whole = History::default();
        whole.push(Role::User, "hello");
        whole.reply_started();
        whole.push(Role::Assistant, "Hi there.");
        whole.reply_heard(0.1);
        assert_eq!(replayed(&whole).len(), 2);
    }

    #[test]
    fn very_long_messages_keep_their_end() {
        let mut h = History::default();
        let long = format!("{}END", "a".repeat(20_000));
        h.push(Role::User, &long);
        let kept = &h.replay().next().expect("message").text;
        assert_eq!(kept.len(), MAX_MESSAGE_BYTES);
        assert!(kept.ends_with("END"));
    }
}
