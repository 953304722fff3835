//! Discovery documents, built from the registry: aggregated (apidiscovery.k8s.io/v2, what
//! kubectl 1.30+ asks for first) and legacy (`APIVersions`, `APIGroupList`, `APIResourceList`,
//! which drain reads for `pods/eviction` and older clients use).
//!
//! Every document is a struct whose fields are declared in the order of Kubernetes' Go types, so
//! the bytes match kube-apiserver's (clients and scripts compare them); `omitempty` fields are
//! skipped when empty, as Go's encoder does. Resources are listed sorted by name, as upstream.

use serde::Serialize;
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
/// Namespaces cannot be deleted as a collection in Kubernetes (their REST storage has no
/// DeleteCollection), so `DELETE /api/v1/namespaces` is 405.
const NAMESPACE_VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

/// The verbs a resource type serves, as discovery lists them; the one place that says which
/// types refuse a verb.
pub fn verbs(rt: &ResourceType) -> &'static [&'static str] {
    if rt.group.is_empty() && rt.kind == "Namespace" { NAMESPACE_VERBS } else { ALL_VERBS }
}

/// Kubernetes' `storageVersionHash`: base64 of the first 8 bytes of the SHA-256 of
/// `group/version/kind` of the version the resource is stored in. Clients use it to notice a
/// storage version change (the storage version migrator).
pub fn storage_version_hash(rt: &ResourceType) -> String {
    let api_version = tug_core::convert::storage_version(rt);
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{group}/{version}/{}", rt.kind).as_bytes());
    crate::pki::base64(&digest.as_ref()[..8])
}

/// (group, version, kind, verbs) of a subresource.
fn sub_kind(
    rt: &ResourceType,
    sub: Subresource,
) -> (&'static str, &'static str, &'static str, &'static [&'static str]) {
    match sub {
        Subresource::Status => (rt.group, rt.version, rt.kind, &["get", "patch", "update"]),
        Subresource::Scale => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        Subresource::Binding => ("", "v1", "Binding", &["create"]),
        Subresource::Eviction => ("policy", "v1", "Eviction", &["create"]),
        Subresource::Log => ("", "v1", "Pod", &["get"]),
        Subresource::Exec => ("", "v1", "PodExecOptions", &["create", "get"]),
        Subresource::Attach => ("", "v1", "PodAttachOptions", &["create", "get"]),
        Subresource::PortForward => ("", "v1", "PodPortForwardOptions", &["create", "get"]),
    }
}

fn categories(rt: &ResourceType) -> &'static [&'static str] {
    if rt.in_all { &["all"] } else { &[] }
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

fn types_in(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceType> {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

/// `metav1.ListMeta` with nothing set: `{}`.
#[derive(Debug, Serialize)]
pub struct EmptyMeta {}

// ---------------------------------------------------------------------------------------------
// Aggregated discovery (apidiscovery.k8s.io/v2)

/// `APIGroupDiscoveryList`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDiscoveryList {
    kind: &'static str,
    api_version: &'static str,
    metadata: EmptyMeta,
    items: Vec<GroupDiscovery>,
}

/// `APIGroupDiscovery`: `metadata` is a full ObjectMeta in Go, hence the null timestamp.
#[derive(Debug, Serialize)]
pub struct GroupDiscovery {
    metadata: GroupMeta,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    versions: Vec<VersionDiscovery>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupMeta {
    name: &'static str,
    creation_timestamp: Option<()>,
}

/// `APIVersionDiscovery`.
#[derive(Debug, Serialize)]
pub struct VersionDiscovery {
    version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<ResourceDiscovery>,
    freshness: &'static str,
}

/// `APIResourceDiscovery`. Unlike the legacy `APIResource`, it has no storageVersionHash.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDiscovery {
    resource: &'static str,
    response_kind: Gvk,
    scope: &'static str,
    singular_resource: String,
    verbs: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    short_names: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    categories: &'static [&'static str],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subresources: Vec<SubresourceDiscovery>,
}

/// `APISubresourceDiscovery`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubresourceDiscovery {
    subresource: &'static str,
    response_kind: Gvk,
    verbs: &'static [&'static str],
}

