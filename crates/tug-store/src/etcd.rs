//! The etcd v3 backend: every key lives in etcd under one prefix, and revisions are etcd's own.
//!
//! A store key `/registry/x` with prefix `/tugboat` is the etcd key `/tugboat/registry/x`, so
//! `etcdctl get --prefix /tugboat/` shows the data as Kubernetes lays it out. The prefix must
//! not be a string prefix of another tenant's prefix (`/tug` and `/tugboat` would see each
//! other's keys under an empty list prefix).
//!
//! Compare-and-swap writes are single etcd transactions whose failure branch reads the key, so
//! a conflict answers with the current value in the same round trip. Keys with a time-to-live
//! are attached to etcd leases. Watches are etcd watches, resumed after a lost connection from
//! the last revision delivered. The compacted revision is etcd's own compaction revision; etcd
//! does not report it directly, so it is learned at connect time (and after a `Compacted`
//! error) by bisecting reads at old revisions, which fail exactly below it. Nothing of tug's
//! own is stored in etcd beside the user's keys.

use crate::compaction::{CompactionPolicy, RevisionClock};
use crate::keys::{ContinueToken, key_after, prefix_end};
use crate::{
    Deleted, Error, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchEvent, WatchStream,
};
use etcd_client as ec;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const OPEN_HINT: &str = "check that etcd is running and reachable at that address, or fix --datastore";
/// Undelivered events a watch holds before it stops reading from etcd (backpressure).
const WATCH_BUFFER: usize = 1024;
/// How long a broken watch keeps trying to re-establish itself before it reports the outage.
const RESUME_BUDGET: Duration = Duration::from_secs(30);
const RESUME_FIRST_DELAY: Duration = Duration::from_millis(100);
const RESUME_MAX_DELAY: Duration = Duration::from_secs(2);
/// A lease granted this recently is reused for other keys with the same TTL (as
/// kube-apiserver does): one lease grant per burst of writes instead of one per write. Leases
/// are granted this much longer than asked so that no key expires before its TTL.
const LEASE_REUSE: Duration = Duration::from_secs(1);
/// etcd refuses leases longer than this (its `MaxLeaseTTL`).
const MAX_LEASE_SECONDS: i64 = 9_000_000_000;
/// Compaction intervals beyond this mean "only when asked", as for the SQLite backend.
const NEVER: Duration = Duration::from_secs(86_400);
/// The shortest compaction interval honoured, so a zero interval cannot spin.
const MIN_COMPACTION_INTERVAL: Duration = Duration::from_millis(100);
/// HTTP/2 keep-alive on streams, so a silently dead etcd breaks watches instead of hanging
/// them. etcd refuses pings more often than every 5 s, and pings without streams at all.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest reply accepted from etcd. gRPC's default of 4 MiB is less than one unpaginated
/// list or one batch of watch events with 1.5 MiB values; kube-apiserver lifts it the same way.
const MAX_REPLY_BYTES: usize = i32::MAX as usize;
/// Bound on the bisection that learns etcd's compacted revision (2^64 revisions).
const MAX_PROBES: usize = 64;

#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub compaction: CompactionPolicy,
    /// How long to wait for a TCP connection to etcd (and for the first answer at connect).
    pub dial_timeout: Duration,
    /// How long to wait for any one request.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            compaction: CompactionPolicy::default(),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why an etcd request failed, as far as callers care.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fail {
    /// Below etcd's compaction revision (the revision, when etcd said which).
    Compacted(Option<Revision>),
    /// Beyond etcd's current revision.
    Future,
    /// A cached lease vanished (expired, revoked); grant a fresh one.
    LeaseNotFound,
    /// Anything else: connection lost, timeout, refused.
    Other(String),
}

/// Sorts an etcd error by what the caller must do about it.
fn classify(e: &ec::Error) -> Fail {
    match e {
        ec::Error::GRpcStatus(status) => known_condition(status.message()).unwrap_or_else(|| Fail::Other(describe(e))),
        _ => Fail::Other(describe(e)),
    }
}

/// etcd reports these conditions only as gRPC status messages
/// (`etcdserver: mvcc: required revision has been compacted`, ...).
fn known_condition(message: &str) -> Option<Fail> {
    if message.contains("required revision has been compacted") {
        Some(Fail::Compacted(None))
    } else if message.contains("required revision is a future revision") {
        Some(Fail::Future)
    } else if message.contains("requested lease not found") {
        Some(Fail::LeaseNotFound)
    } else {
        None
    }
}

