//! core/v1 Events as the kubelet writes them (`source.component: kubelet`, the node as host and
//! reporting instance, named after the object and the time in hex nanoseconds, count 1), for
//! whatever the agent reports about: a container of a pod, or the node itself.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// The component the agent's events name, like the kubelet's.
pub const COMPONENT: &str = "kubelet";

/// What happened: (warning?, reason, message).
pub type Happening<'a> = (bool, &'a str, &'a str);

/// The Event about `regarding` from the agent of `node`; it lives in the object's namespace
/// (`default` for cluster-scoped objects, where `kubectl describe node` looks).
pub fn kubelet_event(
    regarding: ObjectReference,
    node: &str,
    (warning, reason, message): Happening,
    now: Timestamp,
) -> Event {
    let name = regarding.name.clone().unwrap_or_default();
    let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: regarding,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource { component: Some(COMPONENT.into()), host: Some(node.into()) }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(node.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}
