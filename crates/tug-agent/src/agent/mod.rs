//! The real node agent (the kubelet's job), on containerd over CRI.
//!
//! [`run`] starts (or connects to) containerd, registers the Node and keeps its Lease fresh,
//! waits for the node's pod range and sets up its network, then runs the pods bound to the node
//! until shutdown:
//!
//! - [`plan`] — the pure sync core: desired pod vs. observed sandboxes/containers → actions
//!   (sandbox, init containers in order, containers, restarts with back-off, teardown).
//! - [`status`] — the pure status core: phase, conditions, container states, IPs, QoS.
//!   [`probe_results`] — what the prober found, as the status reads it; [`qos`] — the pod's QoS
//!   class (status and cgroup parent).
//! - [`spec`] — the pure pod → CRI config translation (sandbox and containers).
//! - [`cni`] — the node's bridge conflist. [`node`] — Node, status and Lease.
//! - [`network`] — the node's pod range (from `--pod-cidr` or the server's node IPAM), the
//!   conflist written for it, egress masquerading; [`routes`] — host-gateway routes to the
//!   other nodes' ranges. Both are undone when the agent stops.
//! - `pods` — the IO around the cores: the pod watch, the runtime relist, per-pod workers.
//! - [`volumes`] — pod volumes: planned purely, set up before containers start, files kept
//!   current from a watch-fed ConfigMap/Secret cache, torn down at finalization.
//! - [`api`] — the HTTPS API the API server proxies logs, exec, attach and port-forward to;
//!   [`logs`] reads the CRI log files.
//!
//! Restart safety comes from the design: every decision is taken from what the runtime lists
//! (sandboxes and containers carry the pod's uid as labels, the restart count is the
//! container's attempt), so a restarted agent adopts running containers instead of recreating
//! them.
//!
//! The runtime may restart too. A managed containerd is supervised
//! ([`ManagedContainerd::supervise`]): when it dies it is started again with back-off and
//! re-attaches to the containers, whose shims kept running. Meanwhile a failed CRI call is never
//! taken for "no containers": the relist and the pod syncs keep their last view and retry, no
//! status is written, nothing is torn down; the CRI channel reconnects by itself once the socket
//! serves again. [`node::report_runtime`] turns the node `Ready=False` ("container runtime is
//! down") until the CRI answers again and records the restart as a Warning event.

pub mod api;
pub mod auth;
pub mod cni;
pub mod events;
pub mod localpv;
pub mod logs;
pub mod network;
pub mod node;
pub mod plan;
mod pods;
pub mod probe_results;
pub mod probes;
pub mod qos;
pub mod routes;
pub mod spdy;
pub mod spec;
pub mod status;
pub mod translate;
pub mod volumes;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tug_cri::v1::{ListImagesRequest, VersionRequest};

use crate::containerd::{Layout, ManagedContainerd, RuntimeStatus, Supervisor};

/// The kubelet's port, where the agent's API listens by default.
pub const DEFAULT_API_PORT: u16 = 10250;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The Node's name (and `kubernetes.io/hostname` label).
    pub node_name: String,
    /// Everything of the agent lives here: containerd's state, CNI leases, pod logs.
    pub data_dir: PathBuf,
    /// A running CRI runtime to use; `None` starts a managed containerd under `data_dir`.
    pub containerd_socket: Option<PathBuf>,
    /// The node's pod range (`spec.podCIDR`), handed out by the bridge's host-local IPAM. `None`
    /// (the default): the range the server's node IPAM controller writes on the Node, waited for.
    pub pod_cidr: Option<String>,
    /// The cluster's pod network (the server's `--cluster-cidr`): traffic from it to outside it
    /// is masqueraded, traffic inside it keeps its pod source address.
    pub cluster_cidr: String,
    /// The nftables table (family `ip`) of the masquerade rule; one per host network.
    pub masquerade_table: String,
    /// The `proto` number marking the agent's routes to other nodes' ranges; one per host
    /// network: the agent removes every route of it that it does not want.
    pub route_protocol: u8,
    /// The bridge the node's pods attach to.
    pub cni_bridge: String,
    /// How often the node's Lease is renewed.
    pub lease_interval: Duration,
    /// The node's InternalIP; detected from the default route when `None`.
    pub node_ip: Option<IpAddr>,
    /// The port of the agent's HTTPS API (logs, exec, attach, port-forward); 0 picks a free
    /// one. Published as the Node's `status.daemonEndpoints.kubeletEndpoint.Port`.
    pub api_port: u16,
    /// The cluster CA (PEM): the agent's API accepts only the API server's client certificate
    /// signed by it. `None` leaves the API off.
    pub ca_cert_pem: Option<String>,
}

