//! Cluster DNS over the wire: the server on a free loopback port, filled with Services and
//! EndpointSlices, asked by hickory's DNS client over UDP and TCP. A second instance of the
//! server, authoritative for another domain, plays the host's resolver, so forwarding is tested
//! without the internet.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tokio::net::{TcpStream, UdpSocket};
use tug_net::dns::{DnsCache, DnsServer, Limits, SharedDnsCache, Upstreams};

const DEADLINE: Duration = Duration::from_secs(10);

fn service(namespace: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }))
    .expect("a Service")
}

/// A slice of `service` with one endpoint per (address, hostname), all ready.
fn slice(
    namespace: &str,
    service: &str,
    ports: serde_json::Value,
    endpoints: &[(&str, Option<&str>)],
) -> EndpointSlice {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(address, hostname)| json!({"addresses": [address], "hostname": hostname, "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "namespace": namespace,
            "name": format!("{service}-slice"),
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("an EndpointSlice")
}

fn shared(cache: DnsCache) -> SharedDnsCache {
    Arc::new(RwLock::new(cache))
}

/// The "host's resolver": the same server, authoritative for `example.test`, forwarding nowhere.
async fn upstream() -> DnsServer {
    let mut cache = DnsCache::new("example.test").unwrap();
    cache.upsert_service(&service("default", "www", json!({"clusterIP": "192.0.2.80", "ports": [{"port": 80}]})));
    // More addresses than a 512-byte UDP answer holds: forwarding must fall back to TCP.
    let many: Vec<String> = (1..=60).map(|i| format!("198.51.100.{i}")).collect();
    let many_endpoints: Vec<(&str, Option<&str>)> = many.iter().map(|address| (address.as_str(), None)).collect();
    cache.upsert_service(&service("default", "big", json!({"clusterIP": "None", "ports": [{"port": 80}]})));
    cache.upsert_endpoint_slice(&slice("default", "big", json!([{"port": 80}]), &many_endpoints));
    start(cache, Vec::new(), Limits::default()).await
}

/// The cluster under test: a ClusterIP Service with named ports, a StatefulSet's headless
/// Service with two pods, and ExternalNames in and out of the cluster.
fn cluster() -> DnsCache {
    let mut cache = DnsCache::new("cluster.local").unwrap();
    cache.upsert_service(&service(
        "shop",
        "web",
        json!({
            "clusterIP": "10.43.0.20",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "protocol": "TCP"},
            ],
        }),
    ));
    cache.upsert_service(&service("shop", "db", json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]})));
    cache.upsert_endpoint_slice(&slice(
        "shop",
        "db",
        json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        &[("10.42.0.5", Some("db-0")), ("10.42.1.6", Some("db-1"))],
    ));
    cache.upsert_service(&service(
        "shop",
        "cdn",
        json!({"type": "ExternalName", "externalName": "www.default.svc.example.test"}),
    ));
    cache.upsert_service(&service(
        "shop",
        "front",
        json!({"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"}),
    ));
    cache
}

async fn start(cache: DnsCache, upstreams: Vec<SocketAddr>, limits: Limits) -> DnsServer {
    DnsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        shared(cache),
        Upstreams::new(upstreams, Duration::from_secs(2)),
        limits,
    )
    .await
    .expect("the DNS server starts on a free loopback port")
}

async fn udp_client(server: SocketAddr) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default()).with_timeout(Some(DEADLINE)).build();
    let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(background);
    client
}

async fn tcp_client(server: SocketAddr) -> Client<TokioRuntimeProvider> {
    let (connect, sender) = TcpClientStream::new(server, None, Some(DEADLINE), TokioRuntimeProvider::default());
    let (client, background) = Client::<TokioRuntimeProvider>::new(connect.await.expect("TCP connect"), sender);
    tokio::spawn(background);
    client
}

