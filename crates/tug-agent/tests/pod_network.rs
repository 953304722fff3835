//! The pod network across hosts, for real: two hosts are network namespaces this test makes
//! (`tugt-<suffix>-a`, `-b`), joined by a bridge in a third (`-s`, the underlay switch) that
//! also reaches this process's API server through one veth. Each host runs `tug agent` (its own
//! containerd, data dir and bridge) joined with the node token; the node IPAM controller gives
//! each a range of 10.42.0.0/16. A pod on A reaches a pod on B by pod IP and B sees A's pod IP
//! as the source (host-gateway routes, no masquerading inside the cluster CIDR), while traffic
//! leaving the cluster CIDR is masqueraded to A's address. Stopped agents leave no route or
//! nftables table; the guard removes the namespaces and the veth on success, failure and panic.
//!
//! Needs root, and the `tug` binary built beside this test (`cargo build -p tug`, or
//! `TUG_BINARY`): agents run as child processes inside the namespaces.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::json;
use support::{Cluster, DEADLINE, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tug_agent::agent::network::{DEFAULT_MASQUERADE_TABLE, pod_cidrs_of};
use tug_agent::agent::routes::DEFAULT_ROUTE_PROTOCOL;
use tug_agent::containerd::Layout;
use tug_apiserver::server::ServerConfig;
use tug_testkit::eventually;

const HTTP_PORT: u16 = 8080;

/// `ip ARGS...`, which must succeed.
fn ip(args: &[&str]) {
    let output = run("ip", args);
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// `ip netns exec NS PROGRAM ARGS...`'s standard output (empty when it fails).
fn in_netns(netns: &str, program: &str, args: &[&str]) -> String {
    let output = run("ip", &[&["netns", "exec", netns, program], args].concat());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `tug` binary: `TUG_BINARY`, else the one cargo built beside this test.
fn tug_binary() -> PathBuf {
    let binary = std::env::var_os("TUG_BINARY").map(PathBuf::from).unwrap_or_else(|| {
        let test = std::env::current_exe().expect("the test's path");
        test.parent().and_then(Path::parent).expect("target/<profile>").join("tug")
    });
    assert!(binary.exists(), "{} is missing: build it first (cargo build -p tug) or set TUG_BINARY", binary.display());
    binary
}

/// The simulated network: three namespaces and the host's veth into the underlay. The
/// underlay is 10.211.<n>.0/24: this process .1, host A .2, host B .3.
struct Underlay {
    switch: String,
    hosts: [String; 2],
    host_link: String,
    subnet: String,
}

impl Underlay {
    fn new() -> Underlay {
        let suffix = tug_testkit::unique_suffix();
        let octet = u8::from_str_radix(&suffix[suffix.len() - 2..], 16).expect("hex suffix");
        let name = |role: &str| format!("tugt-{suffix}-{role}");
        let underlay = Underlay {
            switch: name("s"),
            hosts: [name("a"), name("b")],
            host_link: format!("tugt{suffix}").chars().take(15).collect(),
            subnet: format!("10.211.{octet}"),
        };
        // The guard exists before the first object, so a failed step still cleans up.
        for netns in [&underlay.switch, &underlay.hosts[0], &underlay.hosts[1]] {
            ip(&["netns", "add", netns]);
        }
        let switch = underlay.switch.as_str();
        ip(&["-n", switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", switch, "link", "set", "br0", "up"]);
        ip(&["link", "add", &underlay.host_link, "type", "veth", "peer", "name", "srv", "netns", switch]);
        ip(&["-n", switch, "link", "set", "srv", "master", "br0", "up"]);
        ip(&["addr", "add", &format!("{}/24", underlay.server_ip()), "dev", &underlay.host_link]);
        ip(&["link", "set", &underlay.host_link, "up"]);
        for (index, netns) in underlay.hosts.iter().enumerate() {
            let port = format!("p{index}");
            ip(&["-n", switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", netns]);
            ip(&["-n", switch, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", netns, "addr", "add", &format!("{}/24", underlay.host_ip(index)), "dev", "eth0"]);
            ip(&["-n", netns, "link", "set", "eth0", "up"]);
            ip(&["-n", netns, "link", "set", "lo", "up"]);
        }
        underlay
    }

    fn server_ip(&self) -> Ipv4Addr {
        format!("{}.1", self.subnet).parse().expect("address")
    }

    fn host_ip(&self, index: usize) -> Ipv4Addr {
        format!("{}.{}", self.subnet, index + 2).parse().expect("address")
    }

    /// What [`leftovers`] looks for once the guard ran: the namespaces, then the host's veth.
    fn objects(&self) -> (Vec<String>, String) {
        (vec![self.switch.clone(), self.hosts[0].clone(), self.hosts[1].clone()], self.host_link.clone())
    }
}

/// Which of the namespaces and the link are still on this machine.
fn leftovers((namespaces, link): &(Vec<String>, String)) -> Vec<String> {
    let listed = String::from_utf8_lossy(&run("ip", &["netns", "list"]).stdout).into_owned();
    let mut left: Vec<String> = namespaces
        .iter()
        .filter(|netns| listed.lines().any(|line| line.split_whitespace().next() == Some(netns.as_str())))
        .cloned()
        .collect();
    if run("ip", &["link", "show", link]).status.success() {
        left.push(link.clone());
    }
    left
}

impl Drop for Underlay {
    fn drop(&mut self) {
        // The peer in the switch goes with the host's end; each namespace takes its bridges,
        // veths, routes and nftables tables with it.
        let _ = run("ip", &["link", "del", &self.host_link]);
        for netns in [&self.switch, &self.hosts[0], &self.hosts[1]] {
            let _ = run("ip", &["netns", "del", netns]);
        }
    }
}

/// `tug agent` inside a host's network namespace, with a data dir of its own holding the demo images.
/// Dropped without [`AgentProcess::stop`] (a failed test), it removes the pods through the
/// agent's containerd and ends every process left in the namespace.
struct AgentProcess {
    netns: String,
    node_name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl AgentProcess {
    fn start(netns: &str, node_ip: Ipv4Addr, server: &str, token: &Path) -> AgentProcess {
        let dir = tempfile::Builder::new().prefix(&format!("{netns}-")).tempdir().expect("data dir");
        let images = Layout::new(dir.path()).images_dir();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images");
        let built = run(script.to_str().expect("utf-8 path"), &[images.to_str().expect("utf-8 path")]);
        assert!(built.status.success(), "scripts/demo-images failed: {}", String::from_utf8_lossy(&built.stderr));
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("agent log");
        // nsenter, not `ip netns exec`: that one also remounts /sys in a mount namespace of its
        // own, and runc then finds no cgroup mount.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .arg(tug_binary())
            .args(["agent", "--server", server, "--token-file"])
            .arg(token)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--node-name", netns, "--node-ip", &node_ip.to_string()])
            .env("TUG_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tug agent");
        AgentProcess { netns: netns.to_string(), node_name: netns.to_string(), dir, child: Some(child) }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("--- {} agent log (last lines)\n{}", self.node_name, lines[lines.len().saturating_sub(15)..].join("\n"))
    }

    /// SIGTERM, then waits for the agent to exit (it stops its containerd and undoes its host
    /// networking). Pods were deleted before.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = run("kill", &["-TERM", &child.id().to_string()]);
        let exited = tug_testkit::wait_for("the agent to exit", Duration::from_secs(30), || match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            other => Err(format!("{other:?}")),
        });
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(exited.is_ok_and(|s| s.success()), "the agent did not stop cleanly\n{}", self.log_tail());
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            support::unmount_under(self.dir.path());
            return;
        };
        // A failed test: the agent goes first (it would recreate what is removed), its
        // containerd (in the namespace, where the pods' shims listen) removes the pods, then
        // whatever is left in the namespace is ended.
        let _ = child.kill();
        let _ = child.wait();
        let socket = Layout::new(self.dir.path()).socket();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), support::remove_all_pods(&socket)).await.ok()
            })
        })
        .join();
        let pids = String::from_utf8_lossy(&run("ip", &["netns", "pids", &self.netns]).stdout).into_owned();
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
        support::unmount_under(self.dir.path());
    }
}

/// The routes of the agents' protocol in `netns`, one `DST via GW` a line.
fn agent_routes(netns: &str) -> String {
    let listed = in_netns(netns, "ip", &["-4", "route", "show", "proto", &DEFAULT_ROUTE_PROTOCOL.to_string()]);
    listed.lines().map(|l| l.split(" dev ").next().unwrap_or(l).trim().to_string()).collect::<Vec<_>>().join("\n")
}

fn ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod(name: &str, node: &str, restart_policy: &str, command: &[&str], probe_port: Option<u16>) -> Pod {
    let mut container = json!({
        "name": "main",
        "image": "localhost/busybox:latest",
        "imagePullPolicy": "Never",
        "command": command,
    });
    if let Some(port) = probe_port {
        container["readinessProbe"] = json!({"tcpSocket": {"port": port}, "periodSeconds": 1});
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart_policy,
            // busybox httpd as PID 1 ignores SIGTERM: keep the kill short.
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }))
    .expect("a valid Pod")
}

