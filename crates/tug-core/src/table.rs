//! Server-side Table printing: the columns and cells `kubectl get` shows, rendered by the API server
//! the way Kubernetes' `pkg/printers/internalversion` renders built-in types.
//!
//! kubectl prints cells exactly as given, so everything a user reads is decided here: AGE as
//! `duration.HumanDuration` ("5m10s"), a pod's STATUS from its container states, `<none>` where a
//! value is missing. Like Kubernetes, the server always renders the wide form; kubectl hides the
//! columns with `priority > 0` unless asked for `-o wide`.
//!
//! Objects are read as plain JSON: a missing or oddly typed field prints as Kubernetes prints a
//! zero value, so one odd object never fails a whole list.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

/// One column of a `meta.k8s.io/v1` Table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// As Kubernetes names it ("Nominated Node"); kubectl upper-cases it for the header.
    pub name: &'static str,
    /// "string", "integer", "boolean" or "date".
    pub type_: &'static str,
    /// "name" for the column holding the object's name, else "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0 = always shown; 1 = only under `-o wide`.
    pub priority: i32,
}

/// Which object each Table row carries, from the `includeObject` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// The default: a `PartialObjectMetadata`, which kubectl needs for `-A` and `--show-labels`.
    #[default]
    Metadata,
    /// The full object, which `--sort-by` asks for.
    Object,
}

impl IncludeObject {
    /// Parses `includeObject`; absent or empty means the default, an unknown value is `None`
    /// (the caller answers 400).
    pub fn from_query(value: Option<&str>) -> Option<IncludeObject> {
        match value.unwrap_or("") {
            "" | "Metadata" => Some(IncludeObject::Metadata),
            "None" => Some(IncludeObject::None),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------------------------

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 1 }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "The object's name, unique within its namespace (or the cluster for cluster-scoped kinds).",
    priority: 0,
};
const AGE: Column = col("Age", "string", "Time since the object was created (metadata.creationTimestamp).");
const CONTAINERS: Column = wide("Containers", "string", "Names of the containers in the pod template.");
const IMAGES: Column = wide("Images", "string", "Images of the containers in the pod template.");
const SELECTOR: Column = wide("Selector", "string", "Label selector of the pods this object manages.");

static POD: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready containers out of all containers of the pod."),
    col("Status", "string", "The pod's phase, or the reason its containers are not running."),
    col("Restarts", "string", "Container restarts, and how long ago the last one ended."),
    AGE,
    wide("IP", "string", "The pod's first IP address."),
    wide("Node", "string", "The node the pod is bound to."),
    wide("Nominated Node", "string", "The node the scheduler preempted pods on for this pod."),
    wide("Readiness Gates", "string", "Readiness gates whose condition is True, out of all gates."),
];
static NODE: &[Column] = &[
    NAME,
    col("Status", "string", "Ready, NotReady or Unknown, and SchedulingDisabled when cordoned."),
    col("Roles", "string", "Roles from node-role.kubernetes.io/<role> labels."),
    AGE,
    col("Version", "string", "The kubelet version."),
    wide("Internal-IP", "string", "The node's first InternalIP address."),
    wide("External-IP", "string", "The node's first ExternalIP address."),
    wide("OS-Image", "string", "The operating system image the node reports."),
    wide("Kernel-Version", "string", "The kernel version the node reports."),
    wide("Container-Runtime", "string", "The container runtime and its version."),
];
static NAMESPACE: &[Column] = &[NAME, col("Status", "string", "The namespace's phase."), AGE];
static SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", "ClusterIP, NodePort, LoadBalancer or ExternalName."),
    col("Cluster-IP", "string", "The service's virtual IP."),
    col("External-IP", "string", "Addresses the service is reachable at from outside the cluster."),
    col("Port(s)", "string", "Service ports, with node ports, and protocols."),
    AGE,
    wide("Selector", "string", "Labels of the pods the service routes to."),
];
static ENDPOINTS: &[Column] = &[NAME, col("Endpoints", "string", "The first endpoint addresses, as ip:port."), AGE];
static CONFIG_MAP: &[Column] = &[NAME, col("Data", "string", "Number of data and binaryData keys."), AGE];
static SECRET: &[Column] =
    &[NAME, col("Type", "string", "The secret's type."), col("Data", "string", "Number of data keys."), AGE];
static SERVICE_ACCOUNT: &[Column] =
    &[NAME, col("Secrets", "string", "Number of secrets listed by the service account."), AGE];
