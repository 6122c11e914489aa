//! The reconcile pipeline, one module per step:
//! [`dereference`] (reads) → [`validate`] (pure) → [`build`] (pure) → [`apply`] (writes, only
//! what differs) → [`status`] (writes, only when it changed). [`crate::controller`] drives it.
//! Two tables keep the per-kind lists in one place each: [`children`] (every kind of child,
//! in apply order) and [`mounts`] (every ConfigMap or Secret key mounted as a file).

pub mod agent_config;
pub mod apply;
pub mod build;
pub mod children;
pub mod compare;
pub mod dereference;
pub mod events;
pub mod mounts;
pub mod references;
pub mod status;
pub mod validate;

/// Operator-wide inputs to validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Agent image used when a VoiceAgent names none.
    pub agent_image: String,
    /// Whether the cluster serves Gateway API HTTPRoutes.
    pub gateway_api: bool,
    /// Whether the cluster serves Envoy Gateway's `BackendTrafficPolicy`.
    pub envoy_gateway_policies: bool,
    /// Whether the cluster serves KEDA's `ScaledObject`.
    pub keda: bool,
}

/// Why a VoiceAgent is not accepted: the reason of its `Accepted=False` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// A value the schema let through but the operator or the agent refuses.
    InvalidSpec,
    /// A referenced ConfigMap, Secret or key does not exist.
    ReferenceNotFound,
    /// `expose.gateway` on a cluster without the Gateway API.
    GatewayApiUnavailable,
    /// `scaling.mode: Keda` on a cluster without KEDA.
    KedaUnavailable,
    /// The stored object does not decode into the current types at all.
    Undecodable,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSpec => "InvalidSpec",
            Self::ReferenceNotFound => "ReferenceNotFound",
            Self::GatewayApiUnavailable => "GatewayAPIUnavailable",
            Self::KedaUnavailable => "KEDAUnavailable",
            Self::Undecodable => "InvalidSpec",
        }
    }
}

/// A VoiceAgent that cannot be run as it is; waits for a change (of the spec, or of the
/// referenced objects) instead of being retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct Rejection {
    pub reason: RejectReason,
    pub message: String,
}
