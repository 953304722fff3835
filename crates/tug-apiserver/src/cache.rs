//! The watch cache: every stored object in memory, fed by ONE store watch (on the whole keyspace), so
//! lists and watches cost no store reads and a thousand watchers cost one store watch (the
//! Kubernetes apiserver's cacher is the model).
//!
//! Objects are kept as the JSON bytes clients receive (resourceVersion already filled in), with
//! their labels and selectable fields extracted once, so a list of 10,000 pods is a copy of
//! byte slices and a watch event is encoded once for all watchers.
//!
//! Consistency: the cache follows one global revision. A read that must be at least as new as
//! the store (a list without resourceVersion) first asks the store for its current revision
//! and waits until the cache has applied it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tug_store::{EventKind, ListOptions, Revision, Store};

use crate::object;

/// How many recent events are kept for watches that resume from a resourceVersion: at the
/// ~5,000 changes/s of a 100,000-pod rollout, ten seconds of history.
/// Where the API's objects live in the store.
const OBJECTS: &str = "/registry/";
/// Every key the server writes (objects and its own records under `/tugboat/`).
const KEYSPACE: &str = "/";
const HISTORY_EVENTS: usize = 50_000;
/// How often history the store has compacted away is dropped from the cache: after a burst,
/// its events (each holding whole objects) would otherwise stay until 50,000 newer ones push
/// them out, which on a quiet cluster is never.
const HISTORY_TRIM_INTERVAL: Duration = Duration::from_secs(30);
/// Room for undelivered events per watcher before it is cut off (it then re-watches): a few
/// seconds of a busy cluster, so a client that pauses briefly is not cut off.
const WATCHER_BUFFER: usize = 16 * 1024;
/// How long a read waits for the cache to reach a revision before answering 504.
pub const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// One object as served.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub revision: Revision,
    /// The object as clients receive it, `metadata.resourceVersion` filled in.
    pub json: Bytes,
    pub labels: BTreeMap<String, String>,
    /// Field-selector values beyond metadata.name and metadata.namespace.
    pub fields: Vec<(&'static str, String)>,
}

impl CachedObject {
    /// Decodes a stored value, stamping `revision` as its resourceVersion.
    pub fn decode(key: &str, value: &[u8], revision: Revision) -> Result<Self, serde_json::Error> {
        let mut obj: Value = serde_json::from_slice(value)?;
        object::set_resource_version(&mut obj, revision);
        Ok(Self::from_value(key, &obj, revision))
    }

    pub fn from_value(key: &str, obj: &Value, revision: Revision) -> Self {
        let storage = storage_of(key);
        let json = Bytes::from(serde_json::to_vec(obj).unwrap_or_default());
        CachedObject {
            key: key.to_string(),
            namespace: object::str_at(obj, &["metadata", "namespace"]).unwrap_or_default().to_string(),
            name: object::str_at(obj, &["metadata", "name"]).unwrap_or_default().to_string(),
            revision,
            json,
            labels: object::labels(obj),
            fields: selectable_fields(storage, obj),
        }
    }

    /// The value of a field selector's field, as Kubernetes' field label conversion gives it.
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone()),
            _ => self.fields.iter().find(|(f, _)| *f == name).map(|(_, v)| v.clone()),
        }
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// `/registry/<storage>/...` → `<storage>`.
pub fn storage_of(key: &str) -> &str {
    key.strip_prefix("/registry/").and_then(|rest| rest.split('/').next()).unwrap_or("")
}

