//! The local-path provisioner (k3s' `local-path`, `tugboat.dev/local-path` here): a
//! PersistentVolumeClaim of a class with this provisioner gets a `hostPath` PersistentVolume
//! on the node the scheduler picked for the claim's first pod, pinned there by node affinity,
//! and is bound to it; deleting the claim deletes a volume whose reclaim policy is Delete.
//!
//! Local disks live on one node, so only `volumeBindingMode: WaitForFirstConsumer` works: the
//! scheduler names the node in the claim's `volume.kubernetes.io/selected-node` annotation when
//! it binds the pod. The volume's directory is `<storage dir>/pvc-<uid>_<namespace>_<claim>`,
//! the storage dir being the node's `tugboat.dev/storage-dir` annotation (set by the agent).
//! The agent creates the directory (`DirectoryOrCreate`); removing it after the volume is
//! deleted is the agent's job too: every volume made here carries [`CLEANUP_FINALIZER`], which
//! the node's agent takes off once the directory is gone.
//!
//! [`reconcile_claim`] and [`reconcile_volume`] are the pure cores; [`Controller`] the loop:
//! one queue of claims (provision, bind) and one of volumes (reclaim).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};

use crate::events::{Note, Recorder};
use crate::runtime::{Cache, Informer, Key, Queue};

/// The provisioner name a StorageClass gives to have its claims served here.
pub const PROVISIONER: &str = "tugboat.dev/local-path";
/// The node annotation naming the directory its local volumes live under.
pub const STORAGE_DIR_ANNOTATION: &str = "tugboat.dev/storage-dir";
/// The storage directory of a node that does not say.
pub const DEFAULT_STORAGE_DIR: &str = "/var/lib/tugboat/storage";
/// On every volume made here; the agent of the volume's node removes it once it has removed the
/// directory of the deleted volume, so a volume object never goes before its data.
pub const CLEANUP_FINALIZER: &str = "tugboat.dev/local-path-cleanup";
/// Set by the scheduler on a claim waiting for its first consumer: the consumer's node.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// How soon a claim whose selected node is not in the cache yet is looked at again.
const NODE_RETRY: Duration = Duration::from_secs(1);

/// What a claim's reconcile sees.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub claim: &'a PersistentVolumeClaim,
    /// The claim's StorageClass, if it names one that exists.
    pub class: Option<&'a StorageClass>,
    /// The volume the claim names, or else the one it would be given (`pvc-<uid>`).
    pub volume: Option<&'a PersistentVolume>,
    /// The node the scheduler selected for the claim, if it is known.
    pub node: Option<&'a Node>,
}

/// What to do about a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimAction {
    /// Not ours, or nothing left to do.
    Nothing,
    /// The claim waits; tell its owner why.
    Wait(Note),
    /// The selected node is not known yet: look again shortly.
    WaitForNode,
    /// Create this volume, then bind the claim to it.
    Provision(Box<PersistentVolume>),
    /// Finish binding the claim to this (existing, ours) volume.
    Bind(Box<PersistentVolume>),
}

/// What to do about a volume we provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeAction {
    Nothing,
    /// Its claim is gone and its reclaim policy is Delete.
    Delete,
    /// Its claim is gone and the volume is kept: mark it Released.
    Release,
}

/// The name of the volume provisioned for a claim.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default())
}

/// The directory of a claim's volume on a node with `storage_dir`.
pub fn volume_path(storage_dir: &str, claim: &PersistentVolumeClaim) -> String {
    let meta = &claim.metadata;
    format!(
        "{}/{}_{}_{}",
        storage_dir.trim_end_matches('/'),
        volume_name(claim),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// A node's storage directory: its annotation, or the default.
pub fn storage_dir(node: &Node) -> &str {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STORAGE_DIR_ANNOTATION))
        .map(String::as_str)
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_STORAGE_DIR)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn is_ours(class: &StorageClass) -> bool {
    class.provisioner == PROVISIONER
}

/// The volume for `claim` of `class` on `node`: the claim's size and access modes, a
/// `hostPath` directory under the node's storage dir, node affinity to that node's hostname.
pub fn provisioned_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &Node,
) -> Result<PersistentVolume, String> {
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .ok_or_else(|| "the claim requests no storage (spec.resources.requests.storage)".to_string())?;
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let hostname = node.metadata.labels.as_ref().and_then(|l| l.get(HOSTNAME_LABEL)).cloned().unwrap_or(node_name);
    let access_modes = spec.access_modes.filter(|m| !m.is_empty()).unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let meta = &claim.metadata;
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name(claim)),
            annotations: Some(BTreeMap::from([(PROVISIONED_BY_ANNOTATION.to_string(), PROVISIONER.to_string())])),
            finalizers: Some(vec![CLEANUP_FINALIZER.to_string()]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), storage)])),
            access_modes: Some(access_modes),
            host_path: Some(HostPathVolumeSource {
                path: volume_path(storage_dir(node), claim),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..ObjectReference::default()
            }),
            persistent_volume_reclaim_policy: Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into())),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: spec.volume_mode.or_else(|| Some("Filesystem".into())),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    })
}

