//! The single writer thread: group commit, time-to-live expiry and compaction.

use super::read::db_error;
use super::schema::WAL_LIMIT;
use super::{Shared, SqliteOptions};
use crate::compaction::{CompactionPolicy, RevisionClock};
use crate::{Deleted, Error, EventKind, KeyValue, Result, Revision, WatchEvent};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Revisions of history examined per compaction step. Steps run between write batches, so one
/// step bounds how long compaction can hold up writers.
const COMPACTION_STEP: i64 = 2000;
/// Commits between two checkpoint requests: often enough to keep the WAL to a few MiB, rarely
/// enough that checkpointing is not continuous.
const COMMITS_PER_CHECKPOINT: u32 = 64;
/// Pages handed back to the filesystem per incremental-vacuum step (16 MiB of 4 KiB pages).
/// Steps run between write batches, like compaction steps, each in its own transaction.
const VACUUM_STEP_PAGES: i64 = 4096;
/// Wait before an unfinished checkpoint (a reader held an older snapshot) is tried again.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);
/// Quiet time after the last commit before the WAL is checkpointed anyway, so a burst followed
/// by silence does not leave its tail (and a large WAL file) behind.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);
/// Longest the writer sleeps with nothing to do (an upper bound, not a poll: it wakes at once
/// for requests, and earlier for TTL expiry or compaction ticks).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(super) enum WriteOp {
    Create { key: String, value: Vec<u8>, ttl: Option<Duration> },
    Update { key: String, value: Vec<u8>, expected: Revision, ttl: Option<Duration> },
    Delete { key: String, expected: Option<Revision> },
}

#[derive(Debug)]
pub(super) enum WriteOutcome {
    Revision(Revision),
    Deleted(Deleted),
}

#[derive(Debug)]
pub(super) enum Request {
    Write { op: WriteOp, reply: oneshot::Sender<Result<WriteOutcome>> },
    Compact { revision: Revision, reply: oneshot::Sender<Result<()>> },
}

/// A compaction in progress: rows superseded by changes in `(cursor, target]` remain to delete.
#[derive(Debug)]
struct PendingCompaction {
    cursor: Revision,
    target: Revision,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

/// A key's newest row.
struct Latest {
    rev: Revision,
    deleted: bool,
    create_rev: Revision,
    version: i64,
    value: Vec<u8>,
}

pub(super) struct Writer {
    conn: Connection,
    checkpointer: Option<Checkpointer>,
    commits_since_checkpoint: u32,
    last_commit: Instant,
    /// Free pages may remain to hand back to the filesystem.
    vacuum_pending: bool,
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
    max_batch: usize,
    policy: CompactionPolicy,
    clock: RevisionClock,
    /// The last committed revision.
    revision: Revision,
    /// Earliest expiry among live keys with a TTL (unix ms).
    next_expiry: Option<i64>,
    next_compaction_tick: Option<Instant>,
    compaction: Option<PendingCompaction>,
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        requests: mpsc::Receiver<Request>,
        options: SqliteOptions,
        swept: Revision,
        checkpointer: Checkpointer,
    ) -> Result<Writer> {
        let revision = shared.current.load(Ordering::Acquire);
        // An interval beyond a day means "compact only when asked".
        let next_compaction_tick = (options.compaction.interval <= Duration::from_secs(86_400))
            .then(|| Instant::now() + options.compaction.interval);
        let mut w = Writer {
            conn,
            checkpointer: Some(checkpointer),
            commits_since_checkpoint: 0,
            last_commit: Instant::now(),
            // Pages an earlier run freed but did not hand back.
            vacuum_pending: true,
            shared,
            requests,
            max_batch: options.max_batch.max(1),
            policy: options.compaction,
            clock: RevisionClock::default(),
            revision,
            next_expiry: None,
            next_compaction_tick,
            // Finish a compaction that an earlier run recorded but did not complete.
            compaction: None,
        };
        let compacted = w.shared.compacted.load(Ordering::Acquire);
        if swept < compacted {
            w.compaction = Some(PendingCompaction { cursor: swept, target: compacted, waiters: Vec::new() });
        }
        w.next_expiry = w.earliest_expiry()?;
        Ok(w)
    }

