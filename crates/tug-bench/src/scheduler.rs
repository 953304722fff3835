//! The scheduler's placement core on a synthetic cluster (issue 4).
//!
//! [`core_bench`] builds `nodes` nodes (four sizes, three zones, some GPU-tainted, some with
//! SSDs, a few cordoned) and `pods` pods in groups of ten replicas with mixed requests: most
//! plain, some with required node affinity, some tolerating the GPU taint, some with a zone
//! topology spread constraint, some with hostname anti-affinity. It places them one by one
//! (recording each placement in the snapshot) and reports:
//!
//! - core_placements_per_s / core_p99_us: decisions per second and the 99th percentile of one
//!   decision, as the scheduler makes them with its default (spread) strategy: scoring as many
//!   feasible nodes as Kubernetes' percentageOfNodesToScore would (`Scope::Adaptive`);
//! - core_exact_*: the same with every node scored (`Scope::AllNodes`), the exact best node;
//! - binpack_nodes_used / binpack_lower_bound: nodes holding a pod after a bin-pack run of the
//!   same pods, against the fewest nodes that could hold the total cpu and memory requested
//!   (largest nodes first, the larger of the cpu and memory counts).
//!
//! [`run`] adds the end-to-end figures (skip either part with `--skip-core` / `--skip-e2e`): an
//! in-process API server on SQLite, `--nodes` hollow nodes (`tug_sim`) and the scheduler
//! (`tug_scheduler::run`), all on the server's in-process service; once every node is
//! registered and the scheduler holds its Lease, `--pods` small pods are created as fast as the
//! h2 client can (`--concurrency` requests over `--connections` connections) while one watch on
//! all pods counts those with `spec.nodeName` set:
//!
//! - e2e_pods_per_s: pods / (first create sent .. last pod seen bound);
//! - e2e_creates_per_s: pods / (first create sent .. last create answered), with create p99;
//! - e2e_first_bound_ms: first create sent .. first pod seen bound.
//!
//! Server, hollow nodes, scheduler and the bench client share this process and its cores.

use crate::ctx;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::sync::watch;
use tug_apiserver::server::RunningServer;
use tug_scheduler::SchedulerOptions;
use tug_scheduler::core::{
    HOSTNAME_LABEL, NodeInfo, PodInfo, Resources, Scope, Snapshot, Strategy, ZONE_LABEL, schedule_with,
};
use tug_sim::SimOptions;

use crate::h2client::{H2Client, Target};
use crate::{percentile_ms, round2};

const GI: i64 = 1024 * 1024 * 1024;

/// A small deterministic generator (xorshift), so every run builds the same cluster.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn build_nodes(count: usize, rng: &mut Rng) -> Vec<NodeInfo> {
    const SIZES: [(i64, i64); 4] = [(4, 16), (8, 32), (16, 64), (32, 128)];
    (0..count)
        .map(|i| {
            let name = format!("node-{i:05}");
            let (cores, mem_gi) = *rng.pick(&SIZES);
            let allocatable =
                Resources { milli_cpu: cores * 1000, memory: mem_gi * GI, ephemeral_storage: 200 * GI, pods: 110 };
            let mut node = NodeInfo::new(&name, allocatable)
                .with_label(HOSTNAME_LABEL, &name)
                .with_label(ZONE_LABEL, &format!("zone-{}", i % 3))
                .with_label("node.kubernetes.io/instance-type", &format!("m.{cores}x"));
            match rng.below(100) {
                0..10 => node = node.with_label("gpu", "true").with_taint("dedicated", "gpu", "NoSchedule"),
                10..30 => node = node.with_label("disk", "ssd"),
                30..31 => node = node.cordoned(),
                _ => {}
            }
            node
        })
        .collect()
}

/// Pods in groups of ten replicas sharing an owner, requests and constraints.
fn build_pods(count: usize, rng: &mut Rng) -> Vec<PodInfo> {
    const CPU: [&str; 5] = ["100m", "250m", "500m", "1", "2"];
    const MEMORY: [&str; 6] = ["128Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi"];
    let mut pods = Vec::with_capacity(count);
    let mut group = 0;
    while pods.len() < count {
        let app = format!("app-{group}");
        let (cpu, memory) = (*rng.pick(&CPU), *rng.pick(&MEMORY));
        let mut spec = json!({"containers": [{"name": "c", "image": "img",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]});
        match rng.below(100) {
            0..10 => {
                spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}});
            }
            10..15 => {
                spec["tolerations"] =
                    json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
                spec["nodeSelector"] = json!({"gpu": "true"});
            }
            15..25 => {
                spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": ZONE_LABEL,
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": app}}}]);
            }
            25..30 => {
                spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": HOSTNAME_LABEL}]}});
            }
            _ => {}
        }
        for replica in 0..10.min(count - pods.len()) {
            let name = format!("{app}-{replica}");
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "bench", "uid": format!("uid-{name}"), "labels": {"app": app},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app,
                        "uid": format!("owner-{group}"), "controller": true}]},
                "spec": spec,
            }))
            .expect("the benchmark's pods are valid");
            pods.push(PodInfo::from_pod(&pod));
        }
        group += 1;
    }
    pods
}

