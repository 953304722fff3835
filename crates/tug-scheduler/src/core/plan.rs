//! One placement decision: everything about the pod that does not depend on the node is worked
//! out once (per-class verdicts and scores, topology counts, blocked domains), so visiting a
//! node costs a class look-up, four comparisons and a little float arithmetic.

use tug_k8s::taints::Taint;

use super::Strategy;
use super::diagnosis::{Diagnosis, Reason};
use super::labels::{HOSTNAME_LABEL, ZONE_LABEL};
use super::pod::{PodInfo, SpreadConstraint};
use super::resources::Resources;
use super::snapshot::{HotNode, NO_DOMAIN, Snapshot, stable_hash};
use super::volumes::VolumeNeeds;

/// A filter of the chain. Each rejects a node for one named reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    Unschedulable,
    NodeName,
    Taints,
    NodeAffinity,
    HostPorts,
    Resources,
    VolumeBinding,
    TopologySpread,
    InterPodAffinity,
}

/// The filter chain, wired here and only here. It runs in the order of Kubernetes' default
/// profile (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
/// NodeResourcesFit, VolumeBinding, PodTopologySpread, InterPodAffinity) because a rejected node is counted
/// under the first filter it fails, and users compare those counts with Kubernetes'. That order
/// is also cheapest first: flags and label sets (decided once per node class), then a port
/// list, then arithmetic, then topology counts that need per-pod preparation.
pub(crate) const FILTER_CHAIN: [Filter; 9] = [
    Filter::Unschedulable,
    Filter::NodeName,
    Filter::Taints,
    Filter::NodeAffinity,
    Filter::HostPorts,
    Filter::Resources,
    Filter::VolumeBinding,
    Filter::TopologySpread,
    Filter::InterPodAffinity,
];

// Score weights, as Kubernetes' default profile weighs its score plugins: resource fit 1,
// balanced allocation 1, preferred node affinity 2, taint toleration 3, spreading 2. Each
// scorer yields 0..=100 before weighting.
const W_FIT: f64 = 1.0;
const W_BALANCED: f64 = 1.0;
const W_NODE_AFFINITY: f64 = 2.0;
const W_TAINTS: f64 = 3.0;
const W_SPREAD: f64 = 2.0;

/// The taint a cordoned node implicitly carries; tolerating it lets a pod onto cordoned nodes.
fn unschedulable_taint() -> Taint {
    Taint { key: "node.kubernetes.io/unschedulable".into(), value: String::new(), effect: "NoSchedule".into() }
}

/// One hard topology spread constraint, counted: matching pods per domain and the minimum.
#[derive(Debug)]
struct SpreadCheck<'a> {
    key: &'a str,
    node_domain: Option<&'a [u32]>,
    counts: Vec<i64>,
    min: i64,
    self_match: i64,
    max_skew: i64,
}

/// Domains marked by an inter-pod affinity rule: those holding matching pods.
#[derive(Debug)]
struct DomainRule<'a> {
    key: &'a str,
    node_domain: Option<&'a [u32]>,
    marked: Vec<bool>,
}

impl DomainRule<'_> {
    /// `None`: the node lacks the topology key; otherwise whether its domain is marked.
    fn marked(&self, slot: usize) -> Option<bool> {
        let domain = *self.node_domain?.get(slot)?;
        (domain != NO_DOMAIN).then(|| self.marked[domain as usize])
    }
}

/// One topology rule (a spread constraint, an inter-pod (anti-)affinity term) reduced to a
/// pass/fail verdict per domain of its key, for the exact scan: a rule on a class label becomes
/// part of the class verdict, a rule on the hostname a look-up per node.
#[derive(Debug)]
struct DomainVerdict<'a> {
    key: &'a str,
    node_domain: Option<&'a [u32]>,
    passes: Vec<bool>,
    passes_without_domain: bool,
}

impl DomainVerdict<'_> {
    fn passes_node(&self, slot: usize) -> bool {
        match self.node_domain.and_then(|d| d.get(slot)).copied().unwrap_or(NO_DOMAIN) {
            NO_DOMAIN => self.passes_without_domain,
            domain => self.passes[domain as usize],
        }
    }
}

/// How many nodes the exact scan scores before picking among them: small enough that the
/// scores stay in L1.
const CHUNK: usize = 512;

