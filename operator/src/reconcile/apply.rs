//! Step 4, writes: server-side apply of every child that differs from what is live, with one
//! field manager and force (the operator owns these fields); deletion of children no longer
//! wanted. A child that is already as wanted costs one read and no write.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::build::{Children, MANAGER};
use super::compare::is_subset;
use super::dereference::hex;
use crate::error::{Error, Result};
use crate::gateway_api::HTTPRoute;

/// Annotation on every child: digest of what the operator last applied. It changes whenever the
/// desired object does, including when a field is dropped, which a field-by-field comparison
/// with the live object cannot see.
pub const APPLIED_HASH_ANNOTATION: &str = "voiceagent.dev/applied-hash";

/// What happened to one child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// A write the apply step made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub object_kind: String,
    pub name: String,
}

/// The outcome of the apply step.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// The live Deployment after the step (for status).
    pub deployment: Option<Deployment>,
    pub changes: Vec<Change>,
    /// Children that exist but belong to someone else; left untouched.
    pub conflicts: Vec<String>,
}

/// Applies `children` of the VoiceAgent `namespace/name` with uid `owner_uid`.
pub async fn apply(
    client: &Client,
    namespace: &str,
    name: &str,
    owner_uid: &str,
    children: Children,
    gateway_api: bool,
) -> Result<Applied> {
    let mut out = Applied::default();
    let writer = Writer {
        client,
        namespace,
        owner_uid,
    };
    // The ConfigMap first, so new pods find their configuration.
    writer.ensure::<ConfigMap>(&children.configmap, &mut out).await?;
    writer.ensure::<Service>(&children.service, &mut out).await?;
    out.deployment = writer.ensure::<Deployment>(&children.deployment, &mut out).await?;
    // Optional children share the agent's name, so an unwanted one is found without a list.
    writer
        .reconcile_optional::<Ingress>(name, children.ingress.as_ref(), &mut out)
        .await?;
    if gateway_api {
        writer
            .reconcile_optional::<HTTPRoute>(name, children.httproute.as_ref(), &mut out)
            .await?;
    }
    writer
        .reconcile_optional::<HorizontalPodAutoscaler>(name, children.hpa.as_ref(), &mut out)
        .await?;
    writer
        .reconcile_optional::<PodDisruptionBudget>(name, children.pdb.as_ref(), &mut out)
        .await?;
    writer
        .reconcile_optional::<NetworkPolicy>(name, children.network_policy.as_ref(), &mut out)
        .await?;
    Ok(out)
}

struct Writer<'a> {
    client: &'a Client,
    namespace: &'a str,
    owner_uid: &'a str,
}

impl Writer<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Applies `desired` unless the live object already matches it.
    #[tracing::instrument(
        name = "apply child",
        skip_all,
        fields(otel.name = format!("apply {}", K::kind(&())), kind = %K::kind(&()))
    )]
    async fn ensure<K>(&self, desired: &K, out: &mut Applied) -> Result<Option<K>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let kind = K::kind(&()).to_string();
        let name = desired.meta().name.clone().unwrap_or_default();
        let api = self.api::<K>();
        let body = with_applied_hash(desired)?;
        let live = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading {kind} {name}")))?;
        if let Some(live) = &live {
            if !controlled_by(live.meta(), self.owner_uid) {
                out.conflicts
                    .push(format!("{kind} {name:?} exists and is not owned by this VoiceAgent"));
                return Ok(None);
            }
            let live_json = serde_json::to_value(live).map_err(|source| Error::Encode {
                what: "live object",
                source,
            })?;
            if is_subset(&body, &live_json) {
                return Ok(Some(live.clone()));
            }
        }
        let applied = api
            .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
            .await
            .map_err(Error::kube(format!("applying {kind} {name}")))?;
        tracing::info!(%kind, %name, created = live.is_none(), "applied");
        out.changes.push(Change {
            kind: if live.is_some() {
                ChangeKind::Updated
            } else {
                ChangeKind::Created
            },
            object_kind: kind,
            name,
        });
        Ok(Some(applied))
    }

    /// Applies the child when wanted, deletes the operator's one when not.
    #[tracing::instrument(
        name = "optional child",
        skip_all,
        fields(otel.name = format!("optional {}", K::kind(&())), kind = %K::kind(&()), wanted = desired.is_some())
    )]
    async fn reconcile_optional<K>(&self, name: &str, desired: Option<&K>, out: &mut Applied) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        if let Some(desired) = desired {
            self.ensure(desired, out).await?;
            return Ok(());
        }
        let kind = K::kind(&()).to_string();
        let api = self.api::<K>();
        let live = api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading {kind} {name}")))?;
        // Only the operator's own object goes; a same-named object of someone else stays.
        if live.is_some_and(|l| controlled_by(l.meta(), self.owner_uid)) {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(()),
                Err(e) => return Err(Error::kube(format!("deleting {kind} {name}"))(e)),
            }
            tracing::info!(%kind, %name, "deleted: no longer wanted");
            out.changes.push(Change {
                kind: ChangeKind::Deleted,
                object_kind: kind,
                name: name.to_owned(),
            });
        }
        Ok(())
    }
}

/// Whether `meta` has a controller owner reference to the object with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// `desired` as JSON with the applied-hash annotation set to the digest of the rest.
fn with_applied_hash<K: Serialize>(desired: &K) -> Result<Value> {
    let mut body = serde_json::to_value(desired).map_err(|source| Error::Encode {
        what: "desired object",
        source,
    })?;
    // serde_json maps are ordered by key, so the text (and digest) is canonical.
    let digest = hex(&Sha256::digest(body.to_string().as_bytes()));
    let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(body);
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(APPLIED_HASH_ANNOTATION.into(), Value::String(digest));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn configmap(data: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                ..ObjectMeta::default()
            },
            data: Some([("k".to_owned(), data.to_owned())].into()),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn the_hash_follows_the_content() {
        let a = with_applied_hash(&configmap("1")).expect("json");
        let again = with_applied_hash(&configmap("1")).expect("json");
        let b = with_applied_hash(&configmap("2")).expect("json");
        let hash = |v: &Value| v["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].clone();
        assert_eq!(hash(&a), hash(&again));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).as_str().map(str::len), Some(64));
    }

    #[test]
    fn a_dropped_field_is_seen_through_the_hash() {
        let mut with_label = configmap("1");
        with_label.metadata.labels = Some([("x".to_owned(), "y".to_owned())].into());
        // What is live after applying `with_label`...
        let live = with_applied_hash(&with_label).expect("json");
        // ...still contains everything of the plain object, but its hash differs.
        let plain = with_applied_hash(&configmap("1")).expect("json");
        assert!(!is_subset(&plain, &live));
        assert!(is_subset(&live, &live));
    }

    #[test]
    fn only_controller_references_to_the_agent_count() {
        let owner = |uid: &str, controller| OwnerReference {
            uid: uid.into(),
            controller: Some(controller),
            ..OwnerReference::default()
        };
        let meta = |refs| ObjectMeta {
            owner_references: Some(refs),
            ..ObjectMeta::default()
        };
        assert!(controlled_by(&meta(vec![owner("u1", true)]), "u1"));
        assert!(!controlled_by(&meta(vec![owner("u1", false)]), "u1"));
        assert!(!controlled_by(&meta(vec![owner("u2", true)]), "u1"));
        assert!(!controlled_by(&ObjectMeta::default(), "u1"));
    }
}
