//! Turning a request's path and query into what it asks for. Pure: no IO.

use std::collections::HashMap;

use tug_core::registry::{self, ResourceType};
use tug_core::status::ApiError;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    Version,
    Metrics,
    /// `/api`: core versions (or aggregated discovery for the core group).
    CoreGroup,
    /// `/apis`: every named group (or aggregated discovery).
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`: the APIResourceList.
    Resources {
        group: String,
        version: String,
    },
    OpenApiRoot,
    /// `/openapi/v3/<api/v1|apis/g/v>`.
    OpenApiDocument(String),
    /// A request on a kind we serve.
    Resource(ResourceRequest),
    /// Review APIs answered without storage (`selfsubjectaccessreviews`, ...).
    Review {
        group: String,
        version: String,
        plural: String,
    },
    NotFound,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ResourceRequest {
    pub rt: &'static ResourceType,
    /// The namespace in the path (`None` for cluster-scoped types and all-namespace lists).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix.
    pub watch_path: bool,
}

/// Review kinds POSTed to the API and answered on the spot.
pub const REVIEWS: &[(&str, &str, &str, &str)] = &[
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview"),
    ("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview"),
];

pub fn route(path: &str) -> Route {
    let path = path.trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["version"] => Route::Version,
        ["metrics"] => Route::Metrics,
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", rest @ ..] => Route::OpenApiDocument(rest.join("/")),
        ["api"] => Route::CoreGroup,
        ["apis"] => Route::Groups,
        ["api", "v1"] => Route::Resources { group: String::new(), version: "v1".into() },
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::Resources { group: group.to_string(), version: version.to_string() },
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    if let [plural] = rest
        && let Some((g, v, p, _)) = REVIEWS.iter().find(|(g, v, p, _)| *g == group && *v == version && p == plural)
    {
        return Route::Review { group: g.to_string(), version: v.to_string(), plural: p.to_string() };
    }
    let (namespace, rest): (Option<&str>, &[&str]) = match rest {
        // `namespaces/<ns>/<plural>...` is inside a namespace; `namespaces/<name>[/status|/finalize]` is the Namespace itself.
        ["namespaces", ns, plural, rest @ ..] if *plural != "status" && *plural != "finalize" => {
            let mut v = vec![*plural];
            v.extend_from_slice(rest);
            return finish(group, version, Some(ns), &v, watch_path);
        }
        _ => (None, rest),
    };
    finish(group, version, namespace, rest, watch_path)
}

fn finish(group: &str, version: &str, namespace: Option<&str>, rest: &[&str], watch_path: bool) -> Route {
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Route::NotFound,
    };
    let Some(rt) = registry::by_path(group, version, plural) else { return Route::NotFound };
    if namespace.is_some() && !rt.namespaced() {
        return Route::NotFound;
    }
    if let Some(s) = sub
        && !(rt.subresources.iter().any(|r| r.name() == s) || (rt.kind == "Namespace" && s == "finalize"))
    {
        return Route::NotFound;
    }
    Route::Resource(ResourceRequest {
        rt,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
        watch_path,
    })
}

/// The query parameters the API understands (unknown ones are ignored, as Kubernetes does).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout_seconds: Option<u64>,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    pub force: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub include_object: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut q = Query::default();
        let params: HashMap<String, String> = raw.map(parse_pairs).unwrap_or_default();
        let flag = |k: &str| params.get(k).is_some_and(|v| v == "true" || v == "1");
        q.label_selector = params.get("labelSelector").filter(|s| !s.is_empty()).cloned();
        q.field_selector = params.get("fieldSelector").filter(|s| !s.is_empty()).cloned();
        if let Some(l) = params.get("limit").filter(|s| !s.is_empty()) {
            q.limit = l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}: not a number")))?;
        }
        q.continue_token = params.get("continue").filter(|s| !s.is_empty()).cloned();
        q.resource_version = params.get("resourceVersion").filter(|s| !s.is_empty()).cloned();
        q.resource_version_match = params.get("resourceVersionMatch").filter(|s| !s.is_empty()).cloned();
        q.watch = flag("watch");
        q.allow_watch_bookmarks = flag("allowWatchBookmarks");
        q.send_initial_events = flag("sendInitialEvents");
        if let Some(t) = params.get("timeoutSeconds").filter(|s| !s.is_empty()) {
            q.timeout_seconds =
                Some(t.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?);
        }
        q.dry_run = match params.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid dryRun {other:?}: the only supported value is \"All\""
                )));
            }
        };
        q.field_validation = match params.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid fieldValidation {other:?}: use Ignore, Warn or Strict"
                )));
            }
        };
        q.field_manager = params.get("fieldManager").cloned();
        q.force = flag("force");
        if let Some(g) = params.get("gracePeriodSeconds").filter(|s| !s.is_empty()) {
            q.grace_period_seconds =
                Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?);
        }
        q.propagation_policy = params.get("propagationPolicy").cloned();
        q.include_object = params.get("includeObject").cloned();
        Ok(q)
    }
}

fn parse_pairs(raw: &str) -> HashMap<String, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `%XX` escapes and `+` for space.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRequest {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn routes_resource_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(
            (r.rt.plural, r.namespace.as_deref(), r.name.as_deref(), r.subresource.as_deref()),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!((r.rt.plural, r.namespace, r.name.as_deref()), ("namespaces", None, Some("kube-system")));
        let r = res("/api/v1/namespaces/x/finalize");
        assert_eq!((r.rt.plural, r.subresource.as_deref()), ("namespaces", Some("finalize")));
        let r = res("/apis/apps/v1/deployments");
        assert_eq!((r.rt.plural, r.namespace, r.name), ("deployments", None, None));
        let r = res("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch_path);
        assert_eq!(route("/api/v1/namespaces/default/widgets"), Route::NotFound);
        assert_eq!(route("/api/v1/namespaces/default/nodes/n1"), Route::NotFound, "nodes are cluster-scoped");
        assert_eq!(route("/api/v1/namespaces/default/configmaps/c/scale"), Route::NotFound);
        assert!(matches!(route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"), Route::Review { .. }));
        assert_eq!(route("/apis/apps/v1"), Route::Resources { group: "apps".into(), version: "v1".into() });
        assert_eq!(route("/openapi/v3/apis/apps/v1"), Route::OpenApiDocument("apis/apps/v1".into()));
    }

    #[test]
    fn parses_queries() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&limit=500&watch=1&dryRun=All&fieldValidation=Strict",
        ))
        .unwrap();
        assert_eq!(q.label_selector.as_deref(), Some("app=web,tier in (a)"));
        assert_eq!(q.limit, 500);
        assert!(q.watch && q.dry_run);
        assert_eq!(q.field_validation, FieldValidation::Strict);
        assert!(Query::parse(Some("limit=x")).is_err());
        assert!(Query::parse(Some("dryRun=Some")).is_err());
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
