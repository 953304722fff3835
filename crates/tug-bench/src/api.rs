//! `api [--pods N]`: the figures issue 3 asks for, against an in-process API server over HTTPS
//! with a SQLite store.
//!
//! - creates_per_s / create_p50_ms / create_p99_ms: `--pods` pod creates by `--concurrency`
//!   concurrent requests (these pods also fill the store for the list and RSS figures);
//! - get_p50_ms / get_p99_ms: `--gets` GETs of those pods, same concurrency;
//! - list_10k_ms: receiving the full body of one unpaginated list of all pods (what the server
//!   controls; median of 5); list_10k_typed_ms adds kube-rs decoding into `Vec<Pod>`;
//! - watch_fanout_p99_ms: `--watchers` watches on one namespace, one label patch, from just before
//!   the patch until each watcher has the event line;
//! - rss_mb_10k_pods: this process's VmRSS once the pods are stored. Server and bench client share
//!   the process, so this over-counts the server; rss_mb_baseline is the RSS before the server
//!   started.
//!
//! Transport: kube-rs 5 speaks HTTP/1.1 only (its TLS connector offers no ALPN), so every request
//! in flight holds its own TLS connection from the client's pool: 32 concurrent requests are 32
//! keep-alive connections, and 1,000 watches are 1,000 connections. Kubernetes' Go clients would
//! multiplex these over h2 instead.

use crate::{percentile_ms, round2};
use clap::Args;
use futures::AsyncBufReadExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tug_apiserver::server::{RunningServer, ServerConfig};

/// Namespace of the created pods (listed in full).
const BENCH_NS: &str = "bench";
/// Namespace the watchers watch; it holds one pod so the list figure is not disturbed.
const WATCH_NS: &str = "bench-watch";
/// Separate kube clients (separate connection pools); the tasks share them round-robin.
const CLIENTS: usize = 4;
/// Runs of each list; the median is reported.
const LIST_RUNS: usize = 5;
/// How long a watcher waits for the event before the run fails.
const WATCH_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Pods created (and then listed).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent requests in the create and get phases.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// GETs in the get phase.
    #[arg(long, default_value_t = 2_000)]
    gets: usize,
    /// Watches opened for the fan-out phase.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Where the server's data directory goes (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Formats an error with what was being done.
fn ctx<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

