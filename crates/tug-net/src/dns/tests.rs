//! The answer core against the DNS specification's examples and CoreDNS's NXDOMAIN/NODATA
//! rules, one table row per question.

use std::collections::BTreeMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::answer::{Answer, Decision, decide};
use super::cache::DnsCache;

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta { namespace: Some(namespace.into()), name: Some(name.into()), ..ObjectMeta::default() }
}

fn service_port(name: &str, protocol: &str, port: i32) -> ServicePort {
    ServicePort { name: Some(name.into()), protocol: Some(protocol.into()), port, ..ServicePort::default() }
}

fn service(namespace: &str, name: &str, spec: ServiceSpec) -> Service {
    Service { metadata: meta(namespace, name), spec: Some(spec), status: None }
}

fn cluster_ip(namespace: &str, name: &str, ips: &[&str], ports: Vec<ServicePort>) -> Service {
    service(
        namespace,
        name,
        ServiceSpec {
            cluster_ip: Some(ips[0].into()),
            cluster_ips: Some(ips.iter().map(|ip| ip.to_string()).collect()),
            ports: Some(ports),
            ..ServiceSpec::default()
        },
    )
}

fn headless(namespace: &str, name: &str, ports: Vec<ServicePort>) -> Service {
    service(
        namespace,
        name,
        ServiceSpec {
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            ports: Some(ports),
            ..ServiceSpec::default()
        },
    )
}

fn external_name(namespace: &str, name: &str, target: &str) -> Service {
    service(
        namespace,
        name,
        ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..ServiceSpec::default()
        },
    )
}

/// (address, hostname, ready)
type EndpointRow<'a> = (&'a str, Option<&'a str>, Option<bool>);

fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    ports: &[(&str, &str, i32)],
    endpoints: &[EndpointRow],
) -> EndpointSlice {
    let mut metadata = meta(namespace, name);
    metadata.labels = Some(BTreeMap::from([("kubernetes.io/service-name".to_owned(), service.to_owned())]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(address, hostname, ready)| Endpoint {
                addresses: vec![address.to_string()],
                hostname: hostname.map(Into::into),
                conditions: Some(EndpointConditions { ready: *ready, ..EndpointConditions::default() }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(name, protocol, port)| EndpointPort {
                    name: Some(name.to_string()),
                    protocol: Some(protocol.to_string()),
                    port: Some(*port),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
    }
}

/// The specification's examples (kubernetes, headless with my-pet, foo → www.example.com),
/// a StatefulSet's governing Service, and the edge cases.
fn cluster() -> DnsCache {
    let mut cache = DnsCache::new("cluster.local").unwrap();
    let https = || vec![service_port("https", "TCP", 443)];
    cache.upsert_service(&cluster_ip("default", "kubernetes", &["10.3.0.1"], https()));
    cache.upsert_service(&cluster_ip(
        "default",
        "dual",
        &["10.3.0.9", "2001:db8::1"],
        vec![service_port("dns", "UDP", 53), service_port("dns-tcp", "TCP", 53), service_port("", "TCP", 9153)],
    ));
    cache.upsert_service(&headless("default", "headless", https()));
    cache.upsert_endpoint_slice(&slice(
        "default",
        "headless-abc",
        "headless",
        &[("https", "TCP", 443)],
        &[
            ("10.3.0.100", Some("my-pet"), Some(true)),
            ("10.3.0.2", Some("my-pet-2"), None),
            ("10.3.0.3", None, Some(true)),
            ("10.3.0.4", Some("sick-pet"), Some(false)),
        ],
    ));
    cache.upsert_service(&external_name("default", "foo", "www.example.com"));
    cache.upsert_service(&external_name("default", "alias", "kubernetes.default.svc.cluster.local"));
    cache.upsert_service(&headless("default", "nobody-home", https()));
    let mut published = headless("default", "published", https());
    published.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    cache.upsert_service(&published);
    cache.upsert_endpoint_slice(&slice(
        "default",
        "published-1",
        "published",
        &[("https", "TCP", 443)],
        &[("10.3.0.50", Some("starting"), Some(false))],
    ));
    cache.upsert_service(&headless("apps", "web", vec![service_port("http", "TCP", 80)]));
    cache.upsert_endpoint_slice(&slice(
        "apps",
        "web-x",
        "web",
        &[("http", "TCP", 80)],
        &[("10.42.0.10", Some("web-0"), Some(true))],
    ));
    cache.upsert_endpoint_slice(&slice(
        "apps",
        "web-y",
        "web",
        &[("http", "TCP", 80)],
        &[("10.42.1.11", Some("web-1"), Some(true))],
    ));
    cache.upsert_namespace(&Namespace { metadata: meta("", "quiet"), ..Namespace::default() });
    cache
}

#[derive(Debug)]
enum Expect {
    /// NOERROR with these answers (then these additionals), rendered `name ttl TYPE rdata`.
    Records(&'static [&'static str], &'static [&'static str]),
    /// An ExternalName's CNAME whose target the server resolves upstream.
    ResolveUpstream(&'static [&'static str], &'static str),
    NoData,
    NxDomain,
    Forward,
    Refuse,
}

fn render(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data)).collect()
}

