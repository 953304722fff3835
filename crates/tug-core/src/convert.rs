//! Conversion between API versions that share one storage.
//!
//! As in Kubernetes, a resource served in several versions is stored in one of them (its storage
//! version) and the API server converts on the way in (a write through another version) and out (a
//! read, list or watch through it). Two resources have a second version:
//!
//! - Events are stored as core `v1` Events; `events.k8s.io/v1` holds the same data under newer
//!   field names (`regarding` is `involvedObject`, `note` is `message`, ...).
//! - HorizontalPodAutoscalers are stored as `autoscaling/v2`; `autoscaling/v1` only knows a CPU
//!   utilization target, so everything else rides in the `autoscaling.alpha.kubernetes.io/*`
//!   annotations Kubernetes uses, and a v1 read-modify-write keeps the v2-only data.
//!
//! Conversion never fails: fields it does not know pass through, and a malformed round-trip
//! annotation is dropped (Kubernetes would reject the write; these functions cannot).

use serde_json::{Map, Value};

use crate::registry::ResourceType;

type Object = Map<String, Value>;

const EVENTS_STORAGE: &str = "events";
const HPA_STORAGE: &str = "horizontalpodautoscalers.autoscaling";

/// The storages whose objects are kept in one version although they are served in several.
const STORAGE_VERSIONS: &[(&str, &str)] = &[(EVENTS_STORAGE, "v1"), (HPA_STORAGE, "autoscaling/v2")];

/// The apiVersion objects of this storage are kept in ("v1" for events, "autoscaling/v2" for HPAs), if it differs per version.
pub fn storage_version(rt: &ResourceType) -> String {
    STORAGE_VERSIONS
        .iter()
        .find(|(storage, _)| *storage == rt.storage)
        .map_or_else(|| rt.api_version(), |(_, version)| version.to_string())
}

/// Converts an object from rt's version into the storage version (identity when equal). Sets apiVersion/kind.
pub fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    let Value::Object(mut fields) = obj else { return obj };
    match conversion(rt) {
        Some(Conversion::EventsV1) => fields = rename_fields(fields, event_field_in_core),
        Some(Conversion::AutoscalingV1) => hpa_v1_to_v2(&mut fields),
        None => {}
    }
    stamp(fields, storage_version(rt), rt.kind)
}

/// Converts a stored object into rt's version (identity when equal). Sets apiVersion/kind.
pub fn from_storage(rt: &ResourceType, obj: Value) -> Value {
    let Value::Object(mut fields) = obj else { return obj };
    match conversion(rt) {
        Some(Conversion::EventsV1) => fields = rename_fields(fields, core_field_in_events),
        Some(Conversion::AutoscalingV1) => hpa_v2_to_v1(&mut fields),
        None => {}
    }
    stamp(fields, rt.api_version(), rt.kind)
}

/// A served version that differs from its storage version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    /// `events.k8s.io/v1` Event, stored as core `v1`.
    EventsV1,
    /// `autoscaling/v1` HorizontalPodAutoscaler, stored as `autoscaling/v2`.
    AutoscalingV1,
}

fn conversion(rt: &ResourceType) -> Option<Conversion> {
    match (rt.storage, rt.api_version().as_str()) {
        (EVENTS_STORAGE, "events.k8s.io/v1") => Some(Conversion::EventsV1),
        (HPA_STORAGE, "autoscaling/v1") => Some(Conversion::AutoscalingV1),
        _ => None,
    }
}

fn stamp(mut fields: Object, api_version: String, kind: &str) -> Value {
    fields.insert("apiVersion".into(), Value::String(api_version));
    fields.insert("kind".into(), Value::String(kind.into()));
    Value::Object(fields)
}

// ---- Events ----

/// `events.k8s.io/v1` field names and the core `v1` names of the same data; every other field
/// (metadata, reason, type, action, related, eventTime, series, reportingInstance) is shared.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn event_field_in_core(events_field: &str) -> Option<&'static str> {
    EVENT_RENAMES.iter().find(|(events, _)| *events == events_field).map(|(_, core)| *core)
}

