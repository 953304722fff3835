//! A Service's endpoints against a real API server (in this process), the scheduler and hollow
//! nodes: the EndpointSlices and the legacy Endpoints follow the pods of a Deployment — their
//! addresses, readiness and resolved ports — through scaling and the Service's deletion.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tug_sim::{Pause, SimOptions};
use tug_testkit::eventually;

mod support;

use support::{Cluster, DEADLINE, is_ready, quick_nodes};

const SLICES_OF_WEB: &str = "kubernetes.io/service-name=web";

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1",
                                         "ports": [{"name": "http", "containerPort": 8080}]}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

fn service() -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .expect("a valid Service")
}

/// What the slices of `web` say: (pod name, address, ready) per endpoint, the ports of each
/// slice, and the slice sizes.
struct SliceView {
    endpoints: BTreeSet<(String, String, bool)>,
    ports: BTreeSet<Option<i32>>,
    sizes: Vec<usize>,
}

async fn slices_of_web(api: &Api<EndpointSlice>) -> Result<SliceView, String> {
    let slices = api.list(&ListParams::default().labels(SLICES_OF_WEB)).await.map_err(|e| e.to_string())?;
    let mut view = SliceView { endpoints: BTreeSet::new(), ports: BTreeSet::new(), sizes: Vec::new() };
    for slice in &slices.items {
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("endpointslice.kubernetes.io/managed-by").map(String::as_str),
            Some("endpointslice-controller.k8s.io")
        );
        assert_eq!(slice.address_type, "IPv4");
        assert!(slice.endpoints.len() <= 100, "a slice of {}", slice.endpoints.len());
        view.sizes.push(slice.endpoints.len());
        view.ports.extend(slice.ports.iter().flatten().map(|p| p.port));
        for e in &slice.endpoints {
            let name = e.target_ref.as_ref().and_then(|t| t.name.clone()).unwrap_or_default();
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            view.endpoints.insert((name, e.addresses.join(","), ready));
        }
    }
    view.sizes.sort_unstable();
    Ok(view)
}

/// (pod name, IP, ready) of every pod of `web` that has an IP.
async fn pods_of_web(api: &Api<Pod>) -> Result<BTreeSet<(String, String, bool)>, String> {
    let pods = api.list(&ListParams::default().labels("app=web")).await.map_err(|e| e.to_string())?;
    Ok(pods
        .items
        .iter()
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            Some((p.metadata.name.clone()?, ip, is_ready(p)))
        })
        .collect())
}

/// (IP, ready) of every address of the Endpoints `web`.
async fn endpoints_of_web(api: &Api<Endpoints>) -> Result<BTreeSet<(String, bool)>, String> {
    let endpoints = api.get_opt("web").await.map_err(|e| e.to_string())?.ok_or("no Endpoints web")?;
    let mut addresses = BTreeSet::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<i32> = subset.ports.iter().flatten().map(|p| p.port).collect();
        if ports != [8080] {
            return Err(format!("ports {ports:?}"));
        }
        addresses.extend(subset.addresses.iter().flatten().map(|a| (a.ip.clone(), true)));
        addresses.extend(subset.not_ready_addresses.iter().flatten().map(|a| (a.ip.clone(), false)));
    }
    Ok(addresses)
}

/// The slices and the Endpoints both list exactly `want` (pod, IP, ready), on port 8080.
async fn endpoints_match(cluster: &Cluster, want: &BTreeSet<(String, String, bool)>, slice_sizes: Option<&[usize]>) {
    let (slices, endpoints) = (cluster.api::<EndpointSlice>(), cluster.api::<Endpoints>());
    eventually("the slices and the Endpoints to list the pods", DEADLINE, || async {
        let view = slices_of_web(&slices).await?;
        if view.endpoints != *want {
            return Err(format!("slices list {} endpoints, want {}", view.endpoints.len(), want.len()));
        }
        if view.ports != BTreeSet::from([Some(8080)]) {
            return Err(format!("slice ports {:?}", view.ports));
        }
        if let Some(sizes) = slice_sizes
            && view.sizes != sizes
        {
            return Err(format!("slice sizes {:?}", view.sizes));
        }
        let mirrored = endpoints_of_web(&endpoints).await?;
        let wanted: BTreeSet<(String, bool)> = want.iter().map(|(_, ip, ready)| (ip.clone(), *ready)).collect();
        if mirrored != wanted {
            return Err(format!("Endpoints list {} addresses, want {}", mirrored.len(), wanted.len()));
        }
        Ok(())
    })
    .await;
}

