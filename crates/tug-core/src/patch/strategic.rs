//! The strategic merge patch algorithm of `k8s.io/apimachinery/pkg/util/strategicpatch`, applied
//! to JSON values with the patch metadata of [`super::schema`].
//!
//! Order of work inside one map, as upstream: `$patch`, then `$retainKeys`, then each
//! `$setElementOrder/<list>` together with its list, then the other keys; `$deleteFromPrimitiveList`
//! runs last so that an element both added and deleted ends up deleted (upstream it depends on Go
//! map order). Values taken from the patch for fields the live object lacks are merged into an empty
//! value, so directives inside them are applied rather than stored.
//!
//! Deliberate differences: `$patch: merge` is accepted as the no-op it names (upstream rejects
//! it); deleting from a list the object lacks changes nothing (upstream stores the deletion list);
//! a patch whose shape contradicts the live object or the schema (a list where an object is
//! expected) is a bad request rather than a later conversion failure.

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::{Field, FieldKind, TypeDef, type_named};

type Object = Map<String, Value>;
type Schema = Option<&'static TypeDef>;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `original`, both objects of the type `root`.
pub(super) fn apply(root: &'static TypeDef, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(bad(format!("a strategic merge patch must be a JSON object, not {}", shape(patch))));
    };
    let original = match original {
        Value::Object(object) => object.clone(),
        Value::Null => Object::new(),
        other => return Err(bad(format!("cannot strategically patch {}, only an object", shape(other)))),
    };
    merge_map(original, patch.clone(), Some(root), "").map(Value::Object)
}

fn merge_map(mut original: Object, mut patch: Object, ty: Schema, path: &str) -> Result<Object, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            // Merging into nothing applies any directives nested in the replacement.
            Some("replace") => return merge_map(Object::new(), patch, ty, path),
            Some("delete") => return Ok(Object::new()),
            Some("merge") => {}
            _ => return Err(bad(format!("unknown patch type {directive} in the map at {}", at(path)))),
        }
    }
    if let Some(keys) = patch.remove(RETAIN_KEYS) {
        retain_keys(&mut original, &patch, &keys, path)?;
    }
    let ordered: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive in ordered {
        let order = patch.remove(&directive).unwrap_or(Value::Null);
        let name = directive_target(&directive, SET_ELEMENT_ORDER, path)?;
        let list = patch.remove(&name);
        set_element_order(&mut original, &name, &order, list, ty, path)?;
    }
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((directive_target(&key, DELETE_FROM_PRIMITIVE_LIST, path)?, value));
        } else if key.starts_with('$') {
            return Err(bad(format!("unknown patch directive {key:?} at {}", at(path))));
        } else {
            merge_field(&mut original, key, value, ty, path)?;
        }
    }
    for (name, values) in deletions {
        delete_from_primitive_list(&mut original, &name, &values, path)?;
    }
    Ok(original)
}

/// `$setElementOrder/containers` -> `containers`.
fn directive_target(key: &str, prefix: &str, path: &str) -> Result<String, PatchError> {
    match key.strip_prefix(prefix) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(bad(format!("directive {key:?} at {} names no field", at(path)))),
    }
}

fn merge_field(original: &mut Object, key: String, value: Value, parent: Schema, path: &str) -> Result<(), PatchError> {
    let field = parent.and_then(|t| t.field(&key));
    let path = child_path(path, &key);
    if value.is_null() {
        original.remove(&key);
        return Ok(());
    }
    if field.is_some_and(|f| f.kind == FieldKind::Opaque) {
        original.insert(key, value);
        return Ok(());
    }
    check_shape(field, &value, &path)?;
    let merged = match original.remove(&key) {
        None | Some(Value::Null) => fresh(value, field, &path)?,
        Some(current) => merge_value(current, value, field, &path)?,
    };
    original.insert(key, merged);
    Ok(())
}

/// Rejects a patch value of the wrong shape for a field the schema knows.
fn check_shape(field: Option<&Field>, value: &Value, path: &str) -> Result<(), PatchError> {
    match field {
        Some(f) if f.is_list() && !value.is_array() => Err(bad(format!("{path} must be a list, not {}", shape(value)))),
        Some(f) if f.is_object() && !value.is_object() => {
            Err(bad(format!("{path} must be an object, not {}", shape(value))))
        }
        _ => Ok(()),
    }
}

