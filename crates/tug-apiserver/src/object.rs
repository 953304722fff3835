//! Small accessors on objects as JSON values: metadata fields, labels, timestamps, uids.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tug_store::Revision;

/// The string at a path of object keys, if it is a string.
pub fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(obj, path)?.as_str()
}

pub fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(*k))
}

/// A scalar at a path rendered as text (what field selectors compare), `None` if absent.
pub fn scalar_string(obj: &Value, path: &[&str]) -> Option<String> {
    match at(obj, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj, "labels")
}

pub fn annotations(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj, "annotations")
}

fn string_map(obj: &Value, field: &str) -> BTreeMap<String, String> {
    match obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_object) {
        Some(map) => map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect(),
        None => BTreeMap::new(),
    }
}

/// `metadata`, created if missing (or replaced if not an object).
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("made an object above");
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object above")
}

pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    metadata_mut(obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
}

pub fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"]).unwrap_or_default()
}

pub fn namespace(obj: &Value) -> Option<&str> {
    str_at(obj, &["metadata", "namespace"]).filter(|s| !s.is_empty())
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    str_at(obj, &["metadata", "resourceVersion"]).filter(|s| !s.is_empty())
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    at(obj, &["metadata", "finalizers"])
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null())
}

/// Now, as Kubernetes writes `metav1.Time` (seconds, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The five random characters Kubernetes appends to `generateName` (no vowels, so no words).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// The value with `spec` and `status` removed: what is left is compared to decide whether an
/// update changed anything but status.
pub fn without(obj: &Value, fields: &[&str]) -> Value {
    let mut v = obj.clone();
    if let Some(map) = v.as_object_mut() {
        for f in fields {
            map.remove(*f);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_read_metadata() {
        let obj = json!({"metadata": {"name": "a", "namespace": "", "labels": {"x": "1", "bad": 2}}, "spec": {"n": 3}});
        assert_eq!(name(&obj), "a");
        assert_eq!(namespace(&obj), None);
        assert_eq!(labels(&obj).into_iter().collect::<Vec<_>>(), vec![("x".to_string(), "1".to_string())]);
        assert_eq!(scalar_string(&obj, &["spec", "n"]).as_deref(), Some("3"));
    }

    #[test]
    fn generated_names_use_kubernetes_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn metadata_mut_repairs_non_objects() {
        let mut v = json!({"metadata": 5});
        set_resource_version(&mut v, 7);
        assert_eq!(v["metadata"]["resourceVersion"], "7");
    }
}
