//! The CronJob controller's pure core (batch/v1 CronJob), after Kubernetes'
//! `pkg/controller/cronjob/cronjob_controllerv2.go`.
//!
//! [`reconcile`] decides, from a CronJob, the Jobs it controls and the time, whether to start a
//! Job for the most recent scheduled time, which Jobs to delete (`concurrencyPolicy: Replace`,
//! history limits), the status, the events and when the next schedule is due.
//!
//! Differences from Kubernetes, on purpose:
//! - Without `spec.timeZone` the schedule is read in UTC; Kubernetes uses the
//!   controller-manager's local zone, which is UTC in the usual setup.
//! - `status.active` is level-triggered: the observed unfinished Jobs the CronJob controls. A
//!   Job just created shows up there once the loop's cache sees it (Kubernetes writes the
//!   reference from the create response); `lastScheduleTime` is written with the creation, so
//!   the same scheduled time is never started twice. `UnexpectedJob` is reported only for Jobs
//!   not made from a schedule (without the scheduled-timestamp annotation).
//! - Missed schedules are found exactly (Kubernetes estimates them from the interval of the
//!   first two), still reporting more than 100 as `TooManyMissedTimes` and starting the latest.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use tug_k8s::cron::Schedule;

use crate::events::Note;
use crate::job::core::{finished_condition, is_finished};
use crate::pods::{controller_ref, is_deleting};

/// Annotation with the scheduled time a Job was started for (RFC 3339, in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Kubernetes' padding on the requeue, against clock skew.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed start times than this are reported as a warning.
const TOO_MANY_MISSED: usize = 100;

/// Everything the controller observed for one CronJob.
#[derive(Debug)]
pub struct Observed<'a> {
    pub cronjob: &'a CronJob,
    /// The Jobs whose controller reference is this CronJob.
    pub jobs: Vec<&'a Job>,
    pub now: Timestamp,
}

/// The writes, in order.
// Whole objects, as the controllers' contract has them; a plan lives for one reconcile.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this Job (fixed name, owner reference set). AlreadyExists is fine: the next
    /// reconcile sees the Job.
    CreateJob(Job),
    /// Delete with a uid precondition and Background propagation (the GC removes its pods).
    DeleteJob { name: String, uid: String },
}

/// What to do about the CronJob.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The complete new status; write it only if it differs from the current one.
    pub status: CronJobStatus,
    /// Events as Kubernetes' cronjob controller emits them (assuming the actions succeed).
    pub events: Vec<Note>,
    /// Until the next scheduled time (plus 100ms).
    pub requeue_after: Option<Duration>,
}

/// The pure core.
pub fn reconcile(o: &Observed) -> Plan {
    let cj = o.cronjob;
    let old = cj.status.clone().unwrap_or_default();
    let mut plan = Plan { actions: Vec::new(), status: old.clone(), events: Vec::new(), requeue_after: None };
    let mut jobs: Vec<&Job> = o.jobs.iter().copied().filter(|j| !is_deleting(&j.metadata)).collect();
    jobs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    track_jobs(o, &jobs, &old, &mut plan);
    clean_up_history(o, &jobs, &mut plan);
    if !is_deleting(&cj.metadata) {
        schedule(o, &jobs, &mut plan);
    }
    plan
}

/// `status.active`, `lastSuccessfulTime` and the events about Jobs that finished, vanished or
/// appeared.
fn track_jobs(o: &Observed, jobs: &[&Job], old: &CronJobStatus, plan: &mut Plan) {
    let old_active = old.active.as_deref().unwrap_or_default();
    let was_active = |j: &Job| old_active.iter().find(|r| r.uid.is_some() && r.uid == j.metadata.uid);
    let mut active = Vec::new();
    for j in jobs {
        let name = j.metadata.name.clone().unwrap_or_default();
        match (was_active(j), finished_condition(j)) {
            (Some(existing), None) => active.push(existing.clone()),
            (None, None) => {
                if !j.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(SCHEDULED_TIMESTAMP)) {
                    plan.events.push(Note::warning(
                        "UnexpectedJob",
                        format!("Saw a job that the controller did not create or forgot: {name}"),
                    ));
                }
                active.push(reference(j));
            }
            (Some(_), Some(how)) => {
                plan.events.push(Note::normal("SawCompletedJob", format!("Saw completed job: {name}, status: {how}")));
            }
            (None, Some(_)) => {}
        }
        if finished_condition(j) == Some("Complete")
            && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.as_ref())
            && plan.status.last_successful_time.as_ref().is_none_or(|t| t.0 < done.0)
        {
            plan.status.last_successful_time = Some(done.clone());
        }
    }
    for gone in old_active.iter().filter(|r| !o.jobs.iter().any(|j| r.uid.is_some() && j.metadata.uid == r.uid)) {
        let name = gone.name.as_deref().unwrap_or_default();
        plan.events.push(Note::normal("MissingJob", format!("Active job went missing: {name}")));
    }
    plan.status.active = Some(active).filter(|a| !a.is_empty());
}

