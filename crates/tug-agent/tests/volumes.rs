//! Pod volumes on a real agent (in-process API server, scheduler, controllers; a managed
//! containerd): ConfigMap, Secret, downward-API, emptyDir (disk and memory) and hostPath volumes
//! reach the containers, a changed ConfigMap reaches the files of a running pod, a pod whose
//! volumes cannot be set up waits in ContainerCreating saying why and starts once they can, a
//! claim's data outlives its pod, and a deleted pod leaves nothing mounted. Containers report
//! what they see by writing into a hostPath directory the test reads. Needs root.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Agent, Cluster, DEADLINE, Host, delete_pods_and_wait, mounts_under, node_ready};
use tug_apiserver::server::ServerConfig;
use tug_testkit::eventually;

const IMAGE: &str = "localhost/busybox:latest";

/// A directory of the host for a test's hostPath volumes.
fn out_dir(host: &Host, name: &str) -> PathBuf {
    host.data_dir().join("host").join(name)
}

fn object<T: k8s_openapi::serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// A busybox container running `script` with `mounts`.
fn container(name: &str, script: &str, mounts: Value) -> Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", script], "volumeMounts": mounts})
}

fn pod(name: &str, labels: Value, volumes: Value, containers: Value, restart: &str) -> Pod {
    object(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": restart, "volumes": volumes, "containers": containers},
    }))
}

/// The content of `path` once it exists and satisfies `ok`.
async fn file_content(path: &Path, ok: impl Fn(&str) -> bool) -> String {
    eventually(&format!("{} to be written", path.display()), DEADLINE, || async {
        match std::fs::read_to_string(path) {
            Ok(text) if ok(&text) => Ok(text),
            Ok(text) => Err(format!("content {text:?}")),
            Err(error) => Err(error.to_string()),
        }
    })
    .await
}

async fn pod_phase(pods: &Api<Pod>, name: &str, phase: &str) -> Pod {
    eventually(&format!("pod {name} to be {phase}"), DEADLINE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let status = pod.status.clone().unwrap_or_default();
        if status.phase.as_deref() == Some(phase) { Ok(pod) } else { Err(format!("{status:?}")) }
    })
    .await
}

