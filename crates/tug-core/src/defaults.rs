//! Kubernetes' defaulting for the served kinds, on objects as JSON (`serde_json::Value`).
//!
//! Mirrors `pkg/apis/*/v1/defaults.go` of Kubernetes v1.33, plus the few values the real API
//! server fills in its registry strategies or built-in admission that every `kubectl get -o yaml`
//! shows: a Job's generated selector, a Namespace's `kubernetes` finalizer, a Pod's priority, a
//! Service's IP family fields. Allocation (cluster IPs, node ports) and admission that needs
//! other objects (service-account token volumes, PriorityClass lookups) belong to the API server.
//!
//! Defaulting never fails: a field of the wrong JSON type is left alone for validation (or the
//! decoder) to reject.

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

/// Kubernetes' defaulting (pkg/apis/*/v1/defaults.go) for a freshly created or updated object.
pub fn apply_defaults(rt: &ResourceType, obj: &mut serde_json::Value) {
    let Some(root) = obj.as_object_mut() else { return };
    match (rt.group, rt.kind) {
        ("", "Pod") => default_pod(root),
        ("", "Service") => default_service(root),
        ("", "Namespace") => default_namespace(root),
        ("", "Secret") => {
            default_str(root, "type", "Opaque");
        }
        ("", "PersistentVolumeClaim") => default_pvc(root),
        ("", "PersistentVolume") => default_pv(root),
        ("", "Node") => default_node(root),
        ("", "Endpoints") => default_endpoints(root),
        ("", "LimitRange") => default_limit_range(root),
        ("apps", "Deployment") => default_deployment(root),
        ("apps", "ReplicaSet") => default_replica_set(root),
        ("apps", "StatefulSet") => default_stateful_set(root),
        ("apps", "DaemonSet") => default_daemon_set(root),
        ("batch", "Job") => default_job(root),
        ("batch", "CronJob") => default_cron_job(root),
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(root, rt.version),
        ("discovery.k8s.io", "EndpointSlice") => default_endpoint_slice(root),
        ("scheduling.k8s.io", "PriorityClass") => {
            default_str(root, "preemptionPolicy", "PreemptLowerPriority");
        }
        ("storage.k8s.io", "StorageClass") => {
            default_str(root, "reclaimPolicy", "Delete");
            default_str(root, "volumeBindingMode", "Immediate");
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => default_role_binding(root),
        _ => {}
    }
}

/// The status a new object starts with, as the registry strategies' `PrepareForCreate` leave it:
/// whatever the client sent is replaced (status is the controllers' to write), and the fields
/// Kubernetes' Go structs serialize without `omitempty` are there as zero — typed clients (the
/// Python client, Java's) refuse a `status` that lacks its schema's required fields. Kinds
/// without a status (ConfigMap, …) and those whose status their writer owns from the start
/// (Node, Event, Lease) are left alone.
pub fn status_on_create(rt: &ResourceType, obj: &mut Value) {
    let status = match (rt.group, rt.kind) {
        ("", "Pod") => json!({"phase": "Pending", "qosClass": tug_k8s::qos::qos_class(obj)}),
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "PersistentVolumeClaim" | "PersistentVolume") => json!({"phase": "Pending"}),
        ("", "Service") => json!({"loadBalancer": {}}),
        ("", "Node" | "Event") => return,
        ("apps", "ReplicaSet") => json!({"replicas": 0}),
        // availableReplicas lost its omitempty when it went beta, so it is sent though optional.
        ("apps", "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "DaemonSet") => json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }),
        ("autoscaling", "HorizontalPodAutoscaler") if rt.version == "v1" => {
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        }
        ("autoscaling", "HorizontalPodAutoscaler") => json!({"desiredReplicas": 0}),
        ("policy", "PodDisruptionBudget") => json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        }),
        _ if rt.has(crate::registry::Subresource::Status) => json!({}),
        _ => return,
    };
    if let Some(root) = obj.as_object_mut() {
        root.insert("status".into(), status);
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers: "unset" means what Go's zero value means — absent, null, or "" for strings.

/// The object at `key`, created when absent or null; `None` when it holds something else.
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The object at `key` only if it already exists.
fn existing<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// Every object element of the array at `key`.
fn each<'a>(map: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    matches!(map.get(key), None | Some(Value::Null))
}

