//! Kubernetes' validation for the served kinds, on (defaulted) objects as JSON.
//!
//! Mirrors `pkg/apis/*/validation` of Kubernetes v1.33 for what users hit in practice: names,
//! labels and annotations, pod specs (containers, ports, resources), workload selectors and
//! strategies, Services, ConfigMap/Secret keys, and immutable fields on update. Each problem is
//! one [`Cause`] whose field path and message read as Kubernetes prints them, e.g.
//! `spec.template.spec.containers[0].image: Required value`.
//!
//! One module per API group, as Kubernetes splits them: `names` (names, labels, annotations,
//! object metadata, label selectors), `pod`, `workloads` (apps/v1), `batch`, `service`, `config`
//! (ConfigMaps, Secrets), `storage`, `autoscaling` and `policy`. This module holds the entry
//! points, which dispatch by kind, and the `Errors` every group reports its causes into.
//! Quantities, cron schedules and label-selector matching are `tug_k8s`'s, not copied here.

mod autoscaling;
mod batch;
mod config;
mod names;
mod node;
mod pod;
mod policy;
mod service;
mod storage;
mod workloads;

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::registry::ResourceType;
use crate::status::Cause;

/// Validation of an object about to be created (after defaulting).
pub fn validate_create(rt: &ResourceType, obj: &serde_json::Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let empty = Map::new();
    let root = obj.as_object().unwrap_or(&empty);
    names::validate_metadata(rt, root, &mut errs);
    let spec = obj_at(root, "spec");
    match (rt.group, rt.kind) {
        ("", "Pod") => {
            pod::validate_pod_spec(spec, "spec", pod::POD_RESTART_POLICIES, true, &HashSet::new(), &mut errs)
        }
        ("", "Service") => service::validate_service(spec, &mut errs),
        ("", "ConfigMap") => config::validate_config_map(root, &mut errs),
        ("", "Secret") => config::validate_secret(root, &mut errs),
        ("apps", "Deployment") => workloads::validate_deployment(spec, &mut errs),
        ("apps", "ReplicaSet") => workloads::validate_replicated(spec, "replicaset", &HashSet::new(), &mut errs),
        ("apps", "StatefulSet") => workloads::validate_stateful_set(spec, &mut errs),
        ("apps", "DaemonSet") => workloads::validate_daemon_set(spec, &mut errs),
        ("batch", "Job") => batch::validate_job_spec(spec, "spec", &mut errs),
        ("batch", "CronJob") => batch::validate_cron_job(spec, &mut errs),
        ("autoscaling", "HorizontalPodAutoscaler") => autoscaling::validate_hpa(spec, &mut errs),
        ("policy", "PodDisruptionBudget") => policy::validate_pdb(spec, &mut errs),
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
    names::validate_metadata_update(obj_at(new_root, "metadata"), obj_at(old_root, "metadata"), &mut errs);
    let (new_spec, old_spec) = (obj_at(new_root, "spec"), obj_at(old_root, "spec"));
    match (rt.group, rt.kind) {
        ("", "Pod") => pod::validate_pod_update(new_spec, old_spec, &mut errs),
        ("", "Service") => service::validate_service_update(new_spec, old_spec, &mut errs),
        ("", "Node") => node::validate_node_update(new_spec, old_spec, &mut errs),
        ("", "ConfigMap") => config::validate_immutable_data(new_root, old_root, &mut errs),
        ("", "Secret") => {
            config::validate_immutable_data(new_root, old_root, &mut errs);
            immutable(new_root.get("type"), old_root.get("type"), "type", &mut errs);
        }
        ("", "PersistentVolumeClaim") => storage::validate_pvc_update(new_spec, old_spec, &mut errs),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable(new_spec.get("selector"), old_spec.get("selector"), "spec.selector", &mut errs)
        }
        ("apps", "StatefulSet") => workloads::validate_stateful_set_update(new_spec, old_spec, &mut errs),
        ("batch", "Job") => batch::validate_job_update(new_spec, old_spec, &mut errs),
        _ => {}
    }
    causes.extend(errs.0);
    causes
}

