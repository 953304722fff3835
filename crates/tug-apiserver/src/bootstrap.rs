//! Objects every cluster has from its first start, and namespace deletion.
//!
//! - The namespaces `default`, `kube-system`, `kube-public`, `kube-node-lease`, and the
//!   `kubernetes` Service in `default` pointing at this server (as the Kubernetes apiserver
//!   creates them), and the default StorageClass `local-path` (volumes on the node's own disk,
//!   provisioned by `tug-controllers`' local-path provisioner once a pod is scheduled).
//! - Namespace deletion: a deleted Namespace is marked Terminating; the finalizer here deletes
//!   everything in it, then removes the `kubernetes` finalizer and the Namespace itself
//!   (Kubernetes' namespace controller does this from the controller manager; here it lives with
//!   the API server because it is part of the API's own lifecycle and needs no other component).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tug_core::registry::{self, RESOURCES};

use crate::cache::EventType;
use crate::request::{Query, ResourceRequest};
use crate::{Api, Reply, object};

pub const DEFAULT_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Namespaces that may not be deleted (Kubernetes' NamespaceLifecycle admission): the
/// scheduler's and controllers' Leases live in `kube-system`. `kube-node-lease` may be deleted,
/// as in Kubernetes, and is created again once it is gone (kube-apiserver's system namespaces
/// controller does that too), so nodes can renew their Leases.
pub const UNDELETABLE_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

fn request(api_version: &str, kind: &str, namespace: Option<&str>, name: Option<&str>) -> ResourceRequest {
    ResourceRequest {
        rt: registry::by_kind(api_version, kind).expect("registered kind"),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: None,
        watch_path: false,
    }
}

/// Creates the default namespaces and the `kubernetes` Service when missing.
pub async fn ensure_defaults(api: &Arc<Api>, addr: SocketAddr) {
    let q = Query::default();
    for ns in DEFAULT_NAMESPACES {
        ensure_namespace(api, ns).await;
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]},
    });
    match api.create(&request("v1", "Service", Some("default"), None), &q, svc, &mut Reply::default()).await {
        Ok(_) | Err(_) => {}
    }
    let class = default_storage_class();
    match api.create(&request("storage.k8s.io/v1", "StorageClass", None, None), &q, class, &mut Reply::default()).await
    {
        Ok(_) => tracing::info!(name = DEFAULT_STORAGE_CLASS, "created the default storage class"),
        Err(e) if e.code == 409 => {}
        Err(e) => tracing::warn!(name = DEFAULT_STORAGE_CLASS, error = %e, "cannot create the default storage class"),
    }
    // Admission reads the watch cache (the default class for claims, namespaces): serve only
    // once it holds what was just written, or the first claim may miss its default class.
    if let Err(e) = api.cache.sync().await {
        tracing::warn!(error = %e, "the watch cache is behind the bootstrap objects");
    }
}

/// Creates one of the [`DEFAULT_NAMESPACES`] unless it exists.
async fn ensure_namespace(api: &Arc<Api>, ns: &str) {
    let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    match api.create(&request("v1", "Namespace", None, None), &Query::default(), obj, &mut Reply::default()).await {
        Ok(_) => tracing::info!(namespace = ns, "created default namespace"),
        Err(e) if e.code == 409 => {}
        Err(e) => tracing::warn!(namespace = ns, error = %e, "cannot create default namespace"),
    }
}

/// The StorageClass every cluster starts with, as k3s ships `local-path`.
pub const DEFAULT_STORAGE_CLASS: &str = "local-path";
/// The provisioner of [`DEFAULT_STORAGE_CLASS`] (`tug-controllers`' `localpath`).
pub const LOCAL_PATH_PROVISIONER: &str = "tugboat.dev/local-path";

/// Local volumes live on one node, so the class waits for the scheduler to pick it
/// (WaitForFirstConsumer); claims without a class get it (DefaultStorageClass admission).
fn default_storage_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    })
}

