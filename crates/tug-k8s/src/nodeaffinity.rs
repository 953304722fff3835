//! Node affinity: component-helpers' `scheduling/corev1/nodeaffinity` — whether a node matches a
//! `NodeSelectorTerm` (label expressions with In, NotIn, Exists, DoesNotExist, Gt, Lt, and the
//! `metadata.name` field) and a `NodeSelector` (its terms ORed). Terms are compiled once
//! ([`NodeTerm`]) so the scheduler's hot loop is a few sorted-slice look-ups; the DaemonSet
//! controller and volume node affinity use the same form.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

use crate::labels::{HOSTNAME_LABEL, Op, Requirement, Selector};

/// The one field a node selector term may match on (`metav1.ObjectNameField`).
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// One node selector term, compiled: label expressions and `metadata.name` field expressions,
/// ANDed. A malformed part makes the term match nothing, as Kubernetes' lazy-error selector does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTerm {
    labels: Selector,
    fields: Selector,
}

impl NodeTerm {
    /// An empty term (no expressions, no fields) matches nothing: Kubernetes drops it.
    pub fn new(term: &NodeSelectorTerm) -> NodeTerm {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return NodeTerm { labels: Selector::nothing(), fields: Selector::default() };
        }
        NodeTerm { labels: Selector::from_node_requirements(exprs), fields: field_selector(fields) }
    }

    #[inline]
    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        self.labels.matches(labels) && self.fields.matches_with(|_| Some(node_name))
    }

    /// Whether matching depends on the node's identity (its name, or the hostname label) rather
    /// than only on labels many nodes share.
    pub fn is_per_node(&self) -> bool {
        !self.fields.requirements.is_empty() || self.fields.never || self.labels.uses_key(HOSTNAME_LABEL)
    }
}

/// `nodeSelectorRequirementsAsFieldSelector`: only `metadata.name`, only In or NotIn, exactly
/// one value each; anything else makes the term match nothing.
fn field_selector(reqs: &[NodeSelectorRequirement]) -> Selector {
    let mut requirements = Vec::with_capacity(reqs.len());
    for r in reqs {
        let values = r.values.as_deref().unwrap_or_default();
        let op = match r.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            _ => return Selector::nothing(),
        };
        if r.key != NODE_NAME_FIELD || values.len() != 1 {
            return Selector::nothing();
        }
        requirements.push(Requirement { key: r.key.clone(), op, values: values.to_vec(), number: 0 });
    }
    Selector { requirements, never: false }
}

/// A required node selector, compiled: the node must match one of its terms (none: no node).
pub fn compile(selector: &NodeSelector) -> Vec<NodeTerm> {
    selector.node_selector_terms.iter().map(NodeTerm::new).collect()
}

