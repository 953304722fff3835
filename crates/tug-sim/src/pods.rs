//! The pods of a sim's nodes: one watch over every bound pod, filtered by our node names; a
//! bound pod becomes Running and Ready after `ready_delay`, a running pod whose status someone
//! else changed (marked not ready while its node was silent) is written Running and Ready again
//! at once, a pod being deleted is finished (deleted with grace 0, as a kubelet does once its
//! containers stopped) after `delete_delay`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::{AbortHandle, JoinSet};

use super::objects::{HollowNode, running_status};
use super::tracker::{Action, PodView, Tracker};
use super::{Shared, api_code, write};

/// Every bound pod in the cluster, resuming with backoff when the watch breaks.
pub fn watch_bound_pods(client: &kube::Client) -> impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> {
    let pods: Api<Pod> = Api::all(client.clone());
    watcher(pods, watcher::Config::default().fields("spec.nodeName!=")).default_backoff()
}

/// How a pod task ended.
#[derive(Debug)]
pub struct Outcome {
    uid: String,
    /// The pod could not be started and is untracked, so a later event retries it.
    gave_up: bool,
}

/// The pod side of a sim: the tracker plus the tasks carrying out its actions.
pub struct PodLoop {
    shared: Arc<Shared>,
    nodes: Vec<HollowNode>,
    tracker: Tracker,
    tasks: JoinSet<Outcome>,
    /// The running task of each pod, so a deletion can cancel a pending start.
    handles: HashMap<String, AbortHandle>,
    /// Pods of a (re)list in progress: applied together once it is complete.
    relisting: Option<Vec<Pod>>,
}

impl PodLoop {
    pub fn new(shared: Arc<Shared>, nodes: Vec<HollowNode>) -> PodLoop {
        let tracker = Tracker::new(nodes.iter().map(|n| (n.name.clone(), n.pod_network)));
        PodLoop { shared, nodes, tracker, tasks: JoinSet::new(), handles: HashMap::new(), relisting: None }
    }

    /// Applies one watch event.
    pub fn handle(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => {
                self.tracker.relist_started();
                self.relisting = Some(Vec::new());
            }
            watcher::Event::InitApply(pod) => match &mut self.relisting {
                Some(buffer) => buffer.push(pod),
                None => self.applied(pod),
            },
            watcher::Event::InitDone => {
                // Running pods first, so they keep their IPs before new pods are handed any.
                let mut listed = self.relisting.take().unwrap_or_default();
                listed.sort_by_key(|pod| PodView::of(pod).is_none_or(|v| v.running_ip.is_none()));
                for pod in listed {
                    self.applied(pod);
                }
                for uid in self.tracker.relist_done() {
                    self.cancel(&uid);
                }
                tracing::debug!(pods = self.tracker.len(), "pods of hollow nodes listed");
            }
            watcher::Event::Apply(pod) => self.applied(pod),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref()
                    && self.tracker.forget(uid)
                {
                    self.cancel(uid);
                }
            }
        }
    }

    fn applied(&mut self, pod: Pod) {
        let Some(view) = PodView::of(&pod) else {
            return;
        };
        match self.tracker.applied(&view) {
            Action::Nothing => {}
            Action::Start { node, ip } => {
                let node = self.nodes[node].clone();
                let delay = self.shared.options.ready_delay;
                let handle = self.tasks.spawn(start(self.shared.clone(), pod, node, ip, Timestamp::now(), delay));
                self.handles.insert(view.uid, handle);
            }
            Action::Reassert { node, ip } => {
                let node = self.nodes[node].clone();
                let started =
                    pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map_or_else(Timestamp::now, |t| t.0);
                let handle = self.tasks.spawn(start(self.shared.clone(), pod, node, ip, started, Duration::ZERO));
                self.handles.insert(view.uid, handle);
            }
            Action::Finish => {
                // A start still waiting would only race the deletion.
                self.cancel(&view.uid);
                let handle = self.tasks.spawn(finish(self.shared.clone(), pod));
                self.handles.insert(view.uid, handle);
            }
            Action::NoAddress { node } => {
                tracing::warn!(node = %self.nodes[node].name, pod = ?pod.metadata.name, "no pod IP left on node");
            }
        }
    }

    fn cancel(&mut self, uid: &str) {
        if let Some(handle) = self.handles.remove(uid) {
            handle.abort();
        }
    }

    /// The next finished pod task; `None` at once when there are none (the caller's select
    /// then waits on its other branches).
    pub async fn next_outcome(&mut self) -> Option<Outcome> {
        loop {
            match self.tasks.join_next().await? {
                Ok(outcome) => return Some(outcome),
                // Aborted tasks (cancelled starts) report nothing.
                Err(e) if e.is_cancelled() => continue,
                Err(e) => {
                    tracing::error!(error = %e, "a pod task failed");
                    continue;
                }
            }
        }
    }

    pub fn finished(&mut self, outcome: Outcome) {
        self.handles.remove(&outcome.uid);
        if outcome.gave_up {
            self.tracker.forget(&outcome.uid);
        }
    }

    /// Cancels every pending pod write.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
        self.handles.clear();
    }
}

fn pod_api(shared: &Shared, pod: &Pod) -> Api<Pod> {
    Api::namespaced(shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"))
}

/// Waits `delay` (the pod "starting"), then writes the status of a running, ready pod that
/// started at `started`.
async fn start(
    shared: Arc<Shared>,
    pod: Pod,
    node: HollowNode,
    ip: Ipv4Addr,
    started: Timestamp,
    delay: Duration,
) -> Outcome {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let patch = Patch::Strategic(running_status(&pod, &node, ip, started, Timestamp::now()));
    let (pods, params) = (pod_api(&shared, &pod), PatchParams::default());
    let result = write(&shared, || pods.patch_status(&name, &params, &patch)).await;
    let gave_up = match result {
        Ok(_) => false,
        // Deleted meanwhile: the watch says so too.
        Err(e) if api_code(&e) == Some(404) => false,
        Err(e) => {
            tracing::warn!(pod = %name, node = %node.name, error = %e, "could not mark pod running");
            true
        }
    };
    Outcome { uid, gave_up }
}

/// Waits `delete_delay`, then deletes the pod for good (only this pod: the uid is a precondition).
async fn finish(shared: Arc<Shared>, pod: Pod) -> Outcome {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    tokio::time::sleep(shared.options.delete_delay).await;
    let pods = pod_api(&shared, &pod);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match write(&shared, || pods.delete(&name, &params)).await {
        Ok(_) => {}
        // Gone already, or a new pod of the same name: nothing of ours left to finish.
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "could not finish deleting pod"),
    }
    Outcome { uid, gave_up: false }
}
