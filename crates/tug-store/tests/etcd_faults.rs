//! The etcd backend when etcd is not there: a clear error at start, a failed write that changes
//! nothing, and a watch that rides out an etcd restart.

use std::time::{Duration, Instant};
use tug_store::etcd::{EtcdOptions, EtcdStore};
use tug_store::{CompactionPolicy, Error, EventKind, Store};

fn options() -> EtcdOptions {
    EtcdOptions {
        compaction: CompactionPolicy::manual(),
        dial_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
    }
}

#[tokio::test]
async fn an_unreachable_etcd_is_reported_at_start() {
    // A port nothing listens on: bound then released.
    let endpoint = format!("http://127.0.0.1:{}", tug_testkit::free_port());
    let started = Instant::now();
    let err = EtcdStore::connect(std::slice::from_ref(&endpoint), "/tugt", options()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15), "gave up only after {:?}", started.elapsed());
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&endpoint[7..]) && msg.contains("etcd is running"), "names where and what to do: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_etcd_is_down_fails_and_changes_nothing() {
    let mut etcd = tokio::task::spawn_blocking(tug_testkit::Etcd::start).await.unwrap();
    let store = EtcdStore::connect(&[etcd.endpoint()], "/tugt", options()).await.unwrap();
    let r1 = store.create("/k", b"before".to_vec(), None).await.unwrap();

    etcd.stop();
    let err = store.update("/k", b"during".to_vec(), r1, None).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = store.create("/other", b"x".to_vec(), None).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    let mut etcd = restarted(etcd).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let kv = loop {
        match store.get("/k", None).await {
            Ok(kv) => break kv,
            Err(e) if Instant::now() < deadline => eprintln!("waiting for etcd to answer again: {e}"),
            Err(e) => panic!("etcd did not come back: {e}\n{}", etcd.log_tail()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let kv = kv.expect("the key written before the outage is there");
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"before"[..], r1), "the failed update left no trace");
    assert!(store.get("/other", None).await.unwrap().is_none(), "the failed create left no trace");
    assert_eq!(store.current_revision().await.unwrap(), r1);
    etcd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_by_itself_across_an_etcd_restart() {
    let etcd = tokio::task::spawn_blocking(tug_testkit::Etcd::start).await.unwrap();
    let store = EtcdStore::connect(&[etcd.endpoint()], "/tugt", options()).await.unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/w/", start).await.unwrap();
    let r1 = store.create("/w/1", b"1".to_vec(), None).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.revision(), r1);

    let mut etcd = restarted(etcd).await;
    // Writes after the restart arrive on the same stream, none lost and none repeated.
    let deadline = Instant::now() + Duration::from_secs(20);
    let r2 = loop {
        match store.create("/w/2", b"2".to_vec(), None).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => eprintln!("waiting for etcd: {e}"),
            Err(e) => panic!("etcd did not come back: {e}\n{}", etcd.log_tail()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let next = tokio::time::timeout(Duration::from_secs(20), watch.recv())
        .await
        .expect("watch delivered nothing after the restart")
        .expect("watch still open")
        .expect("no error");
    assert_eq!((next.kind, next.revision(), next.kv.key.as_str()), (EventKind::Put, r2, "/w/2"));
    etcd.stop();
}

/// Restarts etcd (same ports and data) off the async threads and hands it back.
async fn restarted(mut etcd: tug_testkit::Etcd) -> tug_testkit::Etcd {
    tokio::task::spawn_blocking(move || {
        etcd.restart();
        etcd
    })
    .await
    .unwrap()
}
