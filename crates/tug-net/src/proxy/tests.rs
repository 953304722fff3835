//! The rule set and its deltas, without a kernel: which endpoints get which traffic, what is
//! masqueraded, rejected or dropped, and how small a change's script is. Cases follow
//! Kubernetes' nftables proxier tests (pkg/proxy/nftables/proxier_test.go).

use std::net::{Ipv4Addr, SocketAddrV4};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::*;

const CLUSTER_IP: &str = "172.30.0.41";

fn node() -> NodeContext {
    NodeContext {
        node_name: "node-a".into(),
        node_ips: vec![Ipv4Addr::new(192, 168, 0, 2)],
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        node_pod_cidr: Some("10.42.1.0/24".parse().unwrap()),
        localhost_node_ports: true,
    }
}

/// A Service `ns/NAME` with port `p80` (80/TCP, node port 30080 unless ClusterIP), its spec
/// fields merged with `spec`.
fn service(name: &str, cluster_ip: &str, spec: Value) -> Service {
    let mut base = json!({
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"clusterIP": cluster_ip, "type": "ClusterIP",
                 "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80}]},
    });
    for (key, value) in spec.as_object().unwrap() {
        base["spec"][key] = value.clone();
    }
    if base["spec"]["type"] != "ClusterIP" {
        base["spec"]["ports"][0]["nodePort"] = json!(30080);
    }
    serde_json::from_value(base).unwrap()
}

/// A slice of `ns/SERVICE` with port `p80` (TCP, target `port`) and endpoints
/// `(ip, flags)`: "r" ready, "s" serving, "t" terminating, "l" on this node.
fn slice(service: &str, name: &str, port: u16, endpoints: &[(&str, &str)]) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, flags)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": flags.contains('r'), "serving": flags.contains('s') || flags.contains('r'),
                               "terminating": flags.contains('t')},
                "nodeName": if flags.contains('l') { "node-a" } else { "node-b" },
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "p80", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn addr(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

fn key(ip: &str, port: u16) -> AddressKey {
    (ip.parse().unwrap(), Protocol::Tcp, port)
}

fn goto(verdict: Option<&Verdict>) -> String {
    match verdict {
        Some(Verdict::Goto(chain)) => chain.clone(),
        other => panic!("expected a goto, got {other:?}"),
    }
}

fn sorted(mut endpoints: Vec<SocketAddrV4>) -> Vec<SocketAddrV4> {
    endpoints.sort();
    endpoints
}

#[test]
fn cluster_ip_sends_to_ready_endpoints_and_masquerades_off_cluster_traffic() {
    let svc = service("web", CLUSTER_IP, json!({}));
    let eps = slice("web", "web-1", 8080, &[("10.42.1.5", "rl"), ("10.42.2.7", "r"), ("10.42.2.8", "")]);
    let set = build(&node(), [&svc], [&eps]);

    let chain = goto(set.service_ips.get(&key(CLUSTER_IP, 80)));
    assert_eq!(sorted(set.endpoints_of(&chain)), vec![addr("10.42.1.5:8080"), addr("10.42.2.7:8080")]);
    let masquerade = Rule::MasqueradeUnlessFromPods {
        cluster_ip: CLUSTER_IP.parse().unwrap(),
        protocol: Protocol::Tcp,
        port: 80,
        pods: "10.42.0.0/16".parse().unwrap(),
    };
    assert_eq!(set.chains[&chain].rules[0], masquerade);
    assert_eq!(set.chains[&chain].comment, "ns/web/tcp/p80");
    // Hairpin: each endpoint reaching the Service is masqueraded when it lands on itself.
    assert_eq!(set.hairpin.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(), ["10.42.1.5", "10.42.2.7"]);
    assert!(set.no_endpoint_services.is_empty() && set.service_node_ports.is_empty());
}

#[test]
fn terminating_endpoints_serve_only_when_none_is_ready() {
    let svc = service("web", CLUSTER_IP, json!({}));
    let draining = slice("web", "web-1", 80, &[("10.42.1.5", "st"), ("10.42.1.6", "t")]);
    let set = build(&node(), [&svc], [&draining]);
    let chain = goto(set.service_ips.get(&key(CLUSTER_IP, 80)));
    assert_eq!(set.endpoints_of(&chain), vec![addr("10.42.1.5:80")], "serving and terminating, not the stopped one");

    let mixed = slice("web", "web-1", 80, &[("10.42.1.5", "st"), ("10.42.1.7", "r")]);
    let set = build(&node(), [&svc], [&mixed]);
    assert_eq!(set.endpoints_of(&goto(set.service_ips.get(&key(CLUSTER_IP, 80)))), vec![addr("10.42.1.7:80")]);
}

#[test]
fn services_without_usable_endpoints_are_rejected_or_dropped() {
    // (case, service spec, endpoints, ClusterIP verdict, node port verdict)
    type Case = (&'static str, Value, Vec<(&'static str, &'static str)>, Option<Verdict>, Option<Verdict>);
    let cases: Vec<Case> = vec![
        ("no endpoints", json!({"type": "NodePort"}), vec![], Some(Verdict::Reject), Some(Verdict::Reject)),
        (
            "only not-ready endpoints",
            json!({"type": "NodePort"}),
            vec![("10.42.1.5", "")],
            Some(Verdict::Reject),
            Some(Verdict::Reject),
        ),
        (
            "internalTrafficPolicy Local, endpoints elsewhere",
            json!({"internalTrafficPolicy": "Local"}),
            vec![("10.42.2.5", "r")],
            Some(Verdict::Drop),
            None,
        ),
        (
            "externalTrafficPolicy Local, endpoints elsewhere",
            json!({"type": "NodePort", "externalTrafficPolicy": "Local"}),
            vec![("10.42.2.5", "r")],
            None,
            Some(Verdict::Drop),
        ),
        ("endpoints here", json!({"type": "NodePort"}), vec![("10.42.1.5", "rl")], None, None),
    ];
    for (case, spec, endpoints, cluster_ip, node_port) in cases {
        let svc = service("web", CLUSTER_IP, spec);
        let eps = slice("web", "web-1", 80, &endpoints);
        let set = build(&node(), [&svc], [&eps]);
        assert_eq!(set.no_endpoint_services.get(&key(CLUSTER_IP, 80)), cluster_ip.as_ref(), "{case}: ClusterIP");
        assert_eq!(set.no_endpoint_node_ports.get(&(Protocol::Tcp, 30080)), node_port.as_ref(), "{case}: node port");
        // Nothing is dispatched where the filter refuses (except external traffic, which is
        // still short-circuited for pods and the host).
        if cluster_ip.is_some() {
            assert!(!set.service_ips.contains_key(&key(CLUSTER_IP, 80)), "{case}");
        }
        if node_port == Some(Verdict::Reject) {
            assert!(set.service_node_ports.is_empty(), "{case}");
        }
    }
}

#[test]
fn headless_and_external_name_services_get_no_rules() {
    let headless = service("db", "None", json!({}));
    let external: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "example.com"},
    }))
    .unwrap();
    let eps = slice("db", "db-1", 5432, &[("10.42.1.5", "rl")]);
    let set = build(&node(), [&headless, &external], [&eps]);
    assert!(set.chains.is_empty() && set.service_ips.is_empty() && set.no_endpoint_services.is_empty());
}

