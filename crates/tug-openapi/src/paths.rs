//! `paths` of one group-version document: the collection, item and subresource URLs of every
//! served resource, with the operations the API server answers there.
//!
//! kubectl reads three things from here: the PATCH operation's `x-kubernetes-group-version-kind`,
//! its `fieldValidation` parameter (else `apply` validates client-side and needs `/openapi/v2`)
//! and its request media types (strategic merge or not); `explain` finds a resource's kind from
//! the GVK of any operation on its collection or item path.

use crate::kinds::Gvk;
use crate::schemas::{Components, DELETE_OPTIONS, PATCH, STATUS, gvk_value, reference};
use serde_json::{Map, Value, json};
use tug_core::registry::{ResourceType, Subresource};

/// The four patch types the API server accepts; kubectl builds strategic merge patches only when
/// the PATCH operation lists `application/strategic-merge-patch+json`.
pub const PATCH_MEDIA_TYPES: [&str; 4] = [
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

const OBJECT_MEDIA_TYPES: [&str; 3] = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];
const LIST_MEDIA_TYPES: [&str; 5] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];

/// GVKs of what subresources take and return.
pub(crate) const SCALE: Gvk = Gvk { group: "autoscaling", version: "v1", kind: "Scale" };
pub(crate) const BINDING: Gvk = Gvk { group: "", version: "v1", kind: "Binding" };
pub(crate) const EVICTION: Gvk = Gvk { group: "policy", version: "v1", kind: "Eviction" };
pub(crate) const STATUS_KIND: Gvk = Gvk { group: "", version: "v1", kind: "Status" };

pub(crate) fn gvk_of(resource: &ResourceType) -> Gvk {
    Gvk { group: resource.group, version: resource.version, kind: resource.kind }
}

/// The kinds a resource's subresources take or return, which the document must define too.
pub(crate) fn referenced_kinds(resource: &ResourceType) -> Vec<Gvk> {
    let mut kinds = vec![STATUS_KIND];
    for (sub, gvk) in [(Subresource::Scale, SCALE), (Subresource::Binding, BINDING), (Subresource::Eviction, EVICTION)]
    {
        if resource.has(sub) {
            kinds.push(gvk);
        }
    }
    kinds
}

/// `/api/v1` or `/apis/apps/v1`.
pub(crate) fn url_prefix(group: &str, version: &str) -> String {
    if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") }
}

/// Adds every path of `resource` to `paths`.
pub(crate) fn add_resource(paths: &mut Map<String, Value>, resource: &ResourceType, components: &Components) {
    let gvk = gvk_of(resource);
    let (Some(kind_name), Some(list_name)) = (components.name_of(gvk), components.list_name_of(gvk)) else {
        return;
    };
    let names = Names::new(resource);
    let prefix = url_prefix(resource.group, resource.version);
    let object = reference(kind_name);
    let list = reference(&list_name);
    let ops = Ops { gvk, names: &names, object: &object };

    let (collection, item) = if resource.namespaced() {
        // Kubernetes also lists namespaced kinds across all namespaces at the bare URL.
        let all = format!("{prefix}/{}", resource.plural);
        paths.insert(all, path_item(vec![ops.list(&list, true)], &[]));
        let collection = format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural);
        (collection.clone(), format!("{collection}/{{name}}"))
    } else {
        let collection = format!("{prefix}/{}", resource.plural);
        (collection.clone(), format!("{collection}/{{name}}"))
    };
    let scope: &[&str] = if resource.namespaced() { &["namespace"] } else { &[] };
    let item_scope: &[&str] = if resource.namespaced() { &["name", "namespace"] } else { &["name"] };

    paths.insert(
        collection.clone(),
        path_item(vec![ops.list(&list, false), ops.create(), ops.delete_collection()], scope),
    );
    paths.insert(item.clone(), path_item(vec![ops.read(""), ops.replace(""), ops.patch(""), ops.delete()], item_scope));

    for &sub in resource.subresources {
        if let Some(operations) = subresource_ops(sub, &ops, components) {
            paths.insert(format!("{item}/{}", sub.name()), path_item(operations, item_scope));
        }
    }
}

