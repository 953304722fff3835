//! Real containers: a control plane in this process (API server, scheduler, controllers) and
//! one node agent in a child process (this binary again, `containers-agent`), with a containerd
//! of its own and the demo image already imported. Figures:
//!
//! - `all_running_s`: from creating a Deployment of `--replicas` busybox httpd pods until all
//!   are Running and Ready;
//! - `start_p50_ms` / `start_p99_ms`: per pod, from its creation (first seen on a watch) until
//!   it is seen Ready;
//! - `delete_all_s`: from deleting the Deployment until every pod is gone from the API (the
//!   agent removes a pod only after its containers and sandbox are gone);
//! - `agent_rss_mb`: the agent process's resident memory with all pods running (containerd and
//!   the shims are separate processes and not counted).
//!
//! With `--vs-swarm`, the same image and replica count first run as a Docker swarm service
//! (`swarm_all_running_s`, `ratio_vs_swarm` = ours / swarm's).
//!
//! Progress is followed through a watch on pods, never by polling the API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use crate::{ctx, percentile_ms, round2};

#[derive(Debug, clap::Args)]
pub struct ContainersArgs {
    #[arg(long, default_value_t = 100)]
    replicas: i32,
    /// Also run the same service on Docker swarm (Debian's docker.io) and compare.
    #[arg(long)]
    vs_swarm: bool,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Where the server and the agent keep their data (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The agent child's arguments (hidden subcommand).
#[derive(Debug, clap::Args)]
pub struct AgentChildArgs {
    #[arg(long)]
    server: String,
    #[arg(long)]
    token_file: PathBuf,
    #[arg(long)]
    ca_file: PathBuf,
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    node_name: String,
}

const NAMESPACE: &str = "bench";
const NODE: &str = "bench-node";
const IMAGE: &str = "localhost/busybox:1.35";

/// Runs the agent until stdin closes (the benchmark ending or dying).
pub async fn agent_child(args: AgentChildArgs) -> Result<String, String> {
    let client = tug_leader::join::client_from_token(&args.server, &args.token_file, &args.ca_file)
        .map_err(ctx("the agent's credentials"))?;
    let mut options = tug_agent::agent::AgentOptions::new(args.node_name, args.data_dir);
    options.pod_cidr = Some("10.216.0.0/24".into());
    options.cni_bridge = "tugbench0".into();
    // Its own nft table and route protocol: a real agent on this host keeps its own.
    options.masquerade_table = "tugbench_podnet".into();
    options.route_protocol = 118;
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            use std::io::Read;
            let mut sink = [0u8; 64];
            while std::io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await;
    };
    tug_agent::agent::run(client, options, stdin_closed).await.map_err(ctx("the agent"))?;
    Ok("{}".into())
}

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{"name": "web", "image": IMAGE,
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"]}]
                }
            }
        }
    }))
    .expect("a valid Deployment")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The resident memory of process `pid`, in MB.
fn rss_mb(pid: u32) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(ctx("reading the agent's status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no VmRSS in /proc/PID/status")?;
    Ok(kb / 1024.0)
}

/// The agent child process; killed (stdin closed, then SIGKILL) when dropped.
struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    fn spawn(server_dir: &Path, url: &str, agent_dir: &Path) -> Result<AgentProcess, String> {
        let me = std::env::current_exe().map_err(ctx("finding this program"))?;
        let log = std::fs::File::create(agent_dir.join("agent.log")).map_err(ctx("the agent's log"))?;
        let child = Command::new(me)
            .arg("containers-agent")
            .args(["--server", url, "--node-name", NODE])
            .arg("--token-file")
            .arg(server_dir.join("node-token"))
            .arg("--ca-file")
            .arg(server_dir.join("tls/ca.crt"))
            .arg("--data-dir")
            .arg(agent_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(ctx("starting the agent"))?;
        Ok(AgentProcess { child })
    }

    /// Asks the agent to stop (its stdin closes) and waits for it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn run(args: ContainersArgs) -> Result<String, String> {
    if args.replicas < 1 {
        return Err("--replicas must be at least 1".into());
    }
    let swarm = if args.vs_swarm { Some(crate::swarm::run(IMAGE, args.replicas, &args.dir)?) } else { None };
    let (dir, server) = crate::api::start_server("tug-bench-containers-", args.dir.clone()).await?;
    let agent_dir = dir.path().join("agent");
    let images = agent_dir.join("images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images");
    let built = Command::new(&script).arg(&images).output().map_err(ctx("running scripts/demo-images"))?;
    if !built.status.success() {
        return Err(format!("scripts/demo-images: {}", String::from_utf8_lossy(&built.stderr)));
    }
    let client = kube::Client::new(server.local_service(), "default");
    let (stop_all, stop) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let scheduler = tokio::spawn(tug_scheduler::run(client.clone(), Default::default(), stopped(stop.clone())));
    let controllers = tokio::spawn(tug_controllers::run(client.clone(), Default::default(), stopped(stop)));
    let agent = AgentProcess::spawn(dir.path(), &server.url, &agent_dir)?;
    let agent_pid = agent.child.id();
    let result = phases(&client, &args, agent_pid).await;
    // Leave nothing running: whatever is left is deleted while the agent still runs.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let _ = deployments.delete("web", &DeleteParams::default()).await;
    let _ = wait_pods_gone(&client, Duration::from_secs(60)).await;
    tokio::task::spawn_blocking(move || agent.stop()).await.map_err(ctx("stopping the agent"))?;
    let _ = stop_all.send(true);
    let _ = scheduler.await;
    let _ = controllers.await;
    server.stop().await;
    crate::unmount_under(&agent_dir);
    let _ = Command::new("ip").args(["link", "del", "tugbench0"]).output();
    let mut figures = result?;
    if let Some(swarm_s) = swarm {
        let ours = figures["all_running_s"].as_f64().unwrap_or(0.0);
        figures["swarm_all_running_s"] = json!(round2(swarm_s));
        figures["ratio_vs_swarm"] = json!(round2(ours / swarm_s.max(f64::EPSILON)));
    }
    Ok(figures.to_string())
}