/// Spreading replicas of the pod's owner: a penalty per node from the owner's pods on that node
/// and in its zone, the node weighted more as Kubernetes weighs its default spread constraints
/// (log of the number of domains + 2). The zone part is a class property (the zone label is
/// one of the class labels), so it lives in the class bonus; only the node part is per node.
#[derive(Debug)]
struct OwnerSpread {
    /// Per slot: W_SPREAD × 100 × (owner pods on the node × weight) / max.
    host_penalty: Vec<f32>,
}

/// Feeds every slot holding a pod a rule is about to a marking callback.
type MarkDomains<'f> = dyn FnMut(&mut dyn FnMut(u32)) + 'f;

#[derive(Debug)]
pub(crate) struct Plan<'a> {
    snap: &'a Snapshot,
    pod: &'a PodInfo,
    strategy: Strategy,
    class_unschedulable: Vec<bool>,
    class_taint: Vec<Option<&'a Taint>>,
    class_affinity: Vec<bool>,
    /// Passes every class-level filter.
    class_ok: Vec<bool>,
    /// Weighted class-level scores (preferred node affinity, PreferNoSchedule taints).
    class_bonus: Vec<f64>,
    /// Node affinity names the node itself (hostname label, metadata.name): checked per node.
    affinity_per_node: bool,
    /// Node-level filters this pod needs beyond resources, in chain order.
    node_checks: Vec<Filter>,
    spread: Vec<SpreadCheck<'a>>,
    pod_affinity: Vec<DomainRule<'a>>,
    /// No pod matches the affinity terms but the pod matches them itself: the first of a group.
    pod_affinity_bootstrap: bool,
    pod_anti_affinity: Vec<DomainRule<'a>>,
    existing_anti_affinity: Vec<DomainRule<'a>>,
    owner: Option<OwnerSpread>,
    /// Sum of preferred-term weights, when preferences are scored per node.
    per_node_preference: Option<f64>,
    pod_hash: u64,
    /// For the exact scan, per class (one more entry for vacant slots, always false): passes
    /// the class-level filters and every topology rule whose key is a class label.
    scan_class_ok: Vec<bool>,
    /// For the exact scan: topology rules on a per-node key, checked per node.
    node_verdicts: Vec<DomainVerdict<'a>>,
    /// For the exact scan: node-level filters that are neither resources nor topology rules.
    other_node_checks: Vec<Filter>,
    /// What the pod's claims demand of a node, or why no node can take it.
    volumes: Result<VolumeNeeds<'a>, String>,
}

