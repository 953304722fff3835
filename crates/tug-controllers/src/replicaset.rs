//! The ReplicaSet controller: keeps exactly `spec.replicas` active pods matching the selector.
//!
//! [`reconcile`] is the pure core: from the set and the pods it controls, the pods to create,
//! which to delete (pending and not-ready ones first, Kubernetes' order) and the status.
//! [`Controller`] is the shared owner-of-pods loop ([`crate::runtime::Controller`]) around it:
//! it adopts orphans and releases pods that stopped matching, waits for its previous writes to
//! show in the cache (expectations), and carries the plan out — creations in slow-start batches
//! that stop at the first failure, whose message becomes the `ReplicaFailure` condition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use crate::pods::{self, is_active, is_available, is_ready};
use crate::runtime::{self, Context, Enqueue, Informer, Key, Owned, PodAction, Request, api_message};

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

/// What to do about it: pods to create (from the template, `generateName: <set>-`) and to
/// delete; the loop records the per-pod events. `requeue_after`: when pods become available by
/// time alone (minReadySeconds).
pub type Plan = runtime::Plan<PodAction, ReplicaSetStatus>;

/// The pure core.
pub fn reconcile(o: &Observed) -> Plan {
    let spec = o.set.spec.as_ref();
    let want = usize::try_from(spec.and_then(|s| s.replicas).unwrap_or(1).max(0)).unwrap_or(0);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut active: Vec<&Pod> = o.pods.iter().copied().filter(|p| is_active(p)).collect();
    let mut plan = Plan::status(status(o, &active, min_ready));
    if pods::is_deleting(&o.set.metadata) {
        return plan;
    }
    if active.len() < want {
        if let Some(template) = spec.and_then(|s| s.template.as_ref()) {
            let meta = &o.set.metadata;
            let owner = pods::controller_ref("apps/v1", "ReplicaSet", meta);
            let prefix = pods::generate_name_prefix(meta.name.as_deref().unwrap_or_default());
            let namespace = meta.namespace.as_deref().unwrap_or_default();
            let pod = pods::pod_from_template(template, namespace, owner, None, &prefix);
            plan.actions = vec![PodAction::CreatePod(pod); (want - active.len()).min(BURST_REPLICAS)];
        }
    } else if active.len() > want {
        active.sort_by(|a, b| pods::deletion_order(a, b));
        plan.actions = active
            .iter()
            .take((active.len() - want).min(BURST_REPLICAS))
            .map(|p| PodAction::DeletePod {
                name: p.metadata.name.clone().unwrap_or_default(),
                uid: p.metadata.uid.clone().unwrap_or_default(),
            })
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

fn selector(set: &ReplicaSet) -> Option<&LabelSelector> {
    set.spec.as_ref().map(|s| &s.selector)
}

/// What the loop keeps besides the shared context.
#[derive(Debug, Clone)]
struct State {
    pods: Owned<ReplicaSet, Pod>,
    /// The last creation error per set, for the ReplicaFailure condition.
    failures: Arc<Mutex<HashMap<Key, String>>>,
}

/// The loop around the core.
#[derive(Debug)]
pub struct Controller {
    runtime: runtime::Controller<ReplicaSet>,
    state: State,
}

impl Controller {
    /// Wires the controller to the shared informers.
    pub fn new(client: kube::Client, sets: &mut Informer<ReplicaSet>, pods: &mut Informer<Pod>) -> Controller {
        let mut runtime = runtime::Controller::new("replicaset-controller", client, sets);
        let pods = runtime.owns(pods, selector, Enqueue::Batched);
        Controller { runtime, state: State { pods, failures: Arc::default() } }
    }

    pub async fn run(self, workers: usize) {
        self.runtime.run(workers, self.state, sync).await;
    }
}

async fn sync(
    state: State,
    ctx: Context<ReplicaSet>,
    request: Request<ReplicaSet>,
) -> Result<Option<Duration>, kube::Error> {
    let Request { key, object: set, may_act } = request;
    let controlled = state.pods.claim(&ctx.client, &set).await?;
    let failures = || state.failures.lock().unwrap_or_else(|e| e.into_inner());
    let create_failure = failures().get(&key).cloned();
    let observed = Observed {
        set: &set,
        pods: controlled.iter().map(Arc::as_ref).collect(),
        now: jiff::Timestamp::now(),
        create_failure,
    };
    let plan = reconcile(&observed);
    if may_act && !plan.actions.is_empty() {
        let creations = plan.actions.iter().filter(|a| matches!(a, PodAction::CreatePod(_))).count();
        // A plan creates or deletes, never both: an error of a plan that creates is a creation's.
        let error = ctx.carry_out_pods(&set, &key, plan.actions).await.error;
        if creations > 0 {
            match error {
                Some(e) => failures().insert(key.clone(), format!("Error creating: {}", api_message(&e))),
                None => failures().remove(&key),
            };
        }
    }
    ctx.write_status(&set, plan.status).await?;
    Ok(plan.requeue_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn set(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { name: Some("web".into()), generation: Some(3), ..ObjectMeta::default() },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec::default()),
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

    fn creations(plan: &Plan) -> usize {
        plan.actions.iter().filter(|a| matches!(a, PodAction::CreatePod(_))).count()
    }

    fn deletions(plan: &Plan) -> Vec<(&str, &str)> {
        fn deletion(a: &PodAction) -> Option<(&str, &str)> {
            match a {
                PodAction::DeletePod { name, uid } => Some((name.as_str(), uid.as_str())),
                PodAction::CreatePod(_) => None,
            }
        }
        plan.actions.iter().filter_map(deletion).collect()
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
        assert_eq!(creations(&plan), 2);
        assert!(deletions(&plan).is_empty());
        let PodAction::CreatePod(pod) = &plan.actions[0] else { panic!("a creation") };
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].kind, "ReplicaSet");
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
        assert_eq!(deletions(&plan), [("pending", "uid-pending"), ("unready", "uid-unready")]);
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
        assert_eq!(creations(&plan), 0);
        let condition = &plan.status.conditions.unwrap()[0];
        assert_eq!((condition.type_.as_str(), condition.reason.as_deref()), ("ReplicaFailure", Some("FailedCreate")));
    }
}
