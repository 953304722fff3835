//! The real node agent against a real API server, scheduler and controllers (all in this
//! process) and a real containerd: Deployments come up Running and Ready and answer HTTP on
//! their pod IPs, a crashing container loops with back-off, deletion leaves no sandbox behind,
//! and a restarted agent adopts the running containers. Needs root (network namespaces,
//! bridges, mounts), as `scripts/test.sh` and CI run it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Agent, Cluster, DEADLINE, Host, node_ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tug_cri::v1::{ListContainersRequest, ListPodSandboxRequest};
use tug_testkit::eventually;

const HTTP_PORT: u16 = 8080;

fn web_deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    // busybox httpd as PID 1 ignores SIGTERM: keep the kill short.
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web",
                        "image": "localhost/busybox:latest",
                        "imagePullPolicy": "Never",
                        "command": ["httpd", "-f", "-p", HTTP_PORT.to_string(), "-h", "/tmp"],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                    }],
                },
            },
        },
    }))
    .expect("a valid Deployment")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pods of app `app` once `count` of them are Running and Ready with an IP.
async fn ready_pods(pods: &Api<Pod>, app: &str, count: usize) -> Vec<Pod> {
    eventually(&format!("{count} pods of {app} Running and Ready"), DEADLINE, || async {
        let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.map_err(|e| e.to_string())?;
        let ready: Vec<Pod> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                let status = p.status.clone().unwrap_or_default();
                status.phase.as_deref() == Some("Running") && status.pod_ip.is_some() && is_ready(p)
            })
            .cloned()
            .collect();
        if ready.len() == count {
            Ok(ready)
        } else {
            Err(format!("{:#?}", list.items.iter().map(|p| (p.name_any(), p.status.clone())).collect::<Vec<_>>()))
        }
    })
    .await
}

/// GET / from `ip:port`, retried until the server answers.
async fn http_get(ip: &str, port: u16) -> String {
    eventually(&format!("an HTTP answer from {ip}:{port}"), Duration::from_secs(10), || async {
        let mut stream = TcpStream::connect((ip, port)).await.map_err(|e| e.to_string())?;
        stream.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").await.map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.map_err(|e| e.to_string())?;
        Ok(response)
    })
    .await
}

/// (container ID, restart count) of each pod's first container, by pod name.
fn container_ids(pods: &[Pod]) -> Vec<(String, String, i32)> {
    let mut ids: Vec<(String, String, i32)> = pods
        .iter()
        .map(|p| {
            let status = &p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default()[0];
            (p.name_any(), status.container_id.clone().unwrap_or_default(), status.restart_count)
        })
        .collect();
    ids.sort();
    ids
}

