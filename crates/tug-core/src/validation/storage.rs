//! PersistentVolumeClaims (core/v1): what may change after creation.

use serde_json::{Map, Value};

use super::Errors;

pub(super) fn validate_pvc_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    let frozen = |spec: &Map<String, Value>| {
        let mut copy = spec.clone();
        copy.remove("volumeAttributesClassName");
        if let Some(resources) = copy.get_mut("resources").and_then(Value::as_object_mut) {
            resources.remove("requests");
        }
        // The binder fills volumeName once; setting it is not a user change to reject.
        copy.remove("volumeName");
        copy
    };
    if frozen(new) != frozen(old) {
        errs.forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
}