fn subresource_ops(sub: Subresource, ops: &Ops<'_>, components: &Components) -> Option<Vec<(&'static str, Value)>> {
    let with_kind = |gvk: Gvk| components.name_of(gvk).map(|name| (gvk, reference(name)));
    Some(match sub {
        Subresource::Status => vec![ops.read("Status"), ops.replace("Status"), ops.patch("Status")],
        Subresource::Scale => {
            let (gvk, scale) = with_kind(SCALE)?;
            let scale_ops = Ops { gvk, names: ops.names, object: &scale };
            vec![scale_ops.read_as(ops, "Scale"), scale_ops.replace_as(ops, "Scale"), scale_ops.patch_as(ops, "Scale")]
        }
        Subresource::Binding | Subresource::Eviction => {
            let target = if sub == Subresource::Binding { BINDING } else { EVICTION };
            let (gvk, body) = with_kind(target)?;
            vec![ops.create_subresource(gvk, &body, target.kind)]
        }
        Subresource::Log => vec![ops.log()],
        Subresource::Exec | Subresource::Attach | Subresource::PortForward => ops.connect(sub),
    })
}

/// The names an operation's id and description are made of.
#[derive(Debug)]
struct Names {
    /// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`.
    group_version: String,
    /// `Namespaced` or empty.
    scope: &'static str,
    kind: &'static str,
}

impl Names {
    fn new(resource: &ResourceType) -> Names {
        Names {
            group_version: format!("{}{}", group_camel(resource.group), upper_first(resource.version)),
            scope: if resource.namespaced() { "Namespaced" } else { "" },
            kind: resource.kind,
        }
    }

    /// `patchAppsV1NamespacedDeploymentStatus`, as Kubernetes names its operations.
    fn id(&self, verb: &str, suffix: &str) -> String {
        format!("{verb}{}{}{}{suffix}", self.group_version, self.scope, self.kind)
    }

    /// `connectCoreV1GetNamespacedPodExec`: the method sits after the group-version.
    fn connect_id(&self, method: &str, suffix: &str) -> String {
        format!("connect{}{}{}{}{suffix}", self.group_version, upper_first(method), self.scope, self.kind)
    }
}

/// `rbac.authorization.k8s.io` → `RbacAuthorization`, `` → `Core`.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group.trim_end_matches(".k8s.io").split('.').map(upper_first).collect()
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Builds the operations of one kind.
struct Ops<'a> {
    gvk: Gvk,
    names: &'a Names,
    object: &'a Value,
}

