//! Unit tests per filter and scorer (data-driven), and property tests of the whole core.

use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::{Just, ProptestConfig, prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as _;
use serde_json::{Value, json};

use super::*;

const GI: i64 = 1024 * 1024 * 1024;

fn node(name: &str, cpu_millis: i64, memory_gi: i64) -> NodeInfo {
    NodeInfo::new(
        name,
        Resources { milli_cpu: cpu_millis, memory: memory_gi * GI, ephemeral_storage: 100 * GI, pods: 110 },
    )
    .with_label(HOSTNAME_LABEL, name)
}

/// A pod from a JSON spec merged into a one-container pod requesting `cpu` and `memory`.
fn pod_with(name: &str, cpu: &str, memory: &str, extra_spec: Value, labels: Value) -> PodInfo {
    let mut spec = json!({"containers": [{"name": "c", "image": "i",
        "resources": {"requests": {"cpu": cpu, "memory": memory}}}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
        "spec": spec,
    }))
    .expect("valid pod");
    PodInfo::from_pod(&pod)
}

fn pod(name: &str, cpu: &str, memory: &str) -> PodInfo {
    pod_with(name, cpu, memory, json!({}), json!({}))
}

fn snapshot(nodes: Vec<NodeInfo>) -> Snapshot {
    let mut snap = Snapshot::new();
    nodes.into_iter().for_each(|n| snap.upsert_node(n));
    snap
}

fn message(result: Result<String, Diagnosis>) -> String {
    match result {
        Ok(node) => format!("-> {node}"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn diagnosis_reads_like_kubernetes() {
    let d = Diagnosis {
        nodes: 5,
        reasons: [
            ("Insufficient cpu".to_string(), 3),
            ("node(s) had untolerated taint {dedicated: gpu}".to_string(), 2),
        ]
        .into(),
        pre_filter: None,
    };
    // Go's sort.Strings on "count reason": "2 node(s)..." sorts before "3 Insufficient cpu".
    assert_eq!(
        d.to_string(),
        "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
    );
    let none = schedule(&pod("p", "1", "1Gi"), &Snapshot::new(), Strategy::Spread).unwrap_err();
    assert_eq!(none.to_string(), "no nodes available to schedule pods");
}

#[test]
fn counts_each_rejected_node_under_its_first_failing_filter() {
    let mut nodes: Vec<NodeInfo> = (0..3).map(|i| node(&format!("small-{i}"), 500, 8)).collect();
    nodes.extend((0..2).map(|i| node(&format!("gpu-{i}"), 8000, 32).with_taint("dedicated", "gpu", "NoSchedule")));
    let snap = snapshot(nodes);
    let err = schedule(&pod("p", "1", "1Gi"), &snap, Strategy::Spread).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
    );
    assert_eq!(err.reasons.values().sum::<usize>(), 5);
}

/// One filter per row: the pod on a single node `n` (8 cpu, 16Gi, labels zone=a, disk=ssd,
/// cores=8), with the result Kubernetes would give.
#[test]
fn each_filter_rejects_with_kubernetes_words() {
    let base = || node("n", 8000, 16).with_label(ZONE_LABEL, "a").with_label("disk", "ssd").with_label("cores", "8");
    let affinity = |op: &str, key: &str, values: Value| {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]}}}})
    };
    let no_values = |op: &str, key: &str| {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op}]}]}}}})
    };
    let cases: Vec<(&str, NodeInfo, PodInfo, &str)> = vec![
        ("fits", base(), pod("p", "1", "1Gi"), "-> n"),
        ("cordoned", base().cordoned(), pod("p", "1", "1Gi"), "0/1 nodes are available: 1 node(s) were unschedulable."),
        (
            "cordon tolerated",
            base().cordoned(),
            pod_with(
                "p",
                "1",
                "1Gi",
                json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
                json!({}),
            ),
            "-> n",
        ),
        (
            "node name",
            base(),
            pod_with("p", "1", "1Gi", json!({"nodeName": "other"}), json!({})),
            "0/1 nodes are available: 1 node(s) didn't match the requested node name.",
        ),
        ("cpu", base(), pod("p", "9", "1Gi"), "0/1 nodes are available: 1 Insufficient cpu."),
        ("memory", base(), pod("p", "1", "17Gi"), "0/1 nodes are available: 1 Insufficient memory."),
        (
            "init container counts when larger",
            base(),
            pod_with(
                "p",
                "1",
                "1Gi",
                json!({"initContainers": [{"name": "i", "image": "i", "resources": {"requests": {"cpu": "8500m"}}}]}),
                json!({}),
            ),
            "0/1 nodes are available: 1 Insufficient cpu.",
        ),
        (
            "sidecar adds to the containers",
            base(),
            pod_with(
                "p",
                "7",
                "1Gi",
                json!({"initContainers": [{"name": "s", "image": "i", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1500m"}}}]}),
                json!({}),
            ),
            "0/1 nodes are available: 1 Insufficient cpu.",
        ),
        (
            "ephemeral storage",
            base(),
            pod_with(
                "p",
                "1",
                "1Gi",
                json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"ephemeral-storage": "200Gi"}}}]}),
                json!({}),
            ),
            "0/1 nodes are available: 1 Insufficient ephemeral-storage.",
        ),
        (
            "node selector",
            base(),
            pod_with("p", "1", "1Gi", json!({"nodeSelector": {"disk": "hdd"}}), json!({})),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        (
            "affinity In",
            base(),
            pod_with("p", "1", "1Gi", affinity("In", "disk", json!(["ssd", "nvme"])), json!({})),
            "-> n",
        ),
        (
            "affinity NotIn",
            base(),
            pod_with("p", "1", "1Gi", affinity("NotIn", "disk", json!(["ssd"])), json!({})),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        ("affinity Exists", base(), pod_with("p", "1", "1Gi", no_values("Exists", "disk"), json!({})), "-> n"),
        (
            "affinity DoesNotExist",
            base(),
            pod_with("p", "1", "1Gi", no_values("DoesNotExist", "disk"), json!({})),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        ("affinity Gt", base(), pod_with("p", "1", "1Gi", affinity("Gt", "cores", json!(["4"])), json!({})), "-> n"),
        (
            "affinity Lt",
            base(),
            pod_with("p", "1", "1Gi", affinity("Lt", "cores", json!(["4"])), json!({})),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        (
            "affinity on hostname",
            base(),
            pod_with("p", "1", "1Gi", affinity("In", HOSTNAME_LABEL, json!(["m"])), json!({})),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        (
            "NoSchedule taint",
            base().with_taint("dedicated", "gpu", "NoSchedule"),
            pod("p", "1", "1Gi"),
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.",
        ),
        (
            "NoExecute taint",
            base().with_taint("maintenance", "", "NoExecute"),
            pod("p", "1", "1Gi"),
            "0/1 nodes are available: 1 node(s) had untolerated taint {maintenance: }.",
        ),
        (
            "taint tolerated by Equal",
            base().with_taint("dedicated", "gpu", "NoSchedule"),
            pod_with(
                "p",
                "1",
                "1Gi",
                json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}),
                json!({}),
            ),
            "-> n",
        ),
        (
            "toleration of another value",
            base().with_taint("dedicated", "gpu", "NoSchedule"),
            pod_with("p", "1", "1Gi", json!({"tolerations": [{"key": "dedicated", "value": "db"}]}), json!({})),
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.",
        ),
        (
            "PreferNoSchedule only scores",
            base().with_taint("dedicated", "gpu", "PreferNoSchedule"),
            pod("p", "1", "1Gi"),
            "-> n",
        ),
        (
            "cordon before resources",
            base().cordoned(),
            pod("p", "9", "1Gi"),
            "0/1 nodes are available: 1 node(s) were unschedulable.",
        ),
    ];
    for (name, n, p, want) in cases {
        let snap = snapshot(vec![n]);
        assert_eq!(message(schedule(&p, &snap, Strategy::Spread)), want, "{name}");
    }
}

#[test]
fn too_many_pods() {
    let mut snap = snapshot(vec![NodeInfo::new(
        "n",
        Resources { milli_cpu: 4000, memory: 4 * GI, ephemeral_storage: 0, pods: 1 },
    )]);
    snap.add_pod("n", &pod("a", "100m", "10Mi"));
    assert_eq!(
        message(schedule(&pod("b", "100m", "10Mi"), &snap, Strategy::Spread)),
        "0/1 nodes are available: 1 Too many pods."
    );
    snap.remove_pod("uid-a");
    assert_eq!(message(schedule(&pod("b", "100m", "10Mi"), &snap, Strategy::Spread)), "-> n");
}

#[test]
fn host_ports_conflict_by_protocol_and_address() {
    let with_port = |name: &str, port: i64, protocol: &str, ip: &str| {
        pod_with(
            name,
            "100m",
            "10Mi",
            json!({"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80, "hostPort": port, "protocol": protocol, "hostIP": ip}]}]}),
            json!({}),
        )
    };
    let mut snap = snapshot(vec![node("n", 4000, 4)]);
    snap.add_pod("n", &with_port("a", 8080, "TCP", ""));
    let cases = [
        (
            with_port("b", 8080, "TCP", ""),
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
        ),
        (
            with_port("b", 8080, "TCP", "10.0.0.1"),
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
        ),
        (with_port("b", 8080, "UDP", ""), "-> n"),
        (with_port("b", 8081, "TCP", ""), "-> n"),
    ];
    for (p, want) in cases {
        assert_eq!(message(schedule(&p, &snap, Strategy::Spread)), want);
    }
}

fn three_nodes_two_zones() -> Snapshot {
    snapshot(vec![
        node("a1", 4000, 8).with_label(ZONE_LABEL, "a"),
        node("a2", 4000, 8).with_label(ZONE_LABEL, "a"),
        node("b1", 4000, 8).with_label(ZONE_LABEL, "b"),
    ])
}

fn anti_affinity(key: &str) -> Value {
    json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": key}]}}})
}

#[test]
fn required_anti_affinity_by_hostname_and_zone() {
    let mut snap = three_nodes_two_zones();
    snap.add_pod("a1", &pod_with("w0", "100m", "10Mi", json!({}), json!({"app": "web"})));
    let by_host = pod_with("w1", "100m", "10Mi", anti_affinity(HOSTNAME_LABEL), json!({"app": "web"}));
    let by_zone = pod_with("w1", "100m", "10Mi", anti_affinity(ZONE_LABEL), json!({"app": "web"}));
    for _ in 0..3 {
        assert_ne!(schedule(&by_host, &snap, Strategy::BinPack).unwrap(), "a1");
        assert_eq!(schedule(&by_zone, &snap, Strategy::BinPack).unwrap(), "b1");
    }
    snap.add_pod("b1", &pod_with("w2", "100m", "10Mi", json!({}), json!({"app": "web"})));
    assert_eq!(
        message(schedule(&by_zone, &snap, Strategy::Spread)),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
}

#[test]
fn existing_pods_anti_affinity_keeps_others_away() {
    let mut snap = snapshot(vec![node("a", 4000, 8)]);
    snap.add_pod("a", &pod_with("db", "100m", "10Mi", anti_affinity(HOSTNAME_LABEL), json!({"app": "db"})));
    let web = pod_with("w", "100m", "10Mi", json!({}), json!({"app": "web"}));
    assert_eq!(
        message(schedule(&web, &snap, Strategy::Spread)),
        "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."
    );
    assert_eq!(message(schedule(&pod("other", "100m", "10Mi"), &snap, Strategy::Spread)), "-> a");
}

#[test]
fn required_pod_affinity_follows_matching_pods() {
    let mut snap = three_nodes_two_zones();
    let affinity = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE_LABEL}]}}});
    // The first of a group that selects itself may go anywhere.
    let first = pod_with("c0", "100m", "10Mi", affinity.clone(), json!({"app": "cache"}));
    assert!(schedule(&first, &snap, Strategy::Spread).is_ok());
    let stranger = pod_with("x", "100m", "10Mi", affinity.clone(), json!({"app": "web"}));
    assert_eq!(
        message(schedule(&stranger, &snap, Strategy::Spread)),
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."
    );
    snap.add_pod("b1", &pod_with("c1", "100m", "10Mi", json!({}), json!({"app": "cache"})));
    assert_eq!(message(schedule(&stranger, &snap, Strategy::Spread)), "-> b1");
}

