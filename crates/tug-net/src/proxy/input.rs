//! What the proxy reads from the API objects: one [`ServicePort`] per port of a proxied Service
//! and its [`Endpoint`]s gathered from the Service's EndpointSlices (kube-proxy's
//! `ServicePortInfo` and `EndpointSliceCache`, IPv4 only).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming the Service an EndpointSlice belongs to.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nft's name for it (`meta l4proto tcp`, `tcp dport`).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A Service port's identity: `namespace/name/protocol/port-name`, as kube-proxy names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.namespace, self.name, self.protocol.nft(), self.port)
    }
}

/// One port of a Service the proxy programs, with everything about the Service that decides
/// its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// 0 when the Service has no node port.
    pub node_port: u16,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` of a LoadBalancer Service.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `Some(timeout)` for `sessionAffinity: ClientIP`.
    pub affinity_timeout_seconds: Option<u32>,
    /// `externalTrafficPolicy: Local` on an externally reachable Service.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
}

impl ServicePort {
    /// Reachable from outside the cluster: a node port, external IPs or load-balancer IPs.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }

    /// Some traffic is served by endpoints anywhere in the cluster (kube-proxy's
    /// `UsesClusterEndpoints`).
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || (self.externally_accessible() && !self.external_policy_local)
    }

    /// Some traffic is served only by this node's endpoints (`UsesLocalEndpoints`).
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || self.external_policy_local
    }
}

/// The ports of `service` the proxy programs: none for headless (`clusterIP: None`),
/// ExternalName and IPv6 Services, which get no rules.
pub fn service_ports(service: &Service) -> Vec<ServicePort> {
    let Some(spec) = &service.spec else { return Vec::new() };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
        return Vec::new();
    };
    let parse_ips = |ips: &mut dyn Iterator<Item = &str>| ips.filter_map(|ip| ip.parse().ok()).collect::<Vec<_>>();
    let external_ips = parse_ips(&mut spec.external_ips.iter().flatten().map(String::as_str));
    let load_balancer_ips = if spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
        parse_ips(&mut ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()))
    } else {
        Vec::new()
    };
    let affinity_timeout_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let config = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref());
        config
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let meta = &service.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let mut service_port = ServicePort {
                name: ServicePortName {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    port: port.name.clone().unwrap_or_default(),
                    protocol: Protocol::parse(port.protocol.as_deref())?,
                },
                cluster_ip,
                port: u16::try_from(port.port).ok()?,
                node_port: port.node_port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                affinity_timeout_seconds,
                external_policy_local: false,
                internal_policy_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            };
            // The external policy only means something for traffic that can arrive from outside.
            service_port.external_policy_local =
                service_port.externally_accessible() && spec.external_traffic_policy.as_deref() == Some("Local");
            Some(service_port)
        })
        .collect()
}

/// One backend of a Service port, with the conditions that decide whether it gets traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (its `nodeName` is ours).
    pub local: bool,
}

/// Endpoints of every Service port, keyed by the port's name, each list sorted by address and
/// free of duplicates (an address in two slices counts once, ready if either says so).
pub fn endpoints_by_port<'a>(
    node_name: &str,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> HashMap<ServicePortName, Vec<Endpoint>> {
    let mut by_port: HashMap<ServicePortName, BTreeMap<(Ipv4Addr, u16), Endpoint>> = HashMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let service = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        let (Some(service), Some(namespace)) = (service, slice.metadata.namespace.as_ref()) else { continue };
        for port in slice.ports.iter().flatten() {
            let (Some(protocol), Some(number)) =
                (Protocol::parse(port.protocol.as_deref()), port.port.and_then(|p| u16::try_from(p).ok()))
            else {
                continue;
            };
            let name = ServicePortName {
                namespace: namespace.clone(),
                name: service.clone(),
                port: port.name.clone().unwrap_or_default(),
                protocol,
            };
            let endpoints = by_port.entry(name).or_default();
            for endpoint in &slice.endpoints {
                let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else { continue };
                let conditions = endpoint.conditions.as_ref();
                // Unset conditions mean ready, serving as ready, not terminating (the API's rules).
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let found = Endpoint {
                    ip,
                    port: number,
                    ready,
                    serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                    local: endpoint.node_name.as_deref() == Some(node_name),
                };
                let kept = endpoints.entry((ip, number)).or_insert(found);
                if found.ready && !kept.ready {
                    *kept = found;
                }
            }
        }
    }
    by_port.into_iter().map(|(name, endpoints)| (name, endpoints.into_values().collect())).collect()
}
