//! The issue 3 acceptance scenario: the real `kubectl` against a real `tug server`, asserting
//! what a user sees (exit codes and printed lines), from `apply -f` through watches, label,
//! scale, re-apply with a three-way merge, and `delete -f`, plus the cluster-wide reads and the
//! errors a user meets on bad input.
//!
//! Each test starts its own server on a free port with a temporary data dir, and gives kubectl an
//! isolated `--cache-dir`, so no discovery cache leaks between runs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tug_testkit::wait_for;

/// How long the server may take to answer `/readyz` after it was started.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// A `tug server` (killed when dropped) and this test's own kubectl discovery cache.
struct TugServer {
    process: tug_testkit::TugServer,
    cache_dir: tempfile::TempDir,
}

/// What one kubectl run printed, for assertions and for failure messages.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Fails the test with advice when kubectl is missing: the scenario is meaningless without it.
fn require_kubectl() {
    match Command::new("kubectl").args(["version", "--client"]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`kubectl version --client` failed: {}", Run::from(out)),
        Err(e) => panic!(
            "kubectl is not on PATH ({e}). These tests drive the real kubectl: install it \
             (scripts/test.sh installs it), then rerun `cargo test -p tug --test kubectl`."
        ),
    }
}

impl TugServer {
    /// Starts `tug server` and waits until kubectl gets `ok` from `/readyz`.
    fn start() -> TugServer {
        require_kubectl();
        let process = tug_testkit::TugServer::start(Path::new(env!("CARGO_BIN_EXE_tug")));
        let mut server = TugServer { process, cache_dir: tempfile::tempdir().expect("temporary kubectl cache dir") };
        if let Err(seen) = server.wait_until_ready() {
            panic!("tug server did not become ready: {seen}\n--- server log\n{}", server.log());
        }
        server
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let mut exited = None;
        let result = wait_for("kubectl get --raw /readyz to answer ok", STARTUP_DEADLINE, || {
            if let Some(status) = self.process.exited() {
                exited = Some(status);
                return Ok(());
            }
            let run = self.kubectl(&["get", "--raw", "/readyz", "--request-timeout=2s"]);
            if run.code == 0 && run.stdout.trim() == "ok" { Ok(()) } else { Err(run.to_string()) }
        });
        match exited {
            Some(status) => Err(format!("tug server exited early with {status}")),
            None => result,
        }
    }

    fn log(&self) -> String {
        self.process.log()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.process.kubeconfig()
    }

    /// A kubectl command bound to this server and to this test's own discovery cache.
    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", self.kubeconfig()).arg("--cache-dir").arg(self.cache_dir.path()).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_command(args).output().expect("run kubectl").into()
    }

    /// Runs kubectl and fails the test (with everything printed) unless it exits 0.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.kubectl(args);
        assert_eq!(run.code, 0, "kubectl {}\n{run}\n--- server log tail\n{}", args.join(" "), self.log_tail());
        run.stdout
    }

    fn log_tail(&self) -> String {
        self.process.log_tail(20)
    }
}

/// Lines of output, trimmed, without blanks: what assertions on kubectl's messages compare.
fn lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// The tables kubectl printed (one per resource kind, separated by blank lines), as rows keyed by
/// column header. Cells are cut at the header's column offsets, as kubectl aligns them, so empty
/// cells (an API resource without short names) stay in their column.
fn tables(text: &str) -> Vec<Vec<HashMap<String, String>>> {
    text.split("\n\n").filter(|block| !block.trim().is_empty()).map(table).collect()
}

fn table(block: &str) -> Vec<HashMap<String, String>> {
    let mut rows = block.lines().filter(|l| !l.trim().is_empty());
    let header = rows.next().unwrap_or_default();
    let columns = column_starts(header);
    rows.map(|row| {
        columns
            .iter()
            .enumerate()
            .map(|(i, (start, name))| {
                let end = columns.get(i + 1).map_or(row.len(), |next| next.0.min(row.len()));
                (name.to_string(), row.get((*start).min(end)..end).unwrap_or_default().trim().to_string())
            })
            .collect()
    })
    .collect()
}

