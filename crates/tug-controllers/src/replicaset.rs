//! The ReplicaSet controller: keeps exactly `spec.replicas` active pods matching the selector.
//!
//! [`reconcile`] is the pure core: from the set and the pods it controls, how many pods to
//! create, which to delete (pending and not-ready ones first, Kubernetes' order) and the status.
//! [`Controller`] is the loop: it adopts orphans and releases pods that stopped matching
//! ([`crate::claim`]), waits for its previous writes to show in the cache (expectations), and
//! carries the plan out — creations in slow-start batches (1, 2, 4, …) that stop at the first
//! failure, as Kubernetes does, so a quota or admission error costs one request, not a thousand.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::claim::claim;
use crate::events::{Note, Recorder};
use crate::pods::{self, is_active, is_available, is_ready};
use crate::runtime::{Cache, Expectations, Informer, Key, Queue, dependents};

/// At most this many pods are created or deleted per reconcile (Kubernetes' burstReplicas).
pub const BURST_REPLICAS: usize = 500;

/// What the controller observed of one ReplicaSet.
#[derive(Debug)]
pub struct Observed<'a> {
    pub set: &'a ReplicaSet,
    /// The pods it controls, in any state.
    pub pods: Vec<&'a Pod>,
    pub now: jiff::Timestamp,
    /// Why the last creation failed, if it did (the `ReplicaFailure` condition).
    pub create_failure: Option<String>,
}

/// What to do about it.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create from the template.
    pub create: usize,
    /// Pods to delete: (name, uid).
    pub delete: Vec<(String, String)>,
    pub status: ReplicaSetStatus,
    /// When pods become available by time alone (minReadySeconds).
    pub requeue_after: Option<Duration>,
}

/// The pure core.
pub fn reconcile(o: &Observed) -> Plan {
    let spec = o.set.spec.as_ref();
    let want = usize::try_from(spec.and_then(|s| s.replicas).unwrap_or(1).max(0)).unwrap_or(0);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut active: Vec<&Pod> = o.pods.iter().copied().filter(|p| is_active(p)).collect();
    let mut plan = Plan { status: status(o, &active, min_ready), ..Plan::default() };
    if pods::is_deleting(&o.set.metadata) {
        return plan;
    }
    if active.len() < want {
        plan.create = (want - active.len()).min(BURST_REPLICAS);
    } else if active.len() > want {
        active.sort_by(|a, b| pods::deletion_order(a, b));
        plan.delete = active
            .iter()
            .take((active.len() - want).min(BURST_REPLICAS))
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), p.metadata.uid.clone().unwrap_or_default()))
            .collect();
    }
    // Ready but not yet available pods become available by time alone.
    plan.requeue_after = active
        .iter()
        .filter(|p| !is_available(p, min_ready, o.now))
        .filter_map(|p| pods::available_at(p, min_ready))
        .min()
        .map(|at| Duration::try_from(at.duration_since(o.now)).unwrap_or_default() + Duration::from_millis(10));
    plan
}

fn status(o: &Observed, active: &[&Pod], min_ready: i32) -> ReplicaSetStatus {
    let template_labels = o.set.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref());
    let template_labels = template_labels.and_then(|m| m.labels.as_ref());
    let fully_labeled = active
        .iter()
        .filter(|p| {
            template_labels
                .into_iter()
                .flatten()
                .all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let available = active.iter().filter(|p| is_available(p, min_ready, o.now)).count();
    let previous = o.set.status.as_ref().and_then(|s| s.conditions.as_ref());
    let conditions = match &o.create_failure {
        Some(message) => {
            let since = previous
                .and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure"))
                .and_then(|c| c.last_transition_time.clone());
            Some(vec![ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some(message.clone()),
                last_transition_time: since.or(Some(Time(o.now))),
            }])
        }
        None => None,
    };
    ReplicaSetStatus {
        replicas: count(active.len()).unwrap_or(0),
        fully_labeled_replicas: count(fully_labeled),
        ready_replicas: count(ready),
        available_replicas: count(available),
        observed_generation: o.set.metadata.generation,
        conditions,
        terminating_replicas: None,
    }
}

