//! Node IPAM against a real API server (in this process): every Node gets its own pod range,
//! a deleted node's range comes back, an exhausted cluster CIDR says so on the node, and
//! controllers started again keep the ranges nodes already have.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Node};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tug_apiserver::server::{RunningServer, ServerConfig};
use tug_controllers::ControllerOptions;
use tug_testkit::eventually;

mod support;

use support::DEADLINE;

/// A server whose controllers the test starts and stops itself.
struct Server {
    client: Client,
    _server: RunningServer,
    _dir: tempfile::TempDir,
}

/// Running controllers; [`Controllers::stop`] stops them and releases their Lease.
struct Controllers {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = tug_apiserver::server::start(ServerConfig::local(dir.path())).await.expect("the server starts");
        Server { client: Client::new(server.local_service(), "default"), _server: server, _dir: dir }
    }

    fn controllers(&self, cluster_cidr: &str) -> Controllers {
        let options = ControllerOptions { cluster_cidr: cluster_cidr.into(), ..ControllerOptions::default() };
        let (stop, mut stopped) = watch::channel(false);
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        Controllers { stop, task: tokio::spawn(tug_controllers::run(self.client.clone(), options, shutdown)) }
    }

    async fn add_node(&self, name: &str) {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).expect("a node");
        Api::<Node>::all(self.client.clone()).create(&PostParams::default(), &node).await.expect("create the node");
    }

    /// Every node's `spec.podCIDR` once each has one, checking `podCIDRs` says the same.
    async fn ranges(&self, names: &[&str]) -> BTreeMap<String, String> {
        let api = Api::<Node>::all(self.client.clone());
        eventually(&format!("pod ranges for {names:?}"), DEADLINE, || async {
            let nodes = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let mut ranges = BTreeMap::new();
            for node in nodes.items.iter().filter(|n| names.contains(&n.metadata.name.as_deref().unwrap_or_default())) {
                let spec = node.spec.clone().unwrap_or_default();
                match (spec.pod_cidr, spec.pod_cidrs) {
                    (Some(one), Some(all)) if all == [one.clone()] => {
                        ranges.insert(node.metadata.name.clone().unwrap_or_default(), one);
                    }
                    other => return Err(format!("{:?}: {other:?}", node.metadata.name)),
                }
            }
            if ranges.len() == names.len() { Ok(ranges) } else { Err(format!("{ranges:?}")) }
        })
        .await
    }
}

impl Controllers {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("the controllers stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_ranges_of_the_default_cluster_cidr() {
    let server = Server::start().await;
    let _controllers = server.controllers("10.42.0.0/16");
    server.add_node("n1").await;
    server.add_node("n2").await;
    let ranges = server.ranges(&["n1", "n2"]).await;
    assert_ne!(ranges["n1"], ranges["n2"]);
    for range in ranges.values() {
        assert!(range.starts_with("10.42.") && range.ends_with(".0/24"), "{range}");
    }
}

/// A /22 holds four node ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_survive_a_restart_run_out_and_are_freed_with_their_node() {
    const CLUSTER: &str = "10.99.0.0/22";
    let server = Server::start().await;
    let controllers = server.controllers(CLUSTER);
    server.add_node("a").await;
    server.add_node("b").await;
    let first = server.ranges(&["a", "b"]).await;
    assert_ne!(first["a"], first["b"]);

    // New controllers know nothing but what the nodes say: they hand out neither range again.
    controllers.stop().await;
    let _controllers = server.controllers(CLUSTER);
    server.add_node("c").await;
    server.add_node("d").await;
    let all = server.ranges(&["a", "b", "c", "d"]).await;
    assert_eq!((&all["a"], &all["b"]), (&first["a"], &first["b"]), "nodes keep their ranges");
    let distinct: std::collections::BTreeSet<&String> = all.values().collect();
    assert_eq!(distinct.len(), 4, "{all:?}");

    // Exhausted: the fifth node is told, and waits.
    server.add_node("e").await;
    let events: Api<Event> = Api::namespaced(server.client.clone(), "default");
    eventually("a CIDRNotAvailable event on node e", DEADLINE, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let found = list.items.iter().find(|e| {
            e.involved_object.name.as_deref() == Some("e") && e.reason.as_deref() == Some("CIDRNotAvailable")
        });
        match found {
            Some(event) => {
                assert_eq!(event.type_.as_deref(), Some("Normal"));
                assert_eq!(event.message.as_deref(), Some("Node e status is now: CIDRNotAvailable"));
                Ok(())
            }
            None => Err(format!("{} events", list.items.len())),
        }
    })
    .await;

    // Deleting a node frees its range for the one waiting.
    Api::<Node>::all(server.client.clone()).delete("a", &DeleteParams::default()).await.expect("delete node a");
    let after = server.ranges(&["b", "c", "d", "e"]).await;
    assert_eq!(after["e"], first["a"], "the freed range");
    assert_eq!(after["b"], first["b"]);
}
