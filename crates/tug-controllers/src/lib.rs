//! The controllers that turn desired state into running pods and keep it so, as
//! kube-controller-manager does: each is a pure "observed → actions" core plus the loop around
//! it, an API client like any other.
//!
//! - [`runtime`] — shared indexed informers (one watch per kind for all controllers), the work
//!   queue, expectations.
//! - [`pods`] — what every workload controller needs to know about pods (readiness,
//!   availability, ownership, templates, deletion order); [`claim`] — adoption and release.
//! - [`replicaset`], [`deployment`] — replicas, rolling updates, rollbacks.
//! - [`daemonset`], [`statefulset`] — one pod per node; ordered, stable pods with claims.
//! - [`job`], [`cronjob`] (schedules parsed by `tug_k8s::cron`) — batch work.
//! - [`gc`] — garbage collection through ownerReferences; [`nodelifecycle`] — silent nodes
//!   tainted and their pods evicted; [`nodeipam`] — each node's pod range (`spec.podCIDR`) carved
//!   out of the cluster CIDR.
//! - [`disruption`] — PodDisruptionBudget status, which evictions (`kubectl drain`) obey.
//! - [`localpath`] — PersistentVolumes on the nodes' own disks for claims of the `local-path` class;
//!   [`protection`] — a claim in use is not deleted before its pods are gone.
//! - [`endpointslice`] — the EndpointSlices and the legacy Endpoints of every Service with a
//!   selector.
//! - [`events`] — Events about what the controllers did.

pub mod claim;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpointslice;
pub mod events;
pub mod gc;
pub mod job;
pub mod localpath;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod pods;
pub mod protection;
pub mod replicaset;
pub mod runtime;
pub mod statefulset;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::runtime::Informer;

/// "Now", injectable so tests can move time (a CronJob firing) without waiting.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// How the controllers are configured.
#[derive(Clone)]
pub struct ControllerOptions {
    /// How long a node's Lease may go unrenewed before the node is `Ready=Unknown` and tainted.
    pub node_grace: Duration,
    /// Workers per controller.
    pub workers: usize,
    /// This process's name in the Lease (unique per process).
    pub identity: String,
    pub lease_namespace: String,
    pub lease_name: String,
    pub clock: Clock,
    /// The pod network, carved into per-node ranges (`--cluster-cidr`, `10.42.0.0/16`).
    pub cluster_cidr: String,
    /// The prefix length of each node's range (`--node-cidr-mask-size`, 24).
    pub node_cidr_mask_size: u8,
}

impl std::fmt::Debug for ControllerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerOptions")
            .field("node_grace", &self.node_grace)
            .field("workers", &self.workers)
            .field("identity", &self.identity)
            .field("cluster_cidr", &self.cluster_cidr)
            .field("node_cidr_mask_size", &self.node_cidr_mask_size)
            .finish()
    }
}

impl Default for ControllerOptions {
    fn default() -> ControllerOptions {
        ControllerOptions {
            node_grace: Duration::from_secs(20),
            workers: 4,
            identity: tug_leader::default_identity(),
            lease_namespace: "kube-system".into(),
            lease_name: "tug-controller-manager".into(),
            clock: system_clock(),
            cluster_cidr: nodeipam::DEFAULT_CLUSTER_CIDR.into(),
            node_cidr_mask_size: nodeipam::DEFAULT_NODE_CIDR_MASK_SIZE,
        }
    }
}

