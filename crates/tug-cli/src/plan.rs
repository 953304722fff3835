//! `tug plan -f FILE`: where the pods of a manifest would land on the cluster as it is now, and
//! which cannot be placed and why — without changing anything (Nomad's `job plan`).
//!
//! The pure part expands workloads into the pods their controllers would create and places them
//! one by one on a snapshot with the scheduler's own core, each placement counting for the next.
//! The IO part reads the file and the cluster's nodes and placed pods.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tug_scheduler::core::{Diagnosis, NodeInfo, PodInfo, Scope, Snapshot, Strategy, schedule_with};

/// One pod a manifest would create, with the workload it belongs to.
#[derive(Debug, Clone)]
pub struct PlannedPod {
    /// `deployment/web`, `pod/p`, ...
    pub owner: String,
    pub pod: Pod,
}

/// Where one pod would go.
#[derive(Debug, Clone)]
pub struct Placement {
    pub owner: String,
    pub pod: String,
    pub result: Result<String, Diagnosis>,
}

/// The pods the objects' controllers would create. DaemonSets get one pod per node, pinned to
/// it as the DaemonSet controller does; kinds that make no pods are skipped.
pub fn expand(objects: &[Value], node_names: &[String]) -> Result<Vec<PlannedPod>, String> {
    let mut out = Vec::new();
    for obj in objects {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("unnamed");
        let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
        let owner = format!("{}/{name}", kind.to_lowercase());
        let replicas = |default: i64| obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(default);
        let (template, copies): (Option<&Value>, Vec<Option<String>>) = match kind {
            "Pod" => {
                let pod =
                    pod_from(obj.get("metadata").cloned().unwrap_or(json!({})), obj.get("spec"), namespace, name)?;
                out.push(PlannedPod { owner, pod });
                continue;
            }
            "Deployment" | "ReplicaSet" | "StatefulSet" => {
                (obj.pointer("/spec/template"), (0..replicas(1)).map(|_| None).collect())
            }
            "Job" => {
                let parallelism = obj.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1);
                let completions = obj.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(parallelism);
                (obj.pointer("/spec/template"), (0..parallelism.min(completions)).map(|_| None).collect())
            }
            "DaemonSet" => (obj.pointer("/spec/template"), node_names.iter().cloned().map(Some).collect()),
            _ => continue,
        };
        let template = template.ok_or_else(|| format!("{owner} has no spec.template"))?;
        for (i, node) in copies.into_iter().enumerate() {
            let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
            meta["name"] = json!(format!("{name}-{i}"));
            let mut pod = pod_from(meta, template.get("spec"), namespace, &format!("{name}-{i}"))?;
            if let (Some(node), Some(spec)) = (node, pod.spec.as_mut()) {
                spec.node_name = Some(node);
            }
            out.push(PlannedPod { owner: owner.clone(), pod });
        }
    }
    Ok(out)
}

fn pod_from(mut metadata: Value, spec: Option<&Value>, namespace: &str, name: &str) -> Result<Pod, String> {
    metadata["namespace"] = json!(namespace);
    // A stable made-up uid, so the snapshot can tell the planned pods apart.
    metadata["uid"] = json!(format!("plan-{namespace}-{name}"));
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec.cloned().unwrap_or(json!({}))}),
    )
    .map_err(|e| format!("pod template of {name} is not a valid pod: {e}"))
}

/// Places the pods one by one, each placement counting for the next.
pub fn plan(pods: &[PlannedPod], snapshot: &mut Snapshot, strategy: Strategy) -> Vec<Placement> {
    pods.iter()
        .map(|p| {
            let info = PodInfo::from_pod(&p.pod);
            let result = schedule_with(&info, snapshot, strategy, Scope::for_strategy(strategy));
            if let Ok(node) = &result {
                snapshot.add_pod(node, &info);
            }
            let pod = p.pod.metadata.name.clone().unwrap_or_default();
            Placement { owner: p.owner.clone(), pod, result }
        })
        .collect()
}

