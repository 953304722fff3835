//! Kubernetes' validation for the served kinds, on (defaulted) objects as JSON.
//!
//! Mirrors `pkg/apis/*/validation` of Kubernetes v1.33 for what users hit in practice: names,
//! labels and annotations, pod specs (containers, ports, resources), workload selectors and
//! strategies, Services, ConfigMap/Secret keys, and immutable fields on update. Each problem is
//! one [`Cause`] whose field path and message read as Kubernetes prints them, e.g.
//! `spec.template.spec.containers[0].image: Required value`.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use tug_k8s::cron::Schedule;
use tug_k8s::quantity::{QUANTITY_FORMAT_MESSAGE, parse_quantity};
use tug_k8s::taints::{TAINT_EFFECTS, TOLERATION_OPERATORS};

use crate::registry::ResourceType;
use crate::status::Cause;

/// Validation of an object about to be created (after defaulting).
pub fn validate_create(rt: &ResourceType, obj: &serde_json::Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let empty = Map::new();
    let root = obj.as_object().unwrap_or(&empty);
    validate_metadata(rt, root, &mut errs);
    let spec = obj_at(root, "spec");
    match (rt.group, rt.kind) {
        ("", "Pod") => validate_pod_spec(spec, "spec", POD_RESTART_POLICIES, true, &HashSet::new(), &mut errs),
        ("", "Service") => validate_service(spec, &mut errs),
        ("", "ConfigMap") => validate_config_map(root, &mut errs),
        ("", "Secret") => validate_secret(root, &mut errs),
        ("apps", "Deployment") => validate_deployment(spec, &mut errs),
        ("apps", "ReplicaSet") => validate_replicated(spec, "replicaset", &HashSet::new(), &mut errs),
        ("apps", "StatefulSet") => validate_stateful_set(spec, &mut errs),
        ("apps", "DaemonSet") => validate_daemon_set(spec, &mut errs),
        ("batch", "Job") => validate_job_spec(spec, "spec", &mut errs),
        ("batch", "CronJob") => validate_cron_job(spec, &mut errs),
        ("autoscaling", "HorizontalPodAutoscaler") => validate_hpa(spec, &mut errs),
        ("policy", "PodDisruptionBudget") => validate_pdb(spec, &mut errs),
        _ => {}
    }
    errs.0
}

/// Also checks immutable fields against the stored object.
pub fn validate_update(rt: &ResourceType, new: &serde_json::Value, old: &serde_json::Value) -> Vec<Cause> {
    let mut causes = validate_create(rt, new);
    let mut errs = Errors::default();
    let empty = Map::new();
    let (new_root, old_root) = (new.as_object().unwrap_or(&empty), old.as_object().unwrap_or(&empty));
    validate_metadata_update(obj_at(new_root, "metadata"), obj_at(old_root, "metadata"), &mut errs);
    let (new_spec, old_spec) = (obj_at(new_root, "spec"), obj_at(old_root, "spec"));
    match (rt.group, rt.kind) {
        ("", "Pod") => validate_pod_update(new_spec, old_spec, &mut errs),
        ("", "Service") => validate_service_update(new_spec, old_spec, &mut errs),
        ("", "ConfigMap") => validate_immutable_data(new_root, old_root, &mut errs),
        ("", "Secret") => {
            validate_immutable_data(new_root, old_root, &mut errs);
            immutable(new_root.get("type"), old_root.get("type"), "type", &mut errs);
        }
        ("", "PersistentVolumeClaim") => validate_pvc_update(new_spec, old_spec, &mut errs),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable(new_spec.get("selector"), old_spec.get("selector"), "spec.selector", &mut errs)
        }
        ("apps", "StatefulSet") => validate_stateful_set_update(new_spec, old_spec, &mut errs),
        ("batch", "Job") => validate_job_update(new_spec, old_spec, &mut errs),
        _ => {}
    }
    causes.extend(errs.0);
    causes
}

/// DNS-1123 subdomain / label checks etc. usable by the API server for names in URLs.
pub fn validate_name(rt: &ResourceType, name: &str) -> Option<String /*message*/> {
    let messages = name_messages(rt, name, false);
    if messages.is_empty() { None } else { Some(messages.join(", ")) }
}

// ---------------------------------------------------------------------------------------------
// Causes, worded as `field.Error.ErrorBody()` words them.

#[derive(Debug, Default)]
struct Errors(Vec<Cause>);

impl Errors {
    fn push(&mut self, reason: &'static str, field: &str, message: String) {
        self.0.push(Cause { reason, field: field.to_string(), message });
    }

    fn required(&mut self, field: &str, detail: &str) {
        let message =
            if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        self.push("FieldValueRequired", field, message);
    }

    fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        self.push("FieldValueInvalid", field, format!("Invalid value: {}: {detail}", show(value)));
    }

    fn not_supported(&mut self, field: &str, value: &Value, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let message = format!("Unsupported value: {}: supported values: {}", show(value), list.join(", "));
        self.push("FieldValueNotSupported", field, message);
    }

    fn duplicate(&mut self, field: &str, value: &Value) {
        self.push("FieldValueDuplicate", field, format!("Duplicate value: {}", show(value)));
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.push("FieldValueForbidden", field, format!("Forbidden: {detail}"));
    }

    fn too_long(&mut self, field: &str, max_bytes: usize) {
        self.push("FieldValueTooLong", field, format!("Too long: may not be more than {max_bytes} bytes"));
    }

    fn not_found(&mut self, field: &str, value: &Value) {
        self.push("FieldValueNotFound", field, format!("Not found: {}", show(value)));
    }

    /// A non-negative integer field, when present.
    fn non_negative(&mut self, map: &Map<String, Value>, key: &str, field: &str) {
        if let Some(value) = map.get(key).filter(|v| !v.is_null()) {
            match value.as_i64() {
                Some(n) if n >= 0 => {}
                Some(_) => self.invalid(field, value, "must be greater than or equal to 0"),
                None => self.invalid(field, value, "must be an integer"),
            }
        }
    }

    /// A string field, when present, from a fixed set.
    fn one_of(&mut self, map: &Map<String, Value>, key: &str, field: &str, supported: &[&str]) {
        if let Some(value) = map.get(key).filter(|v| !v.is_null() && v.as_str() != Some(""))
            && !value.as_str().is_some_and(|s| supported.contains(&s))
        {
            self.not_supported(field, value, supported);
        }
    }
}

/// A value as Go's `%q`/`%d` shows it in messages; composite values as compact JSON.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Labels as Go's `%#v` shows a `map[string]string`.
fn show_labels(labels: &Map<String, Value>) -> String {
    let pairs: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default())).collect();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

// ---------------------------------------------------------------------------------------------
// JSON access

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// The object at `key`, or an empty one.
fn obj_at<'a>(map: &'a Map<String, Value>, key: &str) -> &'a Map<String, Value> {
    map.get(key).and_then(Value::as_object).unwrap_or(&EMPTY)
}

fn str_at<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

fn array_at<'a>(map: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    map.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn is_present(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_some_and(|v| !v.is_null())
}

// ---------------------------------------------------------------------------------------------
// Names, labels, annotations (apimachinery/pkg/util/validation)

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_PART_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_REGEX: &str = "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const CONFIG_DATA_SIZE_LIMIT: usize = 1024 * 1024;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

fn dns1123_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label(s) {
        msgs.push(DNS1123_LABEL_MSG.to_string());
    }
    msgs
}

fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 253 {
        msgs.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(is_dns1123_label) {
        msgs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    msgs
}

fn dns1035_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label(s) || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        msgs.push(DNS1035_LABEL_MSG.to_string());
    }
    msgs
}

/// What any name must satisfy to be one URL path segment.
fn path_segment_name(s: &str) -> Vec<String> {
    match s {
        "." => vec!["may not be '.'".to_string()],
        ".." => vec!["may not be '..'".to_string()],
        _ => ["/", "%"].iter().filter(|bad| s.contains(**bad)).map(|bad| format!("may not contain '{bad}'")).collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    /// RBAC names such as `system:controller:x`: only the path-segment rules.
    PathSegment,
}

fn name_rule(rt: &ResourceType) -> NameRule {
    match (rt.group, rt.kind) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// The problems of `name` for this kind; a `generateName` prefix may end in '-'.
fn name_messages(rt: &ResourceType, name: &str, prefix: bool) -> Vec<String> {
    let checked = if prefix { name.strip_suffix('-').unwrap_or(name) } else { name };
    let mut msgs = match name_rule(rt) {
        NameRule::Subdomain => dns1123_subdomain(checked),
        NameRule::Label => dns1123_label(checked),
        NameRule::Dns1035 => dns1035_label(checked),
        NameRule::PathSegment => Vec::new(),
    };
    for msg in path_segment_name(name) {
        if !msgs.contains(&msg) {
            msgs.push(msg);
        }
    }
    // CronJob names leave room for the 11-character suffix of the Jobs it creates.
    if (rt.group, rt.kind) == ("batch", "CronJob") && !prefix && name.len() > 52 {
        msgs.push("must be no more than 52 characters".to_string());
    }
    msgs
}

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Label and annotation keys: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63 characters.
fn qualified_name(key: &str) -> Vec<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_PART_MSG} (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is {QUALIFIED_NAME_REGEX}) with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    let mut msgs = Vec::new();
    match prefix {
        Some("") => msgs.push("prefix part must be non-empty".to_string()),
        Some(prefix) => msgs.extend(dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}"))),
        None => {}
    }
    if name.is_empty() {
        msgs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            msgs.push("name part must be no more than 63 characters".to_string());
        }
        if !is_qualified_name_part(name) {
            msgs.push(format!(
                "name part {QUALIFIED_NAME_PART_MSG} (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is {QUALIFIED_NAME_REGEX})"
            ));
        }
    }
    msgs
}

fn label_value(value: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if value.len() > 63 {
        msgs.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        msgs.push(LABEL_VALUE_MSG.to_string());
    }
    msgs
}

