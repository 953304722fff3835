//! Node IPAM, as Kubernetes' nodeipam range allocator: the cluster CIDR (`10.42.0.0/16` by
//! default) is carved into per-node ranges (`/24`), and each Node without one gets the next free
//! range in `spec.podCIDR` and `spec.podCIDRs`. The agent builds its pod network from it.
//!
//! The ranges in use live in memory only and are rebuilt from the Nodes themselves: every range
//! a node already has is marked used before anything is handed out (that is how the allocation
//! survives restarts and leader changes), and a deleted node's range is freed. Like Kubernetes'
//! `CidrSet`, allocation goes round-robin from after the last range handed out, so a freed range
//! is reused only once the others are taken: a range whose routes and endpoints other hosts
//! still hold is not handed straight to a new node. An exhausted cluster CIDR gets the node a
//! `CIDRNotAvailable` event, and the node waits until a range is freed.
//!
//! [`CidrSet`] and [`decide`] are the pure core; [`Controller`] is the loop.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::events::{Note, Recorder};
use crate::runtime::{Cache, Informer, Key, Queue, api_message};

/// The cluster CIDR when none is given (k3s' default).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The size of each node's range when none is given.
pub const DEFAULT_NODE_CIDR_MASK_SIZE: u8 = 24;
/// Kubernetes refuses more than 2^16 node ranges in one cluster CIDR.
const MAX_RANGE_BITS: u8 = 16;

/// Why a cluster CIDR and node mask size cannot be used (what `tug server` reports at start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("cluster CIDR {0:?} is not an IPv4 CIDR like 10.42.0.0/16")]
    NotIpv4Cidr(String),
    #[error("cluster CIDR {cidr:?} has host bits set; did you mean {network}/{bits}?")]
    HostBits { cidr: String, network: Ipv4Addr, bits: u8 },
    #[error(
        "node CIDR mask size /{node} must be at least the cluster CIDR's /{cluster} and at most /32 \
         (and give no more than 65536 node ranges: /{} at most here)",
        cluster.saturating_add(MAX_RANGE_BITS).min(32)
    )]
    MaskSize { cluster: u8, node: u8 },
}

/// An IPv4 network: its address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    pub network: Ipv4Addr,
    pub bits: u8,
}

impl Ipv4Net {
    /// `a.b.c.d/n`; `None` for anything else (IPv6, no prefix, a prefix over 32). Host bits are
    /// kept as written (see [`Ipv4Net::is_network`]).
    pub fn parse(text: &str) -> Option<Ipv4Net> {
        let (address, bits) = text.split_once('/')?;
        let bits: u8 = bits.parse().ok().filter(|b| *b <= 32)?;
        Some(Ipv4Net { network: address.parse().ok()?, bits })
    }

    fn mask(bits: u8) -> u32 {
        if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) }
    }

    fn first(&self) -> u32 {
        u32::from(self.network) & Ipv4Net::mask(self.bits)
    }

    fn last(&self) -> u32 {
        self.first() | !Ipv4Net::mask(self.bits)
    }

    /// Has no host bits set.
    pub fn is_network(&self) -> bool {
        u32::from(self.network) == self.first()
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.bits)
    }
}

/// The node ranges of a cluster CIDR and which node holds each (Kubernetes' `cidrset`, with
/// owners so that a range is only freed by the node that holds it).
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Ipv4Net,
    node_bits: u8,
    /// Range index → the node holding it.
    used: BTreeMap<u32, String>,
    /// Where the round-robin search for a free range starts.
    next: u32,
}

impl CidrSet {
    /// The ranges of `cluster_cidr` of size `/node_bits`, all free.
    pub fn new(cluster_cidr: &str, node_bits: u8) -> Result<CidrSet, CidrError> {
        let cluster = Ipv4Net::parse(cluster_cidr).ok_or_else(|| CidrError::NotIpv4Cidr(cluster_cidr.to_string()))?;
        if !cluster.is_network() {
            let network = Ipv4Addr::from(cluster.first());
            return Err(CidrError::HostBits { cidr: cluster_cidr.to_string(), network, bits: cluster.bits });
        }
        if node_bits < cluster.bits || node_bits > 32 || node_bits - cluster.bits > MAX_RANGE_BITS {
            return Err(CidrError::MaskSize { cluster: cluster.bits, node: node_bits });
        }
        Ok(CidrSet { cluster, node_bits, used: BTreeMap::new(), next: 0 })
    }

