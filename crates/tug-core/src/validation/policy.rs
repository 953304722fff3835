//! PodDisruptionBudgets (policy/v1): one of minAvailable/maxUnavailable, and the selector.

use serde_json::{Map, Value};

use super::names::validate_selector;
use super::workloads::int_or_percent;
use super::{Errors, is_present};

pub(super) fn validate_pdb(spec: &Map<String, Value>, errs: &mut Errors) {
    if is_present(spec, "minAvailable") && is_present(spec, "maxUnavailable") {
        errs.invalid("spec", &Value::Object(spec.clone()), "minAvailable and maxUnavailable cannot be both set");
    }
    for key in ["minAvailable", "maxUnavailable"] {
        if let Some(value) = spec.get(key).filter(|v| !v.is_null()) {
            int_or_percent(value, &format!("spec.{key}"), true, errs);
        }
    }
    if let Some(selector) = spec.get("selector").and_then(Value::as_object) {
        validate_selector(selector, "spec.selector", errs);
    }
}
