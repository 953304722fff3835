//! The pure translation of a pod into CRI requests: the sandbox config (hostname, DNS, port
//! mappings, labels tying it to the pod as the kubelet does) and each container's config
//! (command, args, env with `fieldRef`s resolved, working dir, linux resources).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSecurityContext, Secret};
use tug_cri::v1::security_profile::ProfileType;
use tug_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, DnsConfig, ImageSpec, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol, SecurityProfile,
};
use tug_k8s::pods::PodRef;

use super::qos::qos_class;

/// Labels the kubelet puts on sandboxes and containers; adoption after a restart finds pods by them.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Our own label: which node (agent) made the object, so a shared runtime is never swept of
/// another agent's pods.
pub const NODE_LABEL: &str = "io.tugboat.node";

/// CFS period the kubelet uses for cpu limits (100 ms), in microseconds.
const CPU_PERIOD_US: i64 = 100_000;
/// Lowest cpu.shares the kernel accepts; what a pod without a cpu request gets.
const MIN_CPU_SHARES: i64 = 2;

/// The ConfigMaps and Secrets of the pod's namespace that the pod refers to (env, envFrom,
/// volumes, image pull secrets), by name, as the agent read them; absent ones are missing.
#[derive(Debug, Clone, Default)]
pub struct Referenced {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
}

impl Referenced {
    /// The names of the ConfigMaps and of the Secrets `pod` refers to.
    pub fn names_in(pod: &Pod) -> (Vec<String>, Vec<String>) {
        let (mut config_maps, mut secrets) = (Vec::new(), Vec::new());
        let Some(spec) = pod.spec.as_ref() else { return (config_maps, secrets) };
        let containers = spec.init_containers.iter().flatten().chain(&spec.containers);
        for container in containers {
            for from in container.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
                config_maps.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
                secrets.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
            }
            for from in container.env_from.iter().flatten() {
                config_maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
                secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
            }
        }
        for volume in spec.volumes.iter().flatten() {
            config_maps.extend(volume.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(volume.secret.as_ref().and_then(|s| s.secret_name.clone()));
            for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                config_maps.extend(source.config_map.as_ref().map(|c| c.name.clone()));
                secrets.extend(source.secret.as_ref().map(|s| s.name.clone()));
            }
        }
        secrets.extend(spec.image_pull_secrets.iter().flatten().map(|r| r.name.clone()));
        for list in [&mut config_maps, &mut secrets] {
            list.retain(|n| !n.is_empty());
            list.sort();
            list.dedup();
        }
        (config_maps, secrets)
    }
}

/// What a container's config needs beyond the pod: where it runs, what the agent resolved.
#[derive(Debug, Clone, Copy)]
pub struct ContainerContext<'a> {
    pub node: &'a str,
    /// The container's restart count (CRI attempt).
    pub attempt: u32,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub referenced: &'a Referenced,
    /// The container's volume mounts, resolved to host paths.
    pub mounts: &'a [Mount],
    /// What `resourceFieldRef` reports for limits the container does not set.
    pub allocatable: NodeResources,
}