fn merge_value(current: Value, patch: Value, field: Option<&'static Field>, path: &str) -> Result<Value, PatchError> {
    match (current, patch) {
        (Value::Object(current), Value::Object(patch)) => {
            let base = if field.is_some_and(|f| f.kind == FieldKind::ReplacedObject) { Object::new() } else { current };
            merge_map(base, patch, child_type(field), path).map(Value::Object)
        }
        (Value::Array(current), Value::Array(patch)) => merge_list(current, patch, field, path).map(Value::Array),
        (current, patch) if is_container(&current) || is_container(&patch) => {
            Err(bad(format!("cannot patch {} at {path} with {}", shape(&current), shape(&patch))))
        }
        (_, scalar) => Ok(scalar),
    }
}

/// A patch value for a field the live object lacks: merged into an empty value of its shape.
fn fresh(value: Value, field: Option<&'static Field>, path: &str) -> Result<Value, PatchError> {
    match value {
        Value::Object(patch) => merge_map(Object::new(), patch, child_type(field), path).map(Value::Object),
        Value::Array(patch) => merge_list(Vec::new(), patch, field, path).map(Value::Array),
        scalar => Ok(scalar),
    }
}

/// A list element taken whole from the patch.
fn fresh_element(value: Value, ty: Schema, path: &str) -> Result<Value, PatchError> {
    match value {
        Value::Object(patch) => merge_map(Object::new(), patch, ty, path).map(Value::Object),
        Value::Array(patch) => replace_list(patch, None, path).map(Value::Array),
        scalar => Ok(scalar),
    }
}

fn child_type(field: Option<&Field>) -> Schema {
    field.and_then(|f| type_named(f.ty))
}

fn merge_list(
    current: Vec<Value>,
    patch: Vec<Value>,
    field: Option<&'static Field>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    match field.map(|f| f.kind) {
        Some(FieldKind::MergeList(Some(key)) | FieldKind::MergeRetainKeysList(key)) => {
            merge_keyed_list(current, patch, key, child_type(field), path)
        }
        Some(FieldKind::MergeList(None)) => merge_scalar_set(current, patch, path),
        _ => replace_list(patch, child_type(field), path),
    }
}

/// An atomic list: the patch's elements, minus directive elements that only make sense when merging.
fn replace_list(patch: Vec<Value>, ty: Schema, path: &str) -> Result<Vec<Value>, PatchError> {
    patch.into_iter().filter(|e| !has_directive(e)).map(|e| fresh_element(e, ty, path)).collect()
}

fn merge_keyed_list(
    current: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    ty: Schema,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let identity = Identity::MergeKey(key);
    let mut base = current;
    let mut plain = Vec::new();
    let mut replace = false;
    for element in patch {
        let Value::Object(mut element) = element else {
            return Err(bad(format!(
                "{path}: elements must be objects with the merge key {key:?}, not {}",
                shape(&element)
            )));
        };
        match element.remove(DIRECTIVE) {
            None => plain.push(Value::Object(element)),
            Some(directive) => match directive.as_str() {
                Some("delete") => {
                    let Some(doomed) = element.get(key) else {
                        return Err(no_merge_key(key, &Value::Object(element), path));
                    };
                    base.retain(|e| !identity.of(e).is_some_and(|v| same_scalar(v, doomed)));
                }
                Some("replace") => replace = true,
                Some("merge") if element.is_empty() => {}
                Some("merge") => plain.push(Value::Object(element)),
                _ => return Err(bad(format!("unknown patch type {directive} in a list element at {path}"))),
            },
        }
    }
    for element in &plain {
        if identity.of(element).is_none() {
            return Err(no_merge_key(key, element, path));
        }
    }
    if replace {
        base = plain.into_iter().map(|e| fresh_element(e, ty, path)).collect::<Result<_, _>>()?;
        plain = Vec::new();
    }
    let server_order = base.clone();
    let mut merged = base;
    for element in plain.iter().cloned() {
        match identity.position(&merged, &element) {
            Some(index) => {
                let (Value::Object(current), Value::Object(patch)) = (merged[index].take(), element) else {
                    continue;
                };
                merged[index] = Value::Object(merge_map(current, patch, ty, path)?);
            }
            None => merged.push(fresh_element(element, ty, path)?),
        }
    }
    Ok(reorder(merged, &plain, &server_order, identity))
}