pub async fn run(args: ApiArgs) -> Result<String, String> {
    if args.pods == 0 || args.concurrency == 0 {
        return Err("--pods and --concurrency must be at least 1".into());
    }
    let baseline_mb = rss_mb()?;
    let dir = tempfile::Builder::new()
        .prefix("tug-bench-api-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(ctx("temporary directory"))?;
    let data_dir = dir.path().to_path_buf();
    let server = tug_apiserver::server::start(ServerConfig {
        datastore: tug_store::Datastore::Sqlite { path: data_dir.join("state.db") },
        data_dir,
        listen: "127.0.0.1:0".parse().map_err(ctx("listen address"))?,
        compaction: tug_store::CompactionPolicy::default(),
    })
    .await
    .map_err(ctx("starting the API server"))?;
    eprintln!("server at {} (RSS before start {baseline_mb:.1} MB)", server.url);
    let result = measure(&server, &args, baseline_mb).await;
    server.stop().await;
    result
}

async fn measure(server: &RunningServer, args: &ApiArgs, baseline_mb: f64) -> Result<String, String> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(&server.kubeconfig).await?);
    }
    for ns in [BENCH_NS, WATCH_NS] {
        create_namespace(&clients[0], ns).await?;
    }
    warm_up(&clients, args.concurrency).await?;

    let cpu_before = cpu_seconds()?;
    let (creates_per_s, mut create_lat) = create_phase(&clients, args.pods, args.concurrency).await?;
    let create_cpu_us = (cpu_seconds()? - cpu_before) * 1e6 / args.pods as f64;
    let (create_p50, create_p99) = (percentile_ms(&mut create_lat, 0.5), percentile_ms(&mut create_lat, 0.99));
    eprintln!(
        "{} creates, {} concurrent: {creates_per_s:.0}/s, p50 {create_p50:.2} ms, p99 {create_p99:.2} ms; \
         CPU {create_cpu_us:.0} µs per create (server and client), {:.0}% of the cores",
        args.pods,
        args.concurrency,
        create_cpu_us * creates_per_s / 1e6 / cores() * 100.0
    );
    let rss_10k = rss_mb()?;
    eprintln!("RSS with {} pods stored: {rss_10k:.1} MB (baseline {baseline_mb:.1} MB)", args.pods);

    let mut get_lat = get_phase(&clients, args.pods, args.gets, args.concurrency).await?;
    let (get_p50, get_p99) = (percentile_ms(&mut get_lat, 0.5), percentile_ms(&mut get_lat, 0.99));
    eprintln!("{} gets, {} concurrent: p50 {get_p50:.2} ms, p99 {get_p99:.2} ms", args.gets, args.concurrency);
    let mut serial_get_lat = get_phase(&clients, args.pods, args.gets.min(500), 1).await?;
    eprintln!("gets one at a time: p99 {:.2} ms", percentile_ms(&mut serial_get_lat, 0.99));

    let (list_raw, list_bytes) = list_raw_phase(&clients[0], args.pods).await?;
    eprintln!("list of {} pods, body only: {list_raw:.1} ms ({:.1} MB)", args.pods, list_bytes as f64 / 1e6);
    let list_typed = list_typed_phase(&clients[0], args.pods).await?;
    eprintln!("list of {} pods, decoded into Vec<Pod>: {list_typed:.1} ms", args.pods);

    let (fanout_p50, fanout_p99) =
        if args.watchers > 0 { watch_fanout_phase(&server.kubeconfig, args.watchers).await? } else { (0.0, 0.0) };
    eprintln!("watch fan-out to {}: p50 {fanout_p50:.2} ms, p99 {fanout_p99:.2} ms", args.watchers);
    eprintln!("RSS at the end: {:.1} MB", rss_mb()?);

    let figures = json!({
        "bench": "api",
        "creates_per_s": creates_per_s.round(),
        "create_p50_ms": round2(create_p50),
        "create_p99_ms": round2(create_p99),
        "get_p50_ms": round2(get_p50),
        "get_p99_ms": round2(get_p99),
        "list_10k_ms": round2(list_raw),
        "list_10k_typed_ms": round2(list_typed),
        "watch_fanout_p50_ms": round2(fanout_p50),
        "watch_fanout_p99_ms": round2(fanout_p99),
        "rss_mb_10k_pods": round2(rss_10k),
        "rss_mb_baseline": round2(baseline_mb),
        "pods": args.pods,
        "concurrency": args.concurrency,
        "watchers": args.watchers,
        "transport": "https http/1.1 (kube-rs)",
        "store": "sqlite",
    });
    Ok(figures.to_string())
}

/// A kube client from the server's admin kubeconfig; each has its own connection pool.
async fn connect(kubeconfig: &Path) -> Result<Client, String> {
    let file = Kubeconfig::read_from(kubeconfig).map_err(ctx("reading the kubeconfig"))?;
    let config =
        Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.map_err(ctx("kubeconfig"))?;
    Client::try_from(config).map_err(ctx("kube client"))
}

async fn create_namespace(client: &Client, name: &str) -> Result<(), String> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).map_err(ctx("namespace"))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.map_err(ctx("create namespace"))?;
    Ok(())
}

/// Opens the pools' connections (TLS handshakes) before anything is timed.
async fn warm_up(clients: &[Client], concurrency: usize) -> Result<(), String> {
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let api = Api::<Namespace>::all(clients[t % clients.len()].clone());
            tokio::spawn(async move { api.get(BENCH_NS).await.map(|_| ()).map_err(ctx("warm-up get")) })
        })
        .collect();
    join_all(tasks).await.map(|_| ())
}

/// Waits for every task; the first error wins.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<Result<T, String>>>) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.map_err(ctx("task"))??);
    }
    Ok(out)
}

fn pod_name(i: usize) -> String {
    format!("web-{i:06}")
}

/// A realistic small pod, about 1 KB of JSON: labels, one container with ports, env, resources
/// and a probe.
fn pod(name: &str, index: usize) -> Result<Pod, String> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "web", "tier": "frontend", "shard": (index % 16).to_string()},
            "annotations": {"bench.tugboat.dev/index": index.to_string()},
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.example.com/team/web-frontend:1.27.3",
                "args": ["--port=8080", "--metrics-port=9090", "--log-level=info"],
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                ],
                "env": [
                    {"name": "APP_ENV", "value": "production"},
                    {"name": "APP_REGION", "value": "eu-west-1"},
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    }))
    .map_err(ctx("pod"))
}

