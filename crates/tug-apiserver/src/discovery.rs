//! Discovery documents, built once from the registry: aggregated (apidiscovery.k8s.io/v2, what
//! kubectl 1.30+ asks for first) and legacy (`APIVersions`, `APIGroupList`, `APIResourceList`,
//! which drain reads for `pods/eviction` and older clients use).

use serde_json::{Value, json};
use tug_core::registry::{self, RESOURCES, ResourceType, Subresource};

use crate::request::REVIEWS;

/// The exact Content-Type kubectl needs to treat an answer as aggregated discovery.
pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The version `/version` reports. kubectl's version dispatcher picks its binary by the minor.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0+tug", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn sub_kind(
    rt: &ResourceType,
    sub: Subresource,
) -> (&'static str, &'static str, &'static str, &'static [&'static str]) {
    // (group, version, kind, verbs)
    match sub {
        Subresource::Status => (rt.group, rt.version, rt.kind, &["get", "patch", "update"]),
        Subresource::Scale => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        Subresource::Binding => ("", "v1", "Binding", &["create"]),
        Subresource::Eviction => ("policy", "v1", "Eviction", &["create"]),
        Subresource::Log => ("", "v1", "Pod", &["get"]),
        Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
            ("", "v1", "PodExecOptions", &["create", "get"])
        }
    }
}

fn aggregated_resource(rt: &ResourceType) -> Value {
    let subresources: Vec<Value> = rt
        .subresources
        .iter()
        .map(|s| {
            let (g, v, k, verbs) = sub_kind(rt, *s);
            json!({"subresource": s.name(), "responseKind": {"group": g, "version": v, "kind": k}, "verbs": verbs})
        })
        .collect();
    let mut r = json!({
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": if rt.namespaced() { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": ALL_VERBS,
    });
    if !rt.short_names.is_empty() {
        r["shortNames"] = json!(rt.short_names);
    }
    if rt.in_all {
        r["categories"] = json!(["all"]);
    }
    if !subresources.is_empty() {
        r["subresources"] = json!(subresources);
    }
    r
}

fn review_resources(group: &str, version: &str) -> Vec<(&'static str, &'static str)> {
    REVIEWS.iter().filter(|(g, v, _, _)| *g == group && *v == version).map(|(_, _, p, k)| (*p, *k)).collect()
}

/// Every group (with the review-only groups) and its versions, preferred first.
fn all_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups = registry::groups();
    for (g, v, _, _) in REVIEWS {
        match groups.iter_mut().find(|(name, _)| name == g) {
            Some((_, versions)) if !versions.contains(v) => versions.push(v),
            Some(_) => {}
            None => groups.push((g, vec![v])),
        }
    }
    groups
}

fn aggregated_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let mut resources: Vec<Value> =
                RESOURCES.iter().filter(|r| r.group == group && r.version == *v).map(aggregated_resource).collect();
            for (plural, kind) in review_resources(group, v) {
                resources.push(json!({
                    "resource": plural,
                    "responseKind": {"group": group, "version": v, "kind": kind},
                    "scope": "Cluster",
                    "singularResource": kind.to_lowercase(),
                    "verbs": ["create"],
                }));
            }
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// `/api` (core only) or `/apis` (named groups) as an APIGroupDiscoveryList.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> =
        all_groups().iter().filter(|(g, _)| g.is_empty() == core).map(|(g, v)| aggregated_group(g, v)).collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

pub fn legacy_core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn legacy_group(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
}

pub fn legacy_groups() -> Value {
    let groups: Vec<Value> =
        all_groups().iter().filter(|(g, _)| !g.is_empty()).map(|(g, v)| legacy_group(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn legacy_group_doc(group: &str) -> Option<Value> {
    all_groups().iter().find(|(g, _)| *g == group && !g.is_empty()).map(|(g, v)| {
        let mut doc = legacy_group(g, v);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        doc
    })
}

/// `/api/v1` or `/apis/<g>/<v>` as an APIResourceList, subresources as `pods/eviction` entries.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for rt in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        let mut r = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced(),
            "kind": rt.kind,
            "verbs": ALL_VERBS,
        });
        if !rt.short_names.is_empty() {
            r["shortNames"] = json!(rt.short_names);
        }
        if rt.in_all {
            r["categories"] = json!(["all"]);
        }
        resources.push(r);
        for s in rt.subresources {
            let (g, v, k, verbs) = sub_kind(rt, *s);
            let mut sub = json!({
                "name": format!("{}/{}", rt.plural, s.name()),
                "singularName": "",
                "namespaced": rt.namespaced(),
                "kind": k,
                "verbs": verbs,
            });
            if g != rt.group || v != rt.version {
                sub["group"] = json!(g);
                sub["version"] = json!(v);
            }
            resources.push(sub);
        }
    }
    for (plural, kind) in review_resources(group, version) {
        resources.push(json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": false, "kind": kind, "verbs": ["create"]}));
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_has_what_kubectl_needs() {
        let core = aggregated(true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["responseKind"]["kind"], "Pod");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["categories"], json!(["all"]));
        let apis = aggregated(false);
        assert!(apis["items"].as_array().unwrap().iter().any(|g| g["metadata"]["name"] == "apps"));
    }

    #[test]
    fn legacy_core_list_names_eviction_in_policy() {
        let list = resource_list("", "v1").unwrap();
        let eviction =
            list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").unwrap().clone();
        assert_eq!((eviction["group"].as_str(), eviction["version"].as_str()), (Some("policy"), Some("v1")));
        assert!(resource_list("apps", "v9").is_none());
        assert!(legacy_group_doc("authorization.k8s.io").is_some());
    }
}
