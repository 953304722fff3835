//! The objects a hollow node writes, built as a kubelet would write them: the Node (labels,
//! spec, status), its Lease, and the status of a pod that is running. Pure: time and addresses
//! come in as arguments.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::Ipv4Addr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tug_k8s::node::{NodeFacts, time};

use super::SimOptions;
use super::addressing::{cidr_text, node_ip};

/// The kubelet version hollow nodes report.
pub const KUBELET_VERSION: &str = "v1.33.0-tug-sim";
/// Disk every hollow node claims.
const EPHEMERAL_STORAGE: &str = "100Gi";

/// One hollow node: its name, position in this sim, and pod network.
#[derive(Debug, Clone)]
pub struct HollowNode {
    pub index: usize,
    pub name: String,
    pub pod_network: Ipv4Addr,
}

impl HollowNode {
    pub fn ip(&self) -> Ipv4Addr {
        node_ip(self.pod_network)
    }
}

/// The name of node `index`: `<prefix>-<index>`.
pub fn node_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}")
}

/// Why options cannot describe valid nodes, if they cannot.
pub fn options_problem(options: &SimOptions) -> Option<String> {
    let prefix = &options.name_prefix;
    let longest = node_name(prefix, options.nodes.saturating_sub(1));
    let prefix_ok = prefix.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if options.nodes == 0 {
        Some("nodes must be at least 1".into())
    } else if !prefix_ok {
        Some(format!("name prefix {prefix:?} must be lower-case letters, digits, '-' or '.', starting alphanumeric"))
    } else if longest.len() > 63 {
        // The name is also the kubernetes.io/hostname label value, limited to 63 characters.
        Some(format!("node name {longest:?} is longer than 63 characters"))
    } else if !is_quantity(&options.cpu) {
        Some(format!("cpu {:?} is not a quantity (like \"8\" or \"500m\")", options.cpu))
    } else if !is_quantity(&options.memory) {
        Some(format!("memory {:?} is not a quantity (like \"32Gi\")", options.memory))
    } else if options.pods == 0 || options.pods as usize > super::addressing::HostPool::CAPACITY {
        Some(format!("pods must be 1..={} (one /24 of pod IPs per node)", super::addressing::HostPool::CAPACITY))
    } else if options.lease_interval.is_zero() {
        Some("the lease interval must be positive".into())
    } else {
        None
    }
}

/// Whether `s` reads as a Kubernetes quantity: a decimal number with an optional SI or binary
/// suffix or exponent.
pub fn is_quantity(s: &str) -> bool {
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let number_ok = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    let exponent_ok = |e: &str| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    };
    let suffix_ok = matches!(
        suffix,
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E"
    ) || suffix.strip_prefix(['e', 'E']).is_some_and(exponent_ok);
    number_ok && suffix_ok
}

/// `digits` hex digits derived from `parts`, stable within a build: fake digests and IDs.
fn fake_hex(parts: &[&str], digits: usize) -> String {
    let mut out = String::with_capacity(digits + 16);
    let mut round = 0u64;
    while out.len() < digits {
        let mut h = DefaultHasher::new();
        (parts, round).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
        round += 1;
    }
    out.truncate(digits);
    out
}