/// `concurrency` tasks create pods 0..pods between them; returns creates/s and each latency.
async fn create_phase(clients: &[Client], pods: usize, concurrency: usize) -> Result<(f64, Vec<Duration>), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let api = Api::<Pod>::namespaced(clients[t % clients.len()].clone(), BENCH_NS);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= pods {
                        return Ok(latencies);
                    }
                    let pod = pod(&pod_name(i), i)?;
                    let t = Instant::now();
                    api.create(&PostParams::default(), &pod).await.map_err(ctx("create pod"))?;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let latencies: Vec<Duration> = join_all(tasks).await?.into_iter().flatten().collect();
    Ok((pods as f64 / start.elapsed().as_secs_f64(), latencies))
}

/// `concurrency` tasks GET `gets` pods spread over 0..pods; returns each latency.
async fn get_phase(clients: &[Client], pods: usize, gets: usize, concurrency: usize) -> Result<Vec<Duration>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let api = Api::<Pod>::namespaced(clients[t % clients.len()].clone(), BENCH_NS);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= gets {
                        return Ok(latencies);
                    }
                    // A stride coprime with most sizes spreads the reads over the whole set.
                    let name = pod_name(i.wrapping_mul(7919) % pods);
                    let t = Instant::now();
                    api.get(&name).await.map_err(ctx("get pod"))?;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    Ok(join_all(tasks).await?.into_iter().flatten().collect())
}

/// Median time to receive the whole body of an unpaginated pod list, and its size.
async fn list_raw_phase(client: &Client, pods: usize) -> Result<(f64, usize), String> {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..LIST_RUNS {
        let request = http::Request::get(format!("/api/v1/namespaces/{BENCH_NS}/pods"))
            .header(http::header::ACCEPT, "application/json")
            .body(kube::client::Body::empty())
            .map_err(ctx("list request"))?;
        let t = Instant::now();
        let response = client.send(request).await.map_err(ctx("list"))?;
        let status = response.status();
        let body = response.into_body().collect_bytes().await.map_err(ctx("list body"))?;
        times.push(t.elapsed());
        if !status.is_success() {
            return Err(format!("list answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        // Counting items means decoding 10 MB of JSON: once is enough, then the size must match.
        if size == 0 {
            let items = count_items(&body)?;
            if items != pods {
                return Err(format!("listed {items} pods, expected {pods}"));
            }
            size = body.len();
        } else if body.len() != size {
            return Err(format!("list bodies differ in size: {} then {size} bytes", body.len()));
        }
    }
    Ok((percentile_ms(&mut times, 0.5), size))
}

fn count_items(list_body: &[u8]) -> Result<usize, String> {
    let list: Value = serde_json::from_slice(list_body).map_err(ctx("list body is not JSON"))?;
    list["items"].as_array().map(Vec::len).ok_or_else(|| "list body has no items".to_string())
}

/// Median time of `Api::<Pod>::list` with default parameters: request, body and decoding.
async fn list_typed_phase(client: &Client, pods: usize) -> Result<f64, String> {
    let api = Api::<Pod>::namespaced(client.clone(), BENCH_NS);
    let mut times = Vec::new();
    for _ in 0..LIST_RUNS {
        let t = Instant::now();
        let list = api.list(&ListParams::default()).await.map_err(ctx("typed list"))?;
        times.push(t.elapsed());
        if list.items.len() != pods {
            return Err(format!("listed {} pods, expected {pods}", list.items.len()));
        }
    }
    Ok(percentile_ms(&mut times, 0.5))
}

/// Opens `watchers` watches on WATCH_NS from the current revision, patches a label on the one pod
/// there, and returns the p50 and p99 of the time from just before the patch until each watcher
/// has read the event's line.
async fn watch_fanout_phase(kubeconfig: &Path, watchers: usize) -> Result<(f64, f64), String> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(kubeconfig).await?);
    }
    let pods = Api::<Pod>::namespaced(clients[0].clone(), WATCH_NS);
    let target = pods.create(&PostParams::default(), &pod("fanout-target", 0)?).await.map_err(ctx("create target"))?;
    let revision = target.metadata.resource_version.ok_or("created pod has no resourceVersion")?;

    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(watchers);
    let (received_tx, mut received_rx) = tokio::sync::mpsc::channel::<Result<Instant, String>>(watchers);
    // Watchers hold their connections until all have the event: a closing HTTP/1.1 watch costs
    // the server work that would otherwise be counted against the watchers still waiting.
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    for w in 0..watchers {
        let client = clients[w % clients.len()].clone();
        let (opened, received, mut release, revision) =
            (opened_tx.clone(), received_tx.clone(), release_rx.clone(), revision.clone());
        tokio::spawn(async move {
            let mut lines = match open_watch(&client, &revision).await {
                Ok(lines) => lines,
                Err(e) => {
                    let _ = opened.send(Err(e)).await;
                    return;
                }
            };
            let _ = opened.send(Ok(())).await;
            let _ = received.send(read_until_patched(&mut lines).await).await;
            let _ = release.wait_for(|released| *released).await;
        });
    }
    let opening = Instant::now();
    for _ in 0..watchers {
        opened_rx.recv().await.ok_or("a watcher vanished")??;
    }
    eprintln!("{watchers} watches open in {:.0} ms", opening.elapsed().as_secs_f64() * 1000.0);

    let patch = json!({"metadata": {"labels": {"fanout": "go"}}});
    let issued = Instant::now();
    pods.patch("fanout-target", &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(ctx("patch target"))?;
    let mut latencies = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let received = received_rx.recv().await.ok_or("a watcher vanished")??;
        latencies.push(received.saturating_duration_since(issued));
    }
    let _ = release_tx.send(true);
    Ok((percentile_ms(&mut latencies, 0.5), percentile_ms(&mut latencies, 0.99)))
}

