//! NamespaceLifecycle: nothing is created in a namespace that does not exist or is being
//! deleted, and the system namespaces (`default`, `kube-system`, `kube-public`) cannot be deleted.

use futures::future::BoxFuture;
use serde_json::Value;
use tug_core::registry;
use tug_core::status::ApiError;

use super::{Attributes, Operation, Plugin};
use crate::errors::from_store;
use crate::{Api, object};

#[derive(Debug)]
pub struct NamespaceLifecycle;

impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    fn handles(&self, a: &Attributes) -> bool {
        match a.operation {
            Operation::Create => a.namespace.is_some(),
            Operation::Delete => a.is("", "Namespace"),
            Operation::Update => false,
        }
    }

    fn mutate<'a>(
        &'a self,
        api: &'a Api,
        a: &'a Attributes,
        _: Option<&'a mut Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            match (a.operation, a.namespace.as_deref()) {
                (Operation::Delete, _) if crate::bootstrap::UNDELETABLE_NAMESPACES.contains(&a.name.as_str()) => {
                    Err(ApiError::forbidden_on("", a.rt.plural, &a.name, "this namespace may not be deleted"))
                }
                (Operation::Create, Some(ns)) => check_namespace_open(api, ns).await,
                _ => Ok(()),
            }
        })
    }
}

/// The namespace a namespaced request writes into must exist and not be terminating.
pub async fn check_namespace_open(api: &Api, ns: &str) -> Result<(), ApiError> {
    let ns_rt = registry::by_path("", "v1", "namespaces").expect("namespaces are registered");
    let key = ns_rt.key(None, ns);
    let value = match api.cache.get(&key) {
        Some(obj) => obj.value(),
        None => match api.store.get(&key, None).await.map_err(from_store)? {
            Some(kv) => serde_json::from_slice(&kv.value).unwrap_or(Value::Null),
            None => return Err(ApiError::not_found("", "namespaces", ns)),
        },
    };
    if object::is_deleting(&value) || object::str_at(&value, &["status", "phase"]) == Some("Terminating") {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))
        .about("", "namespaces", ns));
    }
    Ok(())
}
