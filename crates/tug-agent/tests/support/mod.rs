//! The harness the agent's integration tests share: an in-process cluster (API server,
//! scheduler, controllers), a host (data dir with the demo images, a bridge and pod range of its
//! own, swept on drop), a running agent, and small helpers around them.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tug_agent::agent::{self, AgentError, AgentOptions};
use tug_agent::containerd::{Layout, ManagedContainerd};
use tug_apiserver::server::{RunningServer, ServerConfig};
use tug_cri::v1::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
use tug_testkit::eventually;

/// The `proto` of routes made by the agents of tests that share the host's network (one-node
/// clusters: they make none, but remove stale ones of their protocol at start).
pub const TEST_ROUTE_PROTOCOL: u8 = 117;

/// How long anything asynchronous may take before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A server with the scheduler and the controllers, all in this process.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub server: RunningServer,
    pub client: Client,
    stop: watch::Sender<bool>,
}

impl Cluster {
    /// A cluster whose admission gives pods the usual 300 s not-ready/unreachable tolerations.
    pub async fn start() -> Cluster {
        Cluster::start_with(|dir| ServerConfig {
            admission: tug_apiserver::Admission { default_toleration_seconds: 300 },
            ..ServerConfig::local(dir)
        })
        .await
    }

    /// A cluster whose server is configured by `config` from its data dir.
    pub async fn start_with(config: impl FnOnce(&Path) -> ServerConfig) -> Cluster {
        Cluster::start_with_controllers(config, Default::default()).await
    }

    /// Like [`Cluster::start_with`], with the controllers configured by `controllers` (a short
    /// node grace, say).
    pub async fn start_with_controllers(
        config: impl FnOnce(&Path) -> ServerConfig,
        controllers: tug_controllers::ControllerOptions,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = tug_apiserver::server::start(config(dir.path())).await.expect("the server starts");
        let client = Client::new(server.local_service(), "default");
        let (stop, stopped) = watch::channel(false);
        let scheduler = tug_scheduler::run(client.clone(), Default::default(), until(stopped.clone()));
        tokio::spawn(async move { scheduler.await.expect("the scheduler runs") });
        tokio::spawn(tug_controllers::run(client.clone(), controllers, until(stopped)));
        Cluster { dir, server, client, stop }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Resolves once `true` is sent on the channel: the shutdown signal of the cluster and agents.
pub async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

pub fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|error| panic!("running {program}: {error}"))
}

/// Everything a test's agent made on the host (pods, bridge, mounts), removed on success,
/// failure and panic alike.
pub struct Host {
    dir: tempfile::TempDir,
    bridge: String,
    masquerade_table: String,
    /// Set once the test saw the runtime empty: nothing to sweep.
    pub clean: bool,
}

impl Host {
    /// A data dir holding the demo images, a unique bridge and a pod range in 10.214.0.0/16.
    pub fn new() -> (Host, AgentOptions) {
        Host::named("tugt", 214)
    }

    /// Like [`Host::new`], with `prefix` naming the temp dir, bridge and node, and the pod range
    /// in 10.`second_octet`.0.0/16: test binaries that may run at once keep apart.
    pub fn named(prefix: &str, second_octet: u8) -> (Host, AgentOptions) {
        let suffix = tug_testkit::unique_suffix();
        let dir = tempfile::Builder::new().prefix(&format!("{prefix}-")).tempdir().expect("temp dir");
        let images = Layout::new(dir.path()).images_dir();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images");
        let built = run(script.to_str().expect("utf-8 path"), &[images.to_str().expect("utf-8 path")]);
        assert!(built.status.success(), "scripts/demo-images failed: {}", String::from_utf8_lossy(&built.stderr));
        // Interface names have at most 15 characters.
        let bridge: String = format!("{prefix}{suffix}").chars().take(15).collect();
        let octet = u8::from_str_radix(&suffix[suffix.len() - 2..], 16).expect("hex suffix");
        let mut options = AgentOptions::new(format!("{prefix}-{suffix}"), dir.path());
        options.pod_cidr = Some(format!("10.{second_octet}.{octet}.0/24"));
        options.cluster_cidr = format!("10.{second_octet}.0.0/16");
        options.cni_bridge = bridge.clone();
        // Host objects of this test's own: its masquerade table, and a route protocol no real
        // agent uses, so an agent of a test never removes a real agent's routes on this host.
        let masquerade_table = format!("tugt_{suffix}");
        options.masquerade_table = masquerade_table.clone();
        options.route_protocol = TEST_ROUTE_PROTOCOL;
        options.lease_interval = Duration::from_millis(500);
        (Host { dir, bridge, masquerade_table, clean: false }, options)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
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
        let _ = run("nft", &["delete", "table", "ip", &self.masquerade_table]);
        unmount_under(self.dir.path());
    }
}

/// Removes every pod sandbox (and so every container) the runtime knows.
pub async fn remove_all_pods(socket: &Path) -> Result<(), String> {
    let mut cri = tug_cri::connect(socket).await.map_err(|error| error.to_string())?;
    let pods = cri.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.map_err(|s| s.to_string())?;
    for pod in pods.into_inner().items {
        let _ = cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await;
        let _ = cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.id }).await;
    }
    Ok(())
}

/// The mount points under `dir` (deepest first), from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    points
}

/// Unmounts what a run left mounted in `dir` (netns files, rootfs), so it can be removed.
pub fn unmount_under(dir: &Path) {
    for point in mounts_under(dir) {
        let _ = run("umount", &["-l", &point]);
    }
}

/// A running agent, stopped by [`Agent::stop`] (or with the test).
pub struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    pub fn start(client: &Client, options: &AgentOptions) -> Agent {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(agent::run(client.clone(), options.clone(), until(stopped)));
        Agent { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("the agent task").expect("the agent ran without error");
    }
}

/// The node `name` once it reports Ready.
pub async fn node_ready(client: &Client, name: &str) -> Node {
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

/// Deletes the pods `names` and waits until the API has no pod left and the runtime at `socket`
/// no sandbox.
pub async fn delete_pods_and_wait(pods: &Api<Pod>, names: &[&str], socket: &Path) {
    for name in names {
        pods.delete(name, &DeleteParams::default()).await.expect("deleted");
    }
    eventually("the pods and their sandboxes to be gone", DEADLINE, || async {
        let left = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        let mut cri = tug_cri::connect(socket).await.map_err(|e| e.to_string())?;
        let sandboxes = cri
            .runtime
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .items
            .len();
        if left == 0 && sandboxes == 0 { Ok(()) } else { Err(format!("{left} pods, {sandboxes} sandboxes")) }
    })
    .await;
}
