//! Expectations, as Kubernetes' controllers keep them: after a controller creates or deletes
//! dependents, its cache shows them only once their watch events arrive. Until then a reconcile
//! would see too few (or too many) and act twice. So a controller records what it expects to
//! see, the informer handlers tick the expectations off as the events arrive, and reconciles of
//! that owner wait until they are met — or until they expire, in case an event was lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Key;

/// After this long, unmet expectations are given up (Kubernetes' ExpectationsTimeout).
const EXPIRY: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expected {
    creations: i64,
    deletions: HashSet<String>,
    since: Instant,
}

/// Per-owner expectations. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    inner: Arc<Mutex<HashMap<Key, Expected>>>,
}

impl Expectations {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Key, Expected>) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The owner is about to create `creations` dependents and delete those with these uids.
    pub fn expect(&self, owner: &Key, creations: usize, deletions: impl IntoIterator<Item = String>) {
        self.with(|map| {
            map.insert(
                owner.clone(),
                Expected {
                    creations: i64::try_from(creations).unwrap_or(i64::MAX),
                    deletions: deletions.into_iter().collect(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// A dependent of `owner` appeared in the cache, or its creation failed (it never will).
    pub fn creation_observed(&self, owner: &Key) {
        self.with(|map| {
            if let Some(e) = map.get_mut(owner) {
                e.creations -= 1;
            }
        });
    }

    /// The dependent with `uid` is being deleted or gone, or its deletion failed.
    pub fn deletion_observed(&self, owner: &Key, uid: &str) {
        self.with(|map| {
            if let Some(e) = map.get_mut(owner) {
                e.deletions.remove(uid);
            }
        });
    }

    /// May the owner be reconciled: nothing expected, all of it seen, or the wait expired?
    pub fn satisfied(&self, owner: &Key) -> bool {
        self.with(|map| match map.get(owner) {
            None => true,
            Some(e) => (e.creations <= 0 && e.deletions.is_empty()) || e.since.elapsed() > EXPIRY,
        })
    }

    /// The owner is gone: forget it.
    pub fn forget(&self, owner: &Key) {
        self.with(|map| map.remove(owner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_waits_until_every_expected_change_was_seen() {
        let e = Expectations::default();
        let rs = Key::new("ns", "rs");
        assert!(e.satisfied(&rs));
        e.expect(&rs, 2, ["u1".to_string()]);
        assert!(!e.satisfied(&rs));
        e.creation_observed(&rs);
        e.creation_observed(&rs);
        assert!(!e.satisfied(&rs), "the deletion is still to be seen");
        e.deletion_observed(&rs, "u1");
        e.deletion_observed(&rs, "u1");
        assert!(e.satisfied(&rs));
    }
}