#[test]
fn topology_spread_keeps_skew_within_max() {
    let spread = |key: &str| {
        json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}]})
    };
    let mut snap = three_nodes_two_zones();
    let mut zones = std::collections::BTreeMap::new();
    for i in 0..6 {
        let p = pod_with(&format!("w{i}"), "100m", "10Mi", spread(ZONE_LABEL), json!({"app": "web"}));
        // Bin-pack would pile everything on one node; the constraint must win.
        let chosen = schedule(&p, &snap, Strategy::BinPack).unwrap();
        *zones.entry(snap.node(&chosen).unwrap().labels()[ZONE_LABEL].clone()).or_insert(0) += 1;
        snap.add_pod(&chosen, &p);
        let (a, b) = (zones.get("a").copied().unwrap_or(0), zones.get("b").copied().unwrap_or(0));
        assert!(i64::abs(a - b) <= 1, "{zones:?}");
    }
    let mut unlabelled = snapshot(vec![node("n", 4000, 8)]);
    let p = pod_with("w", "100m", "10Mi", spread(ZONE_LABEL), json!({"app": "web"}));
    assert_eq!(
        message(schedule(&p, &unlabelled, Strategy::Spread)),
        "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label)."
    );
    unlabelled.upsert_node(node("n", 4000, 8).with_label(ZONE_LABEL, "z"));
    assert_eq!(message(schedule(&p, &unlabelled, Strategy::Spread)), "-> n");
    let mut hosts = snapshot(vec![node("x", 4000, 8), node("y", 4000, 8)]);
    let p = pod_with("w0", "100m", "10Mi", spread(HOSTNAME_LABEL), json!({"app": "web"}));
    hosts.add_pod("x", &p);
    hosts.add_pod("x", &pod_with("w1", "100m", "10Mi", json!({}), json!({"app": "web"})));
    assert_eq!(
        message(schedule(
            &pod_with("w2", "100m", "10Mi", spread(HOSTNAME_LABEL), json!({"app": "web"})),
            &hosts,
            Strategy::BinPack
        )),
        "-> y"
    );
}

