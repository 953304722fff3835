//! The verbs on resources: create, get, list, update, patch, delete, deletecollection, and the
//! status, scale, binding, eviction and finalize subresources. Watches are in `watch.rs`.
//!
//! Every write follows the same path as in Kubernetes: decode (JSON, YAML or protobuf) → check
//! the type → decode through the typed struct (field validation) → server-set metadata →
//! defaulting → validation → store with compare-and-swap. Nothing is stored until every check
//! has passed, so a failed request leaves the store as it was.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tug_core::registry::{self, ResourceType, Subresource};
use tug_core::selector::{FieldSelector, LabelSelector};
use tug_core::status::ApiError;
use tug_core::{convert, defaults, patch, validation};
use tug_store::{ContinueToken, KeyValue, ListOptions, Revision};

use crate::cache::CachedObject;
use crate::errors::from_store;
use crate::request::{FieldValidation, Query, ResourceRequest};
use crate::{Api, Reply, object, typed};

/// Events expire an hour after their last write, as with Kubernetes' default `--event-ttl`.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// Retries of an update or patch that lost a compare-and-swap race it did not ask for.
const CAS_RETRIES: usize = 16;

/// What part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// Everything but `status` (for types with a status subresource).
    Main,
    /// Only `status`.
    Status,
    /// Only a Namespace's `spec.finalizers`.
    Finalize,
}

fn qualified_resource(rt: &ResourceType) -> String {
    rt.plural.to_string()
}

fn not_found(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::not_found(rt.group, &qualified_resource(rt), name)
}

fn conflict(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::conflict(rt.group, &qualified_resource(rt), name)
}

/// Decodes a request body by its Content-Type (JSON when absent, as kubectl's `scale
/// --current-replicas` PUT needs).
pub fn decode_body(body: &[u8], content_type: Option<&str>) -> Result<Value, ApiError> {
    decode(body, content_type).map_err(|e| match e {
        Undecodable::Json(e) => ApiError::bad_request(format!("the request body is not valid JSON: {e}")),
        Undecodable::Yaml(e) => ApiError::bad_request(format!("the request body is not valid YAML: {e}")),
        Undecodable::Other(e) => e,
    })
}

/// Decodes the object of a create or update. A body that does not parse, or is no object, is
/// answered as kube-apiserver does (its REST handlers' `transformDecodeError`): `the object
/// provided is unrecognized (must be of type Namespace): <why> (<the body's start>)`.
pub fn decode_object(body: &[u8], content_type: Option<&str>, rt: &ResourceType) -> Result<Value, ApiError> {
    let unrecognized = |why: String| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): {why} ({})",
            rt.kind,
            summarize(body)
        ))
    };
    let value = decode(body, content_type).map_err(|e| match e {
        Undecodable::Json(e) => {
            unrecognized(format!("couldn't get version/kind; json parse error: {}", go_json_error(body, &e)))
        }
        Undecodable::Yaml(e) => unrecognized(format!("error converting YAML to JSON: {e}")),
        Undecodable::Other(e) => e,
    })?;
    match &value {
        Value::Object(_) => Ok(value),
        other => Err(unrecognized(format!(
            "couldn't get version/kind; json parse error: json: cannot unmarshal {} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
            go_json_type(other)
        ))),
    }
}

/// Why a body could not be read as a value.
enum Undecodable {
    Json(serde_json::Error),
    Yaml(String),
    Other(ApiError),
}

fn decode(body: &[u8], content_type: Option<&str>) -> Result<Value, Undecodable> {
    let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).unwrap_or("");
    match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(Undecodable::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body).map_err(|_| Undecodable::Yaml("the body is not UTF-8".into()))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| Undecodable::Yaml(e.to_string()))
        }
        "application/vnd.kubernetes.protobuf" => tug_protobuf::decode(body).map_err(|e| {
            let mut err = ApiError::unsupported_media_type(media);
            err.message = format!("cannot decode the protobuf request body: {e}. Send JSON instead.");
            Undecodable::Other(err)
        }),
        other => Err(Undecodable::Other(ApiError::unsupported_media_type(other))),
    }
}

/// The start of a body for an error message, as kube-apiserver's `summarizeData`: 30 bytes,
/// as text when it starts like a JSON object, else in hex.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    let more = if body.len() > MAX { " ..." } else { "" };
    let head = &body[..body.len().min(MAX)];
    match head.first() {
        None => "<empty>".into(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(head)),
        Some(_) => format!("{}{more}", head.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

/// Go's `encoding/json` wording for the commonest parse failures (what kube-apiserver reports);
/// other failures keep serde's wording.
fn go_json_error(body: &[u8], e: &serde_json::Error) -> String {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => "unexpected end of JSON input".into(),
        Some(&c)
            if !matches!(c, b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') && c.is_ascii_graphic() =>
        {
            let shown = if c == b'\'' { "\\'".to_string() } else { char::from(c).to_string() };
            format!("invalid character '{shown}' looking for beginning of value")
        }
        _ if e.is_eof() => "unexpected end of JSON input".into(),
        _ => e.to_string(),
    }
}

/// How Go's JSON decoder names a value's type.
fn go_json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The object's apiVersion and kind must be the URL's (filled in when absent). A body of another
/// kind is refused as kube-apiserver's decoder does: it cannot convert one kind into another, or
/// does not know the kind at all.
fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!("the body must be a {} object, not {}", rt.kind, kind_of(obj))));
    };
    let expected = rt.api_version();
    let api_version = map.get("apiVersion").and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string);
    let kind = map.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty()).map(str::to_string);
    if let Some(kind) = kind.as_deref()
        && kind != rt.kind
    {
        let data_version = api_version.clone().unwrap_or_else(|| expected.clone());
        let version = data_version.rsplit('/').next().unwrap_or_default();
        let why = if registry::by_kind(&data_version, kind).is_some() {
            format!("converting ({version}.{kind}) to ({}.{}): unknown conversion", internal_package(rt.group), rt.kind)
        } else {
            format!(
                "no kind \"{kind}\" is registered for version \"{data_version}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
            )
        };
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {}: {why}",
            rt.kind
        )));
    }
    match api_version {
        None => {
            map.insert("apiVersion".into(), json!(expected));
        }
        Some(v) if v == expected => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )));
        }
    }
    if kind.is_none() {
        map.insert("kind".into(), json!(rt.kind));
    }
    Ok(())
}