async fn phases(client: &kube::Client, args: &ContainersArgs, agent_pid: u32) -> Result<serde_json::Value, String> {
    let timeout = Duration::from_secs(args.timeout_s);
    let nodes: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    wait_until(&nodes, "the agent's node to be Ready", timeout, |node: &Node| {
        node.metadata.name.as_deref() == Some(NODE)
            && node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await?;
    eprintln!("containers: node Ready {:.1} s after the agent started", started.elapsed().as_secs_f64());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).map_err(ctx("namespace"))?;
    namespaces.create(&PostParams::default(), &ns).await.map_err(ctx("creating the namespace"))?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut stream = std::pin::pin!(watcher(pods.clone(), watcher::Config::default()));
    // The watch is established before the Deployment exists, so every pod's creation is seen.
    while let Some(event) = stream.next().await {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            break;
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let created = Instant::now();
    deployments.create(&PostParams::default(), &deployment(args.replicas)).await.map_err(ctx("creating"))?;
    let want = usize::try_from(args.replicas).unwrap_or(0);
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut ready_after: HashMap<String, Duration> = HashMap::new();
    let mut last_print = Instant::now();
    tokio::time::timeout(timeout, async {
        while let Some(event) = stream.next().await {
            let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else { continue };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let seen = *first_seen.entry(name.clone()).or_insert_with(Instant::now);
            if is_ready(&pod) && !ready_after.contains_key(&name) {
                ready_after.insert(name, seen.elapsed());
            }
            if ready_after.len() >= want {
                return Ok(());
            }
            if last_print.elapsed() > Duration::from_secs(2) {
                eprintln!(
                    "  {} of {want} pods ready after {:.1} s",
                    ready_after.len(),
                    created.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
        }
        Err("the pod watch ended".to_string())
    })
    .await
    .map_err(|_| format!("{} of {want} pods ready within {timeout:?}", ready_after.len()))??;
    let all_running_s = created.elapsed().as_secs_f64();
    let agent_rss_mb = rss_mb(agent_pid)?;
    let mut starts: Vec<Duration> = ready_after.into_values().collect();
    eprintln!("containers: {want} pods Running and Ready in {all_running_s:.2} s; agent RSS {agent_rss_mb:.1} MB");

    let deleting = Instant::now();
    deployments.delete("web", &DeleteParams::default()).await.map_err(ctx("deleting"))?;
    wait_pods_gone(client, timeout).await?;
    let delete_all_s = deleting.elapsed().as_secs_f64();
    eprintln!("containers: all pods gone {delete_all_s:.2} s after the delete");
    Ok(json!({
        "bench": "containers",
        "replicas": args.replicas,
        "all_running_s": round2(all_running_s),
        "start_p50_ms": round2(percentile_ms(&mut starts, 0.50)),
        "start_p99_ms": round2(percentile_ms(&mut starts, 0.99)),
        "delete_all_s": round2(delete_all_s),
        "agent_rss_mb": round2(agent_rss_mb),
    }))
}

/// Waits until some node satisfies `done`, following a watch.
async fn wait_until(
    api: &Api<Node>,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Node) -> bool,
) -> Result<(), String> {
    let mut stream = std::pin::pin!(watcher(api.clone(), watcher::Config::default()));
    tokio::time::timeout(timeout, async {
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event
                && done(&o)
            {
                return Ok(());
            }
        }
        Err(format!("the watch for {what} ended"))
    })
    .await
    .map_err(|_| format!("{what}: not within {timeout:?}"))?
}

/// Waits until the benchmark's namespace has no pods, following a watch.
async fn wait_pods_gone(client: &kube::Client, timeout: Duration) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut stream = std::pin::pin!(watcher(pods, watcher::Config::default()));
    let mut live: HashMap<String, ()> = HashMap::new();
    let mut listed = false;
    tokio::time::timeout(timeout, async {
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => live.clear(),
                Ok(watcher::Event::InitApply(p) | watcher::Event::Apply(p)) => {
                    live.insert(p.metadata.name.unwrap_or_default(), ());
                }
                Ok(watcher::Event::Delete(p)) => {
                    live.remove(p.metadata.name.as_deref().unwrap_or_default());
                }
                Ok(watcher::Event::InitDone) => listed = true,
                Err(_) => continue,
            }
            if listed && live.is_empty() {
                return Ok(());
            }
        }
        Err("the pod watch ended".to_string())
    })
    .await
    .map_err(|_| format!("pods still there after {timeout:?}: {}", live.len()))?
}