    pub(super) fn run(mut self) {
        loop {
            let wait = self.time_to_next_duty();
            match self.requests.recv_timeout(wait) {
                Ok(first) => {
                    let mut writes = Vec::new();
                    let mut compacts = Vec::new();
                    let mut next = Some(first);
                    while let Some(req) = next {
                        match req {
                            Request::Write { op, reply } => writes.push((op, reply)),
                            Request::Compact { revision, reply } => compacts.push((revision, reply)),
                        }
                        next = if writes.len() < self.max_batch { self.requests.try_recv().ok() } else { None };
                    }
                    if !writes.is_empty() {
                        self.commit_batch(writes);
                    }
                    for (revision, reply) in compacts {
                        self.start_compaction(revision, Some(reply));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.expire_due_keys();
            self.compaction_tick();
            self.compaction_step();
            self.vacuum_step();
            self.idle_checkpoint();
        }
        self.shared.hub.lock().unwrap_or_else(|p| p.into_inner()).close_all();
        if let Some(c) = self.checkpointer.take() {
            c.stop();
        }
        // Leave a tidy file behind: everything in the main database, an empty WAL.
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(error = %e, "final checkpoint failed; the WAL will be replayed at next open");
        }
    }

    fn time_to_next_duty(&self) -> Duration {
        if self.compaction.is_some() || self.vacuum_pending {
            return Duration::ZERO;
        }
        let mut wait = IDLE_WAKE;
        if self.commits_since_checkpoint > 0 {
            wait = wait.min((self.last_commit + IDLE_CHECKPOINT).saturating_duration_since(Instant::now()));
        }
        if let Some(at) = self.next_expiry {
            wait = wait.min(Duration::from_millis((at - now_ms()).max(0) as u64));
        }
        if let Some(at) = self.next_compaction_tick {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        wait
    }

    /// Applies `writes` in one transaction and one fsync, then publishes and answers.
    fn commit_batch(&mut self, writes: Vec<(WriteOp, oneshot::Sender<Result<WriteOutcome>>)>) {
        let (ops, replies): (Vec<_>, Vec<_>) = writes.into_iter().unzip();
        match self.apply(ops) {
            Ok((outcomes, events)) => {
                self.publish(&events);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // Nothing of the batch was committed: every caller hears so.
                let msg = match e {
                    Error::Unavailable(m) => m,
                    other => other.to_string(),
                };
                for reply in replies {
                    let _ = reply.send(Err(Error::Unavailable(format!("write not applied: {msg}"))));
                }
            }
        }
    }

    fn publish(&mut self, events: &[WatchEvent]) {
        let mut hub = self.shared.hub.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.current.store(self.revision, Ordering::Release);
        hub.publish(events, self.revision);
    }

    /// Runs the ops in one transaction. A failed precondition fails only its op; a database
    /// error rolls back the whole batch.
    #[allow(clippy::type_complexity)]
    fn apply(&mut self, ops: Vec<WriteOp>) -> Result<(Vec<Result<WriteOutcome>>, Vec<WatchEvent>)> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
        let mut next = self.revision;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut events = Vec::with_capacity(ops.len());
        let mut earliest_new_expiry: Option<i64> = None;
        for op in ops {
            let expires = op_expiry(&op);
            match apply_op(&tx, op, next + 1, expires)? {
                Ok((outcome, event)) => {
                    next += 1;
                    outcomes.push(Ok(outcome));
                    events.push(event);
                    if let Some(at) = expires {
                        earliest_new_expiry = Some(earliest_new_expiry.map_or(at, |e| e.min(at)));
                    }
                }
                Err(precondition) => outcomes.push(Err(precondition)),
            }
        }
        if next > self.revision {
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")
                .and_then(|mut s| s.execute([next]))
                .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        self.revision = next;
        self.commits_since_checkpoint += 1;
        self.last_commit = Instant::now();
        if self.commits_since_checkpoint >= COMMITS_PER_CHECKPOINT {
            self.request_checkpoint();
        }
        if let Some(at) = earliest_new_expiry {
            self.next_expiry = Some(self.next_expiry.map_or(at, |e| e.min(at)));
        }
        Ok((outcomes, events))
    }

    fn request_checkpoint(&mut self) {
        self.commits_since_checkpoint = 0;
        if let Some(c) = &self.checkpointer {
            c.request();
        }
    }

    /// Checkpoints once writing has paused, so the WAL does not keep the tail of a burst.
    fn idle_checkpoint(&mut self) {
        if self.commits_since_checkpoint > 0 && self.last_commit.elapsed() >= IDLE_CHECKPOINT {
            self.request_checkpoint();
        }
    }

    /// Hands up to [`VACUUM_STEP_PAGES`] free pages back to the filesystem (the file shrinks at
    /// the next checkpoint). `PRAGMA incremental_vacuum` frees one page per row it returns, so
    /// the statement is stepped to its end (a single step, as `execute_batch` does, frees one).
    fn vacuum_step(&mut self) {
        if !self.vacuum_pending {
            return;
        }
        let step = |conn: &Connection| -> rusqlite::Result<i64> {
            let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            if free > 0 {
                let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({})", free.min(VACUUM_STEP_PAGES)))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
            }
            Ok((free - VACUUM_STEP_PAGES).max(0))
        };
        match step(&self.conn) {
            Ok(0) => {
                self.vacuum_pending = false;
                // Copy the moved pages home and let the checkpoint truncate the file.
                self.request_checkpoint();
            }
            Ok(_) => {}
            Err(e) => {
                // The pages stay free for reuse; the next compaction tries again.
                tracing::warn!(error = %e, "incremental vacuum failed");
                self.vacuum_pending = false;
            }
        }
    }

    fn earliest_expiry(&self) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT MIN(l.expires_at) FROM log l
                 WHERE l.expires_at IS NOT NULL AND l.deleted = 0
                   AND NOT EXISTS (SELECT 1 FROM log n WHERE n.key = l.key AND n.rev > l.rev)",
                [],
                |r| r.get(0),
            )
            .map_err(db_error)
    }

    /// Deletes keys whose time-to-live ran out, as ordinary deletes (watchers see them).
    fn expire_due_keys(&mut self) {
        let now = now_ms();
        if self.next_expiry.is_none_or(|at| at > now) {
            return;
        }
        let due: Result<Vec<(Vec<u8>, Revision)>> = (|| {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT l.key, l.rev FROM log l
                     WHERE l.expires_at IS NOT NULL AND l.expires_at <= ?1 AND l.deleted = 0
                       AND NOT EXISTS (SELECT 1 FROM log n WHERE n.key = l.key AND n.rev > l.rev)
                     LIMIT ?2",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![now, self.max_batch as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
        })();
        let ops = match due {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|(key, rev)| {
                    String::from_utf8(key).ok().map(|key| WriteOp::Delete { key, expected: Some(rev) })
                })
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read expired keys; will retry");
                self.next_expiry = Some(now + 1000);
                return;
            }
        };
        let full = ops.len() >= self.max_batch;
        if !ops.is_empty() {
            match self.apply(ops) {
                Ok((_, events)) => self.publish(&events),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete expired keys; will retry");
                    self.next_expiry = Some(now + 1000);
                    return;
                }
            }
        }
        self.next_expiry = if full {
            Some(now) // more are due: come straight back
        } else {
            self.earliest_expiry().unwrap_or(Some(now + 1000))
        };
    }

    fn compaction_tick(&mut self) {
        let Some(at) = self.next_compaction_tick else { return };
        let now = Instant::now();
        if at > now {
            return;
        }
        self.next_compaction_tick = Some(now + self.policy.interval);
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if let Some(target) = self.clock.tick(&self.policy, now, self.revision, compacted) {
            self.start_compaction(target, None);
        }
    }

    /// Records the new compacted revision (so readers stop relying on older history) before
    /// any row is deleted; the deletion then proceeds in steps between write batches.
    fn start_compaction(&mut self, target: Revision, reply: Option<oneshot::Sender<Result<()>>>) {
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        let target = target.min(self.revision);
        if target <= compacted {
            if let Some(reply) = reply {
                let result =
                    if target < compacted { Err(Error::Compacted { requested: target, compacted }) } else { Ok(()) };
                let _ = reply.send(result);
            }
            return;
        }
        let recorded =
            self.conn.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted'", [target]).map_err(db_error);
        if let Err(e) = recorded {
            if let Some(reply) = reply {
                let _ = reply.send(Err(e));
            }
            return;
        }
        self.shared.compacted.store(target, Ordering::Release);
        let pending =
            self.compaction.get_or_insert(PendingCompaction { cursor: compacted, target, waiters: Vec::new() });
        pending.target = pending.target.max(target);
        pending.waiters.extend(reply);
    }

    /// Deletes what changes in the next slice of history superseded: the row each change
    /// replaced (its `prev_rev`) and tombstones themselves. Rows at or below the old compacted
    /// revision that are still current are never touched.
    fn compaction_step(&mut self) {
        let Some(pending) = self.compaction.as_mut() else { return };
        let lo = pending.cursor;
        let hi = (lo + COMPACTION_STEP).min(pending.target);
        let target = pending.target;
        let result = (|| -> Result<()> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            tx.execute(
                "DELETE FROM log WHERE rev IN
                   (SELECT prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
                params![lo, hi],
            )
            .map_err(db_error)?;
            tx.execute("DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND deleted = 1", params![lo, hi])
                .map_err(db_error)?;
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'swept'", [hi]).map_err(db_error)?;
            tx.commit().map_err(db_error)
        })();
        let pending = self.compaction.as_mut().expect("checked above");
        match result {
            Ok(()) => pending.cursor = hi,
            Err(e) => {
                // Readers already treat history up to the target as gone; the rows stay until
                // a later step succeeds.
                tracing::warn!(error = %e, "compaction step failed; will retry");
                return;
            }
        }
        if pending.cursor >= target {
            let done = self.compaction.take().expect("checked above");
            // Hand the freed pages back to the filesystem, in steps between write batches.
            self.vacuum_pending = true;
            for waiter in done.waiters {
                let _ = waiter.send(Ok(()));
            }
        }
    }
}

