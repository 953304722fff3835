//! The cluster as the scheduler sees it, kept in the shape the placement loop reads fastest:
//! one compact row per node slot (class id, free amounts, used fractions) scanned per decision,
//! node classes (labels but the hostname, taints, cordon) that filters evaluate once per pod
//! instead of once per node, and indexes maintained incrementally as pods come and go: pods by
//! label, per-owner counts per node, node → topology domain per label key, and the required
//! anti-affinity terms of placed pods.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use tug_k8s::taints::Taint;

use super::labels::{HOSTNAME_LABEL, Op, Requirement, Selector};
use super::node::NodeInfo;
use super::pod::{AffinityTerm, HostPort, Namespaces, PodInfo};
use super::resources::Resources;
use super::volumes::Volumes;

/// A node slot without a value for some topology key.
pub(crate) const NO_DOMAIN: u32 = u32::MAX;
/// The class of a free slot or of a node known only because pods name it.
pub(crate) const NO_CLASS: u32 = u32::MAX;

/// The per-node numbers one decision reads, precomputed so a node costs a few comparisons.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HotNode {
    pub class: u32,
    /// Allocatable minus requested; negative when pods bound elsewhere overcommit the node.
    pub free: Resources,
    /// Requested (with scoring defaults) over allocatable, for cpu and memory.
    pub cpu_used: f64,
    pub mem_used: f64,
    /// 1 / allocatable (0 when nothing is allocatable).
    pub inv_cpu: f64,
    pub inv_mem: f64,
}

impl HotNode {
    const VACANT: HotNode = HotNode {
        class: NO_CLASS,
        free: Resources { milli_cpu: 0, memory: 0, ephemeral_storage: 0, pods: 0 },
        cpu_used: 0.0,
        mem_used: 0.0,
        inv_cpu: 0.0,
        inv_mem: 0.0,
    };
}

/// The same numbers as [`HotNode`], one column per field, so the exact scan (every node scored)
/// runs as a straight, branch-free loop the compiler can vectorise.
#[derive(Debug, Clone, Default)]
pub(crate) struct HotColumns {
    pub class: Vec<u32>,
    pub free_pods: Vec<i64>,
    pub free_cpu: Vec<i64>,
    pub free_memory: Vec<i64>,
    pub free_ephemeral: Vec<i64>,
    pub cpu_used: Vec<f64>,
    pub mem_used: Vec<f64>,
    pub inv_cpu: Vec<f64>,
    pub inv_mem: Vec<f64>,
}

impl HotColumns {
    fn push(&mut self, hot: &HotNode) {
        self.class.push(hot.class);
        self.free_pods.push(hot.free.pods);
        self.free_cpu.push(hot.free.milli_cpu);
        self.free_memory.push(hot.free.memory);
        self.free_ephemeral.push(hot.free.ephemeral_storage);
        self.cpu_used.push(hot.cpu_used);
        self.mem_used.push(hot.mem_used);
        self.inv_cpu.push(hot.inv_cpu);
        self.inv_mem.push(hot.inv_mem);
    }

    fn set(&mut self, slot: usize, hot: &HotNode) {
        self.class[slot] = hot.class;
        self.free_pods[slot] = hot.free.pods;
        self.free_cpu[slot] = hot.free.milli_cpu;
        self.free_memory[slot] = hot.free.memory;
        self.free_ephemeral[slot] = hot.free.ephemeral_storage;
        self.cpu_used[slot] = hot.cpu_used;
        self.mem_used[slot] = hot.mem_used;
        self.inv_cpu[slot] = hot.inv_cpu;
        self.inv_mem[slot] = hot.inv_mem;
    }
}

#[derive(Debug, Clone)]
pub(crate) struct NodeEntry {
    pub info: NodeInfo,
    /// False for a free slot, or a node only pods have named so far.
    pub live: bool,
    pub requested: Resources,
    pub score_requested: Resources,
    pub pods: Vec<u32>,
    pub ports: Vec<HostPort>,
    pub name_hash: u64,
}

