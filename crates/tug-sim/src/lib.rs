//! Hollow nodes (`tug sim`), like kubemark: Node objects that register, keep their Lease in
//! `kube-node-lease` fresh and run the pods bound to them, with no containers behind. To the
//! API they look like real agents, so the scheduler, controllers and capacity plans can be
//! exercised with thousands of nodes on one machine.
//!
//! One process carries many nodes: registration runs concurrently, every write (node, lease,
//! pod status, pod delete) shares one bounded pool of in-flight requests, lease renewals are
//! spread evenly over the renewal interval, and ONE pod watch serves all nodes (a field
//! selector can name only one node, so bound pods are watched and filtered by our node set).
//!
//! Several sims can run side by side with different name prefixes; stopping one leaves its
//! nodes as a dead host would: their leases stop advancing.

mod addressing;
mod nodes;
mod objects;
mod pods;
mod tracker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, ListParams};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use addressing::{assign_networks, parse_cidr24};
use objects::{HollowNode, node_name, options_problem};

pub use objects::KUBELET_VERSION;

/// What the hollow nodes of one sim look like and how fast they act.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// How many nodes.
    pub nodes: usize,
    /// Nodes are named `<name_prefix>-<i>`.
    pub name_prefix: String,
    /// CPU capacity of each node, a quantity ("8").
    pub cpu: String,
    /// Memory capacity of each node, a quantity ("32Gi").
    pub memory: String,
    /// Pod capacity of each node (at most 253: one /24 of pod IPs per node).
    pub pods: u32,
    /// Labels added to every node (on top of the kubelet's own).
    pub labels: BTreeMap<String, String>,
    /// Taints every node registers with.
    pub taints: Vec<Taint>,
    /// When non-zero, node i gets `topology.kubernetes.io/zone=zone-<i % zones>`.
    pub zones: usize,
    /// How long after a pod is bound it becomes Running and Ready.
    pub ready_delay: Duration,
    /// How long after a pod's deletion starts it is finished (deleted for good).
    pub delete_delay: Duration,
    /// How often each node renews its lease.
    pub lease_interval: Duration,
    /// Silences the nodes for a while (tests of a node that goes NotReady and comes back).
    pub pause: Pause,
}