fn core_field_in_events(core_field: &str) -> Option<&'static str> {
    EVENT_RENAMES.iter().find(|(_, core)| *core == core_field).map(|(events, _)| *events)
}

/// Renames the fields `rename` knows. A renamed field wins over a same-named stray field, which
/// the source version does not define.
fn rename_fields(fields: Object, rename: impl Fn(&str) -> Option<&'static str>) -> Object {
    let mut out = Object::new();
    let mut renamed = Vec::new();
    for (key, value) in fields {
        match rename(&key) {
            Some(new_key) => renamed.push((new_key, value)),
            None => {
                out.insert(key, value);
            }
        }
    }
    for (key, value) in renamed {
        out.insert(key.into(), value);
    }
    out
}

// ---- HorizontalPodAutoscalers ----

/// v2 `spec.metrics` other than the CPU utilization target, in the v1 metric format.
const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// v2 `status.currentMetrics`, all of them, in the v1 metric status format.
const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// v2 `status.conditions`, same format in both versions.
const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// v2 `spec.behavior`, same format in both versions.
const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
const ROUND_TRIP_ANNOTATIONS: [&str; 4] =
    [METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, CONDITIONS_ANNOTATION, BEHAVIOR_ANNOTATION];

/// autoscaling/v1's implicit target when none is set; v2 makes it explicit (Kubernetes'
/// `DefaultCPUUtilization`).
const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// The v2-only data an autoscaling/v1 object carries in annotations.
#[derive(Debug, Default)]
struct RoundTrip {
    /// v1 metric format.
    metrics: Option<Vec<Value>>,
    /// v1 metric status format.
    current_metrics: Option<Vec<Value>>,
    conditions: Option<Vec<Value>>,
    behavior: Option<Value>,
}

fn hpa_v1_to_v2(hpa: &mut Object) {
    let kept = take_round_trip_annotations(hpa);
    // v2 always has metrics (the v1 default made explicit), so a missing spec still gets one.
    let spec = hpa.entry("spec").or_insert_with(|| Value::Object(Object::new()));
    if let Some(spec) = spec.as_object_mut() {
        hpa_spec_to_v2(spec, &kept);
    }
    let has_status_annotations = kept.current_metrics.is_some() || kept.conditions.is_some();
    if has_status_annotations && !hpa.contains_key("status") {
        hpa.insert("status".into(), Value::Object(Object::new()));
    }
    if let Some(status) = hpa.get_mut("status").and_then(Value::as_object_mut) {
        hpa_status_to_v2(status, kept);
    }
}

fn hpa_spec_to_v2(spec: &mut Object, kept: &RoundTrip) {
    // Kubernetes order: the annotated metrics, then the CPU target.
    let mut metrics: Vec<Value> = kept.metrics.iter().flatten().map(metric_spec_to_v2).collect();
    if let Some(cpu) = take_non_null(spec, "targetCPUUtilizationPercentage") {
        metrics.push(cpu_utilization_target(cpu));
    }
    if metrics.is_empty() {
        metrics.push(cpu_utilization_target(DEFAULT_CPU_UTILIZATION.into()));
    }
    spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(behavior) = &kept.behavior {
        spec.insert("behavior".into(), behavior.clone());
    }
}

fn hpa_status_to_v2(status: &mut Object, kept: RoundTrip) {
    let cpu = take_non_null(status, "currentCPUUtilizationPercentage");
    // The annotation holds every current metric, the CPU one included with its raw value.
    let current: Vec<Value> = match kept.current_metrics {
        Some(annotated) => annotated.iter().map(metric_status_to_v2).collect(),
        None => cpu.map(cpu_utilization_status).into_iter().collect(),
    };
    if !current.is_empty() {
        status.insert("currentMetrics".into(), Value::Array(current));
    }
    if let Some(conditions) = kept.conditions {
        status.insert("conditions".into(), Value::Array(conditions));
    }
}

