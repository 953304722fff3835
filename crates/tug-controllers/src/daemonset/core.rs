//! The pure core of the DaemonSet controller (apps/v1), as Kubernetes'
//! `pkg/controller/daemon` behaves: one pod per eligible node.
//!
//! A node is eligible when the pod template's nodeSelector and required node affinity match it
//! and the pod, with the tolerations every daemon pod gets, tolerates its NoSchedule and
//! NoExecute taints (Kubernetes' `NodeShouldRunDaemonPod`; resources are not considered). A pod
//! already running may stay on a node whose NoSchedule taints it does not tolerate.
//!
//! Pods are created with `generateName: <set>-` and a required node affinity on
//! `metadata.name` naming their node, so the normal scheduler binds them there. One
//! [`reconcile`] call returns a [`Plan`]: pods to create and delete (extra pods on a node, pods on
//! nodes no longer eligible or gone, failed pods), the rolling update's deletions (or, with
//! maxSurge, its early creations), the complete status and the events.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tug_k8s::intstr;
use tug_k8s::nodeaffinity::NodeTerm;
use tug_k8s::taints;

use crate::events::Note;
use crate::pods;

/// The label carrying the hash of the template the pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label carrying the template generation the pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The annotation Kubernetes' API server keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// A failed pod younger than this is left alone for a while, so a node that keeps rejecting
/// the pod does not make the controller loop (Kubernetes keeps a per-node backoff instead).
const FAILED_POD_MIN_AGE: Duration = Duration::from_secs(10);

/// Everything the controller observed for one DaemonSet.
#[derive(Debug)]
pub struct Observed<'a> {
    pub set: &'a DaemonSet,
    /// Every node of the cluster.
    pub nodes: Vec<&'a Node>,
    /// Pods whose controller ownerReference is the set, including failed and deleting ones.
    pub pods: Vec<&'a Pod>,
    pub now: Timestamp,
}

/// One write: a pod with `generateName`, pinned to its node by node affinity, or a deletion with
/// a uid precondition.
pub type Action = crate::runtime::PodAction;

/// What to do now for one DaemonSet. Create events name the pod by its generateName prefix
/// ("Created pod: web-"): the loop, which learns the name the server gave, reports its own.
pub type Plan = crate::runtime::Plan<Action, DaemonSetStatus>;

/// The hash of the set's template, the pods' `controller-revision-hash`.
pub fn revision_hash(set: &DaemonSet) -> String {
    let collisions = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    pods::template_hash(&template, Some(collisions))
}

/// Kubernetes' `AddOrUpdateDaemonPodTolerations`: daemon pods tolerate nodes that are not
/// ready, unreachable, under pressure or cordoned (and without network, for host-network pods).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Toleration::default()
        };
        // The same key, operator, value and effect is replaced (dropping tolerationSeconds).
        let same = |t: &Toleration| {
            t.key == toleration.key
                && t.effect == toleration.effect
                && t.operator.as_deref().unwrap_or("Equal") == "Exists"
                && t.value.as_deref().unwrap_or_default().is_empty()
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = toleration,
            None => tolerations.push(toleration),
        }
    }
}

/// Kubernetes' `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity becomes a
/// single term `metadata.name In [node]`; preferred terms and pod (anti-)affinity stay.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(NodeSelector { node_selector_terms: vec![term] });
    affinity
}

/// The node a daemon pod is for: its spec.nodeName, else the `metadata.name In [node]` term of
/// its required node affinity (Kubernetes' `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let required =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    let field = required
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")?;
    match field.values.as_deref() {
        Some([node]) => Some(node.as_str()),
        _ => None,
    }
}

/// Whether a daemon pod should run on a node, and whether one already there may keep running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub should_run: bool,
    pub should_continue_running: bool,
}

/// Kubernetes' `NodeShouldRunDaemonPod` for the set's template on `node`.
pub fn node_should_run(set: &DaemonSet, node: &Node) -> Verdict {
    Placement::of(set).verdict(node)
}

/// The template's placement rules, compiled once with the scheduler's matchers.
struct Placement {
    node_name: Option<String>,
    node_selector: BTreeMap<String, String>,
    /// `None`: no required node affinity; `Some(terms)`: one must match.
    required: Option<Vec<NodeTerm>>,
    tolerations: Vec<taints::Toleration>,
}

