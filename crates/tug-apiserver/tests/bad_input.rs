//! Acceptance tests for what the API server answers to bad requests, sent raw over real TLS
//! through `kube::Client::send` (so the bytes are exactly what a broken client would send).
//!
//! Each failure must come back as a Kubernetes `Status` with the right code and reason, name
//! what was wrong, and leave the store exactly as it was.

use std::collections::BTreeSet;
use std::path::Path;

use http::{HeaderMap, Method, header};
use kube::Client;
use serde_json::{Value, json};
use tug_apiserver::server::{RunningServer, ServerConfig};

/// A running server, its kubeconfig-derived client settings, and an admin client.
struct Cluster {
    _dir: tempfile::TempDir,
    server: RunningServer,
    config: kube::Config,
    client: Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = start_server(dir.path()).await;
        let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kube config");
        let client = Client::try_from(config.clone()).expect("kube client");
        Cluster { _dir: dir, server, config, client }
    }

    /// A client that trusts the server's CA but sends no credentials, or the given
    /// `Authorization` header.
    fn client_with_authorization(&self, authorization: Option<&str>) -> Client {
        let mut config = self.config.clone();
        config.auth_info = Default::default();
        if let Some(value) = authorization {
            config.headers.push((header::AUTHORIZATION, value.parse().expect("header value")));
        }
        Client::try_from(config).expect("kube client")
    }
}

async fn start_server(data_dir: &Path) -> RunningServer {
    tug_apiserver::server::start(ServerConfig::local(data_dir)).await.expect("the server starts")
}

/// An HTTP answer as seen by the client.
#[derive(Debug)]
struct Answer {
    code: u16,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", self.text))
    }

    fn warnings(&self) -> Vec<String> {
        self.headers.get_all(header::WARNING).iter().map(|v| v.to_str().unwrap_or_default().to_string()).collect()
    }
}

async fn send(client: &Client, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
    let mut builder = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    let request = builder.body(kube::client::Body::from(body)).expect("request");
    let response = client.send(request).await.unwrap_or_else(|e| panic!("{path}: transport error: {e}"));
    let code = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect_bytes().await.expect("response body");
    Answer { code, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
}

async fn get(client: &Client, path: &str) -> Answer {
    send(client, Method::GET, path, None, Vec::new()).await
}

async fn post_json(client: &Client, path: &str, body: &Value) -> Answer {
    send(client, Method::POST, path, Some("application/json"), serde_json::to_vec(body).unwrap()).await
}

/// Everything a failed request could have left behind: `plural/namespace/name@resourceVersion`
/// of the kinds the cases write.
async fn stored(client: &Client) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for list in
        ["/api/v1/configmaps", "/api/v1/pods", "/api/v1/secrets", "/apis/apps/v1/deployments", "/api/v1/namespaces"]
    {
        let answer = get(client, list).await;
        assert_eq!(answer.code, 200, "{list}: {}", answer.text);
        for item in answer.json()["items"].as_array().cloned().unwrap_or_default() {
            let m = &item["metadata"];
            out.insert(format!(
                "{list} {}/{}@{}",
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap_or(""),
                m["resourceVersion"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

/// One bad request and what the answer must say.
struct Case {
    what: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    code: u16,
    reason: &'static str,
    /// Text the message must contain (names of fields, for instance).
    mentions: &'static [&'static str],
    /// Fields `details.causes` must name.
    causes: &'static [&'static str],
}

fn case(what: &'static str, method: Method, path: &'static str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        what,
        method,
        path,
        content_type: Some("application/json"),
        body: body.into(),
        code: 400,
        reason: "BadRequest",
        mentions: &[],
        causes: &[],
    }
}

impl Case {
    fn expect(mut self, code: u16, reason: &'static str) -> Case {
        self.code = code;
        self.reason = reason;
        self
    }
    fn content_type(mut self, ct: Option<&'static str>) -> Case {
        self.content_type = ct;
        self
    }
    fn mentions(mut self, m: &'static [&'static str]) -> Case {
        self.mentions = m;
        self
    }
    fn causes(mut self, c: &'static [&'static str]) -> Case {
        self.causes = c;
        self
    }
}

fn to_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn deployment(container: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bad-deploy"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container]}},
        },
    })
}

