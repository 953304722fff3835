//! The resource types the API serves, as one table: adding a kind is one entry here (plus its
//! optional defaulting and validation where the API server keeps them).
//!
//! Discovery, routing, storage keys and Table printing all read this table, so a kind cannot be
//! routable but missing from discovery, or stored under two names.

/// Whether objects live inside a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// Subresources a type serves besides the object itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: writes change only `status`.
    Status,
    /// `/scale`: an `autoscaling/v1` Scale view of `spec.replicas`.
    Scale,
    /// `pods/binding`: the scheduler's placement.
    Binding,
    /// `pods/eviction`: deletion that honours PodDisruptionBudgets.
    Eviction,
    /// `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`: streamed by the node agent.
    Log,
    Exec,
    Attach,
    PortForward,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
        }
    }
}

/// One served resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment, lower-case plural (`deployments`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub scope: Scope,
    /// Listed in `kubectl get all` (discovery category `all`).
    pub in_all: bool,
    pub subresources: &'static [Subresource],
    /// Where objects are stored, shared by every version of the same resource (events.k8s.io
    /// Events are core Events seen through another version, as in Kubernetes).
    pub storage: &'static str,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced() => format!("/registry/{}/{ns}/{name}", self.storage),
            _ => format!("/registry/{}/{name}", self.storage),
        }
    }

    /// The store prefix of every object of this type, or of one namespace's.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced() => format!("/registry/{}/{ns}/", self.storage),
            _ => format!("/registry/{}/", self.storage),
        }
    }
}

use Scope::{Cluster, Namespaced};
use Subresource::*;

macro_rules! rt {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], $scope:expr, $all:expr, [$($sub:expr),*], $storage:expr) => {
        ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            scope: $scope,
            in_all: $all,
            subresources: &[$($sub),*],
            storage: $storage,
        }
    };
}

/// Every served type. Order is discovery order within a group.
pub static RESOURCES: &[ResourceType] = &[
    rt!("", "v1", "Namespace", "namespaces", "namespace", ["ns"], Cluster, false, [Status], "namespaces"),
    rt!(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        ["po"],
        Namespaced,
        true,
        [Status, Binding, Eviction, Log, Exec, Attach, PortForward],
        "pods"
    ),
    rt!("", "v1", "Node", "nodes", "node", ["no"], Cluster, false, [Status], "nodes"),
    rt!("", "v1", "Service", "services", "service", ["svc"], Namespaced, true, [Status], "services"),
    rt!("", "v1", "Endpoints", "endpoints", "endpoints", ["ep"], Namespaced, false, [], "endpoints"),
    rt!("", "v1", "ConfigMap", "configmaps", "configmap", ["cm"], Namespaced, false, [], "configmaps"),
    rt!("", "v1", "Secret", "secrets", "secret", [], Namespaced, false, [], "secrets"),
    rt!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        ["sa"],
        Namespaced,
        false,
        [],
        "serviceaccounts"
    ),
    rt!("", "v1", "Event", "events", "event", ["ev"], Namespaced, false, [], "events"),
    rt!(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        ["pv"],
        Cluster,
        false,
        [Status],
        "persistentvolumes"
    ),
    rt!(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        ["pvc"],
        Namespaced,
        false,
        [Status],
        "persistentvolumeclaims"
    ),
    rt!(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        ["quota"],
        Namespaced,
        false,
        [Status],
        "resourcequotas"
    ),
    rt!("", "v1", "LimitRange", "limitranges", "limitrange", ["limits"], Namespaced, false, [], "limitranges"),
    rt!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        ["deploy"],
        Namespaced,
        true,
        [Status, Scale],
        "deployments.apps"
    ),
    rt!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        ["rs"],
        Namespaced,
        true,
        [Status, Scale],
        "replicasets.apps"
    ),
    rt!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        ["sts"],
        Namespaced,
        true,
        [Status, Scale],
        "statefulsets.apps"
    ),
    rt!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", ["ds"], Namespaced, true, [Status], "daemonsets.apps"),
    rt!(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        [],
        Namespaced,
        false,
        [],
        "controllerrevisions.apps"
    ),
    rt!("batch", "v1", "Job", "jobs", "job", [], Namespaced, true, [Status], "jobs.batch"),
    rt!("batch", "v1", "CronJob", "cronjobs", "cronjob", ["cj"], Namespaced, true, [Status], "cronjobs.batch"),
    rt!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        ["hpa"],
        Namespaced,
        true,
        [Status],
        "horizontalpodautoscalers.autoscaling"
    ),
    rt!(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        ["hpa"],
        Namespaced,
        true,
        [Status],
        "horizontalpodautoscalers.autoscaling"
    ),
    rt!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        [],
        Namespaced,
        false,
        [],
        "leases.coordination.k8s.io"
    ),
    rt!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        [],
        Namespaced,
        false,
        [],
        "endpointslices.discovery.k8s.io"
    ),
    rt!("events.k8s.io", "v1", "Event", "events", "event", ["ev"], Namespaced, false, [], "events"),
    rt!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        ["pdb"],
        Namespaced,
        false,
        [Status],
        "poddisruptionbudgets.policy"
    ),
    rt!(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        ["pc"],
        Cluster,
        false,
        [],
        "priorityclasses.scheduling.k8s.io"
    ),
    rt!(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        ["sc"],
        Cluster,
        false,
        [],
        "storageclasses.storage.k8s.io"
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        [],
        Namespaced,
        false,
        [],
        "roles.rbac.authorization.k8s.io"
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        [],
        Cluster,
        false,
        [],
        "clusterroles.rbac.authorization.k8s.io"
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        [],
        Namespaced,
        false,
        [],
        "rolebindings.rbac.authorization.k8s.io"
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        [],
        Cluster,
        false,
        [],
        "clusterrolebindings.rbac.authorization.k8s.io"
    ),
];

/// The type served at `/api[s]/{group}/{version}/{plural}`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The type of an object with this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The groups served, each with its versions (preferred first), in discovery order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_type_is_reachable_by_path_and_by_kind() {
        for r in RESOURCES {
            assert_eq!(by_path(r.group, r.version, r.plural), Some(r));
            assert_eq!(by_kind(&r.api_version(), r.kind), Some(r));
        }
        assert!(by_path("", "v1", "widgets").is_none());
        assert!(by_kind("apps/v1", "Pod").is_none());
    }

    #[test]
    fn no_two_entries_serve_the_same_path() {
        let mut seen = HashSet::new();
        for r in RESOURCES {
            assert!(seen.insert((r.group, r.version, r.plural)), "{}/{} {} twice", r.group, r.version, r.plural);
        }
    }

    #[test]
    fn versions_of_one_resource_share_storage_and_scope() {
        for a in RESOURCES {
            for b in RESOURCES.iter().filter(|b| b.storage == a.storage) {
                assert_eq!((a.scope, a.plural), (b.scope, b.plural), "{} vs {}", a.api_version(), b.api_version());
            }
        }
    }

    #[test]
    fn keys_separate_namespaces_and_types() {
        let pods = by_path("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/pods/default/web");
        assert!(pods.key(Some("default"), "web").starts_with(&pods.prefix(Some("default"))));
        assert!(!pods.key(Some("default2"), "web").starts_with(&pods.prefix(Some("default"))));
        let nodes = by_path("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
        let deploy = by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(deploy.prefix(None), "/registry/deployments.apps/");
    }

    #[test]
    fn groups_list_core_first_and_every_version() {
        let groups = groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        let autoscaling = groups.iter().find(|(g, _)| *g == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2", "v1"], "preferred version first");
    }
}