#[test]
fn bin_pack_and_spread_choose_differently() {
    let mut snap = snapshot(vec![node("busy", 4000, 8), node("idle", 4000, 8)]);
    snap.add_pod("busy", &pod("load", "2", "4Gi"));
    let p = pod("p", "500m", "1Gi");
    assert_eq!(schedule(&p, &snap, Strategy::Spread).unwrap(), "idle");
    assert_eq!(schedule(&p, &snap, Strategy::BinPack).unwrap(), "busy");
}

#[test]
fn scorers_prefer_what_they_should() {
    // Balanced allocation: both nodes end equally full on average, one with cpu and memory even.
    let mut snap = snapshot(vec![node("even", 4000, 4), node("skewed", 4000, 4)]);
    snap.add_pod("even", &pod("e", "1", "1Gi"));
    snap.add_pod("skewed", &pod("s", "2", "10Mi"));
    assert_eq!(schedule(&pod("p", "100m", "100Mi"), &snap, Strategy::Spread).unwrap(), "even");

    // Preferred node affinity outweighs a slightly emptier node.
    let mut snap = snapshot(vec![node("plain", 4000, 8), node("fast", 4000, 8).with_label("disk", "ssd")]);
    snap.add_pod("fast", &pod("l", "200m", "200Mi"));
    let prefers = pod_with(
        "p",
        "100m",
        "100Mi",
        json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}),
        json!({}),
    );
    assert_eq!(schedule(&prefers, &snap, Strategy::Spread).unwrap(), "fast");
    assert_eq!(schedule(&pod("q", "100m", "100Mi"), &snap, Strategy::Spread).unwrap(), "plain");

    // PreferNoSchedule taints push pods elsewhere unless tolerated.
    let snap = snapshot(vec![node("a", 4000, 8).with_taint("spot", "true", "PreferNoSchedule"), node("b", 4000, 8)]);
    for i in 0..5 {
        assert_eq!(schedule(&pod(&format!("p{i}"), "100m", "100Mi"), &snap, Strategy::Spread).unwrap(), "b");
    }
}

