//! The endpoints of Services: for every Service with a selector, EndpointSlices listing its pods
//! (Kubernetes' EndpointSlice controller, [`core`]) and the legacy Endpoints object mirroring
//! them (Kubernetes' Endpoints controller, [`endpoints`]), both from one sync per Service over
//! the shared informers. [`members`] holds what both ask of a pod: is it an endpoint, at which
//! address, on which ports.
//!
//! Services without a selector are left alone: their slices and Endpoints are hand-made (or, for
//! `default/kubernetes`, the API server's) and served as they are. A deleted Service's slices go
//! with it through their ownerReference (the garbage collector); its Endpoints, which carry
//! none, are deleted here, as Kubernetes does.
//!
//! A pod change queues the Services in its namespace whose selector matches its old or new
//! labels, at once (no batching: a pod turning not-ready must leave the ready set now; the queue
//! already folds a burst of changes into one sync per Service). Slice creations and deletions are
//! expectations: until the informer shows them, a sync writes nothing (it would see too few
//! slices and create the same endpoints twice); updates carry the resourceVersion they were
//! computed from, so a stale cache costs a conflict, never a lost endpoint.

pub mod core;
pub mod endpoints;
pub mod members;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use tug_k8s::labels::ZONE_LABEL;

use self::core::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SliceAction};
use self::endpoints::EndpointsAction;
use crate::runtime::writes::{delete_uid, is_gone_or_changed};
use crate::runtime::{Cache, Expectations, Informer, Key, Queue, api_message};

/// The component name of the loop's log lines.
const COMPONENT: &str = "endpointslice-controller";
/// How soon a Service whose Endpoints write met a newer object is synced again (the cache is
/// a moment behind).
const STALE_ENDPOINTS_RETRY: Duration = Duration::from_millis(100);

/// What the handlers keep so a change finds its Services without scanning every object.
#[derive(Debug, Default)]
struct Index {
    /// Namespace → its Services that have a selector.
    services: HashMap<String, HashSet<Key>>,
    /// Namespace → its pods.
    pods: HashMap<String, HashSet<Key>>,
    /// Service → the slices labelled as its own and managed here.
    slices: HashMap<Key, HashSet<Key>>,
}

impl Index {
    fn set<I: std::hash::Hash + Eq>(map: &mut HashMap<I, HashSet<Key>>, at: I, key: Key, present: bool) {
        if present {
            map.entry(at).or_default().insert(key);
        } else if let Some(set) = map.get_mut(&at) {
            set.remove(&key);
            if set.is_empty() {
                map.remove(&at);
            }
        }
    }
}

/// The Service a slice is labelled for, if it is managed here.
fn slice_service(slice: &EndpointSlice) -> Option<Key> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(core::CONTROLLER_NAME) {
        return None;
    }
    Some(Key::new(slice.metadata.namespace.as_deref().unwrap_or_default(), labels.get(SERVICE_NAME_LABEL)?))
}

/// The loop.
#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    services: Cache<Service>,
    pods: Cache<Pod>,
    slices: Cache<EndpointSlice>,
    endpoints: Cache<Endpoints>,
    nodes: Cache<Node>,
    queue: Queue,
    expectations: Expectations,
    index: Arc<Mutex<Index>>,
    max_per_slice: usize,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("endpointslice::Controller").field("queued", &self.queue.len()).finish()
    }
}

