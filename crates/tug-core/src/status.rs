//! API errors as Kubernetes `Status` objects: the code, reason and message kubectl prints as
//! `Error from server (<reason>): <message>`, with details naming the object and, for invalid
//! objects, one cause per field.

use serde::Serialize;
use serde_json::Value;

/// One field-level problem of an invalid object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueDuplicate`, ...
    pub reason: &'static str,
    /// The JSON path of the field, e.g. `spec.containers[0].image`.
    pub field: String,
    pub message: String,
}

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    pub code: u16,
    /// Kubernetes' `StatusReason`: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...
    pub reason: &'static str,
    pub message: String,
    /// The object concerned: (group, kind or resource, name).
    pub details: Option<Box<(String, String, String)>>,
    pub causes: Vec<Cause>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None, causes: Vec::new() }
    }

    /// Names the object concerned in the Status details.
    pub fn about(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(Box::new((group.to_string(), kind.to_string(), name.to_string())));
        self
    }

    /// `pods "web" not found` — `resource` is the plural with its group (`deployments.apps`).
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(group, resource)))
            .about(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(group, resource)))
            .about(group, resource, name)
    }

    /// A stale resourceVersion: the caller must re-read and retry.
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
        )
        .about(group, resource, name)
    }

    /// An invalid object, with one cause per bad field (422).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        // Go's error aggregate: distinct messages, bracketed when there are several.
        let mut list: Vec<String> = Vec::new();
        for text in causes.iter().map(|c| format!("{}: {}", c.field, c.message)) {
            if !list.contains(&text) {
                list.push(text);
            }
        }
        let all = if list.len() <= 1 { list.join("") } else { format!("[{}]", list.join(", ")) };
        let mut e = Self::new(422, "Invalid", format!("{kind}{} \"{name}\" is invalid: {all}", group_suffix(group)))
            .about(group, kind, name);
        e.causes = causes;
        e
    }

    /// Malformed input: JSON/YAML that does not parse, an unknown field under Strict, ...
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// `namespaces "default" is forbidden: <why>` — Kubernetes' `NewForbidden` on one object.
    pub fn forbidden_on(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(403, "Forbidden", format!("{} \"{name}\" is forbidden: {why}", qualified(group, resource)))
            .about(group, resource, name)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// History at a resourceVersion is gone (410): the client must list afresh.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("the request body is larger than {limit_bytes} bytes"))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// Eviction blocked by a PodDisruptionBudget, or a rate limit (429).
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, "TooManyRequests", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// A read could not be answered in time (504), e.g. a resourceVersion the cache has not reached.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The datastore or another dependency is down (503).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object sent as the response body, its keys in kube-apiserver's order (Go's
    /// `metav1.Status` struct): serialize it with `serde_json` as is.
    pub fn status(&self) -> Status<'_> {
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: ListMeta {},
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details: self.details.as_deref().map(|(group, kind, name)| StatusDetails {
                name,
                group,
                kind,
                causes: self
                    .causes
                    .iter()
                    .map(|c| StatusCause { reason: c.reason, message: &c.message, field: &c.field })
                    .collect(),
            }),
            code: self.code,
        }
    }

    /// [`ApiError::status`] as a JSON value (its key order lost), for inspection.
    pub fn to_status(&self) -> Value {
        serde_json::to_value(self.status()).unwrap_or_default()
    }
}

/// `metav1.Status` with the fields kube-apiserver sends, in its order; empty ones are omitted as
/// Go's `omitempty` does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status<'a> {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: ListMeta,
    pub status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
}

impl Status<'static> {
    /// `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":…}`.
    pub fn success(code: u16) -> Status<'static> {
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: ListMeta {},
            status: "Success",
            message: "",
            reason: "",
            details: None,
            code,
        }
    }
}

/// An empty `metadata: {}` (a Status carries no list metadata).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ListMeta {}

