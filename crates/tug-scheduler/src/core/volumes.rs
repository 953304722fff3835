//! Persistent volumes as the scheduler sees them, as Kubernetes' VolumeBinding plugin: a pod
//! whose claim is missing, or unbound with an Immediate class, fits nowhere; a claim bound to a
//! volume with node affinity pins the pod to the nodes that volume can be reached from; an
//! unbound claim of a WaitForFirstConsumer class fits any node, and the node chosen is written
//! on the claim (`volume.kubernetes.io/selected-node`) for its provisioner.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::diagnosis::Reason;
use super::labels::NodeTerm;
use super::node::NodeInfo;
use super::pod::PodInfo;

/// The claim annotation naming the node the scheduler chose for an unbound claim whose class
/// waits for the first consumer; its provisioner creates the volume there.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// What the scheduler needs of a PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClaimInfo {
    /// `spec.volumeName`: the volume it is bound (or being bound) to.
    volume: Option<String>,
    /// `spec.storageClassName`; empty: no class.
    class: String,
    selected_node: Option<String>,
    deleting: bool,
}

impl ClaimInfo {
    fn from_claim(claim: &PersistentVolumeClaim) -> ClaimInfo {
        let spec = claim.spec.as_ref();
        ClaimInfo {
            volume: spec.and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()),
            class: spec.and_then(|s| s.storage_class_name.clone()).unwrap_or_default(),
            selected_node: claim.metadata.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE_ANNOTATION)).cloned(),
            deleting: claim.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// The volume node affinity of a PersistentVolume: `None` when any node may use it.
fn volume_affinity(volume: &PersistentVolume) -> Option<Vec<NodeTerm>> {
    let required = volume.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
    Some(required.node_selector_terms.iter().map(NodeTerm::new).collect())
}

/// The claims, volumes and classes of the cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Volumes {
    /// False until the owner of the snapshot says it follows claims: a snapshot that never saw
    /// them (`tug plan`'s) cannot judge a pod's claims, and lets every pod through.
    tracked: bool,
    /// (namespace, name) → claim.
    claims: HashMap<(String, String), ClaimInfo>,
    /// PersistentVolume name → its node affinity.
    volumes: HashMap<String, Option<Vec<NodeTerm>>>,
    /// StorageClass name → whether it waits for the first consumer.
    classes: HashMap<String, bool>,
}

/// What one pod's claims demand of a node.
#[derive(Debug, Default)]
pub(crate) struct VolumeNeeds<'a> {
    /// Node affinities of the bound volumes: a node must match each.
    affinities: Vec<&'a [NodeTerm]>,
    /// Nodes already chosen for unbound claims: a node must be each.
    selected: Vec<&'a str>,
}

impl VolumeNeeds<'_> {
    pub(crate) fn constrains_nodes(&self) -> bool {
        !self.affinities.is_empty() || !self.selected.is_empty()
    }

    /// The VolumeBinding filter on one node.
    pub(crate) fn check(&self, node: &NodeInfo) -> Option<Reason> {
        let (labels, name) = (node.labels(), node.name());
        if !self.affinities.iter().all(|terms| terms.iter().any(|t| t.matches(labels, name))) {
            return Some(Reason::VolumeNodeAffinityConflict);
        }
        if !self.selected.iter().all(|n| *n == name) {
            return Some(Reason::VolumeBindConflict);
        }
        None
    }
}

impl Volumes {
    pub(crate) fn track(&mut self) {
        self.tracked = true;
    }

    /// Returns whether anything the scheduler reads changed.
    pub(crate) fn upsert_claim(&mut self, claim: &PersistentVolumeClaim) -> bool {
        let key =
            (claim.metadata.namespace.clone().unwrap_or_default(), claim.metadata.name.clone().unwrap_or_default());
        let info = ClaimInfo::from_claim(claim);
        self.claims.insert(key, info.clone()) != Some(info)
    }

    pub(crate) fn remove_claim(&mut self, namespace: &str, name: &str) -> bool {
        self.claims.remove(&(namespace.to_string(), name.to_string())).is_some()
    }

    pub(crate) fn upsert_volume(&mut self, volume: &PersistentVolume) -> bool {
        let affinity = volume_affinity(volume);
        self.volumes.insert(volume.metadata.name.clone().unwrap_or_default(), affinity.clone()) != Some(affinity)
    }

