//! The controllers end to end: an API server (SQLite), the scheduler, the controllers and
//! hollow nodes in this process. Three figures:
//!
//! - `pods_available_s`: from creating `--deployments` Deployments of `--replicas` each until
//!   every one reports all replicas available;
//! - `rollout_1000_s`: a rolling update (maxSurge 25%) of one of them until `kubectl rollout
//!   status` would call it complete;
//! - `node_failover_s`: from a hollow node's death (its sim stops: no more lease renewals)
//!   until its pods have been evicted and every Deployment is fully available again.
//!
//! Progress is followed through a watch on Deployments, never by polling.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;
use tug_sim::SimOptions;

use crate::ctx;

#[derive(Debug, clap::Args)]
pub struct ControllersArgs {
    /// Hollow nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    #[arg(long, default_value_t = 100)]
    deployments: usize,
    /// Replicas per Deployment.
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_s: u64,
    /// Where the server keeps its data (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const NAMESPACE: &str = "bench";
/// The node that dies in the failover phase.
const DOOMED: &str = "doomed-0";

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

/// Deployment status as a watch keeps it, and what "done" means for a phase.
struct Progress {
    deployments: HashMap<String, Deployment>,
}

impl Progress {
    fn available(&self) -> i64 {
        self.deployments
            .values()
            .map(|d| i64::from(d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)))
            .sum()
    }

    /// `kubectl rollout status`'s test, for every Deployment.
    fn all_rolled_out(&self, expected: usize) -> bool {
        self.deployments.len() == expected
            && self.deployments.values().all(|d| {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let s = d.status.clone().unwrap_or_default();
                d.metadata.generation <= s.observed_generation
                    && s.updated_replicas == Some(want)
                    && s.replicas == Some(want)
                    && s.available_replicas == Some(want)
            })
    }
}

/// Follows Deployments until `done` holds, printing progress; errors after `timeout`.
async fn wait_deployments(
    api: &Api<Deployment>,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Progress) -> bool,
) -> Result<(), String> {
    let mut progress = Progress { deployments: HashMap::new() };
    let mut stream = std::pin::pin!(watcher(api.clone(), watcher::Config::default()));
    let started = Instant::now();
    let mut last_print = Instant::now();
    let outcome = tokio::time::timeout(timeout, async {
        while let Some(event) = stream.next().await {
            // A watch that fell too far behind gets 410; the watcher relists by itself.
            let Ok(event) = event else { continue };
            match event {
                watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
                    progress.deployments.insert(d.metadata.name.clone().unwrap_or_default(), d);
                }
                watcher::Event::Delete(d) => {
                    progress.deployments.remove(d.metadata.name.as_deref().unwrap_or_default());
                }
                watcher::Event::Init => progress.deployments.clear(),
                watcher::Event::InitDone => {}
            }
            if done(&progress) {
                return Ok(());
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  {what}: {} pods available after {:.0} s",
                    progress.available(),
                    started.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
        }
        Err("the deployment watch ended".to_string())
    })
    .await;
    outcome.map_err(|_| format!("{what} did not finish within {timeout:?}"))?
}

pub async fn run(args: ControllersArgs) -> Result<String, String> {
    if args.nodes == 0 || args.deployments == 0 || args.replicas < 1 {
        return Err("--nodes, --deployments and --replicas must be at least 1".into());
    }
    let (_dir, server) = crate::api::start_server("tug-bench-controllers-", args.dir.clone()).await?;
    eprintln!("controllers: server at {}", server.url);
    let client = kube::Client::new(server.local_service(), "default");
    let (stop_all, stop) = watch::channel(false);
    let (stop_doomed, doomed_stop) = watch::channel(false);
    let sim_options = SimOptions {
        nodes: args.nodes,
        name_prefix: "sim".into(),
        cpu: "32".into(),
        memory: "128Gi".into(),
        pods: 110,
        zones: 3,
        ready_delay: Duration::from_millis(100),
        lease_interval: Duration::from_secs(10),
        ..SimOptions::default()
    };
    let doomed_options = SimOptions { nodes: 1, name_prefix: "doomed".into(), ..sim_options.clone() };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(tug_sim::run(client.clone(), sim_options, stopped(stop.clone())));
    tasks.spawn(tug_sim::run(client.clone(), doomed_options, stopped(doomed_stop)));
    let scheduler = tokio::spawn(tug_scheduler::run(client.clone(), Default::default(), stopped(stop.clone())));
    let controllers = tokio::spawn(tug_controllers::run(client.clone(), Default::default(), stopped(stop)));
    let result = phases(&client, &args, stop_doomed).await;
    let _ = stop_all.send(true);
    while tasks.join_next().await.is_some() {}
    let _ = scheduler.await;
    let _ = controllers.await;
    server.stop().await;
    result
}

