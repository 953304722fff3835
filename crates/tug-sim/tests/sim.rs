//! Hollow nodes against a real API server (in this process, real TLS, the node token): nodes
//! register Ready with leases, bound pods run and finish, and a stopped sim's nodes go quiet
//! while another sim's carry on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tug_apiserver::server::{RunningServer, ServerConfig};
use tug_sim::{self as sim, SimError, SimOptions};

/// How long anything asynchronous may take before a test gives up.
const DEADLINE: Duration = Duration::from_secs(30);
/// Lease renewal interval in these tests (10 s in production).
const LEASE_INTERVAL: Duration = Duration::from_millis(500);

/// A server on a temporary data dir, with an admin client for checking.
struct Cluster {
    dir: tempfile::TempDir,
    server: RunningServer,
    admin: Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path();
        let server = tug_apiserver::server::start(ServerConfig::local(data)).await.expect("the server starts");
        let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
        let admin = Client::try_from(config).expect("admin client");
        Cluster { dir, server, admin }
    }

    /// A client as `tug sim --server URL --token-file DATA/node-token` builds it.
    fn node_client(&self) -> Client {
        let data: &Path = self.dir.path();
        tug_leader::join::client_from_token(&self.server.url, &data.join("node-token"), &data.join("tls/ca.crt"))
            .expect("a client from the node token")
    }
}

/// A sim running in the background until its stop is sent.
struct RunningSim {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), SimError>>,
}

impl RunningSim {
    fn start(client: Client, options: SimOptions) -> RunningSim {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sim::run(client, options, async move {
            let _ = stopped.await;
        }));
        RunningSim { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(DEADLINE, self.task).await.expect("the sim stops promptly");
        result.expect("the sim task does not panic").expect("the sim ends cleanly");
    }
}

fn options(prefix: &str, nodes: usize) -> SimOptions {
    SimOptions {
        nodes,
        name_prefix: prefix.into(),
        ready_delay: Duration::from_millis(100),
        delete_delay: Duration::from_millis(100),
        lease_interval: LEASE_INTERVAL,
        ..SimOptions::default()
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

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The nodes whose names start with `prefix-`, by name.
async fn nodes_of(admin: &Client, prefix: &str) -> BTreeMap<String, Node> {
    let list = Api::<Node>::all(admin.clone()).list(&ListParams::default()).await.expect("list nodes");
    list.items
        .into_iter()
        .filter(|n| n.name_any().starts_with(&format!("{prefix}-")))
        .map(|n| (n.name_any(), n))
        .collect()
}

/// renewTime of each lease whose name starts with `prefix-`.
async fn renewals(admin: &Client, prefix: &str) -> BTreeMap<String, jiff::Timestamp> {
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
    let list = leases.list(&ListParams::default()).await.expect("list leases");
    list.items
        .into_iter()
        .filter(|l| l.name_any().starts_with(&format!("{prefix}-")))
        .filter_map(|l| Some((l.name_any(), l.spec?.renew_time?.0)))
        .collect()
}

/// Waits until `count` nodes of `prefix` are Ready and each has its lease; returns the nodes.
async fn wait_registered(admin: &Client, prefix: &str, count: usize) -> BTreeMap<String, Node> {
    eventually(&format!("{count} Ready {prefix} nodes with leases"), || async {
        let nodes = nodes_of(admin, prefix).await;
        let ready = nodes.values().filter(|n| is_ready(n)).count();
        let leases = renewals(admin, prefix).await;
        if ready == count && leases.len() == count && nodes.keys().all(|n| leases.contains_key(n)) {
            Ok(nodes)
        } else {
            Err(format!("{ready} ready nodes, {} leases", leases.len()))
        }
    })
    .await
}

/// Waits until every lease of `prefix` has been renewed after `since` (per lease).
async fn wait_renewed(admin: &Client, prefix: &str, since: &BTreeMap<String, jiff::Timestamp>) {
    eventually(&format!("{prefix} leases renewed"), || async {
        let now = renewals(admin, prefix).await;
        let stale: Vec<&String> =
            since.iter().filter(|(n, t)| now.get(*n).is_none_or(|t2| t2 <= t)).map(|(n, _)| n).collect();
        if stale.is_empty() { Ok(()) } else { Err(format!("not renewed: {stale:?}")) }
    })
    .await
}

/// No lease was renewed after `at`: its sim is stopped.
fn assert_renewed_before(leases: &BTreeMap<String, jiff::Timestamp>, at: jiff::Timestamp) {
    let late: Vec<_> = leases.iter().filter(|(_, t)| **t > at).collect();
    assert!(late.is_empty(), "leases renewed after the sim stopped at {at}: {late:?}");
}

fn pod_on(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}]},
    }))
    .expect("pod manifest")
}

