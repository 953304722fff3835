//! Node lifecycle: notices a node whose agent stopped renewing its Lease, marks it
//! `Ready=Unknown` with the `node.kubernetes.io/unreachable` taints, and evicts its pods once
//! their toleration of that taint runs out — so replacements start elsewhere about
//! `node_grace + tolerationSeconds` (20 s + 10 s by default) after a node dies, where
//! Kubernetes' defaults take about 350 s. A node whose Lease is renewed again gets its taints
//! removed.
//!
//! Silence is timed by this controller's own clock from the moment it last saw the Lease change
//! (never by comparing another host's timestamps), and every node gets a full grace period when
//! the controller starts or takes over. Each renewal arms one timer for its node; nothing scans
//! all nodes periodically.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tug_k8s::taints::tolerates;

use crate::events::{Note, Recorder};
use crate::pods;
use crate::runtime::{Cache, Informer, Key, Queue};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The reason this controller writes on conditions it sets to Unknown.
const UNKNOWN_REASON: &str = "NodeStatusUnknown";

/// How long a pod may stay on a node with these taints: `None` forever, zero now. A NoExecute
/// taint the pod does not tolerate evicts it now; otherwise the shortest `tolerationSeconds` among
/// the tolerations used counts from when the taint was added (Kubernetes' taint manager).
pub fn eviction_delay(tolerations: &[Toleration], taints: &[Taint], now: jiff::Timestamp) -> Option<Duration> {
    let mut shortest: Option<(i64, jiff::Timestamp)> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let mut matching = tolerations.iter().filter(|t| tolerates(t, taint)).peekable();
        if matching.peek().is_none() {
            return Some(Duration::ZERO);
        }
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        for seconds in matching.filter_map(|t| t.toleration_seconds) {
            if shortest.is_none_or(|(s, _)| seconds < s) {
                shortest = Some((seconds.max(0), added));
            }
        }
    }
    let (seconds, added) = shortest?;
    let until = added + jiff::SignedDuration::from_secs(seconds);
    Some(Duration::try_from(until.duration_since(now)).unwrap_or_default())
}

/// The taints a node should carry given whether it is reachable and, if so, whether its agent
/// reports it Ready, keeping everything else. A reachable node that is not Ready (its container
/// runtime is down, say) only gets `not-ready:NoSchedule` (Kubernetes' TaintNodesByCondition):
/// no new pods go there, but the ones it runs stay — containers keep running while containerd
/// restarts, and with a 10 s default toleration a NoExecute taint would evict them for a blip.
pub fn taints_for(current: &[Taint], reachable: bool, ready: bool, now: jiff::Timestamp) -> Vec<Taint> {
    let ours = |t: &Taint| t.key == UNREACHABLE || (t.key == NOT_READY && t.effect == "NoSchedule");
    let mut taints: Vec<Taint> = current.iter().filter(|t| !ours(t)).cloned().collect();
    let mut keep_or_add = |key: &str, effect: &str| {
        let existing = current.iter().find(|t| t.key == key && t.effect == effect);
        taints.push(existing.cloned().unwrap_or(Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: (effect == "NoExecute").then_some(Time(now)),
        }));
    };
    if !reachable {
        for effect in ["NoSchedule", "NoExecute"] {
            keep_or_add(UNREACHABLE, effect);
        }
    } else if !ready {
        keep_or_add(NOT_READY, "NoSchedule");
    }
    taints
}

/// Whether the node's agent reports it Ready (a node that reports nothing yet is not tainted).
fn reports_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().find(|c| c.type_ == "Ready").is_none_or(|c| c.status == "True")
}

/// The node's conditions once its agent went silent: every condition the agent reports becomes
/// Unknown (Kubernetes' wording), keeping when it last heard.
pub fn silent_conditions(current: &[NodeCondition], now: jiff::Timestamp) -> Vec<NodeCondition> {
    let mut conditions: Vec<NodeCondition> = current.to_vec();
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition { type_: "Ready".into(), ..NodeCondition::default() });
    }
    for c in &mut conditions {
        if c.status != "Unknown" {
            c.last_transition_time = Some(Time(now));
        }
        c.status = "Unknown".into();
        c.reason = Some(UNKNOWN_REASON.into());
        c.message = Some("Kubelet stopped posting node status.".into());
    }
    conditions
}