fn check(cache: &DnsCache, qname: &str, qtype: RecordType, expect: &Expect) {
    let name = Name::from_ascii(qname).unwrap();
    let decision = decide(cache, &name, qtype);
    let context = format!("{qname} {qtype}: {decision:?}");
    let answer = |decision: Decision| -> Answer {
        match decision {
            Decision::Answer(answer) => answer,
            other => panic!("{qname} {qtype}: expected an answer, got {other:?}"),
        }
    };
    match expect {
        Expect::Records(answers, additionals) => {
            let answer = answer(decision);
            assert_eq!(answer.code, ResponseCode::NoError, "{context}");
            assert_eq!(render(&answer.answers), *answers, "{context}");
            assert_eq!(render(&answer.additionals), *additionals, "{context}");
            assert!(answer.authorities.is_empty(), "{context}");
            assert_eq!(answer.resolve_upstream, None, "{context}");
        }
        Expect::ResolveUpstream(answers, target) => {
            let answer = answer(decision);
            assert_eq!(answer.code, ResponseCode::NoError, "{context}");
            assert_eq!(render(&answer.answers), *answers, "{context}");
            assert_eq!(answer.resolve_upstream, Some(Name::from_ascii(target).unwrap()), "{context}");
        }
        Expect::NoData | Expect::NxDomain => {
            let code = if matches!(expect, Expect::NoData) { ResponseCode::NoError } else { ResponseCode::NXDomain };
            let answer = answer(decision);
            assert_eq!(answer.code, code, "{context}");
            assert!(answer.answers.is_empty(), "{context}");
            assert_eq!(
                render(&answer.authorities),
                [format!(
                    "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. {} \
                     7200 1800 86400 5",
                    cache.serial()
                )],
                "{context}"
            );
        }
        Expect::Forward => assert_eq!(decision, Decision::Forward, "{context}"),
        Expect::Refuse => assert_eq!(decision, Decision::Refuse, "{context}"),
    }
}

