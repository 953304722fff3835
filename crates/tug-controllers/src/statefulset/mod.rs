//! The StatefulSet controller. [`core`] decides; [`Controller`] is the shared owner-of-pods loop
//! ([`crate::runtime::Controller`]) around it.
//!
//! Each sync adopts orphan pods matching the selector and releases pods that stopped matching
//! ([`crate::claim`]), looks the set's PersistentVolumeClaims up by name
//! (`<template>-<set>-<ordinal>`) in the claims cache, asks the core for a plan and carries its
//! actions out in order (a pod's claims before the pod), stopping at the first failure. Pod
//! creations and deletions are recorded as expectations, so a cache that lags behind the
//! controller's own writes never makes it act twice. The status is written when it changed.
//!
//! The current revision's template: Kubernetes keeps it in a ControllerRevision object; Tugboat
//! has none. It is read back from a pod of the set labelled with `status.currentRevision`: a
//! pod's spec is the template's spec (plus the node it was bound to, which is dropped) and its
//! labels are the template's plus the per-pod ones (name, index, revision), which are dropped.
//! This needs no extra object and no extra write, and it cannot be lost to a user replacing the
//! set (as an annotation on the set could). When no such pod exists (every pod of the old
//! revision is gone), the core makes missing pods from the current template, at the update
//! revision.

pub mod core;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, PostParams};

use crate::events::Note;
use crate::pods;
use crate::runtime::writes::delete_uid;
use crate::runtime::{self, Cache, Context, Enqueue, Informer, Key, Owned, Request, api_message};

pub use self::core::{Action, Observed, Plan, reconcile};

/// Does one of the set's claim templates name this claim (`<template>-<set>-<ordinal>`)?
pub fn names_claim(set: &StatefulSet, claim_name: &str) -> bool {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let templates = set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or_default();
    templates.iter().any(|t| {
        let template = t.metadata.name.as_deref().unwrap_or_default();
        claim_name
            .strip_prefix(template)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|pod_name| core::ordinal_of(set_name, pod_name).is_some())
    })
}