fn hpa_v2_to_v1(hpa: &mut Object) {
    // Only annotations this conversion produces may be present, not stale ones from a v2 write.
    drop_round_trip_annotations(hpa);
    let mut kept = RoundTrip::default();
    if let Some(spec) = hpa.get_mut("spec").and_then(Value::as_object_mut) {
        hpa_spec_to_v1(spec, &mut kept);
    }
    if let Some(status) = hpa.get_mut("status").and_then(Value::as_object_mut) {
        hpa_status_to_v1(status, &mut kept);
    }
    put_round_trip_annotations(hpa, kept);
}

fn hpa_spec_to_v1(spec: &mut Object, kept: &mut RoundTrip) {
    let metrics = take_array(spec, "metrics");
    let cpu_index = metrics.iter().position(|m| cpu_target_utilization(m).is_some());
    if let Some(cpu) = cpu_index.and_then(|i| cpu_target_utilization(&metrics[i])) {
        spec.insert("targetCPUUtilizationPercentage".into(), cpu.clone());
    }
    // Unlike Kubernetes, which drops every CPU utilization target but the first, only the one
    // that became targetCPUUtilizationPercentage is left out, so duplicates survive too.
    let others: Vec<Value> =
        metrics.iter().enumerate().filter(|(i, _)| Some(*i) != cpu_index).map(|(_, m)| metric_spec_to_v1(m)).collect();
    if !others.is_empty() {
        kept.metrics = Some(others);
    }
    kept.behavior = take_non_null(spec, "behavior");
}

fn hpa_status_to_v1(status: &mut Object, kept: &mut RoundTrip) {
    // Required in v1 (Go's v1 struct has no omitempty on them); v2 omits currentReplicas at 0.
    for field in ["currentReplicas", "desiredReplicas"] {
        status.entry(field).or_insert(Value::from(0));
    }
    let current = take_array(status, "currentMetrics");
    if let Some(cpu) = current.iter().find_map(cpu_current_utilization) {
        status.insert("currentCPUUtilizationPercentage".into(), cpu.clone());
    }
    if !current.is_empty() {
        kept.current_metrics = Some(current.iter().map(metric_status_to_v1).collect());
    }
    let conditions = take_array(status, "conditions");
    if !conditions.is_empty() {
        kept.conditions = Some(conditions);
    }
}

fn cpu_utilization_target(percent: Value) -> Value {
    serde_json::json!({
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}},
    })
}

fn cpu_utilization_status(percent: Value) -> Value {
    serde_json::json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": percent}}})
}

fn is_cpu_resource(metric: &Value) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && lookup(metric, "resource.name").and_then(Value::as_str) == Some("cpu")
}

/// The utilization percentage of a v2 CPU target, the one metric v1 can express.
fn cpu_target_utilization(metric: &Value) -> Option<&Value> {
    lookup(metric, "resource.target.averageUtilization").filter(|_| is_cpu_resource(metric))
}

fn cpu_current_utilization(metric: &Value) -> Option<&Value> {
    lookup(metric, "resource.current.averageUtilization").filter(|_| is_cpu_resource(metric))
}

// ---- Round-trip annotations ----

fn annotations_mut(obj: &mut Object) -> Option<&mut Object> {
    obj.get_mut("metadata")?.get_mut("annotations")?.as_object_mut()
}

/// Removes the round-trip annotations, and the annotations map if nothing else was in it.
fn drop_round_trip_annotations(obj: &mut Object) {
    let Some(annotations) = annotations_mut(obj) else { return };
    let before = annotations.len();
    annotations.retain(|key, _| !ROUND_TRIP_ANNOTATIONS.contains(&key.as_str()));
    if annotations.is_empty()
        && before > 0
        && let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        metadata.remove("annotations");
    }
}