#[test]
fn node_ports_masquerade_unless_external_traffic_policy_is_local() {
    let eps = slice("web", "web-1", 80, &[("10.42.1.5", "rl"), ("10.42.2.7", "r")]);

    let cluster = build(&node(), [&service("web", CLUSTER_IP, json!({"type": "NodePort"}))], [&eps]);
    let external = goto(cluster.service_node_ports.get(&(Protocol::Tcp, 30080)));
    let cluster_chain = goto(cluster.service_ips.get(&key(CLUSTER_IP, 80)));
    assert_eq!(cluster.chains[&external].rules, vec![Rule::Masquerade, Rule::Goto(cluster_chain)]);
    assert_eq!(cluster.endpoints_of(&external).len(), 2);
    let node_port_ips: Vec<String> = cluster.node_port_ips.iter().map(|ip| ip.to_string()).collect();
    assert_eq!(node_port_ips, ["127.0.0.1", "192.168.0.2"]);

    let local_svc = service("web", CLUSTER_IP, json!({"type": "NodePort", "externalTrafficPolicy": "Local"}));
    let local = build(&node(), [&local_svc], [&eps]);
    let external = goto(local.service_node_ports.get(&(Protocol::Tcp, 30080)));
    let cluster_chain = goto(local.service_ips.get(&key(CLUSTER_IP, 80)));
    let rules = &local.chains[&external].rules;
    assert!(!rules.contains(&Rule::Masquerade), "the client's address is kept");
    assert_eq!(
        rules[..3],
        [
            Rule::PodTrafficGoto { pods: "10.42.0.0/16".parse().unwrap(), chain: cluster_chain.clone() },
            Rule::MasqueradeFromHost,
            Rule::HostTrafficGoto(cluster_chain),
        ]
    );
    assert_eq!(
        local.endpoints_of(&external),
        vec![addr("10.42.1.5:80")],
        "external traffic reaches local endpoints only"
    );
}

