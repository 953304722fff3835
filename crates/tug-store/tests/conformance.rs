//! One conformance suite, run against every backend: the embedded SQLite store and a real etcd
//! started for each test (Debian's etcd-server, on a free loopback port, removed afterwards).
//! Each case is written once against `dyn Store`; the `conformance!` macro instantiates it per
//! backend, so a behaviour cannot silently differ between them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tug_store::etcd::{EtcdOptions, EtcdStore};
use tug_store::sqlite::{SqliteOptions, SqliteStore};
use tug_store::{CompactionPolicy, Error, EventKind, ListOptions, Store, WatchEvent, WatchStream};

/// A store plus whatever keeps it alive (a temp dir or an etcd process).
struct Harness {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _etcd: Option<tug_testkit::Etcd>,
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Etcd,
}

async fn harness(backend: Backend, compaction: CompactionPolicy) -> Harness {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let options = SqliteOptions { compaction, ..Default::default() };
            let store = SqliteStore::open(&dir.path().join("state.db"), options).await.expect("open sqlite");
            Harness { store: Arc::new(store), _dir: Some(dir), _etcd: None }
        }
        Backend::Etcd => {
            let etcd = tokio::task::spawn_blocking(tug_testkit::Etcd::start).await.expect("etcd start");
            let options = EtcdOptions { compaction, ..Default::default() };
            let store = EtcdStore::connect(&[etcd.endpoint()], "/tugt", options)
                .await
                .unwrap_or_else(|e| panic!("connect to etcd: {e}\n{}", etcd.log_tail()));
            Harness { store: Arc::new(store), _dir: None, _etcd: Some(etcd) }
        }
    }
}

const DEADLINE: Duration = Duration::from_secs(15);

/// The next event, failing the test with a clear message after DEADLINE.
async fn next_event(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(DEADLINE, w.recv()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended unexpectedly"),
        Err(_) => panic!("no watch event within {DEADLINE:?}"),
    }
}

/// Asserts nothing further arrives right now (after a write barrier the caller set up).
fn assert_no_pending(w: &mut WatchStream) {
    if let Some(item) = w.try_recv() {
        panic!("unexpected extra watch item: {item:?}");
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Etcd).await;
                }
            )*
        }
    };
}

conformance!(
    crud_tracks_revisions_and_versions,
    preconditions_fail_with_the_right_error,
    reads_at_past_revisions,
    concurrent_writes_get_distinct_ordered_revisions,
    watch_replays_history_then_follows_live_changes,
    watch_filters_by_prefix,
    watch_resumes_after_dropped_connection,
    compaction_drops_history_but_keeps_latest_values,
    automatic_compaction_bounds_history,
    pagination_is_consistent_under_concurrent_writes,
    large_values_round_trip,
    ttl_keys_vanish_with_a_delete_event,
    invalid_continue_token_is_rejected,
);

async fn crud_tracks_revisions_and_versions(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let r0 = s.current_revision().await.unwrap();
    let r1 = s.create("/a/1", b"one".to_vec(), None).await.unwrap();
    assert_eq!(r1, r0 + 1);
    let kv = s.get("/a/1", None).await.unwrap().expect("created key is readable");
    assert_eq!((kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version), (&b"one"[..], r1, r1, 1));

    let r2 = s.update("/a/1", b"two".to_vec(), r1, None).await.unwrap();
    assert_eq!(r2, r1 + 1);
    let kv = s.get("/a/1", None).await.unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version), (&b"two"[..], r1, r2, 2));

    let deleted = s.delete("/a/1", Some(r2)).await.unwrap();
    assert_eq!(deleted.revision, r2 + 1);
    assert_eq!(deleted.prev.value, b"two");
    assert_eq!(deleted.prev.mod_revision, r2);
    assert!(s.get("/a/1", None).await.unwrap().is_none());
    assert_eq!(s.current_revision().await.unwrap(), r2 + 1);

    // A re-created key starts afresh.
    let r4 = s.create("/a/1", b"again".to_vec(), None).await.unwrap();
    let kv = s.get("/a/1", None).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (r4, 1));
    // An unguarded delete works too.
    s.delete("/a/1", None).await.unwrap();
}

