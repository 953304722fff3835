//! The pure answer core: a question (name, type) and the cache in, a decision out — answer it
//! (and how), forward it to the host's resolvers, or refuse it. No IO, so every rule of
//! Kubernetes' DNS specification (github.com/kubernetes/dns, docs/specification.md, schema
//! 1.1.0) is a table test.
//!
//! Where the specification leaves a choice, this follows CoreDNS's `kubernetes` plugin with
//! Kubernetes' default Corefile (`pods insecure`, `fallthrough in-addr.arpa ip6.arpa`, `ttl 5`):
//! - a name under the cluster domain that does not exist is NXDOMAIN; one that exists but has no
//!   record of the asked type is NODATA (NOERROR, no answers); both carry the zone's SOA;
//! - `SVC.NS.svc` exists when the Service does (and, for a headless Service, has a published
//!   endpoint); `NS.svc` when the namespace does; the zone, `svc.<zone>` and `pod.<zone>` always;
//! - `_port._proto.SVC.NS.svc` labels are matched case-insensitively, each one optional
//!   (`SVC.NS.svc SRV` lists every port); two labels left of the Service are always read as
//!   port and protocol, three or more are NXDOMAIN;
//! - an endpoint without `hostname` is named by its address with dashes (`10-42-1-7`);
//! - `A-B-C-D.NS.pod.<zone>` answers the address it spells, if the namespace exists;
//! - PTR names of an address no Service or endpoint holds are forwarded, not denied;
//! - zone transfers are refused.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::cache::{DnsCache, NamedPort, ServiceKind, endpoint_hostname};

/// TTL of every cluster record: CoreDNS's default for its `kubernetes` plugin. Short, because a
/// headless Service's endpoints change as pods come and go.
pub const TTL: u32 = 5;
/// The version of the DNS schema served (`dns-version.<zone>` TXT).
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// The schema version's TTL, as the specification's example and CoreDNS have it.
const DNS_VERSION_TTL: u32 = 28_800;
/// How many ExternalName CNAMEs within the cluster domain are followed (CoreDNS's limit).
const MAX_CNAME_CHAIN: usize = 10;

/// What to do with one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A cluster name: answer it authoritatively with this.
    Answer(Answer),
    /// Not a name the cluster owns: the host's resolvers answer it.
    Forward,
    /// Not served (zone transfers).
    Refuse,
}

/// An authoritative answer for a cluster name.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `NoError` (with or without answers) or `NXDomain`.
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The zone's SOA when there is no answer (NXDOMAIN or NODATA), so resolvers cache the
    /// denial for its minimum TTL.
    pub authorities: Vec<Record>,
    /// Addresses of SRV targets.
    pub additionals: Vec<Record>,
    /// An ExternalName's CNAME target outside the cluster: the server asks the host's resolvers
    /// for it (same type) and appends their answers after the CNAME.
    pub resolve_upstream: Option<Name>,
}

/// Decides how to answer `qname`/`qtype` from `cache`. `qname` keeps the client's case, which
/// the answers echo; matching is case-insensitive.
pub fn decide(cache: &DnsCache, qname: &Name, qtype: RecordType) -> Decision {
    let lower = qname.to_lowercase();
    if cache.zone().zone_of(&lower) {
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return Decision::Refuse;
        }
        return Decision::Answer(cluster_answer(cache, qname, &lower, qtype));
    }
    if qtype == RecordType::PTR
        && let Some(ip) = reverse_address(&lower)
    {
        let names = cache.names_of_address(ip);
        if !names.is_empty() {
            let answers =
                names.into_iter().map(|name| Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(name)))).collect();
            return Decision::Answer(Answer::records(answers, Vec::new()));
        }
    }
    Decision::Forward
}