/// Starts the task that finishes deleting Terminating namespaces.
pub fn spawn_namespace_finalizer(api: Arc<Api>) {
    tokio::spawn(async move {
        let mut shutdown = api.shutdown.clone();
        let ns_rt = registry::by_kind("v1", "Namespace").expect("registered");
        let start = api.cache.watch_with_state(ns_rt.storage);
        let mut pending: Vec<String> = start
            .backlog
            .iter()
            .filter(|e| object::is_deleting(&e.object.value()))
            .map(|e| e.object.name.clone())
            .collect();
        let mut live = start.live;
        loop {
            // Work through what is terminating; retry soon while something still blocks it.
            let mut still = Vec::new();
            for ns in pending.drain(..) {
                match finalize(&api, &ns).await {
                    Ok(true) => {
                        tracing::info!(namespace = %ns, "namespace deleted");
                        if DEFAULT_NAMESPACES.contains(&ns.as_str()) {
                            ensure_namespace(&api, &ns).await;
                        }
                    }
                    Ok(false) => still.push(ns),
                    Err(e) => {
                        tracing::warn!(namespace = %ns, error = %e, "namespace cleanup failed; will retry");
                        still.push(ns);
                    }
                }
            }
            pending = still;
            let retry = if pending.is_empty() { Duration::from_secs(3600) } else { Duration::from_millis(500) };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(retry) => {}
                event = live.recv() => match event {
                    Ok(e) if e.kind != EventType::Deleted && object::is_deleting(&e.object.value()) => {
                        if !pending.contains(&e.object.name) { pending.push(e.object.name.clone()); }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let (all, _, _) = api.cache.list(ns_rt.storage, &ns_rt.prefix(None), None, 0, &|o| object::is_deleting(&o.value()));
                        pending = all.iter().map(|o| o.name.clone()).collect();
                    }
                    Err(_) => return,
                }
            }
        }
    });
}

/// Cleanup starts this long after a namespace was deleted, so a client deleting a namespace
/// and its objects one by one (`kubectl delete -f` of a file holding both) finds each object
/// still there, as it does on Kubernetes, instead of racing the cleanup into NotFound errors.
const CLEANUP_DELAY: Duration = Duration::from_secs(2);

fn cleanup_due(ns: &Value) -> bool {
    let Some(at) =
        object::str_at(ns, &["metadata", "deletionTimestamp"]).and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return true;
    };
    jiff::Timestamp::now() >= at + jiff::SignedDuration::try_from(CLEANUP_DELAY).unwrap_or_default()
}

/// Deletes everything in a Terminating namespace; true once the namespace itself is gone.
async fn finalize(api: &Arc<Api>, ns: &str) -> Result<bool, crate::ApiError> {
    let ns_key = registry::by_kind("v1", "Namespace").expect("registered").key(None, ns);
    if let Some(cached) = api.cache.get(&ns_key)
        && !cleanup_due(&cached.value())
    {
        return Ok(false);
    }
    let q = Query::default();
    let mut remaining = 0;
    let mut seen_storage = std::collections::HashSet::new();
    for rt in RESOURCES.iter().filter(|r| r.namespaced()) {
        if !seen_storage.insert(rt.storage) {
            continue;
        }
        let (objects, _, _) = api.cache.list(rt.storage, &rt.prefix(Some(ns)), None, 0, &|_| true);
        for obj in objects {
            remaining += 1;
            if object::is_deleting(&obj.value()) {
                continue;
            }
            let req = ResourceRequest {
                rt,
                namespace: Some(ns.to_string()),
                name: Some(obj.name.clone()),
                subresource: None,
                watch_path: false,
            };
            match api.delete(&req, &q, &json!({"propagationPolicy": "Background"})).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        // Deleted objects leave the cache as their events arrive; check again then.
        let left: usize = RESOURCES
            .iter()
            .filter(|r| r.namespaced())
            .map(|rt| api.cache.list(rt.storage, &rt.prefix(Some(ns)), None, 0, &|_| true).0.len())
            .sum();
        if left > 0 {
            return Ok(false);
        }
    }
    let ns_req = request("v1", "Namespace", None, Some(ns));
    let key = ns_req.rt.key(None, ns);
    let Some(current) = api.store.get(&key, None).await.map_err(crate::errors::from_store)? else { return Ok(true) };
    let value: Value = serde_json::from_slice(&current.value).unwrap_or(Value::Null);
    if !object::finalizers(&value).is_empty() {
        // Finalizers of other controllers hold the namespace; they remove them themselves.
        return Ok(false);
    }
    match api.store.delete(&key, Some(current.mod_revision)).await {
        Ok(_) | Err(tug_store::Error::NotFound { .. }) => Ok(true),
        Err(tug_store::Error::Conflict { .. }) => Ok(false),
        Err(e) => Err(crate::errors::from_store(e)),
    }
}
