//! The Deployment controller: rolling updates and recreation through ReplicaSets, revision
//! history, pause and resume, progress deadlines. [`core`] decides; [`Controller`] is the loop.

pub mod core;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::claim::claim;
use crate::events::Recorder;
use crate::pods;
use crate::runtime::{Cache, Expectations, Informer, Key, Queue, dependents};

pub use self::core::{Action, Observed, Plan, reconcile};

#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    deployments: Cache<Deployment>,
    sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("deployment::Controller").field("queued", &self.queue.len()).finish()
    }
}

fn owner_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, kind: &str) -> Option<Key> {
    dependents::controller_key(meta, "apps/v1", kind)
}

impl Controller {
    pub fn new(
        client: kube::Client,
        deployments: &mut Informer<Deployment>,
        sets: &mut Informer<ReplicaSet>,
        pods: &mut Informer<Pod>,
    ) -> Controller {
        let controller = Controller {
            recorder: Recorder::new(client.clone(), "deployment-controller"),
            client,
            deployments: deployments.cache(),
            sets: sets.cache(),
            pods: pods.cache(),
            queue: Queue::new(),
            expectations: Expectations::default(),
        };
        let queue = controller.queue.clone();
        deployments.on_change(move |old, new| {
            if let Some(d) = new.or(old) {
                queue.add(Key::of(d));
            }
        });
        let this = controller.clone();
        sets.on_change(move |old, new| this.set_changed(old, new));
        let this = controller.clone();
        pods.on_change(move |old, new| {
            // Recreate waits for the old pods to be gone: their deletion moves it on.
            if let (Some(pod), None) = (old, new)
                && let Some(set_key) = owner_key(&pod.metadata, "ReplicaSet")
                && let Some(set) = this.sets.get(&set_key)
                && let Some(d) = owner_key(&set.metadata, "Deployment")
            {
                this.queue.add_batched(d);
            }
        });
        controller
    }

    fn set_changed(&self, old: Option<&ReplicaSet>, new: Option<&ReplicaSet>) {
        for (i, set) in [old, new].into_iter().enumerate() {
            let Some(set) = set else { continue };
            match owner_key(&set.metadata, "Deployment") {
                Some(d) => {
                    if i == 1 && old.is_none() {
                        self.expectations.creation_observed(&d);
                    }
                    if new.is_none() {
                        self.expectations.deletion_observed(&d, set.metadata.uid.as_deref().unwrap_or_default());
                    }
                    self.queue.add_batched(d);
                }
                None if !pods::is_deleting(&set.metadata) => {
                    let ns = set.metadata.namespace.as_deref().unwrap_or_default();
                    for d in self.deployments.list_namespace(ns) {
                        if pods::selects(d.spec.as_ref().map(|s| &s.selector), set.metadata.labels.as_ref()) {
                            self.queue.add_batched(Key::of(d.as_ref()));
                        }
                    }
                }
                None => {}
            }
        }
    }

    pub async fn run(self, workers: usize) {
        self.deployments.wait_synced().await;
        self.sets.wait_synced().await;
        self.pods.wait_synced().await;
        let queue = self.queue.clone();
        crate::runtime::run_workers(queue, workers, "deployment", move |key| {
            let this = self.clone();
            async move { this.sync(&key).await }
        })
        .await;
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(d) = self.deployments.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        if !self.expectations.satisfied(key) {
            // Its own last writes are not in the cache yet; their events bring it back.
            return Ok(None);
        }
        let sets_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let owner_ref = pods::controller_ref("apps/v1", "Deployment", &d.metadata);
        let selector = d.spec.as_ref().map(|s| &s.selector);
        let sets = claim(&sets_api, &self.sets, &d.metadata, &owner_ref, selector).await?;
        let recreate =
            d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let mut unfinished_pods = BTreeMap::new();
        if recreate {
            for set in &sets {
                let uid = set.metadata.uid.clone().unwrap_or_default();
                let n = self.pods.controlled_by(&uid).iter().filter(|p| !pods::is_terminal(p)).count();
                unfinished_pods.insert(uid, n);
            }
        }
        let observed = Observed {
            deployment: &d,
            sets: sets.iter().map(Arc::as_ref).collect(),
            unfinished_pods,
            now: jiff::Timestamp::now(),
        };
        let plan = reconcile(&observed);
        self.carry_out(key, &sets_api, &plan).await?;
        for note in &plan.notes {
            self.recorder.record(d.as_ref(), note);
        }
        self.write_revision(&d, plan.revision.as_deref()).await?;
        self.write_status(&d, plan.status).await?;
        Ok(plan.requeue_after)
    }

    async fn carry_out(&self, key: &Key, api: &Api<ReplicaSet>, plan: &Plan) -> Result<(), kube::Error> {
        let creations = plan.actions.iter().filter(|a| matches!(a, Action::CreateSet(_))).count();
        let deletions = plan.actions.iter().filter_map(|a| match a {
            Action::DeleteSet { uid, .. } => Some(uid.clone()),
            _ => None,
        });
        self.expectations.expect(key, creations, deletions);
        for action in &plan.actions {
            let result = match action {
                Action::CreateSet(set) => match api.create(&PostParams::default(), set).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        match e {
                            // Already there (a stale cache): the next sync adopts or renames.
                            kube::Error::Api(s) if s.code == 409 => Ok(()),
                            e => Err(e),
                        }
                    }
                },
                Action::UpdateSet { name, replicas, min_ready_seconds, annotations } => {
                    let patch = json!({
                        "metadata": {"annotations": annotations},
                        "spec": {"replicas": replicas, "minReadySeconds": min_ready_seconds},
                    });
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
                }
                Action::DeleteSet { name, uid } => {
                    let params = DeleteParams {
                        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                        ..DeleteParams::background()
                    };
                    let result = api.delete(name, &params).await;
                    if result.is_err() {
                        self.expectations.deletion_observed(key, uid);
                    }
                    match result {
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                        other => other.map(drop),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(deployment = %key, error = %e, "deployment step failed");
                return Err(e);
            }
        }
        Ok(())
    }

    async fn write_revision(&self, d: &Deployment, revision: Option<&str>) -> Result<(), kube::Error> {
        let current = d.metadata.annotations.as_ref().and_then(|a| a.get(core::REVISION)).map(String::as_str);
        let Some(revision) = revision.filter(|r| Some(*r) != current) else { return Ok(()) };
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), d.metadata.namespace.as_deref().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {core::REVISION: revision}}});
        api.patch(d.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn write_status(
        &self,
        d: &Deployment,
        status: k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Result<(), kube::Error> {
        if d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), d.metadata.namespace.as_deref().unwrap_or_default());
        let mut updated = d.clone();
        updated.status = Some(status);
        match api.replace_status(d.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &updated).await
        {
            Ok(_) => Ok(()),
            // The annotation write above changed the resourceVersion: its event brings us back.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
