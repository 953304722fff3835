//! A containerd the agent runs itself, as k3s does: its own config, state, socket and CNI
//! directories under the agent's data dir, so two agents on one host (simulated nodes) never
//! share anything, and nothing depends on a system-wide containerd.
//!
//! [`ManagedContainerd::start`] writes the config ([`render_config`], pure), spawns
//! `containerd --config`, records its pid in `DATA_DIR/containerd.pid` ([`Layout::pid_file`]),
//! waits until its CRI answers, imports the OCI archives found in `DATA_DIR/images/` (no
//! registry may be reachable: the pause image comes from there) and waits until the CRI lists
//! them. [`ManagedContainerd::stop`] (also run on drop) sends SIGTERM and escalates to SIGKILL
//! after a grace period. Containers' shims outlive containerd by design: remove pods before
//! stopping it.
//!
//! [`ManagedContainerd::supervise`] keeps it alive: a [`Supervisor`] task awaits the process's
//! exit (no polling). An exit it did not ask for is logged with the exit status and the log's
//! tail, the log is kept as `containerd.log.1`, and containerd is started again with the same
//! config after a back-off ([`restart_delay`]: 1 s doubling to 30 s, reset once a containerd
//! stayed up [`STABLE_AFTER`]), waiting for its CRI as the first start does. The images are not
//! imported again: the content store under the root dir survives, and the restarted CRI must
//! list the sandbox image before it counts as ready. Containers survive too (their shims keep
//! running) and the new containerd re-attaches to them, so nothing is re-created. Clients over
//! `tug_cri::connect` reconnect by themselves (tonic redials after a lost connection; calls fail
//! until the socket serves again). [`Supervisor::status`] tells whether containerd serves and
//! how often it was restarted; [`Supervisor::stop`] stops it for good.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::Child;
use tokio::sync::{oneshot, watch};

