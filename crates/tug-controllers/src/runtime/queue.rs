//! The work queue, with client-go's guarantees: a key waits at most once however often it is
//! added, one key is never reconciled by two workers at once, a key added while it is being
//! reconciled runs again afterwards, failures retry with per-key exponential backoff, and a
//! reconcile may ask to run again after a delay.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Key;

/// First retry after a failure; doubles per consecutive failure of the same key.
const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long [`Queue::add_batched`] gathers changes before the key is queued.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Key>,
    /// Keys in `ready` (so a key waits once).
    waiting: HashSet<Key>,
    /// Keys a worker holds now.
    processing: HashSet<Key>,
    /// Keys added while being processed: queued again when their worker is done.
    dirty: HashSet<Key>,
    failures: HashMap<Key, u32>,
    /// Keys waiting out their batching window.
    batching: HashSet<Key>,
    shut_down: bool,
}

/// A deduplicating work queue of object keys. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, key: Key) {
        let mut state = self.lock();
        if state.shut_down || state.waiting.contains(&key) {
            return;
        }
        if state.processing.contains(&key) {
            state.dirty.insert(key);
            return;
        }
        state.waiting.insert(key.clone());
        state.ready.push_back(key);
        drop(state);
        self.wake.notify_one();
    }

    /// Adds the key after a short window in which further adds of it cost nothing: the hundreds
    /// of pod changes of a scaling ReplicaSet then make a few reconciles, not hundreds (each one
    /// looks at all its pods).
    pub fn add_batched(&self, key: Key) {
        {
            let mut state = self.lock();
            if state.shut_down || state.waiting.contains(&key) || !state.batching.insert(key.clone()) {
                return;
            }
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(BATCH_WINDOW).await;
            queue.lock().batching.remove(&key);
            queue.add(key);
        });
    }

    /// Adds the key after `delay` (a timer task; the key is still deduplicated when it fires).
    pub fn add_after(&self, key: Key, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Waits for the next key; `None` once shut down.
    pub async fn next(&self) -> Option<Key> {
        loop {
            let notified = self.wake.notified();
            {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                if let Some(key) = state.ready.pop_front() {
                    state.waiting.remove(&key);
                    state.processing.insert(key.clone());
                    let more = !state.ready.is_empty();
                    drop(state);
                    if more {
                        // Another worker may be asleep while keys wait.
                        self.wake.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// The worker is done with `key`; `retry` says whether it failed and should back off.
    fn done(&self, key: &Key, outcome: Outcome) {
        let delay = {
            let mut state = self.lock();
            state.processing.remove(key);
            let delay = match outcome {
                Outcome::Failed => {
                    let n = state.failures.entry(key.clone()).or_insert(0);
                    *n += 1;
                    Some(backoff(*n))
                }
                Outcome::Done(after) => {
                    state.failures.remove(key);
                    after
                }
            };
            if state.dirty.remove(key) {
                drop(state);
                self.add(key.clone());
            }
            delay
        };
        if let Some(delay) = delay {
            self.add_after(key.clone(), delay);
        }
    }

    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.wake.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE.saturating_mul(1u32 << failures.min(20).saturating_sub(1)).min(BACKOFF_MAX)
}

#[derive(Debug)]
enum Outcome {
    /// Succeeded; run again after the delay if one was asked for.
    Done(Option<Duration>),
    Failed,
}

/// Runs `workers` workers over the queue until it shuts down. `reconcile` returns when to run
/// the key again (`Ok(None)`: when something changes), or an error to retry with backoff.
pub async fn run_workers<F, Fut, E>(queue: Queue, workers: usize, controller: &'static str, reconcile: F)
where
    F: Fn(Key) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, E>> + Send,
    E: std::fmt::Display + Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        tasks.spawn(async move {
            while let Some(key) = queue.next().await {
                let outcome = match reconcile(key.clone()).await {
                    Ok(after) => Outcome::Done(after),
                    Err(e) => {
                        tracing::debug!(controller, key = %key, error = %e, "reconcile failed; will retry");
                        Outcome::Failed
                    }
                };
                queue.done(&key, outcome);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key { namespace: "ns".into(), name: name.into() }
    }

    #[tokio::test]
    async fn a_key_waits_once_and_a_busy_key_runs_again_after() {
        let q = Queue::new();
        q.add(key("a"));
        q.add(key("a"));
        q.add(key("b"));
        assert_eq!(q.len(), 2);
        let a = q.next().await.unwrap();
        assert_eq!(a, key("a"));
        // Added while processing: not handed to another worker now...
        q.add(key("a"));
        assert_eq!(q.next().await.unwrap(), key("b"));
        assert!(q.is_empty());
        // ...but queued again once its worker is done.
        q.done(&a, Outcome::Done(None));
        assert_eq!(q.next().await.unwrap(), key("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn batched_adds_of_a_key_make_one_entry_after_the_window() {
        let q = Queue::new();
        for _ in 0..100 {
            q.add_batched(key("a"));
        }
        assert!(q.is_empty(), "nothing before the window closes");
        let first = tokio::time::timeout(BATCH_WINDOW * 2, q.next()).await;
        assert_eq!(first.unwrap(), Some(key("a")));
        assert!(q.is_empty(), "one entry for a hundred adds");
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(5), Duration::from_millis(80));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    /// Paused time: the runtime moves the clock only when every task waits, so "not before"
    /// and "right at" are exact, with no real waiting.
    #[tokio::test(start_paused = true)]
    async fn failures_come_back_at_their_backoff_and_not_before() {
        let q = Queue::new();
        let comes_back_after = |wait: Duration| {
            let q = q.clone();
            async move {
                let failed_at = tokio::time::Instant::now();
                let early = tokio::time::timeout(wait - Duration::from_millis(1), q.next()).await;
                assert!(early.is_err(), "handed out before its back-off of {wait:?}");
                let again = tokio::time::timeout(Duration::from_millis(2), q.next()).await;
                let again = again.expect("back once its back-off is over").expect("a key");
                assert!(failed_at.elapsed() >= wait, "back after {:?}, not {wait:?}", failed_at.elapsed());
                again
            }
        };
        q.add(key("a"));
        let mut a = q.next().await.unwrap();
        for failures in 1..=4 {
            q.done(&a, Outcome::Failed);
            assert!(q.is_empty());
            a = comes_back_after(backoff(failures)).await;
            assert_eq!(a, key("a"));
        }
        // A success forgets the failures: the next one waits the first back-off again.
        q.done(&a, Outcome::Done(None));
        q.add(key("a"));
        let a = q.next().await.unwrap();
        q.done(&a, Outcome::Failed);
        assert_eq!(comes_back_after(backoff(1)).await, key("a"));
    }
}
