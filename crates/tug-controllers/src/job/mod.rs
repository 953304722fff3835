//! The Job controller. [`core`] decides; [`Controller`] is the shared owner-of-pods loop
//! ([`crate::runtime::Controller`]) around it.
//!
//! A sync claims the Job's pods ([`crate::claim`]), waits until its own previous creations and
//! deletions show in the pod cache (expectations), runs the core and carries the plan out:
//! tracking finalizers removed, pods deleted, pods created in slow-start batches, an expired Job
//! deleted; then the status is written (only when it changed) and, once it is, the core's events.
//! The core's tracking scheme lets status and actions be written in either order; the status
//! write carries the cached resourceVersion, so a status computed from a stale Job fails (409)
//! instead of counting a pod twice.
//!
//! Pods that still carry the tracking finalizer after their Job is gone (deleted with
//! Background propagation, or released) would stay Terminating forever: a second queue of pod
//! keys removes their finalizer, as Kubernetes' orphan-pod handling does.

pub mod core;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;

use self::core::{Action, Observed, TRACKING_FINALIZER, reconcile};
use crate::pods;
use crate::runtime::writes::is_gone_or_changed;
use crate::runtime::{
    self, Cache, Context, Enqueue, Informer, Key, Owned, PodAction, Request, dependents, run_workers,
};

fn selector(job: &Job) -> Option<&LabelSelector> {
    job.spec.as_ref()?.selector.as_ref()
}

/// What the loop keeps besides the shared context.
#[derive(Debug, Clone)]
struct State {
    pods: Owned<Job, Pod>,
    /// Keys of pods holding the tracking finalizer without a live Job controlling them.
    orphans: runtime::Queue,
}

/// The loop around [`core::reconcile`].
#[derive(Debug)]
pub struct Controller {
    runtime: runtime::Controller<Job>,
    state: State,
}

impl Controller {
    /// Wires the controller to the shared informers.
    pub fn new(client: kube::Client, jobs: &mut Informer<Job>, pods: &mut Informer<Pod>) -> Controller {
        let mut runtime = runtime::Controller::new("job-controller", client, jobs);
        let owned = runtime.owns(pods, selector, Enqueue::Now);
        let orphans = runtime::Queue::new();
        // A Job gone: its pods' tracking finalizers must go.
        let (queue, pods_cache) = (orphans.clone(), owned.cache().clone());
        runtime.watches(jobs, move |_, old, new| {
            if let (Some(gone), None) = (old, new) {
                let uid = gone.metadata.uid.as_deref().unwrap_or_default();
                for pod in pods_cache.controlled_by(uid).iter().filter(|p| has_tracking_finalizer(p)) {
                    queue.add(Key::of(pod.as_ref()));
                }
            }
        });
        // A pod still holding the tracking finalizer without its Job: release it.
        let queue = orphans.clone();
        runtime.watches(pods, move |ctx, _, new| {
            if let Some(pod) = new
                && has_tracking_finalizer(pod)
                && !has_live_job(&ctx.objects, &pod.metadata)
            {
                queue.add(Key::of(pod));
            }
        });
        Controller { runtime, state: State { pods: owned, orphans } }
    }

    pub async fn run(self, workers: usize) {
        let (ctx, state) = (self.runtime.context().clone(), self.state.clone());
        let orphans = async move {
            ctx.objects.wait_synced().await;
            state.pods.cache().wait_synced().await;
            run_workers(state.orphans.clone(), 1, "job-orphan-pods", move |key| {
                let (ctx, pods) = (ctx.clone(), state.pods.cache().clone());
                async move { release_orphan(&ctx, &pods, &key).await }
            })
            .await;
        };
        futures::future::join(self.runtime.run(workers, self.state, sync), orphans).await;
    }
}

/// Is the pod's controller a Job this cache holds (same uid)?
fn has_live_job(jobs: &Cache<Job>, meta: &ObjectMeta) -> bool {
    let Some(owner) = pods::controller_of(meta) else { return false };
    job_of(meta)
        .and_then(|key| jobs.get(&key))
        .is_some_and(|job| job.metadata.uid.as_deref() == Some(owner.uid.as_str()))
}