fn is_unset_str(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Sets a pointer-like field (absent or null) to `value`.
fn default_value(map: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(map, key) {
        map.insert(key.to_string(), value);
    }
}

/// Sets a string field that is absent, null or empty.
fn default_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if is_unset_str(map, key) {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates

/// `SetDefaults_Pod`: what only a Pod gets, on top of its spec's defaults.
fn default_pod(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    default_pod_spec(spec);
    for key in ["containers", "initContainers"] {
        for container in each(spec, key) {
            default_requests_to_limits(container);
        }
    }
    default_value(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for container in each(spec, key) {
                default_host_ports(container);
            }
        }
    }
    default_priority(spec);
}

/// The Priority admission plugin: without a PriorityClass (and with no global default class,
/// which Tugboat does not have) a pod gets priority 0; the two built-in system classes are known.
fn default_priority(spec: &mut Map<String, Value>) {
    let value = match str_of(spec, "priorityClassName") {
        "" => 0,
        "system-node-critical" => 2_000_001_000,
        "system-cluster-critical" => 2_000_000_000,
        // A user class: only the API server can look its value up.
        _ => return,
    };
    default_value(spec, "priority", json!(value));
    default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
}

/// Requests default to limits on Pods (not templates), resource by resource.
fn default_requests_to_limits(container: &mut Map<String, Value>) {
    let Some(resources) = existing(container, "resources") else { return };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else { return };
    let Some(requests) = child(resources, "requests") else { return };
    for (name, quantity) in limits {
        requests.entry(name).or_insert(quantity);
    }
}

fn default_host_ports(container: &mut Map<String, Value>) {
    for port in each(container, "ports") {
        let host_port = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
        if host_port == 0
            && let Some(container_port) = port.get("containerPort").cloned()
        {
            port.insert("hostPort".into(), container_port);
        }
    }
}

/// `SetDefaults_PodSpec` and everything nested in a pod spec (containers, probes, volumes).
fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_value(spec, "securityContext", json!({}));
    default_value(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for container in each(spec, key) {
            default_container(container);
        }
    }
    for volume in each(spec, "volumes") {
        default_volume(volume);
    }
}

/// A pod template (`spec.template` of workloads): metadata untouched, spec defaulted.
fn default_template(template: &mut Map<String, Value>) {
    if let Some(spec) = child(template, "spec") {
        default_pod_spec(spec);
    }
}

fn default_container(container: &mut Map<String, Value>) {
    if is_unset_str(container, "imagePullPolicy") {
        let policy = default_pull_policy(str_of(container, "image"));
        container.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(container, "terminationMessagePath", "/dev/termination-log");
    default_str(container, "terminationMessagePolicy", "File");
    // Go always serialises the (non-pointer) resources struct.
    default_value(container, "resources", json!({}));
    for port in each(container, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = existing(container, probe) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = existing(container, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(http_get) = existing(lifecycle, hook).and_then(|h| existing(h, "httpGet")) {
                default_http_get(http_get);
            }
        }
    }
    for env in each(container, "env") {
        if let Some(value_from) = existing(env, "valueFrom") {
            default_field_refs(value_from);
        }
    }
}

/// `Always` for `:latest` and untagged images (which mean `:latest`), else `IfNotPresent`; an
/// image pinned only by digest has no tag and is `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image) == Some("latest") { "Always" } else { "IfNotPresent" }
}