/// Whether `volume` was made for `claim` (its claimRef carries the claim's uid).
fn reserved_for(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    claim_ref.is_some_and(|r| r.uid.is_some() && r.uid == claim.metadata.uid)
}

/// The provisioner's decision for one claim.
pub fn reconcile_claim(o: &Observed) -> ClaimAction {
    let claim = o.claim;
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimAction::Nothing;
    }
    let bound_to = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty());
    if let Some(volume) = o.volume
        && reserved_for(volume, claim)
        && annotation(&volume.metadata, PROVISIONED_BY_ANNOTATION) == Some(PROVISIONER)
    {
        // Ours already: finish the binding (each step is a no-op once done).
        return ClaimAction::Bind(Box::new(volume.clone()));
    }
    if bound_to.is_some() {
        // Bound to a volume someone else made: not ours to touch.
        return ClaimAction::Nothing;
    }
    let Some(class) = o.class.filter(|c| is_ours(c)) else { return ClaimAction::Nothing };
    let class_name = class.metadata.name.as_deref().unwrap_or_default();
    if class.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer") {
        return ClaimAction::Wait(Note::warning(
            "ProvisioningFailed",
            format!(
                "storageclass \"{class_name}\": the {PROVISIONER} provisioner needs volumeBindingMode \
                 WaitForFirstConsumer (a local volume lives on the node the scheduler picks for the first pod)"
            ),
        ));
    }
    if annotation(&claim.metadata, SELECTED_NODE_ANNOTATION).is_none() {
        return ClaimAction::Wait(Note::normal(
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        ));
    }
    let Some(node) = o.node else { return ClaimAction::WaitForNode };
    match provisioned_volume(claim, class, node) {
        Ok(volume) => ClaimAction::Provision(Box::new(volume)),
        Err(why) => ClaimAction::Wait(Note::warning("ProvisioningFailed", why)),
    }
}

/// The merge patch binding the claim to `volume` (volumeName, bind annotations), if needed.
pub fn claim_binding_patch(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> Option<Value> {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(name);
    let annotated = annotation(&claim.metadata, BIND_COMPLETED_ANNOTATION) == Some("yes");
    (!named || !annotated).then(|| {
        json!({
            "metadata": {"annotations": {BIND_COMPLETED_ANNOTATION: "yes", BOUND_BY_CONTROLLER_ANNOTATION: "yes"}},
            "spec": {"volumeName": name},
        })
    })
}

/// The claim's status once bound to `volume`, as a merge patch, if it differs.
pub fn claim_status_patch(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> Option<Value> {
    let spec = volume.spec.as_ref();
    let capacity: BTreeMap<String, Quantity> = spec.and_then(|s| s.capacity.clone()).unwrap_or_default();
    let access_modes: Vec<String> = spec.and_then(|s| s.access_modes.clone()).unwrap_or_default();
    let status = claim.status.as_ref();
    let current = (
        status.and_then(|s| s.phase.as_deref()),
        status.and_then(|s| s.capacity.as_ref()),
        status.and_then(|s| s.access_modes.as_ref()),
    );
    (current != (Some("Bound"), Some(&capacity), Some(&access_modes)))
        .then(|| json!({"status": {"phase": "Bound", "capacity": capacity, "accessModes": access_modes}}))
}

/// What happens to a volume we provisioned, given the claim of its claimRef's name as the API
/// has it now (`None`: no claim of that name).
pub fn reconcile_volume(volume: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeAction {
    if volume.metadata.deletion_timestamp.is_some()
        || annotation(&volume.metadata, PROVISIONED_BY_ANNOTATION) != Some(PROVISIONER)
    {
        return VolumeAction::Nothing;
    }
    let spec = volume.spec.as_ref();
    let Some(claim_ref) = spec.and_then(|s| s.claim_ref.as_ref()) else { return VolumeAction::Nothing };
    if claim.is_some_and(|c| c.metadata.uid.is_some() && c.metadata.uid == claim_ref.uid) {
        return VolumeAction::Nothing;
    }
    match spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) {
        Some("Delete") | None => VolumeAction::Delete,
        Some(_) if volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released") => VolumeAction::Nothing,
        Some(_) => VolumeAction::Release,
    }
}

fn claim_ref_key(volume: &PersistentVolume) -> Option<Key> {
    let r = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some(Key::new(r.namespace.as_deref()?, r.name.as_deref()?))
}

/// The provisioner's loop.
#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    classes: Cache<StorageClass>,
    nodes: Cache<Node>,
    claim_queue: Queue,
    volume_queue: Queue,
    recorder: Recorder,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("localpath::Controller")
            .field("claims queued", &self.claim_queue.len())
            .field("volumes queued", &self.volume_queue.len())
            .finish()
    }
}