#[test]
fn answers_follow_the_specification_and_coredns() {
    use Expect::*;
    use RecordType::*;
    let cache = cluster();
    let rows: &[(&str, RecordType, Expect)] = &[
        // 2.2: the schema version.
        ("dns-version.cluster.local.", TXT, Records(&["dns-version.cluster.local. 28800 TXT 1.1.0"], &[])),
        ("dns-version.cluster.local.", A, NxDomain),
        // 2.3.1: a ClusterIP Service; case-insensitive, answered in the client's case.
        (
            "kubernetes.default.svc.cluster.local.",
            A,
            Records(&["kubernetes.default.svc.cluster.local. 5 A 10.3.0.1"], &[]),
        ),
        (
            "Kubernetes.DEFAULT.svc.Cluster.Local.",
            A,
            Records(&["Kubernetes.DEFAULT.svc.Cluster.Local. 5 A 10.3.0.1"], &[]),
        ),
        // An IPv4-only Service has no AAAA: NODATA, not NXDOMAIN.
        ("kubernetes.default.svc.cluster.local.", AAAA, NoData),
        (
            "dual.default.svc.cluster.local.",
            AAAA,
            Records(&["dual.default.svc.cluster.local. 5 AAAA 2001:db8::1"], &[]),
        ),
        ("kubernetes.default.svc.cluster.local.", MX, NoData),
        ("kubernetes.default.svc.cluster.local.", TXT, NoData),
        ("kubernetes.default.svc.cluster.local.", CNAME, NoData),
        ("missing.default.svc.cluster.local.", A, NxDomain),
        ("missing.default.svc.cluster.local.", MX, NxDomain),
        ("kubernetes.nowhere.svc.cluster.local.", A, NxDomain),
        // 2.3.2: SRV for named ports, the Service as target, its address as additional.
        (
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            SRV,
            Records(
                &["_https._tcp.kubernetes.default.svc.cluster.local. 5 SRV 0 100 443 \
                     kubernetes.default.svc.cluster.local."],
                &["kubernetes.default.svc.cluster.local. 5 A 10.3.0.1"],
            ),
        ),
        (
            "_dns._udp.dual.default.svc.cluster.local.",
            SRV,
            Records(
                &["_dns._udp.dual.default.svc.cluster.local. 5 SRV 0 50 53 \
                     dual.default.svc.cluster.local."],
                &["dual.default.svc.cluster.local. 5 A 10.3.0.9", "dual.default.svc.cluster.local. 5 AAAA 2001:db8::1"],
            ),
        ),
        ("_https._udp.kubernetes.default.svc.cluster.local.", SRV, NxDomain),
        ("_http._tcp.kubernetes.default.svc.cluster.local.", SRV, NxDomain),
        // A port name with its protocol: the name exists, it has no A... but it does: the
        // ClusterIP (CoreDNS answers address queries on port names too).
        (
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            A,
            Records(&["_https._tcp.kubernetes.default.svc.cluster.local. 5 A 10.3.0.1"], &[]),
        ),
        // Three labels left of the Service: too long.
        ("a._https._tcp.kubernetes.default.svc.cluster.local.", A, NxDomain),
        // 2.3.3: PTR for a ClusterIP.
        (
            "1.0.3.10.in-addr.arpa.",
            PTR,
            Records(&["1.0.3.10.in-addr.arpa. 5 PTR kubernetes.default.svc.cluster.local."], &[]),
        ),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            PTR,
            Records(
                &["1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. \
                   5 PTR dual.default.svc.cluster.local."],
                &[],
            ),
        ),
        // An address the cluster does not hold, a partial reverse name: the host's resolvers.
        ("7.7.7.10.in-addr.arpa.", PTR, Forward),
        ("3.10.in-addr.arpa.", PTR, Forward),
        ("1.0.3.10.in-addr.arpa.", A, Forward),
        // 2.4.1: a headless Service is its ready endpoints (unset readiness counts as ready).
        (
            "headless.default.svc.cluster.local.",
            A,
            Records(
                &[
                    "headless.default.svc.cluster.local. 5 A 10.3.0.100",
                    "headless.default.svc.cluster.local. 5 A 10.3.0.2",
                    "headless.default.svc.cluster.local. 5 A 10.3.0.3",
                ],
                &[],
            ),
        ),
        (
            "my-pet.headless.default.svc.cluster.local.",
            A,
            Records(&["my-pet.headless.default.svc.cluster.local. 5 A 10.3.0.100"], &[]),
        ),
        // An endpoint without hostname is named by its address.
        (
            "10-3-0-3.headless.default.svc.cluster.local.",
            A,
            Records(&["10-3-0-3.headless.default.svc.cluster.local. 5 A 10.3.0.3"], &[]),
        ),
        // A not-ready endpoint is not published.
        ("sick-pet.headless.default.svc.cluster.local.", A, NxDomain),
        ("my-pet.headless.default.svc.cluster.local.", AAAA, NoData),
        // No ready endpoint: NXDOMAIN (the specification's rule).
        ("nobody-home.default.svc.cluster.local.", A, NxDomain),
        // publishNotReadyAddresses publishes the not-ready ones.
        (
            "published.default.svc.cluster.local.",
            A,
            Records(&["published.default.svc.cluster.local. 5 A 10.3.0.50"], &[]),
        ),
        (
            "starting.published.default.svc.cluster.local.",
            A,
            Records(&["starting.published.default.svc.cluster.local. 5 A 10.3.0.50"], &[]),
        ),
        // 2.4.2: SRV per ready endpoint, targets by hostname.
        (
            "_https._tcp.headless.default.svc.cluster.local.",
            SRV,
            Records(
                &[
                    "_https._tcp.headless.default.svc.cluster.local. 5 SRV 0 33 443 \
                     my-pet.headless.default.svc.cluster.local.",
                    "_https._tcp.headless.default.svc.cluster.local. 5 SRV 0 33 443 \
                     my-pet-2.headless.default.svc.cluster.local.",
                    "_https._tcp.headless.default.svc.cluster.local. 5 SRV 0 33 443 \
                     10-3-0-3.headless.default.svc.cluster.local.",
                ],
                &[
                    "my-pet.headless.default.svc.cluster.local. 5 A 10.3.0.100",
                    "my-pet-2.headless.default.svc.cluster.local. 5 A 10.3.0.2",
                    "10-3-0-3.headless.default.svc.cluster.local. 5 A 10.3.0.3",
                ],
            ),
        ),
        // 2.4.3: PTR for a headless endpoint, by hostname.
        (
            "100.0.3.10.in-addr.arpa.",
            PTR,
            Records(&["100.0.3.10.in-addr.arpa. 5 PTR my-pet.headless.default.svc.cluster.local."], &[]),
        ),
        // A not-ready endpoint's address has no PTR here: it is the host resolvers' question.
        ("4.0.3.10.in-addr.arpa.", PTR, Forward),
        // A StatefulSet: the governing Service over two slices, each pod by name.
        (
            "web.apps.svc.cluster.local.",
            A,
            Records(&["web.apps.svc.cluster.local. 5 A 10.42.0.10", "web.apps.svc.cluster.local. 5 A 10.42.1.11"], &[]),
        ),
        ("web-0.web.apps.svc.cluster.local.", A, Records(&["web-0.web.apps.svc.cluster.local. 5 A 10.42.0.10"], &[])),
        ("web-1.web.apps.svc.cluster.local.", A, Records(&["web-1.web.apps.svc.cluster.local. 5 A 10.42.1.11"], &[])),
        ("web-2.web.apps.svc.cluster.local.", A, NxDomain),
        (
            "_http._tcp.web.apps.svc.cluster.local.",
            SRV,
            Records(
                &[
                    "_http._tcp.web.apps.svc.cluster.local. 5 SRV 0 50 80 \
                     web-0.web.apps.svc.cluster.local.",
                    "_http._tcp.web.apps.svc.cluster.local. 5 SRV 0 50 80 \
                     web-1.web.apps.svc.cluster.local.",
                ],
                &[
                    "web-0.web.apps.svc.cluster.local. 5 A 10.42.0.10",
                    "web-1.web.apps.svc.cluster.local. 5 A 10.42.1.11",
                ],
            ),
        ),
        (
            "11.1.42.10.in-addr.arpa.",
            PTR,
            Records(&["11.1.42.10.in-addr.arpa. 5 PTR web-1.web.apps.svc.cluster.local."], &[]),
        ),
        // 2.5: ExternalName is a CNAME; its target is resolved upstream for address queries.
        (
            "foo.default.svc.cluster.local.",
            CNAME,
            Records(&["foo.default.svc.cluster.local. 5 CNAME www.example.com."], &[]),
        ),
        (
            "foo.default.svc.cluster.local.",
            A,
            ResolveUpstream(&["foo.default.svc.cluster.local. 5 CNAME www.example.com."], "www.example.com."),
        ),
        (
            "foo.default.svc.cluster.local.",
            AAAA,
            ResolveUpstream(&["foo.default.svc.cluster.local. 5 CNAME www.example.com."], "www.example.com."),
        ),
        ("foo.default.svc.cluster.local.", SRV, NoData),
        ("_https._tcp.foo.default.svc.cluster.local.", SRV, NxDomain),
        // A CNAME into the cluster domain is followed here.
        (
            "alias.default.svc.cluster.local.",
            A,
            Records(
                &[
                    "alias.default.svc.cluster.local. 5 CNAME \
                     kubernetes.default.svc.cluster.local.",
                    "kubernetes.default.svc.cluster.local. 5 A 10.3.0.1",
                ],
                &[],
            ),
        ),
        // Pod names (`pods insecure`): the address they spell, in an existing namespace.
        ("10-42-0-99.apps.pod.cluster.local.", A, Records(&["10-42-0-99.apps.pod.cluster.local. 5 A 10.42.0.99"], &[])),
        (
            "10-42-0-99.quiet.pod.cluster.local.",
            A,
            Records(&["10-42-0-99.quiet.pod.cluster.local. 5 A 10.42.0.99"], &[]),
        ),
        ("fd00--7.apps.pod.cluster.local.", AAAA, Records(&["fd00--7.apps.pod.cluster.local. 5 AAAA fd00::7"], &[])),
        ("10-42-0-99.nowhere.pod.cluster.local.", A, NxDomain),
        ("not-an-ip.apps.pod.cluster.local.", A, NxDomain),
        // The zone's own names exist; a namespace exists when known or holding a Service.
        ("cluster.local.", A, NoData),
        ("svc.cluster.local.", A, NoData),
        ("pod.cluster.local.", A, NoData),
        ("default.svc.cluster.local.", A, NoData),
        ("quiet.svc.cluster.local.", A, NoData),
        ("nowhere.svc.cluster.local.", A, NxDomain),
        ("something.cluster.local.", A, NxDomain),
        ("kubernetes.default.other.cluster.local.", A, NxDomain),
        // SOA at the apex only; below it, NODATA (as CoreDNS).
        ("web.apps.svc.cluster.local.", SOA, NoData),
        ("cluster.local.", AXFR, Refuse),
        // Everything outside the zone goes to the host's resolvers.
        ("www.example.com.", A, Forward),
        ("cluster.local.example.com.", A, Forward),
        ("local.", A, Forward),
    ];
    for (qname, qtype, expect) in rows {
        check(&cache, qname, *qtype, expect);
    }
    let Decision::Answer(apex) = decide(&cache, &Name::from_ascii("cluster.local.").unwrap(), SOA) else {
        panic!("the apex SOA is answered");
    };
    assert_eq!(
        render(&apex.answers),
        [format!(
            "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. {} 7200 1800 \
             86400 5",
            cache.serial()
        )]
    );
}

