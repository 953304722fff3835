//! What the scheduler needs of a pod, extracted and compiled once from the API object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, TopologySpreadConstraint};
use tug_k8s::taints::{Taint, Toleration};

use super::labels::{HOSTNAME_LABEL, NodeTerm, Op, Requirement, Selector};
use super::resources::{Resources, pod_requests};

/// A host port a container asks for; an empty or `0.0.0.0` IP means every address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Kubernetes' rule: same port and protocol, and the same IP or either is the wildcard.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// Which namespaces a pod affinity term looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespaces {
    All,
    /// Sorted.
    List(Vec<String>),
}

impl Namespaces {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Namespaces::All => true,
            Namespaces::List(list) => list.binary_search_by(|n| n.as_str().cmp(namespace)).is_ok(),
        }
    }
}

/// A required pod (anti-)affinity term, resolved against the pod that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    pub namespaces: Namespaces,
    pub selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(term: &PodAffinityTerm, namespace: &str, labels: &BTreeMap<String, String>) -> AffinityTerm {
        let mut selector = Selector::from_label_selector(term.label_selector.as_ref());
        for key in term.match_label_keys.iter().flatten() {
            if let Some(value) = labels.get(key) {
                selector.requirements.push(Requirement::equals(key, value));
            }
        }
        for key in term.mismatch_label_keys.iter().flatten() {
            if let Some(value) = labels.get(key) {
                let mut r = Requirement::equals(key, value);
                r.op = Op::NotIn;
                selector.requirements.push(r);
            }
        }
        let listed: Vec<String> = term.namespaces.clone().unwrap_or_default();
        // An empty namespaceSelector selects every namespace. A non-empty one needs namespace
        // labels, which the snapshot does not hold: only the listed namespaces count then.
        let namespaces = match &term.namespace_selector {
            Some(s)
                if s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && s.match_expressions.as_ref().is_none_or(|e| e.is_empty()) =>
            {
                Namespaces::All
            }
            None if listed.is_empty() => Namespaces::List(vec![namespace.to_string()]),
            _ => {
                let mut listed = listed;
                listed.sort();
                listed.dedup();
                Namespaces::List(listed)
            }
        };
        AffinityTerm { namespaces, selector, topology_key: term.topology_key.clone() }
    }

    /// Whether a pod in `namespace` with `labels` is one this term is about.
    pub fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces.contains(namespace) && self.selector.matches(labels)
    }
}

/// A topology spread constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: Selector,
    pub min_domains: Option<i64>,
    /// `whenUnsatisfiable: DoNotSchedule` (a filter) rather than `ScheduleAnyway`.
    pub hard: bool,
    /// nodeAffinityPolicy (default Honor): only nodes the pod may go to count.
    pub honor_affinity: bool,
    /// nodeTaintsPolicy (default Ignore).
    pub honor_taints: bool,
}

impl SpreadConstraint {
    fn new(c: &TopologySpreadConstraint, labels: &BTreeMap<String, String>) -> SpreadConstraint {
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
        for key in c.match_label_keys.iter().flatten() {
            if let Some(value) = labels.get(key) {
                selector.requirements.push(Requirement::equals(key, value));
            }
        }
        SpreadConstraint {
            max_skew: i64::from(c.max_skew.max(1)),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map(i64::from),
            hard: c.when_unsatisfiable != "ScheduleAnyway",
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }
}

/// The pod's node constraints: nodeSelector plus required and preferred node affinity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAffinity {
    node_selector: Selector,
    /// `None`: no required affinity; `Some(terms)`: one of the terms must match.
    required: Option<Vec<NodeTerm>>,
    preferred: Vec<(i64, NodeTerm)>,
}

impl NodeAffinity {
    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        self.node_selector.matches(labels)
            && self.required.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(labels, node_name)))
    }

    /// The sum of weights of the preferred terms the node matches.
    pub fn preference(&self, labels: &BTreeMap<String, String>, node_name: &str) -> i64 {
        self.preferred.iter().filter(|(_, t)| t.matches(labels, node_name)).map(|(w, _)| w).sum()
    }

    /// The most any node can score: every preferred term matched.
    pub fn preference_total(&self) -> i64 {
        self.preferred.iter().map(|(w, _)| w).sum()
    }

    pub fn has_preferences(&self) -> bool {
        !self.preferred.is_empty()
    }

    pub fn is_trivial(&self) -> bool {
        self.node_selector.requirements.is_empty() && self.required.is_none()
    }

    /// Whether matching needs the node itself (its name or hostname label), not its class.
    pub fn is_per_node(&self) -> bool {
        self.node_selector.uses_key(HOSTNAME_LABEL)
            || self.required.iter().flatten().any(NodeTerm::is_per_node)
            || self.preferred.iter().any(|(_, t)| t.is_per_node())
    }
}

