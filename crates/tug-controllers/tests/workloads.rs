//! ReplicaSets, Deployments, garbage collection and node failure against a real API server (in
//! this process), the real scheduler and hollow nodes: what a user sees through the API.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;
use tug_testkit::eventually;

mod support;

use support::{Cluster, DEADLINE, Setup, is_ready, live_pods, quick_nodes};

fn deployment(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

/// Waits until the Deployment's rollout is complete as `kubectl rollout status` judges it.
async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    eventually("the rollout to complete", DEADLINE, || async {
        let d = api.get(name).await.map_err(|e| e.to_string())?;
        let s = d.status.clone().unwrap_or_default();
        let done = d.metadata.generation <= s.observed_generation
            && s.updated_replicas == Some(replicas)
            && s.replicas == Some(replicas)
            && s.available_replicas == Some(replicas);
        if done { Ok(d) } else { Err(format!("{s:?}")) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_keeps_its_pods_and_replaces_a_deleted_one() {
    let cluster = Cluster::start().await;
    let _nodes = cluster.nodes("rs", 3);
    let deployments: Api<Deployment> = cluster.api();
    let pods: Api<Pod> = cluster.api();
    deployments.create(&PostParams::default(), &deployment("web", 4, "busybox:1", json!({}))).await.expect("created");
    rolled_out(&deployments, "web", 4).await;
    let before = live_pods(&pods, "web").await;
    assert_eq!(before.len(), 4);
    assert!(before.iter().all(|p| p.name_any().starts_with("web-")), "pods are named after their ReplicaSet");
    let victim = before[0].name_any();
    pods.delete(&victim, &DeleteParams::default()).await.expect("deleted");
    eventually("a replacement pod", DEADLINE, || async {
        let now = live_pods(&pods, "web").await;
        let ready = now.iter().filter(|p| is_ready(p)).count();
        if now.len() == 4 && ready == 4 && now.iter().all(|p| p.name_any() != victim) {
            Ok(())
        } else {
            Err(format!("{} pods, {ready} ready", now.len()))
        }
    })
    .await;
    // Scaling down removes pods; the set's status follows.
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}})))
        .await
        .expect("scaled");
    rolled_out(&deployments, "web", 2).await;
    eventually("two pods left", DEADLINE, || async {
        let n = live_pods(&pods, "web").await.len();
        if n == 2 { Ok(()) } else { Err(format!("{n} pods")) }
    })
    .await;
}

