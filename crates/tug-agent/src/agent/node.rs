//! The agent's Node: capacity and identity read from the host once at start ([`HostFacts`]:
//! pure parsers over the text of `/proc` files, so they are testable; the pod workers and
//! volumes take cpu and memory from it too), registration (create, or update a node of the same
//! name left by an earlier run), status through the status subresource, and the Lease in
//! `kube-node-lease` renewed every interval.
//!
//! [`report_runtime`] keeps the Ready condition in step with the container runtime, as the
//! kubelet does: `Ready=False`, reason `KubeletNotReady`, message `container runtime is down`
//! while the CRI does not answer (or containerd's supervisor says it is down), `container
//! runtime network not ready: NetworkReady=false ...` while it has no CNI network (the agent
//! waiting for its pod range, see `network`); the node registers with that Ready already,
//! `Ready=True`
//! again once it does — written only when it changes — with `NodeNotReady`/`NodeReady` events,
//! and a Warning `ContainerRuntimeRestarted` event each time the supervisor restarted containerd.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::watch;
use tug_cri::v1::{RuntimeCondition, StatusRequest};
use tug_k8s::node::{LEASE_NAMESPACE, MAX_PODS, NodeFacts, lease_object, lease_spec, ready_condition};

use super::AgentError;
use super::events::{Happening, kubelet_event};
use super::spec::NodeResources;
use crate::containerd::RuntimeStatus;

/// The kubelet version the agent reports.
pub const KUBELET_VERSION: &str = "v1.33.0-tug";
/// The Ready condition's message while the CRI does not answer (the kubelet's words).
pub const RUNTIME_DOWN: &str = "container runtime is down";
/// The reason of the Warning event recorded when containerd was restarted after dying.
pub const RUNTIME_RESTARTED_REASON: &str = "ContainerRuntimeRestarted";
/// How often the runtime's health is checked when nothing else says it changed (the kubelet
/// checks every 5 s; a check is one cheap CRI call).
const RUNTIME_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the CRI may take to answer a health check before it counts as down.
const RUNTIME_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the Node says about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub ip: IpAddr,
    pub cpus: usize,
    pub memory_bytes: u64,
    /// The size of the filesystem holding the agent's data dir (pods' writable layers, logs,
    /// emptyDirs): the node's `ephemeral-storage`, as the kubelet reports its root dir's.
    pub ephemeral_storage_bytes: u64,
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

/// The size in bytes of the filesystem holding `path` (0 when it cannot be read).
fn filesystem_size(path: &std::path::Path) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(fs) => fs.f_blocks.saturating_mul(fs.f_frsize),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the size of the filesystem; reporting no ephemeral storage");
            0
        }
    }
}

impl HostFacts {
    /// The node's cpu and memory as the pod specs' translation takes them.
    pub fn resources(&self) -> NodeResources {
        NodeResources {
            cpu_millis: i64::try_from(self.cpus).unwrap_or(1).saturating_mul(1000),
            memory_bytes: i64::try_from(self.memory_bytes).unwrap_or(i64::MAX),
        }
    }

