//! OpenAPI v3 documents for the served resource types, built once at start.
//!
//! kubectl 1.29+ fetches `/openapi/v3` (the root, listing one URL per group-version) and then the
//! group-version document of the kind it handles. `apply`, `create -f`, `replace` and `edit` need
//! the kind's PATCH operation to carry its GVK, a `fieldValidation` parameter and the four patch
//! media types; `apply` and `edit` build strategic merge patches from the schemas' merge keys;
//! `explain` finds schemas by `x-kubernetes-group-version-kind` and follows `$ref`s.
//!
//! Schemas come from k8s-openapi through schemars (OpenAPI 3.0 settings), whose definition names
//! already are the Kubernetes ones (`io.k8s.api.apps.v1.Deployment`). Paths and kinds come from
//! tug-core's registry. No IO.

mod kinds;
mod patch_meta;
mod paths;
mod schemas;

use kinds::{Gvk, KnownKind};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;
use tug_core::registry::{self, ResourceType};

pub use paths::PATCH_MEDIA_TYPES;

/// Every group-version document, serialized once, and the root that lists them.
pub struct OpenApi {
    root: Vec<u8>,
    /// Keyed by `api/v1`, `apis/apps/v1`.
    documents: BTreeMap<String, Document>,
}

struct Document {
    hash: String,
    json: Vec<u8>,
}

impl fmt::Debug for OpenApi {
    // The documents are megabytes; their sizes say enough.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (path, doc) in &self.documents {
            map.entry(path, &format_args!("{} bytes, hash {}", doc.json.len(), doc.hash));
        }
        map.finish()
    }
}

impl OpenApi {
    /// The documents for every type in the registry.
    pub fn build() -> OpenApi {
        OpenApi::build_for(registry::RESOURCES)
    }

    /// The documents for `resources` (the registry, or a subset in tests).
    pub fn build_for(resources: &[ResourceType]) -> OpenApi {
        let known = kinds::known_kinds();
        let mut documents = BTreeMap::new();
        for (group, version) in group_versions(resources) {
            let served: Vec<&ResourceType> =
                resources.iter().filter(|r| r.group == group && r.version == version).collect();
            let json = document_json(&served, &known).to_string().into_bytes();
            documents.insert(gv_path(group, version), Document { hash: content_hash(&json), json });
        }
        let root = root_json(&documents).to_string().into_bytes();
        OpenApi { root, documents }
    }

    /// The `/openapi/v3` root:
    /// `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=<HASH>"},…}}`.
    pub fn root_json(&self) -> &[u8] {
        &self.root
    }

    /// One group-version document (`api/v1`, `apis/apps/v1`; a leading `/` is accepted) as JSON,
    /// with its hash, which changes whenever the document does (use it as the ETag).
    pub fn document(&self, gv_path: &str) -> Option<(&str, &[u8])> {
        let doc = self.documents.get(gv_path.trim_start_matches('/'))?;
        Some((&doc.hash, &doc.json))
    }

    /// The group-version paths served (`api/v1`, `apis/apps/v1`, …), sorted.
    pub fn group_version_paths(&self) -> impl Iterator<Item = &str> {
        self.documents.keys().map(String::as_str)
    }
}

/// `api/v1` or `apis/apps/v1`: the document's name under `/openapi/v3/`.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// Distinct group-versions in order of first appearance.
fn group_versions(resources: &[ResourceType]) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in resources {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn document_json(served: &[&ResourceType], known: &[KnownKind]) -> Value {
    let components = components(served, known);
    let mut path_map = Map::new();
    for resource in served {
        paths::add_resource(&mut path_map, resource, &components);
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "paths": path_map,
        "components": { "schemas": components.schemas },
    })
}

/// The schemas of the document serving `served`: their kinds and the kinds their subresources
/// take and return.
fn components(served: &[&ResourceType], known: &[KnownKind]) -> schemas::Components {
    let listed: Vec<Gvk> = served.iter().map(|r| paths::gvk_of(r)).collect();
    let mut referenced: Vec<Gvk> = served.iter().flat_map(|r| paths::referenced_kinds(r)).collect();
    referenced.sort();
    referenced.dedup();
    schemas::build(known, &listed, &referenced)
}

