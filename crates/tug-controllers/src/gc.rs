//! Garbage collection through ownerReferences, as Kubernetes' garbage collector does it for the
//! kinds Tugboat's controllers create (pods, ReplicaSets, Jobs, claims, ...):
//!
//! - **Background** (the default): once every owner of an object is gone, the object is deleted.
//!   An owner missing from the cache is confirmed gone with a live read first, so a cache that
//!   lags behind never costs a healthy object.
//! - **Foreground**: an owner deleted with `propagationPolicy=Foreground` carries the
//!   `foregroundDeletion` finalizer; its dependents are deleted (foreground too), and the
//!   finalizer is removed once no dependent with `blockOwnerDeletion` remains.
//! - **Orphan**: the `orphan` finalizer: the owner reference is removed from every dependent,
//!   then the finalizer, so the dependents stay.
//!
//! [`decide_dependent`] and [`decide_owner`] are the pure decisions; [`Collector`] is the loop.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::runtime::{Cache, Informer, Key, Queue};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// One object the collector tracks: its kind's index in the collector's table, and its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    kind: usize,
    key: Key,
}

/// What an owner reference points at, as far as the cache knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerState {
    /// Present with this uid.
    Present { deleting_foreground: bool },
    /// Not in the cache (or a different object under that name): maybe gone.
    Missing,
    /// A kind the collector does not watch: assumed present.
    Unknown,
}

/// What to do about one dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependentAction {
    Nothing,
    /// Every owner is gone: delete it (background).
    Delete,
    /// An owner is being deleted in the foreground and this dependent blocks it: delete it in
    /// the foreground too.
    DeleteForeground,
    /// Some owners are gone, others remain: drop the dangling references.
    RemoveOwners(Vec<String>),
}

/// The pure decision for a dependent, given the (confirmed) state of each of its owners.
pub fn decide_dependent(meta: &ObjectMeta, owners: &[(OwnerReference, OwnerState)]) -> DependentAction {
    if owners.is_empty() || meta.deletion_timestamp.is_some() {
        return DependentAction::Nothing;
    }
    let waiting = |s: &OwnerState| *s == OwnerState::Present { deleting_foreground: true };
    let solid = owners.iter().any(|(_, s)| *s != OwnerState::Missing && !waiting(s));
    if solid {
        // A live owner keeps it; references to owners that are gone or going are dropped.
        let stale: Vec<String> = owners
            .iter()
            .filter(|(_, s)| *s == OwnerState::Missing || waiting(s))
            .map(|(r, _)| r.uid.clone())
            .collect();
        return if stale.is_empty() { DependentAction::Nothing } else { DependentAction::RemoveOwners(stale) };
    }
    if owners.iter().any(|(_, s)| waiting(s)) { DependentAction::DeleteForeground } else { DependentAction::Delete }
}

/// What to do about an owner being deleted with a finalizer the collector serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerAction {
    Nothing,
    /// Remove the owner reference from these dependents, then the `orphan` finalizer.
    Orphan,
    /// Delete these dependents first (they block the owner).
    WaitForDependents,
    /// No blocking dependent remains: remove the `foregroundDeletion` finalizer.
    FinishForeground,
}

/// The pure decision for an owner, given its dependents' metadata.
pub fn decide_owner(owner: &ObjectMeta, dependents: &[ObjectMeta]) -> OwnerAction {
    if owner.deletion_timestamp.is_none() {
        return OwnerAction::Nothing;
    }
    let finalizers = owner.finalizers.as_deref().unwrap_or_default();
    let uid = owner.uid.as_deref().unwrap_or_default();
    if finalizers.iter().any(|f| f == ORPHAN) {
        return OwnerAction::Orphan;
    }
    if finalizers.iter().any(|f| f == FOREGROUND) {
        let blocking = dependents
            .iter()
            .any(|d| d.owner_references.iter().flatten().any(|r| r.uid == uid && r.block_owner_deletion == Some(true)));
        return if blocking { OwnerAction::WaitForDependents } else { OwnerAction::FinishForeground };
    }
    OwnerAction::Nothing
}

/// Reads an object's metadata from one kind's cache.
type Lookup = Box<dyn Fn(&Key) -> Option<ObjectMeta> + Send + Sync>;