#[test]
fn removals_take_names_and_addresses_away() {
    let mut cache = cluster();
    cache.remove_endpoint_slice("apps", "web-x");
    check(
        &cache,
        "web.apps.svc.cluster.local.",
        RecordType::A,
        &Expect::Records(&["web.apps.svc.cluster.local. 5 A 10.42.1.11"], &[]),
    );
    check(&cache, "web-0.web.apps.svc.cluster.local.", RecordType::A, &Expect::NxDomain);
    check(&cache, "10.0.42.10.in-addr.arpa.", RecordType::PTR, &Expect::Forward);

    cache.remove_service("default", "kubernetes");
    check(&cache, "kubernetes.default.svc.cluster.local.", RecordType::A, &Expect::NxDomain);
    check(&cache, "1.0.3.10.in-addr.arpa.", RecordType::PTR, &Expect::Forward);
    // The alias now points at nothing: its CNAME is dropped, the name itself still exists.
    check(&cache, "alias.default.svc.cluster.local.", RecordType::A, &Expect::NoData);

    // A replaced Service answers with its new address only, the old one's PTR goes.
    cache.upsert_service(&cluster_ip("default", "dual", &["10.3.0.77"], vec![service_port("dns", "UDP", 53)]));
    check(
        &cache,
        "dual.default.svc.cluster.local.",
        RecordType::A,
        &Expect::Records(&["dual.default.svc.cluster.local. 5 A 10.3.0.77"], &[]),
    );
    check(&cache, "9.0.3.10.in-addr.arpa.", RecordType::PTR, &Expect::Forward);

    // The last Service of a namespace gone, the namespace is gone for DNS (none was added).
    cache.remove_service("apps", "web");
    check(&cache, "apps.svc.cluster.local.", RecordType::A, &Expect::NxDomain);
}