/// Does a node with these labels and this name match one of the terms?
pub fn matches_any(terms: &[NodeTerm], labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    terms.iter().any(|t| t.matches(labels, node_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn term(exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: (!exprs.is_empty()).then_some(exprs),
            match_fields: (!fields.is_empty()).then_some(fields),
        }
    }

    /// component-helpers nodeaffinity `TestNodeSelectorMatch` and `TestNodeMatchesNodeSelectorTerms`
    /// (the scheduler's `TestNodeAffinity` cases for operators), on a node `host_1` labelled
    /// `foo=bar`, `kernel-version=0206` and `kubernetes.io/hostname=host_1`.
    #[test]
    fn node_selectors_match_as_component_helpers_say() {
        let labels: BTreeMap<String, String> = [("foo", "bar"), ("kernel-version", "0206"), (HOSTNAME_LABEL, "host_1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let name = "host_1";
        let r = requirement;
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<NodeSelectorTerm>, bool)> = vec![
            ("no terms match nothing", vec![], false),
            ("an empty term matches nothing", vec![term(vec![], vec![])], false),
            ("In", vec![term(vec![r("foo", "In", &["bar", "value2"])], vec![])], true),
            ("In, other value", vec![term(vec![r("foo", "In", &["value1", "value2"])], vec![])], false),
            ("NotIn", vec![term(vec![r("foo", "NotIn", &["value1"])], vec![])], true),
            ("NotIn on a missing label", vec![term(vec![r("zone", "NotIn", &["a"])], vec![])], true),
            ("Exists", vec![term(vec![r("foo", "Exists", &[])], vec![])], true),
            ("DoesNotExist", vec![term(vec![r("foo", "DoesNotExist", &[])], vec![])], false),
            ("Gt", vec![term(vec![r("kernel-version", "Gt", &["0204"])], vec![])], true),
            ("Gt, not greater", vec![term(vec![r("kernel-version", "Gt", &["0206"])], vec![])], false),
            ("Lt", vec![term(vec![r("kernel-version", "Lt", &["0207"])], vec![])], true),
            ("Gt on a non-integer label", vec![term(vec![r("foo", "Gt", &["1"])], vec![])], false),
            ("Gt with a non-integer operand", vec![term(vec![r("kernel-version", "Gt", &["x"])], vec![])], false),
            ("Gt with two values", vec![term(vec![r("kernel-version", "Gt", &["1", "2"])], vec![])], false),
            ("In without values", vec![term(vec![r("foo", "In", &[])], vec![])], false),
            ("Exists with values", vec![term(vec![r("foo", "Exists", &["bar"])], vec![])], false),
            ("unknown operator", vec![term(vec![r("foo", "Equals", &["bar"])], vec![])], false),
            ("expressions ANDed", vec![term(vec![r("foo", "In", &["bar"]), r("kernel-version", "Lt", &["0200"])], vec![])], false),
            ("terms ORed", vec![term(vec![r("foo", "In", &["x"])], vec![]), term(vec![r("foo", "Exists", &[])], vec![])], true),
            ("a malformed term does not spoil the others", vec![term(vec![r("foo", "Bad", &[])], vec![]), term(vec![r("foo", "In", &["bar"])], vec![])], true),
            ("matchFields In", vec![term(vec![], vec![r("metadata.name", "In", &["host_1"])])], true),
            ("matchFields In, other node", vec![term(vec![], vec![r("metadata.name", "In", &["host_2"])])], false),
            ("matchFields NotIn", vec![term(vec![], vec![r("metadata.name", "NotIn", &["host_2"])])], true),
            ("matchFields with two values", vec![term(vec![], vec![r("metadata.name", "In", &["host_1", "host_2"])])], false),
            ("matchFields on another field", vec![term(vec![], vec![r("metadata.uid", "In", &["host_1"])])], false),
            ("matchFields with Exists", vec![term(vec![], vec![r("metadata.name", "Exists", &[])])], false),
            ("matchFields and expressions ANDed", vec![term(vec![r("foo", "In", &["bar"])], vec![r("metadata.name", "In", &["host_1"])])], true),
            ("matchFields and expressions ANDed, expression fails", vec![term(vec![r("foo", "In", &["x"])], vec![r("metadata.name", "In", &["host_1"])])], false),
            ("fields in one term, labels in another", vec![term(vec![], vec![r("metadata.name", "In", &["host_2"])]), term(vec![r("foo", "In", &["bar"])], vec![])], true),
        ];
        for (what, terms, want) in cases {
            let compiled = compile(&NodeSelector { node_selector_terms: terms });
            assert_eq!(matches_any(&compiled, &labels, name), want, "{what}");
        }
    }

    #[test]
    fn terms_on_names_or_hostnames_are_per_node() {
        let r = requirement;
        assert!(!NodeTerm::new(&term(vec![r("foo", "In", &["bar"])], vec![])).is_per_node());
        assert!(NodeTerm::new(&term(vec![r(HOSTNAME_LABEL, "In", &["a"])], vec![])).is_per_node());
        assert!(NodeTerm::new(&term(vec![], vec![r("metadata.name", "In", &["a"])])).is_per_node());
        assert!(NodeTerm::new(&term(vec![], vec![r("metadata.uid", "In", &["a"])])).is_per_node());
    }
}
