//! A data directory never starts an empty cluster by accident: a server whose `state.db` was
//! truncated or removed refuses to start and says how to restore or start over, and starting
//! over is one explicit flag.

use std::path::Path;
use tug_testkit::TugServer;

fn tug() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tug"))
}

/// The refusal names what is wrong, where, how to restore and how to start fresh.
fn assert_refusal(code: Option<i32>, text: &str, dir: &Path, what: &str) {
    assert_eq!(code, Some(1), "the start must fail with exit code 1:\n{text}");
    let db = dir.join("state.db").display().to_string();
    for needle in [
        db.as_str(),
        what,
        "belongs to a cluster that has stored data",
        "tls/ca.key",
        ".backup",
        "--reset-datastore",
        "move",
    ] {
        assert!(text.contains(needle), "the message lacks {needle:?}:\n{text}");
    }
    assert!(!text.contains("serving the Kubernetes API"), "it must not serve:\n{text}");
}

#[test]
fn a_truncated_or_missing_state_db_is_refused_and_reset_datastore_starts_over() {
    let mut server = TugServer::start(tug());
    let dir = server.data_dir().to_path_buf();
    server.stop();
    let db = dir.join("state.db");
    assert!(std::fs::metadata(&db).unwrap().len() > 0, "the server stored its bootstrap objects");
    let ca = std::fs::read(dir.join("tls/ca.crt")).unwrap();

    // Truncated to 0 bytes.
    std::fs::File::create(&db).unwrap();
    let (code, text) = server.run_once(&["--disable-agent"]);
    assert_refusal(code, &text, &dir, "is empty (0 bytes");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "the evidence is left as found");

    // Missing.
    std::fs::remove_file(&db).unwrap();
    let (code, text) = server.run_once(&["--disable-agent"]);
    assert_refusal(code, &text, &dir, "does not exist");
    assert!(!db.exists(), "no empty database was created");

    // Starting over on purpose keeps the CA and tokens.
    server.restart_with(&["--disable-agent", "--reset-datastore"]);
    assert!(server.log().contains("--reset-datastore: the data dir now belongs to datastore"), "{}", server.log());
    assert_eq!(std::fs::read(dir.join("tls/ca.crt")).unwrap(), ca, "the CA is kept");
    // From then on the new datastore is the data dir's own: a plain restart works.
    server.restart_with(&["--disable-agent"]);
    assert!(server.exited().is_none(), "{}", server.log());
}

#[test]
fn a_fresh_data_dir_starts_and_a_restart_finds_its_own_datastore() {
    let mut server = TugServer::start(tug());
    let marker = server.data_dir().join("datastore-id");
    let id = std::fs::read_to_string(&marker).expect("the datastore's identity is recorded in the data dir");
    assert_eq!(id.trim().len(), 32, "{id:?}");
    server.restart();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), id, "the same datastore after a restart");
}
