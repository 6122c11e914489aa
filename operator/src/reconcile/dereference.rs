//! Step 1, reads only: fetch what the spec refers to. Secret values are reduced to digests
//! at once; nothing downstream ever sees them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::IngressClass;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};

use super::references::{Reference, SourceKind, references};
use crate::api::{IngressController, VoiceAgent};
use crate::error::{Error, Result};

/// Annotation that marks the cluster's default IngressClass.
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The data of a ConfigMap or Secret, by key.
type Data = BTreeMap<String, Vec<u8>>;

/// Everything the validate step needs from outside the VoiceAgent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dereferenced {
    /// One entry per reference of the spec, in a stable order.
    pub references: Vec<Resolved>,
    /// `spec.controller` of the IngressClass serving the agent's Ingress, when it could be read.
    pub ingress_class_controller: Option<String>,
}

/// A reference and what was found.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub reference: Reference,
    /// Whether the ConfigMap or Secret exists.
    pub object_found: bool,
    /// SHA-256 (hex) of the referenced value, or `None` when the object or key is absent.
    pub digest: Option<String>,
}

/// Reads the ConfigMaps, Secrets and IngressClass the agent refers to.
pub async fn dereference(client: &Client, agent: &VoiceAgent) -> Result<Dereferenced> {
    let namespace = agent.namespace().ok_or(Error::NotNamespaced)?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    // Each object is read once even when several keys of it are used.
    let mut objects: BTreeMap<(SourceKind, String), Option<Data>> = BTreeMap::new();
    let mut resolved = Vec::new();
    for reference in references(&agent.spec) {
        let slot = (reference.kind, reference.name.clone());
        if !objects.contains_key(&slot) {
            let data = match reference.kind {
                SourceKind::ConfigMap => configmaps
                    .get_opt(&reference.name)
                    .await
                    .map_err(Error::kube("reading ConfigMap"))?
                    .map(configmap_data),
                SourceKind::Secret => secrets
                    .get_opt(&reference.name)
                    .await
                    .map_err(Error::kube("reading Secret"))?
                    .map(secret_data),
            };
            objects.insert(slot.clone(), data);
        }
        let data = objects.get(&slot).and_then(Option::as_ref);
        let digest = data.and_then(|data| digest_of(data, reference.key.as_deref()));
        resolved.push(Resolved {
            reference,
            object_found: data.is_some(),
            digest,
        });
    }

    let ingress_class_controller = match agent.spec.expose.as_ref().and_then(|e| e.ingress.as_ref()) {
        Some(ingress) if ingress.controller.is_none() => {
            ingress_class_controller(client, ingress.class_name.as_deref()).await?
        }
        _ => None,
    };
    Ok(Dereferenced {
        references: resolved,
        ingress_class_controller,
    })
}

/// `spec.controller` of the named IngressClass, or of the default class when no name is given.
/// Not being allowed to read IngressClasses (a namespace-scoped install) is not an error: the
/// controller is then guessed from the class name.
async fn ingress_class_controller(client: &Client, class_name: Option<&str>) -> Result<Option<String>> {
    let classes: Api<IngressClass> = Api::all(client.clone());
    let found = match class_name {
        Some(name) => classes.get_opt(name).await.map(|c| c.into_iter().collect()),
        None => classes.list(&ListParams::default()).await.map(|l| {
            l.items
                .into_iter()
                .filter(|c| c.annotations().get(DEFAULT_CLASS_ANNOTATION).map(String::as_str) == Some("true"))
                .collect::<Vec<_>>()
        }),
    };
    match found {
        Ok(classes) => Ok(classes
            .into_iter()
            .next()
            .and_then(|c| c.spec)
            .and_then(|s| s.controller)),
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            tracing::debug!("not allowed to read IngressClasses; guessing the controller from the class name");
            Ok(None)
        }
        Err(err) => Err(Error::kube("reading IngressClass")(err)),
    }
}

