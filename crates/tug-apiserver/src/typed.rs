//! Decoding through the typed Kubernetes structs (k8s-openapi): the schema check behind
//! `fieldValidation`. An object is decoded into its kind's struct and encoded again; fields the
//! struct does not know are dropped on the way (what Kubernetes stores) and reported, so Strict
//! can reject them, Warn can name them and Ignore can drop them silently. Wrong types (a string
//! where a number belongs) fail here with 400, as in Kubernetes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};

/// The result of decoding an object through its typed struct.
#[derive(Debug)]
pub struct Normalized {
    /// The object as Kubernetes would store it: unknown fields dropped.
    pub object: Value,
    /// Paths of fields the schema does not know, e.g. `spec.replica`, `spec.containers[0].imagee`.
    pub unknown_fields: Vec<String>,
}

fn roundtrip<T: DeserializeOwned + Serialize>(input: &Value) -> Result<Normalized, String> {
    let typed = T::deserialize(input).map_err(|e| e.to_string())?;
    let object = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown_fields = Vec::new();
    collect_unknown(input, &object, "", &mut unknown_fields);
    Ok(Normalized { object, unknown_fields })
}

macro_rules! typed_kinds {
    ($( ($api_version:literal, $kind:literal, $ty:ty) ),* $(,)?) => {
        /// Decodes `obj` through the struct of `api_version`/`kind`. `None` for kinds without one
        /// (served as free-form JSON). An `Err` is a decoding error to answer with 400.
        pub fn normalize(api_version: &str, kind: &str, obj: &Value) -> Option<Result<Normalized, String>> {
            match (api_version, kind) {
                $( ($api_version, $kind) => Some(roundtrip::<$ty>(obj)), )*
                _ => None,
            }
        }
    };
}

typed_kinds![
    ("v1", "Namespace", core::Namespace),
    ("v1", "Pod", core::Pod),
    ("v1", "Node", core::Node),
    ("v1", "Service", core::Service),
    ("v1", "Endpoints", core::Endpoints),
    ("v1", "ConfigMap", core::ConfigMap),
    ("v1", "Secret", core::Secret),
    ("v1", "ServiceAccount", core::ServiceAccount),
    ("v1", "Event", core::Event),
    ("v1", "PersistentVolume", core::PersistentVolume),
    ("v1", "PersistentVolumeClaim", core::PersistentVolumeClaim),
    ("v1", "ResourceQuota", core::ResourceQuota),
    ("v1", "LimitRange", core::LimitRange),
    ("v1", "Binding", core::Binding),
    ("apps/v1", "Deployment", apps::Deployment),
    ("apps/v1", "ReplicaSet", apps::ReplicaSet),
    ("apps/v1", "StatefulSet", apps::StatefulSet),
    ("apps/v1", "DaemonSet", apps::DaemonSet),
    ("apps/v1", "ControllerRevision", apps::ControllerRevision),
    ("batch/v1", "Job", batch::Job),
    ("batch/v1", "CronJob", batch::CronJob),
    ("autoscaling/v1", "HorizontalPodAutoscaler", autoscaling1::HorizontalPodAutoscaler),
    ("autoscaling/v1", "Scale", autoscaling1::Scale),
    ("autoscaling/v2", "HorizontalPodAutoscaler", autoscaling2::HorizontalPodAutoscaler),
    ("coordination.k8s.io/v1", "Lease", coordination::Lease),
    ("discovery.k8s.io/v1", "EndpointSlice", discovery::EndpointSlice),
    ("events.k8s.io/v1", "Event", events::Event),
    ("policy/v1", "PodDisruptionBudget", policy::PodDisruptionBudget),
    ("policy/v1", "Eviction", policy::Eviction),
    ("scheduling.k8s.io/v1", "PriorityClass", scheduling::PriorityClass),
    ("storage.k8s.io/v1", "StorageClass", storage::StorageClass),
    ("rbac.authorization.k8s.io/v1", "Role", rbac::Role),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", rbac::ClusterRole),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", rbac::RoleBinding),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", rbac::ClusterRoleBinding),
];

/// Paths present (and not null) in `input` but absent from `output`.
fn collect_unknown(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match o.get(k) {
                    Some(ov) => collect_unknown(v, ov, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                collect_unknown(iv, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_by_path_and_dropped() {
        let input = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labelz": {}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx", "imagee": "x"}]}}}
        });
        let n = normalize("apps/v1", "Deployment", &input).unwrap().unwrap();
        assert_eq!(n.unknown_fields, vec!["metadata.labelz", "spec.template.spec.containers[0].imagee"]);
        assert!(n.object["spec"]["template"]["spec"]["containers"][0].get("imagee").is_none());
        assert_eq!(n.object["spec"]["replicas"], 2);
    }

    #[test]
    fn wrong_types_fail() {
        let input = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}});
        assert!(normalize("v1", "ConfigMap", &input).unwrap().is_err());
    }

    #[test]
    fn nulls_are_not_unknown() {
        let input =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": null}});
        assert!(normalize("v1", "ConfigMap", &input).unwrap().unwrap().unknown_fields.is_empty());
    }
}