/// The address a full `in-addr.arpa`/`ip6.arpa` name spells; `None` for a partial one.
fn reverse_address(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

impl Answer {
    fn records(answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        Self { code: ResponseCode::NoError, answers, authorities: Vec::new(), additionals, resolve_upstream: None }
    }

    /// NXDOMAIN or NODATA, with the SOA.
    fn denial(cache: &DnsCache, code: ResponseCode) -> Self {
        Self {
            code,
            answers: Vec::new(),
            authorities: vec![soa(cache)],
            additionals: Vec::new(),
            resolve_upstream: None,
        }
    }

    /// The answer, or NODATA when there is none.
    fn or_no_data(mut self, cache: &DnsCache) -> Self {
        if self.answers.is_empty() {
            self.authorities = vec![soa(cache)];
        }
        self
    }
}

/// The cluster domain's SOA, as CoreDNS writes it.
fn soa(cache: &DnsCache) -> Record {
    let zone = cache.zone();
    let label_under_zone = |labels: &[&str]| {
        Name::from_labels(labels.iter().copied())
            .and_then(|name| name.append_domain(zone))
            .expect("fixed labels under the zone are valid")
    };
    let soa = SOA::new(
        label_under_zone(&["ns", "dns"]),
        label_under_zone(&["hostmaster"]),
        cache.serial(),
        7200,
        1800,
        86400,
        TTL,
    );
    Record::from_rdata(zone.clone(), TTL.min(300), RData::SOA(soa))
}

/// A name under the cluster domain, read as the specification's grammar.
#[derive(Debug, PartialEq)]
enum ClusterName {
    /// The zone itself, `svc.<zone>`, `pod.<zone>`: they exist, with no records but the SOA.
    Apex,
    /// `NS.svc.<zone>` or `NS.pod.<zone>`.
    Namespace(String),
    /// `[ENDPOINT.|_PORT._PROTO.]SVC.NS.svc.<zone>`.
    Service(ServiceQuery),
    /// `A-B-C-D.NS.pod.<zone>`.
    Pod { namespace: String, pod: String },
    /// Anything else under the zone: NXDOMAIN.
    Invalid,
}

#[derive(Debug, Default, PartialEq)]
struct ServiceQuery {
    namespace: String,
    service: String,
    endpoint: Option<String>,
    port: Option<String>,
    protocol: Option<String>,
}

fn parse(cache: &DnsCache, lower: &Name) -> ClusterName {
    let under_zone = usize::from(lower.num_labels() - cache.zone().num_labels());
    let labels: Vec<String> =
        lower.iter().take(under_zone).map(|label| String::from_utf8_lossy(label).into_owned()).collect();
    let Some((kind, rest)) = labels.split_last() else {
        return ClusterName::Apex;
    };
    if kind != "svc" && kind != "pod" {
        return ClusterName::Invalid;
    }
    let Some((namespace, rest)) = rest.split_last() else {
        return ClusterName::Apex;
    };
    let Some((name, rest)) = rest.split_last() else {
        return ClusterName::Namespace(namespace.clone());
    };
    if kind == "pod" {
        // CoreDNS reads only the pod label; anything left of it is ignored.
        return ClusterName::Pod { namespace: namespace.clone(), pod: name.clone() };
    }
    let mut query = ServiceQuery { namespace: namespace.clone(), service: name.clone(), ..ServiceQuery::default() };
    match rest {
        [] => {}
        [endpoint] => query.endpoint = Some(endpoint.clone()),
        [port, protocol] => {
            let strip = |label: &str| label.strip_prefix('_').unwrap_or(label).to_owned();
            query.port = Some(strip(port));
            query.protocol = Some(strip(protocol));
        }
        _ => return ClusterName::Invalid,
    }
    ClusterName::Service(query)
}

/// One thing a cluster name resolves to.
#[derive(Debug)]
struct Target {
    host: Host,
    /// `None` for objects without ports: address records, no SRV.
    port: Option<u16>,
    /// The name of the thing itself: `SVC.NS.svc.<zone>` or `HOST.SVC.NS.svc.<zone>` (SRV
    /// targets).
    owner: Name,
}

#[derive(Debug)]
enum Host {
    Ip(IpAddr),
    /// An ExternalName's target.
    Cname(Name),
}

/// The name does not exist (NXDOMAIN).
#[derive(Debug)]
struct NoSuchName;

/// What a cluster name resolves to, or NXDOMAIN. An empty list is a name that exists with no
/// records (NODATA).
fn resolve(cache: &DnsCache, lower: &Name) -> Result<Vec<Target>, NoSuchName> {
    match parse(cache, lower) {
        ClusterName::Apex => Ok(Vec::new()),
        ClusterName::Namespace(namespace) => cache.namespace_exists(&namespace).then(Vec::new).ok_or(NoSuchName),
        ClusterName::Pod { namespace, pod } => {
            if !cache.namespace_exists(&namespace) {
                return Err(NoSuchName);
            }
            pod_address(&pod)
                .map(|ip| vec![Target { host: Host::Ip(ip), port: None, owner: lower.clone() }])
                .ok_or(NoSuchName)
        }
        ClusterName::Service(query) => resolve_service(cache, &query),
        ClusterName::Invalid => Err(NoSuchName),
    }
}

/// The address a pod label spells: `10-42-0-7`, or IPv6 with `-` for `:`.
fn pod_address(label: &str) -> Option<IpAddr> {
    let spelled = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".")
    } else {
        label.replace('-', ":")
    };
    spelled.parse().ok()
}