/// The report: per workload, how many pods land on which nodes, then what cannot be placed.
pub fn render(placements: &[Placement]) -> String {
    let mut owners: Vec<&str> = Vec::new();
    for p in placements {
        if !owners.contains(&p.owner.as_str()) {
            owners.push(&p.owner);
        }
    }
    let mut out = String::new();
    for owner in owners {
        let mine: Vec<&Placement> = placements.iter().filter(|p| p.owner == owner).collect();
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        for p in &mine {
            match &p.result {
                Ok(node) => *per_node.entry(node.as_str()).or_default() += 1,
                Err(d) => *failures.entry(d.to_string()).or_default() += 1,
            }
        }
        let placed: usize = per_node.values().sum();
        let nodes: Vec<String> = per_node.iter().map(|(n, c)| format!("{n} ({c})")).collect();
        let _ = writeln!(
            out,
            "{owner}: {placed} of {} pods can be placed{}{}",
            mine.len(),
            if nodes.is_empty() { "" } else { " on " },
            nodes.join(", ")
        );
        for (why, n) in failures {
            let _ = writeln!(out, "  {n} cannot be placed: {why}");
        }
    }
    if placements.is_empty() {
        out.push_str("the file holds no pods or workloads that create pods\n");
    }
    out
}

/// Reads `file` and the cluster, and returns the report and whether every pod can be placed.
pub async fn run(client: kube::Client, file: &str, strategy: Strategy) -> Result<(String, bool), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let objects: Vec<Value> = serde_saphyr::from_multiple::<Value>(&text)
        .map_err(|e| format!("{file} is not valid YAML: {e}"))?
        .into_iter()
        .filter(|v| !v.is_null())
        .collect();
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list nodes: {e}"))?;
    let placed = Api::<Pod>::all(client)
        .list(&ListParams::default().fields("spec.nodeName!="))
        .await
        .map_err(|e| format!("cannot list pods: {e}"))?;
    let mut snapshot = Snapshot::new();
    for node in &nodes {
        snapshot.upsert_node(NodeInfo::from_node(node));
    }
    for pod in &placed {
        let terminal = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        if let (false, Some(node)) = (terminal, pod.spec.as_ref().and_then(|s| s.node_name.as_deref())) {
            snapshot.add_pod(node, &PodInfo::from_pod(pod));
        }
    }
    let node_names: Vec<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
    let pods = expand(&objects, &node_names)?;
    let placements = plan(&pods, &mut snapshot, strategy);
    let all_placed = placements.iter().all(|p| p.result.is_ok());
    Ok((render(&placements), all_placed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .unwrap()
    }

    fn snapshot(nodes: &[Node]) -> Snapshot {
        let mut s = Snapshot::new();
        for n in nodes {
            s.upsert_node(NodeInfo::from_node(n));
        }
        s
    }

    fn deployment(name: &str, replicas: i64, cpu: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}}},
        })
    }

    #[test]
    fn workloads_expand_into_the_pods_their_controllers_make() {
        let objects = vec![
            deployment("web", 3, "100m"),
            json!({"kind": "Job", "metadata": {"name": "j"}, "spec": {"parallelism": 2, "completions": 5, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            json!({"kind": "DaemonSet", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "ignored"}}),
        ];
        let pods = expand(&objects, &["n1".into(), "n2".into()]).unwrap();
        let owners: Vec<&str> = pods.iter().map(|p| p.owner.as_str()).collect();
        assert_eq!(
            owners,
            ["deployment/web", "deployment/web", "deployment/web", "job/j", "job/j", "daemonset/d", "daemonset/d"]
        );
        let pinned: Vec<Option<String>> =
            pods[5..].iter().map(|p| p.pod.spec.as_ref().unwrap().node_name.clone()).collect();
        assert_eq!(pinned, [Some("n1".to_string()), Some("n2".to_string())]);
    }

    #[test]
    fn placements_count_for_the_next_and_failures_say_why() {
        let mut snap = snapshot(&[node("a", "1"), node("b", "1")]);
        let pods = expand(&[deployment("big", 3, "800m")], &[]).unwrap();
        let placements = plan(&pods, &mut snap, Strategy::Spread);
        let placed: Vec<bool> = placements.iter().map(|p| p.result.is_ok()).collect();
        assert_eq!(placed, [true, true, false], "two nodes of 1 CPU hold two 800m pods, not three");
        let report = render(&placements);
        assert!(report.contains("deployment/big: 2 of 3 pods can be placed on a (1), b (1)"), "{report}");
        assert!(report.contains("1 cannot be placed: 0/2 nodes are available: 2 Insufficient cpu."), "{report}");
    }

    #[test]
    fn nothing_to_place_is_said() {
        assert!(render(&[]).contains("no pods"));
    }
}
