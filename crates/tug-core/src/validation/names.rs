//! Names, labels, annotations, object metadata and label selectors: apimachinery's
//! `pkg/util/validation` and `pkg/apis/meta/v1/validation`, which every group's checks build on.

use serde_json::{Map, Value};

use super::{Errors, array_at, immutable, is_present, obj_at, str_at};
use crate::registry::ResourceType;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_PART_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_REGEX: &str = "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

pub(super) fn dns1123_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label(s) {
        msgs.push(DNS1123_LABEL_MSG.to_string());
    }
    msgs
}

pub(super) fn dns1123_subdomain(s: &str) -> Vec<String> {
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
pub(super) fn name_messages(rt: &ResourceType, name: &str, prefix: bool) -> Vec<String> {
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
pub(super) fn qualified_name(key: &str) -> Vec<String> {
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

pub(super) fn label_value(value: &str) -> Vec<String> {
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
pub(super) fn validate_labels(labels: Option<&Value>, field: &str, errs: &mut Errors) {
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

pub(super) fn validate_annotations(annotations: Option<&Value>, field: &str, errs: &mut Errors) {
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

pub(super) fn validate_metadata(rt: &ResourceType, root: &Map<String, Value>, errs: &mut Errors) {
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

pub(super) fn validate_metadata_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    for key in ["name", "namespace", "uid", "creationTimestamp"] {
        // An update that omits uid or creationTimestamp keeps the stored ones.
        if key == "name" || key == "namespace" || is_present(new, key) {
            immutable(new.get(key), old.get(key), &format!("metadata.{key}"), errs);
        }
    }
}

/// An IANA service name, as container and service port names must be.
pub(super) fn iana_svc_name(name: &str) -> Vec<String> {
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

const SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

pub(super) fn validate_selector(selector: &Map<String, Value>, path: &str, errs: &mut Errors) {
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

pub(super) fn selector_is_empty(selector: &Map<String, Value>) -> bool {
    obj_at(selector, "matchLabels").is_empty() && array_at(selector, "matchExpressions").is_empty()
}

/// Whether a `metav1.LabelSelector` (as JSON) selects these labels (`tug-k8s`'s one matcher; a
/// malformed selector selects nothing).
pub(super) fn selector_matches(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    let selector = tug_k8s::labels::from_json(&Value::Object(selector.clone()));
    tug_k8s::labels::Selector::from_label_selector(selector.as_ref())
        .matches_with(|key| labels.get(key).and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use crate::validation::test_support::*;
    use crate::validation::validate_name;

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
}
