//! The scheduling loop: watchers keep a snapshot of the cluster, one task decides placements on
//! it with the pure core, binds go out concurrently, and reports are written in the background.
//!
//! ```text
//!  node watcher ─┐                          ┌─> bind tasks (≤ MAX_IN_FLIGHT, pods/binding)
//!  pod watcher  ─┤                          │
//!  claim, volume,│                          │
//!  class watchers┴─> changes ─> decision loop ┤
//!  leader elector ─> leading ─┘              └─> reporter (events, PodScheduled=False)
//! ```
//!
//! The loop ASSUMES each placement in its snapshot the moment it decides it, so the next decision
//! already sees the node's capacity taken, and binds without waiting; a failed bind forgets the
//! assumption and the pod is retried after its backoff. Watch decoding and `PodInfo` extraction
//! happen in the watcher tasks, off the decision loop. A pod using unbound claims whose class
//! waits for the first consumer has those claims annotated with its node before it is bound.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Node, NodeSpec, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::core::{self, NodeInfo, PodInfo, Snapshot, Strategy};
use crate::queue::SchedulingQueue;
use crate::report::{self, PodRef, Report, Reporter};
use tug_leader::Elector;

/// How many binds may be under way at once.
const MAX_IN_FLIGHT: usize = 256;
/// How many decisions are made before the loop takes in new changes again.
const DECISIONS_PER_ROUND: usize = 64;
/// How many watch changes may wait for the loop before the watchers pause.
const CHANGES_CAPACITY: usize = 8 * 1024;

/// How a scheduler is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// How pods are spread over nodes that fit.
    pub strategy: Strategy,
    /// Only pods whose `spec.schedulerName` is this are scheduled.
    pub scheduler_name: String,
    /// This scheduler's name in the Lease (unique per process).
    pub identity: String,
    pub lease_namespace: String,
    pub lease_name: String,
}

impl Default for SchedulerOptions {
    fn default() -> SchedulerOptions {
        SchedulerOptions {
            strategy: Strategy::default(),
            scheduler_name: report::COMPONENT.into(),
            identity: tug_leader::default_identity(),
            lease_namespace: "kube-system".into(),
            lease_name: "tug-scheduler".into(),
        }
    }
}

/// Why the scheduler stopped before being asked to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scheduler options: {0}")]
    InvalidOptions(String),
    #[error("the {0} watch ended unexpectedly, so the scheduler can no longer see the cluster")]
    WatchEnded(&'static str),
    #[error("leader election for lease {0} stopped unexpectedly")]
    ElectionEnded(String),
}

/// Runs until `shutdown` resolves; an API client like any other component.
pub async fn run(
    client: kube::Client,
    options: SchedulerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    for (field, value) in [
        ("identity", &options.identity),
        ("scheduler_name", &options.scheduler_name),
        ("lease_namespace", &options.lease_namespace),
        ("lease_name", &options.lease_name),
    ] {
        if value.is_empty() {
            return Err(Error::InvalidOptions(format!("{field} must not be empty")));
        }
    }
    let (changes_tx, changes) = mpsc::channel(CHANGES_CAPACITY);
    let mut background = JoinSet::new();
    background.spawn(watch_nodes(client.clone(), changes_tx.clone()));
    background.spawn(watch_volume_kind(Api::<PersistentVolumeClaim>::all(client.clone()), changes_tx.clone()));
    background.spawn(watch_volume_kind(Api::<PersistentVolume>::all(client.clone()), changes_tx.clone()));
    background.spawn(watch_volume_kind(Api::<StorageClass>::all(client.clone()), changes_tx.clone()));
    background.spawn(watch_pods(client.clone(), options.scheduler_name.clone(), changes_tx));
    let (leading_tx, leading) = watch::channel(false);
    let elector = Elector::new(client.clone(), &options.lease_namespace, &options.lease_name, &options.identity);
    let campaign = tokio::spawn(elector.campaign(leading_tx));
    let mut scheduler = Scheduler::new(client.clone(), &options);
    let result = scheduler.run(changes, leading, shutdown).await;
    campaign.abort();
    background.abort_all();
    scheduler.stop_binding().await;
    // Step down only after the last bind of ours is settled, so a successor never races them.
    Elector::new(client, &options.lease_namespace, &options.lease_name, &options.identity).release().await;
    result
}

