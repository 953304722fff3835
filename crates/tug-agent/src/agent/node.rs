//! The agent's Node: capacity and identity read from the host (pure parsers over the text of
//! `/proc` files, so they are testable), registration (create, or update a node of the same
//! name left by an earlier run), status through the status subresource, and the Lease in
//! `kube-node-lease` renewed every interval.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::AgentError;
use crate::sim::{LEASE_DURATION_SECONDS, LEASE_NAMESPACE};

/// The kubelet version the agent reports.
pub const KUBELET_VERSION: &str = "v1.33.0-tug";
/// Pods per node, the kubelet's default `--max-pods`.
pub const MAX_PODS: u32 = 110;

/// What the Node says about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub ip: IpAddr,
    pub cpus: usize,
    pub memory_bytes: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub runtime_version: String,
    /// Image names the runtime holds (`status.images`).
    pub images: Vec<(Vec<String>, u64)>,
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// `PRETTY_NAME` of `/etc/os-release`.
pub fn parse_os_release(text: &str) -> Option<String> {
    let value = text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(value.trim_matches('"').to_string())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The address other hosts reach this one at: the source address of the default route
/// (a UDP "connect" sends nothing), else loopback.
pub fn default_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("192.0.2.255:9")?;
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

impl HostFacts {
    /// Reads this host; `ip` overrides the detected address.
    pub fn read(ip: Option<IpAddr>, runtime_version: String, images: Vec<(Vec<String>, u64)>) -> HostFacts {
        HostFacts {
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
            ip: ip.unwrap_or_else(default_ip),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes: parse_meminfo_total(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
                .unwrap_or(0),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image: parse_os_release(&std::fs::read_to_string("/etc/os-release").unwrap_or_default())
                .unwrap_or_else(|| "Linux".into()),
            machine_id: read_trimmed("/etc/machine-id"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            runtime_version,
            images,
        }
    }
}

fn time(at: Timestamp) -> Value {
    serde_json::to_value(Time(at)).unwrap_or(Value::Null)
}

/// The labels a kubelet puts on its node.
pub fn node_labels(name: &str) -> BTreeMap<String, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The node status: capacity (allocatable alike: nothing is reserved yet), conditions, addresses,
/// nodeInfo and images.
pub fn node_status(host: &HostFacts, api_port: u16, now: Timestamp) -> Value {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": time(now), "lastTransitionTime": time(now),
        })
    };
    let resources = json!({
        "cpu": host.cpus.to_string(),
        "memory": format!("{}Ki", host.memory_bytes / 1024),
        "pods": MAX_PODS.to_string(),
    });
    let arch = node_labels("")["kubernetes.io/arch"].clone();
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": host.ip.to_string()},
            {"type": "Hostname", "address": host.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": api_port}},
        "nodeInfo": {
            "machineID": host.machine_id,
            "systemUUID": host.machine_id,
            "bootID": host.boot_id,
            "kernelVersion": host.kernel,
            "osImage": host.os_image,
            "containerRuntimeVersion": host.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": arch,
        },
        "images": host.images.iter().map(|(names, size)| json!({"names": names, "sizeBytes": size})).collect::<Vec<_>>(),
    })
}

/// The node annotation naming the directory local volumes live under (the local-path
/// provisioner puts a claim's volume there).
pub const STORAGE_DIR_ANNOTATION: &str = "tugboat.dev/storage-dir";

/// A new Node as the agent registers it; `storage_dir` is where its local volumes live.
pub fn node_object(name: &str, pod_cidr: &str, storage_dir: &std::path::Path) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels(name),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                STORAGE_DIR_ANNOTATION: storage_dir.to_string_lossy(),
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
    })
}

fn api_error(what: String) -> impl FnOnce(kube::Error) -> AgentError {
    move |source| AgentError::Api { what, source }
}

fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Creates the node, or updates the one of this name (labels, pod range, storage dir); then
/// writes its status. Returns the node's uid (the lease's owner).
pub async fn register(
    client: &kube::Client,
    name: &str,
    pod_cidr: &str,
    storage_dir: &std::path::Path,
    host: &HostFacts,
    api_port: u16,
) -> Result<String, AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let object: Node = serde_json::from_value(node_object(name, pod_cidr, storage_dir))
        .map_err(|e| AgentError::Invalid(format!("node {name}: {e}")))?;
    let node = match nodes.create(&PostParams::default(), &object).await {
        Ok(node) => node,
        Err(e) if code(&e) == Some(409) => {
            let patch = json!({
                "metadata": {
                    "labels": node_labels(name),
                    "annotations": {STORAGE_DIR_ANNOTATION: storage_dir.to_string_lossy()},
                },
                "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
            });
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(api_error(format!("updating node {name}")))?
        }
        Err(e) => return Err(api_error(format!("registering node {name}"))(e)),
    };
    post_status(client, name, host, api_port).await?;
    Ok(node.metadata.uid.unwrap_or_default())
}

