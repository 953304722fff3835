//! Which datastore a data directory belongs to, so that a lost or emptied datastore is never
//! mistaken for a new cluster.
//!
//! At the first start a random identity is written twice: into the store (the key
//! [`IDENTITY_KEY`], outside `/registry/`) and into the data directory ([`MARKER_FILE`]). Every
//! later start compares the two. A data directory that knows its datastore (or holds the
//! credentials of a cluster that ran) but finds the store empty — a `state.db` truncated to 0
//! bytes, deleted, or an etcd prefix wiped — or finds another cluster's store, is refused with
//! what is wrong, where, how to restore, and how to start fresh on purpose (`reset`). This works
//! the same for both backends, because it only uses the [`Store`] trait.

use crate::{Datastore, ListOptions, Store};
use std::path::{Path, PathBuf};

/// The file in the data directory naming the datastore it belongs to.
pub const MARKER_FILE: &str = "datastore-id";
/// The store key holding the datastore's identity.
pub const IDENTITY_KEY: &str = "/tugboat/datastore-id";

/// What the check found, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A new cluster: the identity was written to the store and the data directory.
    Created { id: String },
    /// The store is the one the data directory last used.
    Matched { id: String },
    /// One side had no record yet (a store or data dir from before identities, or a data dir
    /// new to an existing store); the identity was recorded on the side missing it.
    Recorded { id: String },
    /// `reset` was given for an empty or different store: it is now this data dir's datastore.
    Reset { id: String, previous: Option<String> },
}

/// Why the server must not start on this datastore.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error("cannot {action} {path}: {source}. Check the data directory's permissions.")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a missing or empty SQLite file looked like before it was opened (opening creates it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Missing,
    Empty,
    Present,
}

impl FileState {
    /// The state of a SQLite file; an empty main file whose WAL holds data counts as present
    /// (SQLite recovers it from the WAL).
    pub fn of_sqlite(path: &Path) -> FileState {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
        match len(path) {
            None => FileState::Missing,
            Some(0) if len(&crate::sqlite::wal_path(path)).unwrap_or(0) == 0 => FileState::Empty,
            Some(_) => FileState::Present,
        }
    }
}

/// The data directory as the server found it.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub path: PathBuf,
    /// Files that only a cluster that has run leaves behind (its CA, its tokens): with no marker,
    /// their presence still says the store once held data.
    pub credentials: Vec<PathBuf>,
}

impl DataDir {
    fn marker(&self) -> PathBuf {
        self.path.join(MARKER_FILE)
    }

    fn read_marker(&self) -> Result<Option<String>, IdentityError> {
        let path = self.marker();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(IdentityError::Io { action: "read", path, source }),
        }
    }

    fn write_marker(&self, id: &str) -> Result<(), IdentityError> {
        let path = self.marker();
        let tmp = self.path.join(format!("{MARKER_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(format!("{id}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.path)?.sync_all()
        };
        write().map_err(|source| IdentityError::Io { action: "write", path, source })
    }

    fn present_credentials(&self) -> Vec<&Path> {
        self.credentials.iter().filter(|p| p.exists()).map(PathBuf::as_path).collect()
    }
}