async fn phases(
    client: &kube::Client,
    args: &ControllersArgs,
    stop_doomed: watch::Sender<bool>,
) -> Result<String, String> {
    let timeout = Duration::from_secs(args.timeout_s);
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let started = Instant::now();
    tokio::time::timeout(timeout, async {
        loop {
            // Registration only; a cheap count of names is enough and happens once.
            let n = nodes.list_metadata(&ListParams::default()).await.map_err(ctx("listing nodes"))?.items.len();
            if n > args.nodes {
                return Ok::<(), String>(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .map_err(|_| "the hollow nodes did not register".to_string())??;
    eprintln!("{} hollow nodes registered in {:.1} s", args.nodes + 1, started.elapsed().as_secs_f64());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).map_err(ctx("namespace"))?;
    namespaces.create(&PostParams::default(), &ns).await.map_err(ctx("creating the namespace"))?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);

    // Phase 1: everything available.
    let total = i64::from(args.replicas) * args.deployments as i64;
    let started = Instant::now();
    for i in 0..args.deployments {
        api.create(&PostParams::default(), &deployment(&format!("app-{i}"), args.replicas))
            .await
            .map_err(ctx("creating a deployment"))?;
    }
    let expected = args.deployments;
    wait_deployments(&api, "all pods available", timeout, |p| p.available() == total && p.all_rolled_out(expected))
        .await?;
    let pods_available_s = started.elapsed().as_secs_f64();
    eprintln!("{total} pods available in {pods_available_s:.1} s");
    // Live nodes taken for dead under load (their lease renewals starved) would cost pods.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let false_alarms = events
        .list(&ListParams::default().fields("reason=NodeNotReady"))
        .await
        .map_err(ctx("listing node events"))?
        .items
        .len();

    // Phase 2: a rolling update of one Deployment.
    let started = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}});
    let updated =
        api.patch("app-0", &PatchParams::default(), &Patch::Strategic(patch)).await.map_err(ctx("updating app-0"))?;
    let generation = updated.metadata.generation;
    wait_deployments(&api, "the rollout", timeout, |p| {
        p.all_rolled_out(expected)
            && p.deployments.get("app-0").and_then(|d| d.status.as_ref()?.observed_generation) >= generation
    })
    .await?;
    let rollout_s = started.elapsed().as_secs_f64();
    eprintln!("rolling update of {} replicas in {rollout_s:.1} s", args.replicas);

    // Phase 3: a node dies.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let on_doomed = pods
        .list_metadata(&ListParams::default().fields(&format!("spec.nodeName={DOOMED}")))
        .await
        .map_err(ctx("listing the doomed node's pods"))?
        .items
        .len();
    let started = Instant::now();
    let _ = stop_doomed.send(true);
    // Its pods are first marked not ready, then evicted and replaced: wait for both ends.
    tokio::time::timeout(timeout, async {
        loop {
            let left = pods
                .list(&ListParams::default().fields(&format!("spec.nodeName={DOOMED}")))
                .await
                .map_err(ctx("listing the doomed node's pods"))?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            if left == 0 {
                return Ok::<(), String>(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .map_err(|_| "the dead node's pods were not evicted".to_string())??;
    wait_deployments(&api, "failover", timeout, |p| p.available() == total && p.all_rolled_out(expected)).await?;
    let node_failover_s = started.elapsed().as_secs_f64();
    eprintln!("{on_doomed} pods of the dead node running elsewhere after {node_failover_s:.1} s");
    Ok(json!({
        "bench": "controllers",
        "pods_available_s": crate::round2(pods_available_s),
        "rollout_1000_s": crate::round2(rollout_s),
        "node_failover_s": crate::round2(node_failover_s),
        "nodes": args.nodes,
        "deployments": args.deployments,
        "replicas": args.replicas,
        "pods_on_failed_node": on_doomed,
        "live_nodes_marked_not_ready": false_alarms,
    })
    .to_string())
}