/// The tracking scheme lets status and actions be written in either order; the status write
/// carries the cached resourceVersion, so a status computed from a stale Job fails (409) instead
/// of counting a pod twice.
async fn sync(state: State, ctx: Context<Job>, request: Request<Job>) -> Result<Option<Duration>, kube::Error> {
    let Request { key, object: job, may_act } = request;
    if !may_act {
        // Its own last creations or deletions are not in the cache yet; their events bring it back.
        return Ok(None);
    }
    let controlled = state.pods.claim(&ctx.client, &job).await?;
    let observed =
        Observed { job: &job, pods: controlled.iter().map(Arc::as_ref).collect(), now: jiff::Timestamp::now() };
    let mut plan = reconcile(&observed);
    let (not_created, error) = carry_out(&ctx, &job, &key, plan.actions).await;
    if not_created > 0 {
        let active = plan.status.active.unwrap_or(0) - i32::try_from(not_created).unwrap_or(i32::MAX);
        plan.status.active = (active > 0).then_some(active);
    }
    if ctx.write_status(&job, plan.status).await? {
        for note in &plan.events {
            ctx.recorder.record(job.as_ref(), note);
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(plan.requeue_after),
    }
}

/// Carries the actions out: finalizer removals, pod deletions and creations, then the Job's own
/// deletion. Within a plan the core never mixes creations and deletions, and a pod's finalizer
/// goes before the pod itself, so grouping by kind keeps the core's order. Returns how many pods
/// could not be created (the status must not count them) and the first failure.
async fn carry_out(ctx: &Context<Job>, job: &Job, key: &Key, actions: Vec<Action>) -> (usize, Option<kube::Error>) {
    let (mut releases, mut pod_writes, mut job_deletion) = (vec![], vec![], None);
    for action in actions {
        match action {
            Action::RemoveTrackingFinalizer { name, .. } => releases.push(name),
            Action::DeletePod { name, uid } => pod_writes.push(PodAction::DeletePod { name, uid }),
            Action::CreatePod(pod) => pod_writes.push(PodAction::CreatePod(pod)),
            Action::DeleteJob { name, uid } => job_deletion = Some((name, uid)),
        }
    }
    let mut error = None;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.namespace);
    for result in join_all(releases.iter().map(|name| remove_tracking_finalizer(&api, name))).await {
        if let Err(e) = result {
            error.get_or_insert(e);
        }
    }
    let mut not_created = 0;
    if !pod_writes.is_empty() {
        let writes = ctx.carry_out_pods(job, key, pod_writes).await;
        not_created = writes.not_created;
        if let Some(e) = writes.error {
            error.get_or_insert(e);
        }
    }
    if let Some((name, uid)) = job_deletion {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &key.namespace);
        let params = DeleteParams { preconditions: Some(uid_precondition(&uid)), ..DeleteParams::background() };
        match jobs.delete(&name, &params).await {
            Err(e) if !is_gone_or_changed(&e) => {
                error.get_or_insert(e);
            }
            _ => {}
        }
    }
    (not_created, error)
}

/// Removes the tracking finalizer of a pod whose Job is gone (or never was a Job).
async fn release_orphan(ctx: &Context<Job>, pods: &Cache<Pod>, key: &Key) -> Result<Option<Duration>, kube::Error> {
    let Some(pod) = pods.get(key) else { return Ok(None) };
    if !has_tracking_finalizer(&pod) || has_live_job(&ctx.objects, &pod.metadata) {
        return Ok(None);
    }
    if let Some(owner) = pods::controller_of(&pod.metadata)
        && job_of(&pod.metadata).is_some()
    {
        // The Job cache may lag behind the pod cache: ask the server before letting go.
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &key.namespace);
        if let Some(job) = jobs.get_opt(&owner.name).await?
            && job.metadata.uid.as_deref() == Some(owner.uid.as_str())
        {
            return Ok(None);
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.namespace);
    remove_tracking_finalizer(&api, &key.name).await?;
    Ok(None)
}

/// The Job controlling this object, if its controller is a Job.
fn job_of(meta: &ObjectMeta) -> Option<Key> {
    dependents::controller_key(meta, "batch/v1", "Job")
}

fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

fn uid_precondition(uid: &str) -> Preconditions {
    Preconditions { uid: Some(uid.to_string()), resource_version: None }
}

/// Kubernetes' patch for it: a strategic merge deleting one value from the finalizer list, so
/// concurrent changes to the pod (its status, other finalizers) never conflict.
async fn remove_tracking_finalizer(api: &Api<Pod>, name: &str) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
    let result = api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await;
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(drop),
    }
}
