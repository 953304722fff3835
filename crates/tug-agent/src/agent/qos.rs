//! The pod's QoS class as the agent uses it: its cgroup parent (`spec`) and its status
//! (`status`). The class itself is computed by `tug_k8s::qos`, the one copy the
//! API server uses too.

use k8s_openapi::api::core::v1::Pod;

/// The QoS class of a pod: the one the API server set on create, computed the same way
/// (`tug_k8s::qos`) only for a pod that somehow lacks it.
pub fn qos_class(pod: &Pod) -> String {
    match pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
        Some(class) => class,
        None => tug_k8s::qos::qos_class(&serde_json::to_value(pod).unwrap_or_default()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: serde_json::Value, status_class: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "a", "image": "img", "resources": resources}]},
            "status": {"qosClass": status_class},
        }))
        .expect("pod")
    }

    #[test]
    fn qos_classes() {
        let cases = [
            (serde_json::json!({}), "BestEffort"),
            (serde_json::json!({"requests": {"cpu": "100m"}}), "Burstable"),
            (serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}}), "Guaranteed"),
            (serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "500m"}}), "Burstable"),
        ];
        for (resources, class) in cases {
            assert_eq!(qos_class(&pod(resources.clone(), None)), class, "{resources}");
        }
    }

    #[test]
    fn the_class_the_api_server_set_wins() {
        assert_eq!(qos_class(&pod(serde_json::json!({}), Some("Guaranteed"))), "Guaranteed");
    }
}
