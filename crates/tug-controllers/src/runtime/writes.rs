//! The writes every owner-of-pods controller makes, made one way: pods created in slow-start
//! batches, pods deleted with a uid precondition, both ticking off expectations for what will
//! never be observed and recording Kubernetes' events (`SuccessfulCreate` "Created pod: <the
//! name the server gave>", `FailedCreate`, `SuccessfulDelete`, `FailedDelete`); and the status
//! written only when it changed.

use std::sync::Mutex;

use futures::future::join_all;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetStatus, Deployment, DeploymentStatus, ReplicaSet, ReplicaSetStatus, StatefulSet,
    StatefulSetStatus,
};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Key;
use super::controller::Context;
use super::plan::PodAction;
use crate::events::Note;

/// The message of an API error, as users see it in events.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Gone already (404), or changed or replaced meanwhile (409: a conflict, or a uid precondition
/// that no longer holds): the watch brings the next state, there is nothing to retry.
pub fn is_gone_or_changed(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

/// A delete of exactly the object with this uid (not one that took its name since).
pub fn delete_uid(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
        ..DeleteParams::default()
    }
}

/// Creates `count` things in batches of 1, 2, 4, … and stops at the first batch with a failure,
/// as Kubernetes does, so a quota or admission error costs one request, not a thousand.
/// Returns how many were created and the first error.
pub async fn slow_start<F, Fut, E>(count: usize, create: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let (mut done, mut batch) = (0, 1);
    while done < count {
        let size = batch.min(count - done);
        let results = join_all((0..size).map(|_| create())).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        done += ok;
        if let Some(error) = results.into_iter().find_map(Result::err) {
            return (done, Some(error));
        }
        batch *= 2;
    }
    (done, None)
}

/// A kind whose status the loop writes back.
pub trait HasStatus {
    type Status: PartialEq;
    fn status(&self) -> Option<&Self::Status>;
    fn set_status(&mut self, status: Self::Status);
}

macro_rules! has_status {
    ($($kind:ty => $status:ty),* $(,)?) => {$(
        impl HasStatus for $kind {
            type Status = $status;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn set_status(&mut self, status: $status) {
                self.status = Some(status);
            }
        }
    )*};
}

has_status!(
    ReplicaSet => ReplicaSetStatus,
    Deployment => DeploymentStatus,
    DaemonSet => DaemonSetStatus,
    StatefulSet => StatefulSetStatus,
    Job => JobStatus,
);

/// What carrying out pod writes came to.
#[derive(Debug, Default)]
pub struct PodWrites {
    /// Pods asked for that could not be created.
    pub not_created: usize,
    /// The first failure (deletions of pods already gone or replaced are not failures).
    pub error: Option<kube::Error>,
}

impl PodWrites {
    fn fail(&mut self, e: kube::Error) {
        self.error.get_or_insert(e);
    }
}

impl<K> Context<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    /// Expects, then carries out, pod creations and deletions: deletions first (a pod replaced
    /// on the same node or name goes before its successor comes), then creations.
    pub async fn carry_out_pods(&self, owner: &K, key: &Key, actions: Vec<PodAction>) -> PodWrites {
        let mut creations = Vec::new();
        let mut deletions = Vec::new();
        for action in actions {
            match action {
                PodAction::CreatePod(pod) => creations.push(pod),
                PodAction::DeletePod { name, uid } => deletions.push((name, uid)),
            }
        }
        self.expectations.expect(key, creations.len(), deletions.iter().map(|(_, uid)| uid.clone()));
        let mut writes = self.delete_pods(owner, key, &deletions).await;
        let created = self.create_pods(owner, key, creations).await;
        writes.not_created = created.not_created;
        if let Some(e) = created.error {
            writes.fail(e);
        }
        writes
    }

    /// Creates the pods in slow-start batches. Those never created are ticked off the owner's
    /// expectations (they will never be observed).
    pub async fn create_pods(&self, owner: &K, key: &Key, pods: Vec<Pod>) -> PodWrites {
        let count = pods.len();
        let mut writes = PodWrites::default();
        if count == 0 {
            return writes;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let pending = Mutex::new(pods.into_iter());
        let (created, error) = slow_start(count, || {
            let pod = pending.lock().unwrap_or_else(|e| e.into_inner()).next();
            let api = api.clone();
            async move {
                let Some(pod) = pod else { return Ok(()) };
                let created = api.create(&PostParams::default(), &pod).await?;
                let name = created.metadata.name.unwrap_or_default();
                self.recorder.record(owner, &Note::normal("SuccessfulCreate", format!("Created pod: {name}")));
                Ok::<(), kube::Error>(())
            }
        })
        .await;
        for _ in created..count {
            self.expectations.creation_observed(key);
        }
        writes.not_created = count - created;
        if let Some(e) = error {
            self.recorder.record(owner, &Note::warning("FailedCreate", format!("Error creating: {}", api_message(&e))));
            writes.fail(e);
        }
        writes
    }

    /// Deletes the pods `(name, uid)` at once, each with a uid precondition. Those not deleted
    /// are ticked off the owner's expectations.
    pub async fn delete_pods(&self, owner: &K, key: &Key, victims: &[(String, String)]) -> PodWrites {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let results = join_all(victims.iter().map(|(name, uid)| {
            let api = api.clone();
            async move { (name, uid, api.delete(name, &delete_uid(uid)).await) }
        }))
        .await;
        let mut writes = PodWrites::default();
        for (name, uid, result) in results {
            match result {
                Ok(_) => self.recorder.record(owner, &Note::normal("SuccessfulDelete", format!("Deleted pod: {name}"))),
                Err(e) => {
                    // Not deleted by us: the deletion will never be observed.
                    self.expectations.deletion_observed(key, uid);
                    if !is_gone_or_changed(&e) {
                        let message = format!("Error deleting: {}", api_message(&e));
                        self.recorder.record(owner, &Note::warning("FailedDelete", message));
                        writes.fail(e);
                    }
                }
            }
        }
        writes
    }

    /// Writes the status when it differs from the cached one, with the cached resourceVersion.
    /// Returns whether the object now has it (false: it changed or went meanwhile, and its watch
    /// event brings the next sync; a status computed from a stale object is never written).
    pub async fn write_status(&self, object: &K, status: K::Status) -> Result<bool, kube::Error>
    where
        K: HasStatus,
    {
        if object.status() == Some(&status) {
            return Ok(true);
        }
        let meta = object.meta();
        let api: Api<K> = Api::namespaced(self.client.clone(), meta.namespace.as_deref().unwrap_or_default());
        let mut updated = object.clone();
        updated.set_status(status);
        match api.replace_status(meta.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated).await {
            Ok(_) => Ok(true),
            Err(e) if is_gone_or_changed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_the_first_failure() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (done, error) = slow_start(100, || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { if n == 5 { Err("boom") } else { Ok(()) } }
        })
        .await;
        // Batches 1 and 2 succeed (3 calls), batch 4 has the failure: 3 + 3 created, then stop.
        assert_eq!((done, error), (6, Some("boom")));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 7);
    }
}