/// DNS-1123 subdomain / label checks etc. usable by the API server for names in URLs.
pub fn validate_name(rt: &ResourceType, name: &str) -> Option<String /*message*/> {
    let messages = names::name_messages(rt, name, false);
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

/// `field is immutable` unless both sides are equal (absent and null count as equal).
fn immutable(new: Option<&Value>, old: Option<&Value>, field: &str, errs: &mut Errors) {
    let (new, old) = (new.unwrap_or(&Value::Null), old.unwrap_or(&Value::Null));
    if new != old {
        errs.invalid(field, new, "field is immutable");
    }
}

/// Objects and checks the groups' tests share.
#[cfg(test)]
mod test_support {
    pub(super) use serde_json::{Value, json};

    pub(super) use super::{validate_create, validate_update};
    pub(super) use crate::defaults::apply_defaults;
    use crate::registry::{ResourceType, by_kind};

    pub(super) fn rt(api_version: &str, kind: &str) -> &'static ResourceType {
        by_kind(api_version, kind).expect("served kind")
    }

    /// Defaults then validates, as the API server does on create.
    pub(super) fn create_causes(api_version: &str, kind: &str, mut obj: Value) -> Vec<(String, &'static str)> {
        let rt = rt(api_version, kind);
        apply_defaults(rt, &mut obj);
        validate_create(rt, &obj).into_iter().map(|c| (c.field, c.reason)).collect()
    }

    pub(super) fn meta(name: &str) -> Value {
        json!({ "name": name, "namespace": "default", "uid": "u-1" })
    }

    pub(super) fn pod(spec: Value) -> Value {
        json!({ "metadata": meta("web"), "spec": spec })
    }

    pub(super) fn deployment(selector: Value, labels: Value, pod_spec: Value) -> Value {
        json!({ "metadata": meta("web"), "spec": { "selector": selector, "template": { "metadata": { "labels": labels }, "spec": pod_spec } } })
    }

    pub(super) fn web() -> Value {
        json!({ "containers": [{ "name": "web", "image": "nginx:1.25" }] })
    }

    /// (apiVersion, kind, object, expected causes as (field, reason)).
    pub(super) type Case<'a> = (&'a str, &'a str, Value, Vec<(&'a str, &'a str)>);

    pub(super) fn expect(cases: Vec<Case>) {
        for (api_version, kind, obj, expected) in cases {
            let got = create_causes(api_version, kind, obj.clone());
            let expected: Vec<(String, &str)> = expected.into_iter().map(|(f, r)| (f.to_string(), r)).collect();
            assert_eq!(got, expected, "{kind} {obj}");
        }
    }

    /// Every cause on a defaulted object, as `field: message`.
    pub(super) fn all_messages(api_version: &str, kind: &str, mut obj: Value) -> Vec<String> {
        let rt = rt(api_version, kind);
        apply_defaults(rt, &mut obj);
        validate_create(rt, &obj).into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    /// Builds a test object in one expression.
    pub(super) trait Tap {
        fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
    }

    impl Tap for Value {
        fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }

    /// Defaults `old`, applies `change` to a copy, defaults that too, and validates the update.
    pub(super) fn update(
        api_version: &str,
        kind: &str,
        mut old: Value,
        change: &dyn Fn(&mut Value),
    ) -> Vec<(String, &'static str)> {
        let rt = rt(api_version, kind);
        apply_defaults(rt, &mut old);
        let mut new = old.clone();
        change(&mut new);
        apply_defaults(rt, &mut new);
        validate_update(rt, &new, &old).into_iter().map(|c| (c.field, c.reason)).collect()
    }

    /// The fields of `update`'s causes.
    pub(super) fn fields(causes: Vec<(String, &'static str)>) -> Vec<String> {
        causes.into_iter().map(|c| c.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;

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
}
