//! The Deployment controller's pure core, step for step Kubernetes' (pkg/controller/deployment:
//! sync.go, rolling.go, recreate.go, progress.go), because `kubectl rollout` reads exactly its
//! status fields, conditions and annotations.
//!
//! A Deployment owns ReplicaSets, one per distinct pod template: the "new" one matches the
//! current template (ignoring the `pod-template-hash` label), the others are "old". Each sync
//! takes ONE step — create the new set, scale the new set up, or scale old sets down — then
//! recomputes the status from the sets as that step leaves them; the step's own watch events
//! trigger the next sync. Rollback (`kubectl rollout undo`) copies an old set's template into
//! the Deployment, so that set becomes "new" again and gets the next revision number.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::events::Note;
use crate::pods::{controller_ref, template_hash};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotations of the Deployment that are not copied onto its ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// What the controller observed of one Deployment.
#[derive(Debug)]
pub struct Observed<'a> {
    pub deployment: &'a Deployment,
    /// The ReplicaSets it controls (after adoption and release).
    pub sets: Vec<&'a ReplicaSet>,
    /// Pods not yet finished, per ReplicaSet uid (Recreate waits for old ones to be gone).
    pub unfinished_pods: BTreeMap<String, usize>,
    pub now: jiff::Timestamp,
}

/// A write to carry out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateSet(Box<ReplicaSet>),
    /// Set a ReplicaSet's replicas, minReadySeconds and (merged) annotations.
    UpdateSet {
        name: String,
        replicas: i32,
        min_ready_seconds: i32,
        annotations: BTreeMap<String, String>,
    },
    DeleteSet {
        name: String,
        uid: String,
    },
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: DeploymentStatus,
    /// The `deployment.kubernetes.io/revision` annotation the Deployment should carry.
    pub revision: Option<String>,
    pub notes: Vec<Note>,
    /// When time alone changes the answer (the progress deadline).
    pub requeue_after: Option<Duration>,
}

/// A ReplicaSet as this sync sees it: its object plus the replicas this sync gave it.
#[derive(Debug, Clone)]
struct Set {
    object: ReplicaSet,
    replicas: i32,
}

impl Set {
    fn name(&self) -> &str {
        self.object.metadata.name.as_deref().unwrap_or_default()
    }
    fn uid(&self) -> &str {
        self.object.metadata.uid.as_deref().unwrap_or_default()
    }
    fn status(&self) -> (i32, i32, i32) {
        let s = self.object.status.as_ref();
        (
            s.map_or(0, |s| s.replicas),
            s.and_then(|s| s.ready_replicas).unwrap_or(0),
            s.and_then(|s| s.available_replicas).unwrap_or(0),
        )
    }
    fn available(&self) -> i32 {
        self.status().2
    }
    fn created(&self) -> Option<jiff::Timestamp> {
        self.object.metadata.creation_timestamp.as_ref().map(|t| t.0)
    }
    fn annotation(&self, key: &str) -> Option<&str> {
        self.object.metadata.annotations.as_ref()?.get(key).map(String::as_str)
    }
    fn revision(&self) -> i64 {
        self.annotation(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
    }
}

/// The sync in progress.
struct Sync<'a> {
    d: &'a Deployment,
    replicas: i32,
    max_surge: i32,
    max_unavailable: i32,
    now: jiff::Timestamp,
    new: Option<Set>,
    old: Vec<Set>,
    plan: Plan,
    status: DeploymentStatus,
}

/// `maxSurge` or `maxUnavailable` as a number of pods (`tug_k8s::intstr`): a percentage of
/// `total`, rounded up for surge and down for unavailability (Kubernetes' `ResolveFenceposts`);
/// `default_percent` when absent, 0 when malformed.
pub fn scaled_value(value: Option<&IntOrString>, default_percent: i32, total: i32, round_up: bool) -> i32 {
    let default = IntOrString::String(format!("{default_percent}%"));
    tug_k8s::intstr::scaled_value(value.unwrap_or(&default), total, round_up).unwrap_or(0)
}