/// (byte offset, title) of each column in a header line.
fn column_starts(header: &str) -> Vec<(usize, &str)> {
    header
        .split_whitespace()
        .scan(0, |from, title| {
            let start = *from + header[*from..].find(title)?;
            *from = start + title.len();
            Some((start, title))
        })
        .collect()
}

/// The row whose NAME is `name`, in any of the printed tables.
fn row<'a>(text: &'a [Vec<HashMap<String, String>>], name: &str) -> Option<&'a HashMap<String, String>> {
    text.iter().flatten().find(|r| r.get("NAME").map(String::as_str) == Some(name))
}

/// `8080:30000/TCP` — a service port with a node port in the default 30000-32767 range.
fn is_node_port_mapping(cell: &str, port: u16) -> bool {
    let Some(rest) = cell.strip_prefix(&format!("{port}:")) else { return false };
    let Some(node_port) = rest.strip_suffix("/TCP") else { return false };
    node_port.parse::<u16>().is_ok_and(|p| (30000..=32767).contains(&p))
}

const APP_MANIFEST: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: c
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 8080
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  greeting: hello
";

fn write_manifest(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.to_str().expect("utf-8 temp path").to_string()
}

/// Reads one field of deployment/web in `shop` with a jsonpath expression.
fn web_field(server: &TugServer, jsonpath: &str) -> String {
    server.ok(&["get", "deployment/web", "-n", "shop", "-o", &format!("jsonpath={jsonpath}")])
}

#[test]
fn apply_inspect_change_reapply_and_delete_a_multi_document_app() {
    let server = TugServer::start();
    let work = tempfile::tempdir().unwrap();
    let manifest = write_manifest(work.path(), "app.yaml", APP_MANIFEST);

    let applied = server.ok(&["apply", "-f", &manifest]);
    assert_eq!(
        lines(&applied),
        [
            "namespace/shop created",
            "deployment.apps/web created",
            "service/web created",
            "configmap/web-config created"
        ]
    );

    // The deployment exists with its template (no node runs its pods), the service got a node port.
    let wide = tables(&server.ok(&["get", "deploy,rs,pods,svc", "-o", "wide", "-n", "shop"]));
    let deploy = row(&wide, "deployment.apps/web").unwrap_or_else(|| panic!("no deployment row in {wide:?}"));
    assert_eq!((deploy["CONTAINERS"].as_str(), deploy["IMAGES"].as_str()), ("c", "nginx:1.25"), "{deploy:?}");
    assert_eq!(deploy["READY"], "0/3", "{deploy:?}");
    let svc = row(&wide, "service/web").unwrap_or_else(|| panic!("no service row in {wide:?}"));
    assert_eq!(svc["TYPE"], "NodePort", "{svc:?}");
    assert!(is_node_port_mapping(&svc["PORT(S)"], 8080), "{svc:?}");

    // Its ReplicaSet creates three pods; with no node to run on, they stay Pending.
    wait_for("three pending web pods", STARTUP_DEADLINE, || {
        let pods = tables(&server.ok(&["get", "pods", "-l", "app=web", "-n", "shop"]));
        let pending = pods.iter().flatten().filter(|r| r["STATUS"] == "Pending" && r["READY"] == "0/1").count();
        if pending == 3 { Ok(()) } else { Err(format!("{pods:?}")) }
    })
    .expect("the deployment's pods are created");

    // Imperative changes, each verified by reading the field back.
    let changes: &[(&[&str], &str, &str, &str)] = &[
        (
            &["label", "deployment/web", "tier=frontend"],
            "deployment.apps/web labeled",
            "{.metadata.labels.tier}",
            "frontend",
        ),
        (
            &["annotate", "deployment/web", "note=hi"],
            "deployment.apps/web annotated",
            "{.metadata.annotations.note}",
            "hi",
        ),
        (&["scale", "deployment/web", "--replicas=5"], "deployment.apps/web scaled", "{.spec.replicas}", "5"),
        (
            &["set", "image", "deployment/web", "c=img:2"],
            "deployment.apps/web image updated",
            "{.spec.template.spec.containers[0].image}",
            "img:2",
        ),
    ];
    for (args, message, jsonpath, expected) in changes {
        let out = server.ok(&[*args, &["-n", "shop"][..]].concat());
        assert_eq!(out.trim(), *message, "kubectl {args:?}");
        assert_eq!(web_field(&server, jsonpath), *expected, "after kubectl {args:?}");
    }

    // Re-apply after a local edit: only the deployment changes; the three-way merge keeps what
    // was added outside the file and resets what the file still declares.
    let manifest = write_manifest(work.path(), "app.yaml", &APP_MANIFEST.replace("replicas: 3", "replicas: 2"));
    let reapplied = server.ok(&["apply", "-f", &manifest]);
    assert_eq!(
        lines(&reapplied),
        [
            "namespace/shop unchanged",
            "deployment.apps/web configured",
            "service/web unchanged",
            "configmap/web-config unchanged"
        ]
    );
    let merged: &[(&str, &str)] = &[
        ("{.spec.replicas}", "2"),
        ("{.metadata.labels.tier}", "frontend"),
        ("{.metadata.labels.app}", "web"),
        ("{.metadata.annotations.note}", "hi"),
        ("{.spec.template.spec.containers[0].image}", "nginx:1.25"),
    ];
    for (jsonpath, expected) in merged {
        assert_eq!(web_field(&server, jsonpath), *expected, "{jsonpath} after re-apply");
    }
    let last_applied =
        web_field(&server, "{.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}");
    let last_applied: serde_json::Value = serde_json::from_str(&last_applied).expect("last-applied is JSON");
    assert_eq!(last_applied["spec"]["replicas"], 2, "{last_applied}");

    let deleted = server.ok(&["delete", "-f", &manifest]);
    for expected in [
        "namespace \"shop\" deleted",
        "deployment.apps \"web\" deleted",
        "service \"web\" deleted",
        "configmap \"web-config\" deleted",
    ] {
        assert!(lines(&deleted).contains(&expected), "missing {expected:?} in\n{deleted}");
    }
    wait_for("namespace shop to be gone", Duration::from_secs(20), || {
        let run = server.kubectl(&["get", "ns", "shop"]);
        if run.code == 1 && run.stderr.contains("namespaces \"shop\" not found") {
            Ok(())
        } else {
            Err(run.to_string())
        }
    })
    .unwrap();
    let leftovers = server.kubectl(&["get", "deployments,services,configmaps,pods", "-n", "shop", "-o", "name"]);
    assert_eq!((leftovers.code, leftovers.stdout.as_str()), (0, ""), "{leftovers}");
}