/// The error with its causes: tonic hides "connection refused" two levels down.
fn describe(e: &ec::Error) -> String {
    use std::error::Error as _;
    // etcd_client::Error itself reports no source; the tonic values inside it do.
    let (mut text, mut source) = match e {
        ec::Error::GRpcStatus(status) if !status.message().is_empty() => {
            (format!("{:?}: {}", status.code(), status.message()), status.source())
        }
        ec::Error::GRpcStatus(status) => (format!("{:?}", status.code()), status.source()),
        ec::Error::TransportError(t) => (e.to_string(), t.source()),
        other => (other.to_string(), None),
    };
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The prefix as stored: trailing slashes dropped, so `/tugboat/` and `/tugboat` share data.
fn normalize_prefix(prefix: &str) -> String {
    prefix.trim_end_matches('/').to_string()
}

/// The store key of an etcd key under `prefix`.
fn user_key(prefix: &[u8], raw: &[u8]) -> Result<String> {
    let rest = raw.strip_prefix(prefix).ok_or_else(|| {
        Error::Corrupt(format!(
            "etcd returned key {:?} outside the prefix {:?}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(prefix)
        ))
    })?;
    String::from_utf8(rest.to_vec()).map_err(|_| {
        Error::Corrupt(format!(
            "etcd key {:?} is not UTF-8, so tug did not write it; remove it with etcdctl",
            String::from_utf8_lossy(raw)
        ))
    })
}

/// The etcd range `[start, end)` holding every store key that starts with `user_prefix`.
fn key_range(prefix: &[u8], user_prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = prefix.to_vec();
    start.extend_from_slice(user_prefix.as_bytes());
    // etcd spells "no upper bound" as a lone NUL, and refuses an empty key.
    let end = prefix_end(&start).unwrap_or_else(|| vec![0]);
    if start.is_empty() {
        start.push(0);
    }
    (start, end)
}

/// Whole seconds for an etcd lease: etcd counts in seconds, and a key must not vanish early.
fn lease_seconds(ttl: Duration) -> i64 {
    let secs = ttl.as_secs().saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX).clamp(1, MAX_LEASE_SECONDS)
}

/// Builds the event a watcher sees, in the shape the SQLite backend produces.
fn watch_event(kind: EventKind, kv: KeyValue, prev: Option<KeyValue>) -> WatchEvent {
    match kind {
        EventKind::Put => {
            // etcd sends no previous value for a creation; anything it might is not one.
            let prev = if kv.version == 1 { None } else { prev };
            WatchEvent { kind, kv, prev }
        }
        EventKind::Delete => {
            let kv = KeyValue {
                create_revision: prev.as_ref().map_or(0, |p| p.create_revision),
                value: Vec::new(),
                version: 0,
                ..kv
            };
            WatchEvent { kind, kv, prev }
        }
    }
}

fn header_revision(header: Option<&ec::ResponseHeader>) -> Result<Revision> {
    header.map(|h| h.revision()).ok_or_else(|| Error::Unavailable("etcd answered without a response header".into()))
}

/// What every request path shares: the client, the key prefix and what we know of compaction.
/// Watch and compactor tasks hold it too, so it is separate from [`EtcdStore`].
struct Conn {
    client: ec::Client,
    /// Clients with the reply size limit raised (below).
    kv: ec::KvClient,
    watch: ec::WatchClient,
    prefix: Vec<u8>,
    /// The endpoints, for error messages.
    target: String,
    request_timeout: Duration,
    /// etcd's compaction revision as far as we know it (a lower bound of the truth).
    compacted: AtomicI64,
}

impl Conn {
    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// A single etcd key for cheap reads that only want a header or a revision check. Any key
    /// works: reads check the revision before they look at keys.
    fn probe_key(&self) -> Vec<u8> {
        if self.prefix.is_empty() { vec![0] } else { self.prefix.clone() }
    }

