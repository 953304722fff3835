//! Secrets: `stringData` is folded into `data`.

use serde_json::{Value, json};

use super::Strategy;

#[derive(Debug)]
pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        fold_string_data(obj);
    }

    fn prepare_for_update(&self, _old: &Value, new: &mut Value) {
        fold_string_data(new);
    }
}

/// A Secret's `stringData` is write-only convenience: folded into base64 `data` (winning over
/// the same key there) and never stored, as in Kubernetes.
fn fold_string_data(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else { return };
    let Some(Value::Object(strings)) = map.remove("stringData") else { return };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    for (k, v) in strings {
        if let Some(text) = v.as_str() {
            data[k.as_str()] = json!(crate::pki::base64(text.as_bytes()));
        }
    }
}
