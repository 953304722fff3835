//! Pod volumes, the kubelet's volume manager in small.
//!
//! The pure core turns a pod, its volumes and what the agent resolved for them (ConfigMaps,
//! Secrets, bound claims, the node's allocatable resources) into [`PlannedVolume`]s — a
//! directory on the host and how to set it up — and a container's `volumeMounts` into CRI
//! [`Mount`]s. The IO around it ([`Volumes`]) sets volumes up before a pod's containers start,
//! keeps ConfigMap/Secret/downward-API files current, and tears everything down when the pod is
//! finalized.
//!
//! Layout, as the kubelet's: `<pods_dir>/<uid>/volumes/kubernetes.io~<plugin>/<volume>`.
//! Files of `configMap`, `secret`, `downwardAPI` and `projected` volumes are written the
//! kubelet's atomic way: a fresh `..<timestamp>` directory, a `..data` symlink swapped to it with
//! one rename, and per-entry symlinks `<key> -> ..data/<key>`, so a reader sees either the old
//! or the new set of files, never a mix. `emptyDir` with `medium: Memory` and `secret` volumes
//! live on a tmpfs (secrets never touch the disk).
//!
//! Updates: one watch of all ConfigMaps and one of all Secrets feed a cache; every pod that
//! syncs records what it refers to, and a change to such an object wakes exactly those pods,
//! whose next sync rewrites the files (no polling, no GET per sync).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, SecretProjection, Volume, VolumeMount,
};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tug_cri::v1::{Mount, MountPropagation};

use tug_k8s::pods::PodRef;

use super::spec::{NodeResources, Referenced, expand, resource_field_value};

/// Mode of projected files when neither the item nor the volume names one (the API default, 0644).
const DEFAULT_FILE_MODE: u32 = 0o644;
/// An `emptyDir` is writable by any user of the pod, as the kubelet makes it.
const EMPTY_DIR_MODE: u32 = 0o777;
/// The symlink naming the current timestamped directory of an atomically written volume.
const DATA_LINK: &str = "..data";
const DATA_LINK_TMP: &str = "..data_tmp";
/// How long a sync waits for the ConfigMap/Secret cache's first list before giving up (retried).
const CACHE_SYNC_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The pure core.
// ---------------------------------------------------------------------------------------------

/// Why a volume could not be set up; shown as the kubelet shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

impl VolumeError {
    fn new(volume: &str, message: impl Into<String>) -> VolumeError {
        VolumeError { volume: volume.into(), message: message.into() }
    }
}

/// One file of an atomically written volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of a volume by relative path (`a/b.txt`).
pub type Payload = BTreeMap<String, FileContent>;

/// The `type` of a `hostPath` volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check (the runtime creates a missing directory).
    Unchecked,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl HostPathType {
    pub fn parse(text: Option<&str>) -> Result<HostPathType, String> {
        Ok(match text.unwrap_or_default() {
            "" => HostPathType::Unchecked,
            "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
            "Directory" => HostPathType::Directory,
            "FileOrCreate" => HostPathType::FileOrCreate,
            "File" => HostPathType::File,
            "Socket" => HostPathType::Socket,
            "CharDevice" => HostPathType::CharDevice,
            "BlockDevice" => HostPathType::BlockDevice,
            other => return Err(format!("{other} is an invalid volume type")),
        })
    }
}

/// What is at a host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Missing,
    Directory,
    File,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

/// What to do about a `hostPath` before mounting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathStep {
    Ready,
    CreateDirectory,
    CreateFile,
}

/// The kubelet's `hostPath` type check: what to create, or why the path does not fit.
pub fn host_path_step(kind: HostPathType, found: FileKind, path: &Path) -> Result<HostPathStep, String> {
    let fail = |what: &str| Err(format!("hostPath type check failed: {} is not {what}", path.display()));
    match (kind, found) {
        (HostPathType::Unchecked, _) => Ok(HostPathStep::Ready),
        (HostPathType::DirectoryOrCreate, FileKind::Missing) => Ok(HostPathStep::CreateDirectory),
        (HostPathType::FileOrCreate, FileKind::Missing) => Ok(HostPathStep::CreateFile),
        (HostPathType::DirectoryOrCreate | HostPathType::Directory, FileKind::Directory)
        | (HostPathType::FileOrCreate | HostPathType::File, FileKind::File)
        | (HostPathType::Socket, FileKind::Socket)
        | (HostPathType::CharDevice, FileKind::CharDevice)
        | (HostPathType::BlockDevice, FileKind::BlockDevice) => Ok(HostPathStep::Ready),
        (HostPathType::DirectoryOrCreate | HostPathType::Directory, _) => fail("a directory"),
        (HostPathType::FileOrCreate | HostPathType::File, _) => fail("a file"),
        (HostPathType::Socket, _) => fail("a socket file"),
        (HostPathType::CharDevice, _) => fail("a character device"),
        (HostPathType::BlockDevice, _) => fail("a block device"),
    }
}

/// How a volume's directory is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    /// A directory; on a tmpfs of `size_bytes` (the kernel's default when `None`) if `memory`.
    EmptyDir { memory: bool, size_bytes: Option<u64> },
    /// A path of the host, checked or created as its `type` says.
    HostPath { kind: HostPathType },
    /// Files written atomically; on a tmpfs when `tmpfs`.
    Files { payload: Payload, tmpfs: bool },
    /// A persistent volume's directory on this node, created when missing.
    Claim,
}

/// One volume of a pod, resolved: where it is on the host and how to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    pub name: String,
    pub host_path: PathBuf,
    pub setup: Setup,
    /// Mounted read-only whatever the volumeMount says (projected files; read-only claims).
    pub read_only: bool,
}