async fn ask(client: &mut Client<TokioRuntimeProvider>, name: &str, qtype: RecordType) -> Message {
    let response = client
        .query(Name::from_ascii(name).unwrap(), DNSClass::IN, qtype)
        .await
        .unwrap_or_else(|e| panic!("{name} {qtype}: {e}"));
    response.into_message()
}

fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

fn srv_targets(message: &Message) -> Vec<(String, u16)> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.target.to_string(), srv.port)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn cluster_names_are_answered_and_others_forwarded() {
    let upstream = upstream().await;
    let server = start(cluster(), vec![upstream.local_addr()], Limits::default()).await;
    let mut udp = udp_client(server.local_addr()).await;

    let web = ask(&mut udp, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&web), ips(&["10.43.0.20"]), "{web:?}");
    assert!(web.metadata.authoritative, "cluster answers are authoritative");
    assert_eq!(web.answers[0].ttl, 5);

    let db = ask(&mut udp, "db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&db), ips(&["10.42.0.5", "10.42.1.6"]), "{db:?}");
    let db1 = ask(&mut udp, "db-1.db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&db1), ips(&["10.42.1.6"]), "{db1:?}");

    let http = ask(&mut udp, "_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(srv_targets(&http), [("web.shop.svc.cluster.local.".to_owned(), 80)], "{http:?}");
    assert_eq!(http.additionals.len(), 1, "the target's address: {http:?}");
    let pg = ask(&mut udp, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(
        srv_targets(&pg),
        [("db-0.db.shop.svc.cluster.local.".to_owned(), 5432), ("db-1.db.shop.svc.cluster.local.".to_owned(), 5432)],
        "{pg:?}"
    );

    let ptr = ask(&mut udp, "20.0.43.10.in-addr.arpa.", RecordType::PTR).await;
    assert!(
        matches!(&ptr.answers[..], [Record { data: RData::PTR(name), .. }]
            if name.0.to_string() == "web.shop.svc.cluster.local."),
        "{ptr:?}"
    );

    // ExternalName out of the cluster: the CNAME, then the target's address from upstream.
    let cdn = ask(&mut udp, "cdn.shop.svc.cluster.local.", RecordType::A).await;
    assert!(
        matches!(&cdn.answers[0].data, RData::CNAME(target)
            if target.0.to_string() == "www.default.svc.example.test."),
        "{cdn:?}"
    );
    assert_eq!(addresses(&cdn), ips(&["192.0.2.80"]), "{cdn:?}");
    // ExternalName within the cluster: followed here.
    let front = ask(&mut udp, "front.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&front), ips(&["10.43.0.20"]), "{front:?}");

    let missing = ask(&mut udp, "nope.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        matches!(&missing.authorities[..], [Record { data: RData::SOA(_), .. }]),
        "NXDOMAIN carries the SOA: {missing:?}"
    );
    let no_data = ask(&mut udp, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(no_data.metadata.response_code, ResponseCode::NoError);
    assert!(no_data.answers.is_empty(), "{no_data:?}");

    let version = ask(&mut udp, "dns-version.cluster.local.", RecordType::TXT).await;
    assert!(
        matches!(&version.answers[..], [Record { data: RData::TXT(txt), .. }]
            if *txt == TXT::new(vec!["1.1.0".into()])),
        "{version:?}"
    );

    // Outside the cluster: the host's resolver answers, over UDP and over TCP.
    let forwarded = ask(&mut udp, "www.default.svc.example.test.", RecordType::A).await;
    assert_eq!(addresses(&forwarded), ips(&["192.0.2.80"]), "{forwarded:?}");
    let mut tcp = tcp_client(server.local_addr()).await;
    let forwarded = ask(&mut tcp, "www.default.svc.example.test.", RecordType::A).await;
    assert_eq!(addresses(&forwarded), ips(&["192.0.2.80"]), "{forwarded:?}");
    let cluster_over_tcp = ask(&mut tcp, "db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&cluster_over_tcp).len(), 2, "{cluster_over_tcp:?}");

    // An upstream answer too large for UDP: fetched over TCP upstream, whole over TCP here...
    let big = ask(&mut tcp, "big.default.svc.example.test.", RecordType::A).await;
    assert_eq!(addresses(&big).len(), 60, "{big:?}");
    // ...and truncated (TC) to a client asking over UDP without EDNS.
    udp.disable_edns();
    let truncated = ask(&mut udp, "big.default.svc.example.test.", RecordType::A).await;
    assert!(truncated.metadata.truncation, "{truncated:?}");

    server.shutdown().await.unwrap();
    upstream.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_upstream_is_servfail_and_forwards_in_flight_are_bounded() {
    // An upstream that receives and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let limits = Limits { max_forwards_in_flight: 1, ..Limits::default() };
    let server = DnsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        shared(cluster()),
        Upstreams::new(vec![silent.local_addr().unwrap()], Duration::from_millis(300)),
        limits,
    )
    .await
    .unwrap();

    let first = raw_query("a.example.org.", RecordType::A, 1);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(server.local_addr()).await.unwrap();
    client.send(&first).await.unwrap();
    // The forward is in flight once the upstream has it: the only permit is taken.
    let mut buffer = vec![0; 4096];
    tokio::time::timeout(DEADLINE, silent.recv_from(&mut buffer))
        .await
        .expect("the query reaches the upstream")
        .unwrap();
    client.send(&raw_query("b.example.org.", RecordType::A, 2)).await.unwrap();
    // Cluster names never wait for a permit.
    client.send(&raw_query("web.shop.svc.cluster.local.", RecordType::A, 3)).await.unwrap();
    let answers = receive(&client, 3).await;
    assert_eq!(answers[&2].metadata.response_code, ResponseCode::Refused, "{answers:?}");
    assert_eq!(addresses(&answers[&3]), ips(&["10.43.0.20"]), "{answers:?}");
    // The silent upstream timed out: SERVFAIL.
    assert_eq!(answers[&1].metadata.response_code, ResponseCode::ServFail, "{answers:?}");

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_oversized_query_is_refused() {
    let server = start(cluster(), Vec::new(), Limits::default()).await;
    let mut message = Message::query();
    message.metadata.id = 7;
    message.add_query(Query::query(Name::from_ascii("web.shop.svc.cluster.local.").unwrap(), RecordType::A));
    // 2 kB of additional records: far beyond any real question.
    for _ in 0..8 {
        message.add_additional(Record::from_rdata(Name::root(), 0, RData::TXT(TXT::new(vec!["x".repeat(250)]))));
    }
    let query = message.to_vec().unwrap();
    assert!(query.len() > Limits::default().max_query_bytes);
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let answer = tcp_exchange(&mut stream, &query).await;
    assert_eq!(answer.metadata.id, 7);
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused, "{answer:?}");
    server.shutdown().await.unwrap();
}

fn raw_query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message.to_vec().unwrap()
}

/// `count` answers on a connected UDP socket, by ID.
async fn receive(socket: &UdpSocket, count: usize) -> HashMap<u16, Message> {
    let mut answers = HashMap::new();
    let mut buffer = vec![0; 4096];
    while answers.len() < count {
        let len = tokio::time::timeout(DEADLINE, socket.recv(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("{count} answers expected, got {answers:?}"))
            .unwrap();
        let message = Message::from_vec(&buffer[..len]).unwrap();
        answers.insert(message.metadata.id, message);
    }
    answers
}

async fn tcp_exchange(stream: &mut TcpStream, query: &[u8]) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let len = u16::try_from(query.len()).unwrap();
    stream.write_all(&len.to_be_bytes()).await.unwrap();
    stream.write_all(query).await.unwrap();
    let len = tokio::time::timeout(DEADLINE, stream.read_u16()).await.expect("an answer within the deadline").unwrap();
    let mut answer = vec![0; usize::from(len)];
    stream.read_exact(&mut answer).await.unwrap();
    Message::from_vec(&answer).unwrap()
}
