//! Services (core/v1): types, ports, cluster IPs and node ports.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::names::{dns1123_label, dns1123_subdomain, iana_svc_name, validate_labels};
use super::pod::{PROTOCOLS, validate_port_number};
use super::{Errors, array_at, immutable, str_at};

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

pub(super) fn validate_service(spec: &Map<String, Value>, errs: &mut Errors) {
    let service_type = str_at(spec, "type");
    errs.one_of(spec, "type", "spec.type", SERVICE_TYPES);
    errs.one_of(spec, "sessionAffinity", "spec.sessionAffinity", &["ClientIP", "None"]);
    let ports = array_at(spec, "ports");
    let headless = str_at(spec, "clusterIP") == "None";
    if service_type == "ExternalName" {
        let external_name = str_at(spec, "externalName");
        if external_name.is_empty() {
            errs.required("spec.externalName", "");
        } else {
            for msg in dns1123_subdomain(external_name.trim_end_matches('.')) {
                errs.invalid("spec.externalName", &Value::String(external_name.into()), &msg);
            }
        }
    } else if ports.is_empty() && !headless {
        errs.required("spec.ports", "");
    }
    let cluster_ip = str_at(spec, "clusterIP");
    if !cluster_ip.is_empty() && cluster_ip != "None" && cluster_ip.parse::<std::net::IpAddr>().is_err() {
        errs.invalid(
            "spec.clusterIP",
            &Value::String(cluster_ip.into()),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        );
    }
    let mut names = HashSet::new();
    let mut port_protocols = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let Some(port) = port.as_object() else {
            errs.invalid(&field, port, "must be an object");
            continue;
        };
        let name = str_at(port, "name");
        if name.is_empty() {
            if ports.len() > 1 {
                errs.required(&format!("{field}.name"), "");
            }
        } else {
            for msg in dns1123_label(name) {
                errs.invalid(&format!("{field}.name"), &Value::String(name.into()), &msg);
            }
            if !names.insert(name.to_string()) {
                errs.duplicate(&format!("{field}.name"), &Value::String(name.into()));
            }
        }
        let number = port.get("port").cloned().unwrap_or(Value::Null);
        validate_port_number(&number, &format!("{field}.port"), errs);
        errs.one_of(port, "protocol", &format!("{field}.protocol"), PROTOCOLS);
        let protocol = match str_at(port, "protocol") {
            "" => "TCP",
            protocol => protocol,
        };
        if number.is_number() && !port_protocols.insert((number.to_string(), protocol.to_string())) {
            errs.duplicate(&field, &Value::String(format!("{number}/{protocol}")));
        }
        validate_target_port(port.get("targetPort"), &format!("{field}.targetPort"), errs);
        validate_node_port(port.get("nodePort"), service_type, &format!("{field}.nodePort"), errs);
    }
    validate_labels(spec.get("selector"), "spec.selector", errs);
}

fn validate_target_port(target: Option<&Value>, field: &str, errs: &mut Errors) {
    match target {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => {
            for msg in iana_svc_name(name) {
                errs.invalid(field, &Value::String(name.clone()), &msg);
            }
        }
        Some(number) => validate_port_number(number, field, errs),
    }
}

/// Node ports: only for NodePort/LoadBalancer services, and a port number. The configured
/// range (`--service-node-port-range`) is the allocator's to check, as in Kubernetes.
fn validate_node_port(node_port: Option<&Value>, service_type: &str, field: &str, errs: &mut Errors) {
    let Some(value) = node_port.filter(|v| !v.is_null() && v.as_i64() != Some(0)) else { return };
    if !matches!(service_type, "NodePort" | "LoadBalancer") {
        let shown = if service_type.is_empty() { "ClusterIP" } else { service_type };
        errs.forbidden(field, &format!("may not be used when `type` is '{shown}'"));
    } else {
        validate_port_number(value, field, errs);
    }
}

pub(super) fn validate_service_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    // Changing to or from ExternalName releases or allocates the IP; otherwise it is fixed.
    let needs_ip = |spec: &Map<String, Value>| str_at(spec, "type") != "ExternalName";
    if needs_ip(new) && needs_ip(old) && !str_at(old, "clusterIP").is_empty() {
        immutable(new.get("clusterIP"), old.get("clusterIP"), "spec.clusterIP", errs);
        let first = |spec: &Map<String, Value>| spec.get("clusterIPs").and_then(|ips| ips.get(0)).cloned();
        if let (Some(new_ip), Some(old_ip)) = (first(new), first(old)) {
            immutable(Some(&new_ip), Some(&old_ip), "spec.clusterIPs[0]", errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validation::test_support::*;

    #[test]
    fn service_problems() {
        let svc = |spec: Value| json!({ "metadata": meta("web"), "spec": spec });
        let cases = vec![
            ("v1", "Service", svc(json!({})), vec![("spec.ports", "FieldValueRequired")]),
            ("v1", "Service", svc(json!({ "clusterIP": "None" })), vec![]),
            ("v1", "Service", svc(json!({ "type": "ExternalName", "externalName": "db.example.com" })), vec![]),
            (
                "v1",
                "Service",
                svc(json!({ "type": "ExternalName" })),
                vec![("spec.externalName", "FieldValueRequired")],
            ),
            (
                "v1",
                "Service",
                svc(json!({ "type": "Magic", "ports": [{ "port": 80 }] })),
                vec![("spec.type", "FieldValueNotSupported")],
            ),
            (
                "v1",
                "Service",
                svc(json!({ "ports": [{ "port": 0 }, { "name": "a", "port": 81 }, { "name": "a", "port": 82 }] })),
                vec![
                    ("spec.ports[0].name", "FieldValueRequired"),
                    ("spec.ports[0].port", "FieldValueInvalid"),
                    // targetPort was defaulted to the (bad) port.
                    ("spec.ports[0].targetPort", "FieldValueInvalid"),
                    ("spec.ports[2].name", "FieldValueDuplicate"),
                ],
            ),
            (
                "v1",
                "Service",
                svc(json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 70000 }] })),
                vec![("spec.ports[0].nodePort", "FieldValueInvalid")],
            ),
            ("v1", "Service", svc(json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30080 }] })), vec![]),
            (
                "v1",
                "Service",
                svc(json!({ "ports": [{ "port": 80, "nodePort": 30080 }] })),
                vec![("spec.ports[0].nodePort", "FieldValueForbidden")],
            ),
        ];
        expect(cases);
    }

    #[test]
    fn cluster_ips_are_immutable() {
        let svc = json!({ "metadata": meta("web"), "spec": { "clusterIP": "10.43.0.10", "ports": [{ "port": 80 }] } });
        assert!(update("v1", "Service", svc.clone(), &|s| s["spec"]["ports"][0]["port"] = json!(81)).is_empty());
        assert_eq!(
            fields(update("v1", "Service", svc.clone(), &|s| s["spec"]["clusterIP"] = json!("10.43.0.11"))),
            ["spec.clusterIP"]
        );
    }
}
