//! The Kubernetes API server: the only component that touches the store.
//!
//! A request goes: TLS (`server`) → authentication (bearer tokens) → routing (`request`) →
//! discovery / OpenAPI / a verb on a resource (`rest`, `watch`) → a JSON answer or a `Status`
//! error. Reads are served from the watch cache (`cache`), writes go to the store with
//! compare-and-swap. `bootstrap` creates the default namespaces and finishes namespace
//! deletion.

pub mod admission;
pub mod alloc;
pub mod bootstrap;
pub mod cache;
pub mod discovery;
mod errors;
pub mod local;
pub mod metrics;
pub mod object;
pub mod pki;
pub mod proxy;
pub mod request;
pub mod rest;
pub mod selectors;
pub mod server;
pub mod strategy;
pub mod tables;
mod typed;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::watch as tokio_watch;
use tug_core::registry::ResourceType;
pub use tug_core::status::ApiError;
use tug_store::Store;

use crate::alloc::ServiceRanges;
use crate::alloc::records::ServiceAllocator;
use crate::cache::WatchCache;
use crate::metrics::Metrics;
use crate::request::{Query, ResourceRequest, Route};
use crate::rest::WriteScope;
use crate::tables::Include;

/// Largest request body accepted, as Kubernetes' 3 MiB limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// What a handler adds to the response besides its body.
#[derive(Debug, Default)]
pub struct Reply {
    /// `Warning: 299 - "…"` headers (unknown fields under fieldValidation=Warn, …).
    pub warnings: Vec<String>,
}

/// How objects are rendered: as themselves, or as a server-side Table (`as=Table` in Accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    Object,
    Table { include: Include },
}

/// The API server's shared state.
pub struct Api {
    pub store: Arc<dyn Store>,
    pub cache: Arc<WatchCache>,
    pub openapi: tug_openapi::OpenApi,
    pub services: ServiceAllocator,
    pub metrics: Metrics,
    tokens: HashMap<String, User>,
    /// The cluster CA certificate, published in every namespace as ConfigMap `kube-root-ca.crt`.
    pub root_ca_pem: String,
    /// Flips to true when the server stops; open watches end.
    pub shutdown: tokio_watch::Receiver<bool>,
    pub admission: Admission,
    /// The admission plugins every write passes through, in order (built from `admission`).
    pub admission_chain: admission::Chain,
    /// How pod logs, exec, attach and port-forward reach node agents (set once at start).
    pub kubelet_client: std::sync::OnceLock<proxy::KubeletClient>,
}

/// Settings of the built-in admission steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// How long pods stay bound to a node that is not ready or unreachable before they are
    /// evicted (Kubernetes' DefaultTolerationSeconds admission adds these tolerations to every
    /// pod that does not set them; Kubernetes' default is 300 s, Tugboat's 10 s — see
    /// ARCHITECTURE.md).
    pub default_toleration_seconds: i64,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission { default_toleration_seconds: 10 }
    }
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("cache", &self.cache).finish()
    }
}

impl Api {
    /// State over an opened store; fills the watch cache first.
    pub async fn new(
        store: Arc<dyn Store>,
        tokens: HashMap<String, User>,
        root_ca_pem: String,
        shutdown: tokio_watch::Receiver<bool>,
        admission: Admission,
        service_ranges: ServiceRanges,
    ) -> Result<Arc<Api>, tug_store::Error> {
        let cache = WatchCache::start(store.clone(), shutdown.clone()).await?;
        Ok(Arc::new(Api {
            services: ServiceAllocator::new(store.clone(), service_ranges),
            store,
            cache,
            openapi: tug_openapi::OpenApi::build(),
            metrics: Metrics::default(),
            tokens,
            root_ca_pem,
            shutdown,
            admission_chain: admission::Chain::new(&admission),
            admission,
            kubelet_client: std::sync::OnceLock::new(),
        }))
    }

