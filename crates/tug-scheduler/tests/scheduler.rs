//! The scheduler against a real API server, in-process: Nodes are created directly through the
//! API (no agents), pods are created as a user would, and what is checked is what a user sees —
//! `spec.nodeName`, the `PodScheduled` condition, Events and the Lease.
//!
//! Each test starts its own server with its own SQLite file, so node counts are exact and tests
//! run side by side. Nothing sleeps: every wait polls a condition against a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tug_apiserver::server::{RunningServer, ServerConfig};
use tug_scheduler::core::Strategy;
use tug_scheduler::{SchedulerOptions, run};

/// How long anything asynchronous may take before a test gives up.
const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    _dir: tempfile::TempDir,
    server: RunningServer,
    client: Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (server, client) = start_in(dir.path()).await;
        Cluster { _dir: dir, server, client }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a Node as an agent would: Ready, with allocatable resources, labels and taints.
    async fn node(&self, name: &str, cpu: &str, extra: Value) {
        let mut node = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        });
        merge(&mut node, extra);
        let node: Node = from_json(node);
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes.create(&PostParams::default(), &node).await.expect("node created");
    }

    /// Creates a pod requesting `cpu`, with `extra` merged into its manifest.
    async fn pod(&self, name: &str, cpu: &str, extra: Value) {
        let mut pod = json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]},
        });
        merge(&mut pod, extra);
        self.pods().create(&PostParams::default(), &from_json(pod)).await.expect("pod created");
    }

    /// Waits until `name` is bound and says where.
    async fn bound_node(&self, name: &str) -> String {
        let pods = self.pods();
        eventually(&format!("pod {name} to be bound"), || async {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            pod.spec.as_ref().and_then(|s| s.node_name.clone()).ok_or_else(|| format!("{:?}", pod.status))
        })
        .await
    }

    /// Waits until `name` is marked unschedulable and returns the condition's message.
    async fn unschedulable_message(&self, name: &str) -> String {
        let pods = self.pods();
        eventually(&format!("pod {name} to be marked unschedulable"), || async {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            conditions
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .filter(|c| c.reason.as_deref() == Some("Unschedulable"))
                .and_then(|c| c.message.clone())
                .ok_or_else(|| format!("conditions {conditions:?}, spec {:?}", pod.spec.map(|s| s.node_name)))
        })
        .await
    }

    /// Waits for an event about pod `name` with `reason`, and returns it.
    async fn event(&self, name: &str, reason: &str) -> Event {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        eventually(&format!("a {reason} event for {name}"), || async {
            let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let seen: Vec<String> = list.items.iter().map(|e| format!("{:?}: {:?}", e.reason, e.message)).collect();
            list.items
                .into_iter()
                .find(|e| e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason))
                .ok_or_else(|| format!("{seen:?}"))
        })
        .await
    }

    async fn lease_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-system");
        let lease = leases.get_opt("tug-scheduler").await.expect("lease readable")?;
        lease.spec.and_then(|s| s.holder_identity)
    }

    async fn wait_for_holder(&self, identity: &str) {
        eventually(&format!("{identity} to hold the lease"), || async {
            match self.lease_holder().await {
                Some(holder) if holder == identity => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        })
        .await
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// A scheduler running in a task, stopped through its shutdown future.
struct Scheduler {
    identity: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tug_scheduler::Error>>,
}

impl Scheduler {
    fn start(cluster: &Cluster, strategy: Strategy) -> Scheduler {
        let options = SchedulerOptions { strategy, ..SchedulerOptions::default() };
        let identity = options.identity.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(cluster.client.clone(), options, async move {
            let _ = stopped.await;
        }));
        Scheduler { identity, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the scheduler task").expect("the scheduler stops cleanly");
    }
}

async fn start_in(data_dir: &Path) -> (RunningServer, Client) {
    let server = tug_apiserver::server::start(ServerConfig::local(data_dir)).await.expect("the server starts");
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kube config");
    (server, Client::try_from(config).expect("kube client"))
}

fn from_json<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("manifest matches its type")
}

/// Merges `extra` into `base` (objects recursively, anything else replaced).
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// Polls `check` until it succeeds or [`DEADLINE`] passes, then fails with what it last saw.
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    tug_testkit::eventually(what, DEADLINE, check).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_pods_and_says_why_one_fits_nowhere() {
    let c = Cluster::start().await;
    for name in ["n1", "n2", "n3"] {
        c.node(name, "4", json!({})).await;
    }
    let scheduler = Scheduler::start(&c, Strategy::Spread);
    for i in 0..6 {
        c.pod(&format!("web-{i}"), "100m", json!({})).await;
    }
    for i in 0..6 {
        let name = format!("web-{i}");
        let node = c.bound_node(&name).await;
        let event = c.event(&name, "Scheduled").await;
        assert_eq!(event.message, Some(format!("Successfully assigned default/{name} to {node}")));
        assert_eq!(event.type_.as_deref(), Some("Normal"));
        assert_eq!(event.source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));
        let pod = c.pods().get(&name).await.unwrap();
        assert_eq!(event.involved_object.uid, pod.metadata.uid, "the event names the pod's uid");
    }

    c.pod("huge", "1000", json!({})).await;
    let message = c.unschedulable_message("huge").await;
    assert_eq!(message, "0/3 nodes are available: 3 Insufficient cpu.");
    let event = c.event("huge", "FailedScheduling").await;
    assert_eq!(event.message.as_deref(), Some(message.as_str()));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reporting_component.as_deref(), Some("default-scheduler"));
    assert_eq!(event.involved_object.uid, c.pods().get("huge").await.unwrap().metadata.uid);
    scheduler.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_pod_is_placed_when_a_node_that_fits_joins() {
    let c = Cluster::start().await;
    c.node("small", "1", json!({})).await;
    let scheduler = Scheduler::start(&c, Strategy::Spread);
    c.pod("big", "3", json!({})).await;
    assert_eq!(c.unschedulable_message("big").await, "0/1 nodes are available: 1 Insufficient cpu.");
    let joined = tokio::time::Instant::now();
    c.node("large", "4", json!({})).await;
    assert_eq!(c.bound_node("big").await, "large");
    // Retried on the node's arrival, after at most the first backoff (1 s): no periodic resync.
    assert!(joined.elapsed() < Duration::from_secs(5), "placed {:?} after the node joined", joined.elapsed());
    scheduler.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_selectors_cordons_and_scheduler_names_are_respected() {
    let c = Cluster::start().await;
    let gpu_taint = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    c.node("gpu", "4", json!({"metadata": {"labels": {"accel": "gpu"}}, "spec": {"taints": gpu_taint}})).await;
    c.node("ssd", "4", json!({"metadata": {"labels": {"disk": "ssd"}}})).await;
    c.node("cordoned", "4", json!({"spec": {"unschedulable": true}})).await;
    c.node("plain", "4", json!({})).await;
    c.pod("foreign", "100m", json!({"spec": {"schedulerName": "someone-else"}})).await;
    let scheduler = Scheduler::start(&c, Strategy::Spread);

    c.pod("wants-ssd", "100m", json!({"spec": {"nodeSelector": {"disk": "ssd"}}})).await;
    let toleration = json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    c.pod("trainer", "100m", json!({"spec": {"nodeSelector": {"accel": "gpu"}, "tolerations": toleration}})).await;
    c.pod("wants-nvme", "100m", json!({"spec": {"nodeSelector": {"disk": "nvme"}}})).await;
    for i in 0..8 {
        c.pod(&format!("plain-{i}"), "100m", json!({})).await;
    }
    assert_eq!(c.bound_node("wants-ssd").await, "ssd");
    assert_eq!(c.bound_node("trainer").await, "gpu");
    let mut used = BTreeSet::new();
    for i in 0..8 {
        used.insert(c.bound_node(&format!("plain-{i}")).await);
    }
    assert!(!used.contains("gpu"), "an untolerated taint repels pods: {used:?}");
    assert!(!used.contains("cordoned"), "a cordoned node takes no new pods: {used:?}");
    let why = c.unschedulable_message("wants-nvme").await;
    assert!(why.starts_with("0/4 nodes are available: "), "{why}");

    // The foreign pod was created first; everything after it has been decided, so it was seen.
    let foreign = c.pods().get("foreign").await.unwrap();
    assert_eq!(foreign.spec.and_then(|s| s.node_name), None, "another scheduler's pod is left alone");
    assert_eq!(foreign.status.and_then(|s| s.conditions), None);

    // Uncordoning is a node change that lets a waiting pod in.
    c.pod("pinned", "100m", json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "cordoned"}}})).await;
    c.unschedulable_message("pinned").await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    nodes
        .patch("cordoned", &PatchParams::default(), &Patch::Merge(json!({"spec": {"unschedulable": false}})))
        .await
        .unwrap();
    assert_eq!(c.bound_node("pinned").await, "cordoned");
    scheduler.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_higher_priority_pod_gets_the_last_slot() {
    let c = Cluster::start().await;
    c.node("only", "1", json!({})).await;
    // Both wait before the scheduler starts; the older one has the lower priority.
    c.pod("low", "600m", json!({})).await;
    c.pod("high", "600m", json!({"spec": {"priorityClassName": "system-cluster-critical"}})).await;
    let scheduler = Scheduler::start(&c, Strategy::Spread);
    assert_eq!(c.bound_node("high").await, "only");
    assert_eq!(c.unschedulable_message("low").await, "0/1 nodes are available: 1 Insufficient cpu.");
    // The slot frees up when the winner goes (forced: no agent finishes a graceful delete).
    c.pods().delete("high", &DeleteParams::default().grace_period(0)).await.unwrap();
    eventually("the bound pod to go", || async {
        match c.pods().get_opt("high").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|p| p.map(|p| p.metadata.deletion_timestamp)))),
        }
    })
    .await;
    assert_eq!(c.bound_node("low").await, "only");
    scheduler.stop().await;
    c.stop().await;
}

