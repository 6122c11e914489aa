//! The conversation history replayed into a new Bedrock stream, within Nova's limits: about
//! 40 KB in total, the first message from the user, oldest messages dropped first. Messages
//! longer than one text input are split into several inputs by the wire layer.

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
}

#[derive(Debug, Default)]
pub struct History {
    messages: VecDeque<Message>,
    bytes: usize,
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
        let text = keep_end(text, MAX_MESSAGE_BYTES);
        self.bytes += text.len();
        self.messages.push_back(Message {
            role,
            text: text.to_owned(),
        });
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
    fn very_long_messages_keep_their_end() {
        let mut h = History::default();
        let long = format!("{}END", "a".repeat(20_000));
        h.push(Role::User, &long);
        let kept = &h.replay().next().expect("message").text;
        assert_eq!(kept.len(), MAX_MESSAGE_BYTES);
        assert!(kept.ends_with("END"));
    }
}
