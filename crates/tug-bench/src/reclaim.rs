//! `store-reclaim`: does the datastore give space back, and the server its memory?
//!
//! Starts a real `tug server` (a child process, SQLite store, no agent), creates ConfigMaps
//! through the API over HTTP/2, deletes them all, and then watches for `--observe-secs`: the
//! database file, its WAL, the free pages in it and the server's resident memory, sampled every
//! `--sample-secs`. Compaction drops history older than 5 minutes, so the space of the deletes
//! can only come back after that; the default observation covers it.
//!
//! Figures (sizes in MB): for each sample `t_s` (seconds since the deletes finished), `db_mb`,
//! `wal_mb`, `free_pct` (free pages of the main file, from its header: as of the last
//! checkpoint) and `rss_mb` (the server's VmRSS); plus the same at start, after the creates
//! (`full`) and at the end.

use crate::api::{expect_status, join_all, parse_vm_rss_kb};
use crate::h2client::{H2Client, Target};
use crate::{ctx, round2};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct ReclaimArgs {
    /// The `tug` binary to run as the server; default: `tug` beside this benchmark's binary.
    #[arg(long)]
    tug: Option<PathBuf>,
    /// ConfigMaps created, then deleted.
    #[arg(long, default_value_t = 20_000)]
    configmaps: usize,
    /// Bytes of data in each ConfigMap.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to watch after the deletes (compaction waits 5 minutes for history to age).
    #[arg(long, default_value_t = 480)]
    observe_secs: u64,
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
}

const NS: &str = "default";
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// The server process; killed by PID when dropped (also on error).
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(tug: &Path, dir: &Path) -> Result<Server, String> {
        let log = std::fs::File::create(dir.join("server.log")).map_err(ctx("server log"))?;
        let child = Command::new(tug)
            .args(["server", "--disable-agent", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("starting {}: {e} (build it with `cargo build --release -p tug`, or pass --tug)", tug.display())
            })?;
        Ok(Server { child, dir: dir.to_path_buf() })
    }

    /// The API's URL, once the server has written its kubeconfig.
    async fn wait_for_url(&mut self) -> Result<String, String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("tug server exited with {status}: {}", self.log_tail()));
            }
            let kubeconfig = std::fs::read_to_string(self.dir.join("kubeconfig.yaml")).unwrap_or_default();
            if let Some(url) = kubeconfig.lines().find_map(|l| l.trim().strip_prefix("server: ")) {
                return Ok(url.trim().to_string());
            }
            if start.elapsed() > STARTUP_DEADLINE {
                return Err(format!("tug server wrote no kubeconfig in {STARTUP_DEADLINE:?}: {}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// One observation of the datastore and the server.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t_s: f64,
    db_mb: f64,
    wal_mb: f64,
    free_pct: f64,
    rss_mb: f64,
}

impl Sample {
    fn take(dir: &Path, pid: u32, since: Instant) -> Sample {
        let mb = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
        let db = dir.join("state.db");
        let mut header = [0u8; 100];
        let read = std::fs::File::open(&db).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
        let free_pct = read.ok().and_then(|()| free_fraction(&header)).map_or(0.0, |f| f * 100.0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Sample {
            t_s: round2(since.elapsed().as_secs_f64()),
            db_mb: round2(mb(&db)),
            wal_mb: round2(mb(&dir.join("state.db-wal"))),
            free_pct: round2(free_pct),
            rss_mb: round2(parse_vm_rss_kb(&status).unwrap_or(0) as f64 / 1024.0),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({"t_s": self.t_s, "db_mb": self.db_mb, "wal_mb": self.wal_mb, "free_pct": self.free_pct, "rss_mb": self.rss_mb})
    }
}

/// The share of free pages from a SQLite header (page count at byte 28, free-list count at 36).
fn free_fraction(header: &[u8]) -> Option<f64> {
    let be32 = |at: usize| header.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64);
    let (pages, free) = (be32(28)?, be32(36)?);
    (pages > 0.0).then(|| free / pages)
}

/// `concurrency` tasks send one request each for 0..count between them.
async fn for_each(
    client: &Arc<H2Client>,
    count: usize,
    concurrency: usize,
    request: impl Fn(usize) -> (Method, String, Bytes) + Send + Sync + 'static,
    want: StatusCode,
) -> Result<f64, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, next, request) = (Arc::clone(client), Arc::clone(&next), Arc::clone(&request));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok(());
                    }
                    let (method, path, body) = request(i);
                    let content_type = (!body.is_empty()).then_some("application/json");
                    let answer = client.send(method.clone(), &path, body, content_type).await?;
                    expect_status(&format!("{method} {path}"), answer, want)?;
                }
            })
        })
        .collect();
    join_all(tasks).await?;
    Ok(round2(start.elapsed().as_secs_f64()))
}

