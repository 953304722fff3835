//! Strategic-merge metadata (merge keys and patch strategies), which k8s-openapi's schemas do
//! not carry.
//!
//! kubectl builds strategic merge patches from the v3 document: a list field whose schema has
//! `x-kubernetes-patch-merge-key` is merged element by element (containers by `name`), any other
//! list is replaced whole. Kubernetes takes these from struct tags in k8s.io/api; this is a local
//! copy of the ones the served kinds use. `tug_core::patch::schema` keeps its own table for the
//! server side, in a different shape; the two agree today and should be merged into one.

use serde_json::{Map, Value, json};

/// How one list field merges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListMerge {
    /// The definition holding the field, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub definition: &'static str,
    pub field: &'static str,
    /// `merge`, or `merge,retainKeys`.
    pub strategy: &'static str,
    /// `None` for lists of scalars merged as sets (finalizers).
    pub merge_key: Option<&'static str>,
    /// The list's keys for server-side apply (`x-kubernetes-list-type: map`), where Kubernetes
    /// declares them; empty when it does not.
    pub map_keys: &'static [&'static str],
}

const fn merge(definition: &'static str, field: &'static str, key: &'static str) -> ListMerge {
    ListMerge { definition, field, strategy: "merge", merge_key: Some(key), map_keys: &[] }
}

const fn keyed(
    definition: &'static str,
    field: &'static str,
    key: &'static str,
    map_keys: &'static [&'static str],
) -> ListMerge {
    ListMerge { definition, field, strategy: "merge", merge_key: Some(key), map_keys }
}

const fn retain_keys(definition: &'static str, field: &'static str, key: &'static str) -> ListMerge {
    ListMerge { definition, field, strategy: "merge,retainKeys", merge_key: Some(key), map_keys: &[] }
}

/// Every list field with a strategic-merge strategy among the served kinds.
pub(crate) static LIST_MERGES: &[ListMerge] = &[
    // metadata
    ListMerge {
        definition: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        field: "finalizers",
        strategy: "merge",
        merge_key: None,
        map_keys: &[],
    },
    keyed("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "uid", &["uid"]),
    // pods
    merge("io.k8s.api.core.v1.PodSpec", "containers", "name"),
    merge("io.k8s.api.core.v1.PodSpec", "initContainers", "name"),
    merge("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "name"),
    merge("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "name"),
    merge("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip"),
    merge("io.k8s.api.core.v1.PodSpec", "schedulingGates", "name"),
    retain_keys("io.k8s.api.core.v1.PodSpec", "volumes", "name"),
    retain_keys("io.k8s.api.core.v1.PodSpec", "resourceClaims", "name"),
    keyed(
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "topologyKey",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    keyed("io.k8s.api.core.v1.Container", "ports", "containerPort", &["containerPort", "protocol"]),
    merge("io.k8s.api.core.v1.Container", "env", "name"),
    merge("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath"),
    merge("io.k8s.api.core.v1.Container", "volumeDevices", "devicePath"),
    merge("io.k8s.api.core.v1.EphemeralContainer", "ports", "containerPort"),
    merge("io.k8s.api.core.v1.EphemeralContainer", "env", "name"),
    merge("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "mountPath"),
    merge("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "devicePath"),
    keyed("io.k8s.api.core.v1.PodStatus", "conditions", "type", &["type"]),
    merge("io.k8s.api.core.v1.PodStatus", "podIPs", "ip"),
    merge("io.k8s.api.core.v1.PodStatus", "hostIPs", "ip"),
    retain_keys("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "name"),
    // other core kinds
    keyed("io.k8s.api.core.v1.ServiceSpec", "ports", "port", &["port", "protocol"]),
    keyed("io.k8s.api.core.v1.ServiceStatus", "conditions", "type", &["type"]),
    merge("io.k8s.api.core.v1.ServiceAccount", "secrets", "name"),
    merge("io.k8s.api.core.v1.NodeStatus", "conditions", "type"),
    merge("io.k8s.api.core.v1.NodeStatus", "addresses", "type"),
    ListMerge {
        definition: "io.k8s.api.core.v1.NodeSpec",
        field: "podCIDRs",
        strategy: "merge",
        merge_key: None,
        map_keys: &[],
    },
    merge("io.k8s.api.core.v1.NamespaceStatus", "conditions", "type"),
    merge("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "type"),
    merge("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "type"),
    // workloads
    merge("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type"),
    merge("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type"),
    merge("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "type"),
    merge("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "type"),
    merge("io.k8s.api.batch.v1.JobStatus", "conditions", "type"),
    keyed("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "type", &["type"]),
    keyed("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "type", &["type"]),
];

/// Object fields with a strategy of their own: `retainKeys` clears the union members the patch
/// leaves out (a deployment strategy switched to `Recreate` drops `rollingUpdate`), `replace`
/// swaps the whole object. Entries are (definition, field, strategy).
pub(crate) static OBJECT_STRATEGIES: &[(&str, &str, &str)] = &[
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys"),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", "replace"),
];

/// Marks every listed field found in `schemas` (a `components.schemas` map). Fields of
/// definitions the document does not hold are skipped.
pub(crate) fn annotate(schemas: &mut Map<String, Value>) {
    for entry in LIST_MERGES {
        let field = schemas
            .get_mut(entry.definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(entry.field))
            .and_then(Value::as_object_mut);
        if let Some(field) = field {
            field.extend(extensions(entry));
        }
    }
    for &(definition, field, strategy) in OBJECT_STRATEGIES {
        let field = schemas
            .get_mut(definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
            .and_then(Value::as_object_mut);
        if let Some(field) = field {
            field.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
    }
}

fn extensions(entry: &ListMerge) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("x-kubernetes-patch-strategy".into(), json!(entry.strategy));
    if let Some(key) = entry.merge_key {
        out.insert("x-kubernetes-patch-merge-key".into(), json!(key));
    }
    if !entry.map_keys.is_empty() {
        out.insert("x-kubernetes-list-type".into(), json!("map"));
        out.insert("x-kubernetes-list-map-keys".into(), json!(entry.map_keys));
    } else if entry.merge_key.is_none() {
        out.insert("x-kubernetes-list-type".into(), json!("set"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lists_are_keyed_by_their_merge_key() {
        for e in LIST_MERGES.iter().filter(|e| !e.map_keys.is_empty()) {
            let key = e.merge_key.expect("a map list has a merge key");
            assert!(e.map_keys.contains(&key), "{}.{}", e.definition, e.field);
        }
    }

    #[test]
    fn set_lists_are_marked_as_sets() {
        let finalizers = LIST_MERGES.iter().find(|e| e.field == "finalizers").expect("finalizers listed");
        let ext = extensions(finalizers);
        assert_eq!(ext["x-kubernetes-list-type"], "set");
        assert!(!ext.contains_key("x-kubernetes-patch-merge-key"));
    }
}
