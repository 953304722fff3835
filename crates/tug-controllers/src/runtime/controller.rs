//! The owner-of-pods controller loop, written once (in the spirit of kube-runtime's
//! `Controller::new(api).owns(...).run(reconcile, ...)`, over the shared informers):
//!
//! ```text
//! let mut c = Controller::new("replicaset-controller", client, &mut sets);
//! let pods = c.owns(&mut pods, selector, Enqueue::Batched);
//! c.run(workers, pods, sync).await; // async fn sync(pods, ctx: Context<_>, request: Request<_>)
//! ```
//!
//! - [`Controller::new`] queues an object on every change and forgets its expectations when it
//!   goes.
//! - [`Controller::owns`] routes a dependent's change to its controller of this kind (ticking off
//!   the expectations it meets) or, for an orphan, to the owners whose selector may adopt it
//!   ([`super::dependents`]); [`Owned::claim`] adopts and releases in a sync.
//! - [`Controller::watches`] adds any other input (nodes, claims) with a handler of its own.
//! - [`Controller::run`] waits for every cache it was given to be synced, then runs the workers:
//!   for each key, the object from the cache (gone: its expectations are forgotten) and whether
//!   the owner's previous writes have all been seen ([`Request::may_act`]), handed to the
//!   controller's sync, whose answer is the queue's: `Ok(Some(after))` to run again after a
//!   while, `Err` to retry with back-off.
//!
//! What a sync does with its plan — pod writes, status — is in [`super::writes`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::Api;
use serde::de::DeserializeOwned;

use super::{Cache, Expectations, Informer, Key, Queue, dependents, run_workers};
use crate::events::Recorder;
use crate::pods;

/// What a controller's sync works with. Cheap to clone.
pub struct Context<K> {
    pub client: kube::Client,
    /// The controller's own objects.
    pub objects: Cache<K>,
    pub queue: Queue,
    pub expectations: Expectations,
    pub recorder: Recorder,
    /// The component name events carry (`replicaset-controller`).
    pub component: &'static str,
}

impl<K> Clone for Context<K> {
    fn clone(&self) -> Self {
        Context {
            client: self.client.clone(),
            objects: self.objects.clone(),
            queue: self.queue.clone(),
            expectations: self.expectations.clone(),
            recorder: self.recorder.clone(),
            component: self.component,
        }
    }
}

impl<K> std::fmt::Debug for Context<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("component", &self.component).field("queued", &self.queue.len()).finish()
    }
}

impl<K: Resource<DynamicType = ()>> Context<K> {
    /// The controller reference this controller puts on what it makes and adopts.
    pub fn owner_ref(object: &K) -> OwnerReference {
        pods::controller_ref(&K::api_version(&()), &K::kind(&()), object.meta())
    }
}

/// One key to sync: the object as the cache has it now.
#[derive(Debug)]
pub struct Request<K> {
    pub key: Key,
    pub object: Arc<K>,
    /// Have the controller's previous creations and deletions for this object all shown in the
    /// caches (or expired)? Read before the sync reads the dependents' cache, so an event landing
    /// in between cannot let a stale view act. While false, a sync may report but not write
    /// dependents; the awaited events bring it back.
    pub may_act: bool,
}

/// How a dependent's change queues its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    /// At once.
    Now,
    /// After the queue's batching window: the hundreds of pod changes of a scaling ReplicaSet
    /// then make a few syncs, not hundreds.
    Batched,
}

/// The label selector of an owner (`None`: it selects nothing).
pub type Selector<K> = fn(&K) -> Option<&LabelSelector>;

/// The dependents of kind `D` an owner of kind `K` controls through its selector.
pub struct Owned<K, D> {
    cache: Cache<D>,
    selector: Selector<K>,
}

impl<K, D> Clone for Owned<K, D> {
    fn clone(&self) -> Self {
        Owned { cache: self.cache.clone(), selector: self.selector }
    }
}

impl<K, D> std::fmt::Debug for Owned<K, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owned").finish_non_exhaustive()
    }
}