/// The Go package of Kubernetes' internal types of a group (`core.Namespace`, `apps.Deployment`).
fn internal_package(group: &str) -> &str {
    match group {
        "" | "events.k8s.io" => "core",
        g => g.split('.').next().unwrap_or(g),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Field validation through the typed struct: Strict rejects unknown fields, Warn names them in
/// a Warning header, Ignore drops them. Unknown fields are never stored.
fn normalize(
    rt: &ResourceType,
    obj: Value,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let api_version = rt.api_version();
    match typed::normalize(&api_version, rt.kind, &obj) {
        None => Ok(obj),
        Some(Err(msg)) => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {msg}",
            rt.kind, rt.version, rt.kind
        ))),
        Some(Ok(n)) => {
            if !n.unknown_fields.is_empty() {
                let texts: Vec<String> = n.unknown_fields.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                match fv {
                    FieldValidation::Strict => {
                        return Err(ApiError::bad_request(format!("strict decoding error: {}", texts.join(", "))));
                    }
                    FieldValidation::Warn => warnings.extend(texts),
                    FieldValidation::Ignore => {}
                }
            }
            Ok(n.object)
        }
    }
}

/// A Secret's `stringData` is write-only convenience: folded into base64 `data` (winning over
/// the same key there) and never stored, as in Kubernetes.
fn fold_string_data(rt: &ResourceType, obj: &mut Value) {
    if rt.kind != "Secret" {
        return;
    }
    let Some(map) = obj.as_object_mut() else { return };
    let Some(Value::Object(strings)) = map.remove("stringData") else { return };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    for (k, v) in strings {
        if let Some(text) = v.as_str() {
            data[k.as_str()] = json!(crate::pki::base64(text.as_bytes()));
        }
    }
}

fn invalid(rt: &ResourceType, name: &str, causes: Vec<tug_core::status::Cause>) -> ApiError {
    ApiError::invalid(rt.group, rt.kind, name, causes)
}

/// The stored value of `kv` as `rt`'s version, resourceVersion stamped.
fn stored_object(rt: &ResourceType, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    object::set_resource_version(&mut obj, kv.mod_revision);
    Ok(convert::from_storage(rt, obj))
}

/// A cached object as `rt`'s version, re-encoded only when the version differs.
pub fn served_bytes(rt: &ResourceType, obj: &CachedObject) -> Bytes {
    if convert::storage_version(rt) == rt.api_version() {
        obj.json.clone()
    } else {
        Bytes::from(serde_json::to_vec(&convert::from_storage(rt, obj.value())).unwrap_or_default())
    }
}

fn encode_for_storage(rt: &ResourceType, obj: &Value) -> Vec<u8> {
    let mut stored = convert::to_storage(rt, obj.clone());
    if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("selfLink");
    }
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn ttl_for(rt: &ResourceType) -> Option<Duration> {
    (rt.storage == "events").then_some(EVENT_TTL)
}

/// The namespace a namespaced request writes into must exist and not be terminating.
async fn check_namespace_open(api: &Api, ns: &str) -> Result<(), ApiError> {
    let ns_rt = registry::by_path("", "v1", "namespaces").expect("namespaces are registered");
    let key = ns_rt.key(None, ns);
    let value = match api.cache.get(&key) {
        Some(obj) => obj.value(),
        None => match api.store.get(&key, None).await.map_err(from_store)? {
            Some(kv) => serde_json::from_slice(&kv.value).unwrap_or(Value::Null),
            None => return Err(ApiError::not_found("", "namespaces", ns)),
        },
    };
    if object::is_deleting(&value) || object::str_at(&value, &["status", "phase"]) == Some("Terminating") {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))
        .about("", "namespaces", ns));
    }
    Ok(())
}

/// Metadata the server owns on create.
fn prepare_create(rt: &ResourceType, req_ns: Option<&str>, obj: &mut Value) -> Result<(), ApiError> {
    let meta = object::metadata_mut(obj);
    if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
    }
    let name_missing = meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty);
    if name_missing && let Some(prefix) = meta.get("generateName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        let name = format!("{prefix}{}", object::random_suffix());
        meta.insert("name".into(), json!(name));
    }
    if rt.namespaced() {
        let body_ns = meta.get("namespace").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        match (body_ns.as_deref(), req_ns) {
            (Some(b), Some(r)) if b != r => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (None, Some(r)) => {
                meta.insert("namespace".into(), json!(r));
            }
            (None, None) => {
                meta.insert("namespace".into(), json!("default"));
            }
            _ => {}
        }
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(object::new_uid()));
    meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if rt.has(Subresource::Status) && rt.kind != "Namespace" && rt.kind != "Node" {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    defaults::status_on_create(rt, obj);
    Ok(())
}

impl Api {
    pub async fn create(
        &self,
        req: &ResourceRequest,
        q: &Query,
        mut obj: Value,
        reply: &mut Reply,
    ) -> Result<Value, ApiError> {
        let rt = req.rt;
        check_type(rt, &mut obj)?;
        let mut obj = normalize(rt, obj, q.field_validation, &mut reply.warnings)?;
        fold_string_data(rt, &mut obj);
        prepare_create(rt, req.namespace.as_deref(), &mut obj)?;
        let name = object::name(&obj).to_string();
        if name.is_empty() {
            return Err(invalid(
                rt,
                "",
                vec![tug_core::status::Cause {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "name or generateName is required".into(),
                }],
            ));
        }
        let ns = object::namespace(&obj).map(str::to_string);
        if let Some(ns) = &ns {
            check_namespace_open(self, ns).await?;
        }
        defaults::apply_defaults(rt, &mut obj);
        if rt.kind == "Pod" {
            default_service_account(&mut obj);
            default_toleration_seconds(&mut obj, self.admission.default_toleration_seconds);
        }
        if rt.kind == "PersistentVolumeClaim" {
            let classes: Vec<Value> = registry::by_kind("storage.k8s.io/v1", "StorageClass")
                .map(|c| self.cache.list(c.storage, &c.prefix(None), None, 0, &|_| true).0)
                .unwrap_or_default()
                .iter()
                .map(|o| o.value())
                .collect();
            default_storage_class(&mut obj, &classes);
            add_finalizer(&mut obj, PVC_PROTECTION_FINALIZER);
        }
        if rt.kind == "Service" {
            self.services.allocate(&self.cache, &mut obj).map_err(|m| {
                invalid(
                    rt,
                    &name,
                    vec![tug_core::status::Cause { reason: "FieldValueInvalid", field: m.0, message: m.1 }],
                )
            })?;
        }
        let causes = validation::validate_create(rt, &obj);
        if !causes.is_empty() {
            self.services.release(&obj);
            return Err(invalid(rt, &name, causes));
        }
        if q.dry_run {
            self.services.release(&obj);
            return Ok(obj);
        }
        let key = rt.key(ns.as_deref(), &name);
        match self.store.create(&key, encode_for_storage(rt, &obj), ttl_for(rt)).await {
            Ok(rev) => {
                object::set_resource_version(&mut obj, rev);
                if rt.kind == "Namespace" {
                    self.populate_namespace(&name).await;
                }
                Ok(obj)
            }
            Err(e) => {
                self.services.release(&obj);
                Err(match e {
                    tug_store::Error::AlreadyExists { .. } => {
                        ApiError::already_exists(rt.group, &qualified_resource(rt), &name)
                    }
                    other => from_store(other),
                })
            }
        }
    }

