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
    ensure_kubernetes_service(api, addr).await;
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

/// The `kubernetes` Service in `default`, on the first address of the service CIDR, as
/// kube-apiserver creates it. One that exists on another address (the CIDR changed) is left as
/// it is: its cluster IP cannot change, and deleting it gets one on the new range at the next
/// start.
async fn ensure_kubernetes_service(api: &Arc<Api>, addr: SocketAddr) {
    let ip = api.services.ranges().cidr.kubernetes_service_ip().to_string();
    let req = request("v1", "Service", Some("default"), Some("kubernetes"));
    if let Some(existing) = api.cache.get(&req.rt.key(Some("default"), "kubernetes")) {
        let existing = existing.value();
        let current = existing.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
        if current != ip {
            tracing::warn!(
                current, expected = %ip,
                "the kubernetes Service is not on the first address of --service-cidr; delete it to have it recreated there"
            );
        }
        return;
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]},
    });
    let create = request("v1", "Service", Some("default"), None);
    match api.create(&create, &Query::default(), svc, &mut Reply::default()).await {
        Ok(_) => tracing::info!(%ip, "created the kubernetes Service"),
        // Another API server over the same datastore made it first.
        Err(e) if e.code == 409 || e.message.contains("provided IP is already allocated") => {}
        Err(e) => tracing::warn!(error = %e, "cannot create the kubernetes Service"),
    }
}

/// Start-up checks of the Service address records: the ranges this server was given against
/// the ones stored (a change is reported; addresses outside a new range are kept, as in
/// Kubernetes), then a repair pass, so Services stored before the records existed (or by a
/// server that crashed mid-write) are covered before any request is served.
pub async fn check_service_allocations(api: &Arc<Api>) {
    match api.services.record_ranges().await {
        Ok(Some(before)) => tracing::warn!(
            %before, now = ?api.services.ranges(),
            "the service ranges changed since the last start: Services keep the addresses they have, new ones come from the new ranges"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot record the service ranges"),
    }
    if let Err(e) = api.services.repair(crate::alloc::records::REPAIR_GRACE).await {
        tracing::warn!(error = %e, "the start-up repair of service allocations failed; it runs again later");
    }
}

/// Where API servers announce themselves for the `kubernetes` Service's endpoints: one key per
/// advertised address, expiring unless renewed (kube-apiserver's lease endpoint reconciler,
/// `/masterleases/`), so several servers over one datastore all appear and a stopped one goes.
const API_SERVER_LEASES: &str = "/tugboat/apiserver-leases/";
const LEASE_TTL: Duration = Duration::from_secs(15);
const LEASE_RENEWAL: Duration = Duration::from_secs(10);

/// The address other hosts reach this server on: the listen address, or for a wildcard
/// listener the address of the route to the outside (the one `--advertise-address` defaults
/// to in Kubernetes), or loopback when there is none.
pub fn advertised_ip(listen: SocketAddr) -> std::net::IpAddr {
    if !listen.ip().is_unspecified() {
        return listen.ip();
    }
    // A UDP connect sends nothing: it only picks the source address of the default route.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and_then(|_| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// The `default/kubernetes` Endpoints and EndpointSlice for the API servers at `ips`, serving
/// on `port` — what kube-apiserver's endpoint reconciler writes (the Endpoints marked
/// skip-mirror; the slice labelled with the service name, without a managed-by label).
pub fn kubernetes_endpoints(ips: &[std::net::IpAddr], port: u16) -> (Value, Value) {
    let ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(), "ports": ports}],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if ips.iter().all(std::net::IpAddr::is_ipv6) && !ips.is_empty() { "IPv6" } else { "IPv4" },
        "endpoints": ips.iter().map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": ports,
    });
    (endpoints, slice)
}

/// Keeps this server's lease and the `kubernetes` Service's endpoints current: at start and
/// every [`LEASE_RENEWAL`], until the server stops.
pub fn spawn_kubernetes_endpoints(api: Arc<Api>, listen: SocketAddr) {
    let ip = advertised_ip(listen);
    tokio::spawn(async move {
        let mut shutdown = api.shutdown.clone();
        loop {
            if let Err(e) = reconcile_kubernetes_endpoints(&api, ip, listen.port()).await {
                tracing::warn!(error = %e, "cannot update the kubernetes Service's endpoints; retrying");
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(LEASE_RENEWAL) => {}
            }
        }
    });
}

/// Renews this server's lease, then writes the Endpoints and EndpointSlice for every server
/// holding one, when they differ from what is stored.
pub async fn reconcile_kubernetes_endpoints(
    api: &Arc<Api>,
    ip: std::net::IpAddr,
    port: u16,
) -> Result<(), crate::ApiError> {
    let key = format!("{API_SERVER_LEASES}{ip}");
    let value = serde_json::to_vec(&json!({"port": port})).expect("JSON");
    let store_err = crate::errors::from_store;
    match api.store.get(&key, None).await.map_err(store_err)? {
        Some(kv) => match api.store.update(&key, value, kv.mod_revision, Some(LEASE_TTL)).await {
            Ok(_) | Err(tug_store::Error::Conflict { .. } | tug_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(e)),
        },
        None => match api.store.create(&key, value, Some(LEASE_TTL)).await {
            Ok(_) | Err(tug_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(store_err(e)),
        },
    }
    let leases = api.store.list(API_SERVER_LEASES, tug_store::ListOptions::default()).await.map_err(store_err)?;
    let mut ips: Vec<std::net::IpAddr> =
        leases.items.iter().filter_map(|kv| kv.key.strip_prefix(API_SERVER_LEASES)?.parse().ok()).collect();
    ips.sort();
    let (endpoints, slice) = kubernetes_endpoints(&ips, port);
    put_if_changed(api, "v1", "Endpoints", endpoints, &["subsets"]).await?;
    put_if_changed(api, "discovery.k8s.io/v1", "EndpointSlice", slice, &["addressType", "endpoints", "ports"]).await
}

/// Creates `desired` (named `kubernetes` in `default`), or replaces the stored one when one of
/// `fields` or the labels differ.
async fn put_if_changed(
    api: &Arc<Api>,
    api_version: &str,
    kind: &str,
    mut desired: Value,
    fields: &[&str],
) -> Result<(), crate::ApiError> {
    let q = Query::default();
    let one = request(api_version, kind, Some("default"), Some("kubernetes"));
    let current = match api.get(&one, &q).await {
        Ok(current) => current,
        Err(e) if e.code == 404 => {
            let all = request(api_version, kind, Some("default"), None);
            return match api.create(&all, &q, desired, &mut Reply::default()).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let same = fields.iter().all(|f| current.get(*f) == desired.get(*f))
        && current.pointer("/metadata/labels") == desired.pointer("/metadata/labels");
    if same {
        return Ok(());
    }
    desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    match api.update(&one, &q, crate::rest::WriteScope::Main, desired, &mut Reply::default()).await {
        Ok(_) => Ok(()),
        // Another server wrote it meanwhile; the next round looks again.
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
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
