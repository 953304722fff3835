//! The IO of pod volumes: [`Volumes`] sets a pod's volumes up before its containers start
//! (directories, tmpfs mounts, hostPath checks, files), keeps ConfigMap/Secret/downward-API files
//! current from the cache, and tears everything down when the pod is finalized.
//!
//! Layout, as the kubelet's: `<pods_dir>/<uid>/volumes/kubernetes.io~<plugin>/<volume>`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Container, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::Api;
use tokio::sync::mpsc;
use tug_cri::v1::Mount;
use tug_k8s::pods::PodRef;

use super::super::spec::{NodeResources, Referenced};
use super::atomic::{ModeBits, write_atomically};
use super::cache::Cache;
use super::io_context;
use super::plan::{
    EMPTY_DIR_MODE, FileKind, HostPathStep, Inputs, PlannedMount, PlannedVolume, PodVolumes, Setup, VolumeError,
    bound_volume_name, container_mounts, host_path_step, persistent_volume_path, plan_volume, plan_volumes,
    pod_volumes_dir,
};

/// The agent's volume manager.
pub struct Volumes {
    client: kube::Client,
    pods_dir: PathBuf,
    node: NodeResources,
    cache: Arc<Cache>,
    /// Pods whose volumes were set up, by uid.
    prepared: Mutex<HashMap<String, Arc<PodVolumes>>>,
}

impl Debug for Volumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volumes").field("pods_dir", &self.pods_dir).field("node", &self.node).finish_non_exhaustive()
    }
}

impl Volumes {
    /// A volume manager keeping pod volumes under `<pods_dir>/<uid>/volumes`. Nothing is
    /// watched before [`Volumes::start`].
    /// `node`: the node's cpu and memory (`resourceFieldRef` in downward API files, the size of
    /// memory-backed emptyDirs).
    pub fn new(client: kube::Client, pods_dir: PathBuf, node: NodeResources) -> Volumes {
        Volumes { client, pods_dir, node, cache: Arc::new(Cache::new()), prepared: Mutex::new(HashMap::new()) }
    }