/// Reads a child's stdout lines on a thread, so the test can wait for one with a deadline.
fn stream_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line matching `wanted`, returning everything read so far in the error.
fn wait_for_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    deadline: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let end = Instant::now() + deadline;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = wanted(&line);
                seen.push(line);
                if found {
                    return Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(format!("watch ended; it printed {seen:#?}")),
        }
    }
    Err(format!("no such line within {deadline:?}; the watch printed {seen:#?}"))
}

/// Kills a kubectl child on every exit path of the watch test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn get_pods_watch_shows_a_pod_created_and_labelled_later() {
    let server = TugServer::start();
    server.ok(&["create", "namespace", "watched"]);
    // A pod that exists before the watch: its row proves the initial list is done, so whatever
    // follows can only arrive through the watch.
    server.ok(&["run", "before", "-n", "watched", "--image=nginx:1.25"]);

    let mut watch = KillOnDrop(
        server
            .kubectl_command(&["get", "pods", "-w", "--show-labels", "-n", "watched"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl get pods -w"),
    );
    let rx = stream_lines(&mut watch.0);
    let mut seen = Vec::new();
    let deadline = Duration::from_secs(15);
    wait_for_line(&rx, &mut seen, deadline, |l| l.starts_with("before ")).unwrap();

    assert_eq!(server.ok(&["run", "later", "-n", "watched", "--image=nginx:1.25"]).trim(), "pod/later created");
    wait_for_line(&rx, &mut seen, deadline, |l| l.starts_with("later ") && l.contains("run=later")).unwrap();
    assert_eq!(server.ok(&["label", "pod/later", "-n", "watched", "seen=yes"]).trim(), "pod/later labeled");
    wait_for_line(&rx, &mut seen, deadline, |l| l.starts_with("later ") && l.contains("seen=yes")).unwrap();
    assert!(seen[0].starts_with("NAME ") && seen[0].contains("LABELS"), "header first: {seen:#?}");
}

#[test]
fn cluster_wide_reads_show_builtin_objects_metrics_and_docs() {
    let server = TugServer::start();

    let all = tables(&server.ok(&["get", "all", "-A"]));
    let kubernetes = row(&all, "service/kubernetes").unwrap_or_else(|| panic!("no kubernetes service in {all:?}"));
    assert_eq!((kubernetes["NAMESPACE"].as_str(), kubernetes["PORT(S)"].as_str()), ("default", "443/TCP"));

    let metrics = server.ok(&["get", "--raw", "/metrics"]);
    assert!(metrics.lines().any(|l| l.starts_with("apiserver_request_total{")), "{metrics}");

    let resources = tables(&server.ok(&["api-resources"]));
    for (name, api_version, kind) in [("pods", "v1", "Pod"), ("deployments", "apps/v1", "Deployment")] {
        let found = row(&resources, name).unwrap_or_else(|| panic!("{name} not in api-resources: {resources:?}"));
        assert_eq!((found["APIVERSION"].as_str(), found["KIND"].as_str()), (api_version, kind), "{found:?}");
    }

    let explained = server.ok(&["explain", "deployment.spec.replicas"]);
    for expected in ["KIND:       Deployment", "FIELD: replicas <integer>", "DESCRIPTION:", "Number of desired pods"] {
        assert!(explained.contains(expected), "missing {expected:?} in\n{explained}");
    }
}

#[test]
fn generators_create_a_namespace_a_configmap_and_a_deployment() {
    let server = TugServer::start();
    let creations: &[(&[&str], &str)] = &[
        (&["create", "namespace", "foo"], "namespace/foo created"),
        (
            &["create", "configmap", "settings", "-n", "foo", "--from-literal=greeting=hello"],
            "configmap/settings created",
        ),
        (
            &["create", "deployment", "d1", "-n", "foo", "--image=nginx:1.25", "--replicas=2"],
            "deployment.apps/d1 created",
        ),
    ];
    for (args, message) in creations {
        assert_eq!(server.ok(args).trim(), *message, "kubectl {args:?}");
    }

    let reads: &[(&[&str], &str)] = &[
        (&["get", "ns", "foo", "-o", "jsonpath={.status.phase}"], "Active"),
        (&["get", "configmap", "settings", "-n", "foo", "-o", "jsonpath={.data.greeting}"], "hello"),
        (&["get", "deployment", "d1", "-n", "foo", "-o", "jsonpath={.spec.replicas}"], "2"),
        (
            &["get", "deployment", "d1", "-n", "foo", "-o", "jsonpath={.spec.template.spec.containers[0].image}"],
            "nginx:1.25",
        ),
        (&["get", "deployment", "d1", "-n", "foo", "-o", "jsonpath={.spec.selector.matchLabels.app}"], "d1"),
    ];
    for (args, expected) in reads {
        assert_eq!(server.ok(args), *expected, "kubectl {args:?}");
    }
    let ns = tables(&server.ok(&["get", "ns", "foo"]));
    assert_eq!(row(&ns, "foo").map(|r| r["STATUS"].as_str()), Some("Active"), "{ns:?}");
}

#[test]
fn applying_a_deployment_without_an_image_fails_naming_the_field() {
    let server = TugServer::start();
    let work = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        work.path(),
        "bad.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: bad}
  template:
    metadata:
      labels: {app: bad}
    spec:
      containers:
      - name: c
",
    );
    let run = server.kubectl(&["apply", "-f", &manifest]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("The Deployment \"bad\" is invalid"), "{run}");
    assert!(run.stderr.contains("spec.template.spec.containers[0].image: Required value"), "{run}");

    let lookup = server.kubectl(&["get", "deployment", "bad"]);
    assert_eq!(lookup.code, 1, "nothing was stored: {lookup}");
    assert!(lookup.stderr.contains("deployments.apps \"bad\" not found"), "{lookup}");
}

