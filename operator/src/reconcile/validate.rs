//! Step 2, pure: turn the raw spec plus what was dereferenced into a [`ValidatedAgent`], in
//! which every default is applied and every derived number computed, so builders never juggle
//! `Option`s. The apiserver's schema and CEL rules refuse most bad specs at admission; the
//! same rules are checked here again for objects stored before a rule existed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use voice_config::AgentConfig;

use super::agent_config;
use super::dereference::{Dereferenced, detect_controller, detect_gateway_implementation, hex};
use super::mounts::{MountedFile, mounted_files};
use super::{RejectReason, Rejection, Settings};
use crate::api::{
    AuthMode, GatewayImplementation, GatewayParentRef, ImagePullPolicy, IngressController, IngressTls,
    NetworkPolicySpec, PodOverrides, RouteTimeouts, SESSIONS_METRIC, ScalingMode, TelephonyStatus, ToolGatewayAuthType,
    VoiceAgent, VoiceAgentSpec,
};

/// Seconds the pod waits after it is marked terminating before the agent gets SIGTERM, so
/// endpoint removal reaches proxies first.
pub const PRE_STOP_SECS: i64 = 5;
/// The same for the AWS Load Balancer Controller, whose target deregistration takes longer.
pub const PRE_STOP_SECS_ALB: i64 = 15;
/// Grace beyond pre-stop pause plus drain, for the agent to close sockets and exit.
pub const EXIT_MARGIN_SECS: i64 = 10;
/// Added to the longest session for proxy timeouts, so the agent, not a proxy, ends sessions.
pub const PROXY_TIMEOUT_MARGIN_SECS: u64 = 60;

/// A VoiceAgent that passed validation, with everything the builders need.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedAgent {
    pub name: String,
    pub namespace: String,
    /// Controller owner reference to the VoiceAgent, for every child.
    pub owner: OwnerReference,
    /// The agent's configuration, and the file rendered from it.
    pub config: AgentConfig,
    pub config_yaml: String,
    pub image: String,
    pub image_pull_policy: Option<ImagePullPolicy>,
    pub resources: ResourceRequirements,
    pub service_account_name: Option<String>,
    pub pod: PodOverrides,
    pub replicas: Replicas,
    pub shutdown: Shutdown,
    /// ConfigMap and Secret keys mounted as files (entries of [`super::mounts::MOUNTS`]).
    pub files: Vec<MountedFile>,
    /// Digest of the configuration and every referenced value: changes roll the pods.
    pub checksum: String,
    pub ingress: Option<ValidatedIngress>,
    pub route: Option<ValidatedRoute>,
    pub network_policy: Option<NetworkPolicySpec>,
    /// What clients connect to.
    pub url: String,
    /// The webhook URLs for the carriers' consoles (with `spec.telephony`).
    pub webhooks: Option<TelephonyStatus>,
}

/// How many pods run.
#[derive(Clone, Debug, PartialEq)]
pub enum Replicas {
    Fixed(i32),
    Autoscaled(Autoscaling),
}

/// HorizontalPodAutoscaler settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Autoscaling {
    pub min: i32,
    pub max: i32,
    pub target_sessions: i32,
    pub metric: String,
    pub scale_down_window_secs: i32,
    /// KEDA's Prometheus trigger, with `mode: Keda` (else a HorizontalPodAutoscaler).
    pub keda: Option<KedaTrigger>,
}

/// What KEDA asks Prometheus.
#[derive(Clone, Debug, PartialEq)]
pub struct KedaTrigger {
    pub server_address: String,
    /// PromQL for the agent's active sessions in total.
    pub query: String,
}

impl Replicas {
    /// Whether more than one pod may run (then a PodDisruptionBudget is worth having).
    pub fn may_exceed_one(&self) -> bool {
        match self {
            Replicas::Fixed(n) => *n > 1,
            Replicas::Autoscaled(a) => a.max > 1,
        }
    }
}

