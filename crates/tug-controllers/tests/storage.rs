//! PersistentVolumeClaims on local disks against a real API server (in this process), the real
//! scheduler, the controllers and hollow nodes: a claim of the default class is provisioned on
//! the node its first pod is scheduled to, later pods follow the volume there, a pod with a
//! missing claim says so, and deleting the claim deletes its volume.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tug_controllers::localpath;
use tug_testkit::eventually;

mod support;

use support::{Cluster, DEADLINE};

fn pod_using(name: &str, claim: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "app", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }))
    .expect("a valid pod")
}

/// Creates the pod and waits until it is bound; returns its node.
async fn scheduled(pods: &Api<Pod>, pod: &Pod) -> String {
    pods.create(&PostParams::default(), pod).await.expect("the pod is created");
    let name = pod.metadata.name.clone().unwrap_or_default();
    eventually(&format!("pod {name} scheduled"), DEADLINE, || async {
        let pod = pods.get(&name).await.map_err(|e| e.to_string())?;
        pod.spec.and_then(|s| s.node_name).ok_or_else(|| format!("status {:?}", pod.status))
    })
    .await
}

async fn delete_and_wait(pods: &Api<Pod>, name: &str) {
    pods.delete(name, &DeleteParams::default()).await.expect("the pod is deleted");
    eventually(&format!("pod {name} gone"), DEADLINE, || async {
        match pods.get_opt(name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(p) => Err(format!("still there, deleting since {:?}", p.metadata.deletion_timestamp)),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_provisioned_where_its_pod_runs_and_keeps_it_there() {
    let cluster = Cluster::start().await;
    cluster.nodes("disk", 3);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(cluster.client.clone());
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");

    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }))
    .expect("a valid claim");
    let claim = claims.create(&PostParams::default(), &claim).await.expect("the claim is created");
    let class = claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref());
    assert_eq!(class, Some("local-path"), "the default class is filled in");
    let uid = claim.metadata.uid.clone().expect("a uid");

    let node = scheduled(&pods, &pod_using("app", "data")).await;
    let volume_name = format!("pvc-{uid}");
    let claim = eventually("the claim Bound", DEADLINE, || async {
        let claim = claims.get("data").await.map_err(|e| e.to_string())?;
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Bound") { Ok(claim) } else { Err(format!("{:?} {:?}", claim.metadata, claim.status)) }
    })
    .await;
    let spec = claim.spec.clone().unwrap_or_default();
    assert_eq!(spec.volume_name.as_deref(), Some(volume_name.as_str()));
    let status = claim.status.clone().unwrap_or_default();
    assert_eq!(status.capacity.and_then(|c| c.get("storage").cloned()).map(|q| q.0), Some("2Gi".to_string()));
    let annotations = claim.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("volume.kubernetes.io/selected-node"), Some(&node));
    assert_eq!(annotations.get("pv.kubernetes.io/bind-completed").map(String::as_str), Some("yes"));

    let volume = volumes.get(&volume_name).await.expect("the volume exists");
    let v = serde_json::to_value(&volume).expect("json");
    assert_eq!(
        v["spec"]["hostPath"],
        json!({"path": format!("/var/lib/tugboat/storage/pvc-{uid}_default_data"), "type": "DirectoryOrCreate"})
    );
    assert_eq!(
        v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!([node])
    );
    assert_eq!(v["spec"]["claimRef"]["name"], "data");
    assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(v["status"]["phase"], "Bound");

    // The volume stays on its node: a new pod using the claim goes there, though two other
    // nodes are empty.
    for round in 0..2 {
        delete_and_wait(&pods, "app").await;
        let again = scheduled(&pods, &pod_using("app", "data")).await;
        assert_eq!(again, node, "round {round}: the pod follows its volume");
    }

    // A pod whose claim does not exist waits and says why.
    pods.create(&PostParams::default(), &pod_using("lost", "missing")).await.expect("the pod is created");
    let message = eventually("the pod unschedulable", DEADLINE, || async {
        let pod = pods.get("lost").await.map_err(|e| e.to_string())?;
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled");
        match scheduled {
            Some(c) if c.status == "False" => Ok(c.message.clone().unwrap_or_default()),
            _ => Err(format!("conditions {conditions:?}")),
        }
    })
    .await;
    assert!(message.contains("persistentvolumeclaim \"missing\" not found"), "{message}");

    // Deleting the claim deletes its volume (reclaim policy Delete); hollow nodes have no disk
    // to clean, so the volume waits for its node's agent to remove the data (the real agent's
    // side is tested in crates/tug/tests/node_agent.rs).
    // While a pod uses the claim, deleting it only marks it (pvc-protection).
    claims.delete("data", &DeleteParams::default()).await.expect("the claim is deleted");
    let kept = claims.get("data").await.expect("a claim in use stays");
    assert!(kept.metadata.deletion_timestamp.is_some(), "and is Terminating");
    assert_eq!(volumes.get(&volume_name).await.expect("its volume stays").metadata.deletion_timestamp, None);
    delete_and_wait(&pods, "app").await;
    eventually("the volume deleted, waiting for its data to be removed", DEADLINE, || async {
        let volume = volumes.get_opt(&volume_name).await.map_err(|e| e.to_string())?.ok_or("the volume is gone")?;
        let finalizers = volume.metadata.finalizers.unwrap_or_default();
        match volume.metadata.deletion_timestamp {
            Some(_) if finalizers == [localpath::CLEANUP_FINALIZER] => Ok(()),
            _ => Err(format!("not deleting yet, or other finalizers: {finalizers:?}")),
        }
    })
    .await;
}
