//! `metav1.LabelSelector` objects (matchLabels + matchExpressions) as found in specs' JSON,
//! matched and rendered by `tug-k8s` (the one copy of those rules).

use std::collections::BTreeMap;

use serde_json::Value;
use tug_k8s::labels::{Selector, from_json, render};

/// Whether `labels` satisfy a LabelSelector object. An empty selector matches everything; a
/// null or malformed one nothing.
pub fn label_selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    Selector::from_label_selector(from_json(selector).as_ref()).matches(labels)
}

/// The selector in the query-string form (`app=web,tier in (a,b)`), as Scale's
/// `status.selector` and kubectl show it: `labels.Selector.String()`, requirements sorted by key.
pub fn selector_string(selector: &Value) -> String {
    render(from_json(selector).as_ref()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_and_prints_selectors() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]});
        let labels: BTreeMap<String, String> =
            [("app".to_string(), "web".to_string()), ("tier".to_string(), "a".to_string())].into();
        assert!(label_selector_matches(&sel, &labels));
        let other: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(!label_selector_matches(&sel, &other));
        assert!(label_selector_matches(&json!({}), &other));
        assert!(!label_selector_matches(&Value::Null, &other), "a null selector selects nothing");
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b)");
        let by_key = json!({"matchLabels": {"z": "1"}, "matchExpressions": [{"key": "a", "operator": "Exists"}]});
        assert_eq!(selector_string(&by_key), "a,z=1", "sorted by key, as Kubernetes renders it");
    }
}
