//! The official Kubernetes Python client (`pip install kubernetes`) against a real `tug server`:
//! list, create (core and apps), label selectors, a watch from a resourceVersion that sees a
//! patch and a delete, and cleanup (`tests/python/client_scenario.py`); and a create of every
//! served kind through the typed API (`tests/python/create_every_kind.py`). Each script prints a
//! JSON summary that its test asserts on.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tug_testkit::{TugServer, wait_for};

/// Fails with advice when Python or its `kubernetes` package is missing; never skips silently.
fn require_python_client() {
    let advice = "The Python client test needs python3 with the official `kubernetes` package: run \
                  scripts/test.sh (it installs it), or `pip install kubernetes`.";
    match Command::new("python3").args(["-c", "import kubernetes"]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("{advice}\n`python3 -c 'import kubernetes'` said: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("{advice}\npython3 could not be run: {e}"),
    }
}

/// What the script printed and how it ended; output goes to files so a chatty failure can never
/// block on a full pipe.
struct ScriptRun {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run_script(script: &Path, args: &[&Path], deadline: Duration) -> ScriptRun {
    let out_dir = tempfile::tempdir().expect("temporary output dir");
    let (out_path, err_path) = (out_dir.path().join("stdout"), out_dir.path().join("stderr"));
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start python3");
    let finished = wait_for("the Python client scenario to finish", deadline, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("still running".into()),
        Err(e) => Err(e.to_string()),
    });
    if finished.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let (stdout, mut stderr) = (read(&out_path), read(&err_path));
    if let Err(timeout) = &finished {
        stderr.push_str(&format!("\n[test] {timeout}; killed"));
    }
    ScriptRun { success: finished.is_ok_and(|s| s.success()), stdout, stderr }
}

/// Runs `tests/python/<script> KUBECONFIG NAMESPACE` against a fresh `tug server` and returns
/// the JSON summary it printed last; fails with its output and the server's log otherwise.
fn summary_of(script: &str, namespace: &str, deadline: Duration) -> serde_json::Value {
    require_python_client();
    let server = TugServer::start(Path::new(env!("CARGO_BIN_EXE_tug")));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let run = run_script(&script, &[&server.kubeconfig(), Path::new(namespace)], deadline);
    let context = format!("--- stdout\n{}--- stderr\n{}--- server log\n{}", run.stdout, run.stderr, server.log());
    assert!(run.success, "the Python script {} failed\n{context}", script.display());
    let last_line = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last_line).unwrap_or_else(|e| panic!("summary is not JSON ({e})\n{context}"))
}

#[test]
fn the_official_python_client_lists_creates_watches_and_deletes() {
    let summary = summary_of("client_scenario.py", "pyns", Duration::from_secs(45));
    let names = |key: &str| -> Vec<String> {
        summary[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect()
    };

    for expected in ["default", "kube-system"] {
        assert!(names("namespaces").iter().any(|n| n == expected), "{expected} not listed: {summary}");
    }
    assert_eq!(summary["configmap_created"], "py-config", "{summary}");
    assert_eq!(names("configmaps_selected"), ["py-config"], "the selector app=py: {summary}");
    assert_eq!(names("deployments_selected"), ["py-web"], "{summary}");
    assert_eq!(summary["deployment_replicas"], 2, "{summary}");

    // From the list's resourceVersion the watch sees exactly the later patch, then the delete.
    let events: Vec<(&str, &str, &str)> = summary["watch_events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("?"),
                e["name"].as_str().unwrap_or("?"),
                e["data"]["k"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(events, [("MODIFIED", "py-config", "v2"), ("DELETED", "py-config", "v2")], "{summary}");
    assert_eq!(summary["watch_finished"], true, "{summary}");
    assert_eq!(names("deployments_after_delete"), Vec::<String>::new(), "{summary}");
}

/// Every served kind created through the Python client's typed API (`create_namespaced_daemon_set`
/// and so on), which rejects a response lacking a field the kind's schema requires: a DaemonSet
/// created with `status: {}` raised ValueError for `currentNumberScheduled`. The kinds come from
/// the server's discovery, so a newly served kind without a case in the script fails here too.
#[test]
fn the_python_clients_typed_api_creates_every_served_kind() {
    let summary = summary_of("create_every_kind.py", "pyevery", Duration::from_secs(60));
    assert_eq!(summary["failed"], serde_json::json!({}), "creations failed: {summary}");
    assert_eq!(summary["uncovered"], serde_json::json!([]), "served kinds the script does not create: {summary}");
    let created = summary["created"].as_array().map_or(0, Vec::len);
    assert!(created >= 30, "only {created} kinds created: {summary}");
    let zeros = |key: &str, fields: &[&str]| {
        for field in fields {
            assert_eq!(summary["statuses"][key][field], 0, "{key} status.{field}: {summary}");
        }
    };
    zeros(
        "apps/v1/daemonsets",
        &["currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady"],
    );
    zeros("apps/v1/replicasets", &["replicas"]);
    zeros("apps/v1/statefulsets", &["replicas"]);
    zeros("autoscaling/v1/horizontalpodautoscalers", &["currentReplicas", "desiredReplicas"]);
    zeros("autoscaling/v2/horizontalpodautoscalers", &["desiredReplicas"]);
    zeros(
        "policy/v1/poddisruptionbudgets",
        &["currentHealthy", "desiredHealthy", "disruptionsAllowed", "expectedPods"],
    );
}
