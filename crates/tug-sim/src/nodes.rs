//! One hollow node's life: register (Node + Lease), then renew the lease every interval and
//! re-post the node status every few minutes, as a kubelet with node leases does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tug_k8s::node::{LEASE_NAMESPACE, lease_object, lease_spec};

use super::objects::{HollowNode, boot_id, existing_node_patch, node_object, node_status};
use super::{ExistingNode, Shared, SimError, api_code, heartbeat, write};

/// How often a node re-posts its status although nothing changed (the kubelet's
/// `nodeStatusReportFrequency`); liveness itself is the lease.
const STATUS_REPORT_EVERY: Duration = Duration::from_secs(300);

/// Counts registered nodes and logs when all are in.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    registered: AtomicUsize,
    since: tokio::time::Instant,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress { total, registered: AtomicUsize::new(0), since: tokio::time::Instant::now() }
    }

    fn one_more(&self) {
        if self.registered.fetch_add(1, Ordering::Relaxed) + 1 == self.total {
            let seconds = self.since.elapsed().as_secs_f64();
            tracing::info!(nodes = self.total, seconds, "all hollow nodes registered");
        }
    }
}

/// Registers `node`, then keeps it alive until aborted. Fails only when registration does.
pub async fn run_node(
    shared: Arc<Shared>,
    node: HollowNode,
    existing: Option<ExistingNode>,
    spread: Duration,
    progress: Arc<Progress>,
) -> Result<(), SimError> {
    let boot = boot_id(&node.name, shared.started);
    let uid = register(&shared, &node, existing.as_ref(), &boot).await?;
    progress.one_more();
    // Node i renews at i/N of the interval, so N nodes make a steady stream, not a burst.
    let start = tokio::time::Instant::now() + spread;
    let mut ticks = tokio::time::interval_at(start, shared.options.lease_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_status = Duration::ZERO;
    loop {
        ticks.tick().await;
        if let Err(e) = renew_lease(&shared, &node.name, uid.as_deref()).await {
            tracing::warn!(node = %node.name, error = %e, "lease renewal failed");
        }
        since_status += shared.options.lease_interval;
        if since_status >= STATUS_REPORT_EVERY {
            since_status = Duration::ZERO;
            let status = node_status(&shared.options, &node, &boot, Timestamp::now(), false);
            if let Err(e) = patch_node_status(&shared, &node.name, status).await {
                tracing::warn!(node = %node.name, error = %e, "node status report failed");
            }
        }
    }
}

/// Creates the node (or brings an existing one of ours up to date) and its lease. Returns the
/// node's uid, which the lease names as its owner.
async fn register(
    shared: &Shared,
    node: &HollowNode,
    existing: Option<&ExistingNode>,
    boot: &str,
) -> Result<Option<String>, SimError> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let failed = |what: &str| {
        let what = format!("{what} node {}", node.name);
        move |source| SimError::Api { what, source }
    };
    let (post, params) = (PostParams::default(), PatchParams::default());
    let now = Timestamp::now();
    let object: Node = serde_json::from_value(node_object(&shared.options, node, boot, now))
        .map_err(|e| SimError::Task(format!("building node {}: {e}", node.name)))?;
    let created = match existing {
        Some(_) => None,
        None => match write(shared, || nodes.create(&post, &object)).await {
            Ok(created) => Some(created),
            // Someone registered it meanwhile (an earlier run of this sim): update it instead.
            Err(e) if api_code(&e) == Some(409) => None,
            Err(e) => return Err(failed("registering")(e)),
        },
    };
    let created = match created {
        Some(created) => created,
        None => {
            let set_cidr = existing.is_none_or(|n| !n.has_usable_cidr);
            let patch = Patch::Merge(existing_node_patch(&shared.options, node, set_cidr));
            write(shared, || nodes.patch(&node.name, &params, &patch)).await.map_err(failed("updating"))?
        }
    };
    // A fresh registration carries its status; a taken-over node (or a server that drops status
    // on create) gets it written through the status subresource.
    let has_conditions = created.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| !c.is_empty());
    if existing.is_some() || !has_conditions {
        let status = node_status(&shared.options, node, boot, now, true);
        patch_node_status(shared, &node.name, status).await.map_err(failed("posting the status of"))?;
    }
    let uid = created.metadata.uid;
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let lease: Lease = serde_json::from_value(lease_object(&node.name, uid.as_deref(), now))
        .map_err(|e| SimError::Task(format!("building the lease of {}: {e}", node.name)))?;
    match write(shared, || leases.create(&post, &lease)).await {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(409) => {
            renew_lease(shared, &node.name, uid.as_deref()).await.map_err(failed("renewing the lease of"))?
        }
        Err(e) => return Err(failed("creating the lease of")(e)),
    }
    Ok(uid)
}

/// Writes node status through the status subresource (conditions merge by type).
async fn patch_node_status(shared: &Shared, name: &str, status: Value) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let (params, patch) = (PatchParams::default(), Patch::Strategic(json!({"status": status})));
    write(shared, || nodes.patch_status(name, &params, &patch)).await.map(drop)
}

/// Moves the lease's renewTime to now; recreates the lease if someone deleted it.
async fn renew_lease(shared: &Shared, name: &str, node_uid: Option<&str>) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let now = Timestamp::now();
    let (params, patch) = (PatchParams::default(), Patch::Merge(json!({"spec": lease_spec(name, now)})));
    match heartbeat(shared, || leases.patch(name, &params, &patch)).await {
        Err(e) if api_code(&e) == Some(404) => {
            let lease: Lease =
                serde_json::from_value(lease_object(name, node_uid, now)).map_err(kube::Error::SerdeError)?;
            let post = PostParams::default();
            heartbeat(shared, || leases.create(&post, &lease)).await.map(drop)
        }
        other => other.map(drop),
    }
}