/// `metav1.StatusDetails`: name, group, kind, causes.
#[derive(Debug, Clone, Serialize)]
pub struct StatusDetails<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause<'a>>,
}

/// `metav1.StatusCause`: reason (Go's `Type`), message, field.
#[derive(Debug, Clone, Serialize)]
pub struct StatusCause<'a> {
    pub reason: &'a str,
    pub message: &'a str,
    pub field: &'a str,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") }
}

fn group_suffix(group: &str) -> String {
    if group.is_empty() { String::new() } else { format!(".{group}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_kubectl_prints_them() {
        assert_eq!(ApiError::not_found("", "pods", "nope").message, "pods \"nope\" not found");
        assert_eq!(
            ApiError::already_exists("apps", "deployments", "web7").message,
            "deployments.apps \"web7\" already exists"
        );
        assert!(ApiError::conflict("", "pods", "x").message.contains("the object has been modified"));
    }

    #[test]
    fn invalid_objects_carry_field_causes() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![Cause {
                reason: "FieldValueRequired",
                field: "spec.template.spec.containers[0].image".into(),
                message: "Required value".into(),
            }],
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["details"]["causes"][0]["field"], "spec.template.spec.containers[0].image");
        assert_eq!(
            s["message"],
            "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value"
        );
    }

    /// Bytes as kube-apiserver sends them (captured from real servers; the trailing newline is
    /// added by the HTTP layer, as Go's JSON encoder does).
    #[test]
    fn status_keys_come_in_kube_apiservers_order() {
        let text = |e: &ApiError| serde_json::to_string(&e.status()).unwrap();
        assert_eq!(
            text(&ApiError::not_found("", "pods", "nope")),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"nope\" not found","reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404}"#
        );
        assert_eq!(
            text(&ApiError::not_found("batch", "jobs", "nonexistent-job")),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"jobs.batch \"nonexistent-job\" not found","reason":"NotFound","details":{"name":"nonexistent-job","group":"batch","kind":"jobs"},"code":404}"#
        );
        let invalid = ApiError::invalid(
            "apps",
            "StatefulSet",
            "zk",
            vec![Cause {
                reason: "FieldValueForbidden",
                field: "spec".into(),
                message: "Forbidden: updates to statefulset spec for fields other than 'replicas', 'template', and 'updateStrategy' are forbidden.".into(),
            }],
        );
        assert_eq!(
            text(&invalid),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"StatefulSet.apps \"zk\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'template', and 'updateStrategy' are forbidden.","reason":"Invalid","details":{"name":"zk","group":"apps","kind":"StatefulSet","causes":[{"reason":"FieldValueForbidden","message":"Forbidden: updates to statefulset spec for fields other than 'replicas', 'template', and 'updateStrategy' are forbidden.","field":"spec"}]},"code":422}"#
        );
        assert_eq!(
            text(&ApiError::bad_request("x")),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"x","reason":"BadRequest","code":400}"#
        );
        assert_eq!(
            serde_json::to_string(&Status::success(201)).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}"#
        );
    }

    #[test]
    fn several_invalid_fields_are_bracketed_as_gos_aggregate() {
        let cause =
            |field: &str| Cause { reason: "FieldValueRequired", field: field.into(), message: "Required value".into() };
        let e = ApiError::invalid("", "Pod", "p", vec![cause("spec.a"), cause("spec.b"), cause("spec.a")]);
        assert_eq!(e.message, "Pod \"p\" is invalid: [spec.a: Required value, spec.b: Required value]");
        assert_eq!(e.causes.len(), 3);
    }

    #[test]
    fn status_without_details_is_still_a_full_status() {
        let s = ApiError::bad_request("invalid character 'x' looking for beginning of value").to_status();
        assert_eq!(
            (s["kind"].as_str(), s["status"].as_str(), s["code"].as_u64()),
            (Some("Status"), Some("Failure"), Some(400))
        );
        assert!(s.get("details").is_none());
    }
}