    pub(crate) fn remove_volume(&mut self, name: &str) -> bool {
        self.volumes.remove(name).is_some()
    }

    pub(crate) fn upsert_class(&mut self, class: &StorageClass) -> bool {
        let delayed = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
        self.classes.insert(class.metadata.name.clone().unwrap_or_default(), delayed) != Some(delayed)
    }

    pub(crate) fn remove_class(&mut self, name: &str) -> bool {
        self.classes.remove(name).is_some()
    }

    /// Names of every claim, volume and class known, for relists.
    pub(crate) fn claim_keys(&self) -> impl Iterator<Item = &(String, String)> {
        self.claims.keys()
    }
    pub(crate) fn volume_names(&self) -> impl Iterator<Item = &String> {
        self.volumes.keys()
    }
    pub(crate) fn class_names(&self) -> impl Iterator<Item = &String> {
        self.classes.keys()
    }

    pub(crate) fn select_node(&mut self, namespace: &str, claim: &str, node: &str) {
        if let Some(info) = self.claims.get_mut(&(namespace.to_string(), claim.to_string())) {
            info.selected_node = Some(node.to_string());
        }
    }

    /// Kubernetes' VolumeBinding PreFilter: what the pod's claims demand of a node, or why no
    /// node can take the pod until its claims change (the message Kubernetes gives).
    pub(crate) fn needs(&self, pod: &PodInfo) -> Result<VolumeNeeds<'_>, String> {
        let mut needs = VolumeNeeds::default();
        if !self.tracked {
            return Ok(needs);
        }
        let mut unbound_immediate = false;
        for name in &pod.claims {
            let Some(claim) = self.claims.get(&(pod.namespace.clone(), name.clone())) else {
                return Err(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if claim.deleting {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            if let Some(volume) = &claim.volume {
                match self.volumes.get(volume) {
                    Some(Some(terms)) => needs.affinities.push(terms),
                    Some(None) => {}
                    None => return Err(format!("persistentvolume \"{volume}\" not found")),
                }
                continue;
            }
            match self.delayed(&claim.class)? {
                true => needs.selected.extend(claim.selected_node.as_deref()),
                false => unbound_immediate = true,
            }
        }
        if unbound_immediate {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        Ok(needs)
    }

    /// Whether a class waits for the first consumer; no class binds immediately.
    fn delayed(&self, class: &str) -> Result<bool, String> {
        if class.is_empty() {
            return Ok(false);
        }
        self.classes.get(class).copied().ok_or_else(|| format!("storageclass.storage.k8s.io \"{class}\" not found"))
    }

    /// The pod's unbound claims of WaitForFirstConsumer classes that do not name a node yet:
    /// the ones to annotate with the node the pod is bound to.
    pub(crate) fn claims_to_select(&self, pod: &PodInfo) -> Vec<String> {
        if !self.tracked {
            return Vec::new();
        }
        let mut names: Vec<String> = pod
            .claims
            .iter()
            .filter(|name| {
                self.claims.get(&(pod.namespace.clone(), (*name).clone())).is_some_and(|c| {
                    c.volume.is_none() && c.selected_node.is_none() && self.delayed(&c.class) == Ok(true)
                })
            })
            .cloned()
            .collect();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    use super::super::{HOSTNAME_LABEL, NodeInfo, PodInfo, Resources, Snapshot, Strategy, schedule};

    fn cluster() -> Snapshot {
        let mut snap = Snapshot::new();
        for name in ["a", "b", "c"] {
            let allocatable = Resources { milli_cpu: 4000, memory: 1 << 33, ephemeral_storage: 1 << 35, pods: 110 };
            snap.upsert_node(NodeInfo::new(name, allocatable).with_label(HOSTNAME_LABEL, name));
        }
        snap.track_volumes();
        for (class, mode) in [("local", "WaitForFirstConsumer"), ("remote", "Immediate")] {
            let class = json!({"metadata": {"name": class}, "provisioner": "p", "volumeBindingMode": mode});
            snap.upsert_storage_class(&serde_json::from_value(class).expect("a class"));
        }
        let pinned = json!({"metadata": {"name": "pv-on-c"}, "spec": {"nodeAffinity": {"required": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": ["c"]}]}]}}}});
        snap.upsert_volume(&serde_json::from_value(pinned).expect("a volume"));
        snap.upsert_volume(&serde_json::from_value(json!({"metadata": {"name": "pv-anywhere"}})).expect("a volume"));
        let claims = [
            ("bound-c", json!({"storageClassName": "local", "volumeName": "pv-on-c"})),
            ("bound-anywhere", json!({"storageClassName": "remote", "volumeName": "pv-anywhere"})),
            ("bound-missing-pv", json!({"storageClassName": "local", "volumeName": "pv-gone"})),
            ("waiting", json!({"storageClassName": "local"})),
            ("immediate", json!({"storageClassName": "remote"})),
            ("no-class", json!({"storageClassName": ""})),
            ("unknown-class", json!({"storageClassName": "gold"})),
        ];
        for (name, spec) in claims {
            let claim = json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec});
            snap.upsert_claim(&serde_json::from_value(claim).expect("a claim"));
        }
        let selected = json!({"metadata": {"name": "selected-b", "namespace": "default",
            "annotations": {super::SELECTED_NODE_ANNOTATION: "b"}}, "spec": {"storageClassName": "local"}});
        snap.upsert_claim(&serde_json::from_value(selected).expect("a claim"));
        snap
    }

    fn pod_using(claims: &[&str]) -> PodInfo {
        let volumes: Vec<Value> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        let pod = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": volumes}});
        PodInfo::from_pod(&serde_json::from_value::<Pod>(pod).expect("a pod"))
    }

    #[test]
    fn claims_decide_where_a_pod_may_go() {
        let snap = cluster();
        let cases: [(&[&str], &str); 10] = [
            (&[], "any"),
            (&["waiting"], "any"),
            (&["bound-anywhere"], "any"),
            (&["bound-c"], "-> c"),
            (&["selected-b"], "-> b"),
            (&["missing"], "0/3 nodes are available: persistentvolumeclaim \"missing\" not found."),
            (&["immediate"], "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."),
            (&["no-class", "waiting"], "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."),
            (&["unknown-class"], "0/3 nodes are available: storageclass.storage.k8s.io \"gold\" not found."),
            (
                &["bound-c", "selected-b"],
                "0/3 nodes are available: 1 node(s) didn't find available persistent volumes to bind, \
                 2 node(s) had volume node affinity conflict.",
            ),
        ];
        for (claims, want) in cases {
            let got = match schedule(&pod_using(claims), &snap, Strategy::Spread) {
                Ok(_) if want == "any" => "any".to_string(),
                Ok(node) => format!("-> {node}"),
                Err(d) => d.to_string(),
            };
            assert_eq!(got, want, "claims {claims:?}");
        }
        let missing_pv = schedule(&pod_using(&["bound-missing-pv"]), &snap, Strategy::Spread);
        assert!(missing_pv.is_err_and(|d| d.to_string().contains("persistentvolume \"pv-gone\" not found")));
    }

    #[test]
    fn only_unbound_waiting_claims_without_a_node_are_selected() {
        let mut snap = cluster();
        let pod = pod_using(&["waiting", "bound-c", "selected-b", "immediate", "missing"]);
        assert_eq!(snap.claims_to_select(&pod), vec!["waiting".to_string()]);
        snap.assume_selected_node("default", "waiting", "a");
        assert!(snap.claims_to_select(&pod).is_empty());
        let placed = schedule(&pod_using(&["waiting"]), &snap, Strategy::Spread);
        assert_eq!(placed.ok().as_deref(), Some("a"), "a pod sharing the claim follows it");
    }

    #[test]
    fn a_snapshot_that_does_not_follow_claims_lets_pods_through() {
        let mut snap = Snapshot::new();
        let allocatable = Resources { milli_cpu: 1000, memory: 1 << 30, ephemeral_storage: 1 << 30, pods: 10 };
        snap.upsert_node(NodeInfo::new("a", allocatable));
        let pod = pod_using(&["missing"]);
        assert_eq!(schedule(&pod, &snap, Strategy::Spread).ok().as_deref(), Some("a"));
        assert!(snap.claims_to_select(&pod).is_empty());
        assert_eq!(pod.claims(), ["missing".to_string()]);
    }
}
