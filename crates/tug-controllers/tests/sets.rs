//! StatefulSets and DaemonSets against a real API server (in this process), the real scheduler
//! and hollow nodes: what a user sees through the API — pod names and their order, claims,
//! one pod per node, and the status fields kubectl reads.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Taint};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tug_testkit::eventually;

mod support;

use support::{Cluster, DEADLINE, first, is_ready, live_pods, record_pods};

fn stateful_set(replicas: i32, image: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .expect("a valid StatefulSet")
}

/// Waits until exactly the pods `names` of the set exist, all Running and Ready, and the status
/// says so; returns the set.
async fn settled(sets: &Api<StatefulSet>, pods: &Api<Pod>, names: &[&str]) -> StatefulSet {
    let want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let replicas = i32::try_from(names.len()).expect("few pods");
    eventually(&format!("pods {names:?} Running and Ready"), DEADLINE, || async {
        let all = pods.list(&ListParams::default().labels("app=web")).await.map_err(|e| e.to_string())?;
        let mut have: Vec<String> = all.items.iter().map(ResourceExt::name_any).collect();
        have.sort();
        let ready = all.items.iter().filter(|p| is_ready(p)).count();
        let set = sets.get("web").await.map_err(|e| e.to_string())?;
        let status = set.status.clone().unwrap_or_default();
        let counted = status.replicas == replicas && status.ready_replicas.unwrap_or(0) == replicas;
        if have == want && ready == names.len() && counted {
            Ok(set)
        } else {
            Err(format!("pods {have:?} ({ready} ready), status {status:?}"))
        }
    })
    .await
}

async fn claim_names(client: &Client) -> Vec<String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let mut names: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .expect("claims list")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_creates_scales_and_updates_pods_in_ordinal_order() {
    let cluster = Cluster::start().await;
    cluster.nodes("sts", 3);
    let log = record_pods(&cluster);
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    sets.create(&PostParams::default(), &stateful_set(3, "nginx:1")).await.expect("created");

    // Created one by one, each only after the one before it is Running and Ready.
    let set = settled(&sets, &pods, &["web-0", "web-1", "web-2"]).await;
    {
        let log = log.lock().expect("log lock");
        for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
            let ready = first(&log, 0, |s| s.name == before && s.ready).expect("ready seen");
            let created = first(&log, 0, |s| s.name == after).expect("creation seen");
            assert!(ready < created, "{after} was created before {before} was Ready: {log:?}");
        }
    }
    assert_eq!(claim_names(&cluster.client).await, ["www-web-0", "www-web-1", "www-web-2"]);
    let pod = pods.get("web-1").await.expect("web-1");
    let labels = pod.labels();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-1"), Some("web")));
    let volume = spec.volumes.iter().flatten().find(|v| v.name == "www").expect("the claim's volume");
    assert_eq!(volume.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()), Some("www-web-1"));
    let status = set.status.expect("status");
    assert_eq!(status.available_replicas, Some(3));
    assert!(status.current_revision.is_some());
    assert_eq!(status.current_revision, status.update_revision);

    // Scaled down from the highest ordinal, one at a time; the claims stay.
    let mark = log.lock().expect("log lock").len();
    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}})))
        .await
        .expect("scaled down");
    settled(&sets, &pods, &["web-0"]).await;
    {
        let log = log.lock().expect("log lock");
        let web2_gone = first(&log, mark, |s| s.name == "web-2" && s.gone).expect("web-2 deletion seen");
        let web1_going = first(&log, mark, |s| s.name == "web-1" && s.deleting).expect("web-1 deletion seen");
        assert!(web2_gone < web1_going, "web-1 went before web-2 was gone: {:?}", &log[mark..]);
    }
    assert_eq!(claim_names(&cluster.client).await, ["www-web-0", "www-web-1", "www-web-2"]);

    // Back to three (the pods find their claims again), then a template change rolls from the
    // highest ordinal down.
    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .expect("scaled up");
    let old_revision = settled(&sets, &pods, &["web-0", "web-1", "web-2"]).await.status.and_then(|s| s.update_revision);
    assert_eq!(claim_names(&cluster.client).await, ["www-web-0", "www-web-1", "www-web-2"]);
    let mark = log.lock().expect("log lock").len();
    let template = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}}});
    let updated = sets.patch("web", &PatchParams::default(), &Patch::Merge(template)).await.expect("updated");
    let set = eventually("the rolling update to complete", DEADLINE, || async {
        let set = sets.get("web").await.map_err(|e| e.to_string())?;
        let s = set.status.clone().unwrap_or_default();
        let images: Vec<String> = live_pods(&pods, "web")
            .await
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|p| p.spec.as_ref()?.containers.first()?.image.clone())
            .collect();
        let done = s.observed_generation == updated.metadata.generation
            && s.updated_replicas == Some(3)
            && s.ready_replicas == Some(3)
            && s.current_revision == s.update_revision
            && images == ["nginx:2"; 3];
        if done { Ok(set) } else { Err(format!("images {images:?}, status {s:?}")) }
    })
    .await;
    {
        let log = log.lock().expect("log lock");
        let order: Vec<&str> = ["web-0", "web-1", "web-2"]
            .iter()
            .map(|n| (first(&log, mark, |s| s.name == *n && s.deleting).expect("each pod replaced"), *n))
            .collect::<BTreeMap<_, _>>()
            .into_values()
            .collect();
        assert_eq!(order, ["web-2", "web-1", "web-0"], "replaced from the highest ordinal down");
    }
    let status = set.status.expect("status");
    assert_eq!((status.replicas, status.current_replicas, status.available_replicas), (3, Some(3), Some(3)));
    let revision = status.update_revision.expect("updateRevision");
    for pod in live_pods(&pods, "web").await {
        assert_eq!(pod.labels()["controller-revision-hash"], revision, "{} at the new revision", pod.name_any());
    }
    assert_ne!(Some(revision), old_revision, "a new revision");
}

