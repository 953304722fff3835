//! The pure core of the StatefulSet controller (apps/v1), as Kubernetes'
//! `pkg/controller/statefulset` behaves: pods with stable names `<set>-<ordinal>`, a stable
//! network identity (hostname, subdomain) and stable storage (one PersistentVolumeClaim per
//! claim template and ordinal, kept across pod restarts and, by default, across scale-down and
//! deletion of the set).
//!
//! One [`reconcile`] call looks at the set, its pods and its claims and returns a [`Plan`]: the
//! writes to make now, the complete new status and the events to record. As in Kubernetes:
//!
//! - `OrderedReady` (the default) creates the lowest missing ordinal only when every lower one is
//!   Running, Ready and available, at most one pod per call, and scales down from the highest
//!   ordinal, one at a time; `Parallel` creates and deletes all at once.
//! - A pod that exists (even while being deleted) occupies its name: it is never replaced until
//!   it is gone, so two pods of the same identity never run at once.
//! - `RollingUpdate` deletes, from the highest ordinal down to the partition, one pod of an older
//!   revision at a time once every pod above it is available; `OnDelete` never deletes for
//!   updates. The deleted pod comes back at the update revision.
//!
//! Revisions: Kubernetes keeps ControllerRevision objects; here a revision is named
//! `<set>-<hash of the pod template and collisionCount>` (see [`update_revision`]) and the
//! current revision is read back from `status.currentRevision`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::events::Note;
use crate::pods;

/// The label carrying the pod's own name, so a Service can select one replica.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label carrying the revision the pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// How long to wait before looking again when a claim blocks a pod's creation (a claim being
/// deleted, or still owned by a pod of the same name that is gone).
const CLAIM_RETRY: Duration = Duration::from_secs(5);

/// Everything the controller observed for one StatefulSet.
#[derive(Debug)]
pub struct Observed<'a> {
    pub set: &'a StatefulSet,
    /// Pods whose controller ownerReference is the set, including failed and deleting ones.
    pub pods: Vec<&'a Pod>,
    /// The PersistentVolumeClaims of the set's namespace named `<template>-<set>-<ordinal>`
    /// (others are ignored).
    pub claims: Vec<&'a PersistentVolumeClaim>,
    /// The pod template of `status.currentRevision` when the loop knows it (from its
    /// ControllerRevision). Pods recreated below the partition of a rolling update are made from
    /// it; without it they are made from the current template.
    pub current_template: Option<&'a PodTemplateSpec>,
    pub now: Timestamp,
}

/// One write, in the order they must be carried out: a pod's claims are created before it.
#[derive(Debug, Clone, PartialEq)]
// Plans are short-lived and few; the full objects keep the shape every core shares.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// A claim for a pod's volume (ignore AlreadyExists: claims outlive pods).
    CreateClaim(PersistentVolumeClaim),
    /// The claim with its ownerReferences changed to follow the retention policy (full object,
    /// resourceVersion kept for optimistic concurrency).
    UpdateClaim(PersistentVolumeClaim),
    CreatePod(Pod),
    /// Delete with a uid precondition.
    DeletePod {
        name: String,
        uid: String,
    },
}

/// What to do now for one StatefulSet: the actions in order, one event per action.
pub type Plan = crate::runtime::Plan<Action, StatefulSetStatus>;

/// The name of the revision the set's current template makes: `<set>-<hash>`.
pub fn update_revision(set: &StatefulSet) -> String {
    let collisions = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    // Always hash with a count (0 when absent) so the name does not change once the status
    // records collisionCount: 0.
    format!(
        "{}-{}",
        set.metadata.name.as_deref().unwrap_or_default(),
        pods::template_hash(&set.spec_template(), Some(collisions))
    )
}

/// The ordinal of a pod named `<set>-<ordinal>` (canonical decimal), else `None`.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let digits = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    let ordinal: i32 = digits.parse().ok()?;
    (ordinal >= 0 && digits == ordinal.to_string()).then_some(ordinal)
}

/// The name of the claim for `template` at `ordinal`: `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set_name: &str, ordinal: i32) -> String {
    format!("{template}-{set_name}-{ordinal}")
}

/// Decides what to do for one StatefulSet; see the module documentation.
pub fn reconcile(observed: &Observed) -> Plan {
    let view = SetView::new(observed);
    let (slots, condemned) = view.partition(&observed.pods);
    let members = slots.iter().filter_map(|s| s.pod).chain(condemned.iter().map(|s| s.1));
    let mut status = view.status(members);
    let mut out = Out::default();
    for pod in observed.pods.iter().filter(|p| view.ordinal(p).is_some()) {
        view.wake_when_available(pod, &mut out);
    }
    // A set being deleted only has its status kept up to date.
    if !pods::is_deleting(&observed.set.metadata) {
        let blocked = view.process_replicas(&slots, &mut out) || view.process_condemned(&condemned, &mut out);
        if !blocked && !view.on_delete {
            view.roll(&slots, &mut out, &mut status);
        }
    }
    view.complete_rolling_update(&mut status);
    Plan { actions: out.actions, status, events: out.events, requeue_after: out.requeue_after }
}

/// Helpers on the StatefulSet object.
trait StatefulSetExt {
    fn spec_template(&self) -> PodTemplateSpec;
}

impl StatefulSetExt for StatefulSet {
    fn spec_template(&self) -> PodTemplateSpec {
        self.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
    }
}

/// What happens to claims when pods are scaled away or the set is deleted (default Retain).
#[derive(Debug, Clone, Copy)]
struct RetentionPolicy {
    delete_when_scaled: bool,
    delete_when_deleted: bool,
}

