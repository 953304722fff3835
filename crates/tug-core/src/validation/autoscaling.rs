//! HorizontalPodAutoscalers (autoscaling): the scale target and replica bounds.

use serde_json::{Map, Value};

use super::{Errors, obj_at, str_at};

pub(super) fn validate_hpa(spec: &Map<String, Value>, errs: &mut Errors) {
    let target = obj_at(spec, "scaleTargetRef");
    for key in ["kind", "name"] {
        if str_at(target, key).is_empty() {
            errs.required(&format!("spec.scaleTargetRef.{key}"), "");
        }
    }
    let max = spec.get("maxReplicas").and_then(Value::as_i64);
    match spec.get("maxReplicas").filter(|v| !v.is_null()) {
        None => errs.required("spec.maxReplicas", ""),
        Some(value) if max.is_none_or(|m| m < 1) => {
            errs.invalid("spec.maxReplicas", value, "must be greater than or equal to 1")
        }
        Some(_) => {}
    }
    if let Some(min_value) = spec.get("minReplicas").filter(|v| !v.is_null()) {
        match min_value.as_i64() {
            Some(min) if min < 1 => errs.invalid("spec.minReplicas", min_value, "must be greater than or equal to 1"),
            Some(min) if max.is_some_and(|m| min > m) => {
                errs.invalid("spec.minReplicas", min_value, "must be less than or equal to maxReplicas")
            }
            _ => {}
        }
    }
}