/// The template a pod was made from: its spec without the node it was bound to, its labels
/// without the per-pod ones. See the module documentation.
pub fn template_of_pod(pod: &Pod) -> PodTemplateSpec {
    let mut labels = pod.metadata.labels.clone().unwrap_or_default();
    for per_pod in [core::POD_NAME_LABEL, core::POD_INDEX_LABEL, core::REVISION_LABEL] {
        labels.remove(per_pod);
    }
    let mut spec = pod.spec.clone().unwrap_or_default();
    spec.node_name = None;
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: (!labels.is_empty()).then_some(labels),
            annotations: pod.metadata.annotations.clone(),
            finalizers: pod.metadata.finalizers.clone(),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

/// The template of `status.currentRevision` while an update is under way, from a live pod of
/// that revision; `None` when no update is under way or no such pod exists.
pub fn current_template(set: &StatefulSet, controlled: &[Arc<Pod>]) -> Option<PodTemplateSpec> {
    let current = set.status.as_ref()?.current_revision.as_deref().filter(|r| !r.is_empty())?;
    if current == core::update_revision(set) {
        return None;
    }
    let at_current = |p: &&Arc<Pod>| {
        p.metadata.labels.as_ref().and_then(|l| l.get(core::REVISION_LABEL)).map(String::as_str) == Some(current)
    };
    // A pod being deleted still shows the template; a live one is preferred.
    let mut candidates: Vec<&Arc<Pod>> = controlled.iter().filter(at_current).collect();
    candidates.sort_by_key(|p| pods::is_deleting(&p.metadata));
    candidates.first().map(|p| template_of_pod(p))
}

/// The warning for an action that failed, in Kubernetes' words.
fn failure_note(set_name: &str, action: &Action, error: &kube::Error) -> Note {
    let message = api_message(error);
    let name = |meta: &ObjectMeta| meta.name.clone().unwrap_or_default();
    match action {
        Action::CreateClaim(c) => Note::warning(
            "FailedCreate",
            format!("create Claim {} in StatefulSet {set_name} failed error: {message}", name(&c.metadata)),
        ),
        Action::UpdateClaim(c) => Note::warning(
            "FailedUpdate",
            format!("update Claim {} in StatefulSet {set_name} failed error: {message}", name(&c.metadata)),
        ),
        Action::CreatePod(p) => Note::warning(
            "FailedCreate",
            format!("create Pod {} in StatefulSet {set_name} failed error: {message}", name(&p.metadata)),
        ),
        Action::DeletePod { name, .. } => Note::warning(
            "FailedDelete",
            format!("delete Pod {name} in StatefulSet {set_name} failed error: {message}"),
        ),
    }
}

/// "Already so" answers that count as success: the object exists (create), changed or went
/// away meanwhile (update, delete). The watch brings the next state either way.
fn benign(action: &Action, error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else { return false };
    match action {
        Action::CreateClaim(_) | Action::CreatePod(_) => status.code == 409,
        Action::UpdateClaim(_) | Action::DeletePod { .. } => status.code == 409 || status.code == 404,
    }
}

fn selector(set: &StatefulSet) -> Option<&LabelSelector> {
    set.spec.as_ref().map(|s| &s.selector)
}

/// What the loop reads besides its own sets.
#[derive(Debug, Clone)]
struct State {
    pods: Owned<StatefulSet, Pod>,
    claims: Cache<PersistentVolumeClaim>,
}

/// The loop around the core.
#[derive(Debug)]
pub struct Controller {
    runtime: runtime::Controller<StatefulSet>,
    state: State,
}

impl Controller {
    /// Wires the controller to the shared informers. A claim's change queues the sets of its
    /// namespace whose claim templates name it (a claim being deleted blocks its pod; a new one
    /// lets it go ahead).
    pub fn new(
        client: kube::Client,
        sets: &mut Informer<StatefulSet>,
        pods: &mut Informer<Pod>,
        claims: &mut Informer<PersistentVolumeClaim>,
    ) -> Controller {
        let mut runtime = runtime::Controller::new("statefulset-controller", client, sets);
        let pods = runtime.owns(pods, selector, Enqueue::Now);
        let claims = runtime.watches(claims, |ctx, old, new| {
            for claim in [old, new].into_iter().flatten() {
                let Some(name) = claim.metadata.name.as_deref() else { continue };
                let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
                for set in ctx.objects.list_namespace(ns) {
                    if names_claim(&set, name) {
                        ctx.queue.add(Key::of(set.as_ref()));
                    }
                }
            }
        });
        Controller { runtime, state: State { pods, claims } }
    }

    pub async fn run(self, workers: usize) {
        self.runtime.run(workers, self.state, sync).await;
    }
}

async fn sync(
    state: State,
    ctx: Context<StatefulSet>,
    request: Request<StatefulSet>,
) -> Result<Option<Duration>, kube::Error> {
    let Request { key, object: set, may_act } = request;
    let controlled = state.pods.claim(&ctx.client, &set).await?;
    let claims = claims_of(&state.claims, &set, &controlled);
    let current_template = current_template(&set, &controlled);
    let plan = reconcile(&Observed {
        set: &set,
        pods: controlled.iter().map(Arc::as_ref).collect(),
        claims: claims.iter().map(Arc::as_ref).collect(),
        current_template: current_template.as_ref(),
        now: jiff::Timestamp::now(),
    });
    // While its own writes are not in the cache yet, the set only reports; their events bring
    // it back.
    if may_act && !plan.actions.is_empty() {
        carry_out(&ctx, &set, &key, &plan).await?;
    }
    ctx.write_status(&set, plan.status).await?;
    Ok(plan.requeue_after)
}

/// The claims named for the desired ordinals and for the ordinals of existing pods.
fn claims_of(
    cache: &Cache<PersistentVolumeClaim>,
    set: &StatefulSet,
    controlled: &[Arc<Pod>],
) -> Vec<Arc<PersistentVolumeClaim>> {
    let spec = set.spec.as_ref();
    let templates = spec.and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or_default();
    if templates.is_empty() {
        return Vec::new();
    }
    let name = set.metadata.name.as_deref().unwrap_or_default();
    let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
    let start = i64::from(spec.and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0).max(0));
    let replicas = i64::from(spec.and_then(|s| s.replicas).unwrap_or(1).max(0));
    let mut ordinals: Vec<i32> = (start..start + replicas).filter_map(|o| i32::try_from(o).ok()).collect();
    ordinals.extend(controlled.iter().filter_map(|p| core::ordinal_of(name, p.metadata.name.as_deref()?)));
    ordinals.sort_unstable();
    ordinals.dedup();
    let mut claims = Vec::new();
    for template in templates {
        let template = template.metadata.name.as_deref().unwrap_or_default();
        for &ordinal in &ordinals {
            if let Some(claim) = cache.get(&Key::new(namespace, &core::claim_name(template, name, ordinal))) {
                claims.push(claim);
            }
        }
    }
    claims
}

