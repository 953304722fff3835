//! The ConfigMap/Secret cache that volumes and env vars read: one watch of all ConfigMaps and
//! one of all Secrets. Every pod that syncs records what it refers to, and a change to such an
//! object wakes exactly those pods, whose next sync rewrites their files (no polling, no GET per
//! sync).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tug_k8s::pods::PodRef;

use super::super::spec::Referenced;

/// How long a sync waits for the cache's first list before giving up (retried).
const CACHE_SYNC_WAIT: Duration = Duration::from_secs(10);

type Key = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Secret,
}

#[derive(Default)]
struct CacheState {
    config_maps: HashMap<Key, ConfigMap>,
    secrets: HashMap<Key, Secret>,
    /// What each pod (by uid) refers to: its namespace, ConfigMap names, Secret names.
    users: HashMap<String, (String, Vec<String>, Vec<String>)>,
    /// Where to send the uids of pods whose referenced objects changed.
    wake: Option<mpsc::UnboundedSender<String>>,
}

impl CacheState {
    /// Wakes every pod referring to `(kind, key)`.
    fn wake_users(&self, kind: Kind, key: &Key) {
        let Some(wake) = &self.wake else { return };
        for (uid, (namespace, config_maps, secrets)) in &self.users {
            let names = if kind == Kind::ConfigMap { config_maps } else { secrets };
            if *namespace == key.0 && names.contains(&key.1) {
                let _ = wake.send(uid.clone());
            }
        }
    }
}

/// An object kind the cache keeps.
trait Cached:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn map(state: &mut CacheState) -> &mut HashMap<Key, Self>;
}

impl Cached for ConfigMap {
    const KIND: Kind = Kind::ConfigMap;
    fn map(state: &mut CacheState) -> &mut HashMap<Key, Self> {
        &mut state.config_maps
    }
}

impl Cached for Secret {
    const KIND: Kind = Kind::Secret;
    fn map(state: &mut CacheState) -> &mut HashMap<Key, Self> {
        &mut state.secrets
    }
}

fn key_of<K: kube::Resource>(object: &K) -> Key {
    let meta = object.meta();
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn version_of<K: kube::Resource>(object: Option<&K>) -> Option<String> {
    object.and_then(|o| o.meta().resource_version.clone())
}

/// The cache shared by the volume manager and the pod syncs (env vars, pull secrets).
pub struct Cache {
    state: Mutex<CacheState>,
    /// Whether each kind was listed once (ConfigMaps, Secrets).
    synced: [tokio::sync::watch::Sender<bool>; 2],
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn synced_flag(&self, kind: Kind) -> &tokio::sync::watch::Sender<bool> {
        &self.synced[usize::from(kind == Kind::Secret)]
    }

    /// Applies one watch event; `pending` collects a (re)list until it is complete.
    fn apply<K: Cached>(&self, event: watcher::Event<K>, pending: &mut Option<HashMap<Key, K>>) {
        let mut state = self.lock();
        match event {
            watcher::Event::Init => *pending = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                pending.get_or_insert_with(HashMap::new).insert(key_of(&object), object);
            }
            watcher::Event::InitDone => {
                let fresh = pending.take().unwrap_or_default();
                let old = std::mem::replace(K::map(&mut state), fresh);
                let current = K::map(&mut state).clone();
                let keys: BTreeSet<&Key> = old.keys().chain(current.keys()).collect();
                for key in keys {
                    if version_of(old.get(key)) != version_of(current.get(key)) {
                        state.wake_users(K::KIND, key);
                    }
                }
                drop(state);
                self.synced_flag(K::KIND).send_replace(true);
            }
            watcher::Event::Apply(object) => {
                let key = key_of(&object);
                let before = K::map(&mut state).insert(key.clone(), object.clone());
                if version_of(before.as_ref()) != version_of(Some(&object)) {
                    state.wake_users(K::KIND, &key);
                }
            }
            watcher::Event::Delete(object) => {
                let key = key_of(&object);
                K::map(&mut state).remove(&key);
                state.wake_users(K::KIND, &key);
            }
        }
    }

    pub fn new() -> Cache {
        Cache {
            state: Mutex::new(CacheState::default()),
            synced: [tokio::sync::watch::channel(false).0, tokio::sync::watch::channel(false).0],
        }
    }

    /// Starts the ConfigMap and Secret watches; the receiver yields the uids of pods whose
    /// referenced objects changed. Abort the handle to stop watching.
    pub fn start(
        self: &Arc<Self>,
        client: kube::Client,
    ) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<String>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().wake = Some(sender);
        let cache = self.clone();
        let task = tokio::spawn(async move {
            tokio::join!(watch_kind::<ConfigMap>(client.clone(), cache.clone()), watch_kind::<Secret>(client, cache));
        });
        (task, receiver)
    }

    /// The ConfigMaps and Secrets `pod` refers to (once the cache has listed); from now on the
    /// pod is woken when any of them changes. Missing ones are left out.
    pub async fn referenced(&self, pod: &Pod) -> Result<Referenced, String> {
        let pod_ref = PodRef::of(pod);
        let (config_maps, secrets) = Referenced::names_in(pod);
        self.lock().users.insert(pod_ref.uid.clone(), (pod_ref.namespace.clone(), config_maps, secrets));
        self.wait_synced().await?;
        let state = self.lock();
        let (_, config_maps, secrets) = &state.users[&pod_ref.uid];
        let key = |name: &String| (pod_ref.namespace.clone(), name.clone());
        Ok(Referenced {
            config_maps: config_maps
                .iter()
                .filter_map(|n| state.config_maps.get(&key(n)).map(|o| (n.clone(), o.clone())))
                .collect(),
            secrets: secrets
                .iter()
                .filter_map(|n| state.secrets.get(&key(n)).map(|o| (n.clone(), o.clone())))
                .collect(),
        })
    }

    /// Forgets what pod `uid` refers to: its objects' changes no longer wake it.
    pub fn forget(&self, uid: &str) {
        self.lock().users.remove(uid);
    }

    async fn wait_synced(&self) -> Result<(), String> {
        let wait = async {
            for flag in &self.synced {
                let _ = flag.subscribe().wait_for(|synced| *synced).await;
            }
        };
        tokio::time::timeout(CACHE_SYNC_WAIT, wait)
            .await
            .map_err(|_| "the ConfigMap and Secret watches have not listed yet".to_string())
    }
}