#[test]
fn an_endpoint_readiness_change_is_seen_at_once() {
    let mut cache = cluster();
    cache.upsert_endpoint_slice(&slice(
        "apps",
        "web-x",
        "web",
        &[("http", "TCP", 80)],
        &[("10.42.0.10", Some("web-0"), Some(false))],
    ));
    check(
        &cache,
        "web.apps.svc.cluster.local.",
        RecordType::A,
        &Expect::Records(&["web.apps.svc.cluster.local. 5 A 10.42.1.11"], &[]),
    );
}

#[test]
fn another_cluster_domain() {
    let mut cache = DnsCache::new("corp.example").unwrap();
    cache.upsert_service(&cluster_ip("default", "api", &["10.43.0.5"], vec![]));
    check_in(&cache, "api.default.svc.corp.example.", "10.43.0.5");
    assert_eq!(
        decide(&cache, &Name::from_ascii("api.default.svc.cluster.local.").unwrap(), RecordType::A),
        Decision::Forward
    );
}

fn check_in(cache: &DnsCache, qname: &str, address: &str) {
    let Decision::Answer(answer) = decide(cache, &Name::from_ascii(qname).unwrap(), RecordType::A) else {
        panic!("{qname}: not answered");
    };
    assert_eq!(render(&answer.answers), [format!("{qname} 5 A {address}")]);
}