impl Placement {
    fn of(set: &DaemonSet) -> Placement {
        let mut spec = set.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default();
        add_daemon_tolerations(&mut spec);
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|s| s.node_selector_terms.iter().map(NodeTerm::new).collect());
        Placement {
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required,
            tolerations: spec.tolerations.iter().flatten().map(taints::Toleration::from).collect(),
        }
    }

    fn verdict(&self, node: &Node) -> Verdict {
        const NEVER: Verdict = Verdict { should_run: false, should_continue_running: false };
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if self.node_name.as_deref().is_some_and(|n| n != name) {
            return NEVER;
        }
        static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        let selector_matches = self.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v));
        let affinity_matches = self.required.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(labels, name)));
        if !selector_matches || !affinity_matches {
            return NEVER;
        }
        let untolerated = |effects: &[&str]| {
            node.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten().any(|t| {
                let taint = taints::Taint::from(t);
                effects.contains(&taint.effect.as_str()) && !self.tolerations.iter().any(|tol| tol.tolerates(&taint))
            })
        };
        if untolerated(&["NoSchedule", "NoExecute"]) {
            return Verdict { should_run: false, should_continue_running: !untolerated(&["NoExecute"]) };
        }
        Verdict { should_run: true, should_continue_running: true }
    }
}

/// Decides what to do for one DaemonSet; see the module documentation.
pub fn reconcile(observed: &Observed) -> Plan {
    let set = observed.set;
    let unchanged = || set.status.clone().unwrap_or_default();
    if pods::is_deleting(&set.metadata) {
        return Plan { actions: vec![], status: unchanged(), events: vec![], requeue_after: None };
    }
    let selector = set.spec.as_ref().map(|s| &s.selector);
    let selects_all = selector.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    if selects_all {
        let event =
            Note::warning("SelectingAll", "This daemon set is selecting all pods. A non-empty selector is required.");
        return Plan { actions: vec![], status: unchanged(), events: vec![event], requeue_after: None };
    }
    let view = SetView::new(observed);
    let mut out = Out::default();
    view.manage(&mut out);
    // As Kubernetes, the rolling update waits until the pods the core loop creates or deletes
    // are seen.
    if out.actions.is_empty() && !view.on_delete {
        view.rolling_update(&mut out);
    }
    let status = view.status(&mut out);
    Plan { actions: out.actions, status, events: out.events, requeue_after: out.requeue_after }
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
        let after = after.max(Duration::from_millis(1));
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

/// The set's spec with Kubernetes' defaults applied, and what was observed alongside it.
struct SetView<'a> {
    set: &'a DaemonSet,
    name: &'a str,
    namespace: &'a str,
    hash: String,
    generation: Option<i64>,
    min_ready_seconds: i32,
    on_delete: bool,
    max_surge: Option<&'a IntOrString>,
    max_unavailable: Option<&'a IntOrString>,
    /// Every node by name, with its verdict.
    nodes: BTreeMap<&'a str, Verdict>,
    /// The pods by the node they are for (pods both finished and being deleted left out).
    node_pods: BTreeMap<&'a str, Vec<&'a Pod>>,
    now: Timestamp,
}

