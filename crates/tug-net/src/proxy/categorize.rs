//! Which endpoints serve which traffic: kube-proxy's `CategorizeEndpoints` (topology hints are
//! off in Tugboat, so it is the ready/serving/terminating and traffic-policy part).

use super::input::{Endpoint, ServicePort};

/// The endpoints a Service port's traffic may go to, as seen from this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for "Cluster" traffic policy: the ready ones anywhere, or, when none is
    /// ready, the serving-but-terminating ones (so connections drain instead of failing).
    pub cluster: Vec<Endpoint>,
    /// Endpoints for "Local" traffic policy: this node's ready ones, or its
    /// serving-but-terminating ones when it has no ready one.
    pub local: Vec<Endpoint>,
    /// The Service has a usable endpoint somewhere in the cluster (not only on this node).
    pub has_any: bool,
}

pub fn categorize(endpoints: &[Endpoint], port: &ServicePort) -> Categorized {
    let mut out = Categorized::default();
    let serving_terminating = |e: &&Endpoint| e.serving && e.terminating;
    if port.uses_cluster_endpoints() || port.external_policy_local {
        // The cluster set is also what pod and host traffic to an external address of an
        // `externalTrafficPolicy: Local` Service short-circuits to.
        out.cluster = endpoints.iter().filter(|e| e.ready).copied().collect();
        if out.cluster.is_empty() {
            out.cluster = endpoints.iter().filter(serving_terminating).copied().collect();
        }
        out.has_any = !out.cluster.is_empty();
    }
    if port.uses_local_endpoints() {
        out.has_any |= endpoints.iter().any(|e| e.ready || (e.serving && e.terminating));
        let local = || endpoints.iter().filter(|e| e.local);
        out.local = local().filter(|e| e.ready).copied().collect();
        if out.local.is_empty() {
            out.local = local().filter(serving_terminating).copied().collect();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::proxy::input::{Protocol, ServicePortName};

    /// Policies of a Service port: (internal Local, external Local, has a node port).
    fn port((internal_local, external_local, node_port): (bool, bool, bool)) -> ServicePort {
        ServicePort {
            name: ServicePortName {
                namespace: "ns".into(),
                name: "svc".into(),
                port: "p80".into(),
                protocol: Protocol::Tcp,
            },
            cluster_ip: Ipv4Addr::new(172, 30, 0, 1),
            port: 80,
            node_port: if node_port { 30080 } else { 0 },
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            affinity_timeout_seconds: None,
            external_policy_local: external_local,
            internal_policy_local: internal_local,
        }
    }

    /// An endpoint `10.0.0.N:80` from its flags: "r" ready, "s" serving, "t" terminating,
    /// "l" local.
    fn ep(n: u8, flags: &str) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::new(10, 0, 0, n),
            port: 80,
            ready: flags.contains('r'),
            serving: flags.contains('s') || flags.contains('r'),
            terminating: flags.contains('t'),
            local: flags.contains('l'),
        }
    }

    fn last_octets(endpoints: &[Endpoint]) -> Vec<u8> {
        endpoints.iter().map(|e| e.ip.octets()[3]).collect()
    }

    /// Kubernetes' `TestCategorizeEndpoints` (pkg/proxy/topology_test.go) without topology
    /// hints and with ProxyTerminatingEndpoints on (GA): (name, policies, endpoints, cluster,
    /// local, has any). `None`: that kind of endpoint is not used by the Service.
    #[test]
    fn categorize_as_kube_proxy() {
        type Case = (&'static str, (bool, bool, bool), Vec<Endpoint>, Option<Vec<u8>>, Option<Vec<u8>>, bool);
        let cases: Vec<Case> = vec![
            ("iTP Local, no endpoints", (true, false, false), vec![], None, Some(vec![]), false),
            (
                "iTP Local, all endpoints remote",
                (true, false, false),
                vec![ep(0, "r"), ep(1, "r")],
                None,
                Some(vec![]),
                true,
            ),
            (
                "iTP Local, all endpoints local",
                (true, false, false),
                vec![ep(0, "rl"), ep(1, "rl")],
                None,
                Some(vec![0, 1]),
                true,
            ),
            (
                "iTP Local, some endpoints local",
                (true, false, false),
                vec![ep(0, "rl"), ep(1, "r")],
                None,
                Some(vec![0]),
                true,
            ),
            (
                "Cluster, endpoints not ready",
                (false, false, false),
                vec![ep(0, ""), ep(1, "")],
                Some(vec![]),
                None,
                false,
            ),
            (
                "Cluster, some endpoints ready",
                (false, false, false),
                vec![ep(0, ""), ep(1, "r")],
                Some(vec![1]),
                None,
                true,
            ),
            (
                "Cluster, all endpoints terminating",
                (false, false, false),
                vec![ep(0, "stl"), ep(1, "st")],
                Some(vec![0, 1]),
                None,
                true,
            ),
            (
                "Cluster, ready endpoints win over terminating",
                (false, false, false),
                vec![ep(0, "st"), ep(1, "r")],
                Some(vec![1]),
                None,
                true,
            ),
            (
                "iTP Local, eTP Cluster, some local",
                (true, false, true),
                vec![ep(0, "rl"), ep(1, "r")],
                Some(vec![0, 1]),
                Some(vec![0]),
                true,
            ),
            (
                "iTP Cluster, eTP Local, some local",
                (false, true, true),
                vec![ep(0, "rl"), ep(1, "r")],
                Some(vec![0, 1]),
                Some(vec![0]),
                true,
            ),
            (
                "iTP Local, eTP Local, some local",
                (true, true, true),
                vec![ep(0, "rl"), ep(1, "r")],
                Some(vec![0, 1]),
                Some(vec![0]),
                true,
            ),
            (
                "iTP Local, eTP Local, all remote",
                (true, true, true),
                vec![ep(0, "r"), ep(1, "r")],
                Some(vec![0, 1]),
                Some(vec![]),
                true,
            ),
            (
                "iTP Local, eTP Local, all remote and terminating",
                (true, true, true),
                vec![ep(0, "st"), ep(1, "st")],
                Some(vec![0, 1]),
                Some(vec![]),
                true,
            ),
            (
                "iTP Cluster, eTP Local, terminating endpoints",
                (false, true, true),
                vec![ep(0, "r"), ep(1, "l"), ep(2, "stl"), ep(3, "st")],
                Some(vec![0]),
                Some(vec![2]),
                true,
            ),
            (
                "eTP Local ignored when not externally accessible",
                (false, false, false),
                vec![ep(0, "r"), ep(1, "rl")],
                Some(vec![0, 1]),
                None,
                true,
            ),
            (
                "no cluster endpoints for an iTP Local internal-only Service",
                (true, false, false),
                vec![ep(0, "r"), ep(1, "rl")],
                None,
                Some(vec![1]),
                true,
            ),
        ];
        for (name, policies, endpoints, cluster, local, has_any) in cases {
            let got = categorize(&endpoints, &port(policies));
            let port = port(policies);
            if let Some(cluster) = cluster {
                assert_eq!(last_octets(&got.cluster), cluster, "{name}: cluster endpoints");
            } else {
                assert!(got.cluster.is_empty() && !port.uses_cluster_endpoints(), "{name}: cluster endpoints unused");
            }
            match local {
                Some(local) => assert_eq!(last_octets(&got.local), local, "{name}: local endpoints"),
                None => assert!(got.local.is_empty() && !port.uses_local_endpoints(), "{name}: local endpoints unused"),
            }
            assert_eq!(got.has_any, has_any, "{name}: has any endpoint");
        }
    }
}
