//! voice-operator: runs `VoiceAgent`s on Kubernetes.
//!
//! Where things live: [`api`] is the custom resource (the CRD's single source), [`reconcile`]
//! the pipeline from a VoiceAgent to its children and status, [`controller`] the watches and
//! the driver of the pipeline, [`metrics`] and [`admin`] what operators of the operator see,
//! [`leader`] the Lease that keeps one active replica, [`tool_discovery`] the tools each tool
//! server offers (for the status).

pub mod admin;
pub mod api;
pub mod cli;
pub mod controller;
pub mod discovery;
pub mod error;
pub mod gateway_api;
pub mod keda;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod telemetry;
pub mod tool_discovery;

#[cfg(test)]
mod fixtures;