fn root_json(documents: &BTreeMap<String, Document>) -> Value {
    let paths: Map<String, Value> = documents
        .iter()
        .map(|(path, doc)| {
            (path.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash) }))
        })
        .collect();
    json!({ "paths": paths })
}

/// 128-bit FNV-1a of the document, in upper-case hex like Kubernetes' hashes. It only has to
/// change when the document does (clients cache by URL), not resist attack.
fn content_hash(bytes: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let hash = bytes.iter().fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    format!("{hash:032X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_content() {
        assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
        assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
        assert_eq!(content_hash(b"").len(), 32);
    }

    /// The components of every group-version document the registry serves, freshly built.
    fn served_components() -> Vec<(String, schemas::Components)> {
        let known = kinds::known_kinds();
        group_versions(registry::RESOURCES)
            .into_iter()
            .map(|(group, version)| {
                let served: Vec<&ResourceType> =
                    registry::RESOURCES.iter().filter(|r| r.group == group && r.version == version).collect();
                (gv_path(group, version), components(&served, &known))
            })
            .collect()
    }

    /// A misspelt or misplaced field in the patch schema would be silently left out of the
    /// documents (and do nothing in the patch either); every field must be one of its definition.
    #[test]
    fn every_patch_schema_field_fits_its_openapi_definition() {
        for (gv, components) in served_components() {
            let (marked, misfits) = patch_meta::marked_fields(&components.schemas, &components.names);
            assert!(misfits.is_empty(), "{gv}:\n{}", misfits.join("\n"));
            assert!(!marked.is_empty(), "{gv}: at least metadata.finalizers is marked");
        }
    }

    /// A definition reached through two patch types (a Container as a container and as an
    /// ephemeral container, PodSpec under every workload) must be marked the same way by both.
    #[test]
    fn each_definition_field_is_marked_one_way() {
        // (definition, field) -> (its extensions, the document that first marked it)
        type Seen = BTreeMap<(String, &'static str), (Map<String, Value>, String)>;
        let mut seen = Seen::new();
        for (gv, components) in served_components() {
            let (marked, _) = patch_meta::marked_fields(&components.schemas, &components.names);
            for patch_meta::Marked { definition, field } in marked {
                let extensions = patch_meta::extensions(field);
                let key = (definition, field.name);
                match seen.get(&key) {
                    Some((first, first_gv)) => {
                        assert_eq!(first, &extensions, "{}.{} in {first_gv} and {gv}", key.0, key.1)
                    }
                    None => {
                        seen.insert(key, (extensions, gv.clone()));
                    }
                }
            }
        }
        let published = |definition: &str, field: &str| seen.contains_key(&(definition.to_owned(), field));
        assert!(published("io.k8s.api.core.v1.EphemeralContainer", "ports"));
        assert!(published("io.k8s.api.apps.v1.DeploymentSpec", "strategy"));
    }

    #[test]
    fn kinds_without_a_k8s_openapi_type_still_get_a_schema() {
        let widget = ResourceType {
            group: "example.com",
            version: "v1",
            kind: "Widget",
            plural: "widgets",
            singular: "widget",
            short_names: &[],
            scope: registry::Scope::Cluster,
            in_all: false,
            subresources: &[],
            storage: "widgets.example.com",
        };
        let openapi = OpenApi::build_for(std::slice::from_ref(&widget));
        let (_, bytes) = openapi.document("apis/example.com/v1").expect("document");
        let doc: Value = serde_json::from_slice(bytes).expect("JSON");
        let gvk = json!({ "group": "example.com", "kind": "Widget", "version": "v1" });
        assert_eq!(
            doc["paths"]["/apis/example.com/v1/widgets/{name}"]["patch"]["x-kubernetes-group-version-kind"],
            gvk
        );
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let widget_schema = schemas.values().find(|s| s["x-kubernetes-group-version-kind"][0] == gvk).expect("schema");
        assert_eq!(widget_schema["x-kubernetes-preserve-unknown-fields"], true);
    }

    #[test]
    fn gv_paths_distinguish_the_core_group() {
        assert_eq!(gv_path("", "v1"), "api/v1");
        assert_eq!(gv_path("apps", "v1"), "apis/apps/v1");
    }
}
