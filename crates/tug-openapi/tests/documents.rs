//! The served documents, read the way kubectl reads them: the root's URLs, the PATCH operation
//! checks of `apply`, `explain`'s schema lookup and the strategic-merge metadata of `apply`.

use serde_json::Value;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tug_core::registry::{self, RESOURCES, ResourceType};
use tug_openapi::{OpenApi, PATCH_MEDIA_TYPES, gv_path};

fn openapi() -> &'static OpenApi {
    static OPENAPI: OnceLock<OpenApi> = OnceLock::new();
    OPENAPI.get_or_init(OpenApi::build)
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("documents are JSON")
}

fn document(gv: &str) -> Value {
    let (_, bytes) = openapi().document(gv).unwrap_or_else(|| panic!("no document {gv}"));
    parse(bytes)
}

fn all_documents() -> Vec<(String, Value)> {
    openapi().group_version_paths().map(|p| (p.to_owned(), document(p))).collect()
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    serde_json::json!({ "group": group, "kind": kind, "version": version })
}

fn url_prefix(r: &ResourceType) -> String {
    format!("/{}", gv_path(r.group, r.version))
}

/// Every PATCH operation of a document, with its path.
fn patch_operations(doc: &Value) -> Vec<(&str, &Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths.iter().filter_map(|(path, item)| item.get("patch").map(|op| (path.as_str(), op))).collect()
}

#[test]
fn root_lists_every_group_version_with_the_document_hash() {
    let root = parse(openapi().root_json());
    let paths = root["paths"].as_object().expect("root has paths");
    let expected: usize = registry::groups().iter().map(|(_, versions)| versions.len()).sum();
    assert_eq!(paths.len(), expected);
    for (group, versions) in registry::groups() {
        for version in versions {
            let gv = gv_path(group, version);
            let url = paths[&gv]["serverRelativeURL"].as_str().unwrap_or_else(|| panic!("{gv} has no URL"));
            let (hash, _) = openapi().document(&gv).expect("document exists");
            assert_eq!(url, format!("/openapi/v3/{gv}?hash={hash}"));
        }
    }
}

#[test]
fn documents_are_found_with_or_without_a_leading_slash_and_unknown_ones_are_not() {
    assert!(openapi().document("apis/apps/v1").is_some());
    assert_eq!(openapi().document("/apis/apps/v1"), openapi().document("apis/apps/v1"));
    assert!(openapi().document("apis/apps/v2").is_none());
    assert!(openapi().document("").is_none());
}

#[test]
fn hashes_are_stable_and_differ_between_documents() {
    let again = OpenApi::build();
    assert_eq!(again.root_json(), openapi().root_json(), "building twice gives the same bytes");
    let mut hashes: Vec<&str> =
        openapi().group_version_paths().map(|p| openapi().document(p).expect("listed").0).collect();
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), openapi().group_version_paths().count());
}

#[test]
fn deployment_patch_lets_kubectl_leave_validation_to_the_server() {
    let doc = document("apis/apps/v1");
    assert_eq!(doc["openapi"], "3.0.0");
    let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(op["x-kubernetes-group-version-kind"], gvk("apps", "v1", "Deployment"));
    assert_eq!(op["x-kubernetes-action"], "patch");
    let params = op["parameters"].as_array().expect("parameters");
    for name in ["fieldValidation", "dryRun", "fieldManager", "force"] {
        assert!(params.iter().any(|p| p["name"] == name && p["in"] == "query"), "{name} missing");
    }
    let field_validation = params.iter().find(|p| p["name"] == "fieldValidation").expect("listed");
    assert_eq!(field_validation["schema"]["type"], "string");
    let content = op["requestBody"]["content"].as_object().expect("request body content");
    let mut media: Vec<&str> = content.keys().map(String::as_str).collect();
    media.sort();
    assert_eq!(media, PATCH_MEDIA_TYPES);

    let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(schema["x-kubernetes-group-version-kind"], serde_json::json!([gvk("apps", "v1", "Deployment")]));
    let list = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(list["x-kubernetes-group-version-kind"][0], gvk("apps", "v1", "DeploymentList"));
}

