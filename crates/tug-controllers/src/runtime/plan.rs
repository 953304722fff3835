//! The shape a pure core answers in: the writes to make, in order, the complete new status, the
//! events to record and when time alone changes the answer. ReplicaSet, DaemonSet, StatefulSet
//! and Job share it, each with its own kind of write; the Deployment's plan, which also carries
//! the revision annotation, keeps its own.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::events::Note;

/// What to do now for one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<A, S> {
    /// The writes, in the order to carry them out.
    pub actions: Vec<A>,
    /// The complete new status; write it only if it differs from the current one.
    pub status: S,
    /// Events as Kubernetes' controller emits them, beyond the per-pod ones the loop records
    /// itself from what actually happened (only it learns the names the server generated).
    pub events: Vec<Note>,
    /// When time alone changes the answer (minReadySeconds, a deadline, a back-off).
    pub requeue_after: Option<Duration>,
}

impl<A, S> Plan<A, S> {
    /// A plan that only reports this status.
    pub fn status(status: S) -> Plan<A, S> {
        Plan { actions: Vec::new(), status, events: Vec::new(), requeue_after: None }
    }
}

/// A pod write: the writes of controllers that only create and delete pods (ReplicaSet,
/// DaemonSet); [`crate::runtime::Context::carry_out_pods`] makes them.
// Plans are short-lived and few; the full objects keep the shape every core shares.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PodAction {
    /// A pod (usually with `generateName`) with the owner's controller reference.
    CreatePod(Pod),
    /// Delete with a uid precondition.
    DeletePod { name: String, uid: String },
}