async fn preconditions_fail_with_the_right_error(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let r1 = s.create("/p/k", b"v1".to_vec(), None).await.unwrap();
    let before = s.current_revision().await.unwrap();

    assert!(matches!(s.create("/p/k", b"x".to_vec(), None).await, Err(Error::AlreadyExists { .. })));
    match s.update("/p/k", b"x".to_vec(), r1 - 1, None).await {
        Err(Error::Conflict { expected, current, .. }) => {
            assert_eq!(expected, r1 - 1);
            assert_eq!(current.mod_revision, r1, "conflict carries the current value");
            assert_eq!(current.value, b"v1");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(matches!(s.update("/p/missing", b"x".to_vec(), 1, None).await, Err(Error::NotFound { .. })));
    assert!(matches!(s.delete("/p/k", Some(r1 + 100)).await, Err(Error::Conflict { .. })));
    assert!(matches!(s.delete("/p/missing", None).await, Err(Error::NotFound { .. })));
    // Failed preconditions change nothing, not even the revision.
    assert_eq!(s.current_revision().await.unwrap(), before);
    assert_eq!(s.get("/p/k", None).await.unwrap().unwrap().value, b"v1");
}

async fn reads_at_past_revisions(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let r1 = s.create("/h/a", b"a1".to_vec(), None).await.unwrap();
    let r2 = s.create("/h/b", b"b1".to_vec(), None).await.unwrap();
    let r3 = s.update("/h/a", b"a2".to_vec(), r1, None).await.unwrap();
    let r4 = s.delete("/h/b", None).await.unwrap().revision;

    assert_eq!(s.get("/h/a", Some(r1)).await.unwrap().unwrap().value, b"a1");
    assert_eq!(s.get("/h/a", Some(r3)).await.unwrap().unwrap().value, b"a2");
    assert!(s.get("/h/b", Some(r1)).await.unwrap().is_none(), "b did not exist yet");
    assert!(s.get("/h/b", Some(r4)).await.unwrap().is_none(), "b was deleted");

    let at_r2 = s.list("/h/", ListOptions { revision: Some(r2), ..Default::default() }).await.unwrap();
    assert_eq!(at_r2.revision, r2);
    let values: Vec<_> = at_r2.items.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect();
    assert_eq!(values, vec![("/h/a", b"a1".to_vec()), ("/h/b", b"b1".to_vec())]);
    let now = s.list("/h/", ListOptions::default()).await.unwrap();
    assert_eq!(now.revision, r4);
    assert_eq!(now.items.len(), 1);

    assert!(matches!(s.get("/h/a", Some(r4 + 1000)).await, Err(Error::FutureRevision { .. })));
}

async fn concurrent_writes_get_distinct_ordered_revisions(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let start = s.current_revision().await.unwrap();
    let mut watch = s.watch("/c/", start).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let s = Arc::clone(s);
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..20 {
                revs.push(s.create(&format!("/c/{w}/{i}"), vec![w as u8; 10], None).await.unwrap());
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let revs = t.await.unwrap();
        assert!(revs.windows(2).all(|p| p[0] < p[1]), "one writer's revisions increase");
        all.extend(revs);
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 320, "every write got its own revision");
    assert_eq!(all, ((start + 1)..=(start + 320)).collect::<Vec<_>>(), "revisions are dense");
    let mut last = start;
    for _ in 0..320 {
        let e = next_event(&mut watch).await;
        assert!(e.revision() > last, "watch delivers in revision order");
        last = e.revision();
    }
    assert_eq!(last, start + 320);
}

async fn watch_replays_history_then_follows_live_changes(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let r0 = s.current_revision().await.unwrap();
    let r1 = s.create("/w/a", b"1".to_vec(), None).await.unwrap();
    let r2 = s.update("/w/a", b"2".to_vec(), r1, None).await.unwrap();
    let r3 = s.delete("/w/a", Some(r2)).await.unwrap().revision;

    let mut w = s.watch("/w/", r0).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.kind, e.revision(), e.kv.value.as_slice(), e.prev.is_none()), (EventKind::Put, r1, &b"1"[..], true));
    let e = next_event(&mut w).await;
    assert_eq!((e.kind, e.revision(), e.kv.version), (EventKind::Put, r2, 2));
    assert_eq!(e.prev.as_ref().map(|p| (p.value.clone(), p.mod_revision)), Some((b"1".to_vec(), r1)));
    let e = next_event(&mut w).await;
    assert_eq!((e.kind, e.revision(), e.kv.key.as_str()), (EventKind::Delete, r3, "/w/a"));
    assert_eq!(e.prev.as_ref().map(|p| p.value.clone()), Some(b"2".to_vec()));

    // Watching from the middle of history starts right after that revision.
    let mut mid = s.watch("/w/", r2).await.unwrap();
    assert_eq!(next_event(&mut mid).await.revision(), r3);

    let r4 = s.create("/w/b", b"live".to_vec(), None).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.kind, e.revision(), e.kv.value.as_slice()), (EventKind::Put, r4, &b"live"[..]));
    assert_eq!(next_event(&mut mid).await.revision(), r4);
}