fn op_expiry(op: &WriteOp) -> Option<i64> {
    let ttl = match op {
        WriteOp::Create { ttl, .. } | WriteOp::Update { ttl, .. } => *ttl,
        WriteOp::Delete { .. } => None,
    }?;
    Some(unix_ms(SystemTime::now() + ttl))
}

fn latest(tx: &Transaction<'_>, key: &str) -> Result<Option<Latest>> {
    tx.prepare_cached(
        "SELECT rev, deleted, create_rev, version, value FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row([key.as_bytes()], |r| {
            Ok(Latest {
                rev: r.get(0)?,
                deleted: r.get(1)?,
                create_rev: r.get(2)?,
                version: r.get(3)?,
                value: r.get(4)?,
            })
        })
        .optional()
    })
    .map_err(db_error)
}

impl Latest {
    fn into_kv(self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: self.value,
            create_revision: self.create_rev,
            mod_revision: self.rev,
            version: self.version,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn insert(
    tx: &Transaction<'_>,
    rev: Revision,
    key: &str,
    deleted: bool,
    create_rev: Revision,
    prev_rev: Revision,
    version: i64,
    expires_at: Option<i64>,
    value: &[u8],
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO log (rev, key, deleted, create_rev, prev_rev, version, expires_at, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![rev, key.as_bytes(), deleted, create_rev, prev_rev, version, expires_at, value])
    })
    .map_err(db_error)?;
    Ok(())
}