/// Why a container's config could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The labels every sandbox and container of `pod` carries: adoption after a restart finds
/// them by these.
pub fn pod_labels(pod: &PodRef, node: &str) -> HashMap<String, String> {
    [
        (POD_UID_LABEL, pod.uid.as_str()),
        (POD_NAME_LABEL, pod.name.as_str()),
        (POD_NAMESPACE_LABEL, pod.namespace.as_str()),
        (NODE_LABEL, node),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The host's resolver settings (`/etc/resolv.conf`): nameservers, search domains, options.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            // A loopback resolver on the host is unreachable from a pod's network namespace.
            Some("nameserver") => {
                dns.servers.extend(words.next().filter(|s| !s.starts_with("127.") && *s != "::1").map(str::to_string))
            }
            Some("search") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// The hostname of a pod: `spec.hostname` or its name, cut to 63 characters.
fn hostname(pod: &Pod) -> String {
    let name = pod.spec.as_ref().and_then(|s| s.hostname.clone()).unwrap_or_else(|| PodRef::of(pod).name);
    name.chars().take(63).collect::<String>().trim_end_matches(['-', '.']).to_string()
}

/// The sandbox config of `pod` (attempt `attempt`), logging under `log_directory`.
pub fn sandbox_config(pod: &Pod, node: &str, attempt: u32, dns: &DnsConfig, log_directory: &str) -> PodSandboxConfig {
    let pod_ref = PodRef::of(pod);
    let mut labels = pod.metadata.labels.clone().unwrap_or_default().into_iter().collect::<HashMap<_, _>>();
    labels.extend(pod_labels(&pod_ref, node));
    let port_mappings = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| PortMapping {
            protocol: protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or_default(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod_ref.name.clone(),
            uid: pod_ref.uid.clone(),
            namespace: pod_ref.namespace.clone(),
            attempt,
        }),
        hostname: hostname(pod),
        log_directory: log_directory.into(),
        dns_config: Some(dns.clone()),
        port_mappings,
        labels,
        annotations: pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod),
            security_context: Some(sandbox_security(pod)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn protocol(text: Option<&str>) -> Protocol {
    match text {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// The value of a downward-API field path, or why it cannot be given.
fn field_value(pod: &Pod, pod_ip: &str, host_ip: &str, path: &str) -> Result<String, ConfigError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let value = match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => spec.node_name,
        "spec.serviceAccountName" => spec.service_account_name,
        "status.podIP" => Some(pod_ip.to_string()),
        "status.podIPs" => Some(pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        _ => {
            let label = path.strip_prefix("metadata.labels['").and_then(|r| r.strip_suffix("']"));
            let annotation = path.strip_prefix("metadata.annotations['").and_then(|r| r.strip_suffix("']"));
            match (label, annotation) {
                (Some(key), _) => pod.metadata.labels.as_ref().and_then(|l| l.get(key).cloned()),
                (_, Some(key)) => pod.metadata.annotations.as_ref().and_then(|a| a.get(key).cloned()),
                _ => return Err(ConfigError(format!("fieldRef {path:?} is not supported"))),
            }
        }
    };
    Ok(value.unwrap_or_default())
}

/// `$(NAME)` references in `text` replaced by earlier variables; `$$` is a literal `$`, and
/// unknown references stay as written (the kubelet's expansion rules).
pub fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some((_, value)) = vars.iter().rev().find(|(k, _)| k == &inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// The node's allocatable cpu and memory: what `resourceFieldRef` reports for an unset limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeResources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

/// Whether `name` may be an environment variable name (Kubernetes' `IsEnvVarName`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    chars.next().is_some_and(|c| word(c) && !c.is_ascii_digit()) && chars.all(word)
}

fn config_map_not_found(name: &str) -> ConfigError {
    ConfigError(format!("configmap {name:?} not found"))
}

fn secret_not_found(name: &str) -> ConfigError {
    ConfigError(format!("secret {name:?} not found"))
}

/// The string values of a Secret (its `data`, decoded, and `stringData` if any).
fn secret_values(secret: &Secret) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> =
        secret.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned())).collect();
    values.extend(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
    values
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...) of `container`,
/// divided by `divisor` and rounded up, as the kubelet gives it; unset limits are the node's.
pub fn resource_field_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node: NodeResources,
) -> Result<String, ConfigError> {
    let resources = container.resources.clone().unwrap_or_default();
    let (kind, name) =
        resource.split_once('.').ok_or_else(|| ConfigError(format!("unsupported container resource : {resource}")))?;
    let set = match kind {
        "limits" => resources.limits.unwrap_or_default(),
        "requests" => resources.requests.unwrap_or_default(),
        _ => return Err(ConfigError(format!("unsupported container resource : {resource}"))),
    };
    let nanos = |text: &str| tug_k8s::quantity::parse_quantity(text);
    let quantity = set.get(name).and_then(|q| nanos(&q.0));
    let divisor = divisor.and_then(nanos).filter(|d| *d > 0);
    let value = match name {
        "cpu" => {
            let millis = quantity
                .map(|q| (q + 999_999) / 1_000_000)
                .or_else(|| (kind == "limits").then_some(i128::from(node.cpu_millis)));
            let divisor_millis = divisor.map_or(1000, |d| ((d + 999_999) / 1_000_000).max(1));
            ceil_div(millis.unwrap_or(0), divisor_millis)
        }
        "memory" | "ephemeral-storage" => {
            let bytes = quantity
                .map(|q| (q + 999_999_999) / 1_000_000_000)
                .or_else(|| (kind == "limits" && name == "memory").then_some(i128::from(node.memory_bytes)));
            let divisor_bytes = divisor.map_or(1, |d| ((d + 999_999_999) / 1_000_000_000).max(1));
            ceil_div(bytes.unwrap_or(0), divisor_bytes)
        }
        _ => return Err(ConfigError(format!("unsupported container resource : {resource}"))),
    };
    Ok(value.to_string())
}

fn ceil_div(value: i128, divisor: i128) -> i128 {
    (value + divisor - 1).div_euclid(divisor)
}

/// The value of one `env[].valueFrom`; `None` when an optional source is missing (the variable
/// is left out, as in Kubernetes).
fn value_from(
    pod: &Pod,
    container: &Container,
    from: &k8s_openapi::api::core::v1::EnvVarSource,
    context: &ContainerContext,
) -> Result<Option<String>, ConfigError> {
    let namespace = PodRef::of(pod).namespace;
    if let Some(field) = &from.field_ref {
        return field_value(pod, context.pod_ip, context.host_ip, &field.field_path).map(Some);
    }
    if let Some(field) = &from.resource_field_ref {
        let target = match field.container_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => pod
                .spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                .find(|c| c.name == name)
                .ok_or_else(|| ConfigError(format!("container {name} not found in pod")))?,
            None => container,
        };
        let divisor = field.divisor.as_ref().map(|d| d.0.as_str());
        return resource_field_value(target, &field.resource, divisor, context.allocatable).map(Some);
    }
    if let Some(key_ref) = &from.config_map_key_ref {
        let optional = key_ref.optional == Some(true);
        let Some(config_map) = context.referenced.config_maps.get(&key_ref.name) else {
            return if optional { Ok(None) } else { Err(config_map_not_found(&key_ref.name)) };
        };
        return match config_map.data.as_ref().and_then(|d| d.get(&key_ref.key)) {
            Some(value) => Ok(Some(value.clone())),
            None if optional => Ok(None),
            None => {
                Err(ConfigError(format!("couldn't find key {} in ConfigMap {namespace}/{}", key_ref.key, key_ref.name)))
            }
        };
    }
    if let Some(key_ref) = &from.secret_key_ref {
        let optional = key_ref.optional == Some(true);
        let Some(secret) = context.referenced.secrets.get(&key_ref.name) else {
            return if optional { Ok(None) } else { Err(secret_not_found(&key_ref.name)) };
        };
        return match secret_values(secret).remove(&key_ref.key) {
            Some(value) => Ok(Some(value)),
            None if optional => Ok(None),
            None => {
                Err(ConfigError(format!("couldn't find key {} in Secret {namespace}/{}", key_ref.key, key_ref.name)))
            }
        };
    }
    Ok(Some(String::new()))
}

