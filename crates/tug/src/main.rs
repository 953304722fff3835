//! `tug`: one binary for the server, the node agent, hollow nodes and the kubectl-like CLI.
//! Argument parsing and wiring only; the work lives in the library crates.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: after a burst (20,000 ConfigMaps created and deleted) glibc
/// kept the freed heap resident in its arenas; jemalloc's background thread returns dirty pages to
/// the system after its decay time (10 s), busy or idle. See docs/decisions.md, "One store watch".
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "tug", version, about = "Tugboat: a small container orchestrator that speaks the Kubernetes API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: API server, scheduler, controllers and (unless disabled) an agent.
    Server(ServerArgs),
    /// Run a node agent that joins a server and runs pods through containerd.
    Agent(AgentArgs),
    /// Run hollow nodes: real Node objects, leases and pod status, no containers.
    Sim(SimArgs),
    /// Dry-run placement: where the pods of a manifest would land now, and why some cannot. Changes nothing.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Where the server keeps its state, certificates and kubeconfig.
    #[arg(long, default_value = "/var/lib/tugboat")]
    data_dir: PathBuf,
    /// Address to serve the Kubernetes API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: String,
    /// `sqlite` (DATA_DIR/state.db), `sqlite:///path.db`, or `etcd://host:port[,host:port...][/prefix]`.
    #[arg(long, default_value = "sqlite")]
    datastore: String,
    /// Start even though the datastore is not the one this data dir last used (empty, missing,
    /// truncated, or another cluster's), keeping the data dir's CA and tokens; it becomes this
    /// data dir's datastore. Without it such a start is refused, so lost data is never mistaken
    /// for a new cluster.
    #[arg(long)]
    reset_datastore: bool,
    /// Do not run a node agent inside the server.
    #[arg(long)]
    disable_agent: bool,
    /// Name of the server's own node; default: this host's name.
    #[arg(long)]
    node_name: Option<String>,
    /// The cluster's pod network (IPv4): the node IPAM controller gives each node a range of it
    /// (`spec.podCIDR`); agents masquerade only traffic leaving it. Agents that join take the
    /// same value in their --cluster-cidr.
    #[arg(long, default_value = tug_controllers::nodeipam::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
    /// The prefix length of each node's range of the cluster CIDR (24: 256 addresses a node).
    #[arg(long, default_value_t = tug_controllers::nodeipam::DEFAULT_NODE_CIDR_MASK_SIZE)]
    node_cidr_mask_size: u8,
    /// The server's own node's pod address range, instead of one from the node IPAM controller
    /// (which leaves a range outside the cluster CIDR alone).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The Linux bridge the server's own node's pods attach to.
    #[arg(long, default_value = "tug0")]
    cni_bridge: String,
    /// The port of the server's own node's agent API (logs, exec, port-forward; the kubelet's
    /// 10250). 0 picks a free one.
    #[arg(long, default_value_t = tug_agent::agent::DEFAULT_API_PORT)]
    agent_api_port: u16,
    /// How the scheduler scores nodes that fit: spread pods (least allocated) or bin-pack them
    /// (most allocated).
    #[arg(long, default_value = "spread", value_parser = ["spread", "binpack"])]
    scheduler_strategy: String,
    /// Seconds a node's lease may go unrenewed before the node is marked unreachable and tainted.
    #[arg(long, default_value_t = 20)]
    node_grace: u64,
    /// Seconds pods stay on an unreachable or not-ready node before eviction (added to every pod
    /// that does not set its own toleration; Kubernetes' default is 300).
    #[arg(long, default_value_t = 10)]
    default_toleration_seconds: i64,
    /// The range Service cluster IPs come from (IPv4, /8 to /28); the first address is the
    /// `kubernetes` Service's, the tenth kube-dns's.
    #[arg(long, default_value = "10.43.0.0/16", value_parser = tug_apiserver::alloc::ServiceCidr::parse)]
    service_cidr: tug_apiserver::alloc::ServiceCidr,
    /// The range NodePort Services' ports come from, `FIRST-LAST` or `FIRST+COUNT`.
    #[arg(long, default_value = "30000-32767", value_parser = tug_apiserver::alloc::NodePortRange::parse)]
    service_node_port_range: tug_apiserver::alloc::NodePortRange,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// The API server, e.g. https://127.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// The server's node token (DATA/node-token).
    #[arg(long)]
    token_file: PathBuf,
    /// The cluster CA; default: tls/ca.crt beside the token file (the server's data dir).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Where the agent keeps containerd's state, images (`images/*.tar` are imported at start)
    /// and its CNI configuration.
    #[arg(long, default_value = "/var/lib/tugboat-agent")]
    data_dir: PathBuf,
    /// The Node's name; default: this host's name.
    #[arg(long)]
    node_name: Option<String>,
    /// `cri` (containerd); hollow nodes are `tug sim`.
    #[arg(long, default_value = "cri", value_parser = ["cri"])]
    runtime: String,
    /// Use this running CRI runtime instead of starting a containerd of the agent's own.
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
    /// The node's pod address range; default: the range the server's node IPAM controller
    /// writes on the Node (waited for).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The cluster's pod network: the server's --cluster-cidr. Traffic from it to outside it is
    /// masqueraded; pod-to-pod traffic keeps its source address.
    #[arg(long, default_value = tug_agent::agent::network::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
    /// The address other nodes reach this one at (the Node's InternalIP, the gateway of routes
    /// to this node's pods); default: the source address of the default route.
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// The Linux bridge the node's pods attach to.
    #[arg(long, default_value = "tug0")]
    cni_bridge: String,
    /// The port of the agent's API (logs, exec, port-forward for the API server only; the
    /// kubelet's 10250). 0 picks a free one.
    #[arg(long, default_value_t = tug_agent::agent::DEFAULT_API_PORT)]
    api_port: u16,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// The API server, e.g. https://127.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// The server's node token (DATA/node-token).
    #[arg(long)]
    token_file: PathBuf,
    /// The cluster CA; default: tls/ca.crt beside the token file (the server's data dir).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Node names are PREFIX-0, PREFIX-1, ...; run several sims with different prefixes.
    #[arg(long, default_value = "sim")]
    name_prefix: String,
    /// Allocatable CPU per node.
    #[arg(long, default_value = "8")]
    cpu: String,
    /// Allocatable memory per node.
    #[arg(long, default_value = "32Gi")]
    memory: String,
    /// Pods per node.
    #[arg(long, default_value_t = 110)]
    pods: u32,
    /// Spread nodes over this many zones (topology.kubernetes.io/zone=zone-N); 0 for none.
    #[arg(long, default_value_t = 0)]
    zones: usize,
    /// Extra node labels, KEY=VALUE (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Node taints, KEY=VALUE:EFFECT or KEY:EFFECT (repeatable).
    #[arg(long = "taint")]
    taints: Vec<String>,
    /// Milliseconds from a pod's binding to Running and Ready.
    #[arg(long, default_value_t = 1000)]
    ready_delay_ms: u64,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The manifest (YAML, several documents allowed).
    #[arg(short = 'f', long = "filename")]
    file: String,
    /// Default: $KUBECONFIG, then ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The scheduler's scoring strategy to plan with.
    #[arg(long, default_value = "spread", value_parser = ["spread", "binpack"])]
    strategy: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TUG_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            check_server_args(&args);
            server(args)
        }
        Command::Agent(args) => agent(args),
        Command::Sim(args) => sim(args),
        Command::Plan(args) => plan(args),
    }
}

