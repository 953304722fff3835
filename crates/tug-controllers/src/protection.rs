//! Storage object in use protection (Kubernetes' pvc-protection controller): the API server puts
//! the `kubernetes.io/pvc-protection` finalizer on every claim, so deleting a claim only marks
//! it; this controller removes the finalizer once no pod uses the claim any more, and only then
//! does the claim go (and, by its reclaim policy, its volume and data). A claim deleted under a
//! running database stays `Terminating` until the database's pod is gone.
//!
//! A pod uses a claim when it is scheduled, not finished (phase Succeeded or Failed), and names
//! the claim in a `persistentVolumeClaim` volume. Unscheduled pods do not count: neither the
//! scheduler nor the agent starts a pod whose claim is being deleted. The cache decides when to
//! wait; a live list of the namespace's pods confirms before the finalizer goes, as upstream does.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::runtime::{Cache, Informer, Key, Queue};

/// The finalizer the API server's admission adds to every claim.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// Whether `claim` is being deleted and still carries our finalizer.
pub fn awaits_release(claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_some()
        && claim.metadata.finalizers.iter().flatten().any(|f| f == PVC_PROTECTION_FINALIZER)
}

/// Whether `pod` keeps claim `name` (of the pod's namespace) in use.
pub fn pod_uses_claim(pod: &Pod, name: &str) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let scheduled = spec.node_name.as_deref().is_some_and(|n| !n.is_empty());
    let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    scheduled
        && !finished
        && spec
            .volumes
            .iter()
            .flatten()
            .any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == name))
}

/// The claims `pod` names, as keys.
fn claims_of(pod: &Pod) -> impl Iterator<Item = Key> + '_ {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes.filter_map(|v| v.persistent_volume_claim.as_ref()).map(move |c| Key::new(namespace, &c.claim_name))
}

/// The protection loop.
#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    claims: Cache<PersistentVolumeClaim>,
    pods: Cache<Pod>,
    queue: Queue,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("protection::Controller").field("queued", &self.queue.len()).finish()
    }
}

impl Controller {
    pub fn new(
        client: kube::Client,
        claims: &mut Informer<PersistentVolumeClaim>,
        pods: &mut Informer<Pod>,
    ) -> Controller {
        let controller = Controller { client, claims: claims.cache(), pods: pods.cache(), queue: Queue::new() };
        let queue = controller.queue.clone();
        claims.on_change(move |_, new| {
            if let Some(claim) = new.filter(|c| awaits_release(c)) {
                queue.add(Key::of(claim));
            }
        });
        // A pod that finishes or goes may release its claims; only claims being deleted are
        // worth a look (pod status updates are frequent, terminating claims rare).
        let (queue, claims) = (controller.queue.clone(), controller.claims.clone());
        pods.on_change(move |old, new| {
            for pod in [old, new].into_iter().flatten() {
                claims_of(pod)
                    .filter(|key| claims.get(key).is_some_and(|c| awaits_release(&c)))
                    .for_each(|key| queue.add(key));
            }
        });
        controller
    }

    pub async fn run(self, workers: usize) {
        self.claims.wait_synced().await;
        self.pods.wait_synced().await;
        let this = self.clone();
        crate::runtime::run_workers(self.queue.clone(), workers, "pvc-protection", move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        })
        .await;
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(claim) = self.claims.get(key).filter(|c| awaits_release(c)) else { return Ok(None) };
        let in_namespace = |pod: &&std::sync::Arc<Pod>| pod.metadata.namespace.as_deref() == Some(&key.namespace);
        if self.pods.list().iter().filter(in_namespace).any(|p| pod_uses_claim(p, &key.name)) {
            return Ok(None);
        }
        // The cache may lag a pod just created: ask the API before letting the claim go.
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        if pods.list(&ListParams::default()).await?.items.iter().any(|p| pod_uses_claim(p, &key.name)) {
            return Ok(None);
        }
        let finalizers: Vec<&String> =
            claim.metadata.finalizers.iter().flatten().filter(|f| *f != PVC_PROTECTION_FINALIZER).collect();
        // The resourceVersion makes a stale copy fail with a conflict instead of dropping
        // another controller's finalizer; the queue retries.
        let patch = json!({"metadata": {"resourceVersion": claim.metadata.resource_version, "finalizers": finalizers}});
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => tracing::info!(claim = %key, "no pod uses the deleted claim any more: released"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: Option<&str>, phase: Option<&str>, claims: &[&str]) -> Pod {
        let volumes: Vec<_> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [], "volumes": volumes},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    #[test]
    fn only_scheduled_unfinished_pods_naming_the_claim_use_it() {
        let cases = [
            (pod(Some("n1"), Some("Running"), &["data"]), true),
            (pod(Some("n1"), Some("Pending"), &["other", "data"]), true),
            (pod(Some("n1"), None, &["data"]), true),
            (pod(None, Some("Pending"), &["data"]), false),
            (pod(Some("n1"), Some("Succeeded"), &["data"]), false),
            (pod(Some("n1"), Some("Failed"), &["data"]), false),
            (pod(Some("n1"), Some("Running"), &["other"]), false),
        ];
        for (pod, uses) in cases {
            assert_eq!(pod_uses_claim(&pod, "data"), uses, "{:?}", pod.spec);
        }
        let keys: Vec<Key> = claims_of(&pod(None, None, &["a", "b"])).collect();
        assert_eq!(keys, [Key::new("ns", "a"), Key::new("ns", "b")]);
    }

    #[test]
    fn a_claim_awaits_release_while_deleted_with_the_finalizer() {
        let claim = |deleted: bool, finalizers: &[&str]| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {
                "name": "data",
                "deletionTimestamp": deleted.then_some("2026-01-01T00:00:00Z"),
                "finalizers": finalizers,
            }}))
            .expect("claim")
        };
        assert!(awaits_release(&claim(true, &[PVC_PROTECTION_FINALIZER])));
        assert!(!awaits_release(&claim(false, &[PVC_PROTECTION_FINALIZER])), "not deleted");
        assert!(!awaits_release(&claim(true, &["example.com/other"])), "someone else's finalizer");
    }
}