/// One watched kind: how to read its cache and reach its API.
struct Kind {
    resource: ApiResource,
    namespaced: bool,
    lookup: Lookup,
}

#[derive(Debug, Default)]
struct Graph {
    /// Owner uid → its dependents.
    dependents: HashMap<String, HashSet<Node>>,
    /// uid → the node, for owners in the foreground (to re-check when a dependent goes).
    by_uid: HashMap<String, Node>,
}

/// The collector's loop.
#[derive(Clone)]
pub struct Collector {
    client: kube::Client,
    kinds: Arc<Vec<Kind>>,
    graph: Arc<Mutex<Graph>>,
    queue: Queue,
    /// Work items: a node to check as a dependent or as an owner (both, cheaply).
    items: Arc<Mutex<HashMap<Key, Node>>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("gc::Collector").field("kinds", &self.kinds.len()).finish()
    }
}

/// Registers kinds one by one, then builds the collector.
pub struct Builder {
    client: kube::Client,
    kinds: Vec<Kind>,
    graph: Arc<Mutex<Graph>>,
    queue: Queue,
    items: Arc<Mutex<HashMap<Key, Node>>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("gc::Builder").field("kinds", &self.kinds.len()).finish()
    }
}

impl Builder {
    pub fn new(client: kube::Client) -> Builder {
        Builder { client, kinds: Vec::new(), graph: Arc::default(), queue: Queue::new(), items: Arc::default() }
    }

    /// Watches one kind as owner and dependent.
    pub fn watch<K>(&mut self, informer: &mut Informer<K>, namespaced: bool)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let kind = self.kinds.len();
        let cache: Cache<K> = informer.cache();
        self.kinds.push(Kind {
            resource: ApiResource::erase::<K>(&()),
            namespaced,
            lookup: Box::new(move |key| cache.get(key).map(|o| o.meta().clone())),
        });
        let (graph, queue, items) = (self.graph.clone(), self.queue.clone(), self.items.clone());
        let enqueue = move |node: Node| {
            // The queue holds keys; the item table remembers which kind a key's check is for.
            let qkey = Key::new(&node.key.namespace, &format!("{}/{}", node.kind, node.key.name));
            items.lock().unwrap_or_else(|e| e.into_inner()).insert(qkey.clone(), node);
            queue.add(qkey);
        };
        informer.on_change(move |old, new| {
            let obj = new.or(old).expect("a change has an object");
            let node = Node { kind, key: Key::of(obj) };
            let uid = obj.meta().uid.clone().unwrap_or_default();
            let refs = |o: Option<&K>| -> Vec<String> {
                o.map(|o| o.meta().owner_references.iter().flatten().map(|r| r.uid.clone()).collect())
                    .unwrap_or_default()
            };
            let (old_refs, new_refs) = (refs(old), refs(new));
            let mut to_check = Vec::new();
            {
                let mut g = graph.lock().unwrap_or_else(|e| e.into_inner());
                for owner in &old_refs {
                    if !new_refs.contains(owner)
                        && let Some(set) = g.dependents.get_mut(owner)
                    {
                        set.remove(&node);
                        if set.is_empty() {
                            g.dependents.remove(owner);
                        }
                    }
                }
                for owner in &new_refs {
                    g.dependents.entry(owner.clone()).or_default().insert(node.clone());
                }
                match new {
                    Some(_) => {
                        g.by_uid.insert(uid.clone(), node.clone());
                    }
                    None => {
                        g.by_uid.remove(&uid);
                        // The owner is gone: its dependents may be orphans now.
                        to_check.extend(g.dependents.get(&uid).into_iter().flatten().cloned());
                    }
                }
                // A dependent that went away may unblock an owner in the foreground.
                if new.is_none() || new.is_some_and(|n| n.meta().deletion_timestamp.is_some()) {
                    to_check.extend(old_refs.iter().filter_map(|o| g.by_uid.get(o).cloned()));
                }
            }
            if let Some(new) = new {
                let added_refs = old.is_none() || old_refs != new_refs;
                let deleting_with_finalizer = new.meta().deletion_timestamp.is_some()
                    && new.meta().finalizers.iter().flatten().any(|f| f == FOREGROUND || f == ORPHAN);
                if (added_refs && !new_refs.is_empty()) || deleting_with_finalizer {
                    to_check.push(node.clone());
                }
                if deleting_with_finalizer {
                    // Its dependents may have to go (foreground) or be let go (orphan).
                    let g = graph.lock().unwrap_or_else(|e| e.into_inner());
                    to_check.extend(g.dependents.get(&uid).into_iter().flatten().cloned());
                }
            }
            for node in to_check {
                enqueue(node);
            }
        });
    }

    pub fn build(self) -> Collector {
        Collector {
            client: self.client,
            kinds: Arc::new(self.kinds),
            graph: self.graph,
            queue: self.queue,
            items: self.items,
        }
    }
}

