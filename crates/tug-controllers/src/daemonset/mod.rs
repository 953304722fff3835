//! The DaemonSet controller. [`core`] decides; [`Controller`] is the shared owner-of-pods loop
//! ([`crate::runtime::Controller`]) around it.
//!
//! Each sync adopts orphan pods matching the selector and releases pods that stopped matching,
//! gives the core every node and the set's pods, and carries the plan out
//! ([`crate::runtime::Context::carry_out_pods`]): deletions with a uid precondition, then
//! creations in slow-start batches. Both are recorded as expectations, so a cache lagging
//! behind the controller's own writes never puts two pods on a node. Create events name the pod
//! the server generated.
//!
//! A node added, removed, or changed in what decides eligibility (labels, taints,
//! unschedulable, conditions) enqueues every DaemonSet: they are few, and any may now want or
//! refuse that node.

pub mod core;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::events::Note;
use crate::runtime::{self, Cache, Context, Enqueue, Informer, Key, Owned, Request};

pub use self::core::{Action, Observed, Plan, reconcile};

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

fn selector(set: &DaemonSet) -> Option<&LabelSelector> {
    set.spec.as_ref().map(|s| &s.selector)
}

/// What the loop reads besides its own sets.
#[derive(Debug, Clone)]
struct State {
    pods: Owned<DaemonSet, Pod>,
    nodes: Cache<Node>,
}

/// The loop around the core.
#[derive(Debug)]
pub struct Controller {
    runtime: runtime::Controller<DaemonSet>,
    state: State,
}

impl Controller {
    /// Wires the controller to the shared informers. A node added, removed, or changed in what
    /// decides eligibility queues every set.
    pub fn new(
        client: kube::Client,
        sets: &mut Informer<DaemonSet>,
        nodes: &mut Informer<Node>,
        pods: &mut Informer<Pod>,
    ) -> Controller {
        let mut runtime = runtime::Controller::new("daemonset-controller", client, sets);
        let nodes = runtime.watches(nodes, |ctx, old, new| {
            if old.zip(new).is_none_or(|(old, new)| eligibility_changed(old, new)) {
                for set in ctx.objects.list() {
                    ctx.queue.add(Key::of(set.as_ref()));
                }
            }
        });
        let pods = runtime.owns(pods, selector, Enqueue::Now);
        Controller { runtime, state: State { pods, nodes } }
    }

    pub async fn run(self, workers: usize) {
        self.runtime.run(workers, self.state, sync).await;
    }
}

async fn sync(
    state: State,
    ctx: Context<DaemonSet>,
    request: Request<DaemonSet>,
) -> Result<Option<Duration>, kube::Error> {
    let Request { key, object: set, may_act } = request;
    let controlled = state.pods.claim(&ctx.client, &set).await?;
    let nodes = state.nodes.list();
    let plan = reconcile(&Observed {
        set: &set,
        nodes: nodes.iter().map(Arc::as_ref).collect(),
        pods: controlled.iter().map(Arc::as_ref).collect(),
        now: jiff::Timestamp::now(),
    });
    for note in notes_besides_writes(&plan) {
        ctx.recorder.record(set.as_ref(), note);
    }
    // While its own writes are not in the cache yet, the set only reports; their events bring
    // it back.
    if may_act && !plan.actions.is_empty() {
        ctx.carry_out_pods(&set, &key, plan.actions).await;
    }
    ctx.write_status(&set, plan.status).await?;
    Ok(plan.requeue_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;
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