/// Deletes the oldest finished Jobs beyond `successfulJobsHistoryLimit` (default 3) and
/// `failedJobsHistoryLimit` (default 1), oldest start first.
fn clean_up_history(o: &Observed, jobs: &[&Job], plan: &mut Plan) {
    let spec = &o.cronjob.spec;
    let limits = [
        ("Complete", spec.as_ref().and_then(|s| s.successful_jobs_history_limit).unwrap_or(3)),
        ("Failed", spec.as_ref().and_then(|s| s.failed_jobs_history_limit).unwrap_or(1)),
    ];
    for (how, limit) in limits {
        let mut finished: Vec<&Job> = jobs.iter().copied().filter(|j| finished_condition(j) == Some(how)).collect();
        let excess = finished.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        // Unstarted Jobs sort last; equal start times by name.
        finished.sort_by_key(|j| {
            let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            (start.is_none(), start, j.metadata.name.clone())
        });
        for j in finished.into_iter().take(excess) {
            delete_job(j, plan);
        }
    }
}

fn delete_job(j: &Job, plan: &mut Plan) {
    let name = j.metadata.name.clone().unwrap_or_default();
    plan.actions.push(Action::DeleteJob { name: name.clone(), uid: j.metadata.uid.clone().unwrap_or_default() });
    plan.events.push(Note::normal("SuccessfulDelete", format!("Deleted job {name}")));
    if let Some(active) = plan.status.active.as_mut() {
        active.retain(|r| r.uid != j.metadata.uid);
    }
    if plan.status.active.as_ref().is_some_and(Vec::is_empty) {
        plan.status.active = None;
    }
}

/// Starts the Job for the most recent unmet scheduled time, if any and if allowed.
fn schedule(o: &Observed, jobs: &[&Job], plan: &mut Plan) {
    let cj = o.cronjob;
    let Some(spec) = cj.spec.as_ref() else { return };
    let tz = match spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(e) => {
                plan.events.push(Note::warning("UnknownTimeZone", format!("invalid timeZone: {name:?}: {e}")));
                return;
            }
        },
    };
    if spec.suspend == Some(true) {
        return;
    }
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            plan.events
                .push(Note::warning("UnparseableSchedule", format!("unparseable schedule: {:?} : {e}", spec.schedule)));
            return;
        }
    };
    // A zone in the schedule itself (only an old object can have one: the API refuses it on
    // create) wins over spec.timeZone, with Kubernetes' warning.
    let tz = match schedule.time_zone() {
        None => tz,
        Some(name) => {
            plan.events.push(Note::warning(
                "UnsupportedSchedule",
                format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            ));
            match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    plan.events.push(Note::warning("UnknownTimeZone", format!("invalid time zone {name:?}: {e}")));
                    return;
                }
            }
        }
    };
    let now = o.now;
    let since =
        plan.status.last_schedule_time.as_ref().or(cj.metadata.creation_timestamp.as_ref()).map_or(now, |t| t.0);
    if schedule.next_after(since, &tz).is_none() {
        plan.events.push(Note::warning(
            "InvalidSchedule",
            format!("invalid schedule: {} : the schedule never matches a date", spec.schedule),
        ));
        return;
    }
    // Nothing older than the starting deadline will be started anyway.
    let earliest = match spec.starting_deadline_seconds {
        Some(deadline) => since.max(now.saturating_sub(SignedDuration::from_secs(deadline)).unwrap_or(since)),
        None => since,
    };
    let (most_recent, missed) = most_recent_time(&schedule, &tz, earliest, now);
    plan.requeue_after = requeue(&schedule, &tz, most_recent.unwrap_or(since), now);
    let Some(scheduled) = most_recent else { return };
    if missed > TOO_MANY_MISSED {
        plan.events.push(Note::warning(
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
        ));
    }
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled.saturating_add(SignedDuration::from_secs(deadline)).is_ok_and(|latest| latest < now)
    {
        let when = scheduled.to_zoned(TimeZone::UTC).strftime("%a, %d %b %Y %H:%M:%S +0000").to_string();
        plan.events.push(Note::warning("MissSchedule", format!("Missed scheduled time to start a job: {when}")));
        return;
    }
    let name = job_name(cj, scheduled);
    let already_started = plan.status.last_schedule_time.as_ref().is_some_and(|t| t.0 == scheduled)
        || jobs.iter().any(|j| j.metadata.name.as_deref() == Some(name.as_str()));
    if already_started {
        // A Job from a previous plan whose status write was lost: record it now.
        plan.status.last_schedule_time = Some(Time(scheduled));
        return;
    }
    let active: Vec<&Job> = jobs.iter().copied().filter(|j| !is_finished(j)).collect();
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            plan.events.push(Note::normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            ));
            return;
        }
        Some("Replace") => {
            for j in active {
                delete_job(j, plan);
            }
        }
        _ => {}
    }
    plan.actions.push(Action::CreateJob(job_from_template(cj, scheduled, &tz, name.clone())));
    plan.events.push(Note::normal("SuccessfulCreate", format!("Created job {name}")));
    plan.status.last_schedule_time = Some(Time(scheduled));
}