/// Answers one HTTP request on `listener` with the address it came from.
async fn answer_with_peer_address(listener: tokio::net::TcpListener) -> Option<SocketAddr> {
    let (mut stream, peer) = listener.accept().await.ok()?;
    let mut request = [0u8; 1024];
    let _ = stream.read(&mut request).await;
    let body = format!("{}\n", peer.ip());
    let response = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let _ = stream.write_all(response.as_bytes()).await;
    Some(peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_two_hosts_reach_each_other_by_pod_ip_with_their_own_source_address() {
    let underlay = Underlay::new();
    let server_ip = underlay.server_ip();
    let cluster = Cluster::start_with(|dir| ServerConfig {
        listen: SocketAddr::from((server_ip, 0)),
        admission: tug_apiserver::Admission { default_toleration_seconds: 300 },
        ..ServerConfig::local(dir)
    })
    .await;
    let token = cluster.dir.path().join("node-token");
    let mut agents: Vec<AgentProcess> = (0..2)
        .map(|i| AgentProcess::start(&underlay.hosts[i], underlay.host_ip(i), &cluster.server.url, &token))
        .collect();
    let logs = |agents: &[AgentProcess]| agents.iter().map(AgentProcess::log_tail).collect::<Vec<_>>().join("\n");

    // Both nodes Ready, each with its own range of the cluster CIDR from the IPAM controller.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let names = [agents[0].node_name.clone(), agents[1].node_name.clone()];
    let ranges = eventually("both nodes Ready with a pod range", DEADLINE, || async {
        let mut ranges = Vec::new();
        for name in &names {
            let node = nodes.get(name).await.map_err(|e| format!("{name}: {e}\n{}", logs(&agents)))?;
            match pod_cidrs_of(&node).first() {
                Some(range) if ready(&node) => ranges.push(range.clone()),
                _ => return Err(format!("{name}: {:?} {:?}\n{}", node.spec, node.status, logs(&agents))),
            }
        }
        Ok(ranges)
    })
    .await;
    assert_ne!(ranges[0], ranges[1], "two hosts, two ranges");
    for range in &ranges {
        assert!(range.starts_with("10.42.") && range.ends_with("/24"), "{range} is a /24 of the cluster CIDR");
    }

    // Each host routes the other's range through the other's address, and masquerades egress.
    for (here, there) in [(0, 1), (1, 0)] {
        let expected = format!("{} via {}", ranges[there], underlay.host_ip(there));
        let netns = &underlay.hosts[here];
        eventually(&format!("{netns}'s route to the other host's pods"), DEADLINE, || async {
            let routes = agent_routes(netns);
            if routes == expected {
                Ok(())
            } else {
                Err(format!("routes {routes:?}, want {expected:?}\n{}", logs(&agents)))
            }
        })
        .await;
        let table = in_netns(netns, "nft", &["list", "table", "ip", DEFAULT_MASQUERADE_TABLE]);
        assert!(table.contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade"), "{netns}: {table}");
    }

    // B serves a CGI that answers with the client's address; A's pod asks it by pod IP, then
    // asks this process (outside the cluster CIDR), which sees A's node address.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let cgi = "mkdir -p /tmp/www/cgi-bin && \
               printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' >/tmp/www/cgi-bin/ip && \
               chmod +x /tmp/www/cgi-bin/ip && exec httpd -f -p 8080 -h /tmp/www";
    let echo = pod("echo", &names[1], "Always", &["sh", "-c", cgi], Some(HTTP_PORT));
    pods.create(&PostParams::default(), &echo).await.expect("created");
    let echo_ip = eventually("the echo pod on B Ready", DEADLINE, || async {
        let pod = pods.get("echo").await.map_err(|e| e.to_string())?;
        let status = pod.status.clone().unwrap_or_default();
        let is_ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        match status.pod_ip {
            Some(ip) if is_ready => Ok(ip),
            _ => Err(format!("{status:?}\n{}", logs(&agents))),
        }
    })
    .await;
    assert!(echo_ip.starts_with(ranges[1].trim_end_matches("0/24")), "{echo_ip} is of B's range {}", ranges[1]);

    let outside = tokio::net::TcpListener::bind((server_ip, 0)).await.expect("a port on the underlay");
    let outside_port = outside.local_addr().expect("address").port();
    let outside_seen = tokio::spawn(answer_with_peer_address(outside));
    // No `wget -T`: Debian's static busybox 1.35 crashes with it.
    let script =
        format!("wget -qO- http://{echo_ip}:{HTTP_PORT}/cgi-bin/ip && wget -qO- http://{server_ip}:{outside_port}/");
    pods.create(&PostParams::default(), &pod("client", &names[0], "Never", &["sh", "-c", &script], None))
        .await
        .expect("created");
    let client = eventually("the client pod on A to finish", DEADLINE, || async {
        let pod = pods.get("client").await.map_err(|e| e.to_string())?;
        match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") | Some("Failed") => Ok(pod),
            _ => Err(format!("{:?}\n{}", pod.status, logs(&agents))),
        }
    })
    .await;
    let output = pods.logs("client", &LogParams::default()).await.expect("the client's output");
    let phase = client.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(phase.as_deref(), Some("Succeeded"), "client output: {output:?}\n{}", logs(&agents));
    let lines: Vec<&str> = output.lines().collect();
    // httpd listens on IPv6 too, so it writes an IPv4 peer as `[::ffff:a.b.c.d]`.
    let seen_by_b = lines.first().copied().unwrap_or_default().trim_start_matches("[::ffff:").trim_end_matches(']');
    assert!(
        seen_by_b.starts_with(ranges[0].trim_end_matches("0/24")) && !seen_by_b.ends_with(".1"),
        "B must see a pod address of A's range {}, not a masqueraded one: {output:?}",
        ranges[0]
    );
    if let Some(client_ip) = client.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
        assert_eq!(seen_by_b, client_ip, "B sees the client pod's own address");
    }
    let seen_outside = outside_seen.await.expect("the outside server").map(|peer| peer.ip().to_string());
    assert_eq!(seen_outside, Some(underlay.host_ip(0).to_string()), "egress leaves with A's node address");
    assert_eq!(lines.get(1).copied(), Some(underlay.host_ip(0).to_string().as_str()));

    // Pods gone, then the agents stop and take their routes and masquerade tables with them.
    for name in ["client", "echo"] {
        pods.delete(name, &DeleteParams::default()).await.expect("deleted");
    }
    eventually("the pods gone", DEADLINE, || async {
        let left = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} pods left\n{}", logs(&agents))) }
    })
    .await;
    for (index, agent) in agents.iter_mut().enumerate() {
        let socket = Layout::new(agent.dir.path()).socket();
        eventually("the host's sandboxes gone", DEADLINE, || async {
            let mut cri = tug_cri::connect(&socket).await.map_err(|e| e.to_string())?;
            let request = tug_cri::v1::ListPodSandboxRequest::default();
            let sandboxes = cri.runtime.list_pod_sandbox(request).await.map_err(|e| e.to_string())?;
            let left = sandboxes.into_inner().items.len();
            if left == 0 { Ok(()) } else { Err(format!("{left} sandboxes")) }
        })
        .await;
        agent.stop();
        let netns = &underlay.hosts[index];
        assert_eq!(agent_routes(netns), "", "{netns}: the stopped agent's routes are gone");
        let tables = in_netns(netns, "nft", &["list", "tables"]);
        assert!(!tables.contains(DEFAULT_MASQUERADE_TABLE), "{netns}: the masquerade table is gone: {tables}");
    }
    drop(agents);
    let objects = underlay.objects();
    assert_eq!(leftovers(&objects).len(), 4, "the namespaces and the veth are there until the guard runs");
    drop(underlay);
    assert_eq!(leftovers(&objects), Vec::<String>::new(), "left behind");
}