fn take_round_trip_annotations(obj: &mut Object) -> RoundTrip {
    let parsed = |key: &str| -> Option<Value> {
        let annotations = obj.get("metadata")?.get("annotations")?;
        serde_json::from_str(annotations.get(key)?.as_str()?).ok()
    };
    let list = |value: Option<Value>| match value {
        Some(Value::Array(items)) => Some(items),
        _ => None,
    };
    let kept = RoundTrip {
        metrics: list(parsed(METRICS_ANNOTATION)),
        current_metrics: list(parsed(CURRENT_METRICS_ANNOTATION)),
        conditions: list(parsed(CONDITIONS_ANNOTATION)),
        behavior: parsed(BEHAVIOR_ANNOTATION).filter(Value::is_object),
    };
    drop_round_trip_annotations(obj);
    kept
}

fn put_round_trip_annotations(obj: &mut Object, kept: RoundTrip) {
    let encoded = [
        (METRICS_ANNOTATION, kept.metrics.map(Value::Array)),
        (CURRENT_METRICS_ANNOTATION, kept.current_metrics.map(Value::Array)),
        (CONDITIONS_ANNOTATION, kept.conditions.map(Value::Array)),
        (BEHAVIOR_ANNOTATION, kept.behavior),
    ];
    for (key, value) in encoded {
        let Some(value) = value else { continue };
        let metadata = obj.entry("metadata").or_insert_with(|| Value::Object(Object::new()));
        let Some(metadata) = metadata.as_object_mut() else { return };
        let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(Object::new()));
        let Some(annotations) = annotations.as_object_mut() else { return };
        annotations.insert(key.into(), Value::String(value.to_string()));
    }
}

// ---- Metric formats ----

/// Where one metric source type's fields sit in the v1 annotation format (left) and in v2
/// (right); paths are relative to the member named after the type (`object`, `pods`, ...).
#[derive(Debug)]
struct MetricLayout {
    type_name: &'static str,
    member: &'static str,
    spec: &'static [(&'static str, &'static str)],
    status: &'static [(&'static str, &'static str)],
    /// v1 targets have no type; Kubernetes infers it from which values are set.
    target_type: fn(&Value) -> &'static str,
}

const METRIC_LAYOUTS: &[MetricLayout] = &[
    MetricLayout {
        type_name: "Object",
        member: "object",
        spec: &[
            ("target", "describedObject"),
            ("metricName", "metric.name"),
            ("selector", "metric.selector"),
            ("targetValue", "target.value"),
            ("averageValue", "target.averageValue"),
        ],
        status: &[
            ("target", "describedObject"),
            ("metricName", "metric.name"),
            ("selector", "metric.selector"),
            ("currentValue", "current.value"),
            ("averageValue", "current.averageValue"),
        ],
        target_type: |v1| if v1.get("averageValue").is_some() { "AverageValue" } else { "Value" },
    },
    MetricLayout {
        type_name: "Pods",
        member: "pods",
        spec: &[
            ("metricName", "metric.name"),
            ("selector", "metric.selector"),
            ("targetAverageValue", "target.averageValue"),
        ],
        status: &[
            ("metricName", "metric.name"),
            ("selector", "metric.selector"),
            ("currentAverageValue", "current.averageValue"),
        ],
        target_type: |_| "AverageValue",
    },
    MetricLayout {
        type_name: "Resource",
        member: "resource",
        spec: &[
            ("name", "name"),
            ("targetAverageUtilization", "target.averageUtilization"),
            ("targetAverageValue", "target.averageValue"),
        ],
        status: &[
            ("name", "name"),
            ("currentAverageUtilization", "current.averageUtilization"),
            ("currentAverageValue", "current.averageValue"),
        ],
        target_type: utilization_or_average_value,
    },
    MetricLayout {
        type_name: "ContainerResource",
        member: "containerResource",
        spec: &[
            ("name", "name"),
            ("container", "container"),
            ("targetAverageUtilization", "target.averageUtilization"),
            ("targetAverageValue", "target.averageValue"),
        ],
        status: &[
            ("name", "name"),
            ("container", "container"),
            ("currentAverageUtilization", "current.averageUtilization"),
            ("currentAverageValue", "current.averageValue"),
        ],
        target_type: utilization_or_average_value,
    },
    MetricLayout {
        type_name: "External",
        member: "external",
        spec: &[
            ("metricName", "metric.name"),
            ("metricSelector", "metric.selector"),
            ("targetValue", "target.value"),
            ("targetAverageValue", "target.averageValue"),
        ],
        status: &[
            ("metricName", "metric.name"),
            ("metricSelector", "metric.selector"),
            ("currentValue", "current.value"),
            ("currentAverageValue", "current.averageValue"),
        ],
        target_type: |v1| if v1.get("targetValue").is_some() { "Value" } else { "AverageValue" },
    },
];

