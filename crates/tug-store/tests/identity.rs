//! A data directory knows its datastore: an emptied, missing or foreign store is refused with
//! advice, for SQLite and for etcd alike, and `reset` is the one deliberate way past it.

use std::path::Path;
use tug_store::identity::{DataDir, IDENTITY_KEY, MARKER_FILE, Verified, check_data_dir};
use tug_store::{CompactionPolicy, Datastore, Store};

fn data_dir(path: &Path) -> DataDir {
    DataDir { path: path.to_path_buf(), credentials: vec![path.join("tls/ca.key")] }
}

fn refusal(result: Result<Verified, tug_store::identity::IdentityError>) -> String {
    match result {
        Err(tug_store::identity::IdentityError::Refused(msg)) => msg,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_first_start_records_the_store_and_later_starts_match_it() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Datastore::Sqlite { path: dir.path().join("state.db") };
    let Verified::Created { id } = check_data_dir(&ds, &data_dir(dir.path()), false).await.unwrap() else {
        panic!("a new data dir and an empty store make a new cluster")
    };
    assert_eq!(std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap().trim(), id);
    assert_eq!(check_data_dir(&ds, &data_dir(dir.path()), false).await.unwrap(), Verified::Matched { id });
}

#[tokio::test]
async fn credentials_without_a_record_and_an_empty_store_are_refused() {
    // A data dir from before identities were recorded, whose state.db has been lost.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls/ca.key"), "key").unwrap();
    let ds = Datastore::Sqlite { path: dir.path().join("state.db") };
    let msg = refusal(check_data_dir(&ds, &data_dir(dir.path()), false).await);
    assert!(msg.contains("does not exist") && msg.contains("tls/ca.key") && msg.contains("--reset-datastore"), "{msg}");
    assert!(matches!(check_data_dir(&ds, &data_dir(dir.path()), true).await.unwrap(), Verified::Reset { .. }));
}

#[tokio::test]
async fn a_store_from_before_identities_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let options = tug_store::sqlite::SqliteOptions { compaction: CompactionPolicy::manual(), ..Default::default() };
        let store = tug_store::sqlite::SqliteStore::open(&path, options).await.unwrap();
        store.create("/registry/namespaces/default", b"{}".to_vec(), None).await.unwrap();
    }
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls/ca.key"), "key").unwrap();
    let ds = Datastore::Sqlite { path };
    let verified = check_data_dir(&ds, &data_dir(dir.path()), false).await.unwrap();
    assert!(matches!(verified, Verified::Recorded { .. }), "{verified:?}");
}

#[tokio::test]
async fn another_clusters_store_is_refused_unless_reset() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store_b = Datastore::Sqlite { path: b.path().join("state.db") };
    check_data_dir(&Datastore::Sqlite { path: a.path().join("state.db") }, &data_dir(a.path()), false).await.unwrap();
    let Verified::Created { id: id_b } = check_data_dir(&store_b, &data_dir(b.path()), false).await.unwrap() else {
        panic!("b is new")
    };
    // Data dir a pointed at b's store.
    let msg = refusal(check_data_dir(&store_b, &data_dir(a.path()), false).await);
    assert!(msg.contains("belongs to another cluster") && msg.contains(&id_b), "{msg}");
    let verified = check_data_dir(&store_b, &data_dir(a.path()), true).await.unwrap();
    assert!(matches!(&verified, Verified::Reset { id, previous: Some(_) } if *id == id_b), "{verified:?}");
    assert_eq!(check_data_dir(&store_b, &data_dir(a.path()), false).await.unwrap(), Verified::Matched { id: id_b });
}

#[tokio::test]
async fn an_emptied_etcd_prefix_is_refused_with_etcd_advice() {
    let etcd = tokio::task::spawn_blocking(tug_testkit::Etcd::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("/tugt-{}", tug_testkit::unique_suffix());
    let ds = Datastore::Etcd { endpoints: vec![etcd.endpoint()], prefix: prefix.clone() };
    let Verified::Created { id } = check_data_dir(&ds, &data_dir(dir.path()), false).await.unwrap() else {
        panic!("a new data dir and an empty prefix make a new cluster")
    };
    assert_eq!(check_data_dir(&ds, &data_dir(dir.path()), false).await.unwrap(), Verified::Matched { id });

    // Someone wipes the prefix (etcdctl del --prefix).
    let store = tug_store::open(&ds, CompactionPolicy::manual()).await.unwrap();
    store.delete(IDENTITY_KEY, None).await.unwrap();
    drop(store);
    let msg = refusal(check_data_dir(&ds, &data_dir(dir.path()), false).await);
    assert!(
        msg.contains(&prefix) && msg.contains("holds no data") && msg.contains("etcdctl snapshot restore"),
        "{msg}"
    );
    assert!(msg.contains(MARKER_FILE), "names the record that says data existed: {msg}");
    let verified = check_data_dir(&ds, &data_dir(dir.path()), true).await.unwrap();
    assert!(matches!(verified, Verified::Reset { .. }), "{verified:?}");
}