/// The fields Kubernetes lets clients select on, per resource (beyond name and namespace).
fn selectable_fields(storage: &str, obj: &Value) -> Vec<(&'static str, String)> {
    let s = |path: &[&str]| object::scalar_string(obj, path).unwrap_or_default();
    match storage {
        "pods" => vec![
            ("spec.nodeName", s(&["spec", "nodeName"])),
            ("spec.restartPolicy", s(&["spec", "restartPolicy"])),
            ("spec.schedulerName", s(&["spec", "schedulerName"])),
            ("spec.serviceAccountName", s(&["spec", "serviceAccountName"])),
            ("spec.hostNetwork", object::scalar_string(obj, &["spec", "hostNetwork"]).unwrap_or("false".into())),
            ("status.phase", s(&["status", "phase"])),
            ("status.podIP", s(&["status", "podIP"])),
            ("status.nominatedNodeName", s(&["status", "nominatedNodeName"])),
        ],
        "events" => {
            let mut v = vec![
                ("involvedObject.kind", s(&["involvedObject", "kind"])),
                ("involvedObject.namespace", s(&["involvedObject", "namespace"])),
                ("involvedObject.name", s(&["involvedObject", "name"])),
                ("involvedObject.uid", s(&["involvedObject", "uid"])),
                ("involvedObject.apiVersion", s(&["involvedObject", "apiVersion"])),
                ("involvedObject.resourceVersion", s(&["involvedObject", "resourceVersion"])),
                ("involvedObject.fieldPath", s(&["involvedObject", "fieldPath"])),
                ("reason", s(&["reason"])),
                ("reportingComponent", s(&["reportingComponent"])),
                ("source", s(&["source", "component"])),
                ("type", s(&["type"])),
            ];
            // events.k8s.io/v1 names for the same fields.
            v.push(("regarding.kind", s(&["involvedObject", "kind"])));
            v.push(("regarding.name", s(&["involvedObject", "name"])));
            v.push(("regarding.namespace", s(&["involvedObject", "namespace"])));
            v.push(("regarding.uid", s(&["involvedObject", "uid"])));
            v
        }
        "nodes" => {
            vec![(
                "spec.unschedulable",
                object::scalar_string(obj, &["spec", "unschedulable"]).unwrap_or("false".into()),
            )]
        }
        "namespaces" => vec![("status.phase", s(&["status", "phase"]))],
        "secrets" => vec![("type", s(&["type"]))],
        "replicasets.apps" | "replicationcontrollers" => vec![("status.replicas", s(&["status", "replicas"]))],
        "jobs.batch" => vec![("status.successful", s(&["status", "succeeded"]))],
        "certificatesigningrequests.certificates.k8s.io" => vec![("spec.signerName", s(&["spec", "signerName"]))],
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, shared by every watcher it is delivered to.
#[derive(Debug)]
pub struct CacheEvent {
    pub revision: Revision,
    pub storage: String,
    pub kind: EventType,
    /// The object after the change; for a deletion, its last state at the deletion revision.
    pub object: Arc<CachedObject>,
    /// The object before the change, so a selector watch can turn "stopped matching" into DELETED.
    pub prev: Option<Arc<CachedObject>>,
}

/// A store change as a cache event. `cached_prev` is the object as the cache holds it, if it
/// does; otherwise the store's previous value is decoded.
pub fn event_from_store(event: &tug_store::WatchEvent, cached_prev: Option<Arc<CachedObject>>) -> Option<CacheEvent> {
    let revision = event.revision();
    let key = &event.kv.key;
    let prev = cached_prev.or_else(|| {
        event.prev.as_ref().and_then(|p| CachedObject::decode(&p.key, &p.value, p.mod_revision).ok()).map(Arc::new)
    });
    let (kind, object) = match event.kind {
        EventKind::Put => {
            let obj = CachedObject::decode(key, &event.kv.value, revision).ok()?;
            (if event.prev.is_some() { EventType::Modified } else { EventType::Added }, obj)
        }
        EventKind::Delete => {
            let last = event.prev.as_ref()?;
            let mut obj = serde_json::from_slice::<Value>(&last.value).ok()?;
            object::set_resource_version(&mut obj, revision);
            (EventType::Deleted, CachedObject::from_value(key, &obj, revision))
        }
    };
    Some(CacheEvent { revision, storage: storage_of(key).to_string(), kind, object: Arc::new(object), prev })
}

struct Shard {
    objects: BTreeMap<String, Arc<CachedObject>>,
    events: broadcast::Sender<Arc<CacheEvent>>,
}

impl Shard {
    fn new() -> Self {
        Shard { objects: BTreeMap::new(), events: broadcast::channel(WATCHER_BUFFER).0 }
    }
}

struct State {
    revision: Revision,
    shards: HashMap<String, Shard>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Every event after this revision is in `history`.
    history_start: Revision,
}

/// Why a watch cannot start where asked.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchStartError {
    /// The revision is older than the history kept: 410 Gone, the client must re-list.
    TooOld { requested: Revision, oldest: Revision },
}

/// A started watch: the events since the requested revision, then a live feed.
#[derive(Debug)]
pub struct CacheWatch {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// The cache revision when the watch started; live events are newer.
    pub start_revision: Revision,
}

/// Applies the store's watch until shutdown (or until the cache is dropped), reloading if the
/// watch is lost. Holds the cache only weakly, so stopping the server releases the store.
async fn follow(
    cache: std::sync::Weak<WatchCache>,
    store: Arc<dyn Store>,
    mut after: Revision,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut trim = tokio::time::interval(HISTORY_TRIM_INTERVAL);
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The whole keyspace, not just `/registry/`: the server's own records (service address
        // allocations, API server leases) take revisions too, and a list waits until the cache
        // has passed the store's current revision.
        match store.watch(KEYSPACE, after).await {
            Ok(mut stream) => loop {
                let item = tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = trim.tick() => {
                        let Some(cache) = cache.upgrade() else { return };
                        if let Ok(compacted) = store.compacted_revision().await {
                            cache.forget_history_through(compacted);
                        }
                        continue;
                    }
                    item = stream.recv() => item,
                };
                let Some(item) = item else { break };
                let Some(cache) = cache.upgrade() else { return };
                match item {
                    Ok(event) => {
                        after = event.revision();
                        if event.kv.key.starts_with(OBJECTS) {
                            cache.apply(event);
                        } else {
                            cache.pass_over(after);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch cache: store watch ended");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "watch cache: cannot watch the store"),
        }
        // Back off briefly, then resume where we were if history allows, else reload everything.
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let Some(cache) = cache.upgrade() else { return };
        if let Ok(compacted) = store.compacted_revision().await
            && compacted >= after
        {
            match cache.load().await {
                Ok(rev) => after = rev,
                Err(e) => tracing::warn!(error = %e, "watch cache: reload failed"),
            }
        }
    }
}

/// The cache. Cheap to share: wrap in an `Arc`.
pub struct WatchCache {
    state: RwLock<State>,
    revision: watch::Sender<Revision>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for WatchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCache").field("revision", &*self.revision.borrow()).finish()
    }
}

impl WatchCache {
    /// Loads every object and starts following the store. Returns once the cache is filled.
    /// The feeding task ends when `shutdown` turns true, releasing the store.
    pub async fn start(store: Arc<dyn Store>, shutdown: watch::Receiver<bool>) -> Result<Arc<Self>, tug_store::Error> {
        let state = State { revision: 0, shards: HashMap::new(), history: VecDeque::new(), history_start: 0 };
        let cache =
            Arc::new(WatchCache { state: RwLock::new(state), revision: watch::channel(0).0, store: store.clone() });
        let revision = cache.load().await?;
        let feeder = Arc::downgrade(&cache);
        tokio::spawn(follow(feeder, store, revision, shutdown));
        Ok(cache)
    }

    /// Replaces the whole content with a fresh list; returns its revision.
    async fn load(&self) -> Result<Revision, tug_store::Error> {
        let list = self.store.list(OBJECTS, ListOptions::default()).await?;
        let mut shards: HashMap<String, Shard> = HashMap::new();
        for kv in &list.items {
            match CachedObject::decode(&kv.key, &kv.value, kv.mod_revision) {
                Ok(obj) => {
                    shards
                        .entry(storage_of(&kv.key).to_string())
                        .or_insert_with(Shard::new)
                        .objects
                        .insert(kv.key.clone(), Arc::new(obj));
                }
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping an undecodable stored object"),
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        // Replacing shards drops their senders, which ends every live watch: after a resync
        // watchers must re-list, exactly as after a 410 in Kubernetes.
        state.shards = shards;
        state.revision = list.revision;
        state.history.clear();
        state.history_start = list.revision;
        drop(state);
        self.revision.send_replace(list.revision);
        Ok(list.revision)
    }

    fn apply(&self, event: tug_store::WatchEvent) {
        // Only this task changes the cache, so the previous object read here is still current
        // when the write lock is taken; decoding happens outside the lock.
        let cached_prev = self.get(&event.kv.key);
        let Some(event) = event_from_store(&event, cached_prev) else {
            tracing::warn!(key = %event.kv.key, "watch cache: undecodable object ignored");
            self.pass_over(event.revision());
            return;
        };
        let event = Arc::new(event);
        let revision = event.revision;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let shard = state.shards.entry(event.storage.clone()).or_insert_with(Shard::new);
        match event.kind {
            EventType::Deleted => shard.objects.remove(&event.object.key),
            _ => shard.objects.insert(event.object.key.clone(), event.object.clone()),
        };
        // No receivers is fine: nobody watches this resource.
        let _ = shard.events.send(event.clone());
        state.history.push_back(event);
        while state.history.len() > HISTORY_EVENTS {
            if let Some(old) = state.history.pop_front() {
                state.history_start = old.revision;
            }
        }
        state.revision = revision;
        drop(state);
        self.revision.send_replace(revision);
    }

    /// Moves the cache's revision past a store change it holds nothing of (a key outside
    /// `/registry/`, or an undecodable object), so reads waiting for that revision go on.
    fn pass_over(&self, revision: Revision) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if revision > state.revision {
            state.revision = revision;
            drop(state);
            self.revision.send_replace(revision);
        }
    }

    /// Drops the history the store has compacted away (at or below `compacted`): a watch from
    /// there would get 410 Gone from the store anyway, and keeping it holds whole objects.
    fn forget_history_through(&self, compacted: Revision) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        while state.history.front().is_some_and(|e| e.revision <= compacted) {
            if let Some(old) = state.history.pop_front() {
                state.history_start = old.revision;
            }
        }
    }

    /// The store the cache follows (for watches that must replay older history from it).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has applied `revision`; false on timeout.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok())
    }

    /// Waits until the cache holds every change committed so far.
    pub async fn sync(&self) -> Result<Revision, crate::ApiError> {
        let current = self.store.current_revision().await.map_err(crate::errors::from_store)?;
        if self.wait_for(current, FRESHNESS_WAIT).await {
            Ok(current.max(self.revision()))
        } else {
            Err(crate::ApiError::timeout(format!(
                "Too large resource version: the cache has not caught up with revision {current} yet"
            )))
        }
    }

    /// The objects under `prefix` (a storage or namespace prefix) that pass `filter`, in key
    /// order, starting after `after_key`; at most `limit` (0 = all). Also returns the revision
    /// the answer reflects and whether more matching objects remain.
    pub fn list(
        &self,
        storage: &str,
        prefix: &str,
        after_key: Option<&str>,
        limit: usize,
        filter: &(dyn Fn(&CachedObject) -> bool + Sync),
    ) -> (Vec<Arc<CachedObject>>, Revision, bool) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let Some(shard) = state.shards.get(storage) else { return (Vec::new(), state.revision, false) };
        let start = match after_key {
            Some(k) => std::ops::Bound::Excluded(k.to_string()),
            None => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut out = Vec::new();
        let mut more = false;
        for (key, obj) in shard.objects.range((start, std::ops::Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if !filter(obj) {
                continue;
            }
            if limit > 0 && out.len() == limit {
                more = true;
                break;
            }
            out.push(obj.clone());
        }
        (out, state.revision, more)
    }

    /// One object, as the cache holds it.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.shards.get(storage_of(key)).and_then(|s| s.objects.get(key).cloned())
    }

    /// Starts a watch on one storage from `after` (the events with a later revision).
    pub fn watch_from(&self, storage: &str, after: Revision) -> Result<CacheWatch, WatchStartError> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if after < state.history_start {
            return Err(WatchStartError::TooOld { requested: after, oldest: state.history_start });
        }
        let backlog = state.history.iter().filter(|e| e.revision > after && e.storage == storage).cloned().collect();
        let start_revision = state.revision;
        let live = state.shards.entry(storage.to_string()).or_insert_with(Shard::new).events.subscribe();
        Ok(CacheWatch { backlog, live, start_revision })
    }

    /// Subscribes to one storage's live events only: what a watch that replays older history from
    /// the store switches to once the replay reaches `start_revision`.
    pub fn watch_live(&self, storage: &str) -> CacheWatch {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let start_revision = state.revision;
        let live = state.shards.entry(storage.to_string()).or_insert_with(Shard::new).events.subscribe();
        CacheWatch { backlog: Vec::new(), live, start_revision }
    }

    /// Starts a watch on one storage "now", with synthetic ADDED events for every current
    /// object (what a watch without resourceVersion, or with "0", begins with).
    pub fn watch_with_state(&self, storage: &str) -> CacheWatch {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let revision = state.revision;
        let shard = state.shards.entry(storage.to_string()).or_insert_with(Shard::new);
        let backlog = shard
            .objects
            .values()
            .map(|o| {
                Arc::new(CacheEvent {
                    revision: o.revision,
                    storage: storage.to_string(),
                    kind: EventType::Added,
                    object: o.clone(),
                    prev: None,
                })
            })
            .collect();
        CacheWatch { backlog, live: shard.events.subscribe(), start_revision: revision }
    }

    /// Number of objects per storage (for metrics and tests).
    pub fn counts(&self) -> Vec<(String, usize)> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = state.shards.iter().map(|(k, s)| (k.clone(), s.objects.len())).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn history_the_store_compacted_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let options = tug_store::sqlite::SqliteOptions {
            compaction: tug_store::CompactionPolicy::manual(),
            ..Default::default()
        };
        let store: Arc<dyn Store> =
            Arc::new(tug_store::sqlite::SqliteStore::open(&dir.path().join("state.db"), options).await.unwrap());
        let (_stop, shutdown) = watch::channel(false);
        let cache = WatchCache::start(store.clone(), shutdown).await.unwrap();
        let key = |i: usize| format!("/registry/configmaps/default/cm-{i}");
        let object = |i: usize| format!(r#"{{"metadata":{{"name":"cm-{i}","namespace":"default"}}}}"#).into_bytes();
        let mut last = 0;
        for i in 0..10 {
            store.create(&key(i), object(i), None).await.unwrap();
            last = store.delete(&key(i), None).await.unwrap().revision;
        }
        assert!(cache.wait_for(last, FRESHNESS_WAIT).await);
        assert_eq!(cache.watch_from("configmaps", 0).unwrap().backlog.len(), 20, "all history is kept");

        store.compact(last - 4).await.unwrap();
        cache.forget_history_through(store.compacted_revision().await.unwrap());
        let err = cache.watch_from("configmaps", 0).unwrap_err();
        assert_eq!(err, WatchStartError::TooOld { requested: 0, oldest: last - 4 });
        assert_eq!(cache.watch_from("configmaps", last - 4).unwrap().backlog.len(), 4, "newer history stays");
    }

    #[tokio::test]
    async fn the_servers_own_records_do_not_hold_up_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            tug_store::sqlite::SqliteStore::open(&dir.path().join("state.db"), Default::default()).await.unwrap(),
        );
        let (_stop, shutdown) = watch::channel(false);
        let cache = WatchCache::start(store.clone(), shutdown).await.unwrap();
        store.create("/registry/configmaps/default/a", br#"{"metadata":{"name":"a"}}"#.to_vec(), None).await.unwrap();
        // An allocation record and an undecodable object: revisions the cache holds nothing of.
        store.create("/tugboat/services/clusterips/10.43.0.7", b"{}".to_vec(), None).await.unwrap();
        let last = store.create("/registry/configmaps/default/b", b"not json".to_vec(), None).await.unwrap();
        assert_eq!(cache.sync().await.expect("a read after the server's own writes"), last);
        assert!(cache.get("/registry/configmaps/default/a").is_some());
        assert!(cache.get("/tugboat/services/clusterips/10.43.0.7").is_none(), "only API objects are cached");
    }
}