/// The surge and unavailability a Deployment allows; never both zero.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let rolling = spec.and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    if !is_rolling(d) {
        return (0, 0);
    }
    let surge = scaled_value(rolling.and_then(|r| r.max_surge.as_ref()), 25, replicas, true);
    let unavailable = scaled_value(rolling.and_then(|r| r.max_unavailable.as_ref()), 25, replicas, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable.min(replicas)) }
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// A template without the `pod-template-hash` label, for comparing a set's template with the
/// Deployment's.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty()
            && let Some(meta) = t.metadata.as_mut()
        {
            meta.labels = None;
        }
    }
    if let Some(meta) = t.metadata.as_ref()
        && *meta == ObjectMeta::default()
    {
        t.metadata = None;
    }
    t
}

fn template_of(d: &Deployment) -> PodTemplateSpec {
    d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

/// The pure core.
pub fn reconcile(o: &Observed) -> Plan {
    let d = o.deployment;
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let (max_surge, max_unavailable) = fenceposts(d);
    let template = without_hash(&template_of(d));
    // The oldest set whose template matches is the new one (Kubernetes' FindNewReplicaSet).
    let mut sets: Vec<Set> = o
        .sets
        .iter()
        .map(|rs| Set { object: (*rs).clone(), replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) })
        .collect();
    sets.sort_by_key(|s| (s.created(), s.name().to_string()));
    let new_index = sets.iter().position(|s| {
        s.object.spec.as_ref().and_then(|spec| spec.template.as_ref()).is_some_and(|t| without_hash(t) == template)
    });
    let new = new_index.map(|i| sets.remove(i));
    let mut sync = Sync {
        d,
        replicas,
        max_surge,
        max_unavailable,
        now: o.now,
        new,
        old: sets,
        plan: Plan::default(),
        status: d.status.clone().unwrap_or_default(),
    };
    sync.plan.revision = d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned();
    if crate::pods::is_deleting(&d.metadata) {
        sync.plan.status = sync.calculate_status();
        return sync.plan;
    }
    if spec.is_some_and(|s| s.selector == LabelSelector::default()) {
        sync.plan.notes.push(Note::warning(
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        ));
        sync.plan.status = d.status.clone().unwrap_or_default();
        return sync.plan;
    }
    sync.check_paused_conditions();
    let paused = spec.and_then(|s| s.paused).unwrap_or(false);
    if paused || sync.is_scaling_event() {
        sync.sync_new_set(false);
        sync.scale();
        if paused {
            sync.cleanup();
        }
        sync.plan.status = sync.calculate_status();
        return sync.plan;
    }
    if is_rolling(d) {
        sync.rolling()
    } else {
        sync.recreate(o)
    }
    sync.plan
}

