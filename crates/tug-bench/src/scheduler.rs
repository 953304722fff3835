//! The scheduler's placement core on a synthetic cluster (issue 4).
//!
//! [`core_bench`] builds `nodes` nodes (four sizes, three zones, some GPU-tainted, some with
//! SSDs, a few cordoned) and `pods` pods in groups of ten replicas with mixed requests: most
//! plain, some with required node affinity, some tolerating the GPU taint, some with a zone
//! topology spread constraint, some with hostname anti-affinity. It places them one by one
//! (recording each placement in the snapshot) and reports:
//!
//! - core_placements_per_s / core_p99_us: decisions per second and the 99th percentile of one
//!   decision, with the default (spread) strategy, every node scored (exact);
//! - core_adaptive_*: the same scoring only as many nodes as Kubernetes'
//!   percentageOfNodesToScore would (`Scope::Adaptive`);
//! - binpack_nodes_used / binpack_lower_bound: nodes holding a pod after a bin-pack run of the
//!   same pods, against the fewest nodes that could hold the total cpu and memory requested
//!   (largest nodes first, the larger of the cpu and memory counts).

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tug_scheduler::core::{
    HOSTNAME_LABEL, NodeInfo, PodInfo, Resources, Scope, Snapshot, Strategy, ZONE_LABEL, schedule_with,
};

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
        "core_placements_per_s": spread.per_s.round(),
        "core_p99_us": round(spread.p99_us),
        "core_unschedulable": spread.unschedulable,
        "core_adaptive_placements_per_s": adaptive.per_s.round(),
        "core_adaptive_p99_us": round(adaptive.p99_us),
        "core_adaptive_unschedulable": adaptive.unschedulable,
        "binpack_placements_per_s": binpack.per_s.round(),
        "binpack_p99_us": round(binpack.p99_us),
        "binpack_unschedulable": binpack.unschedulable,
        "binpack_nodes_used": binpack.nodes_used,
        "binpack_lower_bound": lower_bound,
    })
}
