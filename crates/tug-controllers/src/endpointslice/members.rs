//! Which pods are a Service's endpoints, at which address and on which ports — Kubernetes'
//! `endpointslice/util` and `podutil.FindPort`, shared by the EndpointSlice reconciler and the
//! legacy Endpoints mirror.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tug_k8s::labels::Selector;

use crate::pods;

/// The Service's pod selector; `None` for a Service without one (its endpoints are someone
/// else's: hand-made, or the API server's for `default/kubernetes`). An empty selector counts as
/// none, as Kubernetes cannot tell them apart once stored.
pub fn selector(service: &Service) -> Option<Selector> {
    let labels = service.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())?;
    Selector::try_from_label_selector(&LabelSelector { match_labels: Some(labels.clone()), match_expressions: None })
}

/// `publishNotReadyAddresses`: every pod counts as ready.
pub fn publishes_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

/// Headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The pod's IPv4 address (the first of `podIPs`, or `podIP`).
pub fn ipv4(pod: &Pod) -> Option<Ipv4Addr> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|ip| ip.ip.as_str());
    listed.chain(status.pod_ip.as_deref()).find_map(|ip| ip.parse::<Ipv4Addr>().ok())
}

/// Kubernetes' `ShouldPodBeInEndpoints`: not finished, has an address, and — unless
/// `include_terminating` — not being deleted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !pods::is_terminal(pod) && ipv4(pod).is_some() && (include_terminating || !pods::is_deleting(&pod.metadata))
}

/// Kubernetes' `ShouldSetHostname`: the pod names a hostname and this Service as its subdomain.
/// The `targetRef` of a pod's endpoint (slices and the Endpoints mirror alike).
pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

pub fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_namespace = pod.metadata.namespace == service.metadata.namespace;
    (same_namespace && spec.subdomain.is_some() && spec.subdomain == service.metadata.name).then(|| host.to_string())
}

/// A service port's protocol (`TCP` when unset, the API's default).
pub fn protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

/// Kubernetes' `podutil.FindPort`: the port a pod serves a service port on. A number is taken as
/// it is (no target port: the service port itself, the API's default); a name is looked up in
/// the pod's container ports (and restartable init containers', sidecars) of the same protocol.
/// `None` when the name is not found: the pod does not serve this port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars =
                spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers.iter().chain(sidecars).flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol(port))
                    .then_some(p.container_port)
            })
        }
    }
}

/// Whether a pod's change may change any Service's endpoints (Kubernetes' `podEndpointsChanged`,
/// labels aside: the caller queues the Services of both label sets).
pub fn endpoint_facts_differ(old: &Pod, new: &Pod) -> bool {
    fn facts(p: &Pod) -> impl PartialEq + '_ {
        let spec = p.spec.as_ref();
        (
            ipv4(p),
            pods::is_ready(p),
            pods::is_terminal(p),
            pods::is_deleting(&p.metadata),
            spec.map(|s| (&s.hostname, &s.subdomain, &s.node_name)),
            spec.map(|s| s.containers.iter().map(|c| &c.ports).collect::<Vec<_>>()),
        )
    }
    facts(old) != facts(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec, "status": status}))
            .expect("a pod")
    }

    fn port(value: serde_json::Value) -> ServicePort {
        serde_json::from_value(value).expect("a service port")
    }

    /// Kubernetes' `TestFindPort` cases.
    #[test]
    fn target_ports_are_resolved_in_the_pods_container_ports() {
        let containers = json!({"containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"containerPort": 9000},
        ]}], "initContainers": [
            {"name": "sidecar", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9090}]},
            {"name": "init", "ports": [{"name": "setup", "containerPort": 7070}]},
        ]});
        let p = pod(containers, json!({}));
        let cases = [
            (json!({"port": 80, "targetPort": "http"}), Some(8080)),
            (json!({"port": 80, "targetPort": "http", "protocol": "UDP"}), None),
            (json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}), Some(53)),
            (json!({"port": 80, "targetPort": "nope"}), None),
            (json!({"port": 80, "targetPort": 9000}), Some(9000)),
            (json!({"port": 80}), Some(80)),
            (json!({"port": 80, "targetPort": "metrics"}), Some(9090)),
            (json!({"port": 80, "targetPort": "setup"}), None),
        ];
        for (service_port, want) in cases {
            assert_eq!(find_port(&p, &port(service_port.clone())), want, "{service_port}");
        }
    }

    #[test]
    fn pods_without_an_address_or_finished_are_no_endpoints() {
        let running = json!({"phase": "Running", "podIP": "10.42.0.5"});
        let deleting = {
            let mut p = pod(json!({"containers": []}), running.clone());
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
            p
        };
        let cases = [
            (pod(json!({"containers": []}), running.clone()), false, true),
            (pod(json!({"containers": []}), json!({"phase": "Pending"})), true, false),
            (pod(json!({"containers": []}), json!({"phase": "Succeeded", "podIP": "10.42.0.5"})), true, false),
            (pod(json!({"containers": []}), json!({"phase": "Failed", "podIP": "10.42.0.5"})), true, false),
            (pod(json!({"containers": []}), json!({"phase": "Running", "podIPs": [{"ip": "fd00::1"}]})), true, false),
            (
                pod(
                    json!({"containers": []}),
                    json!({"phase": "Running", "podIPs": [{"ip": "fd00::1"}, {"ip": "10.1.2.3"}]}),
                ),
                false,
                true,
            ),
            (deleting.clone(), true, true),
            (deleting, false, false),
        ];
        for (p, include_terminating, want) in cases {
            assert_eq!(should_be_in_endpoints(&p, include_terminating), want, "{:?}", p.status);
        }
    }
}