/// `metav1.GroupVersionKind`.
#[derive(Debug, Serialize)]
pub struct Gvk {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

fn aggregated_resource(rt: &ResourceType) -> ResourceDiscovery {
    let mut subresources: Vec<SubresourceDiscovery> = rt
        .subresources
        .iter()
        .map(|s| {
            let (group, version, kind, verbs) = sub_kind(rt, *s);
            SubresourceDiscovery { subresource: s.name(), response_kind: Gvk { group, version, kind }, verbs }
        })
        .collect();
    subresources.sort_by_key(|s| s.subresource);
    ResourceDiscovery {
        resource: rt.plural,
        response_kind: Gvk { group: rt.group, version: rt.version, kind: rt.kind },
        scope: if rt.namespaced() { "Namespaced" } else { "Cluster" },
        singular_resource: rt.singular.to_string(),
        verbs: verbs(rt),
        short_names: rt.short_names,
        categories: categories(rt),
        subresources,
    }
}

fn aggregated_group(group: &'static str, versions: &[&'static str]) -> GroupDiscovery {
    let versions = versions
        .iter()
        .map(|v| {
            let mut resources: Vec<ResourceDiscovery> = types_in(group, v).map(aggregated_resource).collect();
            for (plural, kind) in review_resources(group, v) {
                resources.push(ResourceDiscovery {
                    resource: plural,
                    response_kind: Gvk { group, version: v, kind },
                    scope: "Cluster",
                    singular_resource: kind.to_lowercase(),
                    verbs: &["create"],
                    short_names: &[],
                    categories: &[],
                    subresources: Vec::new(),
                });
            }
            resources.sort_by_key(|r| r.resource);
            VersionDiscovery { version: v, resources, freshness: "Current" }
        })
        .collect();
    GroupDiscovery { metadata: GroupMeta { name: group, creation_timestamp: None }, versions }
}

/// `/api` (core only) or `/apis` (named groups) as an APIGroupDiscoveryList.
pub fn aggregated(core: bool) -> GroupDiscoveryList {
    let items =
        all_groups().iter().filter(|(g, _)| g.is_empty() == core).map(|(g, v)| aggregated_group(g, v)).collect();
    GroupDiscoveryList {
        kind: "APIGroupDiscoveryList",
        api_version: "apidiscovery.k8s.io/v2",
        metadata: EmptyMeta {},
        items,
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy discovery

/// `APIVersions` (`/api`): no apiVersion, as kube-apiserver sends it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiVersions {
    kind: &'static str,
    versions: &'static [&'static str],
    server_address_by_client_cidrs: [ServerAddress; 1],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerAddress {
    #[serde(rename = "clientCIDR")]
    client_cidr: &'static str,
    server_address: &'static str,
}

pub fn legacy_core_versions() -> ApiVersions {
    ApiVersions {
        kind: "APIVersions",
        versions: &["v1"],
        server_address_by_client_cidrs: [ServerAddress { client_cidr: "0.0.0.0/0", server_address: "" }],
    }
}

/// `APIGroupList` (`/apis`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupList {
    kind: &'static str,
    api_version: &'static str,
    groups: Vec<ApiGroup>,
}

/// `APIGroup`: kind and apiVersion only when it is the document itself (`/apis/<group>`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_version: &'static str,
    name: &'static str,
    versions: Vec<GroupVersion>,
    preferred_version: GroupVersion,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupVersion {
    group_version: String,
    version: &'static str,
}

fn legacy_group(group: &'static str, versions: &[&'static str]) -> ApiGroup {
    let gvs: Vec<GroupVersion> =
        versions.iter().map(|v| GroupVersion { group_version: format!("{group}/{v}"), version: v }).collect();
    ApiGroup { kind: "", api_version: "", name: group, preferred_version: gvs[0].clone(), versions: gvs }
}

