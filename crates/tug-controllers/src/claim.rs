//! Adoption and release of dependents (Kubernetes' `ControllerRefManager.ClaimPods`): a
//! controller adopts the orphans its selector matches and releases the dependents it controls
//! that its selector no longer matches. Ownership changes are merge patches carrying the
//! resourceVersion they were decided on, so a racing change makes the patch fail (409) rather
//! than overwrite someone else's owner.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::pods::is_deleting;
use crate::runtime::Cache;

/// The dependents `owner` controls after adopting matching orphans and releasing non-matching
/// dependents. An owner being deleted adopts nothing (Kubernetes' rule).
pub async fn claim<K>(
    api: &Api<K>,
    cache: &Cache<K>,
    owner: &ObjectMeta,
    owner_ref: &OwnerReference,
    selector: Option<&LabelSelector>,
) -> Result<Vec<Arc<K>>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let namespace = owner.namespace.as_deref().unwrap_or_default();
    // Parsed once: a 1,000-replica set checks 1,000 pods per sync.
    let matcher = selector.and_then(crate::pods::selector);
    static NO_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    let selects =
        |meta: &ObjectMeta| matcher.as_ref().is_some_and(|m| m.matches(meta.labels.as_ref().unwrap_or(&NO_LABELS)));
    let mut claimed = Vec::new();
    for dependent in cache.controlled_by(&owner_ref.uid) {
        if selects(dependent.meta()) || is_deleting(dependent.meta()) {
            claimed.push(dependent);
        } else {
            release(api, dependent.meta(), &owner_ref.uid).await?;
        }
    }
    if is_deleting(owner) {
        return Ok(claimed);
    }
    for orphan in cache.orphans_in(namespace) {
        let meta = orphan.meta();
        if is_deleting(meta) || !selects(meta) {
            continue;
        }
        match adopt(api, meta, owner_ref).await {
            Ok(adopted) => claimed.push(Arc::new(adopted)),
            // Changed or gone since the cache saw it: the next reconcile sees the truth.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(claimed)
}

async fn adopt<K>(api: &Api<K>, meta: &ObjectMeta, owner_ref: &OwnerReference) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_ref.uid);
    refs.push(owner_ref.clone());
    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
    api.patch(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch)).await
}

async fn release<K>(api: &Api<K>, meta: &ObjectMeta, owner_uid: &str) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let refs: Vec<&OwnerReference> = meta.owner_references.iter().flatten().filter(|r| r.uid != owner_uid).collect();
    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
    match api.patch(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
