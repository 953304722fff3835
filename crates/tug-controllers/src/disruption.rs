//! The disruption controller: keeps each PodDisruptionBudget's status (healthy pods, how many
//! may be disrupted now), which the API server's eviction subresource reads — so `kubectl
//! drain` waits instead of taking down more pods than the budget allows.
//!
//! [`budget_status`] is the pure core, as Kubernetes' `getExpectedPodCount` and
//! `updatePdbStatus`: `minAvailable` as a number counts the selected pods; as a percentage, or
//! `maxUnavailable`, counts the replicas their controllers ask for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use tug_k8s::intstr;

use crate::pods::{self, is_ready};
use crate::runtime::{Cache, Informer, Key, Queue};

/// An eviction recorded in `disruptedPods` counts as done for this long, unless the pod is gone
/// sooner (Kubernetes' DeletionTimeout).
const DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);

/// The budget's status, given the pods it selects and the replicas their controllers want
/// (`None` when some pod's controller is unknown: then only a numeric minAvailable works).
pub fn budget_status(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    controller_replicas: Option<i32>,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let spec = pdb.spec.clone().unwrap_or_default();
    let previous = pdb.status.clone().unwrap_or_default();
    // Evictions not yet visible as deletions still count as disruptions.
    let disrupted: BTreeMap<String, Time> = previous
        .disrupted_pods
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, at)| {
            let pod = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name.as_str()));
            let expired = at.0 + jiff::SignedDuration::try_from(DISRUPTION_TIMEOUT).unwrap_or_default() < now;
            pod.is_some_and(|p| !pods::is_deleting(&p.metadata)) && !expired
        })
        .collect();
    let healthy = pods
        .iter()
        .filter(|p| !pods::is_deleting(&p.metadata) && is_ready(p))
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .count();
    let current_healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
    let selected = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let (expected, desired) = match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(n)), _) => (selected, *n),
        (Some(percent), _) => {
            let expected = controller_replicas.unwrap_or(selected);
            (expected, intstr::scaled_value(percent, expected, true).unwrap_or(0))
        }
        (None, Some(max)) => {
            let expected = controller_replicas.unwrap_or(selected);
            (expected, (expected - intstr::scaled_value(max, expected, true).unwrap_or(0)).max(0))
        }
        (None, None) => (selected, 0),
    };
    let allowed = (current_healthy - desired).max(0);
    let (status, reason, message) =
        if allowed > 0 { ("True", "SufficientPods", "") } else { ("False", "InsufficientPods", "") };
    let since = previous
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed" && c.status == status)
        .map(|c| c.last_transition_time.clone());
    PodDisruptionBudgetStatus {
        observed_generation: pdb.metadata.generation,
        disrupted_pods: if disrupted.is_empty() { None } else { Some(disrupted) },
        disruptions_allowed: allowed,
        current_healthy,
        desired_healthy: desired,
        expected_pods: expected,
        conditions: Some(vec![Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: pdb.metadata.generation,
            last_transition_time: since.unwrap_or(Time(now)),
        }]),
    }
}

#[derive(Clone)]
pub struct Controller {
    client: kube::Client,
    budgets: Cache<PodDisruptionBudget>,
    pods: Cache<Pod>,
    sets: Cache<ReplicaSet>,
    deployments: Cache<Deployment>,
    statefulsets: Cache<StatefulSet>,
    queue: Queue,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("disruption::Controller").field("queued", &self.queue.len()).finish()
    }
}

impl Controller {
    pub fn new(
        client: kube::Client,
        budgets: &mut Informer<PodDisruptionBudget>,
        pods: &mut Informer<Pod>,
        sets: &Informer<ReplicaSet>,
        deployments: &Informer<Deployment>,
        statefulsets: &Informer<StatefulSet>,
    ) -> Controller {
        let controller = Controller {
            client,
            budgets: budgets.cache(),
            pods: pods.cache(),
            sets: sets.cache(),
            deployments: deployments.cache(),
            statefulsets: statefulsets.cache(),
            queue: Queue::new(),
        };
        let queue = controller.queue.clone();
        budgets.on_change(move |_, new| {
            if let Some(pdb) = new {
                queue.add(Key::of(pdb));
            }
        });
        let this = controller.clone();
        pods.on_change(move |old, new| {
            // Budgets are few: look at the ones of the pod's namespace that select it.
            for pod in [old, new].into_iter().flatten() {
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                for pdb in this.budgets.list_namespace(ns) {
                    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                    if pods::selects(selector, pod.metadata.labels.as_ref()) {
                        this.queue.add(Key::of(pdb.as_ref()));
                    }
                }
            }
        });
        controller
    }

