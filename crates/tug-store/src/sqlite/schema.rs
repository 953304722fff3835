//! Opening the database file: locking, pragmas, schema, and turning SQLite's failures into
//! errors that say what is wrong and what to do.

use crate::{Error, Result, Revision};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use std::fs::File;
use std::path::{Path, PathBuf};

const SCHEMA_VERSION: i64 = 1;
/// The WAL's size at rest: SQLite truncates it to this whenever it starts the log over
/// (`journal_size_limit`), and the checkpointer truncates it to nothing when a checkpoint finds
/// it larger. Without a bound the file keeps the size of the biggest burst ever written.
pub(super) const WAL_LIMIT: u64 = 32 << 20;

// `rev` is the global revision and the rowid, so history scans in revision order are a plain
// table walk. (key, rev) finds a key's newest row and serves prefix scans in key order.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,  -- the revision of this change
    key        BLOB    NOT NULL,
    deleted    INTEGER NOT NULL,     -- 1: tombstone of a delete
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,     -- the row this one superseded (0: none); compaction follows it
    version    INTEGER NOT NULL,
    expires_at INTEGER,              -- unix milliseconds, for keys with a time-to-live
    value      BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE INDEX IF NOT EXISTS log_expiry ON log (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1), ('revision', 0), ('compacted', 0), ('swept', 0);
";

/// What the writer needs to resume.
#[derive(Debug)]
pub(super) struct State {
    pub revision: Revision,
    pub compacted: Revision,
    /// How far compaction has deleted; behind `compacted` when a compaction was interrupted.
    pub swept: Revision,
}

fn open_error(path: &Path, reason: impl std::fmt::Display, hint: &'static str) -> Error {
    Error::Open { path: path.to_path_buf(), reason: reason.to_string(), hint }
}

fn sqlite_open_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => open_error(
            path,
            format!("the file is not a SQLite database or is damaged ({e})"),
            "Move it aside and restore a backup, or start with an empty --data-dir.",
        ),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => open_error(
            path,
            format!("the database is locked by another process ({e})"),
            "Stop the other process using it (another tug server?), or use another --data-dir.",
        ),
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) | Some(ErrorCode::ReadOnly) => open_error(
            path,
            format!("cannot open it for reading and writing ({e})"),
            "Check that the directory exists and that tug may read and write it and the file.",
        ),
        Some(ErrorCode::DiskFull) => {
            open_error(path, format!("the disk is full ({e})"), "Free space on that filesystem and start again.")
        }
        _ => open_error(path, e, "Check the file and its directory."),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes an exclusive lock beside the database so that two servers never open the same file.
pub(super) fn lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            open_error(path, format!("cannot create directory {}: {e}", dir.display()), "Check its permissions.")
        })?;
    }
    if path.is_dir() {
        return Err(open_error(path, "it is a directory", "Point --datastore at a file path."));
    }
    let lock_path = lock_path(path);
    let file = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| {
        open_error(
            path,
            format!("cannot create lock file {}: {e}", lock_path.display()),
            "Check the directory's permissions.",
        )
    })?;
    // A lock held by another server stays held; one held for an instant by a process that this
    // one (or a library) is forking — the child's copy of the descriptor lives until its exec —
    // or by a server that is still exiting, clears within moments. Wait a little before saying
    // the file is in use.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut result = file.try_lock();
    while matches!(result, Err(std::fs::TryLockError::WouldBlock)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        result = file.try_lock();
    }
    match result {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(open_error(
            path,
            "it is in use by another process",
            "Stop the other tug server using this data directory, or give this one another --data-dir.",
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(open_error(path, format!("cannot lock {}: {e}", lock_path.display()), "Check the directory."))
        }
    }
}

