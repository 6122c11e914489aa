//! Tool names between the tool servers and the model. AgentCore Gateway names tools
//! `<target>___<tool>`; the model sees the short name when it is unambiguous, and calls are
//! mapped back to the server's name. Across servers the same rule applies one level up: a name
//! two servers offer becomes `<server>___<name>` for each of them, so the model tells them
//! apart and calls go to the right server.

/// Bedrock's limit on tool names.
const MAX_NAME_LEN: usize = 64;

/// Model-facing names for the tools of several servers; see [`voice_config::resolve_tool_names`],
/// which the operator's `status.discoveredTools` applies too.
pub fn resolve(servers: &[(&str, Vec<&str>)]) -> Vec<Vec<Option<String>>> {
    voice_config::resolve_tool_names(servers)
}

/// Why the model would refuse a tool name, if it would.
pub fn model_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Some(format!("names must be 1 to {MAX_NAME_LEN} characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Some(format!(
            "names may only contain letters, digits, '_' and '-', not {c:?}"
        ));
    }
    None
}

/// Whether a tool is allowed by an allow-list of short or full names (empty allows all).
pub fn allowed(allow_list: &[String], gateway_name: &str) -> bool {
    voice_config::tool_allowed(allow_list, gateway_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_names_the_model_refuses() {
        assert!(model_name_problem("get_weather").is_none());
        assert!(model_name_problem("get weather").is_some());
        assert!(model_name_problem("naïve").is_some());
        assert!(model_name_problem(&"x".repeat(65)).is_some());
    }

    #[test]
    fn allow_list_matches_short_and_full_names() {
        assert!(allowed(&[], "t___x"));
        assert!(allowed(&["x".into()], "t___x"));
        assert!(allowed(&["t___x".into()], "t___x"));
        assert!(!allowed(&["y".into()], "t___x"));
    }
}