    /// Reads this host; `ip` overrides the detected address, `data_dir` is where pods' data
    /// lives (its filesystem's size is the node's ephemeral storage).
    pub fn read(
        ip: Option<IpAddr>,
        data_dir: &std::path::Path,
        runtime_version: String,
        images: Vec<(Vec<String>, u64)>,
    ) -> HostFacts {
        HostFacts {
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
            ip: ip.unwrap_or_else(default_ip),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes: parse_meminfo_total(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
                .unwrap_or(0),
            ephemeral_storage_bytes: filesystem_size(data_dir),
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

/// What keeps the node from being Ready given the CRI's `Status` answer (`None`: no answer),
/// in the kubelet's words; `None` when nothing does.
pub fn runtime_problem(answer: Option<&[RuntimeCondition]>) -> Option<String> {
    let Some(conditions) = answer else { return Some(RUNTIME_DOWN.into()) };
    let failing = |kind: &str| conditions.iter().find(|c| c.r#type == kind && !c.status);
    if let Some(c) = failing("RuntimeReady") {
        return Some(format!(
            "container runtime not ready: RuntimeReady=false reason:{} message:{}",
            c.reason, c.message
        ));
    }
    failing("NetworkReady").map(|c| {
        format!("container runtime network not ready: NetworkReady=false reason:{} message:{}", c.reason, c.message)
    })
}

/// The node status: capacity (allocatable alike: nothing is reserved yet) with ephemeral
/// storage and (no) huge pages, conditions (Ready unless `problem`), addresses, nodeInfo (all
/// from `tug_k8s::node`, the builder hollow nodes use too) and the runtime's images.
pub fn node_status(host: &HostFacts, api_port: u16, problem: Option<&str>, now: Timestamp) -> Value {
    let facts = NodeFacts {
        cpu: host.cpus.to_string(),
        memory: format!("{}Ki", host.memory_bytes / 1024),
        ephemeral_storage: format!("{}Ki", host.ephemeral_storage_bytes / 1024),
        pods: MAX_PODS,
        ip: host.ip.to_string(),
        hostname: host.hostname.clone(),
        kubelet_port: api_port,
        machine_id: host.machine_id.clone(),
        system_uuid: host.machine_id.clone(),
        boot_id: host.boot_id.clone(),
        kernel_version: host.kernel.clone(),
        os_image: host.os_image.clone(),
        container_runtime_version: host.runtime_version.clone(),
        kubelet_version: KUBELET_VERSION.into(),
        kube_proxy_version: KUBELET_VERSION.into(),
        architecture: node_labels("")["kubernetes.io/arch"].clone(),
    };
    let mut status = tug_k8s::node::node_status(&facts, now, true);
    if let Some(conditions) = status["conditions"].as_array_mut() {
        for condition in conditions.iter_mut().filter(|c| c["type"] == "Ready") {
            *condition = ready_condition(problem, now, true);
        }
    }
    status["images"] =
        host.images.iter().map(|(names, size)| json!({"names": names, "sizeBytes": size})).collect::<Vec<_>>().into();
    status
}

/// The node annotation naming the directory local volumes live under (the local-path
/// provisioner puts a claim's volume there).
pub const STORAGE_DIR_ANNOTATION: &str = "tugboat.dev/storage-dir";

/// A new Node as the agent registers it; `storage_dir` is where its local volumes live. Without
/// a `pod_cidr` the server's node IPAM controller gives it one.
pub fn node_object(name: &str, pod_cidr: Option<&str>, storage_dir: &std::path::Path) -> Value {
    let mut node = json!({
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
    });
    if let Some(pod_cidr) = pod_cidr {
        node["spec"] = json!({"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]});
    }
    node
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

/// Creates the node, or updates the one of this name (labels, the pod range when given, storage
/// dir); then writes its status, Ready unless `problem`. Returns the node's uid (the lease's
/// owner).
pub async fn register(
    client: &kube::Client,
    name: &str,
    pod_cidr: Option<&str>,
    storage_dir: &std::path::Path,
    host: &HostFacts,
    api_port: u16,
    problem: Option<&str>,
) -> Result<String, AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let object: Node = serde_json::from_value(node_object(name, pod_cidr, storage_dir))
        .map_err(|e| AgentError::Invalid(format!("node {name}: {e}")))?;
    let node = match nodes.create(&PostParams::default(), &object).await {
        Ok(node) => node,
        Err(e) if code(&e) == Some(409) => {
            let mut patch = json!({
                "metadata": {
                    "labels": node_labels(name),
                    "annotations": {STORAGE_DIR_ANNOTATION: storage_dir.to_string_lossy()},
                },
            });
            if let Some(pod_cidr) = pod_cidr {
                patch["spec"] = json!({"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]});
            }
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(api_error(format!("updating node {name}")))?
        }
        Err(e) => return Err(api_error(format!("registering node {name}"))(e)),
    };
    post_status(client, name, host, api_port, problem).await?;
    Ok(node.metadata.uid.unwrap_or_default())
}

/// Writes the node's whole status (conditions merge by type), Ready unless `problem`.
pub async fn post_status(
    client: &kube::Client,
    name: &str,
    host: &HostFacts,
    api_port: u16,
    problem: Option<&str>,
) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = Patch::Strategic(json!({"status": node_status(host, api_port, problem, Timestamp::now())}));
    nodes
        .patch_status(name, &PatchParams::default(), &patch)
        .await
        .map_err(api_error(format!("status of node {name}")))?;
    Ok(())
}

/// An event about node `name`, as the kubelet records them (in `default`, the node's name as
/// its uid, which is where `kubectl describe node` looks).
pub fn node_event(name: &str, what: Happening, now: Timestamp) -> Event {
    let regarding = ObjectReference {
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(name.into()),
        ..ObjectReference::default()
    };
    kubelet_event(regarding, name, what, now)
}

async fn record_event(client: &kube::Client, name: &str, what: (bool, &str, &str)) {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    if let Err(error) = events.create(&PostParams::default(), &node_event(name, what, Timestamp::now())).await {
        tracing::debug!(%error, "cannot write a node event");
    }
}

/// The CRI's answer to `Status` (its conditions), `None` when it does not answer in time.
pub(crate) async fn runtime_answer(cri: &tug_cri::Clients) -> Option<Vec<RuntimeCondition>> {
    let mut runtime = cri.runtime.clone();
    let call = runtime.status(StatusRequest { verbose: false });
    match tokio::time::timeout(RUNTIME_CHECK_TIMEOUT, call).await {
        Ok(Ok(response)) => Some(response.into_inner().status.map(|s| s.conditions).unwrap_or_default()),
        _ => None,
    }
}

/// Writes the node's Ready condition alone (conditions merge by type).
async fn post_ready(client: &kube::Client, name: &str, problem: Option<&str>) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = Patch::Strategic(json!({"status": {"conditions": [ready_condition(problem, Timestamp::now(), true)]}}));
    nodes
        .patch_status(name, &PatchParams::default(), &patch)
        .await
        .map_err(api_error(format!("Ready condition of node {name}")))?;
    Ok(())
}

/// Resolves when the supervisor's status changes; never without a supervisor. `Err` once the
/// supervisor is gone.
async fn supervisor_changed(
    supervisor: &mut Option<watch::Receiver<RuntimeStatus>>,
) -> Result<(), watch::error::RecvError> {
    match supervisor {
        Some(status) => status.changed().await,
        None => std::future::pending().await,
    }
}

/// Keeps node `name`'s Ready condition in step with the runtime behind `cri`, checked every
/// second and at once when the managed containerd's `supervisor` reports a change; records a
/// Warning event when the supervisor restarted containerd. Runs until aborted. `registered` is
/// the problem the node was registered with (`None`: Ready).
pub async fn report_runtime(
    client: kube::Client,
    name: String,
    cri: tug_cri::Clients,
    mut supervisor: Option<watch::Receiver<RuntimeStatus>>,
    registered: Option<String>,
) {
    let mut reported = registered;
    let mut restarts = supervisor.as_ref().map_or(0, |status| status.borrow().restarts);
    let mut ticks = tokio::time::interval(RUNTIME_CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = supervisor_changed(&mut supervisor) => {
                if changed.is_err() {
                    supervisor = None;
                }
            }
        }
        let supervised = supervisor.as_mut().map(|status| status.borrow_and_update().clone());
        if let Some(status) = &supervised
            && status.restarts > restarts
        {
            restarts = status.restarts;
            let exit = status.last_exit.as_deref().unwrap_or("unknown exit");
            let message = format!("containerd exited unexpectedly ({exit}) and was started again (restart {restarts})");
            record_event(&client, &name, (true, RUNTIME_RESTARTED_REASON, &message)).await;
        }
        let problem = match &supervised {
            Some(status) if status.pid.is_none() => Some(RUNTIME_DOWN.to_string()),
            _ => runtime_problem(runtime_answer(&cri).await.as_deref()),
        };
        if problem == reported {
            continue;
        }
        if let Err(error) = post_ready(&client, &name, problem.as_deref()).await {
            tracing::warn!(node = %name, %error, "cannot report the runtime's health; retrying");
            continue;
        }
        match &problem {
            Some(problem) => tracing::warn!(node = %name, %problem, "node not ready"),
            None => tracing::info!(node = %name, "node ready again"),
        }
        let state = if problem.is_some() { "NodeNotReady" } else { "NodeReady" };
        record_event(&client, &name, (false, state, &format!("Node {name} status is now: {state}"))).await;
        reported = problem;
    }
}

/// Moves the node's lease renewTime to now, creating the lease when missing.
pub async fn renew_lease(client: &kube::Client, name: &str, node_uid: &str) -> Result<(), AgentError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = Timestamp::now();
    let patch = Patch::Merge(json!({"spec": lease_spec(name, now)}));
    match leases.patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some(404) => {
            let lease: Lease = serde_json::from_value(lease_object(name, Some(node_uid), now))
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
            ephemeral_storage_bytes: 50 * 1024 * 1024 * 1024,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            runtime_version: "containerd://1.6.20".into(),
            images: vec![(vec!["localhost/busybox:latest".into()], 1000)],
        }
    }

    fn runtime_condition(kind: &str, status: bool, reason: &str) -> RuntimeCondition {
        RuntimeCondition { r#type: kind.into(), status, reason: reason.into(), message: "m".into() }
    }

    #[test]
    fn the_runtime_keeps_the_node_from_ready_as_the_kubelet_says() {
        let up = [runtime_condition("RuntimeReady", true, ""), runtime_condition("NetworkReady", true, "")];
        let no_network =
            [runtime_condition("RuntimeReady", true, ""), runtime_condition("NetworkReady", false, "NoCNI")];
        let not_ready = [runtime_condition("RuntimeReady", false, "Starting"), no_network[1].clone()];
        let cases: [(Option<&[RuntimeCondition]>, Option<&str>); 5] = [
            (None, Some("container runtime is down")),
            (Some(&up), None),
            (Some(&[]), None),
            (Some(&no_network), Some("container runtime network not ready: NetworkReady=false reason:NoCNI message:m")),
            (Some(&not_ready), Some("container runtime not ready: RuntimeReady=false reason:Starting message:m")),
        ];
        for (answer, expected) in cases {
            assert_eq!(runtime_problem(answer).as_deref(), expected, "{answer:?}");
        }
    }

    #[test]
    fn node_events_are_where_kubectl_describe_node_finds_them() {
        let now: Timestamp = "2025-01-02T03:04:05Z".parse().expect("time");
        let event = node_event("n1", (true, RUNTIME_RESTARTED_REASON, "containerd exited"), now);
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert!(event.metadata.name.as_deref().is_some_and(|name| name.starts_with("n1.")));
        let object = &event.involved_object;
        assert_eq!(
            (object.kind.as_deref(), object.name.as_deref(), object.uid.as_deref()),
            (Some("Node"), Some("n1"), Some("n1"))
        );
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.source.and_then(|s| s.host).as_deref(), Some("n1"));
    }

    #[test]
    fn host_resources_are_what_pods_see_of_the_node() {
        assert_eq!(host().resources(), NodeResources { cpu_millis: 2000, memory_bytes: 4 << 30 });
    }

    #[test]
    fn the_data_dirs_filesystem_has_a_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(filesystem_size(dir.path()) > 0);
        assert_eq!(filesystem_size(&dir.path().join("missing")), 0);
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
        let mut value = node_object("n1", Some("10.42.0.0/24"), std::path::Path::new("/var/lib/tug/storage"));
        value["status"] = node_status(&host(), 10250, None, "2025-01-02T03:04:05Z".parse().expect("time"));
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
        let of = |name: &str| capacity.get(name).map(|q| q.0.as_str());
        assert_eq!(
            [of("cpu"), of("memory"), of("pods"), of("ephemeral-storage"), of("hugepages-1Gi"), of("hugepages-2Mi")],
            [Some("2"), Some("4194304Ki"), Some("110"), Some("52428800Ki"), Some("0"), Some("0")],
            "what a kubelet reports, ephemeral storage and huge pages included"
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

    #[test]
    fn a_node_without_a_range_or_network_registers_without_podcidr_and_not_ready() {
        let value = node_object("n1", None, std::path::Path::new("/s"));
        let node: Node = serde_json::from_value(value).expect("a valid Node");
        assert_eq!(node.spec.and_then(|s| s.pod_cidr), None, "the server's node IPAM fills it in");
        let problem = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:x";
        let status = node_status(&host(), 10250, Some(problem), "2025-01-02T03:04:05Z".parse().expect("time"));
        let ready: Vec<&Value> =
            status["conditions"].as_array().expect("conditions").iter().filter(|c| c["type"] == "Ready").collect();
        assert_eq!(ready.len(), 1);
        assert_eq!((ready[0]["status"].as_str(), ready[0]["message"].as_str()), (Some("False"), Some(problem)));
    }
}
