//! A revisioned key-value store with etcd's semantics: bytes in, bytes out.
//!
//! Every change gets the next value of one global revision. Each key carries the revision that
//! created it, the revision that last changed it and a version (changes since creation). Writes
//! are compare-and-swap on the mod revision; watches replay history from any revision that has
//! not been compacted away, then follow live changes pushed from the write path.
//!
//! Two backends implement [`Store`]: [`sqlite::SqliteStore`] (the default, a log-structured table
//! in one SQLite file with group commit) and [`etcd::EtcdStore`] (etcd v3 under a key prefix). The
//! conformance suite in `tests/conformance.rs` runs every behaviour against both.
//!
//! This crate knows nothing of Kubernetes objects; only the API server uses it.

pub mod compaction;
pub mod etcd;
pub mod identity;
mod keys;
pub mod sqlite;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use compaction::CompactionPolicy;
pub use keys::{ContinueToken, prefix_end};
pub use watch::WatchStream;

/// A global revision. Revisions start at 1; 0 means "none" (no key yet, no history asked for).
pub type Revision = i64;

/// One key as stored at some revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the change that created the key (a delete and re-create starts afresh).
    pub create_revision: Revision,
    /// Revision of the last change to the key: the value to compare-and-swap against.
    pub mod_revision: Revision,
    /// Number of changes since creation, 1 for a fresh key.
    pub version: i64,
}

impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created (`prev` is `None`) or updated (`prev` holds the old value).
    Put,
    /// The key was deleted; `kv` holds the key and the deletion revision, `prev` the last value.
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// The key after the change. For a delete: the key, an empty value, and the deletion
    /// revision as `mod_revision`.
    pub kv: KeyValue,
    /// The key before the change, for updates and deletes.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Read at this revision instead of the current one (fails with [`Error::Compacted`] if it
    /// was compacted away).
    pub revision: Option<Revision>,
    /// The token from a previous page; it pins the revision of the first page.
    pub continue_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at; every page of one list has the same.
    pub revision: Revision,
    /// Set when more keys remain; pass it back for the next page.
    pub continue_token: Option<String>,
}

/// What a delete removed.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The revision of the deletion.
    pub revision: Revision,
    /// The key as it was just before.
    pub prev: KeyValue,
}

/// Errors, each naming what was wrong and, where one exists, what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// The compare-and-swap failed: the key changed since `expected`. `current` is what is there
    /// now, so a caller can retry without another read.
    #[error("key {key:?} was modified: expected revision {expected}, found {}", current.mod_revision)]
    Conflict { key: String, expected: Revision, current: Box<KeyValue> },
    /// History at `requested` is gone; the caller must start again from a fresh list.
    #[error("revision {requested} has been compacted (history starts after revision {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// A watch could not keep up with the write rate and was closed; watch again from the last
    /// revision received.
    #[error("watch fell behind the write stream and was closed; resume from revision {last_delivered}")]
    WatchLagged { last_delivered: Revision },
    /// The data could not be opened (missing permissions, not a database, in use, ...).
    #[error("cannot open the datastore at {path}: {reason}. {hint}")]
    Open { path: PathBuf, reason: String, hint: &'static str },
    /// The backend failed the operation. A failed write was not applied, with one exception:
    /// on etcd, a write whose answer was lost (a timeout, a connection dropped mid-request) may
    /// have been applied, so re-read before retrying it.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// The stored data is not what this version of tug wrote.
    #[error("datastore is corrupt: {0}")]
    Corrupt(String),
}

impl Error {
    /// The store's own failure (not a precondition the caller can fix).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Corrupt(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The revisioned key-value store. Every backend passes the same conformance suite.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the latest change.
    async fn current_revision(&self) -> Result<Revision>;

    /// The key at `revision` (default: now), or `None` if it did not exist then.
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, all read at one revision.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;

    /// Creates the key; fails with [`Error::AlreadyExists`] if it exists. A `ttl` makes the key
    /// vanish (with a delete event) once it runs out. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<Revision>;