/// kubectl takes the first PATCH operation it meets for the kind, in no set order, so every one
/// (status and scale included) must pass its checks.
#[test]
fn every_patch_operation_carries_gvk_field_validation_and_the_patch_types() {
    for (gv, doc) in all_documents() {
        for (path, op) in patch_operations(&doc) {
            let gvk = &op["x-kubernetes-group-version-kind"];
            assert!(gvk["kind"].is_string() && gvk["group"].is_string(), "{gv} {path}");
            let params = op["parameters"].as_array().expect("parameters");
            assert!(params.iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"), "{path}");
            let content = op["requestBody"]["content"].as_object().expect("content");
            for media in PATCH_MEDIA_TYPES {
                assert!(content.contains_key(media), "{path} lacks {media}");
            }
        }
    }
}

#[test]
fn every_registry_resource_has_its_operations_and_schema() {
    for r in RESOURCES {
        let doc = document(&gv_path(r.group, r.version));
        let prefix = url_prefix(r);
        let collection = if r.namespaced() {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let item = format!("{collection}/{{name}}");
        let expected = gvk(r.group, r.version, r.kind);
        for (path, methods) in
            [(&collection, &["get", "post", "delete"][..]), (&item, &["get", "put", "patch", "delete"])]
        {
            for method in methods {
                let op = &doc["paths"][path][method];
                assert_eq!(op["x-kubernetes-group-version-kind"], expected, "{method} {path}");
                assert!(op["x-kubernetes-action"].is_string(), "{method} {path}");
            }
        }
        if r.namespaced() {
            let all = &doc["paths"][format!("{prefix}/{}", r.plural)]["get"];
            assert_eq!(all["x-kubernetes-action"], "list", "{} across namespaces", r.plural);
        }
        for sub in r.subresources {
            assert!(doc["paths"].get(format!("{item}/{}", sub.name())).is_some(), "{}/{}", r.plural, sub.name());
        }
        let found = schema_by_gvk(&doc, &expected).map(|(name, _)| name);
        assert!(found.is_some_and(|n| n.starts_with("io.k8s.api.")), "{} has a k8s-openapi schema", r.kind);
    }
}

#[test]
fn scale_subresource_speaks_autoscaling_v1_scale() {
    let doc = document("apis/apps/v1");
    let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(op["x-kubernetes-group-version-kind"], gvk("autoscaling", "v1", "Scale"));
    let (name, _) = schema_by_gvk(&doc, &gvk("autoscaling", "v1", "Scale")).expect("Scale schema");
    assert_eq!(name, "io.k8s.api.autoscaling.v1.Scale");
    let status = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]["put"];
    assert_eq!(status["x-kubernetes-group-version-kind"], gvk("apps", "v1", "Deployment"));
}

/// Every `$ref` string anywhere in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves_within_its_document() {
    for (gv, doc) in all_documents() {
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50, "{gv} has only {} refs", found.len());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{gv}: odd ref {r}"));
            assert!(schemas.contains_key(name), "{gv}: {r} does not resolve");
        }
        for (name, schema) in schemas {
            assert!(schema.is_object(), "{gv}: {name} is not a schema object");
            assert!(name.starts_with("io.k8s."), "{gv}: {name} is not a Kubernetes definition name");
        }
    }
}

#[test]
fn path_parameters_are_declared_for_every_template() {
    for (gv, doc) in all_documents() {
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let declared: Vec<&str> = item["parameters"]
                .as_array()
                .expect("path parameters")
                .iter()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for name in ["namespace", "name"] {
                assert_eq!(path.contains(&format!("{{{name}}}")), declared.contains(&name), "{gv} {path}");
            }
        }
    }
}

/// The definition carrying `gvk` in `x-kubernetes-group-version-kind`, as `kubectl explain` and
/// `apply` find it.
fn schema_by_gvk<'a>(doc: &'a Value, gvk: &Value) -> Option<(&'a str, &'a Value)> {
    let schemas = doc["components"]["schemas"].as_object()?;
    schemas.iter().find_map(|(name, schema)| {
        let listed = schema.get("x-kubernetes-group-version-kind")?.as_array()?;
        listed.contains(gvk).then_some((name.as_str(), schema))
    })
}

/// Follows `allOf[0]` and `$ref` the way kubectl's strategic-merge lookup does.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    if let Some(first) = schema.get("allOf").and_then(|a| a.get(0)) {
        schema = first;
    }
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The field at `path` (dot-separated, lists stepped through), unresolved, as explain prints it.
fn field<'a>(doc: &'a Value, kind: &'a Value, path: &str) -> &'a Value {
    let mut schema = kind;
    let mut field = kind;
    for key in path.split('.') {
        let resolved = resolve(doc, schema);
        let resolved = match resolved.get("items") {
            Some(items) => resolve(doc, items),
            None => resolved,
        };
        field = &resolved["properties"][key];
        assert!(field.is_object(), "no field {key} on the way to {path}");
        schema = field;
    }
    field
}