pub fn legacy_groups() -> ApiGroupList {
    let groups = all_groups().iter().filter(|(g, _)| !g.is_empty()).map(|(g, v)| legacy_group(g, v)).collect();
    ApiGroupList { kind: "APIGroupList", api_version: "v1", groups }
}

pub fn legacy_group_doc(group: &str) -> Option<ApiGroup> {
    all_groups().iter().find(|(g, _)| *g == group && !g.is_empty()).map(|(g, v)| ApiGroup {
        kind: "APIGroup",
        api_version: "v1",
        ..legacy_group(g, v)
    })
}

/// `APIResourceList`. kube-apiserver leaves apiVersion out for the core group (`/api/v1`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_version: &'static str,
    group_version: String,
    resources: Vec<ApiResource>,
}

/// `metav1.APIResource`, fields in upstream's order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    name: String,
    singular_name: String,
    namespaced: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    short_names: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    categories: &'static [&'static str],
    #[serde(skip_serializing_if = "String::is_empty")]
    storage_version_hash: String,
}

fn legacy_resource(rt: &ResourceType) -> ApiResource {
    ApiResource {
        name: rt.plural.to_string(),
        singular_name: rt.singular.to_string(),
        namespaced: rt.namespaced(),
        group: "",
        version: "",
        kind: rt.kind,
        verbs: verbs(rt),
        short_names: rt.short_names,
        categories: categories(rt),
        storage_version_hash: storage_version_hash(rt),
    }
}

/// A subresource as its own entry (`pods/eviction`); group and version only when they differ
/// from the parent's.
fn legacy_subresource(rt: &ResourceType, sub: Subresource) -> ApiResource {
    let (group, version, kind, verbs) = sub_kind(rt, sub);
    let foreign = group != rt.group || version != rt.version;
    ApiResource {
        name: format!("{}/{}", rt.plural, sub.name()),
        singular_name: String::new(),
        namespaced: rt.namespaced(),
        group: if foreign { group } else { "" },
        version: if foreign { version } else { "" },
        kind,
        verbs,
        short_names: &[],
        categories: &[],
        storage_version_hash: String::new(),
    }
}

