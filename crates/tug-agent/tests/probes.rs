//! Probes, OOM kills and the environment from ConfigMaps and Secrets, with the real node agent
//! against an in-process API server, scheduler and controllers and a real containerd: a failing
//! liveness probe restarts its container (with a Warning `Unhealthy` event), a readiness probe
//! keeps a Running pod out of Ready until it succeeds, HTTP and TCP probes against a live
//! server pass, a container beyond its memory limit is `OOMKilled`, and env vars come from a
//! ConfigMap and a Secret (read back from the container's log) or, missing, give
//! `CreateContainerConfigError`. Needs root, as `scripts/test.sh` and CI run it.

mod support;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::{Agent, Cluster, DEADLINE, Host, node_ready};
use tug_agent::agent::AgentOptions;
use tug_testkit::eventually;

/// A cluster with a Ready node running the agent.
async fn start() -> (Cluster, Host, AgentOptions, Agent) {
    let cluster = Cluster::start().await;
    let (host, options) = Host::new();
    let agent = Agent::start(&cluster.client, &options);
    node_ready(&cluster.client, &options.node_name).await;
    (cluster, host, options, agent)
}

/// A pod of one busybox container `main` running `script` with `sh -c`, with `extra` merged
/// into the container and the pod spec's `restartPolicy`.
fn busybox_pod(name: &str, policy: &str, script: &str, extra: serde_json::Value) -> Pod {
    let mut container = json!({
        "name": "main",
        "image": "localhost/busybox:latest",
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
    });
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        container[key] = value;
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        // `sh` as PID 1 ignores SIGTERM: keep the kill short.
        "spec": {"restartPolicy": policy, "terminationGracePeriodSeconds": 1, "containers": [container]},
    }))
    .expect("a valid Pod")
}

/// The pod `name` once `check` accepts its first container's status and the pod.
async fn wait_for(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    check: impl Fn(&Pod, &ContainerStatus) -> bool,
) -> (Pod, ContainerStatus) {
    eventually(&format!("pod {name}: {what}"), DEADLINE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let status = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        match status.first() {
            Some(container) if check(&pod, container) => Ok((pod.clone(), container.clone())),
            _ => Err(format!("{:?}", pod.status)),
        }
    })
    .await
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conditions.into_iter().find(|c| c.type_ == kind).map(|c| c.status)
}

