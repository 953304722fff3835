//! Scheduling end to end on hollow nodes: `tug server` (with its scheduler) and `tug sim`
//! processes, pods created through the API, placements read back. Covers what the issue asks
//! of the scheduler with real components: node affinity, anti-affinity, topology spread,
//! taints and tolerations, the unschedulable message and Event, and a pending pod placed once a
//! node that fits joins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use tug_testkit::TugServer;

const DEADLINE: Duration = Duration::from_secs(20);

/// A `tug sim` process, killed when dropped.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim(server: &TugServer, prefix: &str, nodes: usize, extra: &[&str]) -> Sim {
    let child = Command::new(env!("CARGO_BIN_EXE_tug"))
        .args(["sim", "--server", &format!("https://127.0.0.1:{}", server.port()), "--token-file"])
        .arg(server.data_dir().join("node-token"))
        .args(["--nodes", &nodes.to_string(), "--name-prefix", prefix, "--cpu", "4", "--memory", "8Gi"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tug sim");
    Sim(child)
}

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    tug_testkit::eventually(what, DEADLINE, check).await
}

async fn wait_nodes(nodes: &Api<Node>, n: usize) {
    eventually(&format!("{n} nodes"), || async {
        let count = nodes.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        if count >= n { Ok(()) } else { Err(format!("{count} nodes")) }
    })
    .await
}

fn pod(name: &str, labels: Value, spec_extra: Value) -> Pod {
    let mut spec =
        json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec})).unwrap()
}

async fn bound_node(pods: &Api<Pod>, name: &str) -> String {
    eventually(&format!("pod {name} to be bound"), || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        p.spec.and_then(|s| s.node_name).ok_or_else(|| format!("{:?}", p.status.and_then(|s| s.conditions)))
    })
    .await
}

async fn zone_of(nodes: &Api<Node>, node: &str) -> String {
    let n = nodes.get(node).await.unwrap();
    n.metadata.labels.unwrap_or_default().get("topology.kubernetes.io/zone").cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_places_pods_on_hollow_nodes_as_kubernetes_would() {
    let server = TugServer::start(Path::new(env!("CARGO_BIN_EXE_tug")));
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _workers = sim(&server, "tugt-w", 9, &["--zones", "3"]);
    let _gpus = sim(&server, "tugt-gpu", 2, &["--taint", "dedicated=gpu:NoSchedule", "--label", "gpu=yes"]);
    wait_nodes(&nodes, 11).await;
    let pp = PostParams::default();

    // Required node affinity: only zone-1.
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-1"]}]}]}}}});
    pods.create(&pp, &pod("in-zone-1", json!({}), affinity)).await.unwrap();
    let node = bound_node(&pods, "in-zone-1").await;
    assert_eq!(zone_of(&nodes, &node).await, "zone-1", "placed on {node}");

    // Required anti-affinity by hostname: three replicas, three nodes.
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "aa"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 0..3 {
        pods.create(&pp, &pod(&format!("aa-{i}"), json!({"app": "aa"}), anti.clone())).await.unwrap();
    }
    let mut hosts = BTreeSet::new();
    for i in 0..3 {
        hosts.insert(bound_node(&pods, &format!("aa-{i}")).await);
    }
    assert_eq!(hosts.len(), 3, "anti-affinity replicas share a node: {hosts:?}");

    // Topology spread over zones, maxSkew 1: six pods, two per zone.
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "ts"}}}]});
    for i in 0..6 {
        pods.create(&pp, &pod(&format!("ts-{i}"), json!({"app": "ts"}), spread.clone())).await.unwrap();
    }
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let node = bound_node(&pods, &format!("ts-{i}")).await;
        *per_zone.entry(zone_of(&nodes, &node).await).or_default() += 1;
    }
    assert_eq!(per_zone.values().copied().collect::<Vec<_>>(), [2, 2, 2], "{per_zone:?}");

    // Taints: untolerating pods never land on the gpu nodes; a tolerating one aimed there does.
    for i in 0..4 {
        pods.create(&pp, &pod(&format!("plain-{i}"), json!({}), json!({}))).await.unwrap();
        let node = bound_node(&pods, &format!("plain-{i}")).await;
        assert!(!node.starts_with("tugt-gpu"), "plain-{i} landed on tainted {node}");
    }
    let tolerating = json!({"nodeSelector": {"gpu": "yes"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]});
    pods.create(&pp, &pod("on-gpu", json!({}), tolerating)).await.unwrap();
    assert!(bound_node(&pods, "on-gpu").await.starts_with("tugt-gpu"));

    // Why a pod waits: the exact message, on the condition and in a FailedScheduling Event.
    pods.create(&pp, &pod("wants-gpu", json!({}), json!({"nodeSelector": {"gpu": "yes"}}))).await.unwrap();
    let expected = "0/11 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, \
                    9 node(s) didn't match Pod's node affinity/selector.";
    let message = eventually("the PodScheduled=False condition", || async {
        let p = pods.get("wants-gpu").await.map_err(|e| e.to_string())?;
        let conditions = p.status.and_then(|s| s.conditions).unwrap_or_default();
        conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
            .and_then(|c| c.message.clone())
            .ok_or_else(|| format!("{conditions:?}"))
    })
    .await;
    assert_eq!(message, expected);
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = eventually("the FailedScheduling event", || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=wants-gpu,reason=FailedScheduling"))
            .await
            .map_err(|e| e.to_string())?;
        list.items.into_iter().next().ok_or_else(|| "no event yet".to_string())
    })
    .await;
    assert_eq!(event.message.as_deref(), Some(expected));

    // A pending pod is placed once a node that fits joins.
    pods.create(&pp, &pod("waits-for-late", json!({}), json!({"nodeSelector": {"late": "yes"}}))).await.unwrap();
    let _late = sim(&server, "tugt-late", 1, &["--label", "late=yes"]);
    assert_eq!(bound_node(&pods, "waits-for-late").await, "tugt-late-0");
}
