//! Pod references: which pod a report, a binding or a log line is about — its namespace, name and
//! uid (and the resourceVersion it was seen at), the `namespace/name` key client-go's
//! `MetaNamespaceKeyFunc` gives, and the `ObjectReference` an Event names.

use std::fmt;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};

/// A pod's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

impl PodRef {
    /// The pod's reference; a pod without a namespace is in `default`, as the API server puts it.
    pub fn of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            resource_version: pod.metadata.resource_version.clone(),
        }
    }

    /// `namespace/name` (client-go's `MetaNamespaceKeyFunc`).
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// The reference an Event about the pod names (`v1`, `Pod`, namespace, name, uid,
    /// resourceVersion).
    pub fn object_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            resource_version: self.resource_version.clone(),
            ..ObjectReference::default()
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn pods_are_referred_to_as_kubernetes_does() {
        let pod = |namespace: Option<&str>| Pod {
            metadata: ObjectMeta {
                namespace: namespace.map(Into::into),
                name: Some("web-1".into()),
                uid: Some("u1".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let r = PodRef::of(&pod(Some("ns")));
        assert_eq!(r.key(), "ns/web-1");
        assert_eq!(r.to_string(), "ns/web-1");
        assert_eq!(PodRef::of(&pod(None)).key(), "default/web-1");
        let reference = r.object_reference();
        assert_eq!(reference, crate::events::reference(&pod(Some("ns"))), "the same as ref.GetReference");
    }
}