/// Exits with clap's usage error when flags that parse one by one do not fit together.
fn check_server_args(args: &ServerArgs) {
    if let Err(e) = tug_controllers::nodeipam::CidrSet::new(&args.cluster_cidr, args.node_cidr_mask_size) {
        let mut command = <Cli as clap::CommandFactory>::command();
        command.build();
        let mut server = command.find_subcommand_mut("server").cloned().unwrap_or(command);
        server
            .error(clap::error::ErrorKind::ValueValidation, format!("--cluster-cidr/--node-cidr-mask-size: {e}"))
            .exit();
    }
}

/// Exit 0 when every pod can be placed, 1 when some cannot, 2 on bad input or a failed request.
fn plan(args: PlanArgs) -> ExitCode {
    let strategy = if args.strategy == "binpack" {
        tug_scheduler::core::Strategy::BinPack
    } else {
        tug_scheduler::core::Strategy::Spread
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tug plan: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let result = match tug_cli::client(args.kubeconfig.as_deref()).await {
            Ok(client) => tug_cli::plan::run(client, &args.file, strategy).await,
            Err(e) => Err(e),
        };
        match result {
            Ok((report, all_placed)) => {
                print!("{report}");
                if all_placed { ExitCode::SUCCESS } else { ExitCode::from(1) }
            }
            Err(e) => {
                eprintln!("tug plan: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// `key=value:Effect` or `key:Effect`, as `kubectl taint` writes them.
fn parse_taint(text: &str) -> Option<k8s_openapi::api::core::v1::Taint> {
    let (kv, effect) = text.rsplit_once(':')?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return None;
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    (!key.is_empty()).then(|| k8s_openapi::api::core::v1::Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

/// Runs the node agent until SIGTERM/SIGINT; 2 on bad input, 1 when the agent fails.
fn agent(args: AgentArgs) -> ExitCode {
    let node_name = match args.node_name.clone().or_else(host_name) {
        Some(n) => n,
        None => {
            eprintln!("tug agent: cannot tell this host's name; give one with --node-name");
            return ExitCode::from(2);
        }
    };
    let mut options = tug_agent::agent::AgentOptions::new(node_name.clone(), args.data_dir.clone());
    options.containerd_socket = args.containerd_socket.clone();
    options.pod_cidr = args.pod_cidr.clone();
    options.cluster_cidr = args.cluster_cidr.clone();
    options.node_ip = args.node_ip;
    options.cni_bridge = args.cni_bridge.clone();
    options.api_port = args.api_port;
    let join =
        Join { component: "tug agent", server: &args.server, token_file: &args.token_file, ca_file: &args.ca_file };
    let joining = format!("tug agent: node {node_name} joining {}", args.server);
    join.run(|client, ca_file, stop| async move {
        // The client checked the CA; the agent's API verifies the API server's certificate with it.
        options.ca_cert_pem = std::fs::read_to_string(ca_file).ok();
        eprintln!("{joining}");
        tug_agent::agent::run(client, options, stop).await
    })
}

/// How `tug agent` and `tug sim` join a cluster: the server's URL, the node token, and the
/// cluster CA (default: `tls/ca.crt` beside the token, where `tug server` writes both).
struct Join<'a> {
    component: &'static str,
    server: &'a str,
    token_file: &'a std::path::Path,
    ca_file: &'a Option<PathBuf>,
}

impl Join<'_> {
    /// Runs `work` with a client of the cluster until SIGTERM/SIGINT: 2 when the token or CA
    /// cannot be used, 1 when `work` fails.
    fn run<F, Fut, E>(&self, work: F) -> ExitCode
    where
        F: FnOnce(kube::Client, PathBuf, std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let component = self.component;
        let ca_file = self
            .ca_file
            .clone()
            .unwrap_or_else(|| self.token_file.parent().unwrap_or(std::path::Path::new(".")).join("tls/ca.crt"));
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("{component}: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        runtime.block_on(async {
            let stop = Box::pin(stop_signal());
            let client = match tug_leader::join::client_from_token(self.server, self.token_file, &ca_file) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{component}: {e}");
                    return ExitCode::from(2);
                }
            };
            match work(client, ca_file, stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{component}: {e}");
                    ExitCode::FAILURE
                }
            }
        })
    }
}

/// The options of the agent inside `tug server`: the server's data dir holds its containerd,
/// pods and `images/` (OCI archives imported at start), so the server's data dir is the one
/// place a single-node cluster keeps everything. `None` (with a message) when this host has no
/// usable name.
fn local_agent_options(args: &ServerArgs) -> Option<tug_agent::agent::AgentOptions> {
    let Some(node_name) = args.node_name.clone().or_else(host_name) else {
        eprintln!("tug server: cannot tell this host's name for its node; give one with --node-name");
        return None;
    };
    let mut options = tug_agent::agent::AgentOptions::new(node_name, args.data_dir.clone());
    options.pod_cidr = args.pod_cidr.clone();
    options.cluster_cidr = args.cluster_cidr.clone();
    options.cni_bridge = args.cni_bridge.clone();
    options.api_port = args.agent_api_port;
    Some(options)
}

/// This host's name, as the Node of its agent is called by default.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_lowercase()).filter(|h| !h.is_empty())
}