fn configure(conn: &Connection, path: &Path) -> Result<()> {
    // FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss,
    // not just a crash of this process. Group commit keeps that affordable.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
        .map_err(|e| sqlite_open_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(
            path,
            format!("SQLite refused write-ahead logging (journal mode stays {mode:?})"),
            "Put the data directory on a local filesystem that supports shared memory (not NFS).",
        ));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -32768;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = {WAL_LIMIT};"
    ))
    .map_err(|e| sqlite_open_error(path, e))
}

/// `PRAGMA auto_vacuum`: 0 none, 1 full, 2 incremental.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// Makes sure freed pages can be handed back to the filesystem. A new file gets
/// `auto_vacuum=INCREMENTAL` from the pragma set before its tables are created; a file written
/// without it (by an older tug, or by hand) is rebuilt once with VACUUM, which applies the mode
/// the connection asked for.
fn ensure_incremental_vacuum(conn: &Connection, path: &Path) -> Result<()> {
    let mode = |conn: &Connection| -> Result<i64> {
        conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).map_err(|e| sqlite_open_error(path, e))
    };
    if mode(conn)? == AUTO_VACUUM_INCREMENTAL {
        return Ok(());
    }
    let started = std::time::Instant::now();
    tracing::info!(path = %path.display(), "converting the database to incremental vacuum (a one-time VACUUM)");
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| {
        open_error(
            path,
            format!("the one-time VACUUM that lets the file shrink failed ({e})"),
            "It needs free disk space about the size of the file: free some and start again.",
        )
    })?;
    let now = mode(conn)?;
    if now != AUTO_VACUUM_INCREMENTAL {
        tracing::warn!(mode = now, "the database kept auto_vacuum off; freed space will be reused but not returned");
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "database converted to incremental vacuum");
    Ok(())
}

/// Opens the writer's connection, creating the schema on first use, and reads where to resume.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, State)> {
    let conn = Connection::open(path).map_err(|e| sqlite_open_error(path, e))?;
    // Only takes effect on a new, empty file: lets compaction hand freed pages back to the
    // filesystem (incremental_vacuum) so the file shrinks, not just stops growing.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;").map_err(|e| sqlite_open_error(path, e))?;
    configure(&conn, path)?;
    // Checkpoints run on their own thread (see `Checkpointer`), not inside a writer's commit.
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;").map_err(|e| sqlite_open_error(path, e))?;
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;")).map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK;");
        sqlite_open_error(path, e)
    })?;
    ensure_incremental_vacuum(&conn, path)?;
    let meta = |name: &str| -> Result<i64> {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(|e| sqlite_open_error(path, e))?
            .ok_or_else(|| Error::Corrupt(format!("{}: meta row {name:?} is missing", path.display())))
    };
    let schema = meta("schema")?;
    if schema != SCHEMA_VERSION {
        return Err(open_error(
            path,
            format!("it has schema version {schema}, this tug understands {SCHEMA_VERSION}"),
            "Run the tug version that wrote it, or start with an empty --data-dir.",
        ));
    }
    let state = State { revision: meta("revision")?, compacted: meta("compacted")?, swept: meta("swept")? };
    let max_rev: Option<i64> =
        conn.query_row("SELECT MAX(rev) FROM log", [], |r| r.get(0)).map_err(|e| sqlite_open_error(path, e))?;
    if max_rev.unwrap_or(0) > state.revision || state.compacted > state.revision {
        return Err(Error::Corrupt(format!(
            "{}: log holds revision {} but the recorded revision is {} (compacted {})",
            path.display(),
            max_rev.unwrap_or(0),
            state.revision,
            state.compacted
        )));
    }
    Ok((conn, state))
}

/// Opens the checkpointer's connection.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| sqlite_open_error(path, e))?;
    configure(&conn, path)?;
    Ok(conn)
}

/// Opens a read connection (the writer has already created the schema).
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| sqlite_open_error(path, e))?;
    configure(&conn, path)?;
    conn.execute_batch("PRAGMA query_only = 1; PRAGMA mmap_size = 268435456;")
        .map_err(|e| sqlite_open_error(path, e))?;
    Ok(conn)
}
