//! Why a pod fits nowhere, in the words `kubectl describe pod` shows for Kubernetes.

use std::collections::BTreeMap;
use std::fmt;

/// Why one node was rejected: the first filter of the chain it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Unschedulable,
    NodeName,
    UntoleratedTaint { key: String, value: String },
    NodeAffinity,
    HostPorts,
    TooManyPods,
    InsufficientCpu,
    InsufficientMemory,
    InsufficientEphemeralStorage,
    VolumeNodeAffinityConflict,
    VolumeBindConflict,
    TopologySpread,
    TopologySpreadMissingLabel,
    PodAffinity,
    PodAntiAffinity,
    ExistingPodsAntiAffinity,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::UntoleratedTaint { key, value } => write!(f, "node(s) had untolerated taint {{{key}: {value}}}"),
            Reason::NodeAffinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Reason::HostPorts => f.write_str("node(s) didn't have free ports for the requested pod ports"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::InsufficientCpu => f.write_str("Insufficient cpu"),
            Reason::InsufficientMemory => f.write_str("Insufficient memory"),
            Reason::InsufficientEphemeralStorage => f.write_str("Insufficient ephemeral-storage"),
            Reason::VolumeNodeAffinityConflict => f.write_str("node(s) had volume node affinity conflict"),
            Reason::VolumeBindConflict => f.write_str("node(s) didn't find available persistent volumes to bind"),
            Reason::TopologySpread => f.write_str("node(s) didn't match pod topology spread constraints"),
            Reason::TopologySpreadMissingLabel => {
                f.write_str("node(s) didn't match pod topology spread constraints (missing required label)")
            }
            Reason::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingPodsAntiAffinity => f.write_str("node(s) didn't satisfy existing pods anti-affinity rules"),
        }
    }
}

/// Why a pod fits nowhere: each rejected node counted under a named reason (one per node, the
/// first filter it failed, so the counts add up to `nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
    /// Why no node was even looked at (Kubernetes' PreFilter message), e.g. a missing claim.
    pub pre_filter: Option<String>,
}

impl Diagnosis {
    pub(crate) fn new(nodes: usize) -> Diagnosis {
        Diagnosis { nodes, reasons: BTreeMap::new(), pre_filter: None }
    }

    pub(crate) fn before_filters(nodes: usize, message: String) -> Diagnosis {
        Diagnosis { nodes, reasons: BTreeMap::new(), pre_filter: Some(message) }
    }

    pub(crate) fn count(&mut self, reason: &Reason) {
        *self.reasons.entry(reason.to_string()).or_default() += 1;
    }
}

impl std::error::Error for Diagnosis {}

impl fmt::Display for Diagnosis {
    /// Kubernetes' FitError text: "0/5 nodes are available: 3 Insufficient cpu, 2 node(s) had
    /// untolerated taint {dedicated: gpu}." (or "0/5 nodes are available: <PreFilter message>.") with the "count reason" strings sorted as strings,
    /// as Go's sort.Strings orders them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.nodes)?;
        if let Some(message) = &self.pre_filter {
            write!(f, " {message}.")?;
        }
        let mut histogram: Vec<String> = self.reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
        histogram.sort();
        if !histogram.is_empty() {
            write!(f, " {}.", histogram.join(", "))?;
        }
        Ok(())
    }
}