fn sim(args: SimArgs) -> ExitCode {
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.labels {
        match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_string(), v.to_string());
            }
            _ => {
                eprintln!("tug sim: --label {l:?} is not KEY=VALUE");
                return ExitCode::from(2);
            }
        }
    }
    let mut taints = Vec::new();
    for t in &args.taints {
        match parse_taint(t) {
            Some(taint) => taints.push(taint),
            None => {
                eprintln!(
                    "tug sim: --taint {t:?} is not KEY=VALUE:EFFECT (EFFECT is NoSchedule, PreferNoSchedule or NoExecute)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let options = tug_sim::SimOptions {
        nodes: args.nodes,
        name_prefix: args.name_prefix.clone(),
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        pods: args.pods,
        labels,
        taints,
        zones: args.zones,
        ready_delay: std::time::Duration::from_millis(args.ready_delay_ms),
        ..Default::default()
    };
    let join =
        Join { component: "tug sim", server: &args.server, token_file: &args.token_file, ca_file: &args.ca_file };
    let running =
        format!("tug sim: running {} hollow nodes named {}-N against {}", args.nodes, args.name_prefix, args.server);
    join.run(|client, _, stop| async move {
        eprintln!("{running}");
        tug_sim::run(client, options, stop).await
    })
}

fn server(args: ServerArgs) -> ExitCode {
    let datastore = match tug_store::Datastore::parse(&args.datastore, &args.data_dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tug server: --datastore: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tug server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = match args.listen.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("tug server: --listen {:?} is not an address like 127.0.0.1:6443", args.listen);
            return ExitCode::from(2);
        }
    };
    let config = tug_apiserver::server::ServerConfig {
        data_dir: args.data_dir.clone(),
        listen,
        datastore,
        compaction: tug_store::CompactionPolicy::default(),
        admission: tug_apiserver::Admission { default_toleration_seconds: args.default_toleration_seconds },
        service_ranges: tug_apiserver::alloc::ServiceRanges {
            cidr: args.service_cidr,
            node_ports: args.service_node_port_range,
        },
    };
    runtime.block_on(async {
        // Listen for SIGTERM/SIGINT before anything else, so a stop during start-up is a clean one.
        let stop = stop_signal();
        if let Err(e) = check_datastore(&args, &config.datastore).await {
            eprintln!("tug server: {e}");
            return ExitCode::FAILURE;
        }
        let server = match tug_apiserver::server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tug server: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "tug server: serving the Kubernetes API on {} (kubeconfig: {}, node token: {})",
            server.url,
            server.kubeconfig.display(),
            args.data_dir.join("node-token").display()
        );
        let local_node = if args.disable_agent { None } else { local_agent_options(&args) };
        // The scheduler is an API client like any other, over the in-process service.
        let (stop_components, components_stopped) = tokio::sync::watch::channel(false);
        let scheduler = {
            let client = kube::Client::new(server.local_service(), "default");
            let options = tug_scheduler::SchedulerOptions {
                strategy: if args.scheduler_strategy == "binpack" {
                    tug_scheduler::core::Strategy::BinPack
                } else {
                    tug_scheduler::core::Strategy::Spread
                },
                ..Default::default()
            };
            let mut stopped = components_stopped.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = tug_scheduler::run(client, options, shutdown).await {
                    tracing::error!(error = %e, "the scheduler stopped");
                }
            })
        };
        let controllers = {
            let client = kube::Client::new(server.local_service(), "default");
            let options = tug_controllers::ControllerOptions {
                node_grace: std::time::Duration::from_secs(args.node_grace),
                cluster_cidr: args.cluster_cidr.clone(),
                node_cidr_mask_size: args.node_cidr_mask_size,
                ..Default::default()
            };
            let mut stopped = components_stopped.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                tug_controllers::run(client, options, shutdown).await;
            })
        };
        let agent = local_node.map(|mut options| {
            options.ca_cert_pem = Some(server.pki.ca_cert_pem.clone());
            let client = kube::Client::new(server.local_service(), "default");
            let mut stopped = components_stopped.clone();
            eprintln!("tug server: running this host's pods as node {}", options.node_name);
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                // The control plane keeps serving without its node: other nodes may join.
                if let Err(e) = tug_agent::agent::run(client, options, shutdown).await {
                    eprintln!(
                        "tug server: the local node agent stopped: {e}. The control plane keeps running; \
                         fix the cause (is containerd installed? scripts/up.sh installs it) and restart, \
                         or pass --disable-agent to run the control plane only."
                    );
                }
            })
        });
        stop.await;
        eprintln!("tug server: stopping");
        let _ = stop_components.send(true);
        let _ = scheduler.await;
        let _ = controllers.await;
        if let Some(agent) = agent {
            let _ = agent.await;
        }
        server.stop().await;
        ExitCode::SUCCESS
    })
}

