//! ServiceAccount: a pod runs as its namespace's `default` ServiceAccount unless it names one.

use serde_json::{Value, json};

use super::OnCreate;

/// The plugin.
pub fn plugin() -> OnCreate {
    OnCreate::new("ServiceAccount", "", "Pod", |_, pod| default_service_account(pod))
}

/// Pods run as the namespace's `default` ServiceAccount unless they name one (Kubernetes'
/// ServiceAccount admission).
fn default_service_account(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let name = match spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        Some(n) => n.to_string(),
        None => "default".to_string(),
    };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
}