    /// The object at `key` as stored now, or 404.
    async fn current(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<KeyValue, ApiError> {
        self.store.get(&rt.key(ns, name), None).await.map_err(from_store)?.ok_or_else(|| not_found(rt, name))
    }

    /// The object a write starts from, and whether it came from the watch cache. The first
    /// attempt of a write takes the cached copy (no store read: usually current, as the cache
    /// trails the store by moments); later attempts read the store. A stale cached copy costs
    /// one lost compare-and-swap, and a precondition that fails against it is checked again
    /// against the store before the client hears 409 (kube-apiserver's GuaranteedUpdate does
    /// the same with its cached object).
    async fn current_for_write(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        attempt: usize,
    ) -> Result<(KeyValue, bool), ApiError> {
        if attempt > 0 {
            self.metrics.write_retried();
        }
        if attempt == 0
            && let Some(obj) = self.cache.get(&rt.key(ns, name))
        {
            let kv = KeyValue {
                key: obj.key.clone(),
                value: obj.json.to_vec(),
                create_revision: 0,
                mod_revision: obj.revision,
                version: 0,
            };
            return Ok((kv, true));
        }
        Ok((self.current(rt, ns, name).await?, false))
    }

    pub async fn get(&self, req: &ResourceRequest, q: &Query) -> Result<Value, ApiError> {
        let rt = req.rt;
        let name = req.name.as_deref().unwrap_or_default();
        // resourceVersion=0 accepts any cached version; otherwise read the store.
        if q.resource_version.as_deref() == Some("0")
            && let Some(obj) = self.cache.get(&rt.key(req.namespace.as_deref(), name))
        {
            return Ok(convert::from_storage(rt, obj.value()));
        }
        let kv = self.current(rt, req.namespace.as_deref(), name).await?;
        stored_object(rt, &kv)
    }

    /// Applies a new version of an object (from PUT, a patch or a subresource write) with the
    /// rules of Kubernetes' update strategies, then stores it with compare-and-swap against
    /// `current`. `Ok(None)` means the swap lost a race and the caller should retry. When
    /// `current` came from the watch cache (`cached`), anything it alone decides — a refusal,
    /// or "nothing changed" — is only believed after a retry against the store.
    async fn write_update(
        &self,
        rt: &ResourceType,
        scope: WriteScope,
        (current, cached): (&KeyValue, bool),
        mut new: Value,
        dry_run: bool,
    ) -> Result<Option<Value>, ApiError> {
        let old = stored_object(rt, current)?;
        let name = object::name(&old).to_string();
        // Keep what the server owns.
        {
            let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
            let meta = object::metadata_mut(&mut new);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
        }
        let mut new = match scope {
            WriteScope::Main => {
                if rt.has(Subresource::Status) && rt.kind != "Node" || rt.kind == "Namespace" {
                    let map = new.as_object_mut().expect("object");
                    match old.get("status") {
                        Some(s) => map.insert("status".into(), s.clone()),
                        None => map.remove("status"),
                    };
                }
                new
            }
            WriteScope::Status => {
                let mut merged = old.clone();
                let map = merged.as_object_mut().expect("object");
                match new.get("status") {
                    Some(s) => map.insert("status".into(), s.clone()),
                    None => map.remove("status"),
                };
                merged
            }
            WriteScope::Finalize => {
                let mut merged = old.clone();
                let finalizers = new.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                merged["spec"]["finalizers"] = finalizers;
                merged
            }
        };
        fold_string_data(rt, &mut new);
        defaults::apply_defaults(rt, &mut new);
        if rt.kind == "Service" {
            crate::alloc::keep_allocations(&old, &mut new);
        }
        // Once deletion started, finalizers may only be removed (Kubernetes' rule).
        if object::is_deleting(&old) {
            let before = object::finalizers(&old);
            let added: Vec<String> = object::finalizers(&new).into_iter().filter(|f| !before.contains(f)).collect();
            if !added.is_empty() {
                if cached {
                    return Ok(None);
                }
                return Err(invalid(
                    rt,
                    &name,
                    vec![tug_core::status::Cause {
                        reason: "FieldValueForbidden",
                        field: "metadata.finalizers".into(),
                        message: format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    }],
                ));
            }
        }
        // generation counts changes of everything but metadata and status.
        if let Some(generation) = old.pointer("/metadata/generation").and_then(Value::as_i64)
            && object::without(&old, &["metadata", "status"]) != object::without(&new, &["metadata", "status"])
        {
            object::metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        let causes = validation::validate_update(rt, &new, &old);
        if !causes.is_empty() {
            if cached {
                return Ok(None);
            }
            return Err(invalid(rt, &name, causes));
        }
        // An update that removes the last finalizer of an object being deleted finishes the deletion.
        if object::is_deleting(&new) && object::finalizers(&new).is_empty() && rt.kind != "Namespace" {
            if dry_run {
                return Ok(Some(new));
            }
            return match self.store.delete(&current.key, Some(current.mod_revision)).await {
                Ok(d) => {
                    object::set_resource_version(&mut new, d.revision);
                    Ok(Some(new))
                }
                Err(tug_store::Error::Conflict { .. }) => Ok(None),
                Err(tug_store::Error::NotFound { .. }) => Err(not_found(rt, &name)),
                Err(e) => Err(from_store(e)),
            };
        }
        let bytes = encode_for_storage(rt, &new);
        // Nothing changed: no write, no new resourceVersion (as Kubernetes). A cached copy
        // carries its resourceVersion, so it is compared in its stored form.
        let unchanged = if cached { bytes == encode_for_storage(rt, &old) } else { bytes == current.value };
        if unchanged && cached {
            // Maybe only unchanged against a stale copy: make sure against the store.
            return Ok(None);
        }
        if unchanged || dry_run {
            object::set_resource_version(&mut new, current.mod_revision);
            return Ok(Some(new));
        }
        match self.store.update(&current.key, bytes, current.mod_revision, ttl_for(rt)).await {
            Ok(rev) => {
                object::set_resource_version(&mut new, rev);
                Ok(Some(new))
            }
            Err(tug_store::Error::Conflict { .. }) => Ok(None),
            Err(tug_store::Error::NotFound { .. }) => Err(not_found(rt, &name)),
            Err(e) => Err(from_store(e)),
        }
    }

    /// PUT on an object or its status / finalize subresource.
    pub async fn update(
        &self,
        req: &ResourceRequest,
        q: &Query,
        scope: WriteScope,
        mut obj: Value,
        reply: &mut Reply,
    ) -> Result<Value, ApiError> {
        let rt = req.rt;
        let name = req.name.as_deref().unwrap_or_default();
        check_type(rt, &mut obj)?;
        let obj = normalize(rt, obj, q.field_validation, &mut reply.warnings)?;
        match object::str_at(&obj, &["metadata", "name"]) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        if let (Some(b), Some(r)) = (object::namespace(&obj), req.namespace.as_deref())
            && b != r
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let precondition: Option<Revision> = match object::resource_version(&obj) {
            Some(rv) => Some(rv.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {rv:?}: not one this server issued"))
            })?),
            None => None,
        };
        for attempt in 0..CAS_RETRIES {
            let (current, cached) = self.current_for_write(rt, req.namespace.as_deref(), name, attempt).await?;
            if precondition.is_some_and(|p| p != current.mod_revision) {
                if cached {
                    continue;
                }
                return Err(conflict(rt, name));
            }
            if let Some(done) = self.write_update(rt, scope, (&current, cached), obj.clone(), q.dry_run).await? {
                return Ok(done);
            }
            if precondition.is_some() && !cached {
                return Err(conflict(rt, name));
            }
        }
        Err(conflict(rt, name))
    }

