//! API errors as Kubernetes `Status` objects: the code, reason and message kubectl prints as
//! `Error from server (<reason>): <message>`, with details naming the object and, for invalid
//! objects, one cause per field.

use serde_json::{Value, json};

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
        let list: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{kind}{} \"{name}\" is invalid: {}", group_suffix(group), list.join(", ")),
        )
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

    /// The `Status` object sent as the response body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            let (group, kind, name) = details.as_ref();
            let mut details = json!({ "name": name, "kind": kind });
            if !group.is_empty() {
                details["group"] = json!(group);
            }
            if !self.causes.is_empty() {
                details["causes"] = self
                    .causes
                    .iter()
                    .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
                    .collect();
            }
            status["details"] = details;
        }
        status
    }
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