/// Where `count` small pods land on three equal nodes under `strategy`: node → pods.
async fn placements(strategy: Strategy, count: usize) -> BTreeMap<String, usize> {
    let c = Cluster::start().await;
    for name in ["a", "b", "c"] {
        c.node(name, "4", json!({})).await;
    }
    let scheduler = Scheduler::start(&c, strategy);
    let mut used = BTreeMap::new();
    for i in 0..count {
        c.pod(&format!("p{i}"), "100m", json!({})).await;
    }
    for i in 0..count {
        *used.entry(c.bound_node(&format!("p{i}")).await).or_insert(0) += 1;
    }
    scheduler.stop().await;
    c.stop().await;
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bin_packing_fills_one_node_where_spreading_uses_all() {
    let spread = placements(Strategy::Spread, 3).await;
    assert_eq!(spread.len(), 3, "spread: {spread:?}");
    let packed = placements(Strategy::BinPack, 3).await;
    assert_eq!(packed.len(), 1, "bin-pack: {packed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_schedules_and_a_follower_takes_over() {
    let c = Cluster::start().await;
    c.node("n1", "4", json!({})).await;
    let first = Scheduler::start(&c, Strategy::Spread);
    c.wait_for_holder(&first.identity).await;
    let second = Scheduler::start(&c, Strategy::Spread);

    for i in 0..5 {
        c.pod(&format!("early-{i}"), "100m", json!({})).await;
    }
    for i in 0..5 {
        let name = format!("early-{i}");
        c.bound_node(&name).await;
        let event = c.event(&name, "Scheduled").await;
        assert_eq!(event.reporting_instance.as_deref(), Some(first.identity.as_str()), "only the leader binds");
    }
    assert_eq!(c.lease_holder().await.as_deref(), Some(first.identity.as_str()));

    first.stop().await;
    c.wait_for_holder(&second.identity).await;
    c.pod("late", "100m", json!({})).await;
    c.bound_node("late").await;
    let event = c.event("late", "Scheduled").await;
    assert_eq!(event.reporting_instance.as_deref(), Some(second.identity.as_str()), "the new leader binds");
    second.stop().await;
    c.stop().await;
}