    /// How many node ranges there are.
    pub fn capacity(&self) -> u32 {
        1 << (self.node_bits - self.cluster.bits)
    }

    fn range(&self, index: u32) -> Ipv4Net {
        let network = self.cluster.first() + (index << (32 - u32::from(self.node_bits)));
        Ipv4Net { network: Ipv4Addr::from(network), bits: self.node_bits }
    }

    fn index_of(&self, address: u32) -> u32 {
        (address - self.cluster.first()) >> (32 - u32::from(self.node_bits))
    }

    /// The range indexes `cidr` covers (Kubernetes' `getBeginningAndEndIndices`: a range smaller
    /// than a node range takes the whole node range around it), or `None` when it lies outside
    /// the cluster CIDR.
    fn covered(&self, cidr: &Ipv4Net) -> Option<std::ops::RangeInclusive<u32>> {
        if cidr.bits <= self.cluster.bits {
            // As large as the cluster CIDR or larger: all of it, if it contains it.
            return (cidr.first() <= self.cluster.first() && self.cluster.last() <= cidr.last())
                .then(|| 0..=self.capacity() - 1);
        }
        let inside = |a: u32| self.cluster.first() <= a && a <= self.cluster.last();
        (inside(cidr.first()) && inside(cidr.last())).then(|| self.index_of(cidr.first())..=self.index_of(cidr.last()))
    }

    /// Marks the ranges `cidr` covers as `node`'s (a node that already has a range keeps it).
    /// False when it is outside the cluster CIDR: it is not ours to track.
    pub fn occupy(&mut self, node: &str, cidr: &Ipv4Net) -> bool {
        let Some(indexes) = self.covered(cidr) else { return false };
        for index in indexes {
            self.used.entry(index).or_insert_with(|| node.to_string());
        }
        true
    }

    /// The next free range, from after the last one handed out, now `node`'s.
    pub fn allocate(&mut self, node: &str) -> Option<Ipv4Net> {
        let capacity = self.capacity();
        let index = (0..capacity).map(|i| (self.next + i) % capacity).find(|i| !self.used.contains_key(i))?;
        self.used.insert(index, node.to_string());
        self.next = (index + 1) % capacity;
        Some(self.range(index))
    }

    /// Frees every range `node` holds; returns how many.
    pub fn release_node(&mut self, node: &str) -> usize {
        let before = self.used.len();
        self.used.retain(|_, holder| holder != node);
        before - self.used.len()
    }

    /// Frees `cidr` if `node` holds it (an allocation whose write failed).
    pub fn release(&mut self, node: &str, cidr: &Ipv4Net) {
        if let Some(indexes) = self.covered(cidr) {
            for index in indexes {
                if self.used.get(&index).is_some_and(|holder| holder == node) {
                    self.used.remove(&index);
                }
            }
        }
    }

    /// The node holding the range with this address, if any.
    pub fn holder(&self, cidr: &Ipv4Net) -> Option<&str> {
        let index = self.covered(cidr)?.next()?;
        self.used.get(&index).map(String::as_str)
    }
}

/// The ranges a node has in its spec (`podCIDRs`, or the older `podCIDR` alone).
pub fn node_ranges(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let many = spec.and_then(|s| s.pod_cidrs.clone()).filter(|c| !c.is_empty());
    many.or_else(|| spec.and_then(|s| s.pod_cidr.clone()).filter(|c| !c.is_empty()).map(|c| vec![c]))
        .unwrap_or_default()
}

/// What one node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It has its range(s); they are marked used.
    Keep,
    /// Being deleted: nothing to hand out.
    Nothing,
    /// Write this newly allocated range into its spec.
    Assign(Ipv4Net),
    /// No range is free.
    Exhausted,
}

/// The pure decision for one node, allocating from `ranges` when it has none.
pub fn decide(node: &Node, ranges: &mut CidrSet) -> Decision {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let existing = node_ranges(node);
    if !existing.is_empty() {
        for cidr in existing.iter().filter_map(|c| Ipv4Net::parse(c)) {
            ranges.occupy(name, &cidr);
        }
        return Decision::Keep;
    }
    if node.metadata.deletion_timestamp.is_some() {
        return Decision::Nothing;
    }
    ranges.allocate(name).map_or(Decision::Exhausted, Decision::Assign)
}

/// The allocator's loop.
#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    nodes: Cache<Node>,
    ranges: Arc<Mutex<CidrSet>>,
    queue: Queue,
    recorder: Recorder,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("nodeipam::Controller").field("queued", &self.queue.len()).finish()
    }
}