    fn to_kv(&self, kv: &ec::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: user_key(&self.prefix, kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        })
    }

    /// Runs one request with the request timeout.
    async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = std::result::Result<T, ec::Error>>,
    ) -> std::result::Result<T, Fail> {
        self.call_within(self.request_timeout, what, request).await
    }

    async fn call_within<T>(
        &self,
        limit: Duration,
        what: &str,
        request: impl Future<Output = std::result::Result<T, ec::Error>>,
    ) -> std::result::Result<T, Fail> {
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(match classify(&e) {
                Fail::Other(text) => Fail::Other(format!("{what} at etcd {}: {text}", self.target)),
                known => known,
            }),
            Err(_) => Err(Fail::Other(format!("{what} at etcd {}: no answer within {:?}", self.target, limit))),
        }
    }

    /// Turns a failure of a request made at `requested` into the store's error.
    async fn error_at(&self, fail: Fail, requested: Revision) -> Error {
        match fail {
            Fail::Compacted(reported) => {
                // The read failed, so etcd's compaction revision is above `requested`.
                let floor = reported.unwrap_or(0).max(requested.saturating_add(1));
                let compacted = self.learn_compacted(floor).await;
                Error::Compacted { requested, compacted }
            }
            Fail::Future => match self.current().await {
                Ok(current) => Error::FutureRevision { requested, current },
                Err(e) => e,
            },
            other => self.error_at_no_revision(other),
        }
    }

    async fn current(&self) -> Result<Revision> {
        let options = ec::GetOptions::new().with_count_only();
        let response =
            self.call("read the current revision", self.kv.clone().get(self.probe_key(), Some(options))).await;
        match response {
            Ok(r) => header_revision(r.header()),
            Err(fail) => Err(self.error_at_no_revision(fail)),
        }
    }

    /// For requests that name no revision, where compaction cannot be the cause.
    fn error_at_no_revision(&self, fail: Fail) -> Error {
        match fail {
            Fail::Other(text) => Error::Unavailable(text),
            Fail::LeaseNotFound => Error::Unavailable(format!(
                "etcd {} dropped the lease of a key with a time-to-live; retry",
                self.target
            )),
            other => Error::Unavailable(format!("etcd {} answered {other:?}", self.target)),
        }
    }

    /// Whether a read at `revision` succeeds: `Ok(false)` when it is below etcd's compaction
    /// revision. Beyond the current revision is an error, not "compacted", so that a wrong
    /// floor can never be recorded as a compaction.
    async fn readable_at(&self, revision: Revision) -> std::result::Result<bool, Fail> {
        let options = ec::GetOptions::new().with_count_only().with_revision(revision);
        match self.call("read at an old revision", self.kv.clone().get(self.probe_key(), Some(options))).await {
            Ok(_) => Ok(true),
            Err(Fail::Compacted(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Learns etcd's compaction revision C, given `floor <= C`, and records it. A read at r
    /// fails exactly when r < C, so C is the first readable revision: bisect for it. If etcd
    /// stops answering midway, what the probes so far proved is kept.
    async fn learn_compacted(&self, floor: Revision) -> Revision {
        // C >= proven holds throughout.
        let mut proven = floor.max(self.compacted.load(Ordering::Acquire));
        let learned = async {
            let mut lo = proven.max(1);
            if self.readable_at(lo).await? {
                return Ok(lo);
            }
            lo += 1;
            proven = lo;
            // Always readable: the current revision (etcd never compacts beyond it).
            let mut hi = match self.current().await {
                Ok(current) => current.max(lo),
                Err(e) => return Err(Fail::Other(e.to_string())),
            };
            for _ in 0..MAX_PROBES {
                if lo >= hi {
                    break;
                }
                let mid = lo + (hi - lo) / 2;
                if self.readable_at(mid).await? {
                    hi = mid;
                } else {
                    lo = mid + 1;
                    proven = lo;
                }
            }
            Ok(hi)
        }
        .await;
        let compacted = match learned {
            // A first readable revision of 1 means "never compacted" (or compacted at 1, which
            // drops nothing a watch from 0 could miss).
            Ok(first_readable) if first_readable <= 1 => 0,
            Ok(first_readable) => first_readable,
            Err(fail) => {
                tracing::warn!(?fail, "cannot learn etcd's compacted revision");
                proven
            }
        };
        self.compacted.fetch_max(compacted, Ordering::AcqRel);
        self.compacted.load(Ordering::Acquire)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let known = self.compacted.load(Ordering::Acquire);
        if revision <= known {
            // Same answers as the SQLite backend: again at the same revision is a no-op, below
            // it asks for history that is already gone.
            return if revision == known {
                Ok(())
            } else {
                Err(Error::Compacted { requested: revision, compacted: known })
            };
        }
        let mut kv = self.kv.clone();
        match self.call("compact", kv.compact(revision, None)).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            Err(Fail::Compacted(_)) => {
                // Someone else (another tug server, an operator) compacted at or beyond it.
                let compacted = self.learn_compacted(revision).await;
                if compacted == revision { Ok(()) } else { Err(Error::Compacted { requested: revision, compacted }) }
            }
            Err(fail) => Err(self.error_at(fail, revision).await),
        }
    }
}

/// An `etcd_client::Client` under a key prefix. Dropping it stops the compactor and ends every
/// watch it started.
pub struct EtcdStore {
    conn: Arc<Conn>,
    /// Recently granted leases by TTL in seconds (see [`LEASE_REUSE`]).
    leases: Mutex<HashMap<i64, (i64, Instant)>>,
    /// Never sent on: dropping it wakes every task holding a receiver, which then ends.
    shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.conn.target)
            .field("prefix", &String::from_utf8_lossy(&self.conn.prefix))
            .field("compacted", &self.conn.compacted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`) and checks that it answers, so a
    /// wrong address fails here, within about `dial_timeout`, rather than at the first request.
    pub async fn connect(endpoints: &[String], prefix: &str, options: EtcdOptions) -> Result<EtcdStore> {
        let target = endpoints.join(",");
        let open_error = |reason: String| Error::Open { path: PathBuf::from(&target), reason, hint: OPEN_HINT };
        if endpoints.is_empty() {
            return Err(open_error("no etcd endpoint given".into()));
        }
        let dial = options.dial_timeout;
        let connect_options = ec::ConnectOptions::new()
            .with_connect_timeout(dial)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false);
        let client = match tokio::time::timeout(dial, ec::Client::connect(endpoints, Some(connect_options))).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(open_error(describe(&e))),
            Err(_) => return Err(open_error(format!("no connection within {dial:?}"))),
        };
        let conn = Arc::new(Conn {
            kv: client.kv_client().max_decoding_message_size(MAX_REPLY_BYTES),
            watch: client.watch_client().max_decoding_message_size(MAX_REPLY_BYTES),
            client,
            prefix: normalize_prefix(prefix).into_bytes(),
            target: target.clone(),
            request_timeout: options.request_timeout,
            compacted: AtomicI64::new(0),
        });
        // The client connects lazily: one real request proves etcd is there.
        let mut kv = conn.kv.clone();
        let probe = kv.get(conn.probe_key(), Some(ec::GetOptions::new().with_count_only()));
        match conn.call_within(dial, "first request", probe).await {
            Ok(_) => {}
            Err(Fail::Other(text)) => return Err(open_error(text)),
            Err(other) => return Err(open_error(format!("unexpected answer: {other:?}"))),
        }
        // So that a restarted tug reports the compaction an earlier run (or anyone) did.
        conn.learn_compacted(0).await;

        let (shutdown, _) = watch::channel(());
        spawn_compactor(Arc::clone(&conn), options.compaction, shutdown.subscribe());
        Ok(EtcdStore { conn, leases: Mutex::new(HashMap::new()), shutdown })
    }

    /// A lease for a key with `ttl`: a recent one with the same TTL, or a new one.
    async fn lease_for(&self, ttl: Duration) -> Result<i64> {
        let secs = lease_seconds(ttl);
        let now = Instant::now();
        let cached = self.leases.lock().unwrap_or_else(|p| p.into_inner()).get(&secs).copied();
        if let Some((id, granted)) = cached
            && now.saturating_duration_since(granted) < LEASE_REUSE
        {
            return Ok(id);
        }
        let grant_secs = secs.saturating_add(LEASE_REUSE.as_secs().max(1) as i64).min(MAX_LEASE_SECONDS);
        let response = self
            .conn
            .call("grant a lease", self.conn.client.lease_client().grant(grant_secs, None))
            .await
            .map_err(|fail| self.conn.error_at_no_revision(fail))?;
        if !response.error().is_empty() {
            return Err(Error::Unavailable(format!(
                "etcd {} refused a {grant_secs} s lease: {}",
                self.conn.target,
                response.error()
            )));
        }
        let id = response.id();
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|_, (_, granted)| now.saturating_duration_since(*granted) < LEASE_REUSE);
        leases.insert(secs, (id, now));
        Ok(id)
    }

    fn forget_lease(&self, ttl: Duration, id: i64) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.get(&lease_seconds(ttl)).is_some_and(|&(cached, _)| cached == id) {
            leases.remove(&lease_seconds(ttl));
        }
    }

    /// Runs a write transaction whose put carries the lease for `ttl`. `build` gets the put's
    /// options. A reused lease may have expired meanwhile: then once more with a fresh one.
    async fn write_txn(
        &self,
        ttl: Option<Duration>,
        build: impl Fn(Option<ec::PutOptions>) -> ec::Txn,
    ) -> Result<ec::TxnResponse> {
        let mut retried = false;
        loop {
            let lease = match ttl {
                Some(ttl) => Some(self.lease_for(ttl).await?),
                None => None,
            };
            let txn = build(lease.map(|id| ec::PutOptions::new().with_lease(id)));
            match self.conn.call("write", self.conn.kv.clone().txn(txn)).await {
                Ok(response) => return Ok(response),
                Err(Fail::LeaseNotFound) if !retried => {
                    if let (Some(ttl), Some(id)) = (ttl, lease) {
                        self.forget_lease(ttl, id);
                    }
                    retried = true;
                }
                Err(fail) => return Err(self.conn.error_at_no_revision(fail)),
            }
        }
    }

    /// The key as the failure branch of a transaction read it: `Conflict` if present,
    /// `NotFound` if not.
    fn precondition_failed(&self, response: &ec::TxnResponse, key: &str, expected: Revision) -> Error {
        let current = response.op_responses().into_iter().find_map(|op| match op {
            ec::TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| self.conn.to_kv(kv))),
            _ => None,
        });
        match current {
            Some(Some(Ok(current))) => Error::Conflict { key: key.to_string(), expected, current: Box::new(current) },
            Some(Some(Err(e))) => e,
            Some(None) => Error::NotFound { key: key.to_string() },
            None => Error::Unavailable(format!(
                "etcd {} answered a failed transaction without the read it asked for",
                self.conn.target
            )),
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.conn.current().await
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let at = revision.filter(|&r| r > 0);
        let mut options = ec::GetOptions::new();
        if let Some(r) = at {
            options = options.with_revision(r);
        }
        let mut kv = self.conn.kv.clone();
        let request = kv.get(self.conn.full_key(key), Some(options));
        match self.conn.call("get", request).await {
            Ok(response) => response.kvs().first().map(|kv| self.conn.to_kv(kv)).transpose(),
            Err(fail) => Err(self.conn.error_at(fail, at.unwrap_or(0)).await),
        }
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let (mut start, end) = key_range(&self.conn.prefix, prefix);
        let mut at = options.revision.filter(|&r| r > 0);
        if let Some(token) = &options.continue_token {
            let token = ContinueToken::decode(token)?;
            if !token.last_key.starts_with(prefix) {
                return Err(Error::InvalidContinue(format!(
                    "token is for key {:?}, not under prefix {prefix:?}",
                    token.last_key
                )));
            }
            at = Some(token.revision);
            start = self.conn.full_key("");
            start.extend_from_slice(&key_after(&token.last_key));
        }
        let mut get = ec::GetOptions::new().with_range(end);
        if let Some(r) = at {
            get = get.with_revision(r);
        }
        if options.limit > 0 {
            get = get.with_limit(i64::try_from(options.limit).unwrap_or(i64::MAX));
        }
        let response = match self.conn.call("list", self.conn.kv.clone().get(start, Some(get))).await {
            Ok(response) => response,
            Err(fail) => return Err(self.conn.error_at(fail, at.unwrap_or(0)).await),
        };
        // Later pages read at the first page's revision: one consistent snapshot.
        let revision = match at {
            Some(r) => r,
            None => header_revision(response.header())?,
        };
        let items = response.kvs().iter().map(|kv| self.conn.to_kv(kv)).collect::<Result<Vec<_>>>()?;
        let continue_token = match items.last() {
            Some(last) if options.limit > 0 && response.more() => {
                Some(ContinueToken { revision, last_key: last.key.clone() }.encode())
            }
            _ => None,
        };
        Ok(ListResult { items, revision, continue_token })
    }

    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<Revision> {
        let full = self.conn.full_key(key);
        let response = self
            .write_txn(ttl, |put| {
                ec::Txn::new()
                    .when([ec::Compare::create_revision(full.clone(), ec::CompareOp::Equal, 0)])
                    .and_then([ec::TxnOp::put(full.clone(), value.clone(), put)])
            })
            .await?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists { key: key.to_string() });
        }
        header_revision(response.header())
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision, ttl: Option<Duration>) -> Result<Revision> {
        let full = self.conn.full_key(key);
        let response = self
            .write_txn(ttl, |put| {
                ec::Txn::new()
                    .when([
                        // An absent key has mod revision 0: without this, `expected == 0`
                        // would create it.
                        ec::Compare::version(full.clone(), ec::CompareOp::Greater, 0),
                        ec::Compare::mod_revision(full.clone(), ec::CompareOp::Equal, expected),
                    ])
                    .and_then([ec::TxnOp::put(full.clone(), value.clone(), put)])
                    .or_else([ec::TxnOp::get(full.clone(), None)])
            })
            .await?;
        if !response.succeeded() {
            return Err(self.precondition_failed(&response, key, expected));
        }
        header_revision(response.header())
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        let full = self.conn.full_key(key);
        let compares: Vec<ec::Compare> =
            expected.map(|e| ec::Compare::mod_revision(full.clone(), ec::CompareOp::Equal, e)).into_iter().collect();
        let txn = ec::Txn::new()
            .when(compares)
            .and_then([ec::TxnOp::delete(full.clone(), Some(ec::DeleteOptions::new().with_prev_key()))])
            .or_else([ec::TxnOp::get(full, None)]);
        let response = self
            .conn
            .call("delete", self.conn.kv.clone().txn(txn))
            .await
            .map_err(|fail| self.conn.error_at_no_revision(fail))?;
        if !response.succeeded() {
            return Err(self.precondition_failed(&response, key, expected.unwrap_or(0)));
        }
        let prev = response.op_responses().into_iter().find_map(|op| match op {
            ec::TxnOpResponse::Delete(deleted) => deleted.prev_kvs().first().map(|kv| self.conn.to_kv(kv)),
            _ => None,
        });
        match prev {
            Some(prev) => Ok(Deleted { revision: header_revision(response.header())?, prev: prev? }),
            // Nothing was there (etcd did not bump the revision).
            None => Err(Error::NotFound { key: key.to_string() }),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let known = self.conn.compacted.load(Ordering::Acquire);
        if after < known {
            return Err(Error::Compacted { requested: after.saturating_add(1), compacted: known });
        }
        // etcd reports a compacted start revision only asynchronously, after the watch is
        // created. A read at `after` fails under the same rule (after < etcd's compaction
        // revision), so ask that first and fail here, as the SQLite backend does. A future
        // `after` is fine: the watch waits for it.
        let options = ec::GetOptions::new().with_count_only().with_revision(after.max(1));
        let mut kv = self.conn.kv.clone();
        let check = kv.get(self.conn.probe_key(), Some(options));
        match self.conn.call("watch", check).await {
            Ok(_) | Err(Fail::Future) => {}
            Err(Fail::Compacted(_)) => {
                let compacted = self.conn.learn_compacted(after.saturating_add(1)).await;
                return Err(Error::Compacted { requested: after.saturating_add(1), compacted });
            }
            Err(fail) => return Err(self.conn.error_at_no_revision(fail)),
        }
        let (start, end) = key_range(&self.conn.prefix, prefix);
        let watcher = Watcher {
            conn: Arc::clone(&self.conn),
            user_prefix: prefix.to_string(),
            start,
            end,
            delivered: after,
            shutdown: self.shutdown.subscribe(),
        };
        let session = match watcher.open(self.conn.request_timeout).await {
            Ok(session) => session,
            Err(Fail::Compacted(reported)) => {
                let floor = reported.unwrap_or(0).max(after.saturating_add(1));
                let compacted = self.conn.learn_compacted(floor).await;
                return Err(Error::Compacted { requested: after.saturating_add(1), compacted });
            }
            Err(fail) => return Err(self.conn.error_at_no_revision(fail)),
        };
        let (tx, stream) = WatchStream::channel(WATCH_BUFFER);
        tokio::spawn(watcher.run(session, tx));
        Ok(stream)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.conn.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.conn.compacted.load(Ordering::Acquire))
    }
}

/// Every `policy.interval`, compacts as far as the policy allows, until the store is dropped.
fn spawn_compactor(conn: Arc<Conn>, policy: CompactionPolicy, mut shutdown: watch::Receiver<()>) {
    if policy.interval > NEVER {
        return;
    }
    let interval = policy.interval.max(MIN_COMPACTION_INTERVAL);
    tokio::spawn(async move {
        let mut clock = RevisionClock::default();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let current = match conn.current().await {
                Ok(current) => current,
                Err(e) => {
                    tracing::warn!(error = %e, "compactor cannot read the current revision");
                    continue;
                }
            };
            let compacted = conn.compacted.load(Ordering::Acquire);
            if let Some(target) = clock.tick(&policy, Instant::now(), current, compacted) {
                match conn.compact(target).await {
                    Ok(()) => tracing::debug!(revision = target, "compacted etcd history"),
                    Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
                }
            }
        }
    });
}

/// One etcd watch stream carrying our one watch.
struct Session {
    stream: ec::WatchStream,
    watch_id: i64,
    /// The `created` answer, which may already carry a compaction notice.
    first: Option<ec::WatchResponse>,
}

/// Why a session stopped delivering.
enum End {
    /// The caller dropped the stream, or the store was dropped: stop quietly.
    Quit,
    /// The watch cannot go on; the error is the stream's last item.
    Fail(Error),
    /// The connection broke; resume from the last delivered revision.
    Broken(String),
}

/// The task behind one [`WatchStream`].
struct Watcher {
    conn: Arc<Conn>,
    user_prefix: String,
    start: Vec<u8>,
    end: Vec<u8>,
    /// Every change up to this revision has been delivered (or was not ours).
    delivered: Revision,
    shutdown: watch::Receiver<()>,
}

impl Watcher {
    /// Creates the etcd watch and waits until etcd confirms it, so a write made after this
    /// returns is seen. It starts AT `delivered` and skips what is not newer: etcd then refuses
    /// exactly when `delivered` is below its compaction revision, matching our rule that
    /// history up to and including the compacted revision is gone. (At revision 0 etcd would
    /// start at "now", so 1 stands in.)
    async fn open(&self, limit: Duration) -> std::result::Result<Session, Fail> {
        let options = ec::WatchOptions::new()
            .with_range(self.end.clone())
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(self.delivered.max(1));
        let deadline = tokio::time::Instant::now() + limit;
        let mut stream = self
            .conn
            .call_within(limit, "watch", self.conn.watch.clone().watch(self.start.clone(), Some(options)))
            .await?;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let response = self.conn.call_within(remaining, "watch", stream.message()).await?;
            let Some(response) = response else {
                return Err(Fail::Other(format!("etcd {} closed the watch stream", self.conn.target)));
            };
            if response.compact_revision() > 0 {
                return Err(Fail::Compacted(Some(response.compact_revision())));
            }
            if response.canceled() {
                return Err(Fail::Other(format!(
                    "etcd {} refused the watch: {}",
                    self.conn.target,
                    response.cancel_reason()
                )));
            }
            if response.created() {
                let watch_id = response.watch_id();
                return Ok(Session { stream, watch_id, first: Some(response) });
            }
        }
    }

    async fn run(mut self, mut session: Session, tx: mpsc::Sender<Result<WatchEvent>>) {
        loop {
            match self.pump(&mut session, &tx).await {
                End::Quit => {
                    // Best effort: etcd also drops the watch when the stream closes.
                    let _ = tokio::time::timeout(Duration::from_secs(1), session.stream.cancel(session.watch_id)).await;
                    return;
                }
                End::Fail(error) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), session.stream.cancel(session.watch_id)).await;
                    self.deliver(&tx, Err(error)).await;
                    return;
                }
                End::Broken(reason) => {
                    let after = self.delivered;
                    let prefix = &self.user_prefix;
                    tracing::info!(%prefix, %reason, after, "etcd watch broke; resuming");
                    match self.resume(&tx, reason).await {
                        Ok(resumed) => session = resumed,
                        Err(End::Fail(error)) => {
                            self.deliver(&tx, Err(error)).await;
                            return;
                        }
                        Err(_) => return,
                    }
                }
            }
        }
    }

    /// Passes events on until the session ends.
    async fn pump(&mut self, session: &mut Session, tx: &mpsc::Sender<Result<WatchEvent>>) -> End {
        loop {
            let response = match session.first.take() {
                Some(first) => first,
                None => {
                    let message = tokio::select! {
                        message = session.stream.message() => message,
                        _ = tx.closed() => return End::Quit,
                        _ = self.shutdown.changed() => return End::Quit,
                    };
                    match message {
                        Ok(Some(response)) => response,
                        Ok(None) => return End::Broken("etcd closed the watch stream".into()),
                        Err(e) => return End::Broken(describe(&e)),
                    }
                }
            };
            if response.compact_revision() > 0 {
                // History we still owe the caller is gone (the watch fell that far behind).
                let compacted = response.compact_revision();
                self.conn.compacted.fetch_max(compacted, Ordering::AcqRel);
                return End::Fail(Error::Compacted { requested: self.delivered.saturating_add(1), compacted });
            }
            if response.canceled() {
                return End::Broken(format!("etcd cancelled the watch: {}", response.cancel_reason()));
            }
            let events = response.events();
            if events.is_empty() && !response.created() {
                // A progress notice: every change up to its revision has been sent.
                if let Some(header) = response.header() {
                    self.delivered = self.delivered.max(header.revision());
                }
                continue;
            }
            // All events of one revision arrive in one response; skip by the mark from before
            // it, so a transaction's second event is not taken for a replay of its first.
            let floor = self.delivered;
            for event in events {
                let Some(kv) = event.kv() else { continue };
                if kv.mod_revision() <= floor {
                    continue;
                }
                let kind = match event.event_type() {
                    ec::EventType::Put => EventKind::Put,
                    ec::EventType::Delete => EventKind::Delete,
                };
                let converted = self.conn.to_kv(kv).and_then(|kv| {
                    let prev = event.prev_kv().map(|p| self.conn.to_kv(p)).transpose()?;
                    Ok(watch_event(kind, kv, prev))
                });
                let revision = kv.mod_revision();
                match converted {
                    Ok(event) => {
                        if !self.deliver(tx, Ok(event)).await {
                            return End::Quit;
                        }
                    }
                    Err(e) => return End::Fail(e),
                }
                self.delivered = self.delivered.max(revision);
            }
        }
    }

    /// Sends one item, waiting for room; false once nobody listens any more.
    async fn deliver(&mut self, tx: &mpsc::Sender<Result<WatchEvent>>, item: Result<WatchEvent>) -> bool {
        tokio::select! {
            sent = tx.send(item) => sent.is_ok(),
            _ = self.shutdown.changed() => false,
        }
    }

    /// Re-creates the watch from the last delivered revision, backing off, for up to
    /// [`RESUME_BUDGET`].
    async fn resume(
        &mut self,
        tx: &mpsc::Sender<Result<WatchEvent>>,
        mut last_error: String,
    ) -> std::result::Result<Session, End> {
        let deadline = Instant::now() + RESUME_BUDGET;
        let mut delay = RESUME_FIRST_DELAY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(End::Fail(Error::Unavailable(format!(
                    "watch of {:?} lost etcd {} and could not resume within {RESUME_BUDGET:?}: {last_error}",
                    self.user_prefix, self.conn.target
                ))));
            }
            tokio::select! {
                _ = tokio::time::sleep(delay.min(left)) => {}
                _ = tx.closed() => return Err(End::Quit),
                _ = self.shutdown.changed() => return Err(End::Quit),
            }
            delay = (delay * 2).min(RESUME_MAX_DELAY);
            let left = deadline.saturating_duration_since(Instant::now());
            match self.open(self.conn.request_timeout.min(left).max(Duration::from_millis(100))).await {
                Ok(session) => return Ok(session),
                Err(Fail::Compacted(reported)) => {
                    let compacted =
                        self.conn.learn_compacted(reported.unwrap_or(0).max(self.delivered.saturating_add(1))).await;
                    return Err(End::Fail(Error::Compacted { requested: self.delivered.saturating_add(1), compacted }));
                }
                Err(Fail::Other(text)) => last_error = text,
                Err(other) => last_error = format!("{other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: Revision, modified: Revision, version: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: modified,
            version,
        }
    }

    #[test]
    fn keys_strip_the_prefix_and_reject_foreign_ones() {
        assert_eq!(user_key(b"/tugboat", b"/tugboat/registry/x").unwrap(), "/registry/x");
        assert_eq!(user_key(b"", b"/registry/x").unwrap(), "/registry/x");
        assert!(matches!(user_key(b"/tugboat", b"/other/x"), Err(Error::Corrupt(_))));
        assert!(matches!(user_key(b"/t", b"/t/\xff"), Err(Error::Corrupt(_))));
    }

    #[test]
    fn prefix_is_normalized() {
        assert_eq!(normalize_prefix("/tugboat/"), "/tugboat");
        assert_eq!(normalize_prefix("/tugboat"), "/tugboat");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix(""), "");
    }

    #[test]
    fn key_ranges_cover_exactly_the_user_prefix() {
        assert_eq!(key_range(b"/t", "/a/"), (b"/t/a/".to_vec(), b"/t/a0".to_vec()));
        assert_eq!(key_range(b"/t", ""), (b"/t".to_vec(), b"/u".to_vec()));
        // No prefix at all: every key, spelled the way etcd accepts.
        assert_eq!(key_range(b"", ""), (vec![0], vec![0]));
    }

    #[test]
    fn lease_seconds_round_up_and_stay_in_etcds_bounds() {
        assert_eq!(lease_seconds(Duration::from_millis(1)), 1);
        assert_eq!(lease_seconds(Duration::ZERO), 1);
        assert_eq!(lease_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(lease_seconds(Duration::from_secs(30)), 30);
        assert_eq!(lease_seconds(Duration::MAX), MAX_LEASE_SECONDS);
    }

    #[test]
    fn etcd_conditions_are_recognised_by_message() {
        assert_eq!(
            known_condition("etcdserver: mvcc: required revision has been compacted"),
            Some(Fail::Compacted(None))
        );
        assert_eq!(known_condition("etcdserver: mvcc: required revision is a future revision"), Some(Fail::Future));
        assert_eq!(known_condition("etcdserver: requested lease not found"), Some(Fail::LeaseNotFound));
        assert_eq!(known_condition("etcdserver: request timed out"), None);
        assert!(matches!(classify(&ec::Error::InvalidArgs("x".into())), Fail::Other(_)));
    }

    #[test]
    fn creations_carry_no_previous_value_and_deletes_keep_the_create_revision() {
        let created = watch_event(EventKind::Put, kv("/a", "1", 5, 5, 1), Some(kv("/a", "0", 2, 3, 2)));
        assert_eq!(created.prev, None);
        let updated = watch_event(EventKind::Put, kv("/a", "2", 5, 6, 2), Some(kv("/a", "1", 5, 5, 1)));
        assert_eq!(updated.prev, Some(kv("/a", "1", 5, 5, 1)));
        let deleted = watch_event(EventKind::Delete, kv("/a", "", 0, 7, 0), Some(kv("/a", "2", 5, 6, 2)));
        assert_eq!(deleted.kv, kv("/a", "", 5, 7, 0));
        assert_eq!(deleted.revision(), 7);
        assert_eq!(deleted.prev, Some(kv("/a", "2", 5, 6, 2)));
    }
}
