//! Services: cluster IPs and node ports are allocated on create (Kubernetes does this in the
//! Service's REST storage, not in admission, because an allocation must be given back when the
//! object is not stored), kept across updates and released on delete.

use serde_json::Value;
use tug_core::registry::ResourceType;
use tug_core::status::{ApiError, Cause};

use super::Strategy;
use crate::{Api, object};

#[derive(Debug)]
pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        crate::alloc::keep_allocations(old, new);
    }

    fn begin_create(&self, api: &Api, rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
        api.services.allocate(&api.cache, obj).map_err(|m| {
            let name = object::name(obj).to_string();
            crate::rest::invalid(rt, &name, vec![Cause { reason: "FieldValueInvalid", field: m.0, message: m.1 }])
        })
    }

    fn abort_create(&self, api: &Api, obj: &Value) {
        api.services.release(obj);
    }

    fn after_delete(&self, api: &Api, obj: &Value) {
        api.services.release(obj);
    }
}
