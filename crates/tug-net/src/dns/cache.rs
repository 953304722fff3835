//! What cluster DNS knows: Services, EndpointSlices and Namespaces reduced to the few fields DNS
//! answers from, indexed by namespace and name (forward lookups) and by address (PTR), so that a
//! query costs a couple of hash lookups however many Services exist.
//!
//! The cache is fed by add/remove calls from whoever watches the API (the agent); it does no IO.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};

/// The label tying an EndpointSlice to its Service (discovery.k8s.io/v1).
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The pre-`publishNotReadyAddresses` spelling the DNS specification still names.
const TOLERATE_UNREADY_ANNOTATION: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// How a Service is published in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// A virtual IP (one per family); empty while the API server has not allocated one.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the endpoints' own addresses.
    Headless,
    /// A CNAME to this name. `None` when `spec.externalName` is not a valid DNS name (the API
    /// server rejects those; a hand-written cache entry could still hold one).
    ExternalName(Option<Name>),
}

/// A port as DNS matches it in `_port._proto` labels: name and protocol compared in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPort {
    pub name: String,
    pub protocol: String,
    /// `None` when the object declares no ports at all (CoreDNS's `-1` sentinel): such a
    /// Service still has address records, but no SRV records.
    pub number: Option<u16>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceEntry {
    pub kind: ServiceKind,
    pub ports: Vec<NamedPort>,
    /// `publishNotReadyAddresses` (or the old annotation): not-ready endpoints are published too.
    pub publish_not_ready: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct EndpointEntry {
    pub addresses: Vec<IpAddr>,
    /// `hostname` of the endpoint (a StatefulSet pod's name under its governing Service).
    pub hostname: Option<String>,
    /// `conditions.ready`; unset counts as ready, as the EndpointSlice API defines it.
    pub ready: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SliceEntry {
    pub service: String,
    pub ports: Vec<NamedPort>,
    pub endpoints: Vec<EndpointEntry>,
}

/// Who owns an address, for PTR answers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum AddressOwner {
    ClusterIp { namespace: String, service: String },
    Endpoint { namespace: String, slice: String },
}

/// The indexed view of Services, EndpointSlices and Namespaces that cluster DNS answers from.
#[derive(Debug)]
pub struct DnsCache {
    zone: Name,
    /// namespace → service name → entry.
    services: HashMap<String, HashMap<String, ServiceEntry>>,
    /// namespace → slice name → entry.
    slices: HashMap<String, HashMap<String, SliceEntry>>,
    /// namespace → service name → names of its slices (ordered, so answers are stable).
    slices_by_service: HashMap<String, HashMap<String, BTreeSet<String>>>,
    by_address: HashMap<IpAddr, BTreeSet<AddressOwner>>,
    namespaces: HashSet<String>,
    serial: u32,
}

/// A DNS label of the name of a Kubernetes object, as DNS compares it.
fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl DnsCache {
    /// An empty cache for the cluster domain `zone` (e.g. `cluster.local`).
    pub fn new(zone: &str) -> Result<Self, hickory_proto::ProtoError> {
        let mut zone = Name::from_ascii(zone)?.to_lowercase();
        zone.set_fqdn(true);
        Ok(Self {
            zone,
            services: HashMap::new(),
            slices: HashMap::new(),
            slices_by_service: HashMap::new(),
            by_address: HashMap::new(),
            namespaces: HashSet::new(),
            serial: 1,
        })
    }

    /// The cluster domain, lower case and fully qualified (`cluster.local.`).
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// The SOA serial: bumped on every change, so a client comparing serials sees one.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Adds or replaces a Service.
    pub fn upsert_service(&mut self, service: &Service) {
        let (Some(namespace), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref())
        else {
            return;
        };
        let (namespace, name) = (lower(namespace), lower(name));
        self.remove_service(&namespace, &name);
        let entry = service_entry(service);
        if let ServiceKind::ClusterIp(ips) = &entry.kind {
            for ip in ips {
                self.by_address
                    .entry(*ip)
                    .or_default()
                    .insert(AddressOwner::ClusterIp { namespace: namespace.clone(), service: name.clone() });
            }
        }
        self.services.entry(namespace).or_default().insert(name, entry);
        self.serial = self.serial.wrapping_add(1);
    }

    /// Removes a Service (its slices stay until they are removed themselves, as in the API).
    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        let (namespace, name) = (lower(namespace), lower(name));
        let Some(entry) = take_from_namespace(&mut self.services, &namespace, &name) else {
            return;
        };
        if let ServiceKind::ClusterIp(ips) = entry.kind {
            let owner = AddressOwner::ClusterIp { namespace, service: name };
            for ip in ips {
                self.forget_address(ip, &owner);
            }
        }
        self.serial = self.serial.wrapping_add(1);
    }

    /// Adds or replaces an EndpointSlice. Slices without the `kubernetes.io/service-name` label
    /// belong to no Service and are not published.
    pub fn upsert_endpoint_slice(&mut self, slice: &EndpointSlice) {
        let (Some(namespace), Some(name)) = (slice.metadata.namespace.as_deref(), slice.metadata.name.as_deref())
        else {
            return;
        };
        let (namespace, name) = (lower(namespace), lower(name));
        self.remove_endpoint_slice(&namespace, &name);
        let Some(service) = slice.metadata.labels.as_ref().and_then(|labels| labels.get(SERVICE_NAME_LABEL)) else {
            return;
        };
        let entry = slice_entry(slice, lower(service));
        let owner = AddressOwner::Endpoint { namespace: namespace.clone(), slice: name.clone() };
        for endpoint in &entry.endpoints {
            for ip in &endpoint.addresses {
                self.by_address.entry(*ip).or_default().insert(owner.clone());
            }
        }
        self.slices_by_service
            .entry(namespace.clone())
            .or_default()
            .entry(entry.service.clone())
            .or_default()
            .insert(name.clone());
        self.slices.entry(namespace).or_default().insert(name, entry);
        self.serial = self.serial.wrapping_add(1);
    }

    /// Removes an EndpointSlice.
    pub fn remove_endpoint_slice(&mut self, namespace: &str, name: &str) {
        let (namespace, name) = (lower(namespace), lower(name));
        let Some(entry) = take_from_namespace(&mut self.slices, &namespace, &name) else {
            return;
        };
        if let Some(by_service) = self.slices_by_service.get_mut(&namespace) {
            if let Some(names) = by_service.get_mut(&entry.service) {
                names.remove(&name);
                if names.is_empty() {
                    by_service.remove(&entry.service);
                }
            }
            if by_service.is_empty() {
                self.slices_by_service.remove(&namespace);
            }
        }
        let owner = AddressOwner::Endpoint { namespace, slice: name };
        for endpoint in entry.endpoints {
            for ip in endpoint.addresses {
                self.forget_address(ip, &owner);
            }
        }
        self.serial = self.serial.wrapping_add(1);
    }

    /// Records that a Namespace exists: its apex (`NS.svc.<zone>`) and pod names
    /// (`1-2-3-4.NS.pod.<zone>`) answer even while it holds no Service.
    pub fn upsert_namespace(&mut self, namespace: &Namespace) {
        if let Some(name) = namespace.metadata.name.as_deref() {
            self.namespaces.insert(lower(name));
        }
    }

    /// Forgets a Namespace.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(&lower(name));
    }

    /// Number of Services held.
    pub fn service_count(&self) -> usize {
        self.services.values().map(HashMap::len).sum()
    }

    fn forget_address(&mut self, ip: IpAddr, owner: &AddressOwner) {
        if let Some(owners) = self.by_address.get_mut(&ip) {
            owners.remove(owner);
            if owners.is_empty() {
                self.by_address.remove(&ip);
            }
        }
    }

    /// A namespace exists for DNS when it was added, or when it holds a Service (so a caller
    /// that feeds no Namespaces still gets the namespaces that matter).
    pub(crate) fn namespace_exists(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace) || self.services.contains_key(namespace)
    }

    pub(crate) fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services.get(namespace)?.get(name)
    }

    /// The slices of a Service, in name order.
    pub(crate) fn slices_of(&self, namespace: &str, service: &str) -> impl Iterator<Item = &SliceEntry> {
        let slices = self.slices.get(namespace);
        self.slices_by_service
            .get(namespace)
            .and_then(|by_service| by_service.get(service))
            .into_iter()
            .flatten()
            .filter_map(move |name| slices?.get(name))
    }

    /// The domain names an address answers PTR queries with: the Service whose ClusterIP it is
    /// (first, and alone, as CoreDNS does), else every published endpoint holding it.
    pub(crate) fn names_of_address(&self, ip: IpAddr) -> Vec<Name> {
        let Some(owners) = self.by_address.get(&ip) else {
            return Vec::new();
        };
        if let Some(name) = owners.iter().find_map(|owner| match owner {
            AddressOwner::ClusterIp { namespace, service } => self.service_name(namespace, service),
            AddressOwner::Endpoint { .. } => None,
        }) {
            return vec![name];
        }
        let mut names = Vec::new();
        for owner in owners {
            let AddressOwner::Endpoint { namespace, slice } = owner else {
                continue;
            };
            let Some(slice) = self.slices.get(namespace).and_then(|s| s.get(slice)) else {
                continue;
            };
            let publish_not_ready =
                self.service(namespace, &slice.service).is_some_and(|service| service.publish_not_ready);
            for endpoint in &slice.endpoints {
                if !(endpoint.ready || publish_not_ready) || !endpoint.addresses.contains(&ip) {
                    continue;
                }
                let hostname = endpoint_hostname(endpoint.hostname.as_deref(), ip);
                if let Some(name) = self
                    .service_name(namespace, &slice.service)
                    .and_then(|service| service.prepend_label(hostname).ok())
                    && !names.contains(&name)
                {
                    names.push(name);
                }
            }
        }
        names
    }

    /// `SERVICE.NAMESPACE.svc.<zone>`.
    pub(crate) fn service_name(&self, namespace: &str, service: &str) -> Option<Name> {
        Name::from_labels([service, namespace, "svc"]).and_then(|name| name.append_domain(&self.zone)).ok()
    }
}