/// One op at revision `rev`. Outer error: the database failed (abort the batch). Inner error:
/// the op's precondition failed (only this op fails).
fn apply_op(
    tx: &Transaction<'_>,
    op: WriteOp,
    rev: Revision,
    expires_at: Option<i64>,
) -> Result<Result<(WriteOutcome, WatchEvent)>> {
    match op {
        WriteOp::Create { key, value, .. } => {
            if latest(tx, &key)?.is_some_and(|l| !l.deleted) {
                return Ok(Err(Error::AlreadyExists { key }));
            }
            insert(tx, rev, &key, false, rev, 0, 1, expires_at, &value)?;
            let kv = KeyValue { key, value, create_revision: rev, mod_revision: rev, version: 1 };
            Ok(Ok((WriteOutcome::Revision(rev), WatchEvent { kind: EventKind::Put, kv, prev: None })))
        }
        WriteOp::Update { key, value, expected, .. } => {
            let Some(cur) = latest(tx, &key)?.filter(|l| !l.deleted) else {
                return Ok(Err(Error::NotFound { key }));
            };
            if cur.rev != expected {
                let current = Box::new(cur.into_kv(&key));
                return Ok(Err(Error::Conflict { key, expected, current }));
            }
            insert(tx, rev, &key, false, cur.create_rev, cur.rev, cur.version + 1, expires_at, &value)?;
            let kv = KeyValue {
                key: key.clone(),
                value,
                create_revision: cur.create_rev,
                mod_revision: rev,
                version: cur.version + 1,
            };
            let prev = Some(cur.into_kv(&key));
            Ok(Ok((WriteOutcome::Revision(rev), WatchEvent { kind: EventKind::Put, kv, prev })))
        }
        WriteOp::Delete { key, expected } => {
            let Some(cur) = latest(tx, &key)?.filter(|l| !l.deleted) else {
                return Ok(Err(Error::NotFound { key }));
            };
            if expected.is_some_and(|e| e != cur.rev) {
                let current = Box::new(cur.into_kv(&key));
                return Ok(Err(Error::Conflict { key, expected: expected.unwrap_or(0), current }));
            }
            insert(tx, rev, &key, true, cur.create_rev, cur.rev, 0, None, &[])?;
            let prev = cur.into_kv(&key);
            let kv = KeyValue {
                key,
                value: Vec::new(),
                create_revision: prev.create_revision,
                mod_revision: rev,
                version: 0,
            };
            let deleted = Deleted { revision: rev, prev: prev.clone() };
            Ok(Ok((WriteOutcome::Deleted(deleted), WatchEvent { kind: EventKind::Delete, kv, prev: Some(prev) })))
        }
    }
}

