//! Per-session settings: what one caller chose for its conversation (the voice, the greeting,
//! values of the system prompt's variables, metadata for tools), within the bounds the agent's
//! configuration allows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use voice_config::{AgentConfig, ModelConfig, SessionSettingsConfig};

/// The effective settings of one session, as `bidi_connection_start` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSettings {
    /// The voice the model speaks with, when the model has voices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// The instruction the model greets the caller with before the caller speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    /// Values of the system prompt's `{{name}}` variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Opaque caller metadata, passed to tools as MCP request `_meta`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Why a handshake's settings are refused (HTTP 400). Messages name the setting, never its
/// value: values may be personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// Prefix of the AgentCore Runtime headers that carry caller-chosen values into the container.
pub const AGENTCORE_CUSTOM_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-custom-";

/// The deployment's rules for per-session settings, and its prompt template.
#[derive(Debug, Clone)]
pub struct SettingsPolicy {
    allowed: SessionSettingsConfig,
    /// The voice everyone gets unless they choose one (none for models without voices).
    voice: Option<String>,
    greeting: Option<String>,
    /// Shared by every session whose prompt has nothing filled in.
    template: Arc<str>,
}

impl SettingsPolicy {
    pub fn new(config: &AgentConfig, template: String) -> Self {
        let voice = match &config.model {
            ModelConfig::NovaSonic(nova) => Some(nova.voice.clone()),
            ModelConfig::Simulated(_) => None,
        };
        Self {
            allowed: config.session_settings.clone(),
            voice,
            greeting: config.prompt.greeting.clone(),
            template: template.into(),
        }
    }

    /// The claims of a caller's token the settings read.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.allowed.claims()
    }

    /// The settings of one session: the deployment's defaults, then the verified claims, then
    /// what the caller asked for in the query (`voice`, `greeting`, `var.<name>`, `meta.<key>`)
    /// or in AgentCore's custom headers (`…-Custom-Voice`, `…-Custom-Greeting`,
    /// `…-Custom-Var-<Name>`, `…-Custom-Meta-<Key>`). Anything not allowed is refused.
    pub fn resolve(
        &self,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<SessionSettings, SettingsError> {
        let mut settings = SessionSettings {
            voice: self.voice.clone(),
            greeting: self.greeting.clone(),
            variables: self
                .allowed
                .variables
                .iter()
                .map(|v| (v.name.clone(), v.default.clone()))
                .collect(),
            metadata: BTreeMap::new(),
        };
        for variable in &self.allowed.variables {
            if let Some(value) = variable.from_claim.as_deref().and_then(|c| claim(claims, c)) {
                let value = self.bounded(&format!("var.{}", variable.name), value)?;
                settings.variables.insert(variable.name.clone(), value);
            }
        }
        for name in &self.allowed.metadata.from_claims {
            if let Some(value) = claim(claims, name) {
                let value = self.bounded(&format!("meta.{name}"), value)?;
                settings.metadata.insert(name.clone(), value);
            }
        }
        let mut chosen = BTreeMap::new();
        for (key, value) in requested(query, headers) {
            if chosen.insert(key.clone(), value).is_some() {
                return Err(SettingsError(format!("{key} is given twice (query and header)")));
            }
        }
        let mut caller_metadata = 0;
        for (key, value) in chosen {
            let value = self.bounded(&key, value)?;
            if key == "voice" {
                self.allow_voice(&value)?;
                settings.voice = Some(value);
            } else if key == "greeting" {
                if !self.allowed.greeting {
                    return Err(SettingsError(
                        "greeting: this agent does not take a caller's greeting".into(),
                    ));
                }
                settings.greeting = Some(value).filter(|g| !g.trim().is_empty());
            } else if let Some(name) = key.strip_prefix("var.") {
                let Some(variable) = self.allowed.variables.iter().find(|v| v.name == name) else {
                    return Err(SettingsError(format!(
                        "{key}: unknown setting; {}",
                        self.accepted_variables()
                    )));
                };
                if variable.from_claim.is_some() {
                    return Err(SettingsError(format!("{key} is taken from the caller's token")));
                }
                settings.variables.insert(variable.name.clone(), value);
            } else if let Some(name) = key.strip_prefix("meta.") {
                caller_metadata += 1;
                if caller_metadata > self.allowed.metadata.max_keys {
                    return Err(SettingsError(match self.allowed.metadata.max_keys {
                        0 => format!("{key}: this agent takes no caller metadata"),
                        max => format!("{key}: at most {max} metadata keys are allowed"),
                    }));
                }
                if !is_metadata_key(name) {
                    return Err(SettingsError(format!(
                        "{key}: metadata keys are 1 to 64 letters, digits, '_', '-' or '.'"
                    )));
                }
                if self.allowed.metadata.from_claims.iter().any(|c| c == name) {
                    return Err(SettingsError(format!("{key} is taken from the caller's token")));
                }
                settings.metadata.insert(name.to_owned(), value);
            }
        }
        Ok(settings)
    }

    /// The system prompt of a session: the template with its variables filled in. A session
    /// that fills none shares the template instead of holding a copy of it.
    pub fn system_prompt(&self, settings: &SessionSettings) -> Arc<str> {
        let mut prompt = String::with_capacity(self.template.len());
        let mut filled = false;
        let mut rest = &*self.template;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            prompt.push_str(&rest[..start]);
            match settings.variables.get(after[..end].trim()) {
                Some(value) => {
                    prompt.push_str(value);
                    filled = true;
                }
                None => prompt.push_str(&rest[start..start + 2 + end + 2]),
            }
            rest = &after[end + 2..];
        }
        if !filled {
            return self.template.clone();
        }
        prompt.push_str(rest);
        prompt.into()
    }

    fn bounded(&self, key: &str, value: String) -> Result<String, SettingsError> {
        if value.chars().count() > self.allowed.max_value_length {
            return Err(SettingsError(format!(
                "{key} is longer than {} characters",
                self.allowed.max_value_length
            )));
        }
        if value.chars().any(|c| c.is_control() && c != '\n') {
            return Err(SettingsError(format!("{key} holds control characters")));
        }
        Ok(value)
    }

    fn allow_voice(&self, voice: &str) -> Result<(), SettingsError> {
        if self.allowed.voices.iter().any(|v| v == voice) {
            return Ok(());
        }
        Err(SettingsError(if self.allowed.voices.is_empty() {
            "voice: this agent does not take a caller's voice".into()
        } else {
            format!(
                "voice: not one of the allowed voices ({})",
                self.allowed.voices.join(", ")
            )
        }))
    }

    fn accepted_variables(&self) -> String {
        let open: Vec<String> = self
            .allowed
            .variables
            .iter()
            .filter(|v| v.from_claim.is_none())
            .map(|v| format!("var.{}", v.name))
            .collect();
        if open.is_empty() {
            "this agent takes no prompt variables".into()
        } else {
            format!("this agent takes {}", open.join(", "))
        }
    }
}