/// The variables of the container's `envFrom` sources, in order (keys sorted within a
/// source); keys that are no valid variable name are skipped, as the kubelet does.
fn env_from(container: &Container, referenced: &Referenced) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let values: BTreeMap<String, String> = if let Some(r) = &source.config_map_ref {
            match referenced.config_maps.get(&r.name) {
                Some(config_map) => config_map.data.clone().unwrap_or_default(),
                None if r.optional == Some(true) => continue,
                None => return Err(config_map_not_found(&r.name)),
            }
        } else if let Some(r) = &source.secret_ref {
            match referenced.secrets.get(&r.name) {
                Some(secret) => secret_values(secret),
                None if r.optional == Some(true) => continue,
                None => return Err(secret_not_found(&r.name)),
            }
        } else {
            continue;
        };
        vars.extend(values.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).filter(|(k, _)| is_env_var_name(k)));
    }
    Ok(vars)
}

/// Sets `name` to `value`, replacing an earlier definition in place.
fn set_var(vars: &mut Vec<(String, String)>, name: &str, value: String) {
    match vars.iter_mut().find(|(k, _)| k == name) {
        Some(existing) => existing.1 = value,
        None => vars.push((name.to_string(), value)),
    }
}

/// The environment of `container`, in order: `envFrom` sources, then `env` (overriding), with
/// `valueFrom` resolved from the pod, its resources and the objects in `context.referenced`,
/// and `$(VAR)` expanded.
pub fn environment(
    pod: &Pod,
    container: &Container,
    context: &ContainerContext,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = env_from(container, context.referenced)?;
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => match value_from(pod, container, from, context)? {
                Some(value) => value,
                None => continue,
            },
            (Some(value), None) => expand(value, &vars),
            (None, None) => String::new(),
        };
        set_var(&mut vars, &var.name, value);
    }
    Ok(vars)
}