    pub async fn run(self, workers: usize) {
        self.budgets.wait_synced().await;
        self.pods.wait_synced().await;
        let queue = self.queue.clone();
        crate::runtime::run_workers(queue, workers, "disruption", move |key| {
            let this = self.clone();
            async move { this.sync(&key).await }
        })
        .await;
    }

    /// The replicas the controllers of these pods want, or `None` if a pod has none we know.
    fn controller_replicas(&self, pods: &[Arc<Pod>]) -> Option<i32> {
        let mut seen = std::collections::BTreeSet::new();
        let mut total = 0;
        for pod in pods {
            let owner = pods::controller_of(&pod.metadata)?;
            if !seen.insert(owner.uid.clone()) {
                continue;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let key = Key::new(ns, &owner.name);
            total += match owner.kind.as_str() {
                "ReplicaSet" => {
                    let set = self.sets.get(&key)?;
                    // A Deployment's set counts the Deployment's replicas (once).
                    match pods::controller_of(&set.metadata).filter(|o| o.kind == "Deployment") {
                        Some(d) if !seen.insert(d.uid.clone()) => 0,
                        Some(d) => self.deployments.get(&Key::new(ns, &d.name))?.spec.as_ref()?.replicas.unwrap_or(1),
                        None => set.spec.as_ref()?.replicas.unwrap_or(1),
                    }
                }
                "StatefulSet" => self.statefulsets.get(&key)?.spec.as_ref()?.replicas.unwrap_or(1),
                _ => return None,
            };
        }
        Some(total)
    }

    async fn sync(&self, key: &Key) -> Result<Option<Duration>, kube::Error> {
        let Some(pdb) = self.budgets.get(key) else { return Ok(None) };
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let selected: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(&key.namespace)
            .into_iter()
            .filter(|p| pods::selects(selector, p.metadata.labels.as_ref()))
            .collect();
        let replicas = self.controller_replicas(&selected);
        let refs: Vec<&Pod> = selected.iter().map(Arc::as_ref).collect();
        let status = budget_status(&pdb, &refs, replicas, jiff::Timestamp::now());
        // Recorded evictions expire by time alone.
        let requeue = status.disrupted_pods.as_ref().map(|_| DISRUPTION_TIMEOUT);
        if pdb.status.as_ref() != Some(&status) {
            let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &key.namespace);
            let mut updated = (*pdb).clone();
            updated.status = Some(status);
            match api.replace_status(&key.name, &PostParams::default(), &updated).await {
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Some(Duration::from_millis(50))),
                other => other.map(drop)?,
            }
        }
        Ok(requeue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta { generation: Some(1), ..ObjectMeta::default() },
            spec: Some(PodDisruptionBudgetSpec { min_available: min, max_unavailable: max, ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn disruptions_allowed_follow_the_budget() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let (a, b, c, d) = (pod("a", true), pod("b", true), pod("c", true), pod("d", false));
        let pods = [&a, &b, &c, &d];
        let cases = [
            (budget(Some(IntOrString::Int(2)), None), None, (3, 2, 1, 4)),
            (budget(Some(IntOrString::Int(3)), None), None, (3, 3, 0, 4)),
            (budget(None, Some(IntOrString::Int(1))), Some(4), (3, 3, 0, 4)),
            (budget(None, Some(IntOrString::Int(2))), Some(4), (3, 2, 1, 4)),
            (budget(Some(IntOrString::String("50%".into())), None), Some(4), (3, 2, 1, 4)),
        ];
        for (pdb, replicas, (healthy, desired, allowed, expected)) in cases {
            let s = budget_status(&pdb, &pods, replicas, now);
            assert_eq!(
                (s.current_healthy, s.desired_healthy, s.disruptions_allowed, s.expected_pods),
                (healthy, desired, allowed, expected),
                "{:?}",
                pdb.spec
            );
        }
    }

    #[test]
    fn a_recorded_eviction_counts_until_the_pod_is_deleting() {
        let now = jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(10);
        let (a, b) = (pod("a", true), pod("b", true));
        let mut pdb = budget(Some(IntOrString::Int(1)), None);
        pdb.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([("a".to_string(), Time(jiff::Timestamp::UNIX_EPOCH))])),
            ..Default::default()
        });
        let s = budget_status(&pdb, &[&a, &b], None, now);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (1, 0), "a is as good as gone");
    }
}