impl<K, D> Owned<K, D>
where
    K: Resource<DynamicType = ()>,
    D: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
{
    pub fn cache(&self) -> &Cache<D> {
        &self.cache
    }

    /// The dependents `owner` controls after adopting the orphans its selector matches and
    /// releasing those it no longer matches ([`crate::claim`]).
    pub async fn claim(&self, client: &kube::Client, owner: &K) -> Result<Vec<Arc<D>>, kube::Error> {
        let meta = owner.meta();
        let api: Api<D> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or_default());
        let owner_ref = Context::owner_ref(owner);
        crate::claim::claim(&api, &self.cache, meta, &owner_ref, (self.selector)(owner)).await
    }
}

/// A controller being wired to the shared informers; [`Controller::run`] runs it.
pub struct Controller<K> {
    ctx: Context<K>,
    /// Resolve once each cache the controller reads has its first list.
    synced: Vec<BoxFuture<'static, ()>>,
}

impl<K> std::fmt::Debug for Controller<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").field("context", &self.ctx).field("caches", &self.synced.len()).finish()
    }
}

impl<K> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    /// A controller of the objects `owners` watches; `component` names it in events and logs.
    pub fn new(component: &'static str, client: kube::Client, owners: &mut Informer<K>) -> Controller<K> {
        let ctx = Context {
            recorder: Recorder::new(client.clone(), component),
            client,
            objects: owners.cache(),
            queue: Queue::new(),
            expectations: Expectations::default(),
            component,
        };
        let (queue, expectations) = (ctx.queue.clone(), ctx.expectations.clone());
        owners.on_change(move |old, new| match (old, new) {
            (_, Some(object)) => queue.add(Key::of(object)),
            (Some(gone), None) => expectations.forget(&Key::of(gone)),
            (None, None) => {}
        });
        let synced = vec![owners.cache().synced().boxed()];
        Controller { ctx, synced }
    }

    pub fn context(&self) -> &Context<K> {
        &self.ctx
    }

    /// The owner controls dependents of kind `D` (its controller reference on them) and adopts
    /// the orphans `selector` matches. Their changes queue it.
    pub fn owns<D>(&mut self, dependents: &mut Informer<D>, selector: Selector<K>, enqueue: Enqueue) -> Owned<K, D>
    where
        D: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let (api_version, kind) = (K::api_version(&()).into_owned(), K::kind(&()).into_owned());
        self.watches(dependents, move |ctx, old, new| {
            let add = |key| match enqueue {
                Enqueue::Now => ctx.queue.add(key),
                Enqueue::Batched => ctx.queue.add_batched(key),
            };
            let owner_of = |meta: &ObjectMeta| dependents::controller_key(meta, &api_version, &kind);
            let adopters = |orphan: &D| dependents::enqueue_selecting(orphan, &ctx.objects, selector, add);
            dependents::dependent_changed(old, new, owner_of, &ctx.expectations, add, adopters);
        });
        Owned { cache: dependents.cache(), selector }
    }

    /// Another input: `handler` sees each change of `informer`'s objects (and may queue keys).
    /// Returns the cache, which [`Controller::run`] waits for.
    pub fn watches<D>(
        &mut self,
        informer: &mut Informer<D>,
        handler: impl Fn(&Context<K>, Option<&D>, Option<&D>) + Send + Sync + 'static,
    ) -> Cache<D>
    where
        D: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let ctx = self.ctx.clone();
        informer.on_change(move |old, new| handler(&ctx, old, new));
        let cache = informer.cache();
        self.synced.push(cache.synced().boxed());
        cache
    }

    /// Runs `workers` workers until the task is dropped, once every cache has synced. Each
    /// sync gets a clone of `state` (what the controller keeps besides the context).
    pub async fn run<S, F, Fut>(self, workers: usize, state: S, sync: F)
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, Context<K>, Request<K>) -> Fut + Copy + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Duration>, kube::Error>> + Send,
    {
        let Controller { ctx, synced } = self;
        futures::future::join_all(synced).await;
        let queue = ctx.queue.clone();
        let component = ctx.component;
        run_workers(queue, workers, component, move |key: Key| {
            let (ctx, state) = (ctx.clone(), state.clone());
            async move {
                let Some(object) = ctx.objects.get(&key) else {
                    ctx.expectations.forget(&key);
                    return Ok(None);
                };
                let may_act = ctx.expectations.satisfied(&key);
                sync(state, ctx, Request { key, object, may_act }).await
            }
        })
        .await;
    }
}
