//! `scale`: the autoscaling/v1 Scale view of a workload's `spec.replicas`.

use serde_json::{Value, json};
use tug_core::patch;
use tug_core::registry::ResourceType;
use tug_core::status::ApiError;

use crate::request::{Query, ResourceRequest};
use crate::rest::subresources::status::WriteScope;
use crate::rest::{CAS_RETRIES, conflict, decode_body, invalid, stored_object};
use crate::{Api, object};

impl Api {
    /// GET of the autoscaling/v1 Scale view.
    pub async fn get_scale(&self, req: &ResourceRequest) -> Result<Value, ApiError> {
        let rt = req.rt;
        let kv = self.current(rt, req.namespace.as_deref(), req.name.as_deref().unwrap_or_default()).await?;
        Ok(scale_of(&stored_object(rt, &kv)?))
    }

    /// PUT or PATCH of the Scale view: changes `spec.replicas` of the object.
    pub async fn write_scale(
        &self,
        req: &ResourceRequest,
        q: &Query,
        body: &[u8],
        content_type: Option<&str>,
        is_patch: bool,
    ) -> Result<Value, ApiError> {
        let rt = req.rt;
        let name = req.name.as_deref().unwrap_or_default();
        for attempt in 0..CAS_RETRIES {
            let (current, cached) = self.current_for_write(rt, req.namespace.as_deref(), name, attempt).await?;
            let obj = stored_object(rt, &current)?;
            let mut scale = scale_of(&obj);
            if is_patch {
                let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).unwrap_or("");
                let doc: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
                match media {
                    "application/json-patch+json" => {
                        patch::json_patch(&mut scale, &doc).map_err(|e| ApiError::bad_request(e.to_string()))?
                    }
                    _ => patch::merge_patch(&mut scale, &doc),
                }
            } else {
                scale = decode_body(body, content_type)?;
            }
            if let Some(rv) = object::resource_version(&scale)
                && rv != current.mod_revision.to_string()
            {
                if cached {
                    continue;
                }
                return Err(conflict(rt, name));
            }
            let replicas = match scale.pointer("/spec/replicas") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_i64().filter(|r| *r >= 0 && *r <= i32::MAX as i64).ok_or_else(|| {
                    invalid(
                        &SCALE_RT,
                        name,
                        vec![tug_core::status::Cause {
                            reason: "FieldValueInvalid",
                            field: "spec.replicas".into(),
                            message: format!("Invalid value: {v}: must be greater than or equal to 0"),
                        }],
                    )
                })?,
            };
            let mut new = obj.clone();
            new["spec"]["replicas"] = json!(replicas);
            if let Some(done) = self.write_update(rt, WriteScope::Main, (&current, cached), new, q.dry_run).await? {
                return Ok(scale_of(&done));
            }
        }
        Err(conflict(rt, name))
    }
}

/// The Scale object of a workload.
pub fn scale_of(obj: &Value) -> Value {
    let selector = obj.pointer("/spec/selector").map(crate::selectors::selector_string).unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object::name(obj),
            "namespace": object::namespace(obj).unwrap_or_default(),
            "uid": object::str_at(obj, &["metadata", "uid"]).unwrap_or_default(),
            "resourceVersion": object::resource_version(obj).unwrap_or_default(),
            "creationTimestamp": object::str_at(obj, &["metadata", "creationTimestamp"]),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// Scale's own type, for error messages.
static SCALE_RT: ResourceType = ResourceType {
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    plural: "scale",
    singular: "scale",
    short_names: &[],
    scope: tug_core::registry::Scope::Namespaced,
    in_all: false,
    subresources: &[],
    storage: "",
};