/// `/api/v1` or `/apis/<g>/<v>` as an APIResourceList, subresources as `pods/eviction` entries.
pub fn resource_list(group: &str, version: &str) -> Option<ApiResourceList> {
    let mut resources = Vec::new();
    for rt in types_in(group, version) {
        resources.push(legacy_resource(rt));
        resources.extend(rt.subresources.iter().map(|s| legacy_subresource(rt, *s)));
    }
    for (plural, kind) in review_resources(group, version) {
        resources.push(ApiResource {
            name: plural.to_string(),
            singular_name: kind.to_lowercase(),
            namespaced: false,
            group: "",
            version: "",
            kind,
            verbs: &["create"],
            short_names: &[],
            categories: &[],
            storage_version_hash: String::new(),
        });
    }
    if resources.is_empty() {
        return None;
    }
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    let (api_version, group_version) =
        if group.is_empty() { ("", version.to_string()) } else { ("v1", format!("{group}/{version}")) };
    Some(ApiResourceList { kind: "APIResourceList", api_version, group_version, resources })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(doc: &impl Serialize) -> Value {
        serde_json::to_value(doc).unwrap()
    }

    #[test]
    fn aggregated_discovery_has_what_kubectl_needs() {
        let core = value(&aggregated(true));
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
        let apis = value(&aggregated(false));
        assert!(apis["items"].as_array().unwrap().iter().any(|g| g["metadata"]["name"] == "apps"));
    }

    #[test]
    fn legacy_core_list_names_eviction_in_policy() {
        let list = value(&resource_list("", "v1").unwrap());
        let eviction =
            list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").unwrap().clone();
        assert_eq!((eviction["group"].as_str(), eviction["version"].as_str()), (Some("policy"), Some("v1")));
        assert!(resource_list("apps", "v9").is_none());
        assert!(legacy_group_doc("authorization.k8s.io").is_some());
    }

    /// The hashes kube-apiserver 1.31 sent for these resources (captured from a real cluster's
    /// `/api/v1`); versions sharing storage share the hash (autoscaling v1 and v2 HPAs).
    #[test]
    fn storage_version_hashes_are_kube_apiservers() {
        let hash = |api_version: &str, kind: &str| storage_version_hash(registry::by_kind(api_version, kind).unwrap());
        assert_eq!(hash("v1", "Pod"), "xPOwRZ+Yhw8=");
        assert_eq!(hash("v1", "ConfigMap"), "qFsyl6wFWjQ=");
        assert_eq!(hash("v1", "Namespace"), "Q3oi5N2YM8M=");
        assert_eq!(hash("v1", "Service"), "0/CO1lhkEBI=");
        assert_eq!(hash("v1", "PersistentVolumeClaim"), "QWTyNDq0dC4=");
        assert_eq!(hash("v1", "Event"), "r2yiGXH7wu8=");
        assert_eq!(hash("events.k8s.io/v1", "Event"), "r2yiGXH7wu8=");
        assert_eq!(
            hash("autoscaling/v1", "HorizontalPodAutoscaler"),
            hash("autoscaling/v2", "HorizontalPodAutoscaler")
        );
    }

    /// Entries byte for byte as kube-apiserver sends them in `/api/v1` (captured from a real
    /// cluster): field order, omitted empty fields, the storage version hash.
    #[test]
    fn legacy_entries_are_kube_apiservers_bytes() {
        let list = resource_list("", "v1").unwrap();
        let entry = |name: &str| {
            serde_json::to_string(list.resources.iter().find(|r| r.name == name).expect("listed")).unwrap()
        };
        assert_eq!(
            entry("pods"),
            r#"{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["po"],"categories":["all"],"storageVersionHash":"xPOwRZ+Yhw8="}"#
        );
        assert_eq!(
            entry("namespaces"),
            r#"{"name":"namespaces","singularName":"namespace","namespaced":false,"kind":"Namespace","verbs":["create","delete","get","list","patch","update","watch"],"shortNames":["ns"],"storageVersionHash":"Q3oi5N2YM8M="}"#
        );
        assert_eq!(
            entry("pods/eviction"),
            r#"{"name":"pods/eviction","singularName":"","namespaced":true,"group":"policy","version":"v1","kind":"Eviction","verbs":["create"]}"#
        );
        assert_eq!(
            entry("pods/status"),
            r#"{"name":"pods/status","singularName":"","namespaced":true,"kind":"Pod","verbs":["get","patch","update"]}"#
        );
        let text = serde_json::to_string(&list).unwrap();
        assert!(
            text.starts_with(r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"configmaps","#),
            "{text}"
        );
        let apps = serde_json::to_string(&resource_list("apps", "v1").unwrap()).unwrap();
        assert!(
            apps.starts_with(r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"apps/v1","resources":["#),
            "{apps}"
        );
    }

    #[test]
    fn aggregated_entries_follow_upstreams_field_order() {
        let doc = aggregated(false);
        let apps = doc.items.iter().find(|g| g.metadata.name == "apps").unwrap();
        let deployments = apps.versions[0].resources.iter().find(|r| r.resource == "deployments").unwrap();
        assert_eq!(
            serde_json::to_string(deployments).unwrap(),
            r#"{"resource":"deployments","responseKind":{"group":"apps","version":"v1","kind":"Deployment"},"scope":"Namespaced","singularResource":"deployment","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["deploy"],"categories":["all"],"subresources":[{"subresource":"scale","responseKind":{"group":"autoscaling","version":"v1","kind":"Scale"},"verbs":["get","patch","update"]},{"subresource":"status","responseKind":{"group":"apps","version":"v1","kind":"Deployment"},"verbs":["get","patch","update"]}]}"#
        );
        let text = serde_json::to_string(&doc).unwrap();
        assert!(
            text.starts_with(r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items":[{"metadata":{"name":"#),
            "{text}"
        );
    }
}