static EVENT: &[Column] = &[
    col("Last Seen", "string", "Time since the event last occurred."),
    col("Type", "string", "Normal or Warning."),
    col("Reason", "string", "Why the event happened, in CamelCase."),
    col("Object", "string", "The object the event is about, as kind/name."),
    wide("Subobject", "string", "The part of the object the event is about (fieldPath)."),
    wide("Source", "string", "The component, and host, that reported the event."),
    col("Message", "string", "What happened, for humans."),
    wide("First Seen", "string", "Time since the event first occurred."),
    wide("Count", "string", "How many times the event occurred."),
    Column { priority: 1, ..NAME },
];
static PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    col("Capacity", "string", "The volume's storage capacity."),
    col("Access Modes", "string", "RWO, ROX, RWX, RWOP."),
    col("Reclaim Policy", "string", "What happens to the volume when its claim is released."),
    col("Status", "string", "The volume's phase."),
    col("Claim", "string", "The claim bound to the volume, as namespace/name."),
    col("StorageClass", "string", "The volume's storage class."),
    col("VolumeAttributesClass", "string", "The volume's attributes class."),
    col("Reason", "string", "Why the volume is in its phase."),
    AGE,
    wide("VolumeMode", "string", "Filesystem or Block."),
];
static PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    col("Status", "string", "The claim's phase."),
    col("Volume", "string", "The volume bound to the claim."),
    col("Capacity", "string", "The bound volume's capacity."),
    col("Access Modes", "string", "RWO, ROX, RWX, RWOP."),
    col("StorageClass", "string", "The claim's storage class."),
    col("VolumeAttributesClass", "string", "The claim's attributes class."),
    AGE,
    wide("VolumeMode", "string", "Filesystem or Block."),
];
static RESOURCE_QUOTA: &[Column] = &[
    NAME,
    col("Request", "string", "Used out of hard quota, for everything but limits.*."),
    col("Limit", "string", "Used out of hard quota, for limits.*."),
    AGE,
];
static DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready replicas out of desired replicas."),
    col("Up-to-date", "string", "Replicas running the current pod template."),
    col("Available", "string", "Replicas available to serve."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
static REPLICA_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", "Desired replicas."),
    col("Current", "integer", "Existing replicas."),
    col("Ready", "integer", "Ready replicas."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
static STATEFUL_SET: &[Column] =
    &[NAME, col("Ready", "string", "Ready replicas out of desired replicas."), AGE, CONTAINERS, IMAGES];
static DAEMON_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", "Nodes that should run the daemon pod."),
    col("Current", "integer", "Nodes running at least one daemon pod."),
    col("Ready", "integer", "Nodes with a ready daemon pod."),
    col("Up-to-date", "integer", "Nodes running the current pod template."),
    col("Available", "integer", "Nodes with an available daemon pod."),
    col("Node Selector", "string", "The pod template's node selector."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
static CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "The object owning the revision."),
    col("Revision", "string", "The revision number."),
    AGE,
];
static JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Running, Complete, Failed, Suspended, FailureTarget or Terminating."),
    col("Completions", "string", "Succeeded pods out of required completions."),
    col("Duration", "string", "Time the job ran, or has been running."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
static CRON_JOB: &[Column] = &[
    NAME,
    col("Schedule", "string", "The cron schedule."),
    col("Timezone", "string", "The time zone of the schedule."),
    col("Suspend", "boolean", "Whether new runs are suspended."),
    col("Active", "integer", "Jobs running now."),
    col("Last Schedule", "string", "Time since a job was last scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
static HORIZONTAL_POD_AUTOSCALER: &[Column] = &[
    NAME,
    col("Reference", "string", "The scaled object, as Kind/name."),
    col("Targets", "string", "Current out of target value of each metric."),
    col("MinPods", "string", "Lower bound of replicas."),
    col("MaxPods", "string", "Upper bound of replicas."),
    col("Replicas", "string", "Current replicas."),
    AGE,
];
static LEASE: &[Column] = &[NAME, col("Holder", "string", "The identity holding the lease."), AGE];
static ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col("AddressType", "string", "IPv4, IPv6 or FQDN."),
    col("Ports", "string", "The first ports of the slice."),
    col("Endpoints", "string", "The first endpoint addresses of the slice."),
    AGE,
];
static POD_DISRUPTION_BUDGET: &[Column] = &[
    NAME,
    col("Min Available", "string", "Pods that must stay available."),
    col("Max Unavailable", "string", "Pods that may be unavailable."),
    col("Allowed Disruptions", "integer", "Pods that may be disrupted now."),
    AGE,
];
static PRIORITY_CLASS: &[Column] = &[
    NAME,
    col("Value", "integer", "The priority of pods in this class."),
    col("Global-Default", "boolean", "Whether pods without a class get this one."),
    AGE,
    col("PreemptionPolicy", "string", "Whether pods of this class preempt lower-priority pods."),
];
static STORAGE_CLASS: &[Column] = &[
    NAME,
    col("Provisioner", "string", "The volume plugin that provisions volumes."),
    col("ReclaimPolicy", "string", "The reclaim policy of provisioned volumes."),
    col("VolumeBindingMode", "string", "When claims are bound and provisioned."),
    col("AllowVolumeExpansion", "string", "Whether claims may grow."),
    AGE,
];
static ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", "The role granted, as Kind/name."),
    AGE,
    wide("Users", "string", "Users bound."),
    wide("Groups", "string", "Groups bound."),
    wide("ServiceAccounts", "string", "Service accounts bound, as namespace/name."),
];
/// What Kubernetes' default table convertor serves for built-in kinds without a printer.
static CREATED_AT: &[Column] =
    &[NAME, col("Created At", "date", "When the object was created (metadata.creationTimestamp).")];
static NAME_AGE: &[Column] = &[NAME, AGE];

/// The printer of a type: which columns, and which function fills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printer {
    Pod,
    Node,
    Namespace,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    ServiceAccount,
    Event,
    PersistentVolume,
    PersistentVolumeClaim,
    ResourceQuota,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    HorizontalPodAutoscaler,
    Lease,
    EndpointSlice,
    PodDisruptionBudget,
    PriorityClass,
    StorageClass,
    RoleBinding,
    CreatedAt,
    NameAge,
}

fn printer(rt: &ResourceType) -> Printer {
    use Printer as P;
    match (rt.group, rt.kind) {
        ("", "Pod") => P::Pod,
        ("", "Node") => P::Node,
        ("", "Namespace") => P::Namespace,
        ("", "Service") => P::Service,
        ("", "Endpoints") => P::Endpoints,
        ("", "ConfigMap") => P::ConfigMap,
        ("", "Secret") => P::Secret,
        ("", "ServiceAccount") => P::ServiceAccount,
        // events.k8s.io Events are core Events in another shape; Kubernetes prints both alike.
        ("" | "events.k8s.io", "Event") => P::Event,
        ("", "PersistentVolume") => P::PersistentVolume,
        ("", "PersistentVolumeClaim") => P::PersistentVolumeClaim,
        ("", "ResourceQuota") => P::ResourceQuota,
        ("", "LimitRange") => P::CreatedAt,
        ("apps", "Deployment") => P::Deployment,
        ("apps", "ReplicaSet") => P::ReplicaSet,
        ("apps", "StatefulSet") => P::StatefulSet,
        ("apps", "DaemonSet") => P::DaemonSet,
        ("apps", "ControllerRevision") => P::ControllerRevision,
        ("batch", "Job") => P::Job,
        ("batch", "CronJob") => P::CronJob,
        ("autoscaling", "HorizontalPodAutoscaler") => P::HorizontalPodAutoscaler,
        ("coordination.k8s.io", "Lease") => P::Lease,
        ("discovery.k8s.io", "EndpointSlice") => P::EndpointSlice,
        ("policy", "PodDisruptionBudget") => P::PodDisruptionBudget,
        ("scheduling.k8s.io", "PriorityClass") => P::PriorityClass,
        ("storage.k8s.io", "StorageClass") => P::StorageClass,
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => P::CreatedAt,
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => P::RoleBinding,
        _ => P::NameAge,
    }
}

/// The columns of a type, in cell order.
pub fn columns(rt: &ResourceType) -> &'static [Column] {
    match printer(rt) {
        Printer::Pod => POD,
        Printer::Node => NODE,
        Printer::Namespace => NAMESPACE,
        Printer::Service => SERVICE,
        Printer::Endpoints => ENDPOINTS,
        Printer::ConfigMap => CONFIG_MAP,
        Printer::Secret => SECRET,
        Printer::ServiceAccount => SERVICE_ACCOUNT,
        Printer::Event => EVENT,
        Printer::PersistentVolume => PERSISTENT_VOLUME,
        Printer::PersistentVolumeClaim => PERSISTENT_VOLUME_CLAIM,
        Printer::ResourceQuota => RESOURCE_QUOTA,
        Printer::Deployment => DEPLOYMENT,
        Printer::ReplicaSet => REPLICA_SET,
        Printer::StatefulSet => STATEFUL_SET,
        Printer::DaemonSet => DAEMON_SET,
        Printer::ControllerRevision => CONTROLLER_REVISION,
        Printer::Job => JOB,
        Printer::CronJob => CRON_JOB,
        Printer::HorizontalPodAutoscaler => HORIZONTAL_POD_AUTOSCALER,
        Printer::Lease => LEASE,
        Printer::EndpointSlice => ENDPOINT_SLICE,
        Printer::PodDisruptionBudget => POD_DISRUPTION_BUDGET,
        Printer::PriorityClass => PRIORITY_CLASS,
        Printer::StorageClass => STORAGE_CLASS,
        Printer::RoleBinding => ROLE_BINDING,
        Printer::CreatedAt => CREATED_AT,
        Printer::NameAge => NAME_AGE,
    }
}

/// The `columnDefinitions` array of a Table of this type.
pub fn column_definitions(rt: &ResourceType) -> Value {
    columns(rt)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// The cells of one row, in column order, formatted as kubectl prints them.
pub fn row_cells(rt: &ResourceType, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(rt) {
        Printer::Pod => pod_cells(obj, now),
        Printer::Node => node_cells(obj, now),
        Printer::Namespace => vec![name(obj), json!(text(obj, "/status/phase")), age(obj, now)],
        Printer::Service => service_cells(obj, now),
        Printer::Endpoints => vec![name(obj), json!(format_endpoints(obj)), age(obj, now)],
        Printer::ConfigMap => {
            let keys = map_len(obj, "/data") + map_len(obj, "/binaryData");
            vec![name(obj), json!(keys), age(obj, now)]
        }
        Printer::Secret => vec![name(obj), json!(text(obj, "/type")), json!(secret_keys(obj)), age(obj, now)],
        Printer::ServiceAccount => vec![name(obj), json!(list(obj, "/secrets").len()), age(obj, now)],
        Printer::Event => event_cells(obj, now),
        Printer::PersistentVolume => persistent_volume_cells(obj, now),
        Printer::PersistentVolumeClaim => persistent_volume_claim_cells(obj, now),
        Printer::ResourceQuota => resource_quota_cells(obj, now),
        Printer::Deployment => deployment_cells(obj, now),
        Printer::ReplicaSet => replica_set_cells(obj, now),
        Printer::StatefulSet => stateful_set_cells(obj, now),
        Printer::DaemonSet => daemon_set_cells(obj, now),
        Printer::ControllerRevision => {
            vec![name(obj), json!(controller_of(obj)), json!(int(obj, "/revision")), age(obj, now)]
        }
        Printer::Job => job_cells(obj, now),
        Printer::CronJob => cron_job_cells(obj, now),
        Printer::HorizontalPodAutoscaler => horizontal_pod_autoscaler_cells(obj, now),
        Printer::Lease => vec![name(obj), json!(text(obj, "/spec/holderIdentity")), age(obj, now)],
        Printer::EndpointSlice => endpoint_slice_cells(obj, now),
        Printer::PodDisruptionBudget => pod_disruption_budget_cells(obj, now),
        Printer::PriorityClass => priority_class_cells(obj, now),
        Printer::StorageClass => storage_class_cells(obj, now),
        Printer::RoleBinding => role_binding_cells(obj, now),
        Printer::CreatedAt => vec![name(obj), json!(created_at(obj))],
        Printer::NameAge => vec![name(obj), age(obj, now)],
    }
}

/// One Table row: its cells, the object it describes as `include` asks, and for finished pods
/// the `Completed` row condition Kubernetes adds.
pub fn row(rt: &ResourceType, obj: &Value, now: Timestamp, include: IncludeObject) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(row_cells(rt, obj, now)));
    if printer(rt) == Printer::Pod
        && let Some(conditions) = pod_row_conditions(obj)
    {
        row.insert("conditions".into(), conditions);
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
            row.insert(
                "object".into(),
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}),
            );
        }
        IncludeObject::Object => {
            row.insert("object".into(), obj.clone());
        }
    }
    Value::Object(row)
}