    /// Replaces the value if the key's mod revision is still `expected`
    /// ([`Error::Conflict`] otherwise). The `ttl` replaces any earlier one. Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision, ttl: Option<Duration>) -> Result<Revision>;

    /// Deletes the key, if `expected` is given only while its mod revision is still that.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted>;

    /// Every change to keys under `prefix` with a revision greater than `after`, in revision
    /// order, then live changes as they commit. `after` older than the compacted revision fails
    /// with [`Error::Compacted`].
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Drops history up to and including `revision` (latest values stay readable).
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision up to which history has been dropped (0 if never).
    async fn compacted_revision(&self) -> Result<Revision>;
}

/// Where the data lives, parsed from `--datastore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// `sqlite` (under the data dir) or `sqlite:///path/to/file.db`.
    Sqlite { path: PathBuf },
    /// `etcd://h1:2379,h2:2379[/prefix]`.
    Etcd { endpoints: Vec<String>, prefix: String },
}

impl Datastore {
    /// Parses a `--datastore` value; `data_dir` places the default SQLite file.
    pub fn parse(spec: &str, data_dir: &std::path::Path) -> std::result::Result<Self, String> {
        if spec == "sqlite" {
            return Ok(Datastore::Sqlite { path: data_dir.join("state.db") });
        }
        if let Some(path) = spec.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite:///var/lib/tug/state.db".into());
            }
            return Ok(Datastore::Sqlite { path: PathBuf::from(path) });
        }
        if let Some(rest) = spec.strip_prefix("etcd://") {
            let (hosts, prefix) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].to_string()),
                None => (rest, "/tugboat".to_string()),
            };
            let endpoints: Vec<String> =
                hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("http://{h}")).collect();
            if endpoints.is_empty() {
                return Err("etcd:// needs at least one host:port, e.g. etcd://127.0.0.1:2379".into());
            }
            for e in &endpoints {
                let hostport = &e["http://".len()..];
                let port_ok = hostport.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !port_ok {
                    return Err(format!("etcd endpoint {hostport:?} is not host:port"));
                }
            }
            return Ok(Datastore::Etcd { endpoints, prefix });
        }
        Err(format!(
            "unknown datastore {spec:?}: use `sqlite`, `sqlite:///path/file.db` or `etcd://host:port[,host:port...][/prefix]`"
        ))
    }
}

/// Opens the datastore with the given compaction policy.
pub async fn open(datastore: &Datastore, policy: CompactionPolicy) -> Result<Arc<dyn Store>> {
    match datastore {
        Datastore::Sqlite { path } => {
            let options = sqlite::SqliteOptions { compaction: policy, ..Default::default() };
            Ok(Arc::new(sqlite::SqliteStore::open(path, options).await?))
        }
        Datastore::Etcd { endpoints, prefix } => {
            let options = etcd::EtcdOptions { compaction: policy, ..Default::default() };
            Ok(Arc::new(etcd::EtcdStore::connect(endpoints, prefix, options).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn parses_datastore_specs() {
        let dir = Path::new("/d");
        assert_eq!(Datastore::parse("sqlite", dir).unwrap(), Datastore::Sqlite { path: "/d/state.db".into() });
        assert_eq!(Datastore::parse("sqlite:///x/y.db", dir).unwrap(), Datastore::Sqlite { path: "/x/y.db".into() });
        assert_eq!(
            Datastore::parse("etcd://a:1,b:2/pfx", dir).unwrap(),
            Datastore::Etcd { endpoints: vec!["http://a:1".into(), "http://b:2".into()], prefix: "/pfx".into() }
        );
        assert_eq!(
            Datastore::parse("etcd://a:1", dir).unwrap(),
            Datastore::Etcd { endpoints: vec!["http://a:1".into()], prefix: "/tugboat".into() }
        );
        for bad in ["mysql://x", "etcd://", "etcd://nohost", "sqlite://"] {
            assert!(Datastore::parse(bad, dir).is_err(), "{bad} should be rejected");
        }
    }
}
