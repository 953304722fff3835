//! The Job controller's pure core (batch/v1 Job), after Kubernetes' `pkg/controller/job`.
//!
//! [`reconcile`] decides, from a Job and the pods it controls, which pods to create or delete,
//! which tracking finalizers to remove, the complete new status, the events and when to look
//! again. It covers completions and parallelism (NonIndexed and Indexed), `suspend`,
//! `backoffLimit` (failed pods, and container restarts for `restartPolicy: OnFailure`),
//! `activeDeadlineSeconds`, the pod-failure back-off before replacements (10s doubling to 6m),
//! `podReplacementPolicy`, `managedBy` and `ttlSecondsAfterFinished`.
//! Not implemented (ignored if set): `podFailurePolicy` rules, `successPolicy`,
//! `backoffLimitPerIndex`/`maxFailedIndexes`.
//!
//! Counting finished pods survives their deletion, as in Kubernetes: every pod is created with
//! the `batch.kubernetes.io/job-tracking` finalizer, a finished pod is first recorded by uid in
//! `status.uncountedTerminatedPods` (Indexed successes: by index in `status.completedIndexes`),
//! and only once the Job's OBSERVED status holds that record does the plan remove the finalizer;
//! when the pod is seen without its finalizer (or gone), its uid moves from the uncounted lists
//! into `status.succeeded`/`status.failed`. A pod is never counted twice nor lost, whatever
//! part of a previous plan was carried out, and whichever of status and actions the loop writes
//! first. It costs a reconcile more per finished pod than Kubernetes, which writes status,
//! removes finalizers and writes status again within one sync.
//!
//! Conditions are those of Kubernetes 1.33: a finishing Job first gets `SuccessCriteriaMet` or
//! `FailureTarget`, its remaining pods are deleted, and `Complete` or `Failed` (same reason and
//! message) follows when every finished pod is counted and none is terminating.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::events::Note;
use crate::pods::{self, is_active, is_deleting, is_ready, is_terminal, phase};

/// The finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label holding an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable carrying the index into an Indexed Job's containers.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The value of `spec.managedBy` that means this controller.
pub const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";
/// Kubernetes caps pod creations and deletions per sync, and the uncounted uids in status.
pub const MAX_POD_CHANGES_PER_SYNC: usize = 500;
pub const MAX_UNCOUNTED_PODS: usize = 500;
/// Replacement back-off after failures: 10s, doubling, at most 6 minutes.
const FAILURE_BACKOFF_BASE: Duration = Duration::from_secs(10);
const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(360);

/// Everything the controller observed for one Job.
#[derive(Debug)]
pub struct Observed<'a> {
    pub job: &'a Job,
    /// The pods whose controller reference is this Job, in any state (terminal, deleting).
    pub pods: Vec<&'a Pod>,
    pub now: Timestamp,
}

/// The writes, in the order to carry them out. The loop emits Kubernetes' per-pod events
/// (`SuccessfulCreate` "Created pod: <name>", `SuccessfulDelete` "Deleted pod: <name>") itself,
/// as client-go's PodControl does, since only it learns the generated names.
// Whole objects, as the controllers' contract has them; a plan lives for one reconcile.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A pod with `generateName`, owner reference, labels and the tracking finalizer set.
    CreatePod(Pod),
    /// Delete with a uid precondition (an already-gone pod is fine).
    DeletePod { name: String, uid: String },
    /// Remove [`TRACKING_FINALIZER`] from the pod's finalizers (a not-found pod is fine).
    RemoveTrackingFinalizer { name: String, uid: String },
    /// `ttlSecondsAfterFinished` has passed: delete the Job (uid precondition, Foreground
    /// propagation as Kubernetes' TTL-after-finished controller does).
    DeleteJob { name: String, uid: String },
}

/// What to do about the Job.
pub type Plan = crate::runtime::Plan<Action, JobStatus>;

/// How a Job is finishing.
#[derive(Debug, Clone, PartialEq)]
enum Finish {
    Success,
    Failure { reason: String, message: String },
}

const SUCCESS_REASON: &str = "CompletionsReached";
const SUCCESS_MESSAGE: &str = "Reached expected number of succeeded pods";

/// The spec with Kubernetes' defaults applied.
struct Settings {
    parallelism: i32,
    completions: Option<i32>,
    backoff_limit: i32,
    indexed: bool,
    suspended: bool,
    /// `podReplacementPolicy: Failed`: terminating pods are not replaced until they finish and
    /// are not failures merely for being deleted.
    only_replace_failed: bool,
    active_deadline: Option<i64>,
}

/// The pure core.
pub fn reconcile(o: &Observed) -> Plan {
    let job = o.job;
    let old = job.status.clone().unwrap_or_default();
    let mut plan = Plan { actions: Vec::new(), status: old.clone(), events: Vec::new(), requeue_after: None };
    let Some(spec) = job.spec.as_ref() else { return plan };
    if spec.managed_by.as_deref().is_some_and(|m| m != JOB_CONTROLLER_NAME) {
        return plan;
    }
    if finished_at(&old).is_some() {
        finished_job(o, &mut plan);
        return plan;
    }
    let indexed = match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => false,
        Some("Indexed") => true,
        Some(_) => {
            plan.events
                .push(Note::warning("UnknownCompletionMode", "Skipped Job sync because completion mode is unknown"));
            return plan;
        }
    };
    let completions = match (spec.completions, spec.parallelism) {
        (None, None) => Some(1),
        (c, _) => c.map(|c| c.max(0)),
    };
    if indexed && completions.is_none() {
        // API validation requires completions for Indexed Jobs; there is nothing sane to do.
        return plan;
    }
    let settings = Settings {
        parallelism: spec.parallelism.unwrap_or(1).max(0),
        completions,
        backoff_limit: spec.backoff_limit.unwrap_or(6),
        indexed,
        suspended: spec.suspend == Some(true),
        only_replace_failed: spec.pod_replacement_policy.as_deref() == Some("Failed"),
        active_deadline: spec.active_deadline_seconds,
    };
    Sync::new(o, settings, old).run(plan)
}