/// The pod sandbox image `scripts/demo-images` builds (busybox sleeping until signalled).
pub const SANDBOX_IMAGE: &str = "localhost/pause:latest";
/// Where Debian's `containernetworking-plugins` installs bridge, host-local, portmap, loopback.
pub const DEBIAN_CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The containerd namespace the CRI plugin works in; images must be imported there.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// How long containerd may take to serve its CRI after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long importing the image archives may take (a few small demo images take well under a
/// second; a hung `ctr` must not leave the agent silent for ever).
const IMPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one CRI readiness probe (connect, Version, ListImages) may take: a containerd that
/// accepts the connection but never answers must count as not ready, not hang the start.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// First starts tried before the agent gives up: a start that hung or died is tried again, as
/// the supervisor does after a crash, instead of leaving the node unregistered.
const START_ATTEMPTS: u32 = 3;
/// How long containerd gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Interval between readiness or exit checks while waiting under a deadline.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// A unix socket path (sun_path) holds at most 107 bytes plus the NUL; containerd also binds
/// `<socket>.ttrpc`, six bytes longer.
const MAX_SOCKET_PATH: usize = 107 - ".ttrpc".len();
/// Lines of containerd's log quoted in errors, so a failure explains itself.
const LOG_TAIL_LINES: usize = 20;
/// The wait before the first restart after containerd died; it doubles with each further
/// failure in a row.
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between restarts.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A containerd that ran this long before dying is not crash-looping: the back-off starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{program}` not found on PATH or in /usr/sbin, /sbin; install it (scripts/lib.sh ensure_containerd)")]
    ProgramNotFound { program: &'static str },
    #[error(
        "containerd socket path {} is {len} bytes, more than the {MAX_SOCKET_PATH} a unix socket allows; use a shorter data dir",
        path.display()
    )]
    SocketPathTooLong { path: PathBuf, len: usize },
    #[error("containerd exited during start-up ({status}); last lines of {}:\n{log_tail}", log.display())]
    Exited { status: ExitStatus, log: PathBuf, log_tail: String },
    #[error("containerd did not become ready within {waited:?}: {what}; last lines of {}:\n{log_tail}", log.display())]
    NotReady { waited: Duration, what: String, log: PathBuf, log_tail: String },
    #[error("importing image archive {} failed ({status}): {stderr}", archive.display())]
    Import { archive: PathBuf, status: ExitStatus, stderr: String },
    #[error("importing the image archives in {} did not finish within {IMPORT_TIMEOUT:?}; last lines of {}:\n{log_tail}", images.display(), log.display())]
    ImportTimedOut { images: PathBuf, log: PathBuf, log_tail: String },
}

impl Error {
    /// A start that hung or died, which another attempt may get past (unlike a missing program,
    /// an unwritable data dir or a socket path too long).
    fn is_transient(&self) -> bool {
        matches!(self, Error::Exited { .. } | Error::NotReady { .. } | Error::ImportTimedOut { .. })
    }
}

/// The snapshotter keeping containers' root filesystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// Layers stacked by the kernel's overlay filesystem: fast, no copies.
    Overlayfs,
    /// Plain directory copies: works on any filesystem, slower and bigger.
    Native,
}

impl Snapshotter {
    pub fn name(self) -> &'static str {
        match self {
            Snapshotter::Overlayfs => "overlayfs",
            Snapshotter::Native => "native",
        }
    }

    /// Overlayfs when the kernel offers it (per the text of `/proc/filesystems`), else native.
    pub fn from_proc_filesystems(proc_filesystems: &str) -> Snapshotter {
        let has_overlay = proc_filesystems.lines().any(|line| line.split_whitespace().last() == Some("overlay"));
        if has_overlay { Snapshotter::Overlayfs } else { Snapshotter::Native }
    }

    /// The best snapshotter this host supports.
    pub fn detect() -> Snapshotter {
        Snapshotter::from_proc_filesystems(&fs::read_to_string("/proc/filesystems").unwrap_or_default())
    }
}

/// Where everything of one managed containerd lives, all under the agent's data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub data_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout { data_dir: data_dir.to_path_buf() }
    }
    pub fn config_file(&self) -> PathBuf {
        self.data_dir.join("containerd.toml")
    }
    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join("containerd.log")
    }
    /// The log of the containerd before the last restart.
    pub fn previous_log_file(&self) -> PathBuf {
        self.data_dir.join("containerd.log.1")
    }
    /// The running containerd's pid (decimal, newline), written at each start, removed at stop:
    /// containerd writes no pid file of its own.
    pub fn pid_file(&self) -> PathBuf {
        self.data_dir.join("containerd.pid")
    }
    /// OCI archives imported at start: the sandbox image at least.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }
    pub fn root_dir(&self) -> PathBuf {
        self.data_dir.join("containerd")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("run").join("containerd")
    }
    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("containerd.sock")
    }
    pub fn runc_root(&self) -> PathBuf {
        self.data_dir.join("run").join("runc")
    }
    pub fn opt_dir(&self) -> PathBuf {
        self.data_dir.join("opt")
    }
    /// Where the CNI network config (one conflist) goes; containerd watches it.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.data_dir.join("cni").join("net.d")
    }
}

/// What the generated containerd config depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    pub layout: Layout,
    pub sandbox_image: String,
    pub snapshotter: Snapshotter,
    pub cni_bin_dir: PathBuf,
    pub runc: PathBuf,
}

impl ContainerdConfig {
    /// The defaults for this host: demo pause image, best snapshotter, Debian's CNI plugins.
    pub fn for_host(data_dir: &Path) -> Result<ContainerdConfig, Error> {
        Ok(ContainerdConfig {
            layout: Layout::new(data_dir),
            sandbox_image: SANDBOX_IMAGE.to_string(),
            snapshotter: Snapshotter::detect(),
            cni_bin_dir: PathBuf::from(DEBIAN_CNI_BIN_DIR),
            runc: find_program("runc", &search_path())?,
        })
    }
}

/// A TOML basic string holding `value`.
fn toml_string(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn toml_path(path: &Path) -> String {
    toml_string(&path.to_string_lossy())
}

/// The containerd (config version 2) file for `config`. Each non-default setting says why.
pub fn render_config(config: &ContainerdConfig) -> String {
    let layout = &config.layout;
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    format!(
        r#"# Generated by the tug agent; rewritten at every start.
version = 2
root = {root}
state = {state}

[grpc]
  address = {socket}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[{cri}]
  sandbox_image = {sandbox_image}
  # The VM withholds CAP_SYS_RESOURCE: containerd may not lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  # cgroup v1 with a hybrid cgroup2 mount and no hugetlb controller here.
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  disable_apparmor = true
  enable_selinux = false
  disable_tcp_service = true
  # Pod network namespaces under the state dir, so a crashed agent's leftovers are findable.
  netns_mounts_under_state_dir = true
  # Exec/attach/port-forward streams, proxied by the agent.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [{cri}.cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
    max_conf_num = 1

  [{cri}.containerd]
    snapshotter = {snapshotter}
    default_runtime_name = "runc"

    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [{cri}.containerd.runtimes.runc.options]
        BinaryName = {runc}
        Root = {runc_root}
        SystemdCgroup = false
"#,
        root = toml_path(&layout.root_dir()),
        state = toml_path(&layout.state_dir()),
        socket = toml_path(&layout.socket()),
        opt = toml_path(&layout.opt_dir()),
        sandbox_image = toml_string(&config.sandbox_image),
        cni_bin = toml_path(&config.cni_bin_dir),
        cni_conf = toml_path(&layout.cni_conf_dir()),
        snapshotter = toml_string(config.snapshotter.name()),
        runc = toml_path(&config.runc),
        runc_root = toml_path(&layout.runc_root()),
    )
}

/// The directories searched for programs: `$PATH`, then the sbin directories a non-login
/// shell's PATH often lacks (Debian puts runc in /usr/sbin).
fn search_path() -> String {
    path_with_system_dirs(&std::env::var("PATH").unwrap_or_default())
}

/// `path` with the system program directories (sbin ones included) appended when missing.
fn path_with_system_dirs(path: &str) -> String {
    let mut dirs: Vec<&str> = path.split(':').filter(|dir| !dir.is_empty()).collect();
    for sbin in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !dirs.contains(&sbin) {
            dirs.push(sbin);
        }
    }
    dirs.join(":")
}

/// The first executable file called `program` in the `:`-separated `path`.
fn find_program(program: &'static str, path: &str) -> Result<PathBuf, Error> {
    path.split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(Error::ProgramNotFound { program })
}

/// The last `lines` lines of the file at `path`, or a note saying why there are none.
fn tail_of(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(no log: {error})"),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { action, path, source }
}

/// Whether a start imports the image archives: the first does; a restart finds the images in
/// the content store, which survives containerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Images {
    Import,
    Keep,
}

/// A containerd child process, stopped on [`ManagedContainerd::stop`] or drop.
#[derive(Debug)]
pub struct ManagedContainerd {
    child: Option<Child>,
    config: ContainerdConfig,
}

impl ManagedContainerd {
    /// Starts containerd with this host's defaults under `data_dir` and imports
    /// `data_dir/images/*.tar`. Returns once the CRI answers and lists the sandbox image.
    pub async fn start(data_dir: &Path) -> Result<ManagedContainerd, Error> {
        ManagedContainerd::start_with(ContainerdConfig::for_host(data_dir)?).await
    }

    /// As [`ManagedContainerd::start`], with an explicit config. A start that hung or died is
    /// tried again (up to [`START_ATTEMPTS`] in all, each logged); setup errors are not.
    pub async fn start_with(config: ContainerdConfig) -> Result<ManagedContainerd, Error> {
        let mut attempt = 1;
        loop {
            match ManagedContainerd::launch(config.clone(), Images::Import).await {
                Err(error) if attempt < START_ATTEMPTS && error.is_transient() => {
                    tracing::warn!(%error, attempt, "containerd did not start; trying again");
                    keep_previous_log(&config.layout);
                    tokio::time::sleep(restart_delay(attempt - 1)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn launch(config: ContainerdConfig, images: Images) -> Result<ManagedContainerd, Error> {
        let layout = config.layout.clone();
        let socket = layout.socket();
        let socket_len = socket.as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(Error::SocketPathTooLong { path: socket, len: socket_len });
        }
        for dir in [layout.state_dir(), layout.cni_conf_dir(), layout.images_dir()] {
            fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        }
        let config_file = layout.config_file();
        fs::write(&config_file, render_config(&config)).map_err(io_error("writing", &config_file))?;
        // A socket left by a killed containerd would answer nothing; containerd replaces it,
        // but the readiness check must not mistake it for the new one.
        match fs::remove_file(&socket) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("removing stale socket", &socket)(error)),
        }

        let path = search_path();
        let program = find_program("containerd", &path)?;
        let log_file = layout.log_file();
        let log = fs::File::create(&log_file).map_err(io_error("creating", &log_file))?;
        let log_err = log.try_clone().map_err(io_error("opening", &log_file))?;
        let child = tokio::process::Command::new(&program)
            .arg("--config")
            .arg(&config_file)
            // The runc shim is found through PATH.
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io_error("spawning", &program))?;
        let mut managed = ManagedContainerd { child: Some(child), config };
        managed.write_pid_file()?;
        tracing::info!(pid = managed.pid(), config = %config_file.display(), "containerd started; waiting for its CRI");

        let spawned = Instant::now();
        let deadline = spawned + READY_TIMEOUT;
        managed.wait_for_socket(deadline).await?;
        let serving = spawned.elapsed();
        if images == Images::Import {
            managed.import_images(&path).await?;
        }
        let imported = spawned.elapsed();
        managed.wait_for_cri(deadline).await?;
        tracing::info!(
            socket = %managed.socket().display(),
            pid = managed.pid(),
            serving_ms = serving.as_millis(),
            imported_ms = imported.as_millis(),
            ready_ms = spawned.elapsed().as_millis(),
            "containerd ready"
        );
        Ok(managed)
    }

    pub fn layout(&self) -> &Layout {
        &self.config.layout
    }

    pub fn config(&self) -> &ContainerdConfig {
        &self.config
    }

    /// The CRI (and containerd) gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.config.layout.socket()
    }

    /// The process id, while it runs (also in [`Layout::pid_file`]).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn write_pid_file(&self) -> Result<(), Error> {
        let file = self.config.layout.pid_file();
        let text = self.pid().map(|pid| format!("{pid}\n")).unwrap_or_default();
        fs::write(&file, text).map_err(io_error("writing", &file))
    }

    fn remove_pid_file(&self) {
        // Absent already is fine: the file only helps people and tests find the process.
        let _ = fs::remove_file(self.config.layout.pid_file());
    }

    /// An error for "not ready by the deadline" or "exited", with the log's tail.
    fn not_ready(&mut self, what: String) -> Error {
        let log = self.config.layout.log_file();
        let log_tail = tail_of(&log, LOG_TAIL_LINES);
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            return Error::Exited { status, log, log_tail };
        }
        Error::NotReady { waited: READY_TIMEOUT, what, log, log_tail }
    }

    /// Fails at once if containerd has exited.
    fn check_running(&mut self) -> Result<(), Error> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            _ => Err(self.not_ready("containerd is not running".to_string())),
        }
    }

    /// Waits until containerd accepts connections on its socket.
    async fn wait_for_socket(&mut self, deadline: Instant) -> Result<(), Error> {
        let socket = self.socket();
        loop {
            self.check_running()?;
            if UnixStream::connect(&socket).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(format!("nothing accepts on {}", socket.display())));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Imports every `*.tar` of the images dir into the CRI namespace, concurrently.
    async fn import_images(&mut self, path: &str) -> Result<(), Error> {
        let images_dir = self.config.layout.images_dir();
        let archives = archives_in(&images_dir)?;
        let ctr = find_program("ctr", path)?;
        let socket = self.socket();
        let snapshotter = self.config.snapshotter.name();
        let imports = archives.iter().map(|archive| {
            tokio::process::Command::new(&ctr)
                .arg("--address")
                .arg(&socket)
                .args(["--namespace", CRI_NAMESPACE, "images", "import", "--snapshotter", snapshotter])
                .arg(archive)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output()
        });
        let Ok(outputs) = tokio::time::timeout(IMPORT_TIMEOUT, futures::future::join_all(imports)).await else {
            let log = self.config.layout.log_file();
            return Err(Error::ImportTimedOut { images: images_dir, log_tail: tail_of(&log, LOG_TAIL_LINES), log });
        };
        for (archive, output) in archives.iter().zip(outputs) {
            let output = output.map_err(io_error("running ctr to import", archive))?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
                return Err(Error::Import { archive: archive.clone(), status: output.status, stderr });
            }
        }
        Ok(())
    }

    /// Waits until the CRI plugin has initialised (it answers Version) and, because the sandbox
    /// image cannot be pulled from anywhere, until it lists that image.
    async fn wait_for_cri(&mut self, deadline: Instant) -> Result<(), Error> {
        let socket = self.socket();
        let sandbox_image = self.config.sandbox_image.clone();
        loop {
            self.check_running()?;
            let last = match cri_lists_image(&socket, &sandbox_image).await {
                Ok(true) => return Ok(()),
                Ok(false) => format!("the CRI does not list the sandbox image {sandbox_image}"),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready(last));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops containerd: SIGTERM, then SIGKILL if it has not exited within the grace period.
    /// Stopping a stopped containerd does nothing.
    pub fn stop(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        self.remove_pid_file();
        let data_dir = &self.config.layout.data_dir;
        if child.try_wait().map_err(io_error("checking", data_dir))?.is_some() {
            return Ok(());
        }
        let terminated = child.id().is_some_and(|pid| sigterm(pid).status().is_ok_and(|status| status.success()));
        if terminated && exits_by(&mut child, Instant::now() + STOP_GRACE).map_err(io_error("waiting for", data_dir))? {
            return Ok(());
        }
        // Killing a process that exited just now fails harmlessly; the wait reaps it either way.
        let _ = child.start_kill();
        exits_by(&mut child, Instant::now() + STOP_GRACE).map_err(io_error("waiting for", data_dir))?;
        Ok(())
    }

    /// As [`ManagedContainerd::stop`], awaiting the exit instead of blocking the thread.
    pub async fn shutdown(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        self.remove_pid_file();
        let data_dir = &self.config.layout.data_dir;
        if child.try_wait().map_err(io_error("checking", data_dir))?.is_some() {
            return Ok(());
        }
        if let Some(pid) = child.id() {
            let terminated = tokio::process::Command::from(sigterm(pid)).status().await;
            if terminated.is_ok_and(|status| status.success())
                && let Ok(exit) = tokio::time::timeout(STOP_GRACE, child.wait()).await
            {
                return exit.map(drop).map_err(io_error("waiting for", data_dir));
            }
        }
        child.kill().await.map_err(io_error("killing", data_dir))
    }

    /// Resolves when containerd exits, with how it ended (cancel-safe).
    async fn exited(&mut self) -> io::Result<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => Err(io::Error::other("containerd is not running")),
        }
    }

    /// Hands containerd to a task that starts it again whenever it dies, until
    /// [`Supervisor::stop`] (see the module docs).
    pub fn supervise(self) -> Supervisor {
        let (report, status) = watch::channel(RuntimeStatus { pid: self.pid(), ..RuntimeStatus::default() });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(keep_running(self, report, stopped));
        Supervisor { status, stop, task }
    }
}

impl Drop for ManagedContainerd {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "stopping containerd");
        }
    }
}

/// `kill -TERM pid`: std offers only SIGKILL, and `kill` sends SIGTERM without unsafe code.
fn sigterm(pid: u32) -> Command {
    let mut command = Command::new("kill");
    command.args(["-TERM", &pid.to_string()]).stderr(Stdio::null());
    command
}

/// Whether `child` exits by `deadline` (for the synchronous stop, which cannot await).
fn exits_by(child: &mut Child, deadline: Instant) -> io::Result<bool> {
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The wait before the restart that follows `failures` quick deaths or failed starts in a row:
/// 1 s, doubling, at most 30 s.
pub fn restart_delay(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures).unwrap_or(u32::MAX);
    FIRST_RESTART_DELAY.saturating_mul(factor).min(MAX_RESTART_DELAY)
}

/// The failures in a row counted once a containerd that ran for `ran_for` died: one that
/// stayed up [`STABLE_AFTER`] was healthy, so the back-off starts over.
pub fn failures_after_exit(failures: u32, ran_for: Duration) -> u32 {
    if ran_for >= STABLE_AFTER { 0 } else { failures }
}

/// What a [`Supervisor`] knows of its containerd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// The serving containerd's pid; `None` while it is down or starting again.
    pub pid: Option<u32>,
    /// How many times containerd was started again after dying.
    pub restarts: u32,
    /// How the last containerd that died ended, e.g. `signal: 9 (SIGKILL)`.
    pub last_exit: Option<String>,
}

/// The task keeping a managed containerd running (see [`ManagedContainerd::supervise`]).
#[derive(Debug)]
pub struct Supervisor {
    status: watch::Receiver<RuntimeStatus>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// The containerd's status, updated when it dies and when it serves again.
    pub fn status(&self) -> watch::Receiver<RuntimeStatus> {
        self.status.clone()
    }

    /// Stops containerd for good (SIGTERM, SIGKILL after the grace period): no restart.
    /// Dropping the supervisor does the same, in the background.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the containerd supervisor failed");
        }
    }
}

/// Awaits containerd's exit and starts it again, until told to stop.
async fn keep_running(
    mut containerd: ManagedContainerd,
    report: watch::Sender<RuntimeStatus>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut failures = 0;
    loop {
        let up_since = Instant::now();
        let exit = tokio::select! {
            exit = containerd.exited() => exit,
            _ = &mut stop => {
                if let Err(error) = containerd.shutdown().await {
                    tracing::warn!(%error, "stopping containerd");
                }
                return;
            }
        };
        report.send_modify(|status| status.pid = None);
        let ran_for = up_since.elapsed();
        let how = match exit {
            Ok(status) => status.to_string(),
            Err(error) => format!("unknown exit ({error})"),
        };
        let layout = containerd.layout().clone();
        tracing::error!(
            "containerd exited unexpectedly ({how}) after running {} s; last lines of {}:\n{}",
            ran_for.as_secs(),
            layout.log_file().display(),
            tail_of(&layout.log_file(), LOG_TAIL_LINES)
        );
        let config = containerd.config().clone();
        // Reaped already: dropping only forgets it (and its pid file).
        drop(containerd);
        keep_previous_log(&layout);
        failures = failures_after_exit(failures, ran_for);
        let Some(restarted) = restart(&config, &mut failures, &mut stop).await else { return };
        containerd = restarted;
        let pid = containerd.pid();
        report.send_modify(|status| {
            status.pid = pid;
            status.restarts += 1;
            status.last_exit = Some(how);
        });
    }
}

/// Starts containerd again after the back-off, as often as it takes; `None` when told to stop
/// meanwhile.
async fn restart(
    config: &ContainerdConfig,
    failures: &mut u32,
    stop: &mut oneshot::Receiver<()>,
) -> Option<ManagedContainerd> {
    loop {
        let delay = restart_delay(*failures);
        *failures = failures.saturating_add(1);
        tracing::warn!(delay_ms = delay.as_millis(), attempt = *failures, "restarting containerd");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = &mut *stop => return None,
        }
        // Told to stop while starting: dropping the start stops the half-started containerd.
        let started = tokio::select! {
            started = ManagedContainerd::launch(config.clone(), Images::Keep) => started,
            _ = &mut *stop => return None,
        };
        match started {
            Ok(containerd) => return Some(containerd),
            Err(error) => tracing::error!(%error, "containerd did not start again"),
        }
    }
}

/// Keeps the log of a containerd that died as `containerd.log.1`: the next start truncates
/// `containerd.log`.
fn keep_previous_log(layout: &Layout) {
    if let Err(error) = fs::rename(layout.log_file(), layout.previous_log_file()) {
        tracing::warn!(%error, "keeping containerd's log");
    }
}

/// The `*.tar` files of `dir`, sorted (an absent dir has none).
fn archives_in(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("listing", dir)(error)),
    };
    let mut archives = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_error("listing", dir))?.path();
        if path.extension().is_some_and(|ext| ext == "tar") && path.is_file() {
            archives.push(path);
        }
    }
    archives.sort();
    Ok(archives)
}

/// Whether the CRI at `socket` answers and lists `image` (by tag); errors as text for reports.
async fn cri_lists_image(socket: &Path, image: &str) -> Result<bool, String> {
    tokio::time::timeout(PROBE_TIMEOUT, cri_lists_image_now(socket, image))
        .await
        .unwrap_or_else(|_| Err(format!("the CRI did not answer within {PROBE_TIMEOUT:?}")))
}

async fn cri_lists_image_now(socket: &Path, image: &str) -> Result<bool, String> {
    let mut clients = tug_cri::connect(socket).await.map_err(|error| error.to_string())?;
    clients.runtime.version(tug_cri::v1::VersionRequest::default()).await.map_err(|status| status.to_string())?;
    let images = clients
        .image
        .list_images(tug_cri::v1::ListImagesRequest::default())
        .await
        .map_err(|status| status.to_string())?
        .into_inner();
    Ok(images.images.iter().any(|listed| listed.repo_tags.iter().any(|tag| tag == image)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(data_dir: &str) -> ContainerdConfig {
        ContainerdConfig {
            layout: Layout::new(Path::new(data_dir)),
            sandbox_image: SANDBOX_IMAGE.to_string(),
            snapshotter: Snapshotter::Overlayfs,
            cni_bin_dir: PathBuf::from(DEBIAN_CNI_BIN_DIR),
            runc: PathBuf::from("/usr/sbin/runc"),
        }
    }

    #[test]
    fn only_starts_that_hung_or_died_are_tried_again() {
        use std::os::unix::process::ExitStatusExt;
        let log = PathBuf::from("/data/containerd.log");
        let tail = String::new();
        let transient = [
            Error::Exited { status: ExitStatus::from_raw(256), log: log.clone(), log_tail: tail.clone() },
            Error::NotReady {
                waited: READY_TIMEOUT,
                what: "no answer".into(),
                log: log.clone(),
                log_tail: tail.clone(),
            },
            Error::ImportTimedOut { images: "/data/images".into(), log: log.clone(), log_tail: tail.clone() },
        ];
        for error in transient {
            assert!(error.is_transient(), "{error}");
        }
        let lasting = [
            Error::ProgramNotFound { program: "containerd" },
            Error::SocketPathTooLong { path: "/x".into(), len: 200 },
            Error::Import {
                archive: "/data/images/a.tar".into(),
                status: ExitStatus::from_raw(256),
                stderr: "bad archive".into(),
            },
        ];
        for error in lasting {
            assert!(!error.is_transient(), "{error}");
        }
    }

    #[test]
    fn config_keeps_all_state_under_the_data_dir_and_sets_what_this_host_needs() {
        let text = render_config(&config_in("/var/lib/tug/agent"));
        for expected in [
            "version = 2",
            r#"root = "/var/lib/tug/agent/containerd""#,
            r#"state = "/var/lib/tug/agent/run/containerd""#,
            r#"address = "/var/lib/tug/agent/run/containerd/containerd.sock""#,
            r#"path = "/var/lib/tug/agent/opt""#,
            r#"sandbox_image = "localhost/pause:latest""#,
            "restrict_oom_score_adj = true",
            "netns_mounts_under_state_dir = true",
            r#"bin_dir = "/usr/lib/cni""#,
            r#"conf_dir = "/var/lib/tug/agent/cni/net.d""#,
            r#"snapshotter = "overlayfs""#,
            r#"BinaryName = "/usr/sbin/runc""#,
            r#"Root = "/var/lib/tug/agent/run/runc""#,
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn config_quotes_paths_that_would_break_toml() {
        let text = render_config(&config_in(r#"/tmp/we"ird\dir"#));
        assert!(text.contains(r#"root = "/tmp/we\"ird\\dir/containerd""#), "{text}");
    }

    #[test]
    fn snapshotter_is_overlayfs_only_when_the_kernel_has_overlay() {
        let cases = [
            ("nodev\tsysfs\nnodev\toverlay\n\text4\n", Snapshotter::Overlayfs),
            ("nodev\tsysfs\n\text4\n", Snapshotter::Native),
            ("nodev\toverlayfs-not-really\n", Snapshotter::Native),
            ("", Snapshotter::Native),
        ];
        for (proc_filesystems, expected) in cases {
            assert_eq!(Snapshotter::from_proc_filesystems(proc_filesystems), expected, "{proc_filesystems:?}");
        }
    }

    #[test]
    fn sbin_dirs_are_searched_even_when_path_lacks_them() {
        assert_eq!(path_with_system_dirs("/usr/bin:/bin"), "/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin");
        assert_eq!(path_with_system_dirs(""), "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin");
    }

    #[test]
    fn a_missing_program_is_named_in_the_error() {
        let error = find_program("containerd", "/nonexistent").unwrap_err();
        assert!(error.to_string().contains("`containerd` not found"), "{error}");
    }

    #[tokio::test]
    async fn a_data_dir_too_deep_for_a_unix_socket_is_refused_before_anything_starts() {
        let deep = format!("/tmp/{}", "d".repeat(100));
        let error = ManagedContainerd::start_with(config_in(&deep)).await.unwrap_err();
        assert!(matches!(error, Error::SocketPathTooLong { .. }), "{error}");
        assert!(error.to_string().contains("use a shorter data dir"), "{error}");
        assert!(!Path::new(&deep).exists(), "nothing may be created");
    }

    #[test]
    fn restarts_back_off_from_one_second_doubling_to_thirty() {
        let cases = [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (31, 30), (32, 30), (u32::MAX, 30)];
        for (failures, seconds) in cases {
            assert_eq!(restart_delay(failures), Duration::from_secs(seconds), "after {failures} failures");
        }
    }

    #[test]
    fn the_back_off_starts_over_once_containerd_stayed_up_a_while() {
        let cases = [
            (3, Duration::from_secs(5), 3),
            (3, STABLE_AFTER - Duration::from_millis(1), 3),
            (3, STABLE_AFTER, 0),
            (7, Duration::from_secs(3600), 0),
            (0, Duration::ZERO, 0),
        ];
        for (failures, ran_for, expected) in cases {
            assert_eq!(failures_after_exit(failures, ran_for), expected, "{failures} failures, ran {ran_for:?}");
        }
    }

    #[test]
    fn only_tar_files_are_image_archives() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.tar", "a.tar", "notes.txt", "c.tar.gz"] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let names: Vec<String> = archives_in(dir.path())
            .unwrap()
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.tar", "b.tar"]);
        assert!(archives_in(&dir.path().join("absent")).unwrap().is_empty());
    }
}