/// Copies the WAL back into the database on its own thread and connection. A PASSIVE checkpoint
/// never blocks the writer, so the fsyncs of the main file stay off the commit path, where
/// SQLite's automatic checkpoint would put them (they showed up as the write p99). When a
/// checkpoint copied everything and the WAL file is beyond [`WAL_LIMIT`], it is truncated
/// (a TRUNCATE checkpoint, quick once nothing is left to copy).
pub(super) struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn start(conn: Connection, wal: PathBuf) -> Result<Checkpointer> {
        let (wake, requests) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("tug-store-checkpoint".into())
            .spawn(move || {
                // A checkpoint that could not copy everything (a reader still on an older
                // snapshot) or failed is retried until it completes: after the last write of a
                // burst no further request comes, and the file would keep its old size.
                let mut unfinished = false;
                loop {
                    let woke = if unfinished {
                        requests.recv_timeout(CHECKPOINT_RETRY)
                    } else {
                        requests.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
                    };
                    if woke == Err(mpsc::RecvTimeoutError::Disconnected) {
                        break;
                    }
                    unfinished = match checkpoint(&conn, &wal) {
                        Ok(complete) => !complete,
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                            true
                        }
                    };
                }
            })
            .map_err(|e| Error::Unavailable(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { wake, thread })
    }

    /// Asks for a checkpoint; a request already pending covers this one.
    fn request(&self) {
        let _ = self.wake.try_send(());
    }

    fn stop(self) {
        drop(self.wake);
        let _ = self.thread.join();
    }
}

/// One checkpoint; whether it copied the whole WAL back.
fn checkpoint(conn: &Connection, wal: &Path) -> rusqlite::Result<bool> {
    // (busy, frames in the WAL, frames copied back)
    let (busy, frames, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let wal_bytes = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    let complete = busy == 0 && frames == copied;
    if complete && wal_bytes > WAL_LIMIT {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        tracing::debug!(wal_bytes, "WAL truncated");
    }
    Ok(complete)
}
