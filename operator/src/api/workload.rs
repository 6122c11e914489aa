//! `spec.scaling`, `spec.imagePullPolicy` and `spec.pod`: how the agent pods run.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, Toleration, TopologySpreadConstraint,
};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// The agents' active-sessions gauge, scraped from `/metrics` and served to the HPA by a
/// metrics adapter (e.g. prometheus-adapter).
pub const SESSIONS_METRIC: &str = "voice_agent_sessions_active";

/// Autoscaling on active sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas")
        .message("scaling.minReplicas must not exceed scaling.maxReplicas"),
    validation = Rule::new("self.mode != 'Keda' || has(self.prometheus)")
        .message("scaling.prometheus is required with mode Keda")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.prometheus) || self.mode == 'Keda'")
        .message("scaling.prometheus is only used with mode Keda")
)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// Fewest replicas (at least 1).
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,

    /// Most replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Average active sessions per replica the autoscaler aims for. Defaults to 70% of
    /// `session.maxSessionsPerReplica`, leaving headroom for bursts while new replicas start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub target_sessions_per_replica: Option<i32>,

    /// Name of the per-pod metric as the metrics adapter serves it.
    #[serde(default = "default_metric")]
    #[schemars(length(min = 1, max = 253))]
    pub metric_name: String,

    /// How long load must stay low before replicas are removed. Scale-down ends sessions only
    /// after draining them, but a long window avoids churn on bursty traffic.
    #[serde(default = "default_stabilization")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("scaleDownStabilizationWindow must be at most 1h"))]
    pub scale_down_stabilization_window: Duration,

    /// `Hpa`: a HorizontalPodAutoscaler on the per-pod metric `metricName`, which a metrics
    /// adapter (e.g. prometheus-adapter) must serve. `Keda`: a KEDA `ScaledObject`
    /// whose Prometheus trigger queries the sessions itself, no adapter needed (KEDA must be
    /// installed).
    #[serde(default)]
    pub mode: ScalingMode,

    /// The Prometheus KEDA queries, with `mode: Keda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusTrigger>,
}

// How replicas are scaled. Plain comments: doc comments on variants would replace the field's
// description in the schema.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScalingMode {
    // A HorizontalPodAutoscaler on a per-pod metric from a metrics adapter.
    #[default]
    Hpa,
    // A KEDA ScaledObject with a Prometheus trigger.
    Keda,
}

/// KEDA's Prometheus trigger.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusTrigger {
    /// Prometheus' URL as KEDA reaches it, e.g.
    /// `http://prometheus-operated.monitoring.svc:9090`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub server_address: String,

    /// PromQL giving the agent's active sessions in total. Defaults to the sum of
    /// `voice_agent_sessions_active` over the agent's pods (`namespace` and `pod` labels, as a
    /// PodMonitor or the usual Kubernetes scrape configuration sets them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub query: Option<String>,
}

/// When the kubelet pulls the agent image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Settings passed through to the agent pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra pod labels. The operator's own labels (`app.kubernetes.io/name`,
    /// `app.kubernetes.io/instance`, `app.kubernetes.io/managed-by`) take precedence.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Extra pod annotations (e.g. for a service mesh or log shipping).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Node labels the pods must run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Node and pod (anti-)affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How replicas spread across zones and nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,

    /// Secrets used to pull the image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Extra environment variables of the agent container (e.g. `AWS_REGION`, proxy
    /// settings). Secret and ConfigMap references are checked like the prompt's: a missing one
    /// stops the rollout with `Accepted=False` instead of creating pods that cannot start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Extra environment of the agent container from whole ConfigMaps or Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,

    /// Mount a Kubernetes API token into the pods. Off by default: the agent does not call the
    /// Kubernetes API, and IRSA and Pod Identity inject their own tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
}

fn default_min_replicas() -> i32 {
    1
}
fn default_metric() -> String {
    SESSIONS_METRIC.to_owned()
}
fn default_stabilization() -> Duration {
    Duration::from_secs(300)
}
