//! A node that goes silent long enough to be marked NotReady — its pods marked not ready by the
//! node lifecycle controller — and comes back before its pods' tolerations run out: every pod is
//! Ready again within seconds (its node re-asserts their status), and none is recreated. The
//! API server, scheduler, controllers and hollow nodes all run in this process; no root needed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tug_apiserver::server::{RunningServer, ServerConfig};
use tug_sim::{self as sim, Pause, SimOptions};
use tug_testkit::eventually;

const DEADLINE: Duration = Duration::from_secs(60);
/// How long a node may stay silent before it is NotReady here (20 s in production).
const NODE_GRACE: Duration = Duration::from_secs(2);
/// How often hollow nodes renew their leases here (10 s in production).
const LEASE_INTERVAL: Duration = Duration::from_millis(300);
/// Pods tolerate an unreachable node far longer than this test runs: nothing is evicted.
const TOLERATION_SECONDS: i64 = 300;
/// How soon after its node is back every pod must be Ready again.
const RECOVERY: Duration = Duration::from_secs(15);
const REPLICAS: i32 = 4;

/// A cluster (server, scheduler, controllers) whose nodes go NotReady after [`NODE_GRACE`] and
/// whose pods tolerate that for [`TOLERATION_SECONDS`].
async fn cluster() -> Cluster {
    let config = |dir: &Path| ServerConfig {
        admission: tug_apiserver::Admission { default_toleration_seconds: TOLERATION_SECONDS },
        ..ServerConfig::local(dir)
    };
    let controllers = tug_controllers::ControllerOptions { node_grace: NODE_GRACE, ..Default::default() };
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = tug_apiserver::server::start(config(dir.path())).await.expect("the server starts");
    let client = Client::new(server.local_service(), "default");
    let (stop, stopped) = watch::channel(false);
    let scheduler = tug_scheduler::run(client.clone(), Default::default(), until(stopped.clone()));
    tokio::spawn(async move { scheduler.await.expect("the scheduler runs") });
    tokio::spawn(tug_controllers::run(client.clone(), controllers, until(stopped)));
    Cluster { _dir: dir, _server: server, client, stop }
}

/// The API server, scheduler and controllers in this process; stopped on drop.
struct Cluster {
    _dir: tempfile::TempDir,
    _server: RunningServer,
    client: Client,
    stop: watch::Sender<bool>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Resolves once `true` is sent on the channel: the shutdown signal of the cluster and sims.
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Hollow nodes named `<prefix>-<i>`, running until the returned sender says stop, and the switch
/// that silences them.
fn hollow_nodes(client: &Client, prefix: &str, count: usize) -> (watch::Sender<bool>, Pause) {
    let (stop, stopped) = watch::channel(false);
    let pause = Pause::default();
    let options = SimOptions {
        nodes: count,
        name_prefix: prefix.into(),
        ready_delay: Duration::from_millis(50),
        delete_delay: Duration::from_millis(100),
        lease_interval: LEASE_INTERVAL,
        pause: pause.clone(),
        ..SimOptions::default()
    };
    let task = sim::run(client.clone(), options, until(stopped));
    tokio::spawn(async move { task.await.expect("the sim runs") });
    (stop, pause)
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

/// The pod's Ready condition as (status, reason).
fn ready_of(pod: &Pod) -> (String, String) {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
        .unwrap_or_default()
}

fn node_ready_status(node: &Node) -> String {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone()).unwrap_or_default()
}

/// What the test follows of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    uid: String,
    node: String,
    /// The Ready condition's status and reason.
    ready: (String, String),
    deleting: bool,
}

/// The pods of `app`, by name.
async fn pods_of(api: &Api<Pod>, app: &str) -> Result<BTreeMap<String, Seen>, String> {
    let list = api.list(&ListParams::default().labels(&format!("app={app}"))).await.map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .map(|p| {
            let seen = Seen {
                uid: p.uid().unwrap_or_default(),
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
                ready: ready_of(p),
                deleting: p.metadata.deletion_timestamp.is_some(),
            };
            (p.name_any(), seen)
        })
        .collect())
}

async fn available(api: &Api<Deployment>, name: &str) -> Result<i32, String> {
    let d = api.get(name).await.map_err(|e| e.to_string())?;
    Ok(d.status.and_then(|s| s.available_replicas).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_node_back_from_not_ready_are_ready_again_and_not_recreated() {
    let cluster = cluster().await;
    let (_flaky, pause) = hollow_nodes(&cluster.client, "flaky", 1);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    deployments.create(&PostParams::default(), &deployment("web")).await.expect("created");
    let before = eventually("every pod Ready on flaky-0 and the Deployment available", DEADLINE, || async {
        let now = pods_of(&pods, "web").await?;
        let ready = now.values().filter(|p| p.node == "flaky-0" && p.ready.0 == "True").count();
        let available = available(&deployments, "web").await?;
        if ready == REPLICAS as usize && now.len() == ready && available == REPLICAS {
            Ok(now)
        } else {
            Err(format!("available {available}, pods {now:?}"))
        }
    })
    .await;
    // A second node keeps evictions allowed (one silent node of two is no mass outage): only
    // the pods' tolerations keep them where they are.
    let (_steady, _) = hollow_nodes(&cluster.client, "steady", 1);
    eventually("steady-0 Ready", DEADLINE, || async {
        let node = nodes.get("steady-0").await.map_err(|e| e.to_string())?;
        if node_ready_status(&node) == "True" { Ok(()) } else { Err(format!("{:?}", node.status)) }
    })
    .await;

    // flaky-0 goes silent: past the node grace it is NotReady and its pods are marked not ready.
    pause.pause();
    eventually("flaky-0 NotReady, its pods marked not ready, none available", DEADLINE, || async {
        let node = nodes.get("flaky-0").await.map_err(|e| e.to_string())?;
        let now = pods_of(&pods, "web").await?;
        let marked = now.values().filter(|p| p.ready == ("False".into(), "NodeNotReady".into())).count();
        let node_ready = node_ready_status(&node);
        let available = available(&deployments, "web").await?;
        if node_ready == "Unknown" && marked == REPLICAS as usize && available == 0 {
            Ok(())
        } else {
            Err(format!("node Ready={node_ready}, available {available}, pods {now:?}"))
        }
    })
    .await;

    // Back before any toleration runs out: every pod Ready again soon, the same pods.
    pause.resume();
    let back = tokio::time::Instant::now();
    let after = eventually("every pod Ready again and the Deployment available", RECOVERY, || async {
        let node = nodes.get("flaky-0").await.map_err(|e| e.to_string())?;
        let now = pods_of(&pods, "web").await?;
        let ready = now.values().filter(|p| p.ready.0 == "True").count();
        let available = available(&deployments, "web").await?;
        if ready == REPLICAS as usize && available == REPLICAS {
            Ok(now)
        } else {
            Err(format!("node Ready={}, available {available}, pods {now:?}", node_ready_status(&node)))
        }
    })
    .await;
    let took = back.elapsed();
    let identity = |pods: &BTreeMap<String, Seen>| {
        pods.iter().map(|(name, p)| (name.clone(), p.uid.clone(), p.node.clone(), p.deleting)).collect::<Vec<_>>()
    };
    assert_eq!(identity(&after), identity(&before), "the same pods, on the same node, none being deleted");
    eprintln!("pods Ready again {took:?} after their node came back");
}
