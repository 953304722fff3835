//! `dns`: the cluster DNS server (tug-net) on a loopback port with 1,000 Services in its cache,
//! asked over UDP by concurrent clients in the same process, as pods on a node would ask their
//! node-local server.
//!
//! - queries_per_s: answered queries per second over the run;
//! - p50_ms / p99_ms: from sending a query until its answer is received;
//! - the mix: A for ClusterIP Services, A for headless Services (3 endpoints each), SRV for a
//!   named port, and an NXDOMAIN, in turn.

use crate::{percentile_ms, round2};
use clap::Args;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tug_net::dns::{DnsCache, DnsServer, Limits, Upstreams};

#[derive(Debug, Args)]
pub struct DnsArgs {
    /// Services in the cache (one in ten headless, with 3 endpoints).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Seconds the measured phase runs (after a 1 s warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Clients, each with one query in flight.
    #[arg(long, default_value_t = 4)]
    clients: usize,
}

pub async fn run(args: DnsArgs) -> Result<String, String> {
    let cache = Arc::new(RwLock::new(filled_cache(args.services)?));
    let server = DnsServer::start(
        "127.0.0.1:0".parse().expect("a socket address"),
        cache,
        // Every name asked is a cluster name: nothing is forwarded.
        Upstreams::new(Vec::new(), Duration::from_secs(1)),
        Limits::default(),
    )
    .await
    .map_err(|e| format!("starting the DNS server: {e}"))?;
    let queries = Arc::new(query_mix(args.services)?);
    eprintln!(
        "dns: {} services, {} clients, {} distinct queries, server on {}",
        args.services,
        args.clients,
        queries.len(),
        server.local_addr()
    );

    run_clients(server.local_addr(), &queries, args.clients, Duration::from_secs(1)).await?;
    let phase = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut latencies = run_clients(server.local_addr(), &queries, args.clients, phase).await?;
    let elapsed = started.elapsed().as_secs_f64();
    server.shutdown().await.map_err(|e| e.to_string())?;

    let answered = latencies.len();
    let figures = json!({
        "bench": "dns",
        "services": args.services,
        "clients": args.clients,
        "queries": answered,
        "queries_per_s": (answered as f64 / elapsed).round(),
        "p50_ms": round2(percentile_ms(&mut latencies, 0.50)),
        "p99_ms": round2(percentile_ms(&mut latencies, 0.99)),
        "p99_target_ms": 2.0,
    });
    Ok(figures.to_string())
}

fn filled_cache(services: usize) -> Result<DnsCache, String> {
    let mut cache = DnsCache::new("cluster.local").map_err(|e| e.to_string())?;
    for i in 0..services {
        let name = format!("svc-{i}");
        let headless = i.is_multiple_of(10);
        let cluster_ip = if headless { "None".to_owned() } else { format!("10.43.{}.{}", i / 250, i % 250 + 1) };
        let service: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "bench", "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80}]},
        }))
        .map_err(|e| e.to_string())?;
        cache.upsert_service(&service);
        let endpoints: Vec<_> = (0..3)
            .map(|e| {
                json!({
                    "addresses": [format!("10.42.{}.{}", i / 250, (i % 250) * 3 % 250 + e + 1)],
                    "conditions": {"ready": true},
                })
            })
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {
                "namespace": "bench",
                "name": format!("{name}-abcde"),
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .map_err(|e| e.to_string())?;
        cache.upsert_endpoint_slice(&slice);
    }
    Ok(cache)
}

/// Encoded queries (ID 0; each client sets its own), cycling through the mix.
fn query_mix(services: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut queries = Vec::new();
    for i in (0..services).step_by(7) {
        let headless = i / 10 * 10;
        for (name, qtype) in [
            (format!("svc-{i}.bench.svc.cluster.local."), RecordType::A),
            (format!("svc-{headless}.bench.svc.cluster.local."), RecordType::A),
            (format!("_http._tcp.svc-{i}.bench.svc.cluster.local."), RecordType::SRV),
            (format!("missing-{i}.bench.svc.cluster.local."), RecordType::A),
        ] {
            let mut message = Message::query();
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(Name::from_ascii(&name).map_err(|e| e.to_string())?, qtype));
            queries.push(message.to_vec().map_err(|e| e.to_string())?);
        }
    }
    Ok(queries)
}

/// `clients` loops, each sending a query and waiting for its answer, until `phase` is over;
/// the latencies of all answered queries.
async fn run_clients(
    server: SocketAddr,
    queries: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    phase: Duration,
) -> Result<Vec<Duration>, String> {
    let deadline = Instant::now() + phase;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let queries = Arc::clone(queries);
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(server).await?;
            let mut latencies = Vec::new();
            let mut buffer = vec![0; 4096];
            let mut next = client * queries.len() / clients.max(1);
            let mut id: u16 = 0;
            while Instant::now() < deadline {
                let mut query = queries[next % queries.len()].clone();
                next += 1;
                id = id.wrapping_add(1);
                query[..2].copy_from_slice(&id.to_be_bytes());
                let sent = Instant::now();
                socket.send(&query).await?;
                // A lost datagram would stall this client: give up on it after a second.
                loop {
                    let received = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer));
                    let Ok(len) = received.await else { break };
                    if len? >= 2 && buffer[..2] == id.to_be_bytes() {
                        latencies.push(sent.elapsed());
                        break;
                    }
                }
            }
            Ok::<_, std::io::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())?.map_err(|e| format!("a DNS client failed: {e}"))?);
    }
    Ok(latencies)
}
