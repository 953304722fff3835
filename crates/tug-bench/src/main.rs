//! Benchmarks. `cargo run --release -p tug-bench -- <name> [flags]`; each prints its progress on
//! stderr and ends with ONE line of JSON holding its figures on stdout.

mod api;
mod containers;
mod controllers;
mod dns;
mod h2client;
mod network;
mod reclaim;
mod scheduler;
mod store;
mod swarm;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tug-bench", about = "Tugboat benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The datastore: durable write rate and latency, watch delivery, large lists.
    Store(store::StoreArgs),
    /// The datastore gives space back: a real `tug server`, 20,000 ConfigMaps created and
    /// deleted, then the database, WAL and server memory over time.
    StoreReclaim(reclaim::ReclaimArgs),
    /// The API server over HTTPS: creates, gets, a large list, watch fan-out, memory.
    Api(api::ApiArgs),
    /// The scheduler: its placement core alone, and end to end through the API server with
    /// hollow nodes.
    Scheduler(scheduler::SchedulerArgs),
    /// The controllers with hollow nodes: Deployments until available, a rolling update, a
    /// node's failure until its pods run elsewhere.
    Controllers(controllers::ControllersArgs),
    /// Real containers: a Deployment of the demo image through one node agent (containerd),
    /// until all pods run, and its deletion; optionally against Docker swarm.
    Containers(containers::ContainersArgs),
    /// Cluster DNS (tug-net) on loopback with 1,000 Services: queries/s, p50/p99 over UDP.
    Dns(dns::DnsArgs),
    /// The nftables service proxy in a throwaway network namespace: 5,000 Services x 50
    /// endpoints from cold, one Service added among 10,000, an endpoint change (needs root).
    Network(network::NetworkArgs),
    /// The node agent of the `containers` benchmark, run as a child process so its memory is
    /// measured alone.
    #[command(hide = true)]
    ContainersAgent(containers::AgentChildArgs),
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let figures = match cli.bench {
        Bench::Store(args) => runtime.block_on(store::run(args)),
        Bench::StoreReclaim(args) => runtime.block_on(reclaim::run(args)),
        Bench::Api(args) => runtime.block_on(api::run(args)),
        Bench::Scheduler(args) => runtime.block_on(scheduler::run(args)),
        Bench::Controllers(args) => runtime.block_on(controllers::run(args)),
        Bench::Containers(args) => runtime.block_on(containers::run(args)),
        Bench::Dns(args) => runtime.block_on(dns::run(args)),
        Bench::Network(args) => runtime.block_on(network::run(args)),
        Bench::ContainersAgent(args) => runtime.block_on(containers::agent_child(args)),
    };
    match figures {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

/// The value at quantile `q` (0..=1) of `samples`, in milliseconds.
pub(crate) fn percentile_ms(samples: &mut [std::time::Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[idx].as_secs_f64() * 1000.0
}

/// Rounds to 2 decimals for the JSON line.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Maps an error to text naming what failed (`"starting the API server: …"`).
pub(crate) fn ctx<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// Unmounts (lazily, deepest first) whatever is mounted under `dir`: what containerd or dockerd
/// left of their containers when a benchmark ends.
pub(crate) fn unmount_under(dir: &std::path::Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|line| line.split_whitespace().nth(1)).filter(|p| p.starts_with(&prefix)).collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = std::process::Command::new("umount").args(["-l", point]).output();
    }
}
