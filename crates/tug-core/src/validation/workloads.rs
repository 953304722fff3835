//! apps/v1: Deployments, ReplicaSets, StatefulSets and DaemonSets — selectors that match their
//! template, rollout strategies, and the spec fields a StatefulSet may not change.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::names::{
    dns1123_subdomain, selector_is_empty, selector_matches, validate_annotations, validate_labels, validate_selector,
};
use super::pod::validate_pod_spec;
use super::{Errors, array_at, is_present, obj_at, show_labels, str_at};

/// Selector required and non-empty, matching the template's labels; template validated.
pub(super) fn validate_selector_and_template(
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
pub(super) fn validate_replicated(
    spec: &Map<String, Value>,
    kind: &str,
    claim_volumes: &HashSet<String>,
    errs: &mut Errors,
) {
    errs.non_negative(spec, "replicas", "spec.replicas");
    errs.non_negative(spec, "minReadySeconds", "spec.minReadySeconds");
    validate_selector_and_template(spec, kind, &["Always"], true, claim_volumes, errs);
}

pub(super) fn validate_deployment(spec: &Map<String, Value>, errs: &mut Errors) {
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
pub(super) fn int_or_percent(value: &Value, field: &str, max_100: bool, errs: &mut Errors) -> bool {
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

pub(super) fn validate_stateful_set(spec: &Map<String, Value>, errs: &mut Errors) {
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

pub(super) fn validate_daemon_set(spec: &Map<String, Value>, errs: &mut Errors) {
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

pub(super) fn validate_stateful_set_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
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

#[cfg(test)]
mod tests {
    use crate::validation::test_support::*;

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
        ];
        expect(cases);
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
    fn workload_selectors_are_immutable() {
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
    }
}
