//! The pure core of pod volumes: a pod, its volumes and what the agent resolved for them
//! (ConfigMaps, Secrets, bound claims, the node's allocatable resources) become
//! [`PlannedVolume`]s — a directory on the host and how to set it up — and a container's
//! `volumeMounts` become CRI [`Mount`]s. No IO.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, SecretProjection, Volume, VolumeMount,
};
use tug_cri::v1::{Mount, MountPropagation};

use super::super::spec::{NodeResources, Referenced, expand, resource_field_value};
use super::atomic::{FileContent, Payload, check_payload_path};

/// Mode of projected files when neither the item nor the volume names one (the API default, 0644).
const DEFAULT_FILE_MODE: u32 = 0o644;
/// An `emptyDir` is writable by any user of the pod, as the kubelet makes it.
pub const EMPTY_DIR_MODE: u32 = 0o777;

/// Why a volume could not be set up; shown as the kubelet shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

impl VolumeError {
    pub fn new(volume: &str, message: impl Into<String>) -> VolumeError {
        VolumeError { volume: volume.into(), message: message.into() }
    }
}

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
            Payload::from([
                ("a.conf".into(), FileContent::text("A", 0o600)),
                ("b.conf".into(), FileContent::text("B", 0o600))
            ])
        );
        assert_eq!(payload_of(&volumes[1]), Payload::from([("dir/b".into(), FileContent::text("B", 0o640))]));
        assert_eq!(
            volumes[2].setup,
            Setup::Files {
                payload: Payload::from([
                    ("password".into(), FileContent::text("hunter2", 0o400)),
                    ("user".into(), FileContent::text("admin", 0o400))
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
                ("conf/a".into(), FileContent::text("A", 0o440)),
                ("ns".into(), FileContent::text("shop", 0o440)),
                ("user".into(), FileContent::text("admin", 0o400)),
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
}