    fn authenticate(&self, headers: &HeaderMap) -> Option<&User> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
        self.tokens.get(token)
    }

    /// Serves one HTTP request.
    pub async fn handle(self: &Arc<Self>, req: http::Request<Body>) -> Response<Body> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let route = request::route(parts.uri.path());
        let public = matches!(route, Route::Health | Route::Version);
        let (verb, resource, sub) = metric_labels(&parts.method, &route, parts.uri.query());
        let response = if !public && self.authenticate(&parts.headers).is_none() {
            error_response(&ApiError::unauthorized(), &[])
        } else if let Route::Resource(req) = &route
            && proxy::is_proxied(req)
        {
            let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            self.proxy(req, &parts.method, &parts.uri, &parts.headers, upgrade)
                .await
                .unwrap_or_else(|e| error_response(&e, &[]))
        } else {
            let mut reply = Reply::default();
            match self.dispatch(&parts.method, parts.uri.query(), &parts.headers, route, body, &mut reply).await {
                Ok(r) => with_warnings(r, &reply.warnings),
                Err(e) => error_response(&e, &reply.warnings),
            }
        };
        self.metrics.observe(verb, &resource, &sub, response.status().as_u16(), started.elapsed().as_secs_f64());
        response
    }

    async fn dispatch(
        self: &Arc<Self>,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        route: Route,
        body: Body,
        reply: &mut Reply,
    ) -> Result<Response<Body>, ApiError> {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let get_only = |m: &Method| {
            if m == Method::GET || m == Method::HEAD {
                Ok(())
            } else {
                Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource: {m}"
                )))
            }
        };
        match route {
            Route::Health => Ok(text(StatusCode::OK, "ok")),
            Route::Version => Ok(json_response(StatusCode::OK, &discovery::version_info())),
            Route::Metrics => {
                get_only(method)?;
                let text_body = self.metrics.render(&self.cache.counts());
                Ok(Response::builder()
                    .header(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")
                    .body(Body::from(text_body))
                    .expect("valid response"))
            }
            Route::CoreGroup | Route::Groups => {
                get_only(method)?;
                let core = route == Route::CoreGroup;
                if accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2;") || accept.ends_with("v=v2") {
                    let mut r = json_response(StatusCode::OK, &discovery::aggregated(core));
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE));
                    r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
                    Ok(r)
                } else if core {
                    Ok(json_response(StatusCode::OK, &discovery::legacy_core_versions()))
                } else {
                    Ok(json_response(StatusCode::OK, &discovery::legacy_groups()))
                }
            }
            Route::Group(g) => {
                get_only(method)?;
                discovery::legacy_group_doc(&g)
                    .map(|d| json_response(StatusCode::OK, &d))
                    .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))
            }
            Route::Resources { group, version } => {
                get_only(method)?;
                discovery::resource_list(&group, &version)
                    .map(|d| json_response(StatusCode::OK, &d))
                    .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))
            }
            Route::OpenApiRoot => {
                get_only(method)?;
                Ok(raw_json(StatusCode::OK, Bytes::copy_from_slice(self.openapi.root_json())))
            }
            Route::OpenApiDocument(gv) => {
                get_only(method)?;
                let (hash, doc) = self
                    .openapi
                    .document(&gv)
                    .ok_or_else(|| ApiError::new(404, "NotFound", format!("no OpenAPI document for {gv}")))?;
                let mut r = raw_json(StatusCode::OK, Bytes::copy_from_slice(doc));
                if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
                    r.headers_mut().insert(header::ETAG, etag);
                }
                Ok(r)
            }
            Route::Review { group, version, plural } => {
                if method != Method::POST {
                    return Err(ApiError::method_not_allowed("reviews only accept POST"));
                }
                let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                let body = read_body(body).await?;
                let review = rest::decode_body(&body, ct)?;
                Ok(json_response(StatusCode::CREATED, &self.review(&group, &version, &plural, review, headers)))
            }
            Route::NotFound => Err(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
            Route::Resource(req) => {
                let q = Query::parse(query)?;
                let render = if accept.contains("as=Table") {
                    Render::Table { include: tables::include_from_query(q.include_object.as_deref()) }
                } else {
                    Render::Object
                };
                self.resource(method, req, q, headers, render, body, reply).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn resource(
        self: &Arc<Self>,
        method: &Method,
        req: ResourceRequest,
        q: Query,
        headers: &HeaderMap,
        render: Render,
        body: Body,
        reply: &mut Reply,
    ) -> Result<Response<Body>, ApiError> {
        let rt = req.rt;
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let sub = req.subresource.as_deref();
        let has_name = req.name.is_some();
        let m = method.as_str();
        match (m, has_name, sub) {
            ("GET", _, None) if q.watch || req.watch_path => {
                let stream = self.watch(&req, &q, render).await?;
                Ok(Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CACHE_CONTROL, "no-cache, private")
                    .body(Body::from_stream(stream))
                    .expect("valid response"))
            }
            ("GET", false, None) => {
                let (items, revision, cont) = self.list(&req, &q).await?;
                Ok(match render {
                    Render::Object => raw_json(StatusCode::OK, list_body(rt, &items, revision, cont.as_deref())),
                    Render::Table { include } => {
                        let objects: Vec<Value> = items.iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
                        let mut t = tables::table(rt, &objects, include, revision, true);
                        if let Some(c) = cont {
                            t["metadata"]["continue"] = json!(c);
                        }
                        json_response(StatusCode::OK, &t)
                    }
                })
            }
            ("GET", true, None | Some("status")) => {
                let obj = self.get(&req, &q).await?;
                Ok(self.render_one(rt, obj, render, StatusCode::OK))
            }
            ("POST", false, None) => {
                let obj = rest::decode_object(&read_body(body).await?, ct, rt)?;
                let created = self.create(&req, &q, obj, reply).await?;
                Ok(self.render_one(rt, created, render, StatusCode::CREATED))
            }
            ("PUT", true, None | Some("status") | Some("finalize")) => {
                let scope = match sub {
                    Some("status") => WriteScope::Status,
                    Some("finalize") => WriteScope::Finalize,
                    _ => WriteScope::Main,
                };
                let obj = rest::decode_object(&read_body(body).await?, ct, rt)?;
                let updated = self.update(&req, &q, scope, obj, reply).await?;
                Ok(self.render_one(rt, updated, render, StatusCode::OK))
            }
            ("PATCH", true, None | Some("status")) => {
                let scope = if sub == Some("status") { WriteScope::Status } else { WriteScope::Main };
                let body = read_body(body).await?;
                let patched = self.patch(&req, &q, scope, &body, ct, reply).await?;
                Ok(self.render_one(rt, patched, render, StatusCode::OK))
            }
            ("DELETE", true, None) => {
                let body = read_body(body).await?;
                let options = if body.is_empty() { json!({}) } else { rest::decode_body(&body, ct)? };
                let obj = self.delete(&req, &q, &options).await?;
                let pending = object::is_deleting(&obj);
                Ok(self.render_one(rt, obj, render, if pending { StatusCode::ACCEPTED } else { StatusCode::OK }))
            }
            ("DELETE", false, None) if discovery::verbs(rt).contains(&"deletecollection") => {
                let body = read_body(body).await?;
                let options = if body.is_empty() { json!({}) } else { rest::decode_body(&body, ct)? };
                let items = self.delete_collection(&req, &q, &options).await?;
                Ok(raw_json(StatusCode::OK, list_body(rt, &items, self.cache.revision(), None)))
            }
            ("GET", true, Some("scale")) => Ok(json_response(StatusCode::OK, &self.get_scale(&req).await?)),
            ("PUT" | "PATCH", true, Some("scale")) => {
                let body = read_body(body).await?;
                let scale = self.write_scale(&req, &q, &body, ct, m == "PATCH").await?;
                Ok(json_response(StatusCode::OK, &scale))
            }
            ("POST", true, Some("binding")) => {
                let binding = rest::decode_body(&read_body(body).await?, ct)?;
                self.bind(&req, &binding).await?;
                Ok(json_response(StatusCode::CREATED, &success_status()))
            }
            ("POST", true, Some("eviction")) => {
                let eviction = rest::decode_body(&read_body(body).await?, ct)?;
                self.evict(&req, &q, &eviction).await?;
                Ok(json_response(StatusCode::CREATED, &success_status()))
            }
            (_, true, Some("log" | "exec" | "attach" | "portforward")) => Err(ApiError::unavailable(format!(
                "pods/{} is served by the node agent, which this build does not include yet",
                sub.unwrap_or_default()
            ))),
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {m} {}{}",
                rt.plural,
                sub.map(|s| format!("/{s}")).unwrap_or_default()
            ))),
        }
    }

    fn render_one(&self, rt: &ResourceType, obj: Value, render: Render, status: StatusCode) -> Response<Body> {
        match render {
            Render::Object => json_response(status, &obj),
            Render::Table { include } => {
                let rv = object::resource_version(&obj).and_then(|r| r.parse().ok()).unwrap_or(0);
                json_response(status, &tables::table(rt, &[obj], include, rv, true))
            }
        }
    }

    /// SelfSubjectAccessReview and friends. Every authenticated user may do everything until
    /// RBAC is enforced (a later issue), and the answers say so.
    fn review(&self, group: &str, version: &str, plural: &str, mut review: Value, headers: &HeaderMap) -> Value {
        let user = self.authenticate(headers).cloned().unwrap_or(User { name: String::new(), groups: vec![] });
        review["apiVersion"] = json!(format!("{group}/{version}"));
        match plural {
            "selfsubjectaccessreviews" => {
                review["kind"] = json!("SelfSubjectAccessReview");
                review["status"] = json!({"allowed": true, "reason": "every authenticated user is allowed (RBAC is not enforced yet)"});
            }
            "selfsubjectrulesreviews" => {
                review["kind"] = json!("SelfSubjectRulesReview");
                review["status"] = json!({
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": false,
                });
            }
            _ => {
                review["kind"] = json!("SelfSubjectReview");
                review["status"] = json!({"userInfo": {"username": user.name, "groups": user.groups}});
            }
        }
        if review.get("metadata").is_none() {
            review["metadata"] = json!({});
        }
        review
    }
}

