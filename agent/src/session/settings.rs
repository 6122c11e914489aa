//! Per-session settings: what one caller chose for its conversation (the voice, the greeting,
//! values of the system prompt's variables, metadata for tools), within the bounds the agent's
//! configuration allows.

use std::collections::BTreeMap;

use serde::Serialize;

/// The effective settings of one session, as `bidi_connection_start` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionSettings {
    /// The voice the model speaks with, when the model has voices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// The instruction the model greets the caller with before the caller speaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    /// Values of the system prompt's `{{name}}` variables.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Opaque caller metadata, passed to tools as MCP request `_meta`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}