/// Runs the controllers while this process holds the controller Lease, until `shutdown`.
/// Losing the lease stops them at once (another server's controllers take over); regaining it
/// starts them afresh from new lists, as kube-controller-manager restarts.
pub async fn run(client: kube::Client, options: ControllerOptions, shutdown: impl Future<Output = ()>) {
    let (leading_tx, mut leading) = watch::channel(false);
    let elector =
        tug_leader::Elector::new(client.clone(), &options.lease_namespace, &options.lease_name, &options.identity);
    let campaign = tokio::spawn(elector.campaign(leading_tx));
    let work = async {
        loop {
            if leading.wait_for(|l| *l).await.is_err() {
                return;
            }
            tracing::info!(identity = %options.identity, "running the controllers");
            let controllers = run_controllers(client.clone(), options.clone());
            tokio::select! {
                () = controllers => return,
                _ = leading.wait_for(|l| !*l) => tracing::warn!("lost the controller lease; controllers stopped"),
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
    campaign.abort();
    tug_leader::Elector::new(client, &options.lease_namespace, &options.lease_name, &options.identity).release().await;
}

/// Every controller over shared informers: one watch per kind.
async fn run_controllers(client: kube::Client, options: ControllerOptions) {
    let mut pods = Informer::<Pod>::new(Api::all(client.clone()));
    let mut replicasets = Informer::<ReplicaSet>::new(Api::all(client.clone()));
    let mut deployments = Informer::<Deployment>::new(Api::all(client.clone()));
    let mut statefulsets = Informer::<StatefulSet>::new(Api::all(client.clone()));
    let mut daemonsets = Informer::<DaemonSet>::new(Api::all(client.clone()));
    let mut jobs = Informer::<Job>::new(Api::all(client.clone()));
    let mut cronjobs = Informer::<CronJob>::new(Api::all(client.clone()));
    let mut claims = Informer::<PersistentVolumeClaim>::new(Api::all(client.clone()));
    let mut nodes = Informer::<Node>::new(Api::all(client.clone()));
    let mut leases = Informer::<Lease>::new(Api::namespaced(client.clone(), "kube-node-lease"));
    let mut budgets = Informer::<PodDisruptionBudget>::new(Api::all(client.clone()));
    let mut volumes = Informer::<PersistentVolume>::new(Api::all(client.clone()));
    let mut classes = Informer::<StorageClass>::new(Api::all(client.clone()));
    let mut services = Informer::<Service>::new(Api::all(client.clone()));
    let mut slices = Informer::<EndpointSlice>::new(Api::all(client.clone()));
    let mut endpoints = Informer::<Endpoints>::new(Api::all(client.clone()));

    let replicaset = replicaset::Controller::new(client.clone(), &mut replicasets, &mut pods);
    let deployment = deployment::Controller::new(client.clone(), &mut deployments, &mut replicasets, &mut pods);
    let statefulset = statefulset::Controller::new(client.clone(), &mut statefulsets, &mut pods, &mut claims);
    let daemonset = daemonset::Controller::new(client.clone(), &mut daemonsets, &mut nodes, &mut pods);
    let job = job::Controller::new(client.clone(), &mut jobs, &mut pods);
    let cronjob = cronjob::Controller::new(client.clone(), options.clock.clone(), &mut cronjobs, &mut jobs);
    let nodelifecycle =
        nodelifecycle::Controller::new(client.clone(), options.node_grace, &mut nodes, &mut leases, &mut pods);
    let disruption =
        disruption::Controller::new(client.clone(), &mut budgets, &mut pods, &replicasets, &deployments, &statefulsets);
    let localpath = localpath::Controller::new(client.clone(), &mut claims, &mut volumes, &mut classes, &nodes);
    let protection = protection::Controller::new(client.clone(), &mut claims, &mut pods);
    let endpointslice =
        endpointslice::Controller::new(client.clone(), &mut services, &mut pods, &mut slices, &mut endpoints, &nodes);
    // Options are checked by `tug server` at start ([`nodeipam::CidrSet::new`]); a bad pair
    // that got here leaves nodes without ranges rather than stopping every controller.
    let nodeipam = match nodeipam::CidrSet::new(&options.cluster_cidr, options.node_cidr_mask_size) {
        Ok(ranges) => Some(nodeipam::Controller::new(client.clone(), ranges, &mut nodes)),
        Err(e) => {
            tracing::error!(error = %e, "node IPAM is off: nodes get no pod range");
            None
        }
    };
    let mut collector = gc::Builder::new(client.clone());
    collector.watch(&mut pods, true);
    collector.watch(&mut replicasets, true);
    collector.watch(&mut deployments, true);
    collector.watch(&mut statefulsets, true);
    collector.watch(&mut daemonsets, true);
    collector.watch(&mut jobs, true);
    collector.watch(&mut cronjobs, true);
    collector.watch(&mut claims, true);
    // A Service owns its EndpointSlices.
    collector.watch(&mut services, true);
    collector.watch(&mut slices, true);
    let collector = collector.build();

    let workers = options.workers;
    let mut tasks = JoinSet::new();
    tasks.spawn(pods.run());
    tasks.spawn(replicasets.run());
    tasks.spawn(deployments.run());
    tasks.spawn(statefulsets.run());
    tasks.spawn(daemonsets.run());
    tasks.spawn(jobs.run());
    tasks.spawn(cronjobs.run());
    tasks.spawn(claims.run());
    tasks.spawn(nodes.run());
    tasks.spawn(leases.run());
    tasks.spawn(budgets.run());
    tasks.spawn(volumes.run());
    tasks.spawn(classes.run());
    tasks.spawn(services.run());
    tasks.spawn(slices.run());
    tasks.spawn(endpoints.run());
    tasks.spawn(replicaset.run(workers));
    tasks.spawn(deployment.run(workers));
    tasks.spawn(statefulset.run(workers));
    tasks.spawn(daemonset.run(workers));
    tasks.spawn(job.run(workers));
    tasks.spawn(cronjob.run(workers));
    tasks.spawn(nodelifecycle.run(workers));
    tasks.spawn(disruption.run(workers));
    tasks.spawn(localpath.run(workers));
    tasks.spawn(protection.run(workers));
    tasks.spawn(endpointslice.run(workers));
    if let Some(nodeipam) = nodeipam {
        tasks.spawn(nodeipam.run(workers));
    }
    tasks.spawn(collector.run(workers));
    // The tasks run until this future is dropped (shutdown or lost leadership): JoinSet aborts them.
    while tasks.join_next().await.is_some() {}
}
