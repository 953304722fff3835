//! core/v1 Events as Kubernetes' event recorder (client-go `tools/record`) builds them, and object
//! references to put in them. The scheduler, the controllers and the agent each report through
//! their own writer (spam filter, queue, IO); the Event object they write is built here.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// Who reports: `source.component` and `reportingComponent` (`default-scheduler`, `kubelet`,
/// a controller's name), `source.host` (the kubelet's node) and `reportingInstance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    pub component: &'a str,
    pub host: Option<&'a str>,
    pub instance: Option<&'a str>,
}

/// What happened: a Normal or Warning event with a reason and a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Happening<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub message: &'a str,
}

/// The Event about `regarding`, as the recorder's `makeEvent` writes it: named after the object
/// and the time in hex nanoseconds, in the object's namespace (`default` for cluster-scoped
/// objects, where `kubectl describe` looks), first and last seen now, count 1.
pub fn event(regarding: ObjectReference, source: Source, happening: Happening, now: Timestamp) -> Event {
    let name = regarding.name.as_deref().unwrap_or_default();
    let namespace = regarding.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        involved_object: regarding,
        reason: Some(happening.reason.into()),
        message: Some(happening.message.into()),
        type_: Some(if happening.warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource { component: Some(source.component.into()), host: source.host.map(Into::into) }),
        reporting_component: Some(source.component.into()),
        reporting_instance: source.instance.map(Into::into),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

/// A reference to an object (`ref.GetReference`): its apiVersion, kind, namespace, name, uid and
/// resourceVersion.
pub fn reference<K>(object: &K) -> ObjectReference
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let meta = object.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.into()),
        kind: Some(K::KIND.into()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("web-1".into()),
                uid: Some("u1".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn events_read_as_the_recorder_writes_them() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let source = Source { component: "default-scheduler", host: None, instance: Some("sched-1") };
        let happening =
            Happening { warning: false, reason: "Scheduled", message: "Successfully assigned ns/web-1 to n1" };
        let e = event(reference(&pod()), source, happening, now);
        assert_eq!(e.metadata.name.as_deref(), Some(format!("web-1.{:x}", now.as_nanosecond()).as_str()));
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        let involved = &e.involved_object;
        assert_eq!((involved.api_version.as_deref(), involved.kind.as_deref()), (Some("v1"), Some("Pod")));
        assert_eq!((involved.uid.as_deref(), involved.resource_version.as_deref()), (Some("u1"), Some("7")));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reason.as_deref(), Some("Scheduled"));
        assert_eq!(e.source, Some(EventSource { component: Some("default-scheduler".into()), host: None }));
        assert_eq!(e.reporting_component.as_deref(), Some("default-scheduler"));
        assert_eq!(e.reporting_instance.as_deref(), Some("sched-1"));
        assert_eq!(
            (e.first_timestamp.clone(), e.last_timestamp.clone(), e.count),
            (Some(Time(now)), Some(Time(now)), Some(1))
        );

        let node =
            Node { metadata: ObjectMeta { name: Some("n1".into()), ..ObjectMeta::default() }, ..Node::default() };
        let kubelet = Source { component: "kubelet", host: Some("n1"), instance: Some("n1") };
        let warning = Happening { warning: true, reason: "Rebooted", message: "" };
        let e = event(reference(&node), kubelet, warning, now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"), "cluster-scoped objects' events go to default");
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.source.and_then(|s| s.host).as_deref(), Some("n1"));
        let mut empty_namespace = reference(&pod());
        empty_namespace.namespace = Some(String::new());
        let e = event(empty_namespace, kubelet, warning, now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
    }
}