fn resolve_service(cache: &DnsCache, query: &ServiceQuery) -> Result<Vec<Target>, NoSuchName> {
    if !cache.namespace_exists(&query.namespace) {
        return Err(NoSuchName);
    }
    let service = cache.service(&query.namespace, &query.service).ok_or(NoSuchName)?;
    let owner = cache.service_name(&query.namespace, &query.service).ok_or(NoSuchName)?;
    let port_matches = |port: &NamedPort| {
        query.port.as_ref().is_none_or(|p| *p == port.name)
            && query.protocol.as_ref().is_none_or(|p| *p == port.protocol)
    };
    let mut targets = Vec::new();
    match &service.kind {
        ServiceKind::ExternalName(target) => {
            // No endpoints and no ports under an ExternalName.
            if query.endpoint.is_some() || query.port.is_some() || query.protocol.is_some() {
                return Err(NoSuchName);
            }
            let target = target.clone().ok_or(NoSuchName)?;
            targets.push(Target { host: Host::Cname(target), port: None, owner });
        }
        ServiceKind::ClusterIp(ips) if query.endpoint.is_none() => {
            let mut any_port = false;
            for port in service.ports.iter().filter(|p| port_matches(p)) {
                any_port = true;
                targets.extend(ips.iter().map(|ip| Target {
                    host: Host::Ip(*ip),
                    port: port.number,
                    owner: owner.clone(),
                }));
            }
            if !any_port {
                return Err(NoSuchName);
            }
        }
        // A headless Service, or one endpoint of any Service by its hostname.
        ServiceKind::ClusterIp(_) | ServiceKind::Headless => {
            for slice in cache.slices_of(&query.namespace, &query.service) {
                let published = slice.endpoints.iter().filter(|e| e.ready || service.publish_not_ready);
                for endpoint in published {
                    for ip in &endpoint.addresses {
                        let hostname = endpoint_hostname(endpoint.hostname.as_deref(), *ip);
                        if query.endpoint.as_ref().is_some_and(|e| *e != hostname) {
                            continue;
                        }
                        let Ok(endpoint_owner) = owner.prepend_label(hostname.as_str()) else {
                            continue;
                        };
                        for port in slice.ports.iter().filter(|p| port_matches(p)) {
                            targets.push(Target {
                                host: Host::Ip(*ip),
                                port: port.number,
                                owner: endpoint_owner.clone(),
                            });
                        }
                    }
                }
            }
            // No published endpoint: the name does not exist (the specification's rule for
            // headless Services).
            if targets.is_empty() {
                return Err(NoSuchName);
            }
        }
    }
    Ok(targets)
}

