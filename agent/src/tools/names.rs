//! Tool names between the tool servers and the model. AgentCore Gateway names tools
//! `<target>___<tool>`; the model sees the short name when it is unambiguous, and calls are
//! mapped back to the server's name. Across servers the same rule applies one level up: a name
//! two servers offer becomes `<server>___<name>` for each of them, so the model tells them
//! apart and calls go to the right server.

use std::collections::HashMap;

use voice_config::TOOL_NAME_SEPARATOR as TARGET_SEPARATOR;

/// Bedrock's limit on tool names.
const MAX_NAME_LEN: usize = 64;

/// The tool part of a gateway name (`weather___get_forecast` → `get_forecast`).
pub fn short_name(gateway_name: &str) -> &str {
    voice_config::short_tool_name(gateway_name)
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

/// Model-facing names for the tools of several servers (`(server name, its tool names)`, in
/// configuration order): each server's [`model_names`], prefixed with the server's name where
/// another server offers the same name. `None` for a tool left out because an earlier server
/// already offers its (prefixed) name, which only a server naming its tools `<server>___<tool>`
/// after another server can cause.
pub fn resolve(servers: &[(&str, Vec<&str>)]) -> Vec<Vec<Option<String>>> {
    let per_server: Vec<Vec<String>> = servers.iter().map(|(_, names)| model_names(names)).collect();
    let mut offered_by: HashMap<&str, usize> = HashMap::new();
    for names in &per_server {
        let mut unique: Vec<&str> = names.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        for name in unique {
            *offered_by.entry(name).or_default() += 1;
        }
    }
    let mut taken = std::collections::HashSet::new();
    servers
        .iter()
        .zip(&per_server)
        .map(|((server, _), names)| {
            names
                .iter()
                .map(|name| {
                    let resolved = if offered_by.get(name.as_str()).copied().unwrap_or(0) > 1 {
                        format!("{server}{TARGET_SEPARATOR}{name}")
                    } else {
                        name.clone()
                    };
                    taken.insert(resolved.clone()).then_some(resolved)
                })
                .collect()
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
    voice_config::tool_allowed(allow_list, gateway_name)
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
    fn names_two_servers_share_are_prefixed_with_the_server() {
        let resolved = resolve(&[
            ("crm", vec!["lookup", "crm_only"]),
            ("erp", vec!["billing___lookup", "erp_only"]),
        ]);
        assert_eq!(
            resolved,
            vec![
                vec![Some("crm___lookup".to_owned()), Some("crm_only".to_owned())],
                vec![Some("erp___lookup".to_owned()), Some("erp_only".to_owned())],
            ]
        );
    }

    #[test]
    fn a_name_already_taken_by_an_earlier_server_is_left_out() {
        // Server a offers `x` and, confusingly, `b___x`; server b offers `x`. The shared `x`
        // becomes `a___x` and `b___x`, and a's own `b___x` came first.
        let resolved = resolve(&[("a", vec!["x", "b___x"]), ("b", vec!["x"])]);
        assert_eq!(
            resolved,
            vec![vec![Some("a___x".to_owned()), Some("b___x".to_owned())], vec![None]]
        );
    }

    #[test]
    fn one_server_keeps_todays_names() {
        let names = ["crm___lookup", "erp___lookup", "weather___forecast"];
        let resolved = resolve(&[("gateway", names.to_vec())]);
        assert_eq!(
            resolved[0],
            model_names(&names).into_iter().map(Some).collect::<Vec<_>>()
        );
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
