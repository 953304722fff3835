//! What a dependent's change means to the controllers that own such dependents (ReplicaSet, Job,
//! StatefulSet, DaemonSet own pods; Deployment owns ReplicaSets): which owner to queue, which
//! expectations it ticks off, and which owners may adopt it when it has no controller. One
//! routine for all of them, as client-go's controllers share `addPod`/`updatePod`/`deletePod`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;

use super::{Cache, Expectations, Key};
use crate::pods;

/// The key of the object controlling `meta`, if that is an `api_version`/`kind`.
pub fn controller_key(meta: &ObjectMeta, api_version: &str, kind: &str) -> Option<Key> {
    let owner = pods::controller_of(meta).filter(|r| r.kind == kind && r.api_version == api_version)?;
    Some(Key::new(meta.namespace.as_deref().unwrap_or_default(), &owner.name))
}

/// Routes one dependent's change (`old` → `new`; `None`: absent). `owner_of` names its
/// controller of this kind; `enqueue` queues an owner; `adopters` is called with an orphan that
/// appeared, whose labels changed, or that just lost its controller, for the owners whose
/// selector may match.
pub fn dependent_changed<D: Resource>(
    old: Option<&D>,
    new: Option<&D>,
    owner_of: impl Fn(&ObjectMeta) -> Option<Key>,
    expectations: &Expectations,
    enqueue: impl Fn(Key),
    adopters: impl Fn(&D),
) {
    let uid = |d: &D| d.meta().uid.clone().unwrap_or_default();
    match (old, new) {
        (None, Some(pod)) => match owner_of(pod.meta()) {
            Some(owner) => {
                expectations.creation_observed(&owner);
                if pods::is_deleting(pod.meta()) {
                    expectations.deletion_observed(&owner, &uid(pod));
                }
                enqueue(owner);
            }
            None => adopters(pod),
        },
        (Some(old), Some(pod)) => {
            let (was, is) = (owner_of(old.meta()), owner_of(pod.meta()));
            if let Some(owner) = &is
                && pods::is_deleting(pod.meta())
                && !pods::is_deleting(old.meta())
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
                None if old.meta().labels != pod.meta().labels || was_controlled => adopters(pod),
                None => {}
            }
        }
        (Some(pod), None) => {
            if let Some(owner) = owner_of(pod.meta()) {
                expectations.deletion_observed(&owner, &uid(pod));
                enqueue(owner);
            }
        }
        (None, None) => {}
    }
}