    /// PATCH on an object or its status subresource.
    pub async fn patch(
        &self,
        req: &ResourceRequest,
        q: &Query,
        scope: WriteScope,
        body: &[u8],
        content_type: Option<&str>,
        reply: &mut Reply,
    ) -> Result<Value, ApiError> {
        let rt = req.rt;
        let name = req.name.as_deref().unwrap_or_default();
        let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).unwrap_or("");
        let patch_doc: Value = match media {
            "application/apply-patch+yaml" => decode_body(body, Some("application/yaml"))?,
            "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?,
            other => {
                let mut e = ApiError::unsupported_media_type(other);
                e.message = format!(
                    "the patch content type {other:?} is not supported: use application/json-patch+json, \
                     application/merge-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml"
                );
                return Err(e);
            }
        };
        for attempt in 0..CAS_RETRIES {
            let (current, cached) = match self.current_for_write(rt, req.namespace.as_deref(), name, attempt).await {
                Ok(c) => c,
                // Server-side apply creates what does not exist yet.
                Err(e) if e.code == 404 && media == "application/apply-patch+yaml" && scope == WriteScope::Main => {
                    return self.create(req, q, patch_doc, reply).await;
                }
                Err(e) => return Err(e),
            };
            let old = stored_object(rt, &current)?;
            let mut patched = old.clone();
            let outcome = match media {
                "application/json-patch+json" => patch::json_patch(&mut patched, &patch_doc),
                "application/merge-patch+json" => {
                    patch::merge_patch(&mut patched, &patch_doc);
                    Ok(())
                }
                // Server-side apply without field ownership: the applied configuration is merged
                // like a strategic merge patch (see ARCHITECTURE.md).
                _ => patch::strategic_merge_patch(&rt.api_version(), rt.kind, &old, &patch_doc).map(|v| patched = v),
            };
            outcome.map_err(|e| match e {
                patch::PatchError::BadRequest(m) => ApiError::bad_request(m),
                patch::PatchError::Invalid(m) => ApiError::new(422, "Invalid", m),
            })?;
            check_type(rt, &mut patched)?;
            let patched = normalize(rt, patched, q.field_validation, &mut reply.warnings)?;
            // A resourceVersion in the patch is a precondition.
            let precondition = object::resource_version(&patched).map(str::to_string);
            if precondition.as_deref().is_some_and(|p| p != current.mod_revision.to_string()) {
                if cached {
                    continue;
                }
                return Err(conflict(rt, name));
            }
            if object::name(&patched) != name {
                return Err(ApiError::bad_request("a patch cannot change metadata.name"));
            }
            if let Some(done) = self.write_update(rt, scope, (&current, cached), patched, q.dry_run).await? {
                return Ok(done);
            }
        }
        Err(conflict(rt, name))
    }

    /// DELETE of one object. Returns the object as it was (or as it now is, when the deletion is
    /// graceful or waits for finalizers).
    pub async fn delete(&self, req: &ResourceRequest, q: &Query, options: &Value) -> Result<Value, ApiError> {
        let rt = req.rt;
        let name = req.name.as_deref().unwrap_or_default();
        if rt.group.is_empty() && rt.kind == "Namespace" && crate::bootstrap::UNDELETABLE_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden_on("", rt.plural, name, "this namespace may not be deleted"));
        }
        let dry_run =
            q.dry_run || options.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
        let grace = q.grace_period_seconds.or_else(|| options.get("gracePeriodSeconds").and_then(Value::as_i64));
        let propagation = q
            .propagation_policy
            .clone()
            .or_else(|| options.get("propagationPolicy").and_then(Value::as_str).map(str::to_string));
        if let Some(p) = &propagation
            && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
        {
            return Err(ApiError::bad_request(format!(
                "invalid propagationPolicy {p:?}: use Orphan, Background or Foreground"
            )));
        }
        for attempt in 0..CAS_RETRIES {
            let (current, cached) = self.current_for_write(rt, req.namespace.as_deref(), name, attempt).await?;
            let mut obj = stored_object(rt, &current)?;
            if let Some(pre) = options.get("preconditions") {
                if let Some(uid) = pre.get("uid").and_then(Value::as_str)
                    && Some(uid) != object::str_at(&obj, &["metadata", "uid"])
                {
                    if cached {
                        continue;
                    }
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            object::str_at(&obj, &["metadata", "uid"]).unwrap_or_default()
                        ),
                    )
                    .about(rt.group, rt.plural, name));
                }
                if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str)
                    && rv != current.mod_revision.to_string()
                {
                    if cached {
                        continue;
                    }
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            current.mod_revision
                        ),
                    )
                    .about(rt.group, rt.plural, name));
                }
            }
            let mut finalizers = object::finalizers(&obj);
            match propagation.as_deref() {
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.push("foregroundDeletion".into())
                }
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
                _ => {}
            }
            let graceful_pod = rt.kind == "Pod"
                && object::str_at(&obj, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty())
                && !matches!(object::str_at(&obj, &["status", "phase"]), Some("Succeeded" | "Failed"))
                && grace.unwrap_or(1) > 0;
            let wait = rt.kind == "Namespace" || !finalizers.is_empty() || graceful_pod;
            if wait {
                if object::is_deleting(&obj) && rt.kind != "Pod" {
                    return Ok(obj);
                }
                let grace_secs = if graceful_pod {
                    grace
                        .or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                        .unwrap_or(30)
                } else {
                    0
                };
                if object::is_deleting(&obj)
                    && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0)
                        <= grace_secs
                {
                    return Ok(obj);
                }
                let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace_secs);
                let meta = object::metadata_mut(&mut obj);
                meta.insert("deletionTimestamp".into(), json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace_secs));
                if !finalizers.is_empty() {
                    meta.insert("finalizers".into(), json!(finalizers));
                }
                if rt.kind == "Namespace" {
                    obj["status"]["phase"] = json!("Terminating");
                }
                if dry_run {
                    return Ok(obj);
                }
                match self
                    .store
                    .update(&current.key, encode_for_storage(rt, &obj), current.mod_revision, ttl_for(rt))
                    .await
                {
                    Ok(rev) => {
                        object::set_resource_version(&mut obj, rev);
                        return Ok(obj);
                    }
                    Err(tug_store::Error::Conflict { .. }) => continue,
                    Err(tug_store::Error::NotFound { .. }) => return Err(not_found(rt, name)),
                    Err(e) => return Err(from_store(e)),
                }
            }
            if dry_run {
                return Ok(obj);
            }
            match self.store.delete(&current.key, Some(current.mod_revision)).await {
                Ok(d) => {
                    if rt.kind == "Service" {
                        self.services.release(&obj);
                    }
                    object::set_resource_version(&mut obj, d.revision);
                    return Ok(obj);
                }
                Err(tug_store::Error::Conflict { .. }) => continue,
                Err(tug_store::Error::NotFound { .. }) => return Err(not_found(rt, name)),
                Err(e) => return Err(from_store(e)),
            }
        }
        Err(conflict(rt, name))
    }

    /// Objects of a list or watch request that pass its selectors.
    pub fn list_filter(
        req: &ResourceRequest,
        q: &Query,
    ) -> Result<impl Fn(&CachedObject) -> bool + Send + Sync + use<>, ApiError> {
        let labels = match &q.label_selector {
            Some(s) => {
                LabelSelector::parse(s).map_err(|e| ApiError::bad_request(format!("invalid labelSelector: {e}")))?
            }
            None => LabelSelector::default(),
        };
        let fields = match &q.field_selector {
            Some(s) => {
                FieldSelector::parse(s).map_err(|e| ApiError::bad_request(format!("invalid fieldSelector: {e}")))?
            }
            None => FieldSelector::default(),
        };
        // Reject fields this type cannot select on, as Kubernetes does.
        let probe = CachedObject::from_value(&req.rt.key(Some("x"), "x"), &json!({}), 0);
        for r in &fields.requirements {
            if probe.field(&r.field).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {} (for {})",
                    r.field, req.rt.plural
                )));
            }
        }
        Ok(move |o: &CachedObject| labels.matches(&o.labels) && fields.matches(|f| o.field(f)))
    }

    /// A list: the cache for ordinary reads, the store for pages of a large result (so every
    /// page comes from one snapshot, as `continue` promises).
    pub async fn list(
        &self,
        req: &ResourceRequest,
        q: &Query,
    ) -> Result<(Vec<Bytes>, Revision, Option<String>), ApiError> {
        let rt = req.rt;
        let filter = Self::list_filter(req, q)?;
        let prefix = rt.prefix(req.namespace.as_deref());
        if q.continue_token.is_none() {
            let exact = q.resource_version_match.as_deref() == Some("Exact");
            let min_rev = match q.resource_version.as_deref() {
                None => Some(self.cache.sync().await?),
                Some("0") => None,
                Some(rv) => Some(
                    rv.parse::<Revision>()
                        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
                ),
            };
            if !exact {
                if let Some(r) = min_rev
                    && !self.cache.wait_for(r, crate::cache::FRESHNESS_WAIT).await
                {
                    return Err(ApiError::timeout(format!("Too large resource version: {r}")));
                }
                // resourceVersion=0 ignores limit, as Kubernetes' cache does.
                let limit = if q.resource_version.as_deref() == Some("0") { 0 } else { q.limit };
                let (items, revision, more) = self.cache.list(rt.storage, &prefix, None, limit, &filter);
                if !more {
                    return Ok((items.iter().map(|o| served_bytes(rt, o)).collect(), revision, None));
                }
            }
        }
        self.list_from_store(rt, &prefix, q, &filter).await
    }

    async fn list_from_store(
        &self,
        rt: &ResourceType,
        prefix: &str,
        q: &Query,
        filter: &(dyn Fn(&CachedObject) -> bool + Sync),
    ) -> Result<(Vec<Bytes>, Revision, Option<String>), ApiError> {
        let mut options = ListOptions { limit: q.limit, revision: None, continue_token: q.continue_token.clone() };
        if q.continue_token.is_none()
            && let Some(rv) = q.resource_version.as_deref().filter(|r| *r != "0")
        {
            options.revision =
                Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?);
        }
        let mut out = Vec::new();
        loop {
            let page = self.store.list(prefix, options.clone()).await.map_err(|e| match e {
                tug_store::Error::Compacted { .. } => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ),
                other => from_store(other),
            })?;
            let n = page.items.len();
            for (i, kv) in page.items.iter().enumerate() {
                let Ok(obj) = CachedObject::decode(&kv.key, &kv.value, kv.mod_revision) else { continue };
                if !filter(&obj) {
                    continue;
                }
                out.push(served_bytes(rt, &obj));
                if q.limit > 0 && out.len() == q.limit {
                    let more_here = i + 1 < n;
                    if more_here || page.continue_token.is_some() {
                        let token = ContinueToken { revision: page.revision, last_key: kv.key.clone() }.encode();
                        return Ok((out, page.revision, Some(token)));
                    }
                    return Ok((out, page.revision, None));
                }
            }
            match page.continue_token {
                Some(t) => options = ListOptions { limit: q.limit, revision: None, continue_token: Some(t) },
                None => return Ok((out, page.revision, None)),
            }
        }
    }

    /// DELETE on a collection: every matching object, one by one.
    pub async fn delete_collection(
        &self,
        req: &ResourceRequest,
        q: &Query,
        options: &Value,
    ) -> Result<Vec<Bytes>, ApiError> {
        let list_q = Query { limit: 0, continue_token: None, resource_version: None, ..q.clone() };
        let (items, _, _) = self.list(req, &list_q).await?;
        let mut deleted = Vec::new();
        for item in items {
            let obj: Value = serde_json::from_slice(&item).unwrap_or(Value::Null);
            let one = ResourceRequest {
                rt: req.rt,
                namespace: object::namespace(&obj).map(str::to_string),
                name: Some(object::name(&obj).to_string()),
                subresource: None,
                watch_path: false,
            };
            match self.delete(&one, q, options).await {
                Ok(v) => deleted.push(Bytes::from(serde_json::to_vec(&v).unwrap_or_default())),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// GET of the autoscaling/v1 Scale view.
    pub async fn get_scale(&self, req: &ResourceRequest) -> Result<Value, ApiError> {
        let rt = req.rt;
        let kv = self.current(rt, req.namespace.as_deref(), req.name.as_deref().unwrap_or_default()).await?;
        Ok(scale_of(&stored_object(rt, &kv)?))
    }

    /// PUT or PATCH of the Scale view: changes `spec.replicas` of the object.
    pub async fn write_scale(
        &self,
        req: &ResourceRequest,
        q: &Query,
        body: &[u8],
        content_type: Option<&str>,
        is_patch: bool,
    ) -> Result<Value, ApiError> {
        let rt = req.rt;
        let name = req.name.as_deref().unwrap_or_default();
        for attempt in 0..CAS_RETRIES {
            let (current, cached) = self.current_for_write(rt, req.namespace.as_deref(), name, attempt).await?;
            let obj = stored_object(rt, &current)?;
            let mut scale = scale_of(&obj);
            if is_patch {
                let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).unwrap_or("");
                let doc: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
                match media {
                    "application/json-patch+json" => {
                        patch::json_patch(&mut scale, &doc).map_err(|e| ApiError::bad_request(e.to_string()))?
                    }
                    _ => patch::merge_patch(&mut scale, &doc),
                }
            } else {
                scale = decode_body(body, content_type)?;
            }
            if let Some(rv) = object::resource_version(&scale)
                && rv != current.mod_revision.to_string()
            {
                if cached {
                    continue;
                }
                return Err(conflict(rt, name));
            }
            let replicas = match scale.pointer("/spec/replicas") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_i64().filter(|r| *r >= 0 && *r <= i32::MAX as i64).ok_or_else(|| {
                    invalid(
                        &SCALE_RT,
                        name,
                        vec![tug_core::status::Cause {
                            reason: "FieldValueInvalid",
                            field: "spec.replicas".into(),
                            message: format!("Invalid value: {v}: must be greater than or equal to 0"),
                        }],
                    )
                })?,
            };
            let mut new = obj.clone();
            new["spec"]["replicas"] = json!(replicas);
            if let Some(done) = self.write_update(rt, WriteScope::Main, (&current, cached), new, q.dry_run).await? {
                return Ok(scale_of(&done));
            }
        }
        Err(conflict(rt, name))
    }

    /// POST pods/binding: assigns a pod to a node, once.
    pub async fn bind(&self, req: &ResourceRequest, binding: &Value) -> Result<(), ApiError> {
        let rt = req.rt;
        let name = req.name.as_deref().unwrap_or_default();
        let node =
            binding.pointer("/target/name").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| {
                invalid(
                    rt,
                    name,
                    vec![tug_core::status::Cause {
                        reason: "FieldValueRequired",
                        field: "target.name".into(),
                        message: "Required value".into(),
                    }],
                )
            })?;
        for attempt in 0..CAS_RETRIES {
            // Deletion and an existing node never revert, so a stale cached pod can only lose
            // the compare-and-swap, never refuse a binding wrongly.
            let (current, _) = self.current_for_write(rt, req.namespace.as_deref(), name, attempt).await?;
            let mut pod = stored_object(rt, &current)?;
            if object::is_deleting(&pod) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            if let Some(existing) = object::str_at(&pod, &["spec", "nodeName"]).filter(|s| !s.is_empty()) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("pod {name} is already assigned to node \"{existing}\""),
                )
                .about("", "pods", name));
            }
            pod["spec"]["nodeName"] = json!(node);
            let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()}));
            pod["status"]["conditions"] = json!(conditions);
            let bytes = encode_for_storage(rt, &pod);
            match self.store.update(&current.key, bytes, current.mod_revision, None).await {
                Ok(_) => return Ok(()),
                Err(tug_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(from_store(e)),
            }
        }
        Err(conflict(rt, name))
    }

    /// POST pods/eviction: deletes the pod unless its PodDisruptionBudget forbids it (429). An
    /// allowed eviction is first recorded in the budget's status (one fewer disruption allowed,
    /// the pod in `disruptedPods`) with a compare-and-swap, so concurrent evictions — `kubectl
    /// drain` evicts a node's pods in parallel — can never together exceed the budget.
    pub async fn evict(&self, req: &ResourceRequest, q: &Query, eviction: &Value) -> Result<(), ApiError> {
        let name = req.name.as_deref().unwrap_or_default();
        let ns = req.namespace.as_deref().unwrap_or("default");
        let current = self.current(req.rt, Some(ns), name).await?;
        let pod = stored_object(req.rt, &current)?;
        // Finished, not yet running, or already going: no budget applies (Kubernetes' rule).
        let phase = object::str_at(&pod, &["status", "phase"]);
        let exempt = matches!(phase, Some("Succeeded" | "Failed" | "Pending")) || object::is_deleting(&pod);
        if !exempt {
            self.charge_disruption_budget(ns, name, &object::labels(&pod)).await?;
        }
        let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
        self.delete(req, q, &options).await.map(|_| ())
    }

    /// Takes one allowed disruption from the budget that selects the pod, if any.
    async fn charge_disruption_budget(
        &self,
        ns: &str,
        pod_name: &str,
        pod_labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let pdb_rt = registry::by_kind("policy/v1", "PodDisruptionBudget").expect("registered");
        let (pdbs, _, _) = self.cache.list(pdb_rt.storage, &pdb_rt.prefix(Some(ns)), None, 0, &|_| true);
        let selecting: Vec<String> = pdbs
            .iter()
            .map(|p| p.value())
            .filter(|p| {
                p.pointer("/spec/selector").is_some_and(|s| crate::selectors::label_selector_matches(s, pod_labels))
            })
            .map(|p| object::name(&p).to_string())
            .collect();
        let budget = match selecting.as_slice() {
            [] => return Ok(()),
            [one] => one,
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
        };
        let refused = |message: String| {
            let mut e = ApiError::too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
            )
            .about("policy", "poddisruptionbudgets", budget);
            e.causes = vec![tug_core::status::Cause { reason: "DisruptionBudget", field: String::new(), message }];
            e
        };
        for _ in 0..CAS_RETRIES {
            let current = self.current(pdb_rt, Some(ns), budget).await?;
            let mut pdb = stored_object(pdb_rt, &current)?;
            let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            let observed = pdb.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
            if observed < generation {
                return Err(refused(format!("The disruption budget {budget} is still being processed by the server.")));
            }
            let allowed = pdb.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
            if allowed < 1 {
                let desired = pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
                let healthy = pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
                return Err(refused(format!(
                    "The disruption budget {budget} needs {desired} healthy pods and has {healthy} currently"
                )));
            }
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
            if !pdb["status"]["disruptedPods"].is_object() {
                pdb["status"]["disruptedPods"] = json!({});
            }
            pdb["status"]["disruptedPods"][pod_name] = json!(now);
            match self.store.update(&current.key, encode_for_storage(pdb_rt, &pdb), current.mod_revision, None).await {
                Ok(_) => return Ok(()),
                Err(tug_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(from_store(e)),
            }
        }
        Err(conflict(pdb_rt, budget))
    }
}

