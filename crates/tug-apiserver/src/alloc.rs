//! Service cluster IPs and node ports, handed out by the API server as Kubernetes does.
//!
//! Every allocated address is a record in the store (`records`): one key per cluster IP and one
//! per node port, created with the store's create-if-absent, in the spirit of Kubernetes'
//! networking.k8s.io IPAddress objects. The store decides who got an address, so allocations
//! are unique across restarts and across API servers sharing one datastore; no process keeps a
//! bitmap of its own. A repair pass (`records::repair`) frees records no Service holds and
//! re-creates records a Service holds but lacks.
//!
//! This module is the pure part: the ranges and their flags, the order in which free values are
//! tried, what a Service holds, the update rules (`keep_allocations`, `drop_type_dependent_fields`),
//! the repair plan and Kubernetes' wording of every refusal.

pub mod records;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use tug_core::status::Cause;

/// The service CIDR: IPv4 only (Tugboat is single-stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    network: u32,
    prefix: u8,
}

/// Largest and smallest service CIDRs accepted. A /8 is 16 M addresses (no bitmap is kept, so
/// size costs nothing); a /28 still has the tenth address that `kube-dns` takes.
const WIDEST_PREFIX: u8 = 8;
const NARROWEST_PREFIX: u8 = 28;

impl ServiceCidr {
    /// `10.43.0.0/16`, k3s's default.
    pub const DEFAULT: ServiceCidr = ServiceCidr { network: u32::from_be_bytes([10, 43, 0, 0]), prefix: 16 };

    pub fn parse(text: &str) -> Result<ServiceCidr, String> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR like 10.43.0.0/16"))?;
        if addr.contains(':') {
            return Err(format!("{text:?} is an IPv6 range; Tugboat's services are IPv4 only"));
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{text:?} is not a CIDR like 10.43.0.0/16"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{text:?} is not a CIDR like 10.43.0.0/16"))?;
        if !(WIDEST_PREFIX..=NARROWEST_PREFIX).contains(&prefix) {
            return Err(format!(
                "{text:?}: the prefix must be between /{WIDEST_PREFIX} and /{NARROWEST_PREFIX} \
                 (the range needs at least ten addresses: the tenth is kube-dns's)"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        let network = u32::from(addr);
        if network & !mask != 0 {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(network & mask)
            ));
        }
        Ok(ServiceCidr { network, prefix })
    }

    /// Addresses in the range, network and broadcast included.
    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// Usable addresses: all but the network and broadcast addresses.
    fn usable(&self) -> u64 {
        self.size() - 2
    }

    /// The `n`th usable address (0 is the network address + 1).
    fn usable_nth(&self, n: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1 + n as u32)
    }

    /// Whether `ip` may be handed out: inside the range, not its network or broadcast address.
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        let ip = u64::from(u32::from(ip));
        let network = u64::from(self.network);
        ip > network && ip < network + self.size() - 1
    }

    /// The first address: the `kubernetes` Service's.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.usable_nth(0)
    }

    /// The tenth address: `kube-dns`'s, by convention (Kubernetes installers and k3s use it).
    pub fn dns_service_ip(&self) -> Ipv4Addr {
        self.usable_nth(9)
    }

    /// The addresses of the lower band, which dynamic allocation only uses once the upper band
    /// is full (Kubernetes' `calculateRangeOffset`: min(max(16, size/16), 256)), so addresses
    /// chosen by hand there rarely collide.
    fn static_band(&self) -> u64 {
        band(self.size(), 16, 16, 256)
    }

    /// Usable offsets in the order a dynamic allocation tries them: the upper band from a
    /// random point round, then the lower band from a random point round; the `kubernetes` and
    /// `kube-dns` addresses never (they are only handed out when asked for).
    pub fn dynamic_order(&self, random: (u64, u64)) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let reserved = [self.kubernetes_service_ip(), self.dns_service_ip()];
        dynamic_order(self.usable(), self.static_band(), random)
            .map(|n| self.usable_nth(n))
            .filter(move |ip| !reserved.contains(ip))
    }
}

impl fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// The node port range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePortRange {
    first: u16,
    last: u16,
}

impl NodePortRange {
    pub const DEFAULT: NodePortRange = NodePortRange { first: 30000, last: 32767 };

