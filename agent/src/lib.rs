//! voice-agent: holds real-time voice conversations over WebSocket and bridges them to a
//! speech-to-speech model.
//!
//! Where things live: [`protocol`] holds the client wire protocols (one module each, behind one
//! seam), [`session`] the per-connection state machine and its task, [`model`] the model
//! boundary and providers, [`server`] the listener, admission, probes and drain, [`audio`] what
//! listens to audio. The configuration file shared with the operator is the `voice-config`
//! crate; logs and traces are set up by `voice-telemetry`. See docs/architecture.md.

pub mod audio;
pub mod auth;
pub mod call;
mod cancel;
pub mod cli;
mod fifo;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod resume;
pub mod server;
pub mod session;
pub mod talk;
pub mod tools;