/// What the agent resolved for a pod's volumes.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub referenced: &'a Referenced,
    /// The host path of each claim the pod names (its bound PV's path), or why there is none.
    pub claims: &'a BTreeMap<String, Result<PathBuf, String>>,
    /// The node's allocatable resources: the value of an unset limit in the downward API, the
    /// ceiling of a memory `emptyDir`.
    pub node: NodeResources,
}

/// Where a pod's volumes live on the host.
pub fn pod_volumes_dir(pods_dir: &Path, uid: &str) -> PathBuf {
    pods_dir.join(uid).join("volumes")
}

/// Plans every volume of `pod` under `volumes_dir`; the first that cannot be planned fails.
pub fn plan_volumes(pod: &Pod, volumes_dir: &Path, inputs: &Inputs) -> Result<Vec<PlannedVolume>, VolumeError> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    volumes.iter().map(|volume| plan_volume(pod, volume, volumes_dir, inputs)).collect()
}

/// Plans one volume of `pod`.
pub fn plan_volume(
    pod: &Pod,
    volume: &Volume,
    volumes_dir: &Path,
    inputs: &Inputs,
) -> Result<PlannedVolume, VolumeError> {
    let name = volume.name.as_str();
    let error = |message: String| VolumeError::new(name, message);
    let under = |plugin: &str| volumes_dir.join(format!("kubernetes.io~{plugin}")).join(name);
    let files = |plugin: &str, payload: Payload, tmpfs: bool| PlannedVolume {
        name: name.into(),
        host_path: under(plugin),
        setup: Setup::Files { payload, tmpfs },
        read_only: true,
    };
    if let Some(empty) = &volume.empty_dir {
        let memory = match empty.medium.as_deref().unwrap_or_default() {
            "" => false,
            "Memory" => true,
            other => return Err(error(format!("emptyDir medium {other:?} is not supported"))),
        };
        let size_limit = empty.size_limit.as_ref().and_then(|q| tug_k8s::quantity::parse_quantity(&q.0));
        let size_bytes = if memory { memory_volume_size(pod, size_limit, inputs.node) } else { None };
        return Ok(PlannedVolume {
            name: name.into(),
            host_path: under("empty-dir"),
            setup: Setup::EmptyDir { memory, size_bytes },
            read_only: false,
        });
    }
    if let Some(host) = &volume.host_path {
        let kind = HostPathType::parse(host.type_.as_deref()).map_err(error)?;
        return Ok(PlannedVolume {
            name: name.into(),
            host_path: PathBuf::from(&host.path),
            setup: Setup::HostPath { kind },
            read_only: false,
        });
    }
    if let Some(source) = &volume.config_map {
        let mode = file_mode(source.default_mode);
        let payload = config_map_payload(
            &source.name,
            inputs.referenced.config_maps.get(&source.name),
            source.items.as_deref(),
            mode,
            source.optional.unwrap_or(false),
        )
        .map_err(error)?;
        return Ok(files("configmap", payload, false));
    }
    if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let payload = secret_payload(
            &secret_name,
            inputs.referenced.secrets.get(&secret_name),
            source.items.as_deref(),
            file_mode(source.default_mode),
            source.optional.unwrap_or(false),
        )
        .map_err(error)?;
        return Ok(files("secret", payload, true));
    }
    if let Some(source) = &volume.downward_api {
        let mode = file_mode(source.default_mode);
        let payload =
            downward_payload(pod, source.items.as_deref().unwrap_or_default(), mode, inputs.node).map_err(error)?;
        return Ok(files("downward-api", payload, false));
    }
    if let Some(source) = &volume.projected {
        let mode = file_mode(source.default_mode);
        let mut payload = Payload::new();
        for projection in source.sources.iter().flatten() {
            let part = if let Some(ConfigMapProjection { name, items, optional }) = &projection.config_map {
                let found = inputs.referenced.config_maps.get(name);
                config_map_payload(name, found, items.as_deref(), mode, optional.unwrap_or(false))
            } else if let Some(SecretProjection { name, items, optional }) = &projection.secret {
                let found = inputs.referenced.secrets.get(name);
                secret_payload(name, found, items.as_deref(), mode, optional.unwrap_or(false))
            } else if let Some(downward) = &projection.downward_api {
                downward_payload(pod, downward.items.as_deref().unwrap_or_default(), mode, inputs.node)
            } else if projection.service_account_token.is_some() {
                Err("serviceAccountToken projections are not supported by this agent".into())
            } else {
                Err("this projected volume source is not supported by this agent \
                     (supported: configMap, secret, downwardAPI)"
                    .into())
            };
            payload.extend(part.map_err(error)?);
        }
        return Ok(files("projected", payload, true));
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let path = match inputs.claims.get(&claim.claim_name) {
            Some(Ok(path)) => path.clone(),
            Some(Err(why)) => return Err(error(why.clone())),
            None => return Err(error(format!("persistentvolumeclaim {:?} was not resolved", claim.claim_name))),
        };
        return Ok(PlannedVolume {
            name: name.into(),
            host_path: path,
            setup: Setup::Claim,
            read_only: claim.read_only.unwrap_or(false),
        });
    }
    Err(error(
        "this volume type is not supported by this agent (supported: emptyDir, hostPath, configMap, secret, \
         downwardAPI, projected, persistentVolumeClaim)"
            .into(),
    ))
}

/// A file mode from the API (an int32 such as 420), 0644 when unset or out of range.
fn file_mode(mode: Option<i32>) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok()).map_or(DEFAULT_FILE_MODE, |m| m & 0o7777)
}