impl<'a> Plan<'a> {
    pub(crate) fn new(pod: &'a PodInfo, snap: &'a Snapshot, strategy: Strategy) -> Plan<'a> {
        let affinity_per_node = pod.affinity.is_per_node();
        let cordon = unschedulable_taint();
        let tolerates_cordon = pod.tolerates(&cordon);
        let classes = &snap.classes;
        let class_unschedulable: Vec<bool> = classes.iter().map(|c| c.unschedulable && !tolerates_cordon).collect();
        let class_taint: Vec<Option<&Taint>> =
            classes.iter().map(|c| c.taints.iter().find(|t| t.is_hard() && !pod.tolerates(t))).collect();
        let class_affinity: Vec<bool> = classes
            .iter()
            .map(|c| affinity_per_node || pod.affinity.is_trivial() || pod.affinity.matches(&c.labels, ""))
            .collect();
        let class_ok: Vec<bool> = (0..classes.len())
            .map(|c| classes[c].members > 0 && !class_unschedulable[c] && class_taint[c].is_none() && class_affinity[c])
            .collect();
        let mut plan = Plan {
            snap,
            pod,
            strategy,
            class_unschedulable,
            class_taint,
            class_affinity,
            class_ok,
            class_bonus: vec![0.0; classes.len() + 1],
            affinity_per_node,
            node_checks: Vec::new(),
            spread: Vec::new(),
            pod_affinity: Vec::new(),
            pod_affinity_bootstrap: false,
            pod_anti_affinity: Vec::new(),
            existing_anti_affinity: Vec::new(),
            owner: None,
            per_node_preference: None,
            pod_hash: stable_hash(&pod.uid),
            scan_class_ok: Vec::new(),
            node_verdicts: Vec::new(),
            other_node_checks: Vec::new(),
            volumes: snap.volumes.needs(pod),
        };
        plan.score_classes();
        plan.prepare_spread();
        plan.prepare_inter_pod_affinity();
        plan.prepare_owner_spread();
        let wanted = |f: &Filter| match f {
            Filter::NodeName => pod.node_name.is_some(),
            Filter::NodeAffinity => affinity_per_node,
            Filter::HostPorts => !pod.host_ports.is_empty(),
            Filter::VolumeBinding => plan.volumes.as_ref().is_ok_and(VolumeNeeds::constrains_nodes),
            Filter::TopologySpread => !plan.spread.is_empty(),
            Filter::InterPodAffinity => {
                !plan.pod_affinity.is_empty()
                    || !plan.pod_anti_affinity.is_empty()
                    || !plan.existing_anti_affinity.is_empty()
            }
            // Decided per class, or checked inline.
            Filter::Unschedulable | Filter::Taints | Filter::Resources => false,
        };
        plan.node_checks = FILTER_CHAIN.iter().copied().filter(wanted).collect();
        plan.prepare_exact_scan();
        plan
    }

    /// Splits the node-level checks for the exact scan: topology rules on class labels are
    /// folded into `scan_class_ok`, rules on the hostname become per-node verdicts, and the
    /// rest stay filters.
    fn prepare_exact_scan(&mut self) {
        let snap = self.snap;
        let mut verdicts: Vec<DomainVerdict<'a>> = Vec::new();
        for c in &self.spread {
            let passes = c.counts.iter().map(|&n| n + c.self_match - c.min <= c.max_skew).collect();
            verdicts.push(DomainVerdict {
                key: c.key,
                node_domain: c.node_domain,
                passes,
                passes_without_domain: false,
            });
        }
        let bootstrap = self.pod_affinity_bootstrap;
        for r in &self.pod_affinity {
            let passes = r.marked.iter().map(|&m| bootstrap || m).collect();
            verdicts.push(DomainVerdict {
                key: r.key,
                node_domain: r.node_domain,
                passes,
                passes_without_domain: false,
            });
        }
        for r in self.pod_anti_affinity.iter().chain(&self.existing_anti_affinity) {
            let passes = r.marked.iter().map(|&m| !m).collect();
            verdicts.push(DomainVerdict {
                key: r.key,
                node_domain: r.node_domain,
                passes,
                passes_without_domain: true,
            });
        }
        let mut scan_class_ok = self.class_ok.clone();
        scan_class_ok.push(false);
        for v in verdicts {
            if v.key == HOSTNAME_LABEL {
                self.node_verdicts.push(v);
                continue;
            }
            // Any other key is one of the class labels, so all of a class's nodes share its domain.
            let ids = snap.topology.get(v.key).map(|t| &t.ids);
            for (class, ok) in snap.classes.iter().zip(scan_class_ok.iter_mut()) {
                let domain = class.labels.get(v.key).and_then(|value| ids?.get(value)).copied();
                *ok &= domain.map_or(v.passes_without_domain, |d| v.passes[d as usize]);
            }
        }
        self.scan_class_ok = scan_class_ok;
        self.other_node_checks = self
            .node_checks
            .iter()
            .copied()
            .filter(|f| {
                matches!(f, Filter::NodeName | Filter::NodeAffinity | Filter::HostPorts | Filter::VolumeBinding)
            })
            .collect();
    }

    /// Why no node can take the pod whatever the node (Kubernetes' PreFilter failures).
    pub(crate) fn unresolvable(&self) -> Option<&str> {
        self.volumes.as_ref().err().map(String::as_str)
    }

    /// The best node's slot: the highest score, ties broken by a hash of node name and pod uid
    /// (so equal nodes share load across pods), then by name.
    /// With `enough` feasible nodes found the scan stops (see [`super::Scope`]); it then starts
    /// at a slot derived from the pod's uid so that different pods look at different nodes.
    pub(crate) fn best_node(&self, enough: usize) -> Option<usize> {
        let slots = self.snap.hot.len();
        if enough >= slots && !(self.per_node_preference.is_some() && self.affinity_per_node) {
            return match (self.owner.is_some(), self.strategy) {
                (false, Strategy::Spread) => self.exact_scan::<false, false>(),
                (true, Strategy::Spread) => self.exact_scan::<true, false>(),
                (false, Strategy::BinPack) => self.exact_scan::<false, true>(),
                (true, Strategy::BinPack) => self.exact_scan::<true, true>(),
            };
        }
        let start = if enough >= slots { 0 } else { (self.pod_hash % slots.max(1) as u64) as usize };
        // Monomorphised so the common pod (no node-level checks) pays for nothing it lacks.
        match (self.owner.is_some(), self.node_checks.is_empty()) {
            (false, true) => self.scan::<false, false>(start, enough),
            (true, true) => self.scan::<true, false>(start, enough),
            (false, false) => self.scan::<false, true>(start, enough),
            (true, false) => self.scan::<true, true>(start, enough),
        }
    }

    /// The best node by the straightforward node-by-node scan, every node scored: the
    /// reference the exact scan is tested against.
    #[cfg(test)]
    pub(crate) fn best_node_by_reference_scan(&self) -> Option<usize> {
        match (self.owner.is_some(), self.node_checks.is_empty()) {
            (false, true) => self.scan::<false, false>(0, usize::MAX),
            (true, true) => self.scan::<true, false>(0, usize::MAX),
            (false, false) => self.scan::<false, true>(0, usize::MAX),
            (true, false) => self.scan::<true, true>(0, usize::MAX),
        }
    }

    fn scan<const OWNER: bool, const CHECKS: bool>(&self, start: usize, enough: usize) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        let mut feasible = 0;
        let req = &self.pod.requests;
        let class_ok = self.class_ok.as_slice();
        let hot = self.snap.hot.as_slice();
        let (tail, head) = hot.split_at(start);
        let order = head.iter().enumerate().map(|(i, h)| (i + start, h)).chain(tail.iter().enumerate());
        for (slot, hot) in order {
            if feasible >= enough {
                break;
            }
            if !class_ok.get(hot.class as usize).copied().unwrap_or(false)
                || !fits_quick(&hot.free, req)
                || (CHECKS && self.node_checks.iter().any(|&f| self.check(f, slot).is_some()))
            {
                continue;
            }
            feasible += 1;
            let mut score = self.score(slot, hot);
            if OWNER && let Some(owner) = &self.owner {
                score -= f64::from(owner.host_penalty[slot]);
            }
            best = match best {
                Some((s, b)) if s > score || (s == score && !self.wins_tie(slot, b)) => Some((s, b)),
                _ => Some((score, slot)),
            };
        }
        best.map(|(_, slot)| slot)
    }

    /// Every node scored, the same choice as `scan` (which it must match exactly, float for
    /// float): per chunk, a branch-free pass scores each node that passes the class and
    /// resource filters (−∞ for the others), then a pass keeps the best, running the rarer
    /// node-level checks only on a node that would beat or tie the best so far.
    fn exact_scan<const OWNER: bool, const BINPACK: bool>(&self) -> Option<usize> {
        let cols = &self.snap.columns;
        let slots = cols.class.len();
        let req = self.pod.requests;
        let (score_cpu, score_mem) = (self.pod.score_requests.milli_cpu as f64, self.pod.score_requests.memory as f64);
        let class_ok = self.scan_class_ok.as_slice();
        let bonus = &self.class_bonus[..class_ok.len()];
        let last_class = class_ok.len() - 1;
        let penalty: &[f32] = match &self.owner {
            Some(owner) if OWNER => &owner.host_penalty[..slots],
            _ => &[],
        };
        let node_checks = !self.node_verdicts.is_empty() || !self.other_node_checks.is_empty();
        let mut scores = [0f64; CHUNK];
        let mut best: Option<(f64, usize, u64)> = None;
        for first in (0..slots).step_by(CHUNK) {
            let end = (first + CHUNK).min(slots);
            let chunk = &mut scores[..end - first];
            let class = &cols.class[first..end];
            let free_pods = &cols.free_pods[first..end];
            let free_cpu = &cols.free_cpu[first..end];
            let free_memory = &cols.free_memory[first..end];
            let free_ephemeral = &cols.free_ephemeral[first..end];
            let cpu_used = &cols.cpu_used[first..end];
            let mem_used = &cols.mem_used[first..end];
            let inv_cpu = &cols.inv_cpu[first..end];
            let inv_mem = &cols.inv_mem[first..end];
            let penalty = if OWNER { &penalty[first..end] } else { &[][..] };
            // Resource scores first, in a loop of pure arithmetic over columns (vectorised).
            for (k, out) in chunk.iter_mut().enumerate() {
                *out =
                    resource_score::<BINPACK>(cpu_used[k], inv_cpu[k], mem_used[k], inv_mem[k], score_cpu, score_mem);
            }
            for (k, out) in chunk.iter_mut().enumerate() {
                let c = (class[k] as usize).min(last_class);
                // `&` rather than `&&`: no branches to mispredict.
                let fits = (req.pods <= free_pods[k])
                    & ((req.milli_cpu <= free_cpu[k]) | (req.milli_cpu == 0))
                    & ((req.memory <= free_memory[k]) | (req.memory == 0))
                    & ((req.ephemeral_storage <= free_ephemeral[k]) | (req.ephemeral_storage == 0));
                let mut score = *out + bonus[c];
                if OWNER {
                    score -= f64::from(penalty[k]);
                }
                *out = if class_ok[c] & fits { score } else { f64::NEG_INFINITY };
            }
            for (k, &score) in chunk.iter().enumerate() {
                if score == f64::NEG_INFINITY || best.is_some_and(|(s, _, _)| s > score) {
                    continue;
                }
                let slot = first + k;
                if node_checks && !self.passes_node_checks(slot) {
                    continue;
                }
                let key = self.tie_key(slot);
                best = match best {
                    Some((s, b, b_key)) if s == score && !self.wins_tie_keyed(slot, key, b, b_key) => {
                        Some((s, b, b_key))
                    }
                    _ => Some((score, slot, key)),
                };
            }
        }
        best.map(|(_, slot, _)| slot)
    }

    /// The node-level checks the exact scan leaves out of its branch-free pass.
    fn passes_node_checks(&self, slot: usize) -> bool {
        self.node_verdicts.iter().all(|v| v.passes_node(slot))
            && self.other_node_checks.iter().all(|&f| self.check(f, slot).is_none())
    }

    /// Every node, counted under the first filter of the chain it fails.
    pub(crate) fn diagnose(&self) -> Diagnosis {
        let mut diagnosis = Diagnosis::new(self.snap.node_count());
        for slot in 0..self.snap.hot.len() {
            if !self.snap.nodes[slot].live {
                continue;
            }
            if let Some(reason) = FILTER_CHAIN.iter().find_map(|&f| self.check(f, slot)) {
                diagnosis.count(&reason);
            }
        }
        diagnosis
    }

    fn wins_tie(&self, slot: usize, incumbent: usize) -> bool {
        self.wins_tie_keyed(slot, self.tie_key(slot), incumbent, self.tie_key(incumbent))
    }

    /// The first tie-break: a hash of node name and pod uid.
    fn tie_key(&self, slot: usize) -> u64 {
        mix(self.snap.nodes[slot].name_hash ^ self.pod_hash)
    }

    fn wins_tie_keyed(&self, slot: usize, key: u64, incumbent: usize, incumbent_key: u64) -> bool {
        let nodes = &self.snap.nodes;
        (key, nodes[slot].info.name()) < (incumbent_key, nodes[incumbent].info.name())
    }

    /// One filter on one live node; `Some(reason)` rejects it.
    pub(crate) fn check(&self, filter: Filter, slot: usize) -> Option<Reason> {
        let snap = self.snap;
        let hot = &snap.hot[slot];
        let class = hot.class as usize;
        let entry = &snap.nodes[slot];
        match filter {
            Filter::Unschedulable => self.class_unschedulable[class].then_some(Reason::Unschedulable),
            Filter::NodeName => {
                self.pod.node_name.as_deref().is_some_and(|n| n != entry.info.name()).then_some(Reason::NodeName)
            }
            Filter::Taints => {
                self.class_taint[class].map(|t| Reason::UntoleratedTaint { key: t.key.clone(), value: t.value.clone() })
            }
            Filter::NodeAffinity => (!self.affinity_ok(slot)).then_some(Reason::NodeAffinity),
            Filter::HostPorts => self
                .pod
                .host_ports
                .iter()
                .any(|want| entry.ports.iter().any(|used| used.conflicts(want)))
                .then_some(Reason::HostPorts),
            Filter::Resources => fits(&hot.free, &self.pod.requests),
            Filter::VolumeBinding => self.volumes.as_ref().ok().and_then(|v| v.check(&entry.info)),
            Filter::TopologySpread => self.check_spread(slot),
            Filter::InterPodAffinity => self.check_inter_pod_affinity(slot),
        }
    }

    fn affinity_ok(&self, slot: usize) -> bool {
        if self.affinity_per_node {
            let info = &self.snap.nodes[slot].info;
            self.pod.affinity.matches(&info.labels, info.name())
        } else {
            self.class_affinity[self.snap.hot[slot].class as usize]
        }
    }

    fn check_spread(&self, slot: usize) -> Option<Reason> {
        let domain = |c: &SpreadCheck| c.node_domain.map_or(NO_DOMAIN, |d| d[slot]);
        if self.spread.iter().any(|c| domain(c) == NO_DOMAIN) {
            return Some(Reason::TopologySpreadMissingLabel);
        }
        let skewed = self.spread.iter().any(|c| c.counts[domain(c) as usize] + c.self_match - c.min > c.max_skew);
        skewed.then_some(Reason::TopologySpread)
    }

    fn check_inter_pod_affinity(&self, slot: usize) -> Option<Reason> {
        let affinity = self.pod_affinity.iter().map(|r| r.marked(slot)).try_fold(true, |all, m| m.map(|m| all && m));
        match affinity {
            None => return Some(Reason::PodAffinity),
            Some(false) if !self.pod_affinity_bootstrap => return Some(Reason::PodAffinity),
            _ => {}
        }
        if self.pod_anti_affinity.iter().any(|r| r.marked(slot) == Some(true)) {
            return Some(Reason::PodAntiAffinity);
        }
        if self.existing_anti_affinity.iter().any(|r| r.marked(slot) == Some(true)) {
            return Some(Reason::ExistingPodsAntiAffinity);
        }
        None
    }

    /// The node's score: resource fit by strategy, balanced allocation, the class bonus (and
    /// per-node preferences when the pod names nodes); the owner's node penalty is applied by
    /// the scan.
    #[inline(always)]
    fn score(&self, slot: usize, hot: &HotNode) -> f64 {
        let req = &self.pod.score_requests;
        let (cpu, mem) = (req.milli_cpu as f64, req.memory as f64);
        let resources = match self.strategy {
            Strategy::Spread => resource_score::<false>(hot.cpu_used, hot.inv_cpu, hot.mem_used, hot.inv_mem, cpu, mem),
            Strategy::BinPack => resource_score::<true>(hot.cpu_used, hot.inv_cpu, hot.mem_used, hot.inv_mem, cpu, mem),
        };
        let mut score = resources + self.class_bonus[hot.class as usize];
        if let Some(total) = self.per_node_preference
            && self.affinity_per_node
        {
            let info = &self.snap.nodes[slot].info;
            score += W_NODE_AFFINITY * 100.0 * self.pod.affinity.preference(&info.labels, info.name()) as f64 / total;
        }
        score
    }

    /// Class-level scores, normalised over the classes the pod may use, as Kubernetes
    /// normalises over the nodes it scores: preferred node affinity (share of the best match),
    /// PreferNoSchedule taints (fewer untolerated is better).
    fn score_classes(&mut self) {
        let pod = self.pod;
        let classes = &self.snap.classes;
        if pod.affinity.has_preferences() {
            if self.affinity_per_node {
                let total = pod.affinity.preference_total();
                self.per_node_preference = (total > 0).then_some(total as f64);
            } else {
                let raw: Vec<f64> = classes.iter().map(|c| pod.affinity.preference(&c.labels, "") as f64).collect();
                add_normalised(&mut self.class_bonus, &raw, &self.class_ok, W_NODE_AFFINITY, false);
            }
        }
        let prefer_taints: Vec<f64> = classes
            .iter()
            .map(|c| c.taints.iter().filter(|t| t.is_preference() && !pod.tolerates(t)).count() as f64)
            .collect();
        add_normalised(&mut self.class_bonus, &prefer_taints, &self.class_ok, W_TAINTS, true);
    }

    fn prepare_spread(&mut self) {
        let snap = self.snap;
        let hard: Vec<&SpreadConstraint> = self.pod.spread.iter().filter(|c| c.hard).collect();
        if hard.is_empty() {
            return;
        }
        let domains_of = |key: &str| snap.topology.get(key).map(|t| t.node_domain.as_slice());
        let all_domains: Vec<Option<&[u32]>> = hard.iter().map(|c| domains_of(&c.topology_key)).collect();
        // A node counts only if it has every constraint's key and passes the constraint's
        // node inclusion policies.
        let has_all_keys = |slot: usize| all_domains.iter().all(|d| d.is_some_and(|d| d[slot] != NO_DOMAIN));
        for (c, &node_domain) in hard.iter().zip(&all_domains) {
            let domain_count = snap.topology.get(&c.topology_key).map_or(0, |t| t.ids.len());
            let eligible = |slot: usize| {
                snap.nodes[slot].live
                    && has_all_keys(slot)
                    && (!c.honor_affinity || self.affinity_ok(slot))
                    && (!c.honor_taints || self.class_taint[snap.hot[slot].class as usize].is_none())
            };
            let mut present = vec![false; domain_count];
            let mut counts = vec![0i64; domain_count];
            if let Some(domains) = node_domain {
                for slot in (0..snap.hot.len()).filter(|&s| eligible(s)) {
                    present[domains[slot] as usize] = true;
                }
                let namespace = super::pod::Namespaces::List(vec![self.pod.namespace.clone()]);
                snap.for_each_matching_pod(&namespace, &c.selector, |slot| {
                    if eligible(slot as usize) {
                        counts[domains[slot as usize] as usize] += 1;
                    }
                });
            }
            let present_count = present.iter().filter(|&&p| p).count() as i64;
            let mut min = (0..domain_count).filter(|&d| present[d]).map(|d| counts[d]).min().unwrap_or(0);
            if c.min_domains.is_some_and(|m| present_count < m) {
                min = 0;
            }
            let self_match = i64::from(c.selector.matches(&self.pod.labels));
            self.spread.push(SpreadCheck {
                key: &c.topology_key,
                node_domain,
                counts,
                min,
                self_match,
                max_skew: c.max_skew,
            });
        }
    }

    fn prepare_inter_pod_affinity(&mut self) {
        let snap = self.snap;
        let pod = self.pod;
        let rule = |key: &'a str, mark: &mut MarkDomains<'_>| -> DomainRule<'a> {
            let index = snap.topology.get(key);
            let node_domain = index.map(|t| t.node_domain.as_slice());
            let mut marked = vec![false; index.map_or(0, |t| t.ids.len())];
            if let Some(domains) = node_domain {
                mark(&mut |slot| {
                    let d = domains[slot as usize];
                    if d != NO_DOMAIN {
                        marked[d as usize] = true;
                    }
                });
            }
            DomainRule { key, node_domain, marked }
        };
        let mut any_affinity_match = false;
        for term in &pod.pod_affinity {
            self.pod_affinity.push(rule(&term.topology_key, &mut |mark| {
                snap.for_each_matching_pod(&term.namespaces, &term.selector, |slot| {
                    any_affinity_match = true;
                    mark(slot)
                })
            }));
        }
        self.pod_affinity_bootstrap =
            !any_affinity_match && pod.pod_affinity.iter().all(|t| t.selects(&pod.namespace, &pod.labels));
        for term in &pod.pod_anti_affinity {
            self.pod_anti_affinity.push(rule(&term.topology_key, &mut |mark| {
                snap.for_each_matching_pod(&term.namespaces, &term.selector, mark)
            }));
        }
        for entry in snap.anti_terms_for(&pod.labels) {
            if entry.per_node.is_empty() || !entry.term.selects(&pod.namespace, &pod.labels) {
                continue;
            }
            self.existing_anti_affinity
                .push(rule(&entry.term.topology_key, &mut |mark| entry.per_node.keys().for_each(|&slot| mark(slot))));
        }
    }

    fn prepare_owner_spread(&mut self) {
        let snap = self.snap;
        let Some(counts) = self.pod.owner_uid.as_ref().and_then(|o| snap.owners.get(o)) else { return };
        let zone_index = snap.topology.get(ZONE_LABEL);
        let host_weight = ((snap.node_count() + 2) as f64).ln();
        let zone_weight = zone_index.map_or(0.0, |z| ((z.ids.len() + 2) as f64).ln());
        let mut zone = vec![0f64; zone_index.map_or(0, |z| z.ids.len())];
        let mut max_host = 0f64;
        for (&slot, &n) in counts {
            max_host = max_host.max(f64::from(n) * host_weight);
            if let Some(z) = zone_index {
                let d = z.node_domain[slot as usize];
                if d != NO_DOMAIN {
                    zone[d as usize] += f64::from(n) * zone_weight;
                }
            }
        }
        let max = max_host + zone.iter().copied().fold(0.0, f64::max);
        if max <= 0.0 {
            return;
        }
        let scale = W_SPREAD * 100.0 / max;
        if let Some(z) = zone_index {
            for (class, bonus) in snap.classes.iter().zip(self.class_bonus.iter_mut()) {
                let penalty =
                    class.labels.get(ZONE_LABEL).and_then(|v| z.ids.get(v)).map_or(0.0, |&d| zone[d as usize]);
                *bonus -= penalty * scale;
            }
        }
        let mut host_penalty = vec![0f32; snap.hot.len()];
        for (&slot, &n) in counts {
            host_penalty[slot as usize] = (f64::from(n) * host_weight * scale) as f32;
        }
        self.owner = Some(OwnerSpread { host_penalty });
    }
}