/// Settings a handshake asks for, as `(key, value)`: query parameters named `voice`, `greeting`,
/// `var.*` or `meta.*`, and AgentCore custom headers mapped to the same keys (header names are
/// case-insensitive and proxies drop `_`, so `Custom-Var-Customer-Name` is `var.customer_name`).
fn requested(query: &HashMap<String, String>, headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| is_setting_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, value) in headers {
        let Some(rest) = name.as_str().strip_prefix(AGENTCORE_CUSTOM_HEADER) else {
            continue;
        };
        let key = if let Some(variable) = rest.strip_prefix("var-") {
            format!("var.{}", variable.replace('-', "_"))
        } else if let Some(meta) = rest.strip_prefix("meta-") {
            format!("meta.{meta}")
        } else if rest == "voice" || rest == "greeting" {
            rest.to_owned()
        } else {
            continue;
        };
        // A value that is not text cannot be a setting; it is refused as a control character.
        let value = value.to_str().map_or_else(|_| "\u{0}".to_owned(), str::to_owned);
        pairs.push((key, value));
    }
    pairs.sort();
    pairs
}

/// Whether a query parameter (or stream parameter) names a per-session setting.
pub(crate) fn is_setting_key(key: &str) -> bool {
    key == "voice" || key == "greeting" || key.starts_with("var.") || key.starts_with("meta.")
}