/// The tag of an image reference as Docker's parser sees it: after the last `:` of the last
/// path component, with no tag (or digest) meaning `latest`.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_component = name.rsplit('/').next().unwrap_or(name);
    match last_component.rsplit_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest.is_some() => None,
        None => Some("latest"),
    }
}

fn default_probe(probe: &mut Map<String, Value>) {
    for (key, value) in [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)]
    {
        // Zero counts as unset: these are plain int32 fields upstream.
        let zero = match probe.get(key) {
            None | Some(Value::Null) => true,
            Some(v) => v.as_i64() == Some(0),
        };
        if zero {
            probe.insert(key.into(), json!(value));
        }
    }
    if let Some(http_get) = existing(probe, "httpGet") {
        default_http_get(http_get);
    }
}

fn default_http_get(http_get: &mut Map<String, Value>) {
    default_str(http_get, "path", "/");
    default_str(http_get, "scheme", "HTTP");
}

/// `fieldRef.apiVersion` is `v1`; `resourceFieldRef.divisor` serialises as `"0"` when unset.
fn default_field_refs(source: &mut Map<String, Value>) {
    if let Some(field_ref) = existing(source, "fieldRef") {
        default_str(field_ref, "apiVersion", "v1");
    }
    if let Some(resource_ref) = existing(source, "resourceFieldRef") {
        default_value(resource_ref, "divisor", json!("0"));
    }
}