/// Queues every owner in the orphan's namespace whose selector matches it, so one of them adopts
/// it. Dependents being deleted are nobody's to adopt.
pub fn enqueue_selecting<K: Resource, D: Resource>(
    orphan: &D,
    owners: &Cache<K>,
    selector: impl Fn(&K) -> Option<&LabelSelector>,
    enqueue: impl Fn(Key),
) {
    let meta = orphan.meta();
    if pods::is_deleting(meta) {
        return;
    }
    let ns = meta.namespace.as_deref().unwrap_or_default();
    for owner in owners.list_namespace(ns) {
        if pods::selects(selector(&owner), meta.labels.as_ref()) {
            enqueue(Key::of(owner.as_ref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    use super::*;

    fn labels(app: &str) -> Option<BTreeMap<String, String>> {
        Some([("app".to_string(), app.to_string())].into())
    }

    fn pod(owner: Option<&str>, app: &str) -> Pod {
        let reference = |name: &str| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            ..OwnerReference::default()
        };
        Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("p".into()),
                uid: Some("pod-uid".into()),
                labels: labels(app),
                owner_references: owner.map(|o| vec![reference(o)]),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn deleting(mut pod: Pod) -> Pod {
        pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        pod
    }

    /// What one change did: the owners queued and the orphans offered for adoption.
    #[derive(Debug, Default, PartialEq)]
    struct Routed {
        queued: Vec<String>,
        adoptable: usize,
    }

    fn route(old: Option<&Pod>, new: Option<&Pod>, expectations: &Expectations) -> Routed {
        let routed = RefCell::new(Routed::default());
        let owner_of = |meta: &ObjectMeta| controller_key(meta, "apps/v1", "ReplicaSet");
        let enqueue = |key: Key| routed.borrow_mut().queued.push(key.name);
        let adopters = |_: &Pod| routed.borrow_mut().adoptable += 1;
        dependent_changed(old, new, owner_of, expectations, enqueue, adopters);
        routed.into_inner()
    }

    fn queued(names: &[&str]) -> Routed {
        Routed { queued: names.iter().map(|n| n.to_string()).collect(), adoptable: 0 }
    }

    const ADOPTABLE: Routed = Routed { queued: Vec::new(), adoptable: 1 };

    #[test]
    fn a_change_queues_the_controller_and_ticks_off_what_it_awaited() {
        let e = Expectations::default();
        let rs = Key::new("ns", "rs");
        let (owned, other_kind) = (pod(Some("rs"), "web"), {
            let mut p = pod(Some("rs"), "web");
            p.metadata.owner_references.as_mut().unwrap()[0].kind = "StatefulSet".into();
            p
        });
        e.expect(&rs, 1, ["pod-uid".to_string()]);
        assert_eq!(route(None, Some(&owned), &e), queued(&["rs"]), "created");
        assert!(!e.satisfied(&rs), "the deletion is still awaited");
        assert_eq!(route(Some(&owned), Some(&deleting(owned.clone())), &e), queued(&["rs"]), "being deleted");
        assert!(e.satisfied(&rs));
        e.expect(&rs, 0, ["pod-uid".to_string()]);
        assert_eq!(route(Some(&owned), None, &e), queued(&["rs"]), "gone");
        assert!(e.satisfied(&rs));
        // A pod another kind controls queues no ReplicaSet as its own (adoption only ever takes
        // pods without a controller: `claim` reads those from the orphans index).
        assert!(route(None, Some(&other_kind), &e).queued.is_empty());
    }

    #[test]
    fn a_pod_moving_between_controllers_queues_both() {
        let e = Expectations::default();
        assert_eq!(route(Some(&pod(Some("a"), "web")), Some(&pod(Some("b"), "web")), &e), queued(&["a", "b"]));
    }

    #[test]
    fn orphans_are_offered_for_adoption_when_that_may_change_anything() {
        let e = Expectations::default();
        let orphan = pod(None, "web");
        assert_eq!(route(None, Some(&orphan), &e), ADOPTABLE, "a new orphan");
        assert_eq!(route(Some(&orphan), Some(&orphan), &e), Routed::default(), "a status change");
        assert_eq!(route(Some(&orphan), Some(&pod(None, "api")), &e), ADOPTABLE, "relabelled");
        let released = route(Some(&pod(Some("rs"), "web")), Some(&orphan), &e);
        assert_eq!(released, Routed { queued: vec!["rs".into()], adoptable: 1 }, "released");
        assert_eq!(route(Some(&orphan), None, &e), Routed::default(), "an orphan gone");
    }

    #[test]
    fn adopters_are_the_owners_of_the_namespace_whose_selector_matches() {
        let set = |ns: &str, name: &str, app: &str| ReplicaSet {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..ObjectMeta::default() },
            spec: Some(ReplicaSetSpec {
                selector: LabelSelector { match_labels: labels(app), ..LabelSelector::default() },
                ..ReplicaSetSpec::default()
            }),
            status: None,
        };
        let sets = Cache::of([set("ns", "web", "web"), set("ns", "api", "api"), set("other", "web2", "web")]);
        let adopters = |orphan: &Pod| {
            let queued = RefCell::new(Vec::new());
            fn selector(s: &ReplicaSet) -> Option<&LabelSelector> {
                s.spec.as_ref().map(|s| &s.selector)
            }
            enqueue_selecting(orphan, &sets, selector, |key| queued.borrow_mut().push(key.to_string()));
            queued.into_inner()
        };
        assert_eq!(adopters(&pod(None, "web")), ["ns/web"]);
        assert!(adopters(&deleting(pod(None, "web"))).is_empty(), "a pod being deleted is nobody's to adopt");
    }
}
