use super::*;

fn cidr(text: &str) -> ServiceCidr {
    ServiceCidr::parse(text).expect("valid CIDR")
}

#[test]
fn service_cidrs_parse_or_say_what_is_wrong() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("10.43.0.0/16", Ok("10.43.0.0/16")),
        ("10.96.0.0/12", Ok("10.96.0.0/12")),
        ("192.168.5.0/28", Ok("192.168.5.0/28")),
        ("10.43.0.1/16", Err("host bits set; did you mean 10.43.0.0/16?")),
        ("10.43.0.0/29", Err("the prefix must be between /8 and /28")),
        ("10.0.0.0/7", Err("the prefix must be between /8 and /28")),
        ("fd00::/108", Err("IPv6")),
        ("10.43.0.0", Err("is not a CIDR")),
        ("ten/16", Err("is not a CIDR")),
        ("10.43.0.0/x", Err("is not a CIDR")),
    ];
    for (text, want) in cases {
        match (ServiceCidr::parse(text), want) {
            (Ok(c), Ok(shown)) => assert_eq!(c.to_string(), *shown, "{text}"),
            (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e:?} should say {part:?}"),
            (got, _) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn node_port_ranges_parse_in_both_kubernetes_forms() {
    let cases: &[(&str, Option<&str>)] = &[
        ("30000-32767", Some("30000-32767")),
        ("30000+2767", Some("30000-32767")),
        ("20000-20000", Some("20000-20000")),
        ("32767-30000", None),
        ("0-100", None),
        ("30000", None),
        ("65000+1000", None),
        ("a-b", None),
    ];
    for (text, want) in cases {
        let got = NodePortRange::parse(text).map(|r| r.to_string());
        assert_eq!(got.as_deref().ok(), *want, "{text}: {got:?}");
    }
}

#[test]
fn the_range_holds_neither_its_network_nor_its_broadcast_address() {
    let c = cidr("10.43.0.0/16");
    let cases = [
        ("10.43.0.0", false),
        ("10.43.0.1", true),
        ("10.43.255.254", true),
        ("10.43.255.255", false),
        ("10.44.0.1", false),
        ("10.0.0.5", false),
    ];
    for (ip, held) in cases {
        assert_eq!(c.holds(ip.parse().unwrap()), held, "{ip}");
    }
    assert_eq!(c.kubernetes_service_ip().to_string(), "10.43.0.1");
    assert_eq!(c.dns_service_ip().to_string(), "10.43.0.10");
}

#[test]
fn dynamic_order_covers_the_range_once_upper_band_first_without_the_reserved_addresses() {
    let c = cidr("10.43.0.0/24");
    // /24: 256 addresses, 254 usable; the static band is max(16, 256/16) = 16 addresses.
    for random in [(0, 0), (7, 3), (u64::MAX, u64::MAX), (1000, 999)] {
        let order: Vec<Ipv4Addr> = c.dynamic_order(random).collect();
        assert_eq!(order.len(), 252, "254 usable minus kubernetes and kube-dns");
        let distinct: HashSet<_> = order.iter().collect();
        assert_eq!(distinct.len(), order.len(), "no address twice");
        assert!(!order.contains(&c.kubernetes_service_ip()) && !order.contains(&c.dns_service_ip()));
        let last_octet = |ip: &Ipv4Addr| ip.octets()[3];
        let lower_from = order.iter().position(|ip| last_octet(ip) <= 16).expect("the lower band comes last");
        assert_eq!(lower_from, 254 - 16, "the whole upper band before any static-band address: {order:?}");
        assert!(order[lower_from..].iter().all(|ip| last_octet(ip) <= 16));
    }
    // /16: the static band is capped at 256 addresses.
    let wide = cidr("10.43.0.0/16");
    let first = wide.dynamic_order((0, 0)).next().unwrap();
    assert_eq!(first.to_string(), "10.43.1.1", "the first dynamic candidate is past 256 static addresses");
}

#[test]
fn node_port_order_prefers_the_upper_band() {
    let range = NodePortRange::DEFAULT;
    // 2768 ports: the static band is min(max(16, 2768/32), 128) = 86 ports.
    let order: Vec<u16> = range.dynamic_order((5, 5)).collect();
    assert_eq!(order.len(), 2768);
    assert_eq!(order.iter().collect::<HashSet<_>>().len(), 2768);
    assert_eq!(order[0], 30000 + 86 + 5);
    assert!(order[..2768 - 86].iter().all(|p| *p >= 30086));
    let tiny = NodePortRange::parse("30000-30009").unwrap();
    assert_eq!(tiny.dynamic_order((3, 0)).collect::<Vec<_>>()[0], 30003, "no static band under 16 ports");
}

fn svc(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "spec": spec})
}