impl Collector {
    pub async fn run(self, workers: usize) {
        let queue = self.queue.clone();
        crate::runtime::run_workers(queue, workers, "garbage-collector", move |qkey| {
            let this = self.clone();
            async move {
                let node = this.items.lock().unwrap_or_else(|e| e.into_inner()).get(&qkey).cloned();
                match node {
                    Some(node) => this.check(&node).await.map(|()| None),
                    None => Ok(None),
                }
            }
        })
        .await;
    }

    fn api(&self, kind: usize, namespace: &str) -> Api<DynamicObject> {
        let k = &self.kinds[kind];
        if k.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &k.resource)
        } else {
            Api::all_with(self.client.clone(), &k.resource)
        }
    }

    fn kind_of(&self, owner: &OwnerReference) -> Option<usize> {
        self.kinds.iter().position(|k| k.resource.kind == owner.kind && k.resource.api_version == owner.api_version)
    }

    /// The owner's state, confirmed with a live read when the cache says it is missing.
    async fn owner_state(&self, owner: &OwnerReference, namespace: &str) -> Result<OwnerState, kube::Error> {
        let Some(kind) = self.kind_of(owner) else { return Ok(OwnerState::Unknown) };
        let ns = if self.kinds[kind].namespaced { namespace } else { "" };
        let key = Key::new(ns, &owner.name);
        let meta = match (self.kinds[kind].lookup)(&key).filter(|m| m.uid.as_deref() == Some(owner.uid.as_str())) {
            Some(meta) => Some(meta),
            None => self.api(kind, ns).get_opt(&owner.name).await?.map(|o| o.metadata),
        };
        Ok(match meta.filter(|m| m.uid.as_deref() == Some(owner.uid.as_str())) {
            None => OwnerState::Missing,
            Some(m) => OwnerState::Present {
                deleting_foreground: m.deletion_timestamp.is_some()
                    && m.finalizers.iter().flatten().any(|f| f == FOREGROUND),
            },
        })
    }

    async fn check(&self, node: &Node) -> Result<(), kube::Error> {
        let Some(meta) = (self.kinds[node.kind].lookup)(&node.key) else { return Ok(()) };
        self.check_as_dependent(node, &meta).await?;
        self.check_as_owner(node, &meta).await
    }

    async fn check_as_dependent(&self, node: &Node, meta: &ObjectMeta) -> Result<(), kube::Error> {
        let mut owners = Vec::new();
        for owner in meta.owner_references.iter().flatten() {
            owners.push((owner.clone(), self.owner_state(owner, &node.key.namespace).await?));
        }
        let api = self.api(node.kind, &node.key.namespace);
        let preconditions = Some(Preconditions { uid: meta.uid.clone(), resource_version: None });
        let result = match decide_dependent(meta, &owners) {
            DependentAction::Nothing => return Ok(()),
            DependentAction::Delete => api
                .delete(&node.key.name, &DeleteParams { preconditions, ..DeleteParams::background() })
                .await
                .map(drop),
            DependentAction::DeleteForeground => api
                .delete(&node.key.name, &DeleteParams { preconditions, ..DeleteParams::foreground() })
                .await
                .map(drop),
            DependentAction::RemoveOwners(gone) => {
                let refs: Vec<&OwnerReference> =
                    meta.owner_references.iter().flatten().filter(|r| !gone.contains(&r.uid)).collect();
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
                api.patch(&node.key.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
            }
        };
        ignore_gone(result)
    }

    async fn check_as_owner(&self, node: &Node, meta: &ObjectMeta) -> Result<(), kube::Error> {
        if meta.deletion_timestamp.is_none() {
            return Ok(());
        }
        let uid = meta.uid.clone().unwrap_or_default();
        let dependents: Vec<(Node, ObjectMeta)> = {
            let g = self.graph.lock().unwrap_or_else(|e| e.into_inner());
            g.dependents.get(&uid).into_iter().flatten().cloned().collect::<Vec<_>>()
        }
        .into_iter()
        .filter_map(|n| (self.kinds[n.kind].lookup)(&n.key).map(|m| (n, m)))
        .filter(|(_, m)| m.owner_references.iter().flatten().any(|r| r.uid == uid))
        .collect();
        let metas: Vec<ObjectMeta> = dependents.iter().map(|(_, m)| m.clone()).collect();
        let finalizer = match decide_owner(meta, &metas) {
            OwnerAction::Nothing | OwnerAction::WaitForDependents => return Ok(()),
            OwnerAction::Orphan => {
                for (dep, dm) in &dependents {
                    let refs: Vec<&OwnerReference> =
                        dm.owner_references.iter().flatten().filter(|r| r.uid != uid).collect();
                    let patch = json!({"metadata": {"ownerReferences": refs}});
                    let api = self.api(dep.kind, &dep.key.namespace);
                    ignore_gone(
                        api.patch(&dep.key.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop),
                    )?;
                }
                ORPHAN
            }
            OwnerAction::FinishForeground => FOREGROUND,
        };
        let finalizers: Vec<&String> = meta.finalizers.iter().flatten().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}});
        let api = self.api(node.kind, &node.key.namespace);
        ignore_gone(api.patch(&node.key.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop))
    }
}

