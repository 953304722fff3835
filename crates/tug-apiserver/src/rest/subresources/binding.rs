//! `pods/binding`: the scheduler's assignment of a pod to a node.

use serde_json::{Value, json};
use tug_core::status::ApiError;

use crate::errors::from_store;
use crate::request::ResourceRequest;
use crate::rest::{CAS_RETRIES, conflict, encode_for_storage, invalid, stored_object};
use crate::{Api, object};

impl Api {
    /// POST pods/binding: assigns a pod to a node, once.
    pub async fn bind(&self, req: &ResourceRequest, binding: &Value) -> Result<(), ApiError> {
        let rt = req.rt;
        let name = req.name.as_deref().unwrap_or_default();
        let node =
            binding.pointer("/target/name").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| {
                invalid(
                    rt,
                    name,
                    vec![tug_core::status::Cause {
                        reason: "FieldValueRequired",
                        field: "target.name".into(),
                        message: "Required value".into(),
                    }],
                )
            })?;
        for attempt in 0..CAS_RETRIES {
            // Deletion and an existing node never revert, so a stale cached pod can only lose
            // the compare-and-swap, never refuse a binding wrongly.
            let (current, _) = self.current_for_write(rt, req.namespace.as_deref(), name, attempt).await?;
            let mut pod = stored_object(rt, &current)?;
            if object::is_deleting(&pod) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            if let Some(existing) = object::str_at(&pod, &["spec", "nodeName"]).filter(|s| !s.is_empty()) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("pod {name} is already assigned to node \"{existing}\""),
                )
                .about("", "pods", name));
            }
            pod["spec"]["nodeName"] = json!(node);
            let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()}));
            pod["status"]["conditions"] = json!(conditions);
            let bytes = encode_for_storage(rt, &pod);
            match self.store.update(&current.key, bytes, current.mod_revision, None).await {
                Ok(_) => return Ok(()),
                Err(tug_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(from_store(e)),
            }
        }
        Err(conflict(rt, name))
    }
}
