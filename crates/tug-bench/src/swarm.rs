//! Docker swarm as the yardstick for `containers --vs-swarm`: a dockerd of the benchmark's own
//! (own socket, data and exec roots), the demo image loaded into it with skopeo, a one-node
//! swarm, and the time `docker service create` takes to converge on the replica count (it
//! returns once every task runs). dockerd runs in a network namespace of its own, so its
//! bridges and iptables chains never touch the host's (or Tugboat's pod network), and
//! everything is torn down afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ctx;

/// A dockerd child in its own network namespace; stopped (SIGTERM, then SIGKILL), its mounts
/// released and its namespace deleted when dropped.
struct Dockerd {
    child: Child,
    root: PathBuf,
    host: String,
    netns: String,
}

impl Dockerd {
    fn start(root: &Path) -> Result<Dockerd, String> {
        let socket = root.join("docker.sock");
        let host = format!("unix://{}", socket.display());
        let log = std::fs::File::create(root.join("dockerd.log")).map_err(ctx("dockerd's log"))?;
        let netns = format!("tugbench-swarm-{}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &netns]))?;
        run_ok(Command::new("ip").args(["netns", "exec", &netns, "ip", "link", "set", "lo", "up"]))?;
        // nsenter, not `ip netns exec`: that also remounts /sys, hiding the cgroup mounts
        // dockerd needs. nsenter execs dockerd, so the child's pid is dockerd's.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("dockerd")
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .args(["-H", &host])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting dockerd ({e}); install Debian's docker.io for --vs-swarm"))?;
        let dockerd = Dockerd { child, root: root.to_path_buf(), host, netns };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dockerd.docker(&["info"]).is_ok_and(|o| o.status.success()) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(root.join("dockerd.log")).unwrap_or_default();
                return Err(format!("dockerd did not answer within 60 s:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(dockerd)
    }

    fn docker(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("docker").args(["-H", &self.host]).args(args).stdin(Stdio::null()).output()
    }

    fn ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.docker(args).map_err(ctx("running docker"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.docker(&["service", "rm", "tugbench"]);
        let _ = self.docker(&["swarm", "leave", "--force"]);
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).output();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::unmount_under(&self.root);
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

/// Runs a setup command; its stderr is the error.
fn run_ok(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("running {command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Seconds from `docker service create` of `replicas` tasks of `image` until all run.
pub fn run(image: &str, replicas: i32, dir: &Option<PathBuf>) -> Result<f64, String> {
    let root = tempfile::Builder::new()
        .prefix("tug-bench-swarm-")
        .tempdir_in(dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(ctx("temporary directory"))?;
    let images = root.path().join("images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images");
    let built = Command::new(&script).arg(&images).output().map_err(ctx("running scripts/demo-images"))?;
    if !built.status.success() {
        return Err(format!("scripts/demo-images: {}", String::from_utf8_lossy(&built.stderr)));
    }
    let dockerd = Dockerd::start(root.path())?;
    let source = format!("oci-archive:{}:{image}", images.join("busybox.tar").display());
    let loaded = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-daemon-host", &dockerd.host, &source, &format!("docker-daemon:{image}")])
        .output()
        .map_err(ctx("running skopeo"))?;
    if !loaded.status.success() {
        return Err(format!("loading the image into dockerd: {}", String::from_utf8_lossy(&loaded.stderr)));
    }
    dockerd.ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"])?;
    eprintln!("swarm: dockerd and a one-node swarm ready; creating {replicas} replicas");
    let started = Instant::now();
    dockerd.ok(&[
        "service",
        "create",
        "--quiet",
        "--name",
        "tugbench",
        "--replicas",
        &replicas.to_string(),
        image,
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ])?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("swarm: {replicas} replicas running in {seconds:.2} s");
    drop(dockerd);
    Ok(seconds)
}