/// One ordinal of the desired range and the pod holding it, if any.
#[derive(Debug, Clone, Copy)]
struct Slot<'a> {
    ordinal: i32,
    pod: Option<&'a Pod>,
}

/// The writes and events accumulated by one reconcile.
#[derive(Debug, Default)]
struct Out {
    actions: Vec<Action>,
    events: Vec<Note>,
    requeue_after: Option<Duration>,
}

impl Out {
    fn wake_in(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

/// The set's spec with Kubernetes' defaults applied, and what was observed alongside it.
struct SetView<'a> {
    set: &'a StatefulSet,
    name: &'a str,
    namespace: &'a str,
    start: i32,
    replicas: i32,
    parallel: bool,
    on_delete: bool,
    partition: i32,
    min_ready_seconds: i32,
    policy: RetentionPolicy,
    service_name: Option<&'a str>,
    claim_templates: &'a [PersistentVolumeClaim],
    claims: BTreeMap<&'a str, &'a PersistentVolumeClaim>,
    template: PodTemplateSpec,
    current_template: Option<&'a PodTemplateSpec>,
    update_revision: String,
    current_revision: String,
    collision_count: i32,
    now: Timestamp,
}

impl<'a> SetView<'a> {
    fn new(observed: &Observed<'a>) -> SetView<'a> {
        let set = observed.set;
        let spec = set.spec.as_ref();
        let strategy = spec.and_then(|s| s.update_strategy.as_ref());
        let policy = spec.and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        let update_revision = update_revision(set);
        let current_revision = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| update_revision.clone());
        SetView {
            set,
            name: set.metadata.name.as_deref().unwrap_or_default(),
            namespace: set.metadata.namespace.as_deref().unwrap_or("default"),
            start: spec.and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0).max(0),
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1).max(0),
            parallel: spec.and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel"),
            on_delete: strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete"),
            partition: strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0).max(0),
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            policy: RetentionPolicy {
                delete_when_scaled: policy.and_then(|p| p.when_scaled.as_deref()) == Some("Delete"),
                delete_when_deleted: policy.and_then(|p| p.when_deleted.as_deref()) == Some("Delete"),
            },
            service_name: spec.and_then(|s| s.service_name.as_deref()).filter(|s| !s.is_empty()),
            claim_templates: spec.and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or_default(),
            claims: observed
                .claims
                .iter()
                .filter_map(|c| Some((c.metadata.name.as_deref()?, *c)))
                .collect::<BTreeMap<_, _>>(),
            template: set.spec_template(),
            current_template: observed.current_template,
            update_revision,
            current_revision,
            collision_count: set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0),
            now: observed.now,
        }
    }

    fn pod_name(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    fn ordinal(&self, pod: &Pod) -> Option<i32> {
        ordinal_of(self.name, pod.metadata.name.as_deref()?)
    }

    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start && i64::from(ordinal) < i64::from(self.start) + i64::from(self.replicas)
    }

    /// The desired ordinals with the pods holding them (ascending), and the pods outside the
    /// range, condemned (descending). Pods that are not named `<set>-<ordinal>` are ignored.
    fn partition(&self, observed: &[&'a Pod]) -> (Vec<Slot<'a>>, Vec<(i32, &'a Pod)>) {
        let mut by_ordinal: BTreeMap<i32, &'a Pod> = BTreeMap::new();
        for pod in observed {
            if let Some(ordinal) = self.ordinal(pod) {
                by_ordinal.entry(ordinal).or_insert(pod);
            }
        }
        let end = i64::from(self.start) + i64::from(self.replicas);
        let slots = (i64::from(self.start)..end)
            .filter_map(|o| i32::try_from(o).ok())
            .map(|ordinal| Slot { ordinal, pod: by_ordinal.get(&ordinal).copied() })
            .collect();
        let condemned = by_ordinal.into_iter().rev().filter(|(o, _)| !self.in_range(*o)).collect();
        (slots, condemned)
    }

    fn revision_of(pod: &Pod) -> &str {
        pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map_or("", String::as_str)
    }

    fn running_and_ready(pod: &Pod) -> bool {
        pods::phase(pod) == "Running" && pods::is_ready(pod)
    }

    fn running_and_available(&self, pod: &Pod) -> bool {
        Self::running_and_ready(pod) && pods::is_available(pod, self.min_ready_seconds, self.now)
    }

    /// Kubernetes' `isUnavailable`: missing, not healthy, being deleted or not yet available.
    fn is_unavailable(&self, pod: Option<&Pod>) -> bool {
        pod.is_none_or(|p| pods::is_deleting(&p.metadata) || !self.running_and_available(p))
    }

    /// Asks to be woken when a ready pod becomes available, which changes the status.
    fn wake_when_available(&self, pod: &Pod, out: &mut Out) {
        if !Self::running_and_ready(pod) || pods::is_available(pod, self.min_ready_seconds, self.now) {
            return;
        }
        if let Some(at) = pods::available_at(pod, self.min_ready_seconds) {
            let wait = at.duration_since(self.now).max(jiff::SignedDuration::ZERO);
            out.wake_in(Duration::try_from(wait).unwrap_or_default().max(Duration::from_millis(1)));
        }
    }

    /// The status counted from the pods that exist, as Kubernetes' `computeReplicaStatus`.
    fn status(&self, members: impl Iterator<Item = &'a Pod>) -> StatefulSetStatus {
        let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
        for pod in members {
            replicas += 1;
            if Self::running_and_ready(pod) {
                ready += 1;
                if self.running_and_available(pod) {
                    available += 1;
                }
            }
            if !pods::is_deleting(&pod.metadata) {
                let revision = Self::revision_of(pod);
                current += i32::from(revision == self.current_revision);
                updated += i32::from(revision == self.update_revision);
            }
        }
        StatefulSetStatus {
            observed_generation: self.set.metadata.generation,
            replicas,
            ready_replicas: nonzero(ready),
            available_replicas: Some(available),
            current_replicas: nonzero(current),
            updated_replicas: nonzero(updated),
            current_revision: Some(self.current_revision.clone()),
            update_revision: Some(self.update_revision.clone()),
            collision_count: Some(self.collision_count),
            conditions: self.set.status.as_ref().and_then(|s| s.conditions.clone()),
        }
    }

    /// Kubernetes' `completeRollingUpdate`: once every pod is updated and ready, the update
    /// revision becomes the current one.
    fn complete_rolling_update(&self, status: &mut StatefulSetStatus) {
        let updated = status.updated_replicas.unwrap_or(0);
        if !self.on_delete && updated == status.replicas && status.ready_replicas.unwrap_or(0) == status.replicas {
            status.current_replicas = nonzero(updated);
            status.current_revision = status.update_revision.clone();
        }
    }

    /// Brings every desired ordinal to a live pod. Returns true when ordered management must
    /// stop here for this round.
    fn process_replicas(&self, slots: &[Slot<'a>], out: &mut Out) -> bool {
        let monotonic = !self.parallel;
        for (index, slot) in slots.iter().enumerate() {
            let Some(pod) = slot.pod else {
                self.create_replica(slot.ordinal, index, out);
                if monotonic {
                    return true;
                }
                continue;
            };
            // Failed or Succeeded: delete it; it is recreated once it is gone.
            if pods::is_terminal(pod) {
                if !pods::is_deleting(&pod.metadata) {
                    self.delete_pod(pod, out);
                }
                if monotonic {
                    return true;
                }
                continue;
            }
            if matches!(pods::phase(pod), "Pending" | "") {
                self.create_missing_claims(slot.ordinal, out);
            }
            if monotonic
                && (pods::is_deleting(&pod.metadata)
                    || !Self::running_and_ready(pod)
                    || !self.running_and_available(pod))
            {
                return true;
            }
            self.fix_claim_owners(slot.ordinal, pod, out);
        }
        false
    }

    /// Removes the pods beyond the desired range, highest ordinal first.
    fn process_condemned(&self, condemned: &[(i32, &'a Pod)], out: &mut Out) -> bool {
        for (ordinal, pod) in condemned {
            self.fix_claim_owners(*ordinal, pod, out);
        }
        let monotonic = !self.parallel;
        // In ordered mode every desired pod is available here, so the first unhealthy pod is the
        // lowest unavailable condemned one: it may go even though it is not ready.
        let first_unhealthy = condemned.iter().rev().find(|(_, p)| self.is_unavailable(Some(p))).map(|(o, _)| *o);
        for (ordinal, pod) in condemned {
            if pods::is_deleting(&pod.metadata) {
                if monotonic {
                    return true;
                }
                continue;
            }
            if monotonic && first_unhealthy != Some(*ordinal) && !self.running_and_available(pod) {
                return true;
            }
            self.delete_pod(pod, out);
            if monotonic {
                return true;
            }
        }
        false
    }

    /// The rolling update: deletes the highest pod at or above the partition that is not at the
    /// update revision, once every pod above it is available. One pod at a time.
    fn roll(&self, slots: &[Slot<'a>], out: &mut Out, status: &mut StatefulSetStatus) {
        let partition = usize::try_from(self.partition).unwrap_or(usize::MAX);
        for slot in slots.iter().skip(partition).rev() {
            let Some(pod) = slot.pod else { return };
            if Self::revision_of(pod) != self.update_revision && !pods::is_deleting(&pod.metadata) {
                self.delete_pod(pod, out);
                status.current_replicas = nonzero(status.current_replicas.unwrap_or(0) - 1);
                return;
            }
            if self.is_unavailable(Some(pod)) {
                return;
            }
        }
    }

    /// Creates the pod for a missing ordinal, and its claims first, unless a claim blocks it.
    fn create_replica(&self, ordinal: i32, index: usize, out: &mut Out) {
        let pod_name = self.pod_name(ordinal);
        if self.claim_templates.iter().any(|t| self.claim_blocks(&t.metadata, ordinal, &pod_name)) {
            out.wake_in(CLAIM_RETRY);
            return;
        }
        self.create_missing_claims(ordinal, out);
        let below_partition = i64::try_from(index).unwrap_or(i64::MAX) < i64::from(self.partition);
        let (template, revision) = match self.current_template {
            Some(t) if !self.on_delete && below_partition && self.current_revision != self.update_revision => {
                (t, &self.current_revision)
            }
            _ => (&self.template, &self.update_revision),
        };
        let pod = self.new_pod(ordinal, template, revision);
        out.events.push(Note::normal(
            "SuccessfulCreate",
            format!("create Pod {pod_name} in StatefulSet {} successful", self.name),
        ));
        out.actions.push(Action::CreatePod(pod));
    }

    /// A claim being deleted, or one still owned by an earlier pod of the same name (scaled away
    /// with whenScaled: Delete and not yet collected), must go before the pod is made again.
    fn claim_blocks(&self, template: &ObjectMeta, ordinal: i32, pod_name: &str) -> bool {
        let name = claim_name(template.name.as_deref().unwrap_or_default(), self.name, ordinal);
        let Some(claim) = self.claims.get(name.as_str()) else { return false };
        pods::is_deleting(&claim.metadata)
            || (self.policy.delete_when_scaled
                && claim.metadata.owner_references.iter().flatten().any(|r| r.kind == "Pod" && r.name == pod_name))
    }

    fn create_missing_claims(&self, ordinal: i32, out: &mut Out) {
        let pod_name = self.pod_name(ordinal);
        for template in self.claim_templates {
            let name = claim_name(template.metadata.name.as_deref().unwrap_or_default(), self.name, ordinal);
            if self.claims.contains_key(name.as_str()) {
                continue;
            }
            out.events.push(Note::normal(
                "SuccessfulCreate",
                format!("create Claim {name} Pod {pod_name} in StatefulSet {} success", self.name),
            ));
            out.actions.push(Action::CreateClaim(self.new_claim(template, name, ordinal)));
        }
    }

    /// A claim from a template: named for the ordinal, labelled with the set's selector, owned
    /// as the retention policy says.
    fn new_claim(&self, template: &PersistentVolumeClaim, name: String, ordinal: i32) -> PersistentVolumeClaim {
        let mut labels = template.metadata.labels.clone().unwrap_or_default();
        let selector = self.set.spec.as_ref().and_then(|s| s.selector.match_labels.as_ref());
        labels.extend(selector.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        let owners: Vec<OwnerReference> =
            self.want_set_owner(ordinal).then(|| self.set_owner_ref()).into_iter().collect();
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.to_string()),
                labels: Some(labels),
                annotations: template.metadata.annotations.clone(),
                finalizers: template.metadata.finalizers.clone(),
                owner_references: (!owners.is_empty()).then_some(owners),
                ..ObjectMeta::default()
            },
            spec: template.spec.clone(),
            status: None,
        }
    }

    /// Kubernetes' `updateClaimOwnerRefForSetAndPod`: with whenDeleted: Delete the set owns the
    /// claims of its desired pods; with whenScaled: Delete a pod scaled away owns its claims so
    /// they go with it. Other owners are left alone.
    fn fix_claim_owners(&self, ordinal: i32, pod: &Pod, out: &mut Out) {
        let set_uid = self.set.metadata.uid.as_deref().unwrap_or_default();
        let Some(pod_uid) = pod.metadata.uid.as_deref() else { return };
        let want_set = self.want_set_owner(ordinal);
        let want_pod = self.policy.delete_when_scaled && !self.in_range(ordinal);
        for template in self.claim_templates {
            let name = claim_name(template.metadata.name.as_deref().unwrap_or_default(), self.name, ordinal);
            let Some(claim) = self.claims.get(name.as_str()) else { continue };
            if pods::is_deleting(&claim.metadata) {
                continue;
            }
            let refs = claim.metadata.owner_references.clone().unwrap_or_default();
            let has = |uid: &str| !uid.is_empty() && refs.iter().any(|r| r.uid == uid);
            if has(set_uid) == want_set && has(pod_uid) == want_pod {
                continue;
            }
            let mut new_refs: Vec<OwnerReference> =
                refs.iter().filter(|r| r.uid != set_uid && r.uid != pod_uid).cloned().collect();
            if want_set {
                new_refs.push(self.set_owner_ref());
            }
            if want_pod {
                new_refs.push(OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    uid: pod_uid.to_string(),
                    ..OwnerReference::default()
                });
            }
            let mut updated = (*claim).clone();
            updated.metadata.owner_references = (!new_refs.is_empty()).then_some(new_refs);
            out.events.push(Note::normal(
                "SuccessfulUpdate",
                format!(
                    "update Claim {name} Pod {} in StatefulSet {} success",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    self.name
                ),
            ));
            out.actions.push(Action::UpdateClaim(updated));
        }
    }

    /// Whether the set owns the claims at `ordinal` (whenDeleted: Delete, unless the pod is
    /// scaled away under whenScaled: Delete, when the pod owns them instead).
    fn want_set_owner(&self, ordinal: i32) -> bool {
        self.policy.delete_when_deleted && (self.in_range(ordinal) || !self.policy.delete_when_scaled)
    }

    /// A plain (not controller) reference, as the claim is not managed by the set.
    fn set_owner_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: self.name.to_string(),
            uid: self.set.metadata.uid.clone().unwrap_or_default(),
            ..OwnerReference::default()
        }
    }

    /// The pod for `ordinal`: the template plus its identity, labels and claim volumes.
    fn new_pod(&self, ordinal: i32, template: &PodTemplateSpec, revision: &str) -> Pod {
        let name = self.pod_name(ordinal);
        let owner = pods::controller_ref("apps/v1", "StatefulSet", &self.set.metadata);
        let mut pod = pods::pod_from_template(template, self.namespace, owner, Some(name.clone()), "");
        let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(POD_NAME_LABEL.into(), name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        labels.insert(REVISION_LABEL.into(), revision.to_string());
        let spec = pod.spec.get_or_insert_with(Default::default);
        spec.hostname = Some(name);
        spec.subdomain = self.service_name.map(str::to_string);
        // Each claim template becomes a volume of the same name, replacing any volume so named.
        let mut volumes: Vec<Volume> = self
            .claim_templates
            .iter()
            .map(|t| {
                let template_name = t.metadata.name.clone().unwrap_or_default();
                Volume {
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim_name(&template_name, self.name, ordinal),
                        read_only: None,
                    }),
                    name: template_name,
                    ..Volume::default()
                }
            })
            .collect();
        let claimed: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
        volumes.extend(spec.volumes.take().unwrap_or_default().into_iter().filter(|v| !claimed.contains(&v.name)));
        spec.volumes = (!volumes.is_empty()).then_some(volumes);
        pod
    }

    fn delete_pod(&self, pod: &Pod, out: &mut Out) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        out.events.push(Note::normal(
            "SuccessfulDelete",
            format!("delete Pod {name} in StatefulSet {} successful", self.name),
        ));
        out.actions.push(Action::DeletePod { name, uid: pod.metadata.uid.clone().unwrap_or_default() });
    }
}

