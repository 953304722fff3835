//! When to drop history: the pure decision, shared by both backends.
//!
//! History is kept for watchers that fall behind and for paginated lists. It is bounded two
//! ways so the datastore never grows without someone intervening: by age (like kube-apiserver's
//! five-minute compaction) and by count (a burst of writes cannot pile up unbounded history
//! before the age bound catches it).

use crate::Revision;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct CompactionPolicy {
    /// History older than this is dropped.
    pub max_age: Duration,
    /// At most this many revisions of history are kept behind the current one.
    pub max_revisions: i64,
    /// How often the compactor looks.
    pub interval: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            max_age: Duration::from_secs(300),
            max_revisions: 100_000,
            interval: Duration::from_secs(30),
        }
    }
}

impl CompactionPolicy {
    /// Never compacts on its own (for tests that compact by hand).
    pub fn manual() -> Self {
        CompactionPolicy { max_age: Duration::MAX, max_revisions: i64::MAX, interval: Duration::MAX }
    }
}

/// Remembers which revision was current when, so "older than `max_age`" can be turned into a
/// revision without storing a timestamp on every change.
#[derive(Debug, Default)]
pub struct RevisionClock {
    samples: VecDeque<(Instant, Revision)>,
}

impl RevisionClock {
    /// Records that `revision` was current at `now`, and returns the revision to compact to
    /// (exclusive of anything newer), or `None` when nothing is due.
    pub fn tick(
        &mut self,
        policy: &CompactionPolicy,
        now: Instant,
        current: Revision,
        compacted: Revision,
    ) -> Option<Revision> {
        if self.samples.back().is_none_or(|&(_, r)| r != current) {
            self.samples.push_back((now, current));
        }
        // The newest sample at least max_age old: everything up to it is old enough to drop.
        let mut by_age = 0;
        while let Some(&(at, rev)) = self.samples.front() {
            if now.saturating_duration_since(at) >= policy.max_age {
                by_age = rev;
                self.samples.pop_front();
            } else {
                break;
            }
        }
        let by_count = current.saturating_sub(policy.max_revisions);
        let target = by_age.max(by_count).min(current);
        (target > compacted).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(age_s: u64, count: i64) -> CompactionPolicy {
        CompactionPolicy { max_age: Duration::from_secs(age_s), max_revisions: count, interval: Duration::from_secs(1) }
    }

    #[test]
    fn nothing_due_while_history_is_young_and_short() {
        let mut c = RevisionClock::default();
        let t0 = Instant::now();
        assert_eq!(c.tick(&policy(300, 1000), t0, 10, 0), None);
        assert_eq!(c.tick(&policy(300, 1000), t0 + Duration::from_secs(100), 50, 0), None);
    }

    #[test]
    fn age_bound_compacts_to_the_revision_current_max_age_ago() {
        let p = policy(300, 1_000_000);
        let mut c = RevisionClock::default();
        let t0 = Instant::now();
        c.tick(&p, t0, 10, 0);
        c.tick(&p, t0 + Duration::from_secs(100), 20, 0);
        assert_eq!(c.tick(&p, t0 + Duration::from_secs(301), 30, 0), Some(10));
        assert_eq!(c.tick(&p, t0 + Duration::from_secs(401), 30, 10), Some(20));
        assert_eq!(c.tick(&p, t0 + Duration::from_secs(402), 30, 20), None);
    }

    #[test]
    fn count_bound_caps_history_during_bursts() {
        let p = policy(300, 100);
        let mut c = RevisionClock::default();
        let t0 = Instant::now();
        assert_eq!(c.tick(&p, t0, 1000, 0), Some(900));
        assert_eq!(c.tick(&p, t0, 1000, 900), None);
    }

    #[test]
    fn manual_policy_never_compacts() {
        let mut c = RevisionClock::default();
        let t0 = Instant::now();
        assert_eq!(c.tick(&CompactionPolicy::manual(), t0, 1 << 40, 0), None);
    }
}
