//! Tool names between the gateway and the model. AgentCore Gateway names tools
//! `<target>___<tool>`; the model sees the short name when it is unambiguous, and calls are
//! mapped back to the gateway's name.

use std::collections::HashMap;

/// AgentCore Gateway's separator between target and tool.
const TARGET_SEPARATOR: &str = "___";
/// Bedrock's limit on tool names.
const MAX_NAME_LEN: usize = 64;

/// The tool part of a gateway name (`weather___get_forecast` → `get_forecast`).
pub fn short_name(gateway_name: &str) -> &str {
    gateway_name
        .rsplit_once(TARGET_SEPARATOR)
        .map_or(gateway_name, |(_, tool)| tool)
        .trim()
}

/// Model-facing names for gateway tools: the short name unless two tools share it.
pub fn model_names(gateway_names: &[&str]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in gateway_names {
        *counts.entry(short_name(name)).or_default() += 1;
    }
    gateway_names
        .iter()
        .map(|name| {
            let short = short_name(name);
            if !short.is_empty() && counts.get(short) == Some(&1) {
                short.to_owned()
            } else {
                (*name).to_owned()
            }
        })
        .collect()
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
    allow_list.is_empty()
        || allow_list
            .iter()
            .any(|a| a == gateway_name || a == short_name(gateway_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_gateway_target_prefixes() {
        assert_eq!(short_name("weather___get_forecast"), "get_forecast");
        assert_eq!(short_name("plain_tool"), "plain_tool");
        assert_eq!(short_name("a___b___c"), "c");
    }

    #[test]
    fn keeps_full_names_when_short_ones_collide() {
        let names = model_names(&["crm___lookup", "erp___lookup", "weather___forecast"]);
        assert_eq!(names, vec!["crm___lookup", "erp___lookup", "forecast"]);
    }

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
