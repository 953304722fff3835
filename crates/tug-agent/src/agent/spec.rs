//! The pure translation of a pod into CRI requests: the sandbox config (hostname, DNS, port
//! mappings, labels tying it to the pod as the kubelet does) and each container's config
//! (command, args, env with `fieldRef`s resolved, working dir, linux resources).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use tug_cri::v1::{
    ContainerConfig, ContainerMetadata, DnsConfig, ImageSpec, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxPodSandboxConfig, Mount, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};

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
}

/// Why a container's config could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Identity of a pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub uid: String,
    pub name: String,
    pub namespace: String,
}

impl PodRef {
    pub fn of(pod: &Pod) -> PodRef {
        PodRef {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        }
    }

    /// The labels every sandbox and container of this pod carries.
    pub fn labels(&self, node: &str) -> HashMap<String, String> {
        [
            (POD_UID_LABEL, self.uid.as_str()),
            (POD_NAME_LABEL, self.name.as_str()),
            (POD_NAMESPACE_LABEL, self.namespace.as_str()),
            (NODE_LABEL, node),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The pod's log directory name under the agent's `pods/` dir, as the kubelet names it.
    pub fn log_dir_name(&self) -> String {
        format!("{}_{}_{}", self.namespace, self.name, self.uid)
    }
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
    labels.extend(pod_ref.labels(node));
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
        linux: Some(LinuxPodSandboxConfig::default()),
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

/// The environment of `container`, in order, with `fieldRef`s resolved and `$(VAR)` expanded.
pub fn environment(
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => match &from.field_ref {
                Some(field) => field_value(pod, pod_ip, host_ip, &field.field_path)?,
                None => return Err(ConfigError(format!("env {}: only fieldRef valueFrom is supported", var.name))),
            },
            (Some(value), None) => expand(value, &vars),
            (None, None) => String::new(),
        };
        vars.push((var.name.clone(), value));
    }
    Ok(vars)
}

/// A quantity in thousandths (millicores for cpu), rounded up.
fn milli(quantity: &str) -> Option<i64> {
    let nano = tug_core::validation::parse_quantity(quantity)?;
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

/// The container config of `container` (attempt `attempt`) of `pod`.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    context: &ContainerContext,
) -> Result<ContainerConfig, ConfigError> {
    let ContainerContext { node, attempt, pod_ip, host_ip, .. } = *context;
    let env = environment(pod, container, pod_ip, host_ip)?;
    let expand_all = |items: &Option<Vec<String>>| items.iter().flatten().map(|s| expand(s, &env)).collect();
    let mut labels = PodRef::of(pod).labels(node);
    labels.insert(CONTAINER_NAME_LABEL.into(), container.name.clone());
    let image = container.image.clone().unwrap_or_default();
    if image.is_empty() {
        return Err(ConfigError(format!("container {} has no image", container.name)));
    }
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
        linux: Some(LinuxContainerConfig { resources: Some(linux_resources(container)), security_context: None }),
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

    #[test]
    fn unsupported_env_sources_are_config_errors() {
        let mut pod = pod();
        let spec = pod.spec.as_mut().expect("spec");
        spec.containers[0].env = Some(vec![
            serde_json::from_value(
                serde_json::json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
            )
            .expect("env"),
        ]);
        let container = spec.containers[0].clone();
        let referenced = Referenced::default();
        let context =
            ContainerContext { node: "n1", attempt: 0, pod_ip: "", host_ip: "", referenced: &referenced, mounts: &[] };
        assert!(container_config(&pod, &container, &context).is_err());
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
