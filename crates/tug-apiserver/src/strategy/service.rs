//! Services: cluster IPs and node ports are reserved on create and update (Kubernetes does this
//! in the Service's REST storage, not in admission, because an allocation must be given back
//! when the object is not stored), kept across updates that leave them out, and released when
//! the Service lets them go (a type change, a deletion). The records live in the store; see
//! `alloc`.

use futures::future::BoxFuture;
use serde_json::Value;
use tug_core::registry::ResourceType;
use tug_core::status::ApiError;

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
