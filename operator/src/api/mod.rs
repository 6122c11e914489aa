//! The `VoiceAgent` custom resource (`voiceagent.dev/v1alpha1`): the CRD's single source.
//!
//! Every field carries a doc comment (it becomes the schema description that `kubectl explain`
//! shows), defaults sit in the schema so `kubectl get -o yaml` shows what is in effect, and the
//! rules the apiserver enforces (ranges, patterns, CEL) live next to the fields they guard.
//! `crds/voiceagents.voiceagent.dev.yaml` is generated from these types (`voice-operator crd`).

mod duration;
mod expose;
mod model;
mod schema;
mod security;
mod session;
mod status;
mod telephony;
mod tools;
mod workload;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use duration::{DURATION_PATTERN, Duration, ParseDurationError};
pub use expose::{
    DEFAULT_PATH as WS_PATH, ExposeSpec, GatewayExpose, GatewayImplementation, GatewayParentRef, IngressController,
    IngressExpose, IngressTls, RouteTimeouts,
};
pub use model::{
    EndpointingSensitivity, KeyRef, ModelProvider, ModelSpec, NovaSonicSpec, PromptSpec, SimulatedMode, SimulatedSpec,
    ValueSource,
};
pub use schema::crd;
pub use security::{AuthMode, AuthSpec, JwtAlgorithm, JwtSpec, LimitsSpec, NetworkPolicySpec};
pub use session::{
    MetadataSpec, PromptVariableSpec, RedisSpec, ResumeSpec, ResumeStoreKind, SessionSettingsSpec, SessionSpec,
    WebSocketSpec,
};
pub use status::{ACCEPTED, ConditionStatus, DiscoveredTools, READY, TOOL_SERVERS_REACHABLE, VoiceAgentStatus};
pub use telephony::{
    TELNYX_PATH, TWILIO_PATH, TelephonySpec, TelephonyStatus, TelnyxSpec, TwilioSpec, VONAGE_PATH, VoiceWebhook,
    VonageSpec, VonageWebhooks,
};
pub use tools::{ToolGatewayAuth, ToolGatewayAuthType, ToolGatewaySpec, ToolServerSpec};
pub use workload::{ImagePullPolicy, PodOverrides, PrometheusTrigger, SESSIONS_METRIC, ScalingMode, ScalingSpec};

/// API group of the VoiceAgent resource.
pub const GROUP: &str = "voiceagent.dev";
/// Version served and stored.
pub const VERSION: &str = "v1alpha1";

/// A real-time voice agent: WebSocket sessions bridged to a speech-to-speech model, run as an
/// autoscaled Deployment and optionally exposed through an Ingress or a Gateway API HTTPRoute.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "voiceagent.dev",
    version = "v1alpha1",
    kind = "VoiceAgent",
    plural = "voiceagents",
    singular = "voiceagent",
    shortname = "va",
    category = "all",
    namespaced,
    status = "VoiceAgentStatus",
    derive = "PartialEq",
    doc = "VoiceAgent runs a real-time voice agent: WebSocket sessions bridged to a speech-to-speech model, served by an autoscaled Deployment and optionally exposed through an Ingress or a Gateway API HTTPRoute.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the agent is available and exposed"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        description = "WebSocket URL clients connect to"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Agent pods ready to take sessions"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = 1
    ),
    printcolumn(
        name = "Model",
        type_ = "string",
        json_path = ".spec.model.provider",
        priority = 1
    ),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')")
        .message("metadata.name must be a DNS label: at most 63 lowercase letters, digits and '-', starting with a letter (it names the agent's Service)")
)]
#[x_kube(
    validation = Rule::new("!(has(self.gateway) && has(self.toolServers))")
        .message("set either gateway (one server) or toolServers (a list), not both")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!(has(self.replicas) && has(self.scaling))")
        .message("set either replicas or scaling, not both")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.telephony) || has(self.telephony.publicUrl) || (has(self.expose) && (has(self.expose.ingress) || (has(self.expose.gateway) && has(self.expose.gateway.hostnames) && size(self.expose.gateway.hostnames) > 0)))")
        .message("telephony needs an address carriers can reach: set expose.ingress, expose.gateway with hostnames, or telephony.publicUrl")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.telephony) || has(self.telephony.publicUrl) || !has(self.expose) || (has(self.expose.ingress) ? has(self.expose.ingress.tls) : (!has(self.expose.gateway) || self.expose.gateway.tls))")
        .message("telephony needs TLS: carriers connect only to https:// webhooks and wss:// streams; set expose.ingress.tls (or expose.gateway.tls), or telephony.publicUrl"),
    validation = Rule::new("!has(self.scaling) || !has(self.scaling.targetSessionsPerReplica) || !has(self.session) || !has(self.session.maxSessionsPerReplica) || self.scaling.targetSessionsPerReplica <= self.session.maxSessionsPerReplica")
        .message("scaling.targetSessionsPerReplica must not exceed session.maxSessionsPerReplica")
)]
#[serde(rename_all = "camelCase")]
pub struct VoiceAgentSpec {
    /// The speech-to-speech model that answers. Defaults to the built-in Simulated model, which
    /// needs no cloud account.
    #[serde(default)]
    pub model: ModelSpec,

