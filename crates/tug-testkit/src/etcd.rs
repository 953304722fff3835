//! A real etcd server for a test: its own temporary data directory, free loopback ports, stopped
//! by PID when dropped.

use crate::{free_port, wait_for};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The etcd binary: `$TUG_ETCD` or `etcd` on PATH (Debian's `etcd-server`).
pub fn etcd_binary() -> String {
    std::env::var("TUG_ETCD").unwrap_or_else(|_| "etcd".to_string())
}

/// A running etcd. Dropping it kills the process and removes its data.
#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it answers health checks.
    pub fn start() -> Etcd {
        let mut dir = tempfile::Builder::new().prefix("tugt-etcd-").tempdir().expect("temp dir");
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let mut etcd = Etcd { child: None, client_port: free_port(), peer_port: free_port(), dir };
            match etcd.spawn().and_then(|_| etcd.wait_healthy()) {
                Ok(()) => return etcd,
                Err(e) => {
                    last_err = e;
                    etcd.stop();
                    dir = take_dir(etcd);
                }
            }
        }
        panic!("etcd did not start: {last_err}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(etcd_binary())
            .arg("--name=tugt")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=tugt={peer}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot run {}: {e} (install Debian's etcd-server, or set TUG_ETCD)", etcd_binary())
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let port = self.client_port;
        let child = self.child.as_mut().expect("spawned");
        let log = self.dir.path().join("etcd.log");
        wait_for("etcd /health", Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Ok(Err(format!("etcd exited with {status}: {}", last_lines(&tail, 10))));
            }
            health(port).map(Ok)
        })?
    }

    /// `127.0.0.1:PORT`, for an `etcd://` datastore spec.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host_port())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last lines etcd logged, for failure messages.
    pub fn log_tail(&self) -> String {
        last_lines(&std::fs::read_to_string(self.log_path()).unwrap_or_default(), 20)
    }

    /// Kills etcd (SIGKILL) and waits for it to exit; its data stays for [`Etcd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data (after [`Etcd::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("etcd restart");
        if let Err(e) = self.wait_healthy() {
            panic!("etcd did not come back: {e}");
        }
    }
}

// Moves the temp dir out of an Etcd that failed to start, so the next attempt reuses it.
fn take_dir(mut etcd: Etcd) -> tempfile::TempDir {
    etcd.stop();
    let placeholder = tempfile::tempdir().expect("temp dir");
    std::mem::replace(&mut etcd.dir, placeholder)
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn health(port: u16) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    if body.contains("\"health\":\"true\"") { Ok(()) } else { Err(last_lines(&body, 3)) }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