impl AgentOptions {
    /// The defaults for a node: a pod range from the server, cluster CIDR 10.42.0.0/16, pods on
    /// bridge `tug0`, lease every 10 s.
    pub fn new(node_name: impl Into<String>, data_dir: impl Into<PathBuf>) -> AgentOptions {
        AgentOptions {
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            containerd_socket: None,
            pod_cidr: None,
            cluster_cidr: network::DEFAULT_CLUSTER_CIDR.into(),
            masquerade_table: network::DEFAULT_MASQUERADE_TABLE.into(),
            route_protocol: routes::DEFAULT_ROUTE_PROTOCOL,
            cni_bridge: "tug0".into(),
            lease_interval: Duration::from_secs(10),
            node_ip: None,
            api_port: DEFAULT_API_PORT,
            ca_cert_pem: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent options: {0}")]
    Invalid(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("managed containerd: {0}")]
    Containerd(#[from] crate::containerd::Error),
    #[error(transparent)]
    Connect(#[from] tug_cri::Error),
    #[error("CRI {what} failed: {}", source.message())]
    Cri {
        what: &'static str,
        #[source]
        source: tug_cri::Status,
    },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the pod watch ended")]
    WatchEnded,
    #[error("pod network: {0}")]
    Network(String),
}

fn options_problem(options: &AgentOptions) -> Option<String> {
    let name = &options.node_name;
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !name_ok {
        Some(format!("node name {name:?} must be 1-63 lower-case letters, digits, '-' or '.'"))
    } else if let Some(pod_cidr) = options.pod_cidr.as_ref().filter(|c| !cni::is_ipv4_cidr(c)) {
        Some(format!("pod CIDR {pod_cidr:?} is not an IPv4 CIDR like 10.42.0.0/24"))
    } else if !cni::is_ipv4_cidr(&options.cluster_cidr) {
        Some(format!("cluster CIDR {:?} is not an IPv4 CIDR like 10.42.0.0/16", options.cluster_cidr))
    } else if !network::is_table_name(&options.masquerade_table) {
        Some(format!("nftables table name {:?} must be a letter then letters, digits or '_'", options.masquerade_table))
    } else if options.cni_bridge.is_empty() || options.cni_bridge.len() > 15 {
        Some(format!("bridge name {:?} must be 1-15 characters (a Linux interface name)", options.cni_bridge))
    } else if options.lease_interval.is_zero() {
        Some("the lease interval must be positive".into())
    } else {
        None
    }
}

/// The node's conflist for `pod_cidr`.
fn node_conflist(options: &AgentOptions, pod_cidr: &str) -> String {
    cni::conflist(&options.cni_bridge, pod_cidr, &options.data_dir.join("cni").join("ipam"))
}

fn remove_file_if_present(path: &std::path::Path) -> Result<(), AgentError> {
    match std::fs::remove_file(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            Err(AgentError::Io { what: "removing", path: path.to_path_buf(), source })
        }
        _ => Ok(()),
    }
}

fn write_file(path: PathBuf, contents: String) -> Result<(), AgentError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| AgentError::Io {
            what: "creating",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&path, contents).map_err(|source| AgentError::Io { what: "writing", path, source })
}

/// Runs the node agent until `shutdown` resolves. A managed containerd is started again
/// whenever it dies meanwhile. Containers keep running after it returns (a managed containerd
/// is stopped, their shims stay); the next run adopts them.
pub async fn run(
    client: kube::Client,
    options: AgentOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    if let Some(problem) = options_problem(&options) {
        return Err(AgentError::Invalid(problem));
    }
    let layout = Layout::new(&options.data_dir);
    let mut supervisor = None;
    // The managed containerd's network is the agent's to write; another runtime's is its own.
    let mut conflist = None;
    let socket = match &options.containerd_socket {
        Some(socket) => socket.clone(),
        None => {
            let path = layout.cni_conf_dir().join(cni::CONFLIST_FILE);
            match &options.pod_cidr {
                // Written before containerd starts, so its CRI reports the network ready at once.
                Some(pod_cidr) => network::write_conflist(&path, &node_conflist(&options, pod_cidr))?,
                // A previous run's range may no longer be the node's: until the Node says, the
                // runtime has no network (and reports so), so no pod gets a stale address.
                None => remove_file_if_present(&path)?,
            }
            conflist = Some(path);
            let containerd = ManagedContainerd::start(&options.data_dir).await?;
            let socket = containerd.socket();
            supervisor = Some(containerd.supervise());
            socket
        }
    };
    let runtime_status = supervisor.as_ref().map(Supervisor::status);
    let result = serve(client, &options, &socket, conflist, runtime_status, shutdown).await;
    // The agent's host networking goes with it (pods of a restarted agent get it back at once).
    if let Err(error) = routes::remove_all(options.route_protocol).await {
        tracing::warn!(%error, "cannot remove the routes to other nodes' pod ranges");
    }
    if let Err(error) = network::remove_masquerade(&options.masquerade_table).await {
        tracing::warn!(%error, "cannot remove the masquerade table");
    }
    if let Some(supervisor) = supervisor {
        // Stopped on purpose: not restarted.
        supervisor.stop().await;
    }
    result
}

/// Everything after the runtime is up: node, lease, runtime health, pod network, pods.
/// `conflist` is where the managed containerd reads its network from; `runtime_status` is its
/// supervisor's.
async fn serve(
    client: kube::Client,
    options: &AgentOptions,
    socket: &std::path::Path,
    conflist: Option<PathBuf>,
    runtime_status: Option<tokio::sync::watch::Receiver<RuntimeStatus>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let mut cri = tug_cri::connect(socket).await?;
    let version = cri
        .runtime
        .version(VersionRequest::default())
        .await
        .map_err(|source| AgentError::Cri { what: "Version", source })?
        .into_inner();
    let images = cri
        .image
        .list_images(ListImagesRequest::default())
        .await
        .map_err(|source| AgentError::Cri { what: "ListImages", source })?
        .into_inner()
        .images
        .into_iter()
        .map(|image| (image.repo_tags.into_iter().chain(image.repo_digests).collect(), image.size))
        .collect();
    let runtime_version = format!("{}://{}", version.runtime_name, version.runtime_version);
    let host = node::HostFacts::read(options.node_ip, &options.data_dir, runtime_version, images);
    let name = options.node_name.clone();
    let (api_server, api_port) = start_api(options, &cri, &host).await?;
    let storage_dir = options.data_dir.join("storage");
    // Registered Ready only if the runtime and its network are (the kubelet's rule).
    let runtime_problem = node::runtime_problem(node::runtime_answer(&cri).await.as_deref());
    let node_uid = node::register(
        &client,
        &name,
        options.pod_cidr.as_deref(),
        &storage_dir,
        &host,
        api_port,
        runtime_problem.as_deref(),
    )
    .await?;
    node::renew_lease(&client, &name, &node_uid).await?;
    tracing::info!(node = %name, ip = %host.ip, runtime = %host.runtime_version, "node registered");

    let lease = {
        let (client, name, interval) = (client.clone(), name.clone(), options.lease_interval);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = node::renew_lease(&client, &name, &node_uid).await {
                    tracing::warn!(node = %name, %error, "lease renewal failed");
                }
            }
        })
    };
    let health =
        tokio::spawn(node::report_runtime(client.clone(), name.clone(), cri.clone(), runtime_status, runtime_problem));
    let mut shutdown = std::pin::pin!(shutdown);
    let network = tokio::select! {
        () = &mut shutdown => None,
        network = start_network(&client, options, conflist.as_deref()) => Some(network),
    };
    let routes = match network {
        Some(Ok(routes)) => routes,
        stopped_or_failed => {
            lease.abort();
            health.abort();
            if let Some(api_server) = api_server {
                api_server.abort();
            }
            return stopped_or_failed.map_or(Ok(()), |failed| failed.map(drop));
        }
    };
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let ctx = Arc::new(pods::Ctx {
        volumes: volumes::Volumes::new(client.clone(), options.data_dir.join("pods"), host.resources()),
        allocatable: host.resources(),
        client,
        cri: Arc::new(cri),
        node: name,
        host_ip: host.ip.to_string(),
        dns: spec::parse_resolv_conf(&resolv),
        pods_dir: options.data_dir.join("pods"),
        syncs: tokio::sync::Semaphore::new(pods::CONCURRENT_SYNCS),
    });
    let volume_cleanup = tokio::spawn(localpv::run(ctx.client.clone(), storage_dir));
    let result = pods::run(ctx, shutdown).await;
    routes.abort();
    volume_cleanup.abort();
    lease.abort();
    health.abort();
    if let Some(api_server) = api_server {
        api_server.abort();
    }
    result
}