/// A quantity in thousandths (millicores for cpu), rounded up.
fn milli(quantity: &str) -> Option<i64> {
    let nano = tug_k8s::quantity::parse_quantity(quantity)?;
    i64::try_from((nano + 999_999) / 1_000_000).ok()
}

/// Linux resources from requests and limits: cpu shares from the request, cfs quota from the
/// limit, memory limit in bytes (the kubelet's conversion).
pub fn linux_resources(container: &Container) -> LinuxContainerResources {
    let resources = container.resources.clone().unwrap_or_default();
    let (requests, limits) = (resources.requests.unwrap_or_default(), resources.limits.unwrap_or_default());
    let cpu_request = requests.get("cpu").or(limits.get("cpu")).and_then(|q| milli(&q.0));
    let cpu_limit = limits.get("cpu").and_then(|q| milli(&q.0));
    let memory_limit = limits.get("memory").and_then(|q| milli(&q.0)).map(|m| (m + 999) / 1000);
    LinuxContainerResources {
        cpu_shares: cpu_request.map_or(MIN_CPU_SHARES, |m| (m * 1024 / 1000).max(MIN_CPU_SHARES)),
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD_US } else { 0 },
        // 1 ms is the smallest quota the kernel takes.
        cpu_quota: cpu_limit.map_or(0, |m| (m * CPU_PERIOD_US / 1000).max(1000)),
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        ..Default::default()
    }
}

/// Paths the kubelet masks in every unprivileged container (its default `procMount`).
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths the kubelet makes read-only in every unprivileged container.
const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The cgroup the pod's sandbox and containers go under, named per QoS class as the kubelet
/// does with the cgroupfs driver.
pub fn cgroup_parent(pod: &Pod) -> String {
    let [guaranteed, burstable, best_effort] = pod_cgroup_dirs(&PodRef::of(pod).uid);
    match qos_class(pod).as_str() {
        "Guaranteed" => guaranteed,
        "Burstable" => burstable,
        _ => best_effort,
    }
}

/// Every cgroup a pod with uid `uid` may have (one per QoS class), for its cleanup.
pub fn pod_cgroup_dirs(uid: &str) -> [String; 3] {
    ["", "burstable/", "besteffort/"].map(|class| format!("/kubepods/{class}pod{uid}"))
}

/// The pod's namespaces: network and IPC shared by the pod, processes per container unless
/// `shareProcessNamespace`; `hostPID`/`hostIPC` use the node's.
fn namespace_options(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let pid = if spec.host_pid == Some(true) {
        NamespaceMode::Node
    } else if spec.share_process_namespace == Some(true) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    let ipc = if spec.host_ipc == Some(true) { NamespaceMode::Node } else { NamespaceMode::Pod };
    NamespaceOption { network: NamespaceMode::Pod as i32, pid: pid as i32, ipc: ipc as i32, ..Default::default() }
}

/// A `seccompProfile` as CRI takes it; none means unconfined, as the kubelet's default.
fn seccomp(profile: Option<&k8s_openapi::api::core::v1::SeccompProfile>) -> SecurityProfile {
    match profile.map(|p| (p.type_.as_str(), p.localhost_profile.clone())) {
        Some(("RuntimeDefault", _)) => {
            SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, ..Default::default() }
        }
        Some(("Localhost", Some(path))) => {
            SecurityProfile { profile_type: ProfileType::Localhost as i32, localhost_ref: path }
        }
        _ => SecurityProfile { profile_type: ProfileType::Unconfined as i32, ..Default::default() },
    }
}

fn pod_security(pod: &Pod) -> PodSecurityContext {
    pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default()
}

/// The pod's supplemental groups, with its `fsGroup` (which the kubelet adds).
fn supplemental_groups(pod: &PodSecurityContext) -> Vec<i64> {
    let mut groups = pod.supplemental_groups.clone().unwrap_or_default();
    groups.extend(pod.fs_group.filter(|g| !groups.contains(g)));
    groups
}

/// The sandbox's security context from the pod's: user, groups, namespaces, and privileged
/// when any container is.
pub fn sandbox_security(pod: &Pod) -> LinuxSandboxSecurityContext {
    let security = pod_security(pod);
    let privileged = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(pod)),
        run_as_user: security.run_as_user.map(|value| Int64Value { value }),
        run_as_group: security.run_as_group.map(|value| Int64Value { value }),
        supplemental_groups: supplemental_groups(&security),
        privileged,
        seccomp: Some(seccomp(security.seccomp_profile.as_ref())),
        ..Default::default()
    }
}

