//! Nodes (core/v1): what may change after registration.

use serde_json::{Map, Value};

use super::Errors;

/// Kubernetes' `ValidateNodeUpdate` rules for the spec fields set once: the pod range (the node
/// IPAM controller assigns it; a range that changed under running pods would strand their
/// addresses and other hosts' routes) and the provider ID.
pub(super) fn validate_node_update(new: &Map<String, Value>, old: &Map<String, Value>, errs: &mut Errors) {
    let old_ranges = pod_cidrs(old);
    if !old_ranges.is_empty() && pod_cidrs(new) != old_ranges {
        errs.forbidden("spec.podCIDRs", "node updates may not change podCIDR except from \"\" to valid");
    }
    let provider_id =
        |spec: &Map<String, Value>| spec.get("providerID").and_then(Value::as_str).unwrap_or("").to_string();
    let old_provider = provider_id(old);
    if !old_provider.is_empty() && provider_id(new) != old_provider {
        errs.forbidden("spec.providerID", "node updates may not change providerID except from \"\" to valid");
    }
}

/// `spec.podCIDRs`, or the single `spec.podCIDR` of a client that sets only that (the v1 API
/// keeps both; Kubernetes' conversion makes the first of the list the single one).
fn pod_cidrs(spec: &Map<String, Value>) -> Vec<&str> {
    let listed: Vec<&str> =
        spec.get("podCIDRs").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if !listed.is_empty() {
        return listed;
    }
    spec.get("podCIDR").and_then(Value::as_str).filter(|s| !s.is_empty()).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    fn node(spec: Value) -> Value {
        json!({ "metadata": { "name": "n1", "uid": "u-1" }, "spec": spec })
    }

    fn update_causes(new: Value, old: Value) -> Vec<(String, &'static str)> {
        validate_update(rt("v1", "Node"), &new, &old).into_iter().map(|c| (c.field, c.reason)).collect()
    }

    #[test]
    fn a_pod_range_is_set_once() {
        let forbidden = vec![("spec.podCIDRs".to_string(), "FieldValueForbidden")];
        let set = json!({ "podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"] });
        let cases = [
            // The IPAM controller assigns a range to a node without one.
            (json!({}), set.clone(), vec![]),
            (set.clone(), set.clone(), vec![]),
            (set.clone(), json!({ "podCIDR": "10.42.2.0/24", "podCIDRs": ["10.42.2.0/24"] }), forbidden.clone()),
            (set.clone(), json!({}), forbidden.clone()),
            (json!({ "podCIDR": "10.42.1.0/24" }), json!({ "podCIDR": "10.42.3.0/24" }), forbidden.clone()),
            (set.clone(), json!({ "podCIDRs": ["10.42.1.0/24", "fd00::/64"] }), forbidden),
        ];
        for (old, new, expected) in cases {
            assert_eq!(update_causes(node(new.clone()), node(old.clone())), expected, "{old} -> {new}");
        }
    }

    #[test]
    fn a_provider_id_is_set_once() {
        let old = node(json!({ "providerID": "tug://n1" }));
        assert_eq!(update_causes(node(json!({ "providerID": "tug://n1" })), old.clone()), vec![]);
        assert_eq!(
            update_causes(node(json!({ "providerID": "tug://other" })), old),
            vec![("spec.providerID".to_string(), "FieldValueForbidden")]
        );
        assert_eq!(update_causes(node(json!({ "providerID": "tug://n1" })), node(json!({}))), vec![]);
    }
}