async fn sandboxes(socket: &Path) -> usize {
    let mut cri = tug_cri::connect(socket).await.expect("CRI");
    cri.runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_serves_http_survives_an_agent_restart_and_leaves_nothing_when_deleted() {
    let cluster = Cluster::start().await;
    let (mut host, options) = Host::new();
    let agent = Agent::start(&cluster.client, &options);
    let node = node_ready(&cluster.client, &options.node_name).await;
    let status = node.status.clone().unwrap_or_default();
    assert!(status.node_info.expect("nodeInfo").container_runtime_version.starts_with("containerd://"));
    assert_eq!(status.capacity.expect("capacity")["pods"].0, "110");
    assert_eq!(node.spec.and_then(|s| s.pod_cidr), options.pod_cidr.clone());

    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let started = Instant::now();
    deployments.create(&PostParams::default(), &web_deployment("web", 2)).await.expect("created");
    let running = ready_pods(&pods, "web", 2).await;
    let all_ready = started.elapsed();
    let pod_cidr = options.pod_cidr.clone().expect("the test host's range");
    let subnet = pod_cidr.trim_end_matches("0/24");
    for pod in &running {
        let status = pod.status.clone().unwrap_or_default();
        let ip = status.pod_ip.clone().expect("pod IP");
        assert!(ip.starts_with(subnet), "pod IP {ip} outside {pod_cidr}");
        assert_eq!(status.qos_class.as_deref(), Some("Burstable"));
        let container = &status.container_statuses.expect("container statuses")[0];
        assert!(container.container_id.as_deref().is_some_and(|id| id.starts_with("containerd://")));
        assert!(!container.image_id.is_empty());
        let response = http_get(&ip, HTTP_PORT).await;
        assert!(response.starts_with("HTTP/1."), "{}: {response}", pod.name_any());
    }
    let before = container_ids(&running);

    // A restarted agent adopts the running containers. Scaling up afterwards proves the new
    // agent has listed (and so synced) the old pods by the time the third pod runs.
    agent.stop().await;
    let agent = Agent::start(&cluster.client, &options);
    let patch = Patch::Merge(json!({"spec": {"replicas": 3}}));
    deployments.patch("web", &PatchParams::default(), &patch).await.expect("scaled");
    let after = ready_pods(&pods, "web", 3).await;
    let kept: Vec<_> =
        container_ids(&after).into_iter().filter(|(name, ..)| before.iter().any(|b| &b.0 == name)).collect();
    assert_eq!(kept, before, "the restarted agent must not restart healthy containers");
    assert!(before.iter().all(|(_, _, restarts)| *restarts == 0));

    let deleting = Instant::now();
    deployments.delete("web", &DeleteParams::default()).await.expect("deleted");
    let socket = host.socket();
    eventually("the deployment's pods and sandboxes to be gone", DEADLINE, || async {
        let left = pods.list(&ListParams::default().labels("app=web")).await.map_err(|e| e.to_string())?.items.len();
        let sandboxes = sandboxes(&socket).await;
        if left == 0 && sandboxes == 0 { Ok(()) } else { Err(format!("{left} pods, {sandboxes} sandboxes")) }
    })
    .await;
    let deleted = deleting.elapsed();
    let mut cri = tug_cri::connect(&socket).await.expect("CRI");
    let containers = cri.runtime.list_containers(ListContainersRequest::default()).await.expect("list").into_inner();
    assert!(containers.containers.is_empty(), "containers left: {:?}", containers.containers);
    host.clean = true;
    agent.stop().await;
    eprintln!("timings: 2 pods Running and Ready {all_ready:?}, all deleted {deleted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_loops_with_back_off_and_its_pod_is_removed_on_delete() {
    let cluster = Cluster::start().await;
    let (mut host, options) = Host::new();
    let agent = Agent::start(&cluster.client, &options);
    node_ready(&cluster.client, &options.node_name).await;

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crash"},
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "localhost/busybox:latest",
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "exit 1"],
            }],
        },
    }))
    .expect("a valid Pod");
    pods.create(&PostParams::default(), &pod).await.expect("created");
    let status = eventually("the pod to reach CrashLoopBackOff", DEADLINE, || async {
        let pod = pods.get("crash").await.map_err(|e| e.to_string())?;
        let container = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        let looping = container.first().is_some_and(|c| {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            c.restart_count >= 1 && waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff")
        });
        if looping { Ok(container[0].clone()) } else { Err(format!("{:?}", pod.status)) }
    })
    .await;
    let last = status.last_state.and_then(|s| s.terminated).expect("the last run is reported");
    assert_eq!(last.exit_code, 1);
    assert!(!status.ready);

    pods.delete("crash", &DeleteParams::default()).await.expect("deleted");
    let socket = host.socket();
    eventually("the pod and its sandbox to be gone", DEADLINE, || async {
        let left = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        let sandboxes = sandboxes(&socket).await;
        if left == 0 && sandboxes == 0 { Ok(()) } else { Err(format!("{left} pods, {sandboxes} sandboxes")) }
    })
    .await;
    host.clean = true;
    agent.stop().await;
}

/// The agent re-asserts the status of the pods it runs when the API's copy differs from what it
/// observes: a pod marked not ready behind its back (as the node lifecycle controller marks the
/// pods of a silent node) is Ready again within seconds, with the same container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_marked_not_ready_behind_the_agents_back_is_ready_again() {
    let cluster = Cluster::start().await;
    let (mut host, options) = Host::new();
    let agent = Agent::start(&cluster.client, &options);
    node_ready(&cluster.client, &options.node_name).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    deployments.create(&PostParams::default(), &web_deployment("marked", 1)).await.expect("created");
    let running = ready_pods(&pods, "marked", 1).await;
    let (name, uid) = (running[0].name_any(), running[0].uid());
    let mut conditions = running[0].status.clone().and_then(|s| s.conditions).unwrap_or_default();
    let ready = conditions.iter_mut().find(|c| c.type_ == "Ready").expect("a Ready condition");
    (ready.status, ready.reason) = ("False".into(), Some("NodeNotReady".into()));
    let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
    pods.patch_status(&name, &PatchParams::default(), &patch).await.expect("marked not ready");
    let again = eventually("the pod Ready again", Duration::from_secs(15), || async {
        let pod = pods.get(&name).await.map_err(|e| e.to_string())?;
        if is_ready(&pod) { Ok(pod) } else { Err(format!("{:?}", pod.status)) }
    })
    .await;
    assert_eq!(again.uid(), uid, "the same pod");
    assert_eq!(container_ids(&[again]), container_ids(&running), "the same container, not restarted");

    deployments.delete("marked", &DeleteParams::default()).await.expect("deleted");
    let socket = host.socket();
    eventually("the pod and its sandbox to be gone", DEADLINE, || async {
        let left = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        let sandboxes = sandboxes(&socket).await;
        if left == 0 && sandboxes == 0 { Ok(()) } else { Err(format!("{left} pods, {sandboxes} sandboxes")) }
    })
    .await;
    host.clean = true;
    agent.stop().await;
}
