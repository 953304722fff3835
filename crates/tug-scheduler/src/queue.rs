//! The scheduling queue: which pending pod is tried next, and when a pod that fitted nowhere is
//! tried again. Pure (time is passed in), so its rules are tested without a cluster.
//!
//! Kubernetes' three sub-queues, kept as one map of entries plus two lazy heaps:
//! - active: ready to try, highest `spec.priority` first, then oldest, then first queued;
//! - backoff: failed recently, ready again at `last failure + backoff(attempts)` where backoff is
//!   1 s doubling to at most 10 s (kube-scheduler's `podInitialBackoff`/`podMaxBackoff`);
//! - unschedulable: fitted nowhere; parked until the cluster changes in a way that could help
//!   ([`SchedulingQueue::cluster_changed`]), never retried by polling.
//!
//! Heap items carry the generation of the entry they were pushed for, so moving or removing an
//! entry never searches a heap: stale items are skipped when they surface.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The first retry delay after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest retry delay, however often a pod failed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The delay before retrying a pod that failed `attempts` times (at least once).
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable,
    /// Handed out by [`SchedulingQueue::pop`]; its decision or binding is under way.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    priority: i32,
    /// Creation time (seconds since the epoch): older pods go first among equal priorities.
    created: i64,
    /// Order of first arrival, the tie-break that keeps the queue FIFO.
    seq: u64,
    attempts: u32,
    last_failure: Option<Instant>,
    place: Place,
    generation: u64,
}

impl Entry {
    /// When the pod's current backoff ends (now, if it never failed).
    fn backoff_ends(&self, now: Instant) -> Instant {
        self.last_failure.map_or(now, |at| at + backoff(self.attempts))
    }
}

/// An item of the active heap: a max-heap, so "greater" means "goes first".
#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    created: i64,
    seq: u64,
    generation: u64,
    uid: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.created.cmp(&self.created))
            .then_with(|| other.seq.cmp(&self.seq))
            .then_with(|| self.generation.cmp(&other.generation))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Pending pods by uid, with what decides their order and their retry time.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// The unschedulable pods, so a cluster change costs nothing when none wait.
    parked: HashSet<String>,
    next_seq: u64,
    next_generation: u64,
}

impl SchedulingQueue {
    pub fn new() -> SchedulingQueue {
        SchedulingQueue::default()
    }

    /// How many pods are queued in any state, in flight included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// Adds a new pending pod as ready, or updates a queued one's priority and age (keeping its
    /// place: a pod in flight or backing off stays so).
    pub fn add(&mut self, uid: &str, priority: i32, created: i64) {
        if let Some(entry) = self.entries.get_mut(uid) {
            if (entry.priority, entry.created) == (priority, created) {
                return;
            }
            entry.priority = priority;
            entry.created = created;
            if entry.place == Place::Active {
                self.push_active(uid);
            }
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            uid.to_string(),
            Entry { priority, created, seq, attempts: 0, last_failure: None, place: Place::Active, generation: 0 },
        );
        self.push_active(uid);
    }

    /// Forgets a pod (bound, deleted, or no longer ours).
    pub fn remove(&mut self, uid: &str) {
        self.entries.remove(uid);
        self.parked.remove(uid);
    }

    /// The next pod to try, if one is ready at `now`; it stays queued as in flight until
    /// [`Self::remove`], [`Self::unschedulable`], [`Self::retry_later`] or [`Self::return_unattempted`].
    pub fn pop(&mut self, now: Instant) -> Option<String> {
        self.release_backoff(now);
        while let Some(item) = self.active.pop() {
            let Some(entry) = self.entries.get_mut(&item.uid) else { continue };
            if entry.generation != item.generation || entry.place != Place::Active {
                continue;
            }
            entry.place = Place::InFlight;
            return Some(item.uid);
        }
        None
    }

    /// Whether [`Self::pop`] would return a pod at `now`.
    pub fn has_ready(&mut self, now: Instant) -> bool {
        self.release_backoff(now);
        self.drop_stale_active();
        !self.active.is_empty()
    }

    /// The pod fitted nowhere: park it until the cluster changes.
    pub fn unschedulable(&mut self, uid: &str, now: Instant) {
        if let Some(entry) = self.entries.get_mut(uid) {
            entry.attempts += 1;
            entry.last_failure = Some(now);
            entry.place = Place::Unschedulable;
            self.parked.insert(uid.to_string());
        }
    }

    /// The attempt failed for a reason other than fit (a failed bind): retry after the backoff.
    pub fn retry_later(&mut self, uid: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(uid) else { return };
        entry.attempts += 1;
        entry.last_failure = Some(now);
        let ready_at = entry.backoff_ends(now);
        self.push_backoff(uid, ready_at);
    }

    /// A pod handed out but never decided on (leadership was lost): back to ready, no penalty.
    pub fn return_unattempted(&mut self, uid: &str) {
        if self.entries.get(uid).is_some_and(|e| e.place == Place::InFlight) {
            self.push_active(uid);
        }
    }

    /// The cluster changed in a way that could let parked pods fit (a node came or changed, a
    /// placed pod went): every parked pod becomes ready, or backs off if its backoff has not ended.
    /// Returns how many pods moved.
    pub fn cluster_changed(&mut self, now: Instant) -> usize {
        let parked: Vec<(String, Instant)> = std::mem::take(&mut self.parked)
            .into_iter()
            .filter_map(|uid| {
                let entry = self.entries.get(&uid).filter(|e| e.place == Place::Unschedulable)?;
                Some((uid, entry.backoff_ends(now)))
            })
            .collect();
        for (uid, ready_at) in &parked {
            if *ready_at <= now {
                self.push_active(uid);
            } else {
                self.push_backoff(uid, *ready_at);
            }
        }
        parked.len()
    }