/// The tmpfs size of a memory `emptyDir` (the kubelet's rule): the smallest of the node's
/// allocatable memory, the pod's memory limit (when every container has one) and the volume's
/// `sizeLimit`.
fn memory_volume_size(pod: &Pod, size_limit: Option<i128>, node: NodeResources) -> Option<u64> {
    let mut size = Some(i128::from(node.memory_bytes) * 1_000_000_000).filter(|s| *s > 0);
    let positive_min = |current: Option<i128>, candidate: Option<i128>| match (current, candidate) {
        (Some(c), Some(n)) if n > 0 && n <= c => Some(n),
        (None, Some(n)) if n > 0 => Some(n),
        _ => current,
    };
    size = positive_min(size, pod_memory_limit(pod));
    size = positive_min(size, size_limit);
    size.map(|nano| u64::try_from(nano.div_euclid(1_000_000_000) + i128::from(nano % 1_000_000_000 != 0)).unwrap_or(0))
}

/// The pod's memory limit in nano-bytes: the sum of its containers' limits (at least the largest
/// init container's), none when a container has no limit.
fn pod_memory_limit(pod: &Pod) -> Option<i128> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        let limits = c.resources.as_ref()?.limits.as_ref()?;
        tug_k8s::quantity::parse_quantity(&limits.get("memory")?.0)
    };
    let mut sum = 0i128;
    for container in &spec.containers {
        sum = sum.saturating_add(limit(container)?);
    }
    let mut largest_init = 0i128;
    for container in spec.init_containers.iter().flatten() {
        largest_init = largest_init.max(limit(container)?);
    }
    Some(sum.max(largest_init))
}

/// Keys to files: every key when `items` is empty, else the named keys at their paths. A
/// missing key is an error unless the source is optional.
fn project_keys(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
    what: &str,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    let items = items.unwrap_or_default();
    if items.is_empty() {
        for (key, data) in data {
            check_payload_path(&key)?;
            payload.insert(key, FileContent { data, mode });
        }
        return Ok(payload);
    }
    for item in items {
        let Some(data) = data.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(format!("{what} references non-existent key: {}", item.key));
        };
        check_payload_path(&item.path)?;
        let mode = item.mode.map_or(mode, |m| file_mode(Some(m)));
        payload.insert(item.path.clone(), FileContent { data: data.clone(), mode });
    }
    Ok(payload)
}

/// The files of a ConfigMap (`data` and `binaryData`).
pub fn config_map_payload(
    name: &str,
    found: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(config_map) = found else {
        return if optional { Ok(Payload::new()) } else { Err(format!("configmap {name:?} not found")) };
    };
    let mut data: BTreeMap<String, Vec<u8>> =
        config_map.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    data.extend(config_map.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    project_keys(data, items, mode, optional, &format!("configmap {name:?}"))
}

/// The files of a Secret (`data`, and `stringData` should a client have stored it).
pub fn secret_payload(
    name: &str,
    found: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(secret) = found else {
        return if optional { Ok(Payload::new()) } else { Err(format!("secret {name:?} not found")) };
    };
    let mut data: BTreeMap<String, Vec<u8>> =
        secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    data.extend(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())));
    project_keys(data, items, mode, optional, &format!("secret {name:?}"))
}

/// The files of a downward-API volume (or projection).
pub fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    node: NodeResources,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for item in items {
        check_payload_path(&item.path)?;
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), _) => downward_field(pod, &field.field_path)?,
            (None, Some(resource)) => {
                let container = find_container(pod, resource.container_name.as_deref().unwrap_or_default())
                    .ok_or_else(|| {
                        format!("resourceFieldRef of {}: no container {:?}", item.path, resource.container_name)
                    })?;
                let divisor = resource.divisor.as_ref().map(|q| q.0.as_str());
                resource_field_value(container, &resource.resource, divisor, node).map_err(|e| e.0)?
            }
            (None, None) => {
                return Err(format!("downwardAPI item {} has neither fieldRef nor resourceFieldRef", item.path));
            }
        };
        let mode = item.mode.map_or(mode, |m| file_mode(Some(m)));
        payload.insert(item.path.clone(), FileContent { data: value.into_bytes(), mode });
    }
    Ok(payload)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

/// The value of a downward-API `fieldRef` in a volume (metadata only, as the API allows there).
fn downward_field(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&labels),
        "metadata.annotations" => format_map(&annotations),
        _ => {
            let label = path.strip_prefix("metadata.labels['").and_then(|r| r.strip_suffix("']"));
            let annotation = path.strip_prefix("metadata.annotations['").and_then(|r| r.strip_suffix("']"));
            match (label, annotation) {
                (Some(key), _) => labels.get(key).cloned().unwrap_or_default(),
                (_, Some(key)) => annotations.get(key).cloned().unwrap_or_default(),
                _ => return Err(format!("fieldRef {path:?} is not supported in a downwardAPI volume")),
            }
        }
    };
    Ok(value)
}

/// Labels or annotations as the kubelet writes them: sorted `key="value"` lines, values quoted
/// as Go's `%q`, no trailing newline.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// A string quoted as Go's `strconv.Quote`: printable characters as they are, the rest escaped.
fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A payload path must stay inside the volume: relative, no `..` element, not starting with `..`
/// (the kubelet's own entries).
fn check_payload_path(path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || path.starts_with("..")
        || Path::new(path).components().any(|c| !matches!(c, Component::Normal(_)));
    if bad { Err(format!("invalid file path {path:?} in volume")) } else { Ok(()) }
}

/// A container's mount of a volume, before its subPath (if any) is made on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMount {
    pub mount: Mount,
    /// Set when `mount.host_path` is a subPath of this volume directory.
    pub sub_path_of: Option<PathBuf>,
}

/// Where each volume of a prepared pod is on the host, and whether it is read-only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    pub by_name: BTreeMap<String, (PathBuf, bool)>,
}

impl PodVolumes {
    pub fn of(planned: &[PlannedVolume]) -> PodVolumes {
        PodVolumes { by_name: planned.iter().map(|v| (v.name.clone(), (v.host_path.clone(), v.read_only))).collect() }
    }
}