/// A switch that silences a sim's nodes, as hosts cut off from the API server for a while:
/// paused, they write nothing (lease renewals, node and pod status, deletions) — what they
/// would write waits — while still watching; resumed, they carry on, their waiting writes first.
/// Clones share the switch. A sim nobody pauses only ever reads the flag.
#[derive(Debug, Clone)]
pub struct Pause(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Pause {
    fn default() -> Self {
        Pause(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Pause {
    /// Stops every write of the sim's nodes until [`Pause::resume`].
    pub fn pause(&self) {
        self.0.send_replace(true);
    }

    pub fn resume(&self) {
        self.0.send_replace(false);
    }

    /// Returns once the nodes may write.
    async fn resumed(&self) {
        if *self.0.borrow() {
            let _ = self.0.subscribe().wait_for(|paused| !paused).await;
        }
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 1,
            name_prefix: "sim".into(),
            cpu: "8".into(),
            memory: "32Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            zones: 0,
            ready_delay: Duration::from_secs(1),
            delete_delay: Duration::from_millis(500),
            lease_interval: Duration::from_secs(10),
            pause: Pause::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid sim options: {0}")]
    Options(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("no pod ranges left: every /24 of 10.0.0.0/8 (but 10.43.0.0/16) is in use")]
    AddressesExhausted,
    #[error("a sim task failed: {0}")]
    Task(String),
    #[error("the pod watch ended")]
    WatchEnded,
}

/// At most this many writes are in flight at once, over all nodes of a sim.
const MAX_IN_FLIGHT: usize = 32;

/// What every task of one sim shares.
struct Shared {
    client: kube::Client,
    options: SimOptions,
    /// Bounds concurrent writes of pod and node status.
    writes: Semaphore,
    /// Lease renewals have a pool of their own: on a real cluster every kubelet renews its lease
    /// independently of the pod updates it is busy with, so a backlog of pod writes must not
    /// make live nodes look dead.
    heartbeats: Semaphore,
    /// When the sim started (boot time of its nodes).
    started: jiff::Timestamp,
}

/// Registers the nodes, keeps them alive and runs their pods until `shutdown` resolves; then
/// stops renewing (the nodes are left as they are, like a dead host).
pub async fn run(
    client: kube::Client,
    options: SimOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SimError> {
    if let Some(problem) = options_problem(&options) {
        return Err(SimError::Options(problem));
    }
    let (hollow, existing) = plan_nodes(&client, &options).await?;
    let shared = Arc::new(Shared {
        client,
        options,
        writes: Semaphore::new(MAX_IN_FLIGHT),
        heartbeats: Semaphore::new(MAX_IN_FLIGHT),
        started: jiff::Timestamp::now(),
    });
    tracing::info!(nodes = hollow.len(), prefix = %shared.options.name_prefix, "hollow nodes starting");

    let progress = Arc::new(nodes::Progress::new(hollow.len()));
    let mut node_tasks = JoinSet::new();
    for node in &hollow {
        let spread = shared.options.lease_interval.mul_f64(node.index as f64 / hollow.len() as f64);
        let known = existing.get(&node.name).cloned();
        node_tasks.spawn(nodes::run_node(shared.clone(), node.clone(), known, spread, progress.clone()));
    }
    let mut pod_loop = pods::PodLoop::new(shared.clone(), hollow);
    let events = pods::watch_bound_pods(&shared.client);
    tokio::pin!(events, shutdown);
    let result = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            Some(done) = node_tasks.join_next() => match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break Err(e),
                Err(e) => break Err(SimError::Task(e.to_string())),
            },
            event = futures::StreamExt::next(&mut events) => match event {
                Some(Ok(event)) => pod_loop.handle(event),
                // The watcher backs off and resumes by itself; it only reports.
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; resuming"),
                None => break Err(SimError::WatchEnded),
            },
            Some(outcome) = pod_loop.next_outcome() => pod_loop.finished(outcome),
        }
    };
    // Dropping the task sets aborts every renewal and pending pod write.
    node_tasks.abort_all();
    pod_loop.stop();
    tracing::info!(prefix = %shared.options.name_prefix, "hollow nodes stopped");
    result
}

/// A node of ours that exists already: whether its pod range is one we can use.
#[derive(Debug, Clone)]
struct ExistingNode {
    has_usable_cidr: bool,
}

/// Names and pod networks for this sim's nodes: existing nodes of ours keep their /24, new
/// ones take /24s no other node uses.
async fn plan_nodes(
    client: &kube::Client,
    options: &SimOptions,
) -> Result<(Vec<HollowNode>, BTreeMap<String, ExistingNode>), SimError> {
    let names: Vec<String> = (0..options.nodes).map(|i| node_name(&options.name_prefix, i)).collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let listed = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|source| SimError::Api { what: "listing nodes".into(), source })?;
    let mut ours = BTreeMap::new();
    let mut existing = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for node in listed.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(parse_cidr24);
        match (index.get(name.as_str()), cidr) {
            (Some(&i), cidr) => {
                if let Some(cidr) = cidr {
                    ours.insert(i, cidr);
                }
                existing.insert(name, ExistingNode { has_usable_cidr: cidr.is_some() });
            }
            (None, Some(cidr)) => {
                taken.insert(cidr);
            }
            (None, None) => {}
        }
    }
    let networks = assign_networks(names.len(), &ours, &taken).ok_or(SimError::AddressesExhausted)?;
    let hollow = names
        .into_iter()
        .zip(networks)
        .enumerate()
        .map(|(index, (name, pod_network))| HollowNode { index, name, pod_network })
        .collect();
    Ok((hollow, existing))
}

/// Whether a failed write is worth repeating: the server or the connection had a moment, as
/// opposed to the request being wrong.
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => true,
        _ => false,
    }
}

/// The HTTP code of an API error.
fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// How many times a write is tried before it is given up (or, at registration, fatal).
const ATTEMPTS: u32 = 8;

/// Runs a write with a permit from the shared pool, repeating transient failures with backoff.
async fn write<T, F, Fut>(shared: &Shared, op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    write_with(shared, &shared.writes, op).await
}

/// A lease renewal: like [`write`], from the heartbeat pool.
async fn heartbeat<T, F, Fut>(shared: &Shared, op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    write_with(shared, &shared.heartbeats, op).await
}

async fn write_with<T, F, Fut>(shared: &Shared, pool: &Semaphore, mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        shared.options.pause.resumed().await;
        let result = {
            // A closed semaphore never happens (it lives as long as the sim); go on unbounded.
            let _permit = pool.acquire().await.ok();
            op().await
        };
        match result {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            serde_json::from_value(
                serde_json::json!({"status": "Failure", "message": "m", "reason": "r", "code": code}),
            )
            .expect("status"),
        )
    }

    #[test]
    fn transient_failures_are_retried_and_mistakes_are_not() {
        for (code, transient) in
            [(409, false), (429, true), (503, true), (500, true), (400, false), (404, false), (422, false)]
        {
            assert_eq!(is_transient(&api_error(code)), transient, "{code}");
        }
        assert_eq!(api_code(&api_error(404)), Some(404));
    }
}
