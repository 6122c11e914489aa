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
use crate::api::{GatewayImplementation, IngressController, VoiceAgent};
use crate::error::{Error, Result};
use crate::gateway_api::{Gateway, GatewayClass};

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
    /// `spec.controllerName` of the GatewayClass of the route's first parent Gateway, when it
    /// could be read.
    pub gateway_class_controller: Option<String>,
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

/// Reads the ConfigMaps, Secrets, IngressClass and GatewayClass the agent refers to.
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
    let gateway_class_controller = match agent.spec.expose.as_ref().and_then(|e| e.gateway.as_ref()) {
        Some(route) if route.implementation.is_none() => match route.parent_refs.first() {
            Some(parent) => {
                let gateway_namespace = parent.namespace.as_deref().unwrap_or(&namespace);
                gateway_class_controller(client, gateway_namespace, &parent.name).await?
            }
            None => None,
        },
        _ => None,
    };
    Ok(Dereferenced {
        references: resolved,
        ingress_class_controller,
        gateway_class_controller,
    })
}

/// `spec.controllerName` of the class of Gateway `namespace/name`. A Gateway or class that is
/// missing (or not yet created), or not being allowed to read them, is not an error: the
/// implementation is then `Generic` until the next look.
async fn gateway_class_controller(client: &Client, namespace: &str, name: &str) -> Result<Option<String>> {
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), namespace);
    // Forbidden (a namespace-scoped install), or a 404 without an API status: the cluster
    // serves HTTPRoutes but not Gateways (no Gateway CRD installed yet).
    let tolerated =
        |err: &kube::Error| matches!(err, kube::Error::Api(status) if status.is_forbidden() || status.code == 404);
    let class_name = match gateways.get_opt(name).await {
        Ok(Some(gateway)) => gateway.spec.gateway_class_name,
        Ok(None) => return Ok(None),
        Err(err) if tolerated(&err) => {
            tracing::debug!("Gateways cannot be read here; the Gateway API implementation is not detected");
            return Ok(None);
        }
        Err(err) => return Err(Error::kube("reading Gateway")(err)),
    };
    let classes: Api<GatewayClass> = Api::all(client.clone());
    match classes.get_opt(&class_name).await {
        Ok(class) => Ok(class.map(|c| c.spec.controller_name)),
        Err(err) if tolerated(&err) => {
            tracing::debug!("GatewayClasses cannot be read here; the Gateway API implementation is not detected");
            Ok(None)
        }
        Err(err) => Err(Error::kube("reading GatewayClass")(err)),
    }
}

/// The Gateway API implementation behind a GatewayClass's `controllerName`.
pub fn detect_gateway_implementation(controller_name: Option<&str>) -> GatewayImplementation {
    const BY_PREFIX: [(&str, GatewayImplementation); 6] = [
        ("gateway.envoyproxy.io/", GatewayImplementation::EnvoyGateway),
        ("istio.io/", GatewayImplementation::Istio),
        ("gateway.nginx.org/", GatewayImplementation::NginxGatewayFabric),
        ("traefik.io/", GatewayImplementation::Traefik),
        ("kgateway.dev/", GatewayImplementation::Kgateway),
        ("io.cilium/", GatewayImplementation::Cilium),
    ];
    controller_name
        .and_then(|c| BY_PREFIX.into_iter().find(|(prefix, _)| c.starts_with(prefix)))
        .map_or(GatewayImplementation::Generic, |(_, implementation)| implementation)
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
    fn gateway_implementation_comes_from_the_class_controller() {
        let cases = [
            (
                "gateway.envoyproxy.io/gatewayclass-controller",
                GatewayImplementation::EnvoyGateway,
            ),
            ("istio.io/gateway-controller", GatewayImplementation::Istio),
            (
                "gateway.nginx.org/nginx-gateway-controller",
                GatewayImplementation::NginxGatewayFabric,
            ),
            ("traefik.io/gateway-controller", GatewayImplementation::Traefik),
            ("kgateway.dev/kgateway", GatewayImplementation::Kgateway),
            ("io.cilium/gateway-controller", GatewayImplementation::Cilium),
            ("example.com/gateway", GatewayImplementation::Generic),
        ];
        for (controller, expected) in cases {
            assert_eq!(
                detect_gateway_implementation(Some(controller)),
                expected,
                "{controller}"
            );
        }
        assert_eq!(detect_gateway_implementation(None), GatewayImplementation::Generic);
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
