//! Strategic-merge metadata (merge keys, patch strategies, list types), which k8s-openapi's
//! schemas do not carry.
//!
//! kubectl builds strategic merge patches from the v3 document: a list field whose schema has
//! `x-kubernetes-patch-merge-key` is merged element by element (containers by `name`), any other
//! list is replaced whole. Kubernetes takes these from struct tags in k8s.io/api. Here they come
//! from the table the server's own strategic merge patch uses, `tug_core::patch::schema`, so what
//! kubectl is told and what the server does cannot disagree: each served kind's patch type is
//! walked alongside its OpenAPI definition (following `$ref`s into fields and list elements), and
//! every field with a patch strategy is marked on the definition it was found in.

use crate::kinds::Gvk;
use crate::schemas::REF_PREFIX;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use tug_core::patch::schema::{self, Field, TypeDef};

/// A field with a patch strategy, found in a definition of the document.
#[derive(Debug)]
pub(crate) struct Marked {
    pub definition: String,
    pub field: &'static Field,
}

/// The marked fields of `schemas` (a `components.schemas` map) reached from `kinds` (definition
/// name of each kind), and the patch-schema fields that did not fit the definitions (missing, or
/// a list where the schema has an object); a field may be marked more than once.
pub(crate) fn marked_fields(schemas: &Map<String, Value>, kinds: &BTreeMap<Gvk, String>) -> (Vec<Marked>, Vec<String>) {
    let mut walk = Walk { schemas, seen: BTreeSet::new(), marked: Vec::new(), misfits: Vec::new() };
    for (gvk, definition) in kinds {
        let api_version =
            if gvk.group.is_empty() { gvk.version.to_owned() } else { format!("{}/{}", gvk.group, gvk.version) };
        if let Some(root) = schema::root_type(&api_version, gvk.kind) {
            walk.visit(definition, root);
        }
    }
    (walk.marked, walk.misfits)
}

struct Walk<'a> {
    schemas: &'a Map<String, Value>,
    /// (definition, patch type) pairs already walked.
    seen: BTreeSet<(String, &'static str)>,
    marked: Vec<Marked>,
    misfits: Vec<String>,
}

impl Walk<'_> {
    fn visit(&mut self, definition: &str, ty: &'static TypeDef) {
        if !self.seen.insert((definition.to_owned(), ty.name)) {
            return;
        }
        let properties = self.schemas.get(definition).and_then(|d| d.get("properties"));
        for field in ty.fields {
            let Some(property) = properties.and_then(|p| p.get(field.name)) else {
                self.misfits.push(format!("{definition} has no field {} (patch type {})", field.name, ty.name));
                continue;
            };
            let is_array = property.get("type").and_then(Value::as_str) == Some("array");
            if field.is_list() != is_array {
                self.misfits
                    .push(format!("{definition}.{}: the patch schema and the OpenAPI shape differ", field.name));
                continue;
            }
            if field.patch_strategy().is_some() {
                self.marked.push(Marked { definition: definition.to_owned(), field });
            }
            if let Some(child) = schema::type_named(field.ty) {
                match target(property) {
                    Some(child_definition) => self.visit(&child_definition, child),
                    None => self.misfits.push(format!("{definition}.{} does not refer to a definition", field.name)),
                }
            }
        }
    }
}

/// The definition a property's value (or each of its elements) refers to: `$ref`,
/// `allOf[0].$ref`, through `items` for lists.
fn target(property: &Value) -> Option<String> {
    let value = property.get("items").unwrap_or(property);
    let value = value.get("allOf").and_then(|all| all.get(0)).unwrap_or(value);
    let name = value.get("$ref")?.as_str()?.strip_prefix(REF_PREFIX)?;
    Some(name.replace("~1", "/").replace("~0", "~"))
}

/// Marks every field with a patch strategy reached from `kinds` in `schemas`.
pub(crate) fn annotate(schemas: &mut Map<String, Value>, kinds: &BTreeMap<Gvk, String>) {
    let (marked, _) = marked_fields(schemas, kinds);
    for Marked { definition, field } in marked {
        let property = schemas
            .get_mut(&definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field.name))
            .and_then(Value::as_object_mut);
        if let Some(property) = property {
            property.extend(extensions(field));
        }
    }
}

/// The OpenAPI extensions Kubernetes publishes for `field`.
pub(crate) fn extensions(field: &Field) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(strategy) = field.patch_strategy() {
        out.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
    }
    if let Some(key) = field.merge_key() {
        out.insert("x-kubernetes-patch-merge-key".into(), json!(key));
    }
    if let Some(list_type) = field.list_type() {
        out.insert("x-kubernetes-list-type".into(), json!(list_type));
    }
    if !field.map_keys.is_empty() {
        out.insert("x-kubernetes-list-map-keys".into(), json!(field.map_keys));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_follow_the_patch_schema() {
        let containers = schema::field_at("v1", "Pod", &["spec", "containers"]).expect("modelled");
        assert_eq!(
            Value::Object(extensions(containers)),
            json!({
                "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "name",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            })
        );
        let finalizers = schema::field_at("v1", "Pod", &["metadata", "finalizers"]).expect("modelled");
        assert_eq!(
            Value::Object(extensions(finalizers)),
            json!({ "x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "set" })
        );
        let strategy = schema::field_at("apps/v1", "Deployment", &["spec", "strategy"]).expect("modelled");
        assert_eq!(Value::Object(extensions(strategy)), json!({ "x-kubernetes-patch-strategy": "retainKeys" }));
    }

    #[test]
    fn targets_are_found_through_all_of_and_items() {
        let direct = json!({ "$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec" });
        let described = json!({ "allOf": [direct], "description": "spec" });
        let list = json!({ "type": "array", "items": direct });
        for property in [&direct, &described, &list] {
            assert_eq!(target(property).as_deref(), Some("io.k8s.api.core.v1.PodSpec"));
        }
        assert_eq!(target(&json!({ "type": "string" })), None);
    }
}
