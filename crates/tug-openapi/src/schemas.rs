//! `components.schemas` of one group-version document: k8s-openapi's schemars schemas for the
//! kinds served there and everything they reference, plus the List kinds, keyed by Kubernetes
//! definition names (`io.k8s.api.apps.v1.Deployment`).

use crate::kinds::{self, Gvk, KnownKind};
use crate::patch_meta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Where `$ref`s point; schemars' OpenAPI 3 settings use the same path.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// A `$ref` to a definition of this document.
pub(crate) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// The schemas of one document and the definition name of each kind in it.
#[derive(Debug)]
pub(crate) struct Components {
    pub schemas: Map<String, Value>,
    /// Definition name of every kind the document holds (a served kind's List is `<name>List`).
    pub names: BTreeMap<Gvk, String>,
}

impl Components {
    /// The definition of `gvk`'s kind.
    pub fn name_of(&self, gvk: Gvk) -> Option<&str> {
        self.names.get(&gvk).map(String::as_str)
    }

    /// The definition of `gvk`'s List kind (present for the kinds served in this document).
    pub fn list_name_of(&self, gvk: Gvk) -> Option<String> {
        self.name_of(gvk).map(|n| format!("{n}List"))
    }
}

/// Builds the components for `listed` kinds (served here: they get a `List` kind too) and
/// `referenced` kinds (taken or returned by subresources).
pub(crate) fn build(known: &[KnownKind], listed: &[Gvk], referenced: &[Gvk]) -> Components {
    let mut generator = SchemaSettings::openapi3().with(|s| s.meta_schema = None).into_generator();
    let mut names = BTreeMap::new();
    for &gvk in listed.iter().chain(referenced) {
        if let Some(name) = kinds::find(known, gvk).and_then(|k| ref_name(&(k.reference)(&mut generator))) {
            names.insert(gvk, name);
        }
    }
    // Request bodies, and what a kind without a k8s-openapi type falls back on.
    kinds::request_body_types(&mut generator);
    generator.subschema_for::<ObjectMeta>();
    generator.subschema_for::<ListMeta>();

    let mut components = Components { schemas: take_definitions(&mut generator), names };
    for &gvk in listed {
        if !components.names.contains_key(&gvk) {
            add_fallback(&mut components, gvk);
        }
    }
    fix_scalars(&mut components.schemas);
    for (&gvk, name) in &components.names {
        set_gvk(&mut components.schemas, name, gvk);
    }
    for &gvk in listed {
        add_list(&mut components, gvk);
    }
    patch_meta::annotate(&mut components.schemas, &components.names);
    components
}

fn take_definitions(generator: &mut SchemaGenerator) -> Map<String, Value> {
    generator.take_definitions(true).into_iter().collect()
}

/// The definition a `$ref` schema points at, with JSON-pointer escapes undone.
fn ref_name(schema: &Schema) -> Option<String> {
    let target = schema.get("$ref")?.as_str()?.strip_prefix(REF_PREFIX)?;
    Some(target.replace("~1", "/").replace("~0", "~"))
}

/// k8s-openapi describes int-or-string and quantities only by an extension; kubectl and client
/// generators expect the shapes Kubernetes publishes in its v3 documents.
fn fix_scalars(schemas: &mut Map<String, Value>) {
    replace_shape(
        schemas,
        INT_OR_STRING,
        json!({ "format": "int-or-string", "oneOf": [{ "type": "integer" }, { "type": "string" }] }),
    );
    replace_shape(schemas, QUANTITY, json!({ "oneOf": [{ "type": "string" }, { "type": "number" }] }));
}

/// Keeps the definition's description and replaces everything else by `shape`.
fn replace_shape(schemas: &mut Map<String, Value>, name: &str, shape: Value) {
    let Some(definition) = schemas.get_mut(name) else { return };
    let description = definition.get("description").cloned();
    *definition = shape;
    if let (Some(description), Some(obj)) = (description, definition.as_object_mut()) {
        obj.insert("description".into(), description);
    }
}

pub(crate) fn gvk_value(gvk: Gvk) -> Value {
    json!({ "group": gvk.group, "kind": gvk.kind, "version": gvk.version })
}

/// kubectl finds a kind's schema by this extension (a list, as some definitions serve several).
fn set_gvk(schemas: &mut Map<String, Value>, name: &str, gvk: Gvk) {
    if let Some(obj) = schemas.get_mut(name).and_then(Value::as_object_mut) {
        obj.insert("x-kubernetes-group-version-kind".into(), json!([gvk_value(gvk)]));
    }
}

fn type_meta_properties() -> Map<String, Value> {
    let mut props = Map::new();
    props.insert(
        "apiVersion".into(),
        json!({
            "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
            "type": "string",
        }),
    );
    props.insert(
        "kind".into(),
        json!({
            "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            "type": "string",
        }),
    );
    props
}

fn described_ref(name: &str, description: &str) -> Value {
    json!({ "allOf": [reference(name)], "description": description })
}

/// `<Kind>List`, as Kubernetes defines one for every listable kind.
fn add_list(components: &mut Components, gvk: Gvk) {
    let Some(item) = components.name_of(gvk).map(str::to_owned) else { return };
    let list = format!("{item}List");
    let mut props = type_meta_properties();
    props.insert(
        "items".into(),
        json!({ "description": format!("List of {}.", gvk.kind), "type": "array", "items": reference(&item) }),
    );
    props.insert(
        "metadata".into(),
        described_ref(
            LIST_META,
            "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        ),
    );
    let schema = json!({
        "description": format!("{}List is a list of {} objects.", gvk.kind, gvk.kind),
        "type": "object",
        "required": ["items"],
        "properties": props,
        "x-kubernetes-group-version-kind": [{ "group": gvk.group, "kind": format!("{}List", gvk.kind), "version": gvk.version }],
    });
    components.schemas.insert(list, schema);
}

/// A kind the registry serves but k8s-openapi has no type for: an object that keeps any field,
/// so validation passes and `explain` still shows its metadata.
fn add_fallback(components: &mut Components, gvk: Gvk) {
    let group = if gvk.group.is_empty() { "core" } else { gvk.group };
    let name = format!("io.tugboat.{group}.{}.{}", gvk.version, gvk.kind);
    let mut props = type_meta_properties();
    props.insert("metadata".into(), described_ref(OBJECT_META, "Standard object's metadata."));
    let schema = json!({
        "description": format!("{} (schema not published by this server).", gvk.kind),
        "type": "object",
        "properties": props,
        "x-kubernetes-preserve-unknown-fields": true,
    });
    components.schemas.insert(name.clone(), schema);
    components.names.insert(gvk, name);
}