impl Ops<'_> {
    fn list(&self, list: &Value, all_namespaces: bool) -> (&'static str, Value) {
        let (id, description) = if all_namespaces {
            (format!("list{}{}ForAllNamespaces", self.names.group_version, self.names.kind), "across all namespaces")
        } else {
            (self.names.id("list", ""), "")
        };
        let op = operation(
            "list",
            self.gvk,
            id,
            format!("list or watch objects of kind {} {description}", self.gvk.kind).trim_end().to_owned(),
            list_params(),
            None,
            responses(&[("200", list)], &LIST_MEDIA_TYPES),
        );
        ("get", op)
    }

    fn create(&self) -> (&'static str, Value) {
        let op = operation(
            "post",
            self.gvk,
            self.names.id("create", ""),
            format!("create a {}", self.gvk.kind),
            write_params(),
            Some(body("*/*", self.object)),
            responses(&[("200", self.object), ("201", self.object), ("202", self.object)], &OBJECT_MEDIA_TYPES),
        );
        ("post", op)
    }

    fn delete_collection(&self) -> (&'static str, Value) {
        let mut params = delete_params();
        params.extend(list_params().into_iter().filter(|p| p["name"] != "watch" && p["name"] != "allowWatchBookmarks"));
        let status = reference(STATUS);
        let op = operation(
            "deletecollection",
            self.gvk,
            self.names.id("deleteCollection", ""),
            format!("delete collection of {}", self.gvk.kind),
            params,
            Some(body("*/*", &reference(DELETE_OPTIONS))),
            responses(&[("200", &status)], &OBJECT_MEDIA_TYPES),
        );
        ("delete", op)
    }

    fn read(&self, suffix: &str) -> (&'static str, Value) {
        self.read_as(self, suffix)
    }

    /// `owner` names the operation: reading `deployments/scale` returns a Scale but is an
    /// operation on Deployments.
    fn read_as(&self, owner: &Ops<'_>, suffix: &str) -> (&'static str, Value) {
        let op = operation(
            "get",
            self.gvk,
            owner.names.id("read", suffix),
            format!("read {}the specified {}", of(suffix), owner.gvk.kind),
            vec![],
            None,
            responses(&[("200", self.object)], &OBJECT_MEDIA_TYPES),
        );
        ("get", op)
    }

    fn replace(&self, suffix: &str) -> (&'static str, Value) {
        self.replace_as(self, suffix)
    }

    fn replace_as(&self, owner: &Ops<'_>, suffix: &str) -> (&'static str, Value) {
        let op = operation(
            "put",
            self.gvk,
            owner.names.id("replace", suffix),
            format!("replace {}the specified {}", of(suffix), owner.gvk.kind),
            write_params(),
            Some(body("*/*", self.object)),
            responses(&[("200", self.object), ("201", self.object)], &OBJECT_MEDIA_TYPES),
        );
        ("put", op)
    }

    fn patch(&self, suffix: &str) -> (&'static str, Value) {
        self.patch_as(self, suffix)
    }

    fn patch_as(&self, owner: &Ops<'_>, suffix: &str) -> (&'static str, Value) {
        let mut params = write_params();
        params.push(query("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."));
        let patch = reference(PATCH);
        let content: Map<String, Value> =
            PATCH_MEDIA_TYPES.iter().map(|t| (t.to_string(), json!({ "schema": patch }))).collect();
        let op = operation(
            "patch",
            self.gvk,
            owner.names.id("patch", suffix),
            format!("partially update {}the specified {}", of(suffix), owner.gvk.kind),
            params,
            Some(json!({ "content": content, "required": true })),
            responses(&[("200", self.object), ("201", self.object)], &OBJECT_MEDIA_TYPES),
        );
        ("patch", op)
    }

    fn delete(&self) -> (&'static str, Value) {
        let status = reference(STATUS);
        let op = operation(
            "delete",
            self.gvk,
            self.names.id("delete", ""),
            format!("delete a {}", self.gvk.kind),
            delete_params(),
            Some(body("*/*", &reference(DELETE_OPTIONS))),
            responses(&[("200", &status), ("202", &status)], &OBJECT_MEDIA_TYPES),
        );
        ("delete", op)
    }

    /// `pods/binding`, `pods/eviction`: a POST of another kind.
    fn create_subresource(&self, gvk: Gvk, object: &Value, suffix: &str) -> (&'static str, Value) {
        let op = operation(
            "post",
            gvk,
            self.names.id("create", suffix),
            format!("create {} of a {}", gvk.kind, self.gvk.kind),
            write_params(),
            Some(body("*/*", object)),
            responses(&[("200", object), ("201", object), ("202", object)], &OBJECT_MEDIA_TYPES),
        );
        ("post", op)
    }

    fn log(&self) -> (&'static str, Value) {
        let params = vec![
            query("container", "string", "The container for which to stream logs."),
            query("follow", "boolean", "Follow the log stream of the pod."),
            query(
                "limitBytes",
                "integer",
                "The number of bytes to read from the server before terminating the log output.",
            ),
            query("previous", "boolean", "Return previous terminated container logs."),
            query(
                "sinceSeconds",
                "integer",
                "A relative time in seconds before the current time from which to show logs.",
            ),
            query("sinceTime", "string", "An RFC3339 timestamp from which to show logs."),
            query("tailLines", "integer", "The number of lines from the end of the logs to show."),
            query("timestamps", "boolean", "Add an RFC3339 timestamp at the beginning of every line of log output."),
        ];
        let mut op = operation_without_kind(
            "get",
            self.names.id("read", "Log"),
            format!("read log of the specified {}", self.gvk.kind),
            params,
        );
        op.insert("responses".into(), text_response());
        ("get", Value::Object(op))
    }

    /// exec, attach and portforward upgrade the connection; both GET and POST are accepted.
    fn connect(&self, sub: Subresource) -> Vec<(&'static str, Value)> {
        let params: Vec<Value> = match sub {
            Subresource::PortForward => vec![query("ports", "integer", "List of ports to forward.")],
            _ => {
                let mut p = vec![
                    query("container", "string", "The container in which to execute the command."),
                    query("stdin", "boolean", "Redirect the standard input stream of the pod for this call."),
                    query("stdout", "boolean", "Redirect the standard output stream of the pod for this call."),
                    query("stderr", "boolean", "Redirect the standard error stream of the pod for this call."),
                    query("tty", "boolean", "Allocate a terminal for this call."),
                ];
                if sub == Subresource::Exec {
                    p.insert(0, query("command", "string", "Command is the remote command to execute."));
                }
                p
            }
        };
        let suffix = upper_first(sub.name());
        ["get", "post"]
            .into_iter()
            .map(|method| {
                let mut op = operation_without_kind(
                    "connect",
                    self.names.connect_id(method, &suffix),
                    format!("connect {} requests to {} of {}", method.to_uppercase(), sub.name(), self.gvk.kind),
                    params.clone(),
                );
                op.insert("responses".into(), text_response());
                (method, Value::Object(op))
            })
            .collect()
    }
}

/// `status of ` for the status subresource, nothing for the object itself.
fn of(suffix: &str) -> String {
    if suffix.is_empty() { String::new() } else { format!("{} of ", suffix.to_lowercase()) }
}

