//! The EndpointSlice reconciler, Kubernetes' `endpointslice` reconciler step for step: from a
//! Service, the pods it selects and the slices it has, which slices to create, update and delete.
//!
//! - Endpoints are grouped by their resolved port set (a named target port may resolve to
//!   different numbers on different pods, or not at all): one group of slices per port set.
//! - Within a group, churn is kept low: existing slices keep the endpoints still wanted (updated
//!   in place when their conditions changed), slices that changed anyway are filled up first
//!   (fullest first), then the rest goes into the unchanged slice it fits best, and only then
//!   into new slices of at most `max_per_slice` endpoints.
//! - A slice that would be deleted while another is created is updated into it instead.
//! - A Service without endpoints keeps one empty placeholder slice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::members::{self, hostname, ipv4, publishes_not_ready, target_ref};
use crate::pods;
use crate::runtime;

/// Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The managed-by value of the slices made here (Kubernetes' own, so tools that look for it
/// find them).
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Only IPv4 pod networks exist here.
pub const ADDRESS_TYPE: &str = "IPv4";
/// How soon a Service is looked at again when a pod's node is not known yet.
pub const UNKNOWN_NODE_RETRY: Duration = Duration::from_secs(1);

/// What the reconciler sees of one Service.
#[derive(Debug)]
pub struct Observed<'a> {
    pub service: &'a Service,
    /// The pods its selector matches, in any state.
    pub pods: Vec<&'a Pod>,
    /// The slices labelled as this Service's and managed here.
    pub slices: Vec<&'a EndpointSlice>,
    /// The zone of every known node (`None`: no zone label). A node not in it is unknown.
    pub zones: &'a HashMap<String, Option<String>>,
    pub max_per_slice: usize,
}

/// One slice write.
// Plans are short-lived; the full objects keep the shape every core shares.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SliceAction {
    /// A new slice (`generateName: <service>-`).
    Create(EndpointSlice),
    /// The slice as it should be, with the resourceVersion it was computed from.
    Update(EndpointSlice),
    Delete {
        name: String,
        uid: String,
    },
}

pub type Plan = runtime::Plan<SliceAction, ()>;

/// A port set, comparable whatever the order (Kubernetes' `PortMapKey`).
type PortKey = Vec<(String, i32, String, String)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            let text = |s: &Option<String>| s.clone().unwrap_or_default();
            (text(&p.name), p.port.unwrap_or_default(), text(&p.protocol), text(&p.app_protocol))
        })
        .collect();
    key.sort();
    key
}

/// What identifies an endpoint across updates (Kubernetes' endpoint hash: addresses, hostname
/// and the pod it stands for). Ordered by pod, so plans are deterministic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EndpointKey {
    namespace: String,
    name: String,
    addresses: Vec<String>,
    hostname: Option<String>,
}

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let target = e.target_ref.as_ref();
    let mut addresses = e.addresses.clone();
    addresses.sort();
    EndpointKey {
        namespace: target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        name: target.and_then(|t| t.name.clone()).unwrap_or_default(),
        addresses,
        hostname: e.hostname.clone(),
    }
}

/// Kubernetes' `EndpointsEqualBeyondHash`: the same endpoint in the same state (the target's
/// resourceVersion aside).
fn same_endpoint(a: &Endpoint, b: &Endpoint) -> bool {
    let target = |e: &Endpoint| {
        e.target_ref.as_ref().map(|t| (t.kind.clone(), t.namespace.clone(), t.name.clone(), t.uid.clone()))
    };
    let conditions = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
    endpoint_key(a) == endpoint_key(b)
        && conditions(a) == conditions(b)
        && a.zone == b.zone
        && a.node_name == b.node_name
        && a.hints == b.hints
        && target(a) == target(b)
}