/// A whole `meta.k8s.io/v1` Table of `objects`, as a list or a single get answers it.
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    now: Timestamp,
    resource_version: &str,
    include: IncludeObject,
) -> Value {
    let rows: Vec<Value> = objects.iter().map(|obj| row(rt, obj, now, include)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": column_definitions(rt),
        "rows": rows,
    })
}

// ---------------------------------------------------------------------------------------------
// Durations and times
// ---------------------------------------------------------------------------------------------

/// Kubernetes' `duration.HumanDuration`, what AGE shows: precise while short, coarser as it grows
/// ("45s", "3m20s", "10m", "5h3m", "20h", "2d5h", "8d", "2y45d", "9y").
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// "5h3m", or "5h" when the smaller unit is zero.
fn with_remainder(big: u64, big_unit: &str, small: u64, small_unit: &str) -> String {
    if small == 0 { format!("{big}{big_unit}") } else { format!("{big}{big_unit}{small}{small_unit}") }
}

/// Time since `then` as HumanDuration; `<unknown>` without a time. Like Kubernetes, a clock up to
/// a second behind prints "0s" and a time further in the future prints `<invalid>`.
fn since(then: Option<Timestamp>, now: Timestamp) -> String {
    let Some(then) = then else { return "<unknown>".into() };
    let elapsed = now.duration_since(then);
    match elapsed.as_secs() {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s => human_duration(Duration::from_secs(s.unsigned_abs())),
    }
}

fn age(obj: &Value, now: Timestamp) -> Value {
    json!(since(timestamp(obj, "/metadata/creationTimestamp"), now))
}

/// `creationTimestamp` in RFC 3339 at second precision, as the default table convertor prints it.
fn created_at(obj: &Value) -> String {
    match timestamp(obj, "/metadata/creationTimestamp") {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading JSON leniently
// ---------------------------------------------------------------------------------------------

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The first non-empty string among several fields (for fields that moved between API versions).
fn first_text<'a>(v: &'a Value, pointers: &[&str]) -> &'a str {
    pointers.iter().map(|p| text(v, p)).find(|s| !s.is_empty()).unwrap_or("")
}

fn int(v: &Value, pointer: &str) -> i64 {
    int_or(v, pointer, 0)
}

fn int_or(v: &Value, pointer: &str, default: i64) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(default)
}

fn flag(v: &Value, pointer: &str) -> Option<bool> {
    v.pointer(pointer).and_then(Value::as_bool)
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn map<'a>(v: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    v.pointer(pointer).and_then(Value::as_object)
}

fn map_len(v: &Value, pointer: &str) -> usize {
    map(v, pointer).map_or(0, Map::len)
}

/// A present, non-null field (Go's non-nil pointer).
fn present<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|v| !v.is_null())
}

fn timestamp(v: &Value, pointer: &str) -> Option<Timestamp> {
    text(v, pointer).parse().ok()
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    map(obj, "/metadata/annotations")?.get(key)?.as_str()
}

fn name(obj: &Value) -> Value {
    json!(text(obj, "/metadata/name"))
}

fn is_deleting(obj: &Value) -> bool {
    present(obj, "/metadata/deletionTimestamp").is_some()
}

fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>".into() } else { s.into() }
}

/// A scalar as text: quantities and int-or-strings arrive as strings or numbers.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A resource.Quantity as `Quantity.String()` prints it: the zero quantity is "0".
fn quantity(v: Option<&Value>) -> String {
    v.and_then(scalar_text).unwrap_or_else(|| "0".into())
}

/// A *resource.Quantity that may be nil: Go prints a nil one as "<nil>".
fn quantity_ptr(v: Option<&Value>) -> String {
    v.and_then(scalar_text).unwrap_or_else(|| "<nil>".into())
}

fn condition_status<'a>(conditions: &'a [Value], type_: &str) -> Option<&'a str> {
    conditions.iter().find(|c| text(c, "/type") == type_).map(|c| text(c, "/status"))
}

/// `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> =
        labels.into_iter().flatten().map(|(k, v)| format!("{k}={}", scalar_text(v).unwrap_or_default())).collect();
    pairs.sort();
    if pairs.is_empty() { "<none>".into() } else { pairs.join(",") }
}

/// A metav1.LabelSelector as `labels.Selector.String()` (`tug-k8s`'s renderer): requirements
/// sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. `None` when it is invalid.
fn label_selector_string(selector: Option<&Value>) -> Option<String> {
    let Some(selector) = selector.filter(|s| !s.is_null()) else { return Some(String::new()) };
    tug_k8s::labels::render(Some(&tug_k8s::labels::from_json(selector)?)).ok()
}

/// `metav1.FormatLabelSelector`: `<none>` when it selects by nothing, `<error>` when invalid.
fn format_label_selector(selector: Option<&Value>) -> String {
    match selector.filter(|s| !s.is_null()) {
        None => "<none>".into(),
        Some(s) => {
            tug_k8s::labels::from_json(s).map_or_else(|| "<error>".into(), |s| tug_k8s::labels::format(Some(&s)))
        }
    }
}

/// Container names and images of a pod spec, each comma-joined.
fn container_cells(pod_spec: &Value) -> [Value; 2] {
    let containers = list(pod_spec, "/containers");
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    [json!(names.join(",")), json!(images.join(","))]
}

/// "a,b,c + 2 more..." after `max` items; `<unset>` when empty.
fn list_with_more(items: Vec<String>, max: usize) -> String {
    let total = items.len();
    let shown = items.into_iter().take(max).collect::<Vec<_>>().join(",");
    if total > max {
        format!("{shown} + {} more...", total - max)
    } else if shown.is_empty() {
        "<unset>".into()
    } else {
        shown
    }
}

// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

/// What the READY, STATUS and RESTARTS columns summarise.
#[derive(Debug, PartialEq, Eq)]
struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

/// When a container last ended before its current run.
fn last_termination(status: &Value) -> Option<Timestamp> {
    present(status, "/lastState/terminated").and_then(|t| timestamp(t, "/finishedAt"))
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    a.max(b)
}

