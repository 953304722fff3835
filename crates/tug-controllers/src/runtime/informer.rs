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
        let mut synced = self.synced.clone();
        // The sender lives as long as the informer task; if it is gone, there is nothing to wait for.
        let _ = synced.wait_for(|s| *s).await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Indexed<K>> {
        // A handler that panicked cannot leave the maps half-updated (updates happen before
        // handlers run), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
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
                    let mut next = Indexed::default();
                    for obj in &fresh {
                        next.apply(obj.clone());
                    }
                    let previous = std::mem::replace(&mut *inner.write().unwrap_or_else(|e| e.into_inner()), next);
                    let mut gone = previous.objects;
                    for obj in &fresh {
                        let old = gone.remove(&Key::of(obj.as_ref()));
                        let changed = old.as_ref().is_none_or(|o| o.resource_version() != obj.resource_version());
                        if changed {
                            notify(old.as_deref(), Some(obj));
                        }
                    }
                    for old in gone.values() {
                        notify(Some(old), None);
                    }
                    synced_tx.send_replace(true);
                }
            }
        }
    }
}