/// Timings of a pod's shutdown, derived from the drain timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shutdown {
    pub pre_stop_secs: i64,
    /// Pre-stop pause plus drain: how long a stopping pod still serves live sessions.
    pub serving_secs: i64,
    /// `terminationGracePeriodSeconds`: serving time plus a margin to exit.
    pub grace_period_secs: i64,
}

/// An Ingress to build.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedIngress {
    pub class_name: Option<String>,
    pub controller: IngressController,
    pub host: String,
    pub path: String,
    /// Every path prefix exposed: the WebSocket path, then the enabled carriers' paths.
    pub paths: Vec<String>,
    pub tls: Option<IngressTls>,
    /// The user's annotations; they win over derived ones.
    pub annotations: BTreeMap<String, String>,
    /// Proxy idle/read timeouts: the longest session plus a margin.
    pub proxy_timeout_secs: u64,
    /// How long a stopping pod still serves sessions (for load balancer deregistration).
    pub serving_secs: i64,
}

/// An HTTPRoute to build.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedRoute {
    pub parent_refs: Vec<GatewayParentRef>,
    pub hostnames: Vec<String>,
    pub path: String,
    /// Every path prefix matched: the WebSocket path, then the enabled carriers' paths.
    pub paths: Vec<String>,
    /// Whether clients use `wss://`.
    pub tls: bool,
    pub implementation: GatewayImplementation,
    /// The user's route timeouts; they replace the derived ones.
    pub timeouts: Option<RouteTimeouts>,
    /// Proxy request timeouts: the longest session plus a margin.
    pub proxy_timeout_secs: u64,
    /// Proxy idle timers: the agent's idle timeout plus a margin, so the agent ends a silent
    /// session first.
    pub proxy_idle_secs: u64,
}

