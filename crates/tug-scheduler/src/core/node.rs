//! What the scheduler needs of a node, extracted once from the API object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use tug_k8s::taints::Taint;

use super::resources::Resources;

/// A node as the scheduler sees it: name, labels, taints, cordon flag and allocatable amounts.
/// What is placed on it lives in the [`super::Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) taints: Vec<Taint>,
    pub(crate) unschedulable: bool,
    pub(crate) allocatable: Resources,
}

impl NodeInfo {
    /// status.allocatable (status.capacity when allocatable is absent), spec.taints,
    /// spec.unschedulable.
    pub fn from_node(node: &Node) -> NodeInfo {
        let status = node.status.as_ref();
        let list = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let spec = node.spec.as_ref();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.as_ref()).into_iter().flatten().map(Taint::from).collect(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: Resources::from_list(list),
        }
    }

    /// A node built directly (tests, benchmarks).
    pub fn new(name: &str, allocatable: Resources) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
            allocatable,
        }
    }

    pub fn with_label(mut self, key: &str, value: &str) -> NodeInfo {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_taint(mut self, key: &str, value: &str, effect: &str) -> NodeInfo {
        self.taints.push(Taint { key: key.to_string(), value: value.to_string(), effect: effect.to_string() });
        self
    }

    pub fn cordoned(mut self) -> NodeInfo {
        self.unschedulable = true;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    pub fn allocatable(&self) -> Resources {
        self.allocatable
    }
    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }
}