#[test]
fn replicas_of_one_owner_spread_across_nodes() {
    let owned = |i: usize| {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("r{i}"), "namespace": "default", "uid": format!("r{i}"),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]}
        }))
        .unwrap();
        PodInfo::from_pod(&pod)
    };
    // Bin-pack alone would stack all replicas on one node; owner spreading moves them apart.
    let mut snap = snapshot((0..3).map(|i| node(&format!("n{i}"), 64000, 256)).collect());
    let mut used = std::collections::BTreeSet::new();
    for i in 0..3 {
        let chosen = schedule(&owned(i), &snap, Strategy::BinPack).unwrap();
        snap.add_pod(&chosen, &owned(i));
        used.insert(chosen);
    }
    assert_eq!(used.len(), 3);
}

#[test]
fn snapshot_bookkeeping_is_idempotent() {
    let mut snap = snapshot(vec![node("a", 4000, 8), node("b", 4000, 8)]);
    let p = pod("p", "1", "1Gi");
    snap.add_pod("a", &p);
    snap.add_pod("a", &p);
    assert_eq!(snap.requested("a").unwrap().milli_cpu, 1000);
    snap.add_pod("b", &p);
    assert_eq!((snap.requested("a").unwrap().milli_cpu, snap.requested("b").unwrap().milli_cpu), (0, 1000));
    // Updating a node keeps its pods; removing it forgets them.
    snap.upsert_node(node("b", 2000, 8).with_label("x", "y"));
    assert_eq!(snap.requested("b").unwrap().milli_cpu, 1000);
    snap.remove_node("b");
    assert_eq!((snap.node_count(), snap.pod_count()), (1, 0));
    // A pod on a node not seen yet is remembered for when it arrives.
    snap.add_pod("later", &p);
    assert_eq!(snap.node_count(), 1);
    snap.upsert_node(node("later", 1000, 8));
    assert_eq!(message(schedule(&pod("q", "500m", "1Gi"), &snap, Strategy::BinPack)), "-> a");
}

