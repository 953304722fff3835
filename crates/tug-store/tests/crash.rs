//! Crash safety of the SQLite backend: a child process writes as fast as it can, printing each
//! write only after the store acknowledged it; the parent kills it with SIGKILL at a random
//! moment, reopens the file and checks that every acknowledged write is there and the store is
//! consistent. Repeated on the same file, so recovery from one crash is itself crashed.
//!
//! The child is this same test binary, re-run with `CRASH_CHILD_DB` set: the test function
//! takes the writer role then (and never returns; it is killed).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tug_store::sqlite::{SqliteOptions, SqliteStore};
use tug_store::{CompactionPolicy, ListOptions, Store};

const CHILD_ENV: &str = "CRASH_CHILD_DB";
const ROUNDS: u32 = 5;
const WRITERS: usize = 8;

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        let round: u32 = std::env::var("CRASH_ROUND").unwrap().parse().unwrap();
        run_child(Path::new(&db), round);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut acked_total = 0;
    for round in 0..ROUNDS {
        // Kill after a varying number of acknowledged writes: early, mid-batch, later.
        let kill_after = 50 + (pseudo_random(round) % 1500) as usize;
        let acked = crash_child_after(&db, round, kill_after);
        assert!(acked.keys.len() >= kill_after, "child acknowledged only {} writes", acked.keys.len());
        verify(&db, &acked);
        acked_total += acked.keys.len();
    }
    eprintln!("{ROUNDS} crashes, {acked_total} acknowledged writes, all recovered");
}

/// What the child acknowledged before it died.
#[derive(Default)]
struct Acked {
    keys: BTreeMap<String, (i64, Vec<u8>)>,
    counters: BTreeMap<usize, u64>,
    max_revision: i64,
}

fn crash_child_after(db: &Path, round: u32, kill_after: usize) -> Acked {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "acknowledged_writes_survive_sigkill", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, db)
        .env("CRASH_ROUND", round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Acked::default();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.keys.len() < kill_after {
        assert!(Instant::now() < deadline, "child too slow: {} acks", acked.keys.len());
        let Some(line) = lines.next() else {
            panic!("child exited early: {:?}", child.wait());
        };
        record(&mut acked, &line.unwrap());
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no final fsync
    // Acks already written to the pipe before the kill count too.
    for line in lines {
        let Ok(line) = line else { break };
        record(&mut acked, &line);
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "child should have died from SIGKILL");
    acked
}

fn record(acked: &mut Acked, line: &str) {
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["ack", key, rev, value] => {
            let rev: i64 = rev.parse().unwrap();
            acked.max_revision = acked.max_revision.max(rev);
            acked.keys.insert(key.to_string(), (rev, value.as_bytes().to_vec()));
        }
        ["counter", writer, value, rev] => {
            let rev: i64 = rev.parse().unwrap();
            acked.max_revision = acked.max_revision.max(rev);
            acked.counters.insert(writer.parse().unwrap(), value.parse().unwrap());
        }
        _ => {} // libtest's own chatter
    }
}

fn verify(db: &Path, acked: &Acked) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let options = SqliteOptions { compaction: CompactionPolicy::manual(), ..Default::default() };
        let store = SqliteStore::open(db, options).await.expect("reopen after crash");
        let current = store.current_revision().await.unwrap();
        assert!(current >= acked.max_revision, "revision went back: {current} < acked {}", acked.max_revision);
        for (key, (rev, value)) in &acked.keys {
            let kv = store
                .get(key, None)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged write {key} (revision {rev}) lost"));
            assert_eq!(&kv.value, value, "{key}");
            assert_eq!(kv.mod_revision, *rev, "{key}");
        }
        for (writer, value) in &acked.counters {
            let kv = store.get(&format!("/counter/{writer}"), None).await.unwrap().expect("counter");
            let stored: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
            // The write after the last ack may have committed before the kill: one more is fine.
            assert!(stored == *value || stored == value + 1, "counter {writer}: stored {stored}, acked {value}");
        }
        // The whole history replays in strictly increasing order, ending at the current revision.
        let mut watch = store.watch("/", 0).await.unwrap();
        let mut last = 0;
        while last < current {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.recv())
                .await
                .expect("history replay stalled")
                .expect("watch open")
                .expect("history readable");
            assert!(event.revision() > last, "history out of order");
            last = event.revision();
        }
        assert_eq!(last, current);
        let listed = store.list("/", ListOptions::default()).await.unwrap();
        assert!(listed.items.iter().all(|kv| kv.mod_revision <= current));
    });
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

fn run_child(db: &Path, round: u32) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let options = SqliteOptions { compaction: CompactionPolicy::manual(), ..Default::default() };
        let store = Arc::new(SqliteStore::open(db, options).await.expect("child open"));
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = Arc::clone(&store);
            let out = Arc::clone(&out);
            tasks.push(tokio::spawn(async move {
                let counter_key = format!("/counter/{writer}");
                let (mut counter, mut counter_rev) = match store.get(&counter_key, None).await.unwrap() {
                    Some(kv) => (String::from_utf8(kv.value).unwrap().parse::<u64>().unwrap(), kv.mod_revision),
                    None => (0, store.create(&counter_key, b"0".to_vec(), None).await.unwrap()),
                };
                for i in 0u64.. {
                    let key = format!("/crash/{round}/{writer}/{i}");
                    let value = format!("v{round}-{writer}-{i}");
                    let rev = store.create(&key, value.clone().into_bytes(), None).await.unwrap();
                    writeln!(out.lock().unwrap(), "ack {key} {rev} {value}").unwrap();
                    counter += 1;
                    counter_rev =
                        store.update(&counter_key, counter.to_string().into_bytes(), counter_rev, None).await.unwrap();
                    writeln!(out.lock().unwrap(), "counter {writer} {counter} {counter_rev}").unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    unreachable!("the writer loops until it is killed")
}

fn pseudo_random(round: u32) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut x = nanos ^ (u64::from(round) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