/// The waiting reason and message of the pod's first container once its message has `text`.
async fn waiting_with(pods: &Api<Pod>, name: &str, text: &str) -> (String, String) {
    eventually(&format!("pod {name} to wait with {text:?}"), DEADLINE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        let waiting = statuses.first().and_then(|c| c.state.as_ref()).and_then(|s| s.waiting.clone());
        match waiting {
            Some(w) if w.message.as_deref().is_some_and(|m| m.contains(text)) => {
                Ok((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
            }
            _ => Err(format!("{:?}", pod.status)),
        }
    })
    .await
}

/// Deletes the pods and waits until they and their sandboxes are gone.
const WRITER: &str = r#"
put() { cat "$1" > "/out/$2.tmp" && mv "/out/$2.tmp" "/out/$2"; }
echo hello > /shared/greeting
stat -L -c %a /secret/password > /out/secret-mode
put /secret/password secret
put /info/labels labels
put /info/annotations annotations
put /proc/mounts mounts
while true; do put /config/greeting config; sleep 0.1; done
"#;

const READER: &str = r#"
while true; do
  [ -f /shared/greeting ] && cat /shared/greeting > /out/shared.tmp && mv /out/shared.tmp /out/shared
  sleep 0.2
done
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_volumes_reach_containers_follow_config_map_changes_and_leave_nothing_mounted() {
    let cluster = Cluster::start_with(ServerConfig::local).await;
    let (mut host, options) = Host::named("tugv", 215);
    let agent = Agent::start(&cluster.client, &options);
    node_ready(&cluster.client, &options.node_name).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let settings = object(json!({"metadata": {"name": "settings"}, "data": {"greeting": "v1"}}));
    config_maps.create(&PostParams::default(), &settings).await.expect("ConfigMap created");
    let creds = object(json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}}));
    secrets.create(&PostParams::default(), &creds).await.expect("Secret created");

    let out = out_dir(&host, "files");
    let volumes = json!([
        {"name": "config", "configMap": {"name": "settings"}},
        {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        ]}},
        {"name": "shared", "emptyDir": {}},
        {"name": "memory", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "out", "hostPath": {"path": out, "type": "DirectoryOrCreate"}},
    ]);
    let writer_mounts = json!([
        {"name": "config", "mountPath": "/config"},
        {"name": "secret", "mountPath": "/secret"},
        {"name": "info", "mountPath": "/info"},
        {"name": "shared", "mountPath": "/shared"},
        {"name": "memory", "mountPath": "/memory"},
        {"name": "out", "mountPath": "/out"},
    ]);
    let reader_mounts = json!([
        {"name": "shared", "mountPath": "/shared", "readOnly": true},
        {"name": "out", "mountPath": "/out"},
    ]);
    let containers = json!([container("writer", WRITER, writer_mounts), container("reader", READER, reader_mounts)]);
    let mut files = pod("files", json!({"app": "files", "tier": "back-end"}), volumes, containers, "Always");
    files.metadata.annotations = Some([("note".to_string(), "say \"hi\"".to_string())].into());
    pods.create(&PostParams::default(), &files).await.expect("created");

    assert_eq!(file_content(&out.join("config"), |t| !t.is_empty()).await, "v1");
    assert_eq!(file_content(&out.join("secret"), |t| !t.is_empty()).await, "hunter2");
    assert_eq!(file_content(&out.join("secret-mode"), |t| t.ends_with('\n')).await.trim(), "400");
    assert_eq!(file_content(&out.join("labels"), |t| !t.is_empty()).await, "app=\"files\"\ntier=\"back-end\"");
    let annotations = file_content(&out.join("annotations"), |t| !t.is_empty()).await;
    assert_eq!(annotations, r#"note="say \"hi\"""#);
    // The emptyDir is shared: the reader sees what the writer wrote.
    assert_eq!(file_content(&out.join("shared"), |t| !t.is_empty()).await, "hello\n");
    let mounts = file_content(&out.join("mounts"), |t| !t.is_empty()).await;
    let memory = mounts.lines().find(|l| l.split(' ').nth(1) == Some("/memory")).expect("/memory is mounted");
    assert!(memory.starts_with("tmpfs /memory tmpfs ") && memory.contains("size=8192k"), "{memory}");
    let config = mounts.lines().find(|l| l.split(' ').nth(1) == Some("/config")).expect("/config is mounted");
    assert!(config.contains(" ro,"), "projected files are read-only: {config}");

    // The kubelet's layout on the host, with the secret on a tmpfs.
    let uid = pods.get("files").await.expect("pod").uid().expect("uid");
    let volume_dir = options.data_dir.join("pods").join(&uid).join("volumes");
    let config_dir = volume_dir.join("kubernetes.io~configmap/config");
    assert_eq!(std::fs::read_link(config_dir.join("greeting")).expect("a key link"), Path::new("..data/greeting"));
    let mounted = mounts_under(&options.data_dir.join("pods"));
    for tmpfs in ["kubernetes.io~secret/secret", "kubernetes.io~empty-dir/memory"] {
        let path = volume_dir.join(tmpfs);
        assert!(mounted.contains(&path.display().to_string()), "{} in {mounted:?}", path.display());
    }

    // A changed ConfigMap reaches the running pod's files.
    let changed = Instant::now();
    let patch = Patch::Merge(json!({"data": {"greeting": "v2"}}));
    config_maps.patch("settings", &PatchParams::default(), &patch).await.expect("ConfigMap changed");
    file_content(&out.join("config"), |t| t == "v2").await;
    let propagated = changed.elapsed();
    assert!(propagated < Duration::from_secs(5), "the update took {propagated:?}");
    let pod_dir = options.data_dir.join("pods").join(&uid);

    delete_pods_and_wait(&pods, &["files"], &host.socket()).await;
    assert_eq!(mounts_under(&options.data_dir), Vec::<String>::new(), "nothing stays mounted");
    assert!(!pod_dir.exists(), "the pod's volume dirs are removed");
    host.clean = true;
    agent.stop().await;
    eprintln!("timings: ConfigMap change seen in the pod after {propagated:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_whose_volumes_cannot_be_set_up_wait_saying_why_and_start_once_they_can() {
    let cluster = Cluster::start_with(ServerConfig::local).await;
    let (mut host, options) = Host::named("tugv", 215);
    let agent = Agent::start(&cluster.client, &options);
    node_ready(&cluster.client, &options.node_name).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let sleeper = |mounts: Value| json!([container("main", "sleep 3600", mounts)]);

    let volumes = json!([{"name": "config", "configMap": {"name": "late"}}]);
    let mounts = json!([{"name": "config", "mountPath": "/config"}]);
    pods.create(&PostParams::default(), &pod("late", json!({}), volumes, sleeper(mounts), "Always"))
        .await
        .expect("created");
    let missing_file = out_dir(&host, "no-such-file");
    let volumes = json!([{"name": "socket", "hostPath": {"path": missing_file, "type": "File"}}]);
    let mounts = json!([{"name": "socket", "mountPath": "/x"}]);
    pods.create(&PostParams::default(), &pod("badhost", json!({}), volumes, sleeper(mounts), "Always"))
        .await
        .expect("created");

    let (reason, message) = waiting_with(&pods, "late", "configmap \"late\" not found").await;
    assert_eq!(reason, "ContainerCreating");
    assert!(message.starts_with("MountVolume.SetUp failed for volume \"config\""), "{message}");
    let (reason, message) = waiting_with(&pods, "badhost", "hostPath type check failed").await;
    assert_eq!(reason, "ContainerCreating");
    assert!(message.contains(&format!("{} is not a file", missing_file.display())), "{message}");
    assert_eq!(pods.get("late").await.expect("pod").status.and_then(|s| s.phase).as_deref(), Some("Pending"));

    // Once the ConfigMap exists the pod starts.
    let late = object(json!({"metadata": {"name": "late"}, "data": {"k": "v"}}));
    config_maps.create(&PostParams::default(), &late).await.expect("ConfigMap created");
    pod_phase(&pods, "late", "Running").await;

    delete_pods_and_wait(&pods, &["late", "badhost"], &host.socket()).await;
    assert_eq!(mounts_under(&options.data_dir), Vec::<String>::new(), "nothing stays mounted");
    host.clean = true;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_data_outlives_its_pod() {
    let cluster = Cluster::start_with(ServerConfig::local).await;
    let (mut host, options) = Host::named("tugv", 215);
    let agent = Agent::start(&cluster.client, &options);
    node_ready(&cluster.client, &options.node_name).await;
    let volumes_api: Api<PersistentVolume> = Api::all(cluster.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let pv_dir = out_dir(&host, "pv");
    let pv_name = format!("pv-{}", tug_testkit::unique_suffix());
    let volume = object(json!({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": pv_dir}},
    }));
    volumes_api.create(&PostParams::default(), &volume).await.expect("PV created");
    let claim = object(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                 "resources": {"requests": {"storage": "1Gi"}}},
    }));
    claims.create(&PostParams::default(), &claim).await.expect("PVC created");

    let user = |script: &str| {
        let volumes = json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
        let mounts = json!([{"name": "data", "mountPath": "/data"}]);
        pod("user", json!({}), volumes, json!([container("main", script, mounts)]), "Never")
    };
    pods.create(&PostParams::default(), &user("echo kept > /data/file")).await.expect("created");
    // Not bound yet: the pod waits.
    let (reason, _) = waiting_with(&pods, "user", "is not bound").await;
    assert_eq!(reason, "ContainerCreating");
    let bound = Patch::Merge(json!({"status": {"phase": "Bound"}}));
    claims.patch_status("data", &PatchParams::default(), &bound).await.expect("PVC bound");
    pod_phase(&pods, "user", "Succeeded").await;
    delete_pods_and_wait(&pods, &["user"], &host.socket()).await;
    assert_eq!(std::fs::read_to_string(pv_dir.join("file")).expect("the claim's file"), "kept\n");

    // A new pod of the same claim finds the data.
    pods.create(&PostParams::default(), &user("cat /data/file > /data/seen")).await.expect("created");
    let done = pod_phase(&pods, "user", "Succeeded").await;
    assert_eq!(std::fs::read_to_string(pv_dir.join("seen")).expect("the second pod's file"), "kept\n");
    let uid = done.uid().expect("uid");
    delete_pods_and_wait(&pods, &["user"], &host.socket()).await;
    assert!(!options.data_dir.join("pods").join(uid).exists());
    assert_eq!(mounts_under(&options.data_dir), Vec::<String>::new(), "nothing stays mounted");
    host.clean = true;
    agent.stop().await;
}