impl<'a> SetView<'a> {
    fn new(observed: &Observed<'a>) -> SetView<'a> {
        let set = observed.set;
        let spec = set.spec.as_ref();
        let strategy = spec.and_then(|s| s.update_strategy.as_ref());
        let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
        let placement = Placement::of(set);
        let nodes = observed
            .nodes
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, placement.verdict(n))))
            .collect::<BTreeMap<_, _>>();
        let mut node_pods: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
        for pod in &observed.pods {
            if pods::is_terminal(pod) && pods::is_deleting(&pod.metadata) {
                continue;
            }
            if let Some(node) = target_node(pod) {
                node_pods.entry(node).or_default().push(pod);
            }
        }
        for list in node_pods.values_mut() {
            list.sort_by(|a, b| creation_order(a, b));
        }
        // The API server keeps the template generation in an annotation; without it (an object
        // that did not come through such a server) the object's generation stands in.
        let generation = set
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
            .and_then(|g| g.parse().ok())
            .or(set.metadata.generation);
        SetView {
            set,
            name: set.metadata.name.as_deref().unwrap_or_default(),
            namespace: set.metadata.namespace.as_deref().unwrap_or("default"),
            hash: revision_hash(set),
            generation,
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            on_delete: strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete"),
            max_surge: rolling.and_then(|r| r.max_surge.as_ref()),
            max_unavailable: rolling.and_then(|r| r.max_unavailable.as_ref()),
            nodes,
            node_pods,
            now: observed.now,
        }
    }

    /// Kubernetes' `IsPodUpdated`: made from the current template (by hash or generation).
    fn is_updated(&self, pod: &Pod) -> bool {
        let labels = pod.metadata.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
        label(REVISION_LABEL) == Some(self.hash.as_str())
            || self.generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()))
    }

    fn is_available(&self, pod: &Pod) -> bool {
        pods::is_available(pod, self.min_ready_seconds, self.now)
    }

    fn verdict(&self, node: &str) -> Verdict {
        self.nodes.get(node).copied().unwrap_or(Verdict { should_run: false, should_continue_running: false })
    }

    /// maxSurge and maxUnavailable for `desired` nodes, percentages rounded up; both zero means
    /// maxUnavailable 1, as Kubernetes.
    fn surge_and_unavailable(&self, desired: i32) -> (i32, i32) {
        let surge = scaled(self.max_surge, desired, 0);
        let unavailable = scaled(self.max_unavailable, desired, 1);
        if desired > 0 && surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
    }

    /// Kubernetes' `AllowsSurge`: a non-zero maxSurge (a percentage of one node).
    fn allows_surge(&self) -> bool {
        !self.on_delete && scaled(self.max_surge, 1, 0) != 0
    }

    /// The core loop: a pod on every node that should run one, none elsewhere, no extras.
    fn manage(&self, out: &mut Out) {
        let mut create_on: Vec<&str> = Vec::new();
        let mut delete: Vec<&Pod> = Vec::new();
        for (&node, verdict) in &self.nodes {
            let on_node = self.node_pods.get(node);
            if verdict.should_run && on_node.is_none() {
                create_on.push(node);
            } else if verdict.should_continue_running {
                let running = self.prune_finished(node, on_node.map_or(&[][..], Vec::as_slice), &mut delete, out);
                self.prune_extras(&running, &mut delete);
            } else if let Some(list) = on_node {
                delete.extend(list.iter().filter(|p| !pods::is_deleting(&p.metadata)));
            }
        }
        // Pods for nodes that no longer exist (Kubernetes leaves bound ones to pod GC).
        for (node, list) in &self.node_pods {
            if !self.nodes.contains_key(node) {
                delete.extend(list.iter().filter(|p| !pods::is_deleting(&p.metadata)));
            }
        }
        self.create_on(&create_on, out);
        self.delete(&delete, out);
    }

    /// Deletes the node's failed and succeeded pods; returns those still running (in creation
    /// order), skipping pods being deleted.
    fn prune_finished(
        &self,
        node: &str,
        on_node: &[&'a Pod],
        delete: &mut Vec<&'a Pod>,
        out: &mut Out,
    ) -> Vec<&'a Pod> {
        let mut running = Vec::new();
        for pod in on_node {
            if pods::is_deleting(&pod.metadata) {
                continue;
            }
            match pods::phase(pod) {
                "Failed" => {
                    let created = pod.metadata.creation_timestamp.as_ref().map_or(Timestamp::MIN, |t| t.0);
                    let age = self.now.duration_since(created);
                    let min_age = jiff::SignedDuration::try_from(FAILED_POD_MIN_AGE).unwrap_or_default();
                    if age < min_age {
                        out.wake_in(Duration::try_from(min_age - age).unwrap_or(FAILED_POD_MIN_AGE));
                        continue;
                    }
                    out.events.push(Note::warning(
                        "FailedDaemonPod",
                        format!(
                            "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                            self.namespace,
                            pod.metadata.name.as_deref().unwrap_or_default()
                        ),
                    ));
                    delete.push(pod);
                }
                "Succeeded" => delete.push(pod),
                _ => running.push(*pod),
            }
        }
        running
    }

    /// More than one running pod on a node: keep the oldest; while surging, keep at most the
    /// oldest updated pod and the oldest old one, the old one until the new one is available.
    fn prune_extras(&self, running: &[&'a Pod], delete: &mut Vec<&'a Pod>) {
        if running.len() <= 1 {
            return;
        }
        if !self.allows_surge() {
            delete.extend(&running[1..]);
            return;
        }
        let (mut oldest_new, mut oldest_old) = (None, None);
        for pod in running {
            let slot = if self.is_updated(pod) { &mut oldest_new } else { &mut oldest_old };
            if slot.is_none() {
                *slot = Some(*pod);
            } else {
                delete.push(pod);
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old)
            && (!pods::is_ready(old) || self.is_available(new))
        {
            delete.push(old);
        }
    }

    /// Kubernetes' `rollingUpdate`: replaces old pods while at most maxUnavailable nodes lack an
    /// available pod (or, with maxSurge, starts new pods beside old ones first).
    fn rolling_update(&self, out: &mut Out) {
        let mut by_node: BTreeMap<&str, &[&'a Pod]> =
            self.node_pods.iter().map(|(node, list)| (*node, list.as_slice())).collect();
        let mut desired = 0;
        for (node, verdict) in &self.nodes {
            if verdict.should_run {
                desired += 1;
                by_node.entry(node).or_insert(&[]);
            }
        }
        let (max_surge, max_unavailable) = self.surge_and_unavailable(desired);
        if max_surge == 0 {
            self.replace_without_surge(&by_node, max_unavailable, out);
        } else {
            self.replace_with_surge(&by_node, max_surge, desired, out);
        }
    }

    fn replace_without_surge(&self, by_node: &BTreeMap<&str, &[&'a Pod]>, max_unavailable: i32, out: &mut Out) {
        let mut unavailable = 0;
        let mut replace: Vec<&Pod> = Vec::new();
        let mut candidates: Vec<&Pod> = Vec::new();
        for list in by_node.values() {
            match self.new_and_old(list) {
                Some((Some(new), None)) => unavailable += i32::from(!self.is_available(new)),
                Some((None, Some(old))) if !self.is_available(old) => {
                    replace.push(old);
                    unavailable += 1;
                }
                Some((None, Some(old))) if unavailable < max_unavailable => candidates.push(old),
                Some((None, Some(_))) => {}
                // Nothing, both, or several: the core loop sorts the node out; it counts as down.
                _ => unavailable += 1,
            }
        }
        let room = usize::try_from(max_unavailable - unavailable).unwrap_or(0).min(candidates.len());
        replace.extend(&candidates[..room]);
        self.delete(&replace, out);
    }

    fn replace_with_surge(&self, by_node: &BTreeMap<&str, &[&'a Pod]>, max_surge: i32, desired: i32, out: &mut Out) {
        let mut delete: Vec<&Pod> = Vec::new();
        let mut not_wanted: Vec<&Pod> = Vec::new();
        let mut allowed: Vec<&str> = Vec::new();
        let mut candidates: Vec<&str> = Vec::new();
        let (mut surging, mut available) = (0, 0);
        for (&node, list) in by_node {
            let Some((new, old)) = self.new_and_old(list) else {
                surging += 1;
                continue;
            };
            if let Some(pod) = old.or(new) {
                available += i32::from(self.is_available(pod));
            }
            let should_run = self.verdict(node).should_run;
            match (new, old) {
                (_, None) => {}
                (None, Some(old)) if !self.is_available(old) => {
                    if should_run {
                        allowed.push(node);
                    } else {
                        delete.push(old);
                    }
                }
                (None, Some(old)) if !should_run => not_wanted.push(old),
                (None, Some(_)) if surging < max_surge => candidates.push(node),
                (None, Some(_)) => {}
                (Some(new), Some(_)) if !self.is_available(new) => surging += 1,
                (Some(_), Some(old)) => delete.push(old),
            }
        }
        // Pods on nodes that should no longer run one go only as others become available.
        let deletable = usize::try_from(available - desired).unwrap_or(0).min(not_wanted.len());
        delete.extend(&not_wanted[..deletable]);
        let room = usize::try_from(max_surge - surging).unwrap_or(0).min(candidates.len());
        allowed.extend(&candidates[..room]);
        self.create_on(&allowed, out);
        self.delete(&delete, out);
    }

    /// Kubernetes' `findUpdatedPodsOnNode`: the node's one updated and one old pod (either may be
    /// missing), ignoring pods being deleted; `None` when there are two of a kind.
    fn new_and_old(&self, list: &[&'a Pod]) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
        let (mut new, mut old) = (None, None);
        for pod in list.iter().filter(|p| !pods::is_deleting(&p.metadata)) {
            let slot = if self.is_updated(pod) { &mut new } else { &mut old };
            if slot.replace(*pod).is_some() {
                return None;
            }
        }
        Some((new, old))
    }

    /// The status as Kubernetes' `updateDaemonSetStatus` counts it, from the pods observed.
    fn status(&self, out: &mut Out) -> DaemonSetStatus {
        let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0, 0);
        for (node, verdict) in &self.nodes {
            let first = self.node_pods.get(node).and_then(|list| list.first());
            if !verdict.should_run {
                misscheduled += i32::from(first.is_some());
                continue;
            }
            desired += 1;
            let Some(pod) = first else { continue };
            current += 1;
            if pods::is_ready(pod) {
                ready += 1;
                if self.is_available(pod) {
                    available += 1;
                } else if let Some(at) = pods::available_at(pod, self.min_ready_seconds) {
                    out.wake_in(Duration::try_from(at.duration_since(self.now)).unwrap_or_default());
                }
            }
            updated += i32::from(self.is_updated(pod));
        }
        let previous = self.set.status.as_ref();
        DaemonSetStatus {
            collision_count: previous.and_then(|s| s.collision_count),
            conditions: previous.and_then(|s| s.conditions.clone()),
            current_number_scheduled: current,
            desired_number_scheduled: desired,
            number_available: nonzero(available),
            number_misscheduled: misscheduled,
            number_ready: ready,
            number_unavailable: nonzero(desired - available),
            observed_generation: self.set.metadata.generation,
            updated_number_scheduled: nonzero(updated),
        }
    }

    fn create_on(&self, nodes: &[&str], out: &mut Out) {
        for node in nodes {
            let pod = self.new_pod(node);
            out.events.push(Note::normal(
                "SuccessfulCreate",
                format!("Created pod: {}", pod.metadata.generate_name.as_deref().unwrap_or_default()),
            ));
            out.actions.push(Action::CreatePod(pod));
        }
    }

    fn delete(&self, doomed: &[&Pod], out: &mut Out) {
        for pod in doomed {
            let name = pod.metadata.name.clone().unwrap_or_default();
            out.events.push(Note::normal("SuccessfulDelete", format!("Deleted pod: {name}")));
            out.actions.push(Action::DeletePod { name, uid: pod.metadata.uid.clone().unwrap_or_default() });
        }
    }

    /// The daemon pod for `node`: the template with the daemon tolerations, the revision labels
    /// and a required affinity to the node.
    fn new_pod(&self, node: &str) -> Pod {
        let mut template = self.set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let spec = template.spec.get_or_insert_with(PodSpec::default);
        add_daemon_tolerations(spec);
        spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
        let labels = template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new);
        if let Some(generation) = self.generation {
            labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
        }
        labels.insert(REVISION_LABEL.into(), self.hash.clone());
        let owner = pods::controller_ref("apps/v1", "DaemonSet", &self.set.metadata);
        pods::pod_from_template(&template, self.namespace, owner, None, &pods::generate_name_prefix(self.name))
    }
}

/// Kubernetes' `podByCreationTimestampAndPhase`: pods on a node first, then oldest, then by name.
fn creation_order(a: &Pod, b: &Pod) -> Ordering {
    let unbound = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty);
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    unbound(a)
        .cmp(&unbound(b))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// An int-or-percent of `total` (`tug_k8s::intstr`), percentages rounded up, never negative;
/// `default` when absent or malformed.
fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    value.map_or(Ok(default), |v| intstr::scaled_value(v, total.max(0), true)).map_or(default, |n| n.max(0))
}

/// Kubernetes omits zero counts from the status (`omitempty`).
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
    use k8s_openapi::api::core::v1::{Container, NodeSpec, PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn set_with(image: &str) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                uid: Some("ds-uid".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector { match_labels: Some(labels(&[("app", "agent")])), match_expressions: None },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(labels(&[("app", "agent")])), ..ObjectMeta::default() }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some(image.into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..DaemonSetSpec::default()
            }),
            status: None,
        }
    }

    fn set() -> DaemonSet {
        set_with("agent:1")
    }

    fn template_spec(s: &mut DaemonSet) -> &mut PodSpec {
        s.spec.as_mut().unwrap().template.spec.as_mut().unwrap()
    }

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels(&[("disk", "ssd")])),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: None,
        }
    }

    fn tainted(mut n: Node, key: &str, effect: &str) -> Node {
        n.spec
            .get_or_insert_with(NodeSpec::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(k8s_openapi::api::core::v1::Taint { key: key.into(), effect: effect.into(), ..Default::default() });
        n
    }

    /// A pod of `s` on `node`, created at `created`, Ready since `ready_at` if given.
    fn pod(s: &DaemonSet, name: &str, node: &str, created: i64, ready_at: Option<i64>, hash: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(&[("app", "agent"), (REVISION_LABEL, hash)])),
                creation_timestamp: Some(Time(at(created))),
                owner_references: Some(vec![pods::controller_ref("apps/v1", "DaemonSet", &s.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
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

    fn ready(s: &DaemonSet, name: &str, node: &str) -> Pod {
        pod(s, name, node, 0, Some(0), &revision_hash(s))
    }

    fn with_phase(mut p: Pod, phase: &str) -> Pod {
        p.status.as_mut().unwrap().phase = Some(phase.into());
        p
    }

    fn deleting(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(at(50)));
        p
    }

    fn run(s: &DaemonSet, nodes: &[Node], pods: &[Pod]) -> Plan {
        run_at(s, nodes, pods, 100)
    }

    fn run_at(s: &DaemonSet, nodes: &[Node], pods: &[Pod], now: i64) -> Plan {
        reconcile(&Observed { set: s, nodes: nodes.iter().collect(), pods: pods.iter().collect(), now: at(now) })
    }

    /// "+node" for a pod created for that node, "-name" for a deletion.
    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::CreatePod(p) => format!("+{}", target_node(p).unwrap()),
                Action::DeletePod { name, .. } => format!("-{name}"),
            })
            .collect()
    }

    #[test]
    fn eligibility_follows_node_should_run_daemon_pod() {
        let mut by_selector = set();
        template_spec(&mut by_selector).node_selector = Some(labels(&[("disk", "ssd")]));
        let mut by_affinity = set();
        template_spec(&mut by_affinity).affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "disk".into(),
                            operator: "In".into(),
                            values: Some(vec!["hdd".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
        let mut named = set();
        template_spec(&mut named).node_name = Some("other".into());
        let mut host_network = set();
        template_spec(&mut host_network).host_network = Some(true);
        let v = |run, keep| Verdict { should_run: run, should_continue_running: keep };
        let cases = [
            ("plain node", set(), node("a"), v(true, true)),
            ("node selector matches", by_selector, node("a"), v(true, true)),
            ("required affinity does not match", by_affinity, node("a"), v(false, false)),
            ("template names another node", named, node("a"), v(false, false)),
            ("untolerated NoSchedule: keep running", set(), tainted(node("a"), "gpu", "NoSchedule"), v(false, true)),
            ("untolerated NoExecute: go", set(), tainted(node("a"), "gpu", "NoExecute"), v(false, false)),
            ("PreferNoSchedule ignored", set(), tainted(node("a"), "gpu", "PreferNoSchedule"), v(true, true)),
            ("cordoned", set(), tainted(node("a"), "node.kubernetes.io/unschedulable", "NoSchedule"), v(true, true)),
            ("not ready", set(), tainted(node("a"), "node.kubernetes.io/not-ready", "NoExecute"), v(true, true)),
            (
                "no network, ordinary pod",
                set(),
                tainted(node("a"), "node.kubernetes.io/network-unavailable", "NoSchedule"),
                v(false, true),
            ),
            (
                "no network, host-network pod",
                host_network,
                tainted(node("a"), "node.kubernetes.io/network-unavailable", "NoSchedule"),
                v(true, true),
            ),
        ];
        for (name, s, n, want) in cases {
            assert_eq!(node_should_run(&s, &n), want, "{name}");
        }
    }

    #[test]
    fn one_pod_is_created_per_eligible_node_pinned_by_affinity() {
        let mut s = set();
        template_spec(&mut s).tolerations = Some(vec![Toleration {
            key: Some("node.kubernetes.io/not-ready".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            ..Toleration::default()
        }]);
        let nodes = [node("a"), tainted(node("b"), "gpu", "NoSchedule"), node("c")];
        let plan = run(&s, &nodes, &[]);
        assert_eq!(summary(&plan), ["+a", "+c"]);
        let Action::CreatePod(p) = &plan.actions[0] else { panic!() };
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(p.metadata.name, None);
        assert_eq!(p.metadata.namespace.as_deref(), Some("kube-system"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l["app"], "agent");
        assert_eq!(l[REVISION_LABEL], revision_hash(&s));
        assert_eq!(l[TEMPLATE_GENERATION_LABEL], "1");
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("DaemonSet", "ds-uid", Some(true)));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name, None, "the scheduler binds it");
        let tolerations = spec.tolerations.as_ref().unwrap();
        assert_eq!(tolerations.len(), 6, "the defaults, the user's not-ready one replaced");
        assert!(tolerations.iter().all(|t| t.operator.as_deref() == Some("Exists") && t.toleration_seconds.is_none()));
        let required = spec.affinity.as_ref().unwrap().node_affinity.as_ref().unwrap();
        let terms = &required.required_during_scheduling_ignored_during_execution.as_ref().unwrap().node_selector_terms;
        assert_eq!(terms.len(), 1);
        let field = &terms[0].match_fields.as_ref().unwrap()[0];
        assert_eq!((field.key.as_str(), field.operator.as_str()), ("metadata.name", "In"));
        assert_eq!(field.values.as_deref(), Some(&["a".to_string()][..]));
        assert_eq!(plan.events[0].message, "Created pod: agent-");
        assert_eq!(plan.events[0].reason, "SuccessfulCreate");
    }

    #[test]
    fn the_core_loop_keeps_exactly_one_pod_per_eligible_node() {
        let s = set();
        let h = revision_hash(&s);
        let nodes = [node("a"), node("b"), tainted(node("c"), "gpu", "NoExecute")];
        let mut unbound = pod(&s, "agent-u", "a", 0, None, &h);
        unbound.spec = Some(PodSpec { affinity: Some(pin_to_node(None, "b")), ..PodSpec::default() });
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            ("all there", vec![ready(&s, "agent-1", "a"), ready(&s, "agent-2", "b")], vec![]),
            ("missing on b", vec![ready(&s, "agent-1", "a")], vec!["+b"]),
            ("an unscheduled pod counts for its node", vec![ready(&s, "agent-1", "a"), unbound], vec![]),
            (
                "the newer of two goes",
                vec![ready(&s, "agent-1", "a"), pod(&s, "agent-3", "a", 5, Some(5), &h), ready(&s, "agent-2", "b")],
                vec!["-agent-3"],
            ),
            (
                "a pod being deleted is not replaced yet",
                vec![deleting(ready(&s, "agent-1", "a")), ready(&s, "agent-2", "b")],
                vec![],
            ),
            (
                "a node no longer eligible",
                vec![ready(&s, "agent-1", "a"), ready(&s, "agent-2", "b"), ready(&s, "agent-3", "c")],
                vec!["-agent-3"],
            ),
            (
                "a node that is gone",
                vec![ready(&s, "agent-1", "a"), ready(&s, "agent-2", "b"), ready(&s, "agent-9", "zz")],
                vec!["-agent-9"],
            ),
        ];
        for (name, pods, want) in cases {
            assert_eq!(summary(&run(&s, &nodes, &pods)), want, "{name}");
        }
        let plan = run(&s, &nodes, &[ready(&s, "agent-1", "a"), ready(&s, "agent-2", "b"), ready(&s, "agent-3", "c")]);
        assert_eq!(plan.events[0].message, "Deleted pod: agent-3");
    }

    #[test]
    fn a_failed_pod_is_deleted_after_a_pause_and_replaced_once_gone() {
        let s = set();
        let nodes = [node("a")];
        let failed = |created| with_phase(pod(&s, "agent-1", "a", created, None, &revision_hash(&s)), "Failed");
        let plan = run_at(&s, &nodes, &[failed(96)], 100);
        assert!(plan.actions.is_empty(), "too young: wait");
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(6)));
        let plan = run_at(&s, &nodes, &[failed(50)], 100);
        assert_eq!(summary(&plan), ["-agent-1"]);
        assert!(plan.events[0].warning);
        assert_eq!(
            plan.events[0].message,
            "Found failed daemon pod kube-system/agent-1 on node a, will try to kill it"
        );
        // Finished and being deleted counts as gone, as in Kubernetes: the replacement starts.
        assert_eq!(summary(&run(&s, &nodes, &[deleting(failed(50))])), ["+a"]);
        let running_but_deleting = deleting(pod(&s, "agent-1", "a", 0, Some(0), &revision_hash(&s)));
        assert!(run(&s, &nodes, &[running_but_deleting]).actions.is_empty(), "still running: wait for it");
    }

    fn rolling(mut s: DaemonSet, max_unavailable: Option<IntOrString>, max_surge: Option<IntOrString>) -> DaemonSet {
        s.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet { max_unavailable, max_surge }),
        });
        s
    }

    #[test]
    fn a_rolling_update_keeps_unavailable_nodes_within_max_unavailable() {
        let old = set();
        let o = revision_hash(&old);
        let nodes = [node("a"), node("b"), node("c"), node("d")];
        let all_old: Vec<Pod> =
            ["a", "b", "c", "d"].iter().map(|n| pod(&old, &format!("agent-{n}"), n, 0, Some(0), &o)).collect();
        let s = set_with("agent:2");
        let n = revision_hash(&s);
        for (max_unavailable, want) in [
            (None, vec!["-agent-a"]),
            (Some(IntOrString::Int(2)), vec!["-agent-a", "-agent-b"]),
            (Some(IntOrString::String("50%".into())), vec!["-agent-a", "-agent-b"]),
            (Some(IntOrString::String("10%".into())), vec!["-agent-a"]),
            (Some(IntOrString::Int(0)), vec!["-agent-a"]),
        ] {
            assert_eq!(
                summary(&run(&rolling(s.clone(), max_unavailable.clone(), None), &nodes, &all_old)),
                want,
                "{max_unavailable:?}"
            );
        }
        // One node updating (its new pod not ready yet): the budget of one is used.
        let mut pods = all_old.clone();
        pods[0] = pod(&s, "agent-a2", "a", 10, None, &n);
        assert!(run(&s, &nodes, &pods).actions.is_empty());
        // An old pod that is not available anyway is replaced regardless of the budget.
        pods[0] = pod(&s, "agent-a2", "a", 10, Some(10), &n);
        pods[3] = pod(&old, "agent-d", "d", 0, None, &o);
        assert_eq!(summary(&run(&s, &nodes, &pods)), ["-agent-d"]);
        // OnDelete never replaces.
        let mut on_delete = s.clone();
        on_delete.spec.as_mut().unwrap().update_strategy =
            Some(DaemonSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
        assert!(run(&on_delete, &nodes, &all_old).actions.is_empty());
        // While the core loop has work, the rolling update waits.
        assert_eq!(summary(&run(&s, &nodes, &all_old[..3])), ["+d"]);
    }

    #[test]
    fn with_max_surge_a_new_pod_starts_before_the_old_one_goes() {
        let old = set();
        let o = revision_hash(&old);
        let s = rolling(set_with("agent:2"), Some(IntOrString::Int(0)), Some(IntOrString::Int(1)));
        let n = revision_hash(&s);
        let nodes = [node("a"), node("b")];
        let old_a = pod(&old, "agent-a", "a", 0, Some(0), &o);
        let old_b = pod(&old, "agent-b", "b", 0, Some(0), &o);
        assert_eq!(summary(&run(&s, &nodes, &[old_a.clone(), old_b.clone()])), ["+a"]);
        let new_a = |ready| pod(&s, "agent-a2", "a", 10, ready, &n);
        assert!(run(&s, &nodes, &[old_a.clone(), new_a(None), old_b.clone()]).actions.is_empty(), "surge budget used");
        assert_eq!(summary(&run(&s, &nodes, &[old_a, new_a(Some(20)), old_b.clone()])), ["-agent-a"]);
        assert_eq!(summary(&run(&s, &nodes, &[new_a(Some(20)), old_b])), ["+b"]);
    }

    #[test]
    fn status_reports_what_kubectl_rollout_status_reads() {
        let old = set();
        let o = revision_hash(&old);
        let mut s = set_with("agent:2");
        s.metadata.generation = Some(2);
        s.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let n = revision_hash(&s);
        let nodes = [node("a"), node("b"), node("c"), tainted(node("d"), "gpu", "NoExecute")];
        let pods = [
            pod(&s, "agent-a", "a", 0, Some(0), &n),
            pod(&s, "agent-b", "b", 0, Some(90), &n),
            pod(&old, "agent-d", "d", 0, Some(0), &o),
        ];
        let st = run(&s, &nodes, &pods).status;
        assert_eq!(st.observed_generation, Some(2));
        assert_eq!(st.desired_number_scheduled, 3);
        assert_eq!(st.current_number_scheduled, 2);
        assert_eq!(st.number_misscheduled, 1);
        assert_eq!(st.number_ready, 2);
        assert_eq!(st.number_available, Some(1), "agent-b is ready for only 10s of 30");
        assert_eq!(st.number_unavailable, Some(2));
        assert_eq!(st.updated_number_scheduled, Some(2));
        let plan = run(&s, &nodes, &pods[..2]);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)), "woken when agent-b becomes available");
    }

    #[test]
    fn a_selector_selecting_everything_is_refused() {
        let mut s = set();
        s.spec.as_mut().unwrap().selector = LabelSelector::default();
        let plan = run(&s, &[node("a")], &[]);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.events[0].reason, "SelectingAll");
    }

    #[test]
    fn int_or_percent_rounds_up() {
        for (value, total, want) in [
            (None, 10, 7),
            (Some(IntOrString::Int(3)), 10, 3),
            (Some(IntOrString::String("25%".into())), 10, 3),
            (Some(IntOrString::String("100%".into())), 4, 4),
            (Some(IntOrString::String("0%".into())), 4, 0),
            (Some(IntOrString::String("bad".into())), 4, 7),
        ] {
            assert_eq!(scaled(value.as_ref(), total, 7), want, "{value:?}");
        }
    }

    #[test]
    fn a_rolling_update_converges_without_more_than_max_unavailable_nodes_down() {
        let nodes: Vec<Node> = (0..5).map(|i| node(&format!("n{i}"))).collect();
        let mut s = set();
        // Each pod with the round it was created in: it binds at once and is ready two rounds
        // later; deletions complete at once.
        let mut world: Vec<(Pod, i64)> = Vec::new();
        let mut next = 0;
        for round in 0..60 {
            if round == 10 {
                let status = s.status.clone();
                s = rolling(set_with("agent:2"), Some(IntOrString::Int(2)), None);
                s.status = status;
            }
            let pods: Vec<Pod> = world
                .iter()
                .map(|(p, created)| {
                    let mut p = p.clone();
                    if round - created < 2 {
                        p.status.as_mut().unwrap().conditions = None;
                    }
                    p
                })
                .collect();
            let plan = run_at(&s, &nodes, &pods, 100 + round);
            if round > 10 {
                let down = nodes.len() as i32 - plan.status.number_available.unwrap_or(0);
                assert!(down <= 2, "round {round}: {down} nodes without an available pod");
            }
            for action in &plan.actions {
                match action {
                    Action::CreatePod(p) => {
                        let mut p = p.clone();
                        next += 1;
                        p.metadata.name = Some(format!("agent-{next}"));
                        p.metadata.uid = Some(format!("uid-{next}"));
                        p.metadata.creation_timestamp = Some(Time(at(100 + round)));
                        p.spec.as_mut().unwrap().node_name = target_node(&p).map(str::to_string);
                        p.status = ready(&s, "x", "x").status;
                        world.push((p, round));
                    }
                    Action::DeletePod { name, .. } => world.retain(|(p, _)| p.metadata.name.as_ref() != Some(name)),
                }
            }
            s.status = Some(plan.status);
        }
        let st = s.status.unwrap();
        assert_eq!(st.updated_number_scheduled, Some(5));
        assert_eq!(st.number_available, Some(5));
        assert_eq!(world.len(), 5);
    }
}