    /// `30000-32767`, or `30000+2767` (Kubernetes' `--service-node-port-range` forms).
    pub fn parse(text: &str) -> Result<NodePortRange, String> {
        let bad = || format!("{text:?} is not a port range like 30000-32767");
        let (first, last) = if let Some((a, b)) = text.split_once('-') {
            (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?)
        } else if let Some((a, n)) = text.split_once('+') {
            let a = a.trim().parse::<u16>().map_err(|_| bad())?;
            let n = n.trim().parse::<u16>().map_err(|_| bad())?;
            (a, a.checked_add(n).ok_or_else(|| format!("{text:?} ends past port 65535"))?)
        } else {
            return Err(bad());
        };
        if first == 0 || first > last {
            return Err(format!("{text:?}: the range must go from a port of 1 or more up to a port no smaller"));
        }
        Ok(NodePortRange { first, last })
    }

    pub fn holds(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Kubernetes' node port `calculateRangeOffset`: min(max(16, size/32), 128).
    fn static_band(&self) -> u64 {
        band(self.size(), 16, 32, 128)
    }

    /// Ports in the order a dynamic allocation tries them (as [`ServiceCidr::dynamic_order`]).
    pub fn dynamic_order(&self, random: (u64, u64)) -> impl Iterator<Item = u16> + '_ {
        dynamic_order(self.size(), self.static_band(), random).map(|n| self.first + n as u16)
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The ranges an API server allocates from (`--service-cidr`, `--service-node-port-range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRanges {
    pub cidr: ServiceCidr,
    pub node_ports: NodePortRange,
}

impl Default for ServiceRanges {
    fn default() -> ServiceRanges {
        ServiceRanges { cidr: ServiceCidr::DEFAULT, node_ports: NodePortRange::DEFAULT }
    }
}

/// min(max(floor, size/step), ceiling), or 0 for ranges of `floor` or fewer values.
fn band(size: u64, floor: u64, step: u64, ceiling: u64) -> u64 {
    if size <= floor { 0 } else { (size / step).clamp(floor, ceiling) }
}

/// Offsets 0..size: from `lower` + a random point round the upper band, then from a random
/// point round the lower band `0..lower`. Each offset exactly once.
fn dynamic_order(size: u64, lower: u64, random: (u64, u64)) -> impl Iterator<Item = u64> {
    let upper = size - lower;
    let start_upper = if upper == 0 { 0 } else { random.0 % upper };
    let start_lower = if lower == 0 { 0 } else { random.1 % lower };
    (0..upper).map(move |i| lower + (start_upper + i) % upper).chain((0..lower).map(move |i| (start_lower + i) % lower))
}

/// Two random numbers for [`ServiceCidr::dynamic_order`] and [`NodePortRange::dynamic_order`].
pub fn random_pair() -> (u64, u64) {
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits as u64, (bits >> 64) as u64)
}

// ---------------------------------------------------------------------------------------------
// What a Service holds, and the update rules.

fn spec_str<'a>(svc: &'a Value, field: &str) -> &'a str {
    svc.get("spec").and_then(|s| s.get(field)).and_then(Value::as_str).unwrap_or("")
}

fn service_type(svc: &Value) -> &str {
    match spec_str(svc, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

/// Kubernetes' `needsClusterIP`: every type but ExternalName.
fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
}

/// Kubernetes' `needsNodePort`: NodePort and LoadBalancer.
fn needs_node_port(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// Kubernetes' `shouldAllocateNodePorts`: ports without a nodePort get one (a LoadBalancer only
/// unless `allocateLoadBalancerNodePorts: false`).
fn allocates_node_ports(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false),
        _ => false,
    }
}

/// Kubernetes' `NeedsHealthCheck`: a LoadBalancer with `externalTrafficPolicy: Local`.
pub fn needs_health_check_node_port(svc: &Value) -> bool {
    service_type(svc) == "LoadBalancer" && spec_str(svc, "externalTrafficPolicy") == "Local"
}

/// The cluster IP a Service asks for: `clusterIP`, else `clusterIPs[0]`; "" for none.
fn requested_cluster_ip(svc: &Value) -> &str {
    match spec_str(svc, "clusterIP") {
        "" => svc.pointer("/spec/clusterIPs/0").and_then(Value::as_str).unwrap_or(""),
        ip => ip,
    }
}

fn node_port_at(port: &Value) -> Option<u16> {
    port.get("nodePort").and_then(Value::as_u64).filter(|p| *p != 0).and_then(|p| u16::try_from(p).ok())
}

fn health_check_node_port(svc: &Value) -> Option<u16> {
    svc.pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_u64)
        .filter(|p| *p != 0)
        .and_then(|p| u16::try_from(p).ok())
}

/// The addresses a stored Service holds: what its records must cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub ips: Vec<Ipv4Addr>,
    pub node_ports: Vec<u16>,
}

impl Held {
    pub fn of(svc: &Value) -> Held {
        let mut held = Held::default();
        if needs_cluster_ip(svc)
            && let Ok(ip) = requested_cluster_ip(svc).parse()
        {
            held.ips.push(ip);
        }
        // Kubernetes' collectServiceNodePorts: every port's nodePort, whatever the type, and
        // the health check port.
        let ports = svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten();
        for port in ports.filter_map(node_port_at).chain(health_check_node_port(svc)) {
            if !held.node_ports.contains(&port) {
                held.node_ports.push(port);
            }
        }
        held
    }

    /// What `self` holds that `other` does not.
    pub fn minus(&self, other: &Held) -> Held {
        Held {
            ips: self.ips.iter().filter(|ip| !other.ips.contains(ip)).copied().collect(),
            node_ports: self.node_ports.iter().filter(|p| !other.node_ports.contains(p)).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.node_ports.is_empty()
    }
}

/// On update, values the new version leaves out are taken from the stored one, so a PUT or
/// `kubectl apply` without `clusterIP` or `nodePort` keeps them (Kubernetes'
/// `patchAllocatedValues`: node ports matched by port name, never one another port now uses).
pub fn keep_allocations(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        for field in ["clusterIP", "clusterIPs"] {
            let missing = new
                .pointer(&format!("/spec/{field}"))
                .is_none_or(|v| v.is_null() || v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty));
            if missing && let Some(v) = old.pointer(&format!("/spec/{field}")) {
                new["spec"][field] = v.clone();
            }
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let ports_of = |svc: &Value| svc.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let old_ports = ports_of(old);
        let used_by_new: HashSet<u16> = ports_of(new).iter().filter_map(node_port_at).collect();
        let by_name: HashMap<&str, u16> = old_ports
            .iter()
            .filter_map(|p| Some((p.get("name").and_then(Value::as_str).unwrap_or(""), node_port_at(p)?)))
            .collect();
        if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut().filter(|p| node_port_at(p).is_none()) {
                let name = port.get("name").and_then(Value::as_str).unwrap_or("");
                if let Some(&np) = by_name.get(name)
                    && !used_by_new.contains(&np)
                {
                    port["nodePort"] = json!(np);
                }
            }
        }
    }
    if needs_health_check_node_port(old)
        && needs_health_check_node_port(new)
        && health_check_node_port(new).is_none()
        && let Some(port) = health_check_node_port(old)
    {
        new["spec"]["healthCheckNodePort"] = json!(port);
    }
}

/// On update, fields the new type has no use for are cleared when the client left them as they
/// were (Kubernetes' `dropTypeDependentFields`): a type change to ExternalName gives up the
/// cluster IP, to ClusterIP the node ports; leaving `externalTrafficPolicy: Local` gives up
/// the health check port. Values the client changed stay, for validation to judge.
pub fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let old_spec = old.get("spec").cloned().unwrap_or(json!({}));
    let unchanged = |spec: &serde_json::Map<String, Value>, field: &str| spec.get(field) == old_spec.get(field);
    let new_value = Value::Object(spec.clone());
    let new_svc = json!({"spec": new_value});
    if needs_cluster_ip(old) && !needs_cluster_ip(&new_svc) {
        if unchanged(spec, "clusterIP") && unchanged(spec, "clusterIPs") {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if unchanged(spec, "ipFamilyPolicy") && unchanged(spec, "ipFamilies") {
            spec.remove("ipFamilyPolicy");
            spec.remove("ipFamilies");
        }
    }
    if needs_node_port(old) && !needs_node_port(&new_svc) {
        let old_node_ports: Vec<Option<u16>> =
            old.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten().map(node_port_at).collect();
        let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
        let same = ports.as_ref().is_some_and(|ports| {
            ports.len() == old_node_ports.len() && ports.iter().map(node_port_at).eq(old_node_ports.iter().copied())
        });
        if same && let Some(ports) = ports {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
    }
    if needs_health_check_node_port(old)
        && !needs_health_check_node_port(&new_svc)
        && unchanged(spec, "healthCheckNodePort")
    {
        spec.remove("healthCheckNodePort");
    }
    if service_type(old) == "LoadBalancer"
        && service_type(&new_svc) != "LoadBalancer"
        && unchanged(spec, "allocateLoadBalancerNodePorts")
    {
        spec.remove("allocateLoadBalancerNodePorts");
    }
}

// ---------------------------------------------------------------------------------------------
// What one write asks of the allocators.

/// One value a write must reserve: asked for by the client, or any free one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want<T> {
    Requested(T),
    Any,
}

/// Where a reserved node port goes in the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSlot {
    /// `spec.ports[i].nodePort` (and every later port with the same port number, which shares
    /// it: TCP and UDP on one port get one node port, as in Kubernetes).
    Port(usize),
    HealthCheck,
}

/// What a Service's write must reserve beyond what the stored version already holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The cluster IP: the text the client gave, or any.
    pub cluster_ip: Option<Want<String>>,
    pub node_ports: Vec<(PortSlot, Want<u16>)>,
    /// Node ports a later port shares with an earlier one of the same port number:
    /// (index, index of the earlier port).
    pub shared: Vec<(usize, usize)>,
    /// Node ports asked for twice by ports of different numbers: (index, port).
    pub duplicates: Vec<(usize, u16)>,
}

/// What a create (`old` None) or update of `new` must reserve (Kubernetes' `allocateCreate` /
/// `allocateUpdate`). Values `old` holds are the Service's already and are not reserved again.
pub fn plan(old: Option<&Value>, new: &Value) -> Plan {
    let held = old.map(Held::of).unwrap_or_default();
    let mut plan = Plan::default();
    let headless = requested_cluster_ip(new) == "None";
    if needs_cluster_ip(new) && !headless {
        match requested_cluster_ip(new) {
            "" => plan.cluster_ip = Some(Want::Any),
            ip if ip.parse::<Ipv4Addr>().is_ok_and(|ip| held.ips.contains(&ip)) => {}
            ip => plan.cluster_ip = Some(Want::Requested(ip.to_string())),
        }
    }
    if needs_node_port(new) {
        // Service port number → (index, node port) of the first port with that number.
        let mut by_number: BTreeMap<i64, (usize, Option<u16>)> = BTreeMap::new();
        let mut requested_here: HashMap<u16, i64> = HashMap::new();
        let ports = new.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, port) in ports.iter().enumerate() {
            let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
            let node_port = node_port_at(port);
            if node_port.is_none() && !allocates_node_ports(new) {
                continue;
            }
            if let Some(&(first, first_np)) = by_number.get(&number)
                && (node_port.is_none() || node_port == first_np)
            {
                plan.shared.push((i, first));
                continue;
            }
            match node_port {
                Some(np) => match requested_here.get(&np) {
                    Some(n) if *n != number => plan.duplicates.push((i, np)),
                    Some(_) => {}
                    None => {
                        requested_here.insert(np, number);
                        if !held.node_ports.contains(&np) {
                            plan.node_ports.push((PortSlot::Port(i), Want::Requested(np)));
                        }
                    }
                },
                None => plan.node_ports.push((PortSlot::Port(i), Want::Any)),
            }
            by_number.entry(number).or_insert((i, node_port));
        }
    }
    if needs_health_check_node_port(new) {
        match health_check_node_port(new) {
            Some(np) if held.node_ports.contains(&np) => {}
            Some(np) => plan.node_ports.push((PortSlot::HealthCheck, Want::Requested(np))),
            None => plan.node_ports.push((PortSlot::HealthCheck, Want::Any)),
        }
    }
    plan
}

// ---------------------------------------------------------------------------------------------
// Refusals, in Kubernetes' words.

/// Why a value could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotInRange,
    Allocated,
    Full,
}

/// A refused cluster IP: 422 on `spec.clusterIPs` with the Service's `clusterIPs` as the value
/// (kube-apiserver's `allocIPs`; Go renders the slice as `[]string{"10.0.0.5"}`), or the
/// message of a 500 when the range is full.
pub fn cluster_ip_refusal(ip: &str, cluster_ips: &[String], why: Refusal, cidr: &ServiceCidr) -> Result<Cause, String> {
    let detail = match why {
        Refusal::NotInRange => {
            format!("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}")
        }
        Refusal::Allocated => "provided IP is already allocated".to_string(),
        Refusal::Full => return Err("Internal error occurred: failed to allocate a serviceIP: range is full".into()),
    };
    let shown: Vec<String> = cluster_ips.iter().map(|ip| format!("{ip:?}")).collect();
    Ok(Cause {
        reason: "FieldValueInvalid",
        field: "spec.clusterIPs".into(),
        message: format!("Invalid value: []string{{{}}}: failed to allocate IP {ip}: {detail}", shown.join(", ")),
    })
}

/// A refused node port: 422 on `spec.ports[i].nodePort` (kube-apiserver's `initNodePorts`),
/// or the message of a 500: a full range, or any refused health check port (Kubernetes answers
/// those with an internal error too).
pub fn node_port_refusal(
    slot: PortSlot,
    port: Option<u16>,
    why: Refusal,
    range: &NodePortRange,
) -> Result<Cause, String> {
    let detail = match why {
        Refusal::NotInRange => format!("provided port is not in the valid range. The range of valid ports is {range}"),
        Refusal::Allocated => "provided port is already allocated".to_string(),
        Refusal::Full => "range is full".to_string(),
    };
    match (slot, port) {
        (PortSlot::Port(i), Some(port)) if why != Refusal::Full => Ok(Cause {
            reason: "FieldValueInvalid",
            field: format!("spec.ports[{i}].nodePort"),
            message: format!("Invalid value: {port}: {detail}"),
        }),
        (PortSlot::Port(_), _) => Err(format!("Internal error occurred: failed to allocate a nodePort: {detail}")),
        (PortSlot::HealthCheck, Some(port)) => {
            Err(format!("Internal error occurred: failed to allocate requested HealthCheck NodePort {port}: {detail}"))
        }
        (PortSlot::HealthCheck, None) => {
            Err(format!("Internal error occurred: failed to allocate a HealthCheck NodePort 0: {detail}"))
        }
    }
}

/// Whether a requested cluster IP may be reserved at all (before the store is asked).
pub fn check_requested_ip(text: &str, cidr: &ServiceCidr) -> Result<Ipv4Addr, Refusal> {
    match text.parse::<Ipv4Addr>() {
        Ok(ip) if cidr.holds(ip) => Ok(ip),
        _ => Err(Refusal::NotInRange),
    }
}

// ---------------------------------------------------------------------------------------------
// Repair.

/// Who holds an address, as its record says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn of(svc: &Value) -> Owner {
        let meta = |f: &str| svc.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or("").to_string();
        Owner { namespace: meta("namespace"), name: meta("name"), uid: meta("uid") }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An address a record or a Service can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Ip(Ipv4Addr),
    NodePort(u16),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(ip) => write!(f, "cluster IP {ip}"),
            Address::NodePort(p) => write!(f, "node port {p}"),
        }
    }
}

/// A record as the repair pass sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub address: Address,
    pub owner: Owner,
    /// Seconds since the record was written.
    pub age_secs: u64,
    pub revision: i64,
}

/// What a repair pass does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairPlan {
    /// Records no Service holds, older than the grace period: deleted (if still at `revision`).
    pub release: Vec<(Address, i64)>,
    /// Addresses a Service holds without a record: the record is written for it.
    pub recreate: Vec<(Address, Owner)>,
    /// Addresses two Services hold (the record names the first): reported.
    pub conflicts: Vec<(Address, Owner, Owner)>,
    /// Addresses a Service holds outside today's ranges: kept, reported (as Kubernetes keeps
    /// allocations outside a shrunk range).
    pub out_of_range: Vec<(Address, Owner)>,
}

/// Kubernetes' repair controllers in one pure step: `records` as stored, `services` as stored
/// (each with what it holds). A record younger than `grace_secs` is left alone even if no
/// Service holds it: its Service may be on its way into the store.
pub fn plan_repair(
    records: &[RecordView],
    services: &[(Owner, Held)],
    ranges: &ServiceRanges,
    grace_secs: u64,
) -> RepairPlan {
    let mut plan = RepairPlan::default();
    let mut holders: BTreeMap<Address, Vec<&Owner>> = BTreeMap::new();
    for (owner, held) in services {
        let addresses =
            held.ips.iter().map(|ip| Address::Ip(*ip)).chain(held.node_ports.iter().map(|p| Address::NodePort(*p)));
        for address in addresses {
            holders.entry(address).or_default().push(owner);
        }
    }
    let recorded: HashMap<Address, &RecordView> = records.iter().map(|r| (r.address, r)).collect();
    for record in records {
        let held = holders.get(&record.address).is_some_and(|owners| owners.iter().any(|o| o.uid == record.owner.uid));
        if !held && record.age_secs >= grace_secs {
            plan.release.push((record.address, record.revision));
        }
    }
    for (address, owners) in &holders {
        let in_range = match address {
            Address::Ip(ip) => ranges.cidr.holds(*ip),
            Address::NodePort(p) => ranges.node_ports.holds(*p),
        };
        if !in_range {
            plan.out_of_range.extend(owners.iter().map(|o| (*address, (*o).clone())));
        }
        let record = recorded.get(address);
        let first = record.and_then(|r| owners.iter().find(|o| o.uid == r.owner.uid)).copied().unwrap_or(owners[0]);
        // A record held by no Service is released above; the first holder gets it back at the
        // next pass (never in this one: the delete and the create could race).
        if record.is_none() {
            plan.recreate.push((*address, first.clone()));
        }
        for other in owners.iter().filter(|o| o.uid != first.uid) {
            plan.conflicts.push((*address, first.clone(), (*other).clone()));
        }
    }
    plan
}

#[cfg(test)]
mod tests;
