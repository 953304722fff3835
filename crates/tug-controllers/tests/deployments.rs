//! Deployment strategies against a real API server (in this process), the real scheduler and
//! hollow nodes: the order in which a user sees old and new pods come and go.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tug_sim::SimOptions;
use tug_testkit::eventually;

mod support;

use support::{Cluster, DEADLINE, is_ready, quick_nodes, record_pods};

const HASH: &str = "pod-template-hash";

fn deployment(strategy: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "strategy": {"type": strategy},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

/// Waits until the Deployment runs `replicas` ready pods of one template and says so; returns
/// that template's hash.
async fn rolled_out(deployments: &Api<Deployment>, pods: &Api<Pod>, image: &str) -> String {
    eventually(&format!("three ready pods of {image}"), DEADLINE, || async {
        let all = pods.list(&ListParams::default().labels("app=web")).await.map_err(|e| e.to_string())?;
        let of_image: Vec<&Pod> = all
            .items
            .iter()
            .filter(|p| p.spec.as_ref().is_some_and(|s| s.containers[0].image.as_deref() == Some(image)))
            .collect();
        let status = deployments.get("web").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let settled = status.updated_replicas == Some(3) && status.available_replicas == Some(3);
        match of_image.first() {
            Some(pod) if all.items.len() == 3 && of_image.iter().all(|p| is_ready(p)) && settled => {
                Ok(pod.metadata.labels.as_ref().and_then(|l| l.get(HASH)).cloned().unwrap_or_default())
            }
            _ => Err(format!("{} pods, {} of {image}, status {status:?}", all.items.len(), of_image.len())),
        }
    })
    .await
}

/// `Recreate`: every pod of the old template is gone before the first pod of the new one is
/// created (Kubernetes' guarantee; a rolling update overlaps them). The nodes take half a second
/// to delete a pod, so creating new pods as soon as the old ones are *deleting* would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_the_old_pods_before_it_creates_new_ones() {
    let cluster = Cluster::start().await;
    cluster.nodes_with(SimOptions {
        nodes: 2,
        name_prefix: "recreate".into(),
        delete_delay: Duration::from_millis(500),
        ..quick_nodes()
    });
    let (deployments, pods) = (cluster.api::<Deployment>(), cluster.api::<Pod>());
    deployments.create(&PostParams::default(), &deployment("Recreate", "nginx:1")).await.expect("create");
    let old = rolled_out(&deployments, &pods, "nginx:1").await;

    let log = record_pods(&cluster);
    eventually("the watch to list the running pods", DEADLINE, || async {
        let seen = log.lock().expect("log lock").len();
        if seen >= 3 { Ok(()) } else { Err(format!("{seen} pods seen")) }
    })
    .await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("patch");
    let new = rolled_out(&deployments, &pods, "nginx:2").await;
    assert_ne!(old, new, "a new template makes a new ReplicaSet");

    let log = log.lock().expect("log lock").clone();
    let of = |hash: &str| {
        let hash = hash.to_string();
        move |s: &support::Seen| s.labels.get(HASH) == Some(&hash)
    };
    let first_new = log.iter().position(of(&new)).expect("the new pods were seen");
    let old_gone: Vec<&str> =
        log[..first_new].iter().filter(|s| of(&old)(s) && s.gone).map(|s| s.name.as_str()).collect();
    assert_eq!(old_gone.len(), 3, "all three old pods gone before the first new one; the log: {log:#?}");
    assert!(!log[first_new..].iter().any(of(&old)), "no old pod after the first new one; the log: {log:#?}");
}
