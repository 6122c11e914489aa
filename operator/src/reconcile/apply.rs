//! Step 4, writes: server-side apply of every child that differs from what is live, with one
//! field manager and force (the operator owns these fields); deletion of children no longer
//! wanted. Kinds come in the order of [`super::children::CHILD_KINDS`].
//!
//! "What is live" comes from the controller's watch caches: a child that is already as wanted
//! costs no request at all. Only when the cache shows a difference, shows nothing, or has not
//! finished its first list is the object read from the API before deciding: the cache may lag
//! behind a write just made, and a write must not be repeated (nor reported twice) for that.

use std::any::Any;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Settings;
use super::build::MANAGER;
use super::children::{Cached, ChildCaches, ChildObject, Children};
use super::compare::is_subset;
use super::dereference::hex;
use crate::error::{Error, Result};

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
    /// Each wanted child as it is after the step (live, or as just applied), by kind.
    live: Vec<Arc<dyn Any + Send + Sync>>,
    pub changes: Vec<Change>,
    /// Children that exist but belong to someone else; left untouched.
    pub conflicts: Vec<String>,
}

impl Applied {
    /// The child of kind `K` as it is after the step, if it exists and is the operator's.
    pub fn live<K: ChildObject>(&self) -> Option<&K> {
        self.live.iter().find_map(|object| object.downcast_ref())
    }

    /// Nothing applied; `object` (if any) is what is live.
    pub fn with_live<K: ChildObject>(object: Option<K>) -> Self {
        let mut applied = Self::default();
        if let Some(object) = object {
            applied.record_live(object);
        }
        applied
    }

    fn record_live<K: ChildObject>(&mut self, object: K) {
        self.live.push(Arc::new(object));
    }
}

/// Where the children of one VoiceAgent go.
pub struct Target<'a> {
    pub namespace: &'a str,
    /// The VoiceAgent's name, which optional children share.
    pub name: &'a str,
    pub owner_uid: &'a str,
}

/// Applies `children` of the VoiceAgent `target`, skipping kinds the cluster does not serve.
pub async fn apply(
    client: &Client,
    caches: &ChildCaches,
    target: Target<'_>,
    children: Children,
    settings: &Settings,
) -> Result<Applied> {
    let mut out = Applied::default();
    let writer = Writer { client, caches, target };
    for child in children.0.iter().filter(|c| c.kind().is_served(settings)) {
        child.apply(&writer, &mut out).await?;
    }
    Ok(out)
}

/// The operator's child `namespace/name` of kind `K`, if there is one: from the watch cache,
/// or from the API until the cache has its first list.
pub async fn read_owned<K: ChildObject>(
    client: &Client,
    caches: &ChildCaches,
    target: &Target<'_>,
    name: &str,
) -> Result<Option<K>> {
    let live = match caches.lookup::<K>(target.namespace, name) {
        Cached::Present(cached) => cached.0.as_ref().ok().cloned(),
        Cached::Absent => None,
        Cached::Unknown => Api::<K>::namespaced(client.clone(), target.namespace)
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading {} {name}", K::kind(&()))))?,
    };
    Ok(live.filter(|l| controlled_by(l.meta(), target.owner_uid)))
}

/// Applies and deletes the children of one VoiceAgent.
pub struct Writer<'a> {
    client: &'a Client,
    caches: &'a ChildCaches,
    target: Target<'a>,
}

impl Writer<'_> {
    fn api<K: ChildObject>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), self.target.namespace)
    }

    /// Applies `desired` unless the live object already matches it.
    #[tracing::instrument(
        name = "apply child",
        skip_all,
        fields(otel.name = format!("apply {}", K::kind(&())), kind = %K::kind(&()), read = tracing::field::Empty)
    )]
    pub async fn ensure<K: ChildObject>(&self, desired: &K, out: &mut Applied) -> Result<()> {
        let kind = K::kind(&()).to_string();
        let name = desired.meta().name.clone().unwrap_or_default();
        let body = with_applied_hash(desired)?;
        if let Cached::Present(cached) = self.caches.lookup::<K>(self.target.namespace, &name)
            && let Ok(live) = &cached.0
            && controlled_by(live.meta(), self.target.owner_uid)
            && is_subset(&body, &to_json(live)?)
        {
            out.record_live(live.clone());
            return Ok(());
        }
        // The cache differs, lacks the object or is not listed yet: read it before deciding.
        tracing::Span::current().record("read", true);
        let api = self.api::<K>();
        let live = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading {kind} {name}")))?;
        if let Some(live) = &live {
            if !controlled_by(live.meta(), self.target.owner_uid) {
                out.conflicts
                    .push(format!("{kind} {name:?} exists and is not owned by this VoiceAgent"));
                return Ok(());
            }
            if is_subset(&body, &to_json(live)?) {
                out.record_live(live.clone());
                return Ok(());
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
        out.record_live(applied);
        Ok(())
    }

    /// Applies the child when wanted, deletes the operator's one when not.
    #[tracing::instrument(
        name = "optional child",
        skip_all,
        fields(otel.name = format!("optional {}", K::kind(&())), kind = %K::kind(&()), wanted = desired.is_some())
    )]
    pub async fn reconcile_optional<K: ChildObject>(&self, desired: Option<&K>, out: &mut Applied) -> Result<()> {
        if let Some(desired) = desired {
            return self.ensure(desired, out).await;
        }
        let kind = K::kind(&()).to_string();
        let name = self.target.name;
        // Only the operator's own object goes; a same-named object of someone else stays.
        let Some(live) = read_owned::<K>(self.client, self.caches, &self.target, name).await? else {
            return Ok(());
        };
        // Deletes exactly the object seen, even if the cache lagged behind a replacement.
        let params = DeleteParams {
            preconditions: live.meta().uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match self.api::<K>().delete(name, &params).await {
            Ok(_) => {}
            // Gone, or replaced by another object: its own watch event brings the VoiceAgent back.
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => return Ok(()),
            Err(e) => return Err(Error::kube(format!("deleting {kind} {name}"))(e)),
        }
        tracing::info!(%kind, %name, "deleted: no longer wanted");
        out.changes.push(Change {
            kind: ChangeKind::Deleted,
            object_kind: kind,
            name: name.to_owned(),
        });
        Ok(())
    }
}

fn to_json<K: Serialize>(live: &K) -> Result<Value> {
    serde_json::to_value(live).map_err(|source| Error::Encode {
        what: "live object",
        source,
    })
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
