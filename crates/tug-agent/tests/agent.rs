//! The real node agent against a real API server, scheduler and controllers (all in this
//! process) and a real containerd: Deployments come up Running and Ready and answer HTTP on
//! their pod IPs, a crashing container loops with back-off, deletion leaves no sandbox behind,
//! and a restarted agent adopts the running containers. Needs root (network namespaces,
//! bridges, mounts), as `scripts/test.sh` and CI run it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tug_agent::agent::{self, AgentError, AgentOptions};
use tug_agent::containerd::{Layout, ManagedContainerd};
use tug_apiserver::server::{RunningServer, ServerConfig};
use tug_cri::v1::{ListContainersRequest, ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
use tug_testkit::eventually;

const DEADLINE: Duration = Duration::from_secs(60);
const HTTP_PORT: u16 = 8080;

/// A server with the scheduler and the controllers, all in this process.
struct Cluster {
    _dir: tempfile::TempDir,
    _server: RunningServer,
    client: Client,
    stop: watch::Sender<bool>,
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = tug_apiserver::server::start(ServerConfig {
            admission: tug_apiserver::Admission { default_toleration_seconds: 300 },
            ..ServerConfig::local(dir.path())
        })
        .await
        .expect("the server starts");
        let client = Client::new(server.local_service(), "default");
        let (stop, stopped) = watch::channel(false);
        let scheduler = tug_scheduler::run(client.clone(), Default::default(), until(stopped.clone()));
        tokio::spawn(async move { scheduler.await.expect("the scheduler runs") });
        tokio::spawn(tug_controllers::run(client.clone(), Default::default(), until(stopped)));
        Cluster { _dir: dir, _server: server, client, stop }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|error| panic!("running {program}: {error}"))
}

/// Everything a test's agent made on the host (pods, bridge, mounts), removed on success,
/// failure and panic alike.
struct Host {
    dir: tempfile::TempDir,
    bridge: String,
    /// Set once the test saw the runtime empty: nothing to sweep.
    clean: bool,
}

impl Host {
    /// A data dir holding the demo images, and a unique bridge and pod range.
    fn new() -> (Host, AgentOptions) {
        let suffix = tug_testkit::unique_suffix();
        let dir = tempfile::Builder::new().prefix("tugt-").tempdir().expect("temp dir");
        let images = Layout::new(dir.path()).images_dir();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images");
        let built = run(script.to_str().expect("utf-8 path"), &[images.to_str().expect("utf-8 path")]);
        assert!(built.status.success(), "scripts/demo-images failed: {}", String::from_utf8_lossy(&built.stderr));
        let bridge: String = format!("tugt{suffix}").chars().take(15).collect();
        let octet = u8::from_str_radix(&suffix[suffix.len() - 2..], 16).expect("hex suffix");
        let mut options = AgentOptions::new(format!("tugt-{suffix}"), dir.path());
        options.pod_cidr = format!("10.214.{octet}.0/24");
        options.cni_bridge = bridge.clone();
        options.lease_interval = Duration::from_millis(500);
        (Host { dir, bridge, clean: false }, options)
    }

    fn socket(&self) -> PathBuf {
        Layout::new(self.dir.path()).socket()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.clean {
            // Over a runtime of its own: this may run while the test's runtime unwinds. The
            // agent's containerd may be gone already; then one is started to remove the pods.
            let (socket, dir) = (self.socket(), self.dir.path().to_path_buf());
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(async {
                    if remove_all_pods(&socket).await.is_err()
                        && let Ok(mut containerd) = ManagedContainerd::start(&dir).await
                    {
                        let _ = remove_all_pods(&socket).await;
                        let _ = containerd.stop();
                    }
                });
                Some(())
            })
            .join();
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        unmount_under(self.dir.path());
    }
}

async fn remove_all_pods(socket: &Path) -> Result<(), String> {
    let mut cri = tug_cri::connect(socket).await.map_err(|error| error.to_string())?;
    let pods = cri.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.map_err(|s| s.to_string())?;
    for pod in pods.into_inner().items {
        let _ = cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await;
        let _ = cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.id }).await;
    }
    Ok(())
}

fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|line| line.split_whitespace().nth(1)).filter(|p| p.starts_with(&prefix)).collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = run("umount", &["-l", point]);
    }
}

/// A running agent, stopped by [`Agent::stop`] (or with the test).
struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    fn start(client: &Client, options: &AgentOptions) -> Agent {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(agent::run(client.clone(), options.clone(), until(stopped)));
        Agent { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("the agent task").expect("the agent ran without error");
    }
}

async fn node_ready(client: &Client, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("the node to be Ready", DEADLINE, || async {
        let node = nodes.get(name).await.map_err(|e| e.to_string())?;
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready { Ok(node) } else { Err(format!("{:?}", node.status)) }
    })
    .await
}

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
    assert_eq!(node.spec.and_then(|s| s.pod_cidr), Some(options.pod_cidr.clone()));

    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let started = Instant::now();
    deployments.create(&PostParams::default(), &web_deployment("web", 2)).await.expect("created");
    let running = ready_pods(&pods, "web", 2).await;
    let all_ready = started.elapsed();
    let subnet = options.pod_cidr.trim_end_matches("0/24");
    for pod in &running {
        let status = pod.status.clone().unwrap_or_default();
        let ip = status.pod_ip.clone().expect("pod IP");
        assert!(ip.starts_with(subnet), "pod IP {ip} outside {}", options.pod_cidr);
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
