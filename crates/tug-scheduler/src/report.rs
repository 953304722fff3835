//! Telling users what the scheduler did: Events (`Scheduled`, `FailedScheduling`) and the
//! `PodScheduled=False` condition of pods that fit nowhere.
//!
//! Reports are written by a background task fed through a bounded channel, so the decision loop
//! never waits on them; when the channel is full a report is dropped (Kubernetes' event broadcaster
//! drops under overload too). Binding never goes through here.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;
use tug_k8s::events;

/// The component name Kubernetes' scheduler reports as.
pub const COMPONENT: &str = "default-scheduler";
/// How many reports may wait; beyond this they are dropped.
const QUEUE_CAPACITY: usize = 16 * 1024;
/// How many reports are written at once: few, so reports trail binds rather than compete with them.
const CONCURRENT_WRITES: usize = 8;

/// The pod a report is about (`tug_k8s::pods`).
pub use tug_k8s::pods::PodRef;

/// One thing to write.
#[derive(Debug, Clone)]
pub enum Report {
    Event(Box<Event>),
    /// Replace the pod's status conditions (a merge patch replaces lists whole).
    Conditions {
        namespace: String,
        name: String,
        conditions: Vec<PodCondition>,
    },
}

/// A core/v1 Event about a pod, as kube-scheduler's recorder writes it (`tug_k8s::events`).
pub fn pod_event(
    pod: &PodRef,
    warning: bool,
    reason: &str,
    message: &str,
    instance: &str,
    now: jiff::Timestamp,
) -> Event {
    let source = events::Source { component: COMPONENT, host: None, instance: Some(instance) };
    events::event(pod.object_reference(), source, events::Happening { warning, reason, message }, now)
}

/// The `Scheduled` event of a pod bound to `node`.
pub fn scheduled_event(pod: &PodRef, node: &str, instance: &str, now: jiff::Timestamp) -> Event {
    let message = format!("Successfully assigned {pod} to {node}");
    pod_event(pod, false, "Scheduled", &message, instance, now)
}

/// The `FailedScheduling` event of a pod that fits nowhere, `why` being the diagnosis.
pub fn failed_event(pod: &PodRef, why: &str, instance: &str, now: jiff::Timestamp) -> Event {
    pod_event(pod, true, "FailedScheduling", why, instance, now)
}

/// The pod's conditions with `PodScheduled=False, Unschedulable, why`, or `None` when the pod
/// already says exactly that (so a retry that fails the same way writes nothing).
pub fn unschedulable_conditions(
    current: &[PodCondition],
    why: &str,
    now: jiff::Timestamp,
) -> Option<Vec<PodCondition>> {
    let previous = current.iter().find(|c| c.type_ == "PodScheduled");
    let unchanged = previous.is_some_and(|c| {
        c.status == "False" && c.reason.as_deref() == Some("Unschedulable") && c.message.as_deref() == Some(why)
    });
    if unchanged {
        return None;
    }
    // The transition time moves only when the status does.
    let transition = previous.filter(|c| c.status == "False").and_then(|c| c.last_transition_time.clone());
    let condition = PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(why.into()),
        last_transition_time: transition.or(Some(Time(now))),
        ..PodCondition::default()
    };
    let mut conditions: Vec<PodCondition> = current.iter().filter(|c| c.type_ != "PodScheduled").cloned().collect();
    conditions.push(condition);
    Some(conditions)
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Reporter {
    tx: mpsc::Sender<Report>,
}

impl Reporter {
    /// Starts the background writer; it ends when every `Reporter` is dropped and the queue is empty.
    pub fn spawn(client: kube::Client) -> Reporter {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let reports = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        tokio::spawn(reports.for_each_concurrent(CONCURRENT_WRITES, move |report| write(client.clone(), report)));
        Reporter { tx }
    }

    /// Queues a report, or drops it when the writer is overloaded.
    pub fn send(&self, report: Report) {
        if let Err(e) = self.tx.try_send(report) {
            tracing::debug!(error = %e, "scheduler report dropped");
        }
    }
}

async fn write(client: kube::Client, report: Report) {
    let result = match &report {
        Report::Event(event) => {
            let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
            Api::<Event>::namespaced(client, namespace).create(&PostParams::default(), event).await.map(drop)
        }
        Report::Conditions { namespace, name, conditions } => {
            let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
            Api::<Pod>::namespaced(client, namespace)
                .patch_status(name, &PatchParams::default(), &patch)
                .await
                .map(drop)
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, ?report, "writing a scheduler report failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodRef {
        PodRef { namespace: "ns".into(), name: "web".into(), uid: "u1".into(), resource_version: Some("7".into()) }
    }

    #[test]
    fn scheduled_event_reads_as_kubernetes_writes_it() {
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let e = scheduled_event(&pod(), "node-1", "sched-a", now);
        assert_eq!(e.message.as_deref(), Some("Successfully assigned ns/web to node-1"));
        assert_eq!((e.reason.as_deref(), e.type_.as_deref()), (Some("Scheduled"), Some("Normal")));
        assert_eq!(e.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(e.source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));
        assert_eq!(e.reporting_component.as_deref(), Some("default-scheduler"));
        assert_eq!(e.metadata.name.as_deref(), Some("web.17979cfe362a0000"));
        let f = failed_event(&pod(), "0/1 nodes are available: 1 Insufficient cpu.", "sched-a", now);
        assert_eq!((f.reason.as_deref(), f.type_.as_deref()), (Some("FailedScheduling"), Some("Warning")));
    }

    #[test]
    fn unschedulable_condition_is_written_once_per_reason() {
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let other = PodCondition { type_: "Other".into(), status: "True".into(), ..PodCondition::default() };
        let first = unschedulable_conditions(std::slice::from_ref(&other), "no room", now).expect("a change");
        assert_eq!(first.len(), 2, "other conditions are kept: {first:?}");
        let scheduled = &first[1];
        assert_eq!((scheduled.status.as_str(), scheduled.reason.as_deref()), ("False", Some("Unschedulable")));
        assert_eq!(unschedulable_conditions(&first, "no room", now), None);
        let later = now + jiff::SignedDuration::from_secs(60);
        let second = unschedulable_conditions(&first, "still no room", later).expect("a new message");
        assert_eq!(second[1].last_transition_time, Some(Time(now)), "status unchanged: transition time kept");
    }
}
