//! A `tug server` child process for tests that drive it from outside (kubectl, client
//! libraries): a temporary data dir, a free port, killed by PID when dropped (also on panic).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for};

/// How long the server may take to listen after it was started.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(20);
/// How long a stop on SIGTERM may take (the agent stops its containerd).
const STOP_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct TugServer {
    /// `None` only between a stop and the next start.
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    data_dir: tempfile::TempDir,
    port: u16,
}

impl TugServer {
    /// Starts `binary server --disable-agent` (the control plane only: tests bring hollow nodes
    /// or agents of their own) and waits until it listens.
    pub fn start(binary: &Path) -> TugServer {
        Self::start_with(binary, &["--disable-agent"])
    }

    /// Starts `binary server ARGS...` and waits for its kubeconfig and a TCP connect
    /// (connections made before bootstrap ends wait in the listen backlog). Retries on another
    /// port if the free port was taken in the meantime.
    pub fn start_with(binary: &Path, args: &[&str]) -> TugServer {
        Self::start_in(binary, tempfile::tempdir().expect("temporary data dir"), args)
    }

    /// As [`TugServer::start_with`], in a data dir the test prepared (images to import, say).
    pub fn start_in(binary: &Path, data_dir: tempfile::TempDir, args: &[&str]) -> TugServer {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut server = TugServer { child: None, binary: binary.to_path_buf(), args, data_dir, port: 0 };
        for _ in 0..3 {
            server.port = free_port();
            server.spawn();
            match server.wait_until_listening() {
                Ok(()) => return server,
                Err(_) if server.log().contains("Address already in use") => continue,
                Err(seen) => panic!("tug server did not start: {seen}\n--- server log\n{}", server.log()),
            }
        }
        panic!("tug server could not bind a free port in 3 attempts");
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))
            .expect("server log file");
        let child = Command::new(&self.binary)
            .args(["server", "--data-dir"])
            .arg(self.data_dir.path())
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tug server");
        self.child = Some(child);
    }

    /// Stops the server with SIGTERM and waits for it to exit (SIGKILL after a deadline).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let stopped = wait_for("tug server to exit", STOP_DEADLINE, || match child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err("still running".to_string()),
        });
        if stopped.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (as an operator would), waits for it to exit, and starts
    /// it again on the same data dir and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        if let Err(seen) = self.wait_until_listening() {
            panic!("tug server did not start again: {seen}\n--- server log\n{}", self.log());
        }
    }

    /// As [`TugServer::restart`], with `args` in place of the arguments given so far.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.restart();
    }

    /// Runs `binary server ARGS...` once more on this (stopped) server's data dir and port, for a
    /// start that is expected to fail: its exit code (`None` if it was still running after
    /// [`STARTUP_DEADLINE`] and had to be killed) and what it printed.
    pub fn run_once(&self, args: &[&str]) -> (Option<i32>, String) {
        let log_path = self.data_dir.path().join("run-once.log");
        let log = std::fs::File::create(&log_path).expect("run-once log file");
        let mut child = Command::new(&self.binary)
            .args(["server", "--data-dir"])
            .arg(self.data_dir.path())
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tug server");
        let mut code = None;
        let exited = wait_for("tug server to exit", STARTUP_DEADLINE, || match child.try_wait() {
            Ok(Some(status)) => {
                code = status.code();
                Ok(())
            }
            _ => Err("still running".to_string()),
        });
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        (code, std::fs::read_to_string(&log_path).unwrap_or_default())
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        let mut exited = None;
        let kubeconfig = self.kubeconfig();
        let port = self.port;
        let result = wait_for("the kubeconfig and a TCP connect", STARTUP_DEADLINE, || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(status);
                return Ok(());
            }
            if !kubeconfig.exists() {
                return Err(format!("no {}", kubeconfig.display()));
            }
            TcpStream::connect(("127.0.0.1", port)).map(drop).map_err(|e| format!("connect to port {port}: {e}"))
        });
        match exited {
            Some(status) => Err(format!("tug server exited early with {status}")),
            None => result,
        }
    }

    /// Whether the process has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits (with a deadline) for the process to exit on its own.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        let _ = wait_for("tug server to exit", deadline, || match self.exited() {
            Some(s) => {
                status = Some(s);
                Ok(())
            }
            None => Err("still running".to_string()),
        });
        status
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig.yaml")
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for TugServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
