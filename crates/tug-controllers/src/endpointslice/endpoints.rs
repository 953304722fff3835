//! The legacy Endpoints object, for clients that still read it (Kubernetes' `endpoint`
//! controller): one Endpoints named like the Service, its subsets grouping addresses by the port
//! set they serve, ready pods under `addresses` and the others under `notReadyAddresses`, at most
//! 1000 addresses in all (the rest dropped, marked with the over-capacity annotation).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::core::HEADLESS_LABEL;
use super::members::{self, hostname, ipv4, publishes_not_ready, target_ref};
use crate::pods;

/// Kubernetes' `maxCapacity`.
pub const MAX_ADDRESSES: usize = 1000;
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Tells the EndpointSlice mirroring controller that these Endpoints are mirrored already.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointsAction {
    Nothing,
    Create(Endpoints),
    /// The object as it should be, with the resourceVersion it was computed from.
    Update(Endpoints),
}

/// An address ordered as Kubernetes sorts them: by IP, then by pod uid.
type AddressKey = (Ipv4Addr, String);

/// A port's place in a subset's port list (name, number, protocol).
type PortSortKey = (Option<String>, i32, Option<String>);

fn port_sort_key(p: &EndpointPort) -> PortSortKey {
    (p.name.clone(), p.port, p.protocol.clone())
}

/// The subsets for these pods (Kubernetes' `syncService` and `RepackSubsets`): each pod is one
/// address per port it serves; addresses serving the same port set share a subset.
pub fn subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let publish_all = publishes_not_ready(service);
    let service_ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    // Address → (ready, its address, the ports it serves).
    let mut by_address: BTreeMap<AddressKey, (bool, EndpointAddress, Vec<EndpointPort>)> = BTreeMap::new();
    for pod in pods {
        if !members::should_be_in_endpoints(pod, publish_all) {
            continue;
        }
        let Some(ip) = ipv4(pod) else { continue };
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: port.name.clone(),
                    port: members::find_port(pod, port)?,
                    protocol: Some(members::protocol(port).to_string()),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        // A headless Service without ports still lists its pods; others need a port served.
        if ports.is_empty() && !(service_ports.is_empty() && members::is_headless(service)) {
            continue;
        }
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            target_ref: Some(target_ref(pod)),
        };
        let ready = publish_all || pods::is_ready(pod);
        let key = (ip, pod.metadata.uid.clone().unwrap_or_default());
        by_address.insert(key, (ready, address, ports));
    }
    // Port set → its subset.
    let mut by_ports: BTreeMap<Vec<PortSortKey>, EndpointSubset> = BTreeMap::new();
    for (_, (ready, address, mut ports)) in by_address {
        ports.sort_by_key(port_sort_key);
        let key: Vec<_> = ports.iter().map(port_sort_key).collect();
        let subset = by_ports.entry(key).or_insert_with(|| EndpointSubset {
            addresses: None,
            not_ready_addresses: None,
            ports: (!ports.is_empty()).then_some(ports),
        });
        let list = if ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        list.get_or_insert_with(Vec::new).push(address);
    }
    by_ports.into_values().collect()
}

/// Kubernetes' `truncateEndpoints`: over [`MAX_ADDRESSES`], each subset keeps its share (rounded
/// up) — of the ready addresses when those alone are too many (the not-ready ones all go), else
/// of the not-ready ones. Returns whether anything was dropped.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ADDRESSES {
        return false;
    }
    let truncate_ready = ready > MAX_ADDRESSES;
    let (room, total) = if truncate_ready { (MAX_ADDRESSES, ready) } else { (MAX_ADDRESSES - ready, not_ready) };
    let mut left = room;
    for subset in subsets {
        let list = if truncate_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let share = (count(list) * room).div_ceil(total).min(left);
        if let Some(list) = list.as_mut() {
            list.truncate(share);
        }
        left -= count(list);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    true
}

/// The Endpoints the Service should have, built on `current` (whose other annotations stay).
pub fn desired(service: &Service, pods: &[&Pod], current: Option<&Endpoints>) -> Endpoints {
    let mut subsets = subsets(service, pods);
    let truncated = truncate(&mut subsets);
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(SKIP_MIRROR_LABEL.into(), "true".into());
    if members::is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    let mut meta = current.map(|c| c.metadata.clone()).unwrap_or_else(|| ObjectMeta {
        name: service.metadata.name.clone(),
        namespace: service.metadata.namespace.clone(),
        ..ObjectMeta::default()
    });
    meta.labels = Some(labels);
    let mut annotations = meta.annotations.take().unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    Endpoints { metadata: meta, subsets: (!subsets.is_empty()).then_some(subsets) }
}