fn running(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn terminated_reason(state: Option<&k8s_openapi::api::core::v1::ContainerState>) -> Option<String> {
    state.and_then(|s| s.terminated.as_ref()).and_then(|t| t.reason.clone())
}

/// Stops the agent and removes everything it ran.
async fn finish(agent: Agent, host: Host) {
    agent.stop().await;
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_restart_unhealthy_containers_and_gate_readiness() {
    let (cluster, host, _options, agent) = start().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let exec = |command: &[&str]| json!({"exec": {"command": command}, "periodSeconds": 1, "failureThreshold": 1});
    let pod_list = [
        // Liveness by HTTP to a port nobody listens on.
        busybox_pod(
            "unhealthy",
            "Always",
            "sleep 3600",
            json!({"livenessProbe": {
                "httpGet": {"port": 9999, "path": "/healthz"}, "periodSeconds": 1, "failureThreshold": 2,
            }}),
        ),
        // Ready once the file exists, a few seconds in.
        busybox_pod(
            "warming",
            "Always",
            "sleep 4; touch /tmp/ready; sleep 3600",
            json!({
                "readinessProbe": exec(&["cat", "/tmp/ready"]),
            }),
        ),
        // A server whose HTTP readiness (by port name) and TCP liveness pass, after a startup
        // probe; it is never restarted.
        busybox_pod(
            "web",
            "Always",
            "echo ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
            json!({
                "ports": [{"name": "http", "containerPort": 8080}],
                "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 30},
                "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
            }),
        ),
    ];
    for pod in &pod_list {
        pods.create(&PostParams::default(), pod).await.expect("created");
    }

    let (pod, _) = wait_for(&pods, "warming", "Running but not Ready", |_, c| running(c) && !c.ready).await;
    assert_eq!(pod.status.as_ref().and_then(|s| s.phase.clone()).as_deref(), Some("Running"));
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("False"));
    let (pod, status) = wait_for(&pods, "warming", "Ready", |_, c| c.ready).await;
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("True"));
    assert_eq!(status.restart_count, 0);

    let (_, status) = wait_for(&pods, "unhealthy", "restarted", |_, c| c.restart_count >= 1).await;
    assert!(status.last_state.and_then(|s| s.terminated).is_some(), "the killed instance is the last state");
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let (unhealthy, killing) = eventually("the Unhealthy and Killing events", DEADLINE, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
        let about = |reason: &str| {
            list.iter()
                .find(|e| e.involved_object.name.as_deref() == Some("unhealthy") && e.reason.as_deref() == Some(reason))
                .cloned()
        };
        match (about("Unhealthy"), about("Killing")) {
            (Some(unhealthy), Some(killing)) => Ok((unhealthy, killing)),
            _ => Err(format!("{:?}", list.iter().map(|e| (&e.reason, &e.message)).collect::<Vec<_>>())),
        }
    })
    .await;
    assert_eq!(unhealthy.type_.as_deref(), Some("Warning"));
    assert_eq!(unhealthy.involved_object.field_path.as_deref(), Some("spec.containers{main}"));
    assert_eq!(unhealthy.source.and_then(|s| s.component).as_deref(), Some("kubelet"));
    let message = unhealthy.message.unwrap_or_default();
    assert!(message.starts_with("Liveness probe failed: Get \"http://"), "{message}");
    assert!(message.contains(":9999/healthz\": dial tcp"), "{message}");
    assert_eq!(killing.message.as_deref(), Some("Container main failed liveness probe, will be restarted"));

    let (pod, status) = wait_for(&pods, "web", "Ready", |_, c| c.ready).await;
    assert_eq!((status.started, status.restart_count), (Some(true), 0));
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("True"));
    finish(agent, host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_beyond_its_memory_limit_is_oom_killed() {
    let (cluster, host, _options, agent) = start().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let limits = json!({"resources": {"limits": {"memory": "16Mi"}}});
    // The string doubles until the cgroup's limit is hit.
    let pod = busybox_pod("hog", "Never", "x=a; while :; do x=$x$x; done", limits);
    pods.create(&PostParams::default(), &pod).await.expect("created");
    // containerd may report the exit before its OOM event (reason "Error" for a moment), then
    // the reason it learnt: what the user ends up seeing is OOMKilled.
    let (pod, status) = wait_for(&pods, "hog", "terminated as OOMKilled", |_, c| {
        terminated_reason(c.state.as_ref()).as_deref() == Some("OOMKilled")
    })
    .await;
    assert_eq!(status.state.and_then(|s| s.terminated).map(|t| t.exit_code), Some(137));
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Failed"));
    finish(agent, host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_comes_from_config_maps_and_secrets_and_a_missing_one_is_a_config_error() {
    let (cluster, host, options, agent) = start().await;
    let client = cluster.client.clone();
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"}, "data": {"MODE": "fast", "LEVEL": "3"},
    }))
    .expect("config map");
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &config_map)
        .await
        .expect("created");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"TOKEN": "s3cr3t"},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("created");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let env = json!({
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
            {"name": "MEMORY_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
        "resources": {"limits": {"memory": "32Mi"}},
    });
    let pod = busybox_pod("env", "Never", "echo \"mode=$MODE token=$TOKEN level=$CM_LEVEL mem=$MEMORY_MI\"", env);
    pods.create(&PostParams::default(), &pod).await.expect("created");
    let missing = json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]});
    pods.create(&PostParams::default(), &busybox_pod("missing", "Never", "true", missing)).await.expect("created");

    let (pod, _) = wait_for(&pods, "env", "done", |_, c| terminated_reason(c.state.as_ref()).is_some()).await;
    let uid = pod.metadata.uid.clone().expect("uid");
    let log = options.data_dir.join("pods").join(format!("default_env_{uid}")).join("main").join("0.log");
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("reading {}: {e}", log.display()));
    assert!(text.contains("mode=fast token=s3cr3t level=3 mem=32"), "{text}");
    // The pod ran in the cgroup of its QoS class, which goes with the pod.
    let cgroup = PathBuf::from(format!("/sys/fs/cgroup/memory/kubepods/burstable/pod{uid}"));
    assert!(cgroup.exists(), "{} is missing", cgroup.display());
    pods.delete("env", &DeleteParams::default()).await.expect("deleted");
    eventually("the pod to be gone", DEADLINE, || async {
        match pods.get_opt("env").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(pod) => Err(format!("{:?}", pod.status)),
        }
    })
    .await;
    eventually("the pod's cgroup to be removed", DEADLINE, || async {
        if cgroup.exists() { Err(format!("{} is left behind", cgroup.display())) } else { Ok(()) }
    })
    .await;

    let (_, status) = wait_for(&pods, "missing", "CreateContainerConfigError", |_, c| {
        c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
            == Some("CreateContainerConfigError")
    })
    .await;
    let message = status.state.and_then(|s| s.waiting).and_then(|w| w.message);
    assert_eq!(message.as_deref(), Some("configmap \"nope\" not found"));
    finish(agent, host).await;
}