impl Sync<'_> {
    fn name(&self) -> &str {
        self.d.metadata.name.as_deref().unwrap_or_default()
    }

    fn all(&self) -> impl Iterator<Item = &Set> {
        self.new.iter().chain(self.old.iter())
    }

    fn progress_deadline(&self) -> Option<i32> {
        self.d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|s| *s != i32::MAX)
    }

    /// Kubernetes' `isScalingEvent`: an active set was sized for a different replica count.
    fn is_scaling_event(&self) -> bool {
        let desired = self.replicas.to_string();
        self.all().filter(|s| s.replicas > 0).any(|s| s.annotation(DESIRED_REPLICAS).is_some_and(|a| a != desired))
    }

    /// The annotations a set of this Deployment should carry at `revision`: the Deployment's own
    /// (minus the controller's), the revision, and the replica counts it was sized for.
    fn set_annotations(&self, current: Option<&BTreeMap<String, String>>, revision: i64) -> BTreeMap<String, String> {
        let mut annotations = current.cloned().unwrap_or_default();
        for (k, v) in self.d.metadata.annotations.iter().flatten() {
            if !NOT_COPIED.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
        let old_revision = annotations.get(REVISION).and_then(|r| r.parse::<i64>().ok()).unwrap_or(0);
        if old_revision < revision {
            if old_revision > 0 {
                // A reused set keeps the revisions it had (`kubectl rollout history` shows the newest).
                let history = annotations.get(REVISION_HISTORY).filter(|h| !h.is_empty());
                let history = match history {
                    Some(h) => format!("{h},{old_revision}"),
                    None => old_revision.to_string(),
                };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
            annotations.insert(REVISION.into(), revision.to_string());
        }
        annotations.entry(DESIRED_REPLICAS.into()).or_insert_with(|| self.replicas.to_string());
        annotations.entry(MAX_REPLICAS.into()).or_insert_with(|| (self.replicas + self.max_surge).to_string());
        annotations
    }

    /// Finds or (when `create`) makes the new set, and keeps its revision the newest.
    fn sync_new_set(&mut self, create: bool) {
        let max_old = self.old.iter().map(Set::revision).max().unwrap_or(0);
        let next_revision = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        if let Some(new) = &self.new {
            let annotations = self.set_annotations(new.object.metadata.annotations.as_ref(), next_revision);
            let set_min_ready = new.object.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
            if Some(&annotations) != new.object.metadata.annotations.as_ref() || set_min_ready != min_ready {
                let (name, replicas) = (new.name().to_string(), new.replicas);
                self.plan.actions.push(Action::UpdateSet {
                    name,
                    replicas,
                    min_ready_seconds: min_ready,
                    annotations: annotations.clone(),
                });
                if let Some(new) = &mut self.new {
                    new.object.metadata.annotations = Some(annotations);
                }
            }
            let revision = self.new.as_ref().and_then(|n| n.annotation(REVISION)).map(str::to_string);
            self.plan.revision = revision;
            if condition(&self.status, "Progressing").is_none() && self.progress_deadline().is_some() {
                let message =
                    format!("Found new replica set {:?}", self.new.as_ref().map(Set::name).unwrap_or_default());
                self.set_condition("Progressing", "True", "FoundNewReplicaSet", &message);
            }
            return;
        }
        if !create {
            return;
        }
        let collision_count = self.status.collision_count;
        let template = template_of(self.d);
        let hash = template_hash(&template, collision_count);
        let name = format!("{}-{hash}", self.name());
        if self.old.iter().any(|s| s.name() == name) {
            // Same name, different template: a hash collision. Count it so the next hash differs.
            self.status.collision_count = Some(collision_count.unwrap_or(0) + 1);
            return;
        }
        let mut template = template;
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        meta.labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut labels = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash);
        let initial = if is_rolling(self.d) { self.new_set_replicas(0) } else { self.replicas };
        let set = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: Some(self.set_annotations(None, next_revision)),
                owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &self.d.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(initial),
                min_ready_seconds: Some(min_ready),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        self.plan.actions.push(Action::CreateSet(Box::new(set.clone())));
        if initial > 0 {
            self.plan
                .notes
                .push(Note::normal("ScalingReplicaSet", format!("Scaled up replica set {name} from 0 to {initial}")));
        }
        self.plan.revision = Some(next_revision.to_string());
        self.new = Some(Set { object: set, replicas: initial });
        if self.progress_deadline().is_some() {
            self.set_condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                &format!("Created new replica set {name:?}"),
            );
        }
    }

    /// What the new set's size should be now (Kubernetes' `NewRSNewReplicas`, rolling update).
    fn new_set_replicas(&self, current_new: i32) -> i32 {
        let current_total: i32 = self.old.iter().map(|s| s.replicas).sum::<i32>() + current_new;
        let max_total = self.replicas + self.max_surge;
        if current_total >= max_total {
            return current_new;
        }
        current_new + (max_total - current_total).min(self.replicas - current_new).max(0)
    }

    /// Records a new size for a set (and the replica counts it is sized for).
    fn scale_set(&mut self, which: SetRef, to: i32) {
        let replicas = self.replicas;
        let max_replicas = self.replicas + self.max_surge;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let set = match which {
            SetRef::New => self.new.as_mut(),
            SetRef::Old(i) => self.old.get_mut(i),
        };
        let Some(set) = set else { return };
        let mut annotations = set.object.metadata.annotations.clone().unwrap_or_default();
        annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string());
        annotations.insert(MAX_REPLICAS.into(), max_replicas.to_string());
        let size_changes = set.replicas != to;
        if !size_changes && Some(&annotations) == set.object.metadata.annotations.as_ref() {
            return;
        }
        if size_changes {
            let direction = if to > set.replicas { "up" } else { "down" };
            let note = format!("Scaled {direction} replica set {} from {} to {to}", set.name(), set.replicas);
            self.plan.notes.push(Note::normal("ScalingReplicaSet", note));
        }
        set.replicas = to;
        set.object.metadata.annotations = Some(annotations.clone());
        let name = set.name().to_string();
        // A set created in this very plan is created at its final size.
        for action in &mut self.plan.actions {
            if let Action::CreateSet(created) = action
                && created.metadata.name.as_deref() == Some(name.as_str())
            {
                created.spec.get_or_insert_with(Default::default).replicas = Some(to);
                created.metadata.annotations = Some(annotations);
                return;
            }
        }
        self.plan.actions.retain(|a| !matches!(a, Action::UpdateSet { name: n, .. } if *n == name));
        self.plan.actions.push(Action::UpdateSet { name, replicas: to, min_ready_seconds: min_ready, annotations });
    }

    fn rolling(&mut self) {
        self.sync_new_set(true);
        if self.new.is_none() {
            // A hash collision was counted: the next sync tries the next name.
            self.plan.status = self.calculate_status();
            return;
        }
        let scaled = self.reconcile_new_set() || self.reconcile_old_sets();
        if !scaled && self.is_complete(&self.calculate_status()) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    fn recreate(&mut self, o: &Observed) {
        self.sync_new_set(false);
        let active_old: Vec<usize> = (0..self.old.len()).filter(|i| self.old[*i].replicas != 0).collect();
        if !active_old.is_empty() {
            for i in active_old {
                self.scale_set(SetRef::Old(i), 0);
            }
            return self.sync_rollout_status();
        }
        let old_running =
            self.old.iter().any(|s| s.status().0 > 0 || o.unfinished_pods.get(s.uid()).is_some_and(|n| *n > 0));
        if old_running {
            return self.sync_rollout_status();
        }
        if self.new.is_none() {
            self.sync_new_set(true);
        }
        if self.new.as_ref().is_some_and(|n| n.replicas != self.replicas) {
            self.scale_set(SetRef::New, self.replicas);
        } else if self.is_complete(&self.calculate_status()) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    fn reconcile_new_set(&mut self) -> bool {
        let Some(new) = &self.new else { return false };
        let current = new.replicas;
        if current == self.replicas {
            return false;
        }
        let to = if current > self.replicas { self.replicas } else { self.new_set_replicas(current) };
        if to == current {
            return false;
        }
        self.scale_set(SetRef::New, to);
        true
    }

    fn oldest_first(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.old.len()).collect();
        order.sort_by_key(|i| (self.old[*i].created(), self.old[*i].name().to_string()));
        order
    }

    fn reconcile_old_sets(&mut self) -> bool {
        let old_pods: i32 = self.old.iter().map(|s| s.replicas).sum();
        if old_pods == 0 {
            return false;
        }
        let all_pods: i32 = self.all().map(|s| s.replicas).sum();
        let min_available = self.replicas - self.max_unavailable;
        let new_unavailable = self.new.as_ref().map_or(0, |n| n.replicas - n.available());
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // First the old sets' unhealthy pods: removing them costs no availability.
        let mut cleaned = 0;
        for i in self.oldest_first() {
            if cleaned >= max_scaled_down {
                break;
            }
            let set = &self.old[i];
            let unhealthy = set.replicas - set.available();
            if set.replicas == 0 || unhealthy <= 0 {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(unhealthy);
            let to = set.replicas - down;
            self.scale_set(SetRef::Old(i), to);
            cleaned += down;
        }
        // Then healthy old pods, as far as availability allows.
        let available: i32 = self.all().map(Set::available).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for i in self.oldest_first() {
                if scaled >= total {
                    break;
                }
                let set = &self.old[i];
                if set.replicas == 0 {
                    continue;
                }
                let down = set.replicas.min(total - scaled);
                let to = set.replicas - down;
                self.scale_set(SetRef::Old(i), to);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    /// Scaling without a rollout: one active set takes the new size; a saturated new set lets the
    /// old ones go; otherwise the difference is shared in proportion (Kubernetes' `scale`).
    fn scale(&mut self) {
        let active: Vec<SetRef> = self.refs().into_iter().filter(|r| self.get(*r).replicas > 0).collect();
        let only = match active.len() {
            0 => self.new.as_ref().map(|_| SetRef::New).or_else(|| self.newest_old().map(SetRef::Old)),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(only) = only {
            if self.get(only).replicas != self.replicas {
                self.scale_set(only, self.replicas);
            }
            return;
        }
        let saturated = self.new.as_ref().is_some_and(|n| {
            n.replicas == self.replicas
                && n.annotation(DESIRED_REPLICAS) == Some(self.replicas.to_string().as_str())
                && n.available() == self.replicas
        });
        if saturated {
            for i in 0..self.old.len() {
                if self.old[i].replicas != 0 {
                    self.scale_set(SetRef::Old(i), 0);
                }
            }
            return;
        }
        if !is_rolling(self.d) {
            return;
        }
        let allowed = if self.replicas > 0 { self.replicas + self.max_surge } else { 0 };
        let current: i32 = active.iter().map(|r| self.get(*r).replicas).sum();
        let to_add = allowed - current;
        let mut order = active;
        // Growing favours the largest and newest; shrinking the largest and oldest.
        order.sort_by(|a, b| {
            let (sa, sb) = (self.get(*a), self.get(*b));
            sb.replicas.cmp(&sa.replicas).then_with(|| {
                if to_add > 0 { sb.created().cmp(&sa.created()) } else { sa.created().cmp(&sb.created()) }
            })
        });
        let mut added = 0;
        let mut sizes: Vec<(SetRef, i32)> = Vec::new();
        for r in &order {
            let set = self.get(*r);
            let proportion = if to_add == 0 || to_add == added || set.replicas == 0 {
                0
            } else {
                let fraction = self.fraction(set);
                let allowed = to_add - added;
                if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
            };
            added += proportion;
            sizes.push((*r, set.replicas + proportion));
        }
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (r, size) in sizes {
            self.scale_set(r, size);
        }
    }

    /// How many replicas a set gains or loses when the Deployment is resized (its share of the
    /// size it was annotated for).
    fn fraction(&self, set: &Set) -> i32 {
        if self.replicas == 0 {
            return -set.replicas;
        }
        let target = f64::from(self.replicas + self.max_surge);
        let annotated = set
            .annotation(MAX_REPLICAS)
            .and_then(|a| a.parse::<i32>().ok())
            .unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated <= 0 {
            return 0;
        }
        let size = f64::from(set.replicas) * target / f64::from(annotated);
        size.round() as i32 - set.replicas
    }

    fn refs(&self) -> Vec<SetRef> {
        self.new.iter().map(|_| SetRef::New).chain((0..self.old.len()).map(SetRef::Old)).collect()
    }

    fn get(&self, r: SetRef) -> &Set {
        match r {
            SetRef::New => self.new.as_ref().expect("a SetRef::New exists only with a new set"),
            SetRef::Old(i) => &self.old[i],
        }
    }

    fn newest_old(&self) -> Option<usize> {
        (0..self.old.len()).max_by_key(|i| (self.old[*i].created(), self.old[*i].name().to_string()))
    }

    /// Deletes old, empty sets beyond `revisionHistoryLimit` (default 10), oldest revision first.
    fn cleanup(&mut self) {
        let limit = self.d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0);
        let mut cleanable: Vec<&Set> = self
            .old
            .iter()
            .filter(|s| {
                s.replicas == 0
                    && s.status().0 == 0
                    && s.object.metadata.deletion_timestamp.is_none()
                    && s.object.metadata.generation <= s.object.status.as_ref().and_then(|st| st.observed_generation)
            })
            .collect();
        let excess = cleanable.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        cleanable.sort_by_key(|s| (s.revision(), s.created()));
        let deletions: Vec<Action> = cleanable
            .iter()
            .take(excess)
            .map(|s| Action::DeleteSet { name: s.name().to_string(), uid: s.uid().to_string() })
            .collect();
        self.plan.actions.extend(deletions);
    }

    /// The status counts from the sets as this sync leaves them (Kubernetes' `calculateStatus`).
    fn calculate_status(&self) -> DeploymentStatus {
        let (mut replicas, mut ready, mut available, mut total) = (0, 0, 0, 0);
        for set in self.all() {
            let (r, rd, av) = set.status();
            replicas += r;
            ready += rd;
            available += av;
            total += set.replicas;
        }
        let updated = self.new.as_ref().map_or(0, |n| n.status().0);
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: nonzero(replicas),
            updated_replicas: nonzero(updated),
            ready_replicas: nonzero(ready),
            available_replicas: nonzero(available),
            unavailable_replicas: nonzero((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: None,
        };
        let (state, reason, message) = if available >= self.replicas - self.max_unavailable {
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        } else {
            ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        };
        set_condition(&mut status, "Available", state, reason, message, self.now);
        status
    }

    fn is_complete(&self, status: &DeploymentStatus) -> bool {
        let r = Some(self.replicas).filter(|r| *r > 0);
        status.updated_replicas == r
            && status.replicas == r
            && status.available_replicas == r
            && status.observed_generation >= self.d.metadata.generation
    }

    /// Kubernetes' `syncRolloutStatus`: the counts plus the Progressing condition, which says
    /// whether the rollout completed, made progress, or ran past its deadline.
    fn sync_rollout_status(&mut self) {
        let mut status = self.calculate_status();
        let Some(deadline) = self.progress_deadline() else {
            remove_condition(&mut status, "Progressing");
            self.plan.status = status;
            return;
        };
        let current = condition(&status, "Progressing").cloned();
        let complete = status.replicas == status.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
        let set_name = self.new.as_ref().map(|n| n.name().to_string());
        let subject = match &set_name {
            Some(n) => format!("ReplicaSet {n:?}"),
            None => format!("Deployment {:?}", self.name()),
        };
        if !complete {
            if self.is_complete(&status) {
                let message = format!("{subject} has successfully progressed.");
                set_condition(&mut status, "Progressing", "True", "NewReplicaSetAvailable", &message, self.now);
            } else if self.made_progress(&status) {
                let message = format!("{subject} is progressing.");
                let mut c = new_condition("Progressing", "True", "ReplicaSetUpdated", &message, self.now);
                if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
                    c.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, "Progressing");
                status.conditions.get_or_insert_with(Vec::new).push(c);
            } else if self.timed_out(current.as_ref(), deadline) {
                let message = format!("{subject} has timed out progressing.");
                set_condition(&mut status, "Progressing", "False", "ProgressDeadlineExceeded", &message, self.now);
                self.plan.notes.push(Note::warning("ProgressDeadlineExceeded", message));
            }
        }
        self.copy_replica_failure(&mut status);
        // Come back when the deadline would pass.
        if let Some(c) = condition(&status, "Progressing")
            && !matches!(c.reason.as_deref(), Some("NewReplicaSetAvailable" | "ProgressDeadlineExceeded"))
            && let Some(updated) = &c.last_update_time
        {
            let due = updated.0 + jiff::SignedDuration::from_secs(i64::from(deadline));
            let wait = Duration::try_from(due.duration_since(self.now)).unwrap_or_default();
            self.plan.requeue_after = Some(wait.max(Duration::from_millis(100)) + Duration::from_millis(10));
        }
        self.plan.status = status;
    }

    fn made_progress(&self, new: &DeploymentStatus) -> bool {
        let old = self.d.status.clone().unwrap_or_default();
        let n = |v: Option<i32>| v.unwrap_or(0);
        let old_old = n(old.replicas) - n(old.updated_replicas);
        let new_old = n(new.replicas) - n(new.updated_replicas);
        n(new.updated_replicas) > n(old.updated_replicas)
            || new_old < old_old
            || n(new.ready_replicas) > n(old.ready_replicas)
            || n(new.available_replicas) > n(old.available_replicas)
    }

    fn timed_out(&self, current: Option<&DeploymentCondition>, deadline: i32) -> bool {
        let Some(c) = current else { return false };
        match c.reason.as_deref() {
            Some("NewReplicaSetAvailable") => false,
            Some("ProgressDeadlineExceeded") => true,
            _ => c
                .last_update_time
                .as_ref()
                .is_some_and(|t| t.0 + jiff::SignedDuration::from_secs(i64::from(deadline)) < self.now),
        }
    }

    /// A set that cannot create pods makes the Deployment say so (`ReplicaFailure`).
    fn copy_replica_failure(&self, status: &mut DeploymentStatus) {
        let failure = self.all().find_map(|s| {
            s.object
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .cloned()
        });
        match failure {
            Some(f) => set_condition(
                status,
                "ReplicaFailure",
                "True",
                f.reason.as_deref().unwrap_or("FailedCreate"),
                f.message.as_deref().unwrap_or_default(),
                self.now,
            ),
            None => remove_condition(status, "ReplicaFailure"),
        }
    }

    /// Kubernetes' `checkPausedConditions`: pausing and resuming show in Progressing.
    fn check_paused_conditions(&mut self) {
        if self.progress_deadline().is_none() {
            return;
        }
        let current = condition(&self.status, "Progressing").and_then(|c| c.reason.clone());
        if current.as_deref() == Some("ProgressDeadlineExceeded") {
            return;
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let shows_paused = current.as_deref() == Some("DeploymentPaused");
        if paused && !shows_paused {
            self.set_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused");
        } else if !paused && shows_paused {
            self.set_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed");
        }
    }

    fn set_condition(&mut self, type_: &str, state: &str, reason: &str, message: &str) {
        set_condition(&mut self.status, type_, state, reason, message, self.now);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SetRef {
    New,
    Old(usize),
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

fn new_condition(type_: &str, state: &str, reason: &str, message: &str, now: jiff::Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: state.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: the same status and reason leave the condition as it
/// is; a new reason with the same status keeps the transition time.
fn set_condition(
    status: &mut DeploymentStatus,
    type_: &str,
    state: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let mut c = new_condition(type_, state, reason, message, now);
    if let Some(current) = condition(status, type_) {
        if current.status == state && current.reason.as_deref() == Some(reason) {
            return;
        }
        if current.status == state {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, type_);
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment};
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".into(), "web".into())].into()), ..ObjectMeta::default() }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "main".into(), image: Some(image.into()), ..Container::default() }],
                ..PodSpec::default()
            }),
        }
    }

    fn deployment(replicas: i32, image: &str, surge: i32, unavailable: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("d-uid".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some([("app".into(), "web".into())].into()),
                    match_expressions: None,
                },
                template: template(image),
                progress_deadline_seconds: Some(600),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(surge)),
                        max_unavailable: Some(IntOrString::Int(unavailable)),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    /// A ReplicaSet of the Deployment with `replicas` (spec) of which `available` are available.
    fn set(name: &str, image: &str, revision: i64, replicas: i32, available: i32, created: i64) -> ReplicaSet {
        let mut t = template(image);
        t.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH.into(), name.into());
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("{name}-uid")),
                creation_timestamp: Some(Time(at(created))),
                annotations: Some(BTreeMap::from([
                    (REVISION.into(), revision.to_string()),
                    (DESIRED_REPLICAS.into(), "4".into()),
                    (MAX_REPLICAS.into(), "5".into()),
                ])),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), template: Some(t), ..ReplicaSetSpec::default() }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                observed_generation: Some(1),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    fn observe<'a>(d: &'a Deployment, sets: &[&'a ReplicaSet]) -> Plan {
        reconcile(&Observed { deployment: d, sets: sets.to_vec(), unfinished_pods: BTreeMap::new(), now: at(1000) })
    }

    fn scaled(plan: &Plan) -> Vec<(String, i32)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateSet { name, replicas, .. } => Some((name.clone(), *replicas)),
                Action::CreateSet(s) => {
                    Some((s.metadata.name.clone().unwrap(), s.spec.as_ref().unwrap().replicas.unwrap()))
                }
                Action::DeleteSet { .. } => None,
            })
            .collect()
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailability_down_never_both_zero() {
        let pct = |p: &str| Some(IntOrString::String(p.into()));
        assert_eq!(scaled_value(pct("25%").as_ref(), 0, 10, true), 3);
        assert_eq!(scaled_value(pct("25%").as_ref(), 0, 10, false), 2);
        assert_eq!(scaled_value(None, 25, 1000, true), 250);
        assert_eq!(fenceposts(&deployment(4, "a", 0, 0)), (0, 1));
    }

    #[test]
    fn a_new_template_creates_a_set_within_the_surge_with_the_next_revision() {
        let mut d = deployment(4, "v2", 1, 1);
        // As the last rollout left it: all four pods on the (then new) set.
        d.status = Some(DeploymentStatus {
            replicas: Some(4),
            updated_replicas: Some(4),
            ready_replicas: Some(4),
            available_replicas: Some(4),
            ..DeploymentStatus::default()
        });
        let old = set("old", "v1", 1, 4, 4, 1);
        let plan = observe(&d, &[&old]);
        let Some(Action::CreateSet(created)) = plan.actions.first() else { panic!("{:?}", plan.actions) };
        assert_eq!(created.spec.as_ref().unwrap().replicas, Some(1), "4 + surge 1 - 4 existing");
        assert_eq!(created.metadata.annotations.as_ref().unwrap()[REVISION], "2");
        assert!(created.metadata.name.as_deref().unwrap().starts_with("web-"));
        let hash = &created.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH];
        assert!(created.metadata.name.as_deref().unwrap().ends_with(hash.as_str()));
        assert_eq!(plan.revision.as_deref(), Some("2"));
        let progressing = plan.status.conditions.iter().flatten().find(|c| c.type_ == "Progressing").unwrap();
        assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetCreated"));
    }

    #[test]
    fn old_sets_shrink_only_as_far_as_availability_allows() {
        let d = deployment(4, "v2", 1, 1);
        let old = set("old", "v1", 1, 4, 4, 1);
        // The new set has its surge pod, not yet available: one old pod may go (unavailable 1).
        let new = set("new", "v2", 2, 1, 0, 2);
        assert_eq!(scaled(&observe(&d, &[&old, &new])), vec![("old".to_string(), 3)]);
        // Nothing available to spare: an unavailable new pod and an old one down already.
        let old = set("old", "v1", 1, 3, 3, 1);
        let new = set("new", "v2", 2, 2, 0, 2);
        assert_eq!(scaled(&observe(&d, &[&old, &new])), vec![]);
        // Unhealthy old pods go first, they cost no availability; healthy ones wait.
        let old = set("old", "v1", 1, 3, 1, 1);
        let new = set("new", "v2", 2, 2, 2, 2);
        assert_eq!(scaled(&observe(&d, &[&old, &new])), vec![("old".to_string(), 1)]);
    }

    #[test]
    fn a_finished_rollout_is_complete_and_prunes_history() {
        let mut d = deployment(4, "v2", 1, 1);
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let sets: Vec<ReplicaSet> = (1..=3).map(|r| set(&format!("old{r}"), &format!("v1.{r}"), r, 0, 0, r)).collect();
        let new = set("new", "v2", 4, 4, 4, 10);
        let mut all: Vec<&ReplicaSet> = sets.iter().collect();
        all.push(&new);
        let plan = observe(&d, &all);
        let deleted: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::DeleteSet { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["old1", "old2"], "the oldest revisions beyond the limit");
        let s = &plan.status;
        assert_eq!((s.replicas, s.updated_replicas, s.available_replicas), (Some(4), Some(4), Some(4)));
        let progressing = s.conditions.iter().flatten().find(|c| c.type_ == "Progressing").unwrap();
        assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));
        let available = s.conditions.iter().flatten().find(|c| c.type_ == "Available").unwrap();
        assert_eq!(available.status, "True");
    }

    #[test]
    fn resizing_mid_rollout_shares_the_change_in_proportion() {
        // 10 replicas, surge 3: sets of 7 (old) and 6 (new) were sized for 13 pods in all.
        let mut d = deployment(20, "v2", 3, 0);
        d.spec.as_mut().unwrap().strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().max_surge =
            Some(IntOrString::Int(3));
        let mut old = set("old", "v1", 1, 7, 7, 1);
        let mut new = set("new", "v2", 2, 6, 0, 2);
        for s in [&mut old, &mut new] {
            let a = s.metadata.annotations.as_mut().unwrap();
            a.insert(DESIRED_REPLICAS.into(), "10".into());
            a.insert(MAX_REPLICAS.into(), "13".into());
        }
        let sizes: BTreeMap<String, i32> = scaled(&observe(&d, &[&old, &new])).into_iter().collect();
        // 23 allowed now: +10 shared as 7/13 and 6/13 of 23.
        assert_eq!(sizes.values().sum::<i32>(), 23, "{sizes:?}");
        assert_eq!(sizes["old"], 12);
        assert_eq!(sizes["new"], 11);
    }

    #[test]
    fn a_stalled_rollout_times_out_and_pausing_shows() {
        let mut d = deployment(4, "v2", 1, 0);
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(10);
        // Nothing changed since the last progress, 100 s ago.
        d.status = Some(DeploymentStatus {
            replicas: Some(5),
            updated_replicas: Some(1),
            ready_replicas: Some(4),
            available_replicas: Some(4),
            conditions: Some(vec![new_condition("Progressing", "True", "ReplicaSetUpdated", "x", at(900))]),
            ..DeploymentStatus::default()
        });
        let old = set("old", "v1", 1, 4, 4, 1);
        let new = set("new", "v2", 2, 1, 0, 2);
        let plan = observe(&d, &[&old, &new]);
        let progressing = plan.status.conditions.iter().flatten().find(|c| c.type_ == "Progressing").unwrap();
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_deref()),
            ("False", Some("ProgressDeadlineExceeded")),
            "{:?}",
            plan
        );
        d.spec.as_mut().unwrap().paused = Some(true);
        d.status = None;
        let plan = observe(&d, &[&old, &new]);
        let progressing = plan.status.conditions.iter().flatten().find(|c| c.type_ == "Progressing").unwrap();
        assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));
        assert!(plan.actions.iter().all(|a| !matches!(a, Action::CreateSet(_))));
    }
}