// Property tests: random clusters and pods, placed one by one.

#[derive(Debug, Clone)]
struct PodSpec {
    cpu: i64,
    mem_mi: i64,
    zone_selector: Option<u8>,
    tolerates_gpu: bool,
    anti_app: Option<u8>,
    app: u8,
}

fn node_strategy() -> impl proptest::strategy::Strategy<Value = (i64, i64, u8, bool, bool)> {
    (
        prop_oneof![Just(1000i64), Just(2000), Just(4000)],
        1i64..8,
        0u8..3,
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.1),
    )
}

fn pod_strategy() -> impl proptest::strategy::Strategy<Value = PodSpec> {
    (
        1i64..1500,
        1i64..3000,
        proptest::option::weighted(0.2, 0u8..3),
        proptest::bool::weighted(0.3),
        proptest::option::weighted(0.2, 0u8..3),
        0u8..3,
    )
        .prop_map(|(cpu, mem_mi, zone_selector, tolerates_gpu, anti_app, app)| PodSpec {
            cpu,
            mem_mi,
            zone_selector,
            tolerates_gpu,
            anti_app,
            app,
        })
}

fn build_pod(i: usize, s: &PodSpec) -> PodInfo {
    let mut extra = json!({});
    if let Some(z) = s.zone_selector {
        extra["nodeSelector"] = json!({ZONE_LABEL: format!("z{z}")});
    }
    if s.tolerates_gpu {
        extra["tolerations"] = json!([{"key": "gpu", "operator": "Exists"}]);
    }
    if let Some(app) = s.anti_app {
        extra["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": format!("a{app}")}}, "topologyKey": HOSTNAME_LABEL}]}});
    }
    pod_with(
        &format!("p{i}"),
        &format!("{}m", s.cpu),
        &format!("{}Mi", s.mem_mi),
        extra,
        json!({"app": format!("a{}", s.app)}),
    )
}