/// Waits until the pod is Running and Ready; returns it.
async fn wait_running(pods: &Api<Pod>, name: &str) -> Pod {
    eventually(&format!("pod {name} Running and Ready"), || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let status = pod.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        if status.phase.as_deref() == Some("Running") && ready { Ok(pod) } else { Err(format!("{status:?}")) }
    })
    .await
}

/// The pod's IP is in its node's podCIDR, and its host IP is the node's InternalIP.
fn assert_addresses(pod: &Pod, node: &Node) {
    let status = pod.status.as_ref().expect("status");
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()).expect("node podCIDR");
    let network = cidr.strip_suffix(".0/24").expect("a /24");
    let pod_ip = status.pod_ip.clone().expect("podIP");
    assert!(pod_ip.starts_with(&format!("{network}.")), "pod IP {pod_ip} outside {cidr}");
    let internal = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"));
    assert_eq!(status.host_ip.as_deref(), internal.map(|a| a.address.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hollow_nodes_register_run_pods_and_go_quiet_when_stopped() {
    let cluster = Cluster::start().await;
    let admin = &cluster.admin;
    let mut opts = options("hollow", 50);
    opts.zones = 3;
    opts.labels.insert("pool".into(), "sim".into());
    let started = std::time::Instant::now();
    let running = RunningSim::start(cluster.node_client(), opts);

    let nodes = wait_registered(admin, "hollow", 50).await;
    eprintln!("50 hollow nodes Ready with leases after {:?}", started.elapsed());
    let node = &nodes["hollow-7"];
    let labels = node.labels();
    assert_eq!(labels.get("topology.kubernetes.io/zone").map(String::as_str), Some("zone-1"));
    assert_eq!(labels.get("pool").map(String::as_str), Some("sim"));
    assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some("hollow-7"));
    let status = node.status.as_ref().expect("status");
    assert_eq!(status.node_info.as_ref().map(|i| i.kubelet_version.as_str()), Some(sim::KUBELET_VERSION));
    assert_eq!(status.allocatable.as_ref().map(|a| a["pods"].0.as_str()), Some("110"));
    let cidrs: BTreeSet<_> = nodes.values().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
    assert_eq!(cidrs.len(), 50, "every node has its own pod range");

    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
    let lease = leases.get("hollow-7").await.expect("lease");
    let spec = lease.spec.clone().expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("hollow-7"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    wait_renewed(admin, "hollow", &renewals(admin, "hollow").await).await;

    // A pod bound to a hollow node runs there.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.create(&PostParams::default(), &pod_on("web", "hollow-7")).await.expect("create pod");
    let pod = wait_running(&pods, "web").await;
    assert_addresses(&pod, node);
    let status = pod.status.as_ref().expect("status");
    let containers = status.container_statuses.as_ref().expect("container statuses");
    assert_eq!(containers.len(), 2);
    assert!(containers.iter().all(|c| c.ready && c.container_id.as_deref().is_some_and(|id| id.starts_with("sim://"))));
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(status.conditions.iter().flatten().any(|c| c.type_ == kind && c.status == "True"), "{kind}");
    }

    // A default (graceful) delete is finished by the node, as a kubelet does.
    pods.delete("web", &DeleteParams::default()).await.expect("delete pod");
    eventually("the deleted pod to be gone", || async {
        match pods.get_opt("web").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // After a stop no lease moves: watch them for three renewal intervals. (A renewal sent just
    // before the stop may still land; it carries a renewTime from before the stop.)
    running.stop().await;
    let stopped_at = jiff::Timestamp::now();
    let list = leases.list(&ListParams::default()).await.expect("list leases");
    let version = list.metadata.resource_version.expect("list resourceVersion");
    let mut events = leases.watch(&WatchParams::default(), &version).await.expect("watch leases").boxed();
    let window = tokio::time::timeout(LEASE_INTERVAL * 3, async {
        while let Some(event) = events.next().await {
            if let Ok(WatchEvent::Modified(lease)) = event
                && lease.spec.as_ref().and_then(|s| s.renew_time.as_ref()).is_some_and(|t| t.0 > stopped_at)
            {
                return Some(lease.name_any());
            }
        }
        None
    })
    .await;
    assert!(matches!(window, Err(_) | Ok(None)), "a lease was renewed after the stop: {window:?}");
    assert_renewed_before(&renewals(admin, "hollow").await, stopped_at);
    cluster.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sims_side_by_side_and_one_is_lost() {
    let cluster = Cluster::start().await;
    let admin = &cluster.admin;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let rack_a = RunningSim::start(cluster.node_client(), options("rack-a", 5));
    wait_registered(admin, "rack-a", 5).await;
    let rack_b = RunningSim::start(cluster.node_client(), options("rack-b", 5));
    wait_registered(admin, "rack-b", 5).await;

    let mut all = nodes_of(admin, "rack-a").await;
    all.extend(nodes_of(admin, "rack-b").await);
    let cidrs: BTreeSet<_> = all.values().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
    assert_eq!(cidrs.len(), 10, "the two sims' pod ranges do not overlap: {cidrs:?}");

    // Each sim runs the pods of its own nodes.
    pods.create(&PostParams::default(), &pod_on("on-a", "rack-a-1")).await.expect("create");
    pods.create(&PostParams::default(), &pod_on("on-b", "rack-b-1")).await.expect("create");
    let on_a = wait_running(&pods, "on-a").await;
    assert_addresses(&on_a, &all["rack-a-1"]);
    let on_a_ip = on_a.status.and_then(|s| s.pod_ip).expect("podIP");
    assert_addresses(&wait_running(&pods, "on-b").await, &all["rack-b-1"]);

    // Lose rack A: its leases freeze while rack B's go on, and its new pods stay Pending.
    rack_a.stop().await;
    let stopped_at = jiff::Timestamp::now();
    let frozen = renewals(admin, "rack-a").await;
    pods.create(&PostParams::default(), &pod_on("late", "rack-a-1")).await.expect("create");
    let b_now = renewals(admin, "rack-b").await;
    wait_renewed(admin, "rack-b", &b_now).await;
    wait_renewed(admin, "rack-b", &renewals(admin, "rack-b").await).await;
    assert_renewed_before(&renewals(admin, "rack-a").await, stopped_at);
    let late = pods.get("late").await.expect("get");
    assert_eq!(late.status.and_then(|s| s.phase).as_deref(), Some("Pending"), "nobody runs pods on lost nodes");

    // Rack A comes back: same nodes and ranges, leases move again, the waiting pod runs.
    let rack_a = RunningSim::start(cluster.node_client(), options("rack-a", 5));
    wait_renewed(admin, "rack-a", &frozen).await;
    let back = nodes_of(admin, "rack-a").await;
    for (name, node) in &back {
        assert_eq!(
            node.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
            all[name].spec.as_ref().and_then(|s| s.pod_cidr.clone()),
            "{name} keeps its range"
        );
    }
    let late = wait_running(&pods, "late").await;
    assert_addresses(&late, &back["rack-a-1"]);
    let on_a = pods.get("on-a").await.expect("get");
    assert_eq!(on_a.status.and_then(|s| s.pod_ip).as_deref(), Some(on_a_ip.as_str()), "a running pod keeps its IP");
    assert_ne!(late.status.and_then(|s| s.pod_ip), Some(on_a_ip), "the restarted sim knows which IPs are taken");

    rack_a.stop().await;
    rack_b.stop().await;
    cluster.server.stop().await;
}