/// Waits until `replicas` pods of web run ready with an IP; returns them.
async fn ready_pods(cluster: &Cluster, replicas: usize) -> BTreeSet<(String, String, bool)> {
    let pods = cluster.api::<Pod>();
    eventually(&format!("{replicas} ready pods"), DEADLINE, || async {
        let seen = pods_of_web(&pods).await?;
        let ready = seen.iter().filter(|(_, _, ready)| *ready).count();
        if seen.len() == replicas && ready == replicas {
            Ok(seen)
        } else {
            Err(format!("{ready}/{} ready", seen.len()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_endpoints_follow_its_pods() {
    let cluster = Cluster::start().await;
    let pause = Pause::default();
    cluster.nodes_with(SimOptions { nodes: 3, name_prefix: "svc".into(), pause: pause.clone(), ..quick_nodes() });
    cluster.api::<Deployment>().create(&PostParams::default(), &deployment(3)).await.expect("create the Deployment");
    cluster.api::<Service>().create(&PostParams::default(), &service()).await.expect("create the Service");

    // The pods' IPs, with the named port resolved to the container's 8080.
    let pods = ready_pods(&cluster, 3).await;
    endpoints_match(&cluster, &pods, Some(&[3])).await;

    // A pod turning not ready leaves the ready set at once. The nodes are paused, so none of
    // them writes the pod back to Ready meanwhile.
    pause.pause();
    let (name, ip, _) = pods.first().cloned().expect("a pod");
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    let turned = std::time::Instant::now();
    cluster
        .api::<Pod>()
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&not_ready))
        .await
        .expect("mark the pod not ready");
    let mut want = pods.clone();
    want.remove(&(name.clone(), ip.clone(), true));
    want.insert((name, ip, false));
    endpoints_match(&cluster, &want, Some(&[3])).await;
    let took = turned.elapsed();
    assert!(took < std::time::Duration::from_secs(2), "the not-ready pod left the ready set after {took:?}");
    pause.resume();
    endpoints_match(&cluster, &ready_pods(&cluster, 3).await, Some(&[3])).await;

    // 250 pods: three slices of at most 100 (Kubernetes' reconciler packs them 100, 100, 50).
    let scale = json!({"spec": {"replicas": 250}});
    cluster.api::<Deployment>().patch("web", &PatchParams::default(), &Patch::Merge(&scale)).await.expect("scale up");
    let pods = ready_pods(&cluster, 250).await;
    endpoints_match(&cluster, &pods, None).await;
    let sizes = slices_of_web(&cluster.api()).await.expect("the slices").sizes;
    assert_eq!(sizes.len(), 3, "slice sizes {sizes:?}");

    // The Service goes: its slices with it (garbage collection through their ownerReference),
    // and its Endpoints.
    cluster.api::<Service>().delete("web", &DeleteParams::default()).await.expect("delete the Service");
    let (slices, endpoints) = (cluster.api::<EndpointSlice>(), cluster.api::<Endpoints>());
    eventually("the slices and Endpoints of web to go", DEADLINE, || async {
        let left = slices.list(&ListParams::default().labels(SLICES_OF_WEB)).await.map_err(|e| e.to_string())?;
        let mirror = endpoints.get_opt("web").await.map_err(|e| e.to_string())?;
        if left.items.is_empty() && mirror.is_none() {
            Ok(())
        } else {
            Err(format!("{} slices, Endpoints {}", left.items.len(), mirror.is_some()))
        }
    })
    .await;
}

/// Services without a selector are served from hand-made slices: the controller leaves them be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_made_slices_of_a_service_without_selector_are_left_alone() {
    let cluster = Cluster::start().await;
    let external: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"ports": [{"port": 5432}]}
    }))
    .expect("a Service");
    cluster.api::<Service>().create(&PostParams::default(), &external).await.expect("create the Service");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.168.1.10"]}],
        "ports": [{"port": 5432}]
    }))
    .expect("a slice");
    cluster.api::<EndpointSlice>().create(&PostParams::default(), &slice).await.expect("create the slice");
    // A Service with a selector created after it is served: once its slice shows, the
    // controller has looked at both.
    let mut web = service();
    web.spec.as_mut().expect("spec").ports.as_mut().expect("ports")[0].target_port = None;
    cluster.api::<Service>().create(&PostParams::default(), &web).await.expect("create the Service");
    let slices = cluster.api::<EndpointSlice>();
    eventually("web's placeholder slice", DEADLINE, || async {
        let list = slices.list(&ListParams::default().labels(SLICES_OF_WEB)).await.map_err(|e| e.to_string())?;
        if list.items.len() == 1 { Ok(()) } else { Err(format!("{} slices", list.items.len())) }
    })
    .await;
    let db = slices.list(&ListParams::default().labels("kubernetes.io/service-name=db")).await.expect("list");
    let names: Vec<_> = db.items.iter().filter_map(|s| s.metadata.name.clone()).collect();
    assert_eq!(names, ["db-1"]);
    assert_eq!(db.items[0].endpoints[0].addresses, ["192.168.1.10"]);
    assert!(cluster.api::<Endpoints>().get_opt("db").await.expect("get").is_none(), "no Endpoints made for db");
}