/// Writes the node's whole status (conditions merge by type).
pub async fn post_status(client: &kube::Client, name: &str, host: &HostFacts, api_port: u16) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = Patch::Strategic(json!({"status": node_status(host, api_port, Timestamp::now())}));
    nodes
        .patch_status(name, &PatchParams::default(), &patch)
        .await
        .map_err(api_error(format!("status of node {name}")))?;
    Ok(())
}

fn lease_object(name: &str, node_uid: &str, now: Timestamp) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}],
        },
        "spec": lease_spec(name, now),
    })
}

fn lease_spec(name: &str, now: Timestamp) -> Value {
    json!({
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": serde_json::to_value(MicroTime(now)).unwrap_or(Value::Null),
    })
}

/// Moves the node's lease renewTime to now, creating the lease when missing.
pub async fn renew_lease(client: &kube::Client, name: &str, node_uid: &str) -> Result<(), AgentError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = Timestamp::now();
    let patch = Patch::Merge(json!({"spec": lease_spec(name, now)}));
    match leases.patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some(404) => {
            let lease: Lease = serde_json::from_value(lease_object(name, node_uid, now))
                .map_err(|e| AgentError::Invalid(format!("lease {name}: {e}")))?;
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(e) if code(&e) == Some(409) => Ok(()),
                Err(e) => Err(api_error(format!("creating the lease of {name}"))(e)),
            }
        }
        Err(e) => Err(api_error(format!("renewing the lease of {name}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            hostname: "box".into(),
            ip: "192.0.2.2".parse().expect("ip"),
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            runtime_version: "containerd://1.6.20".into(),
            images: vec![(vec!["localhost/busybox:latest".into()], 1000)],
        }
    }

    #[test]
    fn host_files_parse() {
        assert_eq!(parse_meminfo_total("MemTotal:       24684096 kB\nMemFree: 1 kB\n"), Some(24684096 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(
            parse_os_release("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn node_and_status_read_as_a_ready_kubelet_node() {
        let mut value = node_object("n1", "10.42.0.0/24", std::path::Path::new("/var/lib/tug/storage"));
        value["status"] = node_status(&host(), 10250, "2025-01-02T03:04:05Z".parse().expect("time"));
        let node: Node = serde_json::from_value(value).expect("a valid Node");
        assert_eq!(node.spec.expect("spec").pod_cidr.as_deref(), Some("10.42.0.0/24"));
        let annotations = node.metadata.annotations.expect("annotations");
        assert_eq!(annotations[STORAGE_DIR_ANNOTATION], "/var/lib/tug/storage", "where local volumes go");
        let status = node.status.expect("status");
        let conditions = status.conditions.expect("conditions");
        let of = |kind: &str| conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.clone());
        assert_eq!(of("Ready").as_deref(), Some("True"));
        for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(of(kind).as_deref(), Some("False"), "{kind}");
        }
        let capacity = status.capacity.expect("capacity");
        assert_eq!(
            (capacity["cpu"].0.as_str(), capacity["memory"].0.as_str(), capacity["pods"].0.as_str()),
            ("2", "4194304Ki", "110")
        );
        assert_eq!(status.allocatable.expect("allocatable")["pods"].0, "110");
        let addresses = status.addresses.expect("addresses");
        assert_eq!((addresses[0].type_.as_str(), addresses[0].address.as_str()), ("InternalIP", "192.0.2.2"));
        assert_eq!((addresses[1].type_.as_str(), addresses[1].address.as_str()), ("Hostname", "box"));
        let endpoint = status.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|e| e.port);
        assert_eq!(endpoint, Some(10250), "where the API server finds the agent's API");
        assert_eq!(status.node_info.expect("nodeInfo").container_runtime_version, "containerd://1.6.20");
        assert_eq!(
            status.images.expect("images")[0].names.as_deref(),
            Some(&["localhost/busybox:latest".to_string()][..])
        );
    }
}
