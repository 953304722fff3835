//! The nftables service proxy (issue 13), against the kernel in a throwaway network namespace
//! (`tugt-bench-<random>`, deleted at the end; needs root and `nft`):
//!
//! - cold_*: `--services` Services × `--endpoints` ready endpoints (one EndpointSlice each)
//!   programmed from nothing: build the rule set from the API objects, render the whole table,
//!   `nft -f` it as one transaction (issue 13: 5,000 × 50 under 10 s);
//! - add_one_*: with `--existing` Services × `--existing-endpoints` endpoints already
//!   programmed, one more Service: the rule set rebuilt from all objects, the delta computed
//!   and applied (issue 13: under 50 ms; kube-proxy's nftables mode ~141 ms, kubernetes#126013);
//! - endpoint_change_*: in the same table, one endpoint of one Service replaced;
//! - render_ms: rendering the cold table's text alone.
//!
//! add_one_build is the rule set rebuilt from every object; add_one_compute adds the delta
//! (diff and text); add_one_nft is `nft -f` of the delta.
//!
//! Each add/change is measured `--repeats` times; the JSON holds p50 and the worst.

use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tug_net::netns::NetNs;
use tug_net::proxy::{self, Nft, NodeContext, Syncer};

use crate::{ctx, percentile_ms, round2};

#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Services programmed from cold.
    #[arg(long, default_value_t = 5000)]
    services: usize,
    /// Ready endpoints per Service in the cold run.
    #[arg(long, default_value_t = 50)]
    endpoints: usize,
    /// Services present when one more is added.
    #[arg(long, default_value_t = 10_000)]
    existing: usize,
    /// Endpoints per Service in the add-one run.
    #[arg(long, default_value_t = 10)]
    existing_endpoints: usize,
    /// Measurements of each incremental change.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
}

fn node() -> NodeContext {
    NodeContext {
        node_name: "bench-node".into(),
        node_ips: vec![std::net::Ipv4Addr::new(192, 168, 0, 2)],
        cluster_cidr: Some("10.128.0.0/9".parse().expect("CIDR")),
        node_pod_cidr: Some("10.128.0.0/24".parse().expect("CIDR")),
        localhost_node_ports: true,
    }
}

/// Service `i` (ClusterIP 172.16.x.y, every fourth a NodePort) and its slice of `endpoints`
/// distinct pod addresses in 10.128.0.0/9.
fn service(i: usize, endpoints: usize) -> (Service, EndpointSlice) {
    let name = format!("svc-{i}");
    let cluster_ip = format!("172.16.{}.{}", i / 250, i % 250 + 1);
    let mut spec = json!({"clusterIP": cluster_ip, "type": "ClusterIP",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]});
    if i.is_multiple_of(4) {
        spec["type"] = json!("NodePort");
        spec["ports"][0]["nodePort"] = json!(30000 + i % 2768);
    }
    let service = serde_json::from_value(json!({"metadata": {"namespace": "bench", "name": name}, "spec": spec}))
        .expect("service");
    let addresses: Vec<_> = (0..endpoints)
        .map(|e| {
            let n = (i * endpoints + e) as u32 + 0x0a80_0000 + 1;
            let ip = std::net::Ipv4Addr::from(n);
            json!({"addresses": [ip.to_string()], "conditions": {"ready": true}, "nodeName": "other-node"})
        })
        .collect();
    let slice = serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": addresses,
    }))
    .expect("slice");
    (service, slice)
}

fn cluster(services: usize, endpoints: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    (0..services).map(|i| service(i, endpoints)).unzip()
}

fn ms(d: Duration) -> f64 {
    round2(d.as_secs_f64() * 1000.0)
}

pub async fn run(args: NetworkArgs) -> Result<String, String> {
    tokio::task::spawn_blocking(move || measure(args)).await.map_err(ctx("network benchmark thread"))?
}