fn utilization_or_average_value(v1: &Value) -> &'static str {
    if v1.get("targetAverageUtilization").is_some() { "Utilization" } else { "AverageValue" }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Towards {
    V1,
    V2,
}

fn metric_spec_to_v1(metric: &Value) -> Value {
    reshape_metric(metric, |layout| layout.spec, Towards::V1)
}

fn metric_spec_to_v2(metric: &Value) -> Value {
    let mut reshaped = reshape_metric(metric, |layout| layout.spec, Towards::V2);
    if let Some(layout) = layout_of(metric)
        && let Some(source) = metric.get(layout.member)
        && let Some(member) = reshaped.get_mut(layout.member).and_then(Value::as_object_mut)
    {
        put(member, "target.type", Value::String((layout.target_type)(source).into()));
    }
    reshaped
}

fn metric_status_to_v1(metric: &Value) -> Value {
    reshape_metric(metric, |layout| layout.status, Towards::V1)
}

fn metric_status_to_v2(metric: &Value) -> Value {
    reshape_metric(metric, |layout| layout.status, Towards::V2)
}

fn layout_of(metric: &Value) -> Option<&'static MetricLayout> {
    let type_name = metric.get("type")?.as_str()?;
    METRIC_LAYOUTS.iter().find(|layout| layout.type_name == type_name)
}

/// Moves a metric's fields between the v1 and v2 layouts; a metric of a type neither knows
/// passes through unchanged.
fn reshape_metric(
    metric: &Value,
    paths: fn(&MetricLayout) -> &'static [(&'static str, &'static str)],
    towards: Towards,
) -> Value {
    let Some(layout) = layout_of(metric) else { return metric.clone() };
    let Some(source) = metric.get(layout.member) else { return metric.clone() };
    let mut member = Object::new();
    for &(v1_path, v2_path) in paths(layout) {
        let (from, to) = match towards {
            Towards::V1 => (v2_path, v1_path),
            Towards::V2 => (v1_path, v2_path),
        };
        if let Some(value) = lookup(source, from) {
            put(&mut member, to, value.clone());
        }
    }
    let mut reshaped = Object::new();
    reshaped.insert("type".into(), Value::String(layout.type_name.into()));
    reshaped.insert(layout.member.into(), Value::Object(member));
    Value::Object(reshaped)
}

// ---- JSON helpers ----

/// The non-null value at a dotted path.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |value, key| value.get(key)).filter(|value| !value.is_null())
}

/// Sets a dotted path, creating the objects on the way.
fn put(target: &mut Object, path: &str, value: Value) {
    let (parents, leaf) = path.rsplit_once('.').map_or((None, path), |(parents, leaf)| (Some(parents), leaf));
    let mut current = target;
    for key in parents.into_iter().flat_map(|parents| parents.split('.')) {
        let child = current.entry(key).or_insert_with(|| Value::Object(Object::new()));
        if !child.is_object() {
            *child = Value::Object(Object::new());
        }
        let Some(child) = child.as_object_mut() else { return };
        current = child;
    }
    current.insert(leaf.into(), value);
}

fn take_non_null(fields: &mut Object, key: &str) -> Option<Value> {
    fields.remove(key).filter(|value| !value.is_null())
}