/// The filters checked directly from the objects, independently of the core's indexes.
fn naive_fits(snap: &Snapshot, placed: &[(String, PodInfo)], p: &PodInfo, node: &NodeInfo) -> bool {
    let used = snap.requested(node.name()).unwrap_or_default();
    let alloc = node.allocatable();
    let req = p.requests();
    let resources = used.milli_cpu + req.milli_cpu <= alloc.milli_cpu
        && used.memory + req.memory <= alloc.memory
        && used.pods < alloc.pods;
    let selector = p.affinity.matches(node.labels(), node.name());
    let taints = node.taints.iter().filter(|t| t.is_hard()).all(|t| p.tolerates(t));
    let anti = p
        .pod_anti_affinity
        .iter()
        .all(|term| !placed.iter().any(|(n, q)| n == node.name() && term.selects(q.namespace(), q.labels())));
    let existing = placed
        .iter()
        .filter(|(n, _)| n == node.name())
        .all(|(_, q)| q.pod_anti_affinity.iter().all(|term| !term.selects(p.namespace(), p.labels())));
    !node.unschedulable() && resources && selector && taints && anti && existing
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn placements_respect_every_filter(
        nodes in proptest::collection::vec(node_strategy(), 1..10),
        pods in proptest::collection::vec(pod_strategy(), 1..60),
        binpack in proptest::bool::ANY,
    ) {
        let strategy = if binpack { Strategy::BinPack } else { Strategy::Spread };
        let mut snap = Snapshot::new();
        for (i, (cpu, mem_gi, zone, gpu, cordoned)) in nodes.iter().enumerate() {
            let mut n = node(&format!("n{i}"), *cpu, *mem_gi).with_label(ZONE_LABEL, &format!("z{zone}"));
            if *gpu { n = n.with_taint("gpu", "true", "NoSchedule"); }
            if *cordoned { n = n.cordoned(); }
            snap.upsert_node(n);
        }
        let mut placed: Vec<(String, PodInfo)> = Vec::new();
        for (i, spec) in pods.iter().enumerate() {
            let p = build_pod(i, spec);
            let result = schedule(&p, &snap, strategy);
            // Deterministic: the same snapshot (or a copy) gives the same answer.
            prop_assert_eq!(&result, &schedule(&p, &snap.clone(), strategy));
            match result {
                Ok(chosen) => {
                    let info = snap.node(&chosen).unwrap().clone();
                    prop_assert!(naive_fits(&snap, &placed, &p, &info), "{} on {}", p.name(), chosen);
                    prop_assert!(explain(&p, &snap, &chosen).unwrap().iter().all(Option::is_none));
                    snap.add_pod(&chosen, &p);
                    placed.push((chosen, p));
                }
                Err(diagnosis) => {
                    prop_assert_eq!(diagnosis.nodes, nodes.len());
                    prop_assert_eq!(diagnosis.reasons.values().sum::<usize>(), nodes.len());
                    for i in 0..nodes.len() {
                        let info = snap.node(&format!("n{i}")).unwrap().clone();
                        prop_assert!(!naive_fits(&snap, &placed, &p, &info));
                    }
                }
            }
            // Never overcommits: what is placed stays within allocatable on every node.
            for i in 0..nodes.len() {
                let name = format!("n{i}");
                let (used, alloc) = (snap.requested(&name).unwrap(), snap.node(&name).unwrap().allocatable());
                prop_assert!(used.milli_cpu <= alloc.milli_cpu && used.memory <= alloc.memory && used.pods <= alloc.pods);
            }
        }
    }
}

