//! The embedded backend: one SQLite file, log-structured (kine's model).
//!
//! Every change appends one row to `log` whose primary key is its revision; a key's current value
//! is its newest row, a tombstone row marks a delete. History, reads at a past revision and
//! watch replay all come from the same table; compaction deletes rows that were superseded at or
//! before the compacted revision.
//!
//! Writes go through ONE writer thread (SQLite has one writer anyway). It takes every request
//! waiting in its queue, applies them in one transaction and commits with one fsync (group
//! commit): under load, writers share the cost of durability instead of queueing for it. Only
//! after the commit does it publish the changes to watchers and acknowledge the callers, so an
//! acknowledged write is on disk and a watcher never sees a change that could still roll back.
//!
//! Reads use a small pool of separate connections; WAL lets them run beside the writer, each
//! inside one read transaction, so a list is one consistent snapshot.

mod hub;
mod read;
mod schema;
mod writer;

use crate::compaction::CompactionPolicy;
use crate::keys::ContinueToken;
use crate::{Deleted, Error, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream};
use hub::Hub;
use rusqlite::Connection;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;
use writer::{Request, WriteOp, WriteOutcome};

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub compaction: CompactionPolicy,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Read connections kept open.
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { compaction: CompactionPolicy::default(), max_batch: 1024, read_connections: 4 }
    }
}

/// State shared by the store handle, the writer thread and watch tasks.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    read_connections: usize,
    /// The newest committed and published revision.
    current: AtomicI64,
    /// History at or below this revision may be gone.
    compacted: AtomicI64,
    hub: Mutex<Hub>,
}

impl Shared {
    /// Runs `f` on a pooled read connection on the blocking thread pool.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let pooled = shared.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => schema::open_reader(&shared.path)?,
            };
            let result = f(&mut conn);
            let mut pool = shared.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < shared.read_connections {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::Unavailable(format!("read task failed: {e}")))?
    }

    fn current(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }

    /// The revision to read at, checked against the current and compacted revisions.
    fn read_revision(&self, requested: Option<Revision>) -> Result<Revision> {
        let current = self.current();
        match requested {
            // Like etcd: zero or a negative revision means "now".
            None | Some(..=0) => Ok(current),
            Some(r) if r > current => Err(Error::FutureRevision { requested: r, current }),
            Some(r) => Ok(r),
        }
    }
}

/// The SQLite store. Dropping it stops the writer thread (after it finishes what was queued)
/// and ends every watch.
#[derive(Debug)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    // Held for the store's lifetime: a second process opening the same file gets a clear error
    // instead of two writers interleaving revisions.
    _lock: File,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, options))
            .await
            .map_err(|e| Error::Unavailable(format!("open task failed: {e}")))?
    }

    fn open_blocking(path: PathBuf, options: SqliteOptions) -> Result<SqliteStore> {
        let lock = schema::lock_file(&path)?;
        let (conn, state) = schema::open_writer(&path)?;
        let shared = Arc::new(Shared {
            path: path.clone(),
            readers: Mutex::new(Vec::new()),
            read_connections: options.read_connections.max(1),
            current: AtomicI64::new(state.revision),
            compacted: AtomicI64::new(state.compacted),
            hub: Mutex::new(Hub::new(state.revision)),
        });
        // Fail now, not on the first read, if readers cannot open the file.
        let reader = schema::open_reader(&path)?;
        shared.readers.lock().unwrap_or_else(|p| p.into_inner()).push(reader);

        let (tx, rx) = mpsc::channel();
        let checkpointer = writer::Checkpointer::start(schema::open_checkpointer(&path)?, wal_path(&path))?;
        let writer = writer::Writer::new(conn, Arc::clone(&shared), rx, options, state.swept, checkpointer)?;
        let handle = std::thread::Builder::new()
            .name("tug-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore { shared, requests: Some(tx), writer: Some(handle), _lock: lock })
    }

    /// Queues a request for the writer thread and waits for its answer.
    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<Result<T>>) -> Request) -> Result<T> {
        let shut_down = || Error::Unavailable("the store is shut down".into());
        let (reply, rx) = oneshot::channel();
        self.requests.as_ref().ok_or_else(shut_down)?.send(request(reply)).map_err(|_| shut_down())?;
        rx.await.map_err(|_| Error::Unavailable("the writer stopped before answering".into()))?
    }

    async fn submit(&self, op: WriteOp) -> Result<WriteOutcome> {
        self.ask(|reply| Request::Write { op, reply }).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// How much room the database takes and how much of it is free, for monitoring and tests.
    pub async fn space(&self) -> Result<Space> {
        let path = self.shared.path.clone();
        self.shared
            .read(move |conn| {
                let pragma = |name: &str| -> Result<i64> {
                    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).map_err(read::db_error)
                };
                let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                Ok(Space {
                    page_size: pragma("page_size")? as u64,
                    pages: pragma("page_count")? as u64,
                    free_pages: pragma("freelist_count")? as u64,
                    auto_vacuum: pragma("auto_vacuum")?,
                    file_bytes: len(&path),
                    wal_bytes: len(&wal_path(&path)),
                })
            })
            .await
    }
}

/// The database's size as SQLite and the filesystem see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub page_size: u64,
    /// Pages in the database (as of the newest commit, WAL included).
    pub pages: u64,
    /// Pages on the free list: allocated in the file but holding nothing.
    pub free_pages: u64,
    /// `PRAGMA auto_vacuum`: 2 (incremental) lets freed pages go back to the filesystem.
    pub auto_vacuum: i64,
    /// The main file's size on disk.
    pub file_bytes: u64,
    /// The write-ahead log's size on disk.
    pub wal_bytes: u64,
}

/// The write-ahead log beside the database file.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue tells the writer to finish; wait so the file is closed (and the
        // lock released) when drop returns.
        drop(self.requests.take());
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.current())
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let at = self.shared.read_revision(revision)?;
        let key = key.to_string();
        self.shared.read(move |conn| read::get(conn, &key, at)).await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let (at, start_after) = match &options.continue_token {
            Some(token) => {
                let t = ContinueToken::decode(token)?;
                if !t.last_key.starts_with(prefix) {
                    return Err(Error::InvalidContinue(format!(
                        "token is for key {:?}, not under prefix {prefix:?}",
                        t.last_key
                    )));
                }
                (self.shared.read_revision(Some(t.revision))?, Some(t.last_key))
            }
            None => (self.shared.read_revision(options.revision)?, None),
        };
        let prefix = prefix.to_string();
        let limit = options.limit;
        self.shared.read(move |conn| read::list(conn, &prefix, start_after.as_deref(), at, limit)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<Revision> {
        match self.submit(WriteOp::Create { key: key.to_string(), value, ttl }).await? {
            WriteOutcome::Revision(r) => Ok(r),
            WriteOutcome::Deleted(d) => Ok(d.revision),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision, ttl: Option<Duration>) -> Result<Revision> {
        match self.submit(WriteOp::Update { key: key.to_string(), value, expected, ttl }).await? {
            WriteOutcome::Revision(r) => Ok(r),
            WriteOutcome::Deleted(d) => Ok(d.revision),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        match self.submit(WriteOp::Delete { key: key.to_string(), expected }).await? {
            WriteOutcome::Deleted(d) => Ok(d),
            WriteOutcome::Revision(_) => Err(Error::Unavailable("delete answered without the deleted key".into())),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        hub::watch(&self.shared, prefix, after).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.shared.current();
        if revision > current {
            return Err(Error::FutureRevision { requested: revision, current });
        }
        self.ask(|reply| Request::Compact { revision, reply }).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}