/// Pod counts seen during a rollout: the most at once and the fewest ready at once.
#[derive(Debug, Default)]
struct Extremes {
    most_active: usize,
    fewest_ready: usize,
    /// Distinct pods of the new template seen (the watch saw the rollout happen).
    new_pods: std::collections::HashSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_respects_surge_and_unavailability_and_rolls_back() {
    let cluster = Cluster::start().await;
    let _nodes = cluster.nodes("roll", 4);
    let deployments: Api<Deployment> = cluster.api();
    let sets: Api<ReplicaSet> = cluster.api();
    let pods: Api<Pod> = cluster.api();
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    deployments.create(&PostParams::default(), &deployment("roll", 6, "busybox:1", strategy)).await.expect("created");
    rolled_out(&deployments, "roll", 6).await;

    // Watch every pod change during the update and keep the extremes.
    let (extremes_tx, extremes_rx) =
        watch::channel(Extremes { most_active: 0, fewest_ready: usize::MAX, new_pods: Default::default() });
    let watch_pods = pods.clone();
    let watching = tokio::spawn(async move {
        let mut seen: HashMap<String, Pod> = HashMap::new();
        let stream = watcher(watch_pods, watcher::Config::default().labels("app=roll"));
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(event)) = stream.try_next().await {
            match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    seen.insert(p.name_any(), p);
                }
                watcher::Event::Delete(p) => {
                    seen.remove(&p.name_any());
                }
                _ => continue,
            }
            let active: Vec<&Pod> = seen.values().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
            let ready = active.iter().filter(|p| is_ready(p)).count();
            let new_pods: Vec<String> =
                active.iter().filter(|p| image_of(p) == "busybox:2").map(|p| p.name_any()).collect();
            extremes_tx.send_modify(|e| {
                e.new_pods.extend(new_pods);
                e.most_active = e.most_active.max(active.len());
                if active.len() >= 6 || e.fewest_ready != usize::MAX {
                    e.fewest_ready = e.fewest_ready.min(ready);
                }
            });
        }
    });
    let set_image =
        |image: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
    deployments
        .patch("roll", &PatchParams::default(), &Patch::Strategic(set_image("busybox:2")))
        .await
        .expect("updated");
    let d = rolled_out(&deployments, "roll", 6).await;
    assert_eq!(d.annotations().get("deployment.kubernetes.io/revision").map(String::as_str), Some("2"));
    eventually("only new pods", DEADLINE, || async {
        let now = live_pods(&pods, "roll").await;
        if now.len() == 6 && now.iter().all(|p| image_of(p) == "busybox:2") {
            Ok(())
        } else {
            Err(format!("{}", now.len()))
        }
    })
    .await;
    watching.abort();
    let extremes = extremes_rx.borrow();
    assert!(extremes.new_pods.len() >= 6, "the watch saw the new pods come: {extremes:?}");
    assert!(extremes.most_active <= 7, "never more than replicas + maxSurge pods: {extremes:?}");
    assert!(extremes.fewest_ready >= 5, "never fewer than replicas - maxUnavailable ready: {extremes:?}");
    drop(extremes);
    let all_sets = sets.list(&ListParams::default().labels("app=roll")).await.expect("sets");
    assert_eq!(all_sets.items.len(), 2, "one ReplicaSet per template");
    let old = all_sets
        .items
        .iter()
        .find(|s| s.annotations().get("deployment.kubernetes.io/revision").map(String::as_str) == Some("1"));
    assert_eq!(old.and_then(|s| s.spec.as_ref()).and_then(|s| s.replicas), Some(0), "the old set is scaled to zero");

    // Rolling back (what `kubectl rollout undo` does: the old template again): the old set
    // becomes the new one with the next revision.
    deployments
        .patch("roll", &PatchParams::default(), &Patch::Strategic(set_image("busybox:1")))
        .await
        .expect("undone");
    let d = rolled_out(&deployments, "roll", 6).await;
    assert_eq!(d.annotations().get("deployment.kubernetes.io/revision").map(String::as_str), Some("3"));
    assert_eq!(
        sets.list(&ListParams::default().labels("app=roll")).await.expect("sets").items.len(),
        2,
        "no third set"
    );
    eventually("the old template's pods back", DEADLINE, || async {
        let now = live_pods(&pods, "roll").await;
        if now.len() == 6 && now.iter().all(|p| image_of(p) == "busybox:1") {
            Ok(())
        } else {
            Err(format!("{}", now.len()))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_a_rollout_and_a_stuck_rollout_reports_its_deadline() {
    let cluster = Cluster::start().await;
    let _nodes = cluster.nodes("pause", 2);
    let deployments: Api<Deployment> = cluster.api();
    let sets: Api<ReplicaSet> = cluster.api();
    deployments.create(&PostParams::default(), &deployment("held", 2, "busybox:1", json!({}))).await.expect("created");
    rolled_out(&deployments, "held", 2).await;
    deployments
        .patch("held", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": true}})))
        .await
        .expect("paused");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}});
    let changed = deployments.patch("held", &PatchParams::default(), &Patch::Strategic(patch)).await.expect("changed");
    let generation = changed.metadata.generation;
    // Once the controller has seen the change, it says it is paused and has made no new set.
    eventually("the paused condition", DEADLINE, || async {
        let d = deployments.get("held").await.map_err(|e| e.to_string())?;
        let s = d.status.unwrap_or_default();
        let paused = s
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"));
        if paused && s.observed_generation >= generation { Ok(()) } else { Err(format!("{:?}", s.conditions)) }
    })
    .await;
    assert_eq!(
        sets.list(&ListParams::default().labels("app=held")).await.expect("sets").items.len(),
        1,
        "no rollout while paused"
    );
    deployments
        .patch("held", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": false}})))
        .await
        .expect("resumed");
    rolled_out(&deployments, "held", 2).await;
    assert_eq!(sets.list(&ListParams::default().labels("app=held")).await.expect("sets").items.len(), 2);

    // A template no node can run: the rollout stalls and says so after its deadline.
    let mut stuck = deployment("stuck", 1, "busybox:1", json!({}));
    let spec = stuck.spec.as_mut().expect("spec");
    spec.progress_deadline_seconds = Some(2);
    spec.template.spec.as_mut().expect("pod spec").node_selector =
        Some(BTreeMap::from([("nowhere".into(), "true".into())]));
    deployments.create(&PostParams::default(), &stuck).await.expect("created");
    eventually("ProgressDeadlineExceeded", DEADLINE, || async {
        let d = deployments.get("stuck").await.map_err(|e| e.to_string())?;
        let conditions = d.status.and_then(|s| s.conditions).unwrap_or_default();
        let exceeded = conditions.iter().any(|c| {
            c.type_ == "Progressing" && c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        });
        if exceeded { Ok(()) } else { Err(format!("{conditions:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_propagates_in_the_background_in_the_foreground_or_not_at_all() {
    let cluster = Cluster::start().await;
    let _nodes = cluster.nodes("gc", 2);
    let deployments: Api<Deployment> = cluster.api();
    let sets: Api<ReplicaSet> = cluster.api();
    let pods: Api<Pod> = cluster.api();
    for name in ["bg", "fg", "orphans"] {
        deployments
            .create(&PostParams::default(), &deployment(name, 2, "busybox:1", json!({})))
            .await
            .expect("created");
    }
    for name in ["bg", "fg", "orphans"] {
        rolled_out(&deployments, name, 2).await;
    }
    let gone = |app: &'static str| {
        let (sets, pods) = (sets.clone(), pods.clone());
        async move {
            let s = sets.list(&ListParams::default().labels(&format!("app={app}"))).await.map_err(|e| e.to_string())?;
            let p = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.map_err(|e| e.to_string())?;
            if s.items.is_empty() && p.items.is_empty() {
                Ok(())
            } else {
                Err(format!("{} sets, {} pods", s.items.len(), p.items.len()))
            }
        }
    };
    deployments.delete("bg", &DeleteParams::background()).await.expect("deleted");
    eventually("background deletion of sets and pods", DEADLINE, || gone("bg")).await;

    let deleting = deployments.delete("fg", &DeleteParams::foreground()).await.expect("deleted");
    let deleting = deleting.left().expect("a foreground deletion returns the object, still there");
    assert!(deleting.finalizers().iter().any(|f| f == "foregroundDeletion"));
    eventually("foreground deletion", DEADLINE, || async {
        gone("fg").await?;
        match deployments.get_opt("fg").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("the deployment is still there".into()),
        }
    })
    .await;

    // Orphaning the ReplicaSet leaves its pods, without an owner.
    let set = sets.list(&ListParams::default().labels("app=orphans")).await.expect("sets").items.remove(0);
    deployments.delete("orphans", &DeleteParams::orphan()).await.expect("deleted");
    eventually("the set orphaned", DEADLINE, || async {
        let s = sets.get(&set.name_any()).await.map_err(|e| e.to_string())?;
        if s.owner_references().is_empty() { Ok(()) } else { Err(format!("{:?}", s.owner_references())) }
    })
    .await;
    sets.delete(&set.name_any(), &DeleteParams::orphan()).await.expect("deleted");
    eventually("pods orphaned, not deleted", DEADLINE, || async {
        let p = live_pods(&pods, "orphans").await;
        let owned = p.iter().filter(|p| !p.owner_references().is_empty()).count();
        let set_gone = sets.get_opt(&set.name_any()).await.map_err(|e| e.to_string())?.is_none();
        if p.len() == 2 && owned == 0 && set_gone { Ok(()) } else { Err(format!("{} pods, {owned} owned", p.len())) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_stopped_node_come_back_elsewhere() {
    // Node grace and default toleration short (20 s and 10 s in production).
    let node_grace = Duration::from_secs(2);
    let setup = Setup { node_grace: Some(node_grace), default_toleration_seconds: Some(1), ..Setup::default() };
    let cluster = Cluster::start_with(setup).await;
    let doomed = cluster.nodes("doomed", 1);
    let deployments: Api<Deployment> = cluster.api();
    let pods: Api<Pod> = cluster.api();
    deployments
        .create(&PostParams::default(), &deployment("survivor", 3, "busybox:1", json!({})))
        .await
        .expect("created");
    rolled_out(&deployments, "survivor", 3).await;
    let _healthy = cluster.nodes("healthy", 1);
    let started = tokio::time::Instant::now();
    doomed.stop();
    eventually("three ready pods on the healthy node", DEADLINE, || async {
        let now = live_pods(&pods, "survivor").await;
        let moved = now
            .iter()
            .filter(|p| is_ready(p) && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("healthy-0"))
            .count();
        if moved == 3 { Ok(()) } else { Err(format!("{moved} moved of {}", now.len())) }
    })
    .await;
    let took = started.elapsed();
    // The grace counts from the node's last renewal, at most one lease interval before it died.
    let lease_interval = quick_nodes().lease_interval;
    assert!(took >= node_grace - lease_interval, "not before the node's grace ran out ({took:?})");
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node = nodes.get("doomed-0").await.expect("node");
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(taints.iter().any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"), "{taints:?}");
    let ready = node.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status).as_deref(), Some("Unknown"));

    // The node comes back: its lease is renewed again, so it is Ready and untainted.
    let _back = cluster.nodes("doomed", 1);
    eventually("the node back without its taints", DEADLINE, || async {
        let node = nodes.get("doomed-0").await.map_err(|e| e.to_string())?;
        let tainted = node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.key.starts_with("node.kubernetes.io/"));
        let ready = node.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "Ready");
        let ready = ready.map(|c| c.status).unwrap_or_default();
        if !tainted && ready == "True" { Ok(()) } else { Err(format!("tainted {tainted}, ready {ready}")) }
    })
    .await;
}
