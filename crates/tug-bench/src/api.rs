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
//! Transport: HTTPS with HTTP/2 (ALPN `h2`), as kubectl and client-go use it (see
//! [`crate::h2client`]). The `--concurrency` tasks share `--connections` h2 connections
//! round-robin, each connection multiplexing their requests as streams; the watchers share
//! `--watch-connections` further connections (1,000 watches over 4 is 250 streams each, well
//! under the server's 1,000 streams per connection), as informers of several clients would.
//! Only list_10k_typed_ms still goes through kube-rs, which speaks HTTP/1.1 (no ALPN).

use crate::ctx;
use crate::h2client::{H2Client, Target};
use crate::{percentile_ms, round2};
use bytes::Bytes;
use clap::Args;
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
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
    /// HTTP/2 connections the create, get and list requests share. 1, 4 and 8 measured alike
    /// (creates are CPU-bound here); 4 varied least between runs and keeps both runtime workers
    /// busy with connection I/O.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// GETs in the get phase.
    #[arg(long, default_value_t = 2_000)]
    gets: usize,
    /// Watches opened for the fan-out phase.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// HTTP/2 connections the watches share.
    #[arg(long, default_value_t = 4)]
    watch_connections: usize,
    /// Where the server's data directory goes (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// An in-process API server on a fresh SQLite file in a temporary directory (under `dir` if
/// given); the directory lives as long as the returned guard.
pub async fn start_server(prefix: &str, dir: Option<PathBuf>) -> Result<(tempfile::TempDir, RunningServer), String> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir.unwrap_or_else(std::env::temp_dir))
        .map_err(ctx("temporary directory"))?;
    let data_dir = dir.path().to_path_buf();
    let server =
        tug_apiserver::server::start(ServerConfig::local(&data_dir)).await.map_err(ctx("starting the API server"))?;
    Ok((dir, server))
}

pub async fn run(args: ApiArgs) -> Result<String, String> {
    if args.pods == 0 || args.concurrency == 0 || args.connections == 0 || args.watch_connections == 0 {
        return Err("--pods, --concurrency, --connections and --watch-connections must be at least 1".into());
    }
    let baseline_mb = rss_mb()?;
    let (_dir, server) = start_server("tug-bench-api-", args.dir.clone()).await?;
    eprintln!("server at {} (RSS before start {baseline_mb:.1} MB)", server.url);
    let result = measure(&server, &args, baseline_mb).await;
    server.stop().await;
    result
}

async fn measure(server: &RunningServer, args: &ApiArgs, baseline_mb: f64) -> Result<String, String> {
    let target = Target {
        url: server.url.clone(),
        ca_pem: server.pki.ca_cert_pem.clone(),
        token: server.pki.admin_token.clone(),
    };
    let client = Arc::new(H2Client::connect(&target, args.connections).await?);
    for ns in [BENCH_NS, WATCH_NS] {
        create_namespace(&client, ns).await?;
    }
    warm_up(&client, args.concurrency).await?;

    let cpu_before = cpu_seconds()?;
    let (creates_per_s, mut create_lat) = create_phase(&client, args.pods, args.concurrency).await?;
    let create_cpu_us = (cpu_seconds()? - cpu_before) * 1e6 / args.pods as f64;
    let (create_p50, create_p99) = (percentile_ms(&mut create_lat, 0.5), percentile_ms(&mut create_lat, 0.99));
    eprintln!(
        "{} creates, {} concurrent over {} h2 connections: {creates_per_s:.0}/s, p50 {create_p50:.2} ms, \
         p99 {create_p99:.2} ms; CPU {create_cpu_us:.0} µs per create (server and client), {:.0}% of the cores",
        args.pods,
        args.concurrency,
        client.connections(),
        create_cpu_us * creates_per_s / 1e6 / cores() * 100.0
    );
    let rss_10k = rss_mb()?;
    eprintln!("RSS with {} pods stored: {rss_10k:.1} MB (baseline {baseline_mb:.1} MB)", args.pods);

    let mut get_lat = get_phase(&client, args.pods, args.gets, args.concurrency).await?;
    let (get_p50, get_p99) = (percentile_ms(&mut get_lat, 0.5), percentile_ms(&mut get_lat, 0.99));
    eprintln!("{} gets, {} concurrent: p50 {get_p50:.2} ms, p99 {get_p99:.2} ms", args.gets, args.concurrency);
    let mut serial_get_lat = get_phase(&client, args.pods, args.gets.min(500), 1).await?;
    eprintln!("gets one at a time: p99 {:.2} ms", percentile_ms(&mut serial_get_lat, 0.99));

    let (list_raw, list_bytes) = list_raw_phase(&client, args.pods).await?;
    eprintln!("list of {} pods, body only: {list_raw:.1} ms ({:.1} MB)", args.pods, list_bytes as f64 / 1e6);
    let list_typed = list_typed_phase(&server.kubeconfig, args.pods).await?;
    eprintln!("list of {} pods, decoded into Vec<Pod> by kube-rs over HTTP/1.1: {list_typed:.1} ms", args.pods);

    let (fanout_p50, fanout_p99) = if args.watchers > 0 {
        watch_fanout_phase(&client, &target, args.watchers, args.watch_connections).await?
    } else {
        (0.0, 0.0)
    };
    eprintln!(
        "watch fan-out to {} over {} h2 connections: p50 {fanout_p50:.2} ms, p99 {fanout_p99:.2} ms",
        args.watchers, args.watch_connections
    );
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
        "connections": args.connections,
        "watchers": args.watchers,
        "watch_connections": args.watch_connections,
        "transport": "h2",
        "list_10k_typed_transport": "http/1.1 (kube-rs)",
        "store": "sqlite",
    });
    Ok(figures.to_string())
}