/// What the watchers tell the loop.
#[derive(Debug)]
enum Change {
    /// A watch (re)started its initial list: objects not re-listed before `Listed` are gone.
    Relisting(Kind),
    Listed(Kind),
    NodeUp(Box<NodeInfo>, Box<NodeShape>),
    NodeGone(String),
    /// A pod on a node (bound by anyone), holding its resources there.
    PodPlaced {
        info: Box<PodInfo>,
        node: String,
    },
    /// A pod of ours waiting for a node.
    PodPending {
        pod: Box<Pod>,
        info: Box<PodInfo>,
    },
    /// A pod deleted, finished (Succeeded/Failed), terminating before placement, or not ours.
    PodGone(String),
    Claim(Box<PersistentVolumeClaim>),
    Volume(Box<PersistentVolume>),
    Class(Box<StorageClass>),
    /// A claim, volume or class deleted: its kind, namespace (empty if cluster-scoped), name.
    VolumeObjectGone(Kind, String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Nodes,
    Pods,
    Claims,
    Volumes,
    Classes,
}

/// The kinds that say where a pod's volumes may be: claims, persistent volumes, storage classes.
const VOLUME_KINDS: [Kind; 3] = [Kind::Claims, Kind::Volumes, Kind::Classes];

/// A kind the scheduler follows for volume binding, and how its objects become changes.
trait VolumeObject:
    kube::Resource<DynamicType = ()> + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug
{
    const KIND: Kind;
    fn change(self) -> Change;
}

impl VolumeObject for PersistentVolumeClaim {
    const KIND: Kind = Kind::Claims;
    fn change(self) -> Change {
        Change::Claim(Box::new(self))
    }
}

impl VolumeObject for PersistentVolume {
    const KIND: Kind = Kind::Volumes;
    fn change(self) -> Change {
        Change::Volume(Box::new(self))
    }
}

impl VolumeObject for StorageClass {
    const KIND: Kind = Kind::Classes;
    fn change(self) -> Change {
        Change::Class(Box::new(self))
    }
}

fn volume_change<K: VolumeObject>(event: watcher::Event<K>) -> Change {
    match event {
        watcher::Event::Init => Change::Relisting(K::KIND),
        watcher::Event::InitDone => Change::Listed(K::KIND),
        watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => obj.change(),
        watcher::Event::Delete(obj) => {
            let meta = obj.meta();
            Change::VolumeObjectGone(
                K::KIND,
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            )
        }
    }
}

/// Follows every object of one volume kind; ends only when the loop stops listening.
async fn watch_volume_kind<K>(api: Api<K>, changes: mpsc::Sender<Change>)
where
    K: VolumeObject + Send + Sync + 'static,
{
    let config = watcher::Config::default().streaming_lists();
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if changes.send(volume_change(event)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(kind = ?K::KIND, error = %e, "watch failed; retrying"),
        }
    }
}

/// The parts of a Node whose change could let a waiting pod fit (heartbeats change none of them).
#[derive(Debug, Clone, PartialEq)]
struct NodeShape {
    labels: Option<std::collections::BTreeMap<String, String>>,
    spec: Option<NodeSpec>,
    allocatable: Option<std::collections::BTreeMap<String, Quantity>>,
    ready: Option<String>,
}

impl NodeShape {
    fn of(node: &Node) -> NodeShape {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        NodeShape {
            labels: node.metadata.labels.clone(),
            spec: node.spec.clone(),
            allocatable: status.and_then(|s| s.allocatable.clone()),
            ready,
        }
    }
}

/// What a pod means to the scheduler.
#[derive(Debug, PartialEq, Eq)]
enum PodState<'a> {
    Placed(&'a str),
    Pending,
    Gone,
}

