//! Shared informers, as client-go's: ONE watch per kind for all controllers, kept in an indexed
//! in-memory cache, with handlers that turn each change into work-queue keys.
//!
//! kube-runtime's `Controller` gives every controller its own watches and a store without
//! indexes; with 100,000 pods and six controllers that is six decodes of every pod change and a
//! full scan to find a ReplicaSet's pods. Here a pod change is decoded once, indexed by its
//! controller's uid (and kept in a per-namespace set of orphans for adoption), and handed to
//! every interested controller's handler.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, watcher::Event};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::Key;

/// Called after every change with the object before and after it (`None`: absent).
pub type Handler<K> = Arc<dyn Fn(Option<&K>, Option<&K>) + Send + Sync>;

/// The objects of one kind, indexed.
#[derive(Debug)]
struct Indexed<K> {
    objects: HashMap<Key, Arc<K>>,
    /// Controller owner uid → the keys of the objects it controls.
    by_controller: HashMap<String, HashSet<Key>>,
    /// Namespace → objects without a controller (candidates for adoption).
    orphans: HashMap<String, HashSet<Key>>,
}

impl<K> Default for Indexed<K> {
    fn default() -> Self {
        Indexed { objects: HashMap::new(), by_controller: HashMap::new(), orphans: HashMap::new() }
    }
}

fn controller_uid<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta().owner_references.iter().flatten().find(|r| r.controller == Some(true)).map(|r| r.uid.as_str())
}

impl<K: Resource> Indexed<K> {
    /// The index an object is kept in, and its entry there: its controller's uid, or, for an
    /// orphan, its namespace.
    fn index_of(&mut self, key: &Key, obj: &K) -> (&mut HashMap<String, HashSet<Key>>, String) {
        match controller_uid(obj) {
            Some(uid) => (&mut self.by_controller, uid.to_string()),
            None => (&mut self.orphans, key.namespace.clone()),
        }
    }

    fn unindex(&mut self, key: &Key, obj: &K) {
        let (map, index) = self.index_of(key, obj);
        if let Some(set) = map.get_mut(&index) {
            set.remove(key);
            if set.is_empty() {
                map.remove(&index);
            }
        }
    }

    fn index(&mut self, key: &Key, obj: &K) {
        let (map, index) = self.index_of(key, obj);
        map.entry(index).or_default().insert(key.clone());
    }

    fn apply(&mut self, obj: Arc<K>) -> Option<Arc<K>> {
        let key = Key::of(obj.as_ref());
        let old = self.objects.insert(key.clone(), obj.clone());
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        self.index(&key, &obj);
        old
    }

    fn remove(&mut self, key: &Key) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        self.unindex(key, &old);
        Some(old)
    }
}

/// A read handle on one kind's cache. Cheap to clone.
#[derive(Debug)]
pub struct Cache<K> {
    inner: Arc<RwLock<Indexed<K>>>,
    synced: watch::Receiver<bool>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache { inner: self.inner.clone(), synced: self.synced.clone() }
    }
}

