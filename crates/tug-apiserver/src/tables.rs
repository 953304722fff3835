//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for with
//! `Accept: application/json;as=Table;…`. Columns and cells come from `tug_core::table`.

use serde_json::{Value, json};
use tug_core::registry::ResourceType;
use tug_store::Revision;

/// What each row carries as `object` (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    /// PartialObjectMetadata, the default: enough for -A, --show-labels and -w.
    Metadata,
    Object,
}

impl Include {
    pub fn parse(v: Option<&str>) -> Include {
        match v {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// A Table of `objects` (already in `rt`'s version).
pub fn table(rt: &ResourceType, objects: &[Value], include: Include, revision: Revision, columns: bool) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = json!({"cells": tug_core::table::row_cells(rt, obj, now)});
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
                Include::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": revision.to_string()},
        "rows": rows,
    });
    if columns {
        t["columnDefinitions"] = tug_core::table::column_definitions(rt);
    }
    t
}
