//! Namespaces: no generation; a deletion always passes through `Terminating` (the namespace
//! finalizer in `bootstrap` empties it and then removes it); a new namespace is populated with
//! its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tug_core::registry::{self, ResourceType};

use super::Strategy;
use crate::request::{Query, ResourceRequest};
use crate::{Api, Reply, object};

#[derive(Debug)]
pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn tracks_generation(&self, _rt: &ResourceType) -> bool {
        false
    }

    fn after_create<'a>(&'a self, api: &'a Api, obj: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(populate(api, object::name(obj)))
    }

    fn two_phase_delete(&self) -> bool {
        true
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        obj["status"]["phase"] = json!("Terminating");
    }

    fn deleted_when_finalized(&self) -> bool {
        false
    }
}

/// What every namespace holds from its creation: the `default` ServiceAccount and the
/// `kube-root-ca.crt` ConfigMap (Kubernetes' service-account and root-CA publisher
/// controllers create them moments later; here they exist as soon as the namespace does).
async fn populate(api: &Api, ns: &str) {
    let objects = [
        ("v1", "ServiceAccount", json!({"metadata": {"name": "default"}})),
        (
            "v1",
            "ConfigMap",
            json!({
                "metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": api.root_ca_pem},
            }),
        ),
    ];
    for (api_version, kind, obj) in objects {
        let req = ResourceRequest {
            rt: registry::by_kind(api_version, kind).expect("registered kind"),
            namespace: Some(ns.to_string()),
            name: None,
            subresource: None,
            watch_path: false,
        };
        match Box::pin(api.create(&req, &Query::default(), obj, &mut Reply::default())).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => tracing::warn!(namespace = ns, kind, error = %e, "cannot populate the namespace"),
        }
    }
}