impl Api {
    /// What every namespace holds from its creation: the `default` ServiceAccount and the
    /// `kube-root-ca.crt` ConfigMap (Kubernetes' service-account and root-CA publisher
    /// controllers create them moments later; here they exist as soon as the namespace does).
    async fn populate_namespace(&self, ns: &str) {
        let objects = [
            ("v1", "ServiceAccount", json!({"metadata": {"name": "default"}})),
            (
                "v1",
                "ConfigMap",
                json!({
                    "metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": {"ca.crt": self.root_ca_pem},
                }),
            ),
        ];
        for (api_version, kind, obj) in objects {
            let req = ResourceRequest {
                rt: registry::by_kind(api_version, kind).expect("registered kind"),
                namespace: Some(ns.to_string()),
                name: None,
                subresource: None,
                watch_path: false,
            };
            match Box::pin(self.create(&req, &Query::default(), obj, &mut Reply::default())).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => tracing::warn!(namespace = ns, kind, error = %e, "cannot populate the namespace"),
            }
        }
    }
}

/// Pods run as the namespace's `default` ServiceAccount unless they name one (Kubernetes'
/// ServiceAccount admission).
fn default_service_account(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let name = match spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        Some(n) => n.to_string(),
        None => "default".to_string(),
    };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
}