/// The effective `runAsUser`, `runAsGroup` and `runAsNonRoot` of `container`: its own settings
/// over the pod's.
fn effective_user(pod: &Pod, container: &Container) -> (Option<i64>, Option<i64>, bool) {
    let (pod, own) = (pod_security(pod), container.security_context.clone().unwrap_or_default());
    (
        own.run_as_user.or(pod.run_as_user),
        own.run_as_group.or(pod.run_as_group),
        own.run_as_non_root.or(pod.run_as_non_root) == Some(true),
    )
}

/// The pod as the kubelet names it in messages: `name_namespace(uid)`.
fn pod_label(pod: &Pod) -> String {
    let pod = PodRef::of(pod);
    format!("{}_{}({})", pod.name, pod.namespace, pod.uid)
}

/// Refuses a container that must not run as root but would (`runAsNonRoot`): by its
/// `runAsUser`, or else by its image's user (`image_user`: the uid, or a user name that cannot
/// be checked), with the kubelet's messages.
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image_user: Option<(Option<i64>, &str)>,
) -> Result<(), ConfigError> {
    let (user, _, non_root) = effective_user(pod, container);
    if !non_root {
        return Ok(());
    }
    let (label, name) = (pod_label(pod), &container.name);
    if let Some(user) = user {
        return if user == 0 {
            Err(ConfigError(format!(
                "container's runAsUser breaks non-root policy (pod: {label:?}, container: {name})"
            )))
        } else {
            Ok(())
        };
    }
    match image_user {
        // An image that names no user runs as root.
        Some((Some(0), _)) | Some((None, "")) => Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root (pod: {label:?}, container: {name})"
        ))),
        Some((None, username)) => Err(ConfigError(format!(
            "container has runAsNonRoot and image has non-numeric user ({username}), cannot verify user is non-root (pod: {label:?}, container: {name})"
        ))),
        Some((Some(_), _)) | None => Ok(()),
    }
}

/// The container's security context: user and groups (its own over the pod's), privileges,
/// capabilities, a read-only root, and the kubelet's masked paths unless privileged.
pub fn container_security(pod: &Pod, container: &Container) -> LinuxContainerSecurityContext {
    let own = container.security_context.clone().unwrap_or_default();
    let pod_level = pod_security(pod);
    let (user, group, _) = effective_user(pod, container);
    let privileged = own.privileged == Some(true);
    let capabilities = own.capabilities.clone().unwrap_or_default();
    let unmasked = privileged || own.proc_mount.as_deref() == Some("Unmasked");
    let paths = |list: &[&str]| if unmasked { Vec::new() } else { list.iter().map(|p| p.to_string()).collect() };
    LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: capabilities.add.unwrap_or_default(),
            drop_capabilities: capabilities.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: user.map(|value| Int64Value { value }),
        run_as_group: group.map(|value| Int64Value { value }),
        readonly_rootfs: own.read_only_root_filesystem == Some(true),
        supplemental_groups: supplemental_groups(&pod_level),
        // Only an explicit `allowPrivilegeEscalation: false` sets no_new_privs.
        no_new_privs: own.allow_privilege_escalation == Some(false),
        masked_paths: paths(&MASKED_PATHS),
        readonly_paths: paths(&READONLY_PATHS),
        seccomp: Some(seccomp(own.seccomp_profile.as_ref().or(pod_level.seccomp_profile.as_ref()))),
        ..Default::default()
    }
}