/// Volume sources: no source means `emptyDir`; projected/secret/configMap/downwardAPI files get
/// mode 0644 (420).
fn default_volume(volume: &mut Map<String, Value>) {
    const SOURCES: &[&str] = &[
        "hostPath",
        "emptyDir",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "persistentVolumeClaim",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "downwardAPI",
        "fc",
        "azureFile",
        "configMap",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "projected",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "csi",
        "ephemeral",
        "image",
    ];
    if SOURCES.iter().all(|source| is_unset(volume, source)) {
        volume.insert("emptyDir".into(), json!({}));
    }
    if let Some(host_path) = existing(volume, "hostPath") {
        default_value(host_path, "type", json!(""));
    }
    for key in ["secret", "configMap", "projected"] {
        if let Some(source) = existing(volume, key) {
            default_value(source, "defaultMode", json!(420));
        }
    }
    if let Some(downward) = existing(volume, "downwardAPI") {
        default_value(downward, "defaultMode", json!(420));
        for item in each(downward, "items") {
            default_field_refs(item);
        }
    }
    if let Some(projected) = existing(volume, "projected") {
        for source in each(projected, "sources") {
            if let Some(downward) = existing(source, "downwardAPI") {
                for item in each(downward, "items") {
                    default_field_refs(item);
                }
            }
            if let Some(token) = existing(source, "serviceAccountToken") {
                default_value(token, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(image) = existing(volume, "image")
        && is_unset_str(image, "pullPolicy")
    {
        let policy = default_pull_policy(str_of(image, "reference"));
        image.insert("pullPolicy".into(), json!(policy));
    }
}

// ---------------------------------------------------------------------------------------------
// apps/v1

fn default_deployment(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    default_value(spec, "replicas", json!(1));
    if let Some(strategy) = child(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child(strategy, "rollingUpdate")
        {
            default_value(rolling, "maxUnavailable", json!("25%"));
            default_value(rolling, "maxSurge", json!("25%"));
        }
    }
    default_value(spec, "revisionHistoryLimit", json!(10));
    default_value(spec, "progressDeadlineSeconds", json!(600));
    if let Some(template) = child(spec, "template") {
        default_template(template);
    }
}

fn default_replica_set(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    default_value(spec, "replicas", json!(1));
    if let Some(template) = child(spec, "template") {
        default_template(template);
    }
}

fn default_stateful_set(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = child(spec, "updateStrategy") {
        if is_unset_str(strategy, "type") {
            strategy.insert("type".into(), json!("RollingUpdate"));
            default_value(strategy, "rollingUpdate", json!({}));
        }
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = existing(strategy, "rollingUpdate")
        {
            default_value(rolling, "partition", json!(0));
        }
    }
    if let Some(policy) = child(spec, "persistentVolumeClaimRetentionPolicy") {
        default_str(policy, "whenDeleted", "Retain");
        default_str(policy, "whenScaled", "Retain");
    }
    default_value(spec, "replicas", json!(1));
    default_value(spec, "revisionHistoryLimit", json!(10));
    if let Some(template) = child(spec, "template") {
        default_template(template);
    }
    for claim in each(spec, "volumeClaimTemplates") {
        default_pvc(claim);
    }
}

fn default_daemon_set(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    if let Some(strategy) = child(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child(strategy, "rollingUpdate")
        {
            default_value(rolling, "maxUnavailable", json!(1));
            default_value(rolling, "maxSurge", json!(0));
        }
    }
    default_value(spec, "revisionHistoryLimit", json!(10));
    if let Some(template) = child(spec, "template") {
        default_template(template);
    }
}

// ---------------------------------------------------------------------------------------------
// batch/v1

/// `SetDefaults_Job`, preceded by the Job strategy's selector generation. Note the template's
/// `restartPolicy` is defaulted to `Always` like every pod spec, exactly as upstream: a Job
/// without one is then rejected with `Unsupported value: "Always"`, the error kubectl users know.
fn default_job(root: &mut Map<String, Value>) {
    generate_job_selector(root);
    let template_labels = root
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .cloned();
    let Some(spec) = child(root, "spec") else { return };
    if is_unset(spec, "completions") && is_unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_value(spec, "parallelism", json!(1));
    let backoff = if is_unset(spec, "backoffLimitPerIndex") { 6 } else { i32::MAX as i64 };
    default_value(spec, "backoffLimit", json!(backoff));
    default_value(spec, "completionMode", json!("NonIndexed"));
    default_value(spec, "suspend", json!(false));
    let has_failure_policy = !is_unset(spec, "podFailurePolicy");
    if let Some(policy) = existing(spec, "podFailurePolicy") {
        for rule in each(policy, "rules") {
            for pattern in each(rule, "onPodConditions") {
                default_str(pattern, "status", "True");
            }
        }
    }
    let replacement = if has_failure_policy { "Failed" } else { "TerminatingOrFailed" };
    default_value(spec, "podReplacementPolicy", json!(replacement));
    if let Some(template) = child(spec, "template") {
        default_template(template);
    }
    // The Job's own labels come from its template when it has none.
    if let Some(Value::Object(labels)) = template_labels
        && let Some(metadata) = child(root, "metadata")
        && metadata.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty)
    {
        metadata.insert("labels".into(), Value::Object(labels));
    }
}

/// The Job strategy's `generateSelector`: unless `manualSelector` is true, a Job is selected by
/// its own uid, and its template carries that uid and the job's name as labels. Needs
/// `metadata.uid`, which the API server sets before defaulting a created object.
fn generate_job_selector(root: &mut Map<String, Value>) {
    let meta = root.get("metadata");
    let uid = meta.and_then(|m| m.get("uid")).and_then(Value::as_str).unwrap_or("").to_string();
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
    let Some(spec) = child(root, "spec") else { return };
    if uid.is_empty()
        || spec.get("manualSelector").and_then(Value::as_bool) == Some(true)
        || !is_unset(spec, "selector")
    {
        return;
    }
    spec.insert("selector".into(), json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } }));
    let Some(labels) = child(spec, "template").and_then(|t| child(t, "metadata")).and_then(|m| child(m, "labels"))
    else {
        return;
    };
    for (key, value) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.entry(key).or_insert_with(|| json!(value));
    }
}

