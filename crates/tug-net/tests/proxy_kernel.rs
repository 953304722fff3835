//! The service proxy against a real kernel: a "client" network namespace holding the table
//! (the node; the client is a process on it) and a "backend" namespace with two HTTP servers,
//! joined by a veth pair. Needs root, `nft` (nftables), busybox (httpd) and curl. Every object is named
//! `tugt-...-<random>` and goes away with the guards, whatever way the test ends.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use tug_net::netns::{NetNs, run};
use tug_net::proxy::{self, Nft, NodeContext, Syncer};
use tug_testkit::{unique_suffix, wait_for};

const CLIENT_IP: &str = "10.99.0.1";
const BACKEND_A: &str = "10.99.0.2";
const BACKEND_B: &str = "10.99.0.3";
const CLUSTER_IP: &str = "10.96.0.10";
const EMPTY_CLUSTER_IP: &str = "10.96.0.11";
const NODE_PORT: u16 = 30080;

/// Processes first, namespaces second: fields drop in this order.
struct Lab {
    _servers: Vec<Server>,
    client: NetNs,
    _backend: NetNs,
    _files: tempfile::TempDir,
}

/// A process this test started, killed by its pid when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Lab {
    fn start() -> Lab {
        let suffix = unique_suffix();
        let client = NetNs::create(&format!("tugt-client-{suffix}")).expect("client namespace");
        let backend = NetNs::create(&format!("tugt-backend-{suffix}")).expect("backend namespace");
        let (client_if, backend_if) = (format!("tugt-c-{suffix}"), format!("tugt-b-{suffix}"));
        // Made inside the client namespace, so it never exists in the host's.
        client
            .exec(&[
                "ip",
                "link",
                "add",
                &client_if,
                "type",
                "veth",
                "peer",
                "name",
                &backend_if,
                "netns",
                backend.name(),
            ])
            .expect("veth pair");
        for command in [
            vec!["ip", "addr", "add", "10.99.0.1/24", "dev", &client_if],
            vec!["ip", "link", "set", &client_if, "up"],
            // ClusterIPs are routed out of the node like any address; DNAT picks the endpoint.
            vec!["ip", "route", "add", "default", "via", BACKEND_A],
            // Node ports on 127.0.0.1 (see proxy::ROUTE_LOCALNET).
            vec!["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
        ] {
            client.exec(&command).expect("client network");
        }
        for command in [
            vec!["ip", "addr", "add", "10.99.0.2/24", "dev", &backend_if],
            vec!["ip", "addr", "add", "10.99.0.3/24", "dev", &backend_if],
            vec!["ip", "link", "set", &backend_if, "up"],
        ] {
            backend.exec(&command).expect("backend network");
        }
        let files = tempfile::tempdir().expect("temporary directory");
        let mut servers = Vec::new();
        for (name, ip) in [("a", BACKEND_A), ("b", BACKEND_B)] {
            let root = files.path().join(name);
            std::fs::create_dir(&root).unwrap();
            std::fs::write(root.join("who"), name).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", backend.name(), "busybox", "httpd", "-f", "-p", &format!("{ip}:8080"), "-h"])
                .arg(&root)
                .stdout(Stdio::null())
                .spawn()
                .expect("busybox httpd");
            servers.push(Server(child));
        }
        let lab = Lab { _servers: servers, client, _backend: backend, _files: files };
        for ip in [BACKEND_A, BACKEND_B] {
            wait_for(&format!("the backend on {ip}:8080"), Duration::from_secs(10), || lab.get(ip, 8080))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        lab
    }

    /// GET /who from the client namespace: the backend's name, or what went wrong.
    fn get(&self, ip: &str, port: u16) -> Result<String, String> {
        let url = format!("http://{ip}:{port}/who");
        match self.client.exec(&["curl", "-sS", "--max-time", "3", &url]) {
            Ok(output) => Ok(String::from_utf8_lossy(&output.stdout).trim().to_string()),
            Err(e) => Err(e),
        }
    }

    /// The names of the backends answering `count` requests.
    fn answers(&self, ip: &str, port: u16, count: usize) -> Vec<String> {
        let mut names: Vec<String> = (0..count).map(|_| self.get(ip, port).unwrap_or_else(|e| panic!("{e}"))).collect();
        names.sort();
        names.dedup();
        names
    }

    fn nft(&self) -> Nft {
        Nft { table: "tugboat".into(), netns: Some(self.client.name().to_string()) }
    }

    fn tables(&self) -> String {
        String::from_utf8_lossy(&self.client.exec(&["nft", "list", "tables"]).unwrap().stdout).into_owned()
    }
}

fn node() -> NodeContext {
    NodeContext {
        node_name: "tugt-node".into(),
        node_ips: vec![CLIENT_IP.parse().unwrap()],
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        node_pod_cidr: Some("10.42.0.0/24".parse().unwrap()),
        localhost_node_ports: true,
    }
}

fn service(name: &str, cluster_ip: &str, extra: Value) -> Service {
    let mut spec = json!({"clusterIP": cluster_ip, "type": "NodePort",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": NODE_PORT}]});
    if name != "web" {
        spec["type"] = json!("ClusterIP");
        spec["ports"][0].as_object_mut().unwrap().remove("nodePort");
    }
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    serde_json::from_value(json!({"metadata": {"namespace": "default", "name": name}, "spec": spec})).unwrap()
}

fn slice(service: &str, ips: &[&str]) -> EndpointSlice {
    let endpoints: Vec<Value> =
        ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": format!("{service}-1"),
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

#[test]
fn cluster_ips_node_ports_rejections_and_deltas_in_a_real_kernel() {
    assert!(
        run("id", &["-u"]).map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false),
        "this test needs root (network namespaces and nftables)"
    );
    let lab = Lab::start();
    let mut syncer = Syncer::new(lab.nft());
    let empty = service("empty", EMPTY_CLUSTER_IP, json!({}));

    let web = service("web", CLUSTER_IP, json!({}));
    let both = slice("web", &[BACKEND_A, BACKEND_B]);
    let report = syncer.sync(proxy::build(&node(), [&web, &empty], [&both])).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.full);
    // Random choice: 40 requests all on one backend would happen with probability 2^-39.
    assert_eq!(lab.answers(CLUSTER_IP, 80, 40), ["a", "b"], "the ClusterIP reaches both endpoints");
    for ip in [CLIENT_IP, "127.0.0.1"] {
        assert_eq!(lab.answers(ip, NODE_PORT, 20), ["a", "b"], "the node port on {ip} answers");
    }

    // No endpoints: refused at once, not a timeout.
    let started = Instant::now();
    let refused = lab.get(EMPTY_CLUSTER_IP, 80).expect_err("a Service without endpoints must not answer");
    // curl reports a refused connection as "Failed to connect ... Couldn't connect to server".
    assert!(refused.contains("Failed to connect"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(1), "rejected after {:?}", started.elapsed());

    // One endpoint goes: a delta, and only the other answers.
    let only_a = slice("web", &[BACKEND_A]);
    let report = syncer.sync(proxy::build(&node(), [&web, &empty], [&only_a])).unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.full && report.changes <= 4, "{report:?}");
    assert_eq!(lab.answers(CLUSTER_IP, 80, 20), ["a"]);
    assert_eq!(lab.answers("127.0.0.1", NODE_PORT, 10), ["a"]);

    // ClientIP affinity: both endpoints back, every request of this client to the same one.
    let sticky = service("web", CLUSTER_IP, json!({"sessionAffinity": "ClientIP"}));
    let report = syncer.sync(proxy::build(&node(), [&sticky, &empty], [&both])).unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.full, "{report:?}");
    assert_eq!(lab.answers(CLUSTER_IP, 80, 20).len(), 1, "one client, one endpoint");

    // The Service gets endpoints: it answers instead of refusing.
    let empty_filled = slice("empty", &[BACKEND_B]);
    let set = proxy::build(&node(), [&web, &empty], [&both, &empty_filled]);
    syncer.sync(set).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lab.answers(EMPTY_CLUSTER_IP, 80, 5), ["b"]);
    assert_eq!(lab.answers(CLUSTER_IP, 80, 40), ["a", "b"]);

    // A table left by a crashed agent is replaced, not added to.
    let mut restarted = Syncer::new(lab.nft());
    let report = restarted.sync(proxy::build(&node(), [&web], [&only_a])).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.full);
    assert_eq!(lab.answers(CLUSTER_IP, 80, 10), ["a"]);
    assert!(lab.get(EMPTY_CLUSTER_IP, 80).is_err(), "the old table's Service is gone");

    restarted.remove().unwrap_or_else(|e| panic!("{e}"));
    assert!(!lab.tables().contains("tugboat"), "{}", lab.tables());
    restarted.remove().expect("removing an absent table is fine");
}