    /// Starts the ConfigMap and Secret watches; the receiver yields the uids of pods whose
    /// referenced objects changed (sync them). Abort the handle to stop watching.
    pub fn start(&self) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<String>) {
        self.cache.start(self.client.clone())
    }

    fn prepared(&self) -> MutexGuard<'_, HashMap<String, Arc<PodVolumes>>> {
        self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ConfigMaps and Secrets `pod` refers to, from the cache (once it has listed); the pod
    /// is woken when any of them changes. Missing ones are left out.
    pub async fn referenced(&self, pod: &Pod) -> Result<Referenced, String> {
        self.cache.referenced(pod).await
    }

    /// Sets up the volumes of `pod` (first time) or brings its files up to date (later); what
    /// a failed first setup says is the pod's waiting message, and the next sync retries.
    pub async fn sync(&self, pod: &Pod) -> Result<Arc<PodVolumes>, VolumeError> {
        let uid = PodRef::of(pod).uid;
        let referenced = self.referenced(pod).await.map_err(|message| VolumeError::new("*", message))?;
        let existing = self.prepared().get(&uid).cloned();
        if let Some(prepared) = existing {
            self.refresh(pod, &referenced);
            return Ok(prepared);
        }
        let prepared = Arc::new(self.prepare(pod, &referenced).await?);
        self.prepared().insert(uid, prepared.clone());
        Ok(prepared)
    }

    fn inputs<'a>(
        &'a self,
        referenced: &'a Referenced,
        claims: &'a BTreeMap<String, Result<PathBuf, String>>,
    ) -> Inputs<'a> {
        Inputs { referenced, claims, node: self.node }
    }

    async fn prepare(&self, pod: &Pod, referenced: &Referenced) -> Result<PodVolumes, VolumeError> {
        let pod_ref = PodRef::of(pod);
        let claims = self.resolve_claims(pod).await;
        let dir = pod_volumes_dir(&self.pods_dir, &pod_ref.uid);
        let planned = plan_volumes(pod, &dir, &self.inputs(referenced, &claims))?;
        let mounted = mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
        for volume in &planned {
            set_up(volume, &mounted).await.map_err(|message| VolumeError::new(&volume.name, message))?;
        }
        Ok(PodVolumes::of(&planned))
    }

    /// Rewrites the files of the pod's ConfigMap, Secret, downward-API and projected volumes
    /// when their sources changed; a source gone meanwhile keeps the last files (as the kubelet).
    fn refresh(&self, pod: &Pod, referenced: &Referenced) {
        let dir = pod_volumes_dir(&self.pods_dir, &PodRef::of(pod).uid);
        let no_claims = BTreeMap::new();
        let inputs = self.inputs(referenced, &no_claims);
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
        let file_volumes = volumes.iter().filter(|v| {
            v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some()
        });
        for volume in file_volumes {
            let written = plan_volume(pod, volume, &dir, &inputs).map_err(|e| e.to_string()).and_then(|planned| {
                let Setup::Files { payload, .. } = &planned.setup else { return Ok(false) };
                write_atomically(&planned.host_path, payload)
            });
            match written {
                Ok(true) => tracing::debug!(pod = ?pod.metadata.name, volume = %volume.name, "volume files updated"),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(pod = ?pod.metadata.name, volume = %volume.name, %error, "volume not refreshed")
                }
            }
        }
    }

    /// The host path of every claim the pod mounts, or why it has none.
    async fn resolve_claims(&self, pod: &Pod) -> BTreeMap<String, Result<PathBuf, String>> {
        let namespace = PodRef::of(pod).namespace;
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
        let mut claims = BTreeMap::new();
        for claim in volumes.iter().filter_map(|v| v.persistent_volume_claim.as_ref()) {
            let path = self.claim_path(&namespace, &claim.claim_name).await;
            claims.insert(claim.claim_name.clone(), path);
        }
        claims
    }

    async fn claim_path(&self, namespace: &str, claim: &str) -> Result<PathBuf, String> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let found = claims.get_opt(claim).await.map_err(|e| format!("reading persistentvolumeclaim {claim:?}: {e}"))?;
        let volume = bound_volume_name(claim, found.as_ref())?;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let found = volumes.get_opt(&volume).await.map_err(|e| format!("reading persistentvolume {volume:?}: {e}"))?;
        persistent_volume_path(&volume, found.as_ref())
    }

    /// The CRI mounts of `container` of a prepared pod, with subPaths made on the host. `env`
    /// expands `subPathExpr`.
    pub fn mounts_for(
        container: &Container,
        volumes: &PodVolumes,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, String> {
        let planned = container_mounts(container, volumes, env)?;
        planned.into_iter().map(|p| ensure_sub_path(&p).map(|()| p.mount)).collect()
    }

    /// Unmounts and removes everything of pod `uid` under the pods dir and forgets it; an error
    /// leaves the directory in place (nothing is deleted through a mount).
    pub async fn teardown(&self, uid: &str) -> Result<(), String> {
        self.cache.forget(uid);
        self.prepared().remove(uid);
        let pod_dir = self.pods_dir.join(uid);
        if uid.is_empty() || !pod_dir.exists() {
            return Ok(());
        }
        let under = |mountinfo: &str| {
            let mut points: Vec<PathBuf> =
                mount_points(mountinfo).into_iter().filter(|p| p.starts_with(&pod_dir)).collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            points.dedup();
            points
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_context("reading", Path::new("/proc/self/mountinfo")))?;
        for point in under(&mountinfo) {
            run_command("umount", &[point.as_os_str()]).await?;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(left) = under(&mountinfo).first() {
            return Err(format!("{} is still mounted", left.display()));
        }
        match std::fs::remove_dir_all(&pod_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_context("removing", &pod_dir)(e)),
            _ => Ok(()),
        }
    }
}