/// The ingress controller behind a class: from the IngressClass's `spec.controller` when known,
/// else from the class name.
pub fn detect_controller(controller: Option<&str>, class_name: Option<&str>) -> IngressController {
    let by_controller = |c: &str| {
        if c == "k8s.io/ingress-nginx" {
            Some(IngressController::IngressNginx)
        } else if c.starts_with("ingress.k8s.aws/") {
            Some(IngressController::AwsLoadBalancer)
        } else if c.starts_with("haproxy.org/") || c.starts_with("haproxy-ingress.github.io/") {
            Some(IngressController::HAProxy)
        } else if c.starts_with("projectcontour.io/") {
            Some(IngressController::Contour)
        } else if c.starts_with("traefik.io/") {
            Some(IngressController::Traefik)
        } else {
            None
        }
    };
    let by_name = |n: &str| {
        let n = n.to_ascii_lowercase();
        [
            ("nginx", IngressController::IngressNginx),
            ("alb", IngressController::AwsLoadBalancer),
            ("haproxy", IngressController::HAProxy),
            ("contour", IngressController::Contour),
            ("traefik", IngressController::Traefik),
        ]
        .into_iter()
        .find(|(needle, _)| n.contains(needle))
        .map(|(_, c)| c)
    };
    controller
        .and_then(by_controller)
        .or_else(|| class_name.and_then(by_name))
        .unwrap_or(IngressController::Generic)
}

fn configmap_data(cm: ConfigMap) -> Data {
    let text = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()));
    let binary = cm
        .binary_data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, ByteString(v))| (k, v));
    text.chain(binary).collect()
}

fn secret_data(secret: Secret) -> Data {
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, ByteString(v))| (k, v))
        .collect()
}

/// Digest of one key, or of every key and value when `key` is `None`; `None` if the key is
/// absent.
fn digest_of(data: &Data, key: Option<&str>) -> Option<String> {
    let mut hasher = Sha256::new();
    match key {
        Some(key) => hasher.update(data.get(key)?),
        None => {
            for (k, v) in data {
                // Length prefixes keep ("ab","c") and ("a","bc") apart.
                hasher.update((k.len() as u64).to_le_bytes());
                hasher.update(k.as_bytes());
                hasher.update((v.len() as u64).to_le_bytes());
                hasher.update(v);
            }
        }
    }
    Some(hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_comes_from_the_ingress_class_first() {
        assert_eq!(
            detect_controller(Some("ingress.k8s.aws/alb"), Some("nginx")),
            IngressController::AwsLoadBalancer
        );
        assert_eq!(
            detect_controller(Some("k8s.io/ingress-nginx"), None),
            IngressController::IngressNginx
        );
        assert_eq!(
            detect_controller(Some("haproxy-ingress.github.io/controller"), None),
            IngressController::HAProxy
        );
        assert_eq!(
            detect_controller(Some("projectcontour.io/ingress-controller"), None),
            IngressController::Contour
        );
    }

    #[test]
    fn controller_falls_back_to_the_class_name() {
        assert_eq!(
            detect_controller(None, Some("public-traefik")),
            IngressController::Traefik
        );
        assert_eq!(
            detect_controller(Some("example.com/unknown"), Some("alb")),
            IngressController::AwsLoadBalancer
        );
        assert_eq!(detect_controller(None, Some("internal")), IngressController::Generic);
        assert_eq!(detect_controller(None, None), IngressController::Generic);
    }

    #[test]
    fn digests_name_the_value_not_the_key() {
        let data: BTreeMap<String, Vec<u8>> =
            [("a".to_owned(), b"one".to_vec()), ("b".to_owned(), b"two".to_vec())].into();
        let a = digest_of(&data, Some("a")).expect("present");
        assert_eq!(a.len(), 64);
        assert_ne!(Some(a), digest_of(&data, Some("b")));
        assert_eq!(digest_of(&data, Some("missing")), None);
        let mut changed = data.clone();
        changed.insert("b".into(), b"three".to_vec());
        assert_ne!(digest_of(&data, None), digest_of(&changed, None));
    }
}