pub async fn run(args: ReclaimArgs) -> Result<String, String> {
    let tug = match &args.tug {
        Some(t) => t.clone(),
        None => std::env::current_exe().map_err(ctx("this binary's path"))?.with_file_name("tug"),
    };
    let dir = tempfile::Builder::new().prefix("tug-bench-reclaim-").tempdir().map_err(ctx("temp dir"))?;
    let mut server = Server::start(&tug, dir.path())?;
    let url = server.wait_for_url().await?;
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).map_err(|e| format!("reading {p}: {e}"));
    let target = Target { url, ca_pem: read("tls/ca.crt")?, token: read("tokens/admin")?.trim().to_string() };
    let client = Arc::new(H2Client::connect(&target, 4).await?);
    let pid = server.child.id();
    let t0 = Instant::now();
    let start = Sample::take(dir.path(), pid, t0);
    eprintln!("server {} (pid {pid}) started: {start:?}", tug.display());

    let payload: String = "x".repeat(args.size);
    let create_s = for_each(
        &client,
        args.configmaps,
        args.concurrency,
        move |i| {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:06}")}, "data": {"d": payload}});
            (Method::POST, format!("/api/v1/namespaces/{NS}/configmaps"), Bytes::from(body.to_string()))
        },
        StatusCode::CREATED,
    )
    .await?;
    let full = Sample::take(dir.path(), pid, t0);
    eprintln!("{} ConfigMaps created in {create_s} s: {full:?}", args.configmaps);
    let delete_s = for_each(
        &client,
        args.configmaps,
        args.concurrency,
        |i| (Method::DELETE, format!("/api/v1/namespaces/{NS}/configmaps/cm-{i:06}"), Bytes::new()),
        StatusCode::OK,
    )
    .await?;
    let deleted_at = Instant::now();
    let deleted = Sample::take(dir.path(), pid, deleted_at);
    eprintln!("deleted in {delete_s} s: {deleted:?}");

    let mut samples = vec![deleted];
    let every = Duration::from_secs(args.sample_secs.max(1));
    while deleted_at.elapsed() < Duration::from_secs(args.observe_secs) {
        tokio::time::sleep(every).await;
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("tug server exited with {status}: {}", server.log_tail()));
        }
        let s = Sample::take(dir.path(), pid, deleted_at);
        eprintln!("{s:?}");
        samples.push(s);
    }
    // Still serving: one more request answers.
    let (status, _) = client.send(Method::GET, "/readyz", Bytes::new(), None).await?;
    let end = *samples.last().expect("at least the sample after the deletes");
    server.stop();
    let figures = json!({
        "bench": "store-reclaim",
        "configmaps": args.configmaps,
        "size_bytes": args.size,
        "create_s": create_s,
        "delete_s": delete_s,
        "start": start.json(),
        "full": full.json(),
        "end": end.json(),
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
        "readyz_at_end": status.as_u16(),
    });
    Ok(figures.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_pages_are_read_from_the_sqlite_header() {
        let mut header = vec![0u8; 100];
        header[28..32].copy_from_slice(&1000u32.to_be_bytes());
        header[36..40].copy_from_slice(&250u32.to_be_bytes());
        assert_eq!(free_fraction(&header), Some(0.25));
        assert_eq!(free_fraction(&[0u8; 100]), None, "an empty database has no pages");
        assert_eq!(free_fraction(&[0u8; 10]), None, "a short file has no header");
    }
}
