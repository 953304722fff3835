//! Kubernetes' pod QoS class (`ComputePodQOS`, pkg/apis/core/helper/qos): Guaranteed when every
//! container limits both cpu and memory and the pod's summed requests equal its summed limits,
//! BestEffort when nothing is requested or limited, else Burstable. Amounts are compared as
//! quantities, so `cpu: "1"` and `cpu: "1000m"` are equal. The API server sets the class on
//! create; the agent reads it from there for status and cgroup placement.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::parse_quantity;

/// Only cpu and memory decide the class (hugepages, ephemeral storage and extended resources
/// do not).
const QOS_RESOURCES: &[&str] = &["cpu", "memory"];

/// The QoS class of a pod (as JSON): "Guaranteed", "Burstable" or "BestEffort".
///
/// A container's missing request defaults to its limit first, as Kubernetes' defaulting does
/// before admission computes the class; zero amounts count as unset. Pod-level resources
/// (`spec.resources`, alpha in 1.33) are not considered.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.get("spec").and_then(|s| s.get(f)).and_then(Value::as_array))
        .flatten();
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for container in containers {
        let amount = |kind: &str, name: &str| -> Option<i128> {
            let text = container.pointer(&format!("/resources/{kind}/{name}"))?;
            let text = match text {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            parse_quantity(&text).filter(|q| *q > 0)
        };
        let mut limited = 0;
        for &name in QOS_RESOURCES {
            let limit = amount("limits", name);
            let request = match container.pointer(&format!("/resources/requests/{name}")) {
                Some(_) => amount("requests", name),
                None => limit,
            };
            if let Some(request) = request {
                let sum = requests.entry(name).or_insert(0);
                *sum = sum.saturating_add(request);
            }
            if let Some(limit) = limit {
                limited += 1;
                let sum = limits.entry(name).or_insert(0);
                *sum = sum.saturating_add(limit);
            }
        }
        if limited < QOS_RESOURCES.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.len() == limits.len() && requests.iter().all(|(name, r)| limits.get(name) == Some(r)) {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `getResourceList(cpu, memory)` of Kubernetes' test: empty strings are left out.
    fn list(cpu: &str, memory: &str) -> Value {
        let mut map = serde_json::Map::new();
        if !cpu.is_empty() {
            map.insert("cpu".into(), json!(cpu));
        }
        if !memory.is_empty() {
            map.insert("memory".into(), json!(memory));
        }
        Value::Object(map)
    }

    fn container(requests: Value, limits: Value) -> Value {
        json!({"name": "c", "resources": {"requests": requests, "limits": limits}})
    }

    fn pod(containers: Vec<Value>) -> Value {
        json!({"spec": {"containers": containers}})
    }

    /// pkg/apis/core/v1/helper/qos `TestComputePodQOS` (container-level cases), plus the
    /// quantity-not-string cases.
    #[test]
    fn qos_classes_as_kubernetes_computes_them() {
        let c = container;
        let cases = [
            ("guaranteed", pod(vec![c(list("100m", "100Mi"), list("100m", "100Mi"))]), "Guaranteed"),
            (
                "guaranteed-guaranteed",
                pod(vec![
                    c(list("100m", "100Mi"), list("100m", "100Mi")),
                    c(list("100m", "100Mi"), list("100m", "100Mi")),
                ]),
                "Guaranteed",
            ),
            (
                "best-effort-best-effort",
                pod(vec![c(list("", ""), list("", "")), c(list("", ""), list("", ""))]),
                "BestEffort",
            ),
            ("best-effort", pod(vec![c(list("", ""), list("", ""))]), "BestEffort"),
            (
                "best-effort-burstable",
                pod(vec![c(list("", ""), list("", "")), c(list("1", ""), list("2", ""))]),
                "Burstable",
            ),
            (
                "best-effort-guaranteed",
                pod(vec![c(list("", ""), list("", "")), c(list("10m", "100Mi"), list("10m", "100Mi"))]),
                "Burstable",
            ),
            ("burstable-cpu-guaranteed-memory", pod(vec![c(list("", "100Mi"), list("", "100Mi"))]), "Burstable"),
            ("burstable-no-limits", pod(vec![c(list("100m", "100Mi"), list("", ""))]), "Burstable"),
            (
                "burstable-guaranteed",
                pod(vec![c(list("1", "100Mi"), list("2", "100Mi")), c(list("100m", "100Mi"), list("100m", "100Mi"))]),
                "Burstable",
            ),
            (
                "burstable-unbounded-but-requests-match-limits",
                pod(vec![c(list("100m", "100Mi"), list("200m", "200Mi")), c(list("100m", "100Mi"), list("", ""))]),
                "Burstable",
            ),
            ("burstable-1", pod(vec![c(list("10m", "100Mi"), list("100m", "200Mi"))]), "Burstable"),
            ("burstable-2", pod(vec![c(list("0", "0"), list("100m", "200Mi"))]), "Burstable"),
            (
                "best-effort-hugepages",
                pod(vec![c(
                    json!({"cpu": "0", "memory": "0", "hugepages-2Mi": "1Gi"}),
                    json!({"cpu": "0", "memory": "0", "hugepages-2Mi": "1Gi"}),
                )]),
                "BestEffort",
            ),
            (
                "init-container",
                json!({"spec": {
                    "containers": [c(list("", ""), list("", ""))],
                    "initContainers": [c(list("10m", "100Mi"), list("100m", "200Mi"))],
                }}),
                "Burstable",
            ),
            // The same amounts written differently are equal.
            ("1 vs 1000m", pod(vec![c(list("1", "1Gi"), list("1000m", "1024Mi"))]), "Guaranteed"),
            ("0.5 vs 500m", pod(vec![c(list("0.5", "1G"), list("500m", "1000M"))]), "Guaranteed"),
            // Requests default to limits.
            ("limits only", pod(vec![json!({"name": "c", "resources": {"limits": list("1", "1Gi")}})]), "Guaranteed"),
            ("no resources", pod(vec![json!({"name": "c"})]), "BestEffort"),
            ("requests only", pod(vec![json!({"name": "c", "resources": {"requests": {"cpu": "1"}}})]), "Burstable"),
        ];
        for (name, pod, want) in cases {
            assert_eq!(qos_class(&pod), want, "{name}");
        }
    }
}