async fn run_command(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("running {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {:?}: {}", args, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

fn file_kind(path: &Path) -> FileKind {
    let Ok(meta) = std::fs::metadata(path) else { return FileKind::Missing };
    let kind = meta.file_type();
    if kind.is_dir() {
        FileKind::Directory
    } else if kind.is_file() {
        FileKind::File
    } else if kind.is_socket() {
        FileKind::Socket
    } else if kind.is_char_device() {
        FileKind::CharDevice
    } else if kind.is_block_device() {
        FileKind::BlockDevice
    } else {
        FileKind::Other
    }
}

fn make_dir(path: &Path, mode: Option<u32>) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(io_context("creating", path))?;
    match mode {
        Some(mode) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_context("setting the mode of", path)),
        None => Ok(()),
    }
}

/// Mounts a tmpfs on `dir` unless one is there (a restarted agent finds its mounts).
async fn ensure_tmpfs(dir: &Path, size_bytes: Option<u64>, mounted: &[PathBuf]) -> Result<(), String> {
    if mounted.iter().any(|p| p == dir) {
        return Ok(());
    }
    let options = match size_bytes {
        Some(size) => format!("size={size}"),
        None => "defaults".into(),
    };
    let args = ["-t", "tmpfs", "-o", &options, "tmpfs"].map(std::ffi::OsStr::new);
    let mut all: Vec<&std::ffi::OsStr> = args.to_vec();
    all.push(dir.as_os_str());
    run_command("mount", &all).await
}

async fn set_up(volume: &PlannedVolume, mounted: &[PathBuf]) -> Result<(), String> {
    let path = &volume.host_path;
    match &volume.setup {
        Setup::EmptyDir { memory, size_bytes } => {
            make_dir(path, Some(EMPTY_DIR_MODE))?;
            if *memory {
                ensure_tmpfs(path, *size_bytes, mounted).await?;
                make_dir(path, Some(EMPTY_DIR_MODE))?;
            }
            Ok(())
        }
        Setup::HostPath { kind } => match host_path_step(*kind, file_kind(path), path)? {
            HostPathStep::Ready => Ok(()),
            HostPathStep::CreateDirectory => make_dir(path, Some(0o755)),
            HostPathStep::CreateFile => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(drop)
                .map_err(io_context("creating", path)),
        },
        Setup::Files { payload, tmpfs } => {
            make_dir(path, Some(0o755))?;
            if *tmpfs {
                ensure_tmpfs(path, None, mounted).await?;
                make_dir(path, Some(0o755))?;
            }
            write_atomically(path, payload).map(drop)
        }
        Setup::Claim => make_dir(path, None),
    }
}

/// Makes a missing subPath a directory (with its volume's mode) and refuses one that leads
/// outside its volume through a symlink.
fn ensure_sub_path(planned: &PlannedMount) -> Result<(), String> {
    let Some(volume) = &planned.sub_path_of else { return Ok(()) };
    let path = Path::new(&planned.mount.host_path);
    if std::fs::symlink_metadata(path).is_err() {
        let mode = std::fs::metadata(volume).map(|m| m.mode_bits()).ok();
        make_dir(path, mode)?;
    }
    let real = path.canonicalize().map_err(io_context("resolving", path))?;
    let root = volume.canonicalize().map_err(io_context("resolving", volume))?;
    if real.starts_with(&root) { Ok(()) } else { Err(format!("subPath {} leads outside its volume", path.display())) }
}

/// The mount points listed in `/proc/self/mountinfo` (octal escapes such as `\040` decoded).
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).map(|p| PathBuf::from(unescape_octal(p))).collect()
}

fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], digits) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_decoded() {
        let text =
            "36 35 98:0 / /mnt/a\\040b rw - ext3 /dev/root rw\n40 35 0:5 / /tmp/x rw shared:1 - tmpfs tmpfs rw\n";
        assert_eq!(mount_points(text), vec![PathBuf::from("/mnt/a b"), PathBuf::from("/tmp/x")]);
    }
}