/// The name an endpoint answers under: its `hostname`, else its address with dashes
/// (`10-42-1-7`; IPv6 `fd00--1`, a trailing `-` made `-0`), as CoreDNS names it.
pub(crate) fn endpoint_hostname(hostname: Option<&str>, ip: IpAddr) -> String {
    if let Some(hostname) = hostname.filter(|h| !h.is_empty()) {
        return lower(hostname);
    }
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let dashed = v6.to_string().replace(':', "-");
            if dashed.ends_with('-') { dashed + "0" } else { dashed }
        }
    }
}

fn service_entry(service: &Service) -> ServiceEntry {
    let spec = service.spec.clone().unwrap_or_default();
    let tolerate_unready = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOLERATE_UNREADY_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.as_deref().and_then(|target| {
            let mut name = Name::from_ascii(target).ok()?;
            name.set_fqdn(true);
            // An address is not a CNAME target (CoreDNS skips those too).
            target.parse::<IpAddr>().is_err().then_some(name)
        }))
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let ips = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.to_vec(),
            _ => spec.cluster_ip.into_iter().collect(),
        };
        ServiceKind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
    };
    ServiceEntry {
        kind,
        ports: service_ports(spec.ports.as_deref().unwrap_or_default()),
        publish_not_ready: spec.publish_not_ready_addresses == Some(true) || tolerate_unready,
    }
}