/// Nodes that look alike to every class-level filter and scorer.
#[derive(Debug, Clone)]
pub(crate) struct NodeClass {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub members: usize,
}

type ClassKey = (Vec<(String, String)>, Vec<Taint>, bool);

/// The domains of one topology key: value → id, and each slot's domain id.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopologyIndex {
    pub ids: HashMap<String, u32>,
    pub node_domain: Vec<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct PlacedPod {
    pub info: PodInfo,
    pub slot: u32,
}

/// A required anti-affinity term of placed pods, with how many such pods sit on each node.
#[derive(Debug, Clone)]
pub(crate) struct AntiTermEntry {
    pub term: AffinityTerm,
    pub per_node: HashMap<u32, u32>,
}

/// The cluster as the scheduler sees it: nodes and the pods placed (or assumed) on them.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(crate) hot: Vec<HotNode>,
    /// `hot` again, column by column (kept in step by `refresh_hot` and `slot_for`).
    pub(crate) columns: HotColumns,
    pub(crate) nodes: Vec<NodeEntry>,
    free_slots: Vec<u32>,
    by_name: HashMap<String, u32>,
    pub(crate) classes: Vec<NodeClass>,
    class_ids: HashMap<ClassKey, u32>,
    pub(crate) topology: HashMap<String, TopologyIndex>,
    pub(crate) pods: Vec<Option<PlacedPod>>,
    free_pods: Vec<u32>,
    pod_ids: HashMap<String, u32>,
    by_label: HashMap<String, HashMap<String, HashSet<u32>>>,
    pub(crate) owners: HashMap<String, HashMap<u32, u32>>,
    pub(crate) anti_terms: Vec<AntiTermEntry>,
    anti_ids: HashMap<AffinityTerm, usize>,
    /// Anti-affinity terms by one `In` requirement of their selector (key → value → term ids),
    /// so a pod only meets the terms that could select it.
    anti_anchor: HashMap<String, HashMap<String, Vec<usize>>>,
    anti_unanchored: Vec<usize>,
    live_nodes: usize,
    pub(crate) volumes: Volumes,
}