/// The CRI mounts of `container`'s `volumeMounts`; `env` expands `subPathExpr`.
pub fn container_mounts(
    container: &Container,
    volumes: &PodVolumes,
    env: &[(String, String)],
) -> Result<Vec<PlannedMount>, String> {
    container.volume_mounts.iter().flatten().map(|mount| planned_mount(mount, volumes, env)).collect()
}

fn planned_mount(mount: &VolumeMount, volumes: &PodVolumes, env: &[(String, String)]) -> Result<PlannedMount, String> {
    let (volume_path, volume_read_only) =
        volumes.by_name.get(&mount.name).ok_or_else(|| format!("volumeMount {:?}: no such volume", mount.name))?;
    let sub_path = match (&mount.sub_path, &mount.sub_path_expr) {
        (Some(path), _) if !path.is_empty() => Some(path.clone()),
        (_, Some(expr)) if !expr.is_empty() => Some(expand(expr, env)),
        _ => None,
    };
    let (host_path, sub_path_of) = match sub_path {
        Some(sub) => {
            let inside = !Path::new(&sub).is_absolute()
                && Path::new(&sub).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !inside {
                return Err(format!("volumeMount {:?}: subPath {sub:?} must stay inside the volume", mount.name));
            }
            (volume_path.join(&sub), Some(volume_path.clone()))
        }
        None => (volume_path.clone(), None),
    };
    let propagation = match mount.mount_propagation.as_deref() {
        Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
        Some("Bidirectional") => MountPropagation::PropagationBidirectional,
        _ => MountPropagation::PropagationPrivate,
    };
    Ok(PlannedMount {
        mount: Mount {
            container_path: mount.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: mount.read_only.unwrap_or(false) || *volume_read_only,
            propagation: propagation as i32,
            ..Default::default()
        },
        sub_path_of,
    })
}

/// The claim's bound volume name, or why the claim cannot be used yet.
pub fn bound_volume_name(claim: &str, found: Option<&PersistentVolumeClaim>) -> Result<String, String> {
    let pvc = found.ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
    let phase = pvc.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if phase != "Bound" || volume.is_empty() {
        return Err(format!("persistentvolumeclaim {claim:?} is not bound (phase {phase:?}, volumeName {volume:?})"));
    }
    Ok(volume)
}

/// The node-local directory of a persistent volume: its `hostPath.path` or `local.path`.
pub fn persistent_volume_path(name: &str, found: Option<&PersistentVolume>) -> Result<PathBuf, String> {
    let spec = found.and_then(|pv| pv.spec.as_ref()).ok_or_else(|| format!("persistentvolume {name:?} not found"))?;
    let path = spec.host_path.as_ref().map(|h| h.path.clone()).or_else(|| spec.local.as_ref().map(|l| l.path.clone()));
    match path {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(format!("persistentvolume {name:?} has neither hostPath nor local path; only those can be mounted")),
    }
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

// ---------------------------------------------------------------------------------------------
// Atomic writes of a payload (the kubelet's AtomicWriter).
// ---------------------------------------------------------------------------------------------

fn io_context(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> String {
    let text = format!("{what} {}", path.display());
    move |e| format!("{text}: {e}")
}

/// The files under `dir` (relative path → content and mode), following nothing.
fn read_tree(dir: &Path) -> std::io::Result<Payload> {
    let mut found = Payload::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(path);
            } else {
                let data = std::fs::read(entry.path())?;
                found.insert(path.to_string_lossy().into_owned(), FileContent { data, mode: meta.mode_bits() });
            }
        }
    }
    Ok(found)
}

trait ModeBits {
    fn mode_bits(&self) -> u32;
}

impl ModeBits for std::fs::Metadata {
    fn mode_bits(&self) -> u32 {
        self.permissions().mode() & 0o7777
    }
}

/// The first element of each payload path: the entries users see in the volume.
fn visible_entries(payload: &Payload) -> BTreeSet<String> {
    payload.keys().filter_map(|p| p.split('/').next()).map(str::to_string).collect()
}

