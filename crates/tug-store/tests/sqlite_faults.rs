//! The SQLite backend facing bad files and failing disks: clear errors at open, never a panic;
//! a failed write leaves the store exactly as it was.

use std::process::Command;
use std::time::Duration;
use tug_store::sqlite::{SqliteOptions, SqliteStore};
use tug_store::{CompactionPolicy, Error, ListOptions, Store};

fn options() -> SqliteOptions {
    SqliteOptions { compaction: CompactionPolicy::manual(), ..Default::default() }
}

#[tokio::test]
async fn reopening_keeps_every_key_and_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path, options()).await.unwrap();
    let r1 = store.create("/a", b"1".to_vec(), None).await.unwrap();
    store.update("/a", b"2".to_vec(), r1, None).await.unwrap();
    let r3 = store.create("/b", b"3".to_vec(), Some(Duration::from_secs(3600))).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&path, options()).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), r3);
    assert_eq!(store.get("/a", None).await.unwrap().unwrap().value, b"2");
    assert_eq!(store.get("/a", Some(r1)).await.unwrap().unwrap().value, b"1", "history survives a restart");
    assert_eq!(store.create("/c", b"4".to_vec(), None).await.unwrap(), r3 + 1);
}

#[tokio::test]
async fn a_second_opener_is_told_the_file_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let _first = SqliteStore::open(&path, options()).await.unwrap();
    let err = SqliteStore::open(&path, options()).await.unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("in use by another process") && msg.contains("--data-dir"), "{msg}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&path, options()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not a SQLite database") && msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("restore a backup"), "says what to do: {msg}");
    // Nothing was overwritten.
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 8192]);
}

#[tokio::test]
async fn a_database_damaged_inside_is_reported_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(&path, options()).await.unwrap();
        for i in 0..200 {
            store.create(&format!("/k/{i:03}"), vec![7; 2000], None).await.unwrap();
        }
    }
    // Overwrite the middle of the file (past the header and schema pages) with garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 8192].fill(0xee);
    std::fs::write(&path, &bytes).unwrap();
    match SqliteStore::open(&path, options()).await {
        Err(e) => assert!(matches!(e, Error::Open { .. } | Error::Corrupt(_)), "{e:?}"),
        Ok(store) => {
            // Damage in data pages surfaces on the read that touches them, as an error.
            let err = store.list("/k/", ListOptions::default()).await.unwrap_err();
            assert!(err.to_string().contains("malformed") || err.is_unavailable(), "{err}");
        }
    }
}

#[tokio::test]
async fn a_directory_in_place_of_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path(), options()).await.unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

/// A real full disk: a tiny tmpfs mounted for this test (needs root, as CI and the setup
/// scripts run). Writes fail with an error once it is full; every acknowledged write stays,
/// the failed one leaves no trace, and the store works again once space is freed.
#[tokio::test]
async fn a_full_disk_fails_the_write_and_changes_nothing() {
    let dir = tempfile::Builder::new().prefix("tugt-full-").tempdir().unwrap();
    let mount = Mount::tmpfs(dir.path(), "1m");
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path, options()).await.unwrap();
    let mut acked = Vec::new();
    let failure = loop {
        let key = format!("/fill/{:04}", acked.len());
        match store.create(&key, vec![1; 16 * 1024], None).await {
            Ok(rev) => acked.push((key, rev)),
            Err(e) => break (key, e),
        }
        assert!(acked.len() < 1000, "a 1 MiB filesystem took 16 MiB of writes");
    };
    assert!(failure.1.is_unavailable(), "{:?}", failure.1);
    assert!(failure.1.to_string().contains("full"), "says the disk is full: {}", failure.1);
    let last = acked.last().unwrap().1;
    assert_eq!(store.current_revision().await.unwrap(), last, "the failed write took no revision");
    assert!(store.get(&failure.0, None).await.unwrap().is_none(), "the failed write left no trace");
    let listed = store.list("/fill/", ListOptions::default()).await.unwrap();
    assert_eq!(listed.items.len(), acked.len(), "every acknowledged write is still there");

    // Free space: deleting is small enough to fit? Not necessarily; grow the filesystem instead.
    mount.resize("8m");
    let rev = store.create(&failure.0, vec![1; 16 * 1024], None).await.expect("writes work again");
    assert_eq!(rev, last + 1);
    drop(store);
    drop(mount);
}

/// A tmpfs mounted over a test's temporary directory, unmounted on drop (also on panic).
struct Mount {
    path: std::path::PathBuf,
}

impl Mount {
    fn tmpfs(path: &std::path::Path, size: &str) -> Mount {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tugt-tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root (run the tests as root, as CI does)");
        Mount { path: path.to_path_buf() }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A watcher that stops reading is cut off once its buffer fills, told the last revision it
/// got, and can resume from there without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_is_told_where_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("state.db"), options()).await.unwrap());
    let start = store.current_revision().await.unwrap();
    let mut slow = store.watch("/lag/", start).await.unwrap();
    // More changes than a watch may buffer, written by concurrent writers.
    let total = 20_000;
    let mut tasks = Vec::new();
    for w in 0..32 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(32) {
                store.create(&format!("/lag/{i:05}"), vec![0; 8], None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut last = start;
    let resume_from = loop {
        match slow.recv().await {
            Some(Ok(event)) => {
                assert_eq!(event.revision(), last + 1, "no gap before the cut");
                last = event.revision();
            }
            Some(Err(Error::WatchLagged { last_delivered })) => break last_delivered,
            other => panic!("expected WatchLagged, got {other:?}"),
        }
    };
    assert_eq!(resume_from, last);
    assert!(slow.recv().await.is_none(), "the lagging watch is closed");
    let mut resumed = store.watch("/lag/", resume_from).await.unwrap();
    let end = start + total as i64;
    while last < end {
        let event = resumed.recv().await.unwrap().unwrap();
        assert_eq!(event.revision(), last + 1, "resume continues without a gap");
        last = event.revision();
    }
}