fn cluster_answer(cache: &DnsCache, qname: &Name, lower: &Name, qtype: RecordType) -> Answer {
    let resolved = match qtype {
        RecordType::TXT if is_dns_version(cache, lower) => {
            let txt = TXT::new(vec![DNS_SCHEMA_VERSION.to_owned()]);
            let record = Record::from_rdata(qname.clone(), DNS_VERSION_TTL, RData::TXT(txt));
            return Answer::records(vec![record], Vec::new());
        }
        // CoreDNS answers SOA at the apex only, NODATA anywhere else under the zone.
        RecordType::SOA => {
            let records = if lower == cache.zone() { vec![soa(cache)] } else { Vec::new() };
            return Answer::records(records, Vec::new()).or_no_data(cache);
        }
        _ => resolve(cache, lower),
    };
    let Ok(targets) = resolved else {
        return Answer::denial(cache, ResponseCode::NXDomain);
    };
    match qtype {
        RecordType::A | RecordType::AAAA => addresses(cache, qname, qtype, targets, 0),
        RecordType::SRV => srv(qname, targets),
        RecordType::CNAME => {
            let records = match targets.first() {
                Some(Target { host: Host::Cname(target), .. }) => vec![cname(qname, target)],
                _ => Vec::new(),
            };
            Answer::records(records, Vec::new())
        }
        // The name exists; it has no record of this type.
        _ => Answer::records(Vec::new(), Vec::new()),
    }
    .or_no_data(cache)
}

fn is_dns_version(cache: &DnsCache, lower: &Name) -> bool {
    lower.num_labels() == cache.zone().num_labels() + 1 && lower.iter().next() == Some(b"dns-version".as_slice())
}

fn cname(qname: &Name, target: &Name) -> Record {
    Record::from_rdata(qname.clone(), TTL, RData::CNAME(CNAME(target.clone())))
}

fn address_record(name: &Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), TTL, data)
}

fn family_matches(ip: IpAddr, qtype: RecordType) -> bool {
    matches!((ip, qtype), (IpAddr::V4(_), RecordType::A) | (IpAddr::V6(_), RecordType::AAAA))
}

/// A/AAAA answers: each distinct address of the asked family; an ExternalName as its CNAME,
/// followed inside the cluster domain, or handed to the server to resolve upstream.
fn addresses(cache: &DnsCache, qname: &Name, qtype: RecordType, targets: Vec<Target>, chain: usize) -> Answer {
    let mut answer = Answer::records(Vec::new(), Vec::new());
    let mut seen = Vec::new();
    for target in targets {
        match target.host {
            Host::Ip(ip) => {
                if family_matches(ip, qtype) && !seen.contains(&ip) {
                    seen.push(ip);
                    answer.answers.push(address_record(qname, ip));
                }
            }
            Host::Cname(target) => {
                // `x CNAME x` is a loop; a long chain is cut (both as CoreDNS does).
                if target == *qname || chain >= MAX_CNAME_CHAIN {
                    continue;
                }
                let lower_target = target.to_lowercase();
                if !cache.zone().zone_of(&lower_target) {
                    answer.answers.push(cname(qname, &target));
                    answer.resolve_upstream = Some(target);
                    continue;
                }
                let Ok(next_targets) = resolve(cache, &lower_target) else {
                    continue;
                };
                let next = addresses(cache, &target, qtype, next_targets, chain + 1);
                if !next.answers.is_empty() {
                    answer.answers.push(cname(qname, &target));
                    answer.answers.extend(next.answers);
                    answer.resolve_upstream = next.resolve_upstream;
                }
            }
        }
    }
    answer
}

/// SRV answers: one per (target name, port), priority 0, weights splitting 100 evenly (as
/// CoreDNS), with the targets' addresses as additional records.
fn srv(qname: &Name, targets: Vec<Target>) -> Answer {
    // ExternalName Services have no SRV records.
    let targets: Vec<Target> = targets.into_iter().filter(|t| matches!(t.host, Host::Ip(_))).collect();
    let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(1).max(1);
    let mut answer = Answer::records(Vec::new(), Vec::new());
    let mut seen_srv: Vec<(&Name, u16)> = Vec::new();
    let mut seen_address: Vec<(&Name, IpAddr)> = Vec::new();
    for target in &targets {
        let (Host::Ip(ip), Some(port)) = (&target.host, target.port) else {
            continue;
        };
        if !seen_srv.contains(&(&target.owner, port)) {
            seen_srv.push((&target.owner, port));
            let data = SRV::new(0, weight, port, target.owner.clone());
            answer.answers.push(Record::from_rdata(qname.clone(), TTL, RData::SRV(data)));
        }
        if !seen_address.contains(&(&target.owner, *ip)) {
            seen_address.push((&target.owner, *ip));
            answer.additionals.push(address_record(&target.owner, *ip));
        }
    }
    answer
}
