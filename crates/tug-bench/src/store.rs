//! `store --backend sqlite|etcd`: the figures issue 2 asks for.
//!
//! - writes_per_s_1 / writes_per_s_64: durable creates per second with 1 and 64 concurrent
//!   writers (each acknowledged only once on disk);
//! - write_p50_ms / write_p99_ms: latency of those writes under 64 writers;
//! - watch_p99_ms: from a write being issued until a watcher of its prefix receives it, with 8
//!   writers running;
//! - list_100k_ms: one list of 100,000 keys of 1 KiB (median of 3).

use crate::{percentile_ms, round2};
use clap::Args;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tug_store::etcd::{EtcdOptions, EtcdStore};
use tug_store::sqlite::{SqliteOptions, SqliteStore};
use tug_store::{CompactionPolicy, ListOptions, Store};

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// `sqlite` (a file in a temporary directory) or `etcd` (a fresh local etcd).
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Seconds each write phase runs.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Keys in the list phase.
    #[arg(long, default_value_t = 100_000)]
    list_keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Where the SQLite file goes (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

pub async fn run(args: StoreArgs) -> Result<String, String> {
    let dir = tempfile::Builder::new()
        .prefix("tug-bench-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(|e| e.to_string())?;
    let mut _etcd = None;
    let store: Arc<dyn Store> = match args.backend.as_str() {
        "sqlite" => {
            let options = SqliteOptions { compaction: CompactionPolicy::manual(), ..Default::default() };
            Arc::new(SqliteStore::open(&dir.path().join("state.db"), options).await.map_err(|e| e.to_string())?)
        }
        "etcd" => {
            let etcd = tokio::task::spawn_blocking(tug_testkit::Etcd::start).await.map_err(|e| e.to_string())?;
            let options = EtcdOptions { compaction: CompactionPolicy::manual(), ..Default::default() };
            let s = EtcdStore::connect(&[etcd.endpoint()], "/bench", options).await.map_err(|e| e.to_string())?;
            _etcd = Some(etcd);
            Arc::new(s)
        }
        other => return Err(format!("unknown backend {other:?}: use sqlite or etcd")),
    };
    let value = vec![b'x'; args.value_size];
    let phase = Duration::from_secs_f64(args.seconds);

    let (w1, _) = write_phase(&store, "/w1/", 1, phase, &value).await?;
    eprintln!("1 writer: {:.0} writes/s", w1);
    let (w64, mut lat) = write_phase(&store, "/w64/", 64, phase, &value).await?;
    let (p50, p99) = (percentile_ms(&mut lat, 0.5), percentile_ms(&mut lat, 0.99));
    eprintln!("64 writers: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms", w64, p50, p99);
    let watch_p99 = watch_phase(&store, 8, phase, &value).await?;
    eprintln!("watch delivery p99 {:.2} ms", watch_p99);
    let list_ms = list_phase(&store, args.list_keys, &value).await?;
    eprintln!("list of {} keys: {:.1} ms", args.list_keys, list_ms);

    let figures = serde_json::json!({
        "bench": "store",
        "backend": args.backend,
        "writes_per_s_1": w1.round(),
        "writes_per_s_64": w64.round(),
        "write_p50_ms": round2(p50),
        "write_p99_ms": round2(p99),
        "watch_p99_ms": round2(watch_p99),
        "list_100k_ms": round2(list_ms),
        "list_keys": args.list_keys,
        "value_bytes": args.value_size,
    });
    Ok(figures.to_string())
}

/// `writers` tasks create keys for `phase`; returns writes/s and every write's latency.
async fn write_phase(
    store: &Arc<dyn Store>,
    prefix: &str,
    writers: usize,
    phase: Duration,
    value: &[u8],
) -> Result<(f64, Vec<Duration>), String> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = Arc::clone(store);
        let value = value.to_vec();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while start.elapsed() < phase {
                let t = Instant::now();
                store.create(&format!("{prefix}{w}/{i}"), value.clone(), None).await.map_err(|e| e.to_string())?;
                latencies.push(t.elapsed());
                i += 1;
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    Ok((rate, all))
}

/// Writers record when each write was issued; a watcher, running alongside, measures when it
/// arrives. A final marker key tells the watcher the writers are done.
async fn watch_phase(store: &Arc<dyn Store>, writers: usize, phase: Duration, value: &[u8]) -> Result<f64, String> {
    const END: &str = "/watch/end";
    let issued: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let from = store.current_revision().await.map_err(|e| e.to_string())?;
    let mut watch = store.watch("/watch/", from).await.map_err(|e| e.to_string())?;
    let watcher = {
        let issued = Arc::clone(&issued);
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let event = tokio::time::timeout(Duration::from_secs(30), watch.recv())
                    .await
                    .map_err(|_| format!("watch stalled after {} events", latencies.len()))?
                    .ok_or("watch ended")?
                    .map_err(|e| e.to_string())?;
                let received = Instant::now();
                if event.kv.key == END {
                    return Ok::<_, String>(latencies);
                }
                if let Some(at) = issued.lock().unwrap_or_else(|p| p.into_inner()).get(&event.kv.key) {
                    latencies.push(received.saturating_duration_since(*at));
                }
            }
        })
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, issued, value) = (Arc::clone(store), Arc::clone(&issued), value.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while start.elapsed() < phase {
                let key = format!("/watch/{w}/{n}");
                issued.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), Instant::now());
                store.create(&key, value.clone(), None).await.map_err(|e| e.to_string())?;
                n += 1;
            }
            Ok::<_, String>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    store.create(END, Vec::new(), None).await.map_err(|e| e.to_string())?;
    let mut latencies = watcher.await.map_err(|e| e.to_string())??;
    if latencies.len() != total {
        return Err(format!("watcher saw {} of {total} writes", latencies.len()));
    }
    Ok(percentile_ms(&mut latencies, 0.99))
}

/// Loads `keys` values, then times full lists of them (median of 3).
async fn list_phase(store: &Arc<dyn Store>, keys: usize, value: &[u8]) -> Result<f64, String> {
    let writers = 64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, value) = (Arc::clone(store), value.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < keys {
                store.create(&format!("/list/{i:08}"), value.clone(), None).await.map_err(|e| e.to_string())?;
                i += writers;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let listed = store.list("/list/", ListOptions::default()).await.map_err(|e| e.to_string())?;
        times.push(t.elapsed());
        if listed.items.len() != keys {
            return Err(format!("listed {} keys, expected {keys}", listed.items.len()));
        }
    }
    Ok(percentile_ms(&mut times, 0.5))
}