/// "ExitCode:1" or "Signal:9" for a terminated container that gave no reason.
fn exit_description(terminated: &Value) -> String {
    match int(terminated, "/signal") {
        0 => format!("ExitCode:{}", int(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

/// The printer's reasoning over phase, init containers (sidecars included) and container states.
fn pod_summary(pod: &Value) -> PodSummary {
    let phase = text(pod, "/status/phase");
    let conditions = list(pod, "/status/conditions");
    let mut reason = first_text(pod, &["/status/reason", "/status/phase"]).to_string();
    if conditions.iter().any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }

    let init_specs = list(pod, "/spec/initContainers");
    let is_sidecar_spec = |c: &Value| text(c, "/restartPolicy") == "Always";
    let is_sidecar = |name: &str| init_specs.iter().any(|c| text(c, "/name") == name && is_sidecar_spec(c));
    let total = list(pod, "/spec/containers").len() + init_specs.iter().filter(|c| is_sidecar_spec(c)).count();

    let mut ready = 0;
    let (mut restarts, mut last_restart) = (0, None);
    let (mut sidecar_restarts, mut sidecar_last_restart) = (0, None);
    let mut initializing = false;
    for (index, status) in list(pod, "/status/initContainerStatuses").iter().enumerate() {
        let count = int(status, "/restartCount");
        restarts += count;
        last_restart = later(last_restart, last_termination(status));
        let sidecar = is_sidecar(text(status, "/name"));
        if sidecar {
            sidecar_restarts += count;
            sidecar_last_restart = later(sidecar_last_restart, last_termination(status));
        }
        let terminated = present(status, "/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && flag(status, "/started") == Some(true) {
            if flag(status, "/ready") == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = match terminated {
            Some(t) if text(t, "/reason").is_empty() => format!("Init:{}", exit_description(t)),
            Some(t) => format!("Init:{}", text(t, "/reason")),
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                format!("Init:{waiting_reason}")
            }
            None => format!("Init:{index}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    if !initializing || condition_status(conditions, "Initialized") == Some("True") {
        // Once initialised, only sidecars' restarts count alongside the regular containers'.
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for status in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(status, "/restartCount");
            last_restart = later(last_restart, last_termination(status));
            let waiting_reason = text(status, "/state/waiting/reason");
            let terminated = present(status, "/state/terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match text(t, "/reason") {
                    "" => exit_description(t),
                    r => r.to_string(),
                };
            } else if flag(status, "/ready") == Some(true) && present(status, "/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while others still run is not "Completed".
        if reason == "Completed" && has_running {
            let pod_ready = conditions.iter().any(|c| text(c, "/type") == "Ready" && text(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    if is_deleting(pod) && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if is_deleting(pod) && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".into();
    }

    PodSummary { ready, total, reason, restarts, last_restart }
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = pod_summary(pod);
    let restarts = match summary.last_restart {
        Some(at) if summary.restarts != 0 => format!("{} ({} ago)", summary.restarts, since(Some(at), now)),
        _ => summary.restarts.to_string(),
    };
    let ip =
        list(pod, "/status/podIPs").first().map(|ip| text(ip, "/ip")).unwrap_or_else(|| text(pod, "/status/podIP"));
    let gates = list(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(pod, "/status/conditions");
        let passing =
            gates.iter().filter(|g| condition_status(conditions, text(g, "/conditionType")) == Some("True")).count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(summary.reason),
        json!(restarts),
        age(pod, now),
        json!(or_none(ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

/// Finished pods carry a `Completed` row condition (kubectl's cue that the row is done).
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match text(pod, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

// ---------------------------------------------------------------------------------------------
// Nodes, namespaces' neighbours
// ---------------------------------------------------------------------------------------------

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Kubernetes keys conditions by type, so the last Ready condition wins.
    let ready = list(node, "/status/conditions").iter().rev().find(|c| text(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(node, "/spec/unschedulable") == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| {
        let value = text(node, &format!("/status/nodeInfo/{field}"));
        if value.is_empty() { "<unknown>".to_string() } else { value.to_string() }
    };
    vec![
        name(node),
        json!(status.join(",")),
        json!(or_none(&node_roles(node).join(","))),
        age(node, now),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and `kubernetes.io/role=<role>`, sorted.
fn node_roles(node: &Value) -> Vec<String> {
    let mut roles = BTreeSet::new();
    for (key, value) in map(node, "/metadata/labels").into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if key == "kubernetes.io/role"
            && let Some(role) = value.as_str().filter(|r| !r.is_empty())
        {
            roles.insert(role.to_string());
        }
    }
    roles.into_iter().collect()
}

fn node_address(node: &Value, type_: &str) -> String {
    let address = list(node, "/status/addresses").iter().find(|a| text(a, "/type") == type_);
    address.map_or_else(|| "<none>".into(), |a| text(a, "/address").to_string())
}

fn secret_keys(secret: &Value) -> usize {
    // The API folds stringData into data on write; count keys only stringData has, in case the
    // object was stored as written.
    let data = map(secret, "/data");
    let string_only = map(secret, "/stringData")
        .into_iter()
        .flatten()
        .filter(|(k, _)| data.is_none_or(|d| !d.contains_key(k.as_str())))
        .count();
    data.map_or(0, Map::len) + string_only
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints
// ---------------------------------------------------------------------------------------------

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    // API defaulting sets the type; an undefaulted object still reads as the default.
    let type_ = match text(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip =
        list(svc, "/spec/clusterIPs").first().and_then(Value::as_str).unwrap_or_else(|| text(svc, "/spec/clusterIP"));
    vec![
        name(svc),
        json!(type_),
        json!(or_none(cluster_ip)),
        json!(service_external_ip(svc, type_)),
        json!(or_none(&service_ports(svc))),
        age(svc, now),
        json!(format_labels(map(svc, "/spec/selector"))),
    ]
}

fn service_external_ip(svc: &Value, type_: &str) -> String {
    let external_ips: Vec<&str> = list(svc, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match type_ {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            // Sorted and de-duplicated; never clipped, since the server renders the wide form.
            let ingress: BTreeSet<&str> = list(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| first_text(i, &["/ip", "/hostname"]))
                .filter(|a| !a.is_empty())
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external_ips).collect();
            if all.is_empty() { "<pending>".into() } else { all.join(",") }
        }
        "ExternalName" => text(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

/// "80/TCP,443:30443/TCP".
fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = list(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = match text(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            match int(p, "/nodePort") {
                node_port if node_port > 0 => format!("{}:{node_port}/{protocol}", int(p, "/port")),
                _ => format!("{}/{protocol}", int(p, "/port")),
            }
        })
        .collect();
    ports.join(",")
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The first three endpoints as ip:port, then "+ N more...".
fn format_endpoints(endpoints: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut total = 0;
    for subset in subsets {
        let addresses: Vec<&str> = list(subset, "/addresses").iter().map(|a| text(a, "/ip")).collect();
        let ports = list(subset, "/ports");
        if ports.is_empty() {
            // Headless services may have no ports.
            total += addresses.len();
            shown.extend(addresses.iter().map(|ip| ip.to_string()));
        }
        for port in ports {
            total += addresses.len();
            shown.extend(addresses.iter().map(|ip| join_host_port(ip, int(port, "/port"))));
        }
    }
    shown.truncate(MAX);
    let joined = shown.join(",");
    if total > MAX { format!("{joined} + {} more...", total - MAX) } else { joined }
}

fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = list(slice, "/ports")
        .iter()
        .map(|p| match (p.get("port").and_then(Value::as_i64), p.get("name").and_then(Value::as_str)) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".into(),
        })
        .collect();
    let addresses: Vec<String> = list(slice, "/endpoints")
        .iter()
        .flat_map(|e| list(e, "/addresses").iter().filter_map(Value::as_str).map(String::from))
        .collect();
    vec![
        name(slice),
        json!(text(slice, "/addressType")),
        json!(list_with_more(ports, 3)),
        json!(list_with_more(addresses, 3)),
        age(slice, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// Core and events.k8s.io Events name the same fields differently; both are read.
fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match timestamp(event, "/firstTimestamp").or_else(|| timestamp(event, "/deprecatedFirstTimestamp"))
    {
        Some(t) => since(Some(t), now),
        None => since(timestamp(event, "/eventTime"), now),
    };
    let mut last_seen =
        match timestamp(event, "/lastTimestamp").or_else(|| timestamp(event, "/deprecatedLastTimestamp")) {
            Some(t) => since(Some(t), now),
            None => first_seen.clone(),
        };
    let count = match present(event, "/series") {
        Some(series) => {
            last_seen = since(timestamp(series, "/lastObservedTime"), now);
            int(series, "/count")
        }
        // Singleton events of the new API carry no count.
        None => match int(event, "/count") {
            0 => int(event, "/deprecatedCount").max(1),
            count => count,
        },
    };
    let involved = present(event, "/involvedObject").or_else(|| present(event, "/regarding")).unwrap_or(&Value::Null);
    let kind = text(involved, "/kind").to_lowercase();
    let object = match text(involved, "/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_text(
        event,
        &["/source/component", "/deprecatedSource/component", "/reportingComponent", "/reportingController"],
    );
    let host = first_text(event, &["/source/host", "/deprecatedSource/host", "/reportingInstance"]);
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    vec![
        json!(last_seen),
        json!(text(event, "/type")),
        json!(text(event, "/reason")),
        json!(object),
        json!(text(involved, "/fieldPath")),
        json!(source),
        json!(first_text(event, &["/message", "/note"]).trim()),
        json!(first_seen),
        json!(count),
        name(event),
    ]
}

// ---------------------------------------------------------------------------------------------
// Storage and quota
// ---------------------------------------------------------------------------------------------

/// "RWO,ROX,RWX,RWOP" in that fixed order, whatever the spec's order.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn persistent_volume_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = present(pv, "/spec/claimRef")
        .map(|c| format!("{}/{}", text(c, "/namespace"), text(c, "/name")))
        .unwrap_or_default();
    let phase = if is_deleting(pv) { "Terminating" } else { text(pv, "/status/phase") };
    let class = annotation(pv, BETA_STORAGE_CLASS_ANNOTATION).unwrap_or_else(|| text(pv, "/spec/storageClassName"));
    vec![
        name(pv),
        json!(quantity(pv.pointer("/spec/capacity/storage"))),
        json!(access_modes(list(pv, "/spec/accessModes"))),
        json!(text(pv, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(class),
        json!(unset_if_missing(pv, "/spec/volumeAttributesClassName")),
        json!(text(pv, "/status/reason")),
        age(pv, now),
        json!(unset_if_missing(pv, "/spec/volumeMode")),
    ]
}

fn unset_if_missing(obj: &Value, pointer: &str) -> String {
    present(obj, pointer).and_then(scalar_text).unwrap_or_else(|| "<unset>".into())
}

fn persistent_volume_claim_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if is_deleting(pvc) { "Terminating" } else { text(pvc, "/status/phase") };
    let volume = text(pvc, "/spec/volumeName");
    // Capacity and access modes are the bound volume's, so only shown once bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (quantity(pvc.pointer("/status/capacity/storage")), access_modes(list(pvc, "/status/accessModes")))
    };
    let class = annotation(pvc, BETA_STORAGE_CLASS_ANNOTATION).unwrap_or_else(|| text(pvc, "/spec/storageClassName"));
    vec![
        name(pvc),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(class),
        json!(unset_if_missing(pvc, "/spec/volumeAttributesClassName")),
        age(pvc, now),
        json!(unset_if_missing(pvc, "/spec/volumeMode")),
    ]
}

/// "cpu: 100m/1, pods: 2/10" for requests and plain resources; `limits.*` go to the LIMIT column.
fn resource_quota_cells(quota: &Value, now: Timestamp) -> Vec<Value> {
    let hard = map(quota, "/status/hard");
    let used = map(quota, "/status/used");
    let mut resources: Vec<&String> = hard.into_iter().flat_map(Map::keys).collect();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let entry = format!(
            "{resource}: {}/{}",
            quantity(used.and_then(|u| u.get(resource.as_str()))),
            quantity(hard.and_then(|h| h.get(resource.as_str())))
        );
        let is_limit = resource.split_once('.').is_some_and(|(prefix, _)| prefix == "limits");
        if is_limit { limits.push(entry) } else { requests.push(entry) }
    }
    vec![name(quota), json!(requests.join(", ")), json!(limits.join(", ")), age(quota, now)]
}

fn storage_class_cells(class: &Value, now: Timestamp) -> Vec<Value> {
    let is_default =
        ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
            .iter()
            .any(|key| annotation(class, key) == Some("true"));
    let name = text(class, "/metadata/name");
    let display = if is_default { format!("{name} (default)") } else { name.to_string() };
    let reclaim = match text(class, "/reclaimPolicy") {
        "" => "Delete",
        policy => policy,
    };
    let binding = match text(class, "/volumeBindingMode") {
        "" => "Immediate",
        mode => mode,
    };
    vec![
        json!(display),
        json!(text(class, "/provisioner")),
        json!(reclaim),
        json!(binding),
        json!(flag(class, "/allowVolumeExpansion").unwrap_or(false)),
        age(class, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

fn deployment_cells(deploy: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = container_cells(&deploy["spec"]["template"]["spec"]);
    // Unlike the other workloads, Deployments print the selector bare: "" when empty.
    let selector = label_selector_string(deploy.pointer("/spec/selector")).unwrap_or_else(|| "<invalid>".into());
    vec![
        name(deploy),
        json!(format!("{}/{}", int(deploy, "/status/readyReplicas"), int_or(deploy, "/spec/replicas", 1))),
        json!(int(deploy, "/status/updatedReplicas")),
        json!(int(deploy, "/status/availableReplicas")),
        age(deploy, now),
        containers,
        images,
        json!(selector),
    ]
}

fn replica_set_cells(rs: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = container_cells(&rs["spec"]["template"]["spec"]);
    vec![
        name(rs),
        json!(int_or(rs, "/spec/replicas", 1)),
        json!(int(rs, "/status/replicas")),
        json!(int(rs, "/status/readyReplicas")),
        age(rs, now),
        containers,
        images,
        json!(format_label_selector(rs.pointer("/spec/selector"))),
    ]
}

fn stateful_set_cells(sts: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = container_cells(&sts["spec"]["template"]["spec"]);
    vec![
        name(sts),
        json!(format!("{}/{}", int(sts, "/status/readyReplicas"), int_or(sts, "/spec/replicas", 1))),
        age(sts, now),
        containers,
        images,
    ]
}

fn daemon_set_cells(ds: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = container_cells(&ds["spec"]["template"]["spec"]);
    vec![
        name(ds),
        json!(int(ds, "/status/desiredNumberScheduled")),
        json!(int(ds, "/status/currentNumberScheduled")),
        json!(int(ds, "/status/numberReady")),
        json!(int(ds, "/status/updatedNumberScheduled")),
        json!(int(ds, "/status/numberAvailable")),
        json!(format_labels(map(ds, "/spec/template/spec/nodeSelector"))),
        age(ds, now),
        containers,
        images,
        json!(format_label_selector(ds.pointer("/spec/selector"))),
    ]
}

/// The controlling owner as "statefulset.apps/web", or `<none>`.
fn controller_of(obj: &Value) -> String {
    let owners = list(obj, "/metadata/ownerReferences");
    let Some(owner) = owners.iter().find(|o| flag(o, "/controller") == Some(true)) else {
        return "<none>".into();
    };
    let name = text(owner, "/name");
    let kind = text(owner, "/kind");
    let group = match text(owner, "/apiVersion").split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let group_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    if group_kind.is_empty() { name.to_string() } else { format!("{}/{name}", group_kind.to_lowercase()) }
}

fn job_condition(job: &Value, type_: &str) -> bool {
    condition_status(list(job, "/status/conditions"), type_) == Some("True")
}

fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int(job, "/status/succeeded");
    let completions = match present(job, "/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int(job, "/spec/parallelism") {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (timestamp(job, "/status/startTime"), timestamp(job, "/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), now),
        (Some(start), Some(end)) => since(Some(start), end),
    };
    let status = if job_condition(job, "Complete") {
        "Complete"
    } else if job_condition(job, "Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if job_condition(job, "Suspended") {
        "Suspended"
    } else if job_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [containers, images] = container_cells(&job["spec"]["template"]["spec"]);
    vec![
        name(job),
        json!(status),
        json!(completions),
        json!(duration),
        age(job, now),
        containers,
        images,
        json!(format_label_selector(job.pointer("/spec/selector"))),
    ]
}

fn cron_job_cells(cron: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match present(cron, "/status/lastScheduleTime") {
        Some(_) => since(timestamp(cron, "/status/lastScheduleTime"), now),
        None => "<none>".into(),
    };
    let suspend = match flag(cron, "/spec/suspend") {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_template = &cron["spec"]["jobTemplate"]["spec"];
    let [containers, images] = container_cells(&job_template["template"]["spec"]);
    vec![
        name(cron),
        json!(text(cron, "/spec/schedule")),
        json!(or_none(text(cron, "/spec/timeZone"))),
        json!(suspend),
        json!(list(cron, "/status/active").len()),
        json!(last_schedule),
        age(cron, now),
        containers,
        images,
        json!(format_label_selector(job_template.get("selector"))),
    ]
}

fn pod_disruption_budget_cells(pdb: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |pointer: &str| present(pdb, pointer).and_then(scalar_text).unwrap_or_else(|| "N/A".into());
    vec![
        name(pdb),
        json!(bound("/spec/minAvailable")),
        json!(bound("/spec/maxUnavailable")),
        json!(int(pdb, "/status/disruptionsAllowed")),
        age(pdb, now),
    ]
}

fn priority_class_cells(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(class),
        json!(int(class, "/value")),
        json!(flag(class, "/globalDefault").unwrap_or(false)),
        age(class, now),
        json!(text(class, "/preemptionPolicy")),
    ]
}

// ---------------------------------------------------------------------------------------------
// Autoscaling
// ---------------------------------------------------------------------------------------------

fn horizontal_pod_autoscaler_cells(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!("{}/{}", text(hpa, "/spec/scaleTargetRef/kind"), text(hpa, "/spec/scaleTargetRef/name"));
    let min_pods = present(hpa, "/spec/minReplicas").and_then(scalar_text).unwrap_or_else(|| "<unset>".into());
    let (specs, statuses) = hpa_metrics(hpa);
    vec![
        name(hpa),
        json!(reference),
        json!(format_hpa_metrics(&specs, &statuses)),
        json!(min_pods),
        json!(int(hpa, "/spec/maxReplicas")),
        json!(int(hpa, "/status/currentReplicas")),
        age(hpa, now),
    ]
}

/// Metric specs and statuses in the autoscaling/v2 shape; an autoscaling/v1 object's CPU target
/// is read as the one Resource metric it converts to.
fn hpa_metrics(hpa: &Value) -> (Vec<Value>, Vec<Value>) {
    if present(hpa, "/spec/metrics").is_some() {
        return (list(hpa, "/spec/metrics").to_vec(), list(hpa, "/status/currentMetrics").to_vec());
    }
    let Some(target) = present(hpa, "/spec/targetCPUUtilizationPercentage") else { return (vec![], vec![]) };
    let spec = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}});
    let statuses = match present(hpa, "/status/currentCPUUtilizationPercentage") {
        Some(current) => {
            vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}})]
        }
        None => vec![],
    };
    (vec![spec], statuses)
}

/// "cpu: 40%/80%, memory: 1Gi/2Gi + 1 more..." — current over target for the first two metrics.
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".into();
    }
    let rendered: Vec<String> =
        specs.iter().enumerate().map(|(i, spec)| format_hpa_metric(spec, statuses.get(i))).collect();
    let shown = rendered[..rendered.len().min(MAX)].join(", ");
    if rendered.len() > MAX { format!("{shown} + {} more...", rendered.len() - MAX) } else { shown }
}

fn format_hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    // Statuses pair with specs by position, and only count when they describe the same source.
    let current = |source: &str| status.and_then(|s| present(s, &format!("/{source}")));
    match text(spec, "/type") {
        kind @ ("External" | "Object") => {
            let source = if kind == "External" { "external" } else { "object" };
            let target = &spec[source]["target"];
            match present(target, "/averageValue") {
                Some(average) => {
                    let now = current(source)
                        .and_then(|c| present(c, "/current/averageValue"))
                        .map_or_else(|| "<unknown>".into(), |v| quantity_ptr(Some(v)));
                    format!("{now}/{} (avg)", quantity_ptr(Some(average)))
                }
                None => {
                    let now = current(source)
                        .map_or_else(|| "<unknown>".into(), |c| quantity_ptr(present(c, "/current/value")));
                    format!("{now}/{}", quantity_ptr(present(target, "/value")))
                }
            }
        }
        "Pods" => {
            let now = current("pods")
                .map_or_else(|| "<unknown>".into(), |c| quantity_ptr(present(c, "/current/averageValue")));
            format!("{now}/{}", quantity_ptr(present(spec, "/pods/target/averageValue")))
        }
        kind @ ("Resource" | "ContainerResource") => {
            let source = if kind == "Resource" { "resource" } else { "containerResource" };
            let resource = text(spec, &format!("/{source}/name"));
            let target = &spec[source]["target"];
            match present(target, "/averageValue") {
                Some(average) => {
                    let now = current(source)
                        .map_or_else(|| "<unknown>".into(), |c| quantity_ptr(present(c, "/current/averageValue")));
                    format!("{resource}: {now}/{}", quantity_ptr(Some(average)))
                }
                None => {
                    let now = current(source)
                        .and_then(|c| present(c, "/current/averageUtilization"))
                        .and_then(scalar_text)
                        .map_or_else(|| "<unknown>".into(), |u| format!("{u}%"));
                    let goal = present(target, "/averageUtilization")
                        .and_then(scalar_text)
                        .map_or_else(|| "<auto>".into(), |u| format!("{u}%"));
                    format!("{resource}: {now}/{goal}")
                }
            }
        }
        _ => "<unknown type>".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------

fn role_binding_cells(binding: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", text(binding, "/roleRef/kind"), text(binding, "/roleRef/name"));
    let subjects = list(binding, "/subjects");
    let of_kind = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|s| text(s, "/kind") == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", text(s, "/namespace"), text(s, "/name")),
                _ => text(s, "/name").to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name(binding),
        json!(role),
        age(binding, now),
        json!(of_kind("User")),
        json!(of_kind("Group")),
        json!(of_kind("ServiceAccount")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RESOURCES;

    const NOW: &str = "2025-06-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn rt(group: &str, kind: &str) -> &'static ResourceType {
        RESOURCES.iter().find(|r| r.group == group && r.kind == kind).unwrap()
    }

    fn header(rt: &ResourceType) -> Vec<String> {
        columns(rt).iter().map(|c| c.name.to_uppercase()).collect()
    }

    fn wide_header(rt: &ResourceType) -> Vec<String> {
        columns(rt).iter().filter(|c| c.priority > 0).map(|c| c.name.to_uppercase()).collect()
    }

    #[test]
    fn human_duration_matches_kubernetes_at_every_boundary() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (599, "9m59s"),
            (600, "10m"),
            (659, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 3 * 60 + 59, "5h3m"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (53 * 3600, "2d5h"),
            (8 * 86400 - 1, "7d23h"),
            (8 * 86400, "8d"),
            (2 * 365 * 86400 - 1, "729d"),
            (2 * 365 * 86400, "2y"),
            ((2 * 365 + 45) * 86400, "2y45d"),
            (8 * 365 * 86400 - 1, "7y364d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400, "20y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(*seconds)), *want, "{seconds}s");
        }
    }

    #[test]
    fn ages_tolerate_a_second_of_clock_skew_and_flag_the_future() {
        let t = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        assert_eq!(since(t("2025-06-01T12:00:01Z"), now()), "0s");
        assert_eq!(since(t("2025-06-01T12:00:05Z"), now()), "<invalid>");
        assert_eq!(since(t("2025-06-01T11:55:00.5Z"), now()), "4m59s");
        assert_eq!(since(None, now()), "<unknown>");
    }

    /// (columns by upper-cased name, expected cell) for a row.
    fn assert_row(rt: &ResourceType, obj: Value, expected: &[(&str, Value)]) {
        let cells = row_cells(rt, &obj, now());
        let names = header(rt);
        assert_eq!(cells.len(), names.len(), "one cell per column: {cells:?}");
        for (column, want) in expected {
            let at = names.iter().position(|n| n == column).unwrap_or_else(|| panic!("no column {column}"));
            assert_eq!(&cells[at], want, "column {column} of {cells:?}");
        }
    }

    #[test]
    fn pod_columns_are_kubernetes_pod_columns() {
        let pod = rt("", "Pod");
        assert_eq!(
            header(pod),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
        );
        assert_eq!(wide_header(pod), ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
        assert_eq!(columns(pod)[0].format, "name");
    }

    #[test]
    fn running_pod_with_restarts_shows_when_it_last_restarted() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2025-06-01T10:00:00Z"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app"}, {"name": "log"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.7",
                "podIPs": [{"ip": "10.0.0.7"}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 3, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:55:00Z"}}},
                    {"name": "log", "ready": false, "restartCount": 0, "state": {"running": {}}}
                ]
            }
        });
        assert_row(
            rt("", "Pod"),
            pod,
            &[
                ("NAME", json!("web-1")),
                ("READY", json!("1/2")),
                ("STATUS", json!("Running")),
                ("RESTARTS", json!("3 (5m ago)")),
                ("AGE", json!("120m")),
                ("IP", json!("10.0.0.7")),
                ("NODE", json!("node-a")),
                ("NOMINATED NODE", json!("<none>")),
                ("READINESS GATES", json!("<none>")),
            ],
        );
    }

    #[test]
    fn pending_pod_reads_as_pending_then_as_its_waiting_reason() {
        let pending = json!({
            "metadata": {"name": "p", "creationTimestamp": "2025-06-01T11:59:15Z"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Pending"}
        });
        assert_row(
            rt("", "Pod"),
            pending,
            &[
                ("READY", json!("0/1")),
                ("STATUS", json!("Pending")),
                ("RESTARTS", json!("0")),
                ("AGE", json!("45s")),
                ("IP", json!("<none>")),
                ("NODE", json!("<none>")),
            ],
        );
        let creating = json!({
            "metadata": {"name": "p"},
            "spec": {"nodeName": "n", "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]}
        });
        assert_row(rt("", "Pod"), creating, &[("STATUS", json!("ContainerCreating")), ("AGE", json!("<unknown>"))]);
    }

    /// The STATUS column for pod shapes a user meets.
    #[test]
    fn pod_status_reasons() {
        let cases: &[(&str, Value, &str)] = &[
            (
                "crash loop",
                json!({"status": {"phase": "Running", "containerStatuses": [
                    {"name": "a", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
                "CrashLoopBackOff",
            ),
            (
                "completed",
                json!({"status": {"phase": "Succeeded", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                "Completed",
            ),
            (
                "exit code without reason",
                json!({"status": {"phase": "Failed", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 2}}}]}}),
                "ExitCode:2",
            ),
            (
                "signal without reason",
                json!({"status": {"phase": "Failed", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}}),
                "Signal:9",
            ),
            (
                "first init container running",
                json!({"spec": {"initContainers": [{"name": "i"}]}, "status": {"phase": "Pending",
                    "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]}}),
                "Init:0/1",
            ),
            (
                "init container crash looping",
                json!({"spec": {"initContainers": [{"name": "i"}, {"name": "j"}]}, "status": {"phase": "Pending",
                    "initContainerStatuses": [
                        {"name": "i", "state": {"terminated": {"exitCode": 0}}},
                        {"name": "j", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
                "Init:CrashLoopBackOff",
            ),
            (
                "init container failed",
                json!({"spec": {"initContainers": [{"name": "i"}]}, "status": {"phase": "Pending",
                    "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}),
                "Init:Error",
            ),
            (
                "scheduling gated",
                json!({"status": {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
                "SchedulingGated",
            ),
            ("evicted", json!({"status": {"phase": "Failed", "reason": "Evicted"}}), "Evicted"),
            (
                "one container completed, another running and ready",
                json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        {"name": "a", "ready": true, "state": {"running": {}}},
                        {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                "Running",
            ),
            (
                "one container completed, another running, pod not ready",
                json!({"status": {"phase": "Running", "containerStatuses": [
                        {"name": "a", "ready": true, "state": {"running": {}}},
                        {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                "NotReady",
            ),
            (
                "deleted on a lost node",
                json!({"metadata": {"deletionTimestamp": "2025-06-01T11:00:00Z"},
                    "status": {"phase": "Running", "reason": "NodeLost"}}),
                "Unknown",
            ),
            (
                "deleted after finishing",
                json!({"metadata": {"deletionTimestamp": "2025-06-01T11:00:00Z"}, "status": {"phase": "Succeeded"}}),
                "Succeeded",
            ),
        ];
        for (what, pod, want) in cases {
            assert_eq!(pod_summary(pod).reason, *want, "{what}");
        }
    }

    #[test]
    fn terminating_pod_says_terminating_whatever_its_containers_do() {
        let pod = json!({
            "metadata": {"name": "old", "creationTimestamp": "2025-05-30T07:00:00Z",
                         "deletionTimestamp": "2025-06-01T11:59:30Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        });
        assert_row(
            rt("", "Pod"),
            pod,
            &[("READY", json!("1/1")), ("STATUS", json!("Terminating")), ("AGE", json!("2d5h"))],
        );
    }

    #[test]
    fn sidecars_count_as_containers_and_their_restarts_stay_counted() {
        let pod = json!({
            "metadata": {"name": "s"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "a"}],
                     "readinessGates": [{"conditionType": "example.com/lb"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "example.com/lb", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 2,
                    "state": {"running": {}}}],
                "containerStatuses": [{"name": "a", "ready": true, "restartCount": 1, "state": {"running": {}}}]}
        });
        let cells = row_cells(rt("", "Pod"), &pod, now());
        assert_eq!(cells[1], json!("2/2"));
        assert_eq!(cells[2], json!("Running"));
        assert_eq!(cells[3], json!("3"), "no last termination time, so no '(… ago)'");
        assert_eq!(cells[8], json!("1/1"));
    }

    #[test]
    fn finished_pod_rows_carry_a_completed_condition() {
        let pod = json!({"metadata": {"name": "done"}, "status": {"phase": "Succeeded"}});
        let row = row(rt("", "Pod"), &pod, now(), IncludeObject::Metadata);
        assert_eq!(row["conditions"][0]["type"], "Completed");
        assert_eq!(row["conditions"][0]["reason"], "Succeeded");
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["name"], "done");
    }

    #[test]
    fn deployment_row() {
        let deploy = rt("apps", "Deployment");
        assert_eq!(
            header(deploy),
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
        );
        let obj = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-06-01T11:50:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                             "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"},
                                                    {"name": "side", "image": "busybox"}]}}
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_row(
            deploy,
            obj,
            &[
                ("NAME", json!("web")),
                ("READY", json!("2/3")),
                ("UP-TO-DATE", json!(3)),
                ("AVAILABLE", json!(2)),
                ("AGE", json!("10m")),
                ("CONTAINERS", json!("nginx,side")),
                ("IMAGES", json!("nginx:1.27,busybox")),
                ("SELECTOR", json!("app=web,env in (dev,prod),tier=fe")),
            ],
        );
    }

    #[test]
    fn node_port_service_row() {
        let svc = rt("", "Service");
        assert_eq!(header(svc), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]);
        let obj = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-06-01T08:57:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "selector": {"tier": "fe", "app": "web"},
                     "ports": [{"port": 8080, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}
        });
        assert_row(
            svc,
            obj,
            &[
                ("TYPE", json!("NodePort")),
                ("CLUSTER-IP", json!("10.96.0.10")),
                ("EXTERNAL-IP", json!("<none>")),
                ("PORT(S)", json!("8080:30080/TCP,53/UDP")),
                ("AGE", json!("3h3m")),
                ("SELECTOR", json!("app=web,tier=fe")),
            ],
        );
    }

    #[test]
    fn service_external_ips_by_type() {
        let svc = rt("", "Service");
        let external = |spec: Value, status: Value| {
            row_cells(svc, &json!({"metadata": {"name": "s"}, "spec": spec, "status": status}), now())[3].clone()
        };
        assert_eq!(external(json!({"type": "LoadBalancer"}), json!({})), json!("<pending>"));
        assert_eq!(
            external(
                json!({"type": "LoadBalancer", "externalIPs": ["5.5.5.5"]}),
                json!({"loadBalancer": {"ingress": [{"ip": "9.9.9.9"}, {"hostname": "lb.example.com"}]}})
            ),
            json!("9.9.9.9,lb.example.com,5.5.5.5")
        );
        assert_eq!(
            external(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({})),
            "db.example.com"
        );
        assert_eq!(external(json!({"clusterIP": "None", "externalIPs": ["1.2.3.4"]}), json!({})), "1.2.3.4");
    }

    #[test]
    fn cordoned_ready_node_with_a_role() {
        let node = rt("", "Node");
        assert_eq!(
            header(node),
            [
                "NAME",
                "STATUS",
                "ROLES",
                "AGE",
                "VERSION",
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME"
            ]
        );
        let obj = json!({
            "metadata": {"name": "node-a", "creationTimestamp": "2025-05-24T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-a"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-a"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.24"}
            }
        });
        assert_row(
            node,
            obj,
            &[
                ("STATUS", json!("Ready,SchedulingDisabled")),
                ("ROLES", json!("control-plane")),
                ("AGE", json!("8d")),
                ("VERSION", json!("v1.33.0")),
                ("INTERNAL-IP", json!("192.168.1.10")),
                ("EXTERNAL-IP", json!("<none>")),
                ("OS-IMAGE", json!("Debian GNU/Linux 12 (bookworm)")),
                ("CONTAINER-RUNTIME", json!("containerd://1.7.24")),
            ],
        );
        let bare =
            json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_row(
            node,
            bare,
            &[("STATUS", json!("NotReady")), ("ROLES", json!("<none>")), ("OS-IMAGE", json!("<unknown>"))],
        );
        assert_row(node, json!({"metadata": {"name": "n"}}), &[("STATUS", json!("Unknown"))]);
    }

    #[test]
    fn event_rows_for_both_event_apis() {
        let core = rt("", "Event");
        assert_eq!(
            header(core),
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME"]
        );
        assert_eq!(wide_header(core), ["SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME"]);
        let event = json!({
            "metadata": {"name": "web-1.17f"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2025-06-01T11:00:00Z", "lastTimestamp": "2025-06-01T11:58:00Z", "count": 12
        });
        assert_eq!(
            row_cells(core, &event, now()),
            vec![
                json!("2m"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-1"),
                json!("spec.containers{app}"),
                json!("kubelet, node-a"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(12),
                json!("web-1.17f"),
            ]
        );
        let new_api = json!({
            "metadata": {"name": "e"},
            "regarding": {"kind": "Node", "name": "node-a"},
            "reason": "Starting", "type": "Normal", "note": "Starting kubelet.",
            "reportingController": "kubelet", "reportingInstance": "node-a",
            "eventTime": "2025-06-01T11:59:30.123456Z"
        });
        let cells = row_cells(rt("events.k8s.io", "Event"), &new_api, now());
        assert_eq!(cells[0], json!("29s"));
        assert_eq!(cells[3], json!("node/node-a"));
        assert_eq!(cells[5], json!("kubelet, node-a"));
        assert_eq!(cells[6], json!("Starting kubelet."));
        assert_eq!(cells[8], json!(1));
    }

    #[test]
    fn job_and_cron_job_rows() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2025-06-01T11:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": "2025-06-01T11:00:00Z", "completionTime": "2025-06-01T11:00:37Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}
        });
        let jobs = rt("batch", "Job");
        assert_eq!(
            header(jobs),
            ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
        );
        assert_row(
            jobs,
            job,
            &[
                ("STATUS", json!("Complete")),
                ("COMPLETIONS", json!("1/1")),
                ("DURATION", json!("37s")),
                ("AGE", json!("60m")),
                ("SELECTOR", json!("batch.kubernetes.io/controller-uid=u1")),
            ],
        );
        let running = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 3}, "status": {"startTime": "2025-06-01T11:57:00Z"}});
        assert_row(
            jobs,
            running,
            &[("STATUS", json!("Running")), ("COMPLETIONS", json!("0/1 of 3")), ("DURATION", json!("3m"))],
        );

        let cron = rt("batch", "CronJob");
        assert_eq!(
            header(cron),
            [
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ]
        );
        let obj = json!({
            "metadata": {"name": "hello", "creationTimestamp": "2025-06-01T10:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2025-06-01T11:55:00Z"}
        });
        assert_row(
            cron,
            obj,
            &[
                ("TIMEZONE", json!("<none>")),
                ("SUSPEND", json!("False")),
                ("ACTIVE", json!(1)),
                ("LAST SCHEDULE", json!("5m")),
                ("SELECTOR", json!("<none>")),
            ],
        );
    }

    #[test]
    fn small_kinds_rows() {
        let at = "2025-06-01T11:59:00Z";
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": at}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(row_cells(rt("", "ConfigMap"), &cm, now()), vec![json!("c"), json!(3), json!("60s")]);
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}});
        assert_eq!(row_cells(rt("", "Secret"), &secret, now())[1..3], [json!("Opaque"), json!(1)]);
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(row_cells(rt("", "Namespace"), &ns, now())[1], json!("Active"));
        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-a"}});
        assert_eq!(row_cells(rt("coordination.k8s.io", "Lease"), &lease, now())[1], json!("node-a"));
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2025-06-01T11:00:00.000Z"}});
        let roles = rt("rbac.authorization.k8s.io", "Role");
        assert_eq!(header(roles), ["NAME", "CREATED AT"]);
        assert_eq!(columns(roles)[1].type_, "date");
        assert_eq!(row_cells(roles, &role, now()), vec![json!("r"), json!("2025-06-01T11:00:00Z")]);
        let binding = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                         {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"}, {"kind": "User", "name": "bob"}]});
        assert_eq!(
            row_cells(rt("rbac.authorization.k8s.io", "RoleBinding"), &binding, now()),
            vec![
                json!("b"),
                json!("ClusterRole/view"),
                json!("<unknown>"),
                json!("alice, bob"),
                json!("devs"),
                json!("ci/bot")
            ]
        );
        let endpoints = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            row_cells(rt("", "Endpoints"), &endpoints, now())[1],
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...")
        );
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi"},
            "used": {"pods": "2", "limits.memory": "512Mi"}}});
        assert_eq!(
            row_cells(rt("", "ResourceQuota"), &quota, now())[1..3],
            [json!("pods: 2/10, requests.cpu: 0/1"), json!("limits.memory: 512Mi/2Gi")]
        );
    }

    #[test]
    fn storage_autoscaling_and_controller_rows() {
        let hpa = json!({"metadata": {"name": "h"}, "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
                {"type": "Pods", "pods": {"target": {"averageValue": "10"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}}]}});
        let v2 = rt("autoscaling", "HorizontalPodAutoscaler");
        assert_eq!(header(v2), ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]);
        assert_eq!(
            row_cells(v2, &hpa, now())[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 40%/80%, memory: <unknown>/1Gi + 1 more..."),
                json!("1"),
                json!(5),
                json!(2)
            ]
        );
        let v1 = json!({"spec": {"targetCPUUtilizationPercentage": 50}});
        assert_eq!(row_cells(v2, &v1, now())[2], json!("cpu: <unknown>/50%"));
        assert_eq!(row_cells(v2, &json!({}), now())[2..4], [json!("<none>"), json!("<unset>")]);

        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            row_cells(rt("", "PersistentVolume"), &pv, now()),
            vec![
                json!("pv1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("local"),
                json!("<unset>"),
                json!(""),
                json!("<unknown>"),
                json!("<unset>")
            ]
        );
        let pending_claim = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "local"},
            "status": {"phase": "Pending", "capacity": {"storage": "1Gi"}}});
        assert_eq!(
            row_cells(rt("", "PersistentVolumeClaim"), &pending_claim, now())[1..6],
            [json!("Pending"), json!(""), json!(""), json!(""), json!("local")]
        );
        let class = json!({"metadata": {"name": "local",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "tug.io/hostpath"});
        assert_eq!(
            row_cells(rt("storage.k8s.io", "StorageClass"), &class, now())[..5],
            [json!("local (default)"), json!("tug.io/hostpath"), json!("Delete"), json!("Immediate"), json!(false)]
        );
        let revision = json!({"metadata": {"name": "web-7d9", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 2});
        assert_eq!(
            row_cells(rt("apps", "ControllerRevision"), &revision, now())[1..3],
            [json!("statefulset.apps/web"), json!(2)]
        );
        let pdb =
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            row_cells(rt("policy", "PodDisruptionBudget"), &pdb, now())[1..4],
            [json!("50%"), json!("N/A"), json!(1)]
        );
        let ds = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
            "status": {"desiredNumberScheduled": 2, "numberReady": 1}});
        let daemon_sets = rt("apps", "DaemonSet");
        assert_eq!(
            header(daemon_sets)[..8],
            ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
        );
        assert_eq!(
            row_cells(daemon_sets, &ds, now())[1..7],
            [json!(2), json!(0), json!(1), json!(0), json!(0), json!("kubernetes.io/os=linux")]
        );
    }

    #[test]
    fn kinds_without_a_printer_show_name_and_age() {
        let custom = ResourceType { group: "example.com", kind: "Widget", ..rt("", "ConfigMap").clone() };
        assert_eq!(header(&custom), ["NAME", "AGE"]);
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2025-06-01T11:00:00Z"}});
        assert_eq!(row_cells(&custom, &obj, now()), vec![json!("w"), json!("60m")]);
    }

    #[test]
    fn every_served_type_has_one_cell_per_column_even_for_an_empty_object() {
        for rt in RESOURCES {
            let cells = row_cells(rt, &json!({}), now());
            assert_eq!(cells.len(), columns(rt).len(), "{}", rt.kind);
            let definitions = column_definitions(rt);
            assert_eq!(definitions.as_array().unwrap().len(), cells.len());
            assert_eq!(
                definitions.as_array().unwrap().iter().filter(|c| c["format"] == "name").count(),
                1,
                "{}",
                rt.kind
            );
        }
    }

    #[test]
    fn selectors_print_as_kubectl_prints_them() {
        let cases: &[(Value, &str)] = &[
            (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["x"]},
                                         {"key": "arch", "operator": "Exists"},
                                         {"key": "gpu", "operator": "DoesNotExist"}]}),
                "arch,env notin (x),!gpu",
            ),
            (json!({}), "<none>"),
            (json!({"matchExpressions": [{"key": "k", "operator": "In", "values": []}]}), "<error>"),
        ];
        for (selector, want) in cases {
            assert_eq!(format_label_selector(Some(selector)), *want, "{selector}");
        }
        assert_eq!(format_label_selector(None), "<none>");
    }

    #[test]
    fn table_carries_definitions_rows_and_resource_version() {
        let objects = [json!({"metadata": {"name": "a", "namespace": "default"}})];
        let table = table(rt("", "ConfigMap"), &objects, now(), "42", IncludeObject::None);
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["metadata"]["resourceVersion"], "42");
        assert_eq!(
            table["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name",
            "description": NAME.description, "priority": 0})
        );
        assert_eq!(table["rows"][0]["cells"][0], "a");
        assert!(table["rows"][0].get("object").is_none());
        assert_eq!(IncludeObject::from_query(None), Some(IncludeObject::Metadata));
        assert_eq!(IncludeObject::from_query(Some("Object")), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::from_query(Some("Everything")), None);
    }
}