impl Controller {
    pub fn new(
        client: kube::Client,
        services: &mut Informer<Service>,
        pods: &mut Informer<Pod>,
        slices: &mut Informer<EndpointSlice>,
        endpoints: &mut Informer<Endpoints>,
        nodes: &Informer<Node>,
    ) -> Controller {
        let controller = Controller {
            client,
            services: services.cache(),
            pods: pods.cache(),
            slices: slices.cache(),
            endpoints: endpoints.cache(),
            nodes: nodes.cache(),
            queue: Queue::new(),
            expectations: Expectations::default(),
            index: Arc::default(),
            max_per_slice: core::MAX_ENDPOINTS_PER_SLICE,
        };
        let this = controller.clone();
        services.on_change(move |old, new| {
            let service = new.or(old).expect("a change has an object");
            let key = Key::of(service);
            let selects = new.and_then(members::selector).is_some();
            Index::set(&mut this.lock().services, key.namespace.clone(), key.clone(), selects);
            this.queue.add(key);
        });
        let this = controller.clone();
        pods.on_change(move |old, new| this.pod_changed(old, new));
        let this = controller.clone();
        slices.on_change(move |old, new| {
            for (slice, present) in [(old, false), (new, true)] {
                let Some(slice) = slice else { continue };
                let Some(service) = slice_service(slice) else { continue };
                Index::set(&mut this.lock().slices, service.clone(), Key::of(slice), present);
            }
            let Some(service) = new.or(old).and_then(slice_service) else { return };
            match (old, new) {
                (None, Some(_)) => this.expectations.creation_observed(&service),
                (Some(gone), None) => {
                    this.expectations.deletion_observed(&service, gone.metadata.uid.as_deref().unwrap_or_default())
                }
                _ => {}
            }
            // Someone else's change to our slice is undone; our own costs one sync that finds
            // nothing to do.
            this.queue.add(service);
        });
        let this = controller.clone();
        endpoints.on_change(move |old, new| {
            // Deleted by hand: made again.
            if let (Some(gone), None) = (old, new) {
                this.queue.add(Key::of(gone));
            }
        });
        controller
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pod_changed(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let pod = new.or(old).expect("a change has an object");
        let key = Key::of(pod);
        let relevant = match (old, new) {
            (Some(old), Some(new)) => {
                old.metadata.labels != new.metadata.labels || members::endpoint_facts_differ(old, new)
            }
            _ => true,
        };
        let services: Vec<Key> = {
            let mut index = self.lock();
            Index::set(&mut index.pods, key.namespace.clone(), key.clone(), new.is_some());
            if !relevant {
                return;
            }
            index.services.get(&key.namespace).into_iter().flatten().cloned().collect()
        };
        for service_key in services {
            let Some(service) = self.services.get(&service_key) else { continue };
            let Some(selector) = members::selector(&service) else { continue };
            let selected =
                |p: Option<&Pod>| p.is_some_and(|p| p.metadata.labels.as_ref().is_some_and(|l| selector.matches(l)));
            if selected(old) || selected(new) {
                self.queue.add(service_key);
            }
        }
    }

    pub async fn run(self, workers: usize) {
        self.services.wait_synced().await;
        self.pods.wait_synced().await;
        self.slices.wait_synced().await;
        self.endpoints.wait_synced().await;
        self.nodes.wait_synced().await;
        let queue = self.queue.clone();
        crate::runtime::run_workers(queue, workers, COMPONENT, move |key| {
            let this = self.clone();
            async move { this.sync(&key).await }
        })
        .await;
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(service) = self.services.get(key) else {
            self.expectations.forget(key);
            return self.delete_endpoints(key).await;
        };
        let Some(selector) = members::selector(&service) else { return Ok(None) };
        // Read before the slices' cache, so a slice event landing in between cannot let a stale
        // view act.
        let may_act = self.expectations.satisfied(key);
        let (pod_keys, slice_keys) = {
            let index = self.lock();
            let pods: Vec<Key> = index.pods.get(&key.namespace).into_iter().flatten().cloned().collect();
            let slices: Vec<Key> = index.slices.get(key).into_iter().flatten().cloned().collect();
            (pods, slices)
        };
        let pods: Vec<_> = pod_keys
            .iter()
            .filter_map(|k| self.pods.get(k))
            .filter(|p| p.metadata.labels.as_ref().is_some_and(|l| selector.matches(l)))
            .collect();
        let slices: Vec<_> = slice_keys.iter().filter_map(|k| self.slices.get(k)).collect();
        let mut zones = HashMap::new();
        for node in pods.iter().filter_map(|p| p.spec.as_ref()?.node_name.as_deref()) {
            if !zones.contains_key(node)
                && let Some(n) = self.nodes.get(&Key::new("", node))
            {
                let zone = n.metadata.labels.as_ref().and_then(|l| l.get(ZONE_LABEL)).filter(|z| !z.is_empty());
                zones.insert(node.to_string(), zone.cloned());
            }
        }
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let observed = core::Observed {
            service: &service,
            pods: pod_refs.clone(),
            slices: slices.iter().map(|s| s.as_ref()).collect(),
            zones: &zones,
            max_per_slice: self.max_per_slice,
        };
        let plan = core::reconcile(&observed);
        if may_act {
            self.write_slices(key, plan.actions).await?;
        }
        let current = self.endpoints.get(key);
        let legacy = endpoints::reconcile(&service, &pod_refs, current.as_deref());
        let retry = self.write_endpoints(key, legacy).await?;
        Ok([plan.requeue_after, retry].into_iter().flatten().min())
    }

    async fn write_slices(&self, key: &Key, actions: Vec<SliceAction>) -> Result<(), kube::Error> {
        let creations = actions.iter().filter(|a| matches!(a, SliceAction::Create(_))).count();
        let deletions = actions.iter().filter_map(|a| match a {
            SliceAction::Delete { uid, .. } => Some(uid.clone()),
            _ => None,
        });
        self.expectations.expect(key, creations, deletions);
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut first_error = None;
        for action in actions {
            let result = match &action {
                SliceAction::Create(slice) => {
                    let created = api.create(&PostParams::default(), slice).await.map(drop);
                    if created.is_err() {
                        // Never to be seen.
                        self.expectations.creation_observed(key);
                    }
                    created
                }
                SliceAction::Update(slice) => {
                    let name = slice.metadata.name.as_deref().unwrap_or_default();
                    api.replace(name, &PostParams::default(), slice).await.map(drop)
                }
                SliceAction::Delete { name, uid } => {
                    let deleted = api.delete(name, &delete_uid(uid)).await.map(drop);
                    if deleted.is_err() {
                        self.expectations.deletion_observed(key, uid);
                    }
                    deleted
                }
            };
            match result {
                Ok(()) => {}
                // The watch brings the newer state, which queues the Service again.
                Err(e) if is_gone_or_changed(&e) => {}
                Err(e) => {
                    tracing::warn!(service = %key, error = %api_message(&e), "cannot write an EndpointSlice");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes the Endpoints; asks to run again soon when the cached copy it was computed from
    /// was stale (only our own writes change it, and its watch events do not queue the Service).
    async fn write_endpoints(&self, key: &Key, action: EndpointsAction) -> Result<Option<Duration>, kube::Error> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let result = match action {
            EndpointsAction::Nothing => return Ok(None),
            EndpointsAction::Create(object) => api.create(&PostParams::default(), &object).await.map(drop),
            EndpointsAction::Update(object) => api.replace(&key.name, &PostParams::default(), &object).await.map(drop),
        };
        match result {
            Ok(()) => Ok(None),
            Err(e) if is_gone_or_changed(&e) => Ok(Some(STALE_ENDPOINTS_RETRY)),
            Err(e) => {
                tracing::warn!(service = %key, error = %api_message(&e), "cannot write the Endpoints");
                Err(e)
            }
        }
    }

    async fn delete_endpoints(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(current) = self.endpoints.get(key) else { return Ok(None) };
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let params = current.metadata.uid.as_deref().map(delete_uid).unwrap_or_else(DeleteParams::default);
        match api.delete(&key.name, &params).await {
            Ok(_) => Ok(None),
            Err(e) if is_gone_or_changed(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