/// A replica of app `a{app}` owned by a controller, optionally spread over zones (hard).
fn replica(i: usize, s: &PodSpec, spread: bool) -> PodInfo {
    let mut spec = json!({"containers": [{"name": "c", "image": "i",
        "resources": {"requests": {"cpu": format!("{}m", s.cpu), "memory": format!("{}Mi", s.mem_mi)}}}]});
    if let Some(z) = s.zone_selector {
        spec["nodeSelector"] = json!({ZONE_LABEL: format!("z{z}")});
    }
    if s.tolerates_gpu {
        spec["tolerations"] = json!([{"key": "gpu", "operator": "Exists"}]);
    }
    if let Some(app) = s.anti_app {
        spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": format!("a{app}")}}, "topologyKey": HOSTNAME_LABEL}]}});
    }
    if spread {
        spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": ZONE_LABEL,
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": format!("a{}", s.app)}}}]);
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("p{i}"), "namespace": "default", "uid": format!("uid-{i}"),
            "labels": {"app": format!("a{}", s.app)},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("a{}", s.app),
                "uid": format!("owner-{}", s.app), "controller": true}]},
        "spec": spec,
    }))
    .expect("valid pod");
    PodInfo::from_pod(&pod)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The exact scan (columns, chunks, lazy node checks) picks the very node the plain
    /// node-by-node scan picks, on random clusters with many equal nodes (ties), taints,
    /// cordons, zone selectors, zone spreading, hostname anti-affinity and owner spreading.
    #[test]
    fn exact_scan_matches_the_reference_scan(
        nodes in proptest::collection::vec(node_strategy(), 1..40),
        pods in proptest::collection::vec((pod_strategy(), proptest::bool::weighted(0.3)), 1..80),
        binpack in proptest::bool::ANY,
    ) {
        let strategy = if binpack { Strategy::BinPack } else { Strategy::Spread };
        let mut snap = Snapshot::new();
        for (i, (cpu, mem_gi, zone, gpu, cordoned)) in nodes.iter().enumerate() {
            let mut n = node(&format!("n{i}"), *cpu, *mem_gi).with_label(ZONE_LABEL, &format!("z{zone}"));
            if *gpu { n = n.with_taint("gpu", "true", "NoSchedule"); }
            if *cordoned { n = n.cordoned(); }
            snap.upsert_node(n);
        }
        for (i, (spec, spread)) in pods.iter().enumerate() {
            let p = replica(i, spec, *spread);
            let plan = plan::Plan::new(&p, &snap, strategy);
            let exact = plan.best_node(usize::MAX);
            prop_assert_eq!(exact, plan.best_node_by_reference_scan());
            if let Some(slot) = exact {
                let name = snap.nodes[slot].info.name().to_string();
                snap.add_pod(&name, &p);
            }
        }
    }
}

#[test]
fn adaptive_scope_scores_as_many_nodes_as_kubernetes() {
    for (nodes, want) in [(50, 100), (1000, 420), (5000, 500), (100_000, 5000)] {
        assert_eq!(Scope::Adaptive.feasible_nodes_to_find(nodes), want, "{nodes}");
    }
    // Below 100 feasible nodes it is exact.
    let mut snap = snapshot((0..20).map(|i| node(&format!("n{i}"), 4000, 8)).collect());
    snap.add_pod("n7", &pod("load", "3", "6Gi"));
    let p = pod("p", "500m", "1Gi");
    assert_eq!(schedule_with(&p, &snap, Strategy::BinPack, Scope::Adaptive).unwrap(), "n7");
}