/// More than this share of nodes silent at once looks like this controller (or the network
/// around it) being cut off rather than the nodes dying: evicting everything would turn a
/// partition into an outage (Kubernetes' unhealthyZoneThreshold, its "full disruption" mode).
pub const MASS_SILENCE: f64 = 0.55;

/// May pods be evicted now, with `silent` of `total` nodes silent?
pub fn evictions_allowed(silent: usize, total: usize) -> bool {
    total > 0 && (silent as f64) <= MASS_SILENCE * total as f64
}

/// Is this node marked silent by this controller?
fn marked_silent(node: &Node) -> bool {
    let ready =
        node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    ready.is_some_and(|c| c.reason.as_deref() == Some(UNKNOWN_REASON))
        || node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == UNREACHABLE))
}

#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    queue: Queue,
    grace: Duration,
    /// When each node's lease was last seen changing, by our clock.
    heard: Arc<Mutex<HashMap<String, Instant>>>,
    /// Node name → the keys of its pods.
    pods_on: Arc<Mutex<HashMap<String, HashSet<Key>>>>,
    recorder: Recorder,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("nodelifecycle::Controller").field("grace", &self.grace).finish()
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

impl Controller {
    pub fn new(
        client: kube::Client,
        grace: Duration,
        nodes: &mut Informer<Node>,
        leases: &mut Informer<Lease>,
        pods: &mut Informer<Pod>,
    ) -> Controller {
        let controller = Controller {
            recorder: Recorder::new(client.clone(), "node-controller"),
            client,
            nodes: nodes.cache(),
            pods: pods.cache(),
            queue: Queue::new(),
            grace,
            heard: Arc::default(),
            pods_on: Arc::default(),
        };
        let this = controller.clone();
        nodes.on_change(move |old, new| {
            if let (None, Some(node)) = (old, new) {
                this.heard_from(node.metadata.name.as_deref().unwrap_or_default());
            }
            if let Some(node) = new {
                this.queue.add(Key::of(node));
            }
        });
        let this = controller.clone();
        leases.on_change(move |old, new| {
            let Some(lease) = new else { return };
            if lease.metadata.namespace.as_deref() != Some("kube-node-lease") {
                return;
            }
            let renewed = old.is_none_or(|o| {
                o.spec.as_ref().and_then(|s| s.renew_time.as_ref())
                    != lease.spec.as_ref().and_then(|s| s.renew_time.as_ref())
            });
            if renewed {
                this.heard_from(lease.metadata.name.as_deref().unwrap_or_default());
            }
        });
        let this = controller.clone();
        pods.on_change(move |old, new| {
            let mut index = this.pods_on.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = old
                && let Some(node) = node_of(old)
                && let Some(set) = index.get_mut(node)
            {
                set.remove(&Key::of(old));
            }
            if let Some(new) = new
                && let Some(node) = node_of(new)
            {
                index.entry(node.to_string()).or_default().insert(Key::of(new));
                // A pod bound to a node already tainted must be looked at too.
                drop(index);
                if old.is_none_or(|o| node_of(o).is_none()) {
                    let marked = this.nodes.get(&Key::new("", node)).is_some_and(|n| marked_silent(&n));
                    if marked {
                        this.queue.add(Key::new("", node));
                    }
                }
            }
        });
        controller
    }

    fn heard_from(&self, node: &str) {
        if node.is_empty() {
            return;
        }
        self.heard.lock().unwrap_or_else(|e| e.into_inner()).insert(node.to_string(), Instant::now());
        let key = Key::new("", node);
        // Check right away if it was marked silent, and once more when this renewal runs out.
        if self.nodes.get(&key).is_some_and(|n| marked_silent(&n)) {
            self.queue.add(key.clone());
        }
        self.queue.add_after(key, self.grace + Duration::from_millis(50));
    }

