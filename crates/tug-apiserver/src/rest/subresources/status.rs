//! `status` and `finalize`: writes that may change only part of an object. The main resource
//! keeps the stored status (for types with a status subresource); `status` changes only the
//! status; a Namespace's `finalize` changes only `spec.finalizers`.

use serde_json::{Value, json};

/// What part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// Everything but `status` (for types with a status subresource).
    Main,
    /// Only `status`.
    Status,
    /// Only a Namespace's `spec.finalizers`.
    Finalize,
}

/// The object a write of `scope` leaves: `new` where the scope allows, `old` elsewhere.
/// `status_is_subresource` says whether the main resource's writes keep the stored status.
pub fn scoped(scope: WriteScope, status_is_subresource: bool, old: &Value, mut new: Value) -> Value {
    match scope {
        WriteScope::Main => {
            if status_is_subresource {
                let map = new.as_object_mut().expect("object");
                match old.get("status") {
                    Some(s) => map.insert("status".into(), s.clone()),
                    None => map.remove("status"),
                };
            }
            new
        }
        WriteScope::Status => {
            let mut merged = old.clone();
            let map = merged.as_object_mut().expect("object");
            match new.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
            merged
        }
        WriteScope::Finalize => {
            let mut merged = old.clone();
            let finalizers = new.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            merged["spec"]["finalizers"] = finalizers;
            merged
        }
    }
}
