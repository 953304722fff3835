//! Jobs and CronJobs against a real API server (in this process), the real scheduler, hollow
//! nodes and the controllers: what a user sees through the API.
//!
//! Hollow nodes run pods forever (they never finish a container), so these tests play the
//! kubelet's last part themselves: they mark running pods Succeeded or Failed through the pod
//! status, with a terminated container state. CronJobs read a test clock that the tests move.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job, JobCondition};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tug_testkit::eventually;

mod support;

use support::{Cluster, DEADLINE, Setup};

const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// The cluster of these tests: two hollow nodes; the controllers read a test clock.
async fn cluster() -> Cluster {
    let cluster = Cluster::start_with(Setup { test_clock: true, ..Setup::default() }).await;
    cluster.nodes("batch", 2);
    cluster
}

fn job(name: &str, spec: serde_json::Value) -> Job {
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": pod_template(name)},
    });
    merge(&mut job["spec"], spec);
    serde_json::from_value(job).expect("a valid Job")
}

fn pod_template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1"}]},
    })
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// The pods of a Job, as `kubectl get pods -l job-name=<job>` lists them.
async fn pods_of(api: &Api<Pod>, job: &str) -> Result<Vec<Pod>, String> {
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    api.list(&params).await.map(|l| l.items).map_err(|e| e.to_string())
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// What a kubelet reports when the pod's only container exits: the phase, the container's
/// terminated state and the Ready condition turned False.
async fn finish(api: &Api<Pod>, pod: &str, outcome: &str) {
    let exit_code = if outcome == "Succeeded" { 0 } else { 1 };
    let reason = if outcome == "Succeeded" { "Completed" } else { "Error" };
    let now = Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": outcome,
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
        "containerStatuses": [{
            "name": "main", "image": "busybox:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": now, "finishedAt": now}},
        }],
    }});
    api.patch_status(pod, &PatchParams::default(), &Patch::Strategic(&status)).await.expect("pod status patched");
}

/// Finishes every running pod of the Job with `outcome`; returns how many were active before.
async fn finish_running(api: &Api<Pod>, job: &str, outcome: &str) -> Result<usize, String> {
    let pods = pods_of(api, job).await?;
    for pod in pods.iter().filter(|p| phase(p) == "Running" && p.metadata.deletion_timestamp.is_none()) {
        finish(api, &pod.name_any(), outcome).await;
    }
    Ok(pods.iter().filter(|p| is_active(p)).count())
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_ && c.status == "True")
}

