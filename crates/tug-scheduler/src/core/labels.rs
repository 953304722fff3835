//! Label matching: pod label selectors and node selector terms, compiled once per pod so that
//! matching is a few sorted-slice look-ups.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The label every node carries with its own name; the one label kept out of node classes.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The zone label, used to spread replicas of one owner.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// One `key op values` requirement; `values` are sorted for binary search.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
    /// The integer operand of `Gt`/`Lt`.
    pub number: i64,
}

impl Requirement {
    /// Validates as Kubernetes does; `None` when the requirement is malformed.
    fn new(key: &str, op: &str, values: Option<&Vec<String>>, node_ops: bool) -> Option<Requirement> {
        let mut values: Vec<String> = values.cloned().unwrap_or_default();
        values.sort();
        values.dedup();
        let op = match op {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" if node_ops => Op::Gt,
            "Lt" if node_ops => Op::Lt,
            _ => return None,
        };
        let number = match op {
            Op::In | Op::NotIn if values.is_empty() => return None,
            Op::Exists | Op::DoesNotExist if !values.is_empty() => return None,
            Op::Gt | Op::Lt if values.len() != 1 => return None,
            Op::Gt | Op::Lt => values[0].parse().ok()?,
            _ => 0,
        };
        Some(Requirement { key: key.to_string(), op, values, number })
    }

    pub fn equals(key: &str, value: &str) -> Requirement {
        Requirement { key: key.to_string(), op: Op::In, values: vec![value.to_string()], number: 0 }
    }

    /// Whether a label value (`None`: label absent) satisfies the requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let contains = |v: &str| self.values.binary_search_by(|x| x.as_str().cmp(v)).is_ok();
        match (self.op, value) {
            (Op::In, Some(v)) => contains(v),
            (Op::NotIn, Some(v)) => !contains(v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n > self.number),
            (Op::Lt, Some(v)) => v.parse::<i64>().is_ok_and(|n| n < self.number),
            (Op::In | Op::Gt | Op::Lt, None) => false,
        }
    }
}

/// A conjunction of requirements. `never` marks a selector that matches nothing: an absent pod
/// affinity selector, or a malformed one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
    pub never: bool,
}

impl Selector {
    pub fn nothing() -> Selector {
        Selector { requirements: Vec::new(), never: true }
    }

    /// A metav1.LabelSelector; `None` matches nothing, `{}` matches everything.
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Selector {
        let Some(selector) = selector else { return Selector::nothing() };
        let mut requirements: Vec<Requirement> =
            selector.match_labels.iter().flatten().map(|(k, v)| Requirement::equals(k, v)).collect();
        for expr in selector.match_expressions.iter().flatten() {
            match Requirement::new(&expr.key, &expr.operator, expr.values.as_ref(), false) {
                Some(r) => requirements.push(r),
                None => return Selector::nothing(),
            }
        }
        Selector { requirements, never: false }
    }

    /// Node selector requirements (with `Gt`/`Lt`); malformed ones make it match nothing.
    fn from_node_requirements(reqs: &[NodeSelectorRequirement]) -> Selector {
        let mut requirements = Vec::with_capacity(reqs.len());
        for r in reqs {
            match Requirement::new(&r.key, &r.operator, r.values.as_ref(), true) {
                Some(r) => requirements.push(r),
                None => return Selector::nothing(),
            }
        }
        Selector { requirements, never: false }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    pub fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.never && self.requirements.iter().all(|r| r.matches(lookup(&r.key)))
    }

    pub fn uses_key(&self, key: &str) -> bool {
        self.requirements.iter().any(|r| r.key == key)
    }
}

/// One node selector term: label expressions and `metadata.name` field expressions, ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTerm {
    labels: Selector,
    fields: Selector,
}

impl NodeTerm {
    /// An empty term matches nothing (Kubernetes drops it).
    pub fn new(term: &NodeSelectorTerm) -> NodeTerm {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return NodeTerm { labels: Selector::nothing(), fields: Selector::default() };
        }
        let mut field_selector = Selector::from_node_requirements(fields);
        // Only metadata.name with In/NotIn is a valid field requirement.
        if field_selector.requirements.iter().any(|r| r.key != "metadata.name" || !matches!(r.op, Op::In | Op::NotIn)) {
            field_selector = Selector::nothing();
        }
        NodeTerm { labels: Selector::from_node_requirements(exprs), fields: field_selector }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        self.labels.matches(labels) && self.fields.matches_with(|_| Some(node_name))
    }

    /// Whether matching depends on more than the node's class (its labels but the hostname).
    pub fn is_per_node(&self) -> bool {
        !self.fields.requirements.is_empty() || self.fields.never || self.labels.uses_key(HOSTNAME_LABEL)
    }
}