/// One reconcile of an unfinished Job.
struct Sync<'a> {
    o: &'a Observed<'a>,
    s: Settings,
    old: JobStatus,
    uncounted_succeeded: BTreeSet<&'a str>,
    uncounted_failed: BTreeSet<&'a str>,
    /// Indexed: the indexes succeeded so far (observed status plus newly succeeded pods).
    succeeded_indexes: BTreeSet<i32>,
    prev_indexes: BTreeSet<i32>,
    succeeded: i32,
    failed: i32,
}

impl<'a> Sync<'a> {
    fn new(o: &'a Observed<'a>, s: Settings, old: JobStatus) -> Sync<'a> {
        let uncounted = o.job.status.as_ref().and_then(|s| s.uncounted_terminated_pods.as_ref());
        let set = |list: Option<&'a Vec<String>>| list.into_iter().flatten().map(String::as_str).collect();
        let uncounted_succeeded: BTreeSet<&str> = set(uncounted.and_then(|u| u.succeeded.as_ref()));
        let uncounted_failed: BTreeSet<&str> = set(uncounted.and_then(|u| u.failed.as_ref()));
        let mut sync = Sync {
            o,
            s,
            old,
            uncounted_succeeded,
            uncounted_failed,
            succeeded_indexes: BTreeSet::new(),
            prev_indexes: BTreeSet::new(),
            succeeded: 0,
            failed: 0,
        };
        sync.count();
        sync
    }

    /// Kubernetes' counters for decisions: counted + uncounted + newly finished pods.
    fn count(&mut self) {
        let tracked = |p: &&&Pod| has_tracking_finalizer(p) && self.valid_index(p);
        let new_succeeded = self
            .o
            .pods
            .iter()
            .filter(tracked)
            .filter(|p| phase(p) == "Succeeded" && !self.uncounted_succeeded.contains(uid(p)))
            .count();
        let new_failed = self
            .o
            .pods
            .iter()
            .filter(tracked)
            .filter(|p| self.is_failed(p) && !self.uncounted_failed.contains(uid(p)))
            .count();
        self.succeeded =
            self.old.succeeded.unwrap_or(0).saturating_add(len_i32(new_succeeded + self.uncounted_succeeded.len()));
        self.failed = self.old.failed.unwrap_or(0).saturating_add(len_i32(new_failed + self.uncounted_failed.len()));
        if let (true, Some(completions)) = (self.s.indexed, self.s.completions) {
            self.prev_indexes = parse_indexes(self.old.completed_indexes.as_deref().unwrap_or(""), completions);
            self.succeeded_indexes = self.prev_indexes.clone();
            for p in self.o.pods.iter().filter(|p| phase(p) == "Succeeded" && has_tracking_finalizer(p)) {
                if let Some(ix) = self.index_of(p) {
                    self.succeeded_indexes.insert(ix);
                }
            }
            self.succeeded = len_i32(self.succeeded_indexes.len());
        }
    }

    fn is_failed(&self, p: &Pod) -> bool {
        phase(p) == "Failed" || (!self.s.only_replace_failed && is_deleting(&p.metadata) && phase(p) != "Succeeded")
    }

    /// The pod's completion index when it is within `completions`.
    fn index_of(&self, p: &Pod) -> Option<i32> {
        completion_index(p).filter(|ix| self.s.completions.is_some_and(|c| *ix < c))
    }

    fn valid_index(&self, p: &Pod) -> bool {
        !self.s.indexed || self.index_of(p).is_some()
    }

    fn run(self, mut plan: Plan) -> Plan {
        let o = self.o;
        let now = o.now;
        let job_deleting = is_deleting(&o.job.metadata);
        let mut status = self.old.clone();
        if status.start_time.is_none() && !self.s.suspended {
            status.start_time = Some(Time(now));
        }
        let start_time = status.start_time.as_ref().map(|t| t.0);

        let mut finishing = self.finishing_from_conditions();
        if finishing.is_none() {
            if self.failed > self.s.backoff_limit || self.past_backoff_limit_on_failure() {
                finishing = Some(failure("BackoffLimitExceeded", "Job has reached the specified backoff limit"));
            } else if let (Some(deadline), Some(start), false) = (self.s.active_deadline, start_time, self.s.suspended)
            {
                let ends = start.saturating_add(SignedDuration::from_secs(deadline)).unwrap_or(Timestamp::MAX);
                if now >= ends {
                    finishing = Some(failure("DeadlineExceeded", "Job was active longer than specified deadline"));
                } else {
                    requeue_at(&mut plan, now, ends);
                }
            }
        }

        let active: Vec<&Pod> = o.pods.iter().copied().filter(|p| is_active(p)).collect();
        let mut active_count = len_i32(active.len());
        let mut ready = len_i32(active.iter().filter(|p| is_ready(p)).count());
        let mut terminating = len_i32(o.pods.iter().filter(|p| is_deleting(&p.metadata) && !is_terminal(p)).count());

        if finishing.is_some() {
            // Delete what still runs, keeping finalizers: the tracking below counts them.
            for p in &active {
                plan.actions.push(delete(p));
            }
            terminating += active_count;
            (active_count, ready) = (0, 0);
        } else {
            let mut managed = false;
            if !job_deleting {
                managed = true;
                let removed = self.manage(&active, &mut plan);
                active_count = active_count - removed.deleted + removed.created;
                ready -= removed.deleted_ready;
                terminating += removed.deleted;
            }
            let complete = match self.s.completions {
                None => self.succeeded > 0 && active_count == 0,
                Some(c) => self.succeeded >= c && active_count == 0,
            };
            if complete {
                finishing = Some(Finish::Success);
            } else if managed {
                self.suspend_condition(&mut status, &mut plan);
            }
        }

        status.active = positive(active_count);
        status.ready = Some(ready.max(0));
        status.terminating = Some(terminating.max(0));
        let reached_max = self.track(finishing.as_ref(), job_deleting, &mut status, &mut plan);

        let conditions = status.conditions.get_or_insert_with(Vec::new);
        match &finishing {
            Some(Finish::Failure { reason, message }) if find(conditions, "FailureTarget").is_none() => {
                conditions.push(condition("FailureTarget", "True", reason, message, now));
            }
            Some(Finish::Success) if find(conditions, "SuccessCriteriaMet").is_none() => {
                conditions.push(condition("SuccessCriteriaMet", "True", SUCCESS_REASON, SUCCESS_MESSAGE, now));
            }
            _ => {}
        }
        let uncounted_left = status.uncounted_terminated_pods.as_ref().is_some_and(|u| {
            u.succeeded.as_ref().is_some_and(|v| !v.is_empty()) || u.failed.as_ref().is_some_and(|v| !v.is_empty())
        });
        if let Some(finish) = finishing.filter(|_| !reached_max && !uncounted_left && terminating <= 0) {
            self.enact_finished(&finish, &mut status, &mut plan);
        }
        if status.conditions.as_ref().is_some_and(Vec::is_empty) {
            status.conditions = None;
        }
        plan.status = status;
        plan
    }

    /// A previous sync already decided the Job's fate (the interim conditions).
    fn finishing_from_conditions(&self) -> Option<Finish> {
        let conditions = self.old.conditions.as_deref().unwrap_or_default();
        if find(conditions, "SuccessCriteriaMet").is_some_and(|c| c.status == "True") {
            return Some(Finish::Success);
        }
        find(conditions, "FailureTarget").filter(|c| c.status == "True").map(|c| Finish::Failure {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        })
    }

    /// `restartPolicy: OnFailure` retries in place: container restarts count against the limit.
    fn past_backoff_limit_on_failure(&self) -> bool {
        let template = self.o.job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        if template.and_then(|t| t.restart_policy.as_deref()) != Some("OnFailure") {
            return false;
        }
        let restarts: i32 = self
            .o
            .pods
            .iter()
            .filter(|p| matches!(phase(p), "Running" | "Pending"))
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
            .map(|c| c.restart_count)
            .sum();
        if self.s.backoff_limit == 0 { restarts > 0 } else { restarts >= self.s.backoff_limit }
    }

    /// Brings the number of active pods to what the Job wants (Kubernetes' `manageJob`).
    fn manage(&self, active: &[&'a Pod], plan: &mut Plan) -> Changes {
        if self.s.suspended {
            return delete_pods(active, plan);
        }
        let active_count = len_i32(active.len());
        let want = match self.s.completions {
            None if self.succeeded > 0 => active_count,
            None => self.s.parallelism,
            Some(c) => (c - self.succeeded).min(self.s.parallelism).max(0),
        };
        let to_remove = self.pods_to_remove(active, usize::try_from(active_count - want).unwrap_or(0));
        if !to_remove.is_empty() {
            // Kubernetes never creates and deletes in the same sync; deletion wins.
            return delete_pods(&to_remove, plan);
        }
        let terminating = if self.s.only_replace_failed {
            len_i32(self.o.pods.iter().filter(|p| is_deleting(&p.metadata) && !is_terminal(p)).count())
        } else {
            0
        };
        let missing = usize::try_from(want - terminating - active_count).unwrap_or(0).min(MAX_POD_CHANGES_PER_SYNC);
        if missing == 0 {
            return Changes::default();
        }
        if let Some(wait) = self.failure_backoff() {
            plan.requeue_after = Some(plan.requeue_after.map_or(wait, |r| r.min(wait)));
            return Changes::default();
        }
        let new_pods: Vec<Pod> = if self.s.indexed {
            self.pending_indexes(active, missing).into_iter().map(|ix| self.new_pod(Some(ix))).collect()
        } else {
            (0..missing).map(|_| self.new_pod(None)).collect()
        };
        let created = len_i32(new_pods.len());
        plan.actions.extend(new_pods.into_iter().map(Action::CreatePod));
        Changes { created, ..Changes::default() }
    }

    /// Which active pods go: for Indexed Jobs every pod without a valid index and all but one
    /// per repeated index, then Kubernetes' deletion order up to `at_least`.
    fn pods_to_remove(&self, active: &[&'a Pod], at_least: usize) -> Vec<&'a Pod> {
        let mut remove = Vec::new();
        let mut left: Vec<&Pod> = Vec::new();
        if self.s.indexed {
            let mut by_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
            for p in active {
                match self.index_of(p) {
                    Some(ix) => by_index.entry(ix).or_default().push(p),
                    None => remove.push(*p),
                }
            }
            for (_, mut same) in by_index {
                same.sort_by(|a, b| pods::deletion_order(a, b));
                let keep = same.pop();
                remove.extend(same);
                left.extend(keep);
            }
        } else {
            left = active.to_vec();
        }
        if remove.len() < at_least {
            left.sort_by(|a, b| pods::deletion_order(a, b));
            let more = at_least - remove.len();
            remove.extend(left.into_iter().take(more));
        }
        remove.truncate(MAX_POD_CHANGES_PER_SYNC);
        remove
    }

    /// The lowest indexes that neither succeeded nor have an active pod.
    fn pending_indexes(&self, active: &[&Pod], count: usize) -> Vec<i32> {
        let mut taken: BTreeSet<i32> = self.succeeded_indexes.clone();
        taken.extend(active.iter().filter_map(|p| completion_index(p)));
        if self.s.only_replace_failed {
            let terminating = self.o.pods.iter().filter(|p| is_deleting(&p.metadata) && !is_terminal(p));
            taken.extend(terminating.filter_map(|p| completion_index(p)));
        }
        let completions = self.s.completions.unwrap_or(0);
        (0..completions).filter(|ix| !taken.contains(ix)).take(count).collect()
    }

    /// Time left before replacing failed pods: 10s after one failure, doubling per consecutive
    /// failure since the last success, at most 6 minutes (Kubernetes keeps this record in
    /// memory; here it is read from the finished pods, which stay until the Job goes).
    fn failure_backoff(&self) -> Option<Duration> {
        let last_success = self.o.pods.iter().filter(|p| phase(p) == "Succeeded").map(|p| finish_time(p)).max();
        let failures: Vec<Timestamp> = self
            .o
            .pods
            .iter()
            .filter(|p| phase(p) == "Failed")
            .map(|p| finish_time(p))
            .filter(|t| last_success.is_none_or(|s| *t > s))
            .collect();
        let last_failure = *failures.iter().max()?;
        let doublings = u32::try_from(failures.len() - 1).unwrap_or(u32::MAX).min(16);
        let delay = FAILURE_BACKOFF_BASE.saturating_mul(1 << doublings).min(FAILURE_BACKOFF_MAX);
        let ready_at = last_failure.saturating_add(SignedDuration::try_from(delay).ok()?).ok()?;
        (ready_at > self.o.now).then(|| until(self.o.now, ready_at))
    }

    /// A pod from the template, as Kubernetes makes it.
    fn new_pod(&self, index: Option<i32>) -> Pod {
        let job = self.o.job;
        let name = job.metadata.name.clone().unwrap_or_default();
        let job_uid = job.metadata.uid.clone().unwrap_or_default();
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let mut template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let meta = template.metadata.get_or_insert_with(Default::default);
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        // The API server puts these in the template; a Job that bypassed it gets them here.
        for (key, value) in [
            ("batch.kubernetes.io/controller-uid", &job_uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &job_uid),
            ("job-name", &name),
        ] {
            labels.entry(key.to_string()).or_insert_with(|| value.clone());
        }
        let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
            finalizers.push(TRACKING_FINALIZER.to_string());
        }
        let generate_name = match index {
            Some(ix) => {
                labels.insert(COMPLETION_INDEX.to_string(), ix.to_string());
                meta.annotations.get_or_insert_with(BTreeMap::new).insert(COMPLETION_INDEX.to_string(), ix.to_string());
                if let Some(pod_spec) = template.spec.as_mut() {
                    pod_spec.hostname = Some(format!("{name}-{ix}"));
                    for c in pod_spec.init_containers.iter_mut().flatten().chain(pod_spec.containers.iter_mut()) {
                        add_index_env(c);
                    }
                }
                indexed_generate_name(&name, ix)
            }
            None => pods::generate_name_prefix(&name),
        };
        let owner = pods::controller_ref("batch/v1", "Job", &job.metadata);
        pods::pod_from_template(&template, &namespace, owner, None, &generate_name)
    }

    /// `Suspended` condition and `startTime` reset as Kubernetes keeps them.
    fn suspend_condition(&self, status: &mut JobStatus, plan: &mut Plan) {
        let now = self.o.now;
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        if self.s.suspended {
            if ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", now) {
                plan.events.push(Note::normal("Suspended", "Job suspended"));
            }
        } else if ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now) {
            plan.events.push(Note::normal("Resumed", "Job resumed"));
            // The deadline counts time spent running, so it restarts on resume.
            status.start_time = Some(Time(now));
        }
    }

    /// Records finished pods in `uncountedTerminatedPods`, removes finalizers of the pods whose
    /// record the observed status already holds, and moves records of pods without finalizer
    /// into the counters. Returns whether the uncounted cap stopped it early.
    fn track(&self, finishing: Option<&Finish>, job_deleting: bool, status: &mut JobStatus, plan: &mut Plan) -> bool {
        let finishing_failure = matches!(finishing, Some(Finish::Failure { .. }));
        let mut tracked: Vec<&Pod> = self.o.pods.iter().copied().filter(|p| has_tracking_finalizer(p)).collect();
        if self.s.indexed {
            tracked.sort_by_key(|p| completion_index(p).unwrap_or(-1));
        }
        let with_finalizer: BTreeSet<&str> = tracked.iter().map(|p| uid(p)).collect();
        let still_uncounted = |set: &BTreeSet<&str>| -> (Vec<String>, usize) {
            let kept: Vec<String> = set.iter().filter(|u| with_finalizer.contains(*u)).map(|u| u.to_string()).collect();
            let counted = set.len() - kept.len();
            (kept, counted)
        };
        let (mut uncounted_succeeded, newly_succeeded) = still_uncounted(&self.uncounted_succeeded);
        let (mut uncounted_failed, newly_failed) = still_uncounted(&self.uncounted_failed);
        let mut new_indexes = 0usize;
        let mut reached_max = false;
        for p in tracked {
            let failed = self.is_failed(p);
            if !(job_deleting || finishing.is_some() || phase(p) == "Succeeded" || failed) {
                continue;
            }
            let id = uid(p);
            // Settled: counted in the observed status, or never to be counted.
            let settled = if phase(p) == "Succeeded" && !self.uncounted_failed.contains(id) {
                match (self.s.indexed, self.index_of(p)) {
                    (true, Some(ix)) if !self.prev_indexes.contains(&ix) => {
                        new_indexes += 1;
                        false
                    }
                    (true, _) => true,
                    (false, _) if self.uncounted_succeeded.contains(id) => true,
                    (false, _) => {
                        uncounted_succeeded.push(id.to_string());
                        false
                    }
                }
            } else if (failed || finishing_failure) && !self.uncounted_failed.contains(id) && self.valid_index(p) {
                uncounted_failed.push(id.to_string());
                false
            } else {
                true
            };
            if settled {
                plan.actions.push(Action::RemoveTrackingFinalizer { name: name(p), uid: id.to_string() });
            }
            if new_indexes + uncounted_succeeded.len() + uncounted_failed.len() >= MAX_UNCOUNTED_PODS {
                reached_max = true;
                break;
            }
        }
        if self.s.indexed {
            status.completed_indexes = Some(format_indexes(&self.succeeded_indexes)).filter(|s| !s.is_empty());
            status.succeeded = positive(len_i32(self.succeeded_indexes.len()));
        } else {
            status.succeeded = positive(self.old.succeeded.unwrap_or(0).saturating_add(len_i32(newly_succeeded)));
        }
        status.failed = positive(self.old.failed.unwrap_or(0).saturating_add(len_i32(newly_failed)));
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(uncounted_succeeded).filter(|v| !v.is_empty()),
            failed: Some(uncounted_failed).filter(|v| !v.is_empty()),
        });
        reached_max
    }

    /// The terminal condition, completion time and events.
    fn enact_finished(&self, finish: &Finish, status: &mut JobStatus, plan: &mut Plan) {
        let now = self.o.now;
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        match finish {
            Finish::Success => {
                ensure_condition(conditions, "Complete", "True", SUCCESS_REASON, SUCCESS_MESSAGE, now);
                status.completion_time = Some(Time(now));
                if self.s.completions.is_some_and(|c| status.succeeded.unwrap_or(0) > c) {
                    plan.events.push(Note::warning(
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached",
                    ));
                }
                plan.events.push(Note::normal("Completed", "Job completed"));
            }
            Finish::Failure { reason, message } => {
                ensure_condition(conditions, "Failed", "True", reason, message, now);
                plan.events.push(Note::warning(reason, message.clone()));
            }
        }
        if let Some(ttl) = self.o.job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) {
            let expires =
                now.saturating_add(SignedDuration::from_secs(i64::from(ttl.max(0)))).unwrap_or(Timestamp::MAX);
            requeue_at(plan, now, expires);
        }
    }
}