/// Resource fit by strategy plus balanced allocation, for a node with `cpu_used`/`mem_used`
/// shares (and 1/allocatable) receiving a pod scored as requesting `cpu`/`mem`. One function
/// for both scans, so they compute the same floats in the same order.
#[inline(always)]
fn resource_score<const BINPACK: bool>(
    cpu_used: f64,
    inv_cpu: f64,
    mem_used: f64,
    inv_mem: f64,
    cpu: f64,
    mem: f64,
) -> f64 {
    let cpu_capped = (cpu_used + cpu * inv_cpu).min(1.0);
    let mem_capped = (mem_used + mem * inv_mem).min(1.0);
    let fit = if BINPACK {
        // MostAllocated: the fuller, the better (Nomad's default), packing pods tightly. Judged
        // by how full the node already is, not after placing the pod: "after" would rank an
        // empty small node above an empty large one (the pod fills more of it) and open many
        // small nodes. Among equally full nodes (empty ones above all) the larger wins, by
        // the share of it the pod would take, so new nodes are opened largest first.
        (cpu_used.min(1.0) + mem_used.min(1.0)) * 50.0 + (2.0 - cpu * inv_cpu - mem * inv_mem).max(0.0) * 0.25
    } else {
        // LeastAllocated: the emptier the node after placing the pod, the better.
        (2.0 - cpu_capped - mem_capped) * 50.0
    };
    // BalancedAllocation: cpu and memory used in equal shares leave no stranded capacity.
    let balanced = (1.0 - (cpu_capped - mem_capped).abs() / 2.0) * 100.0;
    W_FIT * fit + W_BALANCED * balanced
}

