//! The node agent's acceptance scenario, end to end: `tug server` with its own node (real
//! containerd and runc), images from a local registry (Debian's docker-registry, filled with
//! skopeo from the demo image archive), driven with real kubectl as a user would.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tug_testkit::{TugServer, free_port, unique_suffix, wait_for};

/// Pods start in about a second here; pulls from the local registry add little.
const DEADLINE: Duration = Duration::from_secs(60);

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn demo_images(dest: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images");
    let built = run(script.to_str().expect("utf-8 path"), &[dest.to_str().expect("utf-8 path")]);
    assert!(built.status.success(), "scripts/demo-images: {}", String::from_utf8_lossy(&built.stderr));
}

/// A registry on loopback holding the demo busybox as `127.0.0.1:PORT/demo/busybox:1.35`.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The one account of [`Registry::start_private`]: bcrypt of [`PRIVATE_PASSWORD`], as
/// `htpasswd -B` writes it (a fixture: the registry only reads it).
const PRIVATE_USER: &str = "tug";
const PRIVATE_PASSWORD: &str = "pull-secret-pw";
const PRIVATE_HTPASSWD: &str = "tug:$2a$10$iCqkg1jdd1e6aZklXHzQQ.aQyJ3DSalKdzg5iSE05DQn0KMdgYYoS\n";

impl Registry {
    /// An open registry: anyone may pull.
    fn start() -> Registry {
        Registry::start_with(false)
    }

    /// A registry that answers 401 unless given [`PRIVATE_USER`]'s password (HTTP basic auth).
    fn start_private() -> Registry {
        Registry::start_with(true)
    }