/// A list of scalars with the merge strategy: a set union (deduplicated, as upstream).
fn merge_scalar_set(current: Vec<Value>, patch: Vec<Value>, path: &str) -> Result<Vec<Value>, PatchError> {
    if let Some(element) = current.iter().chain(&patch).find(|e| is_container(e)) {
        return Err(bad(format!("{path} is a list of scalars without a merge key; cannot merge {}", shape(element))));
    }
    let mut merged: Vec<Value> = Vec::new();
    for value in current.iter().chain(&patch) {
        if !merged.iter().any(|m| same_scalar(m, value)) {
            merged.push(value.clone());
        }
    }
    Ok(reorder(merged, &patch, &current, Identity::Whole))
}

fn delete_from_primitive_list(original: &mut Object, name: &str, doomed: &Value, path: &str) -> Result<(), PatchError> {
    let Value::Array(doomed) = doomed else {
        return Err(bad(format!("{DELETE_FROM_PRIMITIVE_LIST}{name} at {} must be a list", at(path))));
    };
    if let Some(Value::Array(list)) = original.get_mut(name) {
        list.retain(|v| !doomed.iter().any(|d| same_scalar(d, v)));
    }
    Ok(())
}

fn retain_keys(original: &mut Object, patch: &Object, keys: &Value, path: &str) -> Result<(), PatchError> {
    let not_names = || bad(format!("{RETAIN_KEYS} at {} must be a list of field names", at(path)));
    let Value::Array(keys) = keys else { return Err(not_names()) };
    let keys: Vec<&str> = keys.iter().map(|k| k.as_str().ok_or_else(not_names)).collect::<Result<_, _>>()?;
    let sets_field = |(k, v): &(&String, &Value)| {
        !v.is_null() && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST) && !k.starts_with(SET_ELEMENT_ORDER)
    };
    if let Some((k, _)) = patch.iter().filter(sets_field).find(|(k, _)| !keys.contains(&k.as_str())) {
        return Err(bad(format!("{RETAIN_KEYS} at {} does not list {k:?}, which the patch sets", at(path))));
    }
    original.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

/// `$setElementOrder/<name>`: merge the list as usual, then order the elements the patch names as
/// the directive says, keeping elements only the server has near their old neighbours.
fn set_element_order(
    original: &mut Object,
    name: &str,
    order: &Value,
    patch_list: Option<Value>,
    ty: Schema,
    path: &str,
) -> Result<(), PatchError> {
    let field = ty.and_then(|t| t.field(name));
    let path = child_path(path, name);
    let Value::Array(order) = order else {
        return Err(bad(format!("{SET_ELEMENT_ORDER}{name} at {path} must be a list")));
    };
    let patch_list = match patch_list {
        None => None,
        Some(Value::Null) => {
            original.remove(name);
            return Ok(());
        }
        Some(Value::Array(list)) => Some(list),
        Some(other) => return Err(bad(format!("{path} must be a list, not {}", shape(&other)))),
    };
    let identity = match field.map(|f| f.kind) {
        Some(FieldKind::MergeList(Some(key)) | FieldKind::MergeRetainKeysList(key)) => Identity::MergeKey(key),
        Some(FieldKind::MergeList(None)) => Identity::Whole,
        // Order only means something for merged lists; an atomic list is the patch's list.
        _ => {
            if let Some(list) = patch_list {
                original.insert(name.to_string(), Value::Array(replace_list(list, child_type(field), &path)?));
            }
            return Ok(());
        }
    };
    if let Identity::MergeKey(key) = identity
        && let Some(item) = order.iter().find(|item| identity.of(item).is_none())
    {
        return Err(bad(format!("{SET_ELEMENT_ORDER}{name} at {path}: item {item} lacks the merge key {key:?}")));
    }
    if let Some(list) = &patch_list {
        check_order_consistent(list, order, identity, name, &path)?;
    }
    let current = match original.remove(name) {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list),
        Some(other) => return Err(bad(format!("{path} is {} in the live object, not a list", shape(&other)))),
    };
    let server_order = current.clone().unwrap_or_default();
    let merged = match (current, patch_list) {
        (Some(current), None) => current,
        (current, Some(patch)) => merge_list(current.unwrap_or_default(), patch, field, &path)?,
        (None, None) => return Ok(()),
    };
    original.insert(name.to_string(), Value::Array(reorder(merged, order, &server_order, identity)));
    Ok(())
}