/// Removes a list field; anything but a list counts as empty.
fn take_array(fields: &mut Object, key: &str) -> Vec<Value> {
    match fields.remove(key) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{RESOURCES, by_kind};
    use serde_json::json;

    fn rt(api_version: &str, kind: &str) -> &'static ResourceType {
        by_kind(api_version, kind).unwrap_or_else(|| panic!("{api_version} {kind} not served"))
    }

    fn core_event() -> &'static ResourceType {
        rt("v1", "Event")
    }
    fn events_event() -> &'static ResourceType {
        rt("events.k8s.io/v1", "Event")
    }
    fn hpa_v1() -> &'static ResourceType {
        rt("autoscaling/v1", "HorizontalPodAutoscaler")
    }
    fn hpa_v2() -> &'static ResourceType {
        rt("autoscaling/v2", "HorizontalPodAutoscaler")
    }

    /// Reads a stored object through another version of the same storage.
    fn read_as(written_as: &ResourceType, read_as: &ResourceType, obj: Value) -> Value {
        from_storage(read_as, to_storage(written_as, obj))
    }

    fn annotation(obj: &Value, key: &str) -> Option<Value> {
        serde_json::from_str(obj["metadata"]["annotations"].get(key)?.as_str()?).ok()
    }

    #[test]
    fn storage_versions_are_one_per_storage_and_served() {
        let cases = [
            (core_event(), "v1"),
            (events_event(), "v1"),
            (hpa_v1(), "autoscaling/v2"),
            (hpa_v2(), "autoscaling/v2"),
            (rt("v1", "Pod"), "v1"),
            (rt("apps/v1", "Deployment"), "apps/v1"),
        ];
        for (rt, want) in cases {
            assert_eq!(storage_version(rt), want, "{} {}", rt.api_version(), rt.kind);
        }
        for r in RESOURCES {
            let stored = by_kind(&storage_version(r), r.kind);
            assert_eq!(
                stored.map(|s| s.storage),
                Some(r.storage),
                "{} {}: storage version not served",
                r.api_version(),
                r.kind
            );
        }
    }

    #[test]
    fn every_version_besides_the_storage_version_has_a_conversion() {
        for r in RESOURCES {
            let converts = conversion(r).is_some();
            assert_eq!(converts, storage_version(r) != r.api_version(), "{} {}", r.api_version(), r.kind);
        }
    }

    #[test]
    fn other_kinds_only_get_their_type_stamped() {
        let pods = rt("v1", "Pod");
        let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let mut want = pod.clone();
        want["apiVersion"] = json!("v1");
        want["kind"] = json!("Pod");
        assert_eq!(to_storage(pods, pod.clone()), want);
        assert_eq!(from_storage(pods, pod), want);
        assert_eq!(to_storage(events_event(), json!("not an object")), json!("not an object"));
        assert_eq!(from_storage(hpa_v1(), Value::Null), Value::Null);
    }

    fn new_style_event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "web.17a", "namespace": "default", "labels": {"a": "b"}},
            "eventTime": "2024-05-01T10:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2024-05-01T10:05:00.000000Z"},
            "reportingController": "tugboat.io/scheduler",
            "reportingInstance": "tug-node-1",
            "action": "Binding",
            "reason": "Scheduled",
            "regarding": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1"},
            "related": {"kind": "Node", "name": "node-1"},
            "note": "Successfully assigned default/web to node-1",
            "type": "Normal",
            "deprecatedSource": {"component": "scheduler", "host": "node-1"},
            "deprecatedFirstTimestamp": "2024-05-01T10:00:00Z",
            "deprecatedLastTimestamp": "2024-05-01T10:05:00Z",
            "deprecatedCount": 3,
        })
    }

    #[test]
    fn an_event_created_through_events_k8s_io_reads_back_through_core_v1() {
        let core = read_as(events_event(), core_event(), new_style_event());
        let expected = [
            ("apiVersion", json!("v1")),
            ("involvedObject", json!({"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1"})),
            ("message", json!("Successfully assigned default/web to node-1")),
            ("reportingComponent", json!("tugboat.io/scheduler")),
            ("source", json!({"component": "scheduler", "host": "node-1"})),
            ("firstTimestamp", json!("2024-05-01T10:00:00Z")),
            ("lastTimestamp", json!("2024-05-01T10:05:00Z")),
            ("count", json!(3)),
            ("reason", json!("Scheduled")),
            ("type", json!("Normal")),
            ("action", json!("Binding")),
            ("reportingInstance", json!("tug-node-1")),
            ("series", json!({"count": 3, "lastObservedTime": "2024-05-01T10:05:00.000000Z"})),
            ("metadata", json!({"name": "web.17a", "namespace": "default", "labels": {"a": "b"}})),
        ];
        for (field, want) in expected {
            assert_eq!(core[field], want, "{field}");
        }
        for gone in ["regarding", "note", "reportingController", "deprecatedSource", "deprecatedCount"] {
            assert!(core.get(gone).is_none(), "{gone} left in a core Event");
        }
    }

    #[test]
    fn events_round_trip_through_either_version() {
        let new_style = new_style_event();
        let core = read_as(events_event(), core_event(), new_style.clone());
        assert_eq!(read_as(core_event(), events_event(), core.clone()), new_style);
        assert_eq!(read_as(events_event(), core_event(), read_as(core_event(), events_event(), core.clone())), core);
    }

    /// A v2 HPA using everything v1 cannot express; the CPU target is last, where a v1 round
    /// trip puts it back.
    fn rich_v2_hpa() -> Value {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "packets", "selector": {"matchLabels": {"a": "b"}}}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "Object", "object": {"describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"}, "metric": {"name": "requests"}, "target": {"type": "Value", "value": "10k"}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 75}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
            },
            "status": {
                "observedGeneration": 4,
                "lastScaleTime": "2024-05-01T10:00:00Z",
                "currentReplicas": 3,
                "desiredReplicas": 4,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 90, "averageValue": "450m"}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "current": {"value": "120", "averageValue": "40"}}},
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "lastTransitionTime": "2024-05-01T09:00:00Z", "reason": "SucceededRescale", "message": "ok"}],
            },
        })
    }

    #[test]
    fn a_v2_hpa_reads_through_v1_with_cpu_fields_and_annotations() {
        let v1 = from_storage(hpa_v1(), rich_v2_hpa());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 75);
        assert_eq!(v1["spec"]["maxReplicas"], 10);
        assert_eq!(v1["spec"]["scaleTargetRef"]["name"], "web");
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 90);
        assert_eq!(v1["status"]["desiredReplicas"], 4);
        for v2_only in [&v1["spec"]["metrics"], &v1["spec"]["behavior"], &v1["status"]["conditions"]] {
            assert!(v2_only.is_null(), "v2 field in a v1 object: {v2_only}");
        }
        assert_eq!(v1["metadata"]["annotations"]["team"], "a");
        // The annotations hold the v1 metric format, as Kubernetes writes them.
        let metrics = annotation(&v1, METRICS_ANNOTATION).unwrap();
        assert_eq!(metrics.as_array().map(Vec::len), Some(5), "all but the CPU target: {metrics}");
        assert_eq!(
            metrics[1],
            json!({"type": "Pods", "pods": {"metricName": "packets", "selector": {"matchLabels": {"a": "b"}}, "targetAverageValue": "1k"}})
        );
        assert_eq!(
            annotation(&v1, CURRENT_METRICS_ANNOTATION).unwrap()[0],
            json!({"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 90, "currentAverageValue": "450m"}})
        );
        assert_eq!(annotation(&v1, CONDITIONS_ANNOTATION).unwrap(), rich_v2_hpa()["status"]["conditions"]);
        assert_eq!(annotation(&v1, BEHAVIOR_ANNOTATION).unwrap(), rich_v2_hpa()["spec"]["behavior"]);
    }

    #[test]
    fn a_v2_hpa_survives_a_v1_read_modify_write() {
        let mut v1 = from_storage(hpa_v1(), rich_v2_hpa());
        v1["spec"]["maxReplicas"] = json!(12);
        let mut want = rich_v2_hpa();
        want["spec"]["maxReplicas"] = json!(12);
        assert_eq!(to_storage(hpa_v1(), v1), want);
    }

    #[test]
    fn a_v1_hpa_round_trips_through_storage() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50},
            "status": {"observedGeneration": 1, "currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 65, "lastScaleTime": "2024-05-01T10:00:00Z"},
        });
        let back = read_as(hpa_v1(), hpa_v1(), v1.clone());
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"], v1["status"]);
        // Like Kubernetes, reading adds the current-metrics annotation; from then on it is stable.
        assert!(annotation(&back, CURRENT_METRICS_ANNOTATION).is_some());
        assert_eq!(read_as(hpa_v1(), hpa_v1(), back.clone()), back);
    }

    #[test]
    fn a_v1_hpa_with_80_percent_cpu_reads_as_v2_with_a_resource_metric() {
        let v1 = json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 80},
            "status": {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 12},
        });
        let v2 = read_as(hpa_v1(), hpa_v2(), v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"],
            json!({
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "maxReplicas": 4,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
            })
        );
        assert_eq!(
            v2["status"]["currentMetrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}])
        );
        assert!(v2["metadata"].get("annotations").is_none());
    }

    #[test]
    fn a_v1_hpa_without_a_target_gets_the_implicit_80_percent() {
        let v2 = to_storage(hpa_v1(), json!({"metadata": {"name": "web"}, "spec": {"maxReplicas": 3}}));
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], DEFAULT_CPU_UTILIZATION);
        assert!(v2.get("status").is_none());
    }

    #[test]
    fn v1_targets_get_the_v2_target_type_kubernetes_infers() {
        let cases = [
            (json!({"type": "Object", "object": {"metricName": "m", "targetValue": "1"}}), "Value"),
            (
                json!({"type": "Object", "object": {"metricName": "m", "targetValue": "0", "averageValue": "2"}}),
                "AverageValue",
            ),
            (json!({"type": "Pods", "pods": {"metricName": "m", "targetAverageValue": "1"}}), "AverageValue"),
            (json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "1Gi"}}), "AverageValue"),
            (json!({"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}), "Utilization"),
            (json!({"type": "External", "external": {"metricName": "q", "targetValue": "5"}}), "Value"),
            (json!({"type": "External", "external": {"metricName": "q", "targetAverageValue": "5"}}), "AverageValue"),
        ];
        for (v1_metric, want) in cases {
            let member = METRIC_LAYOUTS.iter().find(|l| l.type_name == v1_metric["type"]).unwrap().member;
            let v2_metric = metric_spec_to_v2(&v1_metric);
            assert_eq!(v2_metric[member]["target"]["type"], want, "{v1_metric}");
        }
    }

    #[test]
    fn stale_or_malformed_round_trip_annotations_are_dropped() {
        let mut stored = rich_v2_hpa();
        stored["metadata"]["annotations"][CONDITIONS_ANNOTATION] = json!("[\"stale\"]");
        stored["status"].as_object_mut().unwrap().remove("conditions");
        let v1 = from_storage(hpa_v1(), stored);
        assert!(annotation(&v1, CONDITIONS_ANNOTATION).is_none(), "a v2 writer's annotation is not ours");

        let written = json!({
            "metadata": {"name": "web", "annotations": {METRICS_ANNOTATION: "{not json", CONDITIONS_ANNOTATION: 7}},
            "spec": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 40},
        });
        let v2 = to_storage(hpa_v1(), written);
        assert_eq!(v2["spec"]["metrics"].as_array().map(Vec::len), Some(1));
        assert!(v2["metadata"].get("annotations").is_none());
        assert!(v2.get("status").is_none());
    }

    #[test]
    fn unknown_metric_types_pass_through_annotations_unchanged() {
        let custom = json!({"type": "Future", "future": {"x": 1}});
        let mut stored = rich_v2_hpa();
        stored["spec"]["metrics"] = json!([custom.clone()]);
        let v1 = from_storage(hpa_v1(), stored.clone());
        assert!(v1["spec"].get("targetCPUUtilizationPercentage").is_none());
        assert_eq!(to_storage(hpa_v1(), v1), stored);
    }
}