/// The container config of `container` (attempt `attempt`) of `pod`.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    context: &ContainerContext,
) -> Result<ContainerConfig, ConfigError> {
    let ContainerContext { node, attempt, .. } = *context;
    let env = environment(pod, container, context)?;
    let expand_all = |items: &Option<Vec<String>>| items.iter().flatten().map(|s| expand(s, &env)).collect();
    let mut labels = pod_labels(&PodRef::of(pod), node);
    labels.insert(CONTAINER_NAME_LABEL.into(), container.name.clone());
    let image = container.image.clone().unwrap_or_default();
    if image.is_empty() {
        return Err(ConfigError(format!("container {} has no image", container.name)));
    }
    verify_run_as_non_root(pod, container, None)?;
    Ok(ContainerConfig {
        metadata: Some(ContainerMetadata { name: container.name.clone(), attempt }),
        image: Some(ImageSpec { image, ..Default::default() }),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env.into_iter().map(|(key, value)| KeyValue { key, value }).collect(),
        labels,
        log_path: format!("{}/{attempt}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        mounts: context.mounts.to_vec(),
        linux: Some(LinuxContainerConfig {
            resources: Some(linux_resources(container)),
            security_context: Some(container_security(pod, container)),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "main",
                    "image": "localhost/busybox:latest",
                    "command": ["httpd"],
                    "args": ["-p", "$(PORT)", "$$(PORT)"],
                    "workingDir": "/tmp",
                    "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}],
                    "env": [
                        {"name": "PORT", "value": "8080"},
                        {"name": "URL", "value": "http://$(MY_IP):$(PORT)/$(NOPE)"},
                        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    ],
                    "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
                }],
            },
        }))
        .expect("pod")
    }

    #[test]
    fn resolv_conf_gives_servers_searches_and_options_but_no_loopback_resolver() {
        let dns =
            parse_resolv_conf("# c\nnameserver 10.0.0.53\nnameserver 127.0.0.53\nsearch a.b c\noptions ndots:2\n");
        assert_eq!(dns.servers, vec!["10.0.0.53"]);
        assert_eq!(dns.searches, vec!["a.b", "c"]);
        assert_eq!(dns.options, vec!["ndots:2"]);
    }

    #[test]
    fn sandbox_carries_pod_identity_hostname_dns_and_host_ports() {
        let dns = DnsConfig { servers: vec!["10.0.0.53".into()], ..Default::default() };
        let config = sandbox_config(&pod(), "n1", 2, &dns, "/logs");
        let meta = config.metadata.expect("metadata");
        assert_eq!(
            (meta.name.as_str(), meta.namespace.as_str(), meta.uid.as_str(), meta.attempt),
            ("web-1", "shop", "u-1", 2)
        );
        assert_eq!(config.hostname, "web-1");
        assert_eq!(config.labels[POD_UID_LABEL], "u-1");
        assert_eq!(config.labels[NODE_LABEL], "n1");
        assert_eq!(config.labels["app"], "web");
        assert_eq!(config.dns_config.expect("dns").servers, vec!["10.0.0.53"]);
        assert_eq!(config.port_mappings.len(), 1);
        assert_eq!((config.port_mappings[0].container_port, config.port_mappings[0].host_port), (80, 8080));
    }

    #[test]
    fn container_config_resolves_env_expands_args_and_converts_resources() {
        let pod = pod();
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let referenced = Referenced::default();
        let context = ContainerContext {
            node: "n1",
            attempt: 3,
            pod_ip: "10.1.0.5",
            host_ip: "192.0.2.2",
            referenced: &referenced,
            mounts: &[],
            allocatable: NodeResources::default(),
        };
        let config = container_config(&pod, container, &context).expect("config");
        let env: Vec<(String, String)> = config.envs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MY_IP"), Some("10.1.0.5"));
        assert_eq!(get("NS"), Some("shop"));
        assert_eq!(get("APP"), Some("web"));
        // MY_IP is defined after URL, so it stays unexpanded (as in Kubernetes).
        assert_eq!(get("URL"), Some("http://$(MY_IP):8080/$(NOPE)"));
        assert_eq!(config.args, vec!["-p", "8080", "$(PORT)"]);
        assert_eq!(config.working_dir, "/tmp");
        assert_eq!(config.log_path, "main/3.log");
        assert_eq!(config.metadata.expect("metadata").attempt, 3);
        assert_eq!(config.labels[CONTAINER_NAME_LABEL], "main");
        let resources = config.linux.and_then(|l| l.resources).expect("resources");
        assert_eq!((resources.cpu_shares, resources.cpu_quota, resources.cpu_period), (256, 50_000, 100_000));
        assert_eq!(resources.memory_limit_in_bytes, 64 * 1024 * 1024);
    }

    fn referenced() -> Referenced {
        let config_map: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "settings"},
            "data": {"MODE": "fast", "LEVEL": "3", "bad key": "x", "1st": "y"},
        }))
        .expect("config map");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "creds"},
            "data": {"TOKEN": "czNjcjN0"},
        }))
        .expect("secret");
        Referenced {
            config_maps: [("settings".to_string(), config_map)].into_iter().collect(),
            secrets: [("creds".to_string(), secret)].into_iter().collect(),
        }
    }

    /// The environment of a one-container pod with `env` and `envFrom`, against [`referenced`].
    fn env_of(env: serde_json::Value, env_from: serde_json::Value) -> Result<Vec<(String, String)>, ConfigError> {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{
                "name": "c",
                "image": "img",
                "env": env,
                "envFrom": env_from,
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            }]},
        }))
        .expect("pod");
        let referenced = referenced();
        let context = ContainerContext {
            node: "n1",
            attempt: 0,
            pod_ip: "10.0.0.9",
            host_ip: "",
            referenced: &referenced,
            mounts: &[],
            allocatable: NodeResources { cpu_millis: 4000, memory_bytes: 1 << 30 },
        };
        environment(&pod, &pod.spec.as_ref().expect("spec").containers[0], &context)
    }

    #[test]
    fn env_comes_from_config_maps_secrets_and_resources() {
        let env = serde_json::json!([
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
            {"name": "NOKEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k", "optional": true}}},
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "REQ_MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
            {"name": "SAY", "value": "$(MODE)-$(P_LEVEL)"},
            {"name": "P_MODE", "value": "overridden"},
        ]);
        let env_from = serde_json::json!([
            {"configMapRef": {"name": "settings"}, "prefix": "P_"},
            {"secretRef": {"name": "missing", "optional": true}},
        ]);
        let vars = env_of(env, env_from).expect("env");
        let expected = [
            ("P_1st", "y"),
            ("P_LEVEL", "3"),
            ("P_MODE", "overridden"),
            ("MODE", "fast"),
            ("TOKEN", "s3cr3t"),
            ("CPU_M", "250"),
            ("CPU", "4"),
            ("MEM_MI", "128"),
            ("REQ_MEM", "67108864"),
            ("SAY", "fast-3"),
        ];
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn missing_sources_are_config_errors_with_kubernetes_messages() {
        let key_ref = |kind: &str, name: &str, key: &str| serde_json::json!([{"name": "X", "valueFrom": {kind: {"name": name, "key": key}}}]);
        let none = serde_json::json!([]);
        let cases = [
            (key_ref("configMapKeyRef", "nope", "k"), none.clone(), r#"configmap "nope" not found"#),
            (key_ref("configMapKeyRef", "settings", "k"), none.clone(), "couldn't find key k in ConfigMap ns/settings"),
            (key_ref("secretKeyRef", "nope", "k"), none.clone(), r#"secret "nope" not found"#),
            (key_ref("secretKeyRef", "creds", "k"), none.clone(), "couldn't find key k in Secret ns/creds"),
            (none.clone(), serde_json::json!([{"configMapRef": {"name": "nope"}}]), r#"configmap "nope" not found"#),
            (none.clone(), serde_json::json!([{"secretRef": {"name": "nope"}}]), r#"secret "nope" not found"#),
        ];
        for (env, env_from, message) in cases {
            assert_eq!(env_of(env.clone(), env_from), Err(ConfigError(message.into())), "{env}");
        }
    }

    #[test]
    fn env_var_names() {
        for good in ["A", "_a.b-c", "x1", "-x"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["", "1a", "a b", "a=b"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    fn secured(
        pod_security: serde_json::Value,
        container_security: serde_json::Value,
        limits: serde_json::Value,
    ) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "securityContext": pod_security,
                "containers": [{"name": "c", "image": "img", "securityContext": container_security,
                                "resources": {"limits": limits}}],
            },
        }))
        .expect("pod")
    }

    #[test]
    fn security_contexts_merge_pod_and_container_settings() {
        let pod = secured(
            serde_json::json!({"runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000, "supplementalGroups": [4000]}),
            serde_json::json!({
                "runAsUser": 1001, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
            }),
            serde_json::json!({}),
        );
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let security = container_security(&pod, container);
        assert_eq!(security.run_as_user, Some(Int64Value { value: 1001 }));
        assert_eq!(security.run_as_group, Some(Int64Value { value: 2000 }));
        assert_eq!(security.supplemental_groups, vec![4000, 3000]);
        assert!(security.readonly_rootfs && security.no_new_privs && !security.privileged);
        let capabilities = security.capabilities.expect("capabilities");
        assert_eq!(
            (capabilities.add_capabilities, capabilities.drop_capabilities),
            (vec!["NET_ADMIN".into()], vec!["ALL".into()])
        );
        assert!(security.masked_paths.contains(&"/proc/kcore".to_string()));
        assert!(security.readonly_paths.contains(&"/proc/sys".to_string()));
        let namespaces = security.namespace_options.expect("namespaces");
        assert_eq!((namespaces.network, namespaces.pid), (NamespaceMode::Pod as i32, NamespaceMode::Container as i32));
        let sandbox = sandbox_security(&pod);
        assert_eq!((sandbox.run_as_user, sandbox.privileged), (Some(Int64Value { value: 1000 }), false));

        let privileged = secured(serde_json::json!({}), serde_json::json!({"privileged": true}), serde_json::json!({}));
        let security = container_security(&privileged, &privileged.spec.as_ref().expect("spec").containers[0]);
        assert!(security.privileged && security.masked_paths.is_empty() && !security.no_new_privs);
        assert!(sandbox_security(&privileged).privileged);
    }

    #[test]
    fn run_as_non_root_refuses_root() {
        let pod =
            |user: serde_json::Value| secured(serde_json::json!({"runAsNonRoot": true}), user, serde_json::json!({}));
        let label = "(pod: \"p_ns(u1)\", container: c)";
        let cases = [
            (
                serde_json::json!({"runAsUser": 0}),
                None,
                Some(format!("container's runAsUser breaks non-root policy {label}")),
            ),
            (serde_json::json!({"runAsUser": 1000}), Some((Some(0), "")), None),
            (serde_json::json!({}), None, None),
            (
                serde_json::json!({}),
                Some((Some(0), "")),
                Some(format!("container has runAsNonRoot and image will run as root {label}")),
            ),
            (
                serde_json::json!({}),
                Some((None, "")),
                Some(format!("container has runAsNonRoot and image will run as root {label}")),
            ),
            (serde_json::json!({}), Some((Some(65534), "")), None),
            (
                serde_json::json!({}),
                Some((None, "nobody")),
                Some(format!(
                    "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root {label}"
                )),
            ),
            (serde_json::json!({"runAsNonRoot": false}), Some((Some(0), "")), None),
        ];
        for (user, image, expected) in cases {
            let pod = pod(user.clone());
            let container = &pod.spec.as_ref().expect("spec").containers[0];
            let got = verify_run_as_non_root(&pod, container, image).err().map(|e| e.0);
            assert_eq!(got, expected, "{user} {image:?}");
        }
    }

    #[test]
    fn pods_get_the_cgroup_of_their_qos_class() {
        let none = serde_json::json!({});
        let cases = [
            (serde_json::json!({}), "/kubepods/besteffort/podu1"),
            (serde_json::json!({"memory": "64Mi"}), "/kubepods/burstable/podu1"),
            (serde_json::json!({"cpu": "1", "memory": "64Mi"}), "/kubepods/podu1"),
        ];
        for (limits, parent) in cases {
            let pod = secured(none.clone(), none.clone(), limits.clone());
            assert_eq!(cgroup_parent(&pod), parent, "{limits}");
            assert!(pod_cgroup_dirs("u1").contains(&parent.to_string()), "{parent} is cleaned up");
            let config = sandbox_config(&pod, "n1", 0, &DnsConfig::default(), "/logs");
            assert_eq!(config.linux.expect("linux").cgroup_parent, parent);
        }
    }

    #[test]
    fn referenced_objects_are_named_once_from_env_volumes_and_pull_secrets() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {
                "imagePullSecrets": [{"name": "registry"}],
                "containers": [{
                    "name": "c",
                    "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "a"}}},
                            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "b"}}}],
                    "envFrom": [{"configMapRef": {"name": "settings"}}],
                }],
                "volumes": [
                    {"name": "v1", "configMap": {"name": "files"}},
                    {"name": "v2", "secret": {"secretName": "tls"}},
                    {"name": "v3", "projected": {"sources": [{"configMap": {"name": "more"}}, {"secret": {"name": "creds"}}]}},
                ],
            },
        }))
        .expect("pod");
        let (config_maps, secrets) = Referenced::names_in(&pod);
        assert_eq!(config_maps, ["files", "more", "settings"]);
        assert_eq!(secrets, ["creds", "registry", "tls"]);
    }

    #[test]
    fn no_resources_means_minimum_shares_and_no_limits() {
        let container = Container { name: "c".into(), ..Default::default() };
        let resources = linux_resources(&container);
        assert_eq!((resources.cpu_shares, resources.cpu_quota, resources.memory_limit_in_bytes), (2, 0, 0));
    }
}
