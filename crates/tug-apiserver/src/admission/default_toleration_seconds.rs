//! DefaultTolerationSeconds: how long a pod stays on a node that is not ready or unreachable.

use serde_json::{Value, json};

use super::OnCreate;

/// The plugin.
pub fn plugin(seconds: i64) -> OnCreate {
    OnCreate::new("DefaultTolerationSeconds", "", "Pod", move |_, pod| default_toleration_seconds(pod, seconds))
}

/// Kubernetes' DefaultTolerationSeconds admission: a pod that does not say how long it stays on
/// a node that is not ready or unreachable tolerates it for `seconds`, then is evicted.
fn default_toleration_seconds(pod: &mut Value, seconds: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        // Any toleration that covers the NoExecute taint counts, as in Kubernetes.
        let covered = list.iter().any(|t| {
            let key_ok = match t.get("key").and_then(Value::as_str) {
                None | Some("") => t.get("operator").and_then(Value::as_str) == Some("Exists"),
                Some(k) => k == taint,
            };
            let effect_ok = matches!(t.get("effect").and_then(Value::as_str), None | Some("") | Some("NoExecute"));
            key_ok && effect_ok
        });
        if !covered {
            list.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}
