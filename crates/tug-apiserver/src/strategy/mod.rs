//! What differs between kinds on the write path, as Kubernetes' `registry/<group>/<kind>/strategy.go`:
//! one [`Strategy`] per kind with special behaviour (a module each), every other kind served by
//! [`DefaultStrategy`], and [`for_kind`] the one table that maps a kind to its strategy. The
//! generic verbs in `rest/verbs.rs` call these hooks and nothing kind-specific of their own.
//!
//! A new kind with behaviour of its own (a CRD's status and scale, Ingress, ...) is a module here
//! implementing the hooks it needs and a row in [`for_kind`].

mod namespace;
mod node;
mod pod;
mod secret;
mod service;

use futures::future::BoxFuture;
use serde_json::Value;
use tug_core::registry::{ResourceType, Subresource};
use tug_core::status::{ApiError, Cause};
use tug_core::validation;

use crate::Api;
/// What a write reserved outside its object (the records of a Service's new addresses).
pub use crate::alloc::records::Reservation;

/// How the generic verbs treat objects of one kind. Every hook has the default behaviour, so a
/// strategy implements only what is special about its kind.
pub trait Strategy: Send + Sync {
    /// Whether objects carry `metadata.generation` (1 on create, one more with every change
    /// outside metadata and status). Kubernetes' kinds with a status subresource do.
    fn tracks_generation(&self, rt: &ResourceType) -> bool {
        rt.has(Subresource::Status)
    }

    /// Whether writes to the main resource keep the stored status (it has its own subresource).
    fn status_is_subresource(&self, rt: &ResourceType) -> bool {
        rt.has(Subresource::Status)
    }

    /// Changes to a new object after the server set its metadata and reset its status.
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Changes to an updated object after defaulting, knowing the stored one.
    fn prepare_for_update(&self, _old: &Value, _new: &mut Value) {}

    /// Kubernetes' validation of a new object (the causes of a 422).
    fn validate_create(&self, rt: &ResourceType, obj: &Value) -> Vec<Cause> {
        validation::validate_create(rt, obj)
    }

    /// Kubernetes' validation of an update, against the stored object.
    fn validate_update(&self, rt: &ResourceType, new: &Value, old: &Value) -> Vec<Cause> {
        validation::validate_update(rt, new, old)
    }

    /// Reserves what a new version holds outside the store (a Service's IPs and ports) and
    /// writes what it chose into it: `old` is the stored version on update, None on create.
    /// Runs after admission's mutating phase, before validation on create and just before the
    /// store write on update. A dry run reserves nothing but refuses what a real write would.
    /// [`Strategy::abort_write`] gives back what it reserved when the version is not stored
    /// (invalid, refused by admission, a dry run, a lost compare-and-swap, or the store failed).
    fn begin_write<'a>(
        &'a self,
        _api: &'a Api,
        _rt: &'a ResourceType,
        _old: Option<&'a Value>,
        _new: &'a mut Value,
        _dry_run: bool,
    ) -> BoxFuture<'a, Result<Reservation, ApiError>> {
        Box::pin(async { Ok(Reservation::default()) })
    }

    /// Gives back what [`Strategy::begin_write`] reserved for a version that was not stored.
    fn abort_write<'a>(&'a self, _api: &'a Api, _reserved: &'a Reservation) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Runs once the new object is stored (not on a dry run).
    fn after_create<'a>(&'a self, _api: &'a Api, _obj: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Whether a deletion always goes through `deletionTimestamp` first, finalizers or not (a
    /// Namespace: its content is deleted before it).
    fn two_phase_delete(&self) -> bool {
        false
    }

    /// The grace period a deletion waits before the object goes, if the kind has one for this
    /// object and the requested `gracePeriodSeconds` (a running pod's).
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Whether an object already being deleted may be deleted again with a shorter grace period
    /// (pods: `kubectl delete --grace-period=0 --force` after a graceful delete).
    fn shortens_grace_period(&self) -> bool {
        false
    }

    /// Changes to an object whose deletion starts (a Namespace turns `Terminating`).
    fn prepare_for_delete(&self, _obj: &mut Value) {}

    /// Whether an object being deleted goes from the store once its last finalizer is removed.
    /// (A Namespace goes when its `spec.finalizers` are done, which `bootstrap` sees to.)
    fn deleted_when_finalized(&self) -> bool {
        true
    }

    /// Runs once an update is stored (not on a dry run): gives back what `old` held and `new`
    /// no longer does.
    fn after_update<'a>(&'a self, _api: &'a Api, _old: &'a Value, _new: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Runs once the object is gone from the store (not on a dry run).
    fn after_delete<'a>(&'a self, _api: &'a Api, _obj: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// The strategy of kinds with no special behaviour.
#[derive(Debug)]
pub struct DefaultStrategy;

impl Strategy for DefaultStrategy {}

/// The strategy of a kind: the one table of kinds with behaviour of their own.
pub fn for_kind(rt: &ResourceType) -> &'static dyn Strategy {
    match (rt.group, rt.kind) {
        ("", "Pod") => &pod::PodStrategy,
        ("", "Namespace") => &namespace::NamespaceStrategy,
        ("", "Node") => &node::NodeStrategy,
        ("", "Service") => &service::ServiceStrategy,
        ("", "Secret") => &secret::SecretStrategy,
        _ => &DefaultStrategy,
    }
}