/// Validates `agent` against what `dereferenced` found.
pub fn validate(
    agent: &VoiceAgent,
    dereferenced: &Dereferenced,
    settings: &Settings,
) -> Result<ValidatedAgent, Rejection> {
    let name = agent.name_any();
    let namespace = agent.namespace().unwrap_or_default();
    let spec = &agent.spec;
    check_name(&name)?;
    check_spec_rules(spec)?;

    let config = agent_config::agent_config(&name, spec).map_err(|e| Rejection::invalid(format!("spec.{e}")))?;
    config
        .validate()
        .map_err(|e| Rejection::invalid(format!("agent configuration: {e}")))?;
    let config_yaml = config
        .try_to_yaml()
        .map_err(|e| Rejection::invalid(format!("agent configuration cannot be written: {e}")))?;

    let route_spec = spec.expose.as_ref().and_then(|e| e.gateway.as_ref());
    if route_spec.is_some() && !settings.gateway_api {
        return Err(Rejection {
            reason: RejectReason::GatewayApiUnavailable,
            message: "spec.expose.gateway needs the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute), which this cluster does not serve; the operator notices its CRDs within a minute of their installation".into(),
        });
    }
    if spec.scaling.as_ref().is_some_and(|s| s.mode == ScalingMode::Keda) && !settings.keda {
        return Err(Rejection {
            reason: RejectReason::KedaUnavailable,
            message: "spec.scaling.mode Keda needs KEDA (keda.sh/v1alpha1 ScaledObject), which this cluster does not serve; the operator notices its CRDs within a minute of their installation".into(),
        });
    }
    check_references(dereferenced)?;

    let owner = agent
        .controller_owner_ref(&())
        .ok_or_else(|| Rejection::invalid("the VoiceAgent has no uid yet".into()))?;
    let ingress_spec = spec.expose.as_ref().and_then(|e| e.ingress.as_ref());
    let controller = ingress_spec.map(|i| {
        i.controller.unwrap_or_else(|| {
            detect_controller(
                dereferenced.ingress_class_controller.as_deref(),
                i.class_name.as_deref(),
            )
        })
    });
    let pre_stop_secs = match controller {
        Some(IngressController::AwsLoadBalancer) => PRE_STOP_SECS_ALB,
        _ => PRE_STOP_SECS,
    };
    let drain_secs = i64::try_from(spec.session.drain_timeout.as_secs_ceil()).unwrap_or(i64::MAX);
    let serving_secs = pre_stop_secs.saturating_add(drain_secs);
    let shutdown = Shutdown {
        pre_stop_secs,
        serving_secs,
        grace_period_secs: serving_secs.saturating_add(EXIT_MARGIN_SECS),
    };
    let ingress = ingress_spec.zip(controller).map(|(i, controller)| ValidatedIngress {
        class_name: i.class_name.clone(),
        controller,
        host: i.host.clone(),
        path: i.path.clone(),
        paths: exposed_paths(&i.path, spec),
        tls: i.tls.clone(),
        annotations: i.annotations.clone(),
        proxy_timeout_secs: spec
            .session
            .max_duration
            .as_secs_ceil()
            .saturating_add(PROXY_TIMEOUT_MARGIN_SECS),
        serving_secs,
    });
    let route = route_spec.map(|r| ValidatedRoute {
        parent_refs: r.parent_refs.clone(),
        hostnames: r.hostnames.clone(),
        path: r.path.clone(),
        paths: exposed_paths(&r.path, spec),
        tls: r.tls,
        implementation: r
            .implementation
            .unwrap_or_else(|| detect_gateway_implementation(dereferenced.gateway_class_controller.as_deref())),
        timeouts: r.timeouts.clone(),
        proxy_timeout_secs: spec
            .session
            .max_duration
            .as_secs_ceil()
            .saturating_add(PROXY_TIMEOUT_MARGIN_SECS),
        proxy_idle_secs: spec
            .session
            .idle_timeout
            .as_secs_ceil()
            .saturating_add(PROXY_TIMEOUT_MARGIN_SECS),
    });
    let url = url(&name, &namespace, ingress.as_ref(), route.as_ref());
    let webhooks = spec
        .telephony
        .as_ref()
        .zip(agent_config::telephony_base_url(spec))
        .map(|(t, base)| t.webhooks(&base));

    Ok(ValidatedAgent {
        checksum: checksum(&config_yaml, dereferenced),
        files: mounted_files(spec),
        replicas: replicas(spec, &name, &namespace),
        image: spec.image.clone().unwrap_or_else(|| settings.agent_image.clone()),
        image_pull_policy: spec.image_pull_policy,
        resources: spec.resources.clone().unwrap_or_else(default_resources),
        service_account_name: spec.service_account_name.clone(),
        pod: spec.pod.clone().unwrap_or_default(),
        name,
        namespace,
        owner,
        config,
        config_yaml,
        shutdown,
        ingress,
        route,
        network_policy: spec.network_policy.clone(),
        url,
        webhooks,
    })
}

fn check_name(name: &str) -> Result<(), Rejection> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Rejection::invalid(
            "metadata.name must be a DNS label: at most 63 lowercase letters, digits and '-', starting with a letter (it names the agent's Service)".into(),
        ))
    }
}