/// Kubernetes' DefaultTolerationSeconds admission: a pod that does not say how long it stays on
/// a node that is not ready or unreachable tolerates it for `seconds`, then is evicted.
fn default_toleration_seconds(pod: &mut Value, seconds: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        // Any toleration that covers the NoExecute taint counts, as in Kubernetes.
        let covered = list.iter().any(|t| {
            let key_ok = match t.get("key").and_then(Value::as_str) {
                None | Some("") => t.get("operator").and_then(Value::as_str) == Some("Exists"),
                Some(k) => k == taint,
            };
            let effect_ok = matches!(t.get("effect").and_then(Value::as_str), None | Some("") | Some("NoExecute"));
            key_ok && effect_ok
        });
        if !covered {
            list.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// Kubernetes' DefaultStorageClass admission: a claim that names no class (the field absent;
/// `""` asks for no class) gets the default one, the newest if several claim to be it.
fn default_storage_class(claim: &mut Value, classes: &[Value]) {
    let annotated = object::annotations(claim).contains_key("volume.beta.kubernetes.io/storage-class");
    let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if annotated || spec.get("storageClassName").is_some_and(|c| !c.is_null()) {
        return;
    }
    let is_default = |class: &&Value| {
        let annotations = object::annotations(class);
        ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
            .iter()
            .any(|a| annotations.get(*a).is_some_and(|v| v == "true"))
    };
    let newest = classes.iter().filter(is_default).max_by(|a, b| {
        let created = |c: &Value| object::str_at(c, &["metadata", "creationTimestamp"]).unwrap_or("").to_string();
        created(a).cmp(&created(b)).then_with(|| object::name(b).cmp(object::name(a)))
    });
    if let Some(class) = newest {
        spec.insert("storageClassName".into(), json!(object::name(class)));
    }
}

/// Kubernetes' StorageObjectInUseProtection admission puts this on every claim; the storage
/// protection controller takes it off once no pod uses the claim, so deleting a claim in use
/// leaves it Terminating instead of pulling the volume from under a running pod.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// Adds `finalizer` to the object's `metadata.finalizers` unless it is there.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut()
        && !items.iter().any(|f| f == finalizer)
    {
        items.push(json!(finalizer));
    }
}

/// The Scale object of a workload.
pub fn scale_of(obj: &Value) -> Value {
    let selector = obj.pointer("/spec/selector").map(crate::selectors::selector_string).unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object::name(obj),
            "namespace": object::namespace(obj).unwrap_or_default(),
            "uid": object::str_at(obj, &["metadata", "uid"]).unwrap_or_default(),
            "resourceVersion": object::resource_version(obj).unwrap_or_default(),
            "creationTimestamp": object::str_at(obj, &["metadata", "creationTimestamp"]),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// Scale's own type, for error messages.
static SCALE_RT: ResourceType = ResourceType {
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    plural: "scale",
    singular: "scale",
    short_names: &[],
    scope: tug_core::registry::Scope::Namespaced,
    in_all: false,
    subresources: &[],
    storage: "",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_without_a_class_get_the_default_one() {
        let class = |name: &str, default: &str, created: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {"storageclass.kubernetes.io/is-default-class": default}}})
        };
        let classes = [
            class("old", "true", "2024-01-01T00:00:00Z"),
            class("new", "true", "2025-01-01T00:00:00Z"),
            class("other", "false", "2026-01-01T00:00:00Z"),
        ];
        let cases = [
            (json!({"spec": {}}), Some("new")),
            (json!({"spec": {"storageClassName": null}}), Some("new")),
            (json!({"spec": {"storageClassName": ""}}), Some("")),
            (json!({"spec": {"storageClassName": "fast"}}), Some("fast")),
            (json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "x"}}, "spec": {}}), None),
        ];
        for (claim, want) in cases {
            let mut got = claim.clone();
            default_storage_class(&mut got, &classes);
            assert_eq!(got.pointer("/spec/storageClassName").and_then(Value::as_str), want, "{claim}");
        }
        let mut none = json!({"spec": {}});
        default_storage_class(&mut none, &classes[2..]);
        assert_eq!(none, json!({"spec": {}}), "no default class, no change");
    }

    #[test]
    fn claims_are_protected_once() {
        let mut claim = json!({"metadata": {"name": "c"}});
        add_finalizer(&mut claim, PVC_PROTECTION_FINALIZER);
        add_finalizer(&mut claim, PVC_PROTECTION_FINALIZER);
        assert_eq!(claim["metadata"]["finalizers"], json!([PVC_PROTECTION_FINALIZER]));
        let mut other = json!({"metadata": {"finalizers": ["example.com/keep"]}});
        add_finalizer(&mut other, PVC_PROTECTION_FINALIZER);
        assert_eq!(other["metadata"]["finalizers"], json!(["example.com/keep", PVC_PROTECTION_FINALIZER]));
    }

    #[test]
    fn bodies_decode_by_content_type() {
        assert!(decode_body(b"{\"a\":1}", None).is_ok());
        assert_eq!(decode_body(b"{nope", Some("application/json")).unwrap_err().code, 400);
        assert_eq!(decode_body(b"a: [1, 2]\n", Some("application/yaml")).unwrap(), json!({"a": [1, 2]}));
        assert_eq!(decode_body(b"a: [1, 2\n", Some("application/yaml")).unwrap_err().code, 400);
        assert_eq!(decode_body(b"x", Some("text/csv")).unwrap_err().code, 415);
    }

    #[test]
    fn type_mismatch_is_a_bad_request() {
        let rt = registry::by_kind("apps/v1", "Deployment").unwrap();
        let mut ok = json!({"metadata": {"name": "a"}});
        check_type(rt, &mut ok).unwrap();
        assert_eq!((ok["apiVersion"].as_str(), ok["kind"].as_str()), (Some("apps/v1"), Some("Deployment")));
        let mut wrong = json!({"apiVersion": "v1", "kind": "Deployment"});
        assert_eq!(check_type(rt, &mut wrong).unwrap_err().code, 400);
        assert_eq!(check_type(rt, &mut json!([1])).unwrap_err().code, 400);
    }

    /// The schema of `$ref` (or `allOf: [$ref]`) `schema` points at in `doc`.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        let reference = schema.get("$ref").or_else(|| schema.pointer("/allOf/0/$ref")).and_then(Value::as_str);
        match reference.and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => &doc["components"]["schemas"][name],
            None => schema,
        }
    }

    /// Every served kind starts with the status fields its OpenAPI schema (k8s-openapi's, which
    /// is Kubernetes') requires, as zero: the list is derived from the schemas, so a newly served
    /// kind with required status fields fails here until `status_on_create` knows it.
    #[test]
    fn created_objects_carry_every_required_status_field() {
        let openapi = tug_openapi::OpenApi::build();
        let mut checked = Vec::new();
        for rt in registry::RESOURCES {
            let (_, bytes) = openapi.document(&tug_openapi::gv_path(rt.group, rt.version)).expect("document");
            let doc: Value = serde_json::from_slice(bytes).unwrap();
            let gvk = json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
            let Some(schema) = doc["components"]["schemas"]
                .as_object()
                .unwrap()
                .values()
                .find(|s| s["x-kubernetes-group-version-kind"] == gvk)
            else {
                panic!("no schema for {}", rt.api_version());
            };
            let Some(status) = schema.pointer("/properties/status") else { continue };
            let required: Vec<&str> =
                resolve(&doc, status)["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if required.is_empty() {
                continue;
            }
            let mut obj = json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": "x"}, "status": {"stale": true}});
            defaults::status_on_create(rt, &mut obj);
            assert!(obj["status"].get("stale").is_none(), "{}: a client's status survives create", rt.kind);
            for field in required {
                assert_eq!(
                    obj["status"][field],
                    json!(0),
                    "{} {}: status.{field} is required",
                    rt.api_version(),
                    rt.kind
                );
            }
            checked.push(format!("{} {}", rt.api_version(), rt.kind));
        }
        // The kinds Kubernetes' schemas give required status fields today.
        for expected in [
            "apps/v1 DaemonSet",
            "apps/v1 ReplicaSet",
            "apps/v1 StatefulSet",
            "autoscaling/v1 HorizontalPodAutoscaler",
            "autoscaling/v2 HorizontalPodAutoscaler",
            "policy/v1 PodDisruptionBudget",
        ] {
            assert!(checked.iter().any(|c| c == expected), "{expected} not checked: {checked:?}");
        }
    }

    /// kube-apiserver's answers to `kubectl create --raw /api/v1/namespaces -f pod.yaml` (YAML
    /// sent as JSON) and to a JSON Pod posted there (Kubernetes' own test-cmd checks the latter).
    #[test]
    fn a_body_of_another_kind_is_refused_in_kube_apiservers_words() {
        let namespaces = registry::by_kind("v1", "Namespace").unwrap();
        let yaml = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n";
        let e = decode_object(yaml, Some("application/json"), namespaces).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "the object provided is unrecognized (must be of type Namespace): couldn't get version/kind; json parse \
             error: invalid character 'a' looking for beginning of value \
             (61706956657273696f6e3a2076310a6b696e643a20506f640a6d65746164 ...)"
        );
        let e = decode_object(b"{\"kind\": ", None, namespaces).unwrap_err();
        assert_eq!(
            e.message,
            "the object provided is unrecognized (must be of type Namespace): couldn't get version/kind; json parse \
             error: unexpected end of JSON input ({\"kind\": )"
        );
        let e = decode_object(b"[1]", None, namespaces).unwrap_err();
        assert!(e.message.contains("json: cannot unmarshal array into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\""), "{}", e.message);

        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
        let e = check_type(namespaces, &mut pod).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "Pod in version \"v1\" cannot be handled as a Namespace: converting (v1.Pod) to (core.Namespace): unknown conversion"
        );
        let deployments = registry::by_kind("apps/v1", "Deployment").unwrap();
        let mut old = json!({"apiVersion": "apps/v1beta1", "kind": "StatefulSet"});
        assert_eq!(
            check_type(deployments, &mut old).unwrap_err().message,
            "StatefulSet in version \"v1beta1\" cannot be handled as a Deployment: no kind \"StatefulSet\" is registered \
             for version \"apps/v1beta1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        );
    }
}