/// The pure core: what to write so the Service's Endpoints match its pods. Written only when the
/// subsets, labels or annotations differ.
pub fn reconcile(service: &Service, pods: &[&Pod], current: Option<&Endpoints>) -> EndpointsAction {
    let want = desired(service, pods, current);
    match current {
        None => EndpointsAction::Create(want),
        Some(current) if *current == want => EndpointsAction::Nothing,
        Some(_) => EndpointsAction::Update(want),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn service(spec: Value) -> Service {
        let mut base = json!({"selector": {"app": "web"}, "clusterIP": "10.43.0.9",
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]});
        if let (Value::Object(b), Value::Object(s)) = (&mut base, spec) {
            b.extend(s);
        }
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "labels": {"team": "a"}},
            "spec": base}))
        .expect("a service")
    }

    fn pod(i: usize, port: i32, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i}"), "namespace": "ns", "uid": format!("uid-{i}")},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": format!("10.42.{}.{}", i / 250, i % 250 + 1),
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("a pod")
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    /// Kubernetes' `TestSyncEndpointsItemsPreexisting`-style cases: ready and not-ready pods of
    /// one port in one subset; another port number in its own subset.
    #[test]
    fn subsets_group_addresses_by_port_and_readiness() {
        let svc = service(json!({}));
        let pods = [pod(0, 8080, true), pod(1, 8080, false), pod(2, 9090, true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let subsets = subsets(&svc, &refs);
        assert_eq!(subsets.len(), 2);
        assert_eq!(
            (ips(&subsets[0].addresses), ips(&subsets[0].not_ready_addresses)),
            (vec!["10.42.0.1"], vec!["10.42.0.2"])
        );
        assert_eq!(subsets[0].ports.as_ref().expect("ports")[0].port, 8080);
        assert_eq!(
            (ips(&subsets[1].addresses), subsets[1].ports.as_ref().expect("ports")[0].port),
            (vec!["10.42.0.3"], 9090)
        );
        let address = &subsets[0].addresses.as_ref().expect("addresses")[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        assert_eq!(address.target_ref.as_ref().and_then(|r| r.name.as_deref()), Some("web-0"));

        // publishNotReadyAddresses: all ready.
        let publish = service(json!({"publishNotReadyAddresses": true}));
        let subsets = super::subsets(&publish, &refs[..2]);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.1", "10.42.0.2"]);
        // A headless Service without ports still lists its pods.
        let headless = service(json!({"clusterIP": "None", "ports": null}));
        let subsets = super::subsets(&headless, &refs[..1]);
        assert_eq!((ips(&subsets[0].addresses), subsets[0].ports.clone()), (vec!["10.42.0.1"], None));
    }

    /// Kubernetes' `TestTruncateEndpoints` cases: (ready, not ready) per subset before and after.
    #[test]
    fn over_a_thousand_addresses_are_truncated_by_share() {
        let address =
            |i: usize| EndpointAddress { ip: format!("10.0.{}.{}", i / 250, i % 250), ..EndpointAddress::default() };
        let subset = |ready: usize, not_ready: usize| EndpointSubset {
            addresses: Some((0..ready).map(address).collect()),
            not_ready_addresses: Some((0..not_ready).map(address).collect()),
            ports: None,
        };
        type Counts = &'static [(usize, usize)];
        let cases: [(Counts, Counts, bool); 5] = [
            (&[(500, 500)], &[(500, 500)], false),
            (&[(1001, 0)], &[(1000, 0)], true),
            (&[(500, 600)], &[(500, 500)], true),
            (&[(400, 200), (400, 200)], &[(400, 100), (400, 100)], true),
            (&[(600, 100), (600, 100)], &[(500, 0), (500, 0)], true),
        ];
        for (before, after, truncated) in cases {
            let mut subsets: Vec<EndpointSubset> = before.iter().map(|(r, n)| subset(*r, *n)).collect();
            assert_eq!(truncate(&mut subsets), truncated, "{before:?}");
            let got: Vec<(usize, usize)> = subsets
                .iter()
                .map(|s| (s.addresses.as_ref().map_or(0, Vec::len), s.not_ready_addresses.as_ref().map_or(0, Vec::len)))
                .collect();
            assert_eq!(got, after, "{before:?}");
        }
    }

    #[test]
    fn the_object_is_written_only_when_it_changes() {
        let svc = service(json!({}));
        let pods = [pod(0, 8080, true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let EndpointsAction::Create(created) = reconcile(&svc, &refs, None) else { panic!("a creation") };
        assert_eq!(created.metadata.name.as_deref(), Some("web"));
        let labels = created.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(labels.get(SKIP_MIRROR_LABEL).map(String::as_str), Some("true"));
        assert_eq!(reconcile(&svc, &refs, Some(&created)), EndpointsAction::Nothing);
        let many: Vec<Pod> = (0..1200).map(|i| pod(i, 8080, true)).collect();
        let refs: Vec<&Pod> = many.iter().collect();
        let EndpointsAction::Update(full) = reconcile(&svc, &refs, Some(&created)) else { panic!("an update") };
        let annotations = full.metadata.annotations.clone().expect("annotations");
        assert_eq!(annotations.get(OVER_CAPACITY_ANNOTATION).map(String::as_str), Some("truncated"));
        assert_eq!(ips(&full.subsets.as_ref().expect("subsets")[0].addresses).len(), MAX_ADDRESSES);
        assert_eq!(reconcile(&svc, &refs, Some(&full)), EndpointsAction::Nothing);
    }
}