fn is_metadata_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A claim as text: strings as they are, numbers and booleans printed; other shapes are not
/// settings.
fn claim(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;
    use voice_config::{MetadataConfig, NovaSonicConfig, PromptVariable};

    use super::*;

    fn policy() -> SettingsPolicy {
        let mut config = AgentConfig {
            model: ModelConfig::NovaSonic(NovaSonicConfig::default()),
            ..AgentConfig::default()
        };
        config.prompt.greeting = Some("Greet the caller.".into());
        config.session_settings = SessionSettingsConfig {
            voices: vec!["tiffany".into(), "amy".into()],
            greeting: true,
            max_value_length: 20,
            variables: vec![
                PromptVariable {
                    name: "customer_name".into(),
                    default: "there".into(),
                    from_claim: None,
                },
                PromptVariable {
                    name: "tier".into(),
                    default: "basic".into(),
                    from_claim: Some("tier".into()),
                },
            ],
            metadata: MetadataConfig {
                max_keys: 2,
                from_claims: vec!["tenant".into()],
            },
        };
        SettingsPolicy::new(&config, "Hello {{ customer_name }} ({{tier}}).".into())
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn resolve(pairs: &[(&str, &str)]) -> Result<SessionSettings, SettingsError> {
        policy().resolve(&query(pairs), &HeaderMap::new(), &serde_json::Map::new())
    }

    #[test]
    fn defaults_apply_when_the_caller_chooses_nothing() {
        let settings = resolve(&[("audio_output", "binary")]).expect("valid");
        assert_eq!(settings.voice.as_deref(), Some("matthew"));
        assert_eq!(settings.greeting.as_deref(), Some("Greet the caller."));
        assert_eq!(&*policy().system_prompt(&settings), "Hello there (basic).");
        assert!(settings.metadata.is_empty());
    }

    #[test]
    fn the_caller_chooses_within_the_allow_list() {
        let settings = resolve(&[
            ("voice", "amy"),
            ("greeting", "Say hi to Ana."),
            ("var.customer_name", "Ana"),
            ("meta.order", "A-17"),
        ])
        .expect("valid");
        assert_eq!(settings.voice.as_deref(), Some("amy"));
        assert_eq!(settings.greeting.as_deref(), Some("Say hi to Ana."));
        assert_eq!(&*policy().system_prompt(&settings), "Hello Ana (basic).");
        assert_eq!(settings.metadata["order"], "A-17");
    }

    #[test]
    fn refusals_name_the_setting_but_never_the_value() {
        let cases = [
            (vec![("voice", "secret-voice")], "voice"),
            (
                vec![("var.customer_name", "x".repeat(21).leak() as &str)],
                "var.customer_name",
            ),
            (vec![("var.nickname", "secret")], "var.nickname"),
            (vec![("var.tier", "gold")], "var.tier"),
            (vec![("meta.a", "1"), ("meta.b", "2"), ("meta.c", "3")], "meta.c"),
            (vec![("meta.tenant", "secret")], "meta.tenant"),
            (vec![("meta.bad key", "secret")], "meta.bad key"),
            (vec![("var.customer_name", "line\u{7}bell")], "var.customer_name"),
        ];
        for (pairs, named) in cases {
            let message = resolve(&pairs).expect_err(named).to_string();
            assert!(message.starts_with(named), "{message}");
            assert!(!message.contains("secret") && !message.contains("xxxx"), "{message}");
        }
    }

    #[test]
    fn claims_fill_their_settings_and_agentcore_headers_carry_choices() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-bedrock-agentcore-runtime-custom-var-customer-name",
            HeaderValue::from_static("Bo"),
        );
        headers.insert(
            "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Voice",
            HeaderValue::from_static("tiffany"),
        );
        let claims = json!({"tier": "gold", "tenant": 42, "other": "ignored"});
        let claims = claims.as_object().expect("object");
        let settings = policy().resolve(&HashMap::new(), &headers, claims).expect("valid");
        assert_eq!(&*policy().system_prompt(&settings), "Hello Bo (gold).");
        assert_eq!(settings.voice.as_deref(), Some("tiffany"));
        assert_eq!(settings.metadata["tenant"], "42");
        assert!(!settings.metadata.contains_key("other"));
    }

    #[test]
    fn a_setting_given_twice_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-bedrock-agentcore-runtime-custom-voice",
            HeaderValue::from_static("amy"),
        );
        let error = policy()
            .resolve(&query(&[("voice", "tiffany")]), &headers, &serde_json::Map::new())
            .expect_err("twice");
        assert!(error.to_string().contains("voice is given twice"), "{error}");
    }

    #[test]
    fn a_deployment_that_allows_nothing_refuses_every_setting() {
        let policy = SettingsPolicy::new(&AgentConfig::default(), "Be brief.".into());
        for key in ["voice", "greeting", "var.name", "meta.k"] {
            let error = policy
                .resolve(&query(&[(key, "v")]), &HeaderMap::new(), &serde_json::Map::new())
                .expect_err(key);
            assert!(error.to_string().starts_with(key), "{error}");
        }
        let settings = policy
            .resolve(&HashMap::new(), &HeaderMap::new(), &serde_json::Map::new())
            .expect("nothing asked");
        assert_eq!(settings, SessionSettings::default());
        assert_eq!(&*policy.system_prompt(&settings), "Be brief.");
        // Nothing filled in: every session shares the one prompt.
        assert!(Arc::ptr_eq(
            &policy.system_prompt(&settings),
            &policy.system_prompt(&settings)
        ));
    }
}