#[test]
fn mistakes_exit_1_with_the_kubernetes_reason_and_the_object() {
    let server = TugServer::start();
    server.ok(&["create", "configmap", "settings", "--from-literal=a=1"]);
    // A copy read before someone else changed the object: replacing with it must conflict.
    let work = tempfile::tempdir().unwrap();
    let stale = write_manifest(work.path(), "stale.yaml", &server.ok(&["get", "configmap", "settings", "-o", "yaml"]));
    server.ok(&["label", "configmap", "settings", "changed=yes"]);

    let cases: &[(&[&str], &str)] = &[
        (&["get", "pod", "nope"], "Error from server (NotFound): pods \"nope\" not found"),
        (&["delete", "configmap", "nope"], "Error from server (NotFound): configmaps \"nope\" not found"),
        (
            &["create", "namespace", "default"],
            "Error from server (AlreadyExists): namespaces \"default\" already exists",
        ),
        (&["get", "nosuchkind"], "error: the server doesn't have a resource type \"nosuchkind\""),
        (
            &["replace", "-f", &stale],
            "Operation cannot be fulfilled on configmaps \"settings\": the object has been modified",
        ),
    ];
    for (args, message) in cases {
        let run = server.kubectl(args);
        assert_eq!(run.code, 1, "kubectl {args:?}\n{run}");
        assert!(run.stderr.contains(message), "kubectl {args:?} should say {message:?}\n{run}");
    }
}

