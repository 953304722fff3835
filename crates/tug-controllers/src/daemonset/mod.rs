//! The DaemonSet controller. [`core`] decides; [`Controller`] is the loop around it.
//!
//! Each sync adopts orphan pods matching the selector and releases pods that stopped matching
//! ([`crate::claim`]), gives the core every node and the set's pods, and carries the plan out:
//! creations in slow-start batches (1, 2, 4, …) that stop at the first failure, deletions with a
//! uid precondition. Creations and deletions are recorded as expectations, so a cache lagging
//! behind the controller's own writes never puts two pods on a node. Create events name the pod
//! the server generated.
//!
//! A node added, removed, or changed in what decides eligibility (labels, taints,
//! unschedulable, conditions) enqueues every DaemonSet: they are few, and any may now want or
//! refuse that node.

pub mod core;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::claim::claim;
use crate::events::{Note, Recorder};
use crate::pods;
use crate::runtime::{api_message, slow_start};
use crate::runtime::{Cache, Expectations, Informer, Key, Queue, dependents};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use self::core::{Action, Observed, Plan, reconcile};

/// The loop around the core.
#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    sets: Cache<DaemonSet>,
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("daemonset::Controller").field("queued", &self.queue.len()).finish()
    }
}

/// The DaemonSet controlling `pod`, if one does.
fn owner_key(meta: &ObjectMeta) -> Option<Key> {
    dependents::controller_key(meta, "apps/v1", "DaemonSet")
}

/// Did the node change in a way that can change a DaemonSet's verdict on it? Heartbeats and
/// other status churn do not.
pub fn eligibility_changed(old: &Node, new: &Node) -> bool {
    let spec =
        |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone().unwrap_or_default(), s.unschedulable == Some(true)));
    let conditions = |n: &Node| -> Vec<(String, String)> {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect()
    };
    old.metadata.labels != new.metadata.labels || spec(old) != spec(new) || conditions(old) != conditions(new)
}

/// The plan's notes minus the core's own create and delete notes: the loop reports those from
/// what actually happened, with the names the server gave.
fn notes_besides_writes(plan: &Plan) -> impl Iterator<Item = &Note> {
    plan.events.iter().filter(|n| !matches!(n.reason.as_str(), "SuccessfulCreate" | "SuccessfulDelete"))
}

impl Controller {
    /// Wires the controller to the shared informers.
    pub fn new(
        client: kube::Client,
        sets: &mut Informer<DaemonSet>,
        nodes: &mut Informer<Node>,
        pods: &mut Informer<Pod>,
    ) -> Controller {
        let controller = Controller {
            recorder: Recorder::new(client.clone(), "daemonset-controller"),
            client,
            sets: sets.cache(),
            nodes: nodes.cache(),
            pods: pods.cache(),
            queue: Queue::new(),
            expectations: Expectations::default(),
        };
        let (queue, expectations) = (controller.queue.clone(), controller.expectations.clone());
        sets.on_change(move |old, new| match (old, new) {
            (_, Some(set)) => queue.add(Key::of(set)),
            (Some(old), None) => expectations.forget(&Key::of(old)),
            (None, None) => {}
        });
        let this = controller.clone();
        nodes.on_change(move |old, new| {
            let relevant = match (old, new) {
                (Some(old), Some(new)) => eligibility_changed(old, new),
                _ => true,
            };
            if relevant {
                for set in this.sets.list() {
                    this.queue.add(Key::of(set.as_ref()));
                }
            }
        });
        let this = controller.clone();
        pods.on_change(move |old, new| this.pod_changed(old, new));
        controller
    }

    fn pod_changed(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let enqueue = |key| self.queue.add(key);
        let adopters = |pod: &Pod| {
            dependents::enqueue_selecting(
                pod,
                &self.sets,
                |s: &DaemonSet| s.spec.as_ref().map(|s| &s.selector),
                enqueue,
            )
        };
        dependents::dependent_changed(old, new, owner_key, &self.expectations, enqueue, adopters);
    }