impl Controller {
    pub fn new(client: kube::Client, ranges: CidrSet, nodes: &mut Informer<Node>) -> Controller {
        let controller = Controller {
            recorder: Recorder::new(client.clone(), "node-controller"),
            client,
            nodes: nodes.cache(),
            ranges: Arc::new(Mutex::new(ranges)),
            queue: Queue::new(),
        };
        let this = controller.clone();
        // Ranges are marked used as nodes are seen, before any worker runs (the first list
        // arrives as additions before the cache is synced), so nothing already held is handed
        // out again after a restart.
        nodes.on_change(move |old, new| match (old, new) {
            (_, Some(node)) => {
                let name = node.metadata.name.as_deref().unwrap_or_default();
                let mut ranges = this.lock();
                for cidr in node_ranges(node).iter().filter_map(|c| Ipv4Net::parse(c)) {
                    ranges.occupy(name, &cidr);
                }
                drop(ranges);
                if node_ranges(node).is_empty() {
                    this.queue.add(Key::of(node));
                }
            }
            (Some(gone), None) => {
                let freed = this.lock().release_node(gone.metadata.name.as_deref().unwrap_or_default());
                if freed > 0 {
                    // Nodes that found no free range may get this one.
                    for waiting in this.nodes.list().iter().filter(|n| node_ranges(n).is_empty()) {
                        this.queue.add(Key::of(waiting.as_ref()));
                    }
                }
            }
            (None, None) => {}
        });
        controller
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CidrSet> {
        self.ranges.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn run(self, workers: usize) {
        self.nodes.wait_synced().await;
        let queue = self.queue.clone();
        crate::runtime::run_workers(queue, workers, "nodeipam", move |key| {
            let this = self.clone();
            async move { this.sync(&key).await }
        })
        .await;
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(node) = self.nodes.get(key) else { return Ok(None) };
        let decision = decide(&node, &mut self.lock());
        match decision {
            Decision::Keep | Decision::Nothing => Ok(None),
            Decision::Exhausted => {
                // Normal, as Kubernetes' RecordNodeStatusChange writes it (the log line warns).
                let note =
                    Note::normal("CIDRNotAvailable", format!("Node {} status is now: CIDRNotAvailable", key.name));
                self.recorder.record(node.as_ref(), &note);
                tracing::warn!(node = %key.name, "no pod range is free in the cluster CIDR; the node waits for one");
                Ok(None)
            }
            Decision::Assign(cidr) => {
                let text = cidr.to_string();
                // The resourceVersion makes the write conditional: a node changed meanwhile (a
                // range set by someone else) is not overwritten; its watch event brings it back.
                let patch = json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "spec": {"podCIDR": text, "podCIDRs": [text]},
                });
                let api: Api<Node> = Api::all(self.client.clone());
                match api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => {
                        tracing::info!(node = %key.name, pod_cidr = %text, "assigned the node its pod range");
                        Ok(None)
                    }
                    Err(e) => {
                        self.lock().release(&key.name, &cidr);
                        if crate::runtime::writes::is_gone_or_changed(&e) {
                            return Ok(None);
                        }
                        tracing::warn!(node = %key.name, error = %api_message(&e), "cannot write the node's pod range");
                        Err(e)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidrs: &[&str]) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidrs.first(), "podCIDRs": cidrs},
        }))
        .expect("a node")
    }

    fn net(text: &str) -> Ipv4Net {
        Ipv4Net::parse(text).expect("a CIDR")
    }

    /// Kubernetes' `TestCIDRSetFullyAllocated`, `TestIndexToCIDRBlock` and the options it refuses
    /// (`TestCIDRSet_RandomishAllocation` style: every range once, then none).
    #[test]
    fn ranges_are_handed_out_once_each_until_none_is_left() {
        let mut set = CidrSet::new("127.123.234.0/30", 30).expect("valid");
        assert_eq!(set.allocate("a"), Some(net("127.123.234.0/30")));
        assert_eq!(set.allocate("b"), None);
        set.release("a", &net("127.123.234.0/30"));
        assert_eq!(set.allocate("b"), Some(net("127.123.234.0/30")));

        let mut set = CidrSet::new("10.42.0.0/16", 24).expect("valid");
        assert_eq!(set.capacity(), 256);
        let all: std::collections::BTreeSet<Ipv4Net> =
            (0..256).map(|i| set.allocate(&format!("n{i}")).unwrap()).collect();
        assert_eq!(all.len(), 256, "no range twice");
        assert!(all.contains(&net("10.42.255.0/24")));
        assert_eq!(set.allocate("late"), None);

        let refused = [
            ("10.42.0.0", 24, "is not an IPv4 CIDR"),
            ("fd00::/64", 80, "is not an IPv4 CIDR"),
            ("10.42.0.1/16", 24, "did you mean 10.42.0.0/16"),
            ("10.42.0.0/16", 8, "mask size"),
            ("10.0.0.0/8", 25, "mask size"),
            ("10.42.0.0/16", 33, "mask size"),
        ];
        for (cidr, bits, message) in refused {
            let error = CidrSet::new(cidr, bits).expect_err(cidr).to_string();
            assert!(error.contains(message), "{cidr} /{bits}: {error}");
        }
    }

    /// Round-robin, as Kubernetes' `AllocateNext`: a freed range waits until the others are
    /// taken.
    #[test]
    fn a_freed_range_is_reused_after_the_fresh_ones() {
        let mut set = CidrSet::new("10.42.0.0/22", 24).expect("valid");
        assert_eq!(set.allocate("a"), Some(net("10.42.0.0/24")));
        assert_eq!(set.allocate("b"), Some(net("10.42.1.0/24")));
        assert_eq!(set.release_node("a"), 1);
        assert_eq!(set.allocate("c"), Some(net("10.42.2.0/24")));
        assert_eq!(set.allocate("d"), Some(net("10.42.3.0/24")));
        assert_eq!(set.allocate("e"), Some(net("10.42.0.0/24")), "wraps around to the freed one");
        assert_eq!(set.allocate("f"), None);
    }

    /// Kubernetes' `TestOccupy` cases: a range smaller than a node range takes the node range
    /// around it, a larger one every node range inside it, one outside the cluster CIDR nothing.
    #[test]
    fn occupied_ranges_are_never_handed_out() {
        let cases: [(&str, u8, &str, Option<u32>); 6] = [
            ("127.0.0.0/8", 16, "127.0.0.0/8", Some(256)),
            ("127.0.0.0/8", 16, "127.0.0.0/2", Some(256)),
            ("127.0.0.0/8", 16, "127.0.0.0/16", Some(1)),
            ("127.0.0.0/8", 16, "127.0.0.0/15", Some(2)),
            ("127.0.0.0/8", 16, "127.0.0.0/18", Some(1)),
            ("10.42.0.0/16", 24, "10.43.0.0/24", None),
        ];
        for (cluster, bits, occupied, taken) in cases {
            let mut set = CidrSet::new(cluster, bits).expect("valid");
            assert_eq!(set.occupy("old", &net(occupied)), taken.is_some(), "{occupied} in {cluster}");
            let free = std::iter::from_fn(|| set.allocate("new")).count() as u32;
            assert_eq!(free, set.capacity() - taken.unwrap_or(0), "{occupied} in {cluster}");
        }
    }

    #[test]
    fn a_node_keeps_its_range_and_only_its_deletion_frees_it() {
        let mut set = CidrSet::new("10.42.0.0/23", 24).expect("valid");
        assert_eq!(decide(&node("kept", &["10.42.0.0/24"]), &mut set), Decision::Keep);
        assert_eq!(set.holder(&net("10.42.0.0/24")), Some("kept"));
        assert_eq!(decide(&node("new", &[]), &mut set), Decision::Assign(net("10.42.1.0/24")));
        assert_eq!(decide(&node("third", &[]), &mut set), Decision::Exhausted);
        // Another node claiming a held range does not take it over, nor free it when it goes.
        assert_eq!(decide(&node("squatter", &["10.42.0.0/24"]), &mut set), Decision::Keep);
        assert_eq!(set.release_node("squatter"), 0);
        assert_eq!(set.holder(&net("10.42.0.0/24")), Some("kept"));
        assert_eq!(set.release_node("kept"), 1);
        assert_eq!(decide(&node("third", &[]), &mut set), Decision::Assign(net("10.42.0.0/24")));
        // Outside the cluster CIDR: kept by the node, tracked by nobody.
        assert_eq!(decide(&node("elsewhere", &["192.168.0.0/24"]), &mut set), Decision::Keep);
        let mut deleting = node("going", &[]);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(decide(&deleting, &mut set), Decision::Nothing);
    }
}