fn classify<'a>(pod: &'a Pod, scheduler_name: &str) -> PodState<'a> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return PodState::Gone;
    }
    let spec = pod.spec.as_ref();
    if let Some(node) = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
        return PodState::Placed(node);
    }
    let ours = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(report::COMPONENT) == scheduler_name;
    if !ours || pod.metadata.deletion_timestamp.is_some() { PodState::Gone } else { PodState::Pending }
}

fn node_change(event: watcher::Event<Node>) -> Change {
    match event {
        watcher::Event::Init => Change::Relisting(Kind::Nodes),
        watcher::Event::InitDone => Change::Listed(Kind::Nodes),
        watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
            Change::NodeUp(Box::new(NodeInfo::from_node(&node)), Box::new(NodeShape::of(&node)))
        }
        watcher::Event::Delete(node) => Change::NodeGone(node.metadata.name.unwrap_or_default()),
    }
}

fn pod_change(event: watcher::Event<Pod>, scheduler_name: &str) -> Change {
    let pod = match event {
        watcher::Event::Init => return Change::Relisting(Kind::Pods),
        watcher::Event::InitDone => return Change::Listed(Kind::Pods),
        watcher::Event::Delete(pod) => return Change::PodGone(pod.metadata.uid.unwrap_or_default()),
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => pod,
    };
    match classify(&pod, scheduler_name) {
        PodState::Placed(node) => Change::PodPlaced { info: Box::new(PodInfo::from_pod(&pod)), node: node.to_string() },
        PodState::Pending => Change::PodPending { info: Box::new(PodInfo::from_pod(&pod)), pod: Box::new(pod) },
        PodState::Gone => Change::PodGone(pod.metadata.uid.unwrap_or_default()),
    }
}

/// Follows every Node; ends only when the loop stops listening.
async fn watch_nodes(client: kube::Client, changes: mpsc::Sender<Change>) {
    let config = watcher::Config::default().streaming_lists();
    let mut events = std::pin::pin!(watcher(Api::<Node>::all(client), config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if changes.send(node_change(event)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "node watch failed; retrying"),
        }
    }
}

/// Follows every Pod (pending ones to schedule, placed ones for the snapshot); ends only when the
/// loop stops listening. One watch rather than two filtered ones: a pod moves from one set to the
/// other on binding, and one stream keeps that move in order.
async fn watch_pods(client: kube::Client, scheduler_name: String, changes: mpsc::Sender<Change>) {
    let config = watcher::Config::default().streaming_lists();
    let mut events = std::pin::pin!(watcher(Api::<Pod>::all(client), config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if changes.send(pod_change(event, &scheduler_name)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
        }
    }
}

/// A pod waiting for a node.
#[derive(Debug)]
struct Pending {
    pod: Box<Pod>,
    info: Box<PodInfo>,
    /// The last diagnosis reported for it, so a retry failing the same way reports nothing new.
    reported: Option<String>,
}

/// How a bind ended.
#[derive(Debug)]
struct BindOutcome {
    pod: PodRef,
    node: String,
    result: Result<(), kube::Error>,
}

/// Writes the chosen node on the pod's claims that wait for it (as Kubernetes' VolumeBinding
/// PreBind), then posts a v1 Binding to pods/binding.
async fn bind(client: kube::Client, pod: PodRef, node: String, claims: Vec<String>) -> BindOutcome {
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &pod.namespace);
    for claim in &claims {
        let patch = serde_json::json!({"metadata": {"annotations": {core::SELECTED_NODE_ANNOTATION: &node}}});
        if let Err(e) = claims_api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch)).await {
            return BindOutcome { pod, node, result: Err(e) };
        }
    }
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..ObjectReference::default()
        },
    };
    let api = Api::<Pod>::namespaced(client, &pod.namespace);
    let result = api
        .create_subresource::<_, serde_json::Value>("binding", &pod.name, &PostParams::default(), &binding)
        .await
        .map(drop);
    BindOutcome { pod, node, result }
}

