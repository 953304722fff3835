//! Services: cluster IPs and node ports are reserved on create and update (Kubernetes does this
//! in the Service's REST storage, not in admission, because an allocation must be given back
//! when the object is not stored), kept across updates that leave them out, and released when
//! the Service lets them go (a type change, a deletion). The records live in the store; see
//! `alloc`.

use futures::future::BoxFuture;
use serde_json::Value;
use tug_core::registry::ResourceType;
use tug_core::status::{ApiError, Cause};

use super::{Reservation, Strategy};
use crate::alloc::records::Refused;
use crate::alloc::{self, Held};
use crate::{Api, object};

#[derive(Debug)]
pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        alloc::drop_type_dependent_fields(old, new);
        alloc::keep_allocations(old, new);
    }

    fn validate_create(&self, rt: &ResourceType, obj: &Value) -> Vec<Cause> {
        without_fixed_range_check(tug_core::validation::validate_create(rt, obj))
    }

    fn validate_update(&self, rt: &ResourceType, new: &Value, old: &Value) -> Vec<Cause> {
        without_fixed_range_check(tug_core::validation::validate_update(rt, new, old))
    }

    fn begin_write<'a>(
        &'a self,
        api: &'a Api,
        rt: &'a ResourceType,
        old: Option<&'a Value>,
        new: &'a mut Value,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<Reservation, ApiError>> {
        Box::pin(async move {
            api.services.reserve(old, new, dry_run).await.map_err(|refused| match refused {
                Refused::Invalid(cause) => crate::rest::invalid(rt, object::name(new), vec![cause]),
                Refused::Internal(message) => ApiError::internal(message),
                Refused::Store(e) => crate::errors::from_store(e),
            })
        })
    }

    fn abort_write<'a>(&'a self, api: &'a Api, reserved: &'a Reservation) -> BoxFuture<'a, ()> {
        Box::pin(async move { api.services.cancel(reserved).await })
    }

    fn after_update<'a>(&'a self, api: &'a Api, old: &'a Value, new: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let let_go = Held::of(old).minus(&Held::of(new));
            if !let_go.is_empty() {
                api.services.release(old, &let_go).await;
            }
        })
    }

    fn after_delete<'a>(&'a self, api: &'a Api, obj: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move { api.services.release(obj, &Held::of(obj)).await })
    }
}

/// tug-core's Service validation checks node ports against the default 30000-32767; the
/// allocator has already checked them against the configured `--service-node-port-range` (in
/// Kubernetes, validation leaves the range to the allocator), so that cause is dropped here.
fn without_fixed_range_check(mut causes: Vec<Cause>) -> Vec<Cause> {
    causes
        .retain(|c| !(c.field.ends_with(".nodePort") && c.message.contains("provided port is not in the valid range")));
    causes
}