    pub async fn run(self, workers: usize) {
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        // A full grace period for every node from now (we may have just taken over).
        for node in self.nodes.list() {
            self.heard_from(node.metadata.name.as_deref().unwrap_or_default());
        }
        let queue = self.queue.clone();
        crate::runtime::run_workers(queue, workers, "node-lifecycle", move |key| {
            let this = self.clone();
            async move { this.sync(&key).await }
        })
        .await;
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(node) = self.nodes.get(key) else {
            self.heard.lock().unwrap_or_else(|e| e.into_inner()).remove(&key.name);
            return Ok(None);
        };
        let silent_for = self.heard.lock().unwrap_or_else(|e| e.into_inner()).get(&key.name).map(Instant::elapsed);
        let Some(silent_for) = silent_for else { return Ok(None) };
        let reachable = silent_for < self.grace;
        let now = jiff::Timestamp::now();
        let api: Api<Node> = Api::all(self.client.clone());
        let current_taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let taints = taints_for(&current_taints, reachable, reports_ready(&node), now);
        if !reachable && !marked_silent(&node) {
            let conditions =
                silent_conditions(node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default(), now);
            api.patch_status(
                &key.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"conditions": conditions}})),
            )
            .await?;
            self.recorder.record(
                node.as_ref(),
                &Note::normal("NodeNotReady", format!("Node {} status is now: NodeNotReady", key.name)),
            );
            self.mark_pods_not_ready(&key.name).await;
        }
        if reachable && marked_silent(&node) {
            // Back: the agent's next status report restores the rest; Ready comes back now.
            let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            for c in conditions.iter_mut().filter(|c| c.reason.as_deref() == Some(UNKNOWN_REASON)) {
                let ready = c.type_ == "Ready";
                c.status = if ready { "True" } else { "False" }.into();
                c.reason = Some(if ready { "KubeletReady" } else { "KubeletHasNoPressure" }.into());
                c.message = Some("the node's agent renews its lease again".into());
                c.last_transition_time = Some(Time(now));
            }
            api.patch_status(
                &key.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"conditions": conditions}})),
            )
            .await?;
            self.recorder.record(
                node.as_ref(),
                &Note::normal("NodeReady", format!("Node {} status is now: NodeReady", key.name)),
            );
        }
        if taints != current_taints {
            let patch =
                json!({"spec": {"taints": taints}, "metadata": {"resourceVersion": node.metadata.resource_version}});
            match api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Some(Duration::from_millis(100))),
                other => other.map(drop)?,
            }
        }
        if reachable {
            return Ok(Some(self.grace.saturating_sub(silent_for) + Duration::from_millis(50)));
        }
        let (silent, total) = self.silence();
        if !evictions_allowed(silent, total) {
            tracing::warn!(silent, total, "most nodes are silent: evictions paused until they are heard from again");
            return Ok(Some(self.grace));
        }
        Ok(self.evict(&key.name, &taints, now).await)
    }

    /// How many nodes have been silent longer than the grace period, of how many.
    fn silence(&self) -> (usize, usize) {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        (heard.values().filter(|at| at.elapsed() >= self.grace).count(), heard.len())
    }

    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.pods_of(node) {
            let mut conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready" && c.status == "True") else {
                continue;
            };
            ready.status = "False".into();
            ready.reason = Some("NodeNotReady".into());
            ready.last_transition_time = Some(Time(jiff::Timestamp::now()));
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
            let patch = json!({"status": {"conditions": conditions}});
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            if let Err(e) = api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::debug!(pod = name, error = %e, "cannot mark the pod not ready");
            }
        }
    }

    fn pods_of(&self, node: &str) -> Vec<Arc<Pod>> {
        let keys: Vec<Key> =
            self.pods_on.lock().unwrap_or_else(|e| e.into_inner()).get(node).into_iter().flatten().cloned().collect();
        keys.iter().filter_map(|k| self.pods.get(k)).collect()
    }

    /// Deletes the pods whose toleration ran out; says when to look again for the others.
    async fn evict(&self, node: &str, taints: &[Taint], now: jiff::Timestamp) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        for pod in self.pods_of(node) {
            if !pods::is_active(&pod) {
                continue;
            }
            let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
            match eviction_delay(&tolerations, taints, now) {
                None => {}
                Some(wait) if !wait.is_zero() => next = Some(next.map_or(wait, |n| n.min(wait))),
                Some(_) => {
                    let api: Api<Pod> =
                        Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
                    let params = DeleteParams {
                        preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
                        ..DeleteParams::default()
                    };
                    let name = pod.metadata.name.as_deref().unwrap_or_default();
                    match api.delete(name, &params).await {
                        Ok(_) => self.recorder.record(
                            pod.as_ref(),
                            &Note::normal(
                                "TaintManagerEviction",
                                format!(
                                    "Marking for deletion Pod {}/{name}",
                                    pod.metadata.namespace.as_deref().unwrap_or_default()
                                ),
                            ),
                        ),
                        Err(e) => {
                            tracing::debug!(pod = name, error = %e, "eviction failed; retrying");
                            next = Some(Duration::from_millis(500));
                        }
                    }
                }
            }
        }
        next.map(|n| n + Duration::from_millis(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(jiff::Timestamp::from_second(added).unwrap())),
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn pods_leave_when_their_toleration_runs_out() {
        let now = jiff::Timestamp::from_second(105).unwrap();
        let taints = [taint(UNREACHABLE, 100)];
        let secs = Duration::from_secs;
        assert_eq!(eviction_delay(&[], &taints, now), Some(Duration::ZERO), "no toleration: now");
        assert_eq!(eviction_delay(&[toleration(UNREACHABLE, Some(10))], &taints, now), Some(secs(5)));
        assert_eq!(eviction_delay(&[toleration(UNREACHABLE, Some(3))], &taints, now), Some(Duration::ZERO));
        assert_eq!(eviction_delay(&[toleration(UNREACHABLE, None)], &taints, now), None, "tolerated forever");
        assert_eq!(eviction_delay(&[toleration(NOT_READY, None)], &taints, now), Some(Duration::ZERO), "wrong key");
        assert_eq!(eviction_delay(&[], &[], now), None, "no taint");
    }

    #[test]
    fn unreachable_nodes_get_both_taints_and_lose_them_when_back() {
        let now = jiff::Timestamp::from_second(7).unwrap();
        let other =
            Taint { key: "dedicated".into(), effect: "NoSchedule".into(), value: Some("gpu".into()), time_added: None };
        let down = taints_for(std::slice::from_ref(&other), false, false, now);
        assert_eq!(down.len(), 3);
        assert!(down.iter().any(|t| t.key == UNREACHABLE && t.effect == "NoExecute" && t.time_added.is_some()));
        let later = jiff::Timestamp::from_second(99).unwrap();
        assert_eq!(taints_for(&down, false, false, later), down, "stable while down");
        assert_eq!(taints_for(&down, true, true, now), vec![other.clone()]);

        // Reachable but not Ready: no new pods, the running ones stay (no NoExecute).
        let not_ready = taints_for(std::slice::from_ref(&other), true, false, now);
        assert_eq!(not_ready.len(), 2);
        assert!(not_ready.iter().any(|t| t.key == NOT_READY && t.effect == "NoSchedule"));
        assert_eq!(taints_for(&not_ready, true, false, later), not_ready, "stable while not ready");
        assert_eq!(taints_for(&not_ready, true, true, now), vec![other.clone()], "removed when Ready again");
        let admin = Taint { key: NOT_READY.into(), effect: "NoExecute".into(), value: None, time_added: None };
        assert_eq!(taints_for(std::slice::from_ref(&admin), true, true, now), vec![admin], "not ours to remove");
    }

    #[test]
    fn mass_silence_pauses_evictions() {
        assert!(evictions_allowed(1, 2), "one of two nodes dying is a node failure");
        assert!(evictions_allowed(20, 5000));
        assert!(!evictions_allowed(2, 3), "most nodes silent looks like a partition");
        assert!(!evictions_allowed(1, 1), "a lone node's pods have nowhere to go");
        assert!(!evictions_allowed(0, 0));
    }

    #[test]
    fn silent_nodes_report_unknown_conditions() {
        let now = jiff::Timestamp::from_second(7).unwrap();
        let ready = NodeCondition { type_: "Ready".into(), status: "True".into(), ..NodeCondition::default() };
        let conditions = silent_conditions(&[ready], now);
        assert_eq!(conditions[0].status, "Unknown");
        assert_eq!(conditions[0].reason.as_deref(), Some(UNKNOWN_REASON));
    }
}