/// The decision loop's state; owned by one task, so nothing is locked.
struct Scheduler {
    client: kube::Client,
    strategy: Strategy,
    identity: String,
    snapshot: Snapshot,
    queue: SchedulingQueue,
    pending: HashMap<String, Pending>,
    /// Pods the API reports on a node: uid → node.
    placed: HashMap<String, String>,
    /// Pods assumed on a node while their bind is under way: uid → node.
    assumed: HashMap<String, String>,
    nodes: HashMap<String, NodeShape>,
    /// During a relist, what was listed so far; `None` when not relisting.
    relisted_nodes: Option<HashSet<String>>,
    relisted_pods: Option<HashSet<String>>,
    /// Per volume kind being relisted, the (namespace, name) of what was listed so far.
    relisted_volumes: HashMap<Kind, HashSet<(String, String)>>,
    volumes_synced: HashSet<Kind>,
    nodes_synced: bool,
    pods_synced: bool,
    leading: bool,
    binds: JoinSet<BindOutcome>,
    reporter: Reporter,
}

impl Scheduler {
    fn new(client: kube::Client, options: &SchedulerOptions) -> Scheduler {
        Scheduler {
            reporter: Reporter::spawn(client.clone()),
            client,
            strategy: options.strategy,
            identity: options.identity.clone(),
            snapshot: {
                let mut snapshot = Snapshot::new();
                snapshot.track_volumes();
                snapshot
            },
            queue: SchedulingQueue::new(),
            pending: HashMap::new(),
            placed: HashMap::new(),
            assumed: HashMap::new(),
            nodes: HashMap::new(),
            relisted_nodes: None,
            relisted_pods: None,
            relisted_volumes: HashMap::new(),
            volumes_synced: HashSet::new(),
            nodes_synced: false,
            pods_synced: false,
            leading: false,
            binds: JoinSet::new(),
        }
    }

    /// Decisions need a complete picture: both initial lists done, and the lease held.
    fn may_schedule(&self) -> bool {
        self.leading
            && self.nodes_synced
            && self.pods_synced
            && VOLUME_KINDS.iter().all(|k| self.volumes_synced.contains(k))
    }