#[test]
fn explain_finds_kinds_from_their_paths_and_follows_refs() {
    // (group-version, resource URL under the prefix, field path, a field it must show)
    let cases = [
        ("api/v1", "/api/v1/pods", "spec.containers", "image"),
        ("api/v1", "/api/v1/namespaces", "spec", "finalizers"),
        ("api/v1", "/api/v1/services", "spec.ports", "targetPort"),
        ("apis/apps/v1", "/apis/apps/v1/deployments", "spec.template.spec.containers", "resources"),
        ("apis/batch/v1", "/apis/batch/v1/cronjobs", "spec.jobTemplate.spec.template", "spec"),
        ("apis/autoscaling/v2", "/apis/autoscaling/v2/horizontalpodautoscalers", "spec.metrics", "resource"),
        ("apis/rbac.authorization.k8s.io/v1", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "rules", "verbs"),
    ];
    for (gv, list_path, field_path, expected) in cases {
        let doc = document(gv);
        // explain takes the GVK from the first operation on the list path that has one.
        let op_gvk = &doc["paths"][list_path]["get"]["x-kubernetes-group-version-kind"];
        let (_, kind) = schema_by_gvk(&doc, op_gvk).unwrap_or_else(|| panic!("{gv}: no schema for {op_gvk}"));
        assert!(kind["description"].is_string());
        let target = field(&doc, kind, field_path);
        let resolved = resolve(&doc, target);
        let resolved = resolved.get("items").map_or(resolved, |items| resolve(&doc, items));
        assert!(resolved["properties"].get(expected).is_some(), "{gv} {field_path} lacks {expected}");
    }
}

#[test]
fn strategic_merge_keys_reach_kubectl_through_refs() {
    // (document, kind, field path, merge key)
    let cases = [
        ("api/v1", gvk("", "v1", "Pod"), "spec.containers", "name"),
        ("api/v1", gvk("", "v1", "Pod"), "spec.volumes", "name"),
        ("api/v1", gvk("", "v1", "Pod"), "spec.containers.env", "name"),
        ("api/v1", gvk("", "v1", "Pod"), "spec.containers.ports", "containerPort"),
        ("api/v1", gvk("", "v1", "Pod"), "spec.containers.volumeMounts", "mountPath"),
        ("api/v1", gvk("", "v1", "Pod"), "status.conditions", "type"),
        ("api/v1", gvk("", "v1", "Service"), "spec.ports", "port"),
        ("apis/apps/v1", gvk("apps", "v1", "Deployment"), "spec.template.spec.containers", "name"),
        ("apis/apps/v1", gvk("apps", "v1", "Deployment"), "status.conditions", "type"),
        ("apis/apps/v1", gvk("apps", "v1", "Deployment"), "metadata.ownerReferences", "uid"),
        ("apis/batch/v1", gvk("batch", "v1", "CronJob"), "spec.jobTemplate.spec.template.spec.initContainers", "name"),
    ];
    for (gv, kind_gvk, path, key) in cases {
        let doc = document(gv);
        let (_, kind) = schema_by_gvk(&doc, &kind_gvk).expect("kind schema");
        let list = field(&doc, kind, path);
        assert_eq!(list["type"], "array", "{path}");
        assert_eq!(list["x-kubernetes-patch-merge-key"], key, "{gv} {path}");
        assert!(list["x-kubernetes-patch-strategy"].as_str().is_some_and(|s| s.starts_with("merge")), "{path}");
    }
    // A strategy switched to Recreate must drop rollingUpdate: kubectl sends $retainKeys for it.
    let apps = document("apis/apps/v1");
    let (_, deployment) = schema_by_gvk(&apps, &gvk("apps", "v1", "Deployment")).expect("Deployment");
    assert_eq!(field(&apps, deployment, "spec.strategy")["x-kubernetes-patch-strategy"], "retainKeys");
    // Lists without a strategy are replaced whole, as in Kubernetes.
    let doc = document("api/v1");
    let (_, pod) = schema_by_gvk(&doc, &gvk("", "v1", "Pod")).expect("Pod");
    assert!(field(&doc, pod, "spec.tolerations").get("x-kubernetes-patch-merge-key").is_none());
}

/// How Kubernetes 1.33 tags one list or object field (k8s.io/api and apimachinery `types.go`
/// at v0.33.9: `patchStrategy`, `patchMergeKey`, `+listType`, `+listMapKey`).
struct Upstream {
    strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
    /// `+listType`, where it is `map` or `set` (the types the documents publish).
    list_type: Option<&'static str>,
    map_keys: &'static [&'static str],
}