/// What one run over all pods measured.
#[derive(Debug)]
struct Run {
    per_s: f64,
    p99_us: f64,
    unschedulable: usize,
    nodes_used: usize,
}

fn place_all(nodes: &[NodeInfo], pods: &[PodInfo], strategy: Strategy, scope: Scope) -> Run {
    let mut snapshot = Snapshot::new();
    nodes.iter().cloned().for_each(|n| snapshot.upsert_node(n));
    let mut decisions = Vec::with_capacity(pods.len());
    let mut unschedulable = 0;
    let started = Instant::now();
    for pod in pods {
        let t = Instant::now();
        let result = schedule_with(pod, &snapshot, strategy, scope);
        decisions.push(t.elapsed());
        match result {
            Ok(node) => snapshot.add_pod(&node, pod),
            Err(diagnosis) => {
                if unschedulable == 0 {
                    eprintln!("{strategy:?}: first unschedulable pod {}: {diagnosis}", pod.name());
                }
                unschedulable += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    decisions.sort_unstable();
    let p99 =
        decisions.get((decisions.len().saturating_sub(1) as f64 * 0.99).round() as usize).copied().unwrap_or_default();
    let nodes_used = nodes.iter().filter(|n| snapshot.requested(n.name()).is_some_and(|r| r.pods > 0)).count();
    Run { per_s: pods.len() as f64 / elapsed.max(1e-9), p99_us: p99.as_secs_f64() * 1e6, unschedulable, nodes_used }
}

/// The fewest nodes that could hold `total` of one resource: the largest nodes first.
fn nodes_needed(mut capacities: Vec<i64>, total: i64) -> usize {
    capacities.sort_unstable_by(|a, b| b.cmp(a));
    let mut sum = 0;
    capacities
        .iter()
        .take_while(|&&c| {
            let short = sum < total;
            sum += c;
            short
        })
        .count()
}

/// Runs the core benchmark; see the module documentation for the figures.
pub fn core_bench(nodes: usize, pods: usize) -> Value {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let node_list = build_nodes(nodes, &mut rng);
    let pod_list = build_pods(pods, &mut rng);
    eprintln!("scheduler core: {nodes} nodes, {pods} pods");
    let spread = place_all(&node_list, &pod_list, Strategy::Spread, Scope::AllNodes);
    eprintln!("spread, all nodes: {:.0} placements/s, p99 {:.1} µs", spread.per_s, spread.p99_us);
    let adaptive = place_all(&node_list, &pod_list, Strategy::Spread, Scope::Adaptive);
    eprintln!("spread, adaptive: {:.0} placements/s, p99 {:.1} µs", adaptive.per_s, adaptive.p99_us);
    let binpack = place_all(&node_list, &pod_list, Strategy::BinPack, Scope::AllNodes);
    let total_cpu: i64 = pod_list.iter().map(|p| p.requests().milli_cpu).sum();
    let total_memory: i64 = pod_list.iter().map(|p| p.requests().memory).sum();
    let lower_bound = nodes_needed(node_list.iter().map(|n| n.allocatable().milli_cpu).collect(), total_cpu)
        .max(nodes_needed(node_list.iter().map(|n| n.allocatable().memory).collect(), total_memory));
    eprintln!("bin-pack: {} nodes used, lower bound {lower_bound}", binpack.nodes_used);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    json!({
        "core_placements_per_s": adaptive.per_s.round(),
        "core_p99_us": round(adaptive.p99_us),
        "core_unschedulable": adaptive.unschedulable,
        "core_exact_placements_per_s": spread.per_s.round(),
        "core_exact_p99_us": round(spread.p99_us),
        "core_exact_unschedulable": spread.unschedulable,
        "binpack_placements_per_s": binpack.per_s.round(),
        "binpack_p99_us": round(binpack.p99_us),
        "binpack_unschedulable": binpack.unschedulable,
        "binpack_nodes_used": binpack.nodes_used,
        "binpack_lower_bound": lower_bound,
    })
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Nodes: synthetic ones for the core, hollow ones end to end.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Pods placed by the core, and created and scheduled end to end.
    #[arg(long, default_value_t = 50_000)]
    pods: usize,
    /// Skip the placement core (figures core_* and binpack_*).
    #[arg(long)]
    skip_core: bool,
    /// Skip the end-to-end run (figures e2e_*).
    #[arg(long)]
    skip_e2e: bool,
    /// Concurrent pod creates end to end.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the creates share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Namespaces the pods are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// How long registering the nodes, and scheduling the pods, may each take.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// Where the server's data directory goes (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The scheduler's identity in its Lease, so the bench can tell it leads.
const SCHEDULER_IDENTITY: &str = "tug-bench-scheduler";
/// How often the leader Lease is read while waiting.
const LEASE_POLL: Duration = Duration::from_millis(100);
/// How often the bound count is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs the parts asked for and returns the JSON line.
pub async fn run(args: SchedulerArgs) -> Result<String, String> {
    if args.nodes == 0 || args.pods == 0 || args.concurrency == 0 || args.connections == 0 || args.namespaces == 0 {
        return Err("--nodes, --pods, --concurrency, --connections and --namespaces must be at least 1".into());
    }
    let mut figures = json!({"bench": "scheduler", "nodes": args.nodes, "pods": args.pods});
    if !args.skip_core {
        let (nodes, pods) = (args.nodes, args.pods);
        let core = tokio::task::spawn_blocking(move || core_bench(nodes, pods)).await.map_err(ctx("core bench"))?;
        merge(&mut figures, core);
    }
    if !args.skip_e2e {
        merge(&mut figures, e2e(&args).await?);
    }
    Ok(figures.to_string())
}

/// Copies the keys of the object `more` into the object `into`.
fn merge(into: &mut Value, more: Value) {
    if let (Some(into), Value::Object(more)) = (into.as_object_mut(), more) {
        into.extend(more);
    }
}

async fn e2e(args: &SchedulerArgs) -> Result<Value, String> {
    let (_dir, server) = crate::api::start_server("tug-bench-scheduler-", args.dir.clone()).await?;
    eprintln!("scheduler e2e: server at {}", server.url);
    let result = e2e_on(&server, args).await;
    server.stop().await;
    result
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn e2e_on(server: &RunningServer, args: &SchedulerArgs) -> Result<Value, String> {
    let target = Target {
        url: server.url.clone(),
        ca_pem: server.pki.ca_cert_pem.clone(),
        token: server.pki.admin_token.clone(),
    };
    let client = Arc::new(H2Client::connect(&target, args.connections).await?);
    // Opened before the sim starts, so every registration arrives as an ADDED event.
    let node_watch = client.stream_lines("/api/v1/nodes?watch=1").await?;
    let (stop_tx, stop) = watch::channel(false);
    let sim_options = SimOptions {
        nodes: args.nodes,
        cpu: "32".into(),
        memory: "128Gi".into(),
        pods: 110,
        zones: 3,
        // Bound pods stay Pending for the whole run: the sim writes no pod status while we
        // measure, so the figure is scheduling (create, decide, bind), not the kubelet's work.
        ready_delay: Duration::from_secs(3600),
        lease_interval: Duration::from_secs(10),
        ..SimOptions::default()
    };
    let started = Instant::now();
    let sim = tokio::spawn(tug_sim::run(
        kube::Client::new(server.local_service(), "default"),
        sim_options,
        stopped(stop.clone()),
    ));
    let scheduler = tokio::spawn(tug_scheduler::run(
        kube::Client::new(server.local_service(), "default"),
        SchedulerOptions { identity: SCHEDULER_IDENTITY.into(), ..SchedulerOptions::default() },
        stopped(stop),
    ));
    let measured = async {
        let deadline = Duration::from_secs(args.timeout_s);
        tokio::time::timeout(deadline, count_nodes(node_watch, args.nodes))
            .await
            .map_err(|_| format!("{} nodes did not register within {deadline:?}", args.nodes))??;
        eprintln!("{} hollow nodes registered in {:.1} s", args.nodes, started.elapsed().as_secs_f64());
        tokio::time::timeout(deadline, wait_for_leader(&client))
            .await
            .map_err(|_| format!("the scheduler did not become leader within {deadline:?}"))??;
        eprintln!("the scheduler leads (lease kube-system/tug-scheduler)");
        schedule_pods(&client, args).await
    }
    .await;
    let _ = stop_tx.send(true);
    for (name, outcome) in [
        ("sim", sim.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()))),
        ("scheduler", scheduler.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()))),
    ] {
        if let Err(e) = outcome {
            eprintln!("the {name} ended with an error: {e}");
        }
    }
    measured
}

/// Reads the node watch until `nodes` nodes were added.
async fn count_nodes(mut lines: crate::h2client::Lines, nodes: usize) -> Result<(), String> {
    let mut added = 0;
    while added < nodes {
        let line = lines.next_line().await?.ok_or("the node watch ended")?;
        let event: Value = serde_json::from_slice(&line).map_err(ctx("node watch event"))?;
        match event["type"].as_str() {
            Some("ADDED") => added += 1,
            Some("ERROR") => return Err(format!("the node watch failed: {}", event["object"])),
            _ => {}
        }
    }
    Ok(())
}

/// Polls the scheduler's Lease until this bench's scheduler holds it.
async fn wait_for_leader(client: &H2Client) -> Result<(), String> {
    let path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/tug-scheduler";
    loop {
        let (status, body) = client.send(Method::GET, path, Bytes::new(), None).await?;
        if status == StatusCode::OK {
            let lease: Value = serde_json::from_slice(&body).map_err(ctx("lease JSON"))?;
            if lease["spec"]["holderIdentity"] == SCHEDULER_IDENTITY {
                return Ok(());
            }
        } else if status != StatusCode::NOT_FOUND {
            return Err(format!("reading the lease answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
}

/// When the first and the last pod were seen bound, counted from `start`.
#[derive(Debug)]
struct Bound {
    first: Duration,
    all: Duration,
}

/// Creates the pods and waits until the watch saw all of them bound.
async fn schedule_pods(client: &Arc<H2Client>, args: &SchedulerArgs) -> Result<Value, String> {
    for i in 0..args.namespaces {
        create_namespace(client, &namespace(i)).await?;
    }
    let resource_version = pods_resource_version(client).await?;
    let watch = client.stream_lines(&format!("/api/v1/pods?watch=1&resourceVersion={resource_version}")).await?;
    let start = Instant::now();
    let counter = tokio::spawn(count_bound(watch, args.pods, start));
    let (create_time, mut create_latencies) = create_pods(client, args, start).await?;
    let creates_per_s = args.pods as f64 / create_time.as_secs_f64();
    let create_p99 = percentile_ms(&mut create_latencies, 0.99);
    eprintln!(
        "{} pods created in {:.2} s: {creates_per_s:.0}/s, p99 {create_p99:.2} ms",
        args.pods,
        create_time.as_secs_f64()
    );
    let deadline = Duration::from_secs(args.timeout_s);
    let bound = tokio::time::timeout(deadline, counter)
        .await
        .map_err(|_| format!("the pods were not all bound within {deadline:?}"))?
        .map_err(ctx("bound counter"))??;
    let pods_per_s = args.pods as f64 / bound.all.as_secs_f64();
    eprintln!(
        "all {} pods bound {:.2} s after the first create: {pods_per_s:.0} pods/s; first bound after {:.1} ms",
        args.pods,
        bound.all.as_secs_f64(),
        bound.first.as_secs_f64() * 1000.0
    );
    Ok(json!({
        "e2e_pods_per_s": pods_per_s.round(),
        "e2e_seconds": round2(bound.all.as_secs_f64()),
        "e2e_creates_per_s": creates_per_s.round(),
        "e2e_create_p99_ms": round2(create_p99),
        "e2e_first_bound_ms": round2(bound.first.as_secs_f64() * 1000.0),
        "e2e_nodes": args.nodes,
        "e2e_pods": args.pods,
        "e2e_concurrency": args.concurrency,
        "e2e_connections": args.connections,
        "e2e_store": "sqlite",
    }))
}

fn namespace(i: usize) -> String {
    format!("sched-{i}")
}

async fn create_namespace(client: &H2Client, name: &str) -> Result<(), String> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).to_string();
    let (status, body) = client.send(Method::POST, "/api/v1/namespaces", body.into(), Some("application/json")).await?;
    if status == StatusCode::CREATED {
        Ok(())
    } else {
        Err(format!("creating namespace {name} answered {status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// The resource version of a pod list, where the bound-pod watch starts.
async fn pods_resource_version(client: &H2Client) -> Result<String, String> {
    let (status, body) = client.send(Method::GET, "/api/v1/pods?limit=1", Bytes::new(), None).await?;
    if status != StatusCode::OK {
        return Err(format!("listing pods answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    let list: Value = serde_json::from_slice(&body).map_err(ctx("pod list JSON"))?;
    list["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the pod list has no resourceVersion".into())
}

/// A small pod (10m cpu, 16Mi) for the default scheduler.
fn small_pod(name: &str) -> Bytes {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "sched-bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.example.com/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })
    .to_string()
    .into()
}

/// `concurrency` tasks create the pods between them; returns the time from `start` until the
/// last create was answered, and each create's latency.
async fn create_pods(
    client: &Arc<H2Client>,
    args: &SchedulerArgs,
    start: Instant,
) -> Result<(Duration, Vec<Duration>), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let (pods, namespaces) = (args.pods, args.namespaces);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, next) = (Arc::clone(client), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= pods {
                        return Ok::<_, String>(latencies);
                    }
                    let path = format!("/api/v1/namespaces/{}/pods", namespace(i % namespaces));
                    let body = small_pod(&format!("p-{i:06}"));
                    let t = Instant::now();
                    let (status, answer) = client.send(Method::POST, &path, body, Some("application/json")).await?;
                    latencies.push(t.elapsed());
                    if status != StatusCode::CREATED {
                        return Err(format!("creating a pod answered {status}: {}", String::from_utf8_lossy(&answer)));
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(pods);
    for task in tasks {
        latencies.extend(task.await.map_err(ctx("create task"))??);
    }
    Ok((start.elapsed(), latencies))
}

/// Whether a watch event line may carry a bound pod; most lines (the ADDED of a new pod) do
/// not, and are not decoded.
fn mentions_node_name(line: &[u8]) -> bool {
    line.windows(11).any(|w| w == b"\"nodeName\":")
}

/// The `namespace/name` of a pod in a watch event whose `spec.nodeName` is set.
fn bound_pod_key(event: &Value) -> Option<String> {
    let object = &event["object"];
    object["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())?;
    let metadata = &object["metadata"];
    Some(format!("{}/{}", metadata["namespace"].as_str()?, metadata["name"].as_str()?))
}

/// Reads the pod watch until `pods` distinct pods were seen bound.
async fn count_bound(mut lines: crate::h2client::Lines, pods: usize, start: Instant) -> Result<Bound, String> {
    let mut bound = HashSet::with_capacity(pods);
    let mut first = None;
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    while bound.len() < pods {
        let line = tokio::select! {
            line = lines.next_line() => line?.ok_or("the pod watch ended")?,
            _ = progress.tick() => {
                eprintln!("  {:.0} s: {} pods bound", start.elapsed().as_secs_f64(), bound.len());
                continue;
            }
        };
        if !mentions_node_name(&line) {
            continue;
        }
        let event: Value = serde_json::from_slice(&line).map_err(ctx("pod watch event"))?;
        if event["type"] == "ERROR" {
            return Err(format!("the pod watch failed: {}", event["object"]));
        }
        if let Some(key) = bound_pod_key(&event) {
            first.get_or_insert_with(|| start.elapsed());
            bound.insert(key);
        }
    }
    Ok(Bound { first: first.unwrap_or_default(), all: start.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_of_pods_with_a_node_count_as_bound() {
        let cases = [
            (r#"{"type":"ADDED","object":{"metadata":{"namespace":"a","name":"p"},"spec":{}}}"#, None),
            (r#"{"type":"MODIFIED","object":{"metadata":{"namespace":"a","name":"p"},"spec":{"nodeName":""}}}"#, None),
            (
                r#"{"type":"MODIFIED","object":{"metadata":{"namespace":"a","name":"p"},"spec":{"nodeName":"sim-1"}}}"#,
                Some("a/p"),
            ),
            (r#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#, None),
        ];
        for (line, want) in cases {
            let event: Value = serde_json::from_str(line).expect("event JSON");
            assert_eq!(bound_pod_key(&event).as_deref(), want, "{line}");
            if want.is_some() {
                assert!(mentions_node_name(line.as_bytes()), "a bound pod's line is decoded: {line}");
            }
        }
        assert!(!mentions_node_name(br#"{"spec":{"containers":[]}}"#), "a pod without a node is skipped undecoded");
    }

    #[test]
    fn objects_merge_into_the_figures() {
        let mut figures = json!({"bench": "scheduler", "nodes": 5});
        merge(&mut figures, json!({"e2e_pods_per_s": 10.0}));
        assert_eq!(figures, json!({"bench": "scheduler", "nodes": 5, "e2e_pods_per_s": 10.0}));
    }
}