/// The latest scheduled time in `(earliest, now]` and how many there are (counted up to
/// [`TOO_MANY_MISSED`] + 1). Counting stops early; the latest is then found from windows
/// before `now` that double in size, so a schedule every minute missed for a year costs a few
/// hundred steps, not half a million.
fn most_recent_time(
    schedule: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut latest = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(next) = schedule.next_after(t, tz).filter(|n| *n <= now) {
        latest = Some(next);
        count += 1;
        if count > TOO_MANY_MISSED {
            break;
        }
        t = next;
    }
    if count <= TOO_MANY_MISSED {
        return (latest, count);
    }
    let mut window = SignedDuration::from_mins(1);
    loop {
        let from = now.saturating_sub(window).unwrap_or(earliest).max(earliest);
        let mut found = None;
        let mut t = from;
        while let Some(next) = schedule.next_after(t, tz).filter(|n| *n <= now) {
            found = Some(next);
            t = next;
        }
        if found.is_some() || from == earliest {
            return (found.or(latest), count);
        }
        window = window.saturating_mul(2);
    }
}

/// Until the next scheduled time after `base` (or after `now` if that one is already due).
fn requeue(schedule: &Schedule, tz: &TimeZone, base: Timestamp, now: Timestamp) -> Option<Duration> {
    let next = schedule.next_after(base, tz).filter(|n| *n > now).or_else(|| schedule.next_after(now, tz))?;
    Some(Duration::try_from(next.duration_since(now)).unwrap_or_default() + NEXT_SCHEDULE_DELTA)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`: the same scheduled time always
/// gives the same name, so a Job is never started twice for it.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!("{}-{}", cj.metadata.name.as_deref().unwrap_or_default(), scheduled.as_second().div_euclid(60))
}

/// The Job for one scheduled time: the template's labels, annotations and spec, owned by the
/// CronJob, annotated with the scheduled time.
fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone, name: String) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.to_string(), rfc3339(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref("batch/v1", "CronJob", &cj.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Go's RFC 3339 layout: `Z` for a zero offset, else `+hh:mm`.
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn reference(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cronjob(schedule: &str, edit: impl FnOnce(&mut CronJobSpec)) -> CronJob {
        let mut spec = CronJobSpec {
            schedule: schedule.into(),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".into(), "report".into())].into()),
                    ..Default::default()
                }),
                spec: Some(JobSpec { backoff_limit: Some(2), ..Default::default() }),
            },
            ..Default::default()
        };
        edit(&mut spec);
        CronJob {
            metadata: ObjectMeta {
                name: Some("report".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(ts("2024-01-01T00:00:00Z"))),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    fn job(name: &str, finished: Option<(&str, &str)>) -> Job {
        let (condition, at) = finished.unzip();
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                annotations: Some([(SCHEDULED_TIMESTAMP.to_string(), "x".to_string())].into()),
                ..Default::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: at.map(|a| Time(ts(a))),
                completion_time: at.filter(|_| condition == Some("Complete")).map(|a| Time(ts(a))),
                conditions: condition
                    .map(|c| vec![JobCondition { type_: c.into(), status: "True".into(), ..Default::default() }]),
                ..Default::default()
            }),
        }
    }

    fn run(cj: &CronJob, jobs: &[Job], now: &str) -> Plan {
        reconcile(&Observed { cronjob: cj, jobs: jobs.iter().collect(), now: ts(now) })
    }

    fn created(plan: &Plan) -> Vec<&Job> {
        plan.actions.iter().filter_map(|a| if let Action::CreateJob(j) = a { Some(j) } else { None }).collect()
    }

    fn deleted(plan: &Plan) -> Vec<&str> {
        plan.actions
            .iter()
            .filter_map(|a| if let Action::DeleteJob { name, .. } = a { Some(name.as_str()) } else { None })
            .collect()
    }

    fn reasons(plan: &Plan) -> Vec<&str> {
        plan.events.iter().map(|e| e.reason.as_str()).collect()
    }

    #[test]
    fn a_due_schedule_starts_a_job_named_after_its_minute() {
        let cj = cronjob("*/5 * * * *", |_| {});
        let plan = run(&cj, &[], "2024-01-01T00:07:30Z");
        let jobs = created(&plan);
        assert_eq!(jobs.len(), 1);
        let j = jobs[0];
        let scheduled = ts("2024-01-01T00:05:00Z");
        assert_eq!(j.metadata.name.as_deref(), Some(format!("report-{}", scheduled.as_second() / 60).as_str()));
        assert_eq!(j.metadata.labels.as_ref().unwrap()["app"], "report");
        assert_eq!(j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP], "2024-01-01T00:05:00Z");
        let owner = &j.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("CronJob", "cj-uid", Some(true)));
        assert_eq!(j.spec.as_ref().unwrap().backoff_limit, Some(2));
        assert_eq!(plan.status.last_schedule_time, Some(Time(scheduled)));
        assert_eq!(
            plan.events,
            vec![Note::normal("SuccessfulCreate", format!("Created job {}", j.metadata.name.clone().unwrap()))]
        );
        assert_eq!(plan.requeue_after, Some(Duration::from_millis(150_100)), "until 00:10 plus 100ms");

        // The same time is not started twice, whether or not the status write landed.
        let mut after = cj.clone();
        after.status = Some(plan.status.clone());
        assert!(created(&run(&after, &[], "2024-01-01T00:08:00Z")).is_empty());
        let existing = job(j.metadata.name.as_deref().unwrap(), None);
        let plan = run(&cj, &[existing], "2024-01-01T00:08:00Z");
        assert!(created(&plan).is_empty());
        assert_eq!(plan.status.last_schedule_time, Some(Time(scheduled)));
        assert_eq!(plan.status.active.as_ref().unwrap()[0].name.as_deref(), j.metadata.name.as_deref());
    }

    #[test]
    fn schedules_are_read_in_the_time_zone() {
        let cj = cronjob("0 9 * * *", |s| s.time_zone = Some("Europe/Paris".into()));
        let plan = run(&cj, &[], "2024-01-02T08:00:30Z");
        let j = created(&plan)[0];
        assert_eq!(j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP], "2024-01-02T09:00:00+01:00");
        assert_eq!(plan.status.last_schedule_time, Some(Time(ts("2024-01-02T08:00:00Z"))));

        let bad = cronjob("0 9 * * *", |s| s.time_zone = Some("Mars/Olympus".into()));
        let plan = run(&bad, &[], "2024-01-02T08:00:30Z");
        assert!(plan.actions.is_empty());
        assert_eq!(reasons(&plan), ["UnknownTimeZone"]);
    }

    #[test]
    fn nothing_due_waits_for_the_next_time() {
        let cj = cronjob("0 * * * *", |_| {});
        let plan = run(&cj, &[], "2024-01-01T00:30:00Z");
        assert!(plan.actions.is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(1800) + NEXT_SCHEDULE_DELTA));
    }

    #[test]
    fn concurrency_policies() {
        let running = job("report-1", None);
        let now = "2024-01-01T01:00:10Z";
        let mut cj = cronjob("0 * * * *", |s| s.concurrency_policy = Some("Forbid".into()));
        cj.status = Some(CronJobStatus {
            last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))),
            active: Some(vec![reference(&running)]),
            ..Default::default()
        });
        let plan = run(&cj, std::slice::from_ref(&running), now);
        assert!(plan.actions.is_empty());
        assert_eq!(reasons(&plan), ["JobAlreadyActive"]);

        cj.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
        let plan = run(&cj, std::slice::from_ref(&running), now);
        assert_eq!(deleted(&plan), ["report-1"]);
        assert_eq!(created(&plan).len(), 1);
        assert_eq!(reasons(&plan), ["SuccessfulDelete", "SuccessfulCreate"]);
        assert_eq!(plan.status.active, None);

        cj.spec.as_mut().unwrap().concurrency_policy = None;
        let plan = run(&cj, &[running], now);
        assert!(deleted(&plan).is_empty());
        assert_eq!(created(&plan).len(), 1, "Allow runs them side by side");
    }

    #[test]
    fn finished_and_missing_jobs_leave_the_active_list() {
        let done = job("report-1", Some(("Complete", "2024-01-01T00:00:05Z")));
        let mut cj = cronjob("0 * * * *", |_| {});
        cj.status = Some(CronJobStatus {
            last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))),
            active: Some(vec![reference(&done), reference(&job("report-gone", None))]),
            ..Default::default()
        });
        let plan = run(&cj, &[done], "2024-01-01T00:30:00Z");
        assert_eq!(plan.status.active, None);
        assert_eq!(plan.status.last_successful_time, Some(Time(ts("2024-01-01T00:00:05Z"))));
        assert_eq!(
            plan.events,
            vec![
                Note::normal("SawCompletedJob", "Saw completed job: report-1, status: Complete"),
                Note::normal("MissingJob", "Active job went missing: report-gone"),
            ]
        );
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let cj = cronjob("0 0 1 1 *", |s| s.successful_jobs_history_limit = Some(2));
        let jobs = [
            job("a", Some(("Complete", "2024-01-01T01:00:00Z"))),
            job("b", Some(("Complete", "2024-01-01T00:00:00Z"))),
            job("c", Some(("Complete", "2024-01-01T02:00:00Z"))),
            job("d", Some(("Failed", "2024-01-01T03:00:00Z"))),
            job("e", Some(("Failed", "2024-01-01T04:00:00Z"))),
            job("f", None),
        ];
        let plan = run(&cj, &jobs, "2024-06-01T00:00:00Z");
        assert_eq!(deleted(&plan), ["b", "d"], "two successes and one failure (the default) are kept");
    }

    #[test]
    fn missed_schedules() {
        // Down for a day with an every-minute schedule: start only the latest, and warn.
        let mut cj = cronjob("* * * * *", |_| {});
        cj.status =
            Some(CronJobStatus { last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))), ..Default::default() });
        let plan = run(&cj, &[], "2024-01-02T00:00:30Z");
        assert_eq!(reasons(&plan), ["TooManyMissedTimes", "SuccessfulCreate"]);
        assert_eq!(plan.status.last_schedule_time, Some(Time(ts("2024-01-02T00:00:00Z"))));

        // Weekdays at 9 seen on a Monday morning: Friday's run is the latest.
        let (latest, count) = most_recent_time(
            &Schedule::parse("0 9 * * 1-5").unwrap(),
            &TimeZone::UTC,
            ts("2023-01-01T00:00:00Z"),
            ts("2024-09-09T08:00:00Z"),
        );
        assert_eq!((latest, count), (Some(ts("2024-09-06T09:00:00Z")), TOO_MANY_MISSED + 1));

        // Past the starting deadline: skipped with a warning.
        let mut late = cronjob("0 * * * *", |s| s.starting_deadline_seconds = Some(60));
        late.status =
            Some(CronJobStatus { last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))), ..Default::default() });
        let plan = run(&late, &[], "2024-01-01T01:05:00Z");
        assert!(plan.actions.is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(55 * 60) + NEXT_SCHEDULE_DELTA));
        let plan = run(&late, &[], "2024-01-01T01:00:40Z");
        assert_eq!(created(&plan).len(), 1, "within the deadline");
    }

    #[test]
    fn suspended_bad_or_impossible_schedules_start_nothing() {
        let now = "2024-03-01T00:00:00Z";
        let suspended = cronjob("* * * * *", |s| s.suspend = Some(true));
        assert!(run(&suspended, &[], now).actions.is_empty());
        let plan = run(&cronjob("not a schedule", |_| {}), &[], now);
        assert_eq!(reasons(&plan), ["UnparseableSchedule"]);
        let plan = run(&cronjob("0 0 30 2 *", |_| {}), &[], now);
        assert_eq!((reasons(&plan), plan.requeue_after), (vec!["InvalidSchedule"], None));
        // A zone inside the schedule (only old objects have one) runs, with Kubernetes' warning.
        let plan = run(&cronjob("TZ=UTC 0 * * * *", |_| {}), &[], now);
        assert_eq!(reasons(&plan)[0], "UnsupportedSchedule");
        let plan = run(&cronjob("TZ=Mars/Olympus 0 * * * *", |_| {}), &[], now);
        assert_eq!(reasons(&plan), ["UnsupportedSchedule", "UnknownTimeZone"]);
    }
}
