//! `tug plan` against a real server with hollow nodes: it shows where pods would land and why
//! others cannot, exits 1 when something cannot be placed, and changes nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tug_testkit::{TugServer, wait_for};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tug(server: &TugServer, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tug"))
        .args(args)
        .env("KUBECONFIG", server.kubeconfig())
        .output()
        .expect("run tug");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Objects of a kind in all namespaces, as JSON, read with `tug plan`'s own client library.
fn count(server: &TugServer, path: &str) -> usize {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = tug_cli::client(Some(&server.kubeconfig())).await.unwrap();
        let req = http::Request::get(path).body(Vec::new()).unwrap();
        let list: serde_json::Value = client.request(req).await.unwrap();
        list["items"].as_array().map(Vec::len).unwrap_or(0)
    })
}

#[test]
fn plan_places_on_hollow_nodes_and_changes_nothing() {
    let server = TugServer::start(Path::new(env!("CARGO_BIN_EXE_tug")));
    let sim = Command::new(env!("CARGO_BIN_EXE_tug"))
        .args(["sim", "--server", &format!("https://127.0.0.1:{}", server.port()), "--token-file"])
        .arg(server.data_dir().join("node-token"))
        .args(["--nodes", "3", "--cpu", "2", "--name-prefix", "tugt-plan"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tug sim");
    let _sim = KillOnDrop(sim);
    wait_for("3 hollow nodes", Duration::from_secs(20), || match count(&server, "/api/v1/nodes") {
        3 => Ok(()),
        n => Err(format!("{n} nodes")),
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx, resources: {requests: {cpu: "1"}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers: [{name: c, image: nginx, resources: {requests: {cpu: "64"}}}]
"#,
    )
    .unwrap();
    let (code, out, err) = tug(&server, &["plan", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 1, "some pods cannot be placed: {out}{err}");
    assert!(
        out.contains("deployment/web: 6 of 6 pods can be placed on tugt-plan-0 (2), tugt-plan-1 (2), tugt-plan-2 (2)"),
        "{out}"
    );
    assert!(out.contains("pod/huge: 0 of 1 pods can be placed"), "{out}");
    assert!(out.contains("1 cannot be placed: 0/3 nodes are available: 3 Insufficient cpu."), "{out}");
    assert_eq!(count(&server, "/api/v1/pods"), 0, "plan created pods");
    assert_eq!(count(&server, "/apis/apps/v1/deployments"), 0, "plan created a deployment");

    let (code, _, err) = tug(&server, &["plan", "-f", "/nonexistent.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /nonexistent.yaml"), "{err}");
}
