//! What every workload controller needs to know about pods, as Kubernetes' `controller` package
//! defines it: which pods count, which are ready or available, which to delete first, how a pod
//! is made from a template and who owns it. Pure functions, no IO.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use tug_k8s::labels::Selector;

/// The pod's phase, "" when not reported yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// Succeeded or Failed: the pod will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Being deleted (has a deletionTimestamp).
pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// Counts toward a controller's replicas: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_deleting(&pod.metadata)
}

/// The time the pod's Ready condition became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    // A Ready condition without a transition time counts as ready since forever.
    Some(ready.last_transition_time.as_ref().map_or(jiff::Timestamp::MIN, |t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

/// When a ready pod becomes available, if it is not yet (for requeueing at the right moment).
pub fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<jiff::Timestamp> {
    let since = ready_since(pod)?;
    since.saturating_add(jiff::SignedDuration::from_secs(i64::from(min_ready_seconds.max(0)))).ok()
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// Is `meta` controlled by the object with this uid?
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// The controller reference a workload puts on what it creates (blockOwnerDeletion set, as
/// Kubernetes' controllers do, so foreground deletion waits for the dependents).
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod made from a template: the template's labels, annotations, finalizers and spec, owned by
/// `owner`. The name is `name` when given, else generated from `generate_name` by the server.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
    name: Option<String>,
    generate_name: &str,
) -> Pod {
    let source = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: name.clone(),
            generate_name: if name.is_none() { Some(generate_name.to_string()) } else { None },
            namespace: Some(namespace.to_string()),
            labels: source.labels,
            annotations: source.annotations,
            finalizers: source.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The generateName prefix Kubernetes uses for a controller's pods: `<owner>-`, shortened so the
/// server's 5-character suffix keeps the name within 63 characters.
pub fn generate_name_prefix(owner_name: &str) -> String {
    const MAX_PREFIX: usize = 63 - 5;
    let mut prefix = format!("{owner_name}-");
    if prefix.len() > MAX_PREFIX {
        prefix.truncate(MAX_PREFIX);
    }
    prefix
}

/// A metav1.LabelSelector as a matcher (`metav1.LabelSelectorAsSelector`, from `tug-k8s`).
/// `None` for a malformed selector (unknown operator, or values where none are allowed), which
/// selects nothing, as Kubernetes treats it.
pub fn selector(selector: &LabelSelector) -> Option<Selector> {
    Selector::try_from_label_selector(selector)
}

/// Does a (possibly absent) metav1.LabelSelector select these labels? An absent or malformed
/// selector selects nothing; an empty one selects everything.
pub use tug_k8s::labels::selects;

/// A short, stable hash of a pod template, for `pod-template-hash` and `controller-revision-hash`
/// labels: FNV-1a over the template's JSON (fields in a fixed order), plus `collision_count` as
/// Kubernetes adds it, written in Kubernetes' "safe" alphabet (no vowels, so no words).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&json);
    if let Some(count) = collision_count {
        feed(&count.to_le_bytes());
    }
    safe_encode(&hash.to_string())
}

/// Kubernetes' `rand.SafeEncodeString`: maps every byte onto an alphabet without vowels or
/// look-alike characters.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

/// Kubernetes' order for "which pod goes first when scaling down" (`ActivePods` sort): pods not
/// yet on a node, then pending, unknown, running; not ready before ready; ready for a shorter
/// time first; more restarts first; newer first. `Less` means delete `a` before `b`.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    fn assigned(p: &Pod) -> bool {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
    }
    fn phase_rank(p: &Pod) -> u8 {
        match phase(p) {
            "Pending" | "" => 0,
            "Unknown" => 1,
            "Running" => 2,
            _ => 3,
        }
    }
    fn restarts(p: &Pod) -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
    }
    fn created(p: &Pod) -> Option<&Time> {
        p.metadata.creation_timestamp.as_ref()
    }
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        // Ready for less time goes first: the later "since" sorts first.
        .then_with(|| ready_since(b).cmp(&ready_since(a)))
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).map(|t| t.0).cmp(&created(a).map(|t| t.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    fn pod(node: Option<&str>, phase: &str, ready_at: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta::default(),
            spec: Some(PodSpec { node_name: node.map(str::to_string), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some(phase.to_string()),
                conditions: ready_at.map(|at| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(jiff::Timestamp::from_second(at).unwrap())),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod(Some("n"), "Running", Some(100));
        let at = |s| jiff::Timestamp::from_second(s).unwrap();
        assert!(is_available(&p, 0, at(100)));
        assert!(!is_available(&p, 10, at(109)));
        assert!(is_available(&p, 10, at(110)));
        assert!(!is_available(&pod(Some("n"), "Running", None), 0, at(200)));
        assert_eq!(available_at(&p, 10), Some(at(110)));
    }

    #[test]
    fn unplaced_pending_and_unready_pods_are_deleted_first() {
        let mut pods = [
            pod(Some("n"), "Running", Some(100)),
            pod(Some("n"), "Running", Some(200)),
            pod(Some("n"), "Running", None),
            pod(Some("n"), "Pending", None),
            pod(None, "Pending", None),
        ];
        pods.sort_by(deletion_order);
        let order: Vec<_> = pods
            .iter()
            .map(|p| (p.spec.as_ref().unwrap().node_name.is_some(), phase(p).to_string(), ready_since(p)))
            .collect();
        assert!(!order[0].0, "the unplaced pod goes first");
        assert_eq!(order[1].1, "Pending");
        assert_eq!(order[2].2, None, "then the running but unready one");
        assert_eq!(order[3].2, Some(jiff::Timestamp::from_second(200).unwrap()), "then the one ready for less time");
    }

    #[test]
    fn selectors_follow_kubernetes_rules() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let by_label = LabelSelector { match_labels: Some(labels.clone()), match_expressions: None };
        assert!(selects(Some(&by_label), Some(&labels)));
        assert!(!selects(Some(&by_label), None));
        assert!(selects(Some(&LabelSelector::default()), None), "empty selects everything");
        assert!(!selects(None, Some(&labels)), "absent selects nothing");
        let bad = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Exists".into(),
                values: Some(vec!["x".into()]),
            }]),
        };
        assert!(!selects(Some(&bad), Some(&labels)), "malformed selects nothing");
    }

    #[test]
    fn template_hash_is_stable_and_changes_with_the_template() {
        let a = PodTemplateSpec::default();
        let b = PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("v".into(), "2".into())].into()), ..ObjectMeta::default() }),
            ..PodTemplateSpec::default()
        };
        assert_eq!(template_hash(&a, None), template_hash(&a, None));
        assert_ne!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        assert!(template_hash(&a, None).chars().all(|c| !"aeiou".contains(c)));
    }
}