/// What the scheduler needs of a pod, extracted once from the API object.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub(crate) uid: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) requests: Resources,
    /// Requests with Kubernetes' defaults for missing cpu/memory, used only to score.
    pub(crate) score_requests: Resources,
    pub(crate) node_name: Option<String>,
    pub(crate) affinity: NodeAffinity,
    pub(crate) pod_affinity: Vec<AffinityTerm>,
    pub(crate) pod_anti_affinity: Vec<AffinityTerm>,
    pub(crate) tolerations: Vec<Toleration>,
    pub(crate) host_ports: Vec<HostPort>,
    pub(crate) spread: Vec<SpreadConstraint>,
    pub(crate) priority: i32,
    pub(crate) owner_uid: Option<String>,
    pub(crate) created: Option<jiff::Timestamp>,
    pub(crate) scheduler_name: String,
    /// The PersistentVolumeClaims the pod's volumes use (ephemeral volumes' included).
    pub(crate) claims: Vec<String>,
}

/// The claims a pod's volumes use: named ones, and `<pod>-<volume>` for generic ephemeral
/// volumes (the claim Kubernetes creates for them).
fn claim_names(pod_name: &str, spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<String> {
    let mut names: Vec<String> = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(claim), _) => Some(claim.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", v.name)),
            (None, None) => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_string());
        let labels = meta.labels.clone().unwrap_or_default();
        let (requests, score_requests) = pod_requests(&spec);
        let node_affinity = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
        let affinity = NodeAffinity {
            node_selector: Selector {
                requirements: spec.node_selector.iter().flatten().map(|(k, v)| Requirement::equals(k, v)).collect(),
                never: false,
            },
            required: node_affinity
                .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
                .map(|s| s.node_selector_terms.iter().map(NodeTerm::new).collect()),
            preferred: node_affinity
                .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref())
                .into_iter()
                .flatten()
                .filter(|p| p.weight > 0)
                .map(|p| (i64::from(p.weight), NodeTerm::new(&p.preference)))
                .collect(),
        };
        let terms = |list: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            list.into_iter().flatten().map(|t| AffinityTerm::new(t, &namespace, &labels)).collect()
        };
        let pod_affinity = terms(
            spec.affinity
                .as_ref()
                .and_then(|a| a.pod_affinity.as_ref())
                .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
        );
        let pod_anti_affinity = terms(
            spec.affinity
                .as_ref()
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
        );
        let tolerations = spec.tolerations.iter().flatten().map(Toleration::from).collect();
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|&port| port > 0)?;
                let ip = p.host_ip.as_deref().filter(|ip| !ip.is_empty()).unwrap_or("0.0.0.0");
                Some(HostPort { protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip: ip.into(), port })
            })
            .collect();
        let spread =
            spec.topology_spread_constraints.iter().flatten().map(|c| SpreadConstraint::new(c, &labels)).collect();
        let owner_uid =
            meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.clone());
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            namespace,
            labels,
            requests,
            score_requests,
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            affinity,
            pod_affinity,
            pod_anti_affinity,
            tolerations,
            host_ports,
            spread,
            priority: spec.priority.unwrap_or(0),
            owner_uid,
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            scheduler_name: spec.scheduler_name.clone().unwrap_or_else(|| "default-scheduler".to_string()),
            claims: claim_names(meta.name.as_deref().unwrap_or_default(), &spec),
        }
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }
    pub fn priority(&self) -> i32 {
        self.priority
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// spec.nodeName, when the pod names its node.
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }
    pub fn scheduler_name(&self) -> &str {
        &self.scheduler_name
    }
    pub fn creation_timestamp(&self) -> Option<jiff::Timestamp> {
        self.created
    }
    /// The controller owner's uid.
    pub fn owner_uid(&self) -> Option<&str> {
        self.owner_uid.as_deref()
    }
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    /// The PersistentVolumeClaims its volumes use, sorted.
    pub fn claims(&self) -> &[String] {
        &self.claims
    }
    /// What the pod requests (Kubernetes' rule, overhead included, `pods: 1`).
    pub fn requests(&self) -> Resources {
        self.requests
    }

    /// Whether the pod tolerates a taint.
    pub(crate) fn tolerates(&self, taint: &Taint) -> bool {
        self.tolerations.iter().any(|t| t.tolerates(taint))
    }
}