/// The patch list's elements must appear in the `$setElementOrder` list, in the same order.
fn check_order_consistent(
    list: &[Value],
    order: &[Value],
    identity: Identity,
    name: &str,
    path: &str,
) -> Result<(), PatchError> {
    let mut wanted = list.iter().filter(|e| !has_directive(e)).peekable();
    for item in order {
        if wanted.peek().is_some_and(|e| identity.same(e, item)) {
            wanted.next();
        }
    }
    match wanted.next() {
        None => Ok(()),
        Some(element) => Err(bad(format!(
            "the order of the list at {path} doesn't match {SET_ELEMENT_ORDER}{name}: {element} is missing or out of order"
        ))),
    }
}

/// How list elements are matched: by the merge key's value, or (scalars) by the value itself.
#[derive(Debug, Clone, Copy)]
enum Identity<'k> {
    MergeKey(&'k str),
    Whole,
}

impl Identity<'_> {
    fn of(self, element: &Value) -> Option<&Value> {
        match self {
            Identity::MergeKey(key) => element.get(key),
            Identity::Whole => Some(element),
        }
    }

    fn same(self, a: &Value, b: &Value) -> bool {
        matches!((self.of(a), self.of(b)), (Some(a), Some(b)) if same_scalar(a, b))
    }

    fn position(self, list: &[Value], element: &Value) -> Option<usize> {
        list.iter().position(|item| self.same(item, element))
    }
}

/// Upstream's element order: elements named by `patch_order` in that order, interleaved with the
/// elements only the server has, which keep their order in `server_order`. A server element goes
/// before a patch element only when both were in the live list in that order; so new elements
/// land before the remaining server-only ones.
fn reorder(merged: Vec<Value>, patch_order: &[Value], server_order: &[Value], identity: Identity) -> Vec<Value> {
    let (mut from_patch, mut server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|e| identity.position(patch_order, e).is_some());
    from_patch.sort_by_key(|e| identity.position(patch_order, e));
    server_only.sort_by_key(|e| identity.position(server_order, e).unwrap_or(usize::MAX));
    let server_first = |left: &Value, right: &Value| {
        matches!(
            (identity.position(server_order, left), identity.position(server_order, right)),
            (Some(l), Some(r)) if l < r
        )
    };
    let mut result = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => server_first(l, r),
        };
        result.extend(if take_left { left.next() } else { right.next() });
    }
    result
}

/// Equality as Go's `==` on decoded JSON: numbers compare by value (80 == 80.0).
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn has_directive(element: &Value) -> bool {
    element.as_object().is_some_and(|o| o.contains_key(DIRECTIVE))
}

fn is_container(value: &Value) -> bool {
    value.is_object() || value.is_array()
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn at(path: &str) -> &str {
    if path.is_empty() { "the top level" } else { path }
}

fn no_merge_key(key: &str, element: &Value, path: &str) -> PatchError {
    bad(format!("map: {element} does not contain declared merge key: {key} (at {path})"))
}

fn bad(message: String) -> PatchError {
    PatchError::BadRequest(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(list: &[Value]) -> Vec<Value> {
        list.iter().map(|e| e.get("name").cloned().unwrap_or_else(|| e.clone())).collect()
    }

    #[test]
    fn element_order_follows_upstream() {
        let named = |names: &[&str]| names.iter().map(|n| json!({ "name": n })).collect::<Vec<_>>();
        type Names = &'static [&'static str];
        // (live, patch order, merged (live order then appended), expected)
        let cases: &[(Names, Names, Names, Names)] = &[
            // A new element goes before the server-only ones, as in upstream's docs.
            (&["a", "b"], &["c"], &["a", "b", "c"], &["c", "a", "b"]),
            // Patched elements keep their live position relative to server-only ones.
            (&["a", "b", "c"], &["b"], &["a", "b", "c"], &["a", "b", "c"]),
            // The patch order wins among patched elements.
            // ... and a server-only element stays ahead of patched ones that followed it.
            (&["a", "b", "c"], &["c", "a"], &["a", "b", "c"], &["b", "c", "a"]),
            (&["a", "b"], &["a", "x", "b"], &["a", "b", "x"], &["a", "x", "b"]),
        ];
        for (live, order, merged, want) in cases {
            let got = reorder(named(merged), &named(order), &named(live), Identity::MergeKey("name"));
            assert_eq!(ids(&got), ids(&named(want)), "live {live:?} order {order:?}");
        }
    }

    #[test]
    fn numbers_match_across_representations() {
        assert!(same_scalar(&json!(80), &json!(80.0)));
        assert!(!same_scalar(&json!(80), &json!("80")));
    }
}
