//! Per-session settings: what a caller may choose for its own conversation (the voice, the
//! greeting, values of the system prompt's `{{variables}}`, metadata for tools) and the bounds
//! the operator sets. Nothing is settable unless listed here.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What callers may set for their session, and within which bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSettingsConfig {
    /// Voices a caller may pick with `voice`; empty: everyone gets the configured voice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voices: Vec<String>,
    /// Whether a caller may replace the greeting with its own instruction (`greeting`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub greeting: bool,
    /// Longest value of any setting, in characters.
    #[serde(default = "default_max_value_length")]
    pub max_value_length: usize,
    /// The system prompt's variables (`{{name}}` in the prompt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<PromptVariable>,
    /// Caller metadata passed to tools as MCP request `_meta`.
    #[serde(default, skip_serializing_if = "MetadataConfig::is_default")]
    pub metadata: MetadataConfig,
}

impl Default for SessionSettingsConfig {
    fn default() -> Self {
        Self {
            voices: Vec::new(),
            greeting: false,
            max_value_length: default_max_value_length(),
            variables: Vec::new(),
            metadata: MetadataConfig::default(),
        }
    }
}

impl SessionSettingsConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One variable of the system prompt template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptVariable {
    /// Lowercase letters, digits and `_`, starting with a letter: `{{customer_name}}`.
    pub name: String,
    /// The value when nobody sets one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default: String,
    /// Taken from this claim of the caller's JWT, and then never from what the caller sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_claim: Option<String>,
}

/// Which caller metadata reaches tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataConfig {
    /// Keys a caller may send itself (`meta.<key>`); 0 takes none.
    #[serde(default)]
    pub max_keys: usize,
    /// JWT claims copied into the metadata under their own names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_claims: Vec<String>,
}

impl MetadataConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn default_max_value_length() -> usize {
    256
}

/// Longest value an operator may allow (characters): room for a paragraph of greeting, not a
/// document.
pub const MAX_SETTING_LENGTH: usize = 2000;
/// Most caller metadata keys an operator may allow.
pub const MAX_METADATA_KEYS: usize = 32;

/// Whether `name` may name a prompt variable: lowercase ASCII letters, digits and `_`, starting
/// with a letter, at most 64 characters.
pub fn is_variable_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The `{{name}}` placeholders of a prompt template, in order (spaces inside the braces are
/// allowed). Text between `{{` and `}}` that is not a variable name is left alone.
pub fn template_variables(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if is_variable_name(name) {
            names.push(name);
        }
        rest = &after[end + 2..];
    }
    names
}

impl SessionSettingsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        if !(1..=MAX_SETTING_LENGTH).contains(&self.max_value_length) {
            return invalid(
                "sessionSettings.maxValueLength",
                format!("must be between 1 and {MAX_SETTING_LENGTH}"),
            );
        }
        if let Some(voice) = self.voices.iter().find(|v| !is_variable_name(v)) {
            return invalid(
                "sessionSettings.voices",
                format!("{voice:?} is not a voice id (lowercase letters, digits and _)"),
            );
        }
        for (i, variable) in self.variables.iter().enumerate() {
            if !is_variable_name(&variable.name) {
                return invalid(
                    "sessionSettings.variables",
                    format!(
                        "{:?} is not a variable name (lowercase letters, digits and _, starting with a letter)",
                        variable.name
                    ),
                );
            }
            if self.variables[..i].iter().any(|v| v.name == variable.name) {
                return invalid(
                    "sessionSettings.variables",
                    format!("{} is listed twice", variable.name),
                );
            }
            if variable.default.chars().count() > self.max_value_length {
                return invalid(
                    "sessionSettings.variables",
                    format!("the default of {} is longer than maxValueLength", variable.name),
                );
            }
            if variable.from_claim.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return invalid(
                    "sessionSettings.variables",
                    format!("fromClaim of {} is empty", variable.name),
                );
            }
        }
        if self.metadata.max_keys > MAX_METADATA_KEYS {
            return invalid(
                "sessionSettings.metadata.maxKeys",
                format!("must be at most {MAX_METADATA_KEYS}"),
            );
        }
        if self.metadata.from_claims.iter().any(|c| c.trim().is_empty()) {
            return invalid(
                "sessionSettings.metadata.fromClaims",
                "must not hold empty names".into(),
            );
        }
        Ok(())
    }

    /// The claims of a caller's token that settings are taken from.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.variables
            .iter()
            .filter_map(|v| v.from_claim.as_deref())
            .chain(self.metadata.from_claims.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_variables_are_found_with_or_without_spaces() {
        assert_eq!(
            template_variables("Hi {{customer_name}}, about {{ order_id }}. {{Not A Var}} {{x"),
            ["customer_name", "order_id"]
        );
        assert!(template_variables("no variables {here}").is_empty());
    }

    #[test]
    fn variable_names_are_checked() {
        for good in ["a", "customer_name", "v2"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "2x", "Customer", "a-b", "a b", &"a".repeat(65)] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                SessionSettingsConfig {
                    variables: vec![
                        PromptVariable {
                            name: "x".into(),
                            ..Default::default()
                        },
                        PromptVariable {
                            name: "x".into(),
                            ..Default::default()
                        },
                    ],
                    ..SessionSettingsConfig::default()
                },
                "sessionSettings.variables",
            ),
            (
                SessionSettingsConfig {
                    voices: vec!["Bad Voice".into()],
                    ..Default::default()
                },
                "sessionSettings.voices",
            ),
            (
                SessionSettingsConfig {
                    max_value_length: 0,
                    ..Default::default()
                },
                "sessionSettings.maxValueLength",
            ),
            (
                SessionSettingsConfig {
                    metadata: MetadataConfig {
                        max_keys: 1000,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "sessionSettings.metadata.maxKeys",
            ),
        ];
        for (config, field) in cases {
            let message = config.validate().expect_err(field).to_string();
            assert!(message.contains(field), "{message}");
        }
    }
}