/// Gone (404) or changed meanwhile (409): the watch brings the next state.
fn ignore_gone(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    #[test]
    fn a_dependent_goes_only_when_every_owner_is_gone() {
        let meta = ObjectMeta::default();
        let present = OwnerState::Present { deleting_foreground: false };
        let cases = [
            (vec![(owner_ref("a", true), OwnerState::Missing)], DependentAction::Delete),
            (vec![(owner_ref("a", true), present.clone())], DependentAction::Nothing),
            (
                vec![(owner_ref("a", true), OwnerState::Missing), (owner_ref("b", false), present.clone())],
                DependentAction::RemoveOwners(vec!["a".into()]),
            ),
            (
                vec![(owner_ref("a", true), OwnerState::Present { deleting_foreground: true })],
                DependentAction::DeleteForeground,
            ),
            (
                vec![(owner_ref("a", false), OwnerState::Present { deleting_foreground: true })],
                DependentAction::DeleteForeground,
            ),
            (
                vec![
                    (owner_ref("a", true), OwnerState::Present { deleting_foreground: true }),
                    (owner_ref("b", false), present.clone()),
                ],
                DependentAction::RemoveOwners(vec!["a".into()]),
            ),
            (vec![(owner_ref("a", true), OwnerState::Unknown)], DependentAction::Nothing),
            (vec![], DependentAction::Nothing),
        ];
        for (owners, want) in cases {
            assert_eq!(decide_dependent(&meta, &owners), want, "{owners:?}");
        }
    }

    #[test]
    fn owners_wait_for_blocking_dependents_or_let_them_go() {
        let deleting = |finalizer: &str| ObjectMeta {
            uid: Some("o".into()),
            deletion_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH)),
            finalizers: Some(vec![finalizer.into()]),
            ..ObjectMeta::default()
        };
        let blocking = ObjectMeta { owner_references: Some(vec![owner_ref("o", true)]), ..ObjectMeta::default() };
        let free = ObjectMeta { owner_references: Some(vec![owner_ref("o", false)]), ..ObjectMeta::default() };
        assert_eq!(
            decide_owner(&deleting(FOREGROUND), std::slice::from_ref(&blocking)),
            OwnerAction::WaitForDependents
        );
        assert_eq!(decide_owner(&deleting(FOREGROUND), &[free]), OwnerAction::FinishForeground);
        assert_eq!(decide_owner(&deleting(ORPHAN), std::slice::from_ref(&blocking)), OwnerAction::Orphan);
        assert_eq!(decide_owner(&ObjectMeta::default(), &[blocking]), OwnerAction::Nothing);
    }
}