impl<K: Resource> Cache<K> {
    pub fn get(&self, key: &Key) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    /// Every object whose controller ownerReference has this uid.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<K>> {
        let inner = self.read();
        inner.by_controller.get(uid).into_iter().flatten().filter_map(|k| inner.objects.get(k).cloned()).collect()
    }

    /// Every object of the namespace without a controller.
    pub fn orphans_in(&self, namespace: &str) -> Vec<Arc<K>> {
        let inner = self.read();
        inner.orphans.get(namespace).into_iter().flatten().filter_map(|k| inner.objects.get(k).cloned()).collect()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read().objects.iter().filter(|(k, _)| k.namespace == namespace).map(|(_, v)| v.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the first full list has been loaded.
    pub async fn wait_synced(&self) {
        self.synced().await;
    }

    /// [`Cache::wait_synced`] as a future that borrows nothing.
    pub fn synced(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut synced = self.synced.clone();
        async move {
            // The sender lives as long as the informer task; if it is gone, there is nothing to
            // wait for.
            let _ = synced.wait_for(|s| *s).await;
        }
    }

    /// A cache holding these objects, already synced: for tests of what reads caches.
    pub fn of(objects: impl IntoIterator<Item = K>) -> Cache<K> {
        let mut indexed = Indexed::default();
        for obj in objects {
            indexed.apply(Arc::new(obj));
        }
        Cache { inner: Arc::new(RwLock::new(indexed)), synced: watch::channel(true).1 }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Indexed<K>> {
        // A handler that panicked cannot leave the maps half-updated (updates happen before
        // handlers run), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Replaces the cache's content with a fresh list at once, and returns what the handlers must
/// hear of: `(old, new)` for every object that is new or changed (another resourceVersion), and
/// `(old, None)` for every object that went meanwhile.
#[allow(clippy::type_complexity)]
fn replace_all<K: Resource>(inner: &RwLock<Indexed<K>>, fresh: Vec<Arc<K>>) -> Vec<(Option<Arc<K>>, Option<Arc<K>>)> {
    let mut next = Indexed::default();
    for obj in &fresh {
        next.apply(obj.clone());
    }
    let previous = std::mem::replace(&mut *inner.write().unwrap_or_else(|e| e.into_inner()), next);
    let mut gone = previous.objects;
    let mut changes = Vec::new();
    for obj in fresh {
        let old = gone.remove(&Key::of(obj.as_ref()));
        if old.as_ref().is_none_or(|o| o.resource_version() != obj.resource_version()) {
            changes.push((old, Some(obj)));
        }
    }
    changes.extend(gone.into_values().map(|old| (Some(old), None)));
    changes
}

/// The writing side: owns the watch and the handlers.
pub struct Informer<K> {
    api: Api<K>,
    handlers: Vec<Handler<K>>,
    inner: Arc<RwLock<Indexed<K>>>,
    synced_tx: watch::Sender<bool>,
    synced_rx: watch::Receiver<bool>,
}

impl<K> std::fmt::Debug for Informer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer").field("handlers", &self.handlers.len()).finish()
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    pub fn new(api: Api<K>) -> Informer<K> {
        let (synced_tx, synced_rx) = watch::channel(false);
        Informer { api, handlers: Vec::new(), inner: Arc::default(), synced_tx, synced_rx }
    }

    pub fn cache(&self) -> Cache<K> {
        Cache { inner: self.inner.clone(), synced: self.synced_rx.clone() }
    }

    pub fn on_change(&mut self, handler: impl Fn(Option<&K>, Option<&K>) + Send + Sync + 'static) {
        self.handlers.push(Arc::new(handler));
    }

    /// Runs the watch until the task is dropped. Relists (after a 410 or a broken watch) replace
    /// the cache atomically and tell the handlers what changed in between.
    pub async fn run(self) {
        let Informer { api, handlers, inner, synced_tx, .. } = self;
        let notify = |old: Option<&K>, new: Option<&K>| {
            for handler in &handlers {
                handler(old, new);
            }
        };
        let mut relisted: Option<Vec<Arc<K>>> = None;
        // Streaming lists: the initial state arrives on the watch itself, from the server's
        // cache, with no gap between a list's revision and the watch's start. A paged relist of
        // 100,000 pods takes long enough for that revision to be compacted away under a heavy
        // write load, which would 410 the watch and start the relist over, for ever.
        let config = watcher::Config::default().streaming_lists();
        let mut stream = watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::debug!(kind = %K::kind(&()), error = %e, "informer watch failed; retrying");
                    continue;
                }
            };
            match event {
                Event::Apply(obj) => {
                    let obj = Arc::new(obj);
                    let old = inner.write().unwrap_or_else(|e| e.into_inner()).apply(obj.clone());
                    notify(old.as_deref(), Some(&obj));
                }
                Event::Delete(obj) => {
                    let old = inner.write().unwrap_or_else(|e| e.into_inner()).remove(&Key::of(&obj));
                    notify(old.as_deref().or(Some(&obj)), None);
                }
                Event::Init => relisted = Some(Vec::new()),
                Event::InitApply(obj) => relisted.get_or_insert_with(Vec::new).push(Arc::new(obj)),
                Event::InitDone => {
                    let fresh = relisted.take().unwrap_or_default();
                    for (old, new) in replace_all(&inner, fresh) {
                        notify(old.as_deref(), new.as_deref());
                    }
                    synced_tx.send_replace(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(ns: &str, name: &str, controller: Option<&str>, version: &str) -> Pod {
        let owner = |uid: &str| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: uid.into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                owner_references: controller.map(|uid| vec![owner(uid)]),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(pods: Vec<Arc<Pod>>) -> Vec<String> {
        let mut names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        names.sort();
        names
    }

    #[test]
    fn objects_are_found_by_their_controller_and_orphans_by_namespace() {
        let cache = Cache::of([pod("a", "p1", Some("u1"), "1"), pod("a", "p2", None, "1"), pod("b", "p3", None, "1")]);
        assert_eq!(names(cache.controlled_by("u1")), ["p1"]);
        assert_eq!(names(cache.orphans_in("a")), ["p2"]);
        assert_eq!(names(cache.orphans_in("b")), ["p3"]);
        assert_eq!(names(cache.list_namespace("a")), ["p1", "p2"]);
        // Adopted: it moves from the orphans to its controller.
        let adopted = Arc::new(pod("a", "p2", Some("u1"), "2"));
        let old = cache.inner.write().unwrap().apply(adopted);
        assert_eq!(old.map(|o| o.resource_version()), Some(Some("1".into())));
        assert_eq!(names(cache.controlled_by("u1")), ["p1", "p2"]);
        assert!(cache.orphans_in("a").is_empty());
        // Released to another controller, then removed: no index keeps it, none is left empty.
        cache.inner.write().unwrap().apply(Arc::new(pod("a", "p1", Some("u2"), "3")));
        assert_eq!(names(cache.controlled_by("u2")), ["p1"]);
        assert_eq!(names(cache.controlled_by("u1")), ["p2"]);
        cache.inner.write().unwrap().remove(&Key::new("a", "p1"));
        assert!(cache.controlled_by("u2").is_empty());
        let inner = cache.inner.read().unwrap();
        assert!(!inner.by_controller.contains_key("u2"), "an emptied index entry is dropped");
        assert!(!inner.orphans.contains_key("a"));
        assert_eq!(cache.len(), 3 - 1);
    }

    #[test]
    fn a_relist_tells_the_handlers_only_what_changed_meanwhile() {
        let cache = Cache::of([
            pod("a", "same", None, "1"),
            pod("a", "changed", Some("u1"), "1"),
            pod("a", "gone", Some("u1"), "1"),
        ]);
        let fresh = [pod("a", "same", None, "1"), pod("a", "changed", None, "2"), pod("a", "new", Some("u1"), "3")];
        let changes = replace_all(&cache.inner, fresh.into_iter().map(Arc::new).collect());
        let mut seen: Vec<(Option<String>, Option<String>)> = changes
            .iter()
            .map(|(old, new)| {
                let version = |p: &Option<Arc<Pod>>| {
                    p.as_ref().map(|p| format!("{}@{}", p.name_any(), p.resource_version().unwrap()))
                };
                (version(old), version(new))
            })
            .collect();
        seen.sort();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(seen, [(None, s("new@3")), (s("changed@1"), s("changed@2")), (s("gone@1"), None)]);
        // The indexes are the fresh list's.
        assert_eq!(names(cache.controlled_by("u1")), ["new"]);
        assert_eq!(names(cache.orphans_in("a")), ["changed", "same"]);
        assert!(cache.get(&Key::new("a", "gone")).is_none());
    }
}