/// The body of a response with the `want` status, else an error carrying the answer.
pub(crate) fn expect_status(
    what: &str,
    (status, body): (StatusCode, Bytes),
    want: StatusCode,
) -> Result<Bytes, String> {
    if status == want { Ok(body) } else { Err(format!("{what} answered {status}: {}", String::from_utf8_lossy(&body))) }
}

async fn create_namespace(client: &H2Client, name: &str) -> Result<(), String> {
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .map_err(ctx("namespace JSON"))?;
    let answer = client.send(Method::POST, "/api/v1/namespaces", body.into(), Some("application/json")).await?;
    expect_status("create namespace", answer, StatusCode::CREATED).map(|_| ())
}

/// Sends a first request on every connection before anything is timed.
async fn warm_up(client: &Arc<H2Client>, concurrency: usize) -> Result<(), String> {
    let tasks: Vec<_> = (0..concurrency.max(client.connections()))
        .map(|_| {
            let client = Arc::clone(client);
            tokio::spawn(async move {
                let path = format!("/api/v1/namespaces/{BENCH_NS}");
                let answer = client.send(Method::GET, &path, Bytes::new(), None).await?;
                expect_status("warm-up get", answer, StatusCode::OK).map(|_| ())
            })
        })
        .collect();
    join_all(tasks).await.map(|_| ())
}

/// Waits for every task; the first error wins.
pub(crate) async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<Result<T, String>>>) -> Result<Vec<T>, String> {
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

/// `concurrency` tasks create pods 0..pods between them; returns creates/s and each latency
/// (the request alone: the pod's JSON is encoded before the clock starts).
async fn create_phase(client: &Arc<H2Client>, pods: usize, concurrency: usize) -> Result<(f64, Vec<Duration>), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let path = format!("/api/v1/namespaces/{BENCH_NS}/pods");
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, path) = (Arc::clone(client), Arc::clone(&next), path.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= pods {
                        return Ok(latencies);
                    }
                    let body = serde_json::to_vec(&pod(&pod_name(i), i)?).map_err(ctx("pod JSON"))?;
                    let t = Instant::now();
                    let answer = client.send(Method::POST, &path, body.into(), Some("application/json")).await?;
                    latencies.push(t.elapsed());
                    expect_status("create pod", answer, StatusCode::CREATED)?;
                }
            })
        })
        .collect();
    let latencies: Vec<Duration> = join_all(tasks).await?.into_iter().flatten().collect();
    Ok((pods as f64 / start.elapsed().as_secs_f64(), latencies))
}

/// `concurrency` tasks GET `gets` pods spread over 0..pods; returns each latency.
async fn get_phase(
    client: &Arc<H2Client>,
    pods: usize,
    gets: usize,
    concurrency: usize,
) -> Result<Vec<Duration>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next) = (Arc::clone(client), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= gets {
                        return Ok(latencies);
                    }
                    // A stride coprime with most sizes spreads the reads over the whole set.
                    let path = format!("/api/v1/namespaces/{BENCH_NS}/pods/{}", pod_name(i.wrapping_mul(7919) % pods));
                    let t = Instant::now();
                    let answer = client.send(Method::GET, &path, Bytes::new(), None).await?;
                    latencies.push(t.elapsed());
                    expect_status("get pod", answer, StatusCode::OK)?;
                }
            })
        })
        .collect();
    Ok(join_all(tasks).await?.into_iter().flatten().collect())
}