/// A watch on WATCH_NS's pods from `revision`, as a stream of event lines.
async fn open_watch(client: &Client, revision: &str) -> Result<impl futures::AsyncBufRead + Unpin + use<>, String> {
    let request = http::Request::get(format!(
        "/api/v1/namespaces/{WATCH_NS}/pods?watch=1&resourceVersion={revision}&timeoutSeconds=300"
    ))
    .body(Vec::new())
    .map_err(ctx("watch request"))?;
    client.request_stream(request).await.map_err(ctx("open watch"))
}

/// Reads event lines until the patched pod's; returns when its line was read.
async fn read_until_patched(lines: &mut (impl futures::AsyncBufRead + Unpin)) -> Result<Instant, String> {
    let mut line = String::new();
    let read = async {
        loop {
            line.clear();
            if lines.read_line(&mut line).await.map_err(ctx("watch read"))? == 0 {
                return Err("watch ended before the patch arrived".to_string());
            }
            let received = Instant::now();
            if is_patched_event(&line) {
                return Ok(received);
            }
        }
    };
    tokio::time::timeout(WATCH_DEADLINE, read).await.map_err(|_| "watch event never arrived".to_string())?
}

/// Whether a watch line is the MODIFIED event carrying the `fanout=go` label.
fn is_patched_event(line: &str) -> bool {
    let Ok(event) = serde_json::from_str::<Value>(line) else { return false };
    event["type"] == "MODIFIED" && event["object"]["metadata"]["labels"]["fanout"] == "go"
}

/// CPU time this process has used (user and system), from /proc/self/stat.
fn cpu_seconds() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(ctx("reading /proc/self/stat"))?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / 100.0).ok_or_else(|| "unreadable /proc/self/stat".to_string())
}

/// utime + stime in clock ticks; /proc reports them in USER_HZ, which Linux fixes at 100.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// This process's resident memory in MB, from /proc/self/status.
fn rss_mb() -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(ctx("reading /proc/self/status"))?;
    parse_vm_rss_kb(&status).map(|kb| kb as f64 / 1024.0).ok_or_else(|| "no VmRSS in /proc/self/status".to_string())
}

fn parse_vm_rss_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kb() {
        let status = "Name:\ttug-bench\nVmHWM:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kb(status), Some(12345));
        assert_eq!(parse_vm_rss_kb("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_are_user_plus_system() {
        let stat = "4242 (tug (bench)) S 1 4242 4242 0 -1 4194304 1200 0 0 0 150 25 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn only_the_patched_modification_counts() {
        let cases = [
            (r#"{"type":"MODIFIED","object":{"metadata":{"labels":{"fanout":"go"}}}}"#, true),
            (r#"{"type":"MODIFIED","object":{"metadata":{"labels":{"app":"web"}}}}"#, false),
            (r#"{"type":"ADDED","object":{"metadata":{"labels":{"fanout":"go"}}}}"#, false),
            (r#"{"type":"BOOKMARK","object":{"metadata":{}}}"#, false),
            ("not json", false),
        ];
        for (line, want) in cases {
            assert_eq!(is_patched_event(line), want, "{line}");
        }
    }

    #[test]
    fn bench_pod_is_about_a_kilobyte() {
        let size = serde_json::to_vec(&pod(&pod_name(42), 42).expect("pod")).expect("json").len();
        assert!((700..=1400).contains(&size), "pod JSON is {size} bytes");
    }
}