/// Refuses a datastore that is not the one this data dir last used (see `tug_store::identity`):
/// a truncated or missing state.db, an emptied etcd prefix, another cluster's store.
async fn check_datastore(args: &ServerArgs, datastore: &tug_store::Datastore) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create the data dir {}: {e}", args.data_dir.display()))?;
    // What only a cluster that has run leaves in its data dir (tug-apiserver's pki).
    let credentials = ["tls/ca.key", "tls/ca.crt", "tokens/admin", "node-token"];
    let dir = tug_store::identity::DataDir {
        path: args.data_dir.clone(),
        credentials: credentials.iter().map(|c| args.data_dir.join(c)).collect(),
    };
    use tug_store::identity::Verified;
    match tug_store::identity::check_data_dir(datastore, &dir, args.reset_datastore).await.map_err(|e| e.to_string())? {
        Verified::Created { id } => tracing::info!(%id, "new datastore recorded in the data dir"),
        Verified::Matched { id } => tracing::debug!(%id, "the datastore is the data dir's own"),
        Verified::Recorded { id } => tracing::info!(%id, "datastore identity recorded"),
        Verified::Reset { id, previous } => eprintln!(
            "tug server: --reset-datastore: the data dir now belongs to datastore {id} (was {}); \
             whatever the previous datastore held is not in it",
            previous.as_deref().unwrap_or("unrecorded")
        ),
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            return std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