    /// The system prompt: inline (`system`) or from a ConfigMap or Secret key (`systemFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptSpec>,

    /// The MCP tool gateway (an AgentCore Gateway or any MCP server) whose tools the model may
    /// call: the shorthand for `toolServers` with one server named `gateway`. Not with
    /// `toolServers`. Without either the model has no tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ToolGatewaySpec>,

    /// MCP servers (AgentCore Gateways or any MCP server) whose tools the model may call, each
    /// named, with its own URL, authentication, allowed tools and limits. A tool name two
    /// servers offer is given to the model as `<server>___<tool>`. Not with `gateway`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub tool_servers: Vec<ToolServerSpec>,

    /// How callers authenticate when they open a session, which browser origins may connect,
    /// and how many sessions one caller may hold. Defaults to no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Limits on sessions: how many one replica holds, how long they last, and how long a
    /// stopping replica lets them finish.
    #[serde(default)]
    pub session: SessionSpec,

    /// What callers may choose for their own session: voice, greeting, values of the system
    /// prompt's variables, metadata for tools. Nothing unless listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_settings: Option<SessionSettingsSpec>,

    /// WebSocket framing limits.
    #[serde(default)]
    pub websocket: WebSocketSpec,

    /// Protection against broken and hostile clients: handshake rate per IP, trusted proxies,
    /// handshake and first-message timeouts, audio rate, JSON size and depth.
    #[serde(default)]
    pub limits: LimitsSpec,

    /// A fixed number of agent pods. Leave unset (and set `scaling`) to autoscale; when neither
    /// is set the agent runs one replica. `kubectl scale voiceagent/<name>` writes this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Autoscaling on active sessions per replica (a HorizontalPodAutoscaler on the agents'
    /// `voice_agent_sessions_active` metric). Mutually exclusive with `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSpec>,

    /// Agent container image. Defaults to the image the operator was started with
    /// (`--agent-image`), which matches the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When the kubelet pulls the image. Defaults to Kubernetes' rule (Always for `:latest`,
    /// IfNotPresent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// CPU and memory for the agent container. Defaults to requests of 250m CPU and 256Mi
    /// memory and a 512Mi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,

    /// ServiceAccount the agent pods run as, e.g. one annotated for IRSA or bound by EKS Pod
    /// Identity so the NovaSonic provider gets AWS credentials. Defaults to the namespace's
    /// `default` account. The pods never mount a Kubernetes API token unless
    /// `pod.automountServiceAccountToken` is true: the agent does not call the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// Pod-level settings passed through to the agent pods: scheduling, labels and
    /// annotations, pull secrets and extra environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,

    /// How clients outside the cluster reach the agent: an Ingress, a Gateway API HTTPRoute, or
    /// both. Without it the agent is reachable only inside the cluster through its Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<ExposeSpec>,

    /// A NetworkPolicy for the agent pods: only the listed peers may reach the agent's port,
    /// and optionally egress is limited too. Unset: no NetworkPolicy is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,

    /// Phone calls through carriers' media streams (Twilio, Telnyx, Vonage): which carriers,
    /// the Secrets holding their credentials, the greeting and a fallback number. The carriers'
    /// paths are exposed with the WebSocket path, and `status.telephony` lists the webhook URLs
    /// to enter in each carrier's console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephony: Option<TelephonySpec>,
}

/// `apiVersion` of VoiceAgent objects.
pub fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// The CustomResourceDefinition as YAML, exactly what `voice-operator crd` prints and what
/// `crds/voiceagents.voiceagent.dev.yaml` holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crd())
}