/// The messages of the events with `reason` about `name`.
async fn events(client: &Client, name: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.expect("events list");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_ten_completions_three_at_a_time() {
    let cluster = cluster().await;
    let (jobs, pods) = (cluster.api::<Job>(), cluster.api::<Pod>());
    let spec = json!({"parallelism": 3, "completions": 10});
    jobs.create(&PostParams::default(), &job("count", spec)).await.expect("Job created");

    let most_active = AtomicUsize::new(0);
    let done = eventually("the Job to complete", DEADLINE, || async {
        let active = finish_running(&pods, "count", "Succeeded").await?;
        most_active.fetch_max(active, Ordering::SeqCst);
        let job = jobs.get("count").await.map_err(|e| e.to_string())?;
        let reported = job.status.as_ref().and_then(|s| s.active).unwrap_or(0);
        most_active.fetch_max(usize::try_from(reported).unwrap_or(0), Ordering::SeqCst);
        condition(&job, "Complete").map(|_| job.clone()).ok_or_else(|| format!("{:?}", job.status))
    })
    .await;
    assert!(most_active.load(Ordering::SeqCst) <= 3, "never more than parallelism pods at once");
    let status = done.status.expect("a status");
    assert_eq!(status.succeeded, Some(10));
    assert_eq!(status.active, None);
    assert!(status.completion_time.is_some(), "completionTime set");
    assert!(condition(&Job { status: Some(status.clone()), ..Job::default() }, "SuccessCriteriaMet").is_some());
    assert_eq!(status.uncounted_terminated_pods.and_then(|u| u.succeeded), None, "every pod counted");

    let all = pods_of(&pods, "count").await.expect("pods");
    assert_eq!(all.len(), 10, "exactly ten pods ran");
    assert!(all.iter().all(|p| phase(p) == "Succeeded" && p.name_any().starts_with("count-")));
    assert!(all.iter().all(|p| !p.finalizers().iter().any(|f| f == TRACKING_FINALIZER)), "counted pods are released");
    let names: BTreeSet<String> = all.iter().map(|p| format!("Created pod: {}", p.name_any())).collect();
    eventually("a SuccessfulCreate event per pod", DEADLINE, || async {
        let created: BTreeSet<String> =
            events(&cluster.client, "count", "SuccessfulCreate").await.into_iter().collect();
        if created == names { Ok(()) } else { Err(format!("{created:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_fails_once_its_pods_fail_beyond_the_backoff_limit() {
    let cluster = cluster().await;
    let (jobs, pods) = (cluster.api::<Job>(), cluster.api::<Pod>());
    let spec = json!({"parallelism": 2, "completions": 2, "backoffLimit": 1});
    jobs.create(&PostParams::default(), &job("flaky", spec)).await.expect("Job created");

    let failed = eventually("the Job to fail", DEADLINE, || async {
        finish_running(&pods, "flaky", "Failed").await?;
        let job = jobs.get("flaky").await.map_err(|e| e.to_string())?;
        condition(&job, "Failed").cloned().ok_or_else(|| format!("{:?}", job.status))
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(failed.message.as_deref(), Some("Job has reached the specified backoff limit"));
    let status = jobs.get("flaky").await.expect("the Job").status.expect("a status");
    assert_eq!(status.failed, Some(2), "two failures: one beyond backoffLimit 1");
    assert_eq!((status.active, status.succeeded), (None, None));
    assert!(status.completion_time.is_none(), "a failed Job has no completionTime");
    // The second failure came before the first one's 10 s replacement back-off ran out.
    assert_eq!(pods_of(&pods, "flaky").await.expect("pods").len(), 2, "no replacement pods");
    eventually("the BackoffLimitExceeded warning", DEADLINE, || async {
        let seen = events(&cluster.client, "flaky", "BackoffLimitExceeded").await;
        if seen.is_empty() { Err("none".to_string()) } else { Ok(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_takes_its_pods_with_it() {
    let cluster = cluster().await;
    let (jobs, pods) = (cluster.api::<Job>(), cluster.api::<Pod>());
    jobs.create(&PostParams::default(), &job("doomed", json!({"parallelism": 2, "completions": 4})))
        .await
        .expect("Job created");
    eventually("two running pods", DEADLINE, || async {
        let running = pods_of(&pods, "doomed").await?.iter().filter(|p| phase(p) == "Running").count();
        if running == 2 { Ok(()) } else { Err(format!("{running} running")) }
    })
    .await;
    // kubectl's default: Background. The pods still hold the Job's tracking finalizer.
    jobs.delete("doomed", &DeleteParams::background()).await.expect("Job deleted");
    eventually("the pods to be gone", DEADLINE, || async {
        let left = pods_of(&pods, "doomed").await?;
        let seen: Vec<_> = left.iter().map(|p| (p.name_any(), p.finalizers().to_vec())).collect();
        if left.is_empty() { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_starts_jobs_on_schedule_one_at_a_time_and_keeps_history() {
    let cluster = cluster().await;
    let (cronjobs, jobs, pods) = (cluster.api::<CronJob>(), cluster.api::<Job>(), cluster.api::<Pod>());
    let cronjob: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/1 * * * *",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"template": pod_template("tick")}},
        },
    }))
    .expect("a valid CronJob");
    let created = cronjobs.create(&PostParams::default(), &cronjob).await.expect("CronJob created");
    let created_at = created.metadata.creation_timestamp.expect("creationTimestamp").0.as_second();
    let first = Timestamp::from_second((created_at / 60 + 1) * 60).expect("a time");
    let second = Timestamp::from_second(first.as_second() + 60).expect("a time");
    let job_name = |t: Timestamp| format!("tick-{}", t.as_second() / 60);
    let poked = AtomicUsize::new(0);
    // A CronJob comes back by itself when its next time is due on the real clock; after the
    // test moves its clock, a change to the object makes it look now.
    let poke = || async {
        let n = poked.fetch_add(1, Ordering::SeqCst);
        let patch = json!({"metadata": {"annotations": {"test/poke": n.to_string()}}});
        cronjobs.patch("tick", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("CronJob patched");
    };
    let last_schedule = || async {
        let cj = cronjobs.get("tick").await.map_err(|e| e.to_string())?;
        Ok::<_, String>((cj.status.as_ref().and_then(|s| s.last_schedule_time.clone()).map(|t| t.0), cj))
    };

    // The first scheduled minute passes: its Job starts and runs.
    cluster.set_clock(first + jiff::SignedDuration::from_secs(1));
    poke().await;
    eventually("the first scheduled Job", DEADLINE, || async {
        let job = jobs.get_opt(&job_name(first)).await.map_err(|e| e.to_string())?;
        let (scheduled, _) = last_schedule().await?;
        if job.is_some() && scheduled == Some(first) { Ok(()) } else { Err(format!("{job:?}, {scheduled:?}")) }
    })
    .await;
    eventually("its pod to run", DEADLINE, || async {
        let running = pods_of(&pods, &job_name(first)).await?.iter().filter(|p| phase(p) == "Running").count();
        if running == 1 { Ok(()) } else { Err(format!("{running} running")) }
    })
    .await;

    // The next minute passes while it runs: Forbid holds the next Job back.
    cluster.set_clock(second + jiff::SignedDuration::from_secs(1));
    poke().await;
    eventually("the JobAlreadyActive event", DEADLINE, || async {
        let seen = events(&cluster.client, "tick", "JobAlreadyActive").await;
        if seen.is_empty() { Err("none".to_string()) } else { Ok(()) }
    })
    .await;
    let (scheduled, cj) = last_schedule().await.expect("the CronJob");
    assert_eq!(scheduled, Some(first), "the held-back time is not recorded as scheduled");
    assert!(jobs.get_opt(&job_name(second)).await.expect("get").is_none(), "no second Job while the first runs");
    let active: Vec<_> =
        cj.status.and_then(|s| s.active).unwrap_or_default().into_iter().filter_map(|r| r.name).collect();
    assert_eq!(active, [job_name(first)], "status.active lists the running Job");

    // The first Job finishes: the held-back run starts.
    finish_running(&pods, &job_name(first), "Succeeded").await.expect("pods finished");
    eventually("the second Job once the first completed", DEADLINE, || async {
        let job = jobs.get_opt(&job_name(second)).await.map_err(|e| e.to_string())?;
        let (scheduled, _) = last_schedule().await?;
        if job.is_some() && scheduled == Some(second) { Ok(()) } else { Err(format!("{job:?}, {scheduled:?}")) }
    })
    .await;

    // The second completes too: with a history of one, the first Job and its pod are deleted.
    eventually("the second Job to complete", DEADLINE, || async {
        finish_running(&pods, &job_name(second), "Succeeded").await?;
        let job = jobs.get(&job_name(second)).await.map_err(|e| e.to_string())?;
        condition(&job, "Complete").map(drop).ok_or_else(|| format!("{:?}", job.status))
    })
    .await;
    eventually("the older finished Job to be deleted", DEADLINE, || async {
        let names: Vec<String> =
            jobs.list(&ListParams::default()).await.map_err(|e| e.to_string())?.iter().map(|j| j.name_any()).collect();
        if names == [job_name(second)] { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;
    eventually("the deleted Job's pod to go", DEADLINE, || async {
        let left = pods_of(&pods, &job_name(first)).await?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", left.iter().map(|p| p.name_any()).collect::<Vec<_>>()))
        }
    })
    .await;
    let (_, cj) = last_schedule().await.expect("the CronJob");
    let status = cj.status.expect("a status");
    assert!(status.last_successful_time.is_some(), "lastSuccessfulTime set");
    assert_eq!(status.active, None, "nothing runs");
}