impl Controller {
    pub fn new(
        client: kube::Client,
        claims: &mut Informer<PersistentVolumeClaim>,
        volumes: &mut Informer<PersistentVolume>,
        classes: &mut Informer<StorageClass>,
        nodes: &Informer<Node>,
    ) -> Controller {
        let controller = Controller {
            recorder: Recorder::new(client.clone(), "tugboat.dev/local-path"),
            client,
            claims: claims.cache(),
            volumes: volumes.cache(),
            classes: classes.cache(),
            nodes: nodes.cache(),
            claim_queue: Queue::new(),
            volume_queue: Queue::new(),
        };
        let (claim_queue, volume_queue) = (controller.claim_queue.clone(), controller.volume_queue.clone());
        claims.on_change(move |old, new| match (old, new) {
            (_, Some(claim)) => claim_queue.add(Key::of(claim)),
            (Some(gone), None) => {
                // Its volume may have to go with it.
                let bound = gone.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty());
                volume_queue.add(Key::new("", &bound.unwrap_or_else(|| volume_name(gone))));
            }
            (None, None) => {}
        });
        let (claim_queue, volume_queue) = (controller.claim_queue.clone(), controller.volume_queue.clone());
        volumes.on_change(move |old, new| {
            for volume in [old, new].into_iter().flatten() {
                volume_queue.add(Key::of(volume));
                if let Some(key) = claim_ref_key(volume) {
                    claim_queue.add(key);
                }
            }
        });
        let this = controller.clone();
        classes.on_change(move |_, new| {
            let Some(class) = new else { return };
            for claim in this.claims.list() {
                if claim.spec.as_ref().and_then(|s| s.storage_class_name.as_ref()) == class.metadata.name.as_ref() {
                    this.claim_queue.add(Key::of(claim.as_ref()));
                }
            }
        });
        controller
    }

    pub async fn run(self, workers: usize) {
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
        self.classes.wait_synced().await;
        self.nodes.wait_synced().await;
        let claims = self.clone();
        let claim_workers = crate::runtime::run_workers(self.claim_queue.clone(), workers, "localpath", move |key| {
            let this = claims.clone();
            async move { this.sync_claim(&key).await }
        });
        let volumes = self.clone();
        let volume_workers =
            crate::runtime::run_workers(self.volume_queue.clone(), workers, "localpath-reclaim", move |key| {
                let this = volumes.clone();
                async move { this.sync_volume(&key).await }
            });
        tokio::join!(claim_workers, volume_workers);
    }

    async fn sync_claim(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(claim) = self.claims.get(key) else { return Ok(None) };
        let spec = claim.spec.as_ref();
        let class = spec.and_then(|s| s.storage_class_name.as_deref()).and_then(|c| self.classes.get(&Key::new("", c)));
        let volume_name =
            spec.and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()).unwrap_or_else(|| volume_name(&claim));
        let volume = self.volumes.get(&Key::new("", &volume_name));
        let node = annotation(&claim.metadata, SELECTED_NODE_ANNOTATION).and_then(|n| self.nodes.get(&Key::new("", n)));
        let observed =
            Observed { claim: &claim, class: class.as_deref(), volume: volume.as_deref(), node: node.as_deref() };
        match reconcile_claim(&observed) {
            ClaimAction::Nothing => Ok(None),
            ClaimAction::Wait(note) => {
                self.recorder.record(claim.as_ref(), &note);
                Ok(None)
            }
            ClaimAction::WaitForNode => Ok(Some(NODE_RETRY)),
            ClaimAction::Provision(volume) => {
                let claim_name = format!("{}/{}", key.namespace, key.name);
                self.recorder.record(
                    claim.as_ref(),
                    &Note::normal(
                        "Provisioning",
                        format!("External provisioner is provisioning volume for claim \"{claim_name}\""),
                    ),
                );
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                let name = volume.metadata.name.clone().unwrap_or_default();
                let created = match api.create(&PostParams::default(), &volume).await {
                    Ok(created) => created,
                    // Made by an earlier attempt whose watch event has not arrived yet.
                    Err(kube::Error::Api(s)) if s.code == 409 => api.get(&name).await?,
                    Err(e) => {
                        let why = format!("failed to provision volume with StorageClass: {e}");
                        self.recorder.record(claim.as_ref(), &Note::warning("ProvisioningFailed", why));
                        return Err(e);
                    }
                };
                self.recorder.record(
                    claim.as_ref(),
                    &Note::normal("ProvisioningSucceeded", format!("Successfully provisioned volume {name}")),
                );
                self.bind(&claim, &created).await
            }
            ClaimAction::Bind(volume) => self.bind(&claim, &volume).await,
        }
    }

    /// Binds in Kubernetes' order: the volume's phase, then the claim's volumeName, then the
    /// claim's status. Merge patches, so a stale cached copy costs no conflict.
    async fn bind(
        &self,
        claim: &PersistentVolumeClaim,
        volume: &PersistentVolume,
    ) -> Result<Option<Duration>, kube::Error> {
        let volume_name = volume.metadata.name.clone().unwrap_or_default();
        if volume.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            let patch = json!({"status": {"phase": "Bound"}});
            api.patch_status(&volume_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
        let name = claim.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        if let Some(patch) = claim_binding_patch(claim, volume) {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        if let Some(patch) = claim_status_patch(claim, volume) {
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Ok(None)
    }

    async fn sync_volume(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(volume) = self.volumes.get(key) else { return Ok(None) };
        let Some(claim_key) = claim_ref_key(&volume) else { return Ok(None) };
        let cached = self.claims.get(&claim_key);
        if reconcile_volume(&volume, cached.as_deref()) == VolumeAction::Nothing {
            return Ok(None);
        }
        // The cache says the claim is gone; ask the API before destroying data.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &claim_key.namespace);
        let live = claims.get_opt(&claim_key.name).await?;
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match reconcile_volume(&volume, live.as_ref()) {
            VolumeAction::Nothing => {}
            VolumeAction::Delete => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: volume.metadata.uid.clone(), resource_version: None }),
                    ..DeleteParams::default()
                };
                match api.delete(&key.name, &params).await {
                    Ok(_) => {
                        tracing::info!(volume = %key.name, claim = %claim_key, "deleted the volume of a deleted claim")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            VolumeAction::Release => {
                let patch = json!({"status": {"phase": "Released"}});
                api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(annotations: Value, spec: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "shop", "uid": "u1", "annotations": annotations},
            "spec": spec,
        }))
        .expect("a claim")
    }

    fn class(provisioner: &str, mode: &str, reclaim: &str) -> StorageClass {
        serde_json::from_value(json!({"metadata": {"name": "local-path"}, "provisioner": provisioner,
            "volumeBindingMode": mode, "reclaimPolicy": reclaim}))
        .expect("a class")
    }

    fn node(annotations: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {HOSTNAME_LABEL: "n1"},
            "annotations": annotations}}))
        .expect("a node")
    }

    fn waiting_spec() -> Value {
        json!({"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}})
    }

    fn selected() -> Value {
        json!({SELECTED_NODE_ANNOTATION: "n1"})
    }

    #[test]
    fn a_claim_is_provisioned_once_its_node_is_selected() {
        let ours = class(PROVISIONER, "WaitForFirstConsumer", "Delete");
        let immediate = class(PROVISIONER, "Immediate", "Delete");
        let theirs = class("ebs.csi.aws.com", "WaitForFirstConsumer", "Delete");
        let n1 = node(json!({}));
        let unselected = claim(json!({}), waiting_spec());
        let chosen = claim(selected(), waiting_spec());
        let sizeless = claim(selected(), json!({"storageClassName": "local-path"}));
        let reason = |action: ClaimAction| match action {
            ClaimAction::Nothing => "nothing".to_string(),
            ClaimAction::Wait(note) => note.reason,
            ClaimAction::WaitForNode => "wait for node".to_string(),
            ClaimAction::Provision(_) => "provision".to_string(),
            ClaimAction::Bind(_) => "bind".to_string(),
        };
        let cases = [
            (&unselected, Some(&ours), Some(&n1), "WaitForFirstConsumer"),
            (&chosen, Some(&ours), Some(&n1), "provision"),
            (&chosen, Some(&ours), None, "wait for node"),
            (&chosen, Some(&immediate), Some(&n1), "ProvisioningFailed"),
            (&chosen, Some(&theirs), Some(&n1), "nothing"),
            (&chosen, None, Some(&n1), "nothing"),
            (&sizeless, Some(&ours), Some(&n1), "ProvisioningFailed"),
        ];
        for (claim, class, node, want) in cases {
            let o = Observed { claim, class, volume: None, node };
            assert_eq!(reason(reconcile_claim(&o)), want, "{:?} {:?}", claim.metadata.annotations, class);
        }
        let o = Observed { claim: &unselected, class: Some(&ours), volume: None, node: None };
        let ClaimAction::Wait(note) = reconcile_claim(&o) else { panic!("waits") };
        assert_eq!(note.message, "waiting for first consumer to be created before binding");
    }

    #[test]
    fn the_volume_lives_on_the_selected_node_under_its_storage_dir() {
        let c = claim(selected(), waiting_spec());
        let retain = class(PROVISIONER, "WaitForFirstConsumer", "Retain");
        let cases = [
            (node(json!({})), "/var/lib/tugboat/storage/pvc-u1_shop_data"),
            (node(json!({STORAGE_DIR_ANNOTATION: "/data/tug/storage/"})), "/data/tug/storage/pvc-u1_shop_data"),
        ];
        for (n, path) in cases {
            let pv = provisioned_volume(&c, &retain, &n).expect("a volume");
            let v = serde_json::to_value(&pv).expect("json");
            assert_eq!(v["metadata"]["name"], "pvc-u1");
            assert_eq!(v["spec"]["hostPath"], json!({"path": path, "type": "DirectoryOrCreate"}));
            assert_eq!(v["spec"]["capacity"], json!({"storage": "1Gi"}));
            assert_eq!(v["spec"]["accessModes"], json!(["ReadWriteOnce"]));
            assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
            assert_eq!(v["spec"]["storageClassName"], "local-path");
            assert_eq!(
                v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
                json!({"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]})
            );
            assert_eq!(
                (v["spec"]["claimRef"]["namespace"].as_str(), v["spec"]["claimRef"]["uid"].as_str()),
                (Some("shop"), Some("u1"))
            );
        }
    }

    #[test]
    fn binding_fills_the_claim_until_nothing_is_left_to_write() {
        let c = claim(selected(), waiting_spec());
        let ours = class(PROVISIONER, "WaitForFirstConsumer", "Delete");
        let pv = provisioned_volume(&c, &ours, &node(json!({}))).expect("a volume");
        let o = Observed { claim: &c, class: Some(&ours), volume: Some(&pv), node: None };
        assert!(matches!(reconcile_claim(&o), ClaimAction::Bind(_)), "a volume made for it is bound, not remade");
        let binding = claim_binding_patch(&c, &pv).expect("to bind");
        assert_eq!(binding["spec"]["volumeName"], "pvc-u1");
        assert_eq!(binding["metadata"]["annotations"][BIND_COMPLETED_ANNOTATION], "yes");
        let status = claim_status_patch(&c, &pv).expect("a status");
        assert_eq!(
            status,
            json!({"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}})
        );
        let mut bound: Value = serde_json::to_value(&c).expect("json");
        json_patch_merge(&mut bound, &binding);
        json_patch_merge(&mut bound, &status);
        let bound: PersistentVolumeClaim = serde_json::from_value(bound).expect("a claim");
        assert_eq!((claim_binding_patch(&bound, &pv), claim_status_patch(&bound, &pv)), (None, None));
    }

    fn json_patch_merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    json_patch_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn a_volume_whose_claim_is_gone_is_reclaimed_by_its_policy() {
        let c = claim(selected(), waiting_spec());
        let n = node(json!({}));
        let volume = |reclaim: &str| {
            provisioned_volume(&c, &class(PROVISIONER, "WaitForFirstConsumer", reclaim), &n).expect("a volume")
        };
        let mut recreated = c.clone();
        recreated.metadata.uid = Some("u2".into());
        let mut foreign = volume("Delete");
        foreign.metadata.annotations = None;
        let cases = [
            (volume("Delete"), Some(&c), VolumeAction::Nothing),
            (volume("Delete"), None, VolumeAction::Delete),
            (volume("Delete"), Some(&recreated), VolumeAction::Delete),
            (volume("Retain"), None, VolumeAction::Release),
            (foreign, None, VolumeAction::Nothing),
        ];
        for (pv, claim, want) in cases {
            assert_eq!(reconcile_volume(&pv, claim), want, "{:?}", pv.spec.as_ref().map(|s| &s.claim_ref));
        }
    }
}