/// 32 hex digits shaped as a UUID.
fn fake_uuid(parts: &[&str]) -> String {
    let h = fake_hex(parts, 32);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The labels of a node: what a kubelet sets, the zone, and the configured ones.
pub fn node_labels(options: &SimOptions, node: &HollowNode) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", node.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", "sim"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if options.zones > 0 {
        labels.insert("topology.kubernetes.io/zone".into(), format!("zone-{}", node.index % options.zones));
    }
    labels.extend(options.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// A new Node as a kubelet registers it: metadata, spec (pod ranges, taints) and status.
pub fn node_object(options: &SimOptions, node: &HollowNode, boot_id: &str, now: Timestamp) -> Value {
    let cidr = cidr_text(node.pod_network);
    let mut spec = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    if !options.taints.is_empty() {
        spec["taints"] = serde_json::to_value(&options.taints).unwrap_or_else(|_| json!([]));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": node_labels(options, node),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": node_status(options, node, boot_id, now, true),
    })
}

/// A patch for a node that already exists (a restarted sim): our labels, and pod ranges when
/// it has none we can use. Taints are left alone, as a kubelet only sets them at registration.
pub fn existing_node_patch(options: &SimOptions, node: &HollowNode, set_cidr: bool) -> Value {
    let mut patch = json!({"metadata": {"labels": node_labels(options, node)}});
    if set_cidr {
        let cidr = cidr_text(node.pod_network);
        patch["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    patch
}

/// Node status (the builder both hollow nodes and the agent use). `transition`: whether the
/// conditions (re)start now (registration) or only their heartbeat advances.
pub fn node_status(options: &SimOptions, node: &HollowNode, boot_id: &str, now: Timestamp, transition: bool) -> Value {
    let facts = NodeFacts {
        cpu: options.cpu.clone(),
        memory: options.memory.clone(),
        ephemeral_storage: EPHEMERAL_STORAGE.into(),
        pods: options.pods,
        ip: node.ip().to_string(),
        hostname: node.name.clone(),
        kubelet_port: 10250,
        machine_id: fake_hex(&["machine", &node.name], 32),
        system_uuid: fake_uuid(&["system", &node.name]),
        boot_id: boot_id.into(),
        kernel_version: "6.1.0-tug-sim".into(),
        os_image: "Tugboat hollow node".into(),
        container_runtime_version: "sim://1".into(),
        kubelet_version: KUBELET_VERSION.into(),
        kube_proxy_version: String::new(),
        architecture: "amd64".into(),
    };
    tug_k8s::node::node_status(&facts, now, transition)
}

/// A boot ID for a node started at `started` (a new one each time the sim starts, as a reboot).
pub fn boot_id(node: &str, started: Timestamp) -> String {
    fake_uuid(&["boot", node, &started.as_nanosecond().to_string()])
}

/// The repository part of an image reference (no tag, no digest), as image IDs name it.
fn image_repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        // A colon after the last slash is a tag; before it, a registry port.
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

/// The status patch that makes a pod Running and Ready on `node` with IP `pod_ip`, started at
/// `started`. PodScheduled is written only when the scheduler left none (so its time stays).
pub fn running_status(pod: &Pod, node: &HollowNode, pod_ip: Ipv4Addr, started: Timestamp, now: Timestamp) -> Value {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let has_condition = |kind: &str| {
        pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == kind))
    };
    let condition = |kind: &str, at: Timestamp| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": time(at)});
    let mut conditions = vec![
        condition("PodReadyToStartContainers", started),
        condition("Initialized", started),
        condition("Ready", now),
        condition("ContainersReady", now),
    ];
    if !has_condition("PodScheduled") {
        conditions.push(condition("PodScheduled", started));
    }
    let spec = pod.spec.as_ref();
    let container_id = |name: &str| format!("sim://{}", fake_hex(&[uid, name], 64));
    let image_id = |image: &str| format!("{}@sha256:{}", image_repository(image), fake_hex(&["image", image], 64));
    let image_of = |image: &Option<String>| image.clone().unwrap_or_default();
    let containers: Vec<Value> = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let image = image_of(&c.image);
            json!({
                "name": c.name,
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": time(now)}},
                "lastState": {},
                "image": image,
                "imageID": image_id(&image),
                "containerID": container_id(&c.name),
            })
        })
        .collect();
    let init_containers: Vec<Value> = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let image = image_of(&c.image);
            json!({
                "name": c.name,
                "ready": true,
                "started": false,
                "restartCount": 0,
                "state": {"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": time(started), "finishedAt": time(started),
                    "containerID": container_id(&c.name),
                }},
                "lastState": {},
                "image": image,
                "imageID": image_id(&image),
                "containerID": container_id(&c.name),
            })
        })
        .collect();
    let host_ip = node.ip().to_string();
    let mut status = json!({
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip.to_string(),
        "podIPs": [{"ip": pod_ip.to_string()}],
        "startTime": time(started),
        "containerStatuses": containers,
    });
    if !init_containers.is_empty() {
        status["initContainerStatuses"] = json!(init_containers);
    }
    json!({"status": status})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(index: usize) -> HollowNode {
        HollowNode { index, name: node_name("sim", index), pod_network: Ipv4Addr::new(10, 42, index as u8, 0) }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn quantities() {
        for ok in ["8", "500m", "32Gi", "1.5", "1e3", "2E-2", "100k", "0"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "8 cores", "1..5", "32GB", "-1", ".", "1e"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn options_are_checked() {
        let ok = SimOptions::default();
        assert_eq!(options_problem(&ok), None);
        let cases: Vec<(SimOptions, &str)> = vec![
            (SimOptions { nodes: 0, ..SimOptions::default() }, "at least 1"),
            (SimOptions { name_prefix: "Rack_A".into(), ..SimOptions::default() }, "name prefix"),
            (SimOptions { name_prefix: "a".repeat(62), ..SimOptions::default() }, "longer than 63"),
            (SimOptions { cpu: "eight".into(), ..SimOptions::default() }, "cpu"),
            (SimOptions { memory: "32GB".into(), ..SimOptions::default() }, "memory"),
            (SimOptions { pods: 300, ..SimOptions::default() }, "pods must be"),
            (SimOptions { lease_interval: std::time::Duration::ZERO, ..SimOptions::default() }, "lease interval"),
        ];
        for (options, expected) in cases {
            let problem = options_problem(&options).unwrap_or_default();
            assert!(problem.contains(expected), "{problem:?} should mention {expected:?}");
        }
    }

    #[test]
    fn labels_carry_kubelet_ones_zone_and_configured() {
        let options = SimOptions {
            zones: 3,
            labels: [("team".to_string(), "a".to_string()), ("kubernetes.io/os".to_string(), "linux".to_string())]
                .into(),
            ..SimOptions::default()
        };
        let labels = node_labels(&options, &node(4));
        assert_eq!(labels["kubernetes.io/hostname"], "sim-4");
        assert_eq!(labels["node.kubernetes.io/instance-type"], "sim");
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-1");
        assert_eq!(labels["team"], "a");
        let no_zone = node_labels(&SimOptions::default(), &node(4));
        assert!(!no_zone.contains_key("topology.kubernetes.io/zone"));
    }

    #[test]
    fn node_object_reads_as_a_ready_kubelet_node() {
        let options = SimOptions {
            taints: vec![k8s_openapi::api::core::v1::Taint {
                key: "sim".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }],
            ..SimOptions::default()
        };
        let value = node_object(&options, &node(3), "boot", at("2025-01-02T03:04:05Z"));
        let typed: k8s_openapi::api::core::v1::Node = serde_json::from_value(value.clone()).expect("a valid Node");
        let spec = typed.spec.expect("spec");
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.42.3.0/24"));
        assert_eq!(spec.taints.expect("taints")[0].key, "sim");
        let status = typed.status.expect("status");
        let ready = status.conditions.expect("conditions").into_iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
        assert_eq!(status.capacity.expect("capacity")["pods"].0, "110");
        let info = status.node_info.expect("nodeInfo");
        assert_eq!(
            (info.kubelet_version.as_str(), info.container_runtime_version.as_str()),
            (KUBELET_VERSION, "sim://1")
        );
        let addresses = status.addresses.expect("addresses");
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[1].address, "sim-3");
        assert_eq!(value["status"]["conditions"][0]["lastHeartbeatTime"], "2025-01-02T03:04:05Z");
    }

    #[test]
    fn image_repositories() {
        for (image, repo) in [
            ("nginx", "nginx"),
            ("nginx:1.27", "nginx"),
            ("registry:5000/app", "registry:5000/app"),
            ("registry:5000/app:v2", "registry:5000/app"),
            ("app@sha256:abc", "app"),
        ] {
            assert_eq!(image_repository(image), repo, "{image}");
        }
    }

    #[test]
    fn running_status_is_ready_with_every_container() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {
                "nodeName": "sim-2",
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "a", "image": "nginx:1.27"}, {"name": "b", "image": "redis"}],
            },
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
        }))
        .expect("pod");
        let ip = Ipv4Addr::new(10, 42, 2, 7);
        let patch = running_status(&pod, &node(2), ip, at("2025-01-02T03:04:05Z"), at("2025-01-02T03:04:06Z"));
        let status: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(patch["status"].clone()).expect("a valid PodStatus");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.42.2.7"));
        assert_eq!(status.host_ip, Some(node(2).ip().to_string()));
        let conditions = status.conditions.expect("conditions");
        for kind in ["Initialized", "ContainersReady", "Ready"] {
            assert!(conditions.iter().any(|c| c.type_ == kind && c.status == "True"), "{kind}");
        }
        assert!(!conditions.iter().any(|c| c.type_ == "PodScheduled"), "the scheduler's condition is kept");
        let containers = status.container_statuses.expect("container statuses");
        assert_eq!(containers.len(), 2);
        for c in &containers {
            assert!(c.ready && c.started == Some(true) && c.restart_count == 0);
            assert!(c.container_id.as_deref().is_some_and(|id| id.starts_with("sim://")));
            assert!(c.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
        }
        assert_eq!(containers[0].image, "nginx:1.27");
        assert!(containers[0].image_id.starts_with("nginx@sha256:"));
        assert_ne!(containers[0].container_id, containers[1].container_id);
        let init = status.init_container_statuses.expect("init statuses");
        assert_eq!(init[0].state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code), Some(0));
    }
}