/// Kubernetes omits zero counts (`omitempty`).
fn count(n: usize) -> Option<i32> {
    (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
}

/// Creates `count` things in batches of 1, 2, 4, … and stops at the first batch with a failure.
/// Returns how many were created and the first error.
pub async fn slow_start<F, Fut, E>(count: usize, create: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let (mut done, mut batch) = (0, 1);
    while done < count {
        let size = batch.min(count - done);
        let results = join_all((0..size).map(|_| create())).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        done += ok;
        if let Some(error) = results.into_iter().find_map(Result::err) {
            return (done, Some(error));
        }
        batch *= 2;
    }
    (done, None)
}

/// The loop around the core.
#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
    /// The last creation error per set, for the ReplicaFailure condition.
    failures: Arc<std::sync::Mutex<std::collections::HashMap<Key, String>>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("replicaset::Controller").field("queued", &self.queue.len()).finish()
    }
}

impl Controller {
    /// Wires the controller to the shared informers.
    pub fn new(client: kube::Client, sets: &mut Informer<ReplicaSet>, pods: &mut Informer<Pod>) -> Controller {
        let controller = Controller {
            recorder: Recorder::new(client.clone(), "replicaset-controller"),
            client,
            sets: sets.cache(),
            pods: pods.cache(),
            queue: Queue::new(),
            expectations: Expectations::default(),
            failures: Arc::default(),
        };
        let (queue, expectations) = (controller.queue.clone(), controller.expectations.clone());
        sets.on_change(move |old, new| match new {
            Some(set) => queue.add(Key::of(set)),
            None => {
                if let Some(old) = old {
                    expectations.forget(&Key::of(old));
                }
            }
        });
        let this = controller.clone();
        pods.on_change(move |old, new| this.pod_changed(old, new));
        controller
    }

    fn pod_changed(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let owner_of = |meta: &ObjectMeta| dependents::controller_key(meta, "apps/v1", "ReplicaSet");
        let enqueue = |key| self.queue.add_batched(key);
        let adopters = |pod: &Pod| {
            dependents::enqueue_selecting(
                pod,
                &self.sets,
                |s: &ReplicaSet| s.spec.as_ref().map(|s| &s.selector),
                enqueue,
            )
        };
        dependents::pod_changed(old, new, owner_of, &self.expectations, enqueue, adopters);
    }

    pub async fn run(self, workers: usize) {
        self.sets.wait_synced().await;
        self.pods.wait_synced().await;
        let queue = self.queue.clone();
        crate::runtime::run_workers(queue, workers, "replicaset", move |key| {
            let this = self.clone();
            async move { this.sync(&key).await }
        })
        .await;
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(set) = self.sets.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let owner_ref = pods::controller_ref("apps/v1", "ReplicaSet", &set.metadata);
        let selector = set.spec.as_ref().map(|s| &s.selector);
        // Read before the cache: an event landing between the two must not let a stale view act.
        let may_act = self.expectations.satisfied(key);
        let controlled = claim(&pods_api, &self.pods, &set.metadata, &owner_ref, selector).await?;
        let create_failure = self.failures.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned();
        let observed = Observed {
            set: &set,
            pods: controlled.iter().map(Arc::as_ref).collect(),
            now: jiff::Timestamp::now(),
            create_failure,
        };
        let plan = reconcile(&observed);
        if may_act && (plan.create > 0 || !plan.delete.is_empty()) {
            self.expectations.expect(key, plan.create, plan.delete.iter().map(|(_, uid)| uid.clone()));
            self.create_pods(&set, &owner_ref, plan.create, key).await;
            self.delete_pods(&set, &plan.delete, key).await;
        }
        self.write_status(&set, plan.status).await?;
        Ok(plan.requeue_after)
    }

    async fn create_pods(
        &self,
        set: &ReplicaSet,
        owner_ref: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
        count: usize,
        key: &Key,
    ) {
        if count == 0 {
            return;
        }
        let Some(template) = set.spec.as_ref().and_then(|s| s.template.as_ref()) else { return };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let prefix = pods::generate_name_prefix(&key.name);
        let (created, error) = slow_start(count, || {
            let pod = pods::pod_from_template(template, &key.namespace, owner_ref.clone(), None, &prefix);
            let api = api.clone();
            async move {
                let created = api.create(&PostParams::default(), &pod).await?;
                self.recorder.record(
                    set,
                    &Note::normal(
                        "SuccessfulCreate",
                        format!("Created pod: {}", created.metadata.name.unwrap_or_default()),
                    ),
                );
                Ok::<(), kube::Error>(())
            }
        })
        .await;
        // Pods that were never created will never be observed.
        for _ in created..count {
            self.expectations.creation_observed(key);
        }
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match error {
            Some(e) => {
                let message = format!("Error creating: {}", api_message(&e));
                self.recorder.record(set, &Note::warning("FailedCreate", message.clone()));
                failures.insert(key.clone(), message);
            }
            None => {
                failures.remove(key);
            }
        }
    }

