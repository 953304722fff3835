//! containerd dies under a running node (SIGKILL, as the OOM killer would): the agent starts it
//! again, the running pod carries on untouched (same container, no restart, no status write),
//! the node goes `Ready=False` ("container runtime is down") and back to Ready with events
//! saying so, and new pods start. Needs root (network namespaces, bridges, mounts), as
//! `scripts/test.sh` and CI run it.
//!
//! The managed containerd's pid is read from `DATA_DIR/containerd.pid`, which the agent writes at
//! every (re)start; the process serving the socket is told by the socket's peer credentials.

mod support;

use std::path::Path;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Node, NodeCondition, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use support::{Agent, Cluster, DEADLINE, Host, delete_pods_and_wait, node_ready, run};
use tug_agent::agent::node::{RUNTIME_DOWN, RUNTIME_RESTARTED_REASON};
use tug_agent::containerd::Layout;
use tug_cri::v1::ContainerStatusRequest;
use tug_testkit::eventually;

fn sleeper(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "localhost/busybox:latest",
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    }))
    .expect("a valid Pod")
}

/// Pod `name` once it is Running and Ready.
async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    eventually(&format!("pod {name} Running and Ready"), DEADLINE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let status = pod.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        if status.phase.as_deref() == Some("Running") && ready { Ok(pod) } else { Err(format!("{status:?}")) }
    })
    .await
}

/// (containerID, restartCount) of the pod's container.
fn container_of(pod: &Pod) -> (String, i32) {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
    let status = statuses.first().expect("a container status");
    (status.container_id.clone().unwrap_or_default(), status.restart_count)
}

/// The pid the agent recorded for its containerd.
fn recorded_pid(layout: &Layout) -> Result<i32, String> {
    let text =
        std::fs::read_to_string(layout.pid_file()).map_err(|e| format!("{}: {e}", layout.pid_file().display()))?;
    text.trim().parse().map_err(|e| format!("pid file {text:?}: {e}"))
}

/// The pid of the process accepting on `socket` (its peer credentials).
async fn serving_pid(socket: &Path) -> Result<i32, String> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| e.to_string())?;
    stream.peer_cred().map_err(|e| e.to_string())?.pid().ok_or_else(|| "no peer pid".to_string())
}

fn ready_condition(node: &Node) -> Option<NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").cloned()
}

/// (type, reason, message) of the events about node `name`.
async fn node_events(client: &kube::Client, name: &str) -> Vec<(String, String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.expect("events");
    let mut about: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Node") && e.involved_object.name.as_deref() == Some(name)
        })
        .collect();
    about.sort_by_key(|e| e.metadata.name.clone());
    about
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_containerd_is_restarted_and_its_pods_carry_on() {
    let cluster = Cluster::start().await;
    let (mut host, options) = Host::named("tugr", 218);
    let agent = Agent::start(&cluster.client, &options);
    let node = node_ready(&cluster.client, &options.node_name).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    pods.create(&PostParams::default(), &sleeper("before")).await.expect("created");
    let before = running(&pods, "before").await;
    let (container_id, restarts) = container_of(&before);
    assert_eq!(restarts, 0);

    let layout = Layout::new(host.data_dir());
    let socket = host.socket();
    let old_pid = recorded_pid(&layout).expect("the agent records containerd's pid");
    assert_eq!(serving_pid(&socket).await, Ok(old_pid), "the recorded pid serves the socket");

    // Every change of the node from here on, to see Ready go False and come back.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let since = node.metadata.resource_version.clone().unwrap_or_default();
    let mut changes = nodes.watch(&WatchParams::default(), &since).await.expect("a node watch").boxed();

    let killed = Instant::now();
    let kill = run("kill", &["-KILL", &old_pid.to_string()]);
    assert!(kill.status.success(), "kill: {}", String::from_utf8_lossy(&kill.stderr));

    let mut seen: Vec<(String, String, String)> = Vec::new();
    let back = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = changes.try_next().await.expect("the node watch") {
            let WatchEvent::Modified(node) = event else { continue };
            if node.metadata.name.as_deref() != Some(options.node_name.as_str()) {
                continue;
            }
            let Some(ready) = ready_condition(&node) else { continue };
            let (status, reason, message) =
                (ready.status, ready.reason.unwrap_or_default(), ready.message.unwrap_or_default());
            let recovered = status == "True" && seen.iter().any(|(s, ..)| s == "False");
            seen.push((status, reason, message));
            if recovered {
                return killed.elapsed();
            }
        }
        panic!("the node watch ended");
    })
    .await
    .unwrap_or_else(|_| panic!("the node did not go NotReady and Ready again; seen {seen:?}"));
    let down = ("False".to_string(), "KubeletNotReady".to_string(), RUNTIME_DOWN.to_string());
    assert!(seen.contains(&down), "Ready=False while containerd was down; seen {seen:?}");
    assert_eq!(seen.last().map(|(_, reason, _)| reason.as_str()), Some("KubeletReady"));

    let new_pid = eventually("a new containerd to serve the socket", DEADLINE, || async {
        let serving = serving_pid(&socket).await?;
        let recorded = recorded_pid(&layout)?;
        if serving == recorded { Ok(serving) } else { Err(format!("{serving} serves, {recorded} recorded")) }
    })
    .await;
    assert_ne!(new_pid, old_pid);

    // The pod was left alone: same container, still running under the new containerd, and not
    // a single status write while the runtime was away.
    let after = running(&pods, "before").await;
    assert_eq!(container_of(&after), (container_id.clone(), 0), "the container must survive, not restart");
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "no status change");
    let mut cri = tug_cri::connect(&socket).await.expect("CRI");
    let id = container_id.trim_start_matches("containerd://").to_string();
    let status = cri.runtime.container_status(ContainerStatusRequest { container_id: id, verbose: false }).await;
    let state = status.expect("the container is known to the new containerd").into_inner().status.map(|s| s.state);
    assert_eq!(state, Some(1), "CONTAINER_RUNNING");

    // The agent records each event just after the status it describes, so they may trail the
    // watch that saw the node Ready again.
    let events = eventually("the node's restart, NodeNotReady and NodeReady events", DEADLINE, || async {
        let events = node_events(&cluster.client, &options.node_name).await;
        let has = |reason: &str| events.iter().any(|(_, r, _)| r == reason);
        if [RUNTIME_RESTARTED_REASON, "NodeNotReady", "NodeReady"].into_iter().all(has) {
            Ok(events)
        } else {
            Err(format!("events so far: {events:?}"))
        }
    })
    .await;
    let restarted = events.iter().find(|(_, reason, _)| reason == RUNTIME_RESTARTED_REASON);
    let (kind, _, message) = restarted.unwrap_or_else(|| panic!("a restart event; got {events:?}"));
    assert_eq!(kind, "Warning");
    assert!(message.contains("SIGKILL"), "{message}");
    for reason in ["NodeNotReady", "NodeReady"] {
        assert!(events.iter().any(|(_, r, _)| r == reason), "a {reason} event; got {events:?}");
    }

    // The node works: a pod started afterwards runs.
    pods.create(&PostParams::default(), &sleeper("after")).await.expect("created");
    running(&pods, "after").await;

    delete_pods_and_wait(&pods, &["before", "after"], &host.socket()).await;
    host.clean = true;

    // Stopping the agent stops containerd for good: no restart.
    agent.stop().await;
    assert!(!Path::new(&format!("/proc/{new_pid}")).exists(), "containerd {new_pid} must be stopped");
    assert!(!layout.pid_file().exists(), "the pid file goes with it");
    eprintln!("timings: kill to Ready again {back:?}");
}