fn path_item(operations: Vec<(&'static str, Value)>, path_params: &[&str]) -> Value {
    let mut item: Map<String, Value> = operations.into_iter().map(|(m, op)| (m.to_owned(), op)).collect();
    let mut params: Vec<Value> = path_params.iter().map(|p| path_param(p)).collect();
    params.push(pretty());
    item.insert("parameters".into(), Value::Array(params));
    Value::Object(item)
}

fn operation(
    action: &str,
    gvk: Gvk,
    id: String,
    description: String,
    parameters: Vec<Value>,
    request_body: Option<Value>,
    responses: Value,
) -> Value {
    let mut op = operation_without_kind(action, id, description, parameters);
    op.insert("x-kubernetes-group-version-kind".into(), gvk_value(gvk));
    if let Some(request_body) = request_body {
        op.insert("requestBody".into(), request_body);
    }
    op.insert("responses".into(), responses);
    Value::Object(op)
}

fn operation_without_kind(action: &str, id: String, description: String, parameters: Vec<Value>) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert("description".into(), json!(description));
    op.insert("operationId".into(), json!(id));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    op.insert("x-kubernetes-action".into(), json!(action));
    op
}

fn body(media_type: &str, schema: &Value) -> Value {
    json!({ "content": { media_type: { "schema": schema } }, "required": true })
}

fn responses(codes: &[(&str, &Value)], media_types: &[&str]) -> Value {
    let mut out: Map<String, Value> = codes
        .iter()
        .map(|(code, schema)| {
            let content: Map<String, Value> =
                media_types.iter().map(|t| (t.to_string(), json!({ "schema": schema }))).collect();
            (code.to_string(), json!({ "description": describe_code(code), "content": content }))
        })
        .collect();
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(out)
}

fn text_response() -> Value {
    json!({
        "200": { "description": "OK", "content": { "*/*": { "schema": { "type": "string" } } } },
        "401": { "description": "Unauthorized" },
    })
}

fn describe_code(code: &str) -> &'static str {
    match code {
        "201" => "Created",
        "202" => "Accepted",
        _ => "OK",
    }
}

fn query(name: &str, type_: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": type_ } })
}

fn path_param(name: &str) -> Value {
    let description = if name == "namespace" {
        "object name and auth scope, such as for teams and projects"
    } else {
        "name of the object"
    };
    json!({ "name": name, "in": "path", "description": description, "required": true, "schema": { "type": "string" } })
}

fn pretty() -> Value {
    query("pretty", "string", "If 'true', then the output is pretty printed.")
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. The only valid value is All.",
    )
}

/// Parameters of every write: kubectl checks the PATCH operation for `fieldValidation` before it
/// leaves validation to the server.
fn write_params() -> Vec<Value> {
    vec![
        dry_run(),
        query("fieldManager", "string", "A name associated with the actor or entity that is making these changes."),
        query(
            "fieldValidation",
            "string",
            "How to handle unknown or duplicate fields in the request body: Ignore, Warn or Strict (the default).",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        query("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
        query("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
        query(
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed: Orphan, Background or Foreground.",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "boolean", "Requests watch events with type \"BOOKMARK\"."),
        query("continue", "string", "The continue token of a previous chunked list."),
        query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
        query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
        query("limit", "integer", "The maximum number of responses to return for a list call."),
        query("resourceVersion", "string", "Constrains which resource versions the request may be served from."),
        query("resourceVersionMatch", "string", "How resourceVersion is applied to list calls."),
        query("sendInitialEvents", "boolean", "Start a watch stream with synthetic events for the current state."),
        query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        query("watch", "boolean", "Watch for changes to the described resources."),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_follow_kubernetes_naming() {
        let names = |group: &'static str, scope: &'static str, kind: &'static str| Names {
            group_version: format!("{}V1", group_camel(group)),
            scope,
            kind,
        };
        assert_eq!(names("", "Namespaced", "Pod").id("read", ""), "readCoreV1NamespacedPod");
        assert_eq!(
            names("apps", "Namespaced", "Deployment").id("patch", "Scale"),
            "patchAppsV1NamespacedDeploymentScale"
        );
        assert_eq!(
            names("rbac.authorization.k8s.io", "", "ClusterRole").id("list", ""),
            "listRbacAuthorizationV1ClusterRole"
        );
    }

    #[test]
    fn prefixes_distinguish_the_core_group() {
        assert_eq!(url_prefix("", "v1"), "/api/v1");
        assert_eq!(url_prefix("apps", "v1"), "/apis/apps/v1");
    }
}