/// A map of labels (metadata, template, selector or node selector), all errors at `field`.
fn validate_labels(labels: Option<&Value>, field: &str, errs: &mut Errors) {
    let Some(labels) = labels.filter(|v| !v.is_null()) else { return };
    let Some(labels) = labels.as_object() else {
        errs.invalid(field, labels, "must be a map of strings");
        return;
    };
    for (key, value) in labels {
        for msg in qualified_name(key) {
            errs.invalid(field, &Value::String(key.clone()), &msg);
        }
        match value.as_str() {
            Some(text) => {
                for msg in label_value(text) {
                    errs.invalid(field, value, &msg);
                }
            }
            None => errs.invalid(field, value, "must be a string"),
        }
    }
}

fn validate_annotations(annotations: Option<&Value>, field: &str, errs: &mut Errors) {
    let Some(annotations) = annotations.filter(|v| !v.is_null()) else { return };
    let Some(annotations) = annotations.as_object() else {
        errs.invalid(field, annotations, "must be a map of strings");
        return;
    };
    let mut total = 0;
    for (key, value) in annotations {
        for msg in qualified_name(&key.to_lowercase()) {
            errs.invalid(field, &Value::String(key.clone()), &msg);
        }
        total += key.len() + value.as_str().map_or(0, str::len);
        if !value.is_string() {
            errs.invalid(field, value, "must be a string");
        }
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT);
    }
}

fn validate_metadata(rt: &ResourceType, root: &Map<String, Value>, errs: &mut Errors) {
    let meta = obj_at(root, "metadata");
    let name = str_at(meta, "name");
    let generate_name = str_at(meta, "generateName");
    if !name.is_empty() {
        for msg in name_messages(rt, name, false) {
            errs.invalid("metadata.name", &Value::String(name.into()), &msg);
        }
    } else if generate_name.is_empty() {
        errs.required("metadata.name", "name or generateName is required");
    }
    if !generate_name.is_empty() {
        for msg in name_messages(rt, generate_name, true) {
            errs.invalid("metadata.generateName", &Value::String(generate_name.into()), &msg);
        }
    }
    let namespace = str_at(meta, "namespace");
    match (rt.namespaced(), namespace.is_empty()) {
        (true, true) => errs.required("metadata.namespace", ""),
        (true, false) => {
            for msg in dns1123_label(namespace) {
                errs.invalid("metadata.namespace", &Value::String(namespace.into()), &msg);
            }
        }
        (false, false) => errs.forbidden("metadata.namespace", "not allowed on this type"),
        (false, true) => {}
    }
    validate_labels(meta.get("labels"), "metadata.labels", errs);
    validate_annotations(meta.get("annotations"), "metadata.annotations", errs);
}

fn validate_metadata_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    for key in ["name", "namespace", "uid", "creationTimestamp"] {
        // An update that omits uid or creationTimestamp keeps the stored ones.
        if key == "name" || key == "namespace" || is_present(new, key) {
            immutable(new.get(key), old.get(key), &format!("metadata.{key}"), errs);
        }
    }
}

/// `field is immutable` unless both sides are equal (absent and null count as equal).
fn immutable(new: Option<&Value>, old: Option<&Value>, field: &str, errs: &mut Errors) {
    let (new, old) = (new.unwrap_or(&Value::Null), old.unwrap_or(&Value::Null));
    if new != old {
        errs.invalid(field, new, "field is immutable");
    }
}

// ---------------------------------------------------------------------------------------------
// Quantities (apimachinery/pkg/api/resource, parsed by tug_k8s::quantity)