/// Writes `payload` into `dir` atomically; `Ok(false)` when it was already there.
pub fn write_atomically(dir: &Path, payload: &Payload) -> Result<bool, String> {
    for path in payload.keys() {
        check_payload_path(path)?;
    }
    std::fs::create_dir_all(dir).map_err(io_context("creating", dir))?;
    let data_link = dir.join(DATA_LINK);
    let old = std::fs::read_link(&data_link).ok();
    let visible = visible_entries(payload);
    if let Some(old) = &old
        && read_tree(&dir.join(old)).is_ok_and(|current| &current == payload)
    {
        ensure_visible_links(dir, &visible)?;
        return Ok(false);
    }
    let stamp = jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S").to_string();
    let nanos = jiff::Timestamp::now().subsec_nanosecond();
    let mut name = format!("..{stamp}.{nanos:09}");
    let mut attempt = 0;
    while dir.join(&name).exists() {
        attempt += 1;
        name = format!("..{stamp}.{nanos:09}-{attempt}");
    }
    let ts_dir = dir.join(&name);
    std::fs::create_dir(&ts_dir).map_err(io_context("creating", &ts_dir))?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_context("setting the mode of", &ts_dir))?;
    for (relative, content) in payload {
        let path = ts_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_context("creating", parent))?;
        }
        let mut file = std::fs::File::create(&path).map_err(io_context("creating", &path))?;
        file.write_all(&content.data).map_err(io_context("writing", &path))?;
        file.set_permissions(std::fs::Permissions::from_mode(content.mode))
            .map_err(io_context("setting the mode of", &path))?;
    }
    // The swap: a new symlink renamed over `..data` replaces it in one step.
    let tmp_link = dir.join(DATA_LINK_TMP);
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&name, &tmp_link).map_err(io_context("linking", &tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(io_context("renaming to", &data_link))?;
    ensure_visible_links(dir, &visible)?;
    for entry in std::fs::read_dir(dir).map_err(io_context("reading", dir))?.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if !entry_name.starts_with("..") && !visible.contains(&entry_name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old.filter(|old| old.as_os_str() != name.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn ensure_visible_links(dir: &Path, visible: &BTreeSet<String>) -> Result<(), String> {
    for entry in visible {
        let link = dir.join(entry);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(entry), &link).map_err(io_context("linking", &link))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The ConfigMap/Secret cache.
// ---------------------------------------------------------------------------------------------

type Key = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Secret,
}

#[derive(Default)]
struct CacheState {
    config_maps: HashMap<Key, ConfigMap>,
    secrets: HashMap<Key, Secret>,
    /// What each pod (by uid) refers to: its namespace, ConfigMap names, Secret names.
    users: HashMap<String, (String, Vec<String>, Vec<String>)>,
    /// Where to send the uids of pods whose referenced objects changed.
    wake: Option<mpsc::UnboundedSender<String>>,
}

impl CacheState {
    /// Wakes every pod referring to `(kind, key)`.
    fn wake_users(&self, kind: Kind, key: &Key) {
        let Some(wake) = &self.wake else { return };
        for (uid, (namespace, config_maps, secrets)) in &self.users {
            let names = if kind == Kind::ConfigMap { config_maps } else { secrets };
            if *namespace == key.0 && names.contains(&key.1) {
                let _ = wake.send(uid.clone());
            }
        }
    }
}

/// An object kind the cache keeps.
trait Cached:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn map(state: &mut CacheState) -> &mut HashMap<Key, Self>;
}

impl Cached for ConfigMap {
    const KIND: Kind = Kind::ConfigMap;
    fn map(state: &mut CacheState) -> &mut HashMap<Key, Self> {
        &mut state.config_maps
    }
}

impl Cached for Secret {
    const KIND: Kind = Kind::Secret;
    fn map(state: &mut CacheState) -> &mut HashMap<Key, Self> {
        &mut state.secrets
    }
}

fn key_of<K: kube::Resource>(object: &K) -> Key {
    let meta = object.meta();
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn version_of<K: kube::Resource>(object: Option<&K>) -> Option<String> {
    object.and_then(|o| o.meta().resource_version.clone())
}

struct Cache {
    state: Mutex<CacheState>,
    /// Whether each kind was listed once (ConfigMaps, Secrets).
    synced: [tokio::sync::watch::Sender<bool>; 2],
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn synced_flag(&self, kind: Kind) -> &tokio::sync::watch::Sender<bool> {
        &self.synced[usize::from(kind == Kind::Secret)]
    }

    /// Applies one watch event; `pending` collects a (re)list until it is complete.
    fn apply<K: Cached>(&self, event: watcher::Event<K>, pending: &mut Option<HashMap<Key, K>>) {
        let mut state = self.lock();
        match event {
            watcher::Event::Init => *pending = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                pending.get_or_insert_with(HashMap::new).insert(key_of(&object), object);
            }
            watcher::Event::InitDone => {
                let fresh = pending.take().unwrap_or_default();
                let old = std::mem::replace(K::map(&mut state), fresh);
                let current = K::map(&mut state).clone();
                let keys: BTreeSet<&Key> = old.keys().chain(current.keys()).collect();
                for key in keys {
                    if version_of(old.get(key)) != version_of(current.get(key)) {
                        state.wake_users(K::KIND, key);
                    }
                }
                drop(state);
                self.synced_flag(K::KIND).send_replace(true);
            }
            watcher::Event::Apply(object) => {
                let key = key_of(&object);
                let before = K::map(&mut state).insert(key.clone(), object.clone());
                if version_of(before.as_ref()) != version_of(Some(&object)) {
                    state.wake_users(K::KIND, &key);
                }
            }
            watcher::Event::Delete(object) => {
                let key = key_of(&object);
                K::map(&mut state).remove(&key);
                state.wake_users(K::KIND, &key);
            }
        }
    }

    async fn wait_synced(&self) -> Result<(), String> {
        let wait = async {
            for flag in &self.synced {
                let _ = flag.subscribe().wait_for(|synced| *synced).await;
            }
        };
        tokio::time::timeout(CACHE_SYNC_WAIT, wait)
            .await
            .map_err(|_| "the ConfigMap and Secret watches have not listed yet".to_string())
    }
}

async fn watch_kind<K: Cached>(client: kube::Client, cache: Arc<Cache>) {
    let api: Api<K> = Api::all(client);
    let events = watcher(api, watcher::Config::default()).default_backoff();
    tokio::pin!(events);
    let mut pending = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => cache.apply(event, &mut pending),
            Err(error) => tracing::warn!(%error, kind = ?K::KIND, "volume source watch failed; resuming"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The IO: prepare, refresh, tear down.
// ---------------------------------------------------------------------------------------------

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
        Volumes {
            client,
            pods_dir,
            node,
            cache: Arc::new(Cache {
                state: Mutex::new(CacheState::default()),
                synced: [tokio::sync::watch::channel(false).0, tokio::sync::watch::channel(false).0],
            }),
            prepared: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the ConfigMap and Secret watches; the receiver yields the uids of pods whose
    /// referenced objects changed (sync them). Abort the handle to stop watching.
    pub fn start(&self) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<String>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.cache.lock().wake = Some(sender);
        let (client, cache) = (self.client.clone(), self.cache.clone());
        let task = tokio::spawn(async move {
            tokio::join!(watch_kind::<ConfigMap>(client.clone(), cache.clone()), watch_kind::<Secret>(client, cache));
        });
        (task, receiver)
    }

    fn prepared(&self) -> MutexGuard<'_, HashMap<String, Arc<PodVolumes>>> {
        self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ConfigMaps and Secrets `pod` refers to, from the cache (once it has listed); the pod
    /// is woken when any of them changes. Missing ones are left out.
    pub async fn referenced(&self, pod: &Pod) -> Result<Referenced, String> {
        let pod_ref = PodRef::of(pod);
        let (config_maps, secrets) = Referenced::names_in(pod);
        self.cache.lock().users.insert(pod_ref.uid.clone(), (pod_ref.namespace.clone(), config_maps, secrets));
        self.cache.wait_synced().await?;
        let state = self.cache.lock();
        let (_, config_maps, secrets) = &state.users[&pod_ref.uid];
        let key = |name: &String| (pod_ref.namespace.clone(), name.clone());
        Ok(Referenced {
            config_maps: config_maps
                .iter()
                .filter_map(|n| state.config_maps.get(&key(n)).map(|o| (n.clone(), o.clone())))
                .collect(),
            secrets: secrets
                .iter()
                .filter_map(|n| state.secrets.get(&key(n)).map(|o| (n.clone(), o.clone())))
                .collect(),
        })
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
        self.cache.lock().users.remove(uid);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web", "tier": "a \"b\"\n"}, "annotations": {"note": "x"}},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn config_map(data: serde_json::Value) -> ConfigMap {
        serde_json::from_value(
            json!({"metadata": {"name": "cfg", "namespace": "shop", "resourceVersion": "1"}, "data": data}),
        )
        .expect("config map")
    }

    fn referenced() -> Referenced {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "creds", "namespace": "shop"},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="},
        }))
        .expect("secret");
        Referenced {
            config_maps: BTreeMap::from([("cfg".into(), config_map(json!({"a.conf": "A", "b.conf": "B"})))]),
            secrets: BTreeMap::from([("creds".into(), secret)]),
        }
    }

    fn node() -> NodeResources {
        NodeResources { cpu_millis: 4000, memory_bytes: 8 << 30 }
    }

    fn plan(pod: &Pod) -> Result<Vec<PlannedVolume>, VolumeError> {
        let referenced = referenced();
        let claims = BTreeMap::from([
            ("data".to_string(), Ok(PathBuf::from("/srv/pv1"))),
            ("pending".into(), Err("not bound".into())),
        ]);
        plan_volumes(
            pod,
            Path::new("/d/pods/u-1/volumes"),
            &Inputs { referenced: &referenced, claims: &claims, node: node() },
        )
    }

    fn file(data: &str, mode: u32) -> FileContent {
        FileContent { data: data.as_bytes().to_vec(), mode }
    }

    fn payload_of(volume: &PlannedVolume) -> Payload {
        match &volume.setup {
            Setup::Files { payload, .. } => payload.clone(),
            other => panic!("not a files volume: {other:?}"),
        }
    }

    #[test]
    fn config_map_and_secret_volumes_project_keys_with_modes() {
        let pod = pod(json!({"containers": [{"name": "c"}], "volumes": [
            {"name": "all", "configMap": {"name": "cfg", "defaultMode": 0o600}},
            {"name": "some", "configMap": {"name": "cfg", "items": [{"key": "b.conf", "path": "dir/b", "mode": 0o640}]}},
            {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "maybe", "configMap": {"name": "absent", "optional": true}},
        ]}));
        let volumes = plan(&pod).expect("planned");
        assert_eq!(volumes[0].host_path, Path::new("/d/pods/u-1/volumes/kubernetes.io~configmap/all"));
        assert!(volumes[0].read_only);
        assert_eq!(
            payload_of(&volumes[0]),
            Payload::from([("a.conf".into(), file("A", 0o600)), ("b.conf".into(), file("B", 0o600))])
        );
        assert_eq!(payload_of(&volumes[1]), Payload::from([("dir/b".into(), file("B", 0o640))]));
        assert_eq!(
            volumes[2].setup,
            Setup::Files {
                payload: Payload::from([
                    ("password".into(), file("hunter2", 0o400)),
                    ("user".into(), file("admin", 0o400))
                ]),
                tmpfs: true
            }
        );
        assert_eq!(payload_of(&volumes[3]), Payload::new());
    }

    #[test]
    fn missing_sources_and_keys_fail_the_volume_with_the_kubelets_words() {
        let cases = [
            (json!({"name": "v", "configMap": {"name": "absent"}}), "configmap \"absent\" not found"),
            (json!({"name": "v", "secret": {"secretName": "absent"}}), "secret \"absent\" not found"),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}}),
                "non-existent key: nope",
            ),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "../x"}]}}),
                "invalid file path",
            ),
            (json!({"name": "v", "hostPath": {"path": "/x", "type": "Weird"}}), "Weird is an invalid volume type"),
            (json!({"name": "v", "persistentVolumeClaim": {"claimName": "pending"}}), "not bound"),
            (
                json!({"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}),
                "serviceAccountToken",
            ),
            (json!({"name": "v", "emptyDir": {"medium": "HugePages"}}), "not supported"),
            (json!({"name": "v", "nfs": {"server": "s", "path": "/"}}), "not supported"),
        ];
        for (volume, expected) in cases {
            let error = plan(&pod(json!({"containers": [], "volumes": [volume]}))).expect_err("fails");
            assert_eq!(error.volume, "v");
            assert!(error.to_string().starts_with("MountVolume.SetUp failed for volume \"v\" : "), "{error}");
            assert!(error.message.contains(expected), "{:?} should mention {expected:?}", error.message);
        }
        // An optional source lacking a key just leaves the file out.
        let optional = json!({"name": "v", "configMap": {"name": "cfg", "optional": true, "items": [{"key": "nope", "path": "x"}]}});
        let volumes = plan(&pod(json!({"containers": [], "volumes": [optional]}))).expect("planned");
        assert_eq!(payload_of(&volumes[0]), Payload::new());
    }

    #[test]
    fn downward_api_files_hold_fields_labels_and_resources() {
        let pod = pod(json!({
            "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}],
            "volumes": [{"name": "info", "downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
                {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
                {"path": "cpu_request", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"}},
                {"path": "cpu_request_cores", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu"}},
            ]}}],
        }));
        let payload = payload_of(&plan(&pod).expect("planned")[0]);
        let text = |k: &str| String::from_utf8(payload[k].data.clone()).expect("utf-8");
        assert_eq!(text("name"), "web");
        assert_eq!(text("labels"), "app=\"web\"\ntier=\"a \\\"b\\\"\\n\"");
        assert_eq!(text("app"), "web");
        assert_eq!(text("mem"), "64");
        // No cpu limit: the node's allocatable (4 cores).
        assert_eq!(text("cpu_limit"), "4");
        assert_eq!(text("cpu_request"), "250");
        assert_eq!(text("cpu_request_cores"), "1");
        assert_eq!(payload["name"].mode, 0o644);
    }

    #[test]
    fn projected_volumes_merge_their_sources() {
        let pod =
            pod(json!({"containers": [], "volumes": [{"name": "all", "projected": {"defaultMode": 0o440, "sources": [
                {"configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "conf/a"}]}},
                {"secret": {"name": "creds", "items": [{"key": "user", "path": "user", "mode": 0o400}]}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]}}]}));
        let volumes = plan(&pod).expect("planned");
        assert_eq!(
            payload_of(&volumes[0]),
            Payload::from([
                ("conf/a".into(), file("A", 0o440)),
                ("ns".into(), file("shop", 0o440)),
                ("user".into(), file("admin", 0o400)),
            ])
        );
        assert!(volumes[0].host_path.ends_with("kubernetes.io~projected/all"));
    }

    #[test]
    fn empty_dirs_host_paths_and_claims_are_placed() {
        let pod = pod(json!({
            "containers": [{"name": "c", "resources": {"limits": {"memory": "256Mi"}}}],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                {"name": "ram-pod", "emptyDir": {"medium": "Memory"}},
                {"name": "ram-big", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                {"name": "host", "hostPath": {"path": "/var/data", "type": "DirectoryOrCreate"}},
                {"name": "pv", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}},
            ],
        }));
        let volumes = plan(&pod).expect("planned");
        let setups: Vec<_> = volumes.iter().map(|v| v.setup.clone()).collect();
        let mib = 1 << 20;
        assert_eq!(
            setups,
            vec![
                Setup::EmptyDir { memory: false, size_bytes: None },
                Setup::EmptyDir { memory: true, size_bytes: Some(64 * mib) },
                // No sizeLimit: the pod's memory limit; a larger sizeLimit than that is capped too.
                Setup::EmptyDir { memory: true, size_bytes: Some(256 * mib) },
                Setup::EmptyDir { memory: true, size_bytes: Some(256 * mib) },
                Setup::HostPath { kind: HostPathType::DirectoryOrCreate },
                Setup::Claim,
            ]
        );
        assert_eq!(volumes[0].host_path, Path::new("/d/pods/u-1/volumes/kubernetes.io~empty-dir/scratch"));
        assert_eq!(volumes[4].host_path, Path::new("/var/data"));
        assert_eq!((volumes[5].host_path.as_path(), volumes[5].read_only), (Path::new("/srv/pv1"), true));
    }

    #[test]
    fn host_path_types_are_checked_as_the_kubelet_does() {
        use FileKind as F;
        use HostPathStep as S;
        use HostPathType as T;
        let path = Path::new("/p");
        let cases = [
            (T::Unchecked, F::Missing, Ok(S::Ready)),
            (T::DirectoryOrCreate, F::Missing, Ok(S::CreateDirectory)),
            (T::DirectoryOrCreate, F::Directory, Ok(S::Ready)),
            (T::DirectoryOrCreate, F::File, Err("hostPath type check failed: /p is not a directory")),
            (T::Directory, F::Missing, Err("hostPath type check failed: /p is not a directory")),
            (T::FileOrCreate, F::Missing, Ok(S::CreateFile)),
            (T::File, F::File, Ok(S::Ready)),
            (T::File, F::Directory, Err("hostPath type check failed: /p is not a file")),
            (T::Socket, F::File, Err("hostPath type check failed: /p is not a socket file")),
            (T::Socket, F::Socket, Ok(S::Ready)),
            (T::CharDevice, F::CharDevice, Ok(S::Ready)),
            (T::BlockDevice, F::CharDevice, Err("hostPath type check failed: /p is not a block device")),
        ];
        for (kind, found, expected) in cases {
            assert_eq!(host_path_step(kind, found, path), expected.map_err(str::to_string), "{kind:?} on {found:?}");
        }
    }

    #[test]
    fn volume_mounts_become_cri_mounts() {
        let volumes = PodVolumes {
            by_name: BTreeMap::from([
                ("cfg".into(), (PathBuf::from("/v/cfg"), true)),
                ("data".into(), (PathBuf::from("/v/data"), false)),
            ]),
        };
        let container: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "data", "mountPath": "/data", "readOnly": true, "mountPropagation": "HostToContainer"},
            {"name": "data", "mountPath": "/logs", "subPath": "logs"},
            {"name": "data", "mountPath": "/mine", "subPathExpr": "pods/$(POD)"},
        ]}))
        .expect("container");
        let env = [("POD".to_string(), "web-1".to_string())];
        let mounts = container_mounts(&container, &volumes, &env).expect("mounts");
        let view: Vec<_> = mounts
            .iter()
            .map(|p| {
                (p.mount.container_path.as_str(), p.mount.host_path.as_str(), p.mount.readonly, p.mount.propagation)
            })
            .collect();
        assert_eq!(
            view,
            vec![
                ("/etc/app", "/v/cfg", true, 0),
                ("/data", "/v/data", true, MountPropagation::PropagationHostToContainer as i32),
                ("/logs", "/v/data/logs", false, 0),
                ("/mine", "/v/data/pods/web-1", false, 0),
            ]
        );
        assert_eq!(mounts[2].sub_path_of.as_deref(), Some(Path::new("/v/data")));
        for bad in [
            json!({"name": "nope", "mountPath": "/x"}),
            json!({"name": "data", "mountPath": "/x", "subPath": "../etc"}),
        ] {
            let container: Container =
                serde_json::from_value(json!({"name": "c", "volumeMounts": [bad]})).expect("container");
            assert!(container_mounts(&container, &volumes, &[]).is_err());
        }
    }

    #[test]
    fn claims_resolve_through_their_bound_volume() {
        let pvc = |phase: &str, volume: &str| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"spec": {"volumeName": volume}, "status": {"phase": phase}})).expect("pvc")
        };
        assert_eq!(bound_volume_name("c", Some(&pvc("Bound", "pv1"))), Ok("pv1".into()));
        assert!(bound_volume_name("c", Some(&pvc("Pending", ""))).expect_err("unbound").contains("is not bound"));
        assert!(bound_volume_name("c", None).expect_err("missing").contains("not found"));
        let pv = |spec: serde_json::Value| -> PersistentVolume {
            serde_json::from_value(json!({"spec": spec})).expect("pv")
        };
        assert_eq!(
            persistent_volume_path("pv1", Some(&pv(json!({"hostPath": {"path": "/srv/a"}})))),
            Ok("/srv/a".into())
        );
        assert_eq!(persistent_volume_path("pv1", Some(&pv(json!({"local": {"path": "/srv/b"}})))), Ok("/srv/b".into()));
        assert!(persistent_volume_path("pv1", Some(&pv(json!({"nfs": {"server": "s", "path": "/"}})))).is_err());
    }

    #[test]
    fn mountinfo_mount_points_are_decoded() {
        let text =
            "36 35 98:0 / /mnt/a\\040b rw - ext3 /dev/root rw\n40 35 0:5 / /tmp/x rw shared:1 - tmpfs tmpfs rw\n";
        assert_eq!(mount_points(text), vec![PathBuf::from("/mnt/a b"), PathBuf::from("/tmp/x")]);
    }

    #[test]
    fn atomic_writes_swap_the_data_link_and_drop_removed_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let volume = dir.path().join("vol");
        let first = Payload::from([("a".into(), file("1", 0o644)), ("sub/b".into(), file("2", 0o600))]);
        assert_eq!(write_atomically(&volume, &first), Ok(true));
        assert_eq!(std::fs::read_to_string(volume.join("a")).expect("a"), "1");
        assert_eq!(std::fs::read_to_string(volume.join("sub/b")).expect("b"), "2");
        assert_eq!(std::fs::read_link(volume.join("a")).expect("link"), Path::new("..data/a"));
        let mode = std::fs::metadata(volume.join("sub/b")).expect("b").mode_bits();
        assert_eq!(mode, 0o600);
        let old_target = std::fs::read_link(volume.join(DATA_LINK)).expect("..data");
        // The same payload again changes nothing.
        assert_eq!(write_atomically(&volume, &first), Ok(false));
        assert_eq!(std::fs::read_link(volume.join(DATA_LINK)).expect("..data"), old_target);
        let second = Payload::from([("a".into(), file("3", 0o644))]);
        assert_eq!(write_atomically(&volume, &second), Ok(true));
        assert_eq!(std::fs::read_to_string(volume.join("a")).expect("a"), "3");
        assert!(std::fs::symlink_metadata(volume.join("sub")).is_err(), "a removed key's entry goes");
        assert!(!volume.join(&old_target).exists(), "the old timestamped dir goes");
        let entries: Vec<String> = std::fs::read_dir(&volume)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries.len(), 3, "a, ..data and one timestamped dir: {entries:?}");
    }

    #[test]
    fn cache_changes_wake_the_pods_that_refer_to_them() {
        let cache = Cache {
            state: Mutex::new(CacheState::default()),
            synced: [tokio::sync::watch::channel(false).0, tokio::sync::watch::channel(false).0],
        };
        let (sender, mut receiver) = mpsc::unbounded_channel();
        {
            let mut state = cache.lock();
            state.wake = Some(sender);
            state.users.insert("p1".into(), ("shop".into(), vec!["cfg".into()], vec![]));
            state.users.insert("p2".into(), ("other".into(), vec!["cfg".into()], vec![]));
        }
        let mut pending = None;
        cache.apply(watcher::Event::Init, &mut pending);
        cache.apply(watcher::Event::InitApply(config_map(json!({"k": "v"}))), &mut pending);
        cache.apply::<ConfigMap>(watcher::Event::InitDone, &mut pending);
        assert!(*cache.synced[0].borrow());
        assert_eq!(receiver.try_recv().ok(), Some("p1".into()));
        assert!(receiver.try_recv().is_err(), "only the pod of that namespace");
        // The same version again (a relist) wakes nobody; a new one does.
        cache.apply(watcher::Event::Apply(config_map(json!({"k": "v"}))), &mut pending);
        assert!(receiver.try_recv().is_err());
        let mut changed = config_map(json!({"k": "w"}));
        changed.metadata.resource_version = Some("2".into());
        cache.apply(watcher::Event::Apply(changed.clone()), &mut pending);
        assert_eq!(receiver.try_recv().ok(), Some("p1".into()));
        cache.apply(watcher::Event::Delete(changed), &mut pending);
        assert_eq!(receiver.try_recv().ok(), Some("p1".into()));
        assert!(cache.lock().config_maps.is_empty());
    }
}
