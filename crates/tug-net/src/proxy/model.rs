//! The desired table as data: [`build`] turns Services, EndpointSlices and the node's context
//! into a [`RuleSet`], with no IO. Rendering it (`render.rs`) and diffing two of them
//! (`delta.rs`) are separate, so the decisions here are tested without a kernel.
//!
//! The shape is kube-proxy's nftables mode: a verdict map `service-ips` keyed
//! `ipv4_addr . inet_proto . inet_service` for ClusterIPs, external IPs and load-balancer IPs,
//! one keyed `inet_proto . inet_service` for node ports, so dispatch is one hash lookup however
//! many Services there are; a chain per Service port and traffic policy; the no-endpoint maps
//! consulted by a filter chain that rejects; mark-then-masquerade in postrouting.
//!
//! One deliberate difference, measured on nft 1.0.6 / Linux 6.18: kube-proxy jumps from the
//! service chain to a chain per endpoint that does the DNAT. 250,000 endpoint chains take ~18 s
//! of CPU to load, so here a service chain picks its endpoint and rewrites the destination in
//! ONE rule, `dnat ip to numgen random mod N offset K map @backends-S`, whose map holds the
//! endpoints at keys K..K+N. The maps are sharded ([`BACKEND_SHARDS`]) because the kernel checks
//! every element added to a map against every rule bound to it (elements × rules), and nft's
//! per-run cache dump grows with the number of sets. Chains per endpoint remain only where
//! they are needed: Services with ClientIP affinity (each endpoint remembers its clients in a
//! timed set, as kube-proxy does). Hairpin traffic (an endpoint reaching its own Service) is
//! caught by one postrouting lookup in a set of `endpoint . endpoint` address pairs instead of
//! a rule per endpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::categorize::{Categorized, categorize};
use super::input::{Endpoint, Protocol, ServicePort, endpoints_by_port, service_ports};
use crate::Ipv4Cidr;

/// Number of backend maps the endpoints are spread over (by a hash of the chain using them).
pub const BACKEND_SHARDS: u8 = 64;
/// Keys reserved per slot of a backend map; a Service port with more endpoints takes several
/// consecutive slots.
const SLOT_SIZE: u32 = 4096;
/// Slots per backend map: `SLOT_SIZE * SLOTS` fits the map's 32-bit keys.
const SLOTS: u32 = 1 << 20;

/// This node, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeContext {
    pub node_name: String,
    /// Addresses node ports and LoadBalancer ports answer on (plus 127.0.0.1 when
    /// `localhost_node_ports`).
    pub node_ips: Vec<Ipv4Addr>,
    /// The cluster's pod network. Traffic from outside it to a ClusterIP is masqueraded (it may
    /// come from a host routed through this node, and the reply must come back here), and pod
    /// traffic to an `externalTrafficPolicy: Local` Service's external address is treated as
    /// internal. `None`: use `node_pod_cidr`; if both are unknown, no such rules.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// This node's pod range.
    pub node_pod_cidr: Option<Ipv4Cidr>,
    /// Node ports also answer on 127.0.0.1, as kube-proxy's iptables mode does. The kernel
    /// drops such packets once they are DNATed off the loopback unless
    /// `net.ipv4.conf.all.route_localnet=1` (kube-proxy sets it; see [`super::ROUTE_LOCALNET`]).
    pub localhost_node_ports: bool,
}

impl NodeContext {
    /// The addresses pods of this cluster send from (kube-proxy's "local traffic detector").
    pub fn pod_traffic_cidr(&self) -> Option<Ipv4Cidr> {
        self.cluster_cidr.or(self.node_pod_cidr)
    }
}

/// What a dispatch map sends a packet to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Goto(String),
    /// No endpoint anywhere: refuse at once (TCP reset, ICMP port unreachable otherwise).
    Reject,
    /// Endpoints exist, but none this traffic may use (a `Local` policy and none here).
    Drop,
}

/// `(destination address, protocol, port)`: a key of `service-ips` and `no-endpoint-services`.
pub type AddressKey = (Ipv4Addr, Protocol, u16);
/// `(protocol, node port)`: a key of `service-nodeports` and `no-endpoint-nodeports`.
pub type PortKey = (Protocol, u16);
/// `(shard, key)` of a backend map element.
pub type BackendKey = (u8, u32);