#[derive(Debug, Default)]
struct Changes {
    created: i32,
    deleted: i32,
    deleted_ready: i32,
}

/// Removes the finalizer first so that a pod the controller deletes is not counted as failed.
fn delete_pods(victims: &[&Pod], plan: &mut Plan) -> Changes {
    for p in victims {
        if has_tracking_finalizer(p) {
            plan.actions.push(Action::RemoveTrackingFinalizer { name: name(p), uid: uid(p).to_string() });
        }
        plan.actions.push(delete(p));
    }
    Changes {
        created: 0,
        deleted: len_i32(victims.len()),
        deleted_ready: len_i32(victims.iter().filter(|p| is_ready(p)).count()),
    }
}

/// A finished Job: release the pods it still holds and honour `ttlSecondsAfterFinished`.
fn finished_job(o: &Observed, plan: &mut Plan) {
    for p in o.pods.iter().filter(|p| has_tracking_finalizer(p)) {
        plan.actions.push(Action::RemoveTrackingFinalizer { name: name(p), uid: uid(p).to_string() });
    }
    let job = o.job;
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let (Some(ttl), Some(finished)) = (ttl, job.status.as_ref().and_then(finished_at)) else { return };
    if is_deleting(&job.metadata) {
        return;
    }
    let expires = finished.saturating_add(SignedDuration::from_secs(i64::from(ttl.max(0)))).unwrap_or(Timestamp::MAX);
    if o.now >= expires {
        plan.actions.push(Action::DeleteJob {
            name: job.metadata.name.clone().unwrap_or_default(),
            uid: job.metadata.uid.clone().unwrap_or_default(),
        });
    } else {
        requeue_at(plan, o.now, expires);
    }
}