#[test]
fn internal_traffic_policy_local_uses_this_nodes_endpoints() {
    let svc = service("web", CLUSTER_IP, json!({"internalTrafficPolicy": "Local"}));
    let eps = slice("web", "web-1", 80, &[("10.42.1.5", "rl"), ("10.42.2.7", "r")]);
    let set = build(&node(), [&svc], [&eps]);
    let chain = goto(set.service_ips.get(&key(CLUSTER_IP, 80)));
    assert!(chain.starts_with("loc-"));
    assert_eq!(set.endpoints_of(&chain), vec![addr("10.42.1.5:80")]);
}

#[test]
fn load_balancer_and_external_ips_go_through_the_external_chain() {
    let mut svc = service("web", CLUSTER_IP, json!({"type": "LoadBalancer", "externalIPs": ["192.0.2.10"]}));
    svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.168.0.2"}]}})).unwrap();
    let eps = slice("web", "web-1", 80, &[("10.42.1.5", "rl")]);
    let set = build(&node(), [&svc], [&eps]);
    let external = goto(set.service_node_ports.get(&(Protocol::Tcp, 30080)));
    assert_eq!(goto(set.service_ips.get(&key("192.168.0.2", 80))), external);
    assert_eq!(goto(set.service_ips.get(&key("192.0.2.10", 80))), external);
    assert_eq!(set.chains[&external].rules[0], Rule::Masquerade);
}

#[test]
fn client_ip_affinity_remembers_each_client_per_endpoint() {
    let svc = service(
        "web",
        CLUSTER_IP,
        json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
    );
    let eps = slice("web", "web-1", 80, &[("10.42.1.5", "rl"), ("10.42.2.7", "r")]);
    let set = build(&node(), [&svc], [&eps]);
    let chain = goto(set.service_ips.get(&key(CLUSTER_IP, 80)));
    let rules = &set.chains[&chain].rules;
    let (Rule::AffinityGoto { set: first_set, chain: first }, Rule::PickChain(picks)) = (&rules[1], &rules[3]) else {
        panic!("affinity lookups then a random pick: {rules:?}");
    };
    assert_eq!(picks.len(), 2);
    assert_eq!(set.affinity_sets.get(first_set), Some(&600));
    assert_eq!(
        set.chains[first].rules,
        vec![Rule::RememberClient(first_set.clone()), Rule::Dnat { protocol: Protocol::Tcp, to: addr("10.42.1.5:80") }]
    );
    assert_eq!(sorted(set.endpoints_of(&chain)), vec![addr("10.42.1.5:80"), addr("10.42.2.7:80")]);
}

#[test]
fn endpoints_come_from_every_slice_of_the_service_once() {
    let svc = service("web", CLUSTER_IP, json!({}));
    let first = slice("web", "web-1", 80, &[("10.42.1.5", ""), ("10.42.1.6", "r")]);
    let second = slice("web", "web-2", 80, &[("10.42.1.5", "r"), ("10.42.1.7", "r")]);
    let other_service = slice("api", "api-1", 80, &[("10.42.9.9", "r")]);
    let set = build(&node(), [&svc], [&first, &second, &other_service]);
    let chain = goto(set.service_ips.get(&key(CLUSTER_IP, 80)));
    let want = vec![addr("10.42.1.5:80"), addr("10.42.1.6:80"), addr("10.42.1.7:80")];
    assert_eq!(sorted(set.endpoints_of(&chain)), want, "a duplicate counts once, ready if any slice says so");
}

#[test]
fn names_are_short_and_stable_while_other_services_come_and_go() {
    let web = service("web", CLUSTER_IP, json!({}));
    let api = service("api", "172.30.0.42", json!({}));
    let web_eps = slice("web", "web-1", 80, &[("10.42.1.5", "r"), ("10.42.1.6", "r")]);
    let api_eps = slice("api", "api-1", 80, &[("10.42.1.8", "r"), ("10.42.1.9", "r")]);
    let alone = build(&node(), [&web], [&web_eps]);
    let together = build(&node(), [&web, &api], [&web_eps, &api_eps]);
    let chain = goto(alone.service_ips.get(&key(CLUSTER_IP, 80)));
    assert!(chain.len() <= 17, "{chain}");
    assert_eq!(alone.chains[&chain], together.chains[&chain], "same name, same rules, same backend keys");
    assert_eq!(alone, build(&node(), [&web], [&web_eps]), "deterministic");
}

// --- deltas ---------------------------------------------------------------------------------

fn two_services() -> (Vec<Service>, Vec<EndpointSlice>) {
    let services = vec![
        service("web", CLUSTER_IP, json!({"type": "NodePort"})),
        service("api", "172.30.0.42", json!({"sessionAffinity": "ClientIP"})),
    ];
    let slices = vec![
        slice("web", "web-1", 80, &[("10.42.1.5", "rl"), ("10.42.2.7", "r"), ("10.42.2.8", "r")]),
        slice("api", "api-1", 80, &[("10.42.1.8", "r"), ("10.42.1.9", "r")]),
    ];
    (services, slices)
}