#[test]
fn a_bad_transaction_changes_nothing_and_the_next_sync_rewrites_the_table() {
    let suffix = unique_suffix();
    let netns = NetNs::create(&format!("tugt-txn-{suffix}")).expect("namespace");
    let nft = Nft { table: "tugboat".into(), netns: Some(netns.name().to_string()) };
    let broken = nft.apply("add table ip tugboat\nadd chain ip tugboat ok\nadd rule ip tugboat ok bogus\n");
    let message = broken.expect_err("nft must reject the rule").to_string();
    assert!(message.contains("nothing of it was applied") && message.contains("bogus"), "{message}");
    let tables = String::from_utf8_lossy(&netns.exec(&["nft", "list", "tables"]).unwrap().stdout).into_owned();
    assert!(!tables.contains("tugboat"), "one transaction: the table must not exist: {tables}");

    // A sync whose delta fails (the table vanished behind our back) is followed by a full write.
    let mut syncer = Syncer::new(nft.clone());
    let web = service("web", CLUSTER_IP, json!({}));
    syncer.sync(proxy::build(&node(), [&web], [&slice("web", &[BACKEND_A])])).unwrap();
    nft.remove().unwrap();
    let changed = proxy::build(&node(), [&web], [&slice("web", &[BACKEND_A, BACKEND_B])]);
    assert!(syncer.sync(changed.clone()).is_err(), "the delta refers to a table that is gone");
    assert!(syncer.sync(changed).unwrap().full);
    let ruleset =
        String::from_utf8_lossy(&netns.exec(&["nft", "list", "table", "ip", "tugboat"]).unwrap().stdout).into_owned();
    assert!(ruleset.contains(&format!("{} . 8080", Ipv4Addr::new(10, 99, 0, 3))), "{ruleset}");
}