fn measure(args: NetworkArgs) -> Result<String, String> {
    let suffix = format!("{:x}", std::process::id());
    let nft = |netns: &NetNs| Nft { table: "tugboat".into(), netns: Some(netns.name().to_string()) };

    // Cold: everything from nothing.
    eprintln!("cold: {} Services x {} endpoints", args.services, args.endpoints);
    let (services, slices) = cluster(args.services, args.endpoints);
    let netns = NetNs::create(&format!("tugt-bench-cold-{suffix}")).map_err(ctx("creating a namespace (root?)"))?;
    let started = Instant::now();
    let set = proxy::build(&node(), &services, &slices);
    let build = started.elapsed();
    let rendered = Instant::now();
    let script = proxy::render_full("tugboat", &set);
    let render = rendered.elapsed();
    let mut syncer = Syncer::new(nft(&netns));
    let report = syncer.sync(set).map_err(ctx("cold sync"))?;
    let cold_total = started.elapsed();
    eprintln!(
        "cold: build {build:?}, render {render:?} ({} MB), sync {:?} (render {:?} + nft {:?})",
        script.len() / 1_000_000,
        report.render + report.apply,
        report.render,
        report.apply
    );
    drop((syncer, netns, services, slices));

    // Incremental: one Service more among `existing`, one endpoint replaced.
    eprintln!("add one: {} Services x {} endpoints present", args.existing, args.existing_endpoints);
    let (mut services, mut slices) = cluster(args.existing, args.existing_endpoints);
    let netns = NetNs::create(&format!("tugt-bench-add-{suffix}")).map_err(ctx("creating a namespace"))?;
    let mut syncer = Syncer::new(nft(&netns));
    let base_started = Instant::now();
    syncer.sync(proxy::build(&node(), &services, &slices)).map_err(ctx("programming the existing Services"))?;
    let existing_cold = base_started.elapsed();
    let (mut add_total, mut add_build, mut add_compute, mut add_apply) = (vec![], vec![], vec![], vec![]);
    let mut change_total = vec![];
    for round in 0..args.repeats {
        let (svc, slice) = service(args.existing + round, args.existing_endpoints);
        services.push(svc);
        slices.push(slice);
        let started = Instant::now();
        let set = proxy::build(&node(), &services, &slices);
        add_build.push(started.elapsed());
        let report = syncer.sync(set).map_err(ctx("adding a Service"))?;
        add_total.push(started.elapsed());
        add_compute.push(started.elapsed() - report.apply);
        add_apply.push(report.apply);
        if report.full {
            return Err("adding a Service rewrote the whole table".into());
        }

        // One endpoint of an existing Service replaced by a new address.
        let target = round * 7 % args.existing;
        let mut replaced = serde_json::to_value(&slices[target]).map_err(ctx("slice"))?;
        replaced["endpoints"][0]["addresses"][0] = json!(format!("10.200.{}.{}", round / 250, round % 250 + 1));
        slices[target] = serde_json::from_value(replaced).map_err(ctx("slice"))?;
        let started = Instant::now();
        syncer.sync(proxy::build(&node(), &services, &slices)).map_err(ctx("changing an endpoint"))?;
        change_total.push(started.elapsed());
    }
    drop((syncer, netns));

    let figures = json!({
        "bench": "network",
        "cold_services": args.services,
        "cold_endpoints": args.services * args.endpoints,
        "cold_build_ms": ms(build),
        "cold_render_ms": ms(report.render),
        "cold_nft_apply_ms": ms(report.apply),
        "cold_total_ms": ms(cold_total),
        "cold_script_bytes": script.len(),
        "render_ms": ms(render),
        "existing_services": args.existing,
        "existing_endpoints": args.existing * args.existing_endpoints,
        "existing_cold_total_ms": ms(existing_cold),
        "add_one_p50_ms": round2(percentile_ms(&mut add_total, 0.5)),
        "add_one_max_ms": round2(percentile_ms(&mut add_total, 1.0)),
        "add_one_build_p50_ms": round2(percentile_ms(&mut add_build, 0.5)),
        "add_one_compute_p50_ms": round2(percentile_ms(&mut add_compute, 0.5)),
        "add_one_nft_p50_ms": round2(percentile_ms(&mut add_apply, 0.5)),
        "endpoint_change_p50_ms": round2(percentile_ms(&mut change_total, 0.5)),
        "endpoint_change_max_ms": round2(percentile_ms(&mut change_total, 1.0)),
    });
    Ok(figures.to_string())
}