/// What is wrong with an answer to `c`, if anything.
fn check_failure(c: &Case, answer: &Answer) -> Result<(), String> {
    let what = c.what;
    if answer.code != c.code {
        return Err(format!("{what}: code {} (want {}): {}", answer.code, c.code, answer.text));
    }
    let status: Value =
        serde_json::from_str(&answer.text).map_err(|e| format!("{what}: not a Status ({e}): {}", answer.text))?;
    let expect = |field: &str, want: Value| {
        if status[field] == want {
            Ok(())
        } else {
            Err(format!("{what}: Status.{field} is {} (want {want}): {status}", status[field]))
        }
    };
    expect("kind", json!("Status"))?;
    expect("apiVersion", json!("v1"))?;
    expect("status", json!("Failure"))?;
    expect("code", json!(c.code))?;
    expect("reason", json!(c.reason))?;
    let message = status["message"].as_str().unwrap_or_default();
    if message.is_empty() {
        return Err(format!("{what}: the Status has no message: {status}"));
    }
    for m in c.mentions {
        if !message.contains(m) {
            return Err(format!("{what}: the message does not mention {m:?}: {message}"));
        }
    }
    let fields: Vec<&str> =
        status["details"]["causes"].as_array().into_iter().flatten().filter_map(|c| c["field"].as_str()).collect();
    for f in c.causes {
        if !fields.contains(f) {
            return Err(format!("{what}: details.causes names {fields:?}, not {f:?}: {status}"));
        }
    }
    Ok(())
}