/// When the Job finished: the transition time of its true `Complete` or `Failed` condition.
fn finished_at(status: &JobStatus) -> Option<Timestamp> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0))
}

/// Is the Job finished (a true `Complete` or `Failed` condition)? For the CronJob controller.
pub fn is_finished(job: &Job) -> bool {
    job.status.as_ref().and_then(finished_at).is_some()
}

/// The finishing condition type (`Complete` or `Failed`), if the Job finished.
pub fn finished_condition(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn failure(reason: &str, message: &str) -> Finish {
    Finish::Failure { reason: reason.to_string(), message: message.to_string() }
}

fn find<'c>(conditions: &'c [JobCondition], type_: &str) -> Option<&'c JobCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `ensureJobConditionStatus`: updates a condition of that type when its status,
/// reason or message differ; adds one only when the status is not False. Returns whether the
/// list changed.
fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(existing) = list.iter_mut().find(|c| c.type_ == type_) {
        let same = existing.status == status
            && existing.reason.as_deref() == Some(reason)
            && existing.message.as_deref() == Some(message);
        if !same {
            *existing = condition(type_, status, reason, message, now);
        }
        return !same;
    }
    if status == "False" {
        return false;
    }
    list.push(condition(type_, status, reason, message, now));
    true
}

fn has_tracking_finalizer(p: &Pod) -> bool {
    p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

/// The pod's completion index annotation, when it is a non-negative number.
pub fn completion_index(p: &Pod) -> Option<i32> {
    let value = p.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    value.parse::<i32>().ok().filter(|ix| *ix >= 0)
}

fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or_default()
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn delete(p: &Pod) -> Action {
    Action::DeletePod { name: name(p), uid: uid(p).to_string() }
}

/// When a pod finished: its containers' last termination, else its deletion or creation time.
fn finish_time(p: &Pod) -> Timestamp {
    let from_containers = p
        .status
        .as_ref()
        .into_iter()
        .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    from_containers
        .or_else(|| p.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `JOB_COMPLETION_INDEX` from the index label, unless the container sets it itself.
fn add_index_env(c: &mut Container) {
    let env = c.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
            }),
            ..EnvVarSource::default()
        }),
    });
}

