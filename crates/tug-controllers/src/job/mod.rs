//! The Job controller. [`core`] decides; [`Controller`] is the loop around it.
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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use self::core::{Action, Observed, TRACKING_FINALIZER, reconcile};
use crate::claim::claim;
use crate::events::{Note, Recorder};
use crate::pods;
use crate::runtime::{api_message, slow_start};
use crate::runtime::{Cache, Expectations, Informer, Key, Queue, dependents, run_workers};

/// The loop around [`core::reconcile`].
#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    jobs: Cache<Job>,
    pods: Cache<Pod>,
    /// Job keys.
    queue: Queue,
    /// Keys of pods holding the tracking finalizer without a live Job controlling them.
    orphans: Queue,
    expectations: Expectations,
    recorder: Recorder,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("job::Controller")
            .field("queued", &self.queue.len())
            .field("orphans", &self.orphans.len())
            .finish()
    }
}

/// What carrying out a plan's actions came to.
#[derive(Debug, Default)]
struct Outcome {
    /// Pods the plan created that could not be created (the status must not count them).
    not_created: i32,
    /// The first failure; the Job is retried with backoff.
    error: Option<kube::Error>,
}

impl Outcome {
    fn fail(&mut self, e: kube::Error) {
        self.error.get_or_insert(e);
    }
}

impl Controller {
    /// Wires the controller to the shared informers.
    pub fn new(client: kube::Client, jobs: &mut Informer<Job>, pods: &mut Informer<Pod>) -> Controller {
        let controller = Controller {
            recorder: Recorder::new(client.clone(), "job-controller"),
            client,
            jobs: jobs.cache(),
            pods: pods.cache(),
            queue: Queue::new(),
            orphans: Queue::new(),
            expectations: Expectations::default(),
        };
        let this = controller.clone();
        jobs.on_change(move |old, new| this.job_changed(old, new));
        let this = controller.clone();
        pods.on_change(move |old, new| this.pod_changed(old, new));
        controller
    }

    fn job_changed(&self, old: Option<&Job>, new: Option<&Job>) {
        match (old, new) {
            (_, Some(job)) => self.queue.add(Key::of(job)),
            (Some(gone), None) => {
                let key = Key::of(gone);
                self.expectations.forget(&key);
                // Its pods lost their Job: their tracking finalizers must go.
                let uid = gone.metadata.uid.as_deref().unwrap_or_default();
                for pod in self.pods.controlled_by(uid).iter().filter(|p| has_tracking_finalizer(p)) {
                    self.orphans.add(Key::of(pod.as_ref()));
                }
            }
            (None, None) => {}
        }
    }

    fn pod_changed(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let enqueue = |key| self.queue.add(key);
        let adopters = |pod: &Pod| {
            dependents::enqueue_selecting(pod, &self.jobs, |j: &Job| j.spec.as_ref()?.selector.as_ref(), enqueue)
        };
        dependents::dependent_changed(old, new, job_of, &self.expectations, enqueue, adopters);
        // A finished pod still holding the tracking finalizer without its Job: release it.
        if let Some(pod) = new
            && has_tracking_finalizer(pod)
            && !self.has_live_job(&pod.metadata)
        {
            self.orphans.add(Key::of(pod));
        }
    }

    /// Is the pod's controller a Job this cache holds (same uid)?
    fn has_live_job(&self, meta: &ObjectMeta) -> bool {
        let Some(owner) = pods::controller_of(meta) else { return false };
        job_of(meta)
            .and_then(|key| self.jobs.get(&key))
            .is_some_and(|job| job.metadata.uid.as_deref() == Some(owner.uid.as_str()))
    }

