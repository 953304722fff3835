//! What a node reports about itself, as the kubelet writes it: the Node's status (capacity,
//! allocatable, conditions, addresses, nodeInfo) and its Lease in `kube-node-lease`. The real
//! agent and the hollow nodes (`tug sim`) both build them here, from facts they pass in (no IO:
//! the agent reads its host, a hollow node makes its facts up), so the two cannot drift apart.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use serde_json::{Value, json};

/// The namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The lease duration a kubelet announces (`--node-lease-duration-seconds`' default).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Pods per node, the kubelet's default `--max-pods`.
pub const MAX_PODS: u32 = 110;

/// A Kubernetes `Time` (seconds) as JSON.
pub fn time(at: Timestamp) -> Value {
    serde_json::to_value(Time(at)).unwrap_or(Value::Null)
}

/// A Kubernetes `MicroTime` as JSON (leases use it).
pub fn micro_time(at: Timestamp) -> Value {
    serde_json::to_value(MicroTime(at)).unwrap_or(Value::Null)
}

/// What a node reports about itself: resources as quantities, how it is reached, what it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// CPU capacity, a quantity ("8").
    pub cpu: String,
    /// Memory capacity, a quantity ("32Gi", "4194304Ki").
    pub memory: String,
    /// Local ephemeral storage: the capacity of the filesystem pods' writable layers, logs and
    /// emptyDirs live on (the kubelet's root dir), a quantity.
    pub ephemeral_storage: String,
    /// How many pods the node takes.
    pub pods: u32,
    /// The node's InternalIP.
    pub ip: String,
    /// The Hostname address.
    pub hostname: String,
    /// Where the API server reaches the node's own API (`daemonEndpoints.kubeletEndpoint`).
    pub kubelet_port: u16,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    /// `<runtime>://<version>`.
    pub container_runtime_version: String,
    pub kubelet_version: String,
    pub kube_proxy_version: String,
    /// `amd64`, `arm64`: Go's names.
    pub architecture: String,
}

/// A node condition as the kubelet writes it. `transition`: whether the condition (re)starts
/// now (registration, a change) or only its heartbeat advances, leaving `lastTransitionTime` as
/// stored (a strategic merge patch merges conditions by type).
pub fn condition(kind: &str, status: &str, reason: &str, message: &str, now: Timestamp, transition: bool) -> Value {
    let mut c = json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": time(now),
    });
    if transition {
        c["lastTransitionTime"] = time(now);
    }
    c
}

/// The Ready condition of a node whose runtime works (`problem` is `None`) or does not, in the
/// kubelet's words.
pub fn ready_condition(problem: Option<&str>, now: Timestamp, transition: bool) -> Value {
    match problem {
        None => condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now, transition),
        Some(problem) => condition("Ready", "False", "KubeletNotReady", problem, now, transition),
    }
}

/// The node's status: capacity (allocatable alike: nothing is reserved), the pressure
/// conditions and Ready, addresses, the daemon endpoint and nodeInfo. A node with no huge pages
/// reports `hugepages-1Gi` and `hugepages-2Mi` as 0, as the kubelet does.
pub fn node_status(facts: &NodeFacts, now: Timestamp, transition: bool) -> Value {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        condition(kind, status, reason, message, now, transition)
    };
    let resources = json!({
        "cpu": facts.cpu,
        "memory": facts.memory,
        "pods": facts.pods.to_string(),
        "ephemeral-storage": facts.ephemeral_storage,
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ready_condition(None, now, transition),
        ],
        "addresses": [
            {"type": "InternalIP", "address": facts.ip},
            {"type": "Hostname", "address": facts.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.kubelet_port}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.system_uuid,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image,
            "containerRuntimeVersion": facts.container_runtime_version,
            "kubeletVersion": facts.kubelet_version,
            "kubeProxyVersion": facts.kube_proxy_version,
            "operatingSystem": "linux",
            "architecture": facts.architecture,
        },
    })
}

/// The node's Lease, owned by the Node (when its uid is known) so it goes when the node does.
pub fn lease_object(node: &str, node_uid: Option<&str>, now: Timestamp) -> Value {
    let mut lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
        "spec": lease_spec(node, now),
    });
    if let Some(uid) = node_uid {
        lease["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]);
    }
    lease
}