/// `<job>-<index>-`, the job name shortened so the server's suffix fits in 63 characters.
fn indexed_generate_name(job: &str, index: i32) -> String {
    const MAX_PREFIX: usize = 63 - 5;
    let suffix = format!("-{index}-");
    let mut prefix = job.to_string();
    if prefix.len() + suffix.len() > MAX_PREFIX {
        let mut cut = MAX_PREFIX.saturating_sub(suffix.len());
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    prefix + &suffix
}

/// Parses `status.completedIndexes` ("1,3-5"), ignoring malformed parts and indexes at or
/// beyond `completions`, as Kubernetes does.
pub fn parse_indexes(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else { continue };
        set.extend((first.max(0)..=last.min(completions - 1)).take(100_000));
    }
    set
}

/// Kubernetes' compressed index list: runs of three or more as "a-b", pairs as "a,b".
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &ix in indexes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == ix => *last = ix,
            _ => runs.push((ix, ix)),
        }
    }
    let parts: Vec<String> = runs
        .into_iter()
        .map(|(a, b)| match b - a {
            0 => a.to_string(),
            1 => format!("{a},{b}"),
            _ => format!("{a}-{b}"),
        })
        .collect();
    parts.join(",")
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Kubernetes omits zero counters (`omitempty`).
fn positive(n: i32) -> Option<i32> {
    (n > 0).then_some(n)
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or_default()
}

