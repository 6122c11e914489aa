//! What the simulated agent says. The simulator cannot understand speech, so it talks about
//! what it can measure, and says so.

/// The user transcript for a spoken turn.
pub fn describe_speech(speech_ms: u64) -> String {
    format!("({} of speech)", seconds(speech_ms))
}

/// The reply to the `turn`-th spoken turn (counting from zero).
pub fn reply_to_speech(turn: u64, speech_ms: u64) -> String {
    let s = seconds(speech_ms);
    match turn % 3 {
        0 => format!("Hello! This is the simulated voice agent. I heard {s} of speech."),
        1 => format!("Got it, that was {s}. I am still listening."),
        _ => format!("Thanks. I measured {s} of audio. Connect a real model for real answers."),
    }
}

/// The reply to a text message: it is echoed back (shortened) so clients can check the path.
pub fn reply_to_text(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().take(16).collect();
    let mut quoted = words.join(" ");
    if text.split_whitespace().count() > words.len() {
        quoted.push_str(" ...");
    }
    if !quoted.ends_with(['.', '!', '?']) {
        quoted.push('.');
    }
    format!("You wrote: {quoted} This is a simulated reply.")
}

/// The words of `text` actually spoken when a reply is cut off after `fraction` of its audio.
pub fn spoken_prefix(text: &str, fraction: f64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let spoken = ((words.len() as f64) * fraction.clamp(0.0, 1.0)).ceil() as usize;
    words[..spoken.min(words.len())].join(" ")
}

fn seconds(ms: u64) -> String {
    format!("{}.{} seconds", ms / 1000, (ms % 1000) / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_replies_mention_the_measured_length() {
        assert_eq!(describe_speech(1340), "(1.3 seconds of speech)");
        assert!(reply_to_speech(0, 1340).contains("1.3 seconds"));
        assert_ne!(reply_to_speech(0, 1000), reply_to_speech(1, 1000));
    }

    #[test]
    fn text_replies_quote_and_shorten_the_input() {
        assert_eq!(
            reply_to_text("hi there"),
            "You wrote: hi there. This is a simulated reply."
        );
        let long = "word ".repeat(40);
        assert!(reply_to_text(&long).contains("..."));
    }

    #[test]
    fn spoken_prefix_rounds_up_to_whole_words() {
        assert_eq!(spoken_prefix("one two three four", 0.3), "one two");
        assert_eq!(spoken_prefix("one two", 0.0), "");
        assert_eq!(spoken_prefix("one two", 1.0), "one two");
    }
}
