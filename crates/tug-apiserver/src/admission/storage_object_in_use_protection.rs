//! StorageObjectInUseProtection: every claim carries the pvc-protection finalizer.

use serde_json::{Value, json};

use super::OnCreate;

/// The plugin.
pub fn plugin() -> OnCreate {
    OnCreate::new("StorageObjectInUseProtection", "", "PersistentVolumeClaim", |_, claim| {
        add_finalizer(claim, PVC_PROTECTION_FINALIZER)
    })
}

/// Kubernetes' StorageObjectInUseProtection admission puts this on every claim; the storage
/// protection controller takes it off once no pod uses the claim, so deleting a claim in use
/// leaves it Terminating instead of pulling the volume from under a running pod.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// Adds `finalizer` to the object's `metadata.finalizers` unless it is there.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut()
        && !items.iter().any(|f| f == finalizer)
    {
        items.push(json!(finalizer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_protected_once() {
        let mut claim = json!({"metadata": {"name": "c"}});
        add_finalizer(&mut claim, PVC_PROTECTION_FINALIZER);
        add_finalizer(&mut claim, PVC_PROTECTION_FINALIZER);
        assert_eq!(claim["metadata"]["finalizers"], json!([PVC_PROTECTION_FINALIZER]));
        let mut other = json!({"metadata": {"finalizers": ["example.com/keep"]}});
        add_finalizer(&mut other, PVC_PROTECTION_FINALIZER);
        assert_eq!(other["metadata"]["finalizers"], json!(["example.com/keep", PVC_PROTECTION_FINALIZER]));
    }
}