/// FNV-1a: a hash that is the same in every process, for deterministic tie-breaks.
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// Number of nodes (not counting names only pods have mentioned).
    pub fn node_count(&self) -> usize {
        self.live_nodes
    }

    /// Number of pods placed or assumed.
    pub fn pod_count(&self) -> usize {
        self.pod_ids.len()
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        let slot = *self.by_name.get(name)?;
        let entry = &self.nodes[slot as usize];
        entry.live.then_some(&entry.info)
    }

    /// The slot of a live node.
    pub(crate) fn slot_of(&self, name: &str) -> Option<usize> {
        let slot = *self.by_name.get(name)? as usize;
        self.nodes[slot].live.then_some(slot)
    }

    /// What the pods on a node request (`pods` counts them).
    pub fn requested(&self, name: &str) -> Option<Resources> {
        self.by_name.get(name).map(|&slot| self.nodes[slot as usize].requested)
    }

    /// The node a pod is placed on.
    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        let id = *self.pod_ids.get(uid)?;
        let pod = self.pods[id as usize].as_ref()?;
        Some(self.nodes[pod.slot as usize].info.name())
    }

    /// From now on pods' PersistentVolumeClaims are checked against the claims, volumes and
    /// storage classes given to this snapshot (until then they are not checked at all).
    pub fn track_volumes(&mut self) {
        self.volumes.track();
    }

    /// Adds or updates a claim; true when what the scheduler reads of it changed.
    pub fn upsert_claim(&mut self, claim: &PersistentVolumeClaim) -> bool {
        self.volumes.upsert_claim(claim)
    }

    pub fn remove_claim(&mut self, namespace: &str, name: &str) -> bool {
        self.volumes.remove_claim(namespace, name)
    }

    /// Adds or updates a PersistentVolume; true when its node affinity is new or changed.
    pub fn upsert_volume(&mut self, volume: &PersistentVolume) -> bool {
        self.volumes.upsert_volume(volume)
    }

    pub fn remove_volume(&mut self, name: &str) -> bool {
        self.volumes.remove_volume(name)
    }

    /// Adds or updates a StorageClass; true when its binding mode is new or changed.
    pub fn upsert_storage_class(&mut self, class: &StorageClass) -> bool {
        self.volumes.upsert_class(class)
    }

    pub fn remove_storage_class(&mut self, name: &str) -> bool {
        self.volumes.remove_class(name)
    }

    /// The pod's unbound claims whose class waits for the first consumer and that name no node
    /// yet: binding the pod to a node annotates them with it.
    pub fn claims_to_select(&self, pod: &PodInfo) -> Vec<String> {
        self.volumes.claims_to_select(pod)
    }

    /// Assumes a node chosen for a claim until the claim's own update arrives, so the next
    /// pod sharing the claim goes to the same node.
    pub fn assume_selected_node(&mut self, namespace: &str, claim: &str, node: &str) {
        self.volumes.select_node(namespace, claim, node);
    }

    /// Adds or updates a node; pods already placed on it stay.
    pub fn upsert_node(&mut self, node: NodeInfo) {
        let slot = self.slot_for(&node.name);
        let entry = &mut self.nodes[slot as usize];
        let old = std::mem::replace(&mut entry.info, node);
        let was_live = std::mem::replace(&mut entry.live, true);
        if was_live {
            self.leave_class(slot);
        } else {
            self.live_nodes += 1;
        }
        self.clear_domains(slot, &old.labels);
        self.set_domains(slot);
        let class = self.class_of(slot);
        self.classes[class as usize].members += 1;
        self.hot[slot as usize].class = class;
        self.refresh_hot(slot);
    }

    /// Forgets a node and the pods on it.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&slot) = self.by_name.get(name) else { return };
        let pod_uids: Vec<String> = self.nodes[slot as usize]
            .pods
            .iter()
            .filter_map(|&id| self.pods[id as usize].as_ref().map(|p| p.info.uid.clone()))
            .collect();
        for uid in pod_uids {
            self.remove_pod(&uid);
        }
        if self.nodes[slot as usize].live {
            self.leave_class(slot);
            self.live_nodes -= 1;
        }
        let labels = std::mem::take(&mut self.nodes[slot as usize].info.labels);
        self.clear_domains(slot, &labels);
        self.by_name.remove(name);
        self.nodes[slot as usize] = NodeEntry::vacant();
        self.hot[slot as usize] = HotNode::VACANT;
        self.columns.set(slot as usize, &HotNode::VACANT);
        self.free_slots.push(slot);
    }

    /// Records a bound or assumed pod on a node; idempotent by uid (a pod seen again is moved or
    /// refreshed). A node not known yet is remembered until it arrives.
    pub fn add_pod(&mut self, node: &str, pod: &PodInfo) {
        if self.pod_ids.contains_key(&pod.uid) {
            self.remove_pod(&pod.uid);
        }
        let slot = self.slot_for(node);
        let id = match self.free_pods.pop() {
            Some(id) => id,
            None => {
                self.pods.push(None);
                (self.pods.len() - 1) as u32
            }
        };
        self.pod_ids.insert(pod.uid.clone(), id);
        let entry = &mut self.nodes[slot as usize];
        entry.requested = entry.requested.saturating_add(pod.requests);
        entry.score_requested = entry.score_requested.saturating_add(pod.score_requests);
        entry.pods.push(id);
        entry.ports.extend(pod.host_ports.iter().cloned());
        for (key, value) in &pod.labels {
            self.by_label.entry(key.clone()).or_default().entry(value.clone()).or_default().insert(id);
        }
        if let Some(owner) = &pod.owner_uid {
            *self.owners.entry(owner.clone()).or_default().entry(slot).or_default() += 1;
        }
        for term in &pod.pod_anti_affinity {
            let term_id = self.anti_term_id(term);
            *self.anti_terms[term_id].per_node.entry(slot).or_default() += 1;
        }
        self.pods[id as usize] = Some(PlacedPod { info: pod.clone(), slot });
        self.refresh_hot(slot);
    }

    /// Forgets a pod wherever it is.
    pub fn remove_pod(&mut self, uid: &str) {
        let Some(id) = self.pod_ids.remove(uid) else { return };
        let Some(placed) = self.pods[id as usize].take() else { return };
        self.free_pods.push(id);
        let (pod, slot) = (&placed.info, placed.slot);
        let entry = &mut self.nodes[slot as usize];
        entry.requested = entry.requested.saturating_sub(pod.requests);
        entry.score_requested = entry.score_requested.saturating_sub(pod.score_requests);
        if let Some(pos) = entry.pods.iter().position(|&p| p == id) {
            entry.pods.swap_remove(pos);
        }
        for port in &pod.host_ports {
            if let Some(pos) = entry.ports.iter().position(|p| p == port) {
                entry.ports.swap_remove(pos);
            }
        }
        for (key, value) in &pod.labels {
            if let Some(values) = self.by_label.get_mut(key) {
                if let Some(set) = values.get_mut(value) {
                    set.remove(&id);
                    if set.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.by_label.remove(key);
                }
            }
        }
        if let Some(owner) = &pod.owner_uid
            && let Some(counts) = self.owners.get_mut(owner)
        {
            decrement(counts, slot);
            if counts.is_empty() {
                self.owners.remove(owner);
            }
        }
        for term in &pod.pod_anti_affinity {
            if let Some(&term_id) = self.anti_ids.get(term) {
                decrement(&mut self.anti_terms[term_id].per_node, slot);
            }
        }
        self.refresh_hot(slot);
    }

    /// The slot of a node name, made (vacant, not live) if the name is new.
    fn slot_for(&mut self, name: &str) -> u32 {
        if let Some(&slot) = self.by_name.get(name) {
            return slot;
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.nodes.push(NodeEntry::vacant());
                self.hot.push(HotNode::VACANT);
                self.columns.push(&HotNode::VACANT);
                for index in self.topology.values_mut() {
                    index.node_domain.push(NO_DOMAIN);
                }
                (self.nodes.len() - 1) as u32
            }
        };
        let entry = &mut self.nodes[slot as usize];
        entry.info.name = name.to_string();
        entry.name_hash = stable_hash(name);
        self.by_name.insert(name.to_string(), slot);
        slot
    }

    fn class_of(&mut self, slot: u32) -> u32 {
        let info = &self.nodes[slot as usize].info;
        let labels: Vec<(String, String)> =
            info.labels.iter().filter(|(k, _)| *k != HOSTNAME_LABEL).map(|(k, v)| (k.clone(), v.clone())).collect();
        let key: ClassKey = (labels, info.taints.clone(), info.unschedulable);
        if let Some(&id) = self.class_ids.get(&key) {
            return id;
        }
        let id = self.classes.len() as u32;
        self.classes.push(NodeClass {
            labels: key.0.iter().cloned().collect(),
            taints: key.1.clone(),
            unschedulable: key.2,
            members: 0,
        });
        self.class_ids.insert(key, id);
        id
    }

    fn leave_class(&mut self, slot: u32) {
        let class = self.hot[slot as usize].class;
        if let Some(c) = self.classes.get_mut(class as usize) {
            c.members -= 1;
        }
    }

    fn clear_domains(&mut self, slot: u32, labels: &BTreeMap<String, String>) {
        for key in labels.keys() {
            if let Some(index) = self.topology.get_mut(key) {
                index.node_domain[slot as usize] = NO_DOMAIN;
            }
        }
    }

    fn set_domains(&mut self, slot: u32) {
        let slots = self.nodes.len();
        for (key, value) in &self.nodes[slot as usize].info.labels {
            let index = self
                .topology
                .entry(key.clone())
                .or_insert_with(|| TopologyIndex { ids: HashMap::new(), node_domain: vec![NO_DOMAIN; slots] });
            let next = index.ids.len() as u32;
            let id = *index.ids.entry(value.clone()).or_insert(next);
            index.node_domain[slot as usize] = id;
        }
    }

    fn refresh_hot(&mut self, slot: u32) {
        let entry = &self.nodes[slot as usize];
        let hot = &mut self.hot[slot as usize];
        if !entry.live {
            self.columns.set(slot as usize, hot);
            return;
        }
        let alloc = entry.info.allocatable;
        let inverse = |amount: i64| if amount > 0 { 1.0 / amount as f64 } else { 0.0 };
        hot.free = alloc.saturating_sub(entry.requested);
        hot.inv_cpu = inverse(alloc.milli_cpu);
        hot.inv_mem = inverse(alloc.memory);
        hot.cpu_used = entry.score_requested.milli_cpu as f64 * hot.inv_cpu;
        hot.mem_used = entry.score_requested.memory as f64 * hot.inv_mem;
        self.columns.set(slot as usize, hot);
    }

    fn anti_term_id(&mut self, term: &AffinityTerm) -> usize {
        if let Some(&id) = self.anti_ids.get(term) {
            return id;
        }
        let id = self.anti_terms.len();
        self.anti_terms.push(AntiTermEntry { term: term.clone(), per_node: HashMap::new() });
        self.anti_ids.insert(term.clone(), id);
        if !term.selector.never {
            match term.selector.requirements.iter().find(|r| r.op == Op::In) {
                Some(r) => {
                    for value in &r.values {
                        let by_value = self.anti_anchor.entry(r.key.clone()).or_default();
                        by_value.entry(value.clone()).or_default().push(id);
                    }
                }
                None => self.anti_unanchored.push(id),
            }
        }
        id
    }

    /// The placed anti-affinity terms that could select a pod with these labels.
    pub(crate) fn anti_terms_for<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a AntiTermEntry> + 'a {
        let anchored = labels
            .iter()
            .flat_map(move |(k, v)| self.anti_anchor.get(k).and_then(|values| values.get(v)).into_iter().flatten());
        anchored.chain(self.anti_unanchored.iter()).map(move |&id| &self.anti_terms[id])
    }

    /// Calls `f` with the slot of every placed pod in `namespaces` that `selector` selects,
    /// starting from the smallest label posting list the selector pins down.
    pub(crate) fn for_each_matching_pod(&self, namespaces: &Namespaces, selector: &Selector, mut f: impl FnMut(u32)) {
        if selector.never {
            return;
        }
        let mut visit = |id: u32| {
            if let Some(p) = &self.pods[id as usize]
                && namespaces.contains(&p.info.namespace)
                && selector.matches(&p.info.labels)
            {
                f(p.slot);
            }
        };
        fn postings<'s>(
            by_label: &'s HashMap<String, HashMap<String, HashSet<u32>>>,
            r: &'s Requirement,
        ) -> impl Iterator<Item = &'s HashSet<u32>> + 's {
            let values = by_label.get(&r.key);
            r.values.iter().filter_map(move |v| values.and_then(|m| m.get(v)))
        }
        let narrowest = selector
            .requirements
            .iter()
            .filter(|r| r.op == Op::In)
            .min_by_key(|r| postings(&self.by_label, r).map(HashSet::len).sum::<usize>());
        match narrowest {
            Some(r) => postings(&self.by_label, r).flatten().for_each(|&id| visit(id)),
            None => (0..self.pods.len() as u32).for_each(visit),
        }
    }
}

impl NodeEntry {
    fn vacant() -> NodeEntry {
        NodeEntry {
            info: NodeInfo::new("", Resources::default()),
            live: false,
            requested: Resources::default(),
            score_requested: Resources::default(),
            pods: Vec::new(),
            ports: Vec::new(),
            name_hash: 0,
        }
    }
}

fn decrement(counts: &mut HashMap<u32, u32>, slot: u32) {
    if let Some(n) = counts.get_mut(&slot) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&slot);
        }
    }
}