#[tokio::test]
async fn bad_requests_fail_cleanly_and_store_nothing() {
    let c = Cluster::start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    // A configmap to update with a stale resourceVersion: create it, then change it once.
    let created = post_json(&c.client, cms, &json!({"metadata": {"name": "existing"}, "data": {"v": "1"}})).await;
    assert_eq!(created.code, 201, "{}", created.text);
    let stale_rv = created.json()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut fresh = created.json();
    fresh["data"]["v"] = json!("2");
    let updated =
        send(&c.client, Method::PUT, &format!("{cms}/existing"), Some("application/json"), to_bytes(fresh)).await;
    assert_eq!(updated.code, 200, "{}", updated.text);
    let stale = json!({"metadata": {"name": "existing", "resourceVersion": stale_rv}, "data": {"v": "stale"}});
    let big = json!({"metadata": {"name": "huge"}, "data": {"blob": "x".repeat(3 * 1024 * 1024 + 4096)}});

    let cases = vec![
        case("malformed JSON", Method::POST, cms, &b"{\"metadata\": {\"name\": \"broken\""[..]),
        case("JSON of the wrong shape", Method::POST, cms, to_bytes(json!(["not", "an", "object"]))),
        case("a field of the wrong type", Method::POST, cms, to_bytes(json!({"metadata": {"name": "typed"}, "data": {"k": 1}}))),
        case("malformed YAML", Method::POST, cms, &b"metadata:\n  name: [broken\ndata: {\n"[..]).content_type(Some("application/yaml")),
        case("a kind that is not the URL's", Method::POST, cms, to_bytes(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "k"}}))),
        case("an apiVersion that is not the URL's", Method::POST, cms, to_bytes(json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "v"}}))),
        case("a namespace that is not the URL's", Method::POST, cms, to_bytes(json!({"metadata": {"name": "n", "namespace": "kube-system"}}))),
        case("an unknown field under Strict", Method::POST, "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", to_bytes(json!({"metadata": {"name": "strict"}, "bogusField": 1})))
            .mentions(&["bogusField"]),
        case(
            "a nested unknown field under Strict",
            Method::POST,
            "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict",
            to_bytes(deployment(json!({"name": "web", "image": "nginx", "imagePullPolicyy": "Always"}))),
        )
        .mentions(&["imagePullPolicyy"]),
        case("a bad fieldValidation value", Method::POST, "/api/v1/namespaces/default/configmaps?fieldValidation=Loud", to_bytes(json!({"metadata": {"name": "loud"}}))),
        case("a bad labelSelector", Method::GET, "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(", Vec::new()),
        case("a bad limit", Method::GET, "/api/v1/namespaces/default/configmaps?limit=many", Vec::new()),
        case("a garbage continue token", Method::GET, "/api/v1/namespaces/default/configmaps?limit=1&continue=garbage", Vec::new()),
        case("a body over 3 MiB", Method::POST, cms, to_bytes(big)).expect(413, "RequestEntityTooLarge"),
        case("an unsupported Content-Type", Method::POST, cms, &b"name,data"[..]).content_type(Some("text/csv")).expect(415, "UnsupportedMediaType"),
        case(
            "a Deployment whose container has no image",
            Method::POST,
            "/apis/apps/v1/namespaces/default/deployments",
            to_bytes(deployment(json!({"name": "web"}))),
        )
        .expect(422, "Invalid")
        .causes(&["spec.template.spec.containers[0].image"]),
        case(
            "a Pod without containers",
            Method::POST,
            "/api/v1/namespaces/default/pods",
            to_bytes(json!({"metadata": {"name": "empty"}, "spec": {"containers": []}})),
        )
        .expect(422, "Invalid")
        .causes(&["spec.containers"]),
        case(
            "a Pod with two bad fields",
            Method::POST,
            "/api/v1/namespaces/default/pods",
            to_bytes(json!({"metadata": {"name": "Bad_Name"}, "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "c", "image": "busybox"}]}})),
        )
        .expect(422, "Invalid")
        .causes(&["metadata.name", "spec.restartPolicy"]),
        case("a ConfigMap without a name", Method::POST, cms, to_bytes(json!({"data": {"a": "b"}}))).expect(422, "Invalid").causes(&["metadata.name"]),
        case("a Secret with a bad key", Method::POST, "/api/v1/namespaces/default/secrets", to_bytes(json!({"metadata": {"name": "s"}, "data": {"bad key!": "eA=="}})))
            .expect(422, "Invalid"),
        case("an update with a stale resourceVersion", Method::PUT, "/api/v1/namespaces/default/configmaps/existing", to_bytes(stale))
            .expect(409, "Conflict"),
        case("a create of a name that exists", Method::POST, cms, to_bytes(json!({"metadata": {"name": "existing"}}))).expect(409, "AlreadyExists"),
        case("a merge patch that is not JSON", Method::PATCH, "/api/v1/namespaces/default/configmaps/existing", &b"{data:"[..])
            .content_type(Some("application/merge-patch+json")),
        case("a JSON patch on a missing path", Method::PATCH, "/api/v1/namespaces/default/configmaps/existing", to_bytes(json!([{"op": "replace", "path": "/data/missing", "value": "x"}])))
            .content_type(Some("application/json-patch+json"))
            .expect(422, "Invalid"),
        case("a patch with an unknown Content-Type", Method::PATCH, "/api/v1/namespaces/default/configmaps/existing", to_bytes(json!({"data": {"v": "3"}})))
            .expect(415, "UnsupportedMediaType"),
        case("a patch of a missing object", Method::PATCH, "/api/v1/namespaces/default/configmaps/missing", to_bytes(json!({"data": {"v": "3"}})))
            .content_type(Some("application/merge-patch+json"))
            .expect(404, "NotFound")
            .mentions(&["missing"]),
        case("a get of a missing object", Method::GET, "/api/v1/namespaces/default/configmaps/missing", Vec::new())
            .expect(404, "NotFound")
            .mentions(&["configmaps \"missing\" not found"]),
        case("an unknown resource", Method::GET, "/api/v1/namespaces/default/widgets", Vec::new()).expect(404, "NotFound"),
        case("a create of an unknown resource", Method::POST, "/apis/example.com/v1/namespaces/default/widgets", to_bytes(json!({"metadata": {"name": "w"}})))
            .expect(404, "NotFound"),
        case("an unknown subresource", Method::GET, "/api/v1/namespaces/default/configmaps/existing/scale", Vec::new()).expect(404, "NotFound"),
        case("a create in a missing namespace", Method::POST, "/api/v1/namespaces/nowhere/configmaps", to_bytes(json!({"metadata": {"name": "lost"}})))
            .expect(404, "NotFound")
            .mentions(&["nowhere"]),
        case("a PUT on a collection", Method::PUT, cms, to_bytes(json!({"metadata": {"name": "coll"}}))).expect(405, "MethodNotAllowed"),
    ];

    let mut failures = Vec::new();
    for bad in &cases {
        let before = stored(&c.client).await;
        let answer = send(&c.client, bad.method.clone(), bad.path, bad.content_type, bad.body.clone()).await;
        if let Err(e) = check_failure(bad, &answer) {
            failures.push(e);
        }
        let after = stored(&c.client).await;
        if after != before {
            let added: Vec<_> = after.difference(&before).collect();
            let removed: Vec<_> = before.difference(&after).collect();
            failures.push(format!("{}: the store changed: added {added:?}, removed {removed:?}", bad.what));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    c.server.stop().await;
}

/// Scripts and client tests compare raw text, so errors and discovery carry kube-apiserver's
/// bytes: its key order and the newline Go's JSON encoder ends each answer with.
#[tokio::test]
async fn status_and_discovery_bodies_are_kube_apiservers_bytes() {
    let c = Cluster::start().await;
    let missing = get(&c.client, "/api/v1/namespaces/default/pods/nope").await;
    assert_eq!(
        (missing.code, missing.text.as_str()),
        (
            404,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"pods\"},\"code\":404}\n"
        )
    );
    let invalid =
        post_json(&c.client, "/apis/apps/v1/namespaces/default/deployments", &deployment(json!({"name": "web"}))).await;
    assert_eq!(
        (invalid.code, invalid.text.as_str()),
        (
            422,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Deployment.apps \"bad-deploy\" is invalid: spec.template.spec.containers[0].image: Required value","reason":"Invalid","details":{"name":"bad-deploy","group":"apps","kind":"Deployment","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.template.spec.containers[0].image"}]},"code":422}
"#
        )
    );
    let core = get(&c.client, "/api/v1").await;
    assert!(core.text.starts_with(r#"{"kind":"APIResourceList","groupVersion":"v1","resources":["#), "{}", core.text);
    assert!(core.text.ends_with("]}\n"), "{}", core.text);
    assert!(
        core.text.contains(r#"{"name":"configmaps","singularName":"configmap","namespaced":true,"kind":"ConfigMap","verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["cm"],"storageVersionHash":"qFsyl6wFWjQ="}"#),
        "{}",
        core.text
    );
    c.server.stop().await;
}

/// `kubectl create --raw /api/v1/namespaces -f pod.yaml` sends the YAML as JSON; Kubernetes
/// answers that the object is unrecognized, quoting the start of the body. A JSON Pod there
/// cannot be converted into a Namespace.
#[tokio::test]
async fn a_body_of_another_kind_is_unrecognized_as_in_kubernetes() {
    let c = Cluster::start().await;
    let yaml =
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let answer = send(&c.client, Method::POST, "/api/v1/namespaces", Some("application/json"), yaml.to_vec()).await;
    assert_eq!((answer.code, answer.json()["reason"].as_str()), (400, Some("BadRequest")), "{}", answer.text);
    assert_eq!(
        answer.json()["message"],
        "the object provided is unrecognized (must be of type Namespace): couldn't get version/kind; json parse \
         error: invalid character 'a' looking for beginning of value \
         (61706956657273696f6e3a2076310a6b696e643a20506f640a6d65746164 ...)"
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
    let answer = post_json(&c.client, "/api/v1/namespaces", &pod).await;
    assert_eq!(answer.code, 400, "{}", answer.text);
    assert_eq!(
        answer.json()["message"],
        "Pod in version \"v1\" cannot be handled as a Namespace: converting (v1.Pod) to (core.Namespace): unknown conversion"
    );
    let put = send(&c.client, Method::PUT, "/api/v1/namespaces/default", Some("application/json"), yaml.to_vec()).await;
    assert!(
        put.json()["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("the object provided is unrecognized (must be of type Namespace)"),
        "{}",
        put.text
    );
    assert_eq!(get(&c.client, "/api/v1/namespaces/web").await.code, 404);
    c.server.stop().await;
}

#[tokio::test]
async fn unknown_fields_under_warn_are_dropped_with_a_warning() {
    let c = Cluster::start().await;
    let body = json!({"metadata": {"name": "warned"}, "data": {"a": "b"}, "bogusField": 1});
    for path in ["/api/v1/namespaces/default/configmaps?fieldValidation=Warn", "/api/v1/namespaces/default/configmaps"]
    {
        let name = if path.contains("Warn") { "warned" } else { "defaulted" };
        let mut body = body.clone();
        body["metadata"]["name"] = json!(name);
        let answer = post_json(&c.client, path, &body).await;
        assert_eq!(answer.code, 201, "{path}: {}", answer.text);
        let warnings = answer.warnings();
        assert!(
            warnings.iter().any(|w| w.starts_with("299 ") && w.contains("unknown field") && w.contains("bogusField")),
            "{path}: Warning headers {warnings:?}"
        );
        let stored = get(&c.client, &format!("/api/v1/namespaces/default/configmaps/{name}")).await.json();
        assert_eq!(stored["data"], json!({"a": "b"}));
        assert!(stored.get("bogusField").is_none(), "an unknown field was stored: {stored}");
    }
    // Ignore drops it silently.
    let answer = post_json(
        &c.client,
        "/api/v1/namespaces/default/configmaps?fieldValidation=Ignore",
        &json!({"metadata": {"name": "quiet"}, "bogusField": 1}),
    )
    .await;
    assert_eq!(answer.code, 201, "{}", answer.text);
    assert!(answer.warnings().is_empty(), "Ignore warned: {:?}", answer.warnings());
    c.server.stop().await;
}

#[tokio::test]
async fn requests_without_valid_credentials_are_unauthorized() {
    let c = Cluster::start().await;
    let anonymous = c.client_with_authorization(None);
    let wrong = c.client_with_authorization(Some("Bearer not-the-token"));
    let basic = c.client_with_authorization(Some("Basic YWRtaW46YWRtaW4="));
    let before = stored(&c.client).await;
    for (who, client) in [("no token", &anonymous), ("a wrong token", &wrong), ("basic auth", &basic)] {
        for (method, path, body) in [
            (Method::GET, "/api/v1/namespaces", Vec::new()),
            (Method::GET, "/api", Vec::new()),
            (Method::GET, "/metrics", Vec::new()),
            (
                Method::POST,
                "/api/v1/namespaces/default/configmaps",
                to_bytes(json!({"metadata": {"name": "intruder"}})),
            ),
            (Method::DELETE, "/api/v1/namespaces/default", Vec::new()),
        ] {
            let answer = send(client, method.clone(), path, Some("application/json"), body).await;
            assert_eq!(answer.code, 401, "{who}: {method} {path}: {}", answer.text);
            assert_eq!(answer.json()["reason"], "Unauthorized", "{who}: {method} {path}");
        }
    }
    assert_eq!(stored(&c.client).await, before, "an unauthorized request changed the store");
    c.server.stop().await;
}

#[tokio::test]
async fn health_version_and_metrics_answer() {
    let c = Cluster::start().await;
    let anonymous = c.client_with_authorization(None);
    for path in ["/healthz", "/readyz", "/livez"] {
        let answer = get(&anonymous, path).await;
        assert_eq!((answer.code, answer.text.as_str()), (200, "ok"), "{path} without a token");
    }
    let version = get(&anonymous, "/version").await;
    assert_eq!(version.code, 200, "{}", version.text);
    let info: k8s_openapi::apimachinery::pkg::version::Info =
        serde_json::from_str(&version.text).expect("version info");
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "33"));
    assert!(info.git_version.starts_with("v1.33"), "gitVersion {}", info.git_version);
    assert_eq!(c.client.apiserver_version().await.unwrap().minor, "33");

    // A request to count, then the count.
    assert_eq!(get(&c.client, "/api/v1/namespaces/default/configmaps").await.code, 200);
    let metrics = get(&c.client, "/metrics").await;
    assert_eq!(metrics.code, 200);
    let content_type = metrics.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") || content_type.starts_with("application/openmetrics-text"),
        "metrics Content-Type {content_type}"
    );
    // The counter's TYPE line must match the format the Content-Type announces: Prometheus text
    // 0.0.4 names the family with its `_total` suffix, OpenMetrics without it.
    let type_line = if content_type.contains("openmetrics") {
        "# TYPE apiserver_request counter"
    } else {
        "# TYPE apiserver_request_total counter"
    };
    assert!(
        metrics.text.lines().any(|l| l == type_line),
        "no {type_line:?} for Content-Type {content_type}:\n{}",
        metrics.text
    );
    assert!(
        metrics.text.lines().any(|l| l.starts_with("apiserver_request_total{")
            && l.contains("verb=\"list\"")
            && l.contains("resource=\"configmaps\"")
            && l.contains("code=\"200\"")),
        "no list of configmaps counted:\n{}",
        metrics.text
    );
    c.server.stop().await;
}
