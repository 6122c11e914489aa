//! Step 3, pure: one builder per child object, each a function of the [`ValidatedAgent`] alone
//! and each pinned by a golden test (`golden/*.json`). The registry of
//! [`super::children`] names them in apply order and runs them all.

mod configmap;
mod deployment;
mod hpa;
mod httproute;
mod ingress;
mod networkpolicy;
mod pdb;
mod scaledobject;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use configmap::{build_configmap, configmap_name};
pub use deployment::{CHECKSUM_ANNOTATION, CONTAINER, build_deployment};
pub use hpa::build_hpa;
pub use httproute::{build_backend_traffic_policy, build_httproute};
pub use ingress::{build_ingress, controller_annotations};
pub use networkpolicy::build_network_policy;
pub use pdb::build_pdb;
pub use scaledobject::build_scaled_object;
pub use service::{PORT_NAME, build_service};

use super::validate::ValidatedAgent;

/// Field manager of every server-side apply, and the `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "voice-operator";
/// `app.kubernetes.io/name` of every child.
pub const APP_NAME: &str = "voice-agent";

/// Labels that select the agent's pods. Never change them: Deployment selectors are immutable.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
    ]
    .into()
}

/// The selector as a label-selector string (for the scale subresource).
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels of every child object.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels
}

/// Metadata of a child: name, namespace, labels and the controller owner reference.
fn metadata(agent: &ValidatedAgent, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(agent.namespace.clone()),
        labels: Some(labels(&agent.name)),
        owner_references: Some(vec![agent.owner.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod golden;