#[test]
fn a_service_holds_its_cluster_ip_node_ports_and_health_check_port() {
    let cases = [
        (json!({"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}), vec!["10.43.0.5"], vec![]),
        (json!({"clusterIP": "None", "ports": [{"port": 80}]}), vec![], vec![]),
        (json!({"type": "ExternalName", "clusterIP": "10.43.0.5"}), vec![], vec![]),
        (
            json!({"type": "NodePort", "clusterIP": "10.43.0.5", "ports": [
                {"port": 53, "protocol": "TCP", "nodePort": 30053},
                {"port": 53, "protocol": "UDP", "nodePort": 30053},
                {"port": 80, "nodePort": 30080},
            ]}),
            vec!["10.43.0.5"],
            vec![30053, 30080],
        ),
        (
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "clusterIPs": ["10.43.0.6"],
                   "ports": [{"port": 80, "nodePort": 30080}], "healthCheckNodePort": 31000}),
            vec!["10.43.0.6"],
            vec![30080, 31000],
        ),
    ];
    for (spec, ips, ports) in cases {
        let held = Held::of(&svc(spec.clone()));
        let want_ips: Vec<Ipv4Addr> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        assert_eq!((held.ips, held.node_ports), (want_ips, ports), "{spec}");
    }
}

#[test]
fn plans_reserve_only_what_the_stored_version_does_not_hold() {
    let np = |spec: Value| svc(spec);
    type Case = (&'static str, Option<Value>, Value, Plan);
    let cases: Vec<Case> = vec![
        (
            "a new ClusterIP Service gets any address",
            None,
            np(json!({"ports": [{"port": 80}]})),
            Plan { cluster_ip: Some(Want::Any), ..Plan::default() },
        ),
        (
            "a requested address is reserved as given",
            None,
            np(json!({"clusterIP": "10.43.0.10", "ports": [{"port": 53}]})),
            Plan { cluster_ip: Some(Want::Requested("10.43.0.10".into())), ..Plan::default() },
        ),
        ("headless needs nothing", None, np(json!({"clusterIP": "None"})), Plan::default()),
        (
            "ExternalName needs nothing",
            None,
            np(json!({"type": "ExternalName", "externalName": "x.example"})),
            Plan::default(),
        ),
        (
            "TCP and UDP on one port share one node port; a requested one is reserved",
            None,
            np(json!({"type": "NodePort", "ports": [
                {"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}, {"port": 80, "nodePort": 30080}]})),
            Plan {
                cluster_ip: Some(Want::Any),
                node_ports: vec![(PortSlot::Port(0), Want::Any), (PortSlot::Port(2), Want::Requested(30080))],
                shared: vec![(1, 0)],
                duplicates: vec![],
            },
        ),
        (
            "one node port asked for by two port numbers",
            None,
            np(
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30080}]}),
            ),
            Plan {
                cluster_ip: Some(Want::Any),
                node_ports: vec![(PortSlot::Port(0), Want::Requested(30080))],
                shared: vec![],
                duplicates: vec![(1, 30080)],
            },
        ),
        (
            "a LoadBalancer without node port allocation reserves only requested ones",
            None,
            np(json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]})),
            Plan { cluster_ip: Some(Want::Any), ..Plan::default() },
        ),
        (
            "externalTrafficPolicy Local on a LoadBalancer needs a health check port",
            None,
            np(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]})),
            Plan {
                cluster_ip: Some(Want::Any),
                node_ports: vec![(PortSlot::Port(0), Want::Any), (PortSlot::HealthCheck, Want::Any)],
                ..Plan::default()
            },
        ),
        (
            "an update keeps what the stored version holds",
            Some(np(json!({"type": "NodePort", "clusterIP": "10.43.3.3", "ports": [{"port": 80, "nodePort": 30080}]}))),
            np(
                json!({"type": "NodePort", "clusterIP": "10.43.3.3", "ports": [{"port": 80, "nodePort": 30080}, {"name": "b", "port": 81}]}),
            ),
            Plan { node_ports: vec![(PortSlot::Port(1), Want::Any)], ..Plan::default() },
        ),
        (
            "ExternalName to ClusterIP allocates",
            Some(np(json!({"type": "ExternalName", "externalName": "x.example"}))),
            np(json!({"type": "ClusterIP", "ports": [{"port": 80}]})),
            Plan { cluster_ip: Some(Want::Any), ..Plan::default() },
        ),
    ];
    for (what, old, new, want) in cases {
        assert_eq!(plan(old.as_ref(), &new), want, "{what}");
    }
}

