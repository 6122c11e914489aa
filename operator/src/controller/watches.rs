//! What wakes a VoiceAgent up besides its own changes: its children (owner references), and
//! the ConfigMaps and Secrets it refers to, so a missing one that appears is noticed at once.
//! Secrets and ConfigMaps are watched by metadata only: their values are never cached.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::Scope;
use crate::api::VoiceAgent;
use crate::gateway_api::HTTPRoute;
use crate::reconcile::build::MANAGER;
use crate::reconcile::references::{SourceKind, refers_to};

type Agent = DeserializeGuard<VoiceAgent>;

/// Adds the child and reference watches to `controller`.
pub fn add(controller: Controller<Agent>, client: &Client, scope: &Scope, gateway_api: bool) -> Controller<Agent> {
    // Only the operator's own children are cached.
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let agents = controller.store();
    let mut controller = controller
        .owns(scope.api::<Deployment>(client), children.clone())
        .owns(scope.api::<Service>(client), children.clone())
        .owns(scope.api::<Ingress>(client), children.clone())
        .owns(scope.api::<HorizontalPodAutoscaler>(client), children.clone())
        .owns(scope.api::<PodDisruptionBudget>(client), children.clone())
        .owns(scope.api::<NetworkPolicy>(client), children.clone());
    if gateway_api {
        controller = controller.owns(scope.api::<HTTPRoute>(client), children);
    }
    // One metadata watch per kind serves both purposes for ConfigMaps: the agent's own
    // (owner reference) and referenced ones.
    let store = agents.clone();
    let controller = controller.watches(
        scope.api::<PartialObjectMeta<ConfigMap>>(client),
        watcher::Config::default(),
        move |cm| affected(&store, SourceKind::ConfigMap, &cm),
    );
    controller.watches(
        scope.api::<PartialObjectMeta<Secret>>(client),
        watcher::Config::default(),
        move |secret| affected(&agents, SourceKind::Secret, &secret),
    )
}

/// VoiceAgents that own or refer to the object.
fn affected<K>(agents: &Store<Agent>, kind: SourceKind, object: &PartialObjectMeta<K>) -> Vec<ObjectRef<Agent>> {
    let meta = &object.metadata;
    let (Some(name), Some(namespace)) = (meta.name.as_deref(), meta.namespace.as_deref()) else {
        return Vec::new();
    };
    let mut out: Vec<ObjectRef<Agent>> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true) && o.kind == "VoiceAgent")
        .filter(|o| o.api_version == crate::api::api_version())
        .map(|o| ObjectRef::new(&o.name).within(namespace))
        .collect();
    for agent in agents.state() {
        let Ok(a) = &agent.0 else { continue };
        if a.metadata.namespace.as_deref() == Some(namespace) && refers_to(&a.spec, kind, name) {
            out.push(a_ref(a));
        }
    }
    out
}

fn a_ref(agent: &VoiceAgent) -> ObjectRef<Agent> {
    let mut r = ObjectRef::new(agent.metadata.name.as_deref().unwrap_or_default());
    if let Some(ns) = &agent.metadata.namespace {
        r = r.within(ns);
    }
    r
}
