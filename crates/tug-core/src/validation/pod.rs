//! Pods and pod templates (core/v1): containers, ports, resources, volumes, tolerations, and
//! the few fields a running Pod may change.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use tug_k8s::quantity::{QUANTITY_FORMAT_MESSAGE, parse_quantity};
use tug_k8s::taints::{TAINT_EFFECTS, TOLERATION_OPERATORS};

use super::names::{dns1123_label, dns1123_subdomain, iana_svc_name, label_value, qualified_name, validate_labels};
use super::{Errors, array_at, is_present, obj_at, str_at};

pub(super) const POD_RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
pub(super) const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

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

pub(super) fn validate_port_number(value: &Value, field: &str, errs: &mut Errors) {
    if !value.as_i64().is_some_and(|p| (1..=65535).contains(&p)) {
        errs.invalid(field, value, "must be between 1 and 65535, inclusive");
    }
}

/// A pod spec at `path`. `restart_policies` are the ones the owning kind allows; `is_pod` adds
/// the checks Kubernetes only makes on Pods (not templates); `claim_volumes` are the names of a
/// StatefulSet's volumeClaimTemplates, which the controller adds to each pod as volumes, so
/// volumeMounts may name them.
pub(super) fn validate_pod_spec(
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
pub(super) fn validate_pod_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
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

#[cfg(test)]
mod tests {
    use crate::validation::test_support::*;

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

    #[test]
    fn pod_updates_change_only_what_kubernetes_allows() {
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
    }
}