    pub async fn run(self, workers: usize) {
        self.sets.wait_synced().await;
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        let queue = self.queue.clone();
        crate::runtime::run_workers(queue, workers, "daemonset", move |key| {
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
        let owner_ref = pods::controller_ref("apps/v1", "DaemonSet", &set.metadata);
        let selector = set.spec.as_ref().map(|s| &s.selector);
        // Read before the cache: an event landing between the two must not let a stale view act.
        let may_act = self.expectations.satisfied(key);
        let controlled = claim(&pods_api, &self.pods, &set.metadata, &owner_ref, selector).await?;
        let nodes = self.nodes.list();
        let plan = reconcile(&Observed {
            set: &set,
            nodes: nodes.iter().map(Arc::as_ref).collect(),
            pods: controlled.iter().map(Arc::as_ref).collect(),
            now: jiff::Timestamp::now(),
        });
        for note in notes_besides_writes(&plan) {
            self.recorder.record(set.as_ref(), note);
        }
        // While its own writes are not in the cache yet, the set only reports; their events
        // bring it back.
        if !plan.actions.is_empty() && may_act {
            self.carry_out(&set, key, &plan.actions).await;
        }
        self.write_status(&set, plan.status).await?;
        Ok(plan.requeue_after)
    }

    async fn carry_out(&self, set: &DaemonSet, key: &Key, actions: &[Action]) {
        let mut creations = Vec::new();
        let mut deletions = Vec::new();
        for action in actions {
            match action {
                Action::CreatePod(pod) => creations.push(pod),
                Action::DeletePod { name, uid } => deletions.push((name.as_str(), uid.as_str())),
            }
        }
        self.expectations.expect(key, creations.len(), deletions.iter().map(|(_, uid)| uid.to_string()));
        self.delete_pods(set, key, &deletions).await;
        self.create_pods(set, key, &creations).await;
    }

    async fn create_pods(&self, set: &DaemonSet, key: &Key, pods: &[&Pod]) {
        if pods.is_empty() {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let next = AtomicUsize::new(0);
        let (created, error) = slow_start(pods.len(), || {
            let pod = pods.get(next.fetch_add(1, Ordering::SeqCst)).copied();
            let api = api.clone();
            async move {
                let Some(pod) = pod else { return Ok(()) };
                let created = api.create(&PostParams::default(), pod).await?;
                let name = created.metadata.name.unwrap_or_default();
                self.recorder.record(set, &Note::normal("SuccessfulCreate", format!("Created pod: {name}")));
                Ok::<(), kube::Error>(())
            }
        })
        .await;
        // Pods that were never created will never be observed.
        for _ in created..pods.len() {
            self.expectations.creation_observed(key);
        }
        if let Some(e) = error {
            self.recorder.record(set, &Note::warning("FailedCreate", format!("Error creating: {}", api_message(&e))));
        }
    }

    async fn delete_pods(&self, set: &DaemonSet, key: &Key, victims: &[(&str, &str)]) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        join_all(victims.iter().map(|(name, uid)| {
            let api = api.clone();
            async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
                    ..DeleteParams::default()
                };
                match api.delete(name, &params).await {
                    Ok(_) => {
                        self.recorder.record(set, &Note::normal("SuccessfulDelete", format!("Deleted pod: {name}")))
                    }
                    Err(e) => {
                        // Not deleted: the deletion will never be observed.
                        self.expectations.deletion_observed(key, uid);
                        if !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                            let message = format!("Error deleting: {}", api_message(&e));
                            self.recorder.record(set, &Note::warning("FailedDelete", message));
                        }
                    }
                }
            }
        }))
        .await;
    }

    async fn write_status(&self, set: &DaemonSet, status: DaemonSetStatus) -> Result<(), kube::Error> {
        if set.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<DaemonSet> =
            Api::namespaced(self.client.clone(), set.metadata.namespace.as_deref().unwrap_or_default());
        let mut updated = set.clone();
        updated.status = Some(status);
        match api
            .replace_status(set.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            // The set changed meanwhile: its event brings it back with the new state.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn node() -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: Some([("zone".to_string(), "a".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_heartbeat_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    #[test]
    fn only_changes_that_can_change_eligibility_wake_the_sets() {
        let base = node();
        let mut heartbeat = node();
        heartbeat.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_heartbeat_time =
            Some(Time(jiff::Timestamp::from_second(60).unwrap()));
        heartbeat.metadata.resource_version = Some("9".into());
        assert!(!eligibility_changed(&base, &heartbeat));
        let mut relabelled = node();
        relabelled.metadata.labels = None;
        let mut tainted = node();
        tainted.spec.as_mut().unwrap().taints =
            Some(vec![Taint { key: "gpu".into(), effect: "NoSchedule".into(), ..Taint::default() }]);
        let mut cordoned = node();
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let mut not_ready = node();
        not_ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
        for (what, changed) in
            [("labels", relabelled), ("taints", tainted), ("unschedulable", cordoned), ("conditions", not_ready)]
        {
            assert!(eligibility_changed(&base, &changed), "{what}");
        }
    }

    #[test]
    fn the_loop_reports_creations_and_deletions_itself() {
        let plan = Plan {
            actions: vec![],
            status: DaemonSetStatus::default(),
            events: vec![
                Note::normal("SuccessfulCreate", "Created pod: agent-"),
                Note::warning("FailedDaemonPod", "Found failed daemon pod"),
                Note::normal("SuccessfulDelete", "Deleted pod: agent-x"),
            ],
            requeue_after: None,
        };
        let reasons: Vec<&str> = notes_besides_writes(&plan).map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, ["FailedDaemonPod"]);
    }
}
