//! The admission chain: the plugins every write passes through after decoding and defaulting,
//! as Kubernetes' admission control. A [`Plugin`] mutates an object (defaults that depend on
//! configuration or on other objects), validates it, or refuses the request; [`Chain::new`] is
//! the ONE place the plugins are registered, in order.
//!
//! On create: decode → server metadata, status reset → defaulting → every plugin's `mutate`, in
//! order → the strategy's `begin_create` (a Service's IPs and ports) → the strategy's validation
//! → every plugin's `validate`, in order → store. An update runs the same two phases around its
//! validation; a delete runs them before anything else, with no object. A new admission plugin
//! is a module here and one entry in [`Chain::new`].

mod default_storage_class;
mod default_toleration_seconds;
mod namespace_lifecycle;
mod service_account;
mod storage_object_in_use_protection;

use futures::future::BoxFuture;
use serde_json::Value;
use tug_core::registry::ResourceType;
use tug_core::status::ApiError;

pub use storage_object_in_use_protection::PVC_PROTECTION_FINALIZER;

use crate::Api;

/// What a request does, as Kubernetes' `admission.Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// What plugins know of a request (Kubernetes' `admission.Attributes`).
#[derive(Debug)]
pub struct Attributes<'a> {
    pub operation: Operation,
    pub rt: &'a ResourceType,
    /// The object's namespace (`None` for cluster-scoped types).
    pub namespace: Option<String>,
    pub name: String,
    /// The stored object an update starts from.
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

impl Attributes<'_> {
    /// Whether the request is about `group`'s `kind`.
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.rt.group == group && self.rt.kind == kind
    }
}

/// One admission plugin. `mutate` may change the object; `validate` only looks. Either refuses
/// the request with an error. Plugins are only asked about requests they `handles`.
pub trait Plugin: Send + Sync + std::fmt::Debug {
    /// Kubernetes' name of the plugin.
    fn name(&self) -> &'static str;

    /// Whether the plugin has anything to do with this request.
    fn handles(&self, a: &Attributes) -> bool;

    /// Mutating admission: may change `obj` (absent on delete) or refuse.
    fn mutate<'a>(
        &'a self,
        _api: &'a Api,
        _a: &'a Attributes,
        _obj: Option<&'a mut Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        done(Ok(()))
    }

    /// Validating admission: runs after the object's own validation; may only refuse.
    fn validate<'a>(
        &'a self,
        _api: &'a Api,
        _a: &'a Attributes,
        _obj: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        done(Ok(()))
    }
}

/// A plugin's answer known without waiting.
pub fn done<'a>(answer: Result<(), ApiError>) -> BoxFuture<'a, Result<(), ApiError>> {
    Box::pin(std::future::ready(answer))
}

/// How an [`OnCreate`] plugin changes a new object.
type Change = dyn Fn(&Api, &mut Value) + Send + Sync;

/// A mutating plugin that only changes new objects of one kind: Kubernetes' defaulting plugins
/// (ServiceAccount's defaults, DefaultTolerationSeconds, DefaultStorageClass, ...).
pub struct OnCreate {
    name: &'static str,
    group: &'static str,
    kind: &'static str,
    change: Box<Change>,
}

impl OnCreate {
    pub fn new(
        name: &'static str,
        group: &'static str,
        kind: &'static str,
        change: impl Fn(&Api, &mut Value) + Send + Sync + 'static,
    ) -> OnCreate {
        OnCreate { name, group, kind, change: Box::new(change) }
    }
}

impl std::fmt::Debug for OnCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnCreate").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

impl Plugin for OnCreate {
    fn name(&self) -> &'static str {
        self.name
    }

    fn handles(&self, a: &Attributes) -> bool {
        a.operation == Operation::Create && a.is(self.group, self.kind)
    }

    fn mutate<'a>(
        &'a self,
        api: &'a Api,
        _a: &'a Attributes,
        obj: Option<&'a mut Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        if let Some(obj) = obj {
            (self.change)(api, obj);
        }
        done(Ok(()))
    }
}

/// The plugins, in the order they run.
#[derive(Debug)]
pub struct Chain {
    plugins: Vec<Box<dyn Plugin>>,
}

impl Chain {
    /// The chain, in Kubernetes' order (its `--enable-admission-plugins` order: NamespaceLifecycle,
    /// LimitRanger, ServiceAccount, NodeRestriction, TaintNodesByCondition, PodSecurity, Priority,
    /// DefaultTolerationSeconds, PersistentVolumeClaimResize, DefaultStorageClass,
    /// StorageObjectInUseProtection, MutatingAdmissionWebhook, ValidatingAdmissionPolicy,
    /// ValidatingAdmissionWebhook, ResourceQuota). Why that order:
    /// - NamespaceLifecycle first: a request into a namespace that is gone or going is refused
    ///   before anything else spends work on it (or reserves anything for it).
    /// - LimitRanger before ServiceAccount and PodSecurity: the resources it defaults are what
    ///   later plugins and quota see.
    /// - ServiceAccount, then NodeRestriction and PodSecurity: the pod's identity is settled
    ///   before what may run as whom is judged.
    /// - The defaulting plugins (Priority — in `tug_core::defaults` here —, DefaultTolerationSeconds,
    ///   DefaultStorageClass, StorageObjectInUseProtection) after the checks that do not need them.
    /// - Webhooks after every built-in mutation, so they see (and may change) the object as the
    ///   cluster would store it; their changes then pass the validating phase.
    /// - ResourceQuota last: it charges usage only for a request every other plugin allowed.
    ///
    /// Not here, and why: Kubernetes' defaulting runs when decoding (before this chain), and the
    /// Service IP/port allocation is the Service strategy's `begin_create` (Kubernetes' Service
    /// storage), since an allocation must be given back when the object is not stored.
    pub fn new(config: &crate::Admission) -> Chain {
        let plugins: Vec<Box<dyn Plugin>> = vec![
            Box::new(namespace_lifecycle::NamespaceLifecycle),
            // LimitRanger (issue 14) goes here.
            Box::new(service_account::plugin()),
            // NodeRestriction, PodSecurity (issue 14) go here.
            Box::new(default_toleration_seconds::plugin(config.default_toleration_seconds)),
            Box::new(default_storage_class::plugin()),
            Box::new(storage_object_in_use_protection::plugin()),
            // MutatingAdmissionWebhook, ValidatingAdmissionPolicy, ValidatingAdmissionWebhook
            // (issue 15), then ResourceQuota (issue 14) go here.
        ];
        Chain { plugins }
    }

    /// The mutating phase: every plugin that handles the request, in order.
    pub async fn mutate(&self, api: &Api, a: &Attributes<'_>, mut obj: Option<&mut Value>) -> Result<(), ApiError> {
        for plugin in self.plugins.iter().filter(|p| p.handles(a)) {
            plugin.mutate(api, a, obj.as_deref_mut()).await?;
        }
        Ok(())
    }

    /// The validating phase: every plugin that handles the request, in order.
    pub async fn validate(&self, api: &Api, a: &Attributes<'_>, obj: Option<&Value>) -> Result<(), ApiError> {
        for plugin in self.plugins.iter().filter(|p| p.handles(a)) {
            plugin.validate(api, a, obj).await?;
        }
        Ok(())
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_run_in_kubernetes_order() {
        let chain = Chain::new(&crate::Admission::default());
        assert_eq!(
            chain.names(),
            [
                "NamespaceLifecycle",
                "ServiceAccount",
                "DefaultTolerationSeconds",
                "DefaultStorageClass",
                "StorageObjectInUseProtection"
            ]
        );
    }
}
