//! The CronJob controller. [`core`] decides; [`Controller`] is the loop around it.
//!
//! A sync reads "now" from the injected clock, runs the core over the CronJob and the Jobs it
//! controls, carries the plan out (Jobs deleted with Background propagation, the scheduled Job
//! created under its fixed name), writes the status when it changed, and comes back when the
//! next scheduled time is due. Any change to the CronJob or one of its Jobs syncs it too.

pub mod core;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use self::core::{Action, Observed, reconcile};
use crate::events::{Note, Recorder};
use crate::pods;
use crate::runtime::api_message;
use crate::runtime::{Cache, Informer, Key, Queue, run_workers};

/// The loop around [`core::reconcile`].
#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    clock: crate::Clock,
    cronjobs: Cache<CronJob>,
    jobs: Cache<Job>,
    queue: Queue,
    recorder: Recorder,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cronjob::Controller").field("queued", &self.queue.len()).finish()
    }
}

impl Controller {
    /// `clock` gives "now" (tests inject one to make a schedule fire without waiting).
    pub fn new(
        client: kube::Client,
        clock: crate::Clock,
        cronjobs: &mut Informer<CronJob>,
        jobs: &mut Informer<Job>,
    ) -> Controller {
        let controller = Controller {
            recorder: Recorder::new(client.clone(), "cronjob-controller"),
            client,
            clock,
            cronjobs: cronjobs.cache(),
            jobs: jobs.cache(),
            queue: Queue::new(),
        };
        let queue = controller.queue.clone();
        cronjobs.on_change(move |_, new| {
            if let Some(cj) = new {
                queue.add(Key::of(cj));
            }
        });
        let queue = controller.queue.clone();
        jobs.on_change(move |old, new| {
            // A Job started, finished or went away: its CronJob's status and history change.
            let owners: HashSet<Key> =
                [old, new].into_iter().flatten().filter_map(|j| cronjob_of(&j.metadata)).collect();
            for owner in owners {
                queue.add(owner);
            }
        });
        controller
    }

    pub async fn run(self, workers: usize) {
        self.cronjobs.wait_synced().await;
        self.jobs.wait_synced().await;
        let queue = self.queue.clone();
        run_workers(queue, workers, "cronjob", move |key| {
            let this = self.clone();
            async move { this.sync(&key).await }
        })
        .await;
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(cj) = self.cronjobs.get(key) else { return Ok(None) };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs = self.jobs.controlled_by(&uid);
        let observed = Observed { cronjob: &cj, jobs: jobs.iter().map(Arc::as_ref).collect(), now: (self.clock)() };
        let plan = reconcile(&observed);
        // Notes about Jobs someone else created or deleted first would be false.
        let mut not_done: Vec<(&str, String)> = Vec::new();
        for action in &plan.actions {
            match self.carry_out(&cj, key, action).await? {
                Done::Yes => {}
                Done::Already { reason, name } => not_done.push((reason, name)),
            }
        }
        if !self.write_status(&cj, plan.status).await? {
            return Ok(plan.requeue_after);
        }
        for note in plan.events.iter().filter(|n| !not_done.iter().any(|(r, name)| is_about(n, r, name))) {
            self.recorder.record(cj.as_ref(), note);
        }
        Ok(plan.requeue_after)
    }

    async fn carry_out(&self, cj: &CronJob, key: &Key, action: &Action) -> Result<Done, kube::Error> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
        match action {
            Action::CreateJob(job) => match api.create(&PostParams::default(), job).await {
                Ok(_) => Ok(Done::Yes),
                // Already started for this scheduled time (a stale cache or a lost status write).
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Done::Already {
                    reason: "SuccessfulCreate",
                    name: job.metadata.name.clone().unwrap_or_default(),
                }),
                Err(e) => {
                    let message = format!("Error creating job: {}", api_message(&e));
                    self.recorder.record(cj, &Note::warning("FailedCreate", message));
                    Err(e)
                }
            },
            Action::DeleteJob { name, uid } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..DeleteParams::background()
                };
                match api.delete(name, &params).await {
                    Ok(_) => Ok(Done::Yes),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                        Ok(Done::Already { reason: "SuccessfulDelete", name: name.clone() })
                    }
                    Err(e) => {
                        let message = format!("Error deleting job: {}", api_message(&e));
                        self.recorder.record(cj, &Note::warning("FailedDelete", message));
                        Err(e)
                    }
                }
            }
        }
    }

    /// Writes the status when it differs from the cached one. Returns whether the CronJob now has
    /// it (false: it changed meanwhile; its watch event brings the next sync).
    async fn write_status(&self, cj: &CronJob, status: CronJobStatus) -> Result<bool, kube::Error> {
        if cj.status.as_ref().unwrap_or(&CronJobStatus::default()) == &status {
            return Ok(true);
        }
        let api: Api<CronJob> =
            Api::namespaced(self.client.clone(), cj.metadata.namespace.as_deref().unwrap_or_default());
        let mut updated = cj.clone();
        updated.status = Some(status);
        match api
            .replace_status(cj.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Whether an action was carried out by this sync or had been already.
enum Done {
    Yes,
    Already { reason: &'static str, name: String },
}

/// The core's per-Job notes end with the Job's name ("Created job report-28401").
fn is_about(note: &Note, reason: &str, job: &str) -> bool {
    note.reason == reason && note.message.rsplit(' ').next() == Some(job)
}

/// The CronJob controlling this Job, if its controller is a CronJob.
fn cronjob_of(meta: &ObjectMeta) -> Option<Key> {
    let owner = pods::controller_of(meta).filter(|r| r.kind == "CronJob" && r.api_version == "batch/v1")?;
    Some(Key::new(meta.namespace.as_deref().unwrap_or_default(), &owner.name))
}
