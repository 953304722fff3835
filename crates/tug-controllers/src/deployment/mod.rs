//! The Deployment controller: rolling updates and recreation through ReplicaSets, revision
//! history, pause and resume, progress deadlines. [`core`] decides; [`Controller`] is the loop.

pub mod core;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::pods;
use crate::runtime::writes::{delete_uid, is_gone_or_changed};
use crate::runtime::{self, Cache, Context, Enqueue, Informer, Key, Owned, Request, dependents};

pub use self::core::{Action, Observed, Plan, reconcile};

fn selector(d: &Deployment) -> Option<&LabelSelector> {
    d.spec.as_ref().map(|s| &s.selector)
}

fn owner_key(meta: &ObjectMeta, kind: &str) -> Option<Key> {
    dependents::controller_key(meta, "apps/v1", kind)
}

/// What the loop reads besides its own Deployments.
#[derive(Debug, Clone)]
struct State {
    sets: Owned<Deployment, ReplicaSet>,
    pods: Cache<Pod>,
}

/// The loop around the core: the shared owner loop ([`crate::runtime::Controller`]), owning
/// ReplicaSets.
#[derive(Debug)]
pub struct Controller {
    runtime: runtime::Controller<Deployment>,
    state: State,
}

impl Controller {
    pub fn new(
        client: kube::Client,
        deployments: &mut Informer<Deployment>,
        sets: &mut Informer<ReplicaSet>,
        pods: &mut Informer<Pod>,
    ) -> Controller {
        let mut runtime = runtime::Controller::new("deployment-controller", client, deployments);
        let sets = runtime.owns(sets, selector, Enqueue::Batched);
        let set_cache = sets.cache().clone();
        let pods = runtime.watches(pods, move |ctx, old, new| {
            // Recreate waits for the old pods to be gone: their deletion moves it on.
            if let (Some(pod), None) = (old, new)
                && let Some(set_key) = owner_key(&pod.metadata, "ReplicaSet")
                && let Some(set) = set_cache.get(&set_key)
                && let Some(d) = owner_key(&set.metadata, "Deployment")
            {
                ctx.queue.add_batched(d);
            }
        });
        Controller { runtime, state: State { sets, pods } }
    }

    pub async fn run(self, workers: usize) {
        self.runtime.run(workers, self.state, sync).await;
    }
}

async fn sync(
    state: State,
    ctx: Context<Deployment>,
    request: Request<Deployment>,
) -> Result<Option<Duration>, kube::Error> {
    let Request { key, object: d, may_act } = request;
    if !may_act {
        // Its own last writes are not in the cache yet; their events bring it back.
        return Ok(None);
    }
    let sets = state.sets.claim(&ctx.client, &d).await?;
    let recreate =
        d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let mut unfinished_pods = BTreeMap::new();
    if recreate {
        for set in &sets {
            let uid = set.metadata.uid.clone().unwrap_or_default();
            let n = state.pods.controlled_by(&uid).iter().filter(|p| !pods::is_terminal(p)).count();
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
    carry_out(&ctx, &key, &plan).await?;
    for note in &plan.notes {
        ctx.recorder.record(d.as_ref(), note);
    }
    write_revision(&ctx, &d, plan.revision.as_deref()).await?;
    // The annotation write above changes the resourceVersion: a status write that conflicts is
    // brought back by that event.
    ctx.write_status(&d, plan.status).await?;
    Ok(plan.requeue_after)
}

async fn carry_out(ctx: &Context<Deployment>, key: &Key, plan: &Plan) -> Result<(), kube::Error> {
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let creations = plan.actions.iter().filter(|a| matches!(a, Action::CreateSet(_))).count();
    let deletions = plan.actions.iter().filter_map(|a| match a {
        Action::DeleteSet { uid, .. } => Some(uid.clone()),
        _ => None,
    });
    ctx.expectations.expect(key, creations, deletions);
    for action in &plan.actions {
        let result = match action {
            Action::CreateSet(set) => match api.create(&PostParams::default(), set).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    ctx.expectations.creation_observed(key);
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
                    propagation_policy: DeleteParams::background().propagation_policy,
                    ..delete_uid(uid)
                };
                match api.delete(name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        ctx.expectations.deletion_observed(key, uid);
                        if is_gone_or_changed(&e) { Ok(()) } else { Err(e) }
                    }
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

async fn write_revision(ctx: &Context<Deployment>, d: &Deployment, revision: Option<&str>) -> Result<(), kube::Error> {
    let current = d.metadata.annotations.as_ref().and_then(|a| a.get(core::REVISION)).map(String::as_str);
    let Some(revision) = revision.filter(|r| Some(*r) != current) else { return Ok(()) };
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), d.metadata.namespace.as_deref().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {core::REVISION: revision}}});
    api.patch(d.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}