#[test]
fn updates_keep_allocations_the_client_left_out_and_drop_what_the_new_type_does_not_use() {
    let stored = svc(json!({"type": "NodePort", "clusterIP": "10.43.3.3", "clusterIPs": ["10.43.3.3"],
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]}));
    type Case = (&'static str, Value, Value);
    let cases: Vec<Case> = vec![
        (
            "apply without clusterIP or nodePorts keeps them (ports matched by name)",
            svc(json!({"type": "NodePort", "ports": [{"name": "https", "port": 8443}, {"name": "http", "port": 80}]})),
            json!({"type": "NodePort", "clusterIP": "10.43.3.3", "clusterIPs": ["10.43.3.3"],
                   "ports": [{"name": "https", "port": 8443, "nodePort": 30443}, {"name": "http", "port": 80, "nodePort": 30080}]}),
        ),
        (
            "a node port another port now uses is not patched back in",
            svc(
                json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443, "nodePort": 30080}]}),
            ),
            json!({"type": "NodePort", "clusterIP": "10.43.3.3", "clusterIPs": ["10.43.3.3"],
                   "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443, "nodePort": 30080}]}),
        ),
        (
            "NodePort to ClusterIP with the ports unchanged drops the node ports",
            svc(json!({"type": "ClusterIP", "clusterIP": "10.43.3.3", "clusterIPs": ["10.43.3.3"],
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]})),
            json!({"type": "ClusterIP", "clusterIP": "10.43.3.3", "clusterIPs": ["10.43.3.3"],
                   "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}),
        ),
        (
            "to ExternalName with the address unchanged drops it",
            svc(
                json!({"type": "ExternalName", "externalName": "db.example", "clusterIP": "10.43.3.3", "clusterIPs": ["10.43.3.3"],
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]}),
            ),
            json!({"type": "ExternalName", "externalName": "db.example",
                   "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}),
        ),
    ];
    for (what, mut new, want) in cases {
        drop_type_dependent_fields(&stored, &mut new);
        keep_allocations(&stored, &mut new);
        assert_eq!(new["spec"], want, "{what}");
    }
}

#[test]
fn refusals_use_kubernetes_words() {
    let c = ServiceCidr::DEFAULT;
    let range = NodePortRange::DEFAULT;
    let ip = |why| cluster_ip_refusal("10.0.0.5", &["10.0.0.5".to_string()], why, &c);
    assert_eq!(
        ip(Refusal::NotInRange).unwrap().message,
        "Invalid value: []string{\"10.0.0.5\"}: failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
    );
    assert_eq!(ip(Refusal::NotInRange).unwrap().field, "spec.clusterIPs");
    assert_eq!(
        ip(Refusal::Allocated).unwrap().message,
        "Invalid value: []string{\"10.0.0.5\"}: failed to allocate IP 10.0.0.5: provided IP is already allocated"
    );
    assert_eq!(
        ip(Refusal::Full).unwrap_err(),
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    let port = node_port_refusal(PortSlot::Port(1), Some(80), Refusal::NotInRange, &range).unwrap();
    assert_eq!(
        (port.field.as_str(), port.message.as_str()),
        (
            "spec.ports[1].nodePort",
            "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
        )
    );
    let taken = node_port_refusal(PortSlot::Port(0), Some(30080), Refusal::Allocated, &range).unwrap();
    assert_eq!(taken.message, "Invalid value: 30080: provided port is already allocated");
    assert_eq!(
        node_port_refusal(PortSlot::Port(0), None, Refusal::Full, &range).unwrap_err(),
        "Internal error occurred: failed to allocate a nodePort: range is full"
    );
    assert_eq!(
        node_port_refusal(PortSlot::HealthCheck, Some(30080), Refusal::Allocated, &range).unwrap_err(),
        "Internal error occurred: failed to allocate requested HealthCheck NodePort 30080: provided port is already allocated"
    );
    let cases = [
        ("10.43.0.7", Ok("10.43.0.7")),
        ("10.43.0.0", Err(Refusal::NotInRange)),
        ("10.43.255.255", Err(Refusal::NotInRange)),
        ("10.0.0.5", Err(Refusal::NotInRange)),
        ("fd00::1", Err(Refusal::NotInRange)),
    ];
    for (text, want) in cases {
        let got = check_requested_ip(text, &c).map(|ip| ip.to_string());
        assert_eq!(got, want.map(str::to_string), "{text}");
    }
}

fn owner(name: &str) -> Owner {
    Owner { namespace: "default".into(), name: name.into(), uid: format!("uid-{name}") }
}

fn record(address: Address, name: &str, age_secs: u64) -> RecordView {
    RecordView { address, owner: owner(name), age_secs, revision: 7 }
}

#[test]
fn repair_frees_old_orphans_recreates_missing_records_and_reports_conflicts() {
    let ip = |s: &str| Address::Ip(s.parse().unwrap());
    let held = |ips: &[&str], ports: &[u16]| Held {
        ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        node_ports: ports.to_vec(),
    };
    let ranges = ServiceRanges::default();
    let records = vec![
        record(ip("10.43.0.5"), "a", 500),          // held by a: kept
        record(ip("10.43.0.6"), "gone", 500),       // no Service: freed
        record(ip("10.43.0.7"), "in-flight", 10),   // no Service yet, young: kept
        record(Address::NodePort(30080), "a", 500), // held: kept
        record(ip("10.43.0.8"), "old-owner", 500),  // b holds it now, the record names a deleted one: freed
    ];
    let services = vec![
        (owner("a"), held(&["10.43.0.5"], &[30080])),
        (owner("b"), held(&["10.43.0.8"], &[30081])), // the port has no record: recreated
        (owner("c"), held(&["10.43.0.9"], &[])),      // no record: recreated
        (owner("d"), held(&["10.43.0.9"], &[])),      // the same address as c: a conflict
        (owner("e"), held(&["10.99.0.1"], &[20000])), // outside today's ranges: kept, reported
    ];
    let plan = plan_repair(&records, &services, &ranges, 120);
    assert_eq!(plan.release, vec![(ip("10.43.0.6"), 7), (ip("10.43.0.8"), 7)]);
    let recreated: Vec<(Address, String)> = plan.recreate.iter().map(|(a, o)| (*a, o.name.clone())).collect();
    assert_eq!(
        recreated,
        vec![
            (ip("10.43.0.9"), "c".to_string()),
            (ip("10.99.0.1"), "e".to_string()),
            (Address::NodePort(20000), "e".to_string()),
            (Address::NodePort(30081), "b".to_string()),
        ]
    );
    assert_eq!(plan.conflicts, vec![(ip("10.43.0.9"), owner("c"), owner("d"))]);
    assert_eq!(plan.out_of_range, vec![(ip("10.99.0.1"), owner("e")), (Address::NodePort(20000), owner("e"))]);
}