    #[cfg(test)]
    fn is_unschedulable(&self, uid: &str) -> bool {
        self.entries.get(uid).is_some_and(|e| e.place == Place::Unschedulable)
    }

    /// A parked pod changed itself (its spec or labels): it becomes ready after its backoff.
    pub fn pod_changed(&mut self, uid: &str, now: Instant) {
        let Some(entry) = self.entries.get(uid) else { return };
        if entry.place != Place::Unschedulable {
            return;
        }
        let ready_at = entry.backoff_ends(now);
        if ready_at <= now {
            self.push_active(uid);
        } else {
            self.push_backoff(uid, ready_at);
        }
    }

    /// When the earliest backing-off pod becomes ready, if any pod is backing off.
    pub fn next_ready_at(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, generation, uid))) = self.backoff.peek() {
            let live =
                self.entries.get(uid).is_some_and(|e| e.generation == *generation && e.place == Place::Backoff(*at));
            if live {
                return Some(*at);
            }
            self.backoff.pop();
        }
        None
    }

    fn release_backoff(&mut self, now: Instant) {
        while let Some(at) = self.next_ready_at() {
            if at > now {
                break;
            }
            if let Some(Reverse((_, _, uid))) = self.backoff.pop() {
                self.push_active(&uid);
            }
        }
    }

    fn drop_stale_active(&mut self) {
        while let Some(item) = self.active.peek() {
            let live = self
                .entries
                .get(&item.uid)
                .is_some_and(|e| e.generation == item.generation && e.place == Place::Active);
            if live {
                return;
            }
            self.active.pop();
        }
    }

    fn bump(&mut self, uid: &str, place: Place) -> Option<&Entry> {
        self.parked.remove(uid);
        let generation = self.next_generation;
        self.next_generation += 1;
        let entry = self.entries.get_mut(uid)?;
        entry.generation = generation;
        entry.place = place;
        Some(entry)
    }

    fn push_active(&mut self, uid: &str) {
        if let Some(e) = self.bump(uid, Place::Active) {
            let item = ActiveItem {
                priority: e.priority,
                created: e.created,
                seq: e.seq,
                generation: e.generation,
                uid: uid.into(),
            };
            self.active.push(item);
        }
    }

    fn push_backoff(&mut self, uid: &str, ready_at: Instant) {
        if let Some(e) = self.bump(uid, Place::Backoff(ready_at)) {
            let generation = e.generation;
            self.backoff.push(Reverse((ready_at, generation, uid.to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now)).collect()
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let seconds: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn higher_priority_first_then_older_then_first_queued() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new();
        // (uid, priority, created)
        for (uid, priority, created) in [("low", 0, 1), ("young-high", 100, 50), ("old-high", 100, 10), ("tie-b", 5, 7)]
        {
            q.add(uid, priority, created);
        }
        q.add("tie-c", 5, 7);
        assert_eq!(drain(&mut q, now), ["old-high", "young-high", "tie-b", "tie-c", "low"]);
        assert_eq!(q.len(), 5, "popped pods stay queued (in flight) until resolved");
    }

    #[test]
    fn a_priority_change_reorders_a_ready_pod() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("a", 0, 1);
        q.add("b", 0, 2);
        q.add("b", 10, 2);
        assert_eq!(drain(&mut q, now), ["b", "a"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("p", 0, 0);
        assert_eq!(q.pop(t0).as_deref(), Some("p"));
        q.unschedulable("p", t0);
        let much_later = t0 + Duration::from_secs(3600);
        assert_eq!(q.pop(much_later), None, "no polling: time alone never retries a parked pod");
        assert_eq!(q.next_ready_at(), None);
        q.add("other", 0, 1);
        assert_eq!(q.cluster_changed(much_later), 1, "only parked pods move");
        assert_eq!(q.cluster_changed(much_later), 0, "and only once");
        assert_eq!(q.pop(much_later).as_deref(), Some("p"));
    }

    #[test]
    fn a_cluster_change_during_backoff_retries_when_backoff_ends() {
        let mut now = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("p", 0, 0);
        assert_eq!(q.pop(now).as_deref(), Some("p"));
        for attempt in 1..=5u32 {
            q.unschedulable("p", now);
            q.cluster_changed(now);
            assert_eq!(q.pop(now), None, "attempt {attempt} backs off");
            assert_eq!(q.next_ready_at(), Some(now + backoff(attempt)));
            now += backoff(attempt);
            assert_eq!(q.pop(now).as_deref(), Some("p"));
        }
    }

    #[test]
    fn failed_binds_retry_after_backoff_without_a_cluster_change() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("p", 0, 0);
        q.pop(t0);
        q.retry_later("p", t0);
        assert!(!q.has_ready(t0 + Duration::from_millis(999)));
        assert!(q.has_ready(t0 + INITIAL_BACKOFF));
    }

    #[test]
    fn removed_and_returned_pods() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("gone", 0, 0);
        q.add("kept", 0, 1);
        q.remove("gone");
        assert_eq!(q.pop(now).as_deref(), Some("kept"));
        q.return_unattempted("kept");
        assert_eq!(drain(&mut q, now), ["kept"]);
        assert!(q.contains("kept") && !q.contains("gone"));
    }

    #[test]
    fn only_parked_pods_react_to_their_own_changes() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("p", 0, 0);
        q.pop(now);
        q.pod_changed("p", now);
        assert_eq!(q.pop(now), None, "an in-flight pod is not handed out twice");
        q.unschedulable("p", now);
        assert!(q.is_unschedulable("p"));
        q.pod_changed("p", now + INITIAL_BACKOFF);
        assert_eq!(q.pop(now + INITIAL_BACKOFF).as_deref(), Some("p"));
    }
}