    async fn delete_pods(&self, set: &ReplicaSet, victims: &[(String, String)], key: &Key) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        join_all(victims.iter().map(|(name, uid)| {
            let api = api.clone();
            async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..DeleteParams::default()
                };
                match api.delete(name, &params).await {
                    Ok(_) => {
                        self.recorder.record(set, &Note::normal("SuccessfulDelete", format!("Deleted pod: {name}")))
                    }
                    Err(e) => {
                        // Not deleted: the deletion will never be observed.
                        self.expectations.deletion_observed(key, uid);
                        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                            self.recorder.record(
                                set,
                                &Note::warning("FailedDelete", format!("Error deleting: {}", api_message(&e))),
                            );
                        }
                    }
                }
            }
        }))
        .await;
    }

    async fn write_status(&self, set: &ReplicaSet, status: ReplicaSetStatus) -> Result<(), kube::Error> {
        if set.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), set.metadata.namespace.as_deref().unwrap_or_default());
        let mut updated = set.clone();
        updated.status = Some(status);
        api.replace_status(set.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated).await?;
        Ok(())
    }
}

/// The message of an API error, as users see it in events.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn set(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { name: Some("web".into()), generation: Some(3), ..ObjectMeta::default() },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_at: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), uid: Some(format!("uid-{name}")), ..ObjectMeta::default() },
            spec: Some(PodSpec { node_name: node.map(str::to_string), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|s| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(jiff::Timestamp::from_second(s).unwrap())),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn creates_the_missing_pods_and_ignores_finished_or_deleting_ones() {
        let set = set(3, 0);
        let done = pod("done", Some("n"), "Succeeded", None);
        let mut going = pod("going", Some("n"), "Running", Some(1));
        going.metadata.deletion_timestamp = Some(Time(at(5)));
        let running = pod("a", Some("n"), "Running", Some(1));
        let o = Observed { set: &set, pods: vec![&done, &going, &running], now: at(10), create_failure: None };
        let plan = reconcile(&o);
        assert_eq!(plan.create, 2);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.status.replicas, 1);
        assert_eq!(plan.status.ready_replicas, Some(1));
        assert_eq!(plan.status.observed_generation, Some(3));
    }

    #[test]
    fn scales_down_unplaced_then_unready_pods_first() {
        let set = set(1, 0);
        let ready = pod("ready", Some("n"), "Running", Some(1));
        let unready = pod("unready", Some("n"), "Running", None);
        let pending = pod("pending", None, "Pending", None);
        let o = Observed { set: &set, pods: vec![&ready, &unready, &pending], now: at(10), create_failure: None };
        let plan = reconcile(&o);
        let names: Vec<_> = plan.delete.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["pending", "unready"]);
        assert_eq!(plan.delete[0].1, "uid-pending");
    }

    #[test]
    fn availability_follows_min_ready_seconds_and_asks_to_come_back() {
        let set = set(2, 10);
        let old = pod("old", Some("n"), "Running", Some(0));
        let new = pod("new", Some("n"), "Running", Some(8));
        let o = Observed { set: &set, pods: vec![&old, &new], now: at(12), create_failure: None };
        let plan = reconcile(&o);
        assert_eq!(plan.status.ready_replicas, Some(2));
        assert_eq!(plan.status.available_replicas, Some(1));
        let after = plan.requeue_after.unwrap();
        assert!(after >= Duration::from_secs(6) && after < Duration::from_secs(7), "{after:?}");
    }

    #[test]
    fn a_set_being_deleted_creates_nothing_and_a_failure_shows_as_a_condition() {
        let mut set = set(3, 0);
        set.metadata.deletion_timestamp = Some(Time(at(1)));
        let o = Observed { set: &set, pods: vec![], now: at(10), create_failure: Some("quota".into()) };
        let plan = reconcile(&o);
        assert_eq!(plan.create, 0);
        let condition = &plan.status.conditions.unwrap()[0];
        assert_eq!((condition.type_.as_str(), condition.reason.as_deref()), ("ReplicaFailure", Some("FailedCreate")));
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_the_first_failure() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (done, error) = slow_start(100, || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { if n == 5 { Err("boom") } else { Ok(()) } }
        })
        .await;
        // Batches 1 and 2 succeed (3 calls), batch 4 has the failure: 3 + 3 created, then stop.
        assert_eq!((done, error), (6, Some("boom")));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 7);
    }
}
