//! core/v1 Events as the kubelet writes them (`source.component: kubelet`, the node as host and
//! reporting instance; built by `tug_k8s::events`), for whatever the agent reports about: a
//! container of a pod, or the node itself.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use tug_k8s::events;

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
    let source = events::Source { component: COMPONENT, host: Some(node), instance: Some(node) };
    events::event(regarding, source, events::Happening { warning, reason, message }, now)
}
