//! voice-agent: holds real-time voice conversations over WebSocket and bridges them to a
//! speech-to-speech model.
//!
//! Where things live: [`protocol`] is the client wire format, [`session`] the per-connection
//! state machine and its task, [`model`] the model boundary and providers, [`server`] the
//! listener, probes and drain, [`config`] the configuration file shared with the operator.

pub mod auth;
pub mod cli;
pub mod config;
pub mod fake_bedrock;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod server;
pub mod session;
pub mod talk;
pub mod telemetry;
pub mod tools;