/// Kubernetes omits zero counts from the status (`omitempty`).
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
        StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some(labels(&[("app", "web")])), ..ObjectMeta::default() }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Container::default() }],
                ..PodSpec::default()
            }),
        }
    }

    fn set(replicas: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("set-uid".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector { match_labels: Some(labels(&[("app", "web")])), match_expressions: None },
                service_name: Some("nginx".into()),
                template: template("nginx:1"),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    fn with_claims(mut s: StatefulSet, when_scaled: &str, when_deleted: &str) -> StatefulSet {
        let spec = s.spec.as_mut().unwrap();
        spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("www".into()), ..ObjectMeta::default() },
            ..PersistentVolumeClaim::default()
        }]);
        spec.persistent_volume_claim_retention_policy = Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_scaled: Some(when_scaled.into()),
            when_deleted: Some(when_deleted.into()),
        });
        s
    }

    /// A pod of `s` at `ordinal` in `phase`, Ready since `ready_at` if given, at `revision`.
    fn pod(s: &StatefulSet, ordinal: i32, phase: &str, ready_at: Option<i64>, revision: &str) -> Pod {
        let name = format!("web-{ordinal}");
        Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(&[("app", "web"), (REVISION_LABEL, revision)])),
                owner_references: Some(vec![pods::controller_ref("apps/v1", "StatefulSet", &s.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(t))),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    fn ready(s: &StatefulSet, ordinal: i32) -> Pod {
        pod(s, ordinal, "Running", Some(0), &update_revision(s))
    }

    fn deleting(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(at(50)));
        p
    }

    fn run(s: &StatefulSet, pods: &[Pod]) -> Plan {
        run_with(s, pods, &[], 100)
    }

    fn run_with(s: &StatefulSet, pods: &[Pod], claims: &[PersistentVolumeClaim], now: i64) -> Plan {
        reconcile(&Observed {
            set: s,
            pods: pods.iter().collect(),
            claims: claims.iter().collect(),
            current_template: None,
            now: at(now),
        })
    }

    /// A short description of each action: "+pod web-0", "-pod web-1", "+claim www-web-0", ...
    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::CreatePod(p) => format!("+pod {}", p.metadata.name.as_deref().unwrap()),
                Action::DeletePod { name, .. } => format!("-pod {name}"),
                Action::CreateClaim(c) => format!("+claim {}", c.metadata.name.as_deref().unwrap()),
                Action::UpdateClaim(c) => format!("~claim {}", c.metadata.name.as_deref().unwrap()),
            })
            .collect()
    }

    #[test]
    fn ordinals_are_parsed_from_canonical_names_only() {
        for (name, want) in [
            ("web-0", Some(0)),
            ("web-12", Some(12)),
            ("web-01", None),
            ("web-", None),
            ("web-x", None),
            ("webx-1", None),
            ("web-db-1", None),
            ("web--1", None),
            ("web-99999999999", None),
        ] {
            assert_eq!(ordinal_of("web", name), want, "{name}");
        }
    }

    #[test]
    fn the_first_pod_carries_identity_labels_owner_and_storage() {
        let s = with_claims(set(3), "Retain", "Retain");
        let plan = run(&s, &[]);
        assert_eq!(summary(&plan), ["+claim www-web-0", "+pod web-0"], "claim first, then only the first pod");
        let Action::CreatePod(p) = &plan.actions[1] else { panic!() };
        let meta = &p.metadata;
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        assert_eq!(meta.generate_name, None);
        let l = meta.labels.as_ref().unwrap();
        assert_eq!(l["app"], "web");
        assert_eq!(l[POD_NAME_LABEL], "web-0");
        assert_eq!(l[POD_INDEX_LABEL], "0");
        assert_eq!(l[REVISION_LABEL], update_revision(&s));
        assert!(l[REVISION_LABEL].starts_with("web-"));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("StatefulSet", "set-uid", Some(true)));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volume = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(volume.name, "www");
        assert_eq!(volume.persistent_volume_claim.as_ref().unwrap().claim_name, "www-web-0");
        assert_eq!(
            plan.events.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            [
                "create Claim www-web-0 Pod web-0 in StatefulSet web success",
                "create Pod web-0 in StatefulSet web successful"
            ]
        );
        assert_eq!(plan.events[1].reason, "SuccessfulCreate");
    }

    #[test]
    fn a_template_volume_named_like_a_claim_template_is_replaced() {
        let mut s = with_claims(set(1), "Retain", "Retain");
        s.spec.as_mut().unwrap().template.spec.as_mut().unwrap().volumes = Some(vec![
            Volume { name: "www".into(), ..Volume::default() },
            Volume { name: "scratch".into(), ..Volume::default() },
        ]);
        let plan = run(&s, &[]);
        let Some(Action::CreatePod(p)) = plan.actions.last() else { panic!() };
        let volumes = p.spec.as_ref().unwrap().volumes.as_ref().unwrap();
        let names: Vec<_> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["www", "scratch"]);
        assert!(volumes[0].persistent_volume_claim.is_some());
    }

    #[test]
    fn claims_are_owned_as_the_retention_policy_says() {
        for (scaled, deleted, want_set_owner) in [
            ("Retain", "Retain", false),
            ("Retain", "Delete", true),
            ("Delete", "Retain", false),
            ("Delete", "Delete", true),
        ] {
            let s = with_claims(set(1), scaled, deleted);
            let plan = run(&s, &[]);
            let Action::CreateClaim(c) = &plan.actions[0] else { panic!() };
            assert_eq!(c.metadata.labels.as_ref().unwrap()["app"], "web", "labelled with the selector");
            let owners = c.metadata.owner_references.clone().unwrap_or_default();
            assert_eq!(
                owners.iter().any(|o| o.kind == "StatefulSet" && o.uid == "set-uid"),
                want_set_owner,
                "{scaled}/{deleted}"
            );
            assert!(owners.iter().all(|o| o.controller.is_none()), "never a controller reference");
        }
    }

    #[test]
    fn an_existing_claim_is_reused() {
        let s = with_claims(set(1), "Retain", "Retain");
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("www-web-0".into()), ..ObjectMeta::default() },
            ..PersistentVolumeClaim::default()
        };
        assert_eq!(summary(&run_with(&s, &[], std::slice::from_ref(&claim), 100)), ["+pod web-0"]);
        let mut going = claim;
        going.metadata.deletion_timestamp = Some(Time(at(1)));
        let plan = run_with(&s, &[], &[going], 100);
        assert!(plan.actions.is_empty(), "a claim being deleted blocks the pod");
        assert_eq!(plan.requeue_after, Some(CLAIM_RETRY));
    }

    #[test]
    fn ordered_ready_waits_for_each_pod_to_be_running_ready_and_available() {
        let s = set(3);
        let rev = update_revision(&s);
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            ("empty", vec![], vec!["+pod web-0"]),
            ("web-0 pending", vec![pod(&s, 0, "Pending", None, &rev)], vec![]),
            ("web-0 running, not ready", vec![pod(&s, 0, "Running", None, &rev)], vec![]),
            ("web-0 ready", vec![ready(&s, 0)], vec!["+pod web-1"]),
            ("web-1 missing between", vec![ready(&s, 0), ready(&s, 2)], vec!["+pod web-1"]),
            ("web-0 deleting", vec![deleting(ready(&s, 0))], vec![]),
            ("all ready", vec![ready(&s, 0), ready(&s, 1), ready(&s, 2)], vec![]),
        ];
        for (name, pods, want) in cases {
            assert_eq!(summary(&run(&s, &pods)), want, "{name}");
        }
    }

    #[test]
    fn min_ready_seconds_delays_the_next_pod_and_requeues() {
        let mut s = set(2);
        s.spec.as_mut().unwrap().min_ready_seconds = Some(10);
        let rev = update_revision(&s);
        let plan = run_with(&s, &[pod(&s, 0, "Running", Some(95), &rev)], &[], 100);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(5)));
        assert_eq!(plan.status.ready_replicas, Some(1));
        assert_eq!(plan.status.available_replicas, Some(0));
        let plan = run_with(&s, &[pod(&s, 0, "Running", Some(90), &rev)], &[], 100);
        assert_eq!(summary(&plan), ["+pod web-1"]);
    }

    #[test]
    fn parallel_creates_and_deletes_all_at_once() {
        let mut s = set(3);
        s.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
        let rev = update_revision(&s);
        let plan = run(&s, &[pod(&s, 1, "Pending", None, &rev)]);
        assert_eq!(summary(&plan), ["+pod web-0", "+pod web-2"]);
        s.spec.as_mut().unwrap().replicas = Some(0);
        let plan = run(&s, &[ready(&s, 0), pod(&s, 1, "Pending", None, &rev), ready(&s, 2)]);
        assert_eq!(summary(&plan), ["-pod web-2", "-pod web-1", "-pod web-0"]);
    }

    #[test]
    fn a_pod_being_deleted_is_never_replaced_while_it_exists() {
        for policy in ["OrderedReady", "Parallel"] {
            let mut s = set(2);
            s.spec.as_mut().unwrap().pod_management_policy = Some(policy.into());
            let plan = run(&s, &[deleting(ready(&s, 0)), ready(&s, 1)]);
            assert!(!summary(&plan).contains(&"+pod web-0".to_string()), "{policy}");
        }
    }

    #[test]
    fn ordered_scale_down_removes_the_highest_ordinal_one_at_a_time() {
        let s = set(1);
        let rev = update_revision(&s);
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            ("all ready", vec![ready(&s, 0), ready(&s, 1), ready(&s, 2)], vec!["-pod web-2"]),
            ("web-2 terminating", vec![ready(&s, 0), ready(&s, 1), deleting(ready(&s, 2))], vec![]),
            ("web-0 not ready", vec![pod(&s, 0, "Running", None, &rev), ready(&s, 1), ready(&s, 2)], vec![]),
            (
                "the highest is the first unhealthy: it may go",
                vec![ready(&s, 0), ready(&s, 1), pod(&s, 2, "Pending", None, &rev)],
                vec!["-pod web-2"],
            ),
            (
                "a healthy highest pod goes even if a lower condemned one is not ready",
                vec![ready(&s, 0), pod(&s, 1, "Pending", None, &rev), ready(&s, 2)],
                vec!["-pod web-2"],
            ),
            (
                "an unhealthy highest pod waits for the lower unhealthy one",
                vec![ready(&s, 0), pod(&s, 1, "Pending", None, &rev), pod(&s, 2, "Pending", None, &rev)],
                vec![],
            ),
        ];
        for (name, pods, want) in cases {
            let plan = run(&s, &pods);
            assert_eq!(summary(&plan), want, "{name}");
        }
        let plan = run(&s, &[ready(&s, 0), ready(&s, 1)]);
        assert_eq!(plan.events[0].message, "delete Pod web-1 in StatefulSet web successful");
        assert_eq!(plan.events[0].reason, "SuccessfulDelete");
    }

    #[test]
    fn a_failed_pod_is_deleted_then_recreated_once_gone() {
        let s = set(2);
        let rev = update_revision(&s);
        for phase in ["Failed", "Succeeded"] {
            let plan = run(&s, &[pod(&s, 0, phase, None, &rev), ready(&s, 1)]);
            assert_eq!(summary(&plan), ["-pod web-0"], "{phase}");
        }
        assert!(run(&s, &[deleting(pod(&s, 0, "Failed", None, &rev)), ready(&s, 1)]).actions.is_empty());
        assert_eq!(summary(&run(&s, &[ready(&s, 1)])), ["+pod web-0"]);
    }

    #[test]
    fn ordinals_start_where_the_spec_says() {
        let mut s = set(2);
        s.spec.as_mut().unwrap().ordinals = Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(5) });
        assert_eq!(summary(&run(&s, &[])), ["+pod web-5"]);
        assert_eq!(summary(&run(&s, &[ready(&s, 5)])), ["+pod web-6"]);
        assert_eq!(summary(&run(&s, &[ready(&s, 0), ready(&s, 5), ready(&s, 6)])), ["-pod web-0"]);
    }

    fn updated(mut s: StatefulSet, image: &str, partition: Option<i32>) -> StatefulSet {
        let old = update_revision(&s);
        s.status = Some(StatefulSetStatus { current_revision: Some(old), ..StatefulSetStatus::default() });
        let spec = s.spec.as_mut().unwrap();
        spec.template = template(image);
        spec.update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: partition
                .map(|p| RollingUpdateStatefulSetStrategy { partition: Some(p), max_unavailable: None }),
        });
        s
    }

    #[test]
    fn a_rolling_update_replaces_the_highest_old_pod_first() {
        let old = set(3);
        let s = updated(old.clone(), "nginx:2", None);
        let (o, n) = (update_revision(&old), update_revision(&s));
        assert_ne!(o, n);
        let at_rev = |i, rev: &str| pod(&s, i, "Running", Some(0), rev);
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            ("all old", vec![at_rev(0, &o), at_rev(1, &o), at_rev(2, &o)], vec!["-pod web-2"]),
            ("web-2 being replaced", vec![at_rev(0, &o), at_rev(1, &o), deleting(at_rev(2, &o))], vec![]),
            ("web-2 gone", vec![at_rev(0, &o), at_rev(1, &o)], vec!["+pod web-2"]),
            ("web-2 new but not ready", vec![at_rev(0, &o), at_rev(1, &o), pod(&s, 2, "Running", None, &n)], vec![]),
            ("web-2 new and ready", vec![at_rev(0, &o), at_rev(1, &o), at_rev(2, &n)], vec!["-pod web-1"]),
            ("done", vec![at_rev(0, &n), at_rev(1, &n), at_rev(2, &n)], vec![]),
        ];
        for (name, pods, want) in cases {
            let plan = run(&s, &pods);
            assert_eq!(summary(&plan), want, "{name}");
            if let Some(Action::CreatePod(p)) = plan.actions.first() {
                assert_eq!(p.metadata.labels.as_ref().unwrap()[REVISION_LABEL], n, "recreated at the new revision");
            }
        }
    }

    #[test]
    fn a_partition_keeps_lower_ordinals_at_the_old_revision() {
        let old = set(3);
        let s = updated(old.clone(), "nginx:2", Some(2));
        let (o, n) = (update_revision(&old), update_revision(&s));
        let at_rev = |i, rev: &str| pod(&s, i, "Running", Some(0), rev);
        assert_eq!(summary(&run(&s, &[at_rev(0, &o), at_rev(1, &o), at_rev(2, &o)])), ["-pod web-2"]);
        let plan = run(&s, &[at_rev(0, &o), at_rev(1, &o), at_rev(2, &n)]);
        assert!(plan.actions.is_empty());
        // What `kubectl rollout status` reads: updatedReplicas >= replicas - partition.
        assert_eq!(plan.status.updated_replicas, Some(1));
        assert_eq!(plan.status.current_revision.as_deref(), Some(o.as_str()), "not complete below the partition");
        // A pod lost below the partition comes back from the current revision's template.
        let old_template = old.spec.as_ref().unwrap().template.clone();
        let plan = reconcile(&Observed {
            set: &s,
            pods: vec![&at_rev(1, &o), &at_rev(2, &n)].into_iter().collect(),
            claims: vec![],
            current_template: Some(&old_template),
            now: at(100),
        });
        let Action::CreatePod(p) = &plan.actions[0] else { panic!() };
        assert_eq!(p.metadata.labels.as_ref().unwrap()[REVISION_LABEL], o);
        assert_eq!(p.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:1"));
    }

    #[test]
    fn on_delete_never_deletes_for_an_update() {
        let old = set(2);
        let mut s = updated(old.clone(), "nginx:2", None);
        s.spec.as_mut().unwrap().update_strategy =
            Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
        let o = update_revision(&old);
        let plan = run(&s, &[pod(&s, 0, "Running", Some(0), &o), pod(&s, 1, "Running", Some(0), &o)]);
        assert!(plan.actions.is_empty());
        let plan = run(&s, &[pod(&s, 0, "Running", Some(0), &o)]);
        let Action::CreatePod(p) = &plan.actions[0] else { panic!() };
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()[REVISION_LABEL],
            update_revision(&s),
            "a deleted pod comes back new"
        );
    }

    #[test]
    fn status_reports_what_kubectl_rollout_status_reads() {
        let old = set(3);
        let s = updated(old.clone(), "nginx:2", None);
        let (o, n) = (update_revision(&old), update_revision(&s));
        let plan = run(
            &s,
            &[pod(&s, 0, "Running", Some(0), &o), pod(&s, 1, "Pending", None, &n), pod(&s, 2, "Running", Some(0), &n)],
        );
        let st = &plan.status;
        assert_eq!(st.observed_generation, Some(1));
        assert_eq!(st.replicas, 3);
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(2));
        assert_eq!(st.current_replicas, Some(1));
        assert_eq!(st.updated_replicas, Some(2));
        assert_eq!(st.current_revision.as_deref(), Some(o.as_str()));
        assert_eq!(st.update_revision.as_deref(), Some(n.as_str()));
        assert_eq!(st.collision_count, Some(0));
        let plan = run(
            &s,
            &[
                pod(&s, 0, "Running", Some(0), &n),
                pod(&s, 1, "Running", Some(0), &n),
                pod(&s, 2, "Running", Some(0), &n),
            ],
        );
        assert_eq!(plan.status.current_revision.as_deref(), Some(n.as_str()), "complete: current becomes update");
        assert_eq!(plan.status.current_replicas, Some(3));
    }

    #[test]
    fn the_revision_does_not_change_when_the_status_records_collision_count_zero() {
        let mut s = set(1);
        let before = update_revision(&s);
        s.status = Some(StatefulSetStatus { collision_count: Some(0), ..StatefulSetStatus::default() });
        assert_eq!(update_revision(&s), before);
    }

    #[test]
    fn a_set_being_deleted_only_reports_status() {
        let mut s = set(3);
        s.metadata.deletion_timestamp = Some(Time(at(1)));
        let plan = run(&s, &[ready(&s, 0)]);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.status.replicas, 1);
    }

    #[test]
    fn when_scaled_delete_hands_the_claim_to_the_condemned_pod_first() {
        let s = with_claims(set(1), "Delete", "Retain");
        let claim = |name: &str| PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            ..PersistentVolumeClaim::default()
        };
        let plan = run_with(&s, &[ready(&s, 0), ready(&s, 1)], &[claim("www-web-0"), claim("www-web-1")], 100);
        assert_eq!(summary(&plan), ["~claim www-web-1", "-pod web-1"]);
        let Action::UpdateClaim(c) = &plan.actions[0] else { panic!() };
        let owner = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("Pod", "web-1", "uid-web-1"));
        // Scaled back up before the claim was collected: wait for it to go.
        let mut stale = c.clone();
        stale.metadata.name = Some("www-web-1".into());
        let s2 = with_claims(set(2), "Delete", "Retain");
        let plan = run_with(&s2, &[ready(&s2, 0)], &[claim("www-web-0"), stale], 100);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.requeue_after, Some(CLAIM_RETRY));
    }

    #[test]
    fn retain_removes_ownership_left_by_an_earlier_policy() {
        let s = with_claims(set(1), "Retain", "Retain");
        let mut claim = PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("www-web-0".into()), ..ObjectMeta::default() },
            ..PersistentVolumeClaim::default()
        };
        let other = OwnerReference { kind: "Thing".into(), uid: "other".into(), ..OwnerReference::default() };
        claim.metadata.owner_references = Some(vec![
            OwnerReference { kind: "StatefulSet".into(), uid: "set-uid".into(), ..OwnerReference::default() },
            other.clone(),
        ]);
        let plan = run_with(&s, &[ready(&s, 0)], &[claim], 100);
        let Action::UpdateClaim(c) = &plan.actions[0] else { panic!("{:?}", summary(&plan)) };
        assert_eq!(c.metadata.owner_references, Some(vec![other]));
    }

    /// Carries out a plan the way the API would, pods becoming Running and Ready at once when
    /// `instant` (else Pending), and deletions completing at once.
    fn apply(pods: &mut Vec<Pod>, plan: &Plan, s: &StatefulSet, instant: bool) {
        for action in &plan.actions {
            match action {
                Action::CreatePod(p) => {
                    let name = p.metadata.name.clone().unwrap();
                    assert!(pods.iter().all(|q| q.metadata.name.as_deref() != Some(&name)), "{name} exists twice");
                    let mut p = p.clone();
                    p.metadata.uid = Some(format!("uid-{name}"));
                    let ready = if instant { ready(s, 0) } else { pod(s, 0, "Pending", None, "") };
                    p.status = ready.status;
                    pods.push(p);
                }
                Action::DeletePod { name, .. } => pods.retain(|p| p.metadata.name.as_deref() != Some(name)),
                _ => {}
            }
        }
    }

    #[test]
    fn an_ordered_scale_up_and_update_converge_one_pod_at_a_time() {
        let mut s = set(4);
        let mut pods: Vec<Pod> = Vec::new();
        for _ in 0..20 {
            let plan = run(&s, &pods);
            assert!(plan.actions.len() <= 1, "one pod at a time: {:?}", summary(&plan));
            apply(&mut pods, &plan, &s, true);
            s.status = Some(plan.status);
        }
        assert_eq!(pods.len(), 4);
        s = StatefulSet { status: s.status.clone(), ..updated(s, "nginx:2", None) };
        let mut rounds = 0;
        loop {
            let plan = run(&s, &pods);
            s.status = Some(plan.status.clone());
            if plan.actions.is_empty() {
                break;
            }
            assert!(plan.actions.len() <= 1);
            assert!(pods.len() >= 3, "never more than one pod down");
            apply(&mut pods, &plan, &s, true);
            rounds += 1;
            assert!(rounds < 50);
        }
        let st = s.status.unwrap();
        assert_eq!(st.updated_replicas, Some(4));
        assert_eq!(st.current_revision, st.update_revision);
        assert_eq!(rounds, 8, "each of 4 pods deleted then recreated");
    }
}
