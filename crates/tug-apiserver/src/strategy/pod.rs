//! Pods: a pod bound to a node and still running is deleted gracefully — it gets a
//! `deletionTimestamp` and the node agent removes it once its containers stopped.

use serde_json::Value;

use super::Strategy;
use crate::object;

#[derive(Debug)]
pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let graceful = object::str_at(obj, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty())
            && !matches!(object::str_at(obj, &["status", "phase"]), Some("Succeeded" | "Failed"))
            && requested.unwrap_or(1) > 0;
        graceful.then(|| {
            requested
                .or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30)
        })
    }

    fn shortens_grace_period(&self) -> bool {
        true
    }
}