/// A quantity as text (JSON numbers are accepted like Go's decoder accepts them).
fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `requests` and `limits` of one container: valid, non-negative, requests ≤ limits.
fn validate_resources(resources: &Map<String, Value>, path: &str, errs: &mut Errors) {
    let mut parsed: [BTreeMap<String, (i128, String)>; 2] = Default::default();
    for (slot, key) in ["limits", "requests"].iter().enumerate() {
        for (name, value) in obj_at(resources, key) {
            let field = format!("{path}.{key}[{name}]");
            for msg in qualified_name(name) {
                errs.invalid(&field, &Value::String(name.clone()), &msg);
            }
            match quantity_text(value).and_then(|text| parse_quantity(&text).map(|q| (q, text))) {
                None => errs.invalid(&field, value, QUANTITY_FORMAT_MESSAGE),
                Some((q, _)) if q < 0 => errs.invalid(&field, value, "must be greater than or equal to 0"),
                Some(parsed_quantity) => {
                    parsed[slot].insert(name.clone(), parsed_quantity);
                }
            }
        }
    }
    let [limits, requests] = parsed;
    for (name, (request, request_text)) in &requests {
        if let Some((limit, limit_text)) = limits.get(name)
            && request > limit
        {
            errs.invalid(
                &format!("{path}.requests[{name}]"),
                &Value::String(request_text.clone()),
                &format!("must be less than or equal to {name} limit of {limit_text}"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pod specs

const POD_RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

/// An IANA service name, as container and service port names must be.
fn iana_svc_name(name: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if name.len() > 15 {
        msgs.push("must be no more than 15 characters".to_string());
    }
    if !name.chars().all(|c| is_lower_alnum(c) || c == '-') {
        msgs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if name.contains("--") {
        msgs.push("must not contain consecutive hyphens".to_string());
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        msgs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        msgs.push("must not begin or end with a hyphen".to_string());
    }
    msgs
}

fn validate_port_number(value: &Value, field: &str, errs: &mut Errors) {
    if !value.as_i64().is_some_and(|p| (1..=65535).contains(&p)) {
        errs.invalid(field, value, "must be between 1 and 65535, inclusive");
    }
}

/// A pod spec at `path`. `restart_policies` are the ones the owning kind allows; `is_pod` adds
/// the checks Kubernetes only makes on Pods (not templates); `claim_volumes` are the names of a
/// StatefulSet's volumeClaimTemplates, which the controller adds to each pod as volumes, so
/// volumeMounts may name them.
fn validate_pod_spec(
    spec: &Map<String, Value>,
    path: &str,
    restart_policies: &[&str],
    is_pod: bool,
    claim_volumes: &HashSet<String>,
    errs: &mut Errors,
) {
    let mut volume_names = validate_volumes(spec, path, errs);
    volume_names.extend(claim_volumes.iter().cloned());
    let mut container_names = HashSet::new();
    if array_at(spec, "containers").is_empty() {
        errs.required(&format!("{path}.containers"), "");
    }
    for key in ["initContainers", "containers"] {
        for (i, container) in array_at(spec, key).iter().enumerate() {
            let field = format!("{path}.{key}[{i}]");
            match container.as_object() {
                Some(container) => {
                    validate_container(container, &field, &volume_names, &mut container_names, is_pod, errs)
                }
                None => errs.invalid(&field, container, "must be an object"),
            }
        }
    }
    // An absent policy is defaulted to Always, so it is judged as Always.
    let restart = spec.get("restartPolicy").filter(|v| !v.is_null() && v.as_str() != Some(""));
    let restart = restart.cloned().unwrap_or_else(|| Value::String("Always".into()));
    if !restart.as_str().is_some_and(|r| restart_policies.contains(&r)) {
        errs.not_supported(&format!("{path}.restartPolicy"), &restart, restart_policies);
    }
    errs.one_of(
        spec,
        "dnsPolicy",
        &format!("{path}.dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    if let Some(deadline) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null())
        && !deadline.as_i64().is_some_and(|d| (1..=i64::from(i32::MAX)).contains(&d))
    {
        errs.invalid(&format!("{path}.activeDeadlineSeconds"), deadline, "must be between 1 and 2147483647, inclusive");
    }
    validate_labels(spec.get("nodeSelector"), &format!("{path}.nodeSelector"), errs);
    validate_tolerations(array_at(spec, "tolerations"), &format!("{path}.tolerations"), errs);
    if is_present(spec, "serviceAccountName") {
        for msg in dns1123_subdomain(str_at(spec, "serviceAccountName")) {
            errs.invalid(&format!("{path}.serviceAccountName"), &spec["serviceAccountName"], &msg);
        }
    }
}

/// Kubernetes' `ValidateTolerations`, with its field paths and words (it reports a bad value
/// under `operator`, as Kubernetes does).
fn validate_tolerations(tolerations: &[Value], path: &str, errs: &mut Errors) {
    for (i, toleration) in tolerations.iter().enumerate() {
        let field = format!("{path}[{i}]");
        let Some(t) = toleration.as_object() else {
            errs.invalid(&field, toleration, "must be an object");
            continue;
        };
        let (key, operator, value, effect) =
            (str_at(t, "key"), str_at(t, "operator"), str_at(t, "value"), str_at(t, "effect"));
        let text = |s: &str| Value::String(s.to_string());
        for msg in qualified_name(key).into_iter().filter(|_| !key.is_empty()) {
            errs.invalid(&format!("{field}.key"), &text(key), &msg);
        }
        if key.is_empty() && operator != "Exists" {
            errs.invalid(
                &format!("{field}.operator"),
                &text(operator),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if is_present(t, "tolerationSeconds") && effect != "NoExecute" {
            errs.invalid(
                &format!("{field}.effect"),
                &text(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        match operator {
            "" | "Equal" => {
                let msgs = label_value(value);
                if !msgs.is_empty() {
                    errs.invalid(&format!("{field}.operator"), &text(value), &msgs.join(";"));
                }
            }
            "Exists" if !value.is_empty() => errs.invalid(
                &format!("{field}.operator"),
                toleration,
                "value must be empty when `operator` is 'Exists'",
            ),
            "Exists" => {}
            _ => errs.not_supported(&format!("{field}.operator"), &text(operator), TOLERATION_OPERATORS),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.not_supported(&format!("{field}.effect"), &text(effect), TAINT_EFFECTS);
        }
    }
}

/// Volume names (required, DNS labels, unique); returns them for volumeMount checks.
fn validate_volumes(spec: &Map<String, Value>, path: &str, errs: &mut Errors) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, volume) in array_at(spec, "volumes").iter().enumerate() {
        let field = format!("{path}.volumes[{i}].name");
        let name = volume.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.required(&field, "");
            continue;
        }
        for msg in dns1123_label(name) {
            errs.invalid(&field, &Value::String(name.into()), &msg);
        }
        if !names.insert(name.to_string()) {
            errs.duplicate(&field, &Value::String(name.into()));
        }
    }
    names
}

fn validate_container(
    container: &Map<String, Value>,
    path: &str,
    volume_names: &HashSet<String>,
    container_names: &mut HashSet<String>,
    is_pod: bool,
    errs: &mut Errors,
) {
    let name = str_at(container, "name");
    if name.is_empty() {
        errs.required(&format!("{path}.name"), "");
    } else {
        for msg in dns1123_label(name) {
            errs.invalid(&format!("{path}.name"), &Value::String(name.into()), &msg);
        }
        if !container_names.insert(name.to_string()) {
            errs.duplicate(&format!("{path}.name"), &Value::String(name.into()));
        }
    }
    let image = str_at(container, "image");
    if image.is_empty() {
        errs.required(&format!("{path}.image"), "");
    } else if is_pod && image.trim() != image {
        errs.invalid(
            &format!("{path}.image"),
            &Value::String(image.into()),
            "must not have leading or trailing whitespace",
        );
    }
    errs.one_of(container, "imagePullPolicy", &format!("{path}.imagePullPolicy"), &["Always", "IfNotPresent", "Never"]);
    errs.one_of(
        container,
        "terminationMessagePolicy",
        &format!("{path}.terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    );
    validate_container_ports(container, path, errs);
    validate_resources(obj_at(container, "resources"), &format!("{path}.resources"), errs);
    for (i, env) in array_at(container, "env").iter().enumerate() {
        let field = format!("{path}.env[{i}].name");
        match env.get("name").and_then(Value::as_str).unwrap_or("") {
            "" => errs.required(&field, ""),
            name if name.contains('=') || !name.chars().all(|c| c.is_ascii_graphic() || c == ' ') => errs.invalid(
                &field,
                &Value::String(name.into()),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ),
            _ => {}
        }
    }
    for (i, mount) in array_at(container, "volumeMounts").iter().enumerate() {
        let field = format!("{path}.volumeMounts[{i}]");
        match mount.get("name").and_then(Value::as_str).unwrap_or("") {
            "" => errs.required(&format!("{field}.name"), ""),
            name if !volume_names.contains(name) => {
                errs.not_found(&format!("{field}.name"), &Value::String(name.into()))
            }
            _ => {}
        }
        if mount.get("mountPath").and_then(Value::as_str).unwrap_or("").is_empty() {
            errs.required(&format!("{field}.mountPath"), "");
        }
    }
}

fn validate_container_ports(container: &Map<String, Value>, path: &str, errs: &mut Errors) {
    let mut port_names = HashSet::new();
    for (i, port) in array_at(container, "ports").iter().enumerate() {
        let field = format!("{path}.ports[{i}]");
        let Some(port) = port.as_object() else {
            errs.invalid(&field, port, "must be an object");
            continue;
        };
        match port.get("containerPort") {
            None | Some(Value::Null) => errs.required(&format!("{field}.containerPort"), ""),
            Some(value) if value.as_i64() == Some(0) => errs.required(&format!("{field}.containerPort"), ""),
            Some(value) => validate_port_number(value, &format!("{field}.containerPort"), errs),
        }
        if let Some(host_port) = port.get("hostPort").filter(|v| !v.is_null() && v.as_i64() != Some(0)) {
            validate_port_number(host_port, &format!("{field}.hostPort"), errs);
        }
        errs.one_of(port, "protocol", &format!("{field}.protocol"), PROTOCOLS);
        let name = str_at(port, "name");
        if !name.is_empty() {
            for msg in iana_svc_name(name) {
                errs.invalid(&format!("{field}.name"), &Value::String(name.into()), &msg);
            }
            if !port_names.insert(name.to_string()) {
                errs.duplicate(&format!("{field}.name"), &Value::String(name.into()));
            }
        }
    }
}

/// Pods may change only images, a shorter activeDeadlineSeconds, added tolerations, removed
/// scheduling gates, and a negative grace period to 1.
fn validate_pod_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    if let Some(old_deadline) = old.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        let field = "spec.activeDeadlineSeconds";
        match new.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
            None => errs.invalid(field, &Value::Null, "must not update from a positive integer to nil value"),
            Some(new_deadline) if new_deadline.as_i64().is_some_and(|d| d > old_deadline) => {
                errs.invalid(field, new_deadline, "must be less than or equal to previous value")
            }
            Some(_) => {}
        }
    }
    // Carry every allowed change over onto a copy of the new spec; what still differs is forbidden.
    let mut comparable = new.clone();
    for key in ["containers", "initContainers"] {
        if let (Some(new_list), Some(old_list)) =
            (comparable.get_mut(key).and_then(Value::as_array_mut), old.get(key).and_then(Value::as_array))
        {
            for (new_c, old_c) in new_list.iter_mut().zip(old_list) {
                if let (Some(new_c), Some(image)) = (new_c.as_object_mut(), old_c.get("image")) {
                    new_c.insert("image".into(), image.clone());
                }
            }
        }
    }
    carry_over(&mut comparable, old, "activeDeadlineSeconds");
    let old_tolerations = array_at(old, "tolerations");
    if old_tolerations.iter().all(|t| array_at(new, "tolerations").contains(t)) {
        carry_over(&mut comparable, old, "tolerations");
    }
    let old_gates = array_at(old, "schedulingGates");
    if array_at(new, "schedulingGates").iter().all(|g| old_gates.contains(g)) {
        carry_over(&mut comparable, old, "schedulingGates");
    }
    let old_grace = old.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    let new_grace = new.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        carry_over(&mut comparable, old, "terminationGracePeriodSeconds");
    }
    if &comparable != old {
        let changed: Vec<String> = comparable
            .keys()
            .chain(old.keys())
            .filter(|k| comparable.get(*k) != old.get(*k))
            .map(|k| format!("spec.{k}"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        errs.forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n  changed: {}",
                changed.join(", ")
            ),
        );
    }
}

/// Makes `copy[key]` what `old[key]` is (absent stays absent).
fn carry_over(copy: &mut Map<String, Value>, old: &Map<String, Value>, key: &str) {
    match old.get(key) {
        Some(value) => copy.insert(key.to_string(), value.clone()),
        None => copy.remove(key),
    };
}

// ---------------------------------------------------------------------------------------------
// Label selectors and workloads

const SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

fn validate_selector(selector: &Map<String, Value>, path: &str, errs: &mut Errors) {
    validate_labels(selector.get("matchLabels"), &format!("{path}.matchLabels"), errs);
    for (i, expr) in array_at(selector, "matchExpressions").iter().enumerate() {
        let field = format!("{path}.matchExpressions[{i}]");
        let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
        for msg in qualified_name(key) {
            errs.invalid(&format!("{field}.key"), &Value::String(key.into()), &msg);
        }
        let operator = expr.get("operator").cloned().unwrap_or(Value::Null);
        let has_values = expr.get("values").and_then(Value::as_array).is_some_and(|v| !v.is_empty());
        match operator.as_str() {
            Some("In" | "NotIn") if !has_values => {
                errs.required(&format!("{field}.values"), "must be specified when `operator` is 'In' or 'NotIn'")
            }
            Some("Exists" | "DoesNotExist") if has_values => errs.forbidden(
                &format!("{field}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            Some(op) if SELECTOR_OPERATORS.contains(&op) => {}
            _ => errs.invalid(&format!("{field}.operator"), &operator, "not a valid selector operator"),
        }
    }
}

fn selector_is_empty(selector: &Map<String, Value>) -> bool {
    obj_at(selector, "matchLabels").is_empty() && array_at(selector, "matchExpressions").is_empty()
}

/// Whether a `metav1.LabelSelector` (as JSON) selects these labels (`tug-k8s`'s one matcher; a
/// malformed selector selects nothing).
pub fn selector_matches(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    let selector = tug_k8s::labels::from_json(&Value::Object(selector.clone()));
    tug_k8s::labels::Selector::from_label_selector(selector.as_ref())
        .matches_with(|key| labels.get(key).and_then(Value::as_str))
}

/// Selector required and non-empty, matching the template's labels; template validated.
fn validate_selector_and_template(
    spec: &Map<String, Value>,
    kind: &str,
    restart_policies: &[&str],
    selector_required: bool,
    claim_volumes: &HashSet<String>,
    errs: &mut Errors,
) {
    let template = obj_at(spec, "template");
    let template_labels = obj_at(obj_at(template, "metadata"), "labels");
    match spec.get("selector").and_then(Value::as_object) {
        None if selector_required => errs.required("spec.selector", ""),
        None => {}
        Some(selector) => {
            validate_selector(selector, "spec.selector", errs);
            if selector_is_empty(selector) {
                errs.invalid("spec.selector", &spec["selector"], &format!("empty selector is invalid for {kind}"));
            } else if !selector_matches(selector, template_labels) {
                errs.push(
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    format!(
                        "Invalid value: {}: `selector` does not match template `labels`",
                        show_labels(template_labels)
                    ),
                );
            }
        }
    }
    if !is_present(spec, "template") {
        errs.required("spec.template", "");
        return;
    }
    let meta = obj_at(template, "metadata");
    validate_labels(meta.get("labels"), "spec.template.metadata.labels", errs);
    validate_annotations(meta.get("annotations"), "spec.template.metadata.annotations", errs);
    validate_pod_spec(obj_at(template, "spec"), "spec.template.spec", restart_policies, false, claim_volumes, errs);
}

/// ReplicaSet (and the shared part of Deployment, StatefulSet, DaemonSet).
fn validate_replicated(spec: &Map<String, Value>, kind: &str, claim_volumes: &HashSet<String>, errs: &mut Errors) {
    errs.non_negative(spec, "replicas", "spec.replicas");
    errs.non_negative(spec, "minReadySeconds", "spec.minReadySeconds");
    validate_selector_and_template(spec, kind, &["Always"], true, claim_volumes, errs);
}

fn validate_deployment(spec: &Map<String, Value>, errs: &mut Errors) {
    validate_replicated(spec, "deployment", &HashSet::new(), errs);
    errs.non_negative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
    let strategy = obj_at(spec, "strategy");
    match str_at(strategy, "type") {
        "Recreate" if is_present(strategy, "rollingUpdate") => {
            errs.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
        }
        "RollingUpdate" => {
            validate_rolling_update(obj_at(strategy, "rollingUpdate"), "spec.strategy.rollingUpdate", errs)
        }
        "Recreate" | "" => {}
        _ => errs.not_supported("spec.strategy.type", &strategy["type"], &["Recreate", "RollingUpdate"]),
    }
    if let Some(deadline) = spec.get("progressDeadlineSeconds").filter(|v| !v.is_null()) {
        let min_ready = spec.get("minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
        match deadline.as_i64() {
            Some(d) if d <= 0 => errs.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than 0"),
            Some(d) if d <= min_ready => {
                errs.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")
            }
            Some(_) => {}
            None => errs.invalid("spec.progressDeadlineSeconds", deadline, "must be an integer"),
        }
    }
}

/// An int-or-percent: `(is zero, is valid)` after reporting problems at `field`.
fn int_or_percent(value: &Value, field: &str, max_100: bool, errs: &mut Errors) -> bool {
    let amount = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.strip_suffix('%') {
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                let percent = digits.parse::<i64>().unwrap_or(i64::MAX);
                if max_100 && percent > 100 {
                    errs.invalid(field, value, "must not be greater than 100%");
                }
                Some(percent)
            }
            _ => {
                errs.invalid(field, value, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')");
                return false;
            }
        },
        _ => None,
    };
    match amount {
        Some(n) if n < 0 => errs.invalid(field, value, "must be greater than or equal to 0"),
        Some(_) => {}
        None => errs.invalid(field, value, "must be an integer or percentage"),
    }
    amount == Some(0)
}

fn validate_rolling_update(rolling: &Map<String, Value>, path: &str, errs: &mut Errors) {
    let field_unavailable = format!("{path}.maxUnavailable");
    let unavailable_zero = rolling
        .get("maxUnavailable")
        .filter(|v| !v.is_null())
        .map(|v| int_or_percent(v, &field_unavailable, true, errs));
    let surge_zero = rolling
        .get("maxSurge")
        .filter(|v| !v.is_null())
        .map(|v| int_or_percent(v, &format!("{path}.maxSurge"), false, errs));
    if unavailable_zero == Some(true) && surge_zero.is_none_or(|zero| zero) {
        errs.invalid(&field_unavailable, &rolling["maxUnavailable"], "may not be 0 when `maxSurge` is 0");
    }
}

fn validate_stateful_set(spec: &Map<String, Value>, errs: &mut Errors) {
    // The controller gives each pod a volume per claim template, named after it: the template's
    // volumeMounts may name them (what Kubernetes' TODO in ValidatePodTemplateSpecForStatefulSet
    // asks for: the union of volumes and claim templates must cover the mounts).
    let claim_volumes: HashSet<String> = array_at(spec, "volumeClaimTemplates")
        .iter()
        .filter_map(|claim| claim.pointer("/metadata/name").and_then(Value::as_str))
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect();
    validate_replicated(spec, "statefulset", &claim_volumes, errs);
    errs.non_negative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
    errs.one_of(spec, "podManagementPolicy", "spec.podManagementPolicy", &["OrderedReady", "Parallel"]);
    let strategy = obj_at(spec, "updateStrategy");
    match str_at(strategy, "type") {
        "OnDelete" if is_present(strategy, "rollingUpdate") => {
            errs.forbidden("spec.updateStrategy.rollingUpdate", "only allowed for updateStrategy 'RollingUpdate'")
        }
        "RollingUpdate" => errs.non_negative(
            obj_at(strategy, "rollingUpdate"),
            "partition",
            "spec.updateStrategy.rollingUpdate.partition",
        ),
        "OnDelete" | "" => {}
        _ => errs.not_supported("spec.updateStrategy.type", &strategy["type"], &["OnDelete", "RollingUpdate"]),
    }
    let retention = obj_at(spec, "persistentVolumeClaimRetentionPolicy");
    for key in ["whenDeleted", "whenScaled"] {
        errs.one_of(retention, key, &format!("spec.persistentVolumeClaimRetentionPolicy.{key}"), &["Retain", "Delete"]);
    }
    for (i, claim) in array_at(spec, "volumeClaimTemplates").iter().enumerate() {
        let name = claim.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let field = format!("spec.volumeClaimTemplates[{i}].metadata.name");
        if name.is_empty() {
            errs.required(&field, "");
        }
        for msg in dns1123_subdomain(name).into_iter().filter(|_| !name.is_empty()) {
            errs.invalid(&field, &Value::String(name.into()), &msg);
        }
    }
}

fn validate_daemon_set(spec: &Map<String, Value>, errs: &mut Errors) {
    errs.non_negative(spec, "minReadySeconds", "spec.minReadySeconds");
    errs.non_negative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
    validate_selector_and_template(spec, "daemonset", &["Always"], true, &HashSet::new(), errs);
    let strategy = obj_at(spec, "updateStrategy");
    match str_at(strategy, "type") {
        "RollingUpdate" => {
            validate_rolling_update(obj_at(strategy, "rollingUpdate"), "spec.updateStrategy.rollingUpdate", errs)
        }
        "OnDelete" | "" => {}
        _ => errs.not_supported("spec.updateStrategy.type", &strategy["type"], &["OnDelete", "RollingUpdate"]),
    }
}

const STATEFUL_SET_SPEC_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

fn validate_stateful_set_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    let frozen = |spec: &Map<String, Value>| -> Map<String, Value> {
        spec.iter()
            .filter(|(k, v)| !STATEFUL_SET_SPEC_MUTABLE.contains(&k.as_str()) && !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if frozen(new) != frozen(old) {
        errs.forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// batch/v1

/// A Job spec at `path` (`spec`, or `spec.jobTemplate.spec` of a CronJob).
fn validate_job_spec(spec: &Map<String, Value>, path: &str, errs: &mut Errors) {
    for key in ["parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished", "backoffLimitPerIndex"] {
        errs.non_negative(spec, key, &format!("{path}.{key}"));
    }
    if let Some(deadline) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null())
        && deadline.as_i64().is_none_or(|d| d <= 0)
    {
        errs.invalid(&format!("{path}.activeDeadlineSeconds"), deadline, "must be greater than 0");
    }
    errs.one_of(spec, "completionMode", &format!("{path}.completionMode"), &["NonIndexed", "Indexed"]);
    if str_at(spec, "completionMode") == "Indexed" && !is_present(spec, "completions") {
        errs.required(&format!("{path}.completions"), "when completion mode is Indexed");
    }
    errs.one_of(
        spec,
        "podReplacementPolicy",
        &format!("{path}.podReplacementPolicy"),
        &["TerminatingOrFailed", "Failed"],
    );
    // A Job's selector is generated when created, so a top-level Job must have one; a CronJob's
    // job template may leave it out.
    let mut scoped = Errors::default();
    validate_selector_and_template(spec, "job", &["OnFailure", "Never"], path == "spec", &HashSet::new(), &mut scoped);
    errs.0.extend(scoped.0.into_iter().map(|mut cause| {
        cause.field = cause.field.replacen("spec", path, 1);
        cause
    }));
}

fn validate_job_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    immutable(new.get("selector"), old.get("selector"), "spec.selector", errs);
    immutable(new.get("template"), old.get("template"), "spec.template", errs);
    immutable(new.get("completionMode"), old.get("completionMode"), "spec.completionMode", errs);
    // Indexed Jobs may scale completions together with parallelism (elastic Indexed Jobs).
    let elastic = str_at(new, "completionMode") == "Indexed" && new.get("completions") == new.get("parallelism");
    if !elastic {
        immutable(new.get("completions"), old.get("completions"), "spec.completions", errs);
    }
}

fn validate_cron_job(spec: &Map<String, Value>, errs: &mut Errors) {
    match spec.get("schedule").and_then(Value::as_str) {
        None | Some("") => errs.required("spec.schedule", ""),
        // Kubernetes' validateScheduleFormat: robfig/cron's ParseStandard (the parser the
        // controller runs), then no TZ/CRON_TZ in a new schedule.
        Some(schedule) => {
            let value = Value::String(schedule.into());
            if let Err(e) = Schedule::parse(schedule) {
                errs.invalid("spec.schedule", &value, &e.to_string());
            }
            if schedule.contains("TZ") {
                errs.invalid(
                    "spec.schedule",
                    &value,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                );
            }
        }
    }
    errs.one_of(spec, "concurrencyPolicy", "spec.concurrencyPolicy", &["Allow", "Forbid", "Replace"]);
    for key in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        errs.non_negative(spec, key, &format!("spec.{key}"));
    }
    let job_template = obj_at(spec, "jobTemplate");
    if !is_present(spec, "jobTemplate") {
        errs.required("spec.jobTemplate", "");
        return;
    }
    validate_labels(obj_at(job_template, "metadata").get("labels"), "spec.jobTemplate.metadata.labels", errs);
    validate_job_spec(obj_at(job_template, "spec"), "spec.jobTemplate.spec", errs);
}

// ---------------------------------------------------------------------------------------------
// Services

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn validate_service(spec: &Map<String, Value>, errs: &mut Errors) {
    let service_type = str_at(spec, "type");
    errs.one_of(spec, "type", "spec.type", SERVICE_TYPES);
    errs.one_of(spec, "sessionAffinity", "spec.sessionAffinity", &["ClientIP", "None"]);
    let ports = array_at(spec, "ports");
    let headless = str_at(spec, "clusterIP") == "None";
    if service_type == "ExternalName" {
        let external_name = str_at(spec, "externalName");
        if external_name.is_empty() {
            errs.required("spec.externalName", "");
        } else {
            for msg in dns1123_subdomain(external_name.trim_end_matches('.')) {
                errs.invalid("spec.externalName", &Value::String(external_name.into()), &msg);
            }
        }
    } else if ports.is_empty() && !headless {
        errs.required("spec.ports", "");
    }
    let cluster_ip = str_at(spec, "clusterIP");
    if !cluster_ip.is_empty() && cluster_ip != "None" && cluster_ip.parse::<std::net::IpAddr>().is_err() {
        errs.invalid(
            "spec.clusterIP",
            &Value::String(cluster_ip.into()),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        );
    }
    let mut names = HashSet::new();
    let mut port_protocols = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let Some(port) = port.as_object() else {
            errs.invalid(&field, port, "must be an object");
            continue;
        };
        let name = str_at(port, "name");
        if name.is_empty() {
            if ports.len() > 1 {
                errs.required(&format!("{field}.name"), "");
            }
        } else {
            for msg in dns1123_label(name) {
                errs.invalid(&format!("{field}.name"), &Value::String(name.into()), &msg);
            }
            if !names.insert(name.to_string()) {
                errs.duplicate(&format!("{field}.name"), &Value::String(name.into()));
            }
        }
        let number = port.get("port").cloned().unwrap_or(Value::Null);
        validate_port_number(&number, &format!("{field}.port"), errs);
        errs.one_of(port, "protocol", &format!("{field}.protocol"), PROTOCOLS);
        let protocol = match str_at(port, "protocol") {
            "" => "TCP",
            protocol => protocol,
        };
        if number.is_number() && !port_protocols.insert((number.to_string(), protocol.to_string())) {
            errs.duplicate(&field, &Value::String(format!("{number}/{protocol}")));
        }
        validate_target_port(port.get("targetPort"), &format!("{field}.targetPort"), errs);
        validate_node_port(port.get("nodePort"), service_type, &format!("{field}.nodePort"), errs);
    }
    validate_labels(spec.get("selector"), "spec.selector", errs);
}

fn validate_target_port(target: Option<&Value>, field: &str, errs: &mut Errors) {
    match target {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => {
            for msg in iana_svc_name(name) {
                errs.invalid(field, &Value::String(name.clone()), &msg);
            }
        }
        Some(number) => validate_port_number(number, field, errs),
    }
}

/// Node ports: only for NodePort/LoadBalancer services, within the default range.
fn validate_node_port(node_port: Option<&Value>, service_type: &str, field: &str, errs: &mut Errors) {
    let Some(value) = node_port.filter(|v| !v.is_null() && v.as_i64() != Some(0)) else { return };
    if !matches!(service_type, "NodePort" | "LoadBalancer") {
        let shown = if service_type.is_empty() { "ClusterIP" } else { service_type };
        errs.forbidden(field, &format!("may not be used when `type` is '{shown}'"));
    } else if !value.as_i64().is_some_and(|p| (30000..=32767).contains(&p)) {
        errs.invalid(field, value, "provided port is not in the valid range. The range of valid ports is 30000-32767");
    }
}

fn validate_service_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    // Changing to or from ExternalName releases or allocates the IP; otherwise it is fixed.
    let needs_ip = |spec: &Map<String, Value>| str_at(spec, "type") != "ExternalName";
    if needs_ip(new) && needs_ip(old) && !str_at(old, "clusterIP").is_empty() {
        immutable(new.get("clusterIP"), old.get("clusterIP"), "spec.clusterIP", errs);
        let first = |spec: &Map<String, Value>| spec.get("clusterIPs").and_then(|ips| ips.get(0)).cloned();
        if let (Some(new_ip), Some(old_ip)) = (first(new), first(old)) {
            immutable(Some(&new_ip), Some(&old_ip), "spec.clusterIPs[0]", errs);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ConfigMaps, Secrets, claims

fn validate_config_key(key: &str, field: &str, errs: &mut Errors) {
    let value = Value::String(key.into());
    if key.len() > 253 {
        errs.invalid(field, &value, "must be no more than 253 characters");
    }
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        errs.invalid(field, &value, CONFIG_KEY_MSG);
    }
    if key == "." || key == ".." {
        errs.invalid(field, &value, &format!("must not be '{key}'"));
    } else if key.starts_with("..") {
        errs.invalid(field, &value, "must not start with '..'");
    }
}

/// Keys of `data` and `binaryData`: valid, and not in both; returns the total payload size.
fn validate_data_keys(root: &Map<String, Value>, errs: &mut Errors) -> usize {
    let mut total = 0;
    let data = obj_at(root, "data");
    for (key, value) in data {
        validate_config_key(key, &format!("data[{key}]"), errs);
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in obj_at(root, "binaryData") {
        validate_config_key(key, &format!("binaryData[{key}]"), errs);
        if data.contains_key(key) {
            errs.duplicate(&format!("data[{key}]"), &Value::String(key.clone()));
        }
        total += value.as_str().map_or(0, |v| v.len() * 3 / 4);
    }
    total
}

fn validate_config_map(root: &Map<String, Value>, errs: &mut Errors) {
    if validate_data_keys(root, errs) > CONFIG_DATA_SIZE_LIMIT {
        errs.too_long("", CONFIG_DATA_SIZE_LIMIT);
    }
    for (key, value) in obj_at(root, "binaryData") {
        if let Err(msg) = check_base64(value) {
            errs.invalid(&format!("binaryData[{key}]"), &Value::String("<binary data redacted>".into()), &msg);
        }
    }
}

fn validate_secret(root: &Map<String, Value>, errs: &mut Errors) {
    let data = obj_at(root, "data");
    let mut total = 0;
    for (key, value) in data {
        validate_config_key(key, &format!("data[{key}]"), errs);
        match check_base64(value) {
            Ok(len) => total += len,
            Err(msg) => {
                errs.invalid(&format!("data[{key}]"), &Value::String("<secret contents redacted>".into()), &msg)
            }
        }
    }
    for key in obj_at(root, "stringData").keys() {
        validate_config_key(key, &format!("stringData[{key}]"), errs);
    }
    if total > CONFIG_DATA_SIZE_LIMIT {
        errs.too_long("data", CONFIG_DATA_SIZE_LIMIT);
    }
    let has = |key: &str| data.contains_key(key) || obj_at(root, "stringData").contains_key(key);
    let required_keys: &[&str] = match str_at(root, "type") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for key in required_keys.iter().filter(|k| !has(k)) {
        errs.required(&format!("data[{key}]"), "");
    }
    if str_at(root, "type") == "kubernetes.io/service-account-token"
        && str_at(obj_at(obj_at(root, "metadata"), "annotations"), "kubernetes.io/service-account.name").is_empty()
    {
        errs.required("metadata.annotations[kubernetes.io/service-account.name]", "");
    }
}

/// Go's `base64.StdEncoding`, which its JSON decoder reads `[]byte` with: padded, and (not being
/// `Strict`) accepting non-zero trailing bits.
const GO_STD_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

/// Standard padded base64 as Go's JSON decoder reads `[]byte` (line breaks ignored); returns the
/// decoded length, or Go's message with the offending byte's offset in the text.
fn check_base64(value: &Value) -> Result<usize, String> {
    use base64::Engine as _;
    let Some(text) = value.as_str() else { return Err("must be a base64-encoded string".into()) };
    let (offsets, symbols): (Vec<usize>, Vec<u8>) =
        text.bytes().enumerate().filter(|(_, b)| *b != b'\n' && *b != b'\r').unzip();
    let error = match GO_STD_BASE64.decode(&symbols) {
        Ok(bytes) => return Ok(bytes.len()),
        Err(error) => error,
    };
    let end = offsets.last().map_or(0, |offset| offset + 1);
    let offset = match error {
        base64::DecodeError::InvalidByte(i, _) | base64::DecodeError::InvalidLastSymbol(i, _) => {
            offsets.get(i).copied().unwrap_or(end)
        }
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => end,
    };
    Err(format!("illegal base64 data at input byte {offset}"))
}

fn validate_immutable_data(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    const MESSAGE: &str = "field is immutable when `immutable` is set";
    if new.get("immutable") != old.get("immutable") {
        errs.forbidden("immutable", MESSAGE);
    }
    for key in ["data", "binaryData"] {
        let (new_data, old_data) = (obj_at(new, key), obj_at(old, key));
        if new_data != old_data {
            errs.forbidden(key, MESSAGE);
        }
    }
}

fn validate_pvc_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    let frozen = |spec: &Map<String, Value>| {
        let mut copy = spec.clone();
        copy.remove("volumeAttributesClassName");
        if let Some(resources) = copy.get_mut("resources").and_then(Value::as_object_mut) {
            resources.remove("requests");
        }
        // The binder fills volumeName once; setting it is not a user change to reject.
        copy.remove("volumeName");
        copy
    };
    if frozen(new) != frozen(old) {
        errs.forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Autoscaling and disruption budgets

fn validate_hpa(spec: &Map<String, Value>, errs: &mut Errors) {
    let target = obj_at(spec, "scaleTargetRef");
    for key in ["kind", "name"] {
        if str_at(target, key).is_empty() {
            errs.required(&format!("spec.scaleTargetRef.{key}"), "");
        }
    }
    let max = spec.get("maxReplicas").and_then(Value::as_i64);
    match spec.get("maxReplicas").filter(|v| !v.is_null()) {
        None => errs.required("spec.maxReplicas", ""),
        Some(value) if max.is_none_or(|m| m < 1) => {
            errs.invalid("spec.maxReplicas", value, "must be greater than or equal to 1")
        }
        Some(_) => {}
    }
    if let Some(min_value) = spec.get("minReplicas").filter(|v| !v.is_null()) {
        match min_value.as_i64() {
            Some(min) if min < 1 => errs.invalid("spec.minReplicas", min_value, "must be greater than or equal to 1"),
            Some(min) if max.is_some_and(|m| min > m) => {
                errs.invalid("spec.minReplicas", min_value, "must be less than or equal to maxReplicas")
            }
            _ => {}
        }
    }
}

fn validate_pdb(spec: &Map<String, Value>, errs: &mut Errors) {
    if is_present(spec, "minAvailable") && is_present(spec, "maxUnavailable") {
        errs.invalid("spec", &Value::Object(spec.clone()), "minAvailable and maxUnavailable cannot be both set");
    }
    for key in ["minAvailable", "maxUnavailable"] {
        if let Some(value) = spec.get(key).filter(|v| !v.is_null()) {
            int_or_percent(value, &format!("spec.{key}"), true, errs);
        }
    }
    if let Some(selector) = spec.get("selector").and_then(Value::as_object) {
        validate_selector(selector, "spec.selector", errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Secrets' `data` decodes as Go's `base64.StdEncoding` does (the `base64` crate, configured
    /// as Go's non-strict standard encoding).
    #[test]
    fn secret_data_is_read_as_go_reads_base64() {
        #[rustfmt::skip]
        let cases = [
            ("", Ok(0)),
            ("QQ==", Ok(1)),
            ("QUI=", Ok(2)),
            ("QUJD", Ok(3)),
            ("QU\nJD\r\n", Ok(3)),
            ("QR==", Ok(1)),
            ("ab!d", Err(2)),
            ("QUJ", Err(3)),
            ("QQ", Err(2)),
        ];
        for (text, want) in cases {
            let want = want.map_err(|offset| format!("illegal base64 data at input byte {offset}"));
            assert_eq!(check_base64(&Value::String(text.into())), want, "{text:?}");
        }
        assert!(check_base64(&Value::Bool(true)).is_err());
    }
    use crate::defaults::apply_defaults;
    use crate::registry::by_kind;
    use serde_json::json;

    fn rt(api_version: &str, kind: &str) -> &'static ResourceType {
        by_kind(api_version, kind).expect("served kind")
    }

    /// Defaults then validates, as the API server does on create.
    fn create_causes(api_version: &str, kind: &str, mut obj: Value) -> Vec<(String, &'static str)> {
        let rt = rt(api_version, kind);
        apply_defaults(rt, &mut obj);
        validate_create(rt, &obj).into_iter().map(|c| (c.field, c.reason)).collect()
    }

    fn meta(name: &str) -> Value {
        json!({ "name": name, "namespace": "default", "uid": "u-1" })
    }

    fn pod(spec: Value) -> Value {
        json!({ "metadata": meta("web"), "spec": spec })
    }

    fn deployment(selector: Value, labels: Value, pod_spec: Value) -> Value {
        json!({ "metadata": meta("web"), "spec": { "selector": selector, "template": { "metadata": { "labels": labels }, "spec": pod_spec } } })
    }

    fn web() -> Value {
        json!({ "containers": [{ "name": "web", "image": "nginx:1.25" }] })
    }

    /// (apiVersion, kind, object, expected causes as (field, reason)).
    type Case<'a> = (&'a str, &'a str, Value, Vec<(&'a str, &'a str)>);

    fn expect(cases: Vec<Case>) {
        for (api_version, kind, obj, expected) in cases {
            let got = create_causes(api_version, kind, obj.clone());
            let expected: Vec<(String, &str)> = expected.into_iter().map(|(f, r)| (f.to_string(), r)).collect();
            assert_eq!(got, expected, "{kind} {obj}");
        }
    }

    #[test]
    fn valid_objects_have_no_causes() {
        let cases = vec![
            ("v1", "Pod", pod(web()), vec![]),
            (
                "apps/v1",
                "Deployment",
                deployment(json!({ "matchLabels": { "app": "web" } }), json!({ "app": "web", "tier": "fe" }), web()),
                vec![],
            ),
            (
                "v1",
                "Service",
                json!({ "metadata": meta("web"), "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }] } }),
                vec![],
            ),
            ("v1", "Namespace", json!({ "metadata": { "name": "team-a" } }), vec![]),
            ("v1", "ConfigMap", json!({ "metadata": meta("cfg"), "data": { "app.conf": "x", "KEY_1": "y" } }), vec![]),
            ("v1", "Secret", json!({ "metadata": meta("s"), "data": { "password": "c2VjcmV0", "empty": "" } }), vec![]),
            (
                "batch/v1",
                "Job",
                json!({ "metadata": meta("pi"), "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "pi", "image": "perl" }] } } } }),
                vec![],
            ),
            (
                "batch/v1",
                "CronJob",
                json!({ "metadata": meta("tick"), "spec": { "schedule": "*/5 * * * MON-FRI", "jobTemplate": { "spec": { "template": { "spec": { "restartPolicy": "OnFailure", "containers": [{ "name": "t", "image": "busybox" }] } } } } } }),
                vec![],
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                json!({ "metadata": { "name": "system:controller:x" } }),
                vec![],
            ),
        ];
        expect(cases);
    }

    #[test]
    fn metadata_problems_name_their_field() {
        let cases = vec![
            (
                "v1",
                "Pod",
                json!({ "metadata": { "namespace": "default" }, "spec": web() }),
                vec![("metadata.name", "FieldValueRequired")],
            ),
            (
                "v1",
                "Pod",
                pod(web()).tap(|p| p["metadata"]["name"] = json!("Web_1")),
                vec![("metadata.name", "FieldValueInvalid")],
            ),
            ("v1", "Namespace", json!({ "metadata": { "name": "a.b" } }), vec![("metadata.name", "FieldValueInvalid")]),
            (
                "v1",
                "Service",
                json!({ "metadata": meta("1web"), "spec": { "ports": [{ "port": 80 }] } }),
                vec![("metadata.name", "FieldValueInvalid")],
            ),
            ("v1", "ConfigMap", json!({ "metadata": meta("a.b.c") }), vec![]),
            (
                "v1",
                "Pod",
                json!({ "metadata": { "name": "x", "labels": { "bad key": "v", "ok": "bad value!" } }, "spec": web() }),
                vec![
                    ("metadata.namespace", "FieldValueRequired"),
                    ("metadata.labels", "FieldValueInvalid"),
                    ("metadata.labels", "FieldValueInvalid"),
                ],
            ),
            (
                "v1",
                "Node",
                json!({ "metadata": { "name": "n1", "namespace": "default" } }),
                vec![("metadata.namespace", "FieldValueForbidden")],
            ),
            (
                "v1",
                "ConfigMap",
                json!({ "metadata": { "name": "big", "namespace": "default", "annotations": { "a": "x".repeat(256 * 1024) } } }),
                vec![("metadata.annotations", "FieldValueTooLong")],
            ),
        ];
        expect(cases);
    }

    #[test]
    fn pod_spec_problems() {
        let cases = vec![
            ("v1", "Pod", pod(json!({})), vec![("spec.containers", "FieldValueRequired")]),
            (
                "v1",
                "Pod",
                pod(json!({ "containers": [{ "name": "web" }] })),
                vec![("spec.containers[0].image", "FieldValueRequired")],
            ),
            (
                "v1",
                "Pod",
                pod(
                    json!({ "containers": [{ "name": "web", "image": "a" }, { "name": "web", "image": "b" }, { "name": "Bad_Name", "image": "c" }, { "image": "d" }] }),
                ),
                vec![
                    ("spec.containers[1].name", "FieldValueDuplicate"),
                    ("spec.containers[2].name", "FieldValueInvalid"),
                    ("spec.containers[3].name", "FieldValueRequired"),
                ],
            ),
            (
                "v1",
                "Pod",
                pod(
                    json!({ "containers": [{ "name": "web", "image": "a", "ports": [{ "containerPort": 70000 }, { "containerPort": 80, "protocol": "ICMP" }, { "name": "http", "containerPort": 81 }, { "name": "http", "containerPort": 82 }] }] }),
                ),
                vec![
                    ("spec.containers[0].ports[0].containerPort", "FieldValueInvalid"),
                    ("spec.containers[0].ports[1].protocol", "FieldValueNotSupported"),
                    ("spec.containers[0].ports[3].name", "FieldValueDuplicate"),
                ],
            ),
            (
                "v1",
                "Pod",
                pod(json!({ "restartPolicy": "Sometimes", "containers": [{ "name": "web", "image": "a" }] })),
                vec![("spec.restartPolicy", "FieldValueNotSupported")],
            ),
            (
                "v1",
                "Pod",
                pod(
                    json!({ "containers": [{ "name": "web", "image": "a", "resources": { "limits": { "cpu": "500m", "memory": "lots" }, "requests": { "cpu": "1" } } }] }),
                ),
                vec![
                    ("spec.containers[0].resources.limits[memory]", "FieldValueInvalid"),
                    // Requests were defaulted from limits, bad value and all.
                    ("spec.containers[0].resources.requests[memory]", "FieldValueInvalid"),
                    ("spec.containers[0].resources.requests[cpu]", "FieldValueInvalid"),
                ],
            ),
            (
                "v1",
                "Pod",
                pod(
                    json!({ "containers": [{ "name": "web", "image": "a", "volumeMounts": [{ "name": "nope", "mountPath": "/x" }] }] }),
                ),
                vec![("spec.containers[0].volumeMounts[0].name", "FieldValueNotFound")],
            ),
        ];
        expect(cases);
    }

    #[test]
    fn workload_problems() {
        let app = || json!({ "matchLabels": { "app": "web" } });
        let cases = vec![
            (
                "apps/v1",
                "Deployment",
                deployment(app(), json!({ "app": "other" }), web()),
                vec![("spec.template.metadata.labels", "FieldValueInvalid")],
            ),
            (
                "apps/v1",
                "Deployment",
                deployment(Value::Null, json!({ "app": "web" }), web()),
                vec![("spec.selector", "FieldValueRequired")],
            ),
            (
                "apps/v1",
                "Deployment",
                deployment(json!({}), json!({ "app": "web" }), web()),
                vec![("spec.selector", "FieldValueInvalid")],
            ),
            (
                "apps/v1",
                "Deployment",
                deployment(
                    app(),
                    json!({ "app": "web" }),
                    json!({ "restartPolicy": "OnFailure", "containers": [{ "name": "web" }] }),
                ),
                vec![
                    ("spec.template.spec.containers[0].image", "FieldValueRequired"),
                    ("spec.template.spec.restartPolicy", "FieldValueNotSupported"),
                ],
            ),
            (
                "apps/v1",
                "Deployment",
                deployment(app(), json!({ "app": "web" }), web()).tap(|d| {
                    d["spec"]["replicas"] = json!(-1);
                    d["spec"]["strategy"] = json!({ "type": "Canary" });
                }),
                vec![("spec.replicas", "FieldValueInvalid"), ("spec.strategy.type", "FieldValueNotSupported")],
            ),
            (
                "apps/v1",
                "Deployment",
                deployment(app(), json!({ "app": "web" }), web()).tap(|d| {
                    d["spec"]["strategy"] = json!({ "rollingUpdate": { "maxUnavailable": 0, "maxSurge": "0%" } })
                }),
                vec![("spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid")],
            ),
            (
                "apps/v1",
                "ReplicaSet",
                deployment(
                    json!({ "matchExpressions": [{ "key": "app", "operator": "In", "values": ["web", "api"] }] }),
                    json!({ "app": "api" }),
                    web(),
                ),
                vec![],
            ),
            (
                "apps/v1",
                "DaemonSet",
                deployment(app(), json!({ "app": "x" }), web()),
                vec![("spec.template.metadata.labels", "FieldValueInvalid")],
            ),
            (
                "apps/v1",
                "StatefulSet",
                deployment(app(), json!({ "app": "web" }), web())
                    .tap(|s| s["spec"]["podManagementPolicy"] = json!("Random")),
                vec![("spec.podManagementPolicy", "FieldValueNotSupported")],
            ),
            (
                "batch/v1",
                "Job",
                json!({ "metadata": meta("pi"), "spec": { "template": { "spec": { "containers": [{ "name": "pi", "image": "perl" }] } } } }),
                vec![("spec.template.spec.restartPolicy", "FieldValueNotSupported")],
            ),
            (
                "batch/v1",
                "CronJob",
                json!({ "metadata": meta("tick"), "spec": { "schedule": "every minute", "jobTemplate": { "spec": { "template": { "spec": { "restartPolicy": "Always", "containers": [{ "name": "t", "image": "b" }] } } } } } }),
                vec![
                    ("spec.schedule", "FieldValueInvalid"),
                    ("spec.jobTemplate.spec.template.spec.restartPolicy", "FieldValueNotSupported"),
                ],
            ),
        ];
        expect(cases);
    }

    #[test]
    fn service_problems() {
        let svc = |spec: Value| json!({ "metadata": meta("web"), "spec": spec });
        let cases = vec![
            ("v1", "Service", svc(json!({})), vec![("spec.ports", "FieldValueRequired")]),
            ("v1", "Service", svc(json!({ "clusterIP": "None" })), vec![]),
            ("v1", "Service", svc(json!({ "type": "ExternalName", "externalName": "db.example.com" })), vec![]),
            (
                "v1",
                "Service",
                svc(json!({ "type": "ExternalName" })),
                vec![("spec.externalName", "FieldValueRequired")],
            ),
            (
                "v1",
                "Service",
                svc(json!({ "type": "Magic", "ports": [{ "port": 80 }] })),
                vec![("spec.type", "FieldValueNotSupported")],
            ),
            (
                "v1",
                "Service",
                svc(json!({ "ports": [{ "port": 0 }, { "name": "a", "port": 81 }, { "name": "a", "port": 82 }] })),
                vec![
                    ("spec.ports[0].name", "FieldValueRequired"),
                    ("spec.ports[0].port", "FieldValueInvalid"),
                    // targetPort was defaulted to the (bad) port.
                    ("spec.ports[0].targetPort", "FieldValueInvalid"),
                    ("spec.ports[2].name", "FieldValueDuplicate"),
                ],
            ),
            (
                "v1",
                "Service",
                svc(json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 80 }] })),
                vec![("spec.ports[0].nodePort", "FieldValueInvalid")],
            ),
            ("v1", "Service", svc(json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30080 }] })), vec![]),
            (
                "v1",
                "Service",
                svc(json!({ "ports": [{ "port": 80, "nodePort": 30080 }] })),
                vec![("spec.ports[0].nodePort", "FieldValueForbidden")],
            ),
        ];
        expect(cases);
    }

    #[test]
    fn config_map_and_secret_problems() {
        let cases = vec![
            (
                "v1",
                "ConfigMap",
                json!({ "metadata": meta("c"), "data": { "bad/key": "x" } }),
                vec![("data[bad/key]", "FieldValueInvalid")],
            ),
            (
                "v1",
                "ConfigMap",
                json!({ "metadata": meta("c"), "data": { "k": "x" }, "binaryData": { "k": "eA==" } }),
                vec![("data[k]", "FieldValueDuplicate")],
            ),
            (
                "v1",
                "Secret",
                json!({ "metadata": meta("s"), "data": { "pw": "not base64!" } }),
                vec![("data[pw]", "FieldValueInvalid")],
            ),
            (
                "v1",
                "Secret",
                json!({ "metadata": meta("s"), "data": { "pw": "abc" } }),
                vec![("data[pw]", "FieldValueInvalid")],
            ),
            (
                "v1",
                "Secret",
                json!({ "metadata": meta("s"), "type": "kubernetes.io/tls", "data": { "tls.crt": "" } }),
                vec![("data[tls.key]", "FieldValueRequired")],
            ),
        ];
        expect(cases);
    }

    #[test]
    fn messages_read_as_kubernetes_prints_them() {
        let message = |api_version: &str, kind: &str, obj: Value, field: &str| -> String {
            let rt = rt(api_version, kind);
            let mut obj = obj;
            apply_defaults(rt, &mut obj);
            let causes = validate_create(rt, &obj);
            causes
                .into_iter()
                .find(|c| c.field == field)
                .map(|c| c.message)
                .unwrap_or_else(|| panic!("no cause on {field}"))
        };
        assert_eq!(message("v1", "Pod", pod(json!({})), "spec.containers"), "Required value");
        assert_eq!(
            message(
                "apps/v1",
                "Deployment",
                deployment(json!({ "matchLabels": { "app": "web" } }), json!({ "app": "x" }), web()),
                "spec.template.metadata.labels"
            ),
            "Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"
        );
        assert_eq!(
            message(
                "batch/v1",
                "Job",
                json!({ "metadata": meta("j"), "spec": { "template": { "spec": web() } } }),
                "spec.template.spec.restartPolicy"
            ),
            "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
        assert!(
            message("v1", "Pod", pod(web()).tap(|p| p["metadata"]["name"] = json!("Web")), "metadata.name")
                .starts_with("Invalid value: \"Web\": a lowercase RFC 1123 subdomain must consist of")
        );
        assert_eq!(
            message(
                "v1",
                "Pod",
                pod(
                    json!({ "containers": [{ "name": "a", "image": "b", "resources": { "limits": { "cpu": "500m" }, "requests": { "cpu": "1" } } }] })
                ),
                "spec.containers[0].resources.requests[cpu]"
            ),
            "Invalid value: \"1\": must be less than or equal to cpu limit of 500m"
        );
    }

    /// Every cause on a defaulted object, as `field: message`.
    fn all_messages(api_version: &str, kind: &str, mut obj: Value) -> Vec<String> {
        let rt = rt(api_version, kind);
        apply_defaults(rt, &mut obj);
        validate_create(rt, &obj).into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn cron_job(schedule: &str) -> Value {
        json!({ "metadata": meta("tick"), "spec": { "schedule": schedule, "jobTemplate": { "spec": { "template": { "spec": { "restartPolicy": "OnFailure", "containers": [{ "name": "t", "image": "busybox" }] } } } } } })
    }

    /// The schedule is checked by the parser the CronJob controller runs (robfig/cron's grammar,
    /// with its words), so nothing the API accepts is unparseable later.
    #[test]
    fn cron_schedules_are_parsed_by_the_controllers_parser() {
        for good in ["*/5 * * * MON-FRI", "@every 1h30m", "@hourly", "0 0 13 * 5", "1,,2 * * * ?"] {
            assert_eq!(all_messages("batch/v1", "CronJob", cron_job(good)), Vec::<String>::new(), "{good}");
        }
        let cases = [
            (
                "@every banana",
                vec![
                    "spec.schedule: Invalid value: \"@every banana\": failed to parse duration @every banana: time: invalid duration \"banana\"",
                ],
            ),
            (
                "@fortnightly",
                vec!["spec.schedule: Invalid value: \"@fortnightly\": unrecognized descriptor: @fortnightly"],
            ),
            (
                "61 * * * *",
                vec!["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"],
            ),
            (
                "* * * *",
                vec!["spec.schedule: Invalid value: \"* * * *\": expected exactly 5 fields, found 4: [* * * *]"],
            ),
            ("0 0 * * 7", vec!["spec.schedule: Invalid value: \"0 0 * * 7\": end of range (7) above maximum (6): 7"]),
            (
                "CRON_TZ=UTC * * * * *",
                vec![
                    "spec.schedule: Invalid value: \"CRON_TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ],
            ),
            (
                "TZ=UTC * * *",
                vec![
                    "spec.schedule: Invalid value: \"TZ=UTC * * *\": expected exactly 5 fields, found 3: [* * *]",
                    "spec.schedule: Invalid value: \"TZ=UTC * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ],
            ),
        ];
        for (schedule, want) in cases {
            assert_eq!(all_messages("batch/v1", "CronJob", cron_job(schedule)), want, "{schedule}");
        }
    }

    /// Kubernetes' ValidateTolerations cases (pkg/apis/core/validation's toleration table), with
    /// its field paths and words, on a Pod and on every kind's pod template.
    #[test]
    fn tolerations_are_validated_as_kubernetes_does() {
        let with = |toleration: Value| {
            pod(json!({ "containers": [{ "name": "web", "image": "a" }], "tolerations": [toleration] }))
        };
        let p = "spec.tolerations[0]";
        let cases = [
            (json!({ "key": "foo", "operator": "Exists", "effect": "NoSchedule" }), vec![]),
            (json!({ "key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule" }), vec![]),
            (json!({ "key": "foo", "value": "bar" }), vec![]),
            (json!({ "operator": "Exists" }), vec![]),
            (
                json!({ "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 }),
                vec![],
            ),
            (
                json!({ "key": "foo", "operator": "Equals", "value": "bar", "effect": "NoSchedule" }),
                vec![format!("{p}.operator: Unsupported value: \"Equals\": supported values: \"Equal\", \"Exists\"")],
            ),
            (
                json!({ "key": "foo", "operator": "In", "value": "bar", "effect": "NoSchedule" }),
                vec![format!("{p}.operator: Unsupported value: \"In\": supported values: \"Equal\", \"Exists\"")],
            ),
            (
                json!({ "key": "foo", "operator": "Exists", "value": "bar", "effect": "NoSchedule" }),
                vec![format!(
                    "{p}.operator: Invalid value: {{\"effect\":\"NoSchedule\",\"key\":\"foo\",\"operator\":\"Exists\",\"value\":\"bar\"}}: value must be empty when `operator` is 'Exists'"
                )],
            ),
            (
                json!({ "operator": "Equal", "value": "bar", "effect": "NoSchedule" }),
                vec![format!(
                    "{p}.operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""
                )],
            ),
            (
                json!({ "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 20 }),
                vec![format!(
                    "{p}.effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"
                )],
            ),
            (
                json!({ "key": "foo", "operator": "Exists", "effect": "NoScheduleNoAdmit" }),
                vec![format!(
                    "{p}.effect: Unsupported value: \"NoScheduleNoAdmit\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
                )],
            ),
        ];
        for (toleration, want) in cases {
            assert_eq!(all_messages("v1", "Pod", with(toleration.clone())), want, "{toleration}");
        }
        // A bad key and a bad value name their problem (the value under `operator`, as Kubernetes has it).
        let causes = create_causes(
            "v1",
            "Pod",
            with(json!({ "key": "nospecialchars^=@", "operator": "Equal", "value": "bar" })),
        );
        assert_eq!(causes, [(format!("{p}.key"), "FieldValueInvalid")]);
        let causes = create_causes("v1", "Pod", with(json!({ "key": "foo", "value": "not a label value" })));
        assert_eq!(causes, [(format!("{p}.operator"), "FieldValueInvalid")]);

        // Every pod template is checked too.
        let bad = json!({ "containers": [{ "name": "web", "image": "a" }], "tolerations": [{ "key": "k", "operator": "Equals" }] });
        let mut job_spec = bad.clone();
        job_spec["restartPolicy"] = json!("Never");
        let labels = json!({ "app": "web" });
        let template = json!({ "metadata": { "labels": labels }, "spec": bad });
        let job_template = json!({ "metadata": { "labels": labels }, "spec": job_spec });
        let selector = json!({ "matchLabels": labels });
        let t = "spec.template.spec.tolerations[0].operator";
        let templated = [
            ("apps/v1", "Deployment", json!({ "selector": selector, "template": template }), t.to_string()),
            ("apps/v1", "ReplicaSet", json!({ "selector": selector, "template": template }), t.to_string()),
            ("apps/v1", "DaemonSet", json!({ "selector": selector, "template": template }), t.to_string()),
            (
                "apps/v1",
                "StatefulSet",
                json!({ "selector": selector, "template": template, "serviceName": "web" }),
                t.to_string(),
            ),
            ("batch/v1", "Job", json!({ "template": job_template }), t.to_string()),
            (
                "batch/v1",
                "CronJob",
                json!({ "schedule": "@hourly", "jobTemplate": { "spec": { "template": job_template } } }),
                format!("spec.jobTemplate.{t}"),
            ),
        ];
        for (api_version, kind, spec, field) in templated {
            let causes = create_causes(api_version, kind, json!({ "metadata": meta("web"), "spec": spec }));
            assert_eq!(causes, [(field, "FieldValueNotSupported")], "{kind}");
        }
    }

    /// A StatefulSet's volumeMounts may name its volumeClaimTemplates (Kubernetes' `web` example);
    /// a name that is neither a volume nor a claim template is still not found.
    #[test]
    fn stateful_set_mounts_may_name_claim_templates() {
        let set = |mount: &str| {
            json!({ "metadata": meta("web"), "spec": {
                "serviceName": "nginx",
                "replicas": 2,
                "selector": { "matchLabels": { "app": "nginx" } },
                "template": { "metadata": { "labels": { "app": "nginx" } }, "spec": {
                    "volumes": [{ "name": "config", "emptyDir": {} }],
                    "containers": [{ "name": "nginx", "image": "registry.k8s.io/nginx-slim:0.24", "ports": [{ "containerPort": 80, "name": "web" }],
                        "volumeMounts": [{ "name": mount, "mountPath": "/usr/share/nginx/html" }, { "name": "config", "mountPath": "/etc/x" }] }]
                } },
                "volumeClaimTemplates": [{ "metadata": { "name": "www" }, "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } } }]
            } })
        };
        assert_eq!(all_messages("apps/v1", "StatefulSet", set("www")), Vec::<String>::new());
        assert_eq!(
            all_messages("apps/v1", "StatefulSet", set("wwx")),
            ["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"wwx\""]
        );
        // Claim templates count for StatefulSets only.
        let mut deployment = set("www");
        let spec = deployment["spec"].as_object_mut().unwrap();
        spec.remove("volumeClaimTemplates");
        spec.remove("serviceName");
        assert_eq!(
            create_causes("apps/v1", "Deployment", deployment),
            [("spec.template.spec.containers[0].volumeMounts[0].name".to_string(), "FieldValueNotFound")]
        );
    }

    #[test]
    fn names_in_urls() {
        let pods = rt("v1", "Pod");
        let namespaces = rt("v1", "Namespace");
        let roles = rt("rbac.authorization.k8s.io/v1", "ClusterRole");
        assert_eq!(validate_name(pods, "web-1.example"), None);
        assert!(validate_name(pods, "Web").is_some());
        assert!(validate_name(pods, &"a".repeat(254)).unwrap().contains("no more than 253"));
        assert!(validate_name(namespaces, "a.b").is_some());
        assert!(validate_name(namespaces, &"a".repeat(64)).unwrap().contains("no more than 63"));
        assert_eq!(validate_name(roles, "system:aggregate-to-admin"), None);
        assert!(validate_name(roles, "a/b").unwrap().contains("may not contain '/'"));
        assert!(validate_name(roles, "..").is_some());
        assert!(validate_name(rt("batch/v1", "CronJob"), &"a".repeat(53)).unwrap().contains("52"));
    }

    #[test]
    fn updates_may_not_touch_immutable_fields() {
        let update =
            |api_version: &str, kind: &str, old: Value, change: &dyn Fn(&mut Value)| -> Vec<(String, &'static str)> {
                let rt = rt(api_version, kind);
                let mut old = old;
                apply_defaults(rt, &mut old);
                let mut new = old.clone();
                change(&mut new);
                apply_defaults(rt, &mut new);
                validate_update(rt, &new, &old).into_iter().map(|c| (c.field, c.reason)).collect()
            };
        let fields = |causes: Vec<(String, &'static str)>| -> Vec<String> { causes.into_iter().map(|c| c.0).collect() };
        let d = deployment(json!({ "matchLabels": { "app": "web" } }), json!({ "app": "web" }), web());
        assert!(update("apps/v1", "Deployment", d.clone(), &|d| d["spec"]["replicas"] = json!(5)).is_empty());
        assert_eq!(
            fields(update("apps/v1", "Deployment", d.clone(), &|d| {
                d["spec"]["selector"]["matchLabels"]["tier"] = json!("fe");
                d["spec"]["template"]["metadata"]["labels"]["tier"] = json!("fe");
            })),
            ["spec.selector"]
        );
        assert_eq!(
            fields(update("apps/v1", "Deployment", d.clone(), &|d| d["metadata"]["name"] = json!("other"))),
            ["metadata.name"]
        );
        assert_eq!(
            fields(update("apps/v1", "StatefulSet", d.clone(), &|s| s["spec"]["serviceName"] = json!("x"))),
            ["spec"]
        );
        assert!(update("apps/v1", "StatefulSet", d.clone(), &|s| s["spec"]["replicas"] = json!(3)).is_empty());

        let p = pod(
            json!({ "containers": [{ "name": "web", "image": "nginx:1.25" }], "tolerations": [{ "key": "a", "operator": "Exists" }] }),
        );
        assert!(
            update("v1", "Pod", p.clone(), &|p| p["spec"]["containers"][0]["image"] = json!("nginx:1.26")).is_empty()
        );
        assert!(
            update("v1", "Pod", p.clone(), &|p| p["spec"]["tolerations"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "key": "b", "operator": "Exists" })))
            .is_empty()
        );
        assert!(update("v1", "Pod", p.clone(), &|p| p["spec"]["activeDeadlineSeconds"] = json!(60)).is_empty());
        assert_eq!(
            update("v1", "Pod", p.clone(), &|p| p["spec"]["tolerations"] = json!([])),
            [("spec".to_string(), "FieldValueForbidden")]
        );
        assert_eq!(
            update("v1", "Pod", p.clone(), &|p| p["spec"]["containers"][0]["name"] = json!("other")),
            [("spec".to_string(), "FieldValueForbidden")]
        );
        assert_eq!(
            fields(update(
                "v1",
                "Pod",
                p.clone().tap(|p| p["spec"]["activeDeadlineSeconds"] = json!(60)),
                &|p| p["spec"]["activeDeadlineSeconds"] = json!(120)
            )),
            ["spec.activeDeadlineSeconds"]
        );

        let job = json!({ "metadata": meta("pi"), "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "pi", "image": "perl" }] } } } });
        assert!(update("batch/v1", "Job", job.clone(), &|j| j["spec"]["suspend"] = json!(true)).is_empty());
        assert_eq!(
            fields(update(
                "batch/v1",
                "Job",
                job.clone(),
                &|j| j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5")
            )),
            ["spec.template"]
        );

        let svc = json!({ "metadata": meta("web"), "spec": { "clusterIP": "10.43.0.10", "ports": [{ "port": 80 }] } });
        assert!(update("v1", "Service", svc.clone(), &|s| s["spec"]["ports"][0]["port"] = json!(81)).is_empty());
        assert_eq!(
            fields(update("v1", "Service", svc.clone(), &|s| s["spec"]["clusterIP"] = json!("10.43.0.11"))),
            ["spec.clusterIP"]
        );

        let cm = json!({ "metadata": meta("c"), "data": { "a": "1" }, "immutable": true });
        assert_eq!(fields(update("v1", "ConfigMap", cm.clone(), &|c| c["data"]["a"] = json!("2"))), ["data"]);
        assert!(
            update("v1", "ConfigMap", cm.clone().tap(|c| c["immutable"] = json!(false)), &|c| c["data"]["a"] =
                json!("2"))
            .is_empty()
        );
        assert_eq!(
            fields(
                update("v1", "Secret", json!({ "metadata": meta("s") }), &|s| s["type"] = json!("kubernetes.io/tls"))
            ),
            ["data[tls.crt]", "data[tls.key]", "type"]
        );
    }

    #[test]
    fn malformed_objects_do_not_panic() {
        for obj in [
            json!(null),
            json!([]),
            json!({ "metadata": 1, "spec": 3 }),
            json!({ "spec": { "template": "x", "containers": [1, "a"], "ports": [null] } }),
        ] {
            for rt in crate::registry::RESOURCES {
                let _ = validate_create(rt, &obj);
                let _ = validate_update(rt, &obj, &json!({}));
            }
        }
    }

    /// Builds a test object in one expression.
    trait Tap {
        fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
    }

    impl Tap for Value {
        fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }
}
