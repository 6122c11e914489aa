//! What a VoiceAgent refers to outside itself (ConfigMap and Secret keys, whole objects), found
//! by reading the spec alone: the mounted files of [`super::mounts`], and the pod's `env` and
//! `envFrom`. Shared by the dereference step (which fetches them) and by the watch mapper
//! (which finds the VoiceAgents a changed Secret or ConfigMap concerns).

use std::collections::BTreeSet;
use std::fmt;

use super::mounts::mounted_files;
use crate::api::VoiceAgentSpec;

/// The two kinds of object a VoiceAgent may reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    ConfigMap,
    Secret,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        })
    }
}

/// One reference from the spec.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub kind: SourceKind,
    pub name: String,
    /// The key within the object, or `None` for the whole object (`envFrom`).
    pub key: Option<String>,
    /// An `optional: true` reference may be absent; the pods then start without it.
    pub optional: bool,
    /// A value the agent re-reads while running (token files): changing it must not roll the
    /// pods, so it stays out of the pod template's checksum.
    pub reread: bool,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "key {key:?} of {} {:?}", self.kind, self.name),
            None => write!(f, "{} {:?}", self.kind, self.name),
        }
    }
}

/// Every ConfigMap and Secret the spec refers to, in a stable order.
pub fn references(spec: &VoiceAgentSpec) -> BTreeSet<Reference> {
    let mut out = BTreeSet::new();
    for file in mounted_files(spec) {
        out.insert(Reference {
            kind: file.kind,
            name: file.source,
            key: Some(file.key),
            optional: false,
            reread: file.reread,
        });
    }
    let Some(pod) = &spec.pod else {
        return out;
    };
    for source in pod.env.iter().filter_map(|e| e.value_from.as_ref()) {
        if let Some(r) = &source.config_map_key_ref {
            out.insert(Reference {
                kind: SourceKind::ConfigMap,
                name: r.name.clone(),
                key: Some(r.key.clone()),
                optional: r.optional.unwrap_or(false),
                reread: false,
            });
        }
        if let Some(r) = &source.secret_key_ref {
            out.insert(Reference {
                kind: SourceKind::Secret,
                name: r.name.clone(),
                key: Some(r.key.clone()),
                optional: r.optional.unwrap_or(false),
                reread: false,
            });
        }
    }
    for source in &pod.env_from {
        if let Some(r) = &source.config_map_ref {
            out.insert(Reference {
                kind: SourceKind::ConfigMap,
                name: r.name.clone(),
                key: None,
                optional: r.optional.unwrap_or(false),
                reread: false,
            });
        }
        if let Some(r) = &source.secret_ref {
            out.insert(Reference {
                kind: SourceKind::Secret,
                name: r.name.clone(),
                key: None,
                optional: r.optional.unwrap_or(false),
                reread: false,
            });
        }
    }
    out
}

/// Whether the spec refers to the named object of this kind.
pub fn refers_to(spec: &VoiceAgentSpec, kind: SourceKind, name: &str) -> bool {
    references(spec).iter().any(|r| r.kind == kind && r.name == name)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, EnvVarSource, SecretEnvSource, SecretKeySelector};

    use super::*;
    use crate::api::{KeyRef, PodOverrides, PromptSpec, ValueSource};

    fn key(name: &str, key: &str) -> KeyRef {
        KeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    #[test]
    fn finds_prompt_env_and_env_from_references() {
        let spec = VoiceAgentSpec {
            prompt: Some(PromptSpec {
                system: None,
                greeting: None,
                system_from: Some(ValueSource {
                    config_map_key_ref: None,
                    secret_key_ref: Some(key("prompts", "support")),
                }),
            }),
            pod: Some(PodOverrides {
                env: vec![EnvVar {
                    name: "TOKEN".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "tokens".into(),
                            key: "t".into(),
                            optional: Some(true),
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                }],
                env_from: vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: "proxy".into(),
                        optional: None,
                    }),
                    ..EnvFromSource::default()
                }],
                ..PodOverrides::default()
            }),
            ..VoiceAgentSpec::default()
        };
        let refs: Vec<String> = references(&spec).iter().map(|r| r.to_string()).collect();
        assert_eq!(
            refs,
            [
                r#"key "support" of Secret "prompts""#,
                r#"Secret "proxy""#,
                r#"key "t" of Secret "tokens""#,
            ]
        );
        assert!(refers_to(&spec, SourceKind::Secret, "proxy"));
        assert!(!refers_to(&spec, SourceKind::ConfigMap, "proxy"));
    }

    #[test]
    fn token_secrets_are_reread_references() {
        let spec: VoiceAgentSpec = crate::fixtures::spec(
            r#"
auth: {mode: Token, tokenSecretRef: {name: callers, key: tokens}}
gateway: {url: "https://g.example.com/mcp", auth: {type: Bearer, tokenSecretRef: {name: gw, key: token}}}
prompt: {systemFrom: {secretKeyRef: {name: prompts, key: p}}}
"#,
        );
        let reread: Vec<(String, bool)> = references(&spec).into_iter().map(|r| (r.name, r.reread)).collect();
        assert_eq!(
            reread,
            [
                ("callers".to_owned(), true),
                ("gw".to_owned(), true),
                ("prompts".to_owned(), false)
            ]
        );
        assert!(refers_to(&spec, SourceKind::Secret, "callers"));
    }

    #[test]
    fn a_plain_spec_refers_to_nothing() {
        assert!(references(&VoiceAgentSpec::default()).is_empty());
    }
}
