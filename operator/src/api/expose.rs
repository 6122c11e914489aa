//! `spec.expose`: how clients outside the cluster reach the agent's WebSocket.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// The agent's WebSocket path.
pub const DEFAULT_PATH: &str = "/ws";

const HOST_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const PATH_PATTERN: &str = r"^/[A-Za-z0-9/._~%!$&'()*+,;=:@-]*$";

/// Ingress, Gateway API route, or both.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.ingress) || has(self.gateway)")
        .message("expose needs ingress, gateway, or both")
        .reason(Reason::FieldValueRequired)
)]
#[serde(rename_all = "camelCase")]
pub struct ExposeSpec {
    /// Expose through a `networking.k8s.io/v1` Ingress, with the WebSocket settings of the
    /// ingress controller that serves its class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressExpose>,

    /// Expose through a Gateway API `HTTPRoute` attached to existing Gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayExpose>,
}

/// An Ingress for the agent.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressExpose {
    /// IngressClass that serves the Ingress. Defaults to the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,

    /// The ingress controller behind the class, which decides the WebSocket annotations:
    /// `IngressNginx` (read and send timeouts), `AwsLoadBalancer` (IP targets, health check on
    /// `/readyz`, idle timeout, deregistration delay), `HAProxy` (tunnel timeout), `Contour`
    /// (WebSocket route, response timeout), `Traefik` (nothing per route: raise the entry
    /// point's `respondingTimeouts.readTimeout` where Traefik is installed) or `Generic`
    /// (nothing). Detected from the IngressClass's `spec.controller`, or failing that from the
    /// class name, when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<IngressController>,

    /// Host name clients connect to, e.g. `voice.example.com`.
    #[schemars(length(min = 1, max = 253), regex(pattern = HOST_PATTERN))]
    pub host: String,

    /// Path of the WebSocket endpoint (a prefix match). Only this path is exposed, not the
    /// agent's probes and metrics.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = PATH_PATTERN))]
    pub path: String,

    /// Serve TLS (clients use `wss://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,

    /// Extra Ingress annotations; they win over the annotations the operator derives for the
    /// controller (e.g. to set `alb.ingress.kubernetes.io/scheme: internet-facing`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// TLS for the Ingress host.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Secret with the certificate (type `kubernetes.io/tls`). Leave unset when the controller
    /// finds certificates itself (AWS Load Balancer Controller with ACM, cert-manager's
    /// ingress-shim with its own annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

// Ingress controllers whose WebSocket settings the operator knows. The variants carry plain
// comments: doc comments on variants would replace the field's description in the schema.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IngressController {
    // ingress-nginx (`k8s.io/ingress-nginx`).
    IngressNginx,
    // AWS Load Balancer Controller (`ingress.k8s.aws/alb`).
    AwsLoadBalancer,
    // HAProxy Kubernetes Ingress (`haproxy.org`) or HAProxy Ingress (`haproxy-ingress.github.io`).
    HAProxy,
    // Contour (`projectcontour.io`).
    Contour,
    // Traefik (`traefik.io`).
    Traefik,
    // Anything else.
    Generic,
}

/// A Gateway API HTTPRoute for the agent.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayExpose {
    /// Gateways (or listeners of them) the route attaches to.
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<GatewayParentRef>,

    /// Host names the route answers. The first one appears in `status.url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), regex(pattern = HOST_PATTERN)))]
    pub hostnames: Vec<String>,

    /// Path of the WebSocket endpoint (a prefix match).
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = PATH_PATTERN))]
    pub path: String,

    /// Route timeouts (Gateway API "Extended" support). Unset, the operator sets `request` to
    /// the longest session plus 60 s on implementations that honour route timeouts and would
    /// otherwise bound a WebSocket by them; set, they are used as written (`request: 0s`
    /// disables the request timeout where supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RouteTimeouts>,

    /// The Gateway API implementation behind the parent Gateways, which decides what the
    /// operator renders for long-lived WebSockets: `EnvoyGateway` (route timeouts, and a
    /// `BackendTrafficPolicy` when the idle timeout exceeds Envoy's 5-minute stream idle
    /// timeout), `Istio`, `Kgateway`, `Cilium` (route timeouts), `NginxGatewayFabric`,
    /// `Traefik` (nothing per route: their limits are set where they are installed) or
    /// `Generic` (nothing). Detected from the `controllerName` of the first parent Gateway's
    /// GatewayClass when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<GatewayImplementation>,

    /// Whether clients reach the Gateway over TLS; only decides the scheme of `status.url`
    /// (`wss://` or `ws://`).
    #[serde(default = "default_true")]
    pub tls: bool,
}

// Gateway API implementations whose WebSocket limits the operator knows. Plain comments, as
// for `IngressController`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayImplementation {
    // Envoy Gateway (`gateway.envoyproxy.io/gatewayclass-controller`).
    EnvoyGateway,
    // Istio (`istio.io/gateway-controller`).
    Istio,
    // NGINX Gateway Fabric (`gateway.nginx.org/nginx-gateway-controller`).
    NginxGatewayFabric,
    // Traefik (`traefik.io/gateway-controller`).
    Traefik,
    // kgateway (`kgateway.dev/kgateway`).
    Kgateway,
    // Cilium (`io.cilium/gateway-controller`).
    Cilium,
    // Anything else.
    Generic,
}

/// A Gateway the route attaches to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway; defaults to the VoiceAgent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Listener of the Gateway to attach to; defaults to all that allow the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// HTTPRoute rule timeouts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("!has(self.request) || !has(self.backendRequest) || duration(self.request) == duration('0s') || duration(self.backendRequest) <= duration(self.request)")
        .message("timeouts.backendRequest must not exceed timeouts.request")
)]
#[serde(rename_all = "camelCase")]
pub struct RouteTimeouts {
    /// Timeout of the whole request as the Gateway sees it; `0s` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Duration>,
    /// Timeout of one request from the Gateway to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<Duration>,
}

fn default_path() -> String {
    DEFAULT_PATH.to_owned()
}
fn default_true() -> bool {
    true
}