/// `SetDefaults_CronJob`; the job template's pod spec is defaulted, its Job spec is not.
fn default_cron_job(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    default_str(spec, "concurrencyPolicy", "Allow");
    default_value(spec, "suspend", json!(false));
    default_value(spec, "successfulJobsHistoryLimit", json!(3));
    default_value(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(template) = child(spec, "jobTemplate").and_then(|j| child(j, "spec")).and_then(|s| child(s, "template"))
    {
        default_template(template);
    }
}

// ---------------------------------------------------------------------------------------------
// core/v1, other kinds

/// `SetDefaults_Service` plus the IP family fields the service registry fills before allocating
/// (for a single-stack IPv4 cluster). Cluster IPs and node ports are the API server's.
fn default_service(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else { return };
    default_str(spec, "sessionAffinity", "None");
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let timeout = spec.get("sessionAffinityConfig").and_then(|c| c.pointer("/clientIP/timeoutSeconds"));
            if timeout.is_none_or(Value::is_null) {
                spec.insert("sessionAffinityConfig".into(), json!({ "clientIP": { "timeoutSeconds": 10800 } }));
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for port in each(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if target_unset && let Some(number) = port.get("port").cloned() {
            port.insert("targetPort".into(), number);
        }
    }
    let service_type = str_of(spec, "type").to_string();
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer") {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default_value(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        default_value(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if service_type != "ExternalName" {
        default_ip_families(spec);
    }
}

/// The registry's `initIPFamilyFields` for a single-stack cluster: headless selector-less
/// services are `RequireDualStack`, others `SingleStack`; families follow given cluster IPs.
fn default_ip_families(spec: &mut Map<String, Value>) {
    let headless = str_of(spec, "clusterIP") == "None";
    let selectorless = spec.get("selector").and_then(Value::as_object).is_none_or(Map::is_empty);
    if is_unset(spec, "ipFamilyPolicy") {
        let policy = if headless && selectorless { "RequireDualStack" } else { "SingleStack" };
        spec.insert("ipFamilyPolicy".into(), json!(policy));
    }
    if spec.get("ipFamilies").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        let given_ips: Vec<String> = match spec.get("clusterIPs").and_then(Value::as_array) {
            Some(ips) => ips.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            None => vec![str_of(spec, "clusterIP").to_string()],
        };
        let mut families: Vec<&str> = given_ips
            .iter()
            .take_while(|ip| !ip.is_empty() && *ip != "None")
            .map(|ip| if ip.contains(':') { "IPv6" } else { "IPv4" })
            .collect();
        if families.is_empty() {
            families.push("IPv4");
        }
        if families.len() == 1 && str_of(spec, "ipFamilyPolicy") != "SingleStack" && headless && selectorless {
            families.push(if families[0] == "IPv4" { "IPv6" } else { "IPv4" });
        }
        spec.insert("ipFamilies".into(), json!(families));
    }
}