/// What a renewal writes: the holder, the duration and the renew time.
pub fn lease_spec(node: &str, now: Timestamp) -> Value {
    json!({"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": micro_time(now)})
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::NodeStatus;

    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            cpu: "2".into(),
            memory: "4194304Ki".into(),
            ephemeral_storage: "52428800Ki".into(),
            pods: MAX_PODS,
            ip: "192.0.2.2".into(),
            hostname: "box".into(),
            kubelet_port: 10250,
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            container_runtime_version: "containerd://1.6.20".into(),
            kubelet_version: "v1.33.0-tug".into(),
            kube_proxy_version: "v1.33.0-tug".into(),
            architecture: "amd64".into(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn status_reads_as_a_ready_kubelet_node_with_every_resource() {
        let status: NodeStatus =
            serde_json::from_value(node_status(&facts(), at("2025-01-02T03:04:05Z"), true)).expect("a NodeStatus");
        for resources in [status.capacity.expect("capacity"), status.allocatable.expect("allocatable")] {
            let of = |name: &str| resources.get(name).map(|q| q.0.as_str());
            assert_eq!(
                [
                    of("cpu"),
                    of("memory"),
                    of("pods"),
                    of("ephemeral-storage"),
                    of("hugepages-1Gi"),
                    of("hugepages-2Mi")
                ],
                [Some("2"), Some("4194304Ki"), Some("110"), Some("52428800Ki"), Some("0"), Some("0")]
            );
        }
        let conditions = status.conditions.expect("conditions");
        let of = |kind: &str| conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.as_str());
        assert_eq!(of("Ready"), Some("True"));
        for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(of(kind), Some("False"), "{kind}");
        }
        let addresses = status.addresses.expect("addresses");
        assert_eq!((addresses[0].type_.as_str(), addresses[0].address.as_str()), ("InternalIP", "192.0.2.2"));
        assert_eq!((addresses[1].type_.as_str(), addresses[1].address.as_str()), ("Hostname", "box"));
        assert_eq!(status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|e| e.port), Some(10250));
        let info = status.node_info.expect("nodeInfo");
        assert_eq!((info.container_runtime_version.as_str(), info.system_uuid.as_str()), ("containerd://1.6.20", "u"));
    }

    #[test]
    fn heartbeats_leave_transition_times_alone() {
        let status = node_status(&facts(), at("2025-01-02T03:04:05Z"), false);
        let conditions = status["conditions"].as_array().expect("conditions");
        assert!(conditions.iter().all(|c| c.get("lastTransitionTime").is_none() && c["lastHeartbeatTime"].is_string()));
        let registered = node_status(&facts(), at("2025-01-02T03:04:05Z"), true);
        assert_eq!(registered["conditions"][0]["lastTransitionTime"], "2025-01-02T03:04:05Z");
    }

    #[test]
    fn the_ready_condition_says_why_the_node_is_not_ready() {
        let now = at("2025-01-02T03:04:05Z");
        let cases = [
            (None, ("True", "KubeletReady", "kubelet is posting ready status")),
            (Some("container runtime is down"), ("False", "KubeletNotReady", "container runtime is down")),
        ];
        for (problem, (status, reason, message)) in cases {
            let condition = ready_condition(problem, now, true);
            assert_eq!(condition["type"], "Ready");
            assert_eq!(
                (&condition["status"], &condition["reason"], &condition["message"]),
                (&json!(status), &json!(reason), &json!(message))
            );
        }
    }

    #[test]
    fn lease_names_its_holder_and_owner() {
        let lease: Lease = serde_json::from_value(lease_object("n-1", Some("u-1"), at("2025-01-02T03:04:05.5Z")))
            .expect("a valid Lease");
        let spec = lease.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("n-1"));
        assert_eq!(spec.lease_duration_seconds, Some(LEASE_DURATION_SECONDS));
        assert_eq!(lease.metadata.owner_references.expect("owner")[0].uid, "u-1");
        assert_eq!(lease.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        let unowned = lease_object("n-1", None, at("2025-01-02T03:04:05Z"));
        assert!(unowned["metadata"].get("ownerReferences").is_none());
    }
}