/// Adds `weight × 0..=100` per class from raw values normalised by their maximum over usable
/// classes; `reverse`: less is better. Nothing is added when all are equal to zero.
fn add_normalised(bonus: &mut [f64], raw: &[f64], usable: &[bool], weight: f64, reverse: bool) {
    let max = raw.iter().zip(usable).filter(|(_, u)| **u).map(|(r, _)| *r).fold(0.0, f64::max);
    if max <= 0.0 {
        return;
    }
    for (b, r) in bonus.iter_mut().zip(raw) {
        let share = if reverse { (max - r) / max } else { r / max };
        *b += weight * 100.0 * share.max(0.0);
    }
}

/// The resource filter: the first shortfall in Kubernetes' order (pods, cpu, memory,
/// ephemeral storage); a resource the pod does not request always fits.
fn fits(free: &Resources, req: &Resources) -> Option<Reason> {
    if req.pods > free.pods {
        Some(Reason::TooManyPods)
    } else if req.milli_cpu > 0 && req.milli_cpu > free.milli_cpu {
        Some(Reason::InsufficientCpu)
    } else if req.memory > 0 && req.memory > free.memory {
        Some(Reason::InsufficientMemory)
    } else if req.ephemeral_storage > 0 && req.ephemeral_storage > free.ephemeral_storage {
        Some(Reason::InsufficientEphemeralStorage)
    } else {
        None
    }
}

/// The same verdict as [`fits`] without naming the reason, for the hot loop.
#[inline(always)]
fn fits_quick(free: &Resources, req: &Resources) -> bool {
    req.pods <= free.pods
        && (req.milli_cpu <= free.milli_cpu || req.milli_cpu == 0)
        && (req.memory <= free.memory || req.memory == 0)
        && (req.ephemeral_storage <= free.ephemeral_storage || req.ephemeral_storage == 0)
}

/// splitmix64's finaliser: spreads a hash's bits so ties fall on different nodes per pod.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
