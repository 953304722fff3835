//! Service cluster IPs and node ports against real API servers over real stores: unique across
//! API servers sharing one datastore (SQLite and etcd) and across restarts, refusals in
//! Kubernetes' words through the kube client, updates that keep what they leave out, deletes
//! and type changes that free, the repair pass, and the `kubernetes` Service's endpoints.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tug_apiserver::alloc::{NodePortRange, ServiceCidr, ServiceRanges};
use tug_apiserver::request::{Query, ResourceRequest};
use tug_apiserver::server::{RunningServer, ServerConfig};

const DEADLINE: Duration = Duration::from_secs(10);

async fn start(config: ServerConfig) -> (RunningServer, Client) {
    let server = tug_apiserver::server::start(config).await.expect("the server starts");
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kube config");
    (server, Client::try_from(config).expect("kube client"))
}

fn service(name: &str, spec: Value) -> Service {
    let mut spec = spec;
    if spec.get("ports").is_none() {
        spec["ports"] = json!([{"port": 80}]);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("a Service")
}

fn cluster_ip(svc: &Service) -> String {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default()
}

fn node_ports(svc: &Service) -> Vec<i32> {
    let spec = svc.spec.clone().unwrap_or_default();
    spec.ports.unwrap_or_default().iter().filter_map(|p| p.node_port).chain(spec.health_check_node_port).collect()
}

/// The code and message of a refused request.
fn refusal(result: Result<Service, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// No two Services share a cluster IP or a node port.
fn assert_all_distinct(services: &[Service]) {
    let mut ips = HashMap::new();
    let mut ports = HashMap::new();
    for svc in services {
        let ip = cluster_ip(svc);
        assert!(!ip.is_empty(), "{} got no cluster IP", svc.name_any());
        if let Some(other) = ips.insert(ip.clone(), svc.name_any()) {
            panic!("{ip} was handed to both {other} and {}", svc.name_any());
        }
        for port in node_ports(svc) {
            if let Some(other) = ports.insert(port, svc.name_any()) {
                panic!("node port {port} was handed to both {other} and {}", svc.name_any());
            }
        }
    }
}

/// Two API servers (no memory shared, each with its own watch cache) over one SQLite store,
/// creating Services concurrently in a range small enough that random choices collide often.
#[tokio::test]
async fn two_api_servers_over_one_sqlite_store_never_share_an_address() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let datastore = tug_store::Datastore::Sqlite { path: dir.path().join("state.db") };
    let store = tug_store::open(&datastore, Default::default()).await.expect("the store opens");
    let ranges = ServiceRanges {
        cidr: ServiceCidr::parse("10.44.0.0/25").unwrap(),
        node_ports: NodePortRange::parse("30000-30199").unwrap(),
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let api = || {
        tug_apiserver::Api::new(
            store.clone(),
            HashMap::new(),
            String::new(),
            stopped.clone(),
            Default::default(),
            ranges,
        )
    };
    let (a, b) = (api().await.expect("API a"), api().await.expect("API b"));
    tug_apiserver::bootstrap::ensure_defaults(&a, "127.0.0.1:6443".parse().unwrap()).await;
    b.cache.sync().await.expect("b's cache sees the default namespace");
    let rt = tug_core::registry::by_kind("v1", "Service").expect("registered");
    let create = |api: Arc<tug_apiserver::Api>, name: String| async move {
        let req =
            ResourceRequest { rt, namespace: Some("default".into()), name: None, subresource: None, watch_path: false };
        let body = serde_json::to_value(service(&name, json!({"type": "NodePort"}))).unwrap();
        let created = api.create(&req, &Query::default(), body, &mut Default::default()).await;
        serde_json::from_value::<Service>(created.unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap()
    };
    // 124 usable addresses (126 minus the kubernetes and kube-dns ones); 120 Services.
    let mut tasks = Vec::new();
    for i in 0..60 {
        tasks.push(tokio::spawn(create(a.clone(), format!("a-{i}"))));
        tasks.push(tokio::spawn(create(b.clone(), format!("b-{i}"))));
    }
    let mut services = Vec::new();
    for task in tasks {
        services.push(task.await.expect("the create task"));
    }
    assert_all_distinct(&services);
    let cidr = ranges.cidr;
    for svc in &services {
        assert!(cidr.holds(cluster_ip(svc).parse().unwrap()), "{} outside {cidr}", cluster_ip(svc));
        assert!(node_ports(svc).iter().all(|p| ranges.node_ports.holds(*p as u16)));
    }
    // The range is now nearly full: four addresses left, then a clear 500.
    for i in 0..4 {
        create(a.clone(), format!("last-{i}")).await;
    }
    let req =
        ResourceRequest { rt, namespace: Some("default".into()), name: None, subresource: None, watch_path: false };
    let body = serde_json::to_value(service("one-too-many", json!({}))).unwrap();
    let full = b.create(&req, &Query::default(), body, &mut Default::default()).await.expect_err("the range is full");
    assert_eq!(
        (full.code, full.message.as_str()),
        (500, "Internal error occurred: failed to allocate a serviceIP: range is full")
    );
}

/// The same over etcd, with two complete API servers (each its own data dir and CA) and the
/// kube client.
#[tokio::test]
async fn two_api_servers_over_one_etcd_never_share_an_address() {
    let etcd = tokio::task::spawn_blocking(tug_testkit::Etcd::start).await.expect("etcd starts");
    let datastore = tug_store::Datastore::parse(&format!("etcd://{}", etcd.host_port()), Path::new("/unused"))
        .expect("etcd datastore spec");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &Path| ServerConfig { datastore: datastore.clone(), ..ServerConfig::local(dir) };
    let (server_a, client_a) = start(config(dir_a.path())).await;
    let (server_b, client_b) = start(config(dir_b.path())).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        for (side, client) in [("a", &client_a), ("b", &client_b)] {
            let services: Api<Service> = Api::namespaced(client.clone(), "default");
            let svc = service(&format!("{side}-{i}"), json!({"type": "NodePort"}));
            tasks.push(tokio::spawn(async move { services.create(&PostParams::default(), &svc).await.unwrap() }));
        }
    }
    let mut services = Vec::new();
    for task in tasks {
        services.push(task.await.expect("the create task"));
    }
    // The kubernetes Service (made by whichever server came first) holds 10.43.0.1.
    let kubernetes = Api::<Service>::namespaced(client_b.clone(), "default").get("kubernetes").await.unwrap();
    assert_eq!(cluster_ip(&kubernetes), "10.43.0.1");
    services.push(kubernetes);
    assert_all_distinct(&services);
    // A static request one server granted is refused by the other.
    let a: Api<Service> = Api::namespaced(client_a.clone(), "default");
    let b: Api<Service> = Api::namespaced(client_b.clone(), "default");
    a.create(&PostParams::default(), &service("static", json!({"clusterIP": "10.43.0.42"}))).await.unwrap();
    let (code, message) =
        refusal(b.create(&PostParams::default(), &service("static-2", json!({"clusterIP": "10.43.0.42"}))).await);
    assert_eq!(code, 422, "{message}");
    assert!(message.ends_with("failed to allocate IP 10.43.0.42: provided IP is already allocated"), "{message}");
    server_a.stop().await;
    server_b.stop().await;
    drop(etcd);
}

#[tokio::test]
async fn requests_outside_the_range_or_already_taken_get_422_in_kubernetes_words() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(ServerConfig::local(dir.path())).await;
    let services: Api<Service> = Api::namespaced(client, "default");
    services
        .create(
            &PostParams::default(),
            &service("np", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]})),
        )
        .await
        .unwrap();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "outside the range",
            json!({"clusterIP": "10.0.0.5"}),
            422,
            "Service \"x\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.5\"}: failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.43.0.0/16",
        ),
        (
            "the network address",
            json!({"clusterIP": "10.43.0.0"}),
            422,
            "Service \"x\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.43.0.0\"}: failed to allocate IP 10.43.0.0: the provided IP (10.43.0.0) is not in the valid range. The range of valid IPs is 10.43.0.0/16",
        ),
        (
            "the broadcast address",
            json!({"clusterIP": "10.43.255.255"}),
            422,
            "Service \"x\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.43.255.255\"}: failed to allocate IP 10.43.255.255: the provided IP (10.43.255.255) is not in the valid range. The range of valid IPs is 10.43.0.0/16",
        ),
        (
            "the kubernetes Service's address",
            json!({"clusterIP": "10.43.0.1"}),
            422,
            "Service \"x\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.43.0.1\"}: failed to allocate IP 10.43.0.1: provided IP is already allocated",
        ),
        (
            "a node port outside the range",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}),
            422,
            "Service \"x\" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ),
        (
            "a node port taken",
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 81}, {"name": "b", "port": 80, "nodePort": 30080}]}),
            422,
            "Service \"x\" is invalid: spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated",
        ),
        (
            "a health check port taken",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30080}),
            500,
            "Internal error occurred: failed to allocate requested HealthCheck NodePort 30080: provided port is already allocated",
        ),
    ];
    for (what, spec, code, message) in cases {
        let got = refusal(services.create(&PostParams::default(), &service("x", spec)).await);
        assert_eq!(got, (code, message.to_string()), "{what}");
    }
    // Nothing a refused request reserved stays taken: the first port of the refused NodePort
    // Service, say. Every node port but the one `np` holds is free, so 30000-32767 minus one.
    let all_ports = services.create(&PostParams::default(), &service("x", json!({"type": "NodePort"}))).await.unwrap();
    assert_ne!(node_ports(&all_ports), vec![30080]);
    // A dry run refuses the same, and takes nothing.
    let dry = PostParams { dry_run: true, ..Default::default() };
    let (code, _) = refusal(services.create(&dry, &service("y", json!({"clusterIP": "10.43.0.1"}))).await);
    assert_eq!(code, 422);
    services.create(&dry, &service("y", json!({"clusterIP": "10.43.0.77"}))).await.unwrap();
    services.create(&PostParams::default(), &service("y", json!({"clusterIP": "10.43.0.77"}))).await.unwrap();
    // A LoadBalancer with externalTrafficPolicy Local gets a health check port of its own.
    let lb = services
        .create(
            &PostParams::default(),
            &service("lb", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"})),
        )
        .await
        .unwrap();
    let hc = lb.spec.as_ref().and_then(|s| s.health_check_node_port).expect("a health check node port");
    assert!((30000..=32767).contains(&hc) && !node_ports(&all_ports).contains(&hc));
    assert_eq!(node_ports(&lb).iter().collect::<HashSet<_>>().len(), 2, "node port and health check port differ");
    server.stop().await;
}

