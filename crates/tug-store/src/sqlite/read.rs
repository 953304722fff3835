//! Queries on read connections. Each runs inside one read transaction that first checks the
//! compacted revision: compaction records its new revision before deleting anything, so a
//! snapshot that passes the check cannot be missing rows it needs.

use crate::keys::{ContinueToken, key_after, prefix_end};
use crate::{Error, EventKind, KeyValue, ListResult, Result, Revision, WatchEvent};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

pub(super) fn db_error(e: rusqlite::Error) -> Error {
    Error::Unavailable(format!("sqlite: {e}"))
}

fn key_string(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::Corrupt(format!("stored key is not UTF-8: {e}")))
}

/// The exclusive upper bound of a prefix scan. Keys are UTF-8 and never contain 0xff, so a
/// lone 0xff is above every key when the prefix is empty.
pub(super) fn range_end(prefix: &str) -> Vec<u8> {
    prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0xff])
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(db_error)
}

/// Fails with `Compacted` if history at `revision` may be gone in this snapshot.
fn check_compacted(tx: &Transaction<'_>, revision: Revision) -> Result<()> {
    let compacted: i64 = tx
        .prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_error)?;
    if revision < compacted {
        return Err(Error::Compacted { requested: revision, compacted });
    }
    Ok(())
}

pub(super) fn get(conn: &mut Connection, key: &str, at: Revision) -> Result<Option<KeyValue>> {
    let tx = begin(conn)?;
    check_compacted(&tx, at)?;
    let row = tx
        .prepare_cached(
            "SELECT deleted, create_rev, rev, version, value FROM log
             WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(rusqlite::params![key.as_bytes(), at], |r| {
                Ok((r.get::<_, bool>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .map_err(db_error)?;
    Ok(match row {
        Some((false, create_revision, mod_revision, version, value)) => {
            Some(KeyValue { key: key.to_string(), value, create_revision, mod_revision, version })
        }
        _ => None,
    })
}

pub(super) fn list(
    conn: &mut Connection,
    prefix: &str,
    start_after: Option<&str>,
    at: Revision,
    limit: usize,
) -> Result<ListResult> {
    let tx = begin(conn)?;
    check_compacted(&tx, at)?;
    let start = match start_after {
        Some(k) => key_after(k),
        None => prefix.as_bytes().to_vec(),
    };
    let end = range_end(prefix);
    // Walks (key, rev) in key order and keeps each key's newest row at or below `at`; the scan
    // stops as soon as `limit + 1` keys are found, so a page costs its size, not the range's.
    let fetch = if limit == 0 { -1 } else { limit as i64 + 1 };
    let mut stmt = tx
        .prepare_cached(
            "SELECT l.key, l.create_rev, l.rev, l.version, l.value FROM log l
             WHERE l.key >= ?1 AND l.key < ?2 AND l.rev <= ?3 AND l.deleted = 0
               AND NOT EXISTS (SELECT 1 FROM log n WHERE n.key = l.key AND n.rev > l.rev AND n.rev <= ?3)
             ORDER BY l.key LIMIT ?4",
        )
        .map_err(db_error)?;
    let mut rows = stmt.query(rusqlite::params![start, end, at, fetch]).map_err(db_error)?;
    let mut items = Vec::new();
    while let Some(r) = rows.next().map_err(db_error)? {
        items.push(KeyValue {
            key: key_string(r.get(0).map_err(db_error)?)?,
            create_revision: r.get(1).map_err(db_error)?,
            mod_revision: r.get(2).map_err(db_error)?,
            version: r.get(3).map_err(db_error)?,
            value: r.get(4).map_err(db_error)?,
        });
    }
    let continue_token = if limit > 0 && items.len() > limit {
        items.truncate(limit);
        let last_key = items.last().map(|kv| kv.key.clone()).unwrap_or_default();
        Some(ContinueToken { revision: at, last_key }.encode())
    } else {
        None
    };
    Ok(ListResult { items, revision: at, continue_token })
}

/// Changes under `prefix` with revisions in `(after, until]`, oldest first, at most `max`.
pub(super) fn history(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    until: Revision,
    max: usize,
) -> Result<Vec<WatchEvent>> {
    let tx = begin(conn)?;
    check_compacted(&tx, after)?;
    let end = range_end(prefix);
    let mut stmt = tx
        .prepare_cached(
            "SELECT l.rev, l.key, l.deleted, l.create_rev, l.version, l.value,
                    p.rev, p.create_rev, p.version, p.value
             FROM log l LEFT JOIN log p ON p.rev = l.prev_rev AND l.prev_rev > 0
             WHERE l.rev > ?1 AND l.rev <= ?2 AND l.key >= ?3 AND l.key < ?4
             ORDER BY l.rev LIMIT ?5",
        )
        .map_err(db_error)?;
    let mut rows = stmt.query(rusqlite::params![after, until, prefix.as_bytes(), end, max as i64]).map_err(db_error)?;
    let mut events = Vec::new();
    while let Some(r) = rows.next().map_err(db_error)? {
        let key = key_string(r.get(1).map_err(db_error)?)?;
        let deleted: bool = r.get(2).map_err(db_error)?;
        let prev_rev: Option<i64> = r.get(6).map_err(db_error)?;
        let prev = match prev_rev {
            Some(mod_revision) => Some(KeyValue {
                key: key.clone(),
                mod_revision,
                create_revision: r.get(7).map_err(db_error)?,
                version: r.get(8).map_err(db_error)?,
                value: r.get(9).map_err(db_error)?,
            }),
            None => None,
        };
        let kv = KeyValue {
            key,
            mod_revision: r.get(0).map_err(db_error)?,
            create_revision: r.get(3).map_err(db_error)?,
            version: r.get(4).map_err(db_error)?,
            value: r.get(5).map_err(db_error)?,
        };
        let kind = if deleted { EventKind::Delete } else { EventKind::Put };
        events.push(WatchEvent { kind, kv, prev });
    }
    Ok(events)
}