async fn watch_filters_by_prefix(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let now = s.current_revision().await.unwrap();
    let mut pods = s.watch("/registry/pods/", now).await.unwrap();
    let mut everything = s.watch("/", now).await.unwrap();
    s.create("/registry/services/x", b"s".to_vec(), None).await.unwrap();
    s.create("/registry/podsecurity/x", b"n".to_vec(), None).await.unwrap();
    let r = s.create("/registry/pods/x", b"p".to_vec(), None).await.unwrap();
    let e = next_event(&mut pods).await;
    assert_eq!((e.kv.key.as_str(), e.revision()), ("/registry/pods/x", r));
    for _ in 0..3 {
        next_event(&mut everything).await;
    }
    assert_no_pending(&mut pods);
}

async fn watch_resumes_after_dropped_connection(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let start = s.current_revision().await.unwrap();
    for i in 0..10 {
        s.create(&format!("/r/{i:02}"), vec![i], None).await.unwrap();
    }
    let mut w = s.watch("/r/", start).await.unwrap();
    let mut last = start;
    for _ in 0..5 {
        last = next_event(&mut w).await.revision();
    }
    drop(w); // the consumer goes away mid-stream
    for i in 10..15 {
        s.create(&format!("/r/{i:02}"), vec![i], None).await.unwrap();
    }
    let mut resumed = s.watch("/r/", last).await.unwrap();
    let mut keys = Vec::new();
    for _ in 0..10 {
        let e = next_event(&mut resumed).await;
        keys.push(e.kv.key.clone());
    }
    let expected: Vec<String> = (5..15).map(|i| format!("/r/{i:02}")).collect();
    assert_eq!(keys, expected, "no gap and no duplicate after resuming");
}

async fn compaction_drops_history_but_keeps_latest_values(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let r1 = s.create("/k/a", b"a1".to_vec(), None).await.unwrap();
    let r2 = s.update("/k/a", b"a2".to_vec(), r1, None).await.unwrap();
    let r3 = s.create("/k/b", b"b1".to_vec(), None).await.unwrap();
    s.delete("/k/b", None).await.unwrap();
    let r5 = s.create("/k/c", b"c1".to_vec(), None).await.unwrap();

    s.compact(r3).await.unwrap();
    assert!(s.compacted_revision().await.unwrap() >= r3);

    assert!(matches!(s.get("/k/a", Some(r1)).await, Err(Error::Compacted { .. })));
    let old = s.list("/k/", ListOptions { revision: Some(r2), ..Default::default() }).await;
    assert!(matches!(old, Err(Error::Compacted { .. })), "got {old:?}");
    let watch_err = match s.watch("/k/", r1).await {
        Err(e) => e,
        Ok(mut w) => next_event_error(&mut w).await,
    };
    assert!(matches!(watch_err, Error::Compacted { .. }), "got {watch_err:?}");

    // The state at the compacted revision and everything after it stay intact.
    assert_eq!(s.get("/k/a", Some(r3)).await.unwrap().unwrap().value, b"a2");
    let latest = s.list("/k/", ListOptions::default()).await.unwrap();
    let keys: Vec<_> = latest.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/k/a", "/k/c"]);
    let mut w = s.watch("/k/", r3).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.kind, e.kv.key.as_str()), (EventKind::Delete, "/k/b"));
    assert_eq!(e.prev.map(|p| p.value), Some(b"b1".to_vec()), "prev value survives compaction");
    assert_eq!(next_event(&mut w).await.revision(), r5);
    // Updating a key whose old row was compacted still works and reports its prev value.
    let a = s.get("/k/a", None).await.unwrap().unwrap();
    let r6 = s.update("/k/a", b"a3".to_vec(), a.mod_revision, None).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.revision(), e.prev.map(|p| p.value)), (r6, Some(b"a2".to_vec())));
}

/// For watches that may report compaction as their first item instead of failing up front.
async fn next_event_error(w: &mut WatchStream) -> Error {
    match tokio::time::timeout(DEADLINE, w.recv()).await {
        Ok(Some(Err(e))) => e,
        other => panic!("expected a watch error, got {other:?}"),
    }
}

