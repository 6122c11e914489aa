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

/// What the simulated agent says first when a greeting instruction asks it to speak first. It
/// cannot follow the instruction, so it says it was given one.
pub fn greeting(instruction: &str) -> String {
    let words = instruction.split_whitespace().count();
    format!("Hello! This is the simulated voice agent, greeting you as instructed ({words} words of instruction).")
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

/// A tool call asked for in a text message with `tool:<name> {json arguments}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    pub name: String,
    pub input: serde_json::Value,
}

/// Finds `tool:<name>` requests in a text message, each optionally followed by a JSON object
/// of arguments. The simulator cannot understand requests, so tools are asked for explicitly.
pub fn tool_requests(text: &str) -> Vec<ToolRequest> {
    let mut requests = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("tool:") {
        rest = &rest[at + "tool:".len()..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        rest = &rest[name_len..];
        if name.is_empty() {
            continue;
        }
        let mut input = serde_json::Value::Object(Default::default());
        let trimmed = rest.trim_start();
        if trimmed.starts_with('{') {
            let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<serde_json::Value>();
            if let Some(Ok(value)) = stream.next() {
                let consumed = stream.byte_offset();
                input = value;
                rest = &trimmed[consumed..];
            }
        }
        requests.push(ToolRequest {
            name: name.to_owned(),
            input,
        });
    }
    requests
}

/// What the agent says once a tool answered.
pub fn reply_to_tool(name: &str, content: &str, is_error: bool) -> String {
    let mut said: String = content.chars().take(160).collect();
    if said.len() < content.len() {
        said.push_str(" ...");
    }
    if is_error {
        format!("Sorry, the {name} tool failed: {said}")
    } else {
        format!("The {name} tool says: {said}")
    }
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
    fn finds_tool_requests_with_arguments() {
        let requests = tool_requests(r#"check tool:get_weather {"city": "Paris"} and tool:now please"#);
        assert_eq!(
            requests,
            vec![
                ToolRequest {
                    name: "get_weather".into(),
                    input: serde_json::json!({"city": "Paris"})
                },
                ToolRequest {
                    name: "now".into(),
                    input: serde_json::json!({})
                },
            ]
        );
        assert!(tool_requests("no tools here").is_empty());
        assert!(tool_requests("tool: nothing").is_empty());
    }

    #[test]
    fn spoken_prefix_rounds_up_to_whole_words() {
        assert_eq!(spoken_prefix("one two three four", 0.3), "one two");
        assert_eq!(spoken_prefix("one two", 0.0), "");
        assert_eq!(spoken_prefix("one two", 1.0), "one two");
    }
}