    async fn run(
        &mut self,
        mut changes: mpsc::Receiver<Change>,
        mut leading: watch::Receiver<bool>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // Take in everything already waiting, so decisions see the freshest snapshot.
            while let Ok(change) = changes.try_recv() {
                self.apply(change);
            }
            while let Some(done) = self.binds.try_join_next() {
                self.bind_finished(done);
            }
            let now = Instant::now();
            if self.may_schedule() {
                self.schedule_ready(now);
                if self.binds.len() < MAX_IN_FLIGHT && self.queue.has_ready(now) {
                    // More to do: let the watchers and binds run, heed a stop or a lost lease, go on.
                    tokio::task::yield_now().await;
                    if futures::poll!(shutdown.as_mut()).is_ready() {
                        return Ok(());
                    }
                    if leading.has_changed().unwrap_or(true) {
                        self.follow_leadership(&mut leading).await?;
                    }
                    continue;
                }
            }
            let wake = self.queue.next_ready_at().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                _ = leading.changed() => self.follow_leadership(&mut leading).await?,
                done = self.binds.join_next(), if !self.binds.is_empty() => {
                    if let Some(done) = done {
                        self.bind_finished(done);
                    }
                }
                change = changes.recv() => match change {
                    Some(change) => self.apply(change),
                    None => return Err(Error::WatchEnded("pod or node")),
                },
                () = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {}
            }
        }
    }

    /// Takes in what the elector says now; its end is an error (nobody would renew the lease).
    async fn follow_leadership(&mut self, leading: &mut watch::Receiver<bool>) -> Result<(), Error> {
        if leading.has_changed().is_err() {
            return Err(Error::ElectionEnded(self.identity.clone()));
        }
        let now_leading = *leading.borrow_and_update();
        self.set_leading(now_leading).await;
        Ok(())
    }

    async fn set_leading(&mut self, leading: bool) {
        if leading == self.leading {
            return;
        }
        self.leading = leading;
        if leading {
            tracing::info!(identity = %self.identity, queued = self.queue.len(), "scheduling as leader");
        } else {
            // Another scheduler may be deciding now: not one more bind from us.
            tracing::warn!(identity = %self.identity, "lost the scheduling lease; stopped scheduling");
            self.stop_binding().await;
        }
    }

    /// Cancels binds under way and forgets their assumptions; the pods stay pending (the watch
    /// reports any that the server bound before the cancellation).
    async fn stop_binding(&mut self) {
        self.binds.abort_all();
        while let Some(done) = self.binds.join_next().await {
            self.bind_finished(done);
        }
        for (uid, _) in std::mem::take(&mut self.assumed) {
            if !self.placed.contains_key(&uid) {
                self.snapshot.remove_pod(&uid);
            }
            self.queue.return_unattempted(&uid);
        }
    }

    fn apply(&mut self, change: Change) {
        let now = Instant::now();
        match change {
            Change::Relisting(Kind::Nodes) => self.relisted_nodes = Some(HashSet::new()),
            Change::Relisting(Kind::Pods) => self.relisted_pods = Some(HashSet::new()),
            Change::Relisting(kind) => {
                self.relisted_volumes.insert(kind, HashSet::new());
            }
            Change::Listed(Kind::Nodes) => {
                let listed = self.relisted_nodes.take().unwrap_or_default();
                let gone: Vec<String> = self.nodes.keys().filter(|n| !listed.contains(*n)).cloned().collect();
                for name in gone {
                    self.node_gone(&name);
                }
                self.nodes_synced = true;
                self.queue.cluster_changed(now);
            }
            Change::Listed(Kind::Pods) => {
                let listed = self.relisted_pods.take().unwrap_or_default();
                let known = self.pending.keys().chain(self.placed.keys());
                let gone: Vec<String> = known.filter(|uid| !listed.contains(*uid)).cloned().collect();
                for uid in gone {
                    self.pod_gone(&uid, now);
                }
                self.pods_synced = true;
            }
            Change::Listed(kind) => {
                let listed = self.relisted_volumes.remove(&kind).unwrap_or_default();
                let volumes = &self.snapshot.volumes;
                let known: Vec<(String, String)> = match kind {
                    Kind::Claims => volumes.claim_keys().cloned().collect(),
                    Kind::Volumes => volumes.volume_names().map(|n| (String::new(), n.clone())).collect(),
                    _ => volumes.class_names().map(|n| (String::new(), n.clone())).collect(),
                };
                for (namespace, name) in known.into_iter().filter(|k| !listed.contains(k)) {
                    self.volume_object_gone(kind, &namespace, &name);
                }
                self.volumes_synced.insert(kind);
                self.queue.cluster_changed(now);
            }
            Change::Claim(claim) => {
                let meta = &claim.metadata;
                self.note_volume_listed(Kind::Claims, meta.namespace.as_deref(), meta.name.as_deref());
                if self.snapshot.upsert_claim(&claim) {
                    self.queue.cluster_changed(now);
                }
            }
            Change::Volume(volume) => {
                self.note_volume_listed(Kind::Volumes, None, volume.metadata.name.as_deref());
                if self.snapshot.upsert_volume(&volume) {
                    self.queue.cluster_changed(now);
                }
            }
            Change::Class(class) => {
                self.note_volume_listed(Kind::Classes, None, class.metadata.name.as_deref());
                if self.snapshot.upsert_storage_class(&class) {
                    self.queue.cluster_changed(now);
                }
            }
            Change::VolumeObjectGone(kind, namespace, name) => {
                self.note_volume_listed(kind, Some(&namespace), Some(&name));
                self.volume_object_gone(kind, &namespace, &name);
            }
            Change::NodeUp(info, shape) => {
                if let Some(listed) = &mut self.relisted_nodes {
                    listed.insert(info.name().to_string());
                }
                let name = info.name().to_string();
                self.snapshot.upsert_node(*info);
                if self.nodes.get(&name) != Some(&shape) {
                    self.nodes.insert(name, *shape);
                    self.queue.cluster_changed(now);
                }
            }
            Change::NodeGone(name) => self.node_gone(&name),
            Change::PodPlaced { info, node } => {
                let uid = info.uid().to_string();
                self.note_listed(&uid);
                self.pending.remove(&uid);
                self.queue.remove(&uid);
                if self.assumed.get(&uid).is_some_and(|n| *n != node) {
                    // Bound elsewhere than we assumed (by another scheduler): correct the snapshot.
                    self.snapshot.remove_pod(&uid);
                }
                if self.placed.get(&uid) != Some(&node) {
                    self.snapshot.add_pod(&node, &info);
                    self.placed.insert(uid, node);
                }
            }
            Change::PodPending { pod, info } => {
                let uid = info.uid().to_string();
                self.note_listed(&uid);
                let created = pod.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second());
                self.queue.add(&uid, info.priority(), created);
                match self.pending.get_mut(&uid) {
                    Some(known) => {
                        let changed = known.pod.spec != pod.spec || known.pod.metadata.labels != pod.metadata.labels;
                        known.pod = pod;
                        known.info = info;
                        if changed {
                            self.queue.pod_changed(&uid, now);
                        }
                    }
                    None => {
                        self.pending.insert(uid, Pending { pod, info, reported: None });
                    }
                }
            }
            Change::PodGone(uid) => {
                self.note_listed(&uid);
                self.pod_gone(&uid, now);
            }
        }
    }

    fn note_volume_listed(&mut self, kind: Kind, namespace: Option<&str>, name: Option<&str>) {
        if let Some(listed) = self.relisted_volumes.get_mut(&kind) {
            listed.insert((namespace.unwrap_or_default().to_string(), name.unwrap_or_default().to_string()));
        }
    }

    /// A claim, volume or class is gone; pods waiting on it stay parked (they only fit less).
    fn volume_object_gone(&mut self, kind: Kind, namespace: &str, name: &str) {
        match kind {
            Kind::Claims => self.snapshot.remove_claim(namespace, name),
            Kind::Volumes => self.snapshot.remove_volume(name),
            _ => self.snapshot.remove_storage_class(name),
        };
    }

    fn note_listed(&mut self, uid: &str) {
        if let Some(listed) = &mut self.relisted_pods {
            listed.insert(uid.to_string());
        }
    }

    fn node_gone(&mut self, name: &str) {
        self.snapshot.remove_node(name);
        self.nodes.remove(name);
    }

    /// A pod left: if it held resources, waiting pods may fit now.
    fn pod_gone(&mut self, uid: &str, now: Instant) {
        self.pending.remove(uid);
        self.queue.remove(uid);
        let held = self.placed.remove(uid).is_some() | self.assumed.remove(uid).is_some();
        if held {
            self.snapshot.remove_pod(uid);
            self.queue.cluster_changed(now);
        }
    }

    fn schedule_ready(&mut self, now: Instant) {
        for _ in 0..DECISIONS_PER_ROUND {
            if self.binds.len() >= MAX_IN_FLIGHT {
                return;
            }
            let Some(uid) = self.queue.pop(now) else { return };
            self.attempt(&uid, now);
        }
    }

    /// One decision: assume and bind, or park the pod and say why.
    fn attempt(&mut self, uid: &str, now: Instant) {
        let Some(pending) = self.pending.get_mut(uid) else {
            self.queue.remove(uid);
            return;
        };
        match core::schedule_with(
            &pending.info,
            &self.snapshot,
            self.strategy,
            core::Scope::for_strategy(self.strategy),
        ) {
            Ok(node) => {
                self.snapshot.add_pod(&node, &pending.info);
                let claims = self.snapshot.claims_to_select(&pending.info);
                for claim in &claims {
                    self.snapshot.assume_selected_node(pending.info.namespace(), claim, &node);
                }
                self.assumed.insert(uid.to_string(), node.clone());
                self.binds.spawn(bind(self.client.clone(), PodRef::of(&pending.pod), node, claims));
            }
            Err(diagnosis) => {
                self.queue.unschedulable(uid, now);
                let why = diagnosis.to_string();
                if pending.reported.as_deref() == Some(why.as_str()) {
                    return;
                }
                let pod = PodRef::of(&pending.pod);
                tracing::debug!(%pod, %why, "pod is unschedulable");
                let wall = jiff::Timestamp::now();
                let current = pending.pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
                if let Some(conditions) = report::unschedulable_conditions(current, &why, wall) {
                    let (namespace, name) = (pod.namespace.clone(), pod.name.clone());
                    self.reporter.send(Report::Conditions { namespace, name, conditions });
                }
                let event = report::failed_event(&pod, &why, &self.identity, wall);
                self.reporter.send(Report::Event(Box::new(event)));
                pending.reported = Some(why);
            }
        }
    }

    fn bind_finished(&mut self, done: Result<BindOutcome, tokio::task::JoinError>) {
        // A cancelled bind: `stop_binding` settles its assumption.
        let Ok(BindOutcome { pod, node, result }) = done else { return };
        let uid = pod.uid.as_str();
        if self.assumed.get(uid) != Some(&node) {
            return;
        }
        self.assumed.remove(uid);
        match result {
            Ok(()) => {
                if self.pending.remove(uid).is_some() {
                    self.queue.remove(uid);
                    self.placed.insert(uid.to_string(), node.clone());
                }
                let event = report::scheduled_event(&pod, &node, &self.identity, jiff::Timestamp::now());
                self.reporter.send(Report::Event(Box::new(event)));
            }
            Err(e) => {
                tracing::warn!(%pod, %node, error = %e, "binding failed; will retry");
                let now = Instant::now();
                if !self.placed.contains_key(uid) {
                    self.snapshot.remove_pod(uid);
                    // The capacity it held is free again.
                    self.queue.cluster_changed(now);
                }
                self.queue.retry_later(uid, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("a pod")
    }

    #[test]
    fn which_pods_are_scheduled() {
        let cases = [
            (json!({"spec": {"containers": []}}), PodState::Pending),
            (json!({"spec": {"containers": [], "schedulerName": "default-scheduler"}}), PodState::Pending),
            (json!({"spec": {"containers": [], "schedulerName": "other"}}), PodState::Gone),
            (json!({"spec": {"containers": [], "nodeName": "n1"}}), PodState::Placed("n1")),
            (json!({"spec": {"containers": [], "nodeName": "n1", "schedulerName": "other"}}), PodState::Placed("n1")),
            (
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"containers": []}}),
                PodState::Gone,
            ),
            (json!({"spec": {"containers": [], "nodeName": "n1"}, "status": {"phase": "Succeeded"}}), PodState::Gone),
            (json!({"spec": {"containers": []}, "status": {"phase": "Failed"}}), PodState::Gone),
        ];
        for (manifest, want) in cases {
            let p = pod(manifest.clone());
            assert_eq!(classify(&p, "default-scheduler"), want, "{manifest}");
        }
    }

    #[test]
    fn heartbeats_do_not_change_a_nodes_shape() {
        let node = |heartbeat: &str, cpu: &str| -> Node {
            serde_json::from_value(json!({
                "metadata": {"name": "n1"},
                "status": {"allocatable": {"cpu": cpu}, "conditions": [
                    {"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}]}
            }))
            .expect("a node")
        };
        let before = NodeShape::of(&node("2024-01-01T00:00:00Z", "4"));
        assert_eq!(before, NodeShape::of(&node("2024-01-01T00:00:10Z", "4")));
        assert_ne!(before, NodeShape::of(&node("2024-01-01T00:00:10Z", "8")));
    }

    #[test]
    fn default_options_match_kube_scheduler() {
        let o = SchedulerOptions::default();
        assert_eq!(o.scheduler_name, "default-scheduler");
        assert_eq!((o.lease_namespace.as_str(), o.lease_name.as_str()), ("kube-system", "tug-scheduler"));
        assert!(!o.identity.is_empty());
        assert_ne!(o.identity, SchedulerOptions::default().identity, "identities are unique");
    }
}