async fn automatic_compaction_bounds_history(backend: Backend) {
    let policy = CompactionPolicy {
        max_age: Duration::from_secs(3600),
        max_revisions: 10,
        interval: Duration::from_millis(200),
    };
    let h = harness(backend, policy).await;
    let s = &h.store;
    let mut rev = s.create("/auto/k", b"0".to_vec(), None).await.unwrap();
    for i in 1..50u32 {
        rev = s.update("/auto/k", i.to_string().into_bytes(), rev, None).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let compacted = s.compacted_revision().await.unwrap();
        if compacted >= rev - 10 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "history not compacted: compacted {compacted}, current {rev}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(s.get("/auto/k", Some(rev - 20)).await, Err(Error::Compacted { .. })));
    assert_eq!(s.get("/auto/k", None).await.unwrap().unwrap().value, b"49");
}

async fn pagination_is_consistent_under_concurrent_writes(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    for i in 0..250 {
        s.create(&format!("/pg/{i:04}"), format!("v{i}").into_bytes(), None).await.unwrap();
    }
    // A writer churns the range while pages are read.
    let churn = {
        let s = Arc::clone(s);
        tokio::spawn(async move {
            for i in 0..200 {
                let key = format!("/pg/{:04}", (i * 7) % 250);
                if let Ok(Some(kv)) = s.get(&key, None).await {
                    let _ = s.update(&key, b"changed".to_vec(), kv.mod_revision, None).await;
                }
                let _ = s.create(&format!("/pg/new{i:04}"), b"n".to_vec(), None).await;
                let _ = s.delete(&format!("/pg/{:04}", (i * 13) % 250), None).await;
            }
        })
    };
    let mut pages = Vec::new();
    let mut token = None;
    let mut revision = None;
    loop {
        let page = s
            .list("/pg/", ListOptions { limit: 30, continue_token: token.clone(), ..Default::default() })
            .await
            .unwrap();
        assert!(page.items.len() <= 30);
        assert_eq!(*revision.get_or_insert(page.revision), page.revision, "every page is read at one revision");
        pages.extend(page.items);
        token = page.continue_token;
        if token.is_none() {
            break;
        }
        tokio::task::yield_now().await;
    }
    churn.await.unwrap();
    let snapshot = s.list("/pg/", ListOptions { revision, ..Default::default() }).await.unwrap();
    assert_eq!(pages, snapshot.items, "pages join into exactly the snapshot at their revision");
    assert_eq!(pages.len(), 250);
}

async fn large_values_round_trip(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch("/big/", start).await.unwrap();
    let r = s.create("/big/one", big.clone(), None).await.unwrap();
    assert_eq!(s.get("/big/one", None).await.unwrap().unwrap().value, big);
    assert_eq!(s.list("/big/", ListOptions::default()).await.unwrap().items[0].value, big);
    let e = next_event(&mut w).await;
    assert_eq!((e.revision(), e.kv.value.len()), (r, big.len()));
    assert!(e.kv.value == big);
}

async fn ttl_keys_vanish_with_a_delete_event(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch("/ttl/", start).await.unwrap();
    s.create("/ttl/event", b"e".to_vec(), Some(Duration::from_secs(1))).await.unwrap();
    let kept = s.create("/ttl/kept", b"k".to_vec(), Some(Duration::from_secs(1))).await.unwrap();
    // Re-writing without a TTL makes the key permanent.
    s.update("/ttl/kept", b"k2".to_vec(), kept, None).await.unwrap();
    assert!(s.get("/ttl/event", None).await.unwrap().is_some());
    let mut deletes = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while deletes.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "TTL key did not expire");
        let e = next_event(&mut w).await;
        if e.kind == EventKind::Delete {
            deletes.insert(e.kv.key.clone(), e.prev.map(|p| p.value));
        }
    }
    assert_eq!(deletes.into_iter().collect::<Vec<_>>(), vec![("/ttl/event".to_string(), Some(b"e".to_vec()))]);
    assert!(s.get("/ttl/event", None).await.unwrap().is_none());
    assert_eq!(s.get("/ttl/kept", None).await.unwrap().unwrap().value, b"k2");
}

async fn invalid_continue_token_is_rejected(backend: Backend) {
    let h = harness(backend, CompactionPolicy::manual()).await;
    let s = &h.store;
    s.create("/i/a", b"a".to_vec(), None).await.unwrap();
    let bad = s.list("/i/", ListOptions { continue_token: Some("garbage".into()), ..Default::default() }).await;
    assert!(matches!(bad, Err(Error::InvalidContinue(_))), "got {bad:?}");
}