/// One rule of a service or endpoint chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Mark for masquerade traffic to this ClusterIP port that does not come from a pod.
    MasqueradeUnlessFromPods {
        cluster_ip: Ipv4Addr,
        protocol: Protocol,
        port: u16,
        pods: Ipv4Cidr,
    },
    /// Mark every packet for masquerade.
    Masquerade,
    /// Pod traffic goes to `chain` (an external address used from inside the cluster).
    PodTrafficGoto {
        pods: Ipv4Cidr,
        chain: String,
    },
    /// Mark for masquerade traffic sent by this host.
    MasqueradeFromHost,
    /// Traffic sent by this host goes to `chain`.
    HostTrafficGoto(String),
    Goto(String),
    /// A client remembered in `set` (ClientIP affinity) goes back to its endpoint's `chain`.
    AffinityGoto {
        set: String,
        chain: String,
    },
    /// Pick one of `chains` at random.
    PickChain(Vec<String>),
    /// Pick one of the `count` endpoints at keys `offset..offset + count` of backend map `shard`
    /// at random, and DNAT to it.
    PickBackend {
        protocol: Protocol,
        shard: u8,
        offset: u32,
        count: u32,
    },
    /// Remember the client in `set` (ClientIP affinity).
    RememberClient(String),
    Dnat {
        protocol: Protocol,
        to: SocketAddrV4,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// What the chain is for (`default/web/tcp/http`), shown by `nft list`.
    pub comment: String,
    pub rules: Vec<Rule>,
}

/// The whole desired state of the table, beyond its fixed skeleton.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSet {
    pub node: NodeContext,
    pub service_ips: BTreeMap<AddressKey, Verdict>,
    pub service_node_ports: BTreeMap<PortKey, Verdict>,
    pub no_endpoint_services: BTreeMap<AddressKey, Verdict>,
    pub no_endpoint_node_ports: BTreeMap<PortKey, Verdict>,
    /// Addresses node ports answer on.
    pub node_port_ips: BTreeSet<Ipv4Addr>,
    /// Endpoint addresses that may reach themselves through a Service (masqueraded then).
    pub hairpin: BTreeSet<Ipv4Addr>,
    pub chains: BTreeMap<String, Chain>,
    pub backends: BTreeMap<BackendKey, SocketAddrV4>,
    /// ClientIP affinity sets: name → timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
}

impl RuleSet {
    /// The endpoints `chain` sends traffic to, following a final `goto` (for tests and
    /// diagnostics).
    pub fn endpoints_of(&self, chain: &str) -> Vec<SocketAddrV4> {
        let Some(found) = self.chains.get(chain) else { return Vec::new() };
        let mut out = Vec::new();
        for rule in &found.rules {
            match rule {
                Rule::Dnat { to, .. } => out.push(*to),
                Rule::PickBackend { shard, offset, count, .. } => {
                    out.extend((0..*count).filter_map(|i| self.backends.get(&(*shard, offset + i))))
                }
                Rule::PickChain(chains) => out.extend(chains.iter().flat_map(|c| self.endpoints_of(c))),
                Rule::Goto(next) => out.extend(self.endpoints_of(next)),
                _ => {}
            }
        }
        out
    }
}

/// The rule set for `services` and `slices` on the node `node`.
pub fn build<'a>(
    node: &NodeContext,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> RuleSet {
    let mut endpoints = endpoints_by_port(&node.node_name, slices);
    let mut ports: Vec<ServicePort> = services.into_iter().flat_map(service_ports).collect();
    // Sorted, so that the rare name or slot collision resolves the same way every time.
    ports.sort_by(|a, b| a.name.cmp(&b.name));

    let mut builder = Builder { node, set: RuleSet::default(), names: HashMap::new(), slots: HashSet::new() };
    builder.set.node_port_ips.extend(&node.node_ips);
    if node.localhost_node_ports {
        builder.set.node_port_ips.insert(Ipv4Addr::LOCALHOST);
    }
    for port in &ports {
        let port_endpoints = endpoints.remove(&port.name).unwrap_or_default();
        builder.add_service_port(port, &categorize(&port_endpoints, port));
    }
    builder.set.node = node.clone();
    builder.set
}

