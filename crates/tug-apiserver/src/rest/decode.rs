//! Request bodies: decoding by Content-Type, the type check against the URL, and field
//! validation through the typed structs, with kube-apiserver's wording for each failure.

use serde_json::{Value, json};
use tug_core::registry::{self, ResourceType};
use tug_core::status::ApiError;

use crate::request::FieldValidation;
use crate::typed;

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
pub(super) fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
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
pub(super) fn normalize(
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

#[cfg(test)]
mod tests {
    use super::*;

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
