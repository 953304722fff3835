//! What a pod's change means to the controllers that own pods (ReplicaSet, Job, StatefulSet,
//! DaemonSet): which owner to queue, which expectations it ticks off, and which owners may adopt
//! it when it has no controller. One routine for all of them, as client-go's controllers share
//! `addPod`/`updatePod`/`deletePod`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;

use super::{Cache, Expectations, Key};
use crate::pods;

/// The key of the object controlling `meta`, if that is an `api_version`/`kind`.
pub fn controller_key(meta: &ObjectMeta, api_version: &str, kind: &str) -> Option<Key> {
    let owner = pods::controller_of(meta).filter(|r| r.kind == kind && r.api_version == api_version)?;
    Some(Key::new(meta.namespace.as_deref().unwrap_or_default(), &owner.name))
}

/// Routes one pod change (`old` → `new`; `None`: absent). `owner_of` names the pod's controller
/// of this kind; `enqueue` queues an owner; `adopters` is called with an orphan whose labels
/// changed (or that just lost its controller), for the owners whose selector may match.
pub fn pod_changed(
    old: Option<&Pod>,
    new: Option<&Pod>,
    owner_of: impl Fn(&ObjectMeta) -> Option<Key>,
    expectations: &Expectations,
    enqueue: impl Fn(Key),
    adopters: impl Fn(&Pod),
) {
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    match (old, new) {
        (None, Some(pod)) => match owner_of(&pod.metadata) {
            Some(owner) => {
                expectations.creation_observed(&owner);
                if pods::is_deleting(&pod.metadata) {
                    expectations.deletion_observed(&owner, &uid(pod));
                }
                enqueue(owner);
            }
            None => adopters(pod),
        },
        (Some(old), Some(pod)) => {
            let (was, is) = (owner_of(&old.metadata), owner_of(&pod.metadata));
            if let Some(owner) = &is
                && pods::is_deleting(&pod.metadata)
                && !pods::is_deleting(&old.metadata)
            {
                expectations.deletion_observed(owner, &uid(pod));
            }
            let was_controlled = was.is_some();
            if was != is
                && let Some(was) = was
            {
                enqueue(was);
            }
            match is {
                Some(owner) => enqueue(owner),
                None if old.metadata.labels != pod.metadata.labels || was_controlled => adopters(pod),
                None => {}
            }
        }
        (Some(pod), None) => {
            if let Some(owner) = owner_of(&pod.metadata) {
                expectations.deletion_observed(&owner, &uid(pod));
                enqueue(owner);
            }
        }
        (None, None) => {}
    }
}

/// Queues every owner in the orphan pod's namespace whose selector matches it, so one of them
/// adopts it. Pods being deleted are nobody's to adopt.
pub fn enqueue_selecting<K: Resource>(
    pod: &Pod,
    owners: &Cache<K>,
    selector: impl Fn(&K) -> Option<&LabelSelector>,
    enqueue: impl Fn(Key),
) {
    if pods::is_deleting(&pod.metadata) {
        return;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    for owner in owners.list_namespace(ns) {
        if pods::selects(selector(&owner), pod.metadata.labels.as_ref()) {
            enqueue(Key::of(owner.as_ref()));
        }
    }
}