/// The ports a pod serves the Service on (Kubernetes' `getEndpointPorts`): a service port whose
/// named target the pod does not have is left out.
pub fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    ports
        .iter()
        .filter_map(|port| {
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(members::find_port(pod, port)?),
                protocol: Some(members::protocol(port).to_string()),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// A pod as an endpoint (Kubernetes' `podToEndpoint`). Ready means serving and not terminating,
/// unless the Service publishes not-ready addresses.
pub fn endpoint(service: &Service, pod: &Pod, zone: Option<&str>) -> Endpoint {
    let serving = pods::is_ready(pod);
    let terminating = pods::is_deleting(&pod.metadata);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    Endpoint {
        addresses: ipv4(pod).map(|ip| vec![ip.to_string()]).unwrap_or_default(),
        conditions: Some(EndpointConditions {
            ready: Some(publishes_not_ready(service) || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(pod, service),
        node_name: node,
        target_ref: Some(target_ref(pod)),
        zone: zone.map(str::to_string),
        ..Endpoint::default()
    }
}

/// The labels a slice of this Service carries: the Service's own, then the reserved ones.
pub fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let reserved = |k: &str| k == SERVICE_NAME_LABEL || k == MANAGED_BY_LABEL || k == HEADLESS_LABEL;
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if members::is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.into(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

/// A new, empty slice of the Service with these ports.
pub fn new_slice(service: &Service, ports: Vec<EndpointPort>) -> EndpointSlice {
    let meta = &service.metadata;
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", meta.name.as_deref().unwrap_or_default())),
            namespace: meta.namespace.clone(),
            labels: Some(slice_labels(service)),
            owner_references: Some(vec![pods::controller_ref("v1", "Service", meta)]),
            ..ObjectMeta::default()
        },
        address_type: ADDRESS_TYPE.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.kind == "Service" && r.api_version == "v1")
}

fn is_placeholder(slice: &EndpointSlice, service: &Service) -> bool {
    slice.address_type == ADDRESS_TYPE
        && slice.endpoints.is_empty()
        && slice.ports.as_deref().unwrap_or_default().is_empty()
        && slice.metadata.labels.as_ref() == Some(&slice_labels(service))
}

/// The pure core (Kubernetes' `reconcile` and `finalize`).
pub fn reconcile(o: &Observed) -> Plan {
    let service = o.service;
    let mut plan = Plan::status(());
    let mut deletes: Vec<&EndpointSlice> = Vec::new();
    let mut existing: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in &o.slices {
        if slice.address_type == ADDRESS_TYPE && owned_by(slice, service) {
            existing.entry(port_key(slice.ports.as_deref().unwrap_or_default())).or_default().push(slice);
        } else {
            deletes.push(slice);
        }
    }

    let mut desired: BTreeMap<PortKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> = BTreeMap::new();
    for pod in &o.pods {
        if !members::should_be_in_endpoints(pod, true) {
            continue;
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
        let zone = match o.zones.get(node) {
            Some(zone) => zone.as_deref(),
            // A node not seen yet: left out (unless every address is published) and looked at
            // again soon, so a pod naming a node that never comes cannot hold the slices up.
            None if publishes_not_ready(service) => None,
            None => {
                plan.requeue_after = Some(UNKNOWN_NODE_RETRY);
                continue;
            }
        };
        let ports = endpoint_ports(service, pod);
        let group = desired.entry(port_key(&ports)).or_insert_with(|| (ports, BTreeMap::new()));
        let endpoint = endpoint(service, pod, zone);
        group.1.insert(endpoint_key(&endpoint), endpoint);
    }

    let (mut creates, mut updates) = (Vec::new(), Vec::new());
    for (key, (ports, endpoints)) in desired.iter_mut() {
        let slices = existing.get(key).map(Vec::as_slice).unwrap_or_default();
        let group = reconcile_port_group(service, slices, std::mem::take(endpoints), ports, o.max_per_slice);
        creates.extend(group.creates);
        updates.extend(group.updates);
        deletes.extend(group.deletes);
    }
    // Port sets no longer wanted.
    for (key, slices) in &existing {
        if !desired.contains_key(key) {
            deletes.extend(slices.iter().copied());
        }
    }
    // A Service without endpoints keeps one placeholder slice.
    if o.slices.len() == deletes.len() && creates.is_empty() {
        if deletes.len() == 1 && is_placeholder(deletes[0], service) {
            deletes.clear();
        } else {
            creates.push(new_slice(service, Vec::new()));
        }
    }
    // Updating a slice that was to go costs one write instead of two (Kubernetes' finalize).
    let mut kept = Vec::new();
    for slice in deletes {
        if !creates.is_empty() && slice.address_type == ADDRESS_TYPE && owned_by(slice, service) {
            let mut reused = creates.remove(0);
            reused.metadata.name = slice.metadata.name.clone();
            reused.metadata.generate_name = slice.metadata.generate_name.clone();
            reused.metadata.resource_version = slice.metadata.resource_version.clone();
            reused.metadata.uid = slice.metadata.uid.clone();
            updates.push(reused);
        } else {
            kept.push(slice);
        }
    }
    // A Service being deleted gets no new slices.
    if !pods::is_deleting(&service.metadata) {
        plan.actions.extend(creates.into_iter().map(SliceAction::Create));
    }
    plan.actions.extend(updates.into_iter().map(SliceAction::Update));
    plan.actions.extend(kept.into_iter().map(|s| SliceAction::Delete {
        name: s.metadata.name.clone().unwrap_or_default(),
        uid: s.metadata.uid.clone().unwrap_or_default(),
    }));
    plan
}

/// One port set's writes.
struct GroupWrites<'a> {
    creates: Vec<EndpointSlice>,
    updates: Vec<EndpointSlice>,
    deletes: Vec<&'a EndpointSlice>,
}

/// Kubernetes' `reconcileByPortMapping`, for the slices of one port set.
fn reconcile_port_group<'a>(
    service: &Service,
    slices: &[&'a EndpointSlice],
    mut desired: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    max: usize,
) -> GroupWrites<'a> {
    let labels = slice_labels(service);
    let (mut to_update, mut unchanged, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    // 1. Existing slices keep the endpoints still wanted, in their current state.
    for slice in slices {
        let mut changed = false;
        let kept: Vec<Endpoint> = slice
            .endpoints
            .iter()
            .filter_map(|e| {
                let wanted = desired.remove(&endpoint_key(e))?;
                changed |= !same_endpoint(&wanted, e);
                Some(wanted)
            })
            .collect();
        let labels_changed = slice.metadata.labels.as_ref() != Some(&labels);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                deletes.push(*slice);
            } else {
                let mut updated = (*slice).clone();
                updated.endpoints = kept;
                updated.metadata.labels = Some(labels.clone());
                to_update.push(updated);
            }
        } else if labels_changed {
            let mut updated = (*slice).clone();
            updated.metadata.labels = Some(labels.clone());
            to_update.push(updated);
        } else {
            unchanged.push(*slice);
        }
    }
    // 2. Slices written anyway are filled up first, the fullest first.
    to_update.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for slice in &mut to_update {
        while slice.endpoints.len() < max
            && let Some((_, e)) = desired.pop_first()
        {
            slice.endpoints.push(e);
        }
    }
    // 3. The rest: into the unchanged slice it fits best when it is less than a slice, else
    //    into new slices.
    let mut creates = Vec::new();
    while !desired.is_empty() {
        let fits = (desired.len() < max)
            .then(|| best_fit(&unchanged, desired.len(), max))
            .flatten()
            .map(|i| unchanged.remove(i));
        let mut slice = match fits {
            Some(slice) => slice.clone(),
            None => new_slice(service, ports.to_vec()),
        };
        while slice.endpoints.len() < max
            && let Some((_, e)) = desired.pop_first()
        {
            slice.endpoints.push(e);
        }
        if slice.metadata.name.is_some() { to_update.push(slice) } else { creates.push(slice) }
    }
    GroupWrites { creates, updates: to_update, deletes }
}

/// Kubernetes' `getSliceToFill`: the slice that `count` more endpoints fill most closely.
fn best_fit(slices: &[&EndpointSlice], count: usize, max: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, slice) in slices.iter().enumerate() {
        let Some(room) = max.checked_sub(count + slice.endpoints.len()) else { continue };
        if best.is_none_or(|(_, r)| room < r) {
            best = Some((i, room));
            if room == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn service(extra: Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.9",
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).expect("a service")
    }

    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
            (t, p) => *t = p,
        }
    }

    /// A running pod `i` on node n1 serving `http` on `port`.
    fn pod(i: usize, port: i32, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i}"), "namespace": "ns", "uid": format!("uid-{i}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": format!("10.42.{}.{}", i / 250, i % 250 + 1),
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("a pod")
    }

    fn zones() -> HashMap<String, Option<String>> {
        HashMap::from([("n1".to_string(), Some("zone-a".to_string()))])
    }

    fn observe<'a>(
        service: &'a Service,
        pods: &'a [Pod],
        slices: &'a [EndpointSlice],
        zones: &'a HashMap<String, Option<String>>,
    ) -> Observed<'a> {
        Observed { service, pods: pods.iter().collect(), slices: slices.iter().collect(), zones, max_per_slice: 100 }
    }

    /// The slices after the plan is carried out, the created ones named `created-<n>`.
    fn apply(slices: &[EndpointSlice], plan: &Plan) -> Vec<EndpointSlice> {
        let mut out: Vec<EndpointSlice> = slices.to_vec();
        for (n, action) in plan.actions.iter().enumerate() {
            match action {
                SliceAction::Create(s) => {
                    let mut s = s.clone();
                    s.metadata.name = Some(format!("created-{n}"));
                    s.metadata.uid = Some(format!("created-uid-{n}"));
                    out.push(s);
                }
                SliceAction::Update(s) => {
                    let at =
                        out.iter().position(|o| o.metadata.name == s.metadata.name).expect("updates an existing slice");
                    out[at] = s.clone();
                }
                SliceAction::Delete { name, .. } => out.retain(|o| o.metadata.name.as_ref() != Some(name)),
            }
        }
        out
    }

    fn counts(plan: &Plan) -> (usize, usize, usize) {
        let count = |f: fn(&SliceAction) -> bool| plan.actions.iter().filter(|a| f(a)).count();
        (
            count(|a| matches!(a, SliceAction::Create(_))),
            count(|a| matches!(a, SliceAction::Update(_))),
            count(|a| matches!(a, SliceAction::Delete { .. })),
        )
    }

    fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort_unstable();
        sizes
    }

    /// Kubernetes' `TestReconcile1Pod`: one endpoint with its conditions, node, zone and pod, in a
    /// slice labelled, owned and named after the Service.
    #[test]
    fn one_pod_makes_one_slice() {
        let (svc, pods, z) = (service(json!({})), [pod(0, 8080, true)], zones());
        let plan = reconcile(&observe(&svc, &pods, &[], &z));
        let [SliceAction::Create(slice)] = plan.actions.as_slice() else { panic!("one creation: {:?}", plan.actions) };
        let v = serde_json::to_value(slice).expect("json");
        assert_eq!(v["metadata"]["generateName"], "web-");
        assert_eq!(
            v["metadata"]["labels"],
            json!({"team": "a", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: CONTROLLER_NAME})
        );
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "svc-uid");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(v["addressType"], "IPv4");
        assert_eq!(v["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
        assert_eq!(
            v["endpoints"],
            json!([{"addresses": ["10.42.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": "n1", "zone": "zone-a",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "web-0", "uid": "uid-0"}}])
        );
        // Carried out, there is nothing left to do.
        let after = apply(&[], &plan);
        assert_eq!(reconcile(&observe(&svc, &pods, &after, &z)).actions, []);
    }

    /// Ready, serving and terminating as Kubernetes sets them (`TestPodToEndpoint`).
    #[test]
    fn conditions_follow_readiness_termination_and_publish_not_ready() {
        let terminating = |ready: bool| {
            let mut p = pod(0, 8080, ready);
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
            p
        };
        let publish = service(json!({"spec": {"publishNotReadyAddresses": true}}));
        let plain = service(json!({}));
        let cases = [
            (&plain, pod(0, 8080, true), (true, true, false)),
            (&plain, pod(0, 8080, false), (false, false, false)),
            (&plain, terminating(true), (false, true, true)),
            (&plain, terminating(false), (false, false, true)),
            (&publish, pod(0, 8080, false), (true, false, false)),
            (&publish, terminating(false), (true, false, true)),
        ];
        for (svc, p, (ready, serving, terminating)) in cases {
            let c = endpoint(svc, &p, None).conditions.expect("conditions");
            assert_eq!((c.ready, c.serving, c.terminating), (Some(ready), Some(serving), Some(terminating)), "{p:?}");
        }
    }

    /// `TestReconcileManyPods`, then scaling down and up with the least churn.
    #[test]
    fn many_pods_fill_slices_of_a_hundred_and_scaling_keeps_them() {
        let (svc, z) = (service(json!({})), zones());
        let pods: Vec<Pod> = (0..250).map(|i| pod(i, 8080, true)).collect();
        let plan = reconcile(&observe(&svc, &pods, &[], &z));
        assert_eq!(counts(&plan), (3, 0, 0));
        let slices = apply(&[], &plan);
        assert_eq!(sizes(&slices), [50, 100, 100]);

        // Ten pods of one slice go: one update, no new slice.
        let gone: Vec<String> =
            slices[0].endpoints[..10].iter().filter_map(|e| e.target_ref.as_ref()?.name.clone()).collect();
        let fewer: Vec<Pod> =
            pods.iter().filter(|p| !gone.contains(p.metadata.name.as_ref().expect("a name"))).cloned().collect();
        let plan = reconcile(&observe(&svc, &fewer, &slices, &z));
        assert_eq!(counts(&plan), (0, 1, 0));
        let slices = apply(&slices, &plan);
        assert_eq!(sizes(&slices), [50, 90, 100]);

        // 40 new pods: into the unchanged slice they fit best (the one of 50), no new slice.
        let more: Vec<Pod> = fewer.iter().cloned().chain((250..290).map(|i| pod(i, 8080, true))).collect();
        let plan = reconcile(&observe(&svc, &more, &slices, &z));
        assert_eq!(counts(&plan), (0, 1, 0));
        let slices = apply(&slices, &plan);
        assert_eq!(sizes(&slices), [90, 90, 100]);

        // A pod of a slice with room turns not ready and another comes: the slice written anyway
        // takes the newcomer.
        let roomy = slices.iter().find(|s| s.endpoints.len() == 90).expect("a slice of 90");
        let flipped = roomy.endpoints[0].target_ref.as_ref().and_then(|t| t.name.clone());
        let mut changed = more.clone();
        let at = changed.iter().position(|p| p.metadata.name == flipped).expect("its pod");
        let conditions = changed[at].status.as_mut().and_then(|s| s.conditions.as_mut()).expect("conditions");
        conditions[0].status = "False".into();
        changed.push(pod(290, 8080, true));
        let plan = reconcile(&observe(&svc, &changed, &slices, &z));
        assert_eq!(counts(&plan), (0, 1, 0));
        let slices = apply(&slices, &plan);
        assert_eq!(sizes(&slices), [90, 91, 100]);
        assert_eq!(reconcile(&observe(&svc, &changed, &slices, &z)).actions, []);
    }

    /// `TestReconcileEndpointSlicesNamedPorts`: a named target port that resolves to different
    /// numbers puts the pods in one slice per port set; a pod without the port in a slice with
    /// no ports.
    #[test]
    fn pods_serving_different_ports_go_to_different_slices() {
        let (svc, z) = (service(json!({})), zones());
        let mut pods: Vec<Pod> = (0..6).map(|i| pod(i, if i % 2 == 0 { 8080 } else { 9090 }, true)).collect();
        let mut portless = pod(6, 0, true);
        portless.spec.as_mut().expect("spec").containers[0].ports = None;
        pods.push(portless);
        let plan = reconcile(&observe(&svc, &pods, &[], &z));
        let slices = apply(&[], &plan);
        let mut by_port: Vec<(Option<i32>, usize)> = slices
            .iter()
            .map(|s| (s.ports.as_ref().and_then(|p| p.first()).and_then(|p| p.port), s.endpoints.len()))
            .collect();
        by_port.sort();
        assert_eq!(by_port, [(None, 1), (Some(8080), 3), (Some(9090), 3)]);
    }

    /// The placeholder (`TestReconcile1EndpointSlice` and friends): a Service without endpoints
    /// keeps one empty slice; its first endpoints reuse it; pods gone, it comes back.
    #[test]
    fn a_service_without_endpoints_keeps_one_empty_slice() {
        let (svc, z) = (service(json!({})), zones());
        let plan = reconcile(&observe(&svc, &[], &[], &z));
        assert_eq!(counts(&plan), (1, 0, 0));
        let slices = apply(&[], &plan);
        assert!(slices[0].endpoints.is_empty() && slices[0].ports.as_deref() == Some(&[][..]));
        assert_eq!(reconcile(&observe(&svc, &[], &slices, &z)).actions, [], "the placeholder is kept");
        // Endpoints arrive: the placeholder is turned into their slice, not deleted and recreated.
        let pods = [pod(0, 8080, true)];
        let plan = reconcile(&observe(&svc, &pods, &slices, &z));
        assert_eq!(counts(&plan), (0, 1, 0));
        let slices = apply(&slices, &plan);
        assert_eq!(sizes(&slices), [1]);
        // They go: the slice becomes the placeholder again.
        let plan = reconcile(&observe(&svc, &[], &slices, &z));
        assert_eq!(counts(&plan), (0, 1, 0));
        assert_eq!(sizes(&apply(&slices, &plan)), [0]);
    }

    /// Slices of another Service by that name (another uid), and of another address type, go;
    /// a Service being deleted gets no new slice (`TestReconcilerFinalizeSvcDeletionTimestamp`).
    #[test]
    fn foreign_slices_go_and_a_deleted_service_gets_none() {
        let (svc, z) = (service(json!({})), zones());
        let mut stale = new_slice(&svc, Vec::new());
        stale.metadata.name = Some("web-old".into());
        stale.metadata.uid = Some("old".into());
        stale.metadata.owner_references.as_mut().expect("owner")[0].uid = "previous-service".into();
        let pods = [pod(0, 8080, true)];
        let plan = reconcile(&observe(&svc, &pods, std::slice::from_ref(&stale), &z));
        assert_eq!(counts(&plan), (1, 0, 1), "a slice owned by another uid is not reused");

        let deleting = service(json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}));
        let plan = reconcile(&observe(&deleting, &pods, &[], &z));
        assert_eq!(plan.actions, []);
    }

    /// Pods without an address, finished, or on an unknown node are left out; the unknown node
    /// is looked at again.
    #[test]
    fn pods_not_yet_endpoints_are_left_out() {
        let (svc, z) = (service(json!({})), zones());
        let mut no_ip = pod(1, 8080, true);
        no_ip.status.as_mut().expect("status").pod_ip = None;
        let mut done = pod(2, 8080, true);
        done.status.as_mut().expect("status").phase = Some("Succeeded".into());
        let mut elsewhere = pod(3, 8080, true);
        elsewhere.spec.as_mut().expect("spec").node_name = Some("unknown".into());
        let pods = [pod(0, 8080, true), no_ip, done, elsewhere];
        let plan = reconcile(&observe(&svc, &pods, &[], &z));
        assert_eq!(sizes(&apply(&[], &plan)), [1]);
        assert_eq!(plan.requeue_after, Some(UNKNOWN_NODE_RETRY));
    }

    /// The Service's labels follow onto its slices; headless Services' slices say so.
    #[test]
    fn slices_follow_the_services_labels() {
        let (svc, z) = (service(json!({})), zones());
        let pods = [pod(0, 8080, true)];
        let slices = apply(&[], &reconcile(&observe(&svc, &pods, &[], &z)));
        let relabelled = service(json!({"metadata": {"labels": {"team": "b"}}, "spec": {"clusterIP": "None"}}));
        let plan = reconcile(&observe(&relabelled, &pods, &slices, &z));
        let [SliceAction::Update(updated)] = plan.actions.as_slice() else { panic!("one update: {:?}", plan.actions) };
        let labels = updated.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("b"));
        assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));
    }
}