/// Waits for the node's pod range (unless given), writes the managed containerd's conflist for
/// it (containerd reloads its CNI conf dir by itself and the node turns Ready), masquerades the
/// cluster's egress, and starts the task keeping routes to the other nodes' ranges.
async fn start_network(
    client: &kube::Client,
    options: &AgentOptions,
    conflist: Option<&std::path::Path>,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let pod_cidr = match &options.pod_cidr {
        Some(pod_cidr) => pod_cidr.clone(),
        None => network::wait_for_pod_cidr(client, &options.node_name).await?,
    };
    network::enable_forwarding()?;
    network::apply_masquerade(&options.masquerade_table, &options.cluster_cidr).await?;
    if let Some(path) = conflist {
        network::write_conflist(path, &node_conflist(options, &pod_cidr))?;
    }
    tracing::info!(node = %options.node_name, %pod_cidr, cluster_cidr = %options.cluster_cidr, "pod network configured");
    Ok(tokio::spawn(routes::run(client.clone(), options.node_name.clone(), options.route_protocol)))
}

/// Binds and spawns the agent's HTTPS API; returns its task and the port to publish (0 when
/// there is no CA to check clients against, so no API).
async fn start_api(
    options: &AgentOptions,
    cri: &tug_cri::Clients,
    host: &node::HostFacts,
) -> Result<(Option<tokio::task::JoinHandle<()>>, u16), AgentError> {
    let Some(ca) = &options.ca_cert_pem else {
        tracing::warn!("no cluster CA given: the agent API (logs, exec, attach, port-forward) is off");
        return Ok((None, 0));
    };
    let tls = api::tls_config(ca, &options.node_name, host.ip)?;
    let listener = api::bind(options.api_port).await?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(options.api_port);
    let state =
        api::AgentApi { cri: cri.clone(), node: options.node_name.clone(), pods_dir: options.data_dir.join("pods") };
    tracing::info!(port, "agent API listening");
    Ok((Some(tokio::spawn(api::serve(listener, tls, state, std::future::pending()))), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let ok = AgentOptions::new("n1", "/tmp/x");
        assert_eq!(options_problem(&ok), None);
        let cases = [
            (AgentOptions { node_name: "Node_1".into(), ..ok.clone() }, "node name"),
            (AgentOptions { pod_cidr: Some("10.42.0.0".into()), ..ok.clone() }, "pod CIDR"),
            (AgentOptions { cluster_cidr: "10.42.0.0/33".into(), ..ok.clone() }, "cluster CIDR"),
            (AgentOptions { masquerade_table: "tug-podnet".into(), ..ok.clone() }, "nftables table"),
            (AgentOptions { cni_bridge: "a-very-long-bridge-name".into(), ..ok.clone() }, "bridge"),
            (AgentOptions { lease_interval: Duration::ZERO, ..ok.clone() }, "lease"),
        ];
        for (options, expected) in cases {
            let problem = options_problem(&options).unwrap_or_default();
            assert!(problem.contains(expected), "{problem:?} should mention {expected:?}");
        }
    }
}