fn requeue_at(plan: &mut Plan, now: Timestamp, at: Timestamp) {
    let wait = until(now, at);
    plan.requeue_after = Some(plan.requeue_after.map_or(wait, |r| r.min(wait)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn job(edit: impl FnOnce(&mut JobSpec)) -> Job {
        let mut spec = JobSpec {
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some([("app".into(), "pi".into())].into()), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container { name: "main".into(), ..Default::default() }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        };
        edit(&mut spec);
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some("job-uid".into()),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    fn pod(name: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                finalizers: Some(vec![TRACKING_FINALIZER.into()]),
                creation_timestamp: Some(Time(at(0))),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    fn indexed(mut p: Pod, ix: i32) -> Pod {
        p.metadata.annotations = Some([(COMPLETION_INDEX.to_string(), ix.to_string())].into());
        p
    }

    fn run(job: &Job, pods: &[Pod], now: Timestamp) -> Plan {
        reconcile(&Observed { job, pods: pods.iter().collect(), now })
    }

    fn created(plan: &Plan) -> Vec<&Pod> {
        plan.actions.iter().filter_map(|a| if let Action::CreatePod(p) = a { Some(p) } else { None }).collect()
    }

    fn condition_of<'s>(status: &'s JobStatus, type_: &str) -> Option<(&'s str, &'s str)> {
        let c = find(status.conditions.as_deref().unwrap_or_default(), type_)?;
        Some((c.status.as_str(), c.reason.as_deref().unwrap_or_default()))
    }

    #[test]
    fn a_new_job_starts_parallelism_pods_with_labels_and_the_finalizer() {
        let j = job(|s| (s.completions, s.parallelism) = (Some(5), Some(2)));
        let plan = run(&j, &[], at(0));
        let pods = created(&plan);
        assert_eq!(pods.len(), 2);
        let p = pods[0];
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
        let labels = p.metadata.labels.as_ref().unwrap();
        for (k, v) in [
            ("app", "pi"),
            ("batch.kubernetes.io/controller-uid", "job-uid"),
            ("batch.kubernetes.io/job-name", "pi"),
            ("controller-uid", "job-uid"),
            ("job-name", "pi"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(p.metadata.finalizers.as_deref(), Some(&[TRACKING_FINALIZER.to_string()][..]));
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Job", "job-uid", Some(true)));
        assert_eq!(p.spec.as_ref().unwrap().restart_policy.as_deref(), Some("Never"));
        assert_eq!(plan.status.active, Some(2));
        assert_eq!(plan.status.start_time, Some(Time(at(0))));
        assert_eq!(plan.status.ready, Some(0));
        assert_eq!(plan.status.uncounted_terminated_pods, Some(UncountedTerminatedPods::default()));
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let j = job(|s| {
            (s.completions, s.parallelism) = (Some(4), Some(3));
            s.completion_mode = Some("Indexed".into());
        });
        // Index 0 already succeeded, index 1 runs: 2 and 3 are next.
        let mut j = j;
        j.status = Some(JobStatus { completed_indexes: Some("0".into()), succeeded: Some(1), ..Default::default() });
        let plan = run(&j, &[indexed(pod("pi-1-x", "Running"), 1)], at(0));
        let pods = created(&plan);
        let names: Vec<_> = pods.iter().map(|p| p.metadata.generate_name.clone().unwrap()).collect();
        assert_eq!(names, ["pi-2-", "pi-3-"]);
        let p = pods[0];
        assert_eq!(p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(p.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, COMPLETION_INDEX_ENV);
        assert_eq!(
            env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
    }

    #[test]
    fn finished_pods_are_recorded_then_released_then_counted() {
        let mut j = job(|s| (s.completions, s.parallelism) = (Some(3), Some(1)));
        j.status = Some(JobStatus { start_time: Some(Time(at(0))), ..Default::default() });
        let done = pod("a", "Succeeded");

        // 1. Recorded by uid; the finalizer stays until the status holds the record.
        let plan = run(&j, std::slice::from_ref(&done), at(1));
        let uncounted = plan.status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(uncounted.succeeded, Some(vec!["uid-a".to_string()]));
        assert!(!plan.actions.iter().any(|a| matches!(a, Action::RemoveTrackingFinalizer { .. })));
        assert_eq!(created(&plan).len(), 1, "a replacement for the next completion");
        assert_eq!(plan.status.succeeded, None);

        // 2. The record is persisted: release the pod.
        j.status = Some(plan.status.clone());
        let plan = run(&j, std::slice::from_ref(&done), at(2));
        assert!(plan.actions.contains(&Action::RemoveTrackingFinalizer { name: "a".into(), uid: "uid-a".into() }));

        // 3. Seen without its finalizer (or gone): counted.
        j.status = Some(plan.status.clone());
        for pods in
            [vec![], vec![Pod { metadata: ObjectMeta { finalizers: None, ..done.metadata.clone() }, ..done.clone() }]]
        {
            let plan = run(&j, &pods, at(3));
            assert_eq!(plan.status.succeeded, Some(1));
            assert_eq!(plan.status.uncounted_terminated_pods, Some(UncountedTerminatedPods::default()));
        }
    }

    /// Applies plans the way the API server and a kubelet would, until nothing changes.
    fn simulate(mut j: Job, outcome: &str, max_steps: usize) -> (Job, Vec<Pod>, Vec<Note>) {
        let mut pods: Vec<Pod> = Vec::new();
        let mut events = Vec::new();
        let mut now = at(0);
        let mut serial = 0;
        for _ in 0..max_steps {
            let plan = run(&j, &pods, now);
            events.extend(plan.events.clone());
            let idle = plan.actions.is_empty() && Some(&plan.status) == j.status.as_ref();
            j.status = Some(plan.status.clone());
            for action in plan.actions {
                match action {
                    Action::CreatePod(mut p) => {
                        serial += 1;
                        let name = format!("{}{serial}", p.metadata.generate_name.clone().unwrap());
                        p.metadata.name = Some(name.clone());
                        p.metadata.uid = Some(format!("uid-{name}"));
                        p.metadata.creation_timestamp = Some(Time(now));
                        p.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
                        pods.push(p);
                    }
                    Action::DeletePod { uid, .. } => {
                        let p = pods.iter_mut().find(|p| p.metadata.uid.as_deref() == Some(&uid)).unwrap();
                        p.metadata.deletion_timestamp = Some(Time(now));
                    }
                    Action::RemoveTrackingFinalizer { uid, .. } => {
                        let p = pods.iter_mut().find(|p| p.metadata.uid.as_deref() == Some(&uid)).unwrap();
                        p.metadata.finalizers = None;
                    }
                    Action::DeleteJob { .. } => return (j, pods, events),
                }
            }
            // The kubelet: deleted pods stop, the others finish with `outcome`.
            for p in pods.iter_mut() {
                let status = p.status.get_or_insert_with(Default::default);
                if p.metadata.deletion_timestamp.is_some() && !matches!(status.phase.as_deref(), Some("Succeeded")) {
                    status.phase = Some("Failed".into());
                } else if status.phase.as_deref() == Some("Pending") {
                    status.phase = Some(outcome.into());
                }
            }
            pods.retain(|p| p.metadata.deletion_timestamp.is_none() || p.metadata.finalizers.is_some());
            if idle {
                break;
            }
            now += SignedDuration::from_secs(30);
        }
        (j, pods, events)
    }

    #[test]
    fn a_job_runs_to_completion() {
        let (j, pods, events) = simulate(job(|s| (s.completions, s.parallelism) = (Some(3), Some(2))), "Succeeded", 50);
        let status = j.status.unwrap();
        assert_eq!(status.succeeded, Some(3));
        assert_eq!(status.failed, None);
        assert_eq!(condition_of(&status, "SuccessCriteriaMet"), Some(("True", "CompletionsReached")));
        assert_eq!(condition_of(&status, "Complete"), Some(("True", "CompletionsReached")));
        assert!(status.completion_time.is_some());
        assert_eq!(pods.len(), 3, "exactly three pods ran");
        assert!(pods.iter().all(|p| p.metadata.finalizers.is_none()), "all released");
        assert_eq!(events, vec![Note::normal("Completed", "Job completed")]);
    }

    #[test]
    fn an_indexed_job_completes_every_index() {
        let (j, pods, _) = simulate(
            job(|s| {
                (s.completions, s.parallelism) = (Some(5), Some(2));
                s.completion_mode = Some("Indexed".into());
            }),
            "Succeeded",
            50,
        );
        let status = j.status.unwrap();
        assert_eq!(status.completed_indexes.as_deref(), Some("0-4"));
        assert_eq!(status.succeeded, Some(5));
        assert_eq!(condition_of(&status, "Complete"), Some(("True", "CompletionsReached")));
        let mut indexes: Vec<_> = pods.iter().filter_map(completion_index).collect();
        indexes.sort();
        assert_eq!(indexes, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn failures_beyond_the_backoff_limit_fail_the_job() {
        let (j, pods, events) = simulate(job(|s| s.backoff_limit = Some(2)), "Failed", 100);
        let status = j.status.unwrap();
        assert_eq!(status.failed, Some(3), "backoffLimit 2 allows two retries");
        assert_eq!(condition_of(&status, "FailureTarget"), Some(("True", "BackoffLimitExceeded")));
        assert_eq!(condition_of(&status, "Failed"), Some(("True", "BackoffLimitExceeded")));
        assert_eq!(pods.len(), 3);
        assert_eq!(events, vec![Note::warning("BackoffLimitExceeded", "Job has reached the specified backoff limit")]);
    }

    #[test]
    fn replacements_wait_for_the_failure_backoff() {
        let mut j = job(|_| {});
        j.status = Some(JobStatus { start_time: Some(Time(at(0))), ..Default::default() });
        let mut failed = pod("a", "Failed");
        failed.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            state: Some(k8s_openapi::api::core::v1::ContainerState {
                terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                    finished_at: Some(Time(at(100))),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let plan = run(&j, std::slice::from_ref(&failed), at(104));
        assert!(created(&plan).is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(6)));
        assert_eq!(created(&run(&j, &[failed], at(110))).len(), 1);
    }

    #[test]
    fn the_active_deadline_fails_the_job_and_stops_its_pods() {
        let mut j = job(|s| s.active_deadline_seconds = Some(60));
        j.status = Some(JobStatus { start_time: Some(Time(at(0))), ..Default::default() });
        let running = pod("a", "Running");
        let plan = run(&j, std::slice::from_ref(&running), at(20));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(40)));
        assert!(plan.actions.is_empty());

        let plan = run(&j, std::slice::from_ref(&running), at(60));
        assert_eq!(plan.actions, vec![Action::DeletePod { name: "a".into(), uid: "uid-a".into() }]);
        assert_eq!(condition_of(&plan.status, "FailureTarget"), Some(("True", "DeadlineExceeded")));
        assert_eq!(condition_of(&plan.status, "Failed"), None, "not before the pod is gone");
        assert_eq!(plan.status.terminating, Some(1));
        assert_eq!(plan.status.active, None);
    }

    #[test]
    fn suspending_deletes_pods_without_counting_them() {
        let mut j = job(|s| s.suspend = Some(true));
        j.status = Some(JobStatus { start_time: Some(Time(at(0))), ..Default::default() });
        let plan = run(&j, &[pod("a", "Running")], at(5));
        assert_eq!(
            plan.actions,
            vec![
                Action::RemoveTrackingFinalizer { name: "a".into(), uid: "uid-a".into() },
                Action::DeletePod { name: "a".into(), uid: "uid-a".into() },
            ]
        );
        assert_eq!(condition_of(&plan.status, "Suspended"), Some(("True", "JobSuspended")));
        assert_eq!(plan.events, vec![Note::normal("Suspended", "Job suspended")]);

        // Resuming flips the condition and restarts the deadline clock.
        let mut resumed = job(|_| {});
        resumed.status = Some(plan.status.clone());
        let plan = run(&resumed, &[], at(100));
        assert_eq!(condition_of(&plan.status, "Suspended"), Some(("False", "JobResumed")));
        assert_eq!(plan.status.start_time, Some(Time(at(100))));
        assert_eq!(created(&plan).len(), 1);

        // A Job created suspended does not start its clock.
        assert_eq!(run(&job(|s| s.suspend = Some(true)), &[], at(0)).status.start_time, None);
    }

    #[test]
    fn lowering_parallelism_deletes_unready_pods_first() {
        let mut j = job(|s| (s.completions, s.parallelism) = (Some(10), Some(1)));
        j.status = Some(JobStatus { start_time: Some(Time(at(0))), ..Default::default() });
        let mut ready = pod("ready", "Running");
        ready.status.as_mut().unwrap().conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        let plan = run(&j, &[ready, pod("pending", "Pending"), pod("running", "Running")], at(5));
        let deleted: Vec<_> = plan
            .actions
            .iter()
            .filter_map(|a| if let Action::DeletePod { name, .. } = a { Some(name.as_str()) } else { None })
            .collect();
        assert_eq!(deleted, ["pending", "running"]);
        assert_eq!(plan.status.active, Some(1));
        assert_eq!(plan.status.ready, Some(1));
        assert_eq!(plan.status.terminating, Some(2));
    }

    #[test]
    fn restarts_count_against_the_limit_with_on_failure() {
        let j = job(|s| {
            s.backoff_limit = Some(2);
            s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        });
        let mut p = pod("a", "Running");
        p.status.as_mut().unwrap().container_statuses =
            Some(vec![ContainerStatus { restart_count: 2, ..Default::default() }]);
        let plan = run(&j, &[p], at(0));
        assert_eq!(condition_of(&plan.status, "FailureTarget"), Some(("True", "BackoffLimitExceeded")));
    }

    #[test]
    fn a_finished_job_is_deleted_after_its_ttl() {
        let mut j = job(|s| s.ttl_seconds_after_finished = Some(60));
        j.status = Some(JobStatus {
            conditions: Some(vec![condition("Complete", "True", SUCCESS_REASON, SUCCESS_MESSAGE, at(0))]),
            ..Default::default()
        });
        let plan = run(&j, &[], at(30));
        assert_eq!((plan.actions.len(), plan.requeue_after), (0, Some(Duration::from_secs(30))));
        let plan = run(&j, &[pod("a", "Succeeded")], at(60));
        assert_eq!(
            plan.actions,
            vec![
                Action::RemoveTrackingFinalizer { name: "a".into(), uid: "uid-a".into() },
                Action::DeleteJob { name: "pi".into(), uid: "job-uid".into() },
            ]
        );
        assert_eq!(Some(&plan.status), j.status.as_ref(), "a finished Job's status is left alone");
    }

    #[test]
    fn a_job_managed_elsewhere_is_left_alone() {
        let j = job(|s| s.managed_by = Some("kueue.x-k8s.io/multikueue".into()));
        let plan = run(&j, &[], at(0));
        assert!(plan.actions.is_empty() && plan.status == JobStatus::default());
    }

    #[test]
    fn completed_indexes_round_trip() {
        let cases = [("", vec![]), ("1", vec![1]), ("1,2", vec![1, 2]), ("1,3-5,7", vec![1, 3, 4, 5, 7])];
        for (text, indexes) in cases {
            let set: BTreeSet<i32> = indexes.iter().copied().collect();
            assert_eq!(format_indexes(&set), text);
            assert_eq!(parse_indexes(text, 10), set);
        }
        assert_eq!(parse_indexes("0-3,x,8-12", 10), [0, 1, 2, 3, 8, 9].into());
        assert_eq!(indexed_generate_name("pi", 7), "pi-7-");
        assert_eq!(indexed_generate_name(&"x".repeat(80), 12).len(), 58);
    }

    proptest::proptest! {
        /// Whatever the pods do, never more than `parallelism` active pods and never more
        /// successes counted than pods that succeeded.
        #[test]
        fn never_exceeds_parallelism(parallelism in 1i32..4, completions in 1i32..6, outcome in proptest::bool::ANY) {
            let outcome = if outcome { "Succeeded" } else { "Failed" };
            let (j, pods, _) = simulate(
                job(|s| (s.completions, s.parallelism, s.backoff_limit) = (Some(completions), Some(parallelism), Some(3))),
                outcome,
                200,
            );
            let status = j.status.unwrap();
            proptest::prop_assert!(status.active.unwrap_or(0) <= parallelism);
            let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count();
            proptest::prop_assert_eq!(status.succeeded.unwrap_or(0) as usize, succeeded);
            let finished = is_finished(&Job { status: Some(status), ..j });
            proptest::prop_assert!(finished);
        }
    }
}