/// The CEL rules of the CRD, again.
fn check_spec_rules(spec: &VoiceAgentSpec) -> Result<(), Rejection> {
    let fail = |m: &str| Err(Rejection::invalid(m.to_owned()));
    if spec.replicas.is_some() && spec.scaling.is_some() {
        return fail("set either replicas or scaling, not both");
    }
    if let Some(s) = &spec.scaling {
        if s.min_replicas > s.max_replicas {
            return fail("scaling.minReplicas must not exceed scaling.maxReplicas");
        }
        if s.target_sessions_per_replica
            .is_some_and(|t| t > spec.session.max_sessions_per_replica)
        {
            return fail("scaling.targetSessionsPerReplica must not exceed session.maxSessionsPerReplica");
        }
        if s.mode == ScalingMode::Keda && s.prometheus.is_none() {
            return fail("scaling.prometheus is required with mode Keda");
        }
        if s.mode != ScalingMode::Keda && s.prometheus.is_some() {
            return fail("scaling.prometheus is only used with mode Keda");
        }
    }
    let model = &spec.model;
    if model.nova_sonic.is_some() && model.provider != crate::api::ModelProvider::NovaSonic {
        return fail("model.novaSonic is only used when model.provider is NovaSonic");
    }
    if model.simulated.is_some() && model.provider != crate::api::ModelProvider::Simulated {
        return fail("model.simulated is only used when model.provider is Simulated");
    }
    if let Some(p) = &spec.prompt {
        if p.system.is_some() == p.system_from.is_some() {
            return fail("set exactly one of prompt.system and prompt.systemFrom");
        }
        if let Some(from) = &p.system_from
            && from.config_map_key_ref.is_some() == from.secret_key_ref.is_some()
        {
            return fail("set exactly one of configMapKeyRef and secretKeyRef");
        }
    }
    if let Some(e) = &spec.expose
        && e.ingress.is_none()
        && e.gateway.is_none()
    {
        return fail("expose needs ingress, gateway, or both");
    }
    if let Some(a) = &spec.auth {
        if (a.mode == AuthMode::Token) != a.token_secret_ref.is_some() {
            return fail("auth.tokenSecretRef is required with mode Token and only used with it");
        }
        if (a.mode == AuthMode::Jwt) != a.jwt.is_some() {
            return fail("auth.jwt is required with mode Jwt and only used with it");
        }
    }
    if let Some(t) = &spec.telephony {
        check_telephony_rules(spec, t)?;
    }
    if spec.gateway.is_some() && !spec.tool_servers.is_empty() {
        return fail("set either gateway (one server) or toolServers (a list), not both");
    }
    let servers = spec.gateway.iter().map(|g| ("gateway".to_owned(), g)).chain(
        spec.tool_servers
            .iter()
            .map(|s| (format!("toolServers[{}]", s.name), &s.server)),
    );
    for (at, g) in servers {
        if (g.auth.type_ == ToolGatewayAuthType::Bearer) != g.auth.token_secret_ref.is_some() {
            return fail(&format!(
                "{at}.auth.tokenSecretRef is required with type Bearer and only used with it"
            ));
        }
        if g.auth.type_ != ToolGatewayAuthType::SigV4 && (g.auth.region.is_some() || g.auth.service.is_some()) {
            return fail(&format!(
                "{at}.auth.region and {at}.auth.service are only used with type SigV4"
            ));
        }
    }
    Ok(())
}

/// The telephony section's CEL rules, again.
fn check_telephony_rules(spec: &VoiceAgentSpec, t: &crate::api::TelephonySpec) -> Result<(), Rejection> {
    let fail = |m: &str| Err(Rejection::invalid(m.to_owned()));
    if t.twilio.is_none() && t.telnyx.is_none() && t.vonage.is_none() {
        return fail("telephony needs at least one carrier: twilio, telnyx or vonage");
    }
    if t.fallback_number.is_some() && t.twilio.is_none() && t.telnyx.is_none() {
        return fail(
            "telephony.fallbackNumber is only used with twilio or telnyx (Vonage has no step after the stream)",
        );
    }
    match agent_config::telephony_base_url(spec) {
        None => fail(
            "telephony needs an address carriers can reach: set expose.ingress, expose.gateway with hostnames, or telephony.publicUrl",
        ),
        Some(url) if !url.starts_with("https://") => fail(
            "telephony needs TLS: carriers connect only to https:// webhooks and wss:// streams; set expose.ingress.tls (or expose.gateway.tls), or telephony.publicUrl",
        ),
        Some(_) => Ok(()),
    }
}