/// A fresh random identity: 128 bits from the kernel, in hex.
fn new_id() -> Result<String, IdentityError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(|source| {
        IdentityError::Io { action: "read random bytes from", path: PathBuf::from("/dev/urandom"), source }
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn store_id(store: &dyn Store) -> Result<Option<String>, IdentityError> {
    Ok(store.get(IDENTITY_KEY, None).await?.map(|kv| String::from_utf8_lossy(&kv.value).trim().to_string()))
}

/// Writes `id` as the store's identity, replacing whatever was there.
async fn set_store_id(store: &dyn Store, id: &str) -> Result<(), IdentityError> {
    match store.get(IDENTITY_KEY, None).await? {
        Some(kv) => store.update(IDENTITY_KEY, id.as_bytes().to_vec(), kv.mod_revision, None).await?,
        None => store.create(IDENTITY_KEY, id.as_bytes().to_vec(), None).await?,
    };
    Ok(())
}

/// Compares the store's identity with the data directory's, recording it where it is missing.
/// `file` is the SQLite file's state before it was opened (`None` for etcd). With `reset`, an
/// empty or different store is accepted and becomes this data dir's datastore.
pub async fn verify(
    store: &dyn Store,
    datastore: &Datastore,
    file: Option<FileState>,
    dir: &DataDir,
    reset: bool,
) -> Result<Verified, IdentityError> {
    let marker = dir.read_marker()?;
    let stored = store_id(store).await?;
    let empty = store.list("", ListOptions { limit: 1, ..Default::default() }).await?.items.is_empty();
    match (marker, stored) {
        (Some(m), Some(s)) if m == s => Ok(Verified::Matched { id: m }),
        (Some(m), Some(s)) => {
            if !reset {
                return Err(IdentityError::Refused(other_cluster(datastore, dir, &m, &s)));
            }
            dir.write_marker(&s)?;
            Ok(Verified::Reset { id: s, previous: Some(m) })
        }
        (None, Some(s)) => {
            dir.write_marker(&s)?;
            Ok(Verified::Recorded { id: s })
        }
        (marker, None) if !empty => {
            // Data from before identities existed (or a backup of it): keep the data dir's
            // identity if it has one.
            let id = match marker {
                Some(m) => m,
                None => new_id()?,
            };
            set_store_id(store, &id).await?;
            dir.write_marker(&id)?;
            Ok(Verified::Recorded { id })
        }
        (marker, None) => {
            let credentials = dir.present_credentials();
            if (marker.is_some() || !credentials.is_empty()) && !reset {
                return Err(IdentityError::Refused(empty_store(datastore, file, dir, marker.as_deref(), &credentials)));
            }
            let id = new_id()?;
            set_store_id(store, &id).await?;
            dir.write_marker(&id)?;
            if marker.is_some() || !credentials.is_empty() {
                Ok(Verified::Reset { id, previous: marker })
            } else {
                Ok(Verified::Created { id })
            }
        }
    }
}

/// Opens the datastore (compaction off, so nothing but the identity is written), checks it
/// against the data directory with [`verify`], and closes it again. A missing or empty SQLite
/// file is refused before it is opened, so the evidence stays as it was found.
pub async fn check_data_dir(datastore: &Datastore, dir: &DataDir, reset: bool) -> Result<Verified, IdentityError> {
    let file = match datastore {
        Datastore::Sqlite { path } => Some(FileState::of_sqlite(path)),
        Datastore::Etcd { .. } => None,
    };
    if let Some(state) = file
        && let Some(refusal) = refuse_missing_file(datastore, state, dir, reset)?
    {
        return Err(IdentityError::Refused(refusal));
    }
    let store = crate::open(datastore, crate::CompactionPolicy::manual()).await?;
    let verified = verify(store.as_ref(), datastore, file, dir, reset).await;
    // Closing a SQLite store waits for its writer thread: not on an async worker.
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    verified
}

/// The refusal for a SQLite file that is missing or empty, decided before opening it (opening
/// would turn it into an empty database). `None` when the file may be opened.
fn refuse_missing_file(
    datastore: &Datastore,
    file: FileState,
    dir: &DataDir,
    reset: bool,
) -> Result<Option<String>, IdentityError> {
    if reset || file == FileState::Present {
        return Ok(None);
    }
    let marker = dir.read_marker()?;
    let credentials = dir.present_credentials();
    if marker.is_none() && credentials.is_empty() {
        return Ok(None);
    }
    Ok(Some(empty_store(datastore, Some(file), dir, marker.as_deref(), &credentials)))
}

fn fresh_start_advice(dir: &DataDir) -> String {
    format!(
        "To start over on purpose with an empty datastore, keeping this data dir's CA and tokens \
         (kubeconfig and node token stay valid), start once with --reset-datastore. To start a \
         new cluster with new credentials instead, move {} aside and start with an empty --data-dir.",
        dir.path.display()
    )
}

fn restore_advice(datastore: &Datastore) -> String {
    match datastore {
        Datastore::Sqlite { path } => format!(
            "To restore: stop every tug server using it, copy your backup of the database to {} \
             (a backup is a copy of state.db taken while the server was stopped, or one made \
             while it runs with `sqlite3 {} \".backup /path/to/copy.db\"`), remove any stale {}-wal \
             and {}-shm beside it, and start again.",
            path.display(),
            path.display(),
            path.display(),
            path.display()
        ),
        Datastore::Etcd { endpoints, prefix } => format!(
            "To restore: point --datastore at the etcd that holds this cluster's keys, or restore \
             your etcd snapshot of it (`etcdctl snapshot restore`) and start again (etcd: {}, \
             prefix {prefix}).",
            endpoints.join(",")
        ),
    }
}

fn describe(datastore: &Datastore) -> String {
    match datastore {
        Datastore::Sqlite { path } => format!("the SQLite database {}", path.display()),
        Datastore::Etcd { endpoints, prefix } => format!("the etcd prefix {prefix} at {}", endpoints.join(",")),
    }
}

fn empty_store(
    datastore: &Datastore,
    file: Option<FileState>,
    dir: &DataDir,
    marker: Option<&str>,
    credentials: &[&Path],
) -> String {
    let what = match file {
        Some(FileState::Missing) => "does not exist",
        Some(FileState::Empty) => "is empty (0 bytes: truncated?)",
        _ => "holds no data",
    };
    let mut evidence = Vec::new();
    if let Some(id) = marker {
        evidence.push(format!("{} (datastore {id})", dir.marker().display()));
    }
    evidence.extend(credentials.iter().map(|p| p.display().to_string()));
    format!(
        "{} {what}, but the data dir {} belongs to a cluster that has stored data: it holds {}. \
         Starting would serve an empty cluster with the old CA and tokens, as if nothing had \
         ever been stored, so tug server stops here. {} {}",
        describe(datastore),
        dir.path.display(),
        evidence.join(", "),
        restore_advice(datastore),
        fresh_start_advice(dir),
    )
}

fn other_cluster(datastore: &Datastore, dir: &DataDir, marker: &str, stored: &str) -> String {
    format!(
        "{} belongs to another cluster (datastore {stored}) than the data dir {} (datastore \
         {marker}, recorded in {}): the CA and tokens here do not go with its data. Point \
         --datastore or --data-dir at the matching pair. {} To use this datastore with this data \
         dir anyway, start once with --reset-datastore.",
        describe(datastore),
        dir.path.display(),
        dir.marker().display(),
        restore_advice(datastore),
    )
}
