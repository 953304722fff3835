//! The generic verbs over any registered type: create, get, list, update, patch, delete and
//! deletecollection.

use bytes::Bytes;
use serde_json::{Value, json};
use tug_core::registry::ResourceType;
use tug_core::selector::{FieldSelector, LabelSelector};
use tug_core::status::ApiError;
use tug_core::{convert, defaults, patch};
use tug_store::{ContinueToken, KeyValue, ListOptions, Revision};

use super::decode::{check_type, decode_body, normalize};
use super::subresources::status::{self, WriteScope};
use super::{
    CAS_RETRIES, conflict, encode_for_storage, invalid, not_found, qualified_resource, served_bytes, stored_object,
    ttl_for,
};
use crate::admission::{Attributes, Operation};
use crate::cache::CachedObject;
use crate::errors::from_store;
use crate::request::{Query, ResourceRequest};
use crate::strategy::{self, Strategy};
use crate::{Api, Reply, object};

/// Metadata the server owns on create.
fn prepare_create(
    rt: &ResourceType,
    strategy: &dyn Strategy,
    req_ns: Option<&str>,
    obj: &mut Value,
) -> Result<(), ApiError> {
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
    if strategy.tracks_generation(rt) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    defaults::status_on_create(rt, obj);
    strategy.prepare_for_create(obj);
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
        let strategy = strategy::for_kind(rt);
        check_type(rt, &mut obj)?;
        let mut obj = normalize(rt, obj, q.field_validation, &mut reply.warnings)?;
        prepare_create(rt, strategy, req.namespace.as_deref(), &mut obj)?;
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
        defaults::apply_defaults(rt, &mut obj);
        let attrs = Attributes {
            operation: Operation::Create,
            rt,
            namespace: ns.clone(),
            name: name.clone(),
            old: None,
            dry_run: q.dry_run,
        };
        self.admission_chain.mutate(self, &attrs, Some(&mut obj)).await?;
        let reserved = strategy.begin_write(self, rt, None, &mut obj, q.dry_run).await?;
        let causes = strategy.validate_create(rt, &obj);
        if !causes.is_empty() {
            strategy.abort_write(self, &reserved).await;
            return Err(invalid(rt, &name, causes));
        }
        if let Err(e) = self.admission_chain.validate(self, &attrs, Some(&obj)).await {
            strategy.abort_write(self, &reserved).await;
            return Err(e);
        }
        if q.dry_run {
            return Ok(obj);
        }
        let key = rt.key(ns.as_deref(), &name);
        match self.store.create(&key, encode_for_storage(rt, &obj), ttl_for(rt)).await {
            Ok(rev) => {
                object::set_resource_version(&mut obj, rev);
                strategy.after_create(self, &obj).await;
                Ok(obj)
            }
            Err(e) => {
                strategy.abort_write(self, &reserved).await;
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
    pub(crate) async fn current(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<KeyValue, ApiError> {
        self.store.get(&rt.key(ns, name), None).await.map_err(from_store)?.ok_or_else(|| not_found(rt, name))
    }

    /// The object a write starts from, and whether it came from the watch cache. The first
    /// attempt of a write takes the cached copy (no store read: usually current, as the cache
    /// trails the store by moments); later attempts read the store. A stale cached copy costs
    /// one lost compare-and-swap, and a precondition that fails against it is checked again
    /// against the store before the client hears 409 (kube-apiserver's GuaranteedUpdate does
    /// the same with its cached object).
    pub(crate) async fn current_for_write(
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
    pub(crate) async fn write_update(
        &self,
        rt: &ResourceType,
        scope: WriteScope,
        (current, cached): (&KeyValue, bool),
        mut new: Value,
        dry_run: bool,
    ) -> Result<Option<Value>, ApiError> {
        let strategy = strategy::for_kind(rt);
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
        let mut new = status::scoped(scope, strategy.status_is_subresource(rt), &old, new);
        defaults::apply_defaults(rt, &mut new);
        strategy.prepare_for_update(&old, &mut new);
        let attrs = Attributes {
            operation: Operation::Update,
            rt,
            namespace: object::namespace(&old).map(str::to_string),
            name: name.clone(),
            old: Some(&old),
            dry_run,
        };
        if let Err(e) = self.admission_chain.mutate(self, &attrs, Some(&mut new)).await {
            return if cached { Ok(None) } else { Err(e) };
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
        let causes = strategy.validate_update(rt, &new, &old);
        if !causes.is_empty() {
            if cached {
                return Ok(None);
            }
            return Err(invalid(rt, &name, causes));
        }
        if let Err(e) = self.admission_chain.validate(self, &attrs, Some(&new)).await {
            return if cached { Ok(None) } else { Err(e) };
        }
        // An update that removes the last finalizer of an object being deleted finishes the deletion.
        if object::is_deleting(&new) && object::finalizers(&new).is_empty() && strategy.deleted_when_finalized() {
            if dry_run {
                return Ok(Some(new));
            }
            return match self.store.delete(&current.key, Some(current.mod_revision)).await {
                Ok(d) => {
                    strategy.after_delete(self, &old).await;
                    object::set_resource_version(&mut new, d.revision);
                    Ok(Some(new))
                }
                Err(tug_store::Error::Conflict { .. }) => Ok(None),
                Err(tug_store::Error::NotFound { .. }) => Err(not_found(rt, &name)),
                Err(e) => Err(from_store(e)),
            };
        }
        // What the new version holds beyond the stored one (a Service's addresses), reserved
        // last, so only a lost compare-and-swap or a store error has to give it back.
        let reserved = match strategy.begin_write(self, rt, Some(&old), &mut new, dry_run).await {
            Ok(reserved) => reserved,
            Err(e) => return if cached { Ok(None) } else { Err(e) },
        };
        let bytes = encode_for_storage(rt, &new);
        // Nothing changed: no write, no new resourceVersion (as Kubernetes). A cached copy
        // carries its resourceVersion, so it is compared in its stored form. (Unchanged means
        // nothing was reserved either.)
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
                strategy.after_update(self, &old, &new).await;
                object::set_resource_version(&mut new, rev);
                Ok(Some(new))
            }
            Err(e) => {
                strategy.abort_write(self, &reserved).await;
                match e {
                    tug_store::Error::Conflict { .. } => Ok(None),
                    tug_store::Error::NotFound { .. } => Err(not_found(rt, &name)),
                    e => Err(from_store(e)),
                }
            }
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
        let strategy = strategy::for_kind(rt);
        let name = req.name.as_deref().unwrap_or_default();
        let dry_run =
            q.dry_run || options.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
        let attrs = Attributes {
            operation: Operation::Delete,
            rt,
            namespace: req.namespace.clone(),
            name: name.to_string(),
            old: None,
            dry_run,
        };
        self.admission_chain.mutate(self, &attrs, None).await?;
        self.admission_chain.validate(self, &attrs, None).await?;
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
            let grace_period = strategy.grace_period(&obj, grace);
            let wait = strategy.two_phase_delete() || !finalizers.is_empty() || grace_period.is_some();
            if wait {
                if object::is_deleting(&obj) && !strategy.shortens_grace_period() {
                    return Ok(obj);
                }
                let grace_secs = grace_period.unwrap_or(0);
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
                strategy.prepare_for_delete(&mut obj);
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
                    strategy.after_delete(self, &obj).await;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for rt in tug_core::registry::RESOURCES {
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
}