/// Carries the actions out in order; stops at the first failure (a pod must not be made before
/// its claims).
async fn carry_out(ctx: &Context<StatefulSet>, set: &StatefulSet, key: &Key, plan: &Plan) -> Result<(), kube::Error> {
    let creations = plan.actions.iter().filter(|a| matches!(a, Action::CreatePod(_))).count();
    let deletions = plan.actions.iter().filter_map(|a| match a {
        Action::DeletePod { uid, .. } => Some(uid.clone()),
        _ => None,
    });
    ctx.expectations.expect(key, creations, deletions);
    // The core reports one note per action, in order; if that ever changes, report them all.
    let per_action = plan.events.len() == plan.actions.len();
    let set_name = key.name.as_str();
    for (index, action) in plan.actions.iter().enumerate() {
        match apply(ctx, key, action).await {
            Ok(()) => {
                if per_action {
                    ctx.recorder.record(set, &plan.events[index]);
                }
            }
            Err(e) if benign(action, &e) => {}
            Err(e) => {
                ctx.recorder.record(set, &failure_note(set_name, action, &e));
                // What was not done will never be observed.
                for skipped in &plan.actions[index + 1..] {
                    never_observed(ctx, key, skipped);
                }
                return Err(e);
            }
        }
    }
    if !per_action {
        for note in &plan.events {
            ctx.recorder.record(set, note);
        }
    }
    Ok(())
}

fn never_observed(ctx: &Context<StatefulSet>, key: &Key, action: &Action) {
    match action {
        Action::CreatePod(_) => ctx.expectations.creation_observed(key),
        Action::DeletePod { uid, .. } => ctx.expectations.deletion_observed(key, uid),
        Action::CreateClaim(_) | Action::UpdateClaim(_) => {}
    }
}

async fn apply(ctx: &Context<StatefulSet>, key: &Key, action: &Action) -> Result<(), kube::Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let result = match action {
        Action::CreateClaim(claim) => claims.create(&PostParams::default(), claim).await.map(drop),
        Action::UpdateClaim(claim) => {
            let name = claim.metadata.name.as_deref().unwrap_or_default();
            claims.replace(name, &PostParams::default(), claim).await.map(drop)
        }
        Action::CreatePod(pod) => pods_api.create(&PostParams::default(), pod).await.map(drop),
        Action::DeletePod { name, uid } => pods_api.delete(name, &delete_uid(uid)).await.map(drop),
    };
    if result.is_err() {
        never_observed(ctx, key, action);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use std::collections::BTreeMap;

    fn set_with_claims(templates: &[&str]) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta { name: Some("web".into()), ..ObjectMeta::default() },
            spec: Some(StatefulSetSpec {
                volume_claim_templates: Some(
                    templates
                        .iter()
                        .map(|t| PersistentVolumeClaim {
                            metadata: ObjectMeta { name: Some(t.to_string()), ..ObjectMeta::default() },
                            ..PersistentVolumeClaim::default()
                        })
                        .collect(),
                ),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_claim_belongs_to_a_set_when_a_template_names_it() {
        let set = set_with_claims(&["www", "data-x"]);
        for (claim, want) in [
            ("www-web-0", true),
            ("www-web-12", true),
            ("data-x-web-3", true),
            ("www-web-01", false),
            ("www-web", false),
            ("www-webby-0", false),
            ("logs-web-0", false),
            ("www-other-0", false),
        ] {
            assert_eq!(names_claim(&set, claim), want, "{claim}");
        }
        assert!(!names_claim(&set_with_claims(&[]), "www-web-0"));
    }

    fn pod_at(revision: &str, node: Option<&str>) -> Pod {
        let labels: BTreeMap<String, String> = [
            ("app", "web"),
            (core::POD_NAME_LABEL, "web-1"),
            (core::POD_INDEX_LABEL, "1"),
            (core::REVISION_LABEL, revision),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                labels: Some(labels),
                annotations: Some([("note".to_string(), "kept".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                containers: vec![Container { name: "c".into(), image: Some("nginx:1".into()), ..Container::default() }],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn the_current_template_is_read_back_from_a_pod_of_the_current_revision() {
        let mut set = set_with_claims(&[]);
        let update = core::update_revision(&set);
        let pods = vec![Arc::new(pod_at("web-old", Some("node-a")))];
        // No update under way: the core needs no old template.
        set.status = Some(StatefulSetStatus { current_revision: Some(update), ..StatefulSetStatus::default() });
        assert_eq!(current_template(&set, &pods), None);
        set.status =
            Some(StatefulSetStatus { current_revision: Some("web-old".into()), ..StatefulSetStatus::default() });
        let template = current_template(&set, &pods).expect("a pod of the current revision exists");
        let meta = template.metadata.unwrap();
        assert_eq!(meta.labels, Some([("app".to_string(), "web".to_string())].into()), "per-pod labels dropped");
        assert_eq!(meta.annotations.unwrap()["note"], "kept");
        let spec = template.spec.unwrap();
        assert_eq!(spec.node_name, None, "the binding is not part of the template");
        assert_eq!(spec.containers[0].image.as_deref(), Some("nginx:1"));
        assert_eq!(current_template(&set, &[Arc::new(pod_at("web-other", None))]), None, "no pod of that revision");
    }
}