/// The `kubernetes.io/metadata.name` label, phase `Active`, and the `kubernetes` finalizer the
/// namespace strategy sets on creation (not re-added once a terminating namespace lost it).
fn default_namespace(root: &mut Map<String, Value>) {
    let name = root.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
    let deleting = root.get("metadata").and_then(|m| m.get("deletionTimestamp")).is_some_and(|t| !t.is_null());
    if !name.is_empty()
        && let Some(labels) = child(root, "metadata").and_then(|m| child(m, "labels"))
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    let terminating = root.get("status").and_then(|s| s.get("phase")).and_then(Value::as_str) == Some("Terminating");
    if !deleting
        && !terminating
        && let Some(spec) = child(root, "spec")
    {
        default_value(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child(root, "status") {
        default_str(status, "phase", "Active");
    }
}

fn default_pvc(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        default_value(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child(root, "status") {
        default_str(status, "phase", "Pending");
    }
}

fn default_pv(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_value(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child(root, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// Allocatable defaults to capacity.
fn default_node(root: &mut Map<String, Value>) {
    let Some(status) = existing(root, "status") else { return };
    if is_unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

fn default_endpoints(root: &mut Map<String, Value>) {
    for subset in each(root, "subsets") {
        for port in each(subset, "ports") {
            default_str(port, "protocol", "TCP");
        }
    }
}

fn default_endpoint_slice(root: &mut Map<String, Value>) {
    for port in each(root, "ports") {
        default_value(port, "name", json!(""));
        default_str(port, "protocol", "TCP");
    }
}

/// Container limits: default limit ← max, default request ← default limit, then ← min.
fn default_limit_range(root: &mut Map<String, Value>) {
    let Some(spec) = existing(root, "spec") else { return };
    for item in each(spec, "limits") {
        if str_of(item, "type") != "Container" {
            continue;
        }
        let max = item.get("max").and_then(Value::as_object).cloned().unwrap_or_default();
        let min = item.get("min").and_then(Value::as_object).cloned().unwrap_or_default();
        let Some(default) = child(item, "default") else { continue };
        for (name, quantity) in max {
            default.entry(name).or_insert(quantity);
        }
        let default = default.clone();
        let Some(default_request) = child(item, "defaultRequest") else { continue };
        for (name, quantity) in default.into_iter().chain(min) {
            default_request.entry(name).or_insert(quantity);
        }
    }
}

/// minReplicas 1; v2 also targets 80% CPU when no metric is given. `behavior` is left alone.
fn default_hpa(root: &mut Map<String, Value>, version: &str) {
    let Some(spec) = child(root, "spec") else { return };
    default_value(spec, "minReplicas", json!(1));
    if version == "v2" && spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        spec.insert(
            "metrics".into(),
            json!([{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 80 } } }]),
        );
    }
}

/// Users and groups belong to the RBAC API group (service accounts to the core group, "").
fn default_role_binding(root: &mut Map<String, Value>) {
    for subject in each(root, "subjects") {
        if matches!(str_of(subject, "kind"), "User" | "Group") {
            default_str(subject, "apiGroup", "rbac.authorization.k8s.io");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::by_kind;

    fn defaulted(api_version: &str, kind: &str, mut obj: Value) -> Value {
        let rt = by_kind(api_version, kind).expect("served kind");
        apply_defaults(rt, &mut obj);
        let once = obj.clone();
        apply_defaults(rt, &mut obj);
        assert_eq!(obj, once, "defaulting {kind} twice changes it");
        obj
    }

    fn nginx(image: &str) -> Value {
        json!({ "name": "web", "image": image })
    }

    #[test]
    fn pull_policy_follows_the_image_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("docker.io/library/nginx", "Always"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:1.25", "IfNotPresent"),
            ("nginx@sha256:0123456789abcdef", "IfNotPresent"),
            ("nginx:latest@sha256:0123456789abcdef", "Always"),
        ] {
            assert_eq!(default_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn a_minimal_deployment_gets_kubernetes_defaults() {
        let d = defaulted(
            "apps/v1",
            "Deployment",
            json!({ "metadata": { "name": "web" }, "spec": {
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } },
                              "spec": { "containers": [nginx("nginx:1.25"), { "name": "side", "image": "busybox", "ports": [{ "containerPort": 80 }] }] } } } }),
        );
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "25%", "maxSurge": "25%" } })
        );
        assert_eq!(
            (spec["revisionHistoryLimit"].clone(), spec["progressDeadlineSeconds"].clone()),
            (json!(10), json!(600))
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["schedulerName"], "default-scheduler");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["securityContext"], json!({}));
        assert!(pod.get("enableServiceLinks").is_none(), "only Pods get enableServiceLinks");
        assert!(pod.get("priority").is_none(), "only Pods get a priority");
        let web = &pod["containers"][0];
        assert_eq!(web["imagePullPolicy"], "IfNotPresent");
        assert_eq!(web["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(web["terminationMessagePolicy"], "File");
        assert_eq!(web["resources"], json!({}));
        let side = &pod["containers"][1];
        assert_eq!(side["imagePullPolicy"], "Always");
        assert_eq!(side["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn user_values_are_kept() {
        let d = defaulted(
            "apps/v1",
            "Deployment",
            json!({ "spec": { "replicas": 0, "strategy": { "type": "Recreate" }, "revisionHistoryLimit": 2,
                              "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "a", "image": "x", "imagePullPolicy": "Never" }] } } } }),
        );
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"], json!({ "type": "Recreate" }), "no rollingUpdate for Recreate");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 2);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "Never");
    }

    #[test]
    fn pods_get_pod_only_defaults() {
        let p = defaulted(
            "v1",
            "Pod",
            json!({ "spec": { "containers": [{ "name": "a", "image": "nginx",
                "resources": { "limits": { "cpu": "500m", "memory": "1Gi" }, "requests": { "cpu": "100m" } },
                "livenessProbe": { "httpGet": { "port": 80 } },
                "env": [{ "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } }] }],
                "volumes": [{ "name": "scratch" }, { "name": "cfg", "configMap": { "name": "c" } }] } }),
        );
        let spec = &p["spec"];
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(
            (spec["priority"].clone(), spec["preemptionPolicy"].clone()),
            (json!(0), json!("PreemptLowerPriority"))
        );
        let c = &spec["containers"][0];
        assert_eq!(c["resources"]["requests"], json!({ "cpu": "100m", "memory": "1Gi" }), "requests default to limits");
        assert_eq!(
            c["livenessProbe"],
            json!({ "httpGet": { "port": 80, "path": "/", "scheme": "HTTP" }, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3 })
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
    }

    #[test]
    fn host_network_pods_expose_container_ports_on_the_host() {
        let p = defaulted(
            "v1",
            "Pod",
            json!({ "spec": { "hostNetwork": true, "containers": [{ "name": "a", "image": "x", "ports": [{ "containerPort": 8080 }] }] } }),
        );
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    }

    #[test]
    fn jobs_get_batch_defaults_and_a_generated_selector() {
        let j = defaulted(
            "batch/v1",
            "Job",
            json!({ "metadata": { "name": "pi", "uid": "u-1" }, "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [nginx("perl")] } } } }),
        );
        let spec = &j["spec"];
        for (key, value) in [
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
            ("selector", json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": "u-1" } })),
        ] {
            assert_eq!(spec[key], value, "{key}");
        }
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], "u-1");
        assert_eq!(j["metadata"]["labels"], *labels, "a Job takes its template's labels");
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn parallel_jobs_keep_completions_unset_and_manual_selectors_are_kept() {
        let j = defaulted(
            "batch/v1",
            "Job",
            json!({ "metadata": { "uid": "u" }, "spec": { "parallelism": 3, "manualSelector": true, "template": { "spec": {} } } }),
        );
        assert!(j["spec"].get("completions").is_none());
        assert!(j["spec"].get("selector").is_none());
    }

    #[test]
    fn workload_kinds_get_their_defaults() {
        let sts = defaulted(
            "apps/v1",
            "StatefulSet",
            json!({ "spec": { "volumeClaimTemplates": [{ "metadata": { "name": "data" }, "spec": {} }] } }),
        );
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({ "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } })
        );
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({ "whenDeleted": "Retain", "whenScaled": "Retain" })
        );
        assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");

        let ds = defaulted("apps/v1", "DaemonSet", json!({ "spec": {} }));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1, "maxSurge": 0 } })
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);

        let rs = defaulted("apps/v1", "ReplicaSet", json!({ "spec": {} }));
        assert_eq!(rs["spec"]["replicas"], 1);

        let cj = defaulted(
            "batch/v1",
            "CronJob",
            json!({ "spec": { "schedule": "* * * * *", "jobTemplate": { "spec": { "template": { "spec": { "containers": [nginx("busybox")] } } } } } }),
        );
        for (key, value) in [
            ("concurrencyPolicy", json!("Allow")),
            ("suspend", json!(false)),
            ("successfulJobsHistoryLimit", json!(3)),
            ("failedJobsHistoryLimit", json!(1)),
        ] {
            assert_eq!(cj["spec"][key], value, "{key}");
        }
        let job_spec = &cj["spec"]["jobTemplate"]["spec"];
        assert!(job_spec.get("backoffLimit").is_none(), "a job template's Job spec is not defaulted");
        assert_eq!(job_spec["template"]["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn services_get_defaults_but_no_allocations() {
        let s = defaulted(
            "v1",
            "Service",
            json!({ "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }, { "port": 443, "targetPort": "https" }] } }),
        );
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ports"][0], json!({ "port": 80, "protocol": "TCP", "targetPort": 80 }));
        assert_eq!(spec["ports"][1]["targetPort"], "https");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(
            (spec["ipFamilyPolicy"].clone(), spec["ipFamilies"].clone()),
            (json!("SingleStack"), json!(["IPv4"]))
        );
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert!(spec.get("clusterIP").is_none() && spec["ports"][0].get("nodePort").is_none());

        let np = defaulted("v1", "Service", json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80 }] } }));
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        let lb = defaulted("v1", "Service", json!({ "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] } }));
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        let ext =
            defaulted("v1", "Service", json!({ "spec": { "type": "ExternalName", "externalName": "example.com" } }));
        assert!(ext["spec"].get("ipFamilies").is_none() && ext["spec"].get("internalTrafficPolicy").is_none());
        let headless = defaulted("v1", "Service", json!({ "spec": { "clusterIP": "None" } }));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
        let affinity = defaulted("v1", "Service", json!({ "spec": { "sessionAffinity": "ClientIP" } }));
        assert_eq!(affinity["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"], 10800);
    }

    #[test]
    fn core_kinds_get_their_defaults() {
        let ns = defaulted("v1", "Namespace", json!({ "metadata": { "name": "team-a" } }));
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        let terminating = defaulted(
            "v1",
            "Namespace",
            json!({ "metadata": { "name": "x" }, "spec": {}, "status": { "phase": "Terminating" } }),
        );
        assert!(terminating["spec"].get("finalizers").is_none(), "a finalized namespace stays finalized");

        assert_eq!(defaulted("v1", "Secret", json!({}))["type"], "Opaque");
        assert_eq!(defaulted("v1", "Secret", json!({ "type": "kubernetes.io/tls" }))["type"], "kubernetes.io/tls");
        let pvc = defaulted("v1", "PersistentVolumeClaim", json!({ "spec": {} }));
        assert_eq!(
            (pvc["spec"]["volumeMode"].clone(), pvc["status"]["phase"].clone()),
            (json!("Filesystem"), json!("Pending"))
        );
        let pv = defaulted("v1", "PersistentVolume", json!({ "spec": {} }));
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        let node = defaulted("v1", "Node", json!({ "status": { "capacity": { "cpu": "4" } } }));
        assert_eq!(node["status"]["allocatable"], json!({ "cpu": "4" }));
        let cm = defaulted("v1", "ConfigMap", json!({ "data": { "a": "b" } }));
        assert_eq!(cm, json!({ "data": { "a": "b" } }), "nothing to default on a ConfigMap");
        let hpa = defaulted("autoscaling/v2", "HorizontalPodAutoscaler", json!({ "spec": { "maxReplicas": 3 } }));
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
        assert!(hpa["spec"].get("behavior").is_none());
    }

    #[test]
    fn malformed_objects_do_not_panic() {
        for obj in [
            json!(null),
            json!([]),
            json!({ "spec": 3 }),
            json!({ "spec": { "template": "x", "containers": [1, "a"] } }),
        ] {
            for rt in crate::registry::RESOURCES {
                let mut copy = obj.clone();
                apply_defaults(rt, &mut copy);
            }
        }
    }
}
