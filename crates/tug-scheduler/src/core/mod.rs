//! The pure placement core: given a pod and a [`Snapshot`] of the cluster, pick a node or say
//! why none fits. Deterministic for a given snapshot; no IO.
//!
//! Modelled on Nomad's `scheduler/feasible`: a chain of small filters, each rejecting a node
//! under one named reason ([`Diagnosis`] counts them in Kubernetes' words), then scorers whose
//! weighted sum ranks the nodes left. The chain and the scorers are wired in one place,
//! `plan.rs` (`FILTER_CHAIN` and `Plan::score`). Persistent volume claims are checked against
//! the snapshot's claims, volumes and storage classes (`volumes.rs`). Speed comes from the snapshot's shape: node
//! classes make label/taint filters a per-class verdict, per-node numbers are precomputed, and
//! topology counts come from indexes maintained as pods are added and removed.

mod diagnosis;
mod labels;
mod node;
mod plan;
mod pod;
mod resources;
mod snapshot;
mod volumes;

#[cfg(test)]
mod tests;

pub use diagnosis::{Diagnosis, Reason};
pub use labels::NodeTerm;
pub use labels::{HOSTNAME_LABEL, ZONE_LABEL};
pub use node::NodeInfo;
pub use pod::PodInfo;
pub use resources::{DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST, Resources};
pub use snapshot::Snapshot;
pub use tug_k8s::taints::{Taint, Toleration};
pub use volumes::SELECTED_NODE_ANNOTATION;

/// How nodes that fit are ranked by their resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Least allocated first (Kubernetes' default): spreads load, leaves headroom everywhere.
    #[default]
    Spread,
    /// Most allocated first (Nomad's default): packs pods onto few nodes.
    BinPack,
}

/// Which nodes a decision scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every feasible node: the exact best node.
    #[default]
    AllNodes,
    /// Kubernetes' adaptive percentageOfNodesToScore: stop once max(100, n × (50 − n/125)%,
    /// at least 5%) feasible nodes are found, starting at a node picked by the pod's uid. On
    /// large clusters this trades the exact best for a good one, several times faster.
    Adaptive,
}

impl Scope {
    /// What the scheduler uses with a strategy: spreading samples as Kubernetes does (any of
    /// the least loaded nodes is nearly as good as the least loaded one); bin-packing scores
    /// every node, because packing quality is its whole point.
    pub fn for_strategy(strategy: Strategy) -> Scope {
        match strategy {
            Strategy::Spread => Scope::Adaptive,
            Strategy::BinPack => Scope::AllNodes,
        }
    }

    /// How many feasible nodes are enough among `nodes`.
    pub fn feasible_nodes_to_find(self, nodes: usize) -> usize {
        match self {
            Scope::AllNodes => usize::MAX,
            Scope::Adaptive => {
                let percent = 50usize.saturating_sub(nodes / 125).max(5);
                (nodes * percent / 100).max(100)
            }
        }
    }
}

/// Picks the node for `pod`: the best-scoring node that passes every filter, or a
/// [`Diagnosis`] counting every node under the first filter it failed.
pub fn schedule(pod: &PodInfo, snapshot: &Snapshot, strategy: Strategy) -> Result<String, Diagnosis> {
    schedule_with(pod, snapshot, strategy, Scope::AllNodes)
}

/// [`schedule`] scoring only the nodes `scope` asks for.
pub fn schedule_with(
    pod: &PodInfo,
    snapshot: &Snapshot,
    strategy: Strategy,
    scope: Scope,
) -> Result<String, Diagnosis> {
    if snapshot.node_count() == 0 {
        return Err(Diagnosis::new(0));
    }
    let plan = plan::Plan::new(pod, snapshot, strategy);
    if let Some(message) = plan.unresolvable() {
        return Err(Diagnosis::before_filters(snapshot.node_count(), message.to_string()));
    }
    match plan.best_node(scope.feasible_nodes_to_find(snapshot.node_count())) {
        Some(slot) => Ok(snapshot.nodes[slot].info.name().to_string()),
        None => Err(plan.diagnose()),
    }
}

/// Every filter's verdict on one node, in chain order (`None`: passes); for tests and for
/// explaining a decision.
pub fn explain(pod: &PodInfo, snapshot: &Snapshot, node: &str) -> Option<Vec<Option<Reason>>> {
    let slot = snapshot.slot_of(node)?;
    let plan = plan::Plan::new(pod, snapshot, Strategy::default());
    Some(plan::FILTER_CHAIN.iter().map(|&f| plan.check(f, slot)).collect())
}