struct Builder<'a> {
    node: &'a NodeContext,
    set: RuleSet,
    /// Chain and set names handed out → the text they were hashed from.
    names: HashMap<String, String>,
    /// Backend map slots taken: (shard, slot).
    slots: HashSet<(u8, u32)>,
}

impl Builder<'_> {
    fn add_service_port(&mut self, port: &ServicePort, endpoints: &Categorized) {
        let id = port.name.to_string();
        let has_internal = endpoints.has_any && (!port.internal_policy_local || !endpoints.local.is_empty());
        let has_external = endpoints.has_any && (!port.external_policy_local || !endpoints.local.is_empty());

        let cluster_chain = (!endpoints.cluster.is_empty()).then(|| self.name("svc-", &id));
        let local_chain = (port.uses_local_endpoints() && !endpoints.local.is_empty()).then(|| self.name("loc-", &id));
        let internal_chain = if port.internal_policy_local { &local_chain } else { &cluster_chain };
        let external_policy_chain = if port.external_policy_local { &local_chain } else { &cluster_chain };
        let external_chain = (endpoints.has_any && port.externally_accessible()).then(|| self.name("ext-", &id));

        // Dispatch and the no-endpoint filter. Without endpoints at all: reject; with endpoints
        // but none for this kind of traffic (a Local policy): drop what is not short-circuited.
        let refused = if endpoints.has_any { Verdict::Drop } else { Verdict::Reject };
        let key = |ip: Ipv4Addr, number: u16| (ip, port.name.protocol, number);
        match (has_internal, internal_chain) {
            (true, Some(chain)) => {
                self.set.service_ips.insert(key(port.cluster_ip, port.port), Verdict::Goto(chain.clone()));
            }
            _ => {
                self.set.no_endpoint_services.insert(key(port.cluster_ip, port.port), refused.clone());
            }
        }
        for ip in port.external_ips.iter().chain(&port.load_balancer_ips) {
            if let Some(chain) = &external_chain {
                self.set.service_ips.insert(key(*ip, port.port), Verdict::Goto(chain.clone()));
            }
            if !has_external {
                self.set.no_endpoint_services.insert(key(*ip, port.port), refused.clone());
            }
        }
        if port.node_port != 0 {
            let node_port = (port.name.protocol, port.node_port);
            if let Some(chain) = &external_chain {
                self.set.service_node_ports.insert(node_port, Verdict::Goto(chain.clone()));
            }
            if !has_external {
                self.set.no_endpoint_node_ports.insert(node_port, refused);
            }
        }

        if let Some(chain) = &external_chain {
            let rules =
                self.external_rules(port, cluster_chain.as_deref(), external_policy_chain.as_deref(), has_external);
            self.set.chains.insert(chain.clone(), Chain { comment: format!("{id} external"), rules });
        }
        let pods = self.node.pod_traffic_cidr();
        for (chain, chosen) in [(&cluster_chain, &endpoints.cluster), (&local_chain, &endpoints.local)] {
            let Some(chain) = chain else { continue };
            let mut rules = Vec::new();
            if internal_chain.as_ref() == Some(chain)
                && let Some(pods) = pods
            {
                // Off-cluster traffic to the ClusterIP may have been routed here by a host; the
                // reply must return through this node.
                let (cluster_ip, protocol) = (port.cluster_ip, port.name.protocol);
                rules.push(Rule::MasqueradeUnlessFromPods { cluster_ip, protocol, port: port.port, pods });
            }
            rules.extend(self.endpoint_rules(port, &id, chain, chosen));
            self.set.hairpin.extend(chosen.iter().map(|e| e.ip));
            self.set.chains.insert(chain.clone(), Chain { comment: id.clone(), rules });
        }
    }

    /// The chain external traffic (node ports, external and load-balancer IPs) enters.
    fn external_rules(
        &self,
        port: &ServicePort,
        cluster_chain: Option<&str>,
        policy_chain: Option<&str>,
        has_external: bool,
    ) -> Vec<Rule> {
        let mut rules = Vec::new();
        if !port.external_policy_local {
            // The endpoint may be on another node: masquerade so the reply comes back here.
            rules.push(Rule::Masquerade);
        } else if let Some(cluster_chain) = cluster_chain {
            // Local policy keeps the client's address. Pods and this host using an external
            // address are not "external": they get every endpoint, as if through the load
            // balancer and back; the host's own traffic is masqueraded (its source is a local
            // address the endpoint could not answer).
            if let Some(pods) = self.node.pod_traffic_cidr() {
                rules.push(Rule::PodTrafficGoto { pods, chain: cluster_chain.to_string() });
            }
            rules.push(Rule::MasqueradeFromHost);
            rules.push(Rule::HostTrafficGoto(cluster_chain.to_string()));
        }
        if has_external && let Some(chain) = policy_chain {
            rules.push(Rule::Goto(chain.to_string()));
        }
        rules
    }

    /// The rules choosing among `endpoints` at random and DNATing to the one chosen.
    fn endpoint_rules(&mut self, port: &ServicePort, id: &str, chain: &str, endpoints: &[Endpoint]) -> Vec<Rule> {
        let protocol = port.name.protocol;
        let target = |e: &Endpoint| SocketAddrV4::new(e.ip, e.port);
        if let Some(timeout) = port.affinity_timeout_seconds {
            // kube-proxy's affinity: a chain and a timed set of clients per endpoint; a
            // remembered client goes back to its endpoint, a new one is placed at random.
            let mut lookups = Vec::new();
            let mut picks = Vec::new();
            for endpoint in endpoints {
                let key = format!("{id}__{}/{timeout}", target(endpoint));
                let (endpoint_chain, set) = (self.name("ep-", &key), self.name("aff-", &key));
                let rules = vec![Rule::RememberClient(set.clone()), Rule::Dnat { protocol, to: target(endpoint) }];
                let comment = format!("{id} -> {}", target(endpoint));
                self.set.chains.insert(endpoint_chain.clone(), Chain { comment, rules });
                self.set.affinity_sets.insert(set.clone(), timeout);
                lookups.push(Rule::AffinityGoto { set, chain: endpoint_chain.clone() });
                picks.push(endpoint_chain);
            }
            lookups.push(Rule::PickChain(picks));
            return lookups;
        }
        if let [only] = endpoints {
            return vec![Rule::Dnat { protocol, to: target(only) }];
        }
        let count = u32::try_from(endpoints.len()).unwrap_or(u32::MAX);
        let (shard, offset) = self.backend_range(chain, count);
        for (key, endpoint) in (0..count).map(|i| offset + i).zip(endpoints) {
            self.set.backends.insert((shard, key), target(endpoint));
        }
        vec![Rule::PickBackend { protocol, shard, offset, count }]
    }

    /// Keys for `count` endpoints of `chain` in a backend map: the shard and first slot come
    /// from a hash of the chain's name, so they stay put while other Services come and go; a
    /// taken slot moves the range to the next free one.
    fn backend_range(&mut self, chain: &str, count: u32) -> (u8, u32) {
        let hash = fnv1a(chain.as_bytes());
        let shard = (hash % u64::from(BACKEND_SHARDS)) as u8;
        let needed = count.div_ceil(SLOT_SIZE).max(1);
        let mut first = ((hash >> 8) % u64::from(SLOTS - needed + 1)) as u32;
        while (first..first + needed).any(|slot| self.slots.contains(&(shard, slot))) {
            first = (first + 1) % (SLOTS - needed + 1);
        }
        self.slots.extend((first..first + needed).map(|slot| (shard, slot)));
        (shard, first * SLOT_SIZE)
    }

    /// A short, stable nft name for `key`: `prefix` + 13 base32 characters of its hash
    /// (kube-proxy hashes `namespace/name/protocol/port` the same way; nft limits names).
    fn name(&mut self, prefix: &str, key: &str) -> String {
        let mut salted = key.to_string();
        loop {
            let name = format!("{prefix}{}", base32(fnv1a(salted.as_bytes())));
            match self.names.get(&name) {
                Some(owner) if owner != key => salted.push('#'),
                Some(_) => return name,
                None => {
                    self.names.insert(name.clone(), key.to_string());
                    return name;
                }
            }
        }
    }
}

/// 64-bit FNV-1a: tiny, and stable across Rust releases (std's hasher is not promised to be).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

fn base32(mut value: u64) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(13);
    for _ in 0..13 {
        out.push(ALPHABET[(value & 31) as usize] as char);
        value >>= 5;
    }
    out
}