fn check_references(dereferenced: &Dereferenced) -> Result<(), Rejection> {
    let mut missing: Vec<String> = Vec::new();
    for r in dereferenced
        .references
        .iter()
        .filter(|r| r.digest.is_none() && !r.reference.optional)
    {
        let (kind, name) = (r.reference.kind, &r.reference.name);
        let message = match (&r.reference.key, r.object_found) {
            (Some(key), true) => format!("{kind} {name:?} has no key {key:?}"),
            _ => format!("{kind} {name:?} not found"),
        };
        // Two keys of one absent object: one message.
        if !missing.contains(&message) {
            missing.push(message);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            reason: RejectReason::ReferenceNotFound,
            message: missing.join("; "),
        })
    }
}

fn replicas(spec: &VoiceAgentSpec, name: &str, namespace: &str) -> Replicas {
    match &spec.scaling {
        None => Replicas::Fixed(spec.replicas.unwrap_or(1)),
        Some(s) => Replicas::Autoscaled(Autoscaling {
            min: s.min_replicas,
            max: s.max_replicas,
            // 70% of capacity leaves headroom for bursts while new replicas start.
            target_sessions: s
                .target_sessions_per_replica
                .unwrap_or_else(|| (spec.session.max_sessions_per_replica * 7 / 10).max(1)),
            metric: s.metric_name.clone(),
            scale_down_window_secs: i32::try_from(s.scale_down_stabilization_window.as_secs_ceil()).unwrap_or(i32::MAX),
            keda: s
                .prometheus
                .as_ref()
                .filter(|_| s.mode == ScalingMode::Keda)
                .map(|p| KedaTrigger {
                    server_address: p.server_address.clone(),
                    query: p.query.clone().unwrap_or_else(|| {
                        format!(
                            r#"sum({SESSIONS_METRIC}{{namespace="{namespace}",pod=~"{name}-[a-z0-9]+-[a-z0-9]+"}})"#
                        )
                    }),
                }),
        }),
    }
}

/// Digest of the configuration file and of every referenced value the agent reads only at
/// start. Values it re-reads while running (token files) stay out: rotating them rolls nothing.
fn checksum(config_yaml: &str, dereferenced: &Dereferenced) -> String {
    let mut hasher = Sha256::new();
    hasher.update(config_yaml.as_bytes());
    for r in dereferenced.references.iter().filter(|r| !r.reference.reread) {
        hasher.update(format!("\n{}={}", r.reference, r.digest.as_deref().unwrap_or("-")).as_bytes());
    }
    hex(&hasher.finalize())
}

/// The WebSocket path, then each enabled carrier's path prefix (its media stream and webhooks),
/// once each.
fn exposed_paths(ws_path: &str, spec: &VoiceAgentSpec) -> Vec<String> {
    let mut paths = vec![ws_path.to_owned()];
    for path in spec.telephony.as_ref().map(|t| t.paths()).unwrap_or_default() {
        if !paths.iter().any(|p| p == path) {
            paths.push(path.to_owned());
        }
    }
    paths
}

fn url(name: &str, namespace: &str, ingress: Option<&ValidatedIngress>, route: Option<&ValidatedRoute>) -> String {
    if let Some(i) = ingress {
        let scheme = if i.tls.is_some() { "wss" } else { "ws" };
        return format!("{scheme}://{}{}", i.host, i.path);
    }
    if let Some(r) = route
        && let Some(host) = r.hostnames.first()
    {
        let scheme = if r.tls { "wss" } else { "ws" };
        return format!("{scheme}://{host}{}", r.path);
    }
    format!(
        "ws://{name}.{namespace}.svc:{}{}",
        agent_config::AGENT_PORT,
        crate::api::WS_PATH
    )
}

/// Requests that fit a few dozen sessions, and a memory limit that stops a leak from taking a
/// node down.
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        requests: Some([("cpu".to_owned(), q("250m")), ("memory".to_owned(), q("256Mi"))].into()),
        limits: Some([("memory".to_owned(), q("512Mi"))].into()),
        ..ResourceRequirements::default()
    }
}

impl Rejection {
    fn invalid(message: String) -> Self {
        Self {
            reason: RejectReason::InvalidSpec,
            message,
        }
    }
}

#[cfg(test)]
mod telephony_tests;
#[cfg(test)]
mod tests;