/// Labels for the request metrics: (verb, resource, subresource).
fn metric_labels(method: &Method, route: &Route, query: Option<&str>) -> (&'static str, String, String) {
    match route {
        Route::Resource(r) => {
            let watch =
                r.watch_path || query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
            let verb = match (method.as_str(), r.name.is_some()) {
                ("GET", _) if watch => "watch",
                ("GET", true) => "get",
                ("GET", false) => "list",
                ("POST", _) => "create",
                ("PUT", _) => "update",
                ("PATCH", _) => "patch",
                ("DELETE", true) => "delete",
                ("DELETE", false) => "deletecollection",
                _ => "other",
            };
            (verb, r.rt.plural.to_string(), r.subresource.clone().unwrap_or_default())
        }
        Route::Health => ("get", "healthz".into(), String::new()),
        Route::Metrics => ("get", "metrics".into(), String::new()),
        Route::NotFound => ("other", "notfound".into(), String::new()),
        _ => ("get", "discovery".into(), String::new()),
    }
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

fn success_status() -> tug_core::status::Status<'static> {
    tug_core::status::Status::success(201)
}

/// `{"kind":"PodList",…,"items":[…]}` from pre-encoded items.
fn list_body(rt: &ResourceType, items: &[Bytes], revision: tug_store::Revision, cont: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
    out.extend_from_slice(b"{\"kind\":\"");
    out.extend_from_slice(rt.kind.as_bytes());
    out.extend_from_slice(b"List\",\"apiVersion\":\"");
    out.extend_from_slice(rt.api_version().as_bytes());
    out.extend_from_slice(b"\",\"metadata\":{\"resourceVersion\":\"");
    out.extend_from_slice(revision.to_string().as_bytes());
    out.push(b'"');
    if let Some(c) = cont {
        out.extend_from_slice(b",\"continue\":");
        out.extend_from_slice(&serde_json::to_vec(c).unwrap_or_default());
    }
    out.extend_from_slice(b"},\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}\n");
    Bytes::from(out)
}

fn raw_json(status: StatusCode, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response")
}

/// A JSON answer. Like kube-apiserver's (Go's `json.Encoder`), it ends with a newline.
fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    raw_json(status, Bytes::from(body))
}

fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    Response::builder().status(status).header(header::CONTENT_TYPE, "text/plain").body(Body::from(s)).expect("valid")
}

fn error_response(e: &ApiError, warnings: &[String]) -> Response<Body> {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    with_warnings(json_response(status, &e.status()), warnings)
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}
