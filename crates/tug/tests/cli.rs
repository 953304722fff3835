//! The `tug` command line as a user meets it: clear messages and non-zero exits for what is
//! wrong or not built (absent from --help), and a server that starts and stops cleanly.

use std::process::Command;

fn tug(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tug")).args(args).output().expect("run tug");
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn an_unknown_datastore_is_rejected_with_the_accepted_forms() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = tug(&["server", "--data-dir", dir.path().to_str().unwrap(), "--datastore", "mysql://db"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("unknown datastore") && text.contains("etcd://host:port"), "{text}");
}

#[test]
fn server_serves_until_told_to_stop_and_exits_cleanly() {
    let server = tug_testkit::TugServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_tug")));
    assert!(server.data_dir().join("state.db").exists(), "the datastore was created");
    assert!(server.data_dir().join("node-token").exists(), "the node token was written");
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{}", server.port())), "{kubeconfig}");
    let pid = server.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut server = server;
    let status = server.wait_exit(std::time::Duration::from_secs(20)).expect("tug server stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("stopping"), "{}", server.log());
}

#[test]
fn server_refuses_a_damaged_datastore_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.db"), b"this is not sqlite, just bytes that look wrong......").unwrap();
    let (code, text) = tug(&["server", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a SQLite database") && text.contains("state.db"), "{text}");
}

#[test]
fn unbuilt_commands_are_absent_and_fail() {
    // The kubectl-style verbs are not built yet: not offered in --help, refused like any typo.
    let (code, help) = tug(&["--help"]);
    assert_eq!(code, 0, "{help}");
    assert!(!help.contains("get,") && !help.contains("Verb"), "{help}");
    let (code, text) = tug(&["get", "pods"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("unrecognized subcommand 'get'"), "{text}");
    // A missing token file is named, for the agent and for hollow nodes alike.
    for command in ["sim", "agent"] {
        let (code, text) = tug(&[command, "--server", "https://127.0.0.1:6443", "--token-file", "/nonexistent"]);
        assert_eq!(code, 2, "{command}: {text}");
        assert!(text.contains("token file /nonexistent"), "{command}: {text}");
    }
    let (code, text) = tug(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(text.contains("unrecognized subcommand 'frobnicate'") && text.contains("--help"), "{text}");
}