fn daemon_set() -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "main", "image": "agent:1"}]}
            }
        }
    }))
    .expect("a valid DaemonSet")
}

/// Waits until the set has exactly one Running and Ready pod on each of `nodes` and none
/// elsewhere, and its status counts them; returns the pods.
async fn one_pod_per_node(client: &Client, nodes: &[&str]) -> Vec<Pod> {
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let want: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    let count = i32::try_from(nodes.len()).expect("few nodes");
    eventually(&format!("one ready pod on each of {nodes:?}"), DEADLINE, || async {
        let live = live_pods(&pods, "agent").await;
        let mut placed: Vec<String> =
            live.iter().filter(|p| is_ready(p)).filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
        placed.sort();
        let status = sets.get("agent").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let counted = status.desired_number_scheduled == count
            && status.current_number_scheduled == count
            && status.number_ready == count
            && status.number_available == Some(count)
            && status.updated_number_scheduled == Some(count)
            && status.number_misscheduled == 0;
        if placed == want && live.len() == nodes.len() && counted {
            Ok(live)
        } else {
            Err(format!("pods on {placed:?} ({} live), status {status:?}", live.len()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_one_pod_on_every_node_it_tolerates() {
    let cluster = Cluster::start().await;
    cluster.nodes("ds", 3);
    let taint =
        Taint { key: "dedicated".into(), value: Some("infra".into()), effect: "NoSchedule".into(), ..Taint::default() };
    cluster.tainted_nodes("infra", 1, vec![taint]);
    let sets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    sets.create(&PostParams::default(), &daemon_set()).await.expect("created");
    let pods = one_pod_per_node(&cluster.client, &["ds-0", "ds-1", "ds-2"]).await;
    assert!(pods.iter().all(|p| p.name_any().starts_with("agent-")), "pods are named after their set");

    // A node joining gets its pod; the tainted node still gets none.
    cluster.nodes("late", 1);
    let pods = one_pod_per_node(&cluster.client, &["ds-0", "ds-1", "ds-2", "late-0"]).await;

    // The events name the pods the server created, not the generateName prefix.
    let names: BTreeSet<String> = pods.iter().map(ResourceExt::name_any).collect();
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    eventually("a SuccessfulCreate event per pod", DEADLINE, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let created: BTreeSet<String> = list
            .items
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("SuccessfulCreate") && e.involved_object.name.as_deref() == Some("agent")
            })
            .filter_map(|e| e.message.as_deref()?.strip_prefix("Created pod: ").map(str::to_string))
            .collect();
        if created == names { Ok(()) } else { Err(format!("events name {created:?}, pods are {names:?}")) }
    })
    .await;
}