async fn watch_kind<K: Cached>(client: kube::Client, cache: Arc<Cache>) {
    let api: Api<K> = Api::all(client);
    let events = watcher(api, watcher::Config::default()).default_backoff();
    tokio::pin!(events);
    let mut pending = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => cache.apply(event, &mut pending),
            Err(error) => tracing::warn!(%error, kind = ?K::KIND, "volume source watch failed; resuming"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config_map(data: serde_json::Value) -> ConfigMap {
        serde_json::from_value(
            json!({"metadata": {"name": "cfg", "namespace": "shop", "resourceVersion": "1"}, "data": data}),
        )
        .expect("config map")
    }

    #[test]
    fn cache_changes_wake_the_pods_that_refer_to_them() {
        let cache = Cache::new();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        {
            let mut state = cache.lock();
            state.wake = Some(sender);
            state.users.insert("p1".into(), ("shop".into(), vec!["cfg".into()], vec![]));
            state.users.insert("p2".into(), ("other".into(), vec!["cfg".into()], vec![]));
        }
        let mut pending = None;
        cache.apply(watcher::Event::Init, &mut pending);
        cache.apply(watcher::Event::InitApply(config_map(json!({"k": "v"}))), &mut pending);
        cache.apply::<ConfigMap>(watcher::Event::InitDone, &mut pending);
        assert!(*cache.synced[0].borrow());
        assert_eq!(receiver.try_recv().ok(), Some("p1".into()));
        assert!(receiver.try_recv().is_err(), "only the pod of that namespace");
        // The same version again (a relist) wakes nobody; a new one does.
        cache.apply(watcher::Event::Apply(config_map(json!({"k": "v"}))), &mut pending);
        assert!(receiver.try_recv().is_err());
        let mut changed = config_map(json!({"k": "w"}));
        changed.metadata.resource_version = Some("2".into());
        cache.apply(watcher::Event::Apply(changed.clone()), &mut pending);
        assert_eq!(receiver.try_recv().ok(), Some("p1".into()));
        cache.apply(watcher::Event::Delete(changed), &mut pending);
        assert_eq!(receiver.try_recv().ok(), Some("p1".into()));
        assert!(cache.lock().config_maps.is_empty());
    }
}