/// `kubectl create --raw` posts a file's bytes as they are: YAML where the server expects JSON,
/// which Kubernetes calls an unrecognized object (quoting the start of the body in hex).
#[test]
fn a_raw_create_of_another_kind_is_refused_as_kubernetes_does() {
    let server = TugServer::start();
    let work = tempfile::tempdir().unwrap();
    let pod = write_manifest(
        work.path(),
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    let run = server.kubectl(&["create", "--raw", "/api/v1/namespaces", "-f", &pod]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(
        lines(&run.stderr),
        ["Error from server (BadRequest): the object provided is unrecognized (must be of type Namespace): \
          couldn't get version/kind; json parse error: invalid character 'a' looking for beginning of value \
          (61706956657273696f6e3a2076310a6b696e643a20506f640a6d65746164 ...)"],
        "{run}"
    );
    server.ok(&["get", "namespaces"]);
    assert_eq!(server.kubectl(&["get", "namespace", "web"]).code, 1, "no namespace was made of the pod");
}

/// Deleting the namespaces the cluster needs fails as on Kubernetes; `--all` deletes the others
/// and fails on those.
#[test]
fn system_namespaces_survive_kubectl_delete() {
    let server = TugServer::start();
    let refusal = |ns: &str| {
        format!("Error from server (Forbidden): namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
    };
    for ns in ["kube-system", "default", "kube-public"] {
        let run = server.kubectl(&["delete", "namespace", ns]);
        assert_eq!(run.code, 1, "{run}");
        assert_eq!(lines(&run.stderr), [refusal(ns).as_str()], "{run}");
    }
    server.ok(&["create", "namespace", "scratch"]);
    let run = server.kubectl(&["delete", "namespace", "--all", "--wait=false"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(lines(&run.stdout).contains(&"namespace \"scratch\" deleted"), "{run}");
    for ns in ["kube-system", "default", "kube-public"] {
        assert!(lines(&run.stderr).contains(&refusal(ns).as_str()), "{run}");
    }
    let phases =
        server.ok(&["get", "namespaces", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}"]);
    for ns in ["kube-system", "default", "kube-public"] {
        assert!(phases.split_whitespace().any(|p| p == format!("{ns}=Active")), "{phases}");
    }
}

/// A `tug sim` process (hollow nodes), killed when dropped.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl TugServer {
    fn sim(&self, prefix: &str, nodes: usize) -> Sim {
        let child = Command::new(env!("CARGO_BIN_EXE_tug"))
            .args(["sim", "--server", &format!("https://127.0.0.1:{}", self.process.port()), "--token-file"])
            .arg(self.process.data_dir().join("node-token"))
            .args(["--nodes", &nodes.to_string(), "--name-prefix", prefix, "--ready-delay-ms", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tug sim");
        Sim(child)
    }
}

const ROLLOUT_MANIFEST: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: main
        image: busybox:1
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels:
      app: web
";

/// The issue 5 kubectl scenario on hollow nodes: `rollout status` ends, `history` lists the
/// revisions, `undo` (also `--to-revision`) restores a template, `pause`/`resume`/`restart`, and
/// `drain` evicts a node's pods within the disruption budget.
#[test]
fn rollout_status_history_undo_pause_restart_and_drain() {
    let server = TugServer::start();
    let _nodes = server.sim("k", 3);
    wait_for("three hollow nodes", STARTUP_DEADLINE, || {
        let out = server.ok(&["get", "nodes", "-o", "name"]);
        if lines(&out).len() == 3 { Ok(()) } else { Err(out) }
    })
    .expect("nodes register");
    let dir = tempfile::tempdir().expect("temporary directory");
    let manifest = write_manifest(dir.path(), "web.yaml", ROLLOUT_MANIFEST);
    server.ok(&["apply", "-f", &manifest]);
    let status = server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    server.ok(&["set", "image", "deployment/web", "main=busybox:2"]);
    let status = server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = server.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = lines(&history).iter().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(revisions.contains(&"1") && revisions.contains(&"2"), "{history}");
    let image = "jsonpath={.spec.template.spec.containers[0].image}";

    server.ok(&["rollout", "undo", "deployment/web"]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(server.ok(&["get", "deployment", "web", "-o", image]), "busybox:1");
    server.ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(server.ok(&["get", "deployment", "web", "-o", image]), "busybox:2");

    // Paused: a template change makes no new ReplicaSet until resumed.
    server.ok(&["rollout", "pause", "deployment/web"]);
    let sets_before = lines(&server.ok(&["get", "rs", "-l", "app=web", "-o", "name"])).len();
    server.ok(&["set", "image", "deployment/web", "main=busybox:3"]);
    wait_for("the paused deployment to be observed", STARTUP_DEADLINE, || {
        let reason = server.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ]);
        let generation = server.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.generation}/{.status.observedGeneration}",
        ]);
        let (g, o) = generation.split_once('/').unwrap_or_default();
        if reason == "DeploymentPaused" && g == o { Ok(()) } else { Err(format!("{reason} {generation}")) }
    })
    .expect("the controller sees the paused deployment");
    assert_eq!(
        lines(&server.ok(&["get", "rs", "-l", "app=web", "-o", "name"])).len(),
        sets_before,
        "no rollout while paused"
    );
    server.ok(&["rollout", "resume", "deployment/web"]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(server.ok(&["get", "deployment", "web", "-o", image]), "busybox:3");

    server.ok(&["rollout", "restart", "deployment/web"]);
    let status = server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let restarted = server.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.metadata.annotations}"]);
    assert!(restarted.contains("kubectl.kubernetes.io/restartedAt"), "{restarted}");

    // Drain the node with the most web pods: they leave (within the budget), it is cordoned.
    let placement =
        server.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}"]);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for node in lines(&placement) {
        *counts.entry(node).or_default() += 1;
    }
    let (busiest, _) = counts.iter().max_by_key(|(_, n)| **n).expect("web pods are placed");
    let busiest = busiest.to_string();
    let drained = server.ok(&["drain", &busiest, "--ignore-daemonsets", "--timeout=60s"]);
    assert!(drained.contains(&format!("node/{busiest} drained")), "{drained}");
    assert_eq!(server.ok(&["get", "node", &busiest, "-o", "jsonpath={.spec.unschedulable}"]), "true");
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let placement =
        server.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}"]);
    assert!(!lines(&placement).contains(&busiest.as_str()), "pods left the drained node: {placement}");
    server.ok(&["uncordon", &busiest]);
    assert_eq!(server.ok(&["get", "node", &busiest, "-o", "jsonpath={.spec.unschedulable}"]), "");
}