#[test]
fn no_change_is_an_empty_delta() {
    let (services, slices) = two_services();
    let set = build(&node(), &services, &slices);
    assert_eq!(delta("tugboat", &set, &set.clone()), Some(Delta::default()));
}

#[test]
fn an_endpoint_change_is_a_few_element_lines_not_a_rewrite() {
    let (services, mut slices) = two_services();
    let before = build(&node(), &services, &slices);
    slices[0] = slice("web", "web-1", 80, &[("10.42.1.5", "rl"), ("10.42.2.7", "r")]);
    let after = build(&node(), &services, &slices);
    let delta = delta("tugboat", &before, &after).unwrap();
    let lines: Vec<&str> = delta.script.lines().collect();
    assert_eq!(lines.len(), 5, "flush, 2 rules, 2 element deletes: {}", delta.script);
    assert!(lines.iter().all(|l| !l.contains("table")), "{}", delta.script);
    assert!(delta.script.contains("flush chain ip tugboat svc-"), "the pick rule counts 2 now: {}", delta.script);
    assert!(delta.script.contains("delete element ip tugboat hairpin { 10.42.2.8 . 10.42.2.8 }"), "{}", delta.script);
    assert!(delta.script.contains("mod 2 offset"), "{}", delta.script);

    // An endpoint replaced by another: the rule stays, two map elements change.
    slices[0] = slice("web", "web-1", 80, &[("10.42.1.5", "rl"), ("10.42.3.3", "r")]);
    let replaced = build(&node(), &services, &slices);
    let delta = super::delta("tugboat", &after, &replaced).unwrap();
    assert!(!delta.script.contains("chain"), "{}", delta.script);
    assert_eq!(delta.changes, 3, "one backend element changed, hairpin -1 +1: {}", delta.script);
}

#[test]
fn adding_and_removing_a_service_touches_only_that_service() {
    let (mut services, mut slices) = two_services();
    let before = build(&node(), &services, &slices);
    services.push(service("new", "172.30.0.43", json!({})));
    slices.push(slice("new", "new-1", 80, &[("10.42.1.20", "r"), ("10.42.1.21", "r")]));
    let after = build(&node(), &services, &slices);

    let added = delta("tugboat", &before, &after).unwrap();
    let lines: Vec<&str> = added.script.lines().collect();
    assert_eq!(lines.len(), 6, "chain, its 2 rules, backends, hairpin, dispatch:\n{}", added.script);
    assert!(lines[0].starts_with("add chain ip tugboat svc-"));
    assert!(lines[5].starts_with("add element ip tugboat service-ips { 172.30.0.43 . tcp . 80 : goto svc-"));

    let removed = delta("tugboat", &after, &before).unwrap();
    let order: Vec<&str> = removed.script.lines().map(|l| l.split(" ip ").next().unwrap()).collect();
    assert_eq!(order, ["flush chain", "delete element", "delete element", "delete element", "delete chain"]);
}

#[test]
fn removing_an_affinity_service_deletes_its_sets_after_its_chains() {
    let (services, slices) = two_services();
    let before = build(&node(), &services, &slices);
    let after = build(&node(), &services[..1], &slices);
    let script = delta("tugboat", &before, &after).unwrap().script;
    let last_chain = script.rfind("delete chain").unwrap();
    let first_set = script.find("delete set").unwrap();
    assert!(last_chain < first_set, "{script}");
    assert_eq!(script.matches("delete set").count(), 2, "{script}");
}

#[test]
fn a_changed_node_rewrites_the_table() {
    let (services, slices) = two_services();
    let before = build(&node(), &services, &slices);
    let moved = NodeContext { node_ips: vec![Ipv4Addr::new(192, 168, 0, 3)], ..node() };
    assert_eq!(delta("tugboat", &before, &build(&moved, &services, &slices)), None);
}

#[test]
fn the_full_table_fills_maps_after_the_rules_that_use_them() {
    let (services, slices) = two_services();
    let script = render_full("tugboat", &build(&node(), &services, &slices));
    assert!(script.starts_with("add table ip tugboat\ndelete table ip tugboat\ntable ip tugboat {"));
    let table_end = script.find("\n}\n").unwrap();
    let first_element = script.find("add element").unwrap();
    assert!(table_end < first_element);
    assert!(
        script.rfind("add element ip tugboat backends-").unwrap()
            < script.find("add element ip tugboat service-ips").unwrap()
    );
    assert!(script.contains("type nat hook output priority -100;"), "numbers, not dstnat, for nft 1.0.6");
}