    pub async fn run(self, workers: usize) {
        self.jobs.wait_synced().await;
        self.pods.wait_synced().await;
        let jobs = {
            let this = self.clone();
            run_workers(self.queue.clone(), workers, "job", move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            })
        };
        let orphans = {
            let this = self.clone();
            run_workers(self.orphans.clone(), 1, "job-orphan-pods", move |key| {
                let this = this.clone();
                async move { this.release_orphan(&key).await }
            })
        };
        futures::future::join(jobs, orphans).await;
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(job) = self.jobs.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        if !self.expectations.satisfied(key) {
            // Its own last creations or deletions are not in the cache yet; their events bring it back.
            return Ok(None);
        }
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let owner_ref = pods::controller_ref("batch/v1", "Job", &job.metadata);
        let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref());
        let controlled = claim(&pods_api, &self.pods, &job.metadata, &owner_ref, selector).await?;
        let observed =
            Observed { job: &job, pods: controlled.iter().map(Arc::as_ref).collect(), now: jiff::Timestamp::now() };
        let mut plan = reconcile(&observed);
        let outcome = self.carry_out(&job, key, plan.actions).await;
        if outcome.not_created > 0 {
            let active = plan.status.active.unwrap_or(0) - outcome.not_created;
            plan.status.active = (active > 0).then_some(active);
        }
        if self.write_status(&job, plan.status).await? {
            for note in &plan.events {
                self.recorder.record(job.as_ref(), note);
            }
        }
        match outcome.error {
            Some(e) => Err(e),
            None => Ok(plan.requeue_after),
        }
    }

    /// Carries the actions out: finalizer removals, pod deletions, creations, then the Job's own
    /// deletion. Within a plan the core never mixes creations and deletions, and a pod's finalizer
    /// goes before the pod itself, so grouping by kind keeps the core's order.
    async fn carry_out(&self, job: &Job, key: &Key, actions: Vec<Action>) -> Outcome {
        let mut outcome = Outcome::default();
        let (mut releases, mut deletions, mut creations, mut job_deletion) = (vec![], vec![], vec![], None);
        for action in actions {
            match action {
                Action::RemoveTrackingFinalizer { name, .. } => releases.push(name),
                Action::DeletePod { name, uid } => deletions.push((name, uid)),
                Action::CreatePod(pod) => creations.push(pod),
                Action::DeleteJob { name, uid } => job_deletion = Some((name, uid)),
            }
        }
        if !creations.is_empty() || !deletions.is_empty() {
            self.expectations.expect(key, creations.len(), deletions.iter().map(|(_, uid)| uid.clone()));
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        for result in join_all(releases.iter().map(|name| remove_tracking_finalizer(&api, name))).await {
            if let Err(e) = result {
                outcome.fail(e);
            }
        }
        self.delete_pods(job, key, &api, &deletions, &mut outcome).await;
        self.create_pods(job, key, &api, creations, &mut outcome).await;
        if let Some((name, uid)) = job_deletion {
            let jobs: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
            let params = DeleteParams { preconditions: Some(uid_precondition(&uid)), ..DeleteParams::background() };
            if let Err(e) = ignore_gone(jobs.delete(&name, &params).await.map(drop)) {
                outcome.fail(e);
            }
        }
        outcome
    }

    async fn delete_pods(
        &self,
        job: &Job,
        key: &Key,
        api: &Api<Pod>,
        victims: &[(String, String)],
        outcome: &mut Outcome,
    ) {
        let results = join_all(victims.iter().map(|(name, uid)| async move {
            let params = DeleteParams { preconditions: Some(uid_precondition(uid)), ..DeleteParams::default() };
            (name, uid, api.delete(name, &params).await)
        }))
        .await;
        for (name, uid, result) in results {
            match result {
                Ok(_) => self.recorder.record(job, &Note::normal("SuccessfulDelete", format!("Deleted pod: {name}"))),
                Err(e) => {
                    // Not deleted by us: the deletion will never be observed.
                    self.expectations.deletion_observed(key, uid);
                    if let Err(e) = ignore_gone(Err(e)) {
                        let message = format!("Error deleting: {}", api_message(&e));
                        self.recorder.record(job, &Note::warning("FailedDelete", message));
                        outcome.fail(e);
                    }
                }
            }
        }
    }

    /// Creates in batches of 1, 2, 4, … and stops at the first failure, as Kubernetes does.
    async fn create_pods(&self, job: &Job, key: &Key, api: &Api<Pod>, new_pods: Vec<Pod>, outcome: &mut Outcome) {
        let count = new_pods.len();
        if count == 0 {
            return;
        }
        let pending = Mutex::new(new_pods.into_iter());
        let (created, error) = slow_start(count, || {
            let pod = pending.lock().unwrap_or_else(|e| e.into_inner()).next();
            async move {
                let Some(pod) = pod else { return Ok(()) };
                let created = api.create(&PostParams::default(), &pod).await?;
                let name = created.metadata.name.unwrap_or_default();
                self.recorder.record(job, &Note::normal("SuccessfulCreate", format!("Created pod: {name}")));
                Ok::<(), kube::Error>(())
            }
        })
        .await;
        // Pods that were never created will never be observed.
        for _ in created..count {
            self.expectations.creation_observed(key);
        }
        outcome.not_created = i32::try_from(count - created).unwrap_or(i32::MAX);
        if let Some(e) = error {
            self.recorder.record(job, &Note::warning("FailedCreate", format!("Error creating: {}", api_message(&e))));
            outcome.fail(e);
        }
    }

    /// Writes the status when it differs from the cached one. Returns whether the Job now has it
    /// (false: the Job changed meanwhile; its watch event brings the next sync).
    async fn write_status(&self, job: &Job, status: JobStatus) -> Result<bool, kube::Error> {
        if job.status.as_ref() == Some(&status) {
            return Ok(true);
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), job.metadata.namespace.as_deref().unwrap_or_default());
        let mut updated = job.clone();
        updated.status = Some(status);
        match api
            .replace_status(job.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the tracking finalizer of a pod whose Job is gone (or never was a Job).
    async fn release_orphan(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(pod) = self.pods.get(key) else { return Ok(None) };
        if !has_tracking_finalizer(&pod) || self.has_live_job(&pod.metadata) {
            return Ok(None);
        }
        if let Some(owner) = pods::controller_of(&pod.metadata)
            && job_of(&pod.metadata).is_some()
        {
            // The Job cache may lag behind the pod cache: ask the server before letting go.
            let jobs: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
            if let Some(job) = jobs.get_opt(&owner.name).await?
                && job.metadata.uid.as_deref() == Some(owner.uid.as_str())
            {
                return Ok(None);
            }
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        remove_tracking_finalizer(&api, &key.name).await?;
        Ok(None)
    }
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

/// Gone already (404) or replaced by another object of that name (409 on the uid precondition):
/// nothing left to do.
fn ignore_gone(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other,
    }
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
