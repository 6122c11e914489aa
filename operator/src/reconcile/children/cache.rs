//! The watch caches of the children. One watch per kind feeds both the controller (a changed
//! child wakes its VoiceAgent) and a cache the apply step compares against, so an unchanged
//! child costs no request at all. Only the operator's own children (by label) are cached, and
//! without their `managedFields`; an object that does not decode is cached as such instead of
//! stalling the watch.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use futures::{FutureExt as _, Stream};
use kube::ResourceExt as _;
use kube::api::Api;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};

use super::ChildObject;

/// What the cache of a kind says about one object.
#[derive(Debug)]
pub enum Cached<K> {
    /// The kind has no cache, or it has not finished its first list: ask the API.
    Unknown,
    /// The cache has no such object (it may still lag behind a write just made).
    Absent,
    /// The object as last seen by the watch (possibly one that did not decode).
    Present(Arc<DeserializeGuard<K>>),
}

/// The caches of every watched child kind, by type.
#[derive(Clone, Default)]
pub struct ChildCaches {
    /// `Store<DeserializeGuard<K>>` under `TypeId::of::<K>()`.
    stores: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl ChildCaches {
    /// The cached object `namespace/name` of kind `K`.
    pub fn lookup<K: ChildObject>(&self, namespace: &str, name: &str) -> Cached<K> {
        let Some(store) = self.store::<K>() else {
            return Cached::Unknown;
        };
        // Ready once the first list is in; never waits.
        if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
            return Cached::Unknown;
        }
        match store.get(&ObjectRef::new(name).within(namespace)) {
            Some(object) => Cached::Present(object),
            None => Cached::Absent,
        }
    }

    /// A watch of the operator's children of kind `K` (as `config` selects them) that keeps
    /// this set's cache of the kind; the stream yields every object it sees, for triggering.
    pub fn watch<K: ChildObject>(
        &mut self,
        api: Api<DeserializeGuard<K>>,
        config: watcher::Config,
    ) -> impl Stream<Item = Result<DeserializeGuard<K>, watcher::Error>> + Send + 'static {
        let (store, writer) = reflector::store();
        self.stores.insert(TypeId::of::<K>(), Arc::new(store));
        watcher(api, config)
            // The apply step never compares managed fields; they are most of an object's size.
            .modify(|child| child.managed_fields_mut().clear())
            .reflect(writer)
            .touched_objects()
    }

    fn store<K: ChildObject>(&self) -> Option<&Store<DeserializeGuard<K>>> {
        self.stores.get(&TypeId::of::<K>())?.downcast_ref()
    }

    /// A cache of kind `K` fed by hand, for tests.
    #[cfg(test)]
    pub fn with_writer<K: ChildObject>(&mut self) -> reflector::store::Writer<DeserializeGuard<K>> {
        let (store, writer) = reflector::store();
        self.stores.insert(TypeId::of::<K>(), Arc::new(store));
        writer
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::Resource as _;
    use kube::runtime::watcher::Event;

    use super::*;

    fn service(name: &str) -> DeserializeGuard<Service> {
        DeserializeGuard(Ok(Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("voice".into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }))
    }

    #[test]
    fn an_unlisted_cache_knows_nothing() {
        let mut caches = ChildCaches::default();
        assert!(matches!(caches.lookup::<Service>("voice", "a"), Cached::Unknown));
        let mut writer = caches.with_writer::<Service>();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(service("a")));
        assert!(matches!(caches.lookup::<Service>("voice", "a"), Cached::Unknown));
        // Another kind's cache is another cache.
        assert!(matches!(caches.lookup::<Deployment>("voice", "a"), Cached::Unknown));
    }

    #[test]
    fn a_listed_cache_answers_present_or_absent() {
        let mut caches = ChildCaches::default();
        let mut writer = caches.with_writer::<Service>();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(service("a")));
        writer.apply_watcher_event(&Event::InitDone);
        let Cached::Present(found) = caches.lookup::<Service>("voice", "a") else {
            panic!("not found");
        };
        assert_eq!(found.meta().name.as_deref(), Some("a"));
        assert!(matches!(caches.lookup::<Service>("voice", "b"), Cached::Absent));
        assert!(matches!(caches.lookup::<Service>("other", "a"), Cached::Absent));
    }
}