const fn merge(key: &'static str, map_keys: &'static [&'static str]) -> Upstream {
    Upstream { strategy: Some("merge"), merge_key: Some(key), list_type: Some("map"), map_keys }
}

/// Merged by `key` for strategic merge patch, but `+listType=atomic` for server-side apply.
const fn merge_atomic(key: &'static str) -> Upstream {
    Upstream { strategy: Some("merge"), merge_key: Some(key), list_type: None, map_keys: &[] }
}

const MERGE_SET: Upstream =
    Upstream { strategy: Some("merge"), merge_key: None, list_type: Some("set"), map_keys: &[] };
const NO_STRATEGY: Upstream = Upstream { strategy: None, merge_key: None, list_type: None, map_keys: &[] };

const fn strategy(strategy: &'static str) -> Upstream {
    Upstream { strategy: Some(strategy), merge_key: None, list_type: None, map_keys: &[] }
}

/// The merge metadata `kubectl apply` reads (and server-side apply's list keys) of the fields that
/// matter most, compared with what Kubernetes publishes for them.
#[test]
fn merge_metadata_of_important_fields_is_kubernetes_own() {
    let pod = gvk("", "v1", "Pod");
    let deployment = gvk("apps", "v1", "Deployment");
    let cases = [
        ("api/v1", &pod, "metadata.finalizers", MERGE_SET),
        ("api/v1", &pod, "metadata.ownerReferences", merge("uid", &["uid"])),
        ("api/v1", &pod, "metadata.managedFields", NO_STRATEGY),
        ("api/v1", &pod, "spec.containers", merge("name", &["name"])),
        ("api/v1", &pod, "spec.initContainers", merge("name", &["name"])),
        ("api/v1", &pod, "spec.ephemeralContainers", merge("name", &["name"])),
        ("api/v1", &pod, "spec.containers.ports", merge("containerPort", &["containerPort", "protocol"])),
        ("api/v1", &pod, "spec.containers.env", merge("name", &["name"])),
        ("api/v1", &pod, "spec.containers.envFrom", NO_STRATEGY),
        ("api/v1", &pod, "spec.containers.volumeMounts", merge("mountPath", &["mountPath"])),
        ("api/v1", &pod, "spec.containers.volumeDevices", merge("devicePath", &["devicePath"])),
        ("api/v1", &pod, "spec.ephemeralContainers.ports", merge("containerPort", &["containerPort", "protocol"])),
        ("api/v1", &pod, "spec.ephemeralContainers.env", merge("name", &["name"])),
        (
            "api/v1",
            &pod,
            "spec.volumes",
            Upstream {
                strategy: Some("merge,retainKeys"),
                merge_key: Some("name"),
                list_type: Some("map"),
                map_keys: &["name"],
            },
        ),
        ("api/v1", &pod, "spec.imagePullSecrets", merge("name", &["name"])),
        ("api/v1", &pod, "spec.hostAliases", merge("ip", &["ip"])),
        ("api/v1", &pod, "spec.tolerations", NO_STRATEGY),
        ("api/v1", &pod, "spec.readinessGates", NO_STRATEGY),
        ("api/v1", &pod, "spec.topologySpreadConstraints", merge("topologyKey", &["topologyKey", "whenUnsatisfiable"])),
        ("api/v1", &pod, "spec.schedulingGates", merge("name", &["name"])),
        ("api/v1", &pod, "status.conditions", merge("type", &["type"])),
        ("api/v1", &pod, "status.podIPs", merge("ip", &["ip"])),
        ("api/v1", &pod, "status.hostIPs", merge_atomic("ip")),
        ("api/v1", &pod, "status.containerStatuses", NO_STRATEGY),
        ("api/v1", &gvk("", "v1", "Service"), "spec.ports", merge("port", &["port", "protocol"])),
        ("api/v1", &gvk("", "v1", "Service"), "spec.externalIPs", NO_STRATEGY),
        ("api/v1", &gvk("", "v1", "Service"), "status.conditions", merge("type", &["type"])),
        ("api/v1", &gvk("", "v1", "ServiceAccount"), "secrets", merge("name", &["name"])),
        ("api/v1", &gvk("", "v1", "Node"), "spec.podCIDRs", MERGE_SET),
        ("api/v1", &gvk("", "v1", "Node"), "spec.taints", NO_STRATEGY),
        ("api/v1", &gvk("", "v1", "Node"), "status.addresses", merge("type", &["type"])),
        ("api/v1", &gvk("", "v1", "Node"), "status.conditions", merge("type", &["type"])),
        ("api/v1", &gvk("", "v1", "Namespace"), "status.conditions", merge("type", &["type"])),
        ("api/v1", &gvk("", "v1", "PersistentVolumeClaim"), "status.conditions", merge("type", &["type"])),
        ("apis/apps/v1", &deployment, "spec.template.spec.containers", merge("name", &["name"])),
        (
            "apis/apps/v1",
            &deployment,
            "spec.template.spec.containers.ports",
            merge("containerPort", &["containerPort", "protocol"]),
        ),
        ("apis/apps/v1", &deployment, "spec.template.spec.tolerations", NO_STRATEGY),
        ("apis/apps/v1", &deployment, "spec.strategy", strategy("retainKeys")),
        ("apis/apps/v1", &deployment, "status.conditions", merge("type", &["type"])),
        ("apis/apps/v1", &gvk("apps", "v1", "StatefulSet"), "spec.volumeClaimTemplates", NO_STRATEGY),
        ("apis/apps/v1", &gvk("apps", "v1", "DaemonSet"), "status.conditions", merge("type", &["type"])),
        ("apis/batch/v1", &gvk("batch", "v1", "Job"), "status.conditions", merge_atomic("type")),
        (
            "apis/batch/v1",
            &gvk("batch", "v1", "CronJob"),
            "spec.jobTemplate.spec.template.spec.initContainers.env",
            merge("name", &["name"]),
        ),
        (
            "apis/autoscaling/v2",
            &gvk("autoscaling", "v2", "HorizontalPodAutoscaler"),
            "status.conditions",
            merge("type", &["type"]),
        ),
        ("apis/policy/v1", &gvk("policy", "v1", "PodDisruptionBudget"), "spec.selector", strategy("replace")),
        ("apis/policy/v1", &gvk("policy", "v1", "PodDisruptionBudget"), "status.conditions", merge("type", &["type"])),
        ("apis/discovery.k8s.io/v1", &gvk("discovery.k8s.io", "v1", "EndpointSlice"), "endpoints", NO_STRATEGY),
    ];
    let mut wrong = Vec::new();
    for (gv, kind_gvk, path, want) in cases {
        let doc = document(gv);
        let (_, kind) = schema_by_gvk(&doc, kind_gvk).unwrap_or_else(|| panic!("{gv}: no schema for {kind_gvk}"));
        let got = field(&doc, kind, path);
        let map_keys: Vec<&str> =
            got["x-kubernetes-list-map-keys"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let list_type = got["x-kubernetes-list-type"].as_str().filter(|t| *t != "atomic");
        let got = (
            got["x-kubernetes-patch-strategy"].as_str(),
            got["x-kubernetes-patch-merge-key"].as_str(),
            list_type,
            map_keys,
        );
        let want = (want.strategy, want.merge_key, want.list_type, want.map_keys.to_vec());
        if got != want {
            wrong.push(format!("{gv} {} {path}: published {got:?}, Kubernetes has {want:?}", kind_gvk["kind"]));
        }
    }
    assert!(wrong.is_empty(), "merge metadata differs from Kubernetes 1.33:\n{}", wrong.join("\n"));
}

#[test]
fn int_or_string_and_quantity_accept_both_shapes() {
    let doc = document("api/v1");
    let schemas = &doc["components"]["schemas"];
    let int_or_string = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(int_or_string["format"], "int-or-string");
    assert_eq!(int_or_string["oneOf"], serde_json::json!([{ "type": "integer" }, { "type": "string" }]));
    let quantity = &schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(quantity["oneOf"], serde_json::json!([{ "type": "string" }, { "type": "number" }]));
    assert!(quantity["description"].is_string());
}

#[test]
fn build_is_fast_and_documents_are_modest() {
    let started = Instant::now();
    let built = OpenApi::build();
    // Release builds take a few milliseconds; this bound only catches pathologies in debug.
    assert!(started.elapsed() < Duration::from_secs(3), "build took {:?}", started.elapsed());
    let mut total = 0;
    for gv in built.group_version_paths() {
        let (_, bytes) = built.document(gv).expect("listed");
        assert!((20_000..2_000_000).contains(&bytes.len()), "{gv} is {} bytes", bytes.len());
        total += bytes.len();
    }
    assert!(total < 5_000_000, "all documents take {total} bytes");
    assert!(built.root_json().len() < 4_096);
}