fn service_ports(ports: &[ServicePort]) -> Vec<NamedPort> {
    if ports.is_empty() {
        return vec![NamedPort::none()];
    }
    ports
        .iter()
        .map(|port| NamedPort {
            name: lower(port.name.as_deref().unwrap_or_default()),
            protocol: lower(port.protocol.as_deref().unwrap_or("TCP")),
            number: u16::try_from(port.port).ok(),
        })
        .collect()
}

fn slice_ports(ports: &[EndpointPort]) -> Vec<NamedPort> {
    if ports.is_empty() {
        return vec![NamedPort::none()];
    }
    ports
        .iter()
        .map(|port| NamedPort {
            name: lower(port.name.as_deref().unwrap_or_default()),
            protocol: lower(port.protocol.as_deref().unwrap_or("TCP")),
            number: port.port.and_then(|p| u16::try_from(p).ok()),
        })
        .collect()
}

impl NamedPort {
    fn none() -> Self {
        Self { name: String::new(), protocol: String::new(), number: None }
    }
}

fn slice_entry(slice: &EndpointSlice, service: String) -> SliceEntry {
    SliceEntry {
        service,
        ports: slice_ports(slice.ports.as_deref().unwrap_or_default()),
        endpoints: slice
            .endpoints
            .iter()
            .map(|endpoint| EndpointEntry {
                // FQDN slices carry names, not addresses: DNS publishes addresses only.
                addresses: endpoint.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                hostname: endpoint.hostname.clone(),
                ready: endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            })
            .collect(),
    }
}

/// Removes `name` from its namespace's map, dropping the namespace's map once empty.
fn take_from_namespace<V>(
    by_namespace: &mut HashMap<String, HashMap<String, V>>,
    namespace: &str,
    name: &str,
) -> Option<V> {
    let in_namespace = by_namespace.get_mut(namespace)?;
    let taken = in_namespace.remove(name)?;
    if in_namespace.is_empty() {
        by_namespace.remove(namespace);
    }
    Some(taken)
}
