//! The SQLite file gives space back: after a burst of writes and deletes, compaction hands the
//! freed pages to the filesystem and the write-ahead log is truncated, without anyone running
//! VACUUM by hand. Files written before incremental vacuum are converted once at open.

use std::sync::Arc;
use std::time::Duration;
use tug_store::sqlite::{Space, SqliteOptions, SqliteStore};
use tug_store::{CompactionPolicy, Store};
use tug_testkit::eventually;

const MIB: u64 = 1 << 20;
/// The WAL's bound at rest (`WAL_LIMIT` in the SQLite backend).
const WAL_LIMIT: u64 = 32 * MIB;
const DEADLINE: Duration = Duration::from_secs(60);

fn options() -> SqliteOptions {
    SqliteOptions { compaction: CompactionPolicy::manual(), ..Default::default() }
}

fn show(s: &Space) -> String {
    format!(
        "file {:.1} MiB, WAL {:.1} MiB, {} of {} pages free, auto_vacuum {}",
        s.file_bytes as f64 / MIB as f64,
        s.wal_bytes as f64 / MIB as f64,
        s.free_pages,
        s.pages,
        s.auto_vacuum
    )
}

/// Writes `count` keys of `size` bytes at once (so they share few, large commits, and the WAL
/// grows between checkpoints as under a real burst).
async fn create_many(store: &Arc<SqliteStore>, count: usize, size: usize) {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                store.create(&format!("/registry/configmaps/default/cm-{i:05}"), vec![b'x'; size], None).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

async fn delete_many(store: &Arc<SqliteStore>, count: usize) {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.delete(&format!("/registry/configmaps/default/cm-{i:05}"), None).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_gives_the_space_of_deleted_keys_back_and_the_wal_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db"), options()).await.unwrap());
    assert_eq!(store.space().await.unwrap().auto_vacuum, 2, "a new file uses incremental vacuum");

    // 80 MB in a few group commits: more than the WAL's bound before any checkpoint.
    let (count, size) = (10_000, 8 * 1024);
    create_many(&store, count, size).await;
    // Once writing pauses, the WAL is checkpointed into the file and truncated.
    let full = eventually("the burst checkpointed into the file and the WAL truncated", DEADLINE, || async {
        let s = store.space().await.map_err(|e| e.to_string())?;
        if s.file_bytes >= 70 * MIB && s.wal_bytes <= WAL_LIMIT { Ok(s) } else { Err(show(&s)) }
    })
    .await;

    delete_many(&store, count).await;
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    let empty = eventually("the deleted keys' pages given back to the filesystem", DEADLINE, || async {
        let s = store.space().await.map_err(|e| e.to_string())?;
        let free_bytes = s.free_pages * s.page_size;
        if s.file_bytes <= full.file_bytes / 20 && free_bytes <= MIB && s.wal_bytes <= WAL_LIMIT {
            Ok(s)
        } else {
            Err(show(&s))
        }
    })
    .await;
    eprintln!("full: {}\nafter deleting and compacting: {}", show(&full), show(&empty));

    // The store still works, and reuses the file.
    store.create("/registry/configmaps/default/after", b"v".to_vec(), None).await.unwrap();
    assert_eq!(store.get("/registry/configmaps/default/after", None).await.unwrap().unwrap().value, b"v");
}

#[tokio::test]
async fn a_file_written_without_incremental_vacuum_is_converted_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(&path, options()).await.unwrap();
        for i in 0..500 {
            store.create(&format!("/k/{i:03}"), vec![7; 4000], None).await.unwrap();
        }
    }
    // What an older tug (or `sqlite3` by hand) leaves: a file that keeps its freed pages.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA auto_vacuum = NONE; VACUUM;").unwrap();
        let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, 0);
    }
    let store = Arc::new(SqliteStore::open(&path, options()).await.unwrap());
    assert_eq!(store.space().await.unwrap().auto_vacuum, 2, "converted at open");
    assert_eq!(store.list("/k/", Default::default()).await.unwrap().items.len(), 500, "nothing lost");

    for i in 0..500 {
        store.delete(&format!("/k/{i:03}"), None).await.unwrap();
    }
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    eventually("the converted file handing pages back", DEADLINE, || async {
        let s = store.space().await.map_err(|e| e.to_string())?;
        if s.file_bytes <= 256 * 1024 && s.free_pages * s.page_size <= MIB { Ok(()) } else { Err(show(&s)) }
    })
    .await;
}

#[tokio::test]
async fn a_reader_on_an_old_snapshot_only_delays_the_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Arc::new(SqliteStore::open(&path, options()).await.unwrap());
    for i in 0..500 {
        store.create(&format!("/k/{i:03}"), vec![7; 4000], None).await.unwrap();
    }
    // A reader (a backup, `sqlite3` by hand) holding a snapshot from before the deletes: the
    // checkpoint that follows the vacuum cannot copy past it and is left unfinished.
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN; SELECT count(*) FROM sqlite_master;").unwrap();
    for i in 0..500 {
        store.delete(&format!("/k/{i:03}"), None).await.unwrap();
    }
    store.compact(store.current_revision().await.unwrap()).await.unwrap();
    eventually("the free pages handed back (in the WAL)", DEADLINE, || async {
        let s = store.space().await.map_err(|e| e.to_string())?;
        if s.free_pages == 0 && s.pages * s.page_size <= 256 * 1024 { Ok(()) } else { Err(show(&s)) }
    })
    .await;
    // The reader goes; no write follows. The unfinished checkpoint is retried on its own.
    reader.execute_batch("COMMIT;").unwrap();
    drop(reader);
    eventually("the file shrinking once the reader is gone", DEADLINE, || async {
        let s = store.space().await.map_err(|e| e.to_string())?;
        if s.file_bytes <= 256 * 1024 { Ok(()) } else { Err(show(&s)) }
    })
    .await;
}
