//! The verbs on resources (`verbs`: create, get, list, update, patch, delete,
//! deletecollection), their subresources (`subresources`: status, finalize, scale, binding,
//! eviction) and request bodies (`decode`). Watches are in `watch.rs`.
//!
//! Every write follows the same path as in Kubernetes: decode (JSON, YAML or protobuf) → check
//! the type → decode through the typed struct (field validation) → server-set metadata and the
//! kind's strategy (`crate::strategy`) → defaulting → the admission chain's mutating phase
//! (`crate::admission`) → validation → the chain's validating phase → store with
//! compare-and-swap. Nothing is stored until every check has passed, so a failed request leaves
//! the store as it was. The verbs know no kind: what differs per kind is a strategy hook.

mod decode;
mod subresources;
mod verbs;

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tug_core::convert;
use tug_core::registry::ResourceType;
use tug_core::status::ApiError;
use tug_store::KeyValue;

use crate::cache::CachedObject;
use crate::object;

pub use decode::{decode_body, decode_object};
pub use subresources::scale::scale_of;
pub use subresources::status::WriteScope;

/// Events expire an hour after their last write, as with Kubernetes' default `--event-ttl`.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// Retries of an update or patch that lost a compare-and-swap race it did not ask for.
pub(crate) const CAS_RETRIES: usize = 16;

pub(crate) fn qualified_resource(rt: &ResourceType) -> String {
    rt.plural.to_string()
}

pub(crate) fn not_found(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::not_found(rt.group, &qualified_resource(rt), name)
}

pub(crate) fn conflict(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::conflict(rt.group, &qualified_resource(rt), name)
}

pub(crate) fn invalid(rt: &ResourceType, name: &str, causes: Vec<tug_core::status::Cause>) -> ApiError {
    ApiError::invalid(rt.group, rt.kind, name, causes)
}

/// The stored value of `kv` as `rt`'s version, resourceVersion stamped.
pub(crate) fn stored_object(rt: &ResourceType, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    object::set_resource_version(&mut obj, kv.mod_revision);
    Ok(convert::from_storage(rt, obj))
}

/// A cached object as `rt`'s version, re-encoded only when the version differs.
pub fn served_bytes(rt: &ResourceType, obj: &CachedObject) -> Bytes {
    if convert::storage_version(rt) == rt.api_version() {
        obj.json.clone()
    } else {
        Bytes::from(serde_json::to_vec(&convert::from_storage(rt, obj.value())).unwrap_or_default())
    }
}

pub(crate) fn encode_for_storage(rt: &ResourceType, obj: &Value) -> Vec<u8> {
    let mut stored = convert::to_storage(rt, obj.clone());
    if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("selfLink");
    }
    serde_json::to_vec(&stored).unwrap_or_default()
}

pub(crate) fn ttl_for(rt: &ResourceType) -> Option<Duration> {
    (rt.storage == "events").then_some(EVENT_TTL)
}
