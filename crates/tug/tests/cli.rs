//! The `tug` command line as a user meets it: clear messages and non-zero exits for what is
//! wrong or not built yet.

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
fn server_opens_its_datastore_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = tug(&["server", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(dir.path().join("state.db").exists(), "the datastore was created: {text}");
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("API server is not implemented yet"), "{text}");
}

#[test]
fn server_refuses_a_damaged_datastore_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.db"), b"this is not sqlite, just bytes that look wrong......").unwrap();
    let (code, text) = tug(&["server", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a SQLite database") && text.contains("state.db"), "{text}");
}

#[test]
fn unbuilt_commands_say_so_and_fail() {
    for args in [
        &["agent", "--server", "https://127.0.0.1:6443", "--token-file", "/nonexistent"][..],
        &["sim", "--server", "https://127.0.0.1:6443", "--token-file", "/nonexistent"][..],
        &["get", "pods"][..],
    ] {
        let (code, text) = tug(args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains("not implemented yet"), "{args:?}: {text}");
    }
    let (code, text) = tug(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(text.contains("unknown command") && text.contains("tug --help"), "{text}");
}