/// Median time to receive the whole body of an unpaginated pod list, and its size.
async fn list_raw_phase(client: &H2Client, pods: usize) -> Result<(f64, usize), String> {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..LIST_RUNS {
        let t = Instant::now();
        let answer =
            client.send(Method::GET, &format!("/api/v1/namespaces/{BENCH_NS}/pods"), Bytes::new(), None).await?;
        times.push(t.elapsed());
        let body = expect_status("list", answer, StatusCode::OK)?;
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

/// A kube-rs client from the server's admin kubeconfig.
async fn kube_client(kubeconfig: &Path) -> Result<Client, String> {
    let file = Kubeconfig::read_from(kubeconfig).map_err(ctx("reading the kubeconfig"))?;
    let config =
        Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.map_err(ctx("kubeconfig"))?;
    Client::try_from(config).map_err(ctx("kube client"))
}

/// Median time of kube-rs `Api::<Pod>::list` with default parameters: request, body and
/// decoding into `Vec<Pod>`, over kube-rs' own HTTP/1.1 transport.
async fn list_typed_phase(kubeconfig: &Path, pods: usize) -> Result<f64, String> {
    let api = Api::<Pod>::namespaced(kube_client(kubeconfig).await?, BENCH_NS);
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

/// Opens `watchers` watches on WATCH_NS from the current revision, spread over
/// `watch_connections` h2 connections of their own; patches a label on the one pod there
/// through `client`, and returns the p50 and p99 of the time from just before the patch until
/// each watcher has read the event's line.
async fn watch_fanout_phase(
    client: &H2Client,
    target: &Target,
    watchers: usize,
    watch_connections: usize,
) -> Result<(f64, f64), String> {
    let watch_client = Arc::new(H2Client::connect(target, watch_connections).await?);
    let pods_path = format!("/api/v1/namespaces/{WATCH_NS}/pods");
    let body = serde_json::to_vec(&pod("fanout-target", 0)?).map_err(ctx("pod JSON"))?;
    let answer = client.send(Method::POST, &pods_path, body.into(), Some("application/json")).await?;
    let created = expect_status("create target", answer, StatusCode::CREATED)?;
    let revision = resource_version(&created)?;
    let watch_path = format!("{pods_path}?watch=1&resourceVersion={revision}&timeoutSeconds=300");

    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(watchers);
    let (received_tx, mut received_rx) = tokio::sync::mpsc::channel::<Result<Instant, String>>(watchers);
    // Watchers hold their streams until all have the event, so no stream's teardown is counted
    // against the watchers still waiting.
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    for _ in 0..watchers {
        let (client, path) = (Arc::clone(&watch_client), watch_path.clone());
        let (opened, received, mut release) = (opened_tx.clone(), received_tx.clone(), release_rx.clone());
        tokio::spawn(async move {
            let mut lines = match client.stream_lines(&path).await {
                Ok(lines) => lines,
                Err(e) => {
                    let _ = opened.send(Err(format!("open watch: {e}"))).await;
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

    let patch = Bytes::from_static(br#"{"metadata":{"labels":{"fanout":"go"}}}"#);
    let issued = Instant::now();
    let answer = client
        .send(Method::PATCH, &format!("{pods_path}/fanout-target"), patch, Some("application/merge-patch+json"))
        .await?;
    expect_status("patch target", answer, StatusCode::OK)?;
    let mut latencies = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let received = received_rx.recv().await.ok_or("a watcher vanished")??;
        latencies.push(received.saturating_duration_since(issued));
    }
    let _ = release_tx.send(true);
    Ok((percentile_ms(&mut latencies, 0.5), percentile_ms(&mut latencies, 0.99)))
}

/// `metadata.resourceVersion` of an object's JSON.
fn resource_version(object: &[u8]) -> Result<String, String> {
    let object: Value = serde_json::from_slice(object).map_err(ctx("object is not JSON"))?;
    object["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "object has no metadata.resourceVersion".to_string())
}

/// Reads event lines until the patched pod's; returns when its line was read.
async fn read_until_patched(lines: &mut crate::h2client::Lines) -> Result<Instant, String> {
    let read = async {
        loop {
            let Some(line) = lines.next_line().await.map_err(ctx("watch read"))? else {
                return Err("watch ended before the patch arrived".to_string());
            };
            let received = Instant::now();
            if is_patched_event(&line) {
                return Ok(received);
            }
        }
    };
    tokio::time::timeout(WATCH_DEADLINE, read).await.map_err(|_| "watch event never arrived".to_string())?
}

/// Whether a watch line is the MODIFIED event carrying the `fanout=go` label.
fn is_patched_event(line: &[u8]) -> bool {
    let Ok(event) = serde_json::from_slice::<Value>(line) else { return false };
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

pub(crate) fn parse_vm_rss_kb(status: &str) -> Option<u64> {
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
            assert_eq!(is_patched_event(line.as_bytes()), want, "{line}");
        }
    }

    #[test]
    fn bench_pod_is_about_a_kilobyte() {
        let size = serde_json::to_vec(&pod(&pod_name(42), 42).expect("pod")).expect("json").len();
        assert!((700..=1400).contains(&size), "pod JSON is {size} bytes");
    }
}