    fn start_with(private: bool) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if private {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, PRIVATE_HTPASSWD).expect("htpasswd");
            text.push_str(&format!("auth:\n  htpasswd:\n    realm: tugboat-test\n    path: {}\n", htpasswd.display()));
        }
        std::fs::write(&config, text).expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (scripts/test.sh installs it)");
        let registry = Registry { child, port, _dir: dir };
        wait_for("the registry to listen", DEADLINE, || {
            TcpStream::connect(("127.0.0.1", port)).map(drop).map_err(|e| e.to_string())
        })
        .expect("registry up");
        let images = registry._dir.path().join("images");
        demo_images(&images);
        let source = format!("oci-archive:{}:localhost/busybox:1.35", images.join("busybox.tar").display());
        let destination = format!("docker://{}", registry.image());
        let credentials = format!("{PRIVATE_USER}:{PRIVATE_PASSWORD}");
        let mut copy = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        if private {
            copy.extend(["--dest-creds", &credentials]);
        }
        copy.extend([source.as_str(), destination.as_str()]);
        let copied = run("skopeo", &copy);
        assert!(copied.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&copied.stderr));
        registry
    }

    fn image(&self) -> String {
        format!("{}/demo/busybox:1.35", self.server())
    }

    fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tug server` with its own node: a unique node name, bridge and pod range, the pause image in
/// `DATA/images/` (the workloads' image comes from the registry).
struct Cluster {
    server: TugServer,
    node: String,
    bridge: String,
    cache_dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let suffix = unique_suffix();
        let dir = tempfile::Builder::new().prefix("tugn-").tempdir().expect("data dir");
        let images = dir.path().join("images");
        demo_images(&images);
        // Only the sandbox image is local: workloads must pull.
        std::fs::remove_file(images.join("busybox.tar")).expect("drop the local busybox");
        let node = format!("tugn-{suffix}");
        let bridge: String = format!("tugn{suffix}").chars().take(15).collect();
        let octet = u8::from_str_radix(&suffix[suffix.len() - 2..], 16).expect("hex suffix");
        let cidr = format!("10.215.{octet}.0/24");
        let binary = Path::new(env!("CARGO_BIN_EXE_tug"));
        let args = ["--node-name", &node, "--pod-cidr", &cidr, "--cni-bridge", &bridge, "--agent-api-port", "0"];
        let server = TugServer::start_in(binary, dir, &args);
        let cluster = Cluster { server, node, bridge, cache_dir: tempfile::tempdir().expect("kubectl cache") };
        cluster.wait_node_ready();
        cluster
    }

    fn wait_node_ready(&self) {
        let jsonpath = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
        wait_for("the server's own node to be Ready", DEADLINE, || {
            let out = self.kubectl(&["get", "node", &self.node, "-o", jsonpath]);
            if out.trim() == "True" { Ok(()) } else { Err(format!("Ready={out:?}; log:\n{}", self.log_tail())) }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn log_tail(&self) -> String {
        self.server.log_tail(30)
    }

    fn socket(&self) -> PathBuf {
        self.server.data_dir().join("run/containerd/containerd.sock")
    }

    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", self.server.kubeconfig()).arg("--cache-dir").arg(self.cache_dir.path()).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// kubectl's stdout, or its stderr when it failed (callers that care use [`Cluster::ok`]).
    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_command(args).output().expect("run kubectl");
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            format!("kubectl failed: {}", String::from_utf8_lossy(&out.stderr))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl_command(args).output().expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {}: {}\n--- server log\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, manifest: &Value) {
        let mut child = self.kubectl_command(&["apply", "-f", "-"]).stdin(Stdio::piped()).spawn().expect("kubectl");
        let stdin = child.stdin.take().expect("stdin");
        serde_json::to_writer(stdin, manifest).expect("write manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl JSON")
    }

    fn pods(&self, selector: &str) -> Vec<Value> {
        self.json(&["get", "pods", "-l", selector])["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for `count` pods of `selector`, all Running and Ready; returns them.
    fn ready_pods(&self, selector: &str, count: usize) -> Vec<Value> {
        wait_for(&format!("{count} ready pods {selector}"), DEADLINE, || {
            let pods = self.pods(selector);
            let ready = pods.iter().filter(|p| is_ready(p) && p["metadata"]["deletionTimestamp"].is_null()).count();
            if ready == count && pods.len() == count { Ok(pods) } else { Err(summary(&pods)) }
        })
        .unwrap_or_else(|e| panic!("{e}\n--- server log\n{}", self.log_tail()))
    }

    /// containerd's containers (sandboxes included) and tasks on this node.
    fn runtime_containers(&self) -> Vec<String> {
        let socket = self.socket();
        let out = run("ctr", &["--address", socket.to_str().expect("utf-8"), "-n", "k8s.io", "containers", "ls", "-q"]);
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// The host PID of a container's main process.
    fn container_pid(&self, container_id: &str) -> String {
        let socket = self.socket();
        let out = run("ctr", &["--address", socket.to_str().expect("utf-8"), "-n", "k8s.io", "tasks", "ls"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.starts_with(container_id))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no task for {container_id} in:\n{text}"))
            .to_string()
    }

    /// Mount points under the server's data dir (container root filesystems, volumes).
    fn mounts_under_data_dir(&self) -> Vec<String> {
        let prefix = format!("{}/", self.server.data_dir().display());
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Whatever the test left (it failed, say): the agent tears it down, then stops.
        let _ = self.kubectl(&["delete", "deployments,pods", "--all", "--grace-period=0", "--force", "--wait=false"]);
        let _ = wait_for("the node to run nothing", Duration::from_secs(30), || {
            if self.runtime_containers().is_empty() { Ok(()) } else { Err("containers remain".into()) }
        });
        self.server.stop();
        let mut points = self.mounts_under_data_dir();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = run("umount", &["-l", &point]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn summary(pods: &[Value]) -> String {
    pods.iter()
        .map(|p| {
            let states: Vec<String> = p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{} {} restarts={}", c["name"], c["state"], c["restartCount"]))
                .collect();
            format!("{} {} [{}]", p["metadata"]["name"], p["status"]["phase"], states.join("; "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn container_status(pod: &Value, index: usize) -> &Value {
    &pod["status"]["containerStatuses"][index]
}

fn http_get(ip: &str, port: u16, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect((ip, port)).map_err(|e| format!("connect {ip}:{port}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    Ok(response)
}

fn web_deployment(name: &str, image: &str, replicas: i32) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "web",
                        "image": image,
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                        "ports": [{"containerPort": 8080}],
                    }],
                },
            },
        },
    })
}

#[test]
fn a_deployment_pulled_from_a_registry_serves_recovers_survives_a_restart_and_leaves_nothing() {
    let registry = Registry::start();
    let mut cluster = Cluster::start();

    // Three replicas pulled from the registry, each answering HTTP on its pod IP.
    cluster.apply(&web_deployment("web", &registry.image(), 3));
    let pods = cluster.ready_pods("app=web", 3);
    for pod in &pods {
        let ip = pod["status"]["podIP"].as_str().expect("pod IP");
        let page = wait_for("an HTTP answer", DEADLINE, || http_get(ip, 8080, "/")).expect("HTTP");
        assert!(page.contains("hello from tugboat busybox"), "{ip} answered {page}");
        assert!(container_status(pod, 0)["imageID"].as_str().is_some_and(|id| id.contains("sha256:")));
    }

    // kubectl port-forward (SPDY tunnelled in WebSocket) serves a pod's HTTP on a local port.
    let target = format!("pod/{}", pods[0]["metadata"]["name"].as_str().expect("name"));
    let mut command = cluster.kubectl_command(&["port-forward", &target, ":8080"]);
    let mut forward = command.stdout(Stdio::piped()).spawn().expect("kubectl port-forward");
    // Kept open until kubectl is killed: it dies of SIGPIPE writing to a closed stdout.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(forward.stdout.take().expect("stdout")));
    let first = lines.next().and_then(Result::ok).unwrap_or_default(); // Forwarding from 127.0.0.1:PORT -> 8080
    let port = first.split(" -> ").next().and_then(|from| from.rsplit(':').next()).and_then(|p| p.parse().ok());
    let page = port.ok_or(first).and_then(|port| http_get("127.0.0.1", port, "/"));
    let _ = (forward.kill(), forward.wait());
    assert!(page.as_ref().is_ok_and(|p| p.contains("hello from tugboat busybox")), "port-forward: {page:?}");

    // Killing a container's process: the agent restarts it, the restart count says so.
    let victim = &pods[0];
    let name = victim["metadata"]["name"].as_str().expect("name").to_string();
    let container_id = container_status(victim, 0)["containerID"].as_str().expect("id").to_string();
    let pid = cluster.container_pid(container_id.trim_start_matches("containerd://"));
    assert!(run("kill", &["-KILL", &pid]).status.success());
    wait_for("the killed container to be restarted", DEADLINE, || {
        let pod = cluster.json(&["get", "pod", &name]);
        let status = container_status(&pod, 0);
        if status["restartCount"] == 1 && is_ready(&pod) { Ok(()) } else { Err(summary(std::slice::from_ref(&pod))) }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let pods = cluster.ready_pods("app=web", 3);
    let before: Vec<(String, Value)> = pods
        .iter()
        .map(|p| (p["metadata"]["name"].to_string(), container_status(p, 0)["containerID"].clone()))
        .collect();

    // Restarting the server (and its agent) does not restart healthy containers.
    cluster.server.restart();
    cluster.wait_node_ready();
    let pods = cluster.ready_pods("app=web", 3);
    let after: Vec<(String, Value)> = pods
        .iter()
        .map(|p| (p["metadata"]["name"].to_string(), container_status(p, 0)["containerID"].clone()))
        .collect();
    assert_eq!(before, after, "the same containers after the restart");
    let restarts: Vec<i64> =
        pods.iter().map(|p| container_status(p, 0)["restartCount"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(restarts.iter().sum::<i64>(), 1, "only the killed container restarted: {restarts:?}");

    // Deleting the Deployment leaves no container, sandbox or mount behind.
    cluster.ok(&["delete", "deployment", "web"]);
    wait_for("the pods to be gone", DEADLINE, || {
        let left = cluster.pods("app=web");
        if left.is_empty() { Ok(()) } else { Err(summary(&left)) }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for("the runtime to hold nothing", DEADLINE, || {
        let containers = cluster.runtime_containers();
        let mounts = cluster.mounts_under_data_dir();
        if containers.is_empty() && mounts.is_empty() {
            Ok(())
        } else {
            Err(format!("containers {containers:?}, mounts {mounts:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_crashing_container_backs_off() {
    let cluster = Cluster::start();
    // The sandbox image is busybox too, and local: no registry needed to crash.
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crasher", "labels": {"app": "crasher"}},
        "spec": {"containers": [{
            "name": "main",
            "image": "localhost/pause:latest",
            "imagePullPolicy": "Never",
            "command": ["sh", "-c", "echo about to fail; exit 3"],
        }]},
    });
    cluster.apply(&manifest);
    wait_for("CrashLoopBackOff", DEADLINE, || {
        let pod = cluster.json(&["get", "pod", "crasher"]);
        let status = container_status(&pod, 0);
        let waiting = status["state"]["waiting"]["reason"].as_str().unwrap_or_default().to_string();
        let last_exit = status["lastState"]["terminated"]["exitCode"].as_i64();
        if waiting == "CrashLoopBackOff" && last_exit == Some(3) {
            Ok(())
        } else {
            Err(summary(std::slice::from_ref(&pod)))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// A pod of the local busybox (the sandbox image is busybox too) running `script` in `sh`.
fn shell_pod(name: &str, script: &str, extra_spec: Value) -> Value {
    let mut pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "localhost/pause:latest",
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
            }],
        },
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra_spec.as_object()) {
        for (key, value) in extra {
            if key == "container" {
                if let (Some(container), Some(fields)) = (spec["containers"][0].as_object_mut(), value.as_object()) {
                    container.extend(fields.clone());
                }
            } else {
                spec.insert(key.clone(), value.clone());
            }
        }
    }
    pod
}

#[test]
fn config_maps_claims_logs_and_exec_work_through_kubectl() {
    let cluster = Cluster::start();

    // A ConfigMap's content is visible in the container and follows an update.
    let config = |greeting: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"greeting": greeting}})
    };
    cluster.apply(&config("hello"));
    let volumes = serde_json::json!({
        "volumes": [{"name": "settings", "configMap": {"name": "settings"}}],
        "container": {"volumeMounts": [{"name": "settings", "mountPath": "/config"}]},
    });
    let script = "echo started; i=0; while :; do i=$((i+1)); echo line $i; sleep 0.2; done";
    cluster.apply(&shell_pod("reader", script, volumes));
    cluster.ready_pods("app=reader", 1);
    assert_eq!(cluster.ok(&["exec", "reader", "--", "cat", "/config/greeting"]), "hello");
    cluster.apply(&config("goodbye"));
    wait_for("the updated ConfigMap in the container", DEADLINE, || {
        let seen = cluster.kubectl(&["exec", "reader", "--", "cat", "/config/greeting"]);
        if seen == "goodbye" { Ok(()) } else { Err(seen) }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // kubectl exec: the pod's hostname, and a failing command's exit status.
    assert_eq!(cluster.ok(&["exec", "reader", "--", "cat", "/etc/hostname"]).trim(), "reader");
    let failed = cluster.kubectl_command(&["exec", "reader", "--", "sh", "-c", "exit 7"]).output().expect("kubectl");
    assert_eq!(failed.status.code(), Some(7), "{}", String::from_utf8_lossy(&failed.stderr));

    // kubectl exec -it, in a terminal (script(1) gives kubectl one): the shell has a TTY.
    let kubeconfig = cluster.server.kubeconfig();
    let command = format!(
        "kubectl --kubeconfig {} --cache-dir {} exec -it reader -- tty",
        kubeconfig.display(),
        cluster.cache_dir.path().display()
    );
    let tty = run("script", &["-qec", &command, "/dev/null"]);
    let printed = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success() && printed.contains("/dev/pts/"), "exec -it printed {printed:?}");

    // kubectl logs, and -f following new lines.
    let logs = cluster.ok(&["logs", "reader"]);
    assert!(logs.starts_with("started\nline 1\n"), "{logs}");
    let mut follow = cluster
        .kubectl_command(&["logs", "-f", "--tail", "1", "reader"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().expect("stdout")));
    let first: u64 = line_number(&lines.next().expect("a first line").expect("text"));
    let later: u64 = line_number(&lines.nth(2).expect("later lines").expect("text"));
    assert!(later >= first + 3, "followed from line {first} to {later}");
    let _ = follow.kill();
    let _ = follow.wait();

    // A claim's data survives its pod being deleted and created again.
    let claim = serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}});
    cluster.apply(&claim);
    let storage = serde_json::json!({
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        "container": {"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    });
    let keeper = "[ -f /data/note ] || echo written-once > /data/note; sleep 3600";
    cluster.apply(&shell_pod("keeper", keeper, storage.clone()));
    cluster.ready_pods("app=keeper", 1);
    cluster.ok(&["exec", "keeper", "--", "sh", "-c", "echo kept >> /data/note"]);
    cluster.ok(&["delete", "pod", "keeper"]);
    cluster.apply(&shell_pod("keeper", keeper, storage));
    cluster.ready_pods("app=keeper", 1);
    assert_eq!(cluster.ok(&["exec", "keeper", "--", "cat", "/data/note"]), "written-once\nkept\n");
    let bound = cluster.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(bound, "Bound");

    // Deleting the claim while its pod runs only marks it; once the pod is gone the claim, its
    // volume and the volume's directory on the node all go.
    let volume = cluster.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    let path = cluster.ok(&["get", "pv", &volume, "-o", "jsonpath={.spec.hostPath.path}"]);
    assert!(Path::new(&path).join("note").is_file(), "the data is in {path}");
    cluster.ok(&["delete", "pvc", "data", "--wait=false"]);
    let terminating = cluster.json(&["get", "pvc", "data"]);
    assert!(!terminating["metadata"]["deletionTimestamp"].is_null(), "the claim in use is Terminating");
    assert_eq!(cluster.ok(&["exec", "keeper", "--", "cat", "/data/note"]), "written-once\nkept\n");
    cluster.ok(&["delete", "pod", "keeper"]);
    wait_for("the claim, its volume and its data to be gone", DEADLINE, || {
        let left = cluster.kubectl(&["get", "pvc,pv", "-o", "name"]);
        if left.trim().is_empty() && !Path::new(&path).exists() {
            Ok(())
        } else {
            Err(format!("left: {left:?}, {path} exists: {}", Path::new(&path).exists()))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n--- server log\n{}", cluster.log_tail()));
}

fn line_number(line: &str) -> u64 {
    line.trim()
        .strip_prefix("line ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered line: {line:?}"))
}

#[test]
fn a_private_registry_is_pulled_from_with_the_pods_pull_secret() {
    let registry = Registry::start_private();
    let cluster = Cluster::start();
    let pod = |name: &str, secrets: Value| {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "imagePullSecrets": secrets,
                "containers": [{"name": "web", "image": registry.image(), "command": ["httpd", "-f", "-p", "8080"]}],
            },
        })
    };

    // Without credentials the registry refuses, and the pod says so in the kubelet's words.
    cluster.apply(&pod("anonymous", serde_json::json!([])));
    let refused = wait_for("the pull to be refused", DEADLINE, || {
        let pod = cluster.json(&["get", "pod", "anonymous"]);
        let waiting = &container_status(&pod, 0)["state"]["waiting"];
        match waiting["reason"].as_str() {
            Some("ErrImagePull" | "ImagePullBackOff") => {
                Ok(waiting["message"].as_str().unwrap_or_default().to_string())
            }
            _ => Err(summary(std::slice::from_ref(&pod))),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(refused.contains(&registry.image()), "the message names the image: {refused}");
    assert!(
        ["401", "nauthorized", "authorization"].iter().any(|word| refused.contains(word)),
        "the message says why: {refused}"
    );

    // A docker-registry Secret named in imagePullSecrets is the registry login.
    let server = registry.server();
    cluster.ok(&[
        "create",
        "secret",
        "docker-registry",
        "registry-login",
        &format!("--docker-server={server}"),
        &format!("--docker-username={PRIVATE_USER}"),
        &format!("--docker-password={PRIVATE_PASSWORD}"),
    ]);
    cluster.apply(&pod("authenticated", serde_json::json!([{"name": "registry-login"}])));
    wait_for("the authenticated pod to run", DEADLINE, || {
        let pod = cluster.json(&["get", "pod", "authenticated"]);
        if is_ready(&pod) { Ok(()) } else { Err(summary(std::slice::from_ref(&pod))) }
    })
    .unwrap_or_else(|e| panic!("{e}\n--- server log\n{}", cluster.log_tail()));
}
