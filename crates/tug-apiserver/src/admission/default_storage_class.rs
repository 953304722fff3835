//! DefaultStorageClass: a claim without a class gets the default StorageClass.

use serde_json::{Value, json};
use tug_core::registry;

use super::OnCreate;
use crate::object;

/// The plugin.
pub fn plugin() -> OnCreate {
    OnCreate::new("DefaultStorageClass", "", "PersistentVolumeClaim", |api, claim| {
        let classes: Vec<Value> = registry::by_kind("storage.k8s.io/v1", "StorageClass")
            .map(|c| api.cache.list(c.storage, &c.prefix(None), None, 0, &|_| true).0)
            .unwrap_or_default()
            .iter()
            .map(|o| o.value())
            .collect();
        default_storage_class(claim, &classes);
    })
}

/// Kubernetes' DefaultStorageClass admission: a claim that names no class (the field absent;
/// `""` asks for no class) gets the default one, the newest if several claim to be it.
fn default_storage_class(claim: &mut Value, classes: &[Value]) {
    let annotated = object::annotations(claim).contains_key("volume.beta.kubernetes.io/storage-class");
    let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if annotated || spec.get("storageClassName").is_some_and(|c| !c.is_null()) {
        return;
    }
    let is_default = |class: &&Value| {
        let annotations = object::annotations(class);
        ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
            .iter()
            .any(|a| annotations.get(*a).is_some_and(|v| v == "true"))
    };
    let newest = classes.iter().filter(is_default).max_by(|a, b| {
        let created = |c: &Value| object::str_at(c, &["metadata", "creationTimestamp"]).unwrap_or("").to_string();
        created(a).cmp(&created(b)).then_with(|| object::name(b).cmp(object::name(a)))
    });
    if let Some(class) = newest {
        spec.insert("storageClassName".into(), json!(object::name(class)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_without_a_class_get_the_default_one() {
        let class = |name: &str, default: &str, created: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {"storageclass.kubernetes.io/is-default-class": default}}})
        };
        let classes = [
            class("old", "true", "2024-01-01T00:00:00Z"),
            class("new", "true", "2025-01-01T00:00:00Z"),
            class("other", "false", "2026-01-01T00:00:00Z"),
        ];
        let cases = [
            (json!({"spec": {}}), Some("new")),
            (json!({"spec": {"storageClassName": null}}), Some("new")),
            (json!({"spec": {"storageClassName": ""}}), Some("")),
            (json!({"spec": {"storageClassName": "fast"}}), Some("fast")),
            (json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "x"}}, "spec": {}}), None),
        ];
        for (claim, want) in cases {
            let mut got = claim.clone();
            default_storage_class(&mut got, &classes);
            assert_eq!(got.pointer("/spec/storageClassName").and_then(Value::as_str), want, "{claim}");
        }
        let mut none = json!({"spec": {}});
        default_storage_class(&mut none, &classes[2..]);
        assert_eq!(none, json!({"spec": {}}), "no default class, no change");
    }
}
