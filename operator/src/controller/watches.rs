//! What wakes a VoiceAgent up besides its own changes: its children (owner references), and
//! the ConfigMaps and Secrets it refers to, so a missing one that appears is noticed at once.
//! Children are watched per kind of the registry ([`CHILD_KINDS`]), and the same watch keeps
//! the cache the apply step compares against; only the operator's own children (by label) are
//! watched. Secrets and ConfigMaps are also watched by metadata only: their values are never
//! cached.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::Scope;
use crate::api::VoiceAgent;
use crate::reconcile::Settings;
use crate::reconcile::build::MANAGER;
use crate::reconcile::children::{CHILD_KINDS, ChildCaches};
use crate::reconcile::references::{SourceKind, refers_to};

type Agent = DeserializeGuard<VoiceAgent>;

/// Adds the child and reference watches to `controller`; returns it with the children's caches.
pub fn add(
    controller: Controller<Agent>,
    client: &Client,
    scope: &Scope,
    settings: &Settings,
) -> (Controller<Agent>, ChildCaches) {
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let agents = controller.store();
    let mut caches = ChildCaches::default();
    let mut controller = controller;
    for kind in CHILD_KINDS.iter().filter(|k| k.is_served(settings)) {
        controller = kind.watch(controller, client, scope, children.clone(), &mut caches);
    }
    // The metadata watches also see the agent's own ConfigMap (by owner reference), so one
    // whose label was removed still wakes its VoiceAgent.
    let store = agents.clone();
    let controller = controller.watches(
        scope.api::<PartialObjectMeta<ConfigMap>>(client),
        watcher::Config::default(),
        move |cm| affected(&store, SourceKind::ConfigMap, &cm),
    );
    let controller = controller.watches(
        scope.api::<PartialObjectMeta<Secret>>(client),
        watcher::Config::default(),
        move |secret| affected(&agents, SourceKind::Secret, &secret),
    );
    (controller, caches)
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