#[tokio::test]
async fn updates_keep_what_they_leave_out_and_deletes_and_type_changes_free() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(ServerConfig::local(dir.path())).await;
    let services: Api<Service> = Api::namespaced(client, "default");
    let manifest = service(
        "web",
        json!({"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}),
    );
    let created = services.create(&PostParams::default(), &manifest).await.unwrap();
    let (ip, ports) = (cluster_ip(&created), node_ports(&created));
    // PUT of the manifest as written (no clusterIP, no nodePort), as `kubectl replace` sends it.
    let mut replaced = manifest.clone();
    replaced.metadata.resource_version = created.resource_version();
    let replaced = services.replace("web", &PostParams::default(), &replaced).await.unwrap();
    assert_eq!((cluster_ip(&replaced), node_ports(&replaced)), (ip.clone(), ports.clone()), "replace keeps them");
    // `kubectl apply` of a changed manifest: a strategic merge patch without the addresses.
    let patch = json!({"metadata": {"labels": {"tier": "front"}}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    let applied = services.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    assert_eq!((cluster_ip(&applied), node_ports(&applied)), (ip.clone(), ports.clone()), "apply keeps them");
    // NodePort to ClusterIP gives the node port back: another Service may ask for it.
    let to_cluster_ip = json!({"spec": {"type": "ClusterIP"}});
    let changed = services.patch("web", &PatchParams::default(), &Patch::Merge(to_cluster_ip)).await.unwrap();
    assert!(node_ports(&changed).is_empty(), "{:?}", changed.spec);
    let port = ports[0];
    let other = service("other", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}));
    services.create(&PostParams::default(), &other).await.expect("the freed node port can be asked for");
    // To ExternalName gives the cluster IP back.
    let to_external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com", "selector": null}});
    let external = services.patch("web", &PatchParams::default(), &Patch::Merge(to_external)).await.unwrap();
    assert_eq!(cluster_ip(&external), "", "{:?}", external.spec);
    services
        .create(&PostParams::default(), &service("takes-ip", json!({"clusterIP": ip})))
        .await
        .expect("the freed IP");
    // Deleting frees: the same address can be asked for again.
    services.create(&PostParams::default(), &service("s1", json!({"clusterIP": "10.43.0.50"}))).await.unwrap();
    services.delete("s1", &DeleteParams::default()).await.unwrap();
    services
        .create(&PostParams::default(), &service("s2", json!({"clusterIP": "10.43.0.50"})))
        .await
        .expect("freed by the delete");
    // Headless Services take nothing.
    let headless = services.create(&PostParams::default(), &service("h", json!({"clusterIP": "None"}))).await.unwrap();
    assert_eq!(cluster_ip(&headless), "None");
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_allocations_even_with_another_range() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(ServerConfig::local(dir.path())).await;
    let services: Api<Service> = Api::namespaced(client, "default");
    let kept = services
        .create(&PostParams::default(), &service("kept", json!({"clusterIP": "10.43.0.60", "type": "NodePort"})))
        .await
        .unwrap();
    server.stop().await;

    let ranges = ServiceRanges {
        cidr: ServiceCidr::parse("10.50.0.0/24").unwrap(),
        node_ports: NodePortRange::parse("20000-20999").unwrap(),
    };
    let (server, client) = start(ServerConfig { service_ranges: ranges, ..ServerConfig::local(dir.path()) }).await;
    let services: Api<Service> = Api::namespaced(client, "default");
    let after = services.get("kept").await.unwrap();
    assert_eq!((cluster_ip(&after), node_ports(&after)), (cluster_ip(&kept), node_ports(&kept)), "kept as they were");
    let fresh = services.create(&PostParams::default(), &service("fresh", json!({"type": "NodePort"}))).await.unwrap();
    assert!(ranges.cidr.holds(cluster_ip(&fresh).parse().unwrap()), "{}", cluster_ip(&fresh));
    assert!(node_ports(&fresh).iter().all(|p| ranges.node_ports.holds(*p as u16)), "{:?}", node_ports(&fresh));
    let (code, message) = refusal(
        services.create(&PostParams::default(), &service("old-range", json!({"clusterIP": "10.43.0.61"}))).await,
    );
    assert_eq!(code, 422);
    assert!(message.ends_with("The range of valid IPs is 10.50.0.0/24"), "{message}");
    server.stop().await;

    // Back on the default range, the kept Service's address is still taken.
    let (server, client) = start(ServerConfig::local(dir.path())).await;
    let services: Api<Service> = Api::namespaced(client, "default");
    let (code, message) =
        refusal(services.create(&PostParams::default(), &service("dup", json!({"clusterIP": "10.43.0.60"}))).await);
    assert_eq!(code, 422);
    assert!(message.ends_with("provided IP is already allocated"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn the_repair_pass_frees_leaked_records_and_restores_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(ServerConfig::local(dir.path())).await;
    let services: Api<Service> = Api::namespaced(client, "default");
    let store = server.api.store.clone();
    // A record whose Service never made it into the store (a crash between the two writes).
    let leaked = json!({"owner": {"namespace": "default", "name": "ghost", "uid": "ghost-uid"}, "created": "2020-01-01T00:00:00Z"});
    store.create("/tugboat/services/clusterips/10.43.0.70", serde_json::to_vec(&leaked).unwrap(), None).await.unwrap();
    // A Service whose record went missing.
    services.create(&PostParams::default(), &service("held", json!({"clusterIP": "10.43.0.71"}))).await.unwrap();
    store.delete("/tugboat/services/clusterips/10.43.0.71", None).await.unwrap();

    let plan = server.api.services.repair(Duration::from_secs(120)).await.expect("the repair pass");
    assert_eq!(plan.release.len(), 1, "{plan:?}");
    assert_eq!(plan.recreate.len(), 1, "{plan:?}");
    services
        .create(&PostParams::default(), &service("reuse", json!({"clusterIP": "10.43.0.70"})))
        .await
        .expect("the leaked address is free again");
    let (code, _) =
        refusal(services.create(&PostParams::default(), &service("dup", json!({"clusterIP": "10.43.0.71"}))).await);
    assert_eq!(code, 422, "the held address is recorded again");
    // A young record is left alone: its Service may be on its way.
    let young = json!({"owner": {"namespace": "default", "name": "soon", "uid": "soon-uid"}, "created": jiff::Timestamp::now().to_string()});
    store.create("/tugboat/services/nodeports/30999", serde_json::to_vec(&young).unwrap(), None).await.unwrap();
    let plan = server.api.services.repair(Duration::from_secs(120)).await.expect("the repair pass");
    assert!(plan.release.is_empty() && plan.recreate.is_empty(), "{plan:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_kubernetes_service_has_endpoints_and_an_endpoint_slice() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(ServerConfig::local(dir.path())).await;
    let port = i32::from(server.addr.port());
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = tug_testkit::eventually("the kubernetes Endpoints", DEADLINE, || async {
        endpoints.get_opt("kubernetes").await.map_err(|e| e.to_string())?.ok_or_else(|| "not yet".to_string())
    })
    .await;
    let subset = &ep.subsets.as_ref().expect("subsets")[0];
    let ips: Vec<&str> = subset.addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
    assert_eq!(ips, ["127.0.0.1"]);
    let ports: Vec<(Option<&str>, i32)> = subset.ports.iter().flatten().map(|p| (p.name.as_deref(), p.port)).collect();
    assert_eq!(ports, [(Some("https"), port)]);
    assert_eq!(ep.labels().get("endpointslice.kubernetes.io/skip-mirror").map(String::as_str), Some("true"));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    // Written just after the Endpoints, in the same pass.
    let slice = tug_testkit::eventually("the kubernetes EndpointSlice", DEADLINE, || async {
        slices.get_opt("kubernetes").await.map_err(|e| e.to_string())?.ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(slice.labels().get("kubernetes.io/service-name").map(String::as_str), Some("kubernetes"));
    assert_eq!(slice.address_type, "IPv4");
    let addresses: Vec<&String> = slice.endpoints.iter().flat_map(|e| &e.addresses).collect();
    assert_eq!(addresses, ["127.0.0.1"]);
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(port));
    let svc = Api::<Service>::namespaced(client, "default").get("kubernetes").await.unwrap();
    assert_eq!(cluster_ip(&svc), "10.43.0.1");
    server.stop().await;
}
