//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for with
//! `Accept: application/json;as=Table;…`. Columns, cells and rows come from `tug_core::table`.

use serde_json::Value;
use tug_core::registry::ResourceType;
use tug_store::Revision;

pub use tug_core::table::IncludeObject as Include;

/// What `includeObject` asks for; an unknown value falls back to the default (Metadata).
pub fn include_from_query(v: Option<&str>) -> Include {
    Include::from_query(v).unwrap_or_default()
}

/// A Table of `objects` (already in `rt`'s version). Watch events leave out the column
/// definitions after the first, as Kubernetes does; kubectl prints either.
pub fn table(rt: &ResourceType, objects: &[Value], include: Include, revision: Revision, columns: bool) -> Value {
    let mut t = tug_core::table::table(rt, objects, jiff::Timestamp::now(), &revision.to_string(), include);
    if !columns && let Some(map) = t.as_object_mut() {
        map.remove("columnDefinitions");
    }
    t
}
